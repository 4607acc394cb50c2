//! A new client connection per request: the accept path, the first read that also tells
//! HTTP/2 from HTTP/1, the close, and the upstream connection kept between client connections.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::harness::{Backend, Proxy};

/// Sends `pieces` on a new connection (a short pause between them, so each leaves as a
/// segment of its own) and reads until the proxy closes; the close must be a clean FIN.
async fn exchange(addr: SocketAddr, pieces: &[&[u8]]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            // Paces the stimulus: the proxy reads the first piece alone.
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        stream.write_all(piece).await.expect("send");
    }
    let mut answer = Vec::new();
    timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the proxy closed within 5 s")
        .expect("closed cleanly, not reset");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn client_connections_one_request_each_share_one_upstream_connection() {
    let a = Backend::start("a").await;
    let proxy = Proxy::round_robin(&[a.addr], "").await;
    for i in 0..20 {
        let request = format!("GET /n/{i} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let answer = exchange(proxy.addr, &[request.as_bytes()]).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\na"), "{answer}");
    }
    assert_eq!(a.hits(), 20);
    // The upstream side is pooled across client connections, as nginx's `keepalive` does.
    assert_eq!(a.connections(), 1, "upstream connections opened");
}

/// The first read (the one that tells HTTP/2's preface from HTTP/1) keeps what it read: a head
/// whose first byte came alone is served whole, the byte included.
#[tokio::test]
async fn a_head_whose_first_byte_came_alone_is_served_whole() {
    let a = Backend::start("a").await;
    let proxy = Proxy::round_robin(&[a.addr], "").await;
    let rest = b"ET /first HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let answer = exchange(proxy.addr, &[b"G", rest]).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert_eq!(a.last().uri, "/first");
}

/// `P` could begin HTTP/2's preface (`PRI * HTTP/2.0`): the first read waits for more, and
/// what it gathered is the start of an HTTP/1 `POST` head, served.
#[tokio::test]
async fn a_post_split_where_it_could_still_be_the_preface_is_http1() {
    let a = Backend::start("a").await;
    let proxy = Proxy::round_robin(&[a.addr], "").await;
    let pieces: [&[u8]; 3] = [
        b"P",
        b"OS",
        b"T /up HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    ];
    let answer = exchange(proxy.addr, &pieces).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let seen = a.last();
    assert_eq!((seen.method.as_str(), seen.uri.as_str()), ("POST", "/up"));
    assert_eq!(seen.header("content-length"), "3");
}

/// The segments this client socket received, and how many of them carried data
/// (`TCP_INFO`'s `tcpi_segs_in`, `tcpi_data_segs_in`).
#[cfg(target_os = "linux")]
fn segments_in(stream: &TcpStream) -> (u32, u32) {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain integers, valid zeroed; getsockopt writes at most `len` bytes
    // into it, and reads nothing but the descriptor, which `stream` keeps open.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let done = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut len,
        )
    };
    assert_eq!(done, 0, "getsockopt(TCP_INFO)");
    (info.tcpi_segs_in, info.tcpi_data_segs_in)
}

/// A response after which the connection closes leaves with the FIN in its last segment: one
/// segment, one wake-up of the client and one acknowledgement fewer than data and FIN apart
/// (nginx sends them apart). Counted on the client socket: the SYN-ACK, the kernel's quick
/// acknowledgement of the request, and the answer with its FIN — four with the FIN apart.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_closing_answer_leaves_with_its_fin_in_one_segment() {
    let a = Backend::start("a").await;
    let proxy = Proxy::round_robin(&[a.addr], "").await;
    for i in 0..3 {
        let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
        let request = format!("GET /n/{i} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut answer = Vec::new();
        timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
            .await
            .expect("the proxy closed within 5 s")
            .expect("closed cleanly, not reset");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        assert!(answer.ends_with("\r\n\r\na"), "{answer}");
        let (segments, with_data) = segments_in(&stream);
        assert_eq!(with_data, 1, "the answer came in one segment");
        assert!(
            segments - with_data <= 2,
            "{segments} segments in: the FIN came apart from the answer"
        );
    }
}
