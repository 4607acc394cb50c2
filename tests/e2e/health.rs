//! Health, seen from outside: active checks mark a server down and up again with no user
//! traffic at all, probe backups and `down` servers too, and a reload does not reset a server's
//! run of passes; the live counters of each server add up to exactly what was sent.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tether::peer::CheckState;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::harness::proxy::upstream_up;
use crate::harness::session::{Gate, cookie_value, eventually, get_with_cookie, peer};
use crate::harness::{Backend, Proxy, Reply, get};

const CHECK: &str = "health_check interval=200ms fails=1 passes=1 uri=/health;";

/// Waits until active checks say `want` about server `addr`.
async fn check_state_becomes(proxy: &Proxy, addr: SocketAddr, want: CheckState) {
    let peer = peer(proxy, "up", addr);
    let what = format!("{addr} checked {want:?}");
    eventually(Duration::from_secs(5), &what, || {
        let peer = peer.clone();
        async move { peer.state.check_state() == want }
    })
    .await;
}

/// The requests a backend saw that were not health probes.
fn user_requests(backend: &Backend) -> usize {
    backend
        .seen()
        .iter()
        .filter(|s| s.header("user-agent") != "tether-health-check")
        .count()
}

/// Asserts that `backend` was probed: `GET /health` by tether's checker, and nothing else.
fn assert_only_probed(backend: &Backend) {
    let seen = backend.seen();
    assert!(!seen.is_empty(), "{} was probed", backend.name);
    for s in &seen {
        assert_eq!(
            (s.method.as_str(), s.uri.as_str(), s.header("user-agent")),
            ("GET", "/health", "tether-health-check"),
            "{} saw only probes",
            backend.name
        );
    }
}

fn answered_by(reply: &Reply) -> &str {
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.header("x-backend")
}

#[tokio::test]
async fn active_checks_mark_a_server_down_and_up_without_user_traffic() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let mut gate = Gate::open(a.addr).await;
    let proxy = Proxy::start(
        &upstream_up("server {a}; server {b};", CHECK),
        &[("a", gate.addr), ("b", b.addr)],
    )
    .await;
    check_state_becomes(&proxy, gate.addr, CheckState::Up).await;
    check_state_becomes(&proxy, b.addr, CheckState::Up).await;
    let a_peer = peer(&proxy, "up", gate.addr);

    // a goes away; the checks notice before anyone asks anything of it.
    gate.close().await;
    check_state_becomes(&proxy, gate.addr, CheckState::Down).await;
    assert_eq!(a_peer.state.requests(), 0, "no user request was needed");
    for i in 0..10 {
        let reply = get(proxy.addr, &format!("/while-down/{i}")).await;
        assert_eq!(answered_by(&reply), "b");
    }
    assert_eq!(
        (a_peer.state.requests(), a_peer.state.failures()),
        (0, 0),
        "a server checked down is not even tried"
    );

    // a comes back; the checks notice, again with no user traffic, and it takes requests.
    let b_requests = peer(&proxy, "up", b.addr).state.requests();
    gate.reopen().await;
    check_state_becomes(&proxy, gate.addr, CheckState::Up).await;
    assert_eq!(a_peer.state.requests(), 0);
    assert_eq!(peer(&proxy, "up", b.addr).state.requests(), b_requests);
    let mut served: HashMap<String, usize> = HashMap::new();
    for i in 0..10 {
        let reply = get(proxy.addr, &format!("/after/{i}")).await;
        *served.entry(answered_by(&reply).to_string()).or_default() += 1;
    }
    assert!(served.get("a").copied().unwrap_or(0) >= 3, "{served:?}");
    assert_eq!(user_requests(&a), served["a"]);
    let probe = a.seen().into_iter().next().expect("a was probed");
    assert_eq!(
        (probe.uri.as_str(), probe.header("user-agent")),
        ("/health", "tether-health-check")
    );
}

#[tokio::test]
async fn a_server_failing_its_check_status_is_down_though_it_accepts_connections() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    // The backend answers `/status?code=503` with a 503: outside the default 200-399.
    let check = "health_check interval=200ms uri=/status?code=503;";
    let proxy = Proxy::start(
        &upstream_up("server {a}; server {b};", check),
        &[("a", a.addr), ("b", b.addr)],
    )
    .await;
    check_state_becomes(&proxy, a.addr, CheckState::Down).await;
    check_state_becomes(&proxy, b.addr, CheckState::Down).await;
    assert!(a.hits() >= 1 && b.hits() >= 1, "both were asked");
    let reply = get(proxy.addr, "/").await;
    assert_eq!(reply.status, 502, "no server passes its check: {reply:?}");
    assert_eq!(user_requests(&a) + user_requests(&b), 0);
}

