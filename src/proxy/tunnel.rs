//! tether's bidirectional copy for upgraded connections (WebSocket and other `101` protocols).
//!
//! Like `tokio::io::copy_bidirectional` — bytes both ways, half-close passed on, backpressure —
//! with three differences that a long-lived tunnel farm needs:
//! - an idle tunnel holds no buffer (see `half`): ten thousand quiet WebSockets cost no copy
//!   buffers at all;
//! - `proxy_read_timeout` counts silence in *both* directions, so a WebSocket that keeps
//!   talking either way is never cut;
//! - told to close (a stop, or its server's drain: `crate::drain`), a WebSocket ends with a
//!   close frame to each peer — `1001 Going Away` for a stop, `1012 Service Restart` for a
//!   drain — where that direction is between frames (`frames` follows the boundaries), instead
//!   of a bare reset.
//!
//! Generic over plain `AsyncRead + AsyncWrite`, so it is tested on in-memory pipes; `upgrade`
//! is the hyper side.

mod frames;
mod half;
mod side;
#[cfg(test)]
mod tests;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep, sleep_until};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::drain::CloseSignal;

use half::{Half, Toward};
pub use side::Side;

/// How long a shutting-down WebSocket tunnel waits for its peers to take the close frames and
/// answer before it is dropped: short, as shutdown is waiting.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The longest idle timeout honoured: a config may say `proxy_read_timeout 99999999999999`,
/// and a deadline past what `Instant` holds would panic instead of meaning "never".
const MAX_IDLE: Duration = Duration::from_secs(365 * 86_400);

/// What the upgraded connection speaks, as far as a tunnel cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// RFC 6455: frames are followed so shutdown can send close frames.
    WebSocket,
    /// Anything else: bytes only; shutdown just closes.
    Other,
}

/// Why a tunnel ended.
#[derive(Debug)]
pub enum Outcome {
    /// Both sides finished their writes.
    Closed,
    /// Nothing moved either way for the idle timeout.
    Idle,
    /// Its close signal ended it (a stop, or its server's drain).
    Shutdown,
    /// Reading or writing failed.
    Failed(io::Error),
}

/// How a tunnel ended, and what went through it (the access log's line of it).
#[derive(Debug)]
pub struct Ended {
    /// Why it ended.
    pub outcome: Outcome,
    /// Bytes written to the upstream.
    pub to_upstream: u64,
    /// Bytes written to the client.
    pub to_client: u64,
}

/// Copies between `client` and `upstream` until both are done, one fails, nothing moved for
/// `idle_timeout`, or `close` fires. `client_early` and `upstream_early` are what each
/// side sent right behind the upgrade, already read along with it: the other side gets them
/// first.
pub fn run<C, U>(
    client: C,
    client_early: &[u8],
    upstream: U,
    upstream_early: &[u8],
    protocol: Protocol,
    idle_timeout: Duration,
    close: Arc<CloseSignal>,
) -> impl Future<Output = Ended> + use<C, U>
where
    C: Side + AsyncWrite,
    U: Side + AsyncWrite,
{
    // Built here and handed over whole: an async fn taking the two connections would keep
    // them both as arguments and again inside the tunnel, for as long as the tunnel lives.
    let mut tunnel = Tunnel::new(client, upstream, protocol);
    tunnel.to_upstream.preload(client_early);
    tunnel.to_client.preload(upstream_early);
    let idle_timeout = idle_timeout.min(MAX_IDLE);
    Drive {
        timer: sleep_until(tunnel.moved + idle_timeout),
        closed: close.closed_owned(),
        tunnel,
        close,
        idle_timeout,
        watching: false,
        closing: false,
    }
}

