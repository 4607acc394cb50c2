//! WebSockets over HTTP/2 (RFC 8441). A client opens a stream with an extended CONNECT
//! (`:protocol websocket`); tether carries it to the upstream as an ordinary HTTP/1.1 WebSocket
//! upgrade, answers the client `200` once the upstream answered `101`, and joins the HTTP/2
//! stream and the upstream's socket with the same [`tunnel`](super::tunnel) HTTP/1.1
//! WebSockets use — idle timeout, close frames on stop, counting on the peer and all.
//!
//! The handshake is made again toward the upstream: a fresh `Sec-WebSocket-Key` goes up and the
//! upstream's `Sec-WebSocket-Accept` is checked against it (the client never sees either: RFC
//! 8441 has no key). `Sec-WebSocket-Protocol` and `-Extensions` pass through both ways, so a
//! subprotocol or permessage-deflate is agreed between the client and the upstream, and frames
//! cross untouched.
//!
//! Names hyper and `http` types; knows nothing of `server` but the [`StreamHold`] it is given.

use std::sync::Arc;
use std::time::Duration;

use crate::drain::CloseSignal;

use http::header::{self, HeaderValue};
use http::{Method, StatusCode};

use crate::header_list::HeaderList;
use crate::proxy::request::{Parts, Request};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::error::ProxyError;
use super::tunnel::{self, Protocol};
use super::upgrade;
use crate::peer::ActiveGuard;
use crate::proxy::origin::Connection;

/// Something the HTTP/2 server attaches to a CONNECT request (as a request extension) and wants
/// kept alive for as long as the tunnel the stream becomes: its count of the stream, so the
/// connection is not taken for idle — and closed — under a WebSocket that is still open.
#[derive(Clone)]
pub struct StreamHold {
    /// Never read: kept for its drop.
    _held: Arc<dyn Send + Sync>,
}

impl StreamHold {
    /// Holds `held` until the stream's tunnel ends (or the request is done, if it never
    /// becomes one).
    pub fn new<T: Send + Sync + 'static>(held: T) -> StreamHold {
        StreamHold {
            _held: Arc::new(held),
        }
    }
}

impl std::fmt::Debug for StreamHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamHold")
    }
}

/// True when a CONNECT request is an extended CONNECT for a WebSocket (`:protocol websocket`,
/// which hyper hands over as its `Protocol` extension). A plain CONNECT or any other protocol
/// is not: tether is no forward proxy.
pub fn is_websocket<B>(request: &Request<B>) -> bool {
    request
        .extensions()
        .get::<hyper::ext::Protocol>()
        .is_some_and(|protocol| protocol.as_str().eq_ignore_ascii_case("websocket"))
}

/// Gives the request the headers of the HTTP/1.1 upgrade it becomes, so that variables read
/// what they would for one: `$http_upgrade` is `websocket` and `$http_connection` is
/// `upgrade`, and the usual `proxy_set_header Upgrade $http_upgrade;` / `Connection
/// $connection_upgrade` lines (SignalR's, socket.io's) ask the upstream for the upgrade as
/// they do for an HTTP/1.1 client. An HTTP/2 client cannot have sent either header itself
/// (they are connection-specific, which HTTP/2 forbids).
pub fn present_as_upgrade(headers: &mut HeaderList) {
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
}

/// The client's side of one WebSocket over HTTP/2 while it is being proxied.
#[derive(Debug)]
pub struct Http2WebSocket {
    /// The stream, once hyper has sent our `200` on it.
    stream: OnUpgrade,
    /// The server's count of the stream (see [`StreamHold`]).
    hold: Option<StreamHold>,
    /// The `Sec-WebSocket-Key` sent upstream.
    key: HeaderValue,
}

