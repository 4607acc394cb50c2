//! Failover, Azure SignalR's sequence, one test per step, over two primaries and a backup with
//! `sticky cookie`: primaries take every new session while one lives; with all primaries down
//! new sessions go to the backup with no error; when a primary returns, new sessions return to
//! it while sessions and WebSockets on the backup stay. Then each server parameter on its own:
//! `down`, `drain`, `max_conns`, `weight`, `max_fails`/`fail_timeout`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::client::request;
use crate::harness::proxy::upstream_up;
use crate::harness::session::{
    Gate, cookie_value, eventually, get_with_cookie, peer, set_cookies, websocket,
};
use crate::harness::{Backend, Proxy, Reply, get, send, within};

/// Two primaries behind gates (so they can be stopped and restarted on the same address) and a
/// backup, under `sticky cookie srv`. A failed primary is tried again after one second.
struct Farm {
    p1: Backend,
    p2: Backend,
    bk: Backend,
    g1: Gate,
    g2: Gate,
    proxy: Proxy,
}

impl Farm {
    async fn start() -> Farm {
        let (p1, p2, bk) = (
            Backend::start("p1").await,
            Backend::start("p2").await,
            Backend::start("bk").await,
        );
        let (g1, g2) = (Gate::open(p1.addr).await, Gate::open(p2.addr).await);
        let conf = "events {} http { upstream up { \
                        server {p1} max_fails=1 fail_timeout=1s; \
                        server {p2} max_fails=1 fail_timeout=1s; \
                        server {bk} backup; \
                        sticky cookie srv; } \
                    server { listen {listen}; location / { proxy_pass http://up; } } }";
        let proxy = Proxy::start(conf, &[("p1", g1.addr), ("p2", g2.addr), ("bk", bk.addr)]).await;
        Farm {
            p1,
            p2,
            bk,
            g1,
            g2,
            proxy,
        }
    }

    /// A new session: a request without a cookie. Always a 200 with a cookie, whatever is down.
    async fn new_session(&self, i: usize) -> (String, String) {
        let reply = get(self.proxy.addr, &format!("/session/{i}")).await;
        assert_eq!(reply.status, 200, "new session {i}: {reply:?}");
        let value = cookie_value(&reply.headers, "srv").expect("a new session gets a cookie");
        (reply.header("x-backend").to_string(), value)
    }

    /// The cookie value of every primary, learnt from new sessions while both are up.
    async fn primary_values(&self) -> HashMap<String, String> {
        let mut values = HashMap::new();
        for i in 0..20 {
            let (server, value) = self.new_session(i).await;
            values.insert(server, value);
            if values.len() == 2 {
                break;
            }
        }
        assert_eq!(values.len(), 2, "both primaries took sessions: {values:?}");
        values
    }
}

async fn echo(ws: &mut crate::harness::session::Ws, text: &str) {
    ws.send(Message::text(text))
        .await
        .expect("send on the WebSocket");
    let echoed = within(Duration::from_secs(5), "the echo", ws.next()).await;
    assert_eq!(echoed.expect("open").expect("a frame"), Message::text(text));
}

#[tokio::test]
async fn primaries_take_every_new_session_while_one_is_live() {
    let mut farm = Farm::start().await;
    for i in 0..20 {
        let (server, _) = farm.new_session(i).await;
        assert_ne!(server, "bk", "session {i}");
    }
    assert!(farm.p1.hits() > 0 && farm.p2.hits() > 0, "both primaries");
    assert_eq!(farm.bk.hits(), 0);

    // One primary stops: the other takes everything, still none for the backup.
    farm.g1.close().await;
    let p1_hits = farm.p1.hits();
    for i in 20..40 {
        let (server, _) = farm.new_session(i).await;
        assert_eq!(server, "p2", "session {i}");
    }
    assert_eq!(
        farm.p1.hits(),
        p1_hits,
        "nothing got through to the stopped primary"
    );
    assert_eq!(
        farm.bk.hits(),
        0,
        "the backup stays idle while a primary lives"
    );
}

