//! WebSockets over HTTP/2 (RFC 8441) through tether: the setting is advertised, an extended
//! CONNECT reaches the upstream as an HTTP/1.1 upgrade and is answered `200`, frames cross
//! both ways, several on one connection go to different groups at once, sticky cookies pin
//! them as they pin HTTP/1.1 WebSockets, refusals pass through, a graceful stop says 1001, and
//! whatever else a CONNECT asks for is refused.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::harness::h2_websocket::{self, H2Ws, connect_request, open_stream, websocket};
use crate::harness::proxy::{SIGNALR_IDIOM, upstream_up};
use crate::harness::session::{cookie_value, eventually};
use crate::harness::{Backend, Proxy, within};

const LIMIT: Duration = Duration::from_secs(5);

/// Sends `message` and expects it back.
async fn echo(ws: &mut H2Ws, message: Message) {
    ws.send(message.clone()).await.expect("send a message");
    let back = within(LIMIT, "an echo", ws.next()).await;
    assert_eq!(back.expect("stream open").expect("a message"), message);
}

/// The closing handshake as a browser does it: a close frame, the answer, then the end of
/// the stream (END_STREAM) — after which the tunnel has nothing left to carry.
async fn close(ws: &mut H2Ws) {
    ws.send(Message::Close(None))
        .await
        .expect("send a close frame");
    let answer = within(LIMIT, "the close answer", ws.next()).await;
    assert!(matches!(answer, Some(Ok(Message::Close(_)))), "{answer:?}");
    ws.get_mut().shutdown().await.expect("end the stream");
}

/// The backends (of `backends`) that took a WebSocket handshake.
fn upgraded_on(backends: &[Backend]) -> Vec<&Backend> {
    backends
        .iter()
        .filter(|b| b.seen().iter().any(|s| s.uri.starts_with("/ws")))
        .collect()
}

#[tokio::test]
async fn the_setting_is_advertised_and_frames_cross_an_h2_stream_both_ways() {
    let a = Backend::start("a").await;
    let proxy = Proxy::start(SIGNALR_IDIOM, &[("a", a.addr)]).await;
    let client = h2_websocket::connect(proxy.addr).await;
    eventually(LIMIT, "SETTINGS_ENABLE_CONNECT_PROTOCOL", || {
        let client = client.clone();
        async move { client.is_extended_connect_protocol_enabled() }
    })
    .await;

    let offered = [("sec-websocket-protocol", "chat, superchat")];
    let (response, mut ws) = websocket(&client, proxy.addr, "/ws?room=1", &offered).await;
    // The client hears 200 with the subprotocol the upstream chose, and nothing of the
    // HTTP/1.1 handshake.
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    assert!(!response.headers().contains_key("sec-websocket-accept"));

    // The upstream saw an ordinary HTTP/1.1 upgrade, built by the config's own
    // `$http_upgrade` / `$connection_upgrade` lines.
    let seen = a.last();
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("GET", "/ws?room=1")
    );
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.header("upgrade"), "websocket");
    assert_eq!(seen.header("connection"), "upgrade");
    assert_eq!(seen.header("sec-websocket-version"), "13");
    assert_eq!(
        seen.header("sec-websocket-key").len(),
        24,
        "a fresh base64 key"
    );
    assert_eq!(seen.header("sec-websocket-protocol"), "chat, superchat");
    assert_eq!(seen.header("host"), proxy.addr.ip().to_string());

    for i in 0..4 {
        echo(&mut ws, Message::text(format!("héllo {i}"))).await;
        let payload: Vec<u8> = (0..(1usize << (4 * i))).map(|b| (b % 251) as u8).collect();
        echo(&mut ws, Message::binary(payload)).await;
    }
    // Larger than a stream's initial window: flow control moves it through.
    echo(&mut ws, Message::binary(vec![7u8; 3 << 20])).await;
    assert_eq!(proxy.tether().open_tunnels(), 1);

    close(&mut ws).await;
    eventually(LIMIT, "the tunnel to end", || async {
        proxy.tether().open_tunnels() == 0
    })
    .await;
}

