//! The test harness: named backends that count hits and report what they saw, a proxy started
//! from a config string, and small clients. Everything runs on 127.0.0.1 ephemeral ports.

pub mod backend;
pub mod certs;
pub mod client;
pub mod dns;
pub mod edit;
pub mod framing;
pub mod h2_frames;
pub mod h2_websocket;
pub mod h2_window;
pub mod haproxy;
pub mod held_health;
pub mod load;
pub mod logs;
pub mod nginx;
pub mod process;
pub mod procfs;
pub mod proxy;
pub mod raw;
pub mod recorder;
pub mod redis;
pub mod session;
pub mod signalr;
pub mod signalr_client;
pub mod slowloris;
pub mod socketio;
pub mod source;
pub mod system_tool;
pub mod tally;
pub mod tls_backend;
pub mod watching;
pub mod witness;

pub use backend::Backend;
pub use client::{Reply, get, send};
pub use proxy::Proxy;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// A loopback address with a port free right now (bound, read, released), for configs and
/// child processes that need a fixed port. Another process could take it in between; the
/// kernel hands out ephemeral ports in a spread-out order, which makes that rare.
pub fn free_addr() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    probe.local_addr().expect("probe address")
}

/// Fails the test if `future` takes longer than `limit`: a bound on a condition, never a sleep.
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Reads `count` server-sent events `data: NAME i` from `body` in lockstep with `backend`: event
/// i+1 is released only once event i has arrived here, so a proxy that held even one event back
/// would stall this. Then expects the stream to end with nothing more (empty frames allowed:
/// HTTP/2 may close a stream with one).
pub async fn expect_events_one_by_one(
    body: &mut hyper::body::Incoming,
    backend: &Backend,
    count: usize,
) {
    use http_body_util::BodyExt;
    let limit = Duration::from_secs(5);
    let mut pending = String::new();
    for i in 0..count {
        while !pending.contains("\n\n") {
            let frame = within(limit, "the next SSE event", body.frame())
                .await
                .expect("stream open")
                .expect("frame");
            if let Some(data) = frame.data_ref() {
                pending.push_str(std::str::from_utf8(data).expect("UTF-8 events"));
            }
        }
        let end = pending.find("\n\n").expect("a complete event") + 2;
        let event: String = pending.drain(..end).collect();
        assert_eq!(event, format!("data: {} {i}\n\n", backend.name));
        backend.release_event();
    }
    while let Some(frame) = within(limit, "the end of the stream", body.frame()).await {
        let frame = frame.expect("frame");
        let extra = frame.data_ref().map_or(0, |data| data.len());
        assert_eq!(extra, 0, "nothing after the last event: {frame:?}");
    }
}