#[tokio::test]
async fn with_every_primary_down_new_sessions_go_to_the_backup_without_an_error() {
    let mut farm = Farm::start().await;
    let primaries = farm.primary_values().await;
    farm.g1.close().await;
    farm.g2.close().await;
    let hits = (farm.p1.hits(), farm.p2.hits());

    // The first requests meet refused connections and are retried on the next server.
    let (server, backup_value) = farm.new_session(0).await;
    assert_eq!(server, "bk");
    for i in 1..10 {
        let session = farm.new_session(i).await;
        assert_eq!(
            session,
            ("bk".to_string(), backup_value.clone()),
            "session {i}"
        );
    }
    // Sessions pinned to a dead primary move to the backup, and are re-pinned there.
    for (server, value) in &primaries {
        let reply = get_with_cookie(farm.proxy.addr, "/", &format!("srv={value}")).await;
        assert_eq!(
            (reply.status.as_u16(), reply.header("x-backend")),
            (200, "bk"),
            "a session of {server}"
        );
        assert_eq!(
            cookie_value(&reply.headers, "srv"),
            Some(backup_value.clone())
        );
    }
    // Nothing was sent to the dead primaries, so even a POST is replayed on the backup.
    let reply = send(farm.proxy.addr, request("POST", "/upload", "hello")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-backend"), "bk");
    assert_eq!(reply.body, "bytes=5 sum=532");

    assert_eq!((farm.p1.hits(), farm.p2.hits()), hits);
    for (gate, backend) in [(&farm.g1, &farm.p1), (&farm.g2, &farm.p2)] {
        let state = &peer(&farm.proxy, "up", gate.addr).state;
        assert!(
            state.failures() >= 1,
            "{}'s refusals were counted",
            backend.name
        );
    }
}

#[tokio::test]
async fn a_recovered_primary_takes_new_sessions_while_backup_sessions_stay() {
    let mut farm = Farm::start().await;
    farm.g1.close().await;
    farm.g2.close().await;
    let (server, backup_value) = farm.new_session(0).await;
    assert_eq!(server, "bk");
    let backup_cookie = format!("srv={backup_value}");
    let (mut ws, response) = websocket(farm.proxy.addr, "/ws", None).await;
    assert_eq!(
        cookie_value(response.headers(), "srv"),
        Some(backup_value.clone())
    );
    assert_eq!(farm.bk.last().uri, "/ws", "the WebSocket is on the backup");
    echo(&mut ws, "before").await;

    // p1 restarts on its address. Once its fail_timeout has passed, a new session tries it.
    farm.g1.reopen().await;
    let addr = farm.proxy.addr;
    let mut i = 1;
    eventually(Duration::from_secs(5), "a new session on p1", || {
        i += 1;
        let n = i;
        async move {
            let reply = get(addr, &format!("/probe/{n}")).await;
            assert_eq!(reply.status, 200, "{reply:?}");
            reply.header("x-backend") == "p1"
        }
    })
    .await;

    let backup_hits = farm.bk.hits();
    for i in 0..10 {
        let (server, _) = farm.new_session(i).await;
        assert_eq!(server, "p1", "new session {i} after p1's return");
    }
    assert_eq!(farm.bk.hits(), backup_hits, "no new session on the backup");

    // The session pinned to the backup stays there (and is not re-issued a cookie).
    for i in 0..10 {
        let reply = get_with_cookie(farm.proxy.addr, &format!("/old/{i}"), &backup_cookie).await;
        assert_eq!(
            (reply.status.as_u16(), reply.header("x-backend")),
            (200, "bk")
        );
        assert!(set_cookies(&reply).is_empty(), "{:?}", reply.headers);
    }
    // The WebSocket opened on the backup is still open and echoing.
    echo(&mut ws, "after").await;
    assert!(peer(&farm.proxy, "up", farm.bk.addr).state.active() >= 1);
    // p2 is still down and took nothing.
    assert_eq!(farm.p2.hits(), 0);
}

/// The `srv` cookie value tether gives `server` in group `up` (values depend only on the
/// group name and the server's address, so a one-server instance tells it).
async fn cookie_of(server: &Backend) -> String {
    let proxy = Proxy::start(
        &upstream_up("server {s};", "sticky cookie srv;"),
        &[("s", server.addr)],
    )
    .await;
    let reply = get(proxy.addr, "/").await;
    assert_eq!(reply.header("x-backend"), server.name);
    let value = cookie_value(&reply.headers, "srv").expect("a cookie");
    proxy.stop().await;
    value
}

/// The server that answered a 200.
fn answered_by(reply: &Reply) -> &str {
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.header("x-backend")
}

#[tokio::test]
async fn a_down_server_is_never_used_even_by_its_cookie() {
    let [a, b, c] = Backend::start_all(["a", "b", "c"]).await;
    let b_cookie = format!("srv={}", cookie_of(&b).await);
    let b_hits = b.hits();
    let proxy = Proxy::start(
        &upstream_up(
            "server {a}; server {b} down; server {c};",
            "sticky cookie srv;",
        ),
        &[("a", a.addr), ("b", b.addr), ("c", c.addr)],
    )
    .await;
    for i in 0..20 {
        let reply = get(proxy.addr, &format!("/{i}")).await;
        assert_ne!(answered_by(&reply), "b");
    }
    for i in 0..5 {
        let reply = get_with_cookie(proxy.addr, &format!("/{i}"), &b_cookie).await;
        let server = answered_by(&reply);
        assert_ne!(server, "b", "a cookie does not revive a down server");
        let reissued = cookie_value(&reply.headers, "srv").expect("re-pinned");
        assert_ne!(format!("srv={reissued}"), b_cookie);
    }
    assert_eq!(b.hits(), b_hits);
    assert_eq!(a.hits() + c.hits(), 25);
}

#[tokio::test]
async fn a_draining_server_keeps_its_sessions_but_takes_no_new_one() {
    let [a, d, c] = Backend::start_all(["a", "d", "c"]).await;
    let d_cookie = format!("srv={}", cookie_of(&d).await);
    let d_hits = d.hits();
    let proxy = Proxy::start(
        &upstream_up(
            "server {a}; server {d} drain; server {c};",
            "sticky cookie srv;",
        ),
        &[("a", a.addr), ("d", d.addr), ("c", c.addr)],
    )
    .await;
    for i in 0..20 {
        let reply = get(proxy.addr, &format!("/new/{i}")).await;
        assert_ne!(answered_by(&reply), "d", "new session {i}");
    }
    for i in 0..10 {
        let reply = get_with_cookie(proxy.addr, &format!("/old/{i}"), &d_cookie).await;
        assert_eq!(answered_by(&reply), "d", "pinned request {i}");
        assert!(set_cookies(&reply).is_empty());
    }
    assert_eq!(d.hits(), d_hits + 10);
    let (mut ws, response) = websocket(proxy.addr, "/ws", Some(&d_cookie)).await;
    assert_eq!(response.headers()["x-backend"], "d", "a pinned upgrade too");
    echo(&mut ws, "draining").await;
}

#[tokio::test]
async fn max_conns_passes_a_full_server_over_and_all_full_is_503() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = Proxy::start(
        &upstream_up("server {a} max_conns=1; server {b} max_conns=1;", ""),
        &[("a", a.addr), ("b", b.addr)],
    )
    .await;
    let peers = [peer(&proxy, "up", a.addr), peer(&proxy, "up", b.addr)];
    let peers = &peers;
    let active = |peers: &[std::sync::Arc<tether::peer::Peer>; 2]| {
        [peers[0].state.active(), peers[1].state.active()]
    };
    // Long enough to outlast every check below, even on a busy machine.
    let hold = "/hold?ms=2500";
    let addr = proxy.addr;
    let first = tokio::spawn(async move { get(addr, hold).await });
    eventually(Duration::from_secs(2), "one held request", || async move {
        active(peers).iter().sum::<u64>() == 1
    })
    .await;
    let (held, free) = if active(peers)[0] == 1 {
        ("a", "b")
    } else {
        ("b", "a")
    };
    // Round robin would alternate; the full server is passed over every time.
    for i in 0..4 {
        let reply = get(proxy.addr, &format!("/{i}")).await;
        assert_eq!(answered_by(&reply), free, "request {i}");
    }
    let second = tokio::spawn(async move { get(addr, hold).await });
    eventually(Duration::from_secs(2), "both servers full", || async move {
        active(peers) == [1, 1]
    })
    .await;
    let reply = get(proxy.addr, "/one-too-many").await;
    assert_eq!(reply.status, 503, "{reply:?}");

    let first = within(Duration::from_secs(5), "the first hold", first).await;
    let second = within(Duration::from_secs(5), "the second hold", second).await;
    assert_eq!(first.unwrap().body, format!("{held} held"));
    assert_eq!(second.unwrap().body, format!("{free} held"));
    // Room again once they end.
    assert_eq!(get(proxy.addr, "/").await.status, 200);
}

