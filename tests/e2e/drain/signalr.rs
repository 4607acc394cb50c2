//! The real `@microsoft/signalr` client through a drain: six clients on hub server `a`, with
//! automatic reconnect, over WebSockets. `a` is drained with `drain_timeout 4s`: each client's
//! WebSocket is closed with 1012, spread over the 4 s, and each reconnects — negotiation and
//! WebSocket — on `b`, where it invokes again. No request fails on the way (no hub saw a
//! token it did not issue), and the spread of the reconnects is measured.

use std::time::Duration;

use super::clients::{Drained, Report, assert_spread, drain_a};
use crate::harness::Proxy;
use crate::harness::signalr::{HUB_PATH, HubServer, Transport};
use crate::harness::signalr_client::SignalrClient;

const CLIENTS: usize = 6;
const DRAIN: Duration = Duration::from_secs(4);

/// The hub behind tether, pinned by a cookie, with `drain_timeout 4s`; `SERVERS` are the lines.
fn farm(servers: &str) -> String {
    format!(
        "events {{}} http {{ \
           map $http_connection $connection_upgrade {{ \"~*Upgrade\" $http_connection; default keep-alive; }} \
           upstream signalr {{ {servers} sticky cookie srv; drain_timeout 4s; }} \
           server {{ listen {{listen}}; location {HUB_PATH} {{ proxy_pass http://signalr; \
             proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade; \
             proxy_http_version 1.1; proxy_buffering off; }} }} }}"
    )
}

#[tokio::test]
async fn signalr_clients_of_a_drained_server_reconnect_elsewhere_spread_over_drain_timeout() {
    let Some(client) = SignalrClient::installed() else {
        return;
    };
    let (a, b) = (HubServer::start("a").await, HubServer::start("b").await);
    let backends = [("a", a.addr), ("b", b.addr)];
    let proxy = Proxy::start(&farm("server {a}; server {b} down;"), &backends).await;
    let url = format!("http://{}{HUB_PATH}", proxy.addr);
    let mut command = client.script("signalr-drain.cjs");
    command.args([url.as_str(), &CLIENTS.to_string()]);
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
                let error = event.line["error"].as_str().unwrap_or_default();
                assert!(error.contains("1012"), "closed with 1012: {error}");
            }
            _ => {
                assert_eq!(event.line["server"], "b", "{}", event.line);
                assert_eq!(event.line["echo"], "b", "{}", event.line);
            }
        },
    )
    .await;
    assert_eq!((closed.len(), reconnected.len()), (CLIENTS, CLIENTS));
    assert_spread("SignalR", reconnected.into_values().collect(), DRAIN);
    // Nothing failed on the way: no request reached a hub that did not know its connection,
    // and every reconnect negotiated and opened its WebSocket on `b`.
    assert_eq!((a.unknown_tokens(), b.unknown_tokens()), (0, 0));
    assert_eq!(b.connections(Transport::WebSockets), CLIENTS);
    assert_eq!(a.connections(Transport::WebSockets), CLIENTS);
}