#[tokio::test]
async fn backups_and_down_servers_are_probed_too() {
    let [a, bk, off] = Backend::start_all(["a", "bk", "off"]).await;
    let proxy = Proxy::start(
        &upstream_up("server {a}; server {bk} backup; server {off} down;", CHECK),
        &[("a", a.addr), ("bk", bk.addr), ("off", off.addr)],
    )
    .await;
    for addr in [a.addr, bk.addr, off.addr] {
        check_state_becomes(&proxy, addr, CheckState::Up).await;
    }
    for i in 0..5 {
        assert_eq!(answered_by(&get(proxy.addr, &format!("/{i}")).await), "a");
    }
    // Probed (on their own timers, a few times by now) but given no user request.
    eventually(Duration::from_secs(3), "two probes of each", || {
        let counts = [bk.hits(), off.hits()];
        async move { counts.iter().all(|&n| n >= 2) }
    })
    .await;
    assert_only_probed(&bk);
    assert_only_probed(&off);
    assert_eq!(user_requests(&a), 5);
}

#[tokio::test]
async fn live_counters_add_up_to_what_was_sent() {
    let [a, b, c] = Backend::start_all(["a", "b", "c"]).await;
    // c's cookie value, learnt from an instance where c is alive and takes sessions; then c
    // stops: connections to its address are refused from now on.
    let mut c_gate = Gate::open(c.addr).await;
    let c_addr = c_gate.addr;
    let learn = Proxy::start(
        &upstream_up("server {c};", "sticky cookie srv;"),
        &[("c", c_addr)],
    )
    .await;
    let c_value = cookie_value(&get(learn.addr, "/").await.headers, "srv").expect("c's cookie");
    learn.stop().await;
    c_gate.close().await;
    let c_hits = c.hits();

    // c is draining (only its cookie reaches it) and never marked failed (max_fails=0), so
    // each request pinned to it is one attempt on c, one failure, and one balanced retry.
    let proxy = Proxy::start(
        &upstream_up(
            "server {a}; server {b}; server {c} drain max_fails=0;",
            "sticky cookie srv;",
        ),
        &[("a", a.addr), ("b", b.addr), ("c", c_addr)],
    )
    .await;

    // Balanced: count what each server answered.
    let mut balanced: HashMap<String, u64> = HashMap::new();
    let mut values: HashMap<String, String> = HashMap::new();
    let mut count = |reply: &Reply, balanced: &mut HashMap<String, u64>| {
        let server = answered_by(reply).to_string();
        *balanced.entry(server.clone()).or_default() += 1;
        if let Some(value) = cookie_value(&reply.headers, "srv") {
            values.insert(server, value);
        }
    };
    for i in 0..6 {
        count(&get(proxy.addr, &format!("/new/{i}")).await, &mut balanced);
    }
    // Pinned to a dead server: a failure on c, then balanced.
    for i in 0..3 {
        let reply =
            get_with_cookie(proxy.addr, &format!("/c/{i}"), &format!("srv={c_value}")).await;
        count(&reply, &mut balanced);
    }
    // A cookie naming nothing: balanced.
    for i in 0..2 {
        let reply = get_with_cookie(proxy.addr, &format!("/g/{i}"), "srv=garbage").await;
        count(&reply, &mut balanced);
    }
    assert!(
        values.contains_key("a") && values.contains_key("b"),
        "{balanced:?}"
    );
    // Pinned: 5 to a (one of them answered 500, which is an answer, not a failure), 4 to b.
    let (a_cookie, b_cookie) = (
        format!("srv={}", values["a"]),
        format!("srv={}", values["b"]),
    );
    for i in 0..4 {
        let reply = get_with_cookie(proxy.addr, &format!("/a/{i}"), &a_cookie).await;
        assert_eq!(answered_by(&reply), "a");
    }
    let reply = get_with_cookie(proxy.addr, "/status?code=500", &a_cookie).await;
    assert_eq!(
        (reply.status.as_u16(), reply.header("x-backend")),
        (500, "a")
    );
    for i in 0..4 {
        let reply = get_with_cookie(proxy.addr, &format!("/b/{i}"), &b_cookie).await;
        assert_eq!(answered_by(&reply), "b");
    }

    let balanced_on = |name: &str| balanced.get(name).copied().unwrap_or(0);
    assert_eq!(balanced_on("a") + balanced_on("b"), 11);
    // (server, address, requests, failures, by sticky, by balancer, requests that arrived)
    let expected = [
        (
            "a",
            a.addr,
            balanced_on("a") + 5,
            0,
            5,
            balanced_on("a"),
            a.hits(),
        ),
        (
            "b",
            b.addr,
            balanced_on("b") + 4,
            0,
            4,
            balanced_on("b"),
            b.hits(),
        ),
        ("c", c_addr, 3, 3, 3, 0, c.hits() - c_hits),
    ];
    for (name, addr, requests, failures, by_sticky, by_balancer, arrived) in expected {
        let peer = peer(&proxy, "up", addr);
        let state = &peer.state;
        assert_eq!(
            (
                state.requests(),
                state.failures(),
                state.picked_by_sticky(),
                state.picked_by_balancer()
            ),
            (requests, failures, by_sticky, by_balancer),
            "{name}: (requests, failures, by sticky, by balancer)"
        );
        // Every attempt on a live server arrived; none on the stopped one did.
        let expected_arrivals = if name == "c" { 0 } else { requests };
        assert_eq!(
            arrived as u64, expected_arrivals,
            "{name}: requests that arrived"
        );
        let peer = peer.clone();
        eventually(Duration::from_secs(2), "nothing in flight", || {
            let peer = peer.clone();
            async move { peer.state.active() == 0 }
        })
        .await;
    }
}

