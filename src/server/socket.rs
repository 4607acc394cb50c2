//! A client socket between accept and the stream it becomes: TCP or UNIX-domain, with the few
//! readiness and read calls the PROXY protocol reader and the HTTP/2 sniff make on either
//! (both peek with `recv(MSG_PEEK)`, which a UNIX stream socket answers as TCP does).
//!
//! Also the socket options accepted connections take from their listener.
//!
//! Imports nothing of tether's but the stream type it turns into.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use bytes::BufMut;
use tokio::io::{Interest, Ready};
use tokio::net::{TcpListener, TcpStream, UnixStream};

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

    /// Reads what is there without waiting, into `buf`'s free capacity (nothing zeroed first).
    pub fn try_read_buf<B: BufMut>(self, buf: &mut B) -> io::Result<usize> {
        match self {
            SocketRef::Tcp(tcp) => tcp.try_read_buf(buf),
            SocketRef::Unix(unix) => unix.try_read_buf(buf),
        }
    }
}

/// Sets `TCP_NODELAY` on a listening socket so that the connections it accepts have it from
/// the start — Linux copies it into every accepted socket — instead of one `setsockopt()`
/// per accept. True when accepted sockets can be trusted to have it; elsewhere (or should the
/// listener refuse the option) each connection sets it itself.
pub fn accepted_inherit_nodelay(listener: &TcpListener) -> bool {
    let set = nix::sys::socket::setsockopt(listener, nix::sys::socket::sockopt::TcpNoDelay, &true);
    cfg!(target_os = "linux") && set.is_ok()
}

impl AsRawFd for SocketRef<'_> {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            SocketRef::Tcp(tcp) => tcp.as_raw_fd(),
            SocketRef::Unix(unix) => unix.as_raw_fd(),
        }
    }
}

// Linux only: elsewhere each connection sets the option itself.
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// An accepted socket of `listener` (connected to from this process).
    async fn accept_one(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    /// Small writes (SSE events, WebSocket frames, response heads) must leave at once, yet no
    /// `setsockopt()` is spent per connection: the listener's option reaches every socket it
    /// accepts. Without it an accepted socket has Nagle on (the control below), so this would
    /// catch a kernel that stopped copying the option.
    #[tokio::test]
    async fn accepted_sockets_take_nodelay_from_their_listener() {
        let plain = crate::server::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let (_client, accepted) = accept_one(&plain).await;
        assert!(!accepted.nodelay().unwrap(), "the kernel's default changed");

        let listener = crate::server::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        assert!(accepted_inherit_nodelay(&listener));
        for _ in 0..3 {
            let (_client, accepted) = accept_one(&listener).await;
            assert!(accepted.nodelay().unwrap());
        }
    }
}