impl Http2WebSocket {
    /// Takes the stream's upgrade handle and hold out of the client's CONNECT request.
    pub fn take<B>(request: &mut Request<B>) -> Http2WebSocket {
        // hyper takes its handle out of an `http::Request`'s extensions: lent them for that.
        let mut lent = http::Request::new(());
        *lent.extensions_mut() = std::mem::take(request.extensions_mut());
        let stream = hyper::upgrade::on(&mut lent);
        *request.extensions_mut() = std::mem::take(lent.extensions_mut());
        let hold = request.extensions_mut().remove::<StreamHold>();
        // base64 of 16 random bytes: always a valid header value.
        let key = HeaderValue::from_str(&generate_key())
            .unwrap_or_else(|_| HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="));
        Http2WebSocket { stream, hold, key }
    }

    /// Turns the upstream request (headers already rewritten, `Upgrade` and `Connection`
    /// among them) into an HTTP/1.1 WebSocket handshake: a GET with our key.
    pub fn prepare(&self, parts: &mut Parts) {
        parts.method = Method::GET;
        parts
            .headers
            .insert(header::SEC_WEBSOCKET_KEY, self.key.clone());
        // RFC 8441 has the client send it; one that did not still means version 13.
        if !parts.headers.contains_key(header::SEC_WEBSOCKET_VERSION) {
            parts.headers.append(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
    }

    /// Reads the upstream's answer to the handshake. A `101` with the right
    /// `Sec-WebSocket-Accept` becomes the client's `200` (true: join the two). Any other
    /// refusal goes to the client as it is (false). A `2xx` is no upgrade, yet would read as
    /// one to an HTTP/2 client, so it is a bad gateway — as is a `101` that does not answer our
    /// key.
    pub fn accept(&self, parts: &mut http::response::Parts) -> Result<bool, ProxyError> {
        if parts.status.is_success() {
            return Err(ProxyError::UpstreamStatus(parts.status.as_u16()));
        }
        if parts.status != StatusCode::SWITCHING_PROTOCOLS {
            return Ok(false);
        }
        let accept = parts.headers.remove(header::SEC_WEBSOCKET_ACCEPT);
        let expected = derive_accept_key(self.key.as_bytes());
        let answers_our_key = accept.is_some_and(|accept| accept.as_bytes() == expected.as_bytes());
        if !answers_our_key || upgrade::protocol_of(&parts.headers) != Protocol::WebSocket {
            return Err(ProxyError::UpstreamHandshake);
        }
        // `Upgrade` and `Connection` go with the other hop-by-hop headers.
        parts.status = StatusCode::OK;
        Ok(true)
    }

    /// The task that joins the stream and the upstream's upgraded connection (spawn it), with
    /// [`upgrade::tunnel_task`]'s rules: closed after `idle_timeout` of silence both ways or on
    /// `close` (with close frames), counted on its peer by `guard` and among open tunnels
    /// by `open`.
    ///
    /// Not an async fn: that would keep a copy of every argument beside the moved-in values.
    pub fn tunnel_task(
        self,
        upstream: Box<Connection>,
        idle_timeout: Duration,
        close: Arc<CloseSignal>,
        guard: ActiveGuard,
        book: upgrade::TunnelBook,
    ) -> impl Future<Output = ()> + Send + 'static {
        let Http2WebSocket { stream, hold, .. } = self;
        async move {
            let client = match stream.await {
                Ok(client) => client,
                Err(error) => {
                    tracing::debug!(%error, "HTTP/2 WebSocket did not complete its upgrade");
                    return;
                }
            };
            let tunnel = join(client, *upstream, idle_timeout, close);
            book.close(tunnel.await, &guard);
            drop(guard);
            drop(hold);
        }
    }
}

/// The tunnel between the HTTP/2 stream (hyper's, behind its `Upgraded`: nothing was read past
/// a CONNECT's head) and the upstream's bare socket.
fn join(
    client: hyper::upgrade::Upgraded,
    upstream: Connection,
    idle_timeout: Duration,
    close: Arc<CloseSignal>,
) -> impl Future<Output = tunnel::Ended> + use<> {
    let (upstream, upstream_early) = upstream.into_parts();
    tunnel::run(
        TokioIo::new(client),
        &[],
        upstream,
        &upstream_early,
        Protocol::WebSocket,
        idle_timeout,
        close,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn websocket() -> Http2WebSocket {
        Http2WebSocket::take(&mut Request::<()>::default())
    }

    fn answer(status: u16, headers: &[(&str, &str)]) -> http::response::Parts {
        let mut response = http::Response::builder().status(status);
        for (name, value) in headers {
            response = response.header(*name, *value);
        }
        response.body(()).unwrap().into_parts().0
    }

    #[test]
    fn only_a_101_that_answers_our_key_opens_the_tunnel() {
        let ws = websocket();
        let accept = derive_accept_key(ws.key.as_bytes());
        let mut good = answer(
            101,
            &[
                ("upgrade", "websocket"),
                ("sec-websocket-accept", &accept),
                ("sec-websocket-protocol", "chat"),
            ],
        );
        assert!(ws.accept(&mut good).unwrap());
        assert_eq!(good.status, StatusCode::OK);
        assert!(!good.headers.contains_key("sec-websocket-accept"));
        assert_eq!(good.headers["sec-websocket-protocol"], "chat");

        let mut wrong_key = answer(
            101,
            &[("upgrade", "websocket"), ("sec-websocket-accept", "nope")],
        );
        assert!(matches!(
            ws.accept(&mut wrong_key),
            Err(ProxyError::UpstreamHandshake)
        ));
        let mut not_websocket = answer(
            101,
            &[("upgrade", "h2c"), ("sec-websocket-accept", &accept)],
        );
        assert!(ws.accept(&mut not_websocket).is_err());
        // A 200 would read as an accepted CONNECT: it is a bad gateway instead.
        assert!(ws.accept(&mut answer(200, &[])).is_err());
        // A refusal passes as it is.
        let mut refused = answer(403, &[]);
        assert!(!ws.accept(&mut refused).unwrap());
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
    }

    #[test]
    fn each_stream_gets_a_fresh_key_and_the_upstream_a_get() {
        let (a, b) = (websocket(), websocket());
        assert_ne!(a.key, b.key);
        let mut parts = Parts {
            method: Method::CONNECT,
            uri: "http://h/ws".parse().unwrap(),
            ..Parts::default()
        };
        a.prepare(&mut parts);
        assert_eq!(parts.method, Method::GET);
        assert_eq!(parts.headers.get("sec-websocket-key").unwrap(), a.key);
        assert_eq!(parts.headers.get("sec-websocket-version").unwrap(), "13");
    }
}
