//! When the client side goes wrong: bodies over `client_max_body_size` (declared or chunked),
//! requests no server or location is configured for, bytes that are not HTTP at all, and
//! clients that connect and say nothing. Each gets nginx's answer, nothing of it reaches a
//! backend, and tether keeps serving.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::client::request;
use crate::harness::{Backend, Proxy, get, send, within};

#[tokio::test]
async fn a_body_over_client_max_body_size_gets_413_and_never_reaches_the_backend() {
    let a = Backend::start("a").await;
    let proxy = Proxy::round_robin(&[a.addr], "client_max_body_size 1k;").await;
    let reply = send(proxy.addr, request("POST", "/upload", &"x".repeat(2048))).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(a.hits(), 0);
    // Exactly at the limit is fine.
    let reply = send(proxy.addr, request("POST", "/upload", &"x".repeat(1024))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, format!("bytes=1024 sum={}", 1024 * b'x' as u64));
}

#[tokio::test]
async fn the_default_client_max_body_size_is_1m() {
    let a = Backend::start("a").await;
    let proxy = Proxy::round_robin(&[a.addr], "").await;
    let reply = send(proxy.addr, request("POST", "/upload", &"x".repeat(2 << 20))).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(a.hits(), 0);
    let reply = send(proxy.addr, request("POST", "/upload", &"x".repeat(1 << 20))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

#[tokio::test]
async fn a_chunked_body_over_client_max_body_size_gets_413() {
    // No Content-Length: the limit can only be enforced while the body streams.
    let a = Backend::start("a").await;
    let proxy = Proxy::round_robin(&[a.addr], "client_max_body_size 1k;").await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let chunks = (0..4).map(|_| Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![b'c'; 700]))));
    let body = StreamBody::new(futures_util::stream::iter(chunks));
    let req = http::Request::post("/upload")
        .header("host", "localhost")
        .body(body)
        .unwrap();
    let response = within(
        Duration::from_secs(5),
        "the answer",
        sender.send_request(req),
    )
    .await
    .expect("a response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    // The upstream did nothing wrong and still serves.
    let reply = send(proxy.addr, request("POST", "/upload", &"c".repeat(700))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

/// Sends `host` to the proxy and returns (status, body).
async fn get_host(proxy: &Proxy, host: &str, path: &str) -> (u16, String) {
    let mut req = request("GET", path, "");
    req.headers_mut().insert("host", host.parse().unwrap());
    let reply = send(proxy.addr, req).await;
    (reply.status.as_u16(), reply.body)
}

#[tokio::test]
async fn an_unknown_host_goes_to_the_default_server_and_an_unmatched_path_is_404() {
    let conf = r#"events {} http {
        server { listen {listen}; server_name one.test; return 200 "one"; }
        server { listen {listen} default_server; server_name two.test; return 200 "two"; }
        server { listen {listen}; server_name three.test; location /only/ { return 200 "only"; } }
    }"#;
    let proxy = Proxy::start(conf, &[]).await;
    assert_eq!(get_host(&proxy, "one.test", "/").await, (200, "one".into()));
    assert_eq!(get_host(&proxy, "two.test", "/").await, (200, "two".into()));
    assert_eq!(
        get_host(&proxy, "nobody.test", "/").await,
        (200, "two".into()),
        "the default_server"
    );
    assert_eq!(
        get_host(&proxy, "three.test", "/only/x").await,
        (200, "only".into())
    );
    let (status, _) = get_host(&proxy, "three.test", "/elsewhere").await;
    assert_eq!(status, 404, "no location matches");
}

#[tokio::test]
async fn bytes_that_are_not_http_get_a_4xx_and_tether_keeps_serving() {
    let a = Backend::start("a").await;
    let proxy = Proxy::round_robin(&[a.addr], "").await;
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(1 << 20)
    );
    // (input, the status line prefix expected; a reset before it arrives only for the huge head,
    // which the server may refuse before reading it all).
    let inputs: [(&[u8], &str); 6] = [
        (b"GARBAGE\r\n\r\n", "HTTP/1.1 400"),
        (b"\x00\x01\x02\xff\xfe\r\n\r\n", "HTTP/1.1 400"),
        (
            b"GET / HTTP/1.1\r\nno colon in this header\r\n\r\n",
            "HTTP/1.1 400",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
            "HTTP/1.1 400",
        ),
        (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", "HTTP/1.1 400"),
        // nginx's answer to a header line past large_client_header_buffers.
        (big_header.as_bytes(), "HTTP/1.1 400"),
    ];
    for (input, expected) in inputs {
        let shown = String::from_utf8_lossy(&input[..input.len().min(40)]).into_owned();
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        let _ = stream.write_all(input).await;
        let answer = within(
            Duration::from_secs(5),
            "tether to answer and close",
            read_to_close(&mut stream),
        )
        .await;
        let reset_is_fine = input.len() > 1 << 20 && answer.is_empty();
        assert!(
            answer.starts_with(expected) || reset_is_fine,
            "{shown:?}: expected {expected:?}, got {:?}",
            answer.chars().take(200).collect::<String>()
        );
        let reply = within(
            Duration::from_secs(5),
            "a normal request after garbage",
            get(proxy.addr, "/ok"),
        )
        .await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (200, "a"),
            "after {shown:?}"
        );
    }

    // An HTTP/2 preface followed by junk frames: the h2 side must fail just as cleanly.
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let _ = stream
        .write_all(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\x99\xff\x00\x00\x00\x07junkjunkjunk",
        )
        .await;
    within(
        Duration::from_secs(5),
        "tether to close the h2 connection",
        read_to_close(&mut stream),
    )
    .await;
    let reply = get(proxy.addr, "/ok").await;
    assert_eq!(reply.body, "a");
    assert_eq!(a.hits(), 7, "none of the garbage reached the backend");
}

