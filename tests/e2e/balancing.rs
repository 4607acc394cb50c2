//! Balancing methods over real sockets: smooth weighted round robin's exact order, least_conn
//! and `random two` steering away from servers with open requests, one socket.io session (long
//! polls on fresh connections, then a WebSocket) kept on one server by `ip_hash` and by the
//! sticky cookie, and backups behind a hashing method.
//!
//! Which server answered is read from the backend's answer (its name) or from its hit counter;
//! open requests are read from tether's live peer counters, and every wait on them is bounded.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::header;
use tokio::task::JoinHandle;
use tokio_tungstenite::client_async;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::client::{Connection, request};
use crate::harness::proxy::upstream_up;
use crate::harness::source::{connect_from, send_from};
use crate::harness::{Backend, Proxy, Reply, get, send, within};

async fn start(upstream: &str, backends: &[Backend]) -> Proxy {
    let names: Vec<(&str, SocketAddr)> = backends.iter().map(|b| (b.name, b.addr)).collect();
    Proxy::start(&upstream_up(upstream, ""), &names).await
}

/// Requests in flight on each member of `up`, primaries first in config order.
fn active(proxy: &Proxy) -> Vec<u64> {
    let snapshot = proxy.snapshot();
    let group = snapshot.upstream("up").expect("upstream up");
    group
        .members()
        .iter()
        .map(|m| m.peer.state.active())
        .collect()
}

