//! Telling HTTP/2 by prior knowledge from HTTP/1 on a fresh client connection, by peeking at
//! its first bytes.
//!
//! Peeking, not reading: hyper's parser then reads every byte itself, into one buffer sized
//! once. (hyper-util's `auto` reads the first 24 bytes apart and hands them back through a
//! wrapper, which makes hyper grow — and copy — its 8 KiB read buffer on every connection and
//! keep 16 KiB for the connection's life.)

use std::io;
use std::os::fd::AsRawFd;

use super::socket::SocketRef;
use tokio::io::Interest;

/// What every HTTP/2 connection by prior knowledge starts with (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a client opens its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// The HTTP/2 connection preface.
    Http2,
    /// Anything else: HTTP/1.x (hyper answers garbage with a 400).
    Http1,
}

/// Waits for the client's first bytes and tells which protocol they open. Bytes that are a
/// beginning of the preface wait for the rest, so a preface split across segments still reads
/// as HTTP/2. Fails when the client closes before sending anything.
pub async fn opening<'a>(stream: impl Into<SocketRef<'a>>) -> io::Result<Opening> {
    let stream = stream.into();
    let mut seen = [0u8; PREFACE.len()];
    loop {
        let ready = stream.ready(Interest::READABLE).await?;
        // After the client's FIN the socket stays readable and the part peeked stays there:
        // waiting for the rest would spin (tokio never clears "read closed"), so what there is
        // decides.
        let closed = ready.is_read_closed();
        let peeked = stream.try_io(Interest::READABLE, || {
            let n = peek(stream, &mut seen)?;
            if n > 0 && n < PREFACE.len() && seen[..n] == PREFACE[..n] && !closed {
                // Too early to tell: WouldBlock makes tokio wait for the next segment instead
                // of handing back the same bytes at once.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match peeked {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) if n == PREFACE.len() && seen == *PREFACE => return Ok(Opening::Http2),
            Ok(_) => return Ok(Opening::Http1),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        }
    }
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

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

    #[tokio::test]
    async fn a_request_line_is_http1_and_stays_unread() {
        let (mut client, mut server) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert_eq!(opening(&server).await.unwrap(), Opening::Http1);
        let mut first = [0u8; 5];
        server.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"GET /");
    }

    #[tokio::test]
    async fn the_preface_is_http2_even_split_across_segments() {
        let (mut client, mut server) = pair().await;
        client.set_nodelay(true).unwrap();
        client.write_all(&PREFACE[..9]).await.unwrap();
        // Proving a negative needs a bound: on 9 bytes of preface the sniff must keep waiting.
        let early = timeout(Duration::from_millis(100), opening(&server)).await;
        assert!(early.is_err(), "decided on a partial preface: {early:?}");
        client.write_all(&PREFACE[9..]).await.unwrap();
        assert_eq!(opening(&server).await.unwrap(), Opening::Http2);
        let mut all = [0u8; 24];
        server.read_exact(&mut all).await.unwrap();
        assert_eq!(&all, PREFACE);
    }

    #[tokio::test]
    async fn a_near_miss_of_the_preface_is_http1() {
        let (mut client, server) = pair().await;
        client.write_all(b"PRI * HTTP/1.1\r\n\r\n").await.unwrap();
        assert_eq!(opening(&server).await.unwrap(), Opening::Http1);
    }

    /// A partial preface and then the client's FIN: the bytes stay peekable and the socket
    /// stays readable, so waiting for "the rest" must not spin; what came decides (HTTP/1,
    /// whose server then meets the end of an unfinished head). The sniff runs on a thread of
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
                opening(&server).await.map_err(|error| error.kind())
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
        let error = opening(&server).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }
}
