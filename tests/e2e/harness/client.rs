//! Minimal HTTP clients over real sockets (hyper's connection API, no pooling magic), so each
//! test controls exactly which connection a request travels on.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A complete response.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as text (lossy).
    pub body: String,
}

impl Reply {
    /// Reads `response` whole.
    pub async fn read(response: Response<Incoming>) -> Result<Reply, hyper::Error> {
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// A header's value as text ("" if absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// An HTTP/1.1 keep-alive connection.
pub struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    /// Opens a connection to `addr`.
    pub async fn open(addr: SocketAddr) -> Connection {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the proxy");
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection.with_upgrades());
        Connection { sender }
    }

    /// Sends a request and reads the whole response.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> Reply {
        self.sender.ready().await.expect("connection ready");
        let response = self.sender.send_request(request).await.expect("response");
        Reply::read(response).await.expect("response body")
    }

    /// `GET path` on this connection.
    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(request("GET", path, "")).await
    }

    /// True once the proxy closed the connection.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// A request with a Host header of `localhost`.
pub fn request(method: &str, path: &str, body: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid request")
}

/// `GET path` on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    Connection::open(addr).await.get(path).await
}

/// Sends `request` on a fresh connection.
pub async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> Reply {
    Connection::open(addr).await.send(request).await
}
