//! Sticky sessions: `sticky cookie` pins a client to the server that first answered it, on
//! every later request and WebSocket upgrade; its values are stable across instances, restarts
//! and reordered configs; a cookie naming no server is rebalanced and re-issued, never an error.
//! `sticky route` routes by a `route=` value found in the request.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::proxy::upstream_up;
use crate::harness::session::{cookie_value, get_with_cookie, peer, set_cookies, websocket};
use crate::harness::{Backend, Proxy, Reply, get, within};

const ABC: &str = "server {a}; server {b}; server {c};";

fn addrs(backends: &[Backend]) -> Vec<(&'static str, SocketAddr)> {
    backends.iter().map(|b| (b.name, b.addr)).collect()
}

/// Splits a `Set-Cookie` into its `NAME=VALUE` and its attributes, lowercased and sorted (their
/// order and case mean nothing to a browser).
fn parse_set_cookie(header: &str) -> (String, Vec<String>) {
    let mut parts = header.split(';').map(str::trim);
    let pair = parts.next().unwrap_or("").to_string();
    let mut attributes: Vec<String> = parts.map(str::to_ascii_lowercase).collect();
    attributes.sort();
    (pair, attributes)
}

fn sorted(attributes: &[&str]) -> Vec<String> {
    let mut attributes: Vec<String> = attributes.iter().map(|a| a.to_string()).collect();
    attributes.sort();
    attributes
}

