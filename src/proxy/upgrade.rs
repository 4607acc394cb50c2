//! Upgrades: after a `101 Switching Protocols`, the client's and the upstream's connections are
//! taken from hyper and joined by a [`tunnel`](super::tunnel) in a task of its own.

use std::time::Duration;

use http::HeaderMap;
use http::header;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use super::tunnel::{self, Outcome, Protocol};
use crate::inflight::Token;
use crate::peer::ActiveGuard;

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

/// Joins the two upgraded connections in a task of its own. The tunnel closes once nothing
/// moved either way for `idle_timeout`, and when `shutdown` turns true (a WebSocket with close
/// frames). `guard` keeps it counted on its peer and `open` among tether's open tunnels until
/// it ends.
pub fn spawn_tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    protocol: Protocol,
    idle_timeout: Duration,
    shutdown: watch::Receiver<bool>,
    guard: ActiveGuard,
    open: Token,
) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "upgrade did not complete");
                return;
            }
        };
        let address = &guard.peer().key.address;
        let outcome = tunnel::run(
            TokioIo::new(client),
            TokioIo::new(upstream),
            protocol,
            idle_timeout,
            shutdown,
        )
        .await;
        match outcome {
            Outcome::Closed => tracing::debug!(upstream = %address, "tunnel closed"),
            Outcome::Failed(error) => {
                tracing::debug!(%error, upstream = %address, "tunnel closed");
            }
            Outcome::Idle => {
                tracing::info!(upstream = %address, "tunnel idle for proxy_read_timeout, closed");
            }
            Outcome::Shutdown => tracing::debug!(upstream = %address, "tunnel closed by shutdown"),
        }
        drop(guard);
        drop(open);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

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
