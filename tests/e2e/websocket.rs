//! WebSocket through tether: the upgrade is forwarded, the 101 relayed, then frames of every
//! size, pings and close codes pass intact — with and without the `map $http_upgrade` idiom.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, client_async_with_config};

use crate::harness::proxy::SIGNALR_IDIOM;
use crate::harness::{Backend, Proxy, within};

const PLAIN: &str = "events {} http { upstream backend { server {a}; } server { listen {listen}; location / { proxy_pass http://backend; } } }";

async fn connect(proxy: &Proxy) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let (ws, response) = client_async_with_config(
        proxy.url("/ws").replace("http", "ws"),
        MaybeTlsStream::Plain(stream),
        Some(config),
    )
    .await
    .expect("WebSocket handshake through tether");
    assert_eq!(response.status(), 101);
    ws
}

async fn echo_round_trips(conf: &str) {
    let a = Backend::start("a").await;
    let proxy = Proxy::start(conf, &[("a", a.addr)]).await;
    let mut ws = connect(&proxy).await;
    let seen = a.last();
    assert_eq!(seen.header("upgrade"), "websocket");
    assert!(
        seen.header("connection")
            .to_ascii_lowercase()
            .contains("upgrade")
    );

    let limit = Duration::from_secs(20);
    for size in [1usize, 125, 126, 65_535, 65_536, 1 << 20, 16 << 20] {
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        ws.send(Message::binary(payload.clone())).await.unwrap();
        let echoed = within(limit, "a binary echo", ws.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            echoed.into_data().as_ref(),
            payload.as_slice(),
            "{size} bytes"
        );
    }
    ws.send(Message::text("héllo")).await.unwrap();
    assert_eq!(
        within(limit, "a text echo", ws.next())
            .await
            .unwrap()
            .unwrap(),
        Message::text("héllo")
    );

    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = within(limit, "a pong", ws.next()).await.unwrap().unwrap();
    assert_eq!(pong, Message::Pong(b"are you there".to_vec().into()));

    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Library(4001),
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    let close = within(limit, "the close echo", ws.next())
        .await
        .unwrap()
        .unwrap();
    match close {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::Library(4001));
            assert_eq!(frame.reason, "bye");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn echo_with_the_signalr_map_idiom() {
    echo_round_trips(SIGNALR_IDIOM).await;
}

#[tokio::test]
async fn echo_without_any_upgrade_headers_configured() {
    echo_round_trips(PLAIN).await;
}

#[tokio::test]
async fn an_idle_tunnel_is_closed_after_proxy_read_timeout_but_an_active_one_is_not() {
    let a = Backend::start("a").await;
    let conf = "events {} http { upstream b { server {a}; } server { listen {listen}; location / { proxy_pass http://b; proxy_read_timeout 1s; } } }";
    let proxy = Proxy::start(conf, &[("a", a.addr)]).await;
    let mut active = connect(&proxy).await;
    // Keep talking every 300 ms for 2.4 s: well past the 1 s idle limit in total.
    for i in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        active.send(Message::text(format!("{i}"))).await.unwrap();
        let echo = within(Duration::from_secs(5), "an echo", active.next())
            .await
            .unwrap();
        assert_eq!(echo.unwrap(), Message::text(format!("{i}")));
    }
    // Silent: the tunnel is closed by tether once nothing moved for 1 s.
    let mut idle = connect(&proxy).await;
    let end = within(
        Duration::from_secs(5),
        "the idle tunnel to close",
        idle.next(),
    )
    .await;
    assert!(
        matches!(end, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "{end:?}"
    );
}

/// A client may send its first frame in the same segment as its upgrade request: hyper reads
/// it along with the head, and the tunnel must deliver it to the upstream first.
#[tokio::test]
async fn a_frame_sent_right_behind_the_upgrade_request_is_delivered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let a = Backend::start("a").await;
    let proxy = Proxy::start(PLAIN, &[("a", a.addr)]).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let mut opening = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    // A masked text frame "Hello" (RFC 6455 §5.7's example).
    opening.extend_from_slice(&[
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ]);
    stream.write_all(&opening).await.unwrap();

    let echo = [0x81, 0x05, b'H', b'e', b'l', b'l', b'o'];
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    within(Duration::from_secs(5), "the 101 and the echo", async {
        while !seen.ends_with(&echo) {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    assert!(seen.starts_with(b"HTTP/1.1 101"), "{seen:?}");
}
