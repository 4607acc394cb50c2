//! The demo app servers over real loopback sockets: every transport, stop and restart, and
//! the control endpoints. Ports are always `:0`; waits are on events, never on the clock.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    time::{Instant, timeout},
};
use tokio_tungstenite::{WebSocketStream, client_async, tungstenite::Message};

use super::{DEMO_APPS, Farm, demo_apps, serve};

/// Upper bound on any single wait, so a broken test fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(10);

/// A lone app server named `name` on a fresh port; it stops when the sender is dropped.
async fn lone_app(name: &str) -> (SocketAddr, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(serve(listener, Arc::from(name), stopped));
    (addr, stop)
}

/// A farm of `names`, each on a fresh port.
async fn farm(names: &[&str]) -> (Farm, Vec<SocketAddr>) {
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let apps = names.iter().map(|n| (n.to_string(), any_port)).collect();
    let farm = Farm::start(apps).await.unwrap();
    let addrs = farm.status().await.iter().map(|s| s.1).collect();
    (farm, addrs)
}

/// Sends one request on a new connection and returns the response head, body unread.
async fn send(addr: SocketAddr, method: Method, path: &str) -> Response<Incoming> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    timeout(PATIENCE, sender.send_request(request))
        .await
        .unwrap()
        .unwrap()
}

/// Sends one request and reads the whole answer.
async fn fetch(addr: SocketAddr, method: Method, path: &str) -> (StatusCode, HeaderMap, String) {
    let (head, body) = send(addr, method, path).await.into_parts();
    let body = timeout(PATIENCE, body.collect()).await.unwrap().unwrap();
    let body = String::from_utf8(body.to_bytes().to_vec()).unwrap();
    (head.status, head.headers, body)
}

async fn websocket(addr: SocketAddr) -> WebSocketStream<TcpStream> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (ws, response) = client_async(format!("ws://{addr}/ws"), stream)
        .await
        .unwrap();
    assert_eq!(response.headers()["x-app-server"], "a");
    ws
}

