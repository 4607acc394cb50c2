//! Upgrades: after a `101 Switching Protocols`, the client's connection (from tether's HTTP/1
//! server) and the upstream's (from hyper's client) are joined by a [`tunnel`](super::tunnel)
//! in a task of its own. A WebSocket over an HTTP/2 stream is the other kind of client side;
//! its task lives in [`extended_connect`](super::extended_connect) and shares the upstream's
//! unwrapping and the end-of-tunnel logging with this one.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::header;

use crate::stream::ClientStream;
use tokio::sync::oneshot;

use super::tunnel::{self, Outcome, Protocol};
use crate::drain::CloseSignal;
use crate::inflight::Token;
use crate::limits::ConnectionHolds;
use crate::peer::ActiveGuard;
use crate::proxy::origin::Connection;
use crate::telemetry::access_log::Record;

/// A client connection after its `101` was written: the socket, and the bytes already read
/// past the request head (a frame the client sent right behind its upgrade request).
#[derive(Debug)]
pub struct Upgraded {
    /// The client's socket.
    pub stream: ClientStream,
    /// Bytes read but not yet consumed.
    pub read_buf: Bytes,
}

/// The client's side of an upgrade it asked for: resolves once the HTTP/1 connection wrote the
/// `101` and let go of the socket (an error if it closed instead).
#[derive(Debug)]
pub struct ClientUpgrade(oneshot::Receiver<Upgraded>);

/// The HTTP/1 connection's side of a [`ClientUpgrade`].
#[derive(Debug)]
pub struct UpgradeSender(oneshot::Sender<Upgraded>);

impl ClientUpgrade {
    /// A connected pair.
    pub fn pair() -> (UpgradeSender, ClientUpgrade) {
        let (sender, receiver) = oneshot::channel();
        (UpgradeSender(sender), ClientUpgrade(receiver))
    }
}

impl UpgradeSender {
    /// Hands the socket over (dropped, so closed, if nobody waits for it any more).
    pub fn send(self, upgraded: Upgraded) {
        let _ = self.0.send(upgraded);
    }
}

impl Future for ClientUpgrade {
    type Output = Result<Upgraded, oneshot::error::RecvError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

/// What a `101` response switches to: a WebSocket when its `Upgrade` names one.
pub fn protocol_of(response: &HeaderMap) -> Protocol {
    let websocket = response
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("websocket"))
        });
    if websocket {
        Protocol::WebSocket
    } else {
        Protocol::Other
    }
}

/// The task that joins the two upgraded connections (spawn it: it outlives the request). The
/// tunnel closes once nothing moved either way for `idle_timeout`, and when `close` fires
/// (a stop or its server's drain; a WebSocket with close frames). `guard` keeps it counted on its peer and `open`
/// among tether's open tunnels until it ends.
///
/// Every idle WebSocket is one of these, so its size is most of tether's memory per
/// connection: a test keeps it in check.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would keep a copy of every argument beside the moved-in values"
)]
pub fn tunnel_task(
    client: ClientUpgrade,
    upstream: Box<Connection>,
    protocol: Protocol,
    idle_timeout: Duration,
    close: Arc<CloseSignal>,
    guard: ActiveGuard,
    book: TunnelBook,
) -> impl Future<Output = ()> + Send + 'static {
    async move {
        let client = match client.await {
            Ok(client) => client,
            Err(_) => {
                tracing::debug!("upgrade did not complete: the client's connection closed");
                return;
            }
        };
        // Built by a plain function: whatever it unpacks is gone before the await below, where
        // anything still in scope would be kept by every tunnel for its whole life.
        let tunnel = join(client, *upstream, protocol, idle_timeout, close);
        let ended = tunnel.await;
        book.close(ended, &guard);
        drop(guard);
    }
}

/// What is settled when a tunnel ends: its place among the open tunnels, and its access log
/// lines (status 101, or 200 over HTTP/2; the bytes each way; the tunnel's whole life).
#[derive(Debug)]
pub struct TunnelBook {
    /// Counts the tunnel as open.
    pub open: Token,
    /// The request's access log lines, if its location logs.
    pub log: Option<Box<Record>>,
    /// Its places in `limit_conn` zones: a WebSocket counts as a connection until it closes.
    /// Boxed: one pointer in every tunnel task, limited or not.
    pub holds: Option<Box<ConnectionHolds>>,
}