#[tokio::test]
async fn two_streams_on_one_connection_reach_different_groups_at_once() {
    let backends = Backend::start_all(["a", "b"]).await;
    let conf = "events {} http { upstream ga { server {a}; } upstream gb { server {b}; } \
        server { listen {listen}; \
        location /a/ { proxy_pass http://ga/; } location /b/ { proxy_pass http://gb/; } } }";
    let names = [("a", backends[0].addr), ("b", backends[1].addr)];
    let proxy = Proxy::start(conf, &names).await;
    let client = h2_websocket::connect(proxy.addr).await;
    let (_, mut to_a) = websocket(&client, proxy.addr, "/a/ws", &[]).await;
    let (_, mut to_b) = websocket(&client, proxy.addr, "/b/ws", &[]).await;
    // Both open together, each counted on its own server.
    assert_eq!(proxy.tether().open_tunnels(), 2);
    let snapshot = proxy.snapshot();
    for group in ["ga", "gb"] {
        let members = snapshot.upstream(group).expect("group").members();
        assert_eq!(members[0].peer.state.active(), 1, "{group}");
    }
    for i in 0..3 {
        to_a.send(Message::text(format!("a{i}"))).await.unwrap();
        to_b.send(Message::text(format!("b{i}"))).await.unwrap();
        let from_b = within(LIMIT, "b's echo", to_b.next())
            .await
            .unwrap()
            .unwrap();
        let from_a = within(LIMIT, "a's echo", to_a.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (from_a, from_b),
            (
                Message::text(format!("a{i}")),
                Message::text(format!("b{i}"))
            )
        );
    }
    for backend in &backends {
        let seen: Vec<String> = backend.seen().into_iter().map(|s| s.uri).collect();
        assert_eq!(seen, ["/ws"], "{}", backend.name);
    }
    // Closing one leaves the other working.
    close(&mut to_a).await;
    eventually(LIMIT, "a's tunnel to end", || async {
        proxy.tether().open_tunnels() == 1
    })
    .await;
    echo(&mut to_b, Message::text("still here")).await;
}

#[tokio::test]
async fn a_sticky_cookie_pins_an_h2_websocket_as_it_pins_an_http_1_1_one() {
    let backends = Backend::start_all(["a", "b", "c"]).await;
    let names: Vec<(&str, SocketAddr)> = backends.iter().map(|b| (b.name, b.addr)).collect();
    let conf = upstream_up("server {a}; server {b}; server {c};", "sticky cookie srv;");
    let proxy = Proxy::start(&conf, &names).await;
    let client = h2_websocket::connect(proxy.addr).await;

    let (response, mut ws) = websocket(&client, proxy.addr, "/ws", &[]).await;
    let value = cookie_value(response.headers(), "srv").expect("the 200 carries Set-Cookie");
    echo(&mut ws, Message::text("first")).await;
    let pinned = upgraded_on(&backends);
    assert_eq!(pinned.len(), 1);
    let pinned = pinned[0].name;

    let cookie = format!("srv={value}");
    for i in 0..5 {
        let (response, mut ws) =
            websocket(&client, proxy.addr, "/ws", &[("cookie", &cookie)]).await;
        assert!(cookie_value(response.headers(), "srv").is_none());
        echo(&mut ws, Message::text(format!("{i}"))).await;
    }
    for backend in &backends {
        let upgrades = backend.seen().iter().filter(|s| s.uri == "/ws").count();
        let expected = if backend.name == pinned { 6 } else { 0 };
        assert_eq!(upgrades, expected, "upgrades on {}", backend.name);
    }
}

#[tokio::test]
async fn an_upstream_refusal_reaches_the_client_as_it_is() {
    let a = Backend::start("a").await;
    let proxy = Proxy::start(&upstream_up("server {a};", ""), &[("a", a.addr)]).await;
    let client = h2_websocket::connect(proxy.addr).await;
    let request = connect_request(proxy.addr, "/status?code=403", Some("websocket"), &[]);
    let (response, _) = open_stream(&client, request).await;
    assert_eq!(response.status(), 403);
    assert_eq!(response.headers()["x-backend"], "a");
    assert_eq!(a.last().header("upgrade"), "websocket");
    assert_eq!(proxy.tether().open_tunnels(), 0);
}

