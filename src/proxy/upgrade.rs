//! Tunnels: after a `101 Switching Protocols`, the client's and the upstream's connections are
//! joined and bytes copied both ways until either side closes — or until nothing moved in either
//! direction for `proxy_read_timeout`, so a WebSocket that keeps talking is never cut.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, sleep_until};

use crate::peer::ActiveGuard;

/// Joins the two upgraded connections in a task of its own; `guard` keeps the tunnel counted
/// on its peer until it ends.
pub fn spawn_tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    idle_timeout: Duration,
    guard: ActiveGuard,
) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "upgrade did not complete");
                return;
            }
        };
        let activity = Activity::new();
        let mut client = Tracked::new(TokioIo::new(client), &activity);
        let mut upstream = Tracked::new(TokioIo::new(upstream), &activity);
        tokio::select! {
            result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Err(error) = result {
                    tracing::debug!(%error, upstream = %guard.peer().key.address, "tunnel closed");
                }
            }
            () = activity.idle_for(idle_timeout) => {
                tracing::info!(upstream = %guard.peer().key.address, "tunnel idle for proxy_read_timeout, closed");
            }
        }
        drop(guard);
    });
}

/// When bytes last moved through a tunnel, in either direction.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Completes once nothing moved for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let deadline = self.last() + timeout;
            if deadline <= Instant::now() {
                return;
            }
            sleep_until(deadline).await;
        }
    }
}

/// An I/O object that records every successful read in an [`Activity`].
struct Tracked<'a, T> {
    io: T,
    activity: &'a Activity,
}

impl<'a, T> Tracked<'a, T> {
    fn new(io: T, activity: &'a Activity) -> Self {
        Tracked { io, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<'_, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<'_, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
