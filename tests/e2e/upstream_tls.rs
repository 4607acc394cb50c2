//! TLS to upstreams (`proxy_pass https://`): requests, verification, SNI, client
//! certificates, pooled and resumed connections, upgrades and streams, and health checks, each
//! against a backend that speaks only TLS and records every handshake it completed.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tether::peer::CheckState;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::certs::{KeyKind, TestCa};
use crate::harness::client::{Connection, request};
use crate::harness::session::{eventually, peer};
use crate::harness::tls_backend::server_config;
use crate::harness::{Backend, Proxy, expect_events_one_by_one, get, send, within};

/// A TLS backend named `name` presenting a leaf of `ca` for `backend.test` and 127.0.0.1.
async fn tls_backend(name: &'static str, ca: &TestCa) -> Backend {
    let leaf = ca.leaf(&["backend.test", "127.0.0.1"], KeyKind::EcdsaP256);
    Backend::start_tls(name, server_config(&leaf, None)).await
}

/// `upstream up { servers }` and `server { listen; locations }` in one http block.
fn conf(servers: &str, locations: &str) -> String {
    format!(
        "events {{}} http {{ upstream up {{ {servers} }} server {{ listen {{listen}}; {locations} }} }}"
    )
}

fn verified(ca: &TestCa) -> String {
    format!(
        "proxy_ssl_verify on; proxy_ssl_trusted_certificate {}; proxy_ssl_name backend.test;",
        ca.ca_file().display()
    )
}

#[tokio::test]
async fn get_and_post_reach_an_https_upstream_with_nginx_s_defaults() {
    let ca = TestCa::new();
    let a = tls_backend("a", &ca).await;
    let text = conf("server {a};", "location / { proxy_pass https://up; }");
    let proxy = Proxy::start(&text, &[("a", a.addr)]).await;

    let reply = get(proxy.addr, "/").await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "a"));
    let body = "x".repeat(100_000);
    let reply = send(proxy.addr, request("POST", "/upload", &body)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        format!("bytes=100000 sum={}", 100_000 * u64::from(b'x'))
    );
    // nginx's defaults: no verification (the proxy does not know this CA) and no SNI.
    let handshakes = a.handshakes();
    assert!(!handshakes.is_empty());
    assert!(handshakes.iter().all(|h| h.sni.is_none()), "{handshakes:?}");
    assert!(handshakes.iter().all(|h| h.client_certificate.is_none()));
}

#[tokio::test]
async fn verification_passes_with_the_right_ca_and_a_wrong_one_is_a_connect_error() {
    let ca = TestCa::new();
    let stranger = TestCa::new();
    let good = tls_backend("good", &ca).await;
    let forged = tls_backend("forged", &stranger).await;

    let text = conf(
        "server {a};",
        &format!("location / {{ proxy_pass https://up; {} }}", verified(&ca)),
    );
    let proxy = Proxy::start(&text, &[("a", good.addr)]).await;
    assert_eq!(get(proxy.addr, "/").await.status, 200);
    drop(proxy);
    let proxy = Proxy::start(&text, &[("a", forged.addr)]).await;
    assert_eq!(get(proxy.addr, "/").await.status, 502);
    assert_eq!(forged.hits(), 0);

    // Like a refused connection, a failed verification moves on to the next server.
    let both = conf(
        "server {a}; server {b};",
        &format!("location / {{ proxy_pass https://up; {} }}", verified(&ca)),
    );
    let proxy = Proxy::start(&both, &[("a", forged.addr), ("b", good.addr)]).await;
    for _ in 0..4 {
        let reply = get(proxy.addr, "/").await;
        assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "good"));
    }
    assert_eq!(forged.hits(), 0);
}

