//! Clients whose connections leave from a chosen source address, so tether sees different
//! clients: on Linux all of 127.0.0.0/8 is loopback, and `127.A.B.C` can be bound without any
//! setup. `ip_hash` and `$remote_addr` then see `127.A.B.C`.

use std::net::{Ipv4Addr, SocketAddr};

use http::Request;
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};

use super::Reply;
use super::client::request;

/// A TCP connection from `source` (any free port) to `to`.
pub async fn connect_from(source: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("an IPv4 socket");
    socket
        .bind(SocketAddr::from((source, 0)))
        .unwrap_or_else(|error| panic!("bind the client to {source}: {error}"));
    socket
        .connect(to)
        .await
        .unwrap_or_else(|error| panic!("connect from {source} to {to}: {error}"))
}

/// Sends `request` from `source` on a fresh connection and reads the whole response.
pub async fn send_from(
    source: Ipv4Addr,
    to: SocketAddr,
    request: Request<Full<bytes::Bytes>>,
) -> Reply {
    let stream = connect_from(source, to).await;
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let response = sender.send_request(request).await.expect("response");
    Reply::read(response).await.expect("response body")
}

/// `GET path` from `source` on a fresh connection.
pub async fn get_from(source: Ipv4Addr, to: SocketAddr, path: &str) -> Reply {
    send_from(source, to, request("GET", path, "")).await
}