#[tokio::test]
async fn other_protocols_and_a_plain_connect_are_refused_with_405() {
    let a = Backend::start("a").await;
    let proxy = Proxy::start(&upstream_up("server {a};", ""), &[("a", a.addr)]).await;
    let client = h2_websocket::connect(proxy.addr).await;
    for protocol in [Some("webtransport"), None] {
        let request = connect_request(proxy.addr, "/ws", protocol, &[]);
        let (response, _) = open_stream(&client, request).await;
        assert_eq!(response.status(), 405, "{protocol:?}");
    }
    assert_eq!(a.hits(), 0, "nothing reached the upstream");
    // The connection is fine for a WebSocket after that.
    let (_, mut ws) = websocket(&client, proxy.addr, "/ws", &[]).await;
    echo(&mut ws, Message::text("ok")).await;
}

#[tokio::test]
async fn a_quiet_h2_websocket_outlives_keepalive_timeout() {
    let a = Backend::start("a").await;
    let conf = "events {} http { keepalive_timeout 1s; upstream up { server {a}; } \
        server { listen {listen}; location / { proxy_pass http://up; } } }";
    let proxy = Proxy::start(conf, &[("a", a.addr)]).await;
    let client = h2_websocket::connect(proxy.addr).await;
    let (_, mut ws) = websocket(&client, proxy.addr, "/ws", &[]).await;
    // Silence past keepalive_timeout and the grace after GOAWAY: the connection has a
    // stream open (the WebSocket), so it is not idle.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    echo(&mut ws, Message::text("still open")).await;
}

#[tokio::test]
async fn a_graceful_stop_says_going_away_to_an_h2_websocket_without_waiting_out_its_timeout() {
    let a = Backend::start("a").await;
    let proxy = Proxy::start(&upstream_up("server {a};", ""), &[("a", a.addr)]).await;
    let tether = proxy.tether().clone();
    let client = h2_websocket::connect(proxy.addr).await;
    let (_, mut ws) = websocket(&client, proxy.addr, "/ws", &[]).await;
    echo(&mut ws, Message::text("hello")).await;

    let started = Instant::now();
    let shutdown = tokio::spawn({
        let tether = tether.clone();
        async move { tether.shutdown(Duration::from_secs(5)).await }
    });
    let frame = within(LIMIT, "the close frame", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("the WebSocket ended without a close frame: {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(frame.expect("a close code").code, CloseCode::Away);
    // Answering it lets tether finish the close handshake.
    while let Some(Ok(_)) = within(LIMIT, "the end", ws.next()).await {}
    within(LIMIT, "shutdown() to return", shutdown)
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "an open WebSocket did not hold the stop for the 5 s timeout ({:?})",
        started.elapsed()
    );
    assert_eq!((tether.open_connections(), tether.open_tunnels()), (0, 0));
}

#[tokio::test]
async fn an_idle_h2_websocket_is_closed_after_proxy_read_timeout_and_the_connection_goes_on() {
    let a = Backend::start("a").await;
    let conf = "events {} http { upstream up { server {a}; } server { listen {listen}; \
        location / { proxy_pass http://up; proxy_read_timeout 1s; } } }";
    let proxy = Proxy::start(conf, &[("a", a.addr)]).await;
    let client = h2_websocket::connect(proxy.addr).await;
    let (_, mut idle) = websocket(&client, proxy.addr, "/ws", &[]).await;
    let end = within(LIMIT, "the idle tunnel to close", idle.next()).await;
    assert!(
        matches!(end, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "{end:?}"
    );
    eventually(LIMIT, "the tunnel to be gone", || async {
        proxy.tether().open_tunnels() == 0
    })
    .await;
    // Only that stream ended: the connection takes the next WebSocket.
    let (_, mut next) = websocket(&client, proxy.addr, "/ws", &[]).await;
    echo(&mut next, Message::text("next")).await;
}
