//! Opening a new HTTP/1.1 connection to an upstream server.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::peer::Peer;
use crate::proxy::pool::Sender;

/// Why a connection could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// `proxy_connect_timeout` passed.
    Timeout,
    /// Refused, unreachable, reset during the handshake.
    Io(io::Error),
}

/// Connects to the first of the peer's addresses that answers within `timeout` in all, and
/// starts the connection's task (with upgrades enabled, so a 101 can become a tunnel).
pub async fn connect(peer: &Peer, timeout: Duration) -> Result<Sender, ConnectError> {
    let stream = tokio::time::timeout(timeout, open(&peer.addrs))
        .await
        .map_err(|_| ConnectError::Timeout)?
        .map_err(ConnectError::Io)?;
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|error| ConnectError::Io(io::Error::other(error)))?;
    tokio::spawn(async move {
        // The connection ends when the server closes it or the pool drops the sender; either
        // is normal, and a failure mid-request is reported to that request already.
        let _ = connection.with_upgrades().await;
    });
    Ok(sender)
}

async fn open(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last_error = io::Error::new(io::ErrorKind::AddrNotAvailable, "no address");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Request heads are small and latency-bound: never wait for Nagle.
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}
