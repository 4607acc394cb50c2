//! ASP.NET Core SignalR behind tether over HTTPS: the nginx configuration from Microsoft's
//! hosting guide (`conf/signalr.conf`), with only `listen ... ssl` and the certificate lines
//! added, carries the real `@microsoft/signalr` client over each of its three transports to a
//! farm of two SignalR servers. `ip_hash` keeps negotiation and transport on one server; the
//! same config without it breaks the session, as it breaks a real SignalR farm.

use std::path::Path;
use std::time::Duration;

use crate::harness::Proxy;
use crate::harness::certs::{KeyKind, Leaf, TestCa};
use crate::harness::session::eventually;
use crate::harness::signalr::{HUB_PATH, HubServer, Transport};
use crate::harness::signalr_client::SignalrClient;

/// A client session: node's start-up, negotiation, the transport, the invocations, the stop.
const SESSION_LIMIT: Duration = Duration::from_secs(20);
const ECHOES: usize = 3;

/// `conf/signalr.conf` as an operator would turn it to HTTPS: `ssl` on its listen line and the
/// certificate beside it; the upstream servers become the test's (`{a}`, `{b}`) and the listen
/// address the proxy's. Each edit must find its line exactly once, so a change to the file
/// fails here instead of quietly testing something else.
fn guide_config_over_tls(leaf: &Leaf) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/signalr.conf");
    let guide = std::fs::read_to_string(&path).expect("read conf/signalr.conf");
    let tls = format!(
        "listen {{listen}} ssl;\n        ssl_certificate {};\n        ssl_certificate_key {};",
        leaf.cert.display(),
        leaf.key.display()
    );
    [
        ("listen 127.0.0.1:8080;", tls.as_str()),
        ("server 127.0.0.1:5000;", "server {a};"),
        ("server 127.0.0.1:5002;", "server {b};"),
    ]
    .iter()
    .fold(guide, |text, (line, edited)| {
        replace_once(&text, line, edited)
    })
}

fn replace_once(text: &str, line: &str, edited: &str) -> String {
    assert_eq!(
        text.matches(line).count(),
        1,
        "`{line}` once in conf/signalr.conf"
    );
    text.replacen(line, edited, 1)
}

/// The farm and tether in front, from `conf`; `None` when the client is not installed.
struct Farm {
    client: SignalrClient,
    ca: TestCa,
    servers: [HubServer; 2],
    proxy: Proxy,
}

impl Farm {
    async fn start(conf: impl Fn(&Leaf) -> String) -> Option<Farm> {
        let client = SignalrClient::installed()?;
        let ca = TestCa::new();
        // The client connects to an IP literal: node sends no SNI then, and the certificate
        // is checked against the address (the guide's one server is the default either way).
        let leaf = ca.leaf(&["127.0.0.1", "localhost"], KeyKind::EcdsaP256);
        let servers = [HubServer::start("a").await, HubServer::start("b").await];
        let backends = [("a", servers[0].addr), ("b", servers[1].addr)];
        let proxy = Proxy::start(&conf(&leaf), &backends).await;
        Some(Farm {
            client,
            ca,
            servers,
            proxy,
        })
    }

    fn hub_url(&self) -> String {
        format!("https://{}{HUB_PATH}", self.proxy.addr)
    }

    fn server(&self, name: &str) -> &HubServer {
        self.servers
            .iter()
            .find(|server| server.name == name)
            .unwrap_or_else(|| panic!("no server {name}"))
    }
}

/// One session over `transport` through the guide's config: every answer from one server,
/// which saw the negotiation, the forced transport and every invocation; the other server saw
/// nothing; and the session's end reached the server through the proxy.
async fn one_sticky_session(transport: Transport) {
    let Some(farm) = Farm::start(guide_config_over_tls).await else {
        return;
    };
    let session = farm
        .client
        .run(
            &farm.hub_url(),
            transport,
            ECHOES,
            &farm.ca.ca_file(),
            SESSION_LIMIT,
        )
        .await
        .unwrap_or_else(|failed| panic!("the {transport:?} session failed: {failed:?}"));

    let pinned = farm.server(&session.whoami);
    let expected: Vec<(String, String)> = (0..2 * ECHOES)
        .map(|i| (format!("m{i}"), pinned.name.to_string()))
        .collect();
    assert_eq!(
        session.echoes, expected,
        "every Echo answered by {}",
        pinned.name
    );
    assert_eq!(pinned.negotiations(), 1);
    for other in Transport::ALL {
        let count = if other == transport { 1 } else { 0 };
        assert_eq!(pinned.connections(other), count, "{other:?} connections");
    }
    assert_eq!(pinned.invocations(transport), 1 + 2 * ECHOES);
    assert!(pinned.pings() >= 1, "a ping went to the client");
    assert_eq!(pinned.unknown_tokens(), 0);
    let other = farm.servers.iter().find(|s| s.name != pinned.name).unwrap();
    assert_eq!(other.negotiations(), 0, "{} saw the session", other.name);
    assert!(Transport::ALL.iter().all(|&t| other.connections(t) == 0));
    assert_eq!(other.unknown_tokens(), 0);
    eventually(
        Duration::from_secs(5),
        "the session's end at the server",
        || {
            let open = pinned.open();
            async move { open == 0 }
        },
    )
    .await;
    farm.proxy.stop().await;
}

#[tokio::test]
async fn websockets_session_through_the_guides_config_over_tls() {
    one_sticky_session(Transport::WebSockets).await;
}

#[tokio::test]
async fn server_sent_events_session_through_the_guides_config_over_tls() {
    one_sticky_session(Transport::ServerSentEvents).await;
}

#[tokio::test]
async fn long_polling_session_through_the_guides_config_over_tls() {
    one_sticky_session(Transport::LongPolling).await;
}

/// What the guide's `ip_hash` is for: without it, the requests of one session are spread over
/// the farm, the transport lands on the server that did not negotiate, and it answers 404.
#[tokio::test]
async fn without_ip_hash_the_transport_misses_the_negotiating_server() {
    let without_stickiness =
        |leaf: &Leaf| replace_once(&guide_config_over_tls(leaf), "ip_hash;", "");
    let Some(farm) = Farm::start(without_stickiness).await else {
        return;
    };
    let outcome = farm
        .client
        .run(
            &farm.hub_url(),
            Transport::LongPolling,
            ECHOES,
            &farm.ca.ca_file(),
            SESSION_LIMIT,
        )
        .await;
    let failed = outcome.expect_err("a session without stickiness fails");
    // The long polling transport's first poll, sent to the other server, is refused.
    assert!(
        failed.stderr.contains("Unexpected response code: 404"),
        "{}: {}",
        failed.status,
        failed.stderr
    );
    let unknown: usize = farm.servers.iter().map(HubServer::unknown_tokens).sum();
    assert!(
        unknown >= 1,
        "a server was asked for a connection it never issued"
    );
    farm.proxy.stop().await;
}
