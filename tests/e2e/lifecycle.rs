//! What a reload and a stop do to connections already open.
//!
//! A reload that removes the very server a client is using cuts nothing: its WebSocket keeps
//! echoing, its SSE stream keeps delivering, its long poll and its in-flight keep-alive
//! request complete there — and the next request on that keep-alive connection follows the
//! new config. A fast stop closes everything at once; a graceful one refuses new connections,
//! lets requests finish (up to the shutdown timeout), closes idle keep-alive connections, then
//! sends every WebSocket a close frame 1001 (Going Away) (in `stopping`). The same through the
//! real binary, driven by signals and `tether -s`, which also keeps a pid file (in `signals`).

mod signals;
mod stopping;

use std::time::Duration;

use tokio::net::TcpStream;

use crate::harness::client::{Connection, request};
use crate::harness::load::{echo, next_event};
use crate::harness::session::{eventually, websocket};
use crate::harness::{Backend, Proxy, get, within};

const LIMIT: Duration = Duration::from_secs(5);

/// One upstream `up` of the single server `{NAME}`.
fn only(name: &str) -> String {
    format!(
        "events {{}} http {{ upstream up {{ server {{{name}}}; }} server {{ listen {{listen}}; location / {{ proxy_pass http://up; }} }} }}"
    )
}

/// How many `/hold` requests `backend` has received.
fn holds(backend: &Backend) -> usize {
    backend
        .seen()
        .iter()
        .filter(|seen| seen.uri.starts_with("/hold"))
        .count()
}

/// Waits until `backend` has received `count` `/hold` requests: they are in flight there.
async fn until_held(backend: &Backend, count: usize) {
    eventually(LIMIT, "the held requests to reach the backend", || async {
        holds(backend) >= count
    })
    .await;
}

/// True once `addr` refuses new connections.
async fn refuses(addr: std::net::SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_err()
}

#[tokio::test]
async fn a_reload_that_removes_their_server_cuts_nothing_in_flight() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let backends = [("a", a.addr), ("b", b.addr)];
    let proxy = Proxy::start(&only("a"), &backends).await;

    // A WebSocket, an SSE stream (one event in), a keep-alive connection with one request
    // done and a second held in flight, and a long poll: all on `a`.
    let (mut ws, upgrade) = websocket(proxy.addr, "/ws", None).await;
    assert_eq!(upgrade.headers()["x-backend"], "a");
    echo(&mut ws, "before the reload", LIMIT).await.unwrap();

    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sse_sender, sse_connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(sse_connection);
    a.release_event();
    let response = within(
        LIMIT,
        "the SSE response head",
        sse_sender.send_request(request("GET", "/sse?n=4", "")),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let mut events = response.into_body();
    let mut pending = String::new();
    assert_eq!(next_event(&mut events, &mut pending).await, "data: a 0\n\n");

    let mut keep_alive = Connection::open(proxy.addr).await;
    assert_eq!(keep_alive.get("/").await.body, "a");
    let in_flight = tokio::spawn(async move {
        let reply = keep_alive.get("/hold?ms=1000").await;
        (keep_alive, reply)
    });
    let long_poll = tokio::spawn(get(proxy.addr, "/hold?ms=1500"));
    until_held(&a, 2).await;
    let hits_on_a = a.hits();

    let applied = proxy
        .apply(&only("b"), &backends)
        .await
        .expect("the reload applies");
    assert_eq!(applied.new.generation, applied.old.generation + 1);
    assert!(
        !in_flight.is_finished() && !long_poll.is_finished(),
        "the reload happened while both held requests were in flight"
    );

    // New requests and new WebSockets go to the new server.
    for _ in 0..5 {
        let reply = get(proxy.addr, "/").await;
        assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "b"));
    }
    let (mut ws_b, upgrade) = websocket(proxy.addr, "/ws", None).await;
    assert_eq!(upgrade.headers()["x-backend"], "b");
    echo(&mut ws_b, "on b", LIMIT).await.unwrap();

    // What was open on `a` carries on there.
    for i in 0..3 {
        echo(&mut ws, &format!("after the reload {i}"), LIMIT)
            .await
            .expect("the WebSocket on the removed server still echoes");
    }
    for i in 1..4 {
        a.release_event();
        assert_eq!(
            next_event(&mut events, &mut pending).await,
            format!("data: a {i}\n\n"),
            "the SSE stream on the removed server keeps delivering"
        );
    }
    use http_body_util::BodyExt;
    while let Some(frame) = within(LIMIT, "the end of the SSE stream", events.frame()).await {
        let frame = frame.expect("the SSE stream ends cleanly");
        assert!(frame.data_ref().is_none_or(|d| d.is_empty()), "{frame:?}");
    }

    let reply = within(LIMIT, "the long poll", long_poll).await.unwrap();
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (200, "a held")
    );

    let (mut keep_alive, reply) = within(LIMIT, "the in-flight keep-alive request", in_flight)
        .await
        .unwrap();
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (200, "a held")
    );
    assert!(
        !keep_alive.is_closed(),
        "the keep-alive connection stays open"
    );
    let next = keep_alive.get("/").await;
    assert_eq!(
        (next.status.as_u16(), next.body.as_str()),
        (200, "b"),
        "the next request on the same keep-alive connection follows the new config"
    );

    assert_eq!(
        a.hits(),
        hits_on_a,
        "the removed server got no new request after the reload"
    );
    echo(&mut ws, "at the end", LIMIT).await.unwrap();
    proxy.stop().await;
}