/// Waits (bounded) until `check` returns something.
async fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    within(Duration::from_secs(5), what, async {
        loop {
            if let Some(value) = check() {
                return value;
            }
            // Re-checking a condition, not waiting for time to pass.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
}

/// Waits until tether's open-request counts are exactly `expected` (a finished request's count
/// is released when its body ends, a moment after the client has read it).
async fn settle(proxy: &Proxy, expected: &[u64]) {
    until(&format!("open requests to settle at {expected:?}"), || {
        (active(proxy) == expected).then_some(())
    })
    .await;
}

/// How a held request is sent.
enum HoldReq {
    /// Without a cookie: the balancer places it.
    Plain,
    /// With this `Cookie` header: a sticky cookie places it.
    Cookie(String),
}

/// Opens a request the backend holds for 10 s (far longer than the test) and returns the index
/// of the member it landed on, once tether counts it.
async fn open_hold(proxy: &Proxy, holds: &mut Vec<JoinHandle<Reply>>, req: HoldReq) -> usize {
    let before = active(proxy);
    let addr = proxy.addr;
    let request = match req {
        HoldReq::Plain => request("GET", "/hold?ms=10000", ""),
        HoldReq::Cookie(cookie) => {
            let mut r = request("GET", "/hold?ms=10000", "");
            r.headers_mut()
                .insert(header::COOKIE, cookie.parse().expect("a cookie header"));
            r
        }
    };
    holds.push(tokio::spawn(send(addr, request)));
    let after = until("the held request to be counted", || {
        let now = active(proxy);
        (now.iter().sum::<u64>() > before.iter().sum::<u64>()).then_some(now)
    })
    .await;
    after
        .iter()
        .zip(&before)
        .position(|(now, was)| now > was)
        .expect("one member gained a request")
}

/// Sends `count` short requests one after another, each once the previous one is released,
/// and returns which backend answered each.
async fn short_requests(proxy: &Proxy, count: usize, open: &[u64]) -> Vec<String> {
    let mut connection = Connection::open(proxy.addr).await;
    let mut answered = Vec::new();
    for _ in 0..count {
        let reply = connection.get("/").await;
        assert_eq!(reply.status, 200, "{reply:?}");
        answered.push(reply.body);
        settle(proxy, open).await;
    }
    answered
}

#[tokio::test]
async fn smooth_weighted_round_robin_interleaves_weights_5_1_1() {
    let backends = Backend::start_all(["a", "b", "c"]).await;
    let proxy = start("server {a} weight=5; server {b}; server {c};", &backends).await;
    let mut connection = Connection::open(proxy.addr).await;
    let mut order = String::new();
    for _ in 0..14 {
        let reply = connection.get("/").await;
        assert_eq!(reply.status, 200);
        order.push_str(&reply.body);
    }
    // nginx's smooth weighted round robin: the heavy server is spread out, not sent in a burst
    // (plain weighted round robin would give "aaaaabc").
    assert_eq!(order, "aabacaa".repeat(2));
}

#[tokio::test]
async fn least_conn_sends_new_requests_to_the_server_with_fewer_open() {
    let backends = [Backend::start("a").await, Backend::start("b").await];
    let proxy = start("least_conn; server {a}; server {b};", &backends).await;
    let mut holds = Vec::new();
    let x = open_hold(&proxy, &mut holds, HoldReq::Plain).await;
    let y = 1 - x;
    let mut open = vec![0, 0];
    open[x] = 1;
    // While X holds one, every new request goes to Y (round robin would alternate).
    let answered = short_requests(&proxy, 6, &open).await;
    assert!(
        answered.iter().all(|name| name == backends[y].name),
        "{} holds one request, so {} takes all: {answered:?}",
        backends[x].name,
        backends[y].name
    );
    // The next long one goes to Y as well; then they are even.
    assert_eq!(open_hold(&proxy, &mut holds, HoldReq::Plain).await, y);
    assert_eq!(active(&proxy), vec![1, 1]);
    // The backends agree: X got its hold only, Y the six short requests and the second hold.
    until("the second hold to reach its backend", || {
        (backends[y].hits() == 7).then_some(())
    })
    .await;
    assert_eq!(backends[x].hits(), 1);
    holds.iter().for_each(JoinHandle::abort);
}

#[tokio::test]
async fn least_conn_weighs_open_requests_by_weight() {
    let backends = [Backend::start("a").await, Backend::start("b").await];
    let proxy = start("least_conn; server {a} weight=3; server {b};", &backends).await;
    let mut holds = Vec::new();
    // Open requests per weight: the first two split whichever way a tie is broken (0/3 = 0/1,
    // then the other one is lower); at one each, a is lower (1/3 < 1/1) and takes the third.
    open_hold(&proxy, &mut holds, HoldReq::Plain).await;
    open_hold(&proxy, &mut holds, HoldReq::Plain).await;
    assert_eq!(active(&proxy), vec![1, 1], "the first two split");
    assert_eq!(open_hold(&proxy, &mut holds, HoldReq::Plain).await, 0);
    assert_eq!(active(&proxy), vec![2, 1]);
    // a has more open requests than b but less per weight (2/3 < 1/1): a takes the new ones.
    // Unweighted least_conn (or round robin) would send them to b.
    let answered = short_requests(&proxy, 6, &[2, 1]).await;
    assert!(answered.iter().all(|name| name == "a"), "{answered:?}");
    holds.iter().for_each(JoinHandle::abort);
}

#[tokio::test]
async fn random_two_least_conn_avoids_a_loaded_server() {
    let backends = Backend::start_all(["a", "b", "c"]).await;
    let proxy = start(
        "random two least_conn; server {a}; server {b}; server {c}; sticky cookie srv;",
        &backends,
    )
    .await;
    // Load a through its sticky cookie: five requests held open on it.
    let cookie = {
        let snapshot = proxy.snapshot();
        let group = snapshot.upstream("up").expect("upstream up");
        format!("srv={}", group.cookie_value(0).expect("a cookie value"))
    };
    let mut holds = Vec::new();
    for _ in 0..5 {
        let landed = open_hold(&proxy, &mut holds, HoldReq::Cookie(cookie.clone())).await;
        assert_eq!(landed, 0, "the cookie pins to a");
    }
    let answered = short_requests(&proxy, 40, &[5, 0, 0]).await;
    let count = |name: &str| answered.iter().filter(|n| *n == name).count();
    // a is chosen only when both draws are a; nginx redraws, so never. Plain random would give
    // a a third (P(a <= 4 of 40) ~ 0.06 %).
    assert!(
        count("a") <= 4,
        "the loaded server is avoided: {answered:?}"
    );
    assert!(count("b") > 0 && count("c") > 0, "{answered:?}");
    holds.iter().for_each(JoinHandle::abort);
}

/// What one socket.io-style session saw.
struct Session {
    /// The `Set-Cookie` of the 101, if any.
    upgrade_set_cookie: Option<String>,
}

/// A socket.io client: four long polls, each on a new connection, then a WebSocket upgrade and
/// one echo, all from `source`. With `cookies` it keeps the sticky cookie `srv` from the first
/// response that sets it and sends it on every later request, the handshake included.
async fn socketio_session(proxy: &Proxy, source: Ipv4Addr, cookies: bool) -> Session {
    let mut cookie: Option<String> = None;
    for _ in 0..4 {
        let mut poll = request("GET", "/hold?ms=50", "");
        if let Some(c) = &cookie {
            poll.headers_mut()
                .insert(header::COOKIE, c.parse().expect("cookie"));
        }
        let reply = within(
            Duration::from_secs(5),
            "a long poll",
            send_from(source, proxy.addr, poll),
        )
        .await;
        assert_eq!(reply.status, 200, "{reply:?}");
        if cookies && cookie.is_none() {
            cookie = Some(cookie_pair(reply.header("set-cookie")).expect("a sticky cookie"));
        }
    }
    let mut handshake = proxy
        .url("/ws")
        .replace("http", "ws")
        .into_client_request()
        .expect("a WebSocket request");
    if let Some(c) = &cookie {
        handshake
            .headers_mut()
            .insert(header::COOKIE, c.parse().expect("cookie"));
    }
    let stream = connect_from(source, proxy.addr).await;
    let (mut ws, response) = within(
        Duration::from_secs(5),
        "the WebSocket handshake",
        client_async(handshake, stream),
    )
    .await
    .expect("WebSocket handshake through tether");
    assert_eq!(response.status(), 101);
    ws.send(Message::text("2probe")).await.expect("send");
    let echo = within(Duration::from_secs(5), "the echo", ws.next()).await;
    assert_eq!(
        echo.expect("open").expect("a frame"),
        Message::text("2probe")
    );
    Session {
        upgrade_set_cookie: response
            .headers()
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().expect("text").to_string()),
    }
}

/// `srv=VALUE` out of a `Set-Cookie` header.
fn cookie_pair(set_cookie: &str) -> Option<String> {
    let pair = set_cookie.split(';').next()?.trim();
    pair.starts_with("srv=").then(|| pair.to_string())
}

fn hits(backends: &[Backend]) -> Vec<usize> {
    backends.iter().map(Backend::hits).collect()
}

/// All five requests of the session (four polls and the handshake) on one backend.
fn assert_one_server(backends: &[Backend]) {
    let hits = hits(backends);
    let mut sorted = hits.clone();
    sorted.sort();
    assert_eq!(sorted, vec![0, 0, 5], "hits per backend: {hits:?}");
}

const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 77, 1, 9);

