//! Passive health, nginx's rules, seen from outside: the only server of a group is never taken
//! out; `max_fails` failures within `fail_timeout` take a server out even with successes in
//! between, and one trial after `fail_timeout` brings it back; when every server of a group has
//! failed, they are all tried again from the next request on ("quick recovery").
//!
//! The misbehaving servers here are [`Flaky`]: each connection carries one exchange, and a
//! script says what the n-th connection gets, so a test knows exactly which attempt reached it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::harness::proxy::upstream_up;
use crate::harness::session::{eventually, peer};
use crate::harness::{Backend, Proxy, Reply, get, within};

/// What a [`Flaky`] server does with one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Turn {
    /// Reads the request and answers `200 NAME`, then closes.
    Serve,
    /// Closes at once, answering nothing (a crashing worker).
    Drop,
    /// Reads the request and answers bytes that are not HTTP (a confused one).
    Garbage,
}

/// A server whose n-th connection (counted from 1) gets `script(n)`. It answers
/// `Connection: close`, so every exchange with it is one connection.
struct Flaky {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Flaky {
    async fn start(name: &'static str, script: fn(usize) -> Turn) -> Flaky {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind flaky");
        let addr = listener.local_addr().expect("flaky address");
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(exchange(stream, name, script(n)));
            }
        });
        Flaky {
            addr,
            connections,
            task,
        }
    }

    /// Connections accepted so far: the attempts tether made on this server.
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Flaky {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn exchange(mut stream: TcpStream, name: &str, turn: Turn) {
    if turn == Turn::Drop {
        return;
    }
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let answer = match turn {
        Turn::Garbage => "this is not HTTP at all\r\n\r\n".to_string(),
        _ => format!(
            "HTTP/1.1 200 OK\r\nx-backend: {name}\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{name}",
            name.len()
        ),
    };
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn answered_by(reply: &Reply) -> &str {
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.header("x-backend")
}

/// `GET path`, bounded: a hang fails the test instead of stalling the suite.
async fn get_within(proxy: &Proxy, path: &str) -> Reply {
    within(Duration::from_secs(5), path, get(proxy.addr, path)).await
}

#[tokio::test]
async fn the_only_server_of_a_group_is_not_taken_out_by_a_timeout() {
    let a = Backend::start("a").await;
    // Defaults: max_fails=1 fail_timeout=10s — which nginx never applies to a lone server.
    let conf = "events {} http { upstream app { server {a}; } \
                server { listen {listen}; location / { proxy_pass http://app; \
                proxy_read_timeout 300ms; } } }";
    let proxy = Proxy::start(conf, &[("a", a.addr)]).await;
    let reply = get_within(&proxy, "/hold?ms=3000").await;
    assert_eq!(reply.status, 504, "the stalled request: {reply:?}");
    for i in 0..3 {
        let reply = get_within(&proxy, &format!("/after/{i}")).await;
        assert_eq!(answered_by(&reply), "a", "request {i} after the 504");
    }
    assert_eq!(a.hits(), 4, "every request reached the server");
    let state = &peer(&proxy, "app", a.addr).state;
    assert_eq!(
        state.failures(),
        1,
        "the timeout still shows in the counters"
    );
}

#[tokio::test]
async fn proxy_pass_to_an_address_is_not_taken_out_by_an_invalid_response() {
    let f = Flaky::start("f", |n| if n == 1 { Turn::Garbage } else { Turn::Serve }).await;
    let conf = "events {} http { server { listen {listen}; \
                location / { proxy_pass http://{f}; } } }";
    let proxy = Proxy::start(conf, &[("f", f.addr)]).await;
    let reply = get_within(&proxy, "/garbage").await;
    assert_eq!(reply.status, 502, "the invalid response: {reply:?}");
    for i in 0..3 {
        let reply = get_within(&proxy, &format!("/after/{i}")).await;
        assert_eq!(answered_by(&reply), "f", "request {i} after the 502");
    }
    assert_eq!(f.connections(), 4);
}

#[tokio::test]
async fn when_every_server_has_failed_the_next_request_tries_them_again() {
    let fail_first = |n| if n == 1 { Turn::Drop } else { Turn::Serve };
    let a = Flaky::start("a", fail_first).await;
    let b = Flaky::start("b", fail_first).await;
    let proxy = Proxy::start(
        &upstream_up("server {a}; server {b};", ""),
        &[("a", a.addr), ("b", b.addr)],
    )
    .await;
    // Both fail this one (the GET is retried on the other): both are out for 10 s.
    let reply = get_within(&proxy, "/both-fail").await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert_eq!((a.connections(), b.connections()), (1, 1));
    // nginx's order: the request that finds no live server is answered 502 at once and resets
    // every server's failures ...
    let reply = get_within(&proxy, "/none-live").await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert_eq!(
        (a.connections(), b.connections()),
        (1, 1),
        "nothing was tried"
    );
    // ... so the next ones are served, long before fail_timeout.
    let mut served = Vec::new();
    for i in 0..4 {
        let reply = get_within(&proxy, &format!("/recovered/{i}")).await;
        served.push(answered_by(&reply).to_string());
    }
    served.sort();
    assert_eq!(served, ["a", "a", "b", "b"], "both are back in rotation");
}

#[tokio::test]
async fn a_server_failing_one_request_in_three_is_taken_out_then_tried_once_after_fail_timeout() {
    let f = Flaky::start("f", |n| if n % 3 == 0 { Turn::Drop } else { Turn::Serve }).await;
    let h = Backend::start("h").await;
    let proxy = Proxy::start(
        &upstream_up(
            "server {f} max_fails=2 fail_timeout=2s; server {h} max_fails=0;",
            "",
        ),
        &[("f", f.addr), ("h", h.addr)],
    )
    .await;
    // f serves, serves, drops, serves, serves, drops: two failures within fail_timeout, the
    // successes in between notwithstanding. Each drop is retried on h, so clients see only 200s.
    let mut sent = 0;
    while f.connections() < 6 {
        assert!(sent < 20, "f should have had 6 attempts by now");
        let reply = get_within(&proxy, &format!("/in/{sent}")).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        sent += 1;
    }
    let out_at = Instant::now();
    for i in 0..10 {
        let reply = get_within(&proxy, &format!("/out/{i}")).await;
        assert_eq!(answered_by(&reply), "h", "request {i} while f is out");
    }
    assert_eq!(f.connections(), 6, "an out server is not even tried");
    let state = &peer(&proxy, "up", f.addr).state;
    assert_eq!(state.failures(), 2);

    // After fail_timeout one request tries f again; it is served, so f is back.
    let addr = proxy.addr;
    let f_ref = &f;
    eventually(Duration::from_secs(5), "f's trial request", || async move {
        let reply = within(Duration::from_secs(5), "a request", get(addr, "/wait")).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        f_ref.connections() > 6
    })
    .await;
    let waited = out_at.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "tried again after {waited:?}, before fail_timeout"
    );
    assert_eq!(f.connections(), 7, "one trial");
    let reply = get_within(&proxy, "/back/0").await;
    let reply2 = get_within(&proxy, "/back/1").await;
    let answered = [answered_by(&reply), answered_by(&reply2)];
    assert!(
        answered.contains(&"f"),
        "f is back in rotation: {answered:?}"
    );
    assert_eq!(f.connections(), 8);
}
