//! The bodies tether streams: the client's request body on its way upstream, and the response
//! body on its way back. Neither is ever buffered whole; each frame is passed on as it arrives,
//! so hyper's own backpressure bounds memory.
//!
//! The response body also carries the bookkeeping that must last exactly as long as the stream:
//! the peer's active-request guard (least_conn counts open streams, not just request heads), the
//! `proxy_read_timeout` idle timer, and the keep-alive connection, returned to the peer's pool
//! only once the upstream's response has been read to the end.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::peer::ActiveGuard;
use crate::proxy::client_body::{ClientBody, ClientBodyError};
use crate::proxy::pool::Sender;

/// Why a body stream stopped early.
#[derive(Debug)]
pub enum BodyError {
    /// The upstream connection failed.
    Hyper(hyper::Error),
    /// The client's body could not be read to its end (gone, too slow, malformed).
    Client(ClientBodyError),
    /// The client sent more than `client_max_body_size`.
    TooLarge,
    /// The upstream sent nothing for `proxy_read_timeout`.
    ReadTimeout,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Hyper(error) => error.fmt(f),
            BodyError::Client(error) => write!(f, "client stopped sending its body ({error})"),
            BodyError::TooLarge => f.write_str("request body larger than client_max_body_size"),
            BodyError::ReadTimeout => {
                f.write_str("upstream timed out while sending the response body")
            }
        }
    }
}

impl std::error::Error for BodyError {}

pin_project! {
    /// The request body sent upstream: the client's, streamed and cut off past
    /// `client_max_body_size` (the check for bodies whose size was not announced up front), or
    /// none at all for a retried bodyless request.
    #[project = RequestBodyProj]
    #[derive(Debug)]
    pub enum RequestBody {
        /// The client's body.
        Client {
            #[pin]
            inner: ClientBody,
            remaining: u64,
            progress: Option<Arc<SendProgress>>,
        },
        /// No body.
        Empty,
    }
}

