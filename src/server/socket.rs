//! A client socket between accept and the stream it becomes: TCP or UNIX-domain, with the few
//! readiness and read calls the PROXY protocol reader and the HTTP/2 sniff make on either
//! (both peek with `recv(MSG_PEEK)`, which a UNIX stream socket answers as TCP does).
//!
//! Imports nothing of tether's but the stream type it turns into.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use tokio::io::{Interest, Ready};
use tokio::net::{TcpStream, UnixStream};

use crate::stream::{ClientStream, MaybeTls};

/// An accepted client socket.
#[derive(Debug)]
pub enum Accepted {
    /// From a TCP listener.
    Tcp(TcpStream),
    /// From a `listen unix:PATH` listener.
    Unix(UnixStream),
}

impl Accepted {
    /// The borrowed form the readers take.
    pub fn as_ref(&self) -> SocketRef<'_> {
        match self {
            Accepted::Tcp(tcp) => SocketRef::Tcp(tcp),
            Accepted::Unix(unix) => SocketRef::Unix(unix),
        }
    }

    /// Our address on a TCP connection (a wildcard listener's connections each ask).
    pub fn tcp_local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Accepted::Tcp(tcp) => tcp.local_addr().ok(),
            Accepted::Unix(_) => None,
        }
    }

    /// The stream HTTP is served on (plain text).
    pub fn into_stream(self) -> ClientStream {
        match self {
            Accepted::Tcp(tcp) => MaybeTls::Plain(tcp),
            Accepted::Unix(unix) => MaybeTls::Unix(Box::new(unix)),
        }
    }
}

/// A borrowed client socket, TCP or UNIX-domain.
#[derive(Clone, Copy, Debug)]
pub enum SocketRef<'a> {
    /// TCP.
    Tcp(&'a TcpStream),
    /// UNIX-domain.
    Unix(&'a UnixStream),
}

impl<'a> From<&'a TcpStream> for SocketRef<'a> {
    fn from(tcp: &'a TcpStream) -> SocketRef<'a> {
        SocketRef::Tcp(tcp)
    }
}

impl<'a> From<&'a UnixStream> for SocketRef<'a> {
    fn from(unix: &'a UnixStream) -> SocketRef<'a> {
        SocketRef::Unix(unix)
    }
}

impl SocketRef<'_> {
    /// Waits for the socket to be ready for `interest`.
    pub async fn ready(self, interest: Interest) -> io::Result<Ready> {
        match self {
            SocketRef::Tcp(tcp) => tcp.ready(interest).await,
            SocketRef::Unix(unix) => unix.ready(interest).await,
        }
    }

    /// Runs `f` as tokio's `try_io` does: WouldBlock clears the readiness.
    pub fn try_io<R>(self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        match self {
            SocketRef::Tcp(tcp) => tcp.try_io(interest, f),
            SocketRef::Unix(unix) => unix.try_io(interest, f),
        }
    }

    /// Waits for the socket to be readable.
    pub async fn readable(self) -> io::Result<()> {
        match self {
            SocketRef::Tcp(tcp) => tcp.readable().await,
            SocketRef::Unix(unix) => unix.readable().await,
        }
    }

    /// Reads what is there without waiting.
    pub fn try_read(self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            SocketRef::Tcp(tcp) => tcp.try_read(buf),
            SocketRef::Unix(unix) => unix.try_read(buf),
        }
    }
}

impl AsRawFd for SocketRef<'_> {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            SocketRef::Tcp(tcp) => tcp.as_raw_fd(),
            SocketRef::Unix(unix) => unix.as_raw_fd(),
        }
    }
}