#[tokio::test]
async fn a_socketio_session_stays_on_one_server_with_ip_hash() {
    let backends = Backend::start_all(["a", "b", "c"]).await;
    let proxy = start("ip_hash; server {a}; server {b}; server {c};", &backends).await;
    socketio_session(&proxy, CLIENT, false).await;
    assert_one_server(&backends);
}

#[tokio::test]
async fn a_socketio_session_is_split_by_round_robin() {
    let backends = Backend::start_all(["a", "b", "c"]).await;
    let proxy = start("server {a}; server {b}; server {c};", &backends).await;
    socketio_session(&proxy, CLIENT, false).await;
    // Five requests in turn over three servers: every server sees part of the session, which
    // is why socket.io needs sticky sessions at all.
    let hits = hits(&backends);
    assert!(hits.iter().all(|&h| h > 0), "split: {hits:?}");
}

#[tokio::test]
async fn a_socketio_session_stays_on_one_server_with_a_sticky_cookie() {
    let backends = Backend::start_all(["a", "b", "c"]).await;
    let proxy = start(
        "server {a}; server {b}; server {c}; sticky cookie srv;",
        &backends,
    )
    .await;
    let session = socketio_session(&proxy, CLIENT, true).await;
    assert_one_server(&backends);
    assert_eq!(
        session.upgrade_set_cookie, None,
        "a valid cookie was sent with the handshake: nothing to re-issue"
    );
}

