//! `sticky learn` on the status pages: a zone's sessions held and what became of them
//! (learned, evicted, expired, looked up, re-pinned), and a zone's Redis sync (connected,
//! published, failures), in the JSON page and in Prometheus's text as its own parser reads it.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use super::{prometheus, status};
use crate::harness::redis::Redis;
use crate::harness::session::{eventually, get_with_cookie};
use crate::harness::{Backend, Proxy, Reply, get};

/// `app` learns into the smallest zone there is, 32 KiB (128 sessions); `brief` forgets a
/// session after a second. `DOWN` marks one of `app`'s servers down.
fn conf(down: &str) -> String {
    let server = |name: &str| match name == down {
        true => format!("server {{{name}}} down;"),
        false => format!("server {{{name}}};"),
    };
    CONF.replace("SERVERS", &format!("{} {}", server("a"), server("b")))
}

const CONF: &str = "events {} http {
    upstream app {
        SERVERS
        sticky learn create=$upstream_cookie_sid lookup=$cookie_sid zone=app:32k;
    }
    upstream brief {
        server {a};
        sticky learn create=$upstream_cookie_sid lookup=$cookie_sid zone=brief:1m timeout=1s;
    }
    server {
        listen {listen};
        location / { proxy_pass http://app; }
        location /brief/ { proxy_pass http://brief; }
        location = /tether/status { status; }
    }
}";

/// The zone `name` in the JSON page.
fn zone<'a>(page: &'a Value, name: &str) -> &'a Value {
    let zones = page["learned_sessions"]
        .as_array()
        .expect("learned_sessions");
    zones
        .iter()
        .find(|zone| zone["zone"] == name)
        .unwrap_or_else(|| panic!("zone {name} in {page}"))
}

/// The Prometheus page, as the parser reads it (None when no parser is installed).
async fn scrape(addr: SocketAddr) -> Option<std::collections::HashMap<String, f64>> {
    let exposition = get(addr, "/tether/status?format=prometheus").await;
    assert_eq!(exposition.status, 200);
    prometheus::parse(&exposition.body)
}

/// The sync of zone `app` in the JSON page.
async fn sync_of(addr: SocketAddr) -> Value {
    zone(&status(addr).await, "app")["sync"].clone()
}

async fn login(addr: SocketAddr, path: &str) -> Reply {
    let reply = get(addr, path).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply
}

