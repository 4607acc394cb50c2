//! Serving an HTTP/2 connection (prior knowledge) with hyper, plus the limits hyper leaves to
//! its user:
//!
//! - an idle connection — no stream open — is closed with GOAWAY after `keepalive_timeout`, and
//!   one that never opens a stream after `client_header_timeout` (a preface and an empty
//!   SETTINGS frame must not hold a connection for ever);
//! - the ceiling may shed it while no stream is open, and a retired listener's connections
//!   finish their streams and go (GOAWAY);
//! - `send_timeout`, twice: a client that stops reading the socket stalls every write
//!   ([`StallIo`] fails the connection), and a client that reads the socket but never opens a
//!   stream's flow-control window leaves that one stream stuck ([`SendWatch`] resets it and
//!   lets its upstream connection go).
//!
//! It also takes WebSockets by extended CONNECT (RFC 8441; `SETTINGS_ENABLE_CONNECT_PROTOCOL`
//! is advertised, the proxy does the rest). Such a stream outlives its request as a tunnel: it
//! is counted open (the connection is not idle under it), and a connection told to go with
//! nothing but tunnels left steps out of the count of connections, as an HTTP/1 connection
//! does once its socket became a tunnel, and lives on in a task of its own until they end.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::stream::ClientStream;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, Request};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep, sleep_until};

use super::ceiling::ConnSlot;
use crate::proxy::body::BodyError;
use crate::proxy::extended_connect::StreamHold;
use crate::proxy::{self, ClientBody, ConnInfo, ResponseBody};
use crate::snapshot::Snapshot;

/// How long a connection that was sent GOAWAY and has no stream left may take to close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Serves one HTTP/2 connection until the client or the limits end it. `read` holds what was
/// read of it already (the sniff's first read, the preface at least): hyper reads it first.
pub async fn serve(
    stream: ClientStream,
    read: Bytes,
    info: Arc<ConnInfo>,
    live: Arc<ArcSwap<Snapshot>>,
    slot: &ConnSlot,
) {
    let settings = live.load().client;
    let streams = Arc::new(Streams::default());
    let service = {
        let streams = streams.clone();
        service_fn(move |mut request: Request<Incoming>| {
            let open = streams.open();
            // A CONNECT may become a tunnel: the proxy keeps this for as long as it lasts.
            if request.method() == Method::CONNECT {
                let hold = StreamHold::new(streams.tunnel());
                request.extensions_mut().insert(hold);
            }
            let request = proxy::request::Request::from(request.map(ClientBody::http2));
            // Boxed: the proxy's future is large (kilobytes), and hyper moves each stream's
            // future into a task of its own and tokio moves it again while spawning — copies
            // that cost more than the rest of a small request. A box makes them a pointer.
            let response = Box::pin(proxy::serve(request, None, info.clone(), live.load_full()));
            async move {
                let mut response = response.await;
                // `return 444`: the stream is reset (hyper resets it with INTERNAL_ERROR when
                // the service fails), nothing answered.
                if response
                    .extensions()
                    .get::<proxy::CloseWithoutAnswer>()
                    .is_some()
                {
                    return Err(std::io::Error::other("return 444"));
                }
                // The HTTP/1 writer writes the default `Server` itself; here it goes in the map.
                proxy::reply_headers::default_server(response.headers_mut());
                let progress = StreamProgress::of_this_stream();
                // A proxied response carries its location's send_timeout; tether's own answers
                // keep the http-level one the watch started with.
                if let (Some(progress), Some(timeout)) = (&progress, response.body().send_timeout())
                {
                    progress.set_timeout(timeout);
                }
                Ok::<_, std::io::Error>(response.map(|body| StreamBody {
                    inner: body,
                    progress,
                    _open: open,
                }))
            }
        })
    };
    let io = TokioIo::new(StallIo::new(stream, read, settings.send_timeout));
    // Boxed: HTTP/2 by prior knowledge is the rare case here, and its connection state
    // (1.5 KB) inline would size every connection's task for it.
    let mut connection = Box::pin(
        http2::Builder::new(StreamExecutor {
            send_timeout: settings.send_timeout,
        })
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .serve_connection(io, service),
    );
    let mut idle_since = Instant::now();
    let mut idle_limit = settings.header_timeout;
    let mut was_idle = true;
    // Set once GOAWAY went out: by then the connection is dropped as soon as it has no stream
    // left for CLOSE_GRACE (hyper's graceful close also waits for the client to answer a
    // PING, which a hostile client never does).
    let mut closing: Option<Instant> = None;
    loop {
        if closing.is_some() && streams.only_tunnels() {
            tokio::spawn(finish_tunnels(connection, streams));
            return;
        }
        // Registered before the count is read: a change in between wakes the next wait.
        let changed = streams.changed.notified();
        let idle = streams.count() == 0;
        if idle && !was_idle {
            idle_since = Instant::now();
            idle_limit = settings.keepalive_timeout;
            slot.idle();
        } else if !idle && was_idle {
            slot.busy();
        }
        was_idle = idle;
        let drop_at = closing.map(|since| since.max(idle_since) + CLOSE_GRACE);
        // Retired: finish the streams in hand (GOAWAY). Shed: only with none open.
        let told_to_go = std::future::poll_fn(|cx| {
            let told = slot.poll_told(cx);
            if told.retired || (idle && told.shed) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "HTTP/2 client connection ended with an error");
                }
                return;
            }
            () = changed => {}
            () = sleep_until(idle_since + idle_limit), if idle && closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            () = told_to_go, if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            () = sleep_until(drop_at.unwrap_or_else(Instant::now)), if idle && drop_at.is_some() => {
                tracing::debug!("HTTP/2 client did not close after GOAWAY; dropped");
                return;
            }
        }
    }
}

