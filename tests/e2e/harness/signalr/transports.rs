//! The three SignalR transports over HTTP: each carries the connection's outbox to the client
//! in its own way and hands what the client sends to the connection.
//!
//! - WebSockets: one upgraded socket both ways, a text message per batch of records.
//! - Server-sent events: a `text/event-stream` response carries records as `data:` lines; the
//!   client sends with `POST`s.
//! - Long polling: each `GET` waits for records (the first answers at once: ASP.NET Core uses
//!   it to set the connection up); `POST` sends; `DELETE` ends the connection, and the poll
//!   then waiting is answered 204.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::connection::{Binding, Connection};
use super::{Body, Hub, Transport, text};

/// How long a poll waits for a record before answering empty (ASP.NET Core's default).
const POLL_TIMEOUT: Duration = Duration::from_secs(90);

/// Serves a transport's `GET`: the request that carries the connection's records to the client.
pub async fn open(
    mut req: Request<Incoming>,
    transport: Transport,
    binding: Binding,
    connection: Arc<Connection>,
    hub: Arc<Hub>,
) -> Response<Body> {
    match transport {
        Transport::WebSockets => websocket(&mut req, connection, hub),
        Transport::ServerSentEvents => event_stream(connection, hub),
        Transport::LongPolling if binding == Binding::First => text(StatusCode::OK, ""),
        Transport::LongPolling => poll(&connection).await,
    }
}

/// A `POST`: what the client sends over server-sent events or long polling.
pub async fn receive(
    req: Request<Incoming>,
    connection: Arc<Connection>,
    hub: Arc<Hub>,
) -> Result<Response<Body>, std::io::Error> {
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let Ok(sent) = std::str::from_utf8(&body) else {
        return Ok(text(StatusCode::BAD_REQUEST, "the JSON protocol is text"));
    };
    connection.receive(&hub, sent);
    Ok(text(StatusCode::OK, ""))
}

/// A `DELETE`: the long polling client stops. The pending poll, if any, is answered 204.
pub fn delete(connection: &Connection, hub: &Hub) -> Response<Body> {
    if connection.transport() != Some(Transport::LongPolling) {
        return text(
            StatusCode::BAD_REQUEST,
            "only long polling connections are deleted",
        );
    }
    hub.remove(connection);
    text(StatusCode::ACCEPTED, "")
}

fn websocket(
    req: &mut Request<Incoming>,
    connection: Arc<Connection>,
    hub: Arc<Hub>,
) -> Response<Body> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return text(StatusCode::BAD_REQUEST, "not a WebSocket request");
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            carry_websocket(ws, &connection, &hub).await;
        }
        hub.remove(&connection);
    });
    let mut response = text(StatusCode::SWITCHING_PROTOCOLS, "");
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&derive_accept_key(key.as_bytes())).expect("base64 is a header"),
    );
    response
}

async fn carry_websocket(
    mut ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    connection: &Arc<Connection>,
    hub: &Arc<Hub>,
) {
    let mut outbox = connection.inbox.clone().lock_owned().await;
    loop {
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(sent))) => connection.receive(hub, sent.as_str()),
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            record = outbox.recv() => {
                let Some(record) = record else { return };
                if ws.send(Message::text(record)).await.is_err() {
                    return;
                }
            }
            _ = connection.ended.cancelled() => {
                let _ = ws.close(None).await;
                return;
            }
        }
    }
}

/// The event stream: `:` first (ASP.NET Core's padding, so a client sees the stream open at
/// once), then one event per record; it ends with the connection, and the connection ends
/// when the client goes away.
fn event_stream(connection: Arc<Connection>, hub: Arc<Hub>) -> Response<Body> {
    let (events, body) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let mut outbox = connection.inbox.clone().lock_owned().await;
        let mut next = Some(Bytes::from_static(b":\r\n"));
        while let Some(event) = next.take() {
            // A failed send is the response body dropped: the client (or the proxy) is gone.
            if events.send(event).await.is_err() {
                break;
            }
            tokio::select! {
                record = outbox.recv() => next = record.map(|r| Bytes::from(as_event(&r))),
                _ = connection.ended.cancelled() => {}
            }
        }
        hub.remove(&connection);
    });
    let stream = futures_util::stream::unfold(body, |mut body| async move {
        let event = body.recv().await?;
        Some((Ok::<_, std::io::Error>(Frame::data(event)), body))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// One server-sent event carrying `record`: a `data:` line per line of it.
fn as_event(record: &str) -> String {
    let mut event: String = record
        .split('\n')
        .map(|line| format!("data: {line}\r\n"))
        .collect();
    event.push_str("\r\n");
    event
}

/// A long poll: the records waiting, or the first to come, or empty after POLL_TIMEOUT; 204
/// once the connection has ended.
async fn poll(connection: &Connection) -> Response<Body> {
    let mut outbox = connection.inbox.clone().lock_owned().await;
    let first = tokio::select! {
        record = outbox.recv() => record,
        _ = connection.ended.cancelled() => None,
        _ = tokio::time::sleep(POLL_TIMEOUT) => return text(StatusCode::OK, ""),
    };
    let Some(mut records) = first else {
        return text(StatusCode::NO_CONTENT, "");
    };
    while let Ok(more) = outbox.try_recv() {
        records.push_str(&more);
    }
    let mut response = text(StatusCode::OK, records);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}