/// The 101 of a handshake carrying `cookie` (if any): its `Set-Cookie`, and who answered.
async fn upgrade(proxy: &Proxy, cookie: Option<&str>) -> (Option<String>, String) {
    let mut handshake = proxy
        .url("/ws")
        .replace("http", "ws")
        .into_client_request()
        .expect("a WebSocket request");
    if let Some(c) = cookie {
        handshake
            .headers_mut()
            .insert(header::COOKIE, c.parse().expect("cookie"));
    }
    let stream = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    let (_ws, response) = within(
        Duration::from_secs(5),
        "the WebSocket handshake",
        client_async(handshake, stream),
    )
    .await
    .expect("WebSocket handshake through tether");
    assert_eq!(response.status(), 101);
    let text = |name: header::HeaderName| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().expect("text").to_string())
    };
    (
        text(header::SET_COOKIE),
        text(header::HeaderName::from_static("x-backend")).expect("x-backend on the 101"),
    )
}

#[tokio::test]
async fn a_101_sets_the_sticky_cookie_only_without_a_valid_one() {
    let backends = Backend::start_all(["a", "b", "c"]).await;
    let proxy = start(
        "server {a}; server {b}; server {c}; sticky cookie srv;",
        &backends,
    )
    .await;
    // No cookie: balanced, and the 101 pins the client.
    let (set, first) = upgrade(&proxy, None).await;
    let pair = cookie_pair(set.as_deref().expect("a Set-Cookie on the 101")).expect("srv=");
    // Its cookie: same server every time, nothing re-issued.
    for _ in 0..4 {
        let (set, server) = upgrade(&proxy, Some(&pair)).await;
        assert_eq!((set, server.as_str()), (None, first.as_str()));
    }
    // A forged cookie: rebalanced and re-pinned to the server that answered.
    let (set, server) = upgrade(&proxy, Some("srv=0123456789abcdef")).await;
    let repinned =
        cookie_pair(set.as_deref().expect("a Set-Cookie for a forged cookie")).expect("srv=");
    let (set, again) = upgrade(&proxy, Some(&repinned)).await;
    assert_eq!((set, again), (None, server), "the new cookie pins");
}

#[tokio::test]
async fn hashing_with_backup_uses_the_backup_only_when_every_primary_is_down() {
    let backends = Backend::start_all(["a", "b", "c"]).await;
    let answers = |proxy: &Proxy| {
        let addr = proxy.addr;
        async move {
            let mut connection = Connection::open(addr).await;
            let mut answered = Vec::new();
            for k in 0..40 {
                let reply = connection.get(&format!("/?k=key-{k}")).await;
                assert_eq!(reply.status, 200, "{reply:?}");
                answered.push(reply.body);
            }
            answered
        }
    };
    let all_down = start(
        "hash $arg_k consistent; server {a} down; server {b} down; server {c} backup;",
        &backends,
    )
    .await;
    let answered = answers(&all_down).await;
    assert!(answered.iter().all(|n| n == "c"), "{answered:?}");

    let one_down = start(
        "hash $arg_k consistent; server {a} down; server {b}; server {c} backup;",
        &backends,
    )
    .await;
    let answered = answers(&one_down).await;
    assert!(
        answered.iter().all(|n| n == "b"),
        "a live primary takes everything: {answered:?}"
    );

    let live = start(
        "hash $arg_k consistent; server {a}; server {b}; server {c} backup;",
        &backends,
    )
    .await;
    let answered = answers(&live).await;
    assert!(!answered.iter().any(|n| n == "c"), "{answered:?}");
    assert!(
        answered.iter().any(|n| n == "a") && answered.iter().any(|n| n == "b"),
        "the keys spread over both primaries: {answered:?}"
    );
}

#[tokio::test]
async fn a_held_request_counts_until_its_answer_ends() {
    // The premise of the least_conn tests: tether's open count follows the request.
    let a = Backend::start("a").await;
    let proxy = start("least_conn; server {a};", std::slice::from_ref(&a)).await;
    let held = tokio::spawn(get(proxy.addr, "/hold?ms=300"));
    until("the hold to be counted", || {
        (active(&proxy) == [1]).then_some(())
    })
    .await;
    let reply = within(Duration::from_secs(5), "the held answer", held)
        .await
        .expect("join");
    assert_eq!(reply.body, "a held");
    settle(&proxy, &[0]).await;
}
