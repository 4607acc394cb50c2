//! Drains that finish: a server marked `drain` or removed by a reload, with `drain_timeout`,
//! has its WebSockets closed with 1012 (Service Restart) spread evenly over the timeout; a
//! graceful stop spreads its 1001 (Going Away) closes over `shutdown_timeout`. Each test opens
//! a handful of real WebSockets, notes when each close frame arrives, and checks the codes,
//! that the closes are spread (not one burst) and that they all came within the timeout. The
//! real SignalR and socket.io clients' reconnects are in `drain/signalr` and `drain/socketio`.

mod clients;
mod event_stream;
mod signalr;
mod socketio;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::load::echo;
use crate::harness::session::{Ws, eventually, websocket};
use crate::harness::{Backend, Proxy, get, within};
use crate::status::prometheus;

const LIMIT: Duration = Duration::from_secs(5);
const SOCKETS: usize = 4;

/// How one WebSocket ended: the close code tether sent, and when it came.
#[derive(Debug)]
struct Closed {
    code: u16,
    at: Instant,
}

/// Reads `ws` until its close frame (answering it, as tungstenite does) and notes it.
fn watch(mut ws: Ws) -> JoinHandle<Closed> {
    tokio::spawn(async move {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => {
                    let at = Instant::now();
                    // Reading on sends the client's reply and takes the end of the stream.
                    while let Some(Ok(_)) = ws.next().await {}
                    let code = frame.map_or(1005, |frame| u16::from(frame.code));
                    return Closed { code, at };
                }
                Some(Ok(_)) => continue,
                other => panic!("the WebSocket ended without a close frame: {other:?}"),
            }
        }
    })
}

/// Opens [`SOCKETS`] WebSockets through `proxy`, each echoing once (so each is a live tunnel
/// on `backend`), and starts watching them.
async fn open_all(proxy: &Proxy, backend: &str) -> Vec<JoinHandle<Closed>> {
    let mut watched = Vec::new();
    for i in 0..SOCKETS {
        let (mut ws, response) = websocket(proxy.addr, "/ws", None).await;
        assert_eq!(response.headers()["x-backend"], backend);
        echo(&mut ws, &format!("hello {i}"), LIMIT).await.unwrap();
        watched.push(watch(ws));
    }
    watched
}

/// The close of every watched WebSocket, in the order they came, relative to `from`.
async fn closes(watched: Vec<JoinHandle<Closed>>, from: Instant) -> Vec<(u16, Duration)> {
    let mut closed = Vec::new();
    for handle in watched {
        let one = within(LIMIT, "a close frame", handle).await.unwrap();
        closed.push((one.code, one.at - from));
    }
    closed.sort_by_key(|(_, at)| *at);
    closed
}

/// Asserts that `closed` carries `code` only, all came within `over` (and a little for the
/// handshake), and are spread over it: the first and last at least half of it apart, no two
/// in the same instant.
fn assert_spread(closed: &[(u16, Duration)], code: u16, over: Duration) {
    assert!(closed.iter().all(|(c, _)| *c == code), "codes: {closed:?}");
    let (first, last) = (closed[0].1, closed[closed.len() - 1].1);
    assert!(
        last <= over + Duration::from_millis(500),
        "late: {closed:?}"
    );
    assert!(last - first >= over / 2, "not spread: {closed:?}");
    let gaps = closed.windows(2).map(|pair| pair[1].1 - pair[0].1);
    let narrowest = gaps.min().unwrap_or_default();
    assert!(
        narrowest >= over / (4 * SOCKETS as u32),
        "a burst: {closed:?}"
    );
}

/// `upstream up { SERVERS drain_timeout 3s; }` behind `location /`, the status page on
/// `/status`.
fn drained(servers: &str) -> String {
    format!(
        "events {{}} http {{ upstream up {{ {servers} drain_timeout 3s; }} \
         server {{ listen {{listen}}; location / {{ proxy_pass http://up; }} \
         location = /status {{ status; }} }} }}"
    )
}

