//! The status pages over real sockets: traffic of known shape goes through tether — seven
//! requests pinned to one server (one a 503, one a long poll still held), three to another (a
//! WebSocket and an event stream still open), one to a server that refuses connections — and
//! the JSON page, nginx's `stub_status` text and the Prometheus text (read by the Prometheus
//! client library's own parser) must show exactly those numbers. A reload keeps them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::client::{Connection, request};
use crate::harness::edit::save_like_editor;
use crate::harness::nginx::Nginx;
use crate::harness::proxy::fill;
use crate::harness::{Backend, Proxy, Reply, free_addr, get, send, within};

mod learned;
pub mod prometheus;

const CONF: &str = "events {} http {
    upstream hub { server {a}; server {b}; sticky cookie srv; }
    upstream dead { server {c}; }
    server {
        listen {listen};
        location / { proxy_pass http://hub; }
        location /dead { proxy_pass http://dead; }
        location = /tether/status { status; }
        location = /tether/stub { stub_status; }
    }
}";

/// `GET path` on a fresh connection carrying `cookie`.
async fn get_with_cookie(addr: SocketAddr, path: &str, cookie: &str) -> Reply {
    let mut req = request("GET", path, "");
    req.headers_mut()
        .insert("cookie", cookie.parse().expect("a cookie header"));
    send(addr, req).await
}

/// The `srv=VALUE` pair a reply's `Set-Cookie` carries.
fn pin_of(reply: &Reply) -> String {
    let set = reply.header("set-cookie");
    assert!(set.starts_with("srv="), "a sticky cookie: {reply:?}");
    set.split(';').next().unwrap_or_default().to_string()
}

/// The JSON status page.
async fn status(addr: SocketAddr) -> Value {
    let reply = get(addr, "/tether/status").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "application/json");
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body))
}

/// One server's entry in the JSON page.
fn server<'a>(page: &'a Value, group: &str, address: &str) -> &'a Value {
    let groups = page["upstreams"].as_array().expect("upstreams");
    let group = groups
        .iter()
        .find(|g| g["name"] == group)
        .unwrap_or_else(|| panic!("group {group} in {page}"));
    let servers = group["servers"].as_array().expect("servers");
    servers
        .iter()
        .find(|s| s["address"] == address)
        .unwrap_or_else(|| panic!("server {address} in {group}"))
}

/// Open streams held by the test while it reads the pages.
struct Held {
    _websocket: tokio_tungstenite::WebSocketStream<TcpStream>,
    _events: hyper::Response<hyper::body::Incoming>,
    _events_sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    _poll: tokio::task::JoinHandle<Reply>,
}

/// Opens a WebSocket and an event stream on the server `cookie` pins, and a long poll on the
/// one `poll_cookie` pins; they stay open while the result lives.
async fn open_streams(
    proxy: &Proxy,
    events_from: &Backend,
    cookie: &str,
    poll_cookie: &str,
) -> Held {
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let mut ws_request = proxy
        .url("/ws")
        .replace("http", "ws")
        .into_client_request()
        .unwrap();
    ws_request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    let (websocket, response) = tokio_tungstenite::client_async(ws_request, stream)
        .await
        .expect("a WebSocket through tether");
    assert_eq!(response.status(), 101);

    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    events_from.release_event();
    let mut events_request = request("GET", "/sse?n=2", "");
    events_request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    let events = sender.send_request(events_request).await.unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");

    let (addr, poll_cookie) = (proxy.addr, poll_cookie.to_string());
    let poll =
        tokio::spawn(async move { get_with_cookie(addr, "/hold?ms=30000", &poll_cookie).await });
    Held {
        _websocket: websocket,
        _events: events,
        _events_sender: sender,
        _poll: poll,
    }
}

