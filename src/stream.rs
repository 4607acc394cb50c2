//! The byte stream of a connection, either side: plain TCP, TLS over TCP once the handshake
//! is done, or a UNIX-domain socket (plain text only) — [`ClientStream`] for clients (tokio-rustls' server side), [`UpstreamStream`] for
//! upstreams (`proxy_pass https://`, its client side). One concrete type per side (not a boxed
//! trait object), so that the HTTP/1 server, the HTTP/2 server, hyper's client connection and
//! the tunnel a WebSocket becomes are compiled once and pay one `match` per read or write, not
//! a virtual call and an allocation per plain connection.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// A client connection's stream.
pub type ClientStream = MaybeTls<tokio_rustls::server::TlsStream<TcpStream>>;

/// An upstream connection's stream.
pub type UpstreamStream = MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

/// A TCP connection, plain or with TLS of type `T` over it.
#[derive(Debug)]
pub enum MaybeTls<T> {
    /// Plain text.
    Plain(TcpStream),
    /// TLS, handshake done. Boxed: the TLS state is large, and a plain connection should not
    /// carry its size.
    Tls(Box<T>),
    /// Plain text over a UNIX-domain socket (`server unix:/path`). Boxed, as TLS is: a third
    /// variant of TCP's size would grow every connection's stream, and every tunnel task
    /// holding two of them, by a tag.
    Unix(Box<UnixStream>),
}

impl ClientStream {
    /// The TCP connection underneath (None on a UNIX-domain socket).
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            MaybeTls::Plain(tcp) => Some(tcp),
            MaybeTls::Tls(tls) => Some(tls.get_ref().0),
            MaybeTls::Unix(_) => None,
        }
    }
}

impl<T> MaybeTls<T> {
    /// Whether the socket has nothing to read right now, asked of tokio's cached readiness
    /// without a waker: no system call when nothing happened, and the waker a task left stays.
    /// A byte read (the peer sent something unasked) is consumed: the caller is deciding to
    /// drop a connection that has one. None for TLS, whose records must be polled.
    pub fn has_nothing_to_read(&self) -> Option<bool> {
        let mut byte = [0u8; 1];
        let read = match self {
            MaybeTls::Plain(tcp) => tcp.try_read(&mut byte),
            MaybeTls::Unix(unix) => unix.try_read(&mut byte),
            MaybeTls::Tls(_) => return None,
        };
        Some(matches!(read, Err(error) if error.kind() == io::ErrorKind::WouldBlock))
    }
}

impl<T: AsyncWrite + Unpin> MaybeTls<T> {
    /// Writes `slices` (one or more): straight to a plain or UNIX socket through tokio's
    /// cached readiness, without the budget check and poll wrapper of a polled write, since a
    /// write nearly always finds room; polled when the socket was full (the poll registers the
    /// task's waker for room) or is TLS, whose records are written by polling. One slice goes
    /// out with `send`, not `writev` (the kernel's `writev` path also copies the iovec array
    /// in and runs the file-write checks).
    pub fn poll_write_direct(
        &mut self,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let direct = match (&*self, slices) {
            (MaybeTls::Plain(tcp), [one]) => tcp.try_write(one),
            (MaybeTls::Plain(tcp), _) => tcp.try_write_vectored(slices),
            (MaybeTls::Unix(unix), [one]) => unix.try_write(one),
            (MaybeTls::Unix(unix), _) => unix.try_write_vectored(slices),
            (MaybeTls::Tls(_), _) => Err(io::ErrorKind::WouldBlock.into()),
        };
        match direct {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => match slices {
                [one] => Pin::new(self).poll_write(cx, one),
                _ => Pin::new(self).poll_write_vectored(cx, slices),
            },
            done => Poll::Ready(done),
        }
    }
}

impl<T> From<TcpStream> for MaybeTls<T> {
    fn from(tcp: TcpStream) -> MaybeTls<T> {
        MaybeTls::Plain(tcp)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            MaybeTls::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
            MaybeTls::Unix(unix) => Pin::new(&mut **unix).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            MaybeTls::Tls(tls) => Pin::new(&mut **tls).poll_write(cx, buf),
            MaybeTls::Unix(unix) => Pin::new(&mut **unix).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(tls) => Pin::new(&mut **tls).poll_write_vectored(cx, bufs),
            MaybeTls::Unix(unix) => Pin::new(&mut **unix).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(tcp) => tcp.is_write_vectored(),
            MaybeTls::Tls(tls) => tls.is_write_vectored(),
            MaybeTls::Unix(unix) => unix.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            MaybeTls::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
            MaybeTls::Unix(unix) => Pin::new(&mut **unix).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            MaybeTls::Tls(tls) => Pin::new(&mut **tls).poll_shutdown(cx),
            MaybeTls::Unix(unix) => Pin::new(&mut **unix).poll_shutdown(cx),
        }
    }
}
