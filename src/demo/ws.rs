//! `GET /ws`: the WebSocket handshake done by hand over hyper's upgrade, then an echo.
//!
//! The server greets first (`hello from NAME`) so the page learns which app server it is
//! pinned to the moment the socket opens, then echoes text and binary messages unchanged.
//! Ping, pong and the closing handshake are tungstenite's job.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::watch,
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{Message, handshake::derive_accept_key, protocol::Role},
};

use super::reply::{Body, empty, text};
use super::state::{AppState, stopped};

/// Answers the upgrade request with 101 and spawns the echo on the upgraded connection.
pub(crate) fn upgrade(mut req: Request<Incoming>, state: &AppState) -> Response<Body> {
    let Some(key) = handshake_key(req.headers()) else {
        return text(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade\n");
    };
    // base64 is always a valid header value; the check keeps the request path panic-free.
    let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "bad accept key\n");
    };
    // Taken before answering: hyper hands the connection over once the 101 is written.
    let on_upgrade = hyper::upgrade::on(&mut req);
    let name = state.name.clone();
    let stop = state.stop.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = TokioIo::new(upgraded);
                let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                echo(ws, name, stop).await;
            }
            Err(error) => tracing::debug!(%error, "WebSocket upgrade failed"),
        }
    });

    let mut response = empty(StatusCode::SWITCHING_PROTOCOLS);
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// The client's `Sec-WebSocket-Key`, if this is a well-formed version 13 upgrade request.
fn handshake_key(headers: &HeaderMap) -> Option<&str> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .any(|item| item.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    let version = headers.get(header::SEC_WEBSOCKET_VERSION)?;
    if !has_token(header::UPGRADE, "websocket")
        || !has_token(header::CONNECTION, "upgrade")
        || version.as_bytes() != b"13"
    {
        return None;
    }
    headers.get(header::SEC_WEBSOCKET_KEY)?.to_str().ok()
}

/// Greets, then echoes until the client closes or the server stops.
async fn echo<S>(mut ws: WebSocketStream<S>, name: Arc<str>, mut stop: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if ws
        .send(Message::text(format!("hello from {name}")))
        .await
        .is_err()
    {
        return;
    }
    loop {
        let message = tokio::select! {
            biased;
            // Returning drops the socket without a close frame: a stopped server dies, it
            // does not say goodbye, and the proxy must notice that.
            () = stopped(&mut stop) => return,
            message = ws.next() => message,
        };
        match message {
            Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                if ws.send(message).await.is_err() {
                    return;
                }
            }
            // Pings are answered and a Close is replied to by tungstenite on the next read,
            // which then ends the stream.
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                tracing::debug!(%error, "WebSocket ended with an error");
                return;
            }
            None => return,
        }
    }
}
