//! Server-Sent Events through tether: each event reaches the client as soon as the upstream
//! writes it. The backend sends event i+1 only after the test has *received* event i, so a
//! proxy that buffered even one event would stall this test.

use crate::harness::client::request;
use crate::harness::{Backend, Proxy, expect_events_one_by_one};

async fn events_arrive_one_by_one(extra: &str, path: &str) {
    let a = Backend::start("a").await;
    let proxy = Proxy::round_robin(&[a.addr], extra).await;
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    a.release_event();
    let response = sender.send_request(request("GET", path, "")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    // nginx consumes X-Accel-* headers rather than passing them to the client.
    assert!(response.headers().get("x-accel-buffering").is_none());
    let mut body = response.into_body();
    expect_events_one_by_one(&mut body, &a, 5).await;
}

#[tokio::test]
async fn each_event_is_delivered_at_once_with_proxy_buffering_off() {
    events_arrive_one_by_one("proxy_buffering off;", "/sse?n=5").await;
}

#[tokio::test]
async fn each_event_is_delivered_at_once_when_the_upstream_says_x_accel_buffering_no() {
    events_arrive_one_by_one("", "/sse?n=5&accel=no").await;
}

#[tokio::test]
async fn each_event_is_delivered_at_once_with_default_buffering() {
    // tether never buffers responses; `proxy_buffering on` (nginx's default) streams too.
    events_arrive_one_by_one("", "/sse?n=5").await;
}
