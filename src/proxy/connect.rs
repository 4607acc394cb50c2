//! Opening a new HTTP/1.1 connection to an upstream server: TCP (or a UNIX-domain socket), then
//! for `proxy_pass https://` a TLS handshake, both within `proxy_connect_timeout` (nginx counts
//! the handshake in it too).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;

use crate::peer::{Endpoint, Peer};
use crate::proxy::origin::Connection;
use crate::stream::{MaybeTls, UpstreamStream};
use crate::tls::upstream::TlsTarget;

/// Why a connection could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// `proxy_connect_timeout` passed.
    Timeout,
    /// Refused, unreachable, reset during the handshake, or a TLS handshake that failed (the
    /// certificate not verified, no protocol in common): all are the server's failure to
    /// connect, retried on the next server alike.
    Io(io::Error),
}

/// Connects to the first of the peer's addresses that answers within `timeout` in all —
/// securing it with `tls` when given. The connection has no task of its own: the request using
/// it drives it.
pub async fn connect(
    peer: &Peer,
    timeout: Duration,
    tls: Option<&TlsTarget>,
) -> Result<Box<Connection>, ConnectError> {
    let stream = tokio::time::timeout(timeout, open(peer, tls))
        .await
        .map_err(|_| ConnectError::Timeout)?
        .map_err(ConnectError::Io)?;
    Ok(Connection::new(stream))
}

async fn open(peer: &Peer, tls: Option<&TlsTarget>) -> io::Result<UpstreamStream> {
    let tcp = match &peer.endpoint {
        Endpoint::Inet(addrs) => open_tcp(addrs).await?,
        Endpoint::Unix(path) if tls.is_none() => {
            return Ok(MaybeTls::Unix(Box::new(UnixStream::connect(path).await?)));
        }
        // The TLS stream type is TCP's: refused here rather than at load, since a group of
        // `server unix:` lines may be named by an `https://` proxy_pass.
        Endpoint::Unix(_) => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "TLS over a UNIX-domain socket is not supported by tether",
            ));
        }
    };
    let Some(tls) = tls else {
        return Ok(MaybeTls::Plain(tcp));
    };
    let connector = TlsConnector::from(tls.config.clone());
    match connector.connect(tls.name.clone(), tcp).await {
        Ok(stream) => Ok(MaybeTls::Tls(Box::new(stream))),
        Err(error) => {
            // Not logged here: the request's try logs it with the request's context, and a
            // health check once when the server's verdict changes (never at every probe).
            Err(io::Error::new(
                error.kind(),
                format!("TLS handshake failed: {error}"),
            ))
        }
    }
}

async fn open_tcp(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
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