fn is_sticky_value(value: &str) -> bool {
    value.len() == 16 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// New sessions until every one of `names` has answered: the cookie value each server's
/// `Set-Cookie` carries.
async fn values_by_server(proxy: &Proxy, names: &[&str]) -> HashMap<String, String> {
    let mut values = HashMap::new();
    for i in 0..10 * names.len() {
        if values.len() == names.len() {
            break;
        }
        let reply = get(proxy.addr, &format!("/new/{i}")).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let value = cookie_value(&reply.headers, "srv").expect("a new session gets a cookie");
        let server = reply.header("x-backend").to_string();
        if let Some(earlier) = values.insert(server.clone(), value.clone()) {
            assert_eq!(earlier, value, "{server} keeps one value");
        }
    }
    let mut seen: Vec<&String> = values.keys().collect();
    seen.sort();
    assert_eq!(seen, names, "every server took a new session");
    let distinct: HashSet<&String> = values.values().collect();
    assert_eq!(
        distinct.len(),
        names.len(),
        "one value per server: {values:?}"
    );
    values
}

/// Asserts that `cookie` pins `count` requests (each on a new connection) to `server`, with no
/// new `Set-Cookie` (a session cookie is issued once).
async fn assert_pinned(proxy: &Proxy, cookie: &str, server: &str, count: usize) {
    for i in 0..count {
        let reply = get_with_cookie(proxy.addr, &format!("/pinned/{i}"), cookie).await;
        assert_eq!(
            (reply.status.as_u16(), reply.header("x-backend")),
            (200, server),
            "request {i} with {cookie}"
        );
        assert!(set_cookies(&reply).is_empty(), "{:?}", reply.headers);
    }
}

#[tokio::test]
async fn a_session_cookie_is_set_once_and_pins_every_later_request() {
    let backends = Backend::start_all(["a", "b", "c"]).await;
    let proxy = Proxy::start(&upstream_up(ABC, "sticky cookie srv;"), &addrs(&backends)).await;

    let first = get(proxy.addr, "/").await;
    assert_eq!(first.status, 200);
    let issued = set_cookies(&first);
    assert_eq!(issued.len(), 1, "exactly one Set-Cookie: {issued:?}");
    let (pair, attributes) = parse_set_cookie(issued[0]);
    let value = pair.strip_prefix("srv=").expect("the cookie is named srv");
    assert!(is_sticky_value(value), "16 hex digits: {value:?}");
    assert_eq!(attributes, ["path=/"], "a session cookie: no expiry");
    let pinned = first.header("x-backend").to_string();

    // 50 requests, each on its own connection, all to the first server; the cookie also works
    // among other cookies.
    assert_pinned(&proxy, &format!("srv={value}"), &pinned, 40).await;
    assert_pinned(
        &proxy,
        &format!("theme=dark; srv={value}; lang=fr"),
        &pinned,
        10,
    )
    .await;
    for backend in &backends {
        let expected = if backend.name == pinned { 51 } else { 0 };
        assert_eq!(backend.hits(), expected, "hits on {}", backend.name);
    }
}

#[tokio::test]
async fn cookie_attributes_are_written_as_configured() {
    let backends = Backend::start_all(["a", "b", "c"]).await;
    let sticky = "sticky cookie srv expires=max domain=example.com path=/app httponly secure \
                  samesite=lax;";
    let proxy = Proxy::start(&upstream_up(ABC, sticky), &addrs(&backends)).await;
    let first = get(proxy.addr, "/").await;
    assert_eq!(first.status, 200);
    let issued = set_cookies(&first);
    assert_eq!(issued.len(), 1, "{issued:?}");
    let (pair, attributes) = parse_set_cookie(issued[0]);
    let value = pair.strip_prefix("srv=").expect("named srv");
    assert!(is_sticky_value(value), "{value:?}");
    assert_eq!(
        attributes,
        sorted(&[
            "expires=thu, 31-dec-37 23:55:55 gmt",
            "max-age=315360000",
            "domain=example.com",
            "path=/app",
            "httponly",
            "secure",
            "samesite=lax",
        ]),
        "{}",
        issued[0]
    );
    // The cookie pins, whatever its attributes.
    let pinned = first.header("x-backend").to_string();
    for i in 0..10 {
        let reply = get_with_cookie(proxy.addr, &format!("/{i}"), &pair).await;
        assert_eq!(reply.header("x-backend"), pinned, "request {i}");
    }
}

#[tokio::test]
async fn a_cookie_with_expires_is_reissued_on_every_response_so_it_slides() {
    let backends = Backend::start_all(["a", "b", "c"]).await;
    let proxy = Proxy::start(
        &upstream_up(ABC, "sticky cookie srv expires=1h;"),
        &addrs(&backends),
    )
    .await;
    let first = get(proxy.addr, "/").await;
    let value = cookie_value(&first.headers, "srv").expect("a new session gets a cookie");
    let pinned = first.header("x-backend").to_string();
    for i in 0..6 {
        let reply = get_with_cookie(proxy.addr, &format!("/{i}"), &format!("srv={value}")).await;
        assert_eq!(
            (reply.status.as_u16(), reply.header("x-backend")),
            (200, pinned.as_str())
        );
        let issued = set_cookies(&reply);
        assert_eq!(issued.len(), 1, "re-issued on request {i}: {issued:?}");
        let (pair, attributes) = parse_set_cookie(issued[0]);
        assert_eq!(pair, format!("srv={value}"), "the same server");
        assert!(
            attributes.contains(&"max-age=3600".to_string()),
            "{attributes:?}"
        );
        assert!(attributes.contains(&"path=/".to_string()), "{attributes:?}");
        // The expiry is an hour from *this* response.
        let expires = issued[0]
            .split(';')
            .map(str::trim)
            .find(|a| a.to_ascii_lowercase().starts_with("expires="))
            .unwrap_or_else(|| panic!("an expires attribute: {}", issued[0]));
        let at = httpdate::parse_http_date(&expires["expires=".len()..])
            .unwrap_or_else(|e| panic!("an HTTP date in {expires:?}: {e}"));
        let ahead = at
            .duration_since(SystemTime::now())
            .expect("expires is in the future");
        assert!(
            (Duration::from_secs(3540)..=Duration::from_secs(3600)).contains(&ahead),
            "expires {ahead:?} from now"
        );
    }
}

#[tokio::test]
async fn a_websocket_upgrade_gets_the_cookie_and_a_pinned_upgrade_lands_on_its_server() {
    let backends = Backend::start_all(["a", "b", "c"]).await;
    let proxy = Proxy::start(&upstream_up(ABC, "sticky cookie srv;"), &addrs(&backends)).await;

    let (mut ws, response) = websocket(proxy.addr, "/ws", None).await;
    let value = cookie_value(response.headers(), "srv").expect("the 101 carries Set-Cookie");
    assert!(is_sticky_value(&value), "{value:?}");
    let upgraded_on: Vec<&Backend> = backends
        .iter()
        .filter(|b| b.seen().iter().any(|s| s.uri == "/ws"))
        .collect();
    assert_eq!(upgraded_on.len(), 1, "one backend took the upgrade");
    let pinned = upgraded_on[0];
    ws.send(Message::text("first")).await.unwrap();
    let echo = within(Duration::from_secs(5), "an echo", ws.next()).await;
    assert_eq!(echo.unwrap().unwrap(), Message::text("first"));

    let cookie = format!("srv={value}");
    for i in 0..6 {
        let (mut ws, response) = websocket(proxy.addr, "/ws", Some(&cookie)).await;
        assert!(
            cookie_value(response.headers(), "srv").is_none(),
            "a pinned session is not re-issued its session cookie"
        );
        ws.send(Message::text(format!("{i}"))).await.unwrap();
        let echo = within(Duration::from_secs(5), "an echo", ws.next()).await;
        assert_eq!(echo.unwrap().unwrap(), Message::text(format!("{i}")));
    }
    for backend in &backends {
        let upgrades = backend.seen().iter().filter(|s| s.uri == "/ws").count();
        let expected = if backend.name == pinned.name { 7 } else { 0 };
        assert_eq!(upgrades, expected, "upgrades on {}", backend.name);
    }
    // And a plain request with that cookie goes to the same server.
    assert_pinned(&proxy, &cookie, pinned.name, 3).await;
}

#[tokio::test]
async fn cookie_values_are_the_same_on_every_instance_and_in_any_server_order() {
    let backends = Backend::start_all(["a", "b", "c"]).await;
    let backends = addrs(&backends);
    let names = ["a", "b", "c"];
    let first = Proxy::start(&upstream_up(ABC, "sticky cookie srv;"), &backends).await;
    let second = Proxy::start(&upstream_up(ABC, "sticky cookie srv;"), &backends).await;
    let reordered_servers = "server {c}; server {a}; server {b};";
    let reordered = Proxy::start(
        &upstream_up(reordered_servers, "sticky cookie srv;"),
        &backends,
    )
    .await;

    let values = values_by_server(&first, &names).await;
    assert_eq!(
        values_by_server(&second, &names).await,
        values,
        "a second instance"
    );
    assert_eq!(
        values_by_server(&reordered, &names).await,
        values,
        "reordered servers"
    );
    for name in names {
        assert!(is_sticky_value(&values[name]), "{values:?}");
    }
    // Crossed: a cookie one instance issued pins on the other.
    for (server, value) in &values {
        assert_pinned(&second, &format!("srv={value}"), server, 3).await;
        assert_pinned(&reordered, &format!("srv={value}"), server, 3).await;
    }
}

#[tokio::test]
async fn sticky_secret_changes_the_values_and_instances_sharing_it_agree() {
    let backends = Backend::start_all(["a", "b", "c"]).await;
    let backends = addrs(&backends);
    let names = ["a", "b", "c"];
    let unkeyed = Proxy::start(&upstream_up(ABC, "sticky cookie srv;"), &backends).await;
    let keyed = Proxy::start(
        &upstream_up(ABC, "sticky cookie srv; sticky_secret first-secret;"),
        &backends,
    )
    .await;
    // The same secret written at http level, before the upstream, reordered servers.
    let keyed_too = Proxy::start(
        "events {} http { sticky_secret first-secret; \
         upstream up { server {b}; server {c}; server {a}; sticky cookie srv; } \
         server { listen {listen}; location / { proxy_pass http://up; } } }",
        &backends,
    )
    .await;
    let other_secret = Proxy::start(
        &upstream_up(ABC, "sticky cookie srv; sticky_secret second-secret;"),
        &backends,
    )
    .await;

    let plain = values_by_server(&unkeyed, &names).await;
    let first = values_by_server(&keyed, &names).await;
    let second = values_by_server(&other_secret, &names).await;
    assert_eq!(values_by_server(&keyed_too, &names).await, first);
    for name in names {
        assert!(is_sticky_value(&first[name]), "{first:?}");
        assert_ne!(
            first[name], plain[name],
            "{name}: a secret changes the value"
        );
        assert_ne!(
            first[name], second[name],
            "{name}: another secret, another value"
        );
    }
    for (server, value) in &first {
        assert_pinned(&keyed_too, &format!("srv={value}"), server, 2).await;
    }
    // A cookie from the unkeyed instance names nothing on the keyed one: rebalanced, re-issued.
    let reply = get_with_cookie(keyed.addr, "/", &format!("srv={}", plain["a"])).await;
    assert_eq!(reply.status, 200);
    let server = reply.header("x-backend");
    assert_eq!(
        cookie_value(&reply.headers, "srv"),
        Some(first[server].clone())
    );
}

#[tokio::test]
async fn a_cookie_naming_no_server_is_rebalanced_and_reissued_never_an_error() {
    let backends = Backend::start_all(["a", "b", "c"]).await;
    let d = Backend::start("d").await;
    let names = ["a", "b", "c"];
    // An instance that still has server d: its cookie becomes stale once d is removed.
    let mut with_d = addrs(&backends);
    with_d.push(("d", d.addr));
    let before = Proxy::start(
        &upstream_up(
            "server {a}; server {b}; server {c}; server {d};",
            "sticky cookie srv;",
        ),
        &with_d,
    )
    .await;
    let stale = values_by_server(&before, &["a", "b", "c", "d"]).await["d"].clone();
    before.stop().await;
    let d_hits = d.hits();

    let proxy = Proxy::start(&upstream_up(ABC, "sticky cookie srv;"), &addrs(&backends)).await;
    let values = values_by_server(&proxy, &names).await;
    let real = values["a"].clone();
    let cases: Vec<(&str, String)> = vec![
        ("forged", "srv=0123456789abcdef".into()),
        ("forged upper-case", "srv=DEADBEEFDEADBEEF".into()),
        ("a real value plus a digit", format!("srv={real}0")),
        ("a real value cut short", format!("srv={}", &real[..15])),
        ("stale: its server was removed", format!("srv={stale}")),
        ("garbage", "srv=not-a-server".into()),
        ("punctuation", "srv=%%%!!".into()),
        ("quoted empty", "srv=\"\"".into()),
        ("empty", "srv=".into()),
        ("no value at all", "srv".into()),
        ("over-long", format!("srv={}", "f".repeat(4000))),
    ];
    for (what, cookie) in &cases {
        let reply = get_with_cookie(proxy.addr, "/", cookie).await;
        assert_eq!(reply.status, 200, "{what}: {reply:?}");
        let server = reply.header("x-backend").to_string();
        assert!(names.contains(&server.as_str()), "{what}: {reply:?}");
        assert_eq!(
            cookie_value(&reply.headers, "srv").as_ref(),
            Some(&values[&server]),
            "{what}: re-issued for the server that answered"
        );
        // The new cookie holds from then on.
        assert_pinned(&proxy, &format!("srv={}", values[&server]), &server, 2).await;
    }
    assert_eq!(d.hits(), d_hits, "the removed server is out of the picture");
}

#[tokio::test]
async fn sticky_route_sends_a_named_route_to_its_server_and_balances_the_rest() {
    let backends = Backend::start_all(["a", "b", "c"]).await;
    let servers = "server {a} route=r1; server {b} route=r2; server {c} route=r3;";
    let proxy = Proxy::start(
        &upstream_up(servers, "sticky route $arg_route $cookie_route;"),
        &addrs(&backends),
    )
    .await;
    let with_cookie = |path: &'static str, cookie: &'static str| {
        let addr = proxy.addr;
        async move { get_with_cookie(addr, path, cookie).await }
    };
    let cases: Vec<(Reply, &str)> = vec![
        (get(proxy.addr, "/?route=r2").await, "b"),
        (get(proxy.addr, "/x?a=1&route=r2").await, "b"),
        (get(proxy.addr, "/?route=r1").await, "a"),
        (with_cookie("/", "route=r3").await, "c"),
        (with_cookie("/", "x=1; route=r3").await, "c"),
        // The first non-empty variable wins: the argument before the cookie.
        (with_cookie("/?route=r1", "route=r3").await, "a"),
        (with_cookie("/?route=", "route=r3").await, "c"),
    ];
    for (i, (reply, expected)) in cases.iter().enumerate() {
        assert_eq!(
            (reply.status.as_u16(), reply.header("x-backend")),
            (200, *expected),
            "case {i}"
        );
        assert!(set_cookies(reply).is_empty(), "routes set no cookie");
    }
    for _ in 0..5 {
        assert_eq!(get(proxy.addr, "/?route=r2").await.header("x-backend"), "b");
    }
    let b = peer(&proxy, "up", backends[1].addr);
    assert_eq!(b.state.picked_by_sticky(), 7);
    assert_eq!(b.state.picked_by_balancer(), 0);

    // An unknown route, or none, is balanced like any new request.
    let mut answered = HashSet::new();
    for (i, path) in [
        "/?route=zz",
        "/?route=r9",
        "/",
        "/?other=r1",
        "/?route=zz",
        "/?route=R1",
    ]
    .iter()
    .enumerate()
    {
        let reply = get(proxy.addr, path).await;
        assert_eq!(reply.status, 200, "{path}");
        answered.insert(reply.header("x-backend").to_string());
        assert!(set_cookies(&reply).is_empty(), "request {i}");
    }
    assert!(answered.len() >= 2, "balanced over servers: {answered:?}");
    assert_eq!(b.state.picked_by_sticky(), 7, "none of those was pinned");
}
