//! The byte stream of a connection, either side: plain TCP, TLS over TCP once the handshake
//! is done, or a UNIX-domain socket (plain text only) — [`ClientStream`] for clients (tokio-rustls' server side), [`UpstreamStream`] for
//! upstreams (`proxy_pass https://`, its client side). One concrete type per side (not a boxed
//! trait object), so that the HTTP/1 server, the HTTP/2 server, hyper's client connection and
//! the tunnel a WebSocket becomes are compiled once and pay one `match` per read or write, not
//! a virtual call and an allocation per plain connection.
//!
//! A plain TCP socket is read and written straight through tokio's cached readiness with bare
//! system calls (`raw`), where the hot paths ask for it (`poll_read_direct`,
//! `poll_write_direct`): no poll wrappers, and none of glibc's cancellation bookkeeping.

mod raw;

use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
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
        self.poll_write_ending(cx, slices, false)
    }

    /// [`poll_write_direct`](Self::poll_write_direct), saying with `last` that these are the
    /// last bytes the connection sends before it is closed: on a plain TCP socket one slice
    /// then goes with `MSG_MORE`, so that its last segment is held for the close and leaves
    /// with the FIN in it — one segment, one wake-up of the peer and one acknowledgement fewer.
    pub fn poll_write_ending(
        &mut self,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
        last: bool,
    ) -> Poll<io::Result<usize>> {
        let direct = match (&*self, slices) {
            // tokio's try_write, with the bare system call (see `raw`).
            (MaybeTls::Plain(tcp), [one]) => {
                tcp.try_io(Interest::WRITABLE, || raw::send(tcp.as_raw_fd(), one, last))
            }
            (MaybeTls::Plain(tcp), _) => {
                tcp.try_io(Interest::WRITABLE, || raw::writev(tcp.as_raw_fd(), slices))
            }
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

impl<T: AsyncRead + Unpin> MaybeTls<T> {
    /// Reads into `buf` as `poll_read` does — the task's budget counted, its waker registered
    /// when nothing is there, readiness cleared by a short read (the socket is drained: no
    /// second call to find that out) — but on a plain socket with the bare system call (see
    /// `raw`) and without the poll wrappers around it. TLS and UNIX sockets are polled.
    pub fn poll_read_direct(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let MaybeTls::Plain(tcp) = self else {
            return Pin::new(self).poll_read(cx, buf);
        };
        loop {
            // As a polled read begins: counts against the task's budget, and registers the
            // waker when there is no readiness.
            ready!(tcp.poll_read_ready(cx))?;
            // SAFETY: the kernel only writes into these bytes; none is de-initialised.
            let unfilled = unsafe { buf.unfilled_mut() };
            let room = unfilled.len();
            let mut n = 0;
            let read = tcp.try_io(Interest::READABLE, || {
                n = raw::recv(tcp.as_raw_fd(), unfilled)?;
                if 0 < n && n < room {
                    // A short read drained the socket: told `WouldBlock`, `try_io` clears
                    // the readiness it saw before the call — not an event that came since.
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(())
            });
            match read {
                Ok(()) => {}
                Err(would_block) if n > 0 => forget_would_block(would_block),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Poll::Ready(Err(error)),
            }
            // SAFETY: the kernel wrote the first `n` bytes of the unfilled part.
            unsafe { buf.assume_init(n) };
            buf.advance(n);
            return Poll::Ready(Ok(()));
        }
    }

    /// `poll_read_direct` into the spare room of `buf` (which the caller makes), as
    /// `tokio_util::io::poll_read_buf` does for `poll_read`: how many bytes came, 0 at the end.
    pub fn poll_read_buf_direct(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        let n = {
            let mut read = ReadBuf::uninit(buf.spare_capacity_mut());
            ready!(self.poll_read_direct(cx, &mut read))?;
            read.filled().len()
        };
        // SAFETY: `poll_read_direct` initialised the first `n` bytes of the spare room.
        unsafe { buf.advance_mut(n) };
        Poll::Ready(Ok(n))
    }
}

/// Lets go of a `WouldBlock` that tokio's `try_io` made from its kind alone (told so by the
/// closure after a short read, or finding no readiness): such an error owns nothing, and its
/// drop is an out-of-line call, made per message on the echo's path (~4 a round trip).
pub fn forget_would_block(error: io::Error) {
    debug_assert!(error.kind() == io::ErrorKind::WouldBlock && error.get_ref().is_none());
    debug_assert!(
        error.raw_os_error().is_none(),
        "made from its kind, not from errno"
    );
    std::mem::forget(error);
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

/// A loopback TCP connection for tests: the far end, and the near end as tether holds it.
#[cfg(test)]
pub(crate) async fn loopback() -> (TcpStream, ClientStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let far = TcpStream::connect(listener.local_addr().unwrap());
    let (far, near) = tokio::join!(far, listener.accept());
    (far.unwrap(), near.unwrap().0.into())
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::time::timeout;

    use super::*;

    const LIMIT: Duration = Duration::from_secs(5);

    /// One direct read of at most `room` bytes, waiting for it (bounded).
    async fn read_direct(near: &mut ClientStream, room: usize) -> Vec<u8> {
        let mut bytes = BytesMut::with_capacity(room);
        let read = poll_fn(|cx| near.poll_read_buf_direct(cx, &mut bytes));
        timeout(LIMIT, read).await.expect("a read in time").unwrap();
        bytes.to_vec()
    }

    /// Whether tokio still holds the socket readable (asked, not read).
    fn readable(near: &ClientStream) -> bool {
        let MaybeTls::Plain(tcp) = near else {
            unreachable!("a plain connection")
        };
        tcp.try_io(Interest::READABLE, || Ok(())).is_ok()
    }

    /// A read that fills its buffer must leave the socket readable (there may be more, and no
    /// new event will say so); one that does not fill it drained the socket and must clear the
    /// readiness (the next read then waits for an event instead of asking the kernel).
    #[tokio::test]
    async fn a_full_read_keeps_the_readiness_and_a_short_one_clears_it() {
        let (mut far, mut near) = loopback().await;
        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        far.write_all(&sent).await.unwrap();
        let mut got = Vec::new();
        while got.len() < sent.len() {
            let read = read_direct(&mut near, 16 * 1024).await;
            assert!(!read.is_empty(), "no end of stream before the bytes");
            if read.len() < 16 * 1024 {
                assert!(!readable(&near), "a short read cleared the readiness");
            }
            got.extend_from_slice(&read);
        }
        assert!(got == sent, "every byte, in order");
        // A short read cleared the readiness: the next read waits, and the next bytes wake it.
        let next = tokio::spawn(async move { read_direct(&mut near, 64).await });
        tokio::task::yield_now().await;
        far.write_all(b"more").await.unwrap();
        assert_eq!(timeout(LIMIT, next).await.unwrap().unwrap(), b"more");
    }

    #[tokio::test]
    async fn the_end_of_the_stream_reads_as_nothing() {
        let (far, mut near) = loopback().await;
        drop(far);
        assert!(read_direct(&mut near, 64).await.is_empty());
    }
}
