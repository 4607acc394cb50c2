//! Stopping an in-process tether with connections open: `stop()` closes connections and
//! tunnels at once; `shutdown(timeout)` refuses new connections, closes idle ones, lets
//! requests finish (cut at the timeout), then tells WebSockets 1001 Going Away.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::{LIMIT, only, refuses, until_held};
use crate::harness::client::Connection;
use crate::harness::load::{echo, try_get};
use crate::harness::session::{Ws, eventually, websocket};
use crate::harness::{Backend, Proxy, get, within};

/// Reads messages until the close frame and returns it (`None`: a close without a frame).
async fn close_frame(ws: &mut Ws) -> Option<CloseFrame> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(frame))) => return frame,
            Some(Ok(_)) => continue,
            Some(Err(error)) => panic!("the WebSocket failed before a close frame: {error}"),
            None => panic!("the WebSocket ended without a close frame"),
        }
    }
}

/// A proxy in front of backend `a`, with a WebSocket (echoing) and an idle keep-alive
/// connection (one request answered) open through it: what a stop has to deal with.
struct Open {
    a: Backend,
    proxy: Proxy,
    tether: std::sync::Arc<tether::runtime::Tether>,
    ws: Ws,
    idle: Connection,
}

async fn open() -> Open {
    let a = Backend::start("a").await;
    let proxy = Proxy::start(&only("a"), &[("a", a.addr)]).await;
    let tether = proxy.tether().clone();
    let (mut ws, _) = websocket(proxy.addr, "/ws", None).await;
    echo(&mut ws, "hello", LIMIT).await.unwrap();
    let mut idle = Connection::open(proxy.addr).await;
    assert_eq!(idle.get("/").await.status, 200);
    Open {
        a,
        proxy,
        tether,
        ws,
        idle,
    }
}

#[tokio::test]
async fn a_fast_stop_closes_connections_and_tunnels_at_once() {
    let Open {
        a,
        proxy,
        tether,
        mut ws,
        idle,
    } = open().await;
    let held = tokio::spawn(try_get(proxy.addr, "/hold?ms=5000"));
    until_held(&a, 1).await;
    assert_eq!(
        tether.open_connections(),
        2,
        "the idle one and the held one"
    );
    assert_eq!(tether.open_tunnels(), 1);

    let started = Instant::now();
    within(Duration::from_secs(1), "stop()", tether.stop()).await;
    assert!(refuses(proxy.addr).await, "no new connection after stop()");

    let cut = within(Duration::from_secs(1), "the held request to be cut", held)
        .await
        .unwrap();
    assert!(cut.is_err(), "a fast stop does not wait for it: {cut:?}");
    eventually(
        Duration::from_secs(1),
        "the idle keep-alive connection to close",
        || async { idle.is_closed() },
    )
    .await;
    // Read to the end: a close frame may come first (answering it lets tether finish the
    // close handshake at once instead of waiting out its grace), but no more echoes.
    within(Duration::from_secs(1), "the WebSocket to close", async {
        while let Some(Ok(message)) = ws.next().await {
            assert!(
                message.is_close(),
                "expected the WebSocket closed, got {message:?}"
            );
        }
    })
    .await;
    // The client hangs up once the server closed (RFC 6455 7.1.1); tether waits for that, up
    // to a short grace, to end the connection without a reset.
    drop(ws);
    let open = || (tether.open_connections(), tether.open_tunnels());
    let deadline = Instant::now() + Duration::from_secs(1);
    while open() != (0, 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        open(),
        (0, 0),
        "(connections, tunnels) still open 1 s after stop()"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "all at once, not after the 5 s hold ({:?})",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_graceful_stop_finishes_requests_then_says_going_away_to_websockets() {
    let Open {
        a,
        proxy,
        tether,
        mut ws,
        idle,
    } = open().await;
    let requested = Instant::now();
    let held = tokio::spawn(get(proxy.addr, "/hold?ms=1000"));
    until_held(&a, 1).await;
    // A client that connected and has not said a word yet.
    let silent = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    eventually(LIMIT, "the silent connection to be accepted", || async {
        tether.open_connections() == 3
    })
    .await;

    // The WebSocket's reader notes when its close frame arrives, then answers it (reading on
    // makes tungstenite send its own close) and reads to the end.
    let closed = tokio::spawn(async move {
        let frame = close_frame(&mut ws).await;
        let at = Instant::now();
        while let Some(Ok(_)) = ws.next().await {}
        (frame, at)
    });
    let shutdown = tokio::spawn({
        let tether = tether.clone();
        async move {
            tether.shutdown(Duration::from_secs(5)).await;
            Instant::now()
        }
    });

    // At once: new connections refused, the idle keep-alive and the silent connections
    // closed — while the held request is still running.
    eventually(
        Duration::from_millis(500),
        "new connections to be refused",
        || refuses(proxy.addr),
    )
    .await;
    eventually(
        Duration::from_millis(500),
        "the idle keep-alive connection to close",
        || async { idle.is_closed() },
    )
    .await;
    eventually(
        Duration::from_millis(500),
        "the silent connection to close",
        || async {
            let mut byte = [0u8; 1];
            match silent.try_read(&mut byte) {
                Ok(0) => true,
                Ok(_) => panic!("tether sent something to a silent client"),
                Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
            }
        },
    )
    .await;
    assert!(!held.is_finished(), "the held request is still running");

    let reply = within(LIMIT, "the held request", held).await.unwrap();
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (200, "a held")
    );

    // Then, and only then, the WebSocket is told the server is going away.
    let (frame, at) = within(LIMIT, "the WebSocket's close frame", closed)
        .await
        .unwrap();
    let frame = frame.expect("a close frame with a code");
    assert_eq!(frame.code, CloseCode::Away, "1001 Going Away: {frame:?}");
    assert!(
        at - requested >= Duration::from_millis(1000),
        "not before the held request was done ({:?})",
        at - requested
    );
    eventually(LIMIT, "open_tunnels() to reach 0", || async {
        tether.open_tunnels() == 0
    })
    .await;
    let stopped = within(LIMIT, "shutdown() to return", shutdown)
        .await
        .unwrap();
    let took = stopped - requested;
    assert!(
        took >= Duration::from_millis(1000),
        "it waited for the held request ({took:?})"
    );
    assert!(
        took < Duration::from_secs(4),
        "it did not sit out the 5 s timeout for an idle WebSocket ({took:?})"
    );
    assert_eq!(tether.open_connections(), 0);
}

#[tokio::test]
async fn a_graceful_stop_cuts_requests_at_the_shutdown_timeout() {
    let a = Backend::start("a").await;
    let proxy = Proxy::start(&only("a"), &[("a", a.addr)]).await;
    let tether = proxy.tether().clone();
    let held = tokio::spawn(try_get(proxy.addr, "/hold?ms=3000"));
    until_held(&a, 1).await;

    let started = Instant::now();
    within(
        Duration::from_secs(2),
        "shutdown() past its timeout",
        tether.shutdown(Duration::from_millis(500)),
    )
    .await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(500), "it waited ({took:?})");
    assert!(
        took < Duration::from_millis(1200),
        "about 500 ms ({took:?})"
    );
    let cut = within(Duration::from_secs(1), "the held request to be cut", held)
        .await
        .unwrap();
    assert!(cut.is_err(), "cut at the timeout, not answered: {cut:?}");
    assert_eq!(tether.open_connections(), 0);
}