#[tokio::test]
async fn weights_share_requests_in_proportion() {
    let [a, b, c] = Backend::start_all(["a", "b", "c"]).await;
    let proxy = Proxy::start(
        &upstream_up("server {a} weight=3; server {b} weight=2; server {c};", ""),
        &[("a", a.addr), ("b", b.addr), ("c", c.addr)],
    )
    .await;
    for i in 0..60 {
        assert_eq!(get(proxy.addr, &format!("/{i}")).await.status, 200);
    }
    let hits = [a.hits(), b.hits(), c.hits()];
    // 3:2:1 of 60; the exact smooth order is the balancer's unit tests' business.
    for (got, want) in hits.iter().zip([30, 20, 10]) {
        assert!(
            got.abs_diff(want) <= 3,
            "hits {hits:?}, want about [30, 20, 10]"
        );
    }
}

#[tokio::test]
async fn max_fails_takes_a_server_out_for_fail_timeout_then_one_trial_goes_through() {
    let (x, y) = (Backend::start("x").await, Backend::start("y").await);
    let mut gate = Gate::open(x.addr).await;
    let proxy = Proxy::start(
        &upstream_up(
            "server {x} max_fails=2 fail_timeout=2s; server {y} max_fails=0;",
            "",
        ),
        &[("x", gate.addr), ("y", y.addr)],
    )
    .await;
    let state = peer(&proxy, "up", gate.addr);
    let state = &state.state;
    gate.close().await;

    // Two refused connections (each retried on y, so clients see only 200s) take x out.
    let mut sent = 0;
    while state.failures() < 2 {
        assert!(sent < 10, "x should have been tried twice by now");
        let reply = get(proxy.addr, &format!("/fail/{sent}")).await;
        assert_eq!(answered_by(&reply), "y");
        sent += 1;
    }
    let out_at = Instant::now();
    let tried = state.requests();
    for i in 0..8 {
        let reply = get(proxy.addr, &format!("/out/{i}")).await;
        assert_eq!(answered_by(&reply), "y");
    }
    assert_eq!(state.requests(), tried, "an out server is not even tried");

    // After fail_timeout, one trial request reaches x; it fails, so x is out again at once.
    let addr = proxy.addr;
    eventually(Duration::from_secs(4), "x's trial request", || async move {
        assert_eq!(answered_by(&get(addr, "/wait").await), "y");
        state.requests() > tried
    })
    .await;
    let trial_at = Instant::now();
    assert!(
        trial_at - out_at >= Duration::from_millis(1500),
        "tried again after {:?}, before fail_timeout",
        trial_at - out_at
    );
    assert_eq!(state.requests(), tried + 1, "exactly one trial");
    assert_eq!(state.failures(), 3);
    for i in 0..8 {
        let reply = get(proxy.addr, &format!("/out-again/{i}")).await;
        assert_eq!(answered_by(&reply), "y");
    }
    assert_eq!(
        state.requests(),
        tried + 1,
        "a failed trial takes it out again"
    );

    // x restarts; its next trial (a fail_timeout after the last) succeeds and it is back.
    gate.reopen().await;
    eventually(Duration::from_secs(4), "a request on x", || async move {
        answered_by(&get(addr, "/wait").await) == "x"
    })
    .await;
    assert!(
        trial_at.elapsed() >= Duration::from_millis(1500),
        "back after {:?}, before fail_timeout",
        trial_at.elapsed()
    );
    let x_hits = x.hits();
    for i in 0..6 {
        assert_eq!(get(proxy.addr, &format!("/back/{i}")).await.status, 200);
    }
    assert!(x.hits() >= x_hits + 2, "x is back in rotation");
}
