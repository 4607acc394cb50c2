//! A WebSocket client over HTTP/2 (RFC 8441), as a browser opens one: an h2c connection by
//! prior knowledge (the h2 crate), a stream opened by an extended CONNECT with
//! `:protocol websocket`, and tungstenite speaking WebSocket frames on that stream through
//! [`H2Io`].

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use http::{Method, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::within;

/// A WebSocket on one HTTP/2 stream.
pub type H2Ws = WebSocketStream<H2Io>;

/// An h2c connection to `addr`, once the server's SETTINGS arrived (and said whether extended
/// CONNECT is on).
pub async fn connect(addr: SocketAddr) -> SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .handshake::<_, Bytes>(tcp)
        .await
        .expect("h2 handshake with tether");
    tokio::spawn(connection);
    // The SETTINGS frame is read by the connection task: wait until it was (an h2 server
    // always sends one first, with or without the setting).
    let ready = client.clone();
    within(
        Duration::from_secs(5),
        "the server's SETTINGS",
        async move { ready.ready().await.expect("connection open") },
    )
    .await;
    client
}

/// A CONNECT request for `path` on `addr` with `:protocol` set to `protocol` (None: a plain
/// CONNECT to `addr`), plus `headers`.
pub fn connect_request(
    addr: SocketAddr,
    path: &str,
    protocol: Option<&str>,
    headers: &[(&str, &str)],
) -> Request<()> {
    let mut request = match protocol {
        Some(protocol) => {
            let mut request = Request::builder()
                .method(Method::CONNECT)
                .uri(format!("http://{addr}{path}"))
                .header("sec-websocket-version", "13");
            request = request.extension(h2::ext::Protocol::from(protocol));
            request
        }
        None => Request::builder()
            .method(Method::CONNECT)
            .uri(addr.to_string()),
    };
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).expect("valid request")
}

/// Sends `request` on a new stream: the response head and the stream's two halves.
pub async fn open_stream(
    client: &SendRequest<Bytes>,
    request: Request<()>,
) -> (Response<RecvStream>, SendStream<Bytes>) {
    within(Duration::from_secs(5), "the answer to a CONNECT", async {
        let mut ready = client.clone().ready().await.expect("connection open");
        let (response, send) = ready.send_request(request, false).expect("stream opened");
        (response.await.expect("response head"), send)
    })
    .await
}

/// Opens a WebSocket to `path` over `client`'s connection with `headers` added: the `200`
/// head and the WebSocket, or panics on any other answer.
pub async fn websocket(
    client: &SendRequest<Bytes>,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (Response<()>, H2Ws) {
    let request = connect_request(addr, path, Some("websocket"), headers);
    let (response, send) = open_stream(client, request).await;
    assert_eq!(response.status(), 200, "{response:?}");
    let (head, recv) = response.into_parts();
    let io = H2Io {
        send,
        recv,
        pending: Bytes::new(),
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let ws = WebSocketStream::from_raw_socket(io, Role::Client, Some(config)).await;
    (Response::from_parts(head, ()), ws)
}

/// One HTTP/2 stream as a byte stream: DATA frames in, DATA frames out (within the stream's
/// flow-control window), END_STREAM as the end.
pub struct H2Io {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Received and not yet read.
    pending: Bytes,
}

impl AsyncRead for H2Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.pending.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
                Some(Err(error)) => return Poll::Ready(Err(io::Error::other(error))),
            }
        }
        let n = buf.remaining().min(self.pending.len());
        let data = self.pending.split_to(n);
        buf.put_slice(&data);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.send.reserve_capacity(buf.len());
        loop {
            if self.send.capacity() > 0 {
                break;
            }
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(_)) => {}
                Some(Err(error)) => return Poll::Ready(Err(io::Error::other(error))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
        let n = self.send.capacity().min(buf.len());
        self.send
            .send_data(Bytes::copy_from_slice(&buf[..n]), false)
            .map_err(io::Error::other)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = self.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}
