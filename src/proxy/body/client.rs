//! The client's request body as the proxy sees it, whichever protocol brought it: fed by
//! tether's own HTTP/1 connection through a one-slot [`Feed`], or hyper's HTTP/2 stream.
//!
//! The HTTP/1 connection task owns the socket; the body is read by whoever sends it upstream
//! (hyper's client task). The feed joins the two with demand: the connection reads the next
//! piece only once the reader asked for the body at all (that first ask is when a client that
//! sent `Expect: 100-continue` is told to go on) and the slot is free, so an upload moves at
//! the upstream's pace and never piles up in memory. `client_body_timeout` bounds the wait
//! for the client between two reads, in the connection for HTTP/1 and here for HTTP/2.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

/// Why the client's body could not be read to its end.
#[derive(Debug)]
pub enum ClientBodyError {
    /// The client closed its connection (or tether stopped) before the body ended.
    Closed,
    /// Nothing arrived for `client_body_timeout`.
    Timeout,
    /// The chunked framing was broken.
    Malformed(&'static str),
    /// hyper's HTTP/2 stream failed (reset, connection lost).
    Http2(hyper::Error),
}

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientBodyError::Closed => f.write_str("client closed the connection"),
            ClientBodyError::Timeout => f.write_str("client timed out sending its body"),
            ClientBodyError::Malformed(why) => write!(f, "client sent a malformed body ({why})"),
            ClientBodyError::Http2(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for ClientBodyError {}

/// The default `client_body_timeout` (nginx's), until the proxy says otherwise.
const DEFAULT_IDLE: Duration = Duration::from_secs(60);

/// The one-slot channel between an HTTP/1 connection and the reader of its request body.
#[derive(Debug)]
pub struct Feed {
    slot: Mutex<Slot>,
    /// `client_body_timeout` of the location the request went to, in milliseconds.
    idle_timeout_ms: AtomicU64,
}

#[derive(Debug, Default)]
struct Slot {
    data: Option<Bytes>,
    /// Set once by the connection: the body ended whole, or how it failed.
    end: Option<Result<(), ClientBodyError>>,
    /// The reader asked for the body at least once.
    started: bool,
    reader: Option<Waker>,
    connection: Option<Waker>,
    reader_gone: bool,
}

impl Feed {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        // Every critical section below only moves values in and out: nothing panics inside.
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// The connection's end of a [`Feed`].
#[derive(Debug)]
pub struct FeedSender {
    feed: Arc<Feed>,
}

/// What the reader of a body wants from the connection right now.
#[derive(Debug, PartialEq, Eq)]
pub enum Demand {
    /// The slot is free and the reader has started: read and send the next piece.
    More,
    /// Nobody will read the body any more.
    Gone,
}

impl FeedSender {
    /// A new feed: the sender for the connection, and the body for the request.
    pub fn channel(remaining: Option<u64>) -> (FeedSender, ClientBody) {
        let feed = Arc::new(Feed {
            slot: Mutex::new(Slot::default()),
            idle_timeout_ms: AtomicU64::new(DEFAULT_IDLE.as_millis() as u64),
        });
        let body = ClientBody::Http1 {
            feed: feed.clone(),
            remaining,
        };
        (FeedSender { feed }, body)
    }

    /// Ready when the reader wants the next piece (or is gone); else the connection is woken
    /// when that changes.
    pub fn poll_demand(&self, cx: &mut Context<'_>) -> Poll<Demand> {
        let mut slot = self.feed.lock();
        if slot.reader_gone {
            return Poll::Ready(Demand::Gone);
        }
        if slot.started && slot.data.is_none() && slot.end.is_none() {
            return Poll::Ready(Demand::More);
        }
        if !slot
            .connection
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            slot.connection = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Hands the next piece to the reader (call only after [`Demand::More`]).
    pub fn send(&self, data: Bytes) {
        let mut slot = self.feed.lock();
        slot.data = Some(data);
        let reader = slot.reader.take();
        drop(slot);
        wake(reader);
    }

    /// Ends the body: whole (`Ok`) or failed.
    pub fn finish(&self, result: Result<(), ClientBodyError>) {
        let mut slot = self.feed.lock();
        if slot.end.is_none() {
            slot.end = Some(result);
        }
        let reader = slot.reader.take();
        drop(slot);
        wake(reader);
    }

    /// The wait allowed between two reads of this body (`client_body_timeout`).
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.feed.idle_timeout_ms.load(Ordering::Relaxed))
    }
}

impl Drop for FeedSender {
    /// A connection that goes away mid-body (closed, stopped) must not leave the reader
    /// waiting for ever.
    fn drop(&mut self) {
        self.finish(Err(ClientBodyError::Closed));
    }
}

pin_project! {
    /// A client's request body.
    #[project = ClientBodyProj]
    #[derive(Debug)]
    pub enum ClientBody {
        /// No body at all.
        Empty,
        /// Fed by tether's HTTP/1 connection.
        Http1 {
            feed: Arc<Feed>,
            // Bytes still announced by `Content-Length` (None: chunked).
            remaining: Option<u64>,
        },
        /// An HTTP/2 stream's body, read by hyper.
        Http2 {
            #[pin]
            inner: Incoming,
            // Armed while waiting for the client: `client_body_timeout`. Boxed so the body is
            // `Unpin` (the upstream connection moves it as it sends it).
            idle: Option<Pin<Box<Sleep>>>,
            timeout: Duration,
        },
    }

    impl PinnedDrop for ClientBody {
        fn drop(this: Pin<&mut Self>) {
            if let ClientBodyProj::Http1 { feed, .. } = this.project() {
                let mut slot = feed.lock();
                slot.reader_gone = true;
                let connection = slot.connection.take();
                drop(slot);
                wake(connection);
            }
        }
    }
}

impl ClientBody {
    /// An HTTP/2 stream's body.
    pub fn http2(inner: Incoming) -> ClientBody {
        ClientBody::Http2 {
            inner,
            idle: None,
            timeout: DEFAULT_IDLE,
        }
    }

    /// Sets `client_body_timeout` for this body (before it is read).
    pub fn set_idle_timeout(&mut self, timeout: Duration) {
        match self {
            ClientBody::Empty => {}
            ClientBody::Http1 { feed, .. } => {
                let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                feed.idle_timeout_ms.store(ms, Ordering::Relaxed);
            }
            ClientBody::Http2 { timeout: t, .. } => *t = timeout,
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match self.project() {
            ClientBodyProj::Empty => Poll::Ready(None),
            ClientBodyProj::Http1 { feed, remaining } => {
                let mut slot = feed.lock();
                if let Some(data) = slot.data.take() {
                    let connection = slot.connection.take();
                    drop(slot);
                    wake(connection);
                    if let Some(remaining) = remaining {
                        *remaining = remaining.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                match slot.end.take() {
                    Some(Ok(())) => {
                        slot.end = Some(Ok(()));
                        return Poll::Ready(None);
                    }
                    Some(Err(error)) => {
                        // Reported once; the body then reads as closed.
                        slot.end = Some(Err(ClientBodyError::Closed));
                        return Poll::Ready(Some(Err(error)));
                    }
                    None => {}
                }
                let first = !slot.started;
                slot.started = true;
                if !slot
                    .reader
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    slot.reader = Some(cx.waker().clone());
                }
                let connection = if first { slot.connection.take() } else { None };
                drop(slot);
                wake(connection);
                Poll::Pending
            }
            ClientBodyProj::Http2 {
                inner,
                idle,
                timeout,
            } => match inner.poll_frame(cx) {
                Poll::Ready(frame) => {
                    *idle = None;
                    Poll::Ready(frame.map(|f| f.map_err(ClientBodyError::Http2)))
                }
                Poll::Pending => {
                    let sleep = idle.get_or_insert_with(|| Box::pin(tokio::time::sleep(*timeout)));
                    std::task::ready!(sleep.as_mut().poll(cx));
                    Poll::Ready(Some(Err(ClientBodyError::Timeout)))
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty => true,
            ClientBody::Http1 { remaining, .. } => *remaining == Some(0),
            ClientBody::Http2 { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::Http1 {
                remaining: Some(remaining),
                ..
            } => SizeHint::with_exact(*remaining),
            ClientBody::Http1 { .. } => SizeHint::default(),
            ClientBody::Http2 { inner, .. } => inner.size_hint(),
        }
    }
}