#[tokio::test]
async fn the_pages_show_exactly_the_traffic_that_went_through() {
    let [a, b] = Backend::start_all(["a", "b"]).await;
    let c = free_addr(); // nothing listens there
    let proxy = Proxy::start(CONF, &[("a", a.addr), ("b", b.addr), ("c", c)]).await;
    let backends = HashMap::from([("a", &a), ("b", &b)]);

    // Two new sessions: round robin pins one to each server.
    let first = get(proxy.addr, "/").await;
    let second = get(proxy.addr, "/").await;
    assert_ne!(first.body, second.body, "round robin: one session each");
    let (seven, three) = (
        backends[first.body.as_str()],
        backends[second.body.as_str()],
    );
    let (pin7, pin3) = (pin_of(&first), pin_of(&second));
    for _ in 0..4 {
        assert_eq!(
            get_with_cookie(proxy.addr, "/", &pin7).await.body,
            seven.name
        );
    }
    let failed = get_with_cookie(proxy.addr, "/status?code=503", &pin7).await;
    assert_eq!(failed.status, 503);
    let _held = open_streams(&proxy, three, &pin3, &pin7).await;
    assert_eq!(get(proxy.addr, "/dead").await.status, 502);
    let traffic_requests = 2 + 4 + 1 + 3 + 1;

    // The long poll counts as one once it has waited a second; the listener's open
    // connections settle once the closed ones are noticed: the event stream, the long poll
    // and the page's own (the upgraded WebSocket counts as a tunnel).
    let mut pages = 0;
    let page = within(
        Duration::from_secs(10),
        "the long poll and the open connections",
        async {
            loop {
                let page = status(proxy.addr).await;
                pages += 1;
                let poll = &server(&page, "hub", &seven.addr.to_string())["tunnels"]["long_poll"];
                if poll == 1 && page["listeners"][0]["active"] == 3 {
                    return page;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;

    let s7 = server(&page, "hub", &seven.addr.to_string());
    assert_eq!(s7["tier"], "primary");
    assert_eq!(s7["state"], "up");
    assert_eq!(s7["requests"], 7, "{s7}");
    assert_eq!(s7["active"], 1, "the long poll");
    assert_eq!(
        s7["tunnels"],
        serde_json::json!({"websocket": 0, "sse": 0, "long_poll": 1})
    );
    assert_eq!(
        s7["responses"],
        serde_json::json!({"1xx": 0, "2xx": 5, "3xx": 0, "4xx": 0, "5xx": 1})
    );
    assert_eq!(
        s7["sticky"],
        serde_json::json!({"hits": 6, "new": 1, "repinned": 0})
    );
    assert_eq!(s7["failures"], 0);
    assert_eq!(s7["request_time"]["count"], 6, "every answered exchange");

    let s3 = server(&page, "hub", &three.addr.to_string());
    assert_eq!(s3["requests"], 3, "{s3}");
    assert_eq!(s3["active"], 2, "the WebSocket and the event stream");
    assert_eq!(
        s3["tunnels"],
        serde_json::json!({"websocket": 1, "sse": 1, "long_poll": 0})
    );
    assert_eq!(
        s3["responses"],
        serde_json::json!({"1xx": 1, "2xx": 2, "3xx": 0, "4xx": 0, "5xx": 0})
    );
    assert_eq!(
        s3["sticky"],
        serde_json::json!({"hits": 2, "new": 1, "repinned": 0})
    );
    assert_eq!(
        s3["request_time"]["count"], 1,
        "open streams are not timed yet"
    );

    let dead = server(&page, "dead", &c.to_string());
    assert_eq!(dead["requests"], 1);
    assert_eq!(dead["failures"], 1);
    assert_eq!(dead["connect_errors"], 1);
    assert_eq!(
        dead["state"], "up",
        "the only server of its group is never taken out"
    );
    assert_eq!(dead["sticky"]["new"], 0, "its group is not sticky");
    assert_eq!(dead["max_conns"], 0);

    let requests = traffic_requests + pages;
    assert_eq!(page["connections"]["requests"], requests, "{page}");
    assert_eq!(page["connections"]["active"], 3);
    assert_eq!(page["connections"]["tunnels"], 1);
    assert_eq!(
        page["listeners"][0]["accepted"], requests,
        "one connection each"
    );
    assert_eq!(page["listeners"][0]["listen"], proxy.addr.to_string());
    assert_eq!(page["generation"], 1);
    assert_eq!(
        page["reloads"],
        serde_json::json!({"applied": 0, "failed": 0, "last_error": null})
    );
    let (open, limit) = (
        page["fds"]["open"].as_u64().unwrap(),
        page["fds"]["limit"].as_u64().unwrap(),
    );
    assert!(open > 0 && open < limit, "{}", page["fds"]);
    // A process-wide count other tests' logs add to: only its presence is this test's.
    assert!(page["access_log"]["dropped_lines"].is_u64(), "{page}");

    // nginx's text: the page's own connection and request are counted, and are writing; the
    // WebSocket is an active connection as in nginx.
    let stub = get(proxy.addr, "/tether/stub").await;
    assert_eq!(stub.header("content-type"), "text/plain");
    let accepted = requests + 1;
    assert_eq!(
        stub.body,
        format!(
            "Active connections: 4 \nserver accepts handled requests\n {accepted} {accepted} {accepted} \nReading: 0 Writing: 4 Waiting: 0 \n"
        )
    );

    // The same numbers in Prometheus's text, as Prometheus's own parser reads them.
    let mut scrape = request("GET", "/tether/status", "");
    scrape.headers_mut().insert(
        "accept",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            .parse()
            .unwrap(),
    );
    let exposition = send(proxy.addr, scrape).await;
    assert_eq!(
        exposition.header("content-type"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let Some(samples) = prometheus::parse(&exposition.body) else {
        return;
    };
    let (s7, s3, dead) = (
        seven.addr.to_string(),
        three.addr.to_string(),
        c.to_string(),
    );
    let at = |name: &str, server: &str, extra: &[(&str, &str)]| {
        let group = if server == dead { "dead" } else { "hub" };
        let mut labels = vec![("upstream", group), ("server", server)];
        labels.extend_from_slice(extra);
        let key = prometheus::key(name, &labels);
        let value = samples.get(&key).copied();
        value.unwrap_or_else(|| panic!("{key} in\n{}", exposition.body))
    };
    let requests_total = "tether_upstream_server_requests_total";
    assert_eq!(at(requests_total, &s7, &[]), 7.0);
    assert_eq!(at(requests_total, &s3, &[]), 3.0);
    let responses = "tether_upstream_server_responses_total";
    assert_eq!(at(responses, &s7, &[("code", "5xx")]), 1.0);
    assert_eq!(at(responses, &s7, &[("code", "2xx")]), 5.0);
    assert_eq!(at(responses, &s3, &[("code", "1xx")]), 1.0);
    assert_eq!(
        at("tether_upstream_server_active_connections", &s3, &[]),
        2.0
    );
    let tunnels = "tether_upstream_server_active_tunnels";
    assert_eq!(at(tunnels, &s3, &[("transport", "websocket")]), 1.0);
    assert_eq!(at(tunnels, &s3, &[("transport", "sse")]), 1.0);
    assert_eq!(at(tunnels, &s7, &[("transport", "long_poll")]), 1.0);
    assert_eq!(at(tunnels, &s7, &[("transport", "sse")]), 0.0);
    assert_eq!(
        at("tether_upstream_server_sticky_hits_total", &s7, &[]),
        6.0
    );
    assert_eq!(at("tether_upstream_server_sticky_new_total", &s3, &[]), 1.0);
    assert_eq!(
        at("tether_upstream_server_connect_errors_total", &dead, &[]),
        1.0
    );
    assert_eq!(at("tether_upstream_server_failures_total", &dead, &[]), 1.0);
    let state = "tether_upstream_server_state";
    assert_eq!(at(state, &dead, &[("state", "up")]), 1.0);
    assert_eq!(at(state, &dead, &[("state", "down")]), 0.0);
    let duration = "tether_upstream_server_request_duration_seconds";
    assert_eq!(at(&format!("{duration}_count"), &s7, &[]), 6.0);
    assert_eq!(
        at(&format!("{duration}_bucket"), &s7, &[("le", "+Inf")]),
        6.0
    );
    assert_eq!(samples["tether_config_generation"], 1.0);
    assert_eq!(samples["tether_requests_total"], (accepted + 1) as f64);
    let listen = proxy.addr.to_string();
    let accepted_key = prometheus::key(
        "tether_listener_connections_accepted_total",
        &[("listen", &listen)],
    );
    assert_eq!(samples[&accepted_key], (accepted + 1) as f64);
}

#[tokio::test]
async fn a_reload_keeps_every_count_and_a_failed_one_is_shown_with_its_error() {
    let [a, b] = Backend::start_all(["a", "b"]).await;
    let conf = "events {} http { upstream hub { server {a}; } server { listen {listen}; \
        location / { proxy_pass http://hub; } location = /s { status; } } }";
    let proxy = Proxy::start_watched(conf, &[("a", a.addr)]).await;
    for _ in 0..3 {
        assert_eq!(get(proxy.addr, "/").await.body, "a");
    }
    let path = proxy.watched().path.clone();
    let added = conf.replace("server {a};", "server {a}; server {b};");
    save_like_editor(
        &path,
        &fill(&added, proxy.addr, &[("a", a.addr), ("b", b.addr)]),
    );
    let page = until_page(proxy.addr, "/s", |page| page["generation"] == 2).await;
    assert_eq!(page["reloads"]["applied"], 1);
    assert_eq!(
        server(&page, "hub", &a.addr.to_string())["requests"],
        3,
        "kept across the reload"
    );
    assert_eq!(server(&page, "hub", &b.addr.to_string())["requests"], 0);
    assert!(
        page["listeners"][0]["accepted"].as_u64().unwrap() >= 4,
        "the listener's count too"
    );

    let broken = added.replace("proxy_pass", "proxy_pas");
    save_like_editor(
        &path,
        &fill(&broken, proxy.addr, &[("a", a.addr), ("b", b.addr)]),
    );
    let page = until_page(proxy.addr, "/s", |page| page["reloads"]["failed"] == 1).await;
    assert_eq!(page["generation"], 2, "the config in force stays");
    let error = page["reloads"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("unknown directive \"proxy_pas\""), "{error}");
    assert_eq!(server(&page, "hub", &a.addr.to_string())["requests"], 3);
}

/// Reads the JSON page at `path` until `done` says so (bounded).
async fn until_page(addr: SocketAddr, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    within(
        Duration::from_secs(10),
        "the status page to show the reload",
        async {
            loop {
                let reply = get(addr, path).await;
                let page: Value = serde_json::from_str(&reply.body).expect("JSON");
                if done(&page) {
                    return page;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await
}

#[tokio::test]
async fn stub_status_reads_like_nginx_s() {
    let a = Backend::start("a").await;
    let locations = "location / { proxy_pass http://u; } location = /stub { stub_status; }";
    let conf = format!(
        "events {{}} http {{ upstream u {{ server {{a}}; }} server {{ listen {{listen}}; {locations} }} }}"
    );
    let tether = Proxy::start(&conf, &[("a", a.addr)]).await;
    let mut tether_conn = Connection::open(tether.addr).await;
    tether_conn.get("/").await;
    let ours = tether_conn.get("/stub").await;
    let Some(nginx) = Nginx::start_with("server {a};", locations, &[("a", a.addr)]).await else {
        return;
    };
    let mut nginx_conn = Connection::open(nginx.addr).await;
    nginx_conn.get("/").await;
    let theirs = nginx_conn.get("/stub").await;
    // The numbers differ with each server's history; the text around them must not.
    let shape = |text: &str| {
        regex::Regex::new(r"\d+")
            .unwrap()
            .replace_all(text, "N")
            .into_owned()
    };
    assert_eq!(
        shape(&ours.body),
        shape(&theirs.body),
        "ours:\n{}\nnginx:\n{}",
        ours.body,
        theirs.body
    );
    assert_eq!(ours.header("content-type"), theirs.header("content-type"));
    assert!(
        ours.body.contains(" 1 1 2 \n"),
        "one connection, two requests: {}",
        ours.body
    );
}

#[tokio::test]
async fn a_tls_listener_counts_its_handshakes_done_and_failed() {
    let ca = crate::harness::certs::TestCa::new();
    let leaf = ca.leaf(&["app.test"], crate::harness::certs::KeyKind::EcdsaP256);
    let conf = format!(
        "events {{}} http {{ server {{ listen {{listen}} ssl; server_name app.test; \
         ssl_certificate {}; ssl_certificate_key {}; location = /s {{ status; }} }} }}",
        leaf.cert.display(),
        leaf.key.display()
    );
    let proxy = Proxy::start(&conf, &[]).await;
    let trusting = ca.client_config(&[]);
    for _ in 0..2 {
        crate::harness::certs::connect(proxy.addr, trusting.clone(), Some("app.test"))
            .await
            .expect("a handshake");
    }
    // A client that trusts another authority gives up halfway: a failed handshake.
    let stranger = crate::harness::certs::TestCa::new().client_config(&[]);
    let refused = crate::harness::certs::connect(proxy.addr, stranger, Some("app.test")).await;
    assert!(
        refused.is_err(),
        "the stranger does not trust our certificate"
    );

    let mut sender = crate::harness::certs::https1(proxy.addr, trusting, Some("app.test")).await;
    let page = within(
        Duration::from_secs(10),
        "the failed handshake counted",
        async {
            loop {
                let request = http::Request::get("/s")
                    .header("host", "app.test")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let response = sender.send_request(request).await.expect("the page");
                let reply = Reply::read(response).await.expect("its body");
                let page: Value = serde_json::from_str(&reply.body).expect("JSON");
                if page["listeners"][0]["tls_failures"] == 1 {
                    return page;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;
    let listener = &page["listeners"][0];
    assert_eq!(
        listener["tls_handshakes"], 3,
        "two, and the page's own: {listener}"
    );
    assert_eq!(listener["accepted"], 4);
}
