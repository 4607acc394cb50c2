//! Live reconfiguration, seen from outside: what triggers a reload (in `triggers`); a broken
//! config is refused while traffic flows on undisturbed; servers that stay keep their counters,
//! sticky cookies and hash keys; new servers join at once, or after their first passing check in
//! a checked group; and each reload says what it changed.

mod triggers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tether::peer::CheckState;

use crate::harness::edit::save_like_editor;
use crate::harness::held_health::HeldHealth;
use crate::harness::process::Binary;
use crate::harness::proxy::{fill, upstream_up};
use crate::harness::session::{cookie_value, eventually, get_with_cookie, peer, set_cookies};
use crate::harness::tally::Load;
use crate::harness::{Backend, Proxy, free_addr, get};

/// The same on several lines, as a person writes it: errors then have telling line:col.
fn conf_lines(server: &str) -> String {
    format!(
        "events {{}}
http {{
    upstream up {{
        {server}
    }}
    server {{
        listen {{listen}};
        location / {{ proxy_pass http://up; }}
    }}
}}
"
    )
}

/// Which backend answers `GET path` (on a new connection); the answer must be a 200.
async fn answered_by(addr: SocketAddr, path: &str) -> String {
    let reply = get(addr, path).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.header("x-backend").to_string()
}

/// Waits until requests reach backend `name`, then checks that the next few all do (the old
/// config is gone, not alternating with the new one).
async fn switched_to(addr: SocketAddr, name: &str) {
    let what = format!("requests reaching {name}");
    eventually(Duration::from_secs(5), &what, || async move {
        answered_by(addr, "/").await == name
    })
    .await;
    for i in 0..5 {
        assert_eq!(answered_by(addr, &format!("/after/{i}")).await, name);
    }
}

/// A watched proxy over `a`, answering from it (which also lets the watcher task start).
async fn watched_on(a: &Backend) -> Proxy {
    let proxy = Proxy::start_watched(&upstream_up("server {a};", ""), &[("a", a.addr)]).await;
    assert_eq!(answered_by(proxy.addr, "/").await, "a");
    assert_eq!(proxy.snapshot().generation, 1);
    proxy
}

/// The config text switching `up` to backend `b`, filled for `proxy`.
fn switched_text(proxy: &Proxy, b: &Backend, comment: &str) -> String {
    let text = fill(
        &upstream_up("server {b};", ""),
        proxy.addr,
        &[("b", b.addr)],
    );
    format!("# {comment}\n{text}")
}

// --- Validate, then swap ----------------------------------------------------------------------

#[tokio::test]
async fn a_broken_config_is_refused_under_load_and_its_fix_applied() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("tether.conf");
    let listen = free_addr();
    let text = |server: &str| fill(&conf_lines(server), listen, &[("a", a.addr), ("b", b.addr)]);
    std::fs::write(&path, text("server {a};")).expect("write the config");
    let tether = Binary::start(&path, listen).await;
    let load = Load::start(listen);
    load.wait_served("a", 20).await;

    // A syntax error (the `;` is missing, so line 5's `}` is unexpected): refused, logged with
    // file:line:col, and the old config keeps serving.
    save_like_editor(&path, &text("server {a}"));
    let failed = tether.lines_with("reload failed", 1, 1).await;
    let place = format!("unexpected \"}}\" in {}:5:5", path.display());
    assert!(failed[0].contains(&place), "{place} in {failed:?}");
    load.wait_served("a", 20).await;

    // A config that parses but does not validate: refused the same way.
    let typo = text("server {b};").replace("proxy_pass", "proxy_pas");
    save_like_editor(&path, &typo);
    let failed = tether.lines_with("reload failed", 2, 1).await;
    let place = format!("unknown directive \"proxy_pas\" in {}:8:22", path.display());
    assert!(failed[1].contains(&place), "{place} in {failed:?}");
    load.wait_served("a", 20).await;
    assert_eq!(
        load.served_by("b"),
        0,
        "nothing of the refused configs took effect"
    );

    // The fix is applied.
    save_like_editor(&path, &text("server {b};"));
    load.wait_served("b", 20).await;
    let tally = load.finish().await;
    assert!(
        tally.bad.is_empty(),
        "answers other than 200: {:?}",
        tally.bad
    );
    assert!(
        tally.errors.is_empty(),
        "failed requests: {:?}",
        tally.errors
    );
    let applied = tether.lines_with("reload applied", 1, 0).await;
    assert!(applied[0].contains("generation: 2"), "{applied:?}");
}

// --- State survives ---------------------------------------------------------------------------

#[tokio::test]
async fn counters_of_servers_that_stay_carry_over() {
    let [a, b, c] = Backend::start_all(["a", "b", "c"]).await;
    // Nothing listens at `dead`: every try there is a failure, retried on the next server.
    let dead = free_addr();
    let names = [("a", a.addr), ("b", b.addr), ("c", c.addr), ("dead", dead)];
    let proxy = Proxy::start(
        &upstream_up("server {a}; server {dead}; server {b};", ""),
        &names,
    )
    .await;
    for i in 0..12 {
        get(proxy.addr, &format!("/before/{i}")).await;
    }
    let (peer_a, peer_dead) = (peer(&proxy, "up", a.addr), peer(&proxy, "up", dead));
    let (requests_a, failures_dead) = (peer_a.state.requests(), peer_dead.state.failures());
    assert!(
        requests_a > 0 && failures_dead > 0,
        "{requests_a} {failures_dead}"
    );

    // Reordered, one server added.
    proxy
        .apply(
            &upstream_up("server {c}; server {b}; server {dead}; server {a};", ""),
            &names,
        )
        .await
        .expect("reload");
    let (after_a, after_dead) = (peer(&proxy, "up", a.addr), peer(&proxy, "up", dead));
    assert!(Arc::ptr_eq(&after_a, &peer_a), "a keeps its live state");
    assert!(Arc::ptr_eq(&after_dead, &peer_dead), "so does the dead one");
    assert_eq!(after_a.state.requests(), requests_a);
    assert_eq!(after_dead.state.failures(), failures_dead);
    assert_eq!(
        peer(&proxy, "up", c.addr).state.requests(),
        0,
        "c starts fresh"
    );

    // The same counters keep counting under the new config.
    for i in 0..8 {
        get(proxy.addr, &format!("/after/{i}")).await;
    }
    assert!(peer_a.state.requests() > requests_a);
    assert_eq!(
        peer_a.state.requests() as usize,
        a.hits(),
        "a's counter is every request a ever saw"
    );
}

#[tokio::test]
async fn a_sticky_cookie_issued_before_a_reload_still_pins_after_it() {
    let [a, b, c] = Backend::start_all(["a", "b", "c"]).await;
    let names = [("a", a.addr), ("b", b.addr), ("c", c.addr)];
    let proxy = Proxy::start(
        &upstream_up("server {a}; server {b};", "sticky cookie srv;"),
        &names,
    )
    .await;
    // New sessions until both servers have handed out their cookie.
    let mut cookies: HashMap<String, String> = HashMap::new();
    for i in 0..20 {
        let reply = get(proxy.addr, &format!("/new/{i}")).await;
        let value = cookie_value(&reply.headers, "srv").expect("a new session gets a cookie");
        cookies.insert(
            reply.header("x-backend").to_string(),
            format!("srv={value}"),
        );
    }
    assert_eq!(cookies.len(), 2, "both servers took sessions: {cookies:?}");

    // Reordered, and c added in front.
    proxy
        .apply(
            &upstream_up("server {c}; server {b}; server {a};", "sticky cookie srv;"),
            &names,
        )
        .await
        .expect("reload");
    for (server, cookie) in &cookies {
        for i in 0..10 {
            let reply = get_with_cookie(proxy.addr, &format!("/pinned/{i}"), cookie).await;
            assert_eq!(
                (reply.status.as_u16(), reply.header("x-backend")),
                (200, server.as_str()),
                "{cookie} after the reload"
            );
            assert!(set_cookies(&reply).is_empty(), "not re-issued: {reply:?}");
        }
    }
}

#[tokio::test]
async fn consistent_hash_keys_move_only_to_the_added_server() {
    let [a, b, c] = Backend::start_all(["a", "b", "c"]).await;
    let names = [("a", a.addr), ("b", b.addr), ("c", c.addr)];
    let hash = "hash $arg_k consistent;";
    let proxy = Proxy::start(&upstream_up("server {a}; server {b};", hash), &names).await;
    let mut before = Vec::new();
    for k in 0..90 {
        before.push(answered_by(proxy.addr, &format!("/?k={k}")).await);
    }

    proxy
        .apply(
            &upstream_up("server {b}; server {a}; server {c};", hash),
            &names,
        )
        .await
        .expect("reload");
    let mut moved = 0;
    for (k, was) in before.iter().enumerate() {
        let now = answered_by(proxy.addr, &format!("/?k={k}")).await;
        if now != *was {
            assert_eq!(
                now, "c",
                "key {k} moved from {was}, but not to the new server"
            );
            moved += 1;
        }
    }
    // About a third should move; a ring that moved nothing or nearly everything is wrong.
    assert!((10..=50).contains(&moved), "{moved} of 90 keys moved to c");
}

// --- New servers join safely ------------------------------------------------------------------

#[tokio::test]
async fn a_server_added_without_health_checks_takes_traffic_at_once() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let names = [("a", a.addr), ("b", b.addr)];
    let proxy = Proxy::start(&upstream_up("server {a};", ""), &names).await;
    assert_eq!(answered_by(proxy.addr, "/").await, "a");

    proxy
        .apply(&upstream_up("server {a}; server {b};", ""), &names)
        .await
        .expect("reload");
    // Never staged: there is no check that could let it in.
    assert_eq!(
        peer(&proxy, "up", b.addr).state.check_state(),
        CheckState::Unknown
    );
    // Round robin over two: the next two requests are one each.
    let mut next_two = vec![
        answered_by(proxy.addr, "/1").await,
        answered_by(proxy.addr, "/2").await,
    ];
    next_two.sort();
    assert_eq!(next_two, ["a", "b"]);
}