/// What a [`ScriptedHealth`] answers health probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Script {
    /// 503 at once.
    Failing,
    /// Probes are numbered from 1 as they arrive; probe N is answered 200 once `N <= allowed`
    /// and waits until then.
    Passing { allowed: usize },
}

/// A backend whose health the test scripts probe by probe (`GET /health`); any other request
/// is answered 200 at once.
struct ScriptedHealth {
    addr: SocketAddr,
    script: watch::Sender<Script>,
    numbered: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl ScriptedHealth {
    async fn start() -> ScriptedHealth {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (script, scripted) = watch::channel(Script::Failing);
        let numbered = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let numbered = numbered.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (numbered, scripted) = (numbered.clone(), scripted.clone());
                    let service = service_fn(move |request: http::Request<_>| {
                        let (numbered, mut scripted) = (numbered.clone(), scripted.clone());
                        async move {
                            let status = if request.uri().path() != "/health" {
                                StatusCode::OK
                            } else if *scripted.borrow() == Script::Failing {
                                StatusCode::SERVICE_UNAVAILABLE
                            } else {
                                let n = numbered.fetch_add(1, Ordering::SeqCst) + 1;
                                let _ = scripted
                                    .wait_for(|s| matches!(s, Script::Passing { allowed } if *allowed >= n))
                                    .await;
                                StatusCode::OK
                            };
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::new()))
                                    .expect("a valid response"),
                            )
                        }
                    });
                    tokio::spawn(
                        auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .into_owned(),
                    );
                }
            }
        });
        ScriptedHealth {
            addr,
            script,
            numbered,
            task,
        }
    }

    /// Lets passing probes 1..=`allowed` be answered.
    fn allow_passes(&self, allowed: usize) {
        self.script.send_replace(Script::Passing { allowed });
    }

    /// Probes numbered so far (answered or waiting).
    fn numbered(&self) -> usize {
        self.numbered.load(Ordering::SeqCst)
    }

    /// Waits until probe `n` has arrived.
    async fn probe_arrives(&self, n: usize) {
        eventually(
            Duration::from_secs(5),
            &format!("passing probe {n}"),
            || {
                let arrived = self.numbered() >= n;
                async move { arrived }
            },
        )
        .await;
    }
}

impl Drop for ScriptedHealth {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_reload_keeps_a_servers_run_of_passing_checks() {
    let a = Backend::start("a").await;
    let s = ScriptedHealth::start().await;
    // A server that is down comes back after three passing probes in a row. A probe may take
    // up to 30 s, so one the backend holds is neither a pass nor a fail until it answers.
    let conf = upstream_up(
        "server {a}; server {s};",
        "health_check interval=100ms fails=1 passes=3 timeout=30s uri=/health;",
    );
    let names = [("a", a.addr), ("s", s.addr)];
    let proxy = Proxy::start(&conf, &names).await;
    check_state_becomes(&proxy, s.addr, CheckState::Down).await;

    // Two passes; the third probe arrives and is held.
    s.allow_passes(2);
    s.probe_arrives(3).await;
    let peer_s = peer(&proxy, "up", s.addr);
    assert_eq!(
        peer_s.state.check_state(),
        CheckState::Down,
        "two passes of three"
    );

    // A reload while probe 3 hangs: the checks start over, probing at once (probe 4).
    proxy.apply(&conf, &names).await.expect("reload");
    s.probe_arrives(4).await;
    assert!(
        Arc::ptr_eq(&peer_s, &peer(&proxy, "up", s.addr)),
        "the same peer"
    );
    // Probe 4 passing is the third pass in a row: s is up, though probe 5 will hang.
    s.allow_passes(4);
    check_state_becomes(&proxy, s.addr, CheckState::Up).await;
}