#[tokio::test]
async fn sni_is_sent_only_with_proxy_ssl_server_name_on_and_settings_never_share_connections() {
    let ca = TestCa::new();
    let a = tls_backend("a", &ca).await;
    let locations = "location /off { proxy_pass https://up; }
        location /on { proxy_pass https://up; proxy_ssl_server_name on; proxy_ssl_name backend.test:8443; }";
    let text = conf("server {a}; keepalive 4;", locations);
    let proxy = Proxy::start(&text, &[("a", a.addr)]).await;
    let mut client = Connection::open(proxy.addr).await;
    for path in ["/off", "/on", "/off", "/on"] {
        assert_eq!(client.get(path).await.status, 200);
    }
    let sni: Vec<Option<String>> = a.handshakes().into_iter().map(|h| h.sni).collect();
    // One pooled connection per setting: the /on requests never rode the /off connection.
    assert_eq!(sni, [None, Some("backend.test".to_string())]);
    assert_eq!(a.connections(), 2);
}

#[tokio::test]
async fn a_client_certificate_is_presented_when_configured() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["backend.test"], KeyKind::EcdsaP256);
    let a = Backend::start_tls("a", server_config(&leaf, Some(&ca))).await;
    let client = ca.client("tether");
    let locations = format!(
        "location /anonymous {{ proxy_pass https://up; }}
         location /known {{ proxy_pass https://up; proxy_ssl_certificate {}; proxy_ssl_certificate_key {}; }}",
        client.cert.display(),
        client.key.display()
    );
    let proxy = Proxy::start(&conf("server {a};", &locations), &[("a", a.addr)]).await;
    assert_eq!(get(proxy.addr, "/anonymous").await.status, 502);
    assert_eq!(get(proxy.addr, "/known").await.status, 200);
    let handshakes = a.handshakes();
    assert_eq!(
        handshakes.len(),
        1,
        "only the handshake with a certificate completed"
    );
    assert_eq!(handshakes[0].client_certificate.as_ref(), Some(&client.der));
}

#[tokio::test]
async fn keep_alive_reuses_one_tls_connection_and_new_connections_resume_the_session() {
    let ca = TestCa::new();
    let a = tls_backend("a", &ca).await;
    let locations = "location / { proxy_pass https://up; }
        location /once { proxy_pass https://up; proxy_set_header Connection close; }
        location /fresh { proxy_pass https://up; proxy_set_header Connection close; proxy_ssl_session_reuse off; }";
    let proxy = Proxy::start(
        &conf("server {a}; keepalive 4;", locations),
        &[("a", a.addr)],
    )
    .await;
    let mut client = Connection::open(proxy.addr).await;
    for _ in 0..3 {
        assert_eq!(client.get("/").await.status, 200);
    }
    assert_eq!(
        a.connections(),
        1,
        "sequential requests share one TLS connection"
    );

    // `Connection: close` upstream: the pooled connection (same settings) is taken and closed,
    // then a new one is opened, which resumes the session the first one made.
    for _ in 0..2 {
        assert_eq!(client.get("/once").await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(client.get("/fresh").await.status, 200);
    }
    let resumed: Vec<bool> = a.handshakes().into_iter().map(|h| h.resumed).collect();
    assert_eq!(a.connections(), 4);
    // /once shares the first location's settings, so its session cache; /fresh never resumes.
    assert_eq!(resumed, [false, true, false, false]);
}

#[tokio::test]
async fn websockets_and_server_sent_events_cross_an_https_upstream() {
    let ca = TestCa::new();
    let a = tls_backend("a", &ca).await;
    let locations = "location / { proxy_pass https://up; proxy_set_header Upgrade $http_upgrade; \
                     proxy_set_header Connection $http_connection; }";
    let proxy = Proxy::start(&conf("server {a};", locations), &[("a", a.addr)]).await;

    let url = proxy.url("/ws").replace("http", "ws");
    let (mut ws, response) = within(Duration::from_secs(5), "a WebSocket handshake", async {
        tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket through tether")
    })
    .await;
    assert_eq!(response.status(), 101);
    for text in ["over", "tls"] {
        ws.send(Message::text(text)).await.unwrap();
        let echoed = within(Duration::from_secs(5), "an echo", ws.next()).await;
        assert_eq!(echoed.unwrap().unwrap().into_text().unwrap(), text);
    }

    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    a.release_event();
    let response = sender
        .send_request(request("GET", "/sse?n=3", ""))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    expect_events_one_by_one(&mut body, &a, 3).await;
}

#[tokio::test]
async fn active_health_checks_speak_tls_to_groups_proxied_over_https() {
    let ca = TestCa::new();
    let stranger = TestCa::new();
    let good = tls_backend("good", &ca).await;
    let forged = tls_backend("forged", &stranger).await;
    let servers =
        "server {a}; server {b}; health_check interval=100ms fails=1 passes=1 uri=/health;";
    let locations = format!("location / {{ proxy_pass https://up; {} }}", verified(&ca));
    let proxy = Proxy::start(
        &conf(servers, &locations),
        &[("a", good.addr), ("b", forged.addr)],
    )
    .await;

    for (addr, want) in [(good.addr, CheckState::Up), (forged.addr, CheckState::Down)] {
        let peer = peer(&proxy, "up", addr);
        let what = format!("{addr} checked {want:?} over TLS");
        eventually(Duration::from_secs(5), &what, || {
            let peer = peer.clone();
            async move { peer.state.check_state() == want }
        })
        .await;
    }
    // The good server was probed through verified TLS (it speaks nothing else); the forged one
    // never got a request.
    let probes = good.seen();
    assert!(probes.iter().all(|s| s.uri == "/health"));
    assert!(!good.handshakes().is_empty());
    assert_eq!(forged.hits(), 0);
}

#[tokio::test]
async fn unreadable_certificate_files_are_config_errors_naming_the_file() {
    let text = "events {} http { server { listen 127.0.0.1:8080; location / { proxy_pass https://127.0.0.1:1; \
                proxy_ssl_verify on; proxy_ssl_trusted_certificate /nonexistent/ca.pem; } } }";
    let config = tether::config::load_str(
        std::path::Path::new("t.conf"),
        text,
        std::path::Path::new("."),
    )
    .expect("the file is only read when the snapshot is built");
    let registry = tether::peer::PeerRegistry::default();
    let errors = match tether::snapshot::Snapshot::build(&config, &registry, 1) {
        Ok(_) => panic!("a missing trusted certificate must fail the build"),
        Err(errors) => errors.to_string(),
    };
    assert!(errors.contains("/nonexistent/ca.pem"), "{errors}");
    assert!(errors.contains("proxy_ssl_trusted_certificate"), "{errors}");
    assert!(errors.contains("t.conf:1:"), "{errors}");
}

#[tokio::test]
async fn a_long_poll_to_an_https_upstream_is_held_past_its_silence() {
    let ca = TestCa::new();
    let a = tls_backend("a", &ca).await;
    // The poll stays silent for 1.5 s, longer than nothing but proxy_read_timeout allows.
    let text = conf(
        "server {a};",
        "location / { proxy_pass https://up; proxy_read_timeout 5s; }",
    );
    let proxy = Proxy::start(&text, &[("a", a.addr)]).await;
    let started = std::time::Instant::now();
    let reply = within(
        Duration::from_secs(10),
        "the long poll's answer",
        get(proxy.addr, "/hold?ms=1500"),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "answered after the hold"
    );
    assert!(!a.handshakes().is_empty(), "over TLS");
}
