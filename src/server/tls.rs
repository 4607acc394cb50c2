//! TLS termination on a `listen ... ssl` address: the handshake, with the virtual server (and
//! so the certificate and settings) chosen by the name the client asks for (SNI), and the
//! protocol after it chosen by ALPN.
//!
//! The ClientHello is read before any config is picked (rustls' lazy acceptor), so every
//! server on an address has its own rustls config — certificates, protocols, ciphers, client
//! verification — and the snapshot in force at the handshake answers it: a reload (or a
//! certificate swap it followed) applies from the next handshake on.
//!
//! Failures close the connection with one line at info level, never a panic or a stuck
//! task: a client that stalls mid-handshake is bounded by the caller's timeout.

use std::io;
use std::net::SocketAddr;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::proxy::ConnTls;
use crate::snapshot::Snapshot;
use crate::tls::TlsSession;

/// The first byte of every TLS record a handshake opens with (ContentType handshake).
const HANDSHAKE_RECORD: u8 = 0x16;

/// A finished handshake.
pub struct Handshake {
    /// The connection, TLS from here on.
    pub stream: Box<TlsStream<TcpStream>>,
    /// What it settled.
    pub tls: ConnTls,
}

/// Why a handshake ended the connection instead.
#[derive(Debug)]
pub enum Refused {
    /// The client spoke plain HTTP to this TLS address: it gets nginx's 400 page.
    PlainHttp(TcpStream),
    /// Closed, with the reason for the log line.
    Closed(String),
}

/// Whether the client's first byte opens a TLS handshake (it has sent at least one byte).
async fn opens_tls(stream: &TcpStream) -> io::Result<bool> {
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(first[0] == HANDSHAKE_RECORD)
}

/// Completes the server side of a handshake on `stream`, a connection accepted on `listen`.
pub async fn handshake(
    stream: TcpStream,
    listen: SocketAddr,
    live: &ArcSwap<Snapshot>,
) -> Result<Handshake, Refused> {
    match opens_tls(&stream).await {
        Ok(true) => {}
        Ok(false) => return Err(Refused::PlainHttp(stream)),
        Err(error) => return Err(Refused::Closed(format!("before the handshake: {error}"))),
    }
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
    let start = acceptor
        .await
        .map_err(|error| Refused::Closed(format!("bad ClientHello: {error}")))?;
    let server_name = start
        .client_hello()
        .server_name()
        .map(str::to_ascii_lowercase);
    let snapshot = live.load();
    let Some(termination) = snapshot
        .handshake_server(listen, server_name.as_deref())
        .and_then(|server| server.tls.as_ref())
    else {
        // Only a listener being retired has no servers: its config is gone.
        return Err(Refused::Closed("no TLS server for this address".into()));
    };
    let config = termination.config.clone();
    let identity = termination.identity;
    drop(snapshot);
    let stream = start
        .into_stream(config)
        .await
        .map_err(|error| Refused::Closed(format!("handshake failed: {error}")))?;
    let connection = stream.get_ref().1;
    let http2 = connection.alpn_protocol() == Some(b"h2");
    let session = TlsSession::of(connection);
    Ok(Handshake {
        stream: Box::new(stream),
        tls: ConnTls {
            identity,
            http2,
            session,
        },
    })
}