async fn next_message(ws: &mut WebSocketStream<TcpStream>) -> Message {
    timeout(PATIENCE, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

#[test]
fn demo_apps_parse() {
    let apps = demo_apps();
    assert_eq!(apps.len(), DEMO_APPS.len());
    assert_eq!(apps[0], ("a".to_owned(), "127.0.0.1:9101".parse().unwrap()));
}

#[tokio::test]
async fn whoami_answers_the_name() {
    let (addr, _stop) = lone_app("a").await;
    let (status, headers, body) = fetch(addr, Method::GET, "/whoami").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "a\n");
    assert_eq!(headers["x-app-server"], "a");
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
}

#[tokio::test]
async fn page_and_errors() {
    let (addr, _stop) = lone_app("a").await;
    for path in ["/", "/index.html"] {
        let (status, headers, body) = fetch(addr, Method::GET, path).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(body.contains("<title>tether demo farm</title>"));
    }
    let (status, headers, _) = fetch(addr, Method::GET, "/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["x-app-server"], "a");
    let (status, headers, _) = fetch(addr, Method::GET, "/demo/stop?app=a").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[header::ALLOW], "POST");
    // A lone server has no farm to control.
    let (status, _, _) = fetch(addr, Method::GET, "/demo/status").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // A plain GET on the WebSocket path is not an upgrade.
    let (status, _, _) = fetch(addr, Method::GET, "/ws").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn websocket_greets_then_echoes() {
    let (addr, _stop) = lone_app("a").await;
    let mut ws = websocket(addr).await;
    assert_eq!(next_message(&mut ws).await, Message::text("hello from a"));

    ws.send(Message::text("hi there")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::text("hi there"));

    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::binary(big));

    // A clean close: the server answers our Close frame, then the stream ends.
    ws.close(None).await.unwrap();
    loop {
        match timeout(PATIENCE, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(_))) => {}
            None => break,
            other => panic!("expected the close handshake, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn sse_delivers_separate_ticks() {
    let (addr, _stop) = lone_app("a").await;
    let response = send(addr, Method::GET, "/sse").await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");

    let mut body = response.into_body();
    let mut seen = String::new();
    while seen.matches("\n\n").count() < 2 {
        let frame = timeout(PATIENCE, body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    let events: Vec<&str> = seen.split_terminator("\n\n").collect();
    assert_eq!(events[..2], ["data: a tick 1", "data: a tick 2"]);
}

#[tokio::test]
async fn long_poll_is_held_for_its_wait() {
    let (addr, _stop) = lone_app("a").await;
    let started = Instant::now();
    let (status, _, body) = fetch(addr, Method::GET, "/poll?wait=200").await;
    let held = started.elapsed();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "a poll\n");
    assert!(
        held >= Duration::from_millis(200),
        "answered after {held:?}"
    );
    assert!(held < Duration::from_secs(5), "answered after {held:?}");
}

#[tokio::test]
async fn stop_kills_the_server_and_start_again_revives_it() {
    let (farm, addrs) = farm(&["a", "b"]).await;
    let a = addrs[0];
    let mut ws = websocket(a).await;
    assert_eq!(next_message(&mut ws).await, Message::text("hello from a"));
    // A long poll on a connection the server has surely accepted: it answered /whoami first.
    let (accepted, is_accepted) = tokio::sync::oneshot::channel();
    let poll = tokio::spawn(async move {
        let stream = TcpStream::connect(a).await.unwrap();
        let io = TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let get = |path: &str| Request::get(path).body(Empty::<Bytes>::new()).unwrap();
        let whoami = sender.send_request(get("/whoami")).await.unwrap();
        whoami.into_body().collect().await.unwrap();
        accepted.send(()).unwrap();
        match sender.send_request(get("/poll?wait=60000")).await {
            Ok(response) => response.into_body().collect().await.map(|_| ()),
            Err(error) => Err(error),
        }
    });
    is_accepted.await.unwrap();

    farm.stop("a").await.unwrap();
    assert!(TcpStream::connect(a).await.is_err(), "a still accepts");
    // The open WebSocket is cut without a close frame, as a crashed server would.
    match timeout(PATIENCE, ws.next()).await.unwrap() {
        None | Some(Err(_)) => {}
        Some(other) => panic!("expected the socket to die, got {other:?}"),
    }
    // The held long poll is dropped, not answered.
    let polled = timeout(PATIENCE, poll).await.unwrap().unwrap();
    assert!(polled.is_err(), "a stopped server answered a long poll");
    let status = farm.status().await;
    assert_eq!((status[0].2, status[1].2), (false, true));
    farm.stop("a").await.unwrap(); // already stopped: nothing to do

    farm.start_again("a").await.unwrap();
    assert_eq!(farm.status().await[0].1, a);
    let (_, _, body) = fetch(a, Method::GET, "/whoami").await;
    assert_eq!(body, "a\n");
    assert_eq!(
        farm.stop("zz").await.unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
}

#[tokio::test]
async fn sse_stream_dies_with_its_server() {
    let (farm, addrs) = farm(&["a"]).await;
    let mut body = send(addrs[0], Method::GET, "/sse").await.into_body();
    let first = timeout(PATIENCE, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.is_data());
    farm.stop("a").await.unwrap();
    loop {
        match timeout(PATIENCE, body.frame()).await.unwrap() {
            Some(Ok(_)) => {} // a tick already on its way
            Some(Err(_)) => break,
            None => panic!("the stream ended cleanly; a stopped server should cut it"),
        }
    }
}

#[tokio::test]
async fn control_endpoints_act_on_the_whole_farm() {
    let (_farm, addrs) = farm(&["a", "b"]).await;
    let (a, b) = (addrs[0], addrs[1]);
    let expect = |a_running: bool, b_running: bool| {
        format!(
            r#"[{{"name":"a","addr":"{a}","running":{a_running}}},{{"name":"b","addr":"{b}","running":{b_running}}}]"#
        )
    };

    let (status, headers, body) = fetch(b, Method::GET, "/demo/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(body, expect(true, true));

    // b stops a: the answer already shows it.
    let (status, _, body) = fetch(b, Method::POST, "/demo/stop?app=a").await;
    assert_eq!((status, body), (StatusCode::OK, expect(false, true)));
    assert!(TcpStream::connect(a).await.is_err(), "a still accepts");

    // The last running server refuses to stop, or nobody could start the others.
    let (status, _, _) = fetch(b, Method::POST, "/demo/stop?app=b").await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, _, body) = fetch(b, Method::POST, "/demo/start?app=a").await;
    assert_eq!((status, body), (StatusCode::OK, expect(true, true)));
    let (_, _, body) = fetch(a, Method::GET, "/whoami").await;
    assert_eq!(body, "a\n");

    // A server stopping itself still answers the request that stopped it.
    let (status, _, body) = fetch(a, Method::POST, "/demo/stop?app=a").await;
    assert_eq!((status, body), (StatusCode::OK, expect(false, true)));
    assert!(TcpStream::connect(a).await.is_err(), "a still accepts");

    let (status, _, _) = fetch(b, Method::POST, "/demo/stop?app=zz").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = fetch(b, Method::POST, "/demo/start").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn farm_rejects_a_repeated_name() {
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let apps = vec![("a".to_owned(), any_port), ("a".to_owned(), any_port)];
    let error = Farm::start(apps).await.err().unwrap();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn dropping_the_farm_stops_its_servers() {
    let (farm, addrs) = farm(&["a"]).await;
    let mut ws = websocket(addrs[0]).await;
    assert_eq!(next_message(&mut ws).await, Message::text("hello from a"));
    drop(farm);
    match timeout(PATIENCE, ws.next()).await.unwrap() {
        None | Some(Err(_)) => {}
        Some(other) => panic!("expected the socket to die, got {other:?}"),
    }
}