#[tokio::test]
async fn a_zone_shows_its_sessions_and_what_became_of_them() {
    let [a, b] = Backend::start_all(["a", "b"]).await;
    let backends = [("a", a.addr), ("b", b.addr)];
    let proxy = Proxy::start(&conf(""), &backends).await;
    // Expired: a session left unused past its second, then asked for. (No condition to wait
    // on: any request for it would renew it. The clock moves every 250 ms.)
    login(proxy.addr, "/brief/login?sid=e1").await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        get_with_cookie(proxy.addr, "/brief/x", "sid=e1")
            .await
            .status,
        200
    );
    // 129 sessions learned into room for 128: the oldest is evicted.
    let mut homes = Vec::new();
    for sid in 1..=129 {
        let reply = login(proxy.addr, &format!("/login?sid=s{sid}")).await;
        homes.push(reply.header("x-backend").to_string());
    }
    // Looked up: a known session, and one evicted (unknown now: no hit).
    for cookie in ["sid=s129", "sid=s1"] {
        assert_eq!(get_with_cookie(proxy.addr, "/", cookie).await.status, 200);
    }
    // Re-pinned: s2's server is marked down (a reload keeps the zone); its next request is
    // answered by the other, and the session now names that one.
    let stays = match homes[1].as_str() {
        "a" => &b,
        _ => &a,
    };
    proxy.apply(&conf(&homes[1]), &backends).await.unwrap();
    let moved = get_with_cookie(proxy.addr, "/", "sid=s2").await;
    assert_eq!(
        (moved.status, moved.header("x-backend")),
        (http::StatusCode::OK, stays.name)
    );

    let page = status(proxy.addr).await;
    let app = zone(&page, "app");
    let counts = |zone: &Value| -> Vec<u64> {
        [
            "sessions", "learned", "evicted", "expired", "hits", "repinned", "received",
        ]
        .iter()
        .map(|field| {
            let count = zone[*field].as_u64();
            count.unwrap_or_else(|| panic!("{field} in {zone}"))
        })
        .collect()
    };
    // s129 and s2 were known when asked for (s2 before its re-pin).
    assert_eq!(counts(app), [128, 129, 1, 0, 2, 1, 0], "{app}");
    assert_eq!(app["size"], Value::from(32768), "{app}");
    assert_eq!(app["timeout_seconds"], Value::from(600.0), "{app}");
    assert_eq!(app["sync"], Value::Null);
    let brief = zone(&page, "brief");
    assert_eq!(counts(brief), [0, 1, 0, 1, 0, 0, 0], "{brief}");

    let Some(samples) = scrape(proxy.addr).await else {
        return;
    };
    let at = |name: &str, zone: &str| {
        let key = prometheus::key(name, &[("zone", zone)]);
        *samples
            .get(&key)
            .unwrap_or_else(|| panic!("{key} in {samples:?}"))
    };
    let expected = [
        ("tether_session_zone_sessions", "app", 128.0),
        ("tether_session_zone_size_bytes", "app", 32768.0),
        ("tether_session_zone_learned_total", "app", 129.0),
        ("tether_session_zone_evicted_total", "app", 1.0),
        ("tether_session_zone_hits_total", "app", 2.0),
        ("tether_session_zone_repinned_total", "app", 1.0),
        ("tether_session_zone_received_total", "app", 0.0),
        ("tether_session_zone_expired_total", "brief", 1.0),
        ("tether_session_zone_learned_total", "brief", 1.0),
    ];
    for (name, zone, value) in expected {
        assert_eq!(at(name, zone), value, "{name}{{zone={zone}}}");
    }
    assert!(
        !samples
            .keys()
            .any(|key| key.starts_with("tether_session_sync_")),
        "no sync, no sync families"
    );
}

#[tokio::test]
async fn a_synced_zone_shows_its_sync_connected_then_failing() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let a = Backend::start("a").await;
    let conf = format!(
        "events {{}} http {{
            upstream app {{
                server {{a}};
                sticky learn create=$upstream_cookie_sid lookup=$cookie_sid zone=app:1m sync={};
            }}
            server {{
                listen {{listen}};
                location / {{ proxy_pass http://app; }}
                location = /tether/status {{ status; }}
            }}
        }}",
        redis.url(0)
    );
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;
    login(proxy.addr, "/login?sid=s1").await;
    let addr = proxy.addr;
    eventually(Duration::from_secs(10), "s1 written to Redis", || async {
        let sync = sync_of(addr).await;
        sync["connected"] == true && sync["published"] == 1
    })
    .await;
    let sync = sync_of(addr).await;
    let target = format!("{}/0", redis.addr);
    assert_eq!(sync["target"], Value::from(target.as_str()), "{sync}");
    assert_eq!(
        (sync["failures"].as_u64(), sync["dropped"].as_u64()),
        (Some(0), Some(0))
    );

    redis.kill();
    eventually(
        Duration::from_secs(10),
        "the lost Redis counted",
        || async {
            let sync = sync_of(addr).await;
            sync["connected"] == false && sync["failures"].as_u64() > Some(0)
        },
    )
    .await;
    // Requests go on with what the instance knows.
    assert_eq!(get_with_cookie(addr, "/", "sid=s1").await.status, 200);

    let Some(samples) = scrape(addr).await else {
        return;
    };
    let labels = [("zone", "app"), ("target", target.as_str())];
    let at = |name: &str| {
        let key = prometheus::key(name, &labels);
        *samples
            .get(&key)
            .unwrap_or_else(|| panic!("{key} in {samples:?}"))
    };
    assert_eq!(at("tether_session_sync_connected"), 0.0);
    assert_eq!(at("tether_session_sync_published_total"), 1.0);
    assert!(at("tether_session_sync_failures_total") >= 1.0);
    assert_eq!(at("tether_session_sync_dropped_total"), 0.0);
}
