//! What a reload and a stop do to connections already open.
//!
//! A reload that removes the very server a client is using cuts nothing: its WebSocket keeps
//! echoing, its SSE stream keeps delivering, its long poll and its in-flight keep-alive
//! request complete there — and the next request on that keep-alive connection follows the
//! new config. A fast stop closes everything at once; a graceful one refuses new connections,
//! lets requests finish (up to the shutdown timeout), closes idle keep-alive connections, then
//! sends every WebSocket a close frame 1001 (Going Away). The same through the real binary,
//! driven by signals and `tether -s`.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::harness::client::{Connection, request};
use crate::harness::load::{echo, next_event, try_get};
use crate::harness::process::{TetherProcess, signal};
use crate::harness::session::{Ws, eventually, websocket};
use crate::harness::{Backend, Proxy, get, within};

const LIMIT: Duration = Duration::from_secs(5);

/// One upstream `up` of the single server `{NAME}`.
fn only(name: &str) -> String {
    format!(
        "events {{}} http {{ upstream up {{ server {{{name}}}; }} server {{ listen {{listen}}; location / {{ proxy_pass http://up; }} }} }}"
    )
}

/// How many `/hold` requests `backend` has received.
fn holds(backend: &Backend) -> usize {
    backend
        .seen()
        .iter()
        .filter(|seen| seen.uri.starts_with("/hold"))
        .count()
}

/// Waits until `backend` has received `count` `/hold` requests: they are in flight there.
async fn until_held(backend: &Backend, count: usize) {
    eventually(LIMIT, "the held requests to reach the backend", || async {
        holds(backend) >= count
    })
    .await;
}

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

/// True once `addr` refuses new connections.
async fn refuses(addr: std::net::SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_err()
}

#[tokio::test]
async fn a_reload_that_removes_their_server_cuts_nothing_in_flight() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let backends = [("a", a.addr), ("b", b.addr)];
    let proxy = Proxy::start(&only("a"), &backends).await;

    // A WebSocket, an SSE stream (one event in), a keep-alive connection with one request
    // done and a second held in flight, and a long poll: all on `a`.
    let (mut ws, upgrade) = websocket(proxy.addr, "/ws", None).await;
    assert_eq!(upgrade.headers()["x-backend"], "a");
    echo(&mut ws, "before the reload", LIMIT).await.unwrap();

    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sse_sender, sse_connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(sse_connection);
    a.release_event();
    let response = within(
        LIMIT,
        "the SSE response head",
        sse_sender.send_request(request("GET", "/sse?n=4", "")),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let mut events = response.into_body();
    let mut pending = String::new();
    assert_eq!(next_event(&mut events, &mut pending).await, "data: a 0\n\n");

    let mut keep_alive = Connection::open(proxy.addr).await;
    assert_eq!(keep_alive.get("/").await.body, "a");
    let in_flight = tokio::spawn(async move {
        let reply = keep_alive.get("/hold?ms=1000").await;
        (keep_alive, reply)
    });
    let long_poll = tokio::spawn(get(proxy.addr, "/hold?ms=1500"));
    until_held(&a, 2).await;
    let hits_on_a = a.hits();

    let applied = proxy
        .apply(&only("b"), &backends)
        .await
        .expect("the reload applies");
    assert_eq!(applied.new.generation, applied.old.generation + 1);
    assert!(
        !in_flight.is_finished() && !long_poll.is_finished(),
        "the reload happened while both held requests were in flight"
    );

    // New requests and new WebSockets go to the new server.
    for _ in 0..5 {
        let reply = get(proxy.addr, "/").await;
        assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "b"));
    }
    let (mut ws_b, upgrade) = websocket(proxy.addr, "/ws", None).await;
    assert_eq!(upgrade.headers()["x-backend"], "b");
    echo(&mut ws_b, "on b", LIMIT).await.unwrap();

    // What was open on `a` carries on there.
    for i in 0..3 {
        echo(&mut ws, &format!("after the reload {i}"), LIMIT)
            .await
            .expect("the WebSocket on the removed server still echoes");
    }
    for i in 1..4 {
        a.release_event();
        assert_eq!(
            next_event(&mut events, &mut pending).await,
            format!("data: a {i}\n\n"),
            "the SSE stream on the removed server keeps delivering"
        );
    }
    use http_body_util::BodyExt;
    while let Some(frame) = within(LIMIT, "the end of the SSE stream", events.frame()).await {
        let frame = frame.expect("the SSE stream ends cleanly");
        assert!(frame.data_ref().is_none_or(|d| d.is_empty()), "{frame:?}");
    }

    let reply = within(LIMIT, "the long poll", long_poll).await.unwrap();
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (200, "a held")
    );

    let (mut keep_alive, reply) = within(LIMIT, "the in-flight keep-alive request", in_flight)
        .await
        .unwrap();
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (200, "a held")
    );
    assert!(
        !keep_alive.is_closed(),
        "the keep-alive connection stays open"
    );
    let next = keep_alive.get("/").await;
    assert_eq!(
        (next.status.as_u16(), next.body.as_str()),
        (200, "b"),
        "the next request on the same keep-alive connection follows the new config"
    );

    assert_eq!(
        a.hits(),
        hits_on_a,
        "the removed server got no new request after the reload"
    );
    echo(&mut ws, "at the end", LIMIT).await.unwrap();
    proxy.stop().await;
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

