//! Telling HTTP/2 by prior knowledge from HTTP/1 on a fresh client connection, from its first
//! bytes.
//!
//! Read, not peeked: the bytes go into the buffer the connection then serves from, so the
//! first read of the first request is this one (a `recv(MSG_PEEK)` and then a read cost two
//! syscalls for the same bytes). The HTTP/1 server starts with them in its read buffer; the
//! HTTP/2 one gets them handed back in front of the socket.
//!
//! The read lands on the stack and only what came is kept, in a buffer of its size: a first
//! head is a few hundred bytes, and an 8 KiB buffer per new connection is a trip through the
//! allocator's large-chunk path each way (malloc and free ~0.6k instructions, against ~0.1k
//! for a small one). A connection that goes on reading grows its buffer then.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;

use bytes::BytesMut;

use super::http1::READ_CHUNK;
use super::socket::SocketRef;

/// What every HTTP/2 connection by prior knowledge starts with (RFC 9113 §3.4).
pub(super) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a client opens its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// The HTTP/2 connection preface.
    Http2,
    /// Anything else: HTTP/1.x (its server answers garbage with a 400).
    Http1,
}

/// Waits for the client's first bytes, reads them into `read` (which keeps them for the
/// server that follows), and tells which protocol they open. Bytes that are a beginning of the
/// preface wait for the rest, so a preface split across segments still reads as HTTP/2; a
/// client that closes partway through one is HTTP/1 (its server meets the end of an
/// unfinished head). Fails when the client closes before sending anything.
pub async fn opening<'a>(
    stream: impl Into<SocketRef<'a>>,
    read: &mut BytesMut,
) -> io::Result<Opening> {
    let stream = stream.into();
    loop {
        // Readiness first: a fresh socket rarely has its bytes at accept time, and a read
        // that would block is a syscall spent for nothing.
        stream.readable().await?;
        match read_landed(stream, read) {
            Ok(0) if read.is_empty() => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(0) => return Ok(Opening::Http1),
            Ok(_) => {
                let seen = read.len().min(PREFACE.len());
                if read[..seen] != PREFACE[..seen] {
                    return Ok(Opening::Http1);
                }
                if seen == PREFACE.len() {
                    return Ok(Opening::Http2);
                }
                // Too early to tell: the rest of the preface is awaited.
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        }
    }
}

/// Reads what the socket has (up to [`READ_CHUNK`] bytes, one syscall) and appends it to
/// `read`, which grows by that much only.
fn read_landed(stream: SocketRef<'_>, read: &mut BytesMut) -> io::Result<usize> {
    // Uninitialised: zeroing 8 KiB would cost more than the allocation it replaces.
    let mut landing = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
    let mut free = &mut landing[..];
    let n = stream.try_read_buf(&mut free)?;
    // SAFETY: the read wrote the first `n` bytes of `landing` (a `BufMut` slice advances only
    // over what was written), and `MaybeUninit<u8>` has the layout of `u8`.
    let landed = unsafe { &*(&raw const landing[..n] as *const [u8]) };
    if read.is_empty() {
        // Allocated at its size at once (growing an empty buffer goes through its reserve).
        *read = BytesMut::from(landed);
    } else {
        read.extend_from_slice(landed);
    }
    Ok(n)
}

/// One `recv(MSG_PEEK)`: the bytes stay in the socket for hyper (or the PROXY header's
/// exact read) to take.
pub(super) fn peek(stream: SocketRef<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call, and the
    // descriptor stays open while `stream` is borrowed.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::timeout;

    use super::*;

    /// A connected pair on loopback: (client side, server side).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    /// The sniff's read is the request's first read: the bytes come back in the buffer, and
    /// the socket has nothing more to give (a peek left them there to be read a second time).
    #[tokio::test]
    async fn a_request_line_is_http1_and_read_once() {
        let (mut client, server) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut read = BytesMut::with_capacity(1024);
        assert_eq!(opening(&server, &mut read).await.unwrap(), Opening::Http1);
        assert_eq!(&read[..], b"GET / HTTP/1.1\r\n\r\n");
        let mut more = [0u8; 16];
        let left = server.try_read(&mut more).map_err(|error| error.kind());
        assert_eq!(
            left,
            Err(io::ErrorKind::WouldBlock),
            "bytes left in the socket"
        );
    }

    #[tokio::test]
    async fn the_preface_is_http2_even_split_across_segments() {
        let (mut client, server) = pair().await;
        client.set_nodelay(true).unwrap();
        client.write_all(&PREFACE[..9]).await.unwrap();
        let mut read = BytesMut::with_capacity(1024);
        // Proving a negative needs a bound: on 9 bytes of preface the sniff must keep waiting.
        let early = timeout(Duration::from_millis(100), opening(&server, &mut read)).await;
        assert!(early.is_err(), "decided on a partial preface: {early:?}");
        client.write_all(&PREFACE[9..]).await.unwrap();
        client.write_all(b"frames").await.unwrap();
        // The frames may come with the preface's end or after it: HTTP/2 either way.
        assert_eq!(opening(&server, &mut read).await.unwrap(), Opening::Http2);
        assert_eq!(&read[..PREFACE.len()], PREFACE);
    }

    #[tokio::test]
    async fn a_near_miss_of_the_preface_is_http1() {
        let (mut client, server) = pair().await;
        client.write_all(b"PRI * HTTP/1.1\r\n\r\n").await.unwrap();
        let mut read = BytesMut::with_capacity(1024);
        assert_eq!(opening(&server, &mut read).await.unwrap(), Opening::Http1);
    }

    /// A partial preface and then the client's FIN: waiting for "the rest" must not spin on a
    /// socket that stays readable; what came decides (HTTP/1, whose server then meets the end
    /// of an unfinished head). The sniff runs on a thread of
    /// its own, so that a spinning one fails this test (the thread is left behind) instead of
    /// hanging it.
    #[tokio::test]
    async fn a_partial_preface_then_close_fails_at_once() {
        let (mut client, server) = pair().await;
        client.write_all(&PREFACE[..3]).await.unwrap();
        client.shutdown().await.unwrap();
        let server = server.into_std().unwrap();
        let (told, outcome) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let kind = runtime.block_on(async move {
                let server = TcpStream::from_std(server).unwrap();
                let mut read = BytesMut::with_capacity(1024);
                opening(&server, &mut read)
                    .await
                    .map_err(|error| error.kind())
            });
            let _ = told.send(kind);
        });
        let kind = outcome.recv_timeout(Duration::from_secs(2));
        assert_eq!(kind, Ok(Ok(Opening::Http1)), "the sniff spun");
    }

    #[tokio::test]
    async fn a_client_that_closes_without_a_byte_fails() {
        let (client, server) = pair().await;
        drop(client);
        let error = opening(&server, &mut BytesMut::new()).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }
}