pin_project! {
    /// A tunnel at work: copying until it ends, goes idle or is told to close, then closing.
    /// A future of its own rather than an async block: it keeps its waits as fields, where an
    /// async block would keep them and, beside them, a reference to each for the closure that
    /// polls them — in every idle tunnel.
    struct Drive<C, U> {
        tunnel: Tunnel<C, U>,
        // One timer serves the idle timeout and then, on shutdown, the close grace: every idle
        // tunnel carries this future, and a second timer would be another ~110 bytes of each.
        #[pin]
        timer: Sleep,
        #[pin]
        closed: WaitForCancellationFutureOwned,
        close: Arc<CloseSignal>,
        idle_timeout: Duration,
        // The timer and the close wait were polled and hold the task's waker until they fire,
        // so a wake-up for bytes (nearly all of them) asks each with one load or one lock
        // instead of polling it again: a poll is a budget check, a waker compare and, for the
        // close wait, two locks — about a sixth of a message's instructions in an echo. The
        // tunnel is spawned as a task of its own, so the waker is always that task's.
        watching: bool,
        // Told to close: the close frames are on their way, the timer counts the grace.
        closing: bool,
    }
}

impl<C, U> Future for Drive<C, U>
where
    C: Side + AsyncWrite,
    U: Side + AsyncWrite,
{
    type Output = Ended;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ended> {
        let mut this = self.project();
        if *this.closing {
            return poll_closing(this.tunnel, this.timer, cx);
        }
        if let Poll::Ready(result) = this.tunnel.poll(cx) {
            let outcome = match result {
                Ok(()) => Outcome::Closed,
                Err(error) => Outcome::Failed(error),
            };
            return Poll::Ready(this.tunnel.ended(outcome));
        }
        let watching = std::mem::replace(this.watching, true);
        if (!watching || this.close.is_closed()) && this.closed.poll(cx).is_ready() {
            if !this.tunnel.to_client.follows_frames() {
                return Poll::Ready(this.tunnel.ended(Outcome::Shutdown));
            }
            this.tunnel.begin_close(this.close.reason().code());
            this.timer.as_mut().reset(Instant::now() + CLOSE_GRACE);
            *this.closing = true;
            // The close frames go out now; the timer is polled there, and so registered.
            return poll_closing(this.tunnel, this.timer, cx);
        }
        if !watching || this.timer.is_elapsed() {
            while this.timer.as_mut().poll(cx).is_ready() {
                // The timer is armed from the last movement it knew of; re-arm it from the
                // latest one rather than resetting it on every byte.
                let deadline = this.tunnel.moved + *this.idle_timeout;
                if deadline <= Instant::now() {
                    return Poll::Ready(this.tunnel.ended(Outcome::Idle));
                }
                this.timer.as_mut().reset(deadline);
            }
        }
        Poll::Pending
    }
}

/// One step of the close: done when both directions are, or when the grace is over (past it,
/// the peers are dropped whatever they were doing).
fn poll_closing<C, U>(
    tunnel: &mut Tunnel<C, U>,
    timer: Pin<&mut Sleep>,
    cx: &mut Context<'_>,
) -> Poll<Ended>
where
    C: Side + AsyncWrite,
    U: Side + AsyncWrite,
{
    if tunnel.poll(cx).is_ready() || timer.poll(cx).is_ready() {
        return Poll::Ready(tunnel.ended(Outcome::Shutdown));
    }
    Poll::Pending
}

/// The two connections and the two directions between them.
struct Tunnel<C, U> {
    client: C,
    upstream: U,
    to_upstream: Half,
    to_client: Half,
    /// When a byte last moved, either way.
    moved: Instant,
}

impl<C, U> Tunnel<C, U>
where
    C: Side + AsyncWrite,
    U: Side + AsyncWrite,
{
    fn new(client: C, upstream: U, protocol: Protocol) -> Self {
        let websocket = protocol == Protocol::WebSocket;
        Tunnel {
            client,
            upstream,
            to_upstream: Half::new(Toward::Upstream, websocket),
            to_client: Half::new(Toward::Client, websocket),
            moved: Instant::now(),
        }
    }

    fn ended(&self, outcome: Outcome) -> Ended {
        Ended {
            outcome,
            to_upstream: self.to_upstream.written(),
            to_client: self.to_client.written(),
        }
    }

    fn begin_close(&mut self, code: u16) {
        self.to_upstream.begin_close(code);
        self.to_client.begin_close(code);
    }

    /// Drives both directions; ready when both are done or either fails.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let up =
            self.to_upstream
                .poll(cx, &mut self.client, &mut self.upstream, &mut self.moved)?;
        let down =
            self.to_client
                .poll(cx, &mut self.upstream, &mut self.client, &mut self.moved)?;
        if up.is_ready() && down.is_ready() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}