impl RequestBody {
    /// Wraps the client's body; `limit` 0 means unlimited, as nginx. `progress`, if given,
    /// records how the upload moves (for `proxy_send_timeout`).
    pub fn client(
        inner: ClientBody,
        limit: u64,
        progress: Option<Arc<SendProgress>>,
    ) -> RequestBody {
        RequestBody::Client {
            inner,
            remaining: if limit == 0 { u64::MAX } else { limit },
            progress,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let RequestBodyProj::Client {
            inner,
            remaining,
            progress,
        } = self.project()
        else {
            return Poll::Ready(None);
        };
        let polled = inner.poll_frame(cx);
        if let Some(progress) = progress {
            progress.record(&polled);
        }
        let frame = match ready!(polled) {
            None => return Poll::Ready(None),
            Some(Err(error)) => return Poll::Ready(Some(Err(BodyError::Client(error)))),
            Some(Ok(frame)) => frame,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if len > *remaining {
                return Poll::Ready(Some(Err(BodyError::TooLarge)));
            }
            *remaining -= len;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Client { inner, .. } => inner.is_end_stream(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Client { inner, .. } => inner.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// How an upload to the upstream is moving, read by the `proxy_send_timeout` watchdog.
///
/// hyper asks the body for the next frame as soon as the previous one is written; when the
/// upstream stops reading, hyper stops asking. So "not asked for a while, and not waiting on the
/// client either" is exactly nginx's "the upstream accepted nothing for proxy_send_timeout".
#[derive(Debug)]
pub struct SendProgress {
    start: Instant,
    /// Milliseconds after `start` of the last frame handed to hyper.
    last_frame_ms: AtomicU64,
    /// The body is pending on the client (its slowness is not the upstream's fault).
    waiting_on_client: AtomicBool,
    /// The whole body was handed over.
    done: AtomicBool,
}

impl SendProgress {
    /// Tracking starts now.
    pub fn new() -> Arc<SendProgress> {
        Arc::new(SendProgress {
            start: Instant::now(),
            last_frame_ms: AtomicU64::new(0),
            waiting_on_client: AtomicBool::new(false),
            done: AtomicBool::new(false),
        })
    }

    fn record<T, E>(&self, polled: &Poll<Option<Result<T, E>>>) {
        let waiting = polled.is_pending();
        self.waiting_on_client.store(waiting, Ordering::Relaxed);
        if !waiting {
            let ms = self.start.elapsed().as_millis() as u64;
            self.last_frame_ms.store(ms, Ordering::Relaxed);
        }
        if matches!(polled, Poll::Ready(None)) {
            self.done.store(true, Ordering::Relaxed);
        }
    }

    /// True once the whole body was handed to hyper.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }

    /// True while the body waits for the client to send more.
    pub fn is_waiting_on_client(&self) -> bool {
        self.waiting_on_client.load(Ordering::Relaxed)
    }

    /// When hyper last took a frame (or tracking began).
    pub fn last_frame(&self) -> Instant {
        self.start + Duration::from_millis(self.last_frame_ms.load(Ordering::Relaxed))
    }
}

pin_project! {
    /// An upstream response body on its way to the client.
    #[derive(Debug)]
    pub struct UpstreamBody {
        #[pin]
        inner: Incoming,
        // `proxy_read_timeout` is the idle time between two reads, so an SSE stream or a slow
        // download that keeps moving is never cut. The timer is armed only while the body
        // waits for the upstream, from the moment it starts waiting (right after the last
        // frame went on): a small response that arrives whole never touches the timer wheel.
        #[pin]
        idle: Option<Sleep>,
        read_timeout: Duration,
        // `send_timeout` of the location: how long the client may leave this body unread.
        send_timeout: Duration,
        // The connection goes back to the pool only after the whole response was read; a body
        // dropped half-way takes the connection down with it (hyper closes it).
        keep_alive: Option<Sender>,
        guard: Option<ActiveGuard>,
    }
}

impl UpstreamBody {
    /// Streams `inner`, counting on `guard` until the end and returning `keep_alive` to the
    /// peer's pool if the response completes. `timeouts` are the location's
    /// `proxy_read_timeout` and `send_timeout`.
    pub fn new(
        inner: Incoming,
        timeouts: (Duration, Duration),
        keep_alive: Option<Sender>,
        guard: ActiveGuard,
    ) -> UpstreamBody {
        let (read_timeout, send_timeout) = timeouts;
        UpstreamBody {
            inner,
            idle: None,
            read_timeout,
            send_timeout,
            keep_alive,
            guard: Some(guard),
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.idle.set(None);
                if this.inner.is_end_stream() {
                    finish(this.keep_alive, this.guard);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                finish(this.keep_alive, this.guard);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                this.keep_alive.take();
                this.guard.take();
                Poll::Ready(Some(Err(BodyError::Hyper(error))))
            }
            Poll::Pending => {
                if this.idle.is_none() {
                    this.idle.set(Some(tokio::time::sleep(*this.read_timeout)));
                }
                if let Some(idle) = this.idle.as_pin_mut() {
                    ready!(idle.poll(cx));
                }
                this.keep_alive.take();
                this.guard.take();
                Poll::Ready(Some(Err(BodyError::ReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The response was read to its end: the connection may carry the next request.
fn finish(keep_alive: &mut Option<Sender>, guard: &mut Option<ActiveGuard>) {
    if let (Some(sender), Some(guard)) = (keep_alive.take(), guard.as_ref()) {
        guard.peer().pool.put(sender);
    }
    guard.take();
}

pin_project! {
    /// Every response body tether sends: a streamed upstream body, or a small one of its own.
    #[project = ResponseBodyProj]
    #[derive(Debug)]
    pub enum ResponseBody {
        /// Streamed from an upstream.
        Upstream { #[pin] body: UpstreamBody },
        /// Generated by tether (error pages, `return`).
        Full { data: Option<Bytes> },
    }
}

impl ResponseBody {
    /// A complete body.
    pub fn full(data: impl Into<Bytes>) -> ResponseBody {
        let data: Bytes = data.into();
        ResponseBody::Full {
            data: (!data.is_empty()).then_some(data),
        }
    }

    /// No body.
    pub fn empty() -> ResponseBody {
        ResponseBody::Full { data: None }
    }

    /// How long the client may leave this body unread (`send_timeout` of the location that
    /// proxied it); None for tether's own answers, which use the http-level value.
    pub fn send_timeout(&self) -> Option<Duration> {
        match self {
            ResponseBody::Upstream { body } => Some(body.send_timeout),
            ResponseBody::Full { .. } => None,
        }
    }
}

impl From<UpstreamBody> for ResponseBody {
    fn from(body: UpstreamBody) -> ResponseBody {
        ResponseBody::Upstream { body }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.project() {
            ResponseBodyProj::Upstream { body } => body.poll_frame(cx),
            ResponseBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Upstream { body } => body.is_end_stream(),
            ResponseBody::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Upstream { body } => body.size_hint(),
            ResponseBody::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