/// A connection that was sent GOAWAY while WebSockets (tunnels) were still open on it, served
/// apart from its place in the count of connections: until its last stream ended and
/// [`CLOSE_GRACE`] passed (or the client closed). The tunnels end by themselves — closed by
/// their peers, idle, or by a stop's close frames, which this keeps flowing.
async fn finish_tunnels<C>(mut connection: Pin<Box<C>>, streams: Arc<Streams>)
where
    C: Future,
{
    loop {
        let changed = streams.changed.notified();
        let idle = streams.count() == 0;
        tokio::select! {
            _ = connection.as_mut() => return,
            () = changed => {}
            () = tokio::time::sleep(CLOSE_GRACE), if idle => return,
        }
    }
}

/// The streams open on one connection, so the connection knows when it is idle.
#[derive(Debug, Default)]
struct Streams {
    /// Every open stream, tunnels included.
    open: AtomicUsize,
    /// Streams that may be (or have become) tunnels: CONNECT requests.
    tunnels: AtomicUsize,
    changed: Notify,
}

impl Streams {
    fn open(self: &Arc<Self>) -> OpenStream {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
        OpenStream {
            streams: self.clone(),
        }
    }

    /// Counts one more CONNECT stream, which may become a tunnel, until the guard is dropped.
    fn tunnel(self: &Arc<Self>) -> TunnelStream {
        let open = self.open();
        self.tunnels.fetch_add(1, Ordering::AcqRel);
        TunnelStream { open }
    }