#[tokio::test]
async fn a_server_added_to_a_checked_group_waits_for_its_first_passing_check() {
    let (a, d) = (Backend::start("a").await, Backend::start("d").await);
    let plain_first = Backend::start("p").await;
    let c = HeldHealth::start("c").await;
    // `up` has active checks; `plain` has none. The probe may take its time (timeout=5s), so
    // the held one leaves c without a verdict: neither up nor down, just new.
    let text = |up: &str, plain: &str| {
        format!(
            "events {{}} http {{ \
             upstream up {{ {up} health_check interval=200ms timeout=5s uri=/health; }} \
             upstream plain {{ {plain} }} \
             server {{ listen {{listen}}; \
                location / {{ proxy_pass http://up; }} \
                location /plain/ {{ proxy_pass http://plain; }} }} }}"
        )
    };
    let names = [
        ("a", a.addr),
        ("c", c.addr),
        ("d", d.addr),
        ("p", plain_first.addr),
    ];
    let proxy = Proxy::start(&text("server {a};", "server {p};"), &names).await;
    assert_eq!(answered_by(proxy.addr, "/").await, "a");

    proxy
        .apply(
            &text("server {a}; server {c};", "server {p}; server {d};"),
            &names,
        )
        .await
        .expect("reload");
    let what = "the first probe of c to arrive (and hang)";
    eventually(Duration::from_secs(5), what, || {
        let probed = c.probes() > 0;
        async move { probed }
    })
    .await;
    let peer_c = peer(&proxy, "up", c.addr);
    for i in 0..20 {
        assert_eq!(answered_by(proxy.addr, &format!("/staged/{i}")).await, "a");
    }
    assert_eq!(peer_c.state.check_state(), CheckState::Pending);
    assert_eq!(peer_c.state.requests(), 0, "no user request reached c");
    // Meanwhile d, new in a group without checks, was never staged: it takes its turn at once.
    assert_eq!(
        peer(&proxy, "plain", d.addr).state.check_state(),
        CheckState::Unknown
    );
    let mut plain: Vec<String> = Vec::new();
    for i in 0..2 {
        plain.push(answered_by(proxy.addr, &format!("/plain/{i}")).await);
    }
    plain.sort();
    assert_eq!(plain, ["d", "p"]);

    // The check passes: c joins.
    c.pass();
    let what = "a user request reaching c";
    eventually(Duration::from_secs(5), what, || async {
        answered_by(proxy.addr, "/joined").await == "c"
    })
    .await;
    assert_eq!(peer_c.state.check_state(), CheckState::Up);
}

