//! When an upstream goes wrong: it refuses, it drops the request unanswered, it never completes
//! the handshake (`proxy_connect_timeout`), it stops reading the body (`proxy_send_timeout`).
//! Each failure must become nginx's status code, be retried on the next server only when that
//! is safe (nothing reached the upstream, or the method is idempotent), and leave tether serving.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use crate::harness::client::request;
use crate::harness::{Backend, Proxy, get, send, within};

/// An address nothing listens on: bound to learn a free port, then released.
async fn refusing_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address")
}

/// An upstream that accepts, reads a request head, and closes without answering. It records
/// every head it read, so a test can tell what reached it.
struct Dropper {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Dropper {
    async fn start() -> Dropper {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the dropper");
        let addr = listener.local_addr().expect("address");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let head = read_head(&mut stream).await;
                seen.lock().unwrap().push(head);
                // Dropping the stream closes the connection with no answer.
            }
        });
        Dropper { addr, heads, task }
    }

    /// The request lines of everything received, e.g. `GET /x HTTP/1.1`.
    fn request_lines(&self) -> Vec<String> {
        let heads = self.heads.lock().unwrap();
        heads
            .iter()
            .map(|h| h.lines().next().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for Dropper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads until the end of an HTTP head (or EOF, or an error) and returns what was read.
async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test]
async fn a_refusing_upstream_alone_gives_502() {
    let dead = refusing_addr().await;
    let proxy = Proxy::round_robin(&[dead], "").await;
    let reply = within(Duration::from_secs(5), "the 502", get(proxy.addr, "/")).await;
    assert_eq!(reply.status, 502, "{reply:?}");
    // Still serving: the same again.
    assert_eq!(get(proxy.addr, "/again").await.status, 502);
}

#[tokio::test]
async fn a_refusing_server_is_passed_over_for_the_next_one() {
    let dead = refusing_addr().await;
    let a = Backend::start("a").await;
    // max_fails=0: the dead server stays in rotation, so requests keep landing on it first.
    let conf = "events {} http { upstream up { server {dead} max_fails=0; server {a}; } \
                server { listen {listen}; location / { proxy_pass http://up; } } }";
    let proxy = Proxy::start(conf, &[("dead", dead), ("a", a.addr)]).await;
    for i in 0..6 {
        let reply = get(proxy.addr, &format!("/get/{i}")).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (200, "a"),
            "GET {i}"
        );
    }
    // Nothing reached the dead server, so even a POST with a body may go to the next one.
    for i in 0..4 {
        let reply = send(proxy.addr, request("POST", "/upload", "hello")).await;
        assert_eq!(reply.status, 200, "POST {i}: {reply:?}");
        assert_eq!(
            reply.body,
            format!(
                "bytes=5 sum={}",
                b"hello".iter().map(|&b| b as u64).sum::<u64>()
            )
        );
    }
    assert_eq!(a.hits(), 10);
}

#[tokio::test]
async fn a_post_whose_first_server_refuses_goes_to_the_backup() {
    let dead = refusing_addr().await;
    let a = Backend::start("a").await;
    let conf = "events {} http { upstream up { server {dead}; server {a} backup; } \
                server { listen {listen}; location / { proxy_pass http://up; } } }";
    let proxy = Proxy::start(conf, &[("dead", dead), ("a", a.addr)]).await;
    // The very first request: the primary is certainly tried first.
    let reply = send(proxy.addr, request("POST", "/upload", "abc")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, "bytes=3 sum=294");
    assert_eq!(a.last().method, "POST");
}

#[tokio::test]
async fn a_get_the_upstream_dropped_is_retried_on_the_next_server() {
    let dropper = Dropper::start().await;
    let a = Backend::start("a").await;
    let conf = "events {} http { upstream up { server {drop} max_fails=0; server {a} backup; } \
                server { listen {listen}; location / { proxy_pass http://up; } } }";
    let proxy = Proxy::start(conf, &[("drop", dropper.addr), ("a", a.addr)]).await;
    for i in 0..3 {
        let reply = within(
            Duration::from_secs(5),
            "the retried GET",
            get(proxy.addr, &format!("/g/{i}")),
        )
        .await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (200, "a"),
            "GET {i}"
        );
    }
    // Each GET reached the dropper first, then the backup.
    assert_eq!(
        dropper.request_lines(),
        [
            "GET /g/0 HTTP/1.1",
            "GET /g/1 HTTP/1.1",
            "GET /g/2 HTTP/1.1"
        ]
    );
    assert_eq!(a.hits(), 3);
}

