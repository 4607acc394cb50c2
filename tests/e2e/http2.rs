//! HTTP/2 from the client (h2c, prior knowledge) through tether to HTTP/1.1 backends: requests
//! become HTTP/1.1 with the usual header rules, bodies stream both ways, streams of one
//! connection are served side by side, and server-sent events are not held back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::harness::{Backend, Proxy, expect_events_one_by_one, within};

type Body = BoxBody<Bytes, std::io::Error>;

/// An h2c connection to `addr`, spoken from the first byte (no upgrade dance).
async fn connect(addr: SocketAddr) -> SendRequest<Body> {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("h2 handshake with tether");
    tokio::spawn(connection);
    sender
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A request for `path` with `authority` as its `:authority`.
fn h2_request(method: &str, authority: &str, path: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(format!("http://{authority}{path}"))
        .body(body)
        .expect("valid request")
}

async fn send(sender: &mut SendRequest<Body>, request: Request<Body>) -> Response<Incoming> {
    sender.ready().await.expect("connection ready");
    within(
        Duration::from_secs(10),
        "an h2 response",
        sender.send_request(request),
    )
    .await
    .expect("an h2 response")
}

async fn text(response: Response<Incoming>) -> String {
    let body = within(
        Duration::from_secs(10),
        "the body",
        response.into_body().collect(),
    )
    .await
    .expect("the whole body")
    .to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn a_get_over_h2_reaches_the_backend_as_http_1_1_with_the_host_rules_applied() {
    let a = Backend::start("a").await;
    let proxy = Proxy::round_robin(
        &[a.addr],
        "proxy_set_header Host $host; proxy_set_header X-Client-Protocol $server_protocol;",
    )
    .await;
    let mut h2 = connect(proxy.addr).await;
    let response = send(
        &mut h2,
        h2_request("GET", "App.Example:8443", "/hello?x=1", empty()),
    )
    .await;
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-backend"], "a");
    assert_eq!(text(response).await, "a");
    let seen = a.last();
    assert_eq!(
        seen.version,
        Version::HTTP_11,
        "upstreams always get HTTP/1.1"
    );
    assert_eq!(seen.uri, "/hello?x=1");
    // $host comes from :authority when HTTP/2 sends no Host header: no port, lowercase.
    assert_eq!(seen.header("host").to_ascii_lowercase(), "app.example");
    assert_eq!(seen.header("x-client-protocol"), "HTTP/2.0");
    proxy.stop().await;

    // Without proxy_set_header, Host is $proxy_host, exactly as for an HTTP/1.1 client.
    let proxy = Proxy::round_robin(&[a.addr], "").await;
    let mut h2 = connect(proxy.addr).await;
    let response = send(&mut h2, h2_request("GET", "app.example", "/plain", empty())).await;
    assert_eq!(text(response).await, "a");
    let seen = a.last();
    assert_eq!(seen.header("host"), "up");
    assert_eq!(seen.version, Version::HTTP_11);
}

#[tokio::test]
async fn a_post_body_streams_through_before_the_client_has_finished_it() {
    let a = Backend::start("a").await;
    let proxy = Proxy::round_robin(&[a.addr], "client_max_body_size 0;").await;
    let mut h2 = connect(proxy.addr).await;
    let (chunks, receiver) = mpsc::channel::<Bytes>(4);
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let chunk = receiver.recv().await?;
        Some((Ok::<_, std::io::Error>(Frame::data(chunk)), receiver))
    });
    let request = h2_request(
        "POST",
        "localhost",
        "/upload",
        BodyExt::boxed(StreamBody::new(stream)),
    );
    let sending = tokio::spawn(async move { send(&mut h2, request).await });

    const CHUNK: usize = 64 << 10;
    const COUNT: usize = 64;
    let chunk = Bytes::from((0..CHUNK).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    chunks.send(chunk.clone()).await.unwrap();
    // The backend has the request while the body is still open on the client's side: tether
    // streams it rather than collecting it first.
    within(
        Duration::from_secs(5),
        "the request head at the backend",
        async {
            while a.hits() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        },
    )
    .await;
    assert!(!sending.is_finished());
    for _ in 1..COUNT {
        chunks.send(chunk.clone()).await.unwrap();
    }
    drop(chunks);
    let response = within(Duration::from_secs(10), "the upload answer", sending)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let chunk_sum: u64 = chunk.iter().map(|&b| b as u64).sum();
    assert_eq!(
        text(response).await,
        format!("bytes={} sum={}", CHUNK * COUNT, chunk_sum * COUNT as u64)
    );
    let seen = a.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.version, Version::HTTP_11);
}

#[tokio::test]
async fn concurrent_streams_on_one_connection_are_all_answered_side_by_side() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let proxy = Proxy::round_robin(&[a.addr, b.addr], "").await;
    let h2 = connect(proxy.addr).await;
    let started = Instant::now();
    let streams: Vec<_> = (0..20)
        .map(|i| {
            let mut h2 = h2.clone();
            tokio::spawn(async move {
                let response = send(
                    &mut h2,
                    h2_request("GET", "localhost", &format!("/hold?ms=500&i={i}"), empty()),
                )
                .await;
                (response.status(), text(response).await)
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for stream in streams {
        let (status, body) = within(Duration::from_secs(10), "a stream's answer", stream)
            .await
            .unwrap();
        assert_eq!(status, 200);
        bodies.push(body);
    }
    // Twenty 500 ms holds one after another would take 10 s.
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "the streams overlapped ({waited:?})"
    );
    bodies.sort();
    let mut expected = vec![format!("{} held", a.name); 10];
    expected.extend(vec![format!("{} held", b.name); 10]);
    assert_eq!(bodies, expected);
    let mut uris: Vec<String> = a
        .seen()
        .into_iter()
        .chain(b.seen())
        .map(|s| s.uri)
        .collect();
    uris.sort();
    let mut sent: Vec<String> = (0..20).map(|i| format!("/hold?ms=500&i={i}")).collect();
    sent.sort();
    assert_eq!(uris, sent, "every stream reached a backend exactly once");
}

#[tokio::test]
async fn server_sent_events_over_h2_arrive_one_by_one() {
    let a = Backend::start("a").await;
    let proxy = Proxy::round_robin(&[a.addr], "proxy_buffering off;").await;
    let mut h2 = connect(proxy.addr).await;
    a.release_event();
    let response = send(&mut h2, h2_request("GET", "localhost", "/sse?n=5", empty())).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    expect_events_one_by_one(&mut body, &a, 5).await;
}