// --- Observability ----------------------------------------------------------------------------

#[tokio::test]
async fn applied_says_what_changed() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let names = [("a", a.addr), ("b", b.addr)];
    let proxy = Proxy::start(&upstream_up("server {a};", ""), &names).await;
    let extra = free_addr();
    let two_listens = |servers: &str| {
        format!(
            "events {{}} http {{ upstream up {{ {servers} }} server {{ listen {{listen}}; \
             listen {extra}; location / {{ proxy_pass http://up; }} }} }}"
        )
    };

    let applied = proxy
        .apply(&two_listens("server {a}; server {b};"), &names)
        .await
        .expect("reload");
    assert_eq!(
        (applied.old.generation, applied.new.generation),
        (1, 2),
        "generation + 1"
    );
    assert_eq!(applied.listeners_added, [extra]);
    assert!(applied.listeners_removed.is_empty());
    assert!(applied.elapsed > Duration::ZERO);
    let members = |snapshot: &tether::snapshot::Snapshot| -> Vec<String> {
        let up = snapshot.upstream("up").expect("upstream up");
        up.members()
            .iter()
            .map(|m| m.peer.key.address.to_string())
            .collect()
    };
    assert_eq!(members(&applied.old), [a.addr.to_string()]);
    assert_eq!(
        members(&applied.new),
        [a.addr, b.addr].map(|x| x.to_string())
    );

    let applied = proxy
        .apply(&upstream_up("server {b};", ""), &names)
        .await
        .expect("reload");
    assert_eq!((applied.old.generation, applied.new.generation), (2, 3));
    assert!(applied.listeners_added.is_empty());
    assert_eq!(applied.listeners_removed, [extra]);
    assert!(applied.elapsed > Duration::ZERO);
    assert_eq!(proxy.snapshot().generation, 3);
}