#[tokio::test]
async fn a_post_the_upstream_dropped_is_not_retried() {
    let dropper = Dropper::start().await;
    let a = Backend::start("a").await;
    let conf = "events {} http { upstream up { server {drop}; server {a} backup; } \
                server { listen {listen}; location / { proxy_pass http://up; } } }";
    let proxy = Proxy::start(conf, &[("drop", dropper.addr), ("a", a.addr)]).await;
    // The dropper may have acted on it: sending it again elsewhere could do it twice.
    let reply = within(
        Duration::from_secs(5),
        "the 502",
        send(proxy.addr, request("POST", "/upload", "pay once")),
    )
    .await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert_eq!(dropper.request_lines(), ["POST /upload HTTP/1.1"]);
    assert_eq!(a.hits(), 0, "the healthy backend never saw the POST");
}

#[tokio::test]
async fn proxy_next_upstream_off_retries_nothing() {
    let dead = refusing_addr().await;
    let dropper = Dropper::start().await;
    let a = Backend::start("a").await;
    let conf = "events {} http { \
                upstream refused { server {dead}; server {a} backup; } \
                upstream dropped { server {drop}; server {a} backup; } \
                server { listen {listen}; \
                    location /refused/ { proxy_pass http://refused; proxy_next_upstream off; } \
                    location /dropped/ { proxy_pass http://dropped; proxy_next_upstream off; } } }";
    let proxy = Proxy::start(
        conf,
        &[("dead", dead), ("drop", dropper.addr), ("a", a.addr)],
    )
    .await;
    let reply = within(
        Duration::from_secs(5),
        "the 502",
        get(proxy.addr, "/refused/x"),
    )
    .await;
    assert_eq!(reply.status, 502, "{reply:?}");
    let reply = within(
        Duration::from_secs(5),
        "the 502",
        get(proxy.addr, "/dropped/x"),
    )
    .await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert_eq!(dropper.request_lines(), ["GET /dropped/x HTTP/1.1"]);
    assert_eq!(a.hits(), 0, "the backup was never tried");
}

#[tokio::test]
async fn an_upstream_that_never_completes_the_handshake_gives_504_after_proxy_connect_timeout() {
    // A listener that never accepts, with a backlog of one: once its accept queue is full the
    // kernel drops further SYNs, so a connect neither succeeds nor fails.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let silent = socket.listen(1).unwrap();
    let addr = silent.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    assert!(fillers.len() < 16, "the accept queue never filled");

    let proxy = Proxy::round_robin(&[addr], "proxy_connect_timeout 500ms;").await;
    let started = Instant::now();
    let reply = within(Duration::from_secs(5), "the 504", get(proxy.addr, "/")).await;
    let waited = started.elapsed();
    assert_eq!(reply.status, 504, "{reply:?}");
    assert!(
        waited >= Duration::from_millis(500),
        "not before proxy_connect_timeout ({waited:?})"
    );
    assert!(
        waited < Duration::from_secs(3),
        "soon after proxy_connect_timeout ({waited:?})"
    );
    drop(silent);
}

#[tokio::test]
async fn an_upstream_that_stops_reading_the_body_gives_504_after_proxy_send_timeout() {
    // Accepts and keeps every connection, reading nothing.
    let holder = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = holder.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((stream, _)) = holder.accept().await {
            kept.push(stream);
        }
    });
    let proxy = Proxy::round_robin(&[addr], "client_max_body_size 0; proxy_send_timeout 1s;").await;

    const SIZE: usize = 64 << 20;
    let (mut from_proxy, mut to_proxy) = TcpStream::connect(proxy.addr).await.unwrap().into_split();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let head =
            format!("POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {SIZE}\r\n\r\n");
        to_proxy.write_all(head.as_bytes()).await?;
        let chunk = vec![b'u'; 1 << 20];
        for _ in 0..SIZE / chunk.len() {
            to_proxy.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let head = within(
        Duration::from_secs(10),
        "the response head",
        read_head(&mut from_proxy),
    )
    .await;
    let waited = started.elapsed();
    assert!(
        head.starts_with("HTTP/1.1 504"),
        "expected a 504, got {head:?}"
    );
    assert!(
        waited >= Duration::from_secs(1),
        "not before proxy_send_timeout ({waited:?})"
    );
    assert!(
        !writer.is_finished() || writer.await.unwrap().is_err(),
        "the 64 MiB never all went through"
    );
    held.abort();
}