// ---------------------------------------------------------------------------------------------
// The real binary.

/// `tether.conf` with one upstream server and `shutdown`: a main-context directive.
fn binary_conf(a: &Backend, shutdown: &str) -> String {
    format!(
        "{shutdown}\nevents {{}}\nhttp {{\n  upstream up {{ server {}; }}\n  server {{ listen {{listen}}; location / {{ proxy_pass http://up; }} }}\n}}\n",
        a.addr
    )
}

#[tokio::test]
async fn the_binary_stops_gracefully_on_s_quit_and_removes_its_pid_file() {
    let a = Backend::start("a").await;
    let mut tether = TetherProcess::start(&binary_conf(&a, "shutdown_timeout 3s;")).await;
    let pid: u32 = std::fs::read_to_string(tether.pid_file())
        .expect("the pid file beside the config")
        .trim()
        .parse()
        .expect("a pid");
    assert_eq!(pid, tether.process.pid());

    let held = tokio::spawn(try_get(tether.addr, "/hold?ms=1500"));
    until_held(&a, 1).await;
    tether.send("quit");
    eventually(
        Duration::from_secs(1),
        "new connections to be refused",
        || refuses(tether.addr),
    )
    .await;
    assert!(!held.is_finished(), "the held request is still running");

    let reply = within(LIMIT, "the held request", held)
        .await
        .unwrap()
        .expect("the held request completes");
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (200, "a held")
    );
    tether
        .process
        .exits_cleanly_within(Duration::from_secs(3))
        .await;
    assert!(!tether.pid_file().exists(), "the pid file is removed");
}

#[tokio::test]
async fn the_binary_cuts_requests_at_worker_shutdown_timeout_on_sigquit() {
    let a = Backend::start("a").await;
    // nginx's name for the directive is accepted too.
    let mut tether = TetherProcess::start(&binary_conf(&a, "worker_shutdown_timeout 1s;")).await;
    let held = tokio::spawn(try_get(tether.addr, "/hold?ms=10000"));
    until_held(&a, 1).await;
    let started = Instant::now();
    signal(tether.process.pid(), libc::SIGQUIT);
    tether
        .process
        .exits_cleanly_within(Duration::from_secs(4))
        .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "it waited the timeout ({took:?})"
    );
    assert!(
        took < Duration::from_secs(3),
        "not the whole hold ({took:?})"
    );
    let cut = within(Duration::from_secs(1), "the held request", held)
        .await
        .unwrap();
    assert!(cut.is_err(), "cut at the timeout: {cut:?}");
    assert!(!tether.pid_file().exists(), "the pid file is removed");
}

/// Starts the binary with a request held for 10 s, stops it with `how`, and expects it gone
/// within a second, the request cut and the pid file removed.
async fn stops_promptly(how: impl FnOnce(&TetherProcess)) {
    let a = Backend::start("a").await;
    let mut tether = TetherProcess::start(&binary_conf(&a, "shutdown_timeout 3s;")).await;
    let held = tokio::spawn(try_get(tether.addr, "/hold?ms=10000"));
    until_held(&a, 1).await;
    let started = Instant::now();
    how(&tether);
    tether
        .process
        .exits_cleanly_within(Duration::from_secs(1))
        .await;
    let cut = within(Duration::from_secs(1), "the held request", held)
        .await
        .unwrap();
    assert!(cut.is_err(), "a fast stop cuts it: {cut:?}");
    assert!(!tether.pid_file().exists(), "the pid file is removed");
    eprintln!("stopped in {:?}", started.elapsed());
}

#[tokio::test]
async fn the_binary_stops_at_once_on_s_stop() {
    stops_promptly(|tether| tether.send("stop")).await;
}

#[tokio::test]
async fn the_binary_stops_at_once_on_sigterm() {
    stops_promptly(|tether| signal(tether.process.pid(), libc::SIGTERM)).await;
}

#[tokio::test]
async fn a_reload_signal_sent_as_soon_as_the_pid_file_exists_does_not_kill_the_binary() {
    // What `ExecReload=kill -HUP $MAINPID` or a deploy script does right after a start: the
    // pid file says tether is there, so its signals must be handled by then, as nginx's are.
    let a = Backend::start("a").await;
    let mut tether = TetherProcess::spawn(&binary_conf(&a, ""));
    // Watched closely (no pause between looks, bounded): a signal sent milliseconds late
    // would miss the window this is about.
    let pid_file = tether.pid_file();
    let deadline = Instant::now() + LIMIT;
    while !std::fs::read_to_string(&pid_file).is_ok_and(|t| !t.trim().is_empty()) {
        assert!(Instant::now() < deadline, "no pid file after {LIMIT:?}");
        std::thread::yield_now();
    }
    signal(tether.process.pid(), libc::SIGHUP);
    let reply = within(LIMIT, "an answer after the SIGHUP", async {
        loop {
            if let Some(status) = tether.process.exit_within(Duration::ZERO).await {
                panic!("tether died of the SIGHUP ({status})");
            }
            if let Ok(reply) = try_get(tether.addr, "/").await {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "a"));
    assert!(
        tether.process.exit_within(Duration::ZERO).await.is_none(),
        "still running"
    );
}
