//! An HTTP/2 client (the h2 crate, h2c by prior knowledge) whose flow-control windows the test
//! controls: hyper's client opens every window by itself, so it cannot play a client that
//! leaves a stream stuck at a closed window.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::net::TcpStream;

use super::within;

/// A connection to `addr` whose streams start with `stream_window` bytes of window (its
/// SETTINGS_INITIAL_WINDOW_SIZE) and whose connection window is large. Nothing is given back
/// unless the test releases it.
pub async fn connect(addr: SocketAddr, stream_window: u32) -> SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(stream_window)
        .initial_connection_window_size(16 << 20)
        .handshake::<_, Bytes>(tcp)
        .await
        .expect("h2 handshake with tether");
    tokio::spawn(connection);
    client
}

/// `GET path` on `addr`, as the h2 crate wants it (absolute).
pub fn get(addr: SocketAddr, path: &str) -> http::Request<()> {
    http::Request::get(format!("http://{addr}{path}"))
        .body(())
        .expect("valid request")
}

/// `GET path` on a new stream of `client`, read whole (its window opened as data arrives):
/// the status and the body as text.
pub async fn text(
    client: &SendRequest<Bytes>,
    addr: SocketAddr,
    path: &str,
    limit: Duration,
) -> (u16, String) {
    within(limit, "an h2 answer", async {
        let mut ready = client.clone().ready().await.expect("connection open");
        let (response, _) = ready
            .send_request(get(addr, path), true)
            .expect("stream opened");
        let response = response.await.expect("response head");
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut text = Vec::new();
        while let Some(data) = body.data().await {
            let data = data.expect("body data");
            let _ = body.flow_control().release_capacity(data.len());
            text.extend_from_slice(&data);
        }
        (status, String::from_utf8_lossy(&text).into_owned())
    })
    .await
}
