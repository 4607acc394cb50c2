//! Long polling through tether: `proxy_read_timeout` bounds the wait for the response head, a
//! request held for less than that completes, and a held request ties up nothing but itself.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::harness::client::Connection;
use crate::harness::{Backend, Proxy, Reply, get, within};

#[tokio::test]
async fn a_request_held_3s_completes_under_a_5s_read_timeout() {
    let a = Backend::start("a").await;
    let proxy = Proxy::round_robin(&[a.addr], "proxy_read_timeout 5s;").await;
    let started = Instant::now();
    let reply = within(
        Duration::from_secs(8),
        "the held answer",
        get(proxy.addr, "/hold?ms=3000"),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "a held");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "the backend really held it"
    );
    assert_eq!(a.hits(), 1, "answered by the one attempt, no retry");
}

#[tokio::test]
async fn a_request_held_past_the_read_timeout_gets_504() {
    let a = Backend::start("a").await;
    let proxy = Proxy::round_robin(&[a.addr], "proxy_read_timeout 1s;").await;
    let started = Instant::now();
    let reply = within(
        Duration::from_secs(5),
        "the 504",
        get(proxy.addr, "/hold?ms=3000"),
    )
    .await;
    let waited = started.elapsed();
    assert_eq!(reply.status, 504, "{reply:?}");
    assert!(
        waited >= Duration::from_secs(1),
        "not before proxy_read_timeout ({waited:?})"
    );
    assert!(
        waited < Duration::from_millis(2500),
        "close to proxy_read_timeout, not the hold ({waited:?})"
    );
    assert_eq!(a.hits(), 1);
}

#[tokio::test]
async fn the_default_read_timeout_lets_a_2s_hold_through() {
    let a = Backend::start("a").await;
    let proxy = Proxy::round_robin(&[a.addr], "").await;
    let reply = within(
        Duration::from_secs(6),
        "the held answer",
        get(proxy.addr, "/hold?ms=2000"),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "a held");
}

#[tokio::test]
async fn a_held_poll_on_a_keep_alive_connection_blocks_no_other_client() {
    let a = Backend::start("a").await;
    let proxy = Proxy::round_robin(&[a.addr], "").await;
    let mut polling = Connection::open(proxy.addr).await;
    let started = Instant::now();
    let held: JoinHandle<(Reply, Connection)> = tokio::spawn(async move {
        let reply = polling.get("/hold?ms=2000").await;
        (reply, polling)
    });
    // Other clients are served at once while the poll is held upstream.
    for i in 0..10 {
        let reply = within(
            Duration::from_secs(1),
            "another client's answer",
            get(proxy.addr, &format!("/other/{i}")),
        )
        .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "a");
    }
    assert!(
        !held.is_finished() && started.elapsed() < Duration::from_secs(2),
        "the others were answered while the poll was still held"
    );
    let (reply, mut polling) = within(Duration::from_secs(5), "the held answer", held)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "a held");
    // The polling connection itself carries on afterwards.
    let next = polling.get("/after").await;
    assert_eq!(next.body, "a");
    assert!(a.seen().iter().any(|s| s.uri == "/hold?ms=2000"));
}

#[tokio::test]
async fn many_held_polls_wait_side_by_side() {
    let a = Backend::start("a").await;
    let proxy = Proxy::round_robin(&[a.addr], "").await;
    let started = Instant::now();
    let polls: Vec<_> = (0..20)
        .map(|_| tokio::spawn(get(proxy.addr, "/hold?ms=1000")))
        .collect();
    for poll in polls {
        let reply = within(Duration::from_secs(5), "a held answer", poll)
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "a held");
    }
    // Twenty 1 s holds one after another would take 20 s.
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(4),
        "the holds overlapped ({waited:?})"
    );
    assert_eq!(a.hits(), 20);
}

/// The wait for a response head is timed by the client connection's own timer, the one that
/// also times its keep-alive waits: both must keep their meaning on one connection.
#[tokio::test]
async fn a_keep_alive_connection_times_its_requests_and_its_idle_waits_apart() {
    let a = Backend::start("a").await;
    let timed = |read: &str, keepalive: &str| {
        format!(
            "http {{ keepalive_timeout {keepalive}; upstream up {{ server {{a}}; }} \
             server {{ listen {{listen}}; location / {{ proxy_pass http://up; \
             proxy_read_timeout {read}; }} }} }}"
        )
    };
    let proxy = Proxy::start(&timed("1s", "3s"), &[("a", a.addr)]).await;
    let mut connection = Connection::open(proxy.addr).await;
    assert_eq!(connection.get("/first").await.status, 200);
    // Held past proxy_read_timeout on a connection that waited for its keep-alive before.
    let started = Instant::now();
    let reply = within(
        Duration::from_secs(5),
        "the 504",
        connection.get("/hold?ms=3000"),
    )
    .await;
    let waited = started.elapsed();
    assert_eq!(reply.status, 504, "{reply:?}");
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(2500),
        "at proxy_read_timeout, not the hold nor keepalive_timeout ({waited:?})"
    );
    // Held under proxy_read_timeout, on a fresh connection whose keep-alive wait would end
    // first: the keep-alive clock does not run while a request does.
    let proxy = Proxy::start(&timed("4s", "1s"), &[("a", a.addr)]).await;
    let mut connection = Connection::open(proxy.addr).await;
    assert_eq!(connection.get("/first").await.status, 200);
    let reply = within(
        Duration::from_secs(5),
        "the held answer",
        connection.get("/hold?ms=2000"),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, "a held");
    // And the connection still waits for its next request, then closes once idle past it.
    assert_eq!(connection.get("/after").await.body, "a");
    within(
        Duration::from_secs(4),
        "the idle connection closed",
        async {
            while !connection.is_closed() {
                // Polling a condition: the client notices the close on its own.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;
}