impl TunnelBook {
    /// Logs how the tunnel to `guard`'s peer ended, finishes its access log lines, and stops
    /// counting it.
    pub(super) fn close(self, ended: tunnel::Ended, guard: &ActiveGuard) {
        if let Some(mut log) = self.log {
            log.tunnel_ended(ended.to_upstream, ended.to_client);
            log.finish();
        }
        log_end(ended.outcome, guard);
        drop(self.open);
    }
}

/// Logs how a tunnel to `guard`'s peer ended.
pub(super) fn log_end(outcome: Outcome, guard: &ActiveGuard) {
    let address = &guard.peer().key.address;
    match outcome {
        Outcome::Closed => tracing::debug!(upstream = %address, "tunnel closed"),
        Outcome::Failed(error) => {
            tracing::debug!(%error, upstream = %address, "tunnel closed");
        }
        Outcome::Idle => {
            tracing::info!(upstream = %address, "tunnel idle for proxy_read_timeout, closed");
        }
        Outcome::Shutdown => {
            tracing::debug!(upstream = %address, "tunnel closed by a stop or drain")
        }
    }
}

/// The tunnel between the two upgraded connections, each with the bytes read past the
/// upgrade. The upstream's comes boxed, one pointer in every tunnel task until it is unpacked
/// here.
fn join(
    client: Upgraded,
    upstream: Connection,
    protocol: Protocol,
    idle_timeout: Duration,
    close: Arc<CloseSignal>,
) -> impl Future<Output = tunnel::Ended> + use<> {
    let (upstream, upstream_early) = upstream.into_parts();
    tunnel::run(
        client.stream,
        &client.read_buf,
        upstream,
        &upstream_early,
        protocol,
        idle_timeout,
        close,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten thousand idle WebSockets are ten thousand of these tasks: tokio stores each in a
    /// 128-byte-aligned cell with ~100 bytes of its own, so 592 bytes of future in a debug
    /// build is a 768-byte cell. Growing it past ~660 (a second timer, a value kept across the
    /// await) costs every tunnel. (The status page's start time and transport in the guard
    /// took it from 560 to 568, the access log's byte counts and line 24 more, the boxed
    /// `limit_conn` places 8 more; the tunnel's hand-written future, 592 to 544.)
    /// A connected upstream connection, as a `101` leaves it.
    async fn upstream_of_test() -> Box<Connection> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        Connection::new(stream.into())
    }

    #[tokio::test]
    async fn an_idle_tunnel_task_stays_small() {
        let registry = crate::peer::PeerRegistry::default();
        let key = crate::peer::PeerKey::new("g".into(), "127.0.0.1:1".into());
        let peer = registry.get_or_insert(key, vec![], 0);
        let inflight = std::sync::Arc::new(crate::inflight::Inflight::default());
        let task = tunnel_task(
            ClientUpgrade::pair().1,
            upstream_of_test().await,
            Protocol::WebSocket,
            Duration::from_secs(1),
            CloseSignal::under(&tokio_util::sync::CancellationToken::new()),
            peer.begin(),
            TunnelBook {
                open: inflight.enter(),
                log: None,
                holds: None,
            },
        );
        let size = std::mem::size_of_val(&task);
        assert!(size <= 600, "the tunnel task is {size} bytes");
    }

    #[test]
    fn websocket_is_told_by_the_upgrade_token() {
        let mut headers = HeaderMap::new();
        assert_eq!(protocol_of(&headers), Protocol::Other);
        headers.insert(header::UPGRADE, "WebSocket".parse().unwrap());
        assert_eq!(protocol_of(&headers), Protocol::WebSocket);
        headers.insert(header::UPGRADE, "h2c".parse().unwrap());
        assert_eq!(protocol_of(&headers), Protocol::Other);
    }
}