/// The status page's entry for server `address` in group `up`, if it lists one.
async fn server_status(proxy: &Proxy, address: std::net::SocketAddr) -> Option<serde_json::Value> {
    let reply = get(proxy.addr, "/status").await;
    let status: serde_json::Value = serde_json::from_str(&reply.body).expect("status JSON");
    let groups = status["upstreams"].as_array().expect("upstreams");
    let group = groups.iter().find(|group| group["name"] == "up")?;
    let servers = group["servers"].as_array().expect("servers");
    (servers.iter())
        .find(|server| server["address"] == address.to_string().as_str())
        .cloned()
}

/// The status page's `drain` of server `address` in group `up`.
async fn drain_status(proxy: &Proxy, address: std::net::SocketAddr) -> serde_json::Value {
    let server = server_status(proxy, address).await;
    server.expect("the server on the status page")["drain"].clone()
}

#[tokio::test]
async fn a_graceful_stop_spreads_its_going_aways_over_shutdown_timeout() {
    let a = Backend::start("a").await;
    let conf = "events {} http { upstream up { server {a}; } \
                server { listen {listen}; location / { proxy_pass http://up; } } }";
    let proxy = Proxy::start(conf, &[("a", a.addr)]).await;
    let tether = proxy.tether().clone();
    let watched = open_all(&proxy, "a").await;

    let started = Instant::now();
    let timeout = Duration::from_secs(4);
    let stopping = tokio::spawn(async move { tether.shutdown(timeout).await });
    let closed = closes(watched, started).await;
    // Spread over the timeout less tether's 1 s close grace, kept for the last handshake.
    assert_spread(&closed, 1001, Duration::from_secs(3));
    within(LIMIT, "shutdown() to return", stopping)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_drained_server_s_websockets_close_with_service_restart_spread_over_drain_timeout() {
    let [a, b] = Backend::start_all(["a", "b"]).await;
    let backends = [("a", a.addr), ("b", b.addr)];
    let proxy = Proxy::start(&drained("server {a}; server {b} down;"), &backends).await;
    let watched = open_all(&proxy, "a").await;

    let started = Instant::now();
    proxy
        .apply(&drained("server {a} drain; server {b};"), &backends)
        .await
        .unwrap();
    // The status page shows the drain: four to close, within the 3 s.
    let drain = drain_status(&proxy, a.addr).await;
    assert_eq!(
        (&drain["reason"], &drain["left"]),
        (&"drain".into(), &4.into()),
        "{drain}"
    );
    let finish_in = drain["finish_in_seconds"].as_f64().unwrap_or_default();
    assert!(finish_in > 2.0 && finish_in <= 3.0, "{drain}");
    // And on the Prometheus page (the first close may have come between the two reads).
    let exposition = get(proxy.addr, "/status?format=prometheus").await;
    if let Some(samples) = prometheus::parse(&exposition.body) {
        let server = a.addr.to_string();
        let labels = [("upstream", "up"), ("server", &server), ("reason", "drain")];
        let at = |name: &str| {
            let key = prometheus::key(name, &labels);
            let value = samples.get(&key).copied();
            value.unwrap_or_else(|| panic!("{key} in\n{}", exposition.body))
        };
        let left = at("tether_upstream_server_drain_tunnels_left");
        let closed = at("tether_upstream_server_drain_tunnels_closed");
        assert_eq!(left + closed, 4.0, "{}", exposition.body);
        let finish_in = at("tether_upstream_server_drain_finish_seconds");
        assert!(finish_in > 1.0 && finish_in <= 3.0, "{}", exposition.body);
    }
    // A new WebSocket goes elsewhere at once.
    let (mut ws, response) = websocket(proxy.addr, "/ws", None).await;
    assert_eq!(response.headers()["x-backend"], "b");
    echo(&mut ws, "on b", LIMIT).await.unwrap();

    let closed = closes(watched, started).await;
    assert_spread(&closed, 1012, Duration::from_secs(3));
    // The drain is over: nothing of `a` left to close, and `b`'s WebSocket untouched.
    echo(&mut ws, "still on b", LIMIT).await.unwrap();
    let drain = drain_status(&proxy, a.addr).await;
    assert_eq!(
        (&drain["left"], &drain["closed"]),
        (&0.into(), &4.into()),
        "{drain}"
    );
}

#[tokio::test]
async fn a_server_a_reload_removes_drains_over_its_drain_timeout() {
    let [a, b] = Backend::start_all(["a", "b"]).await;
    let backends = [("a", a.addr), ("b", b.addr)];
    let proxy = Proxy::start(&drained("server {a};"), &backends).await;
    let watched = open_all(&proxy, "a").await;

    let started = Instant::now();
    proxy
        .apply(&drained("server {b};"), &backends)
        .await
        .unwrap();
    // The status page still lists it, marked removed, while it drains.
    let server = server_status(&proxy, a.addr).await;
    let server = server.expect("the removed server on the status page");
    assert_eq!(
        (&server["removed"], &server["state"]),
        (&true.into(), &"draining".into()),
        "{server}"
    );
    let drain = &server["drain"];
    let (left, closed) = (drain["left"].as_u64(), drain["closed"].as_u64());
    assert_eq!(left.zip(closed).map(|(l, c)| l + c), Some(4), "{server}");
    let kept = server_status(&proxy, b.addr).await.expect("b on the page");
    assert_eq!(kept["removed"], false, "{kept}");

    let closed = closes(watched, started).await;
    assert_spread(&closed, 1012, Duration::from_secs(3));
    // Once its drain is over, it is gone from the page.
    eventually(LIMIT, "the removed server off the status page", || async {
        server_status(&proxy, a.addr).await.is_none()
    })
    .await;
}

#[tokio::test]
async fn without_drain_timeout_a_drained_server_keeps_its_websockets() {
    let [a, b] = Backend::start_all(["a", "b"]).await;
    let backends = [("a", a.addr), ("b", b.addr)];
    let plain = |servers: &str| {
        format!(
            "events {{}} http {{ upstream up {{ {servers} }} \
             server {{ listen {{listen}}; location / {{ proxy_pass http://up; }} }} }}"
        )
    };
    let proxy = Proxy::start(&plain("server {a}; server {b} down;"), &backends).await;
    let (mut ws, _) = websocket(proxy.addr, "/ws", None).await;
    proxy
        .apply(&plain("server {a} drain; server {b};"), &backends)
        .await
        .unwrap();
    // Today's behaviour, the default: it stays until its client leaves.
    for i in 0..3 {
        echo(&mut ws, &format!("still here {i}"), LIMIT)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_group_a_reload_removes_stays_on_the_status_page_while_its_servers_drain() {
    let [a, b] = Backend::start_all(["a", "b"]).await;
    let backends = [("a", a.addr), ("b", b.addr)];
    let proxy = Proxy::start(&drained("server {a};"), &backends).await;
    let watched = open_all(&proxy, "a").await;

    let elsewhere = "events {} http { upstream other { server {b}; } \
                     server { listen {listen}; location / { proxy_pass http://other; } \
                     location = /status { status; } } }";
    proxy.apply(elsewhere, &backends).await.unwrap();
    let server = server_status(&proxy, a.addr).await;
    let server = server.expect("the removed group's server on the status page");
    assert_eq!(server["removed"], true, "{server}");

    let started = Instant::now();
    let closed = closes(watched, started).await;
    assert!(closed.iter().all(|(code, _)| *code == 1012), "{closed:?}");
    eventually(LIMIT, "the removed group off the status page", || async {
        server_status(&proxy, a.addr).await.is_none()
    })
    .await;
}