    fn count(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// True when streams are open and all of them are tunnels (no request in hand).
    fn only_tunnels(&self) -> bool {
        let tunnels = self.tunnels.load(Ordering::Acquire);
        tunnels > 0 && self.count() == tunnels
    }
}

/// A CONNECT stream, counted open (and as a tunnel) until the tunnel it became ends.
#[derive(Debug)]
struct TunnelStream {
    open: OpenStream,
}

impl Drop for TunnelStream {
    fn drop(&mut self) {
        // Before `open` drops, so `only_tunnels` never sees more tunnels than streams.
        self.open.streams.tunnels.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One open stream: counted from its request until its response body is done with.
#[derive(Debug)]
struct OpenStream {
    streams: Arc<Streams>,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        if self.streams.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.streams.changed.notify_one();
        }
    }
}

pin_project! {
    /// A response body on an HTTP/2 stream: counts the stream open until it is dropped, and
    /// tells the stream's [`SendWatch`] when it handed data to hyper.
    struct StreamBody {
        #[pin]
        inner: ResponseBody,
        progress: Option<Arc<StreamProgress>>,
        _open: OpenStream,
    }
}

impl Body for StreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Some(progress) = this.progress {
            match &polled {
                Poll::Ready(Some(Ok(frame))) if frame.data_ref().is_some_and(|d| !d.is_empty()) => {
                    progress.handed();
                }
                _ => progress.asked(),
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a stream's body is stuck on the client: data was handed to hyper, and hyper has not
/// asked for more since (it waits for the client to open the stream's window).
#[derive(Debug)]
struct StreamProgress {
    epoch: Instant,
    /// Milliseconds after `epoch` (+1) when data was handed and not yet followed by an ask;
    /// 0 while hyper keeps asking.
    handed_ms: AtomicU64,
    /// The body found this progress (the watch then stops offering it).
    attached: AtomicBool,
    /// The stream's `send_timeout` in milliseconds, once its location is known (0: the
    /// watch's http-level default).
    timeout_ms: AtomicU64,
}

thread_local! {
    /// The progress of the stream whose task is being polled on this thread, offered to the
    /// response body it builds (the body is made inside the stream's task, which hyper spawns
    /// itself, so this is the one way to reach it).
    static OFFERED: RefCell<Option<Arc<StreamProgress>>> = const { RefCell::new(None) };
}

impl StreamProgress {
    fn new() -> Arc<StreamProgress> {
        Arc::new(StreamProgress {
            epoch: Instant::now(),
            handed_ms: AtomicU64::new(0),
            attached: AtomicBool::new(false),
            timeout_ms: AtomicU64::new(0),
        })
    }

    /// The progress of the stream task running this, if any.
    fn of_this_stream() -> Option<Arc<StreamProgress>> {
        let progress = OFFERED.with(|offered| offered.borrow().clone())?;
        progress.attached.store(true, Ordering::Relaxed);
        Some(progress)
    }

    fn handed(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64 + 1;
        self.handed_ms.store(ms, Ordering::Relaxed);
    }

    fn asked(&self) {
        self.handed_ms.store(0, Ordering::Relaxed);
    }

    fn set_timeout(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.timeout_ms.store(ms, Ordering::Relaxed);
    }

    /// The stream's own `send_timeout`, if its location gave one.
    fn timeout(&self) -> Option<Duration> {
        match self.timeout_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Since when data waits on the client, if it does.
    fn stuck_since(&self) -> Option<Instant> {
        match self.handed_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.epoch + Duration::from_millis(ms - 1)),
        }
    }
}

/// Spawns hyper's per-stream tasks inside a [`SendWatch`].
#[derive(Clone, Copy, Debug)]
struct StreamExecutor {
    send_timeout: Duration,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(SendWatch {
            inner: future,
            progress: StreamProgress::new(),
            deadline: None,
            timeout: self.send_timeout,
        });
    }
}

pin_project! {
    /// One stream's task, ended (so hyper resets the stream and the upstream connection is
    /// let go) when its response has waited on the client's flow-control window for
    /// `send_timeout`.
    struct SendWatch<F> {
        #[pin]
        inner: F,
        progress: Arc<StreamProgress>,
        #[pin]
        deadline: Option<Sleep>,
        timeout: Duration,
    }
}

impl<F: Future> Future for SendWatch<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let offer = !this.progress.attached.load(Ordering::Relaxed);
        let previous = offer.then(|| OFFERED.with(|o| o.replace(Some(this.progress.clone()))));
        let polled = this.inner.poll(cx);
        if let Some(previous) = previous {
            OFFERED.with(|o| *o.borrow_mut() = previous);
        }
        if polled.is_ready() {
            return Poll::Ready(());
        }
        let Some(since) = this.progress.stuck_since() else {
            this.deadline.set(None);
            return Poll::Pending;
        };
        let due = since + this.progress.timeout().unwrap_or(*this.timeout);
        match this.deadline.as_mut().as_pin_mut() {
            Some(sleep) if sleep.deadline() == due => {}
            Some(sleep) => sleep.reset(due),
            None => this.deadline.set(Some(sleep_until(due))),
        }
        if let Some(sleep) = this.deadline.as_mut().as_pin_mut()
            && sleep.poll(cx).is_ready()
        {
            tracing::info!(
                "HTTP/2 stream reset: the client left its window closed for send_timeout"
            );
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// The client's socket, failing a write that has waited `send_timeout` for the client to
/// read (the connection then ends, and every stream's upstream with it).
struct StallIo {
    io: ClientStream,
    /// Read before hyper took the connection (the sniff's first read): given to hyper first.
    read: Bytes,
    /// Boxed: hyper wants its IO `Unpin`. Not registered with the timer until a write first
    /// waits.
    stall: Pin<Box<Sleep>>,
    timeout: Duration,
    armed: bool,
}

impl StallIo {
    fn new(io: ClientStream, read: Bytes, timeout: Duration) -> StallIo {
        StallIo {
            io,
            read,
            stall: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            armed: false,
        }
    }

    /// Passes a write's outcome on; a pending one starts (or checks) the stall clock.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.armed = false;
            return polled;
        }
        if !self.armed {
            self.armed = true;
            self.stall.as_mut().reset(Instant::now() + self.timeout);
        }
        if self.stall.as_mut().poll(cx).is_ready() {
            tracing::info!(
                "HTTP/2 client timed out (110: Connection timed out) while sending response to client (send_timeout)"
            );
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        Poll::Pending
    }
}

impl AsyncRead for StallIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read[..n]);
            if n == self.read.len() {
                // Emptied: an empty slice of it would keep the sniff's whole buffer alive.
                self.read = Bytes::new();
            } else {
                self.read = self.read.slice(n..);
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stream_stuck_on_the_client_ends_after_send_timeout_and_a_moving_one_does_not() {
        let timeout = Duration::from_secs(10);
        // A stream that handed data once and was never asked again: stuck.
        let stuck = SendWatch {
            inner: std::future::pending::<()>(),
            progress: StreamProgress::new(),
            deadline: None,
            timeout,
        };
        stuck.progress.handed();
        let started = Instant::now();
        stuck.await;
        assert_eq!(started.elapsed(), timeout);

        // A stream waiting on its upstream (asked, nothing handed) is left alone.
        let waiting = SendWatch {
            inner: std::future::pending::<()>(),
            progress: StreamProgress::new(),
            deadline: None,
            timeout,
        };
        waiting.progress.asked();
        let ended = tokio::time::timeout(timeout * 3, waiting).await;
        assert!(ended.is_err(), "a stream waiting on its upstream was ended");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_takes_its_locations_send_timeout_over_the_http_level_one() {
        let stuck = SendWatch {
            inner: std::future::pending::<()>(),
            progress: StreamProgress::new(),
            deadline: None,
            timeout: Duration::from_secs(60),
        };
        stuck.progress.set_timeout(Duration::from_secs(2));
        stuck.progress.handed();
        let started = Instant::now();
        stuck.await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn the_body_of_a_stream_finds_its_watch() {
        let watch = SendWatch {
            inner: async { StreamProgress::of_this_stream() },
            progress: StreamProgress::new(),
            deadline: None,
            timeout: Duration::from_secs(1),
        };
        let progress = watch.progress.clone();
        let handle = tokio::spawn(async move {
            let mut watch = pin!(watch);
            std::future::poll_fn(|cx| watch.as_mut().poll(cx)).await;
        });
        handle.await.unwrap();
        assert!(progress.attached.load(Ordering::Relaxed));
        assert!(
            StreamProgress::of_this_stream().is_none(),
            "nothing offered outside a stream"
        );
    }
}
