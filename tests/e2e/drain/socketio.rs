//! The real `socket.io-client` through a drain, in front of two app servers running the real
//! `socket.io` package under node: six clients on server `a` over WebSockets, with the
//! client's own reconnection. `a` is drained with `drain_timeout 4s`: each client's WebSocket
//! is closed (the client sees "transport close"), spread over the 4 s, and each reconnects on
//! `b`, whose app acknowledges it. The spread of the reconnects is measured.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

use super::clients::{Drained, Report, assert_spread, drain_a};
use crate::harness::signalr_client::SignalrClient;
use crate::harness::{Proxy, within};

const CLIENTS: usize = 6;
const DRAIN: Duration = Duration::from_secs(4);

/// socket.io's path behind tether, pinned by a cookie, with `drain_timeout 4s`.
fn farm(servers: &str) -> String {
    format!(
        "events {{}} http {{ \
           map $http_upgrade $connection_upgrade {{ default upgrade; \"\" close; }} \
           upstream app {{ {servers} sticky cookie io; drain_timeout 4s; }} \
           server {{ listen {{listen}}; location /socket.io/ {{ proxy_pass http://app; \
             proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade; \
             proxy_http_version 1.1; }} }} }}"
    )
}

/// A socket.io app server named `name` under node, and where it listens (killed when dropped).
async fn app_server(client: &SignalrClient, name: &str) -> (Child, SocketAddr) {
    let mut server = client
        .script("socketio-server.cjs")
        .arg(name)
        // Held open: the server runs until it closes.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start node");
    let stdout = server.stdout.take().expect("piped");
    let line = within(
        Duration::from_secs(10),
        "the app server's port",
        BufReader::new(stdout).lines().next_line(),
    )
    .await
    .expect("read the app server's output")
    .expect("a line with its port");
    let port: serde_json::Value = serde_json::from_str(&line).expect("{\"port\":N}");
    let port = port["port"].as_u64().expect("a port") as u16;
    (server, SocketAddr::from(([127, 0, 0, 1], port)))
}

#[tokio::test]
async fn socketio_clients_of_a_drained_server_reconnect_elsewhere_spread_over_drain_timeout() {
    // The same `npm ci` in tests/js installs socket.io beside @microsoft/signalr.
    let Some(client) = SignalrClient::installed() else {
        return;
    };
    let (_a, a) = app_server(&client, "a").await;
    let (_b, b) = app_server(&client, "b").await;
    let backends = [("a", a), ("b", b)];
    let proxy = Proxy::start(&farm("server {a}; server {b} down;"), &backends).await;
    let mut command = client.script("socketio-drain.cjs");
    command.args([format!("http://{}", proxy.addr), CLIENTS.to_string()]);
    let mut report = Report::start(command);
    let Drained {
        closed,
        reconnected,
    } = drain_a(
        &mut report,
        CLIENTS,
        (&proxy, farm, &backends),
        |event| match event.event.as_str() {
            "closed" => {
                assert_eq!(event.line["reason"], "transport close", "{}", event.line);
            }
            _ => assert_eq!(event.line["server"], "b", "{}", event.line),
        },
    )
    .await;
    assert_eq!((closed.len(), reconnected.len()), (CLIENTS, CLIENTS));
    assert_spread("socket.io", reconnected.into_values().collect(), DRAIN);
}