/// Everything until the peer closes (a reset counts as a close).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// A client that connects and says nothing, or stops halfway through its head, holds a
/// connection only until `client_header_timeout` (nginx closes both; no backend hears of them).
#[tokio::test]
async fn silent_and_stalled_clients_are_closed_after_client_header_timeout() {
    let a = Backend::start("a").await;
    let conf = "events {} http { client_header_timeout 2s; \
                upstream up { server {a}; } \
                server { listen {listen}; location / { proxy_pass http://up; } } }";
    let proxy = Proxy::start(conf, &[("a", a.addr)]).await;
    for (shown, opening) in [
        ("nothing", &b""[..]),
        ("half a head", &b"GET / HTTP/1.1\r\nHost: x\r\n"[..]),
        ("half the h2 preface", &b"PRI * HTTP/2.0\r\n"[..]),
    ] {
        // tether's timer starts when it accepts: after `connecting`, before `opened`.
        let connecting = Instant::now();
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(opening).await.unwrap();
        let opened = Instant::now();
        within(
            Duration::from_secs(5),
            "tether to close the connection",
            read_to_close(&mut stream),
        )
        .await;
        let (at_most, at_least) = (connecting.elapsed(), opened.elapsed());
        assert!(
            at_most >= Duration::from_millis(900) && at_least < Duration::from_secs(3),
            "{shown}: closed {at_least:?} to {at_most:?} after the connection, expected ~1 s"
        );
    }
    assert_eq!(a.hits(), 0, "nothing reached the backend");
    assert_eq!(get(proxy.addr, "/ok").await.body, "a", "still serving");
}

/// The first head's `client_header_timeout` runs from the accept, as nginx's does (its timer is
/// set when the connection comes and is not set again by the first bytes): a client whose
/// first bytes come late and then stalls is closed ~2 s after it connected, not 2 s after
/// those bytes.
#[tokio::test]
async fn the_first_heads_timeout_runs_from_the_connection_not_from_its_first_byte() {
    let a = Backend::start("a").await;
    let conf = "events {} http { client_header_timeout 2s; \
                upstream up { server {a}; } \
                server { listen {listen}; location / { proxy_pass http://up; } } }";
    let proxy = Proxy::start(conf, &[("a", a.addr)]).await;
    let connecting = Instant::now();
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    // Paces the stimulus: the first bytes come well into the timeout, and the head stalls.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    within(
        Duration::from_secs(5),
        "tether to close the connection",
        read_to_close(&mut stream),
    )
    .await;
    let closed = connecting.elapsed();
    // From the accept: ~2.0 s. Restarted by the first bytes it would be ~3.5 s; the bound
    // between leaves a busy machine 0.75 s.
    assert!(
        closed >= Duration::from_millis(1900) && closed < Duration::from_millis(2750),
        "closed {closed:?} after connecting, expected ~2 s"
    );
    assert_eq!(a.hits(), 0, "nothing reached the backend");
}