#[tokio::test]
async fn the_binary_logs_each_reload_with_generation_changes_and_time() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("tether.conf");
    let (listen, extra) = (free_addr(), free_addr());
    let names = [("a", a.addr), ("b", b.addr)];
    let with_extra = |servers: &str| {
        format!(
            "events {{}} http {{ upstream up {{ {servers} }} server {{ listen {{listen}}; \
             listen {extra}; location / {{ proxy_pass http://up; }} }} }}"
        )
    };
    std::fs::write(&path, fill(&upstream_up("server {a};", ""), listen, &names)).expect("write");
    let tether = Binary::start(&path, listen).await;

    save_like_editor(&path, &fill(&with_extra("server {b};"), listen, &names));
    let line = tether.lines_with("reload applied", 1, 0).await.remove(0);
    for part in [
        "generation: 2".to_string(),
        format!("up: +{}", b.addr),
        format!("up: -{}", a.addr),
        format!("listen +{extra}"),
        "elapsed_ms: ".to_string(),
    ] {
        assert!(line.contains(&part), "{part:?} in {line:?}");
    }
    assert_elapsed_ms(&line);
    assert_eq!(
        answered_by(extra, "/").await,
        "b",
        "the new listener serves"
    );

    save_like_editor(
        &path,
        &fill(&upstream_up("server {b};", ""), listen, &names),
    );
    let line = tether.lines_with("reload applied", 2, 0).await.remove(1);
    for part in ["generation: 3".to_string(), format!("listen -{extra}")] {
        assert!(line.contains(&part), "{part:?} in {line:?}");
    }
    assert_elapsed_ms(&line);
}

/// The `elapsed_ms: ` field of a log line is a number of milliseconds, and a small one.
fn assert_elapsed_ms(line: &str) {
    let value = line
        .split("elapsed_ms: ")
        .nth(1)
        .and_then(|rest| rest.split([',', ' ']).next())
        .unwrap_or_else(|| panic!("elapsed_ms in {line:?}"));
    let ms: f64 = value
        .parse()
        .unwrap_or_else(|_| panic!("elapsed_ms: {value} is a number"));
    assert!((0.0..5000.0).contains(&ms), "elapsed_ms={ms}");
}
