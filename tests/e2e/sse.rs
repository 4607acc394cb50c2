//! Server-Sent Events through tether: each event reaches the client as soon as the upstream
//! writes it. The backend sends event i+1 only after the test has *received* event i, so a
//! proxy that buffered even one event would stall this test.

use std::time::Duration;

use http_body_util::BodyExt;

use crate::harness::client::request;
use crate::harness::{Backend, Proxy, within};

async fn events_arrive_one_by_one(extra: &str) {
    let a = Backend::start("a").await;
    let proxy = Proxy::round_robin(&[a.addr], extra).await;
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    a.release_event();
    let response = sender
        .send_request(request("GET", "/sse?n=5", ""))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut pending = String::new();
    for i in 0..5 {
        // Read until event i is complete, then release the next one.
        while !pending.contains("\n\n") {
            let frame = within(Duration::from_secs(5), "the next SSE event", body.frame())
                .await
                .expect("stream open")
                .expect("frame");
            if let Some(data) = frame.data_ref() {
                pending.push_str(std::str::from_utf8(data).unwrap());
            }
        }
        let end = pending.find("\n\n").unwrap() + 2;
        let event: String = pending.drain(..end).collect();
        assert_eq!(event, format!("data: a {i}\n\n"));
        a.release_event();
    }
    let rest = within(
        Duration::from_secs(5),
        "the end of the stream",
        body.frame(),
    )
    .await;
    assert!(rest.is_none(), "nothing after the last event");
}

#[tokio::test]
async fn each_event_is_delivered_at_once_with_proxy_buffering_off() {
    events_arrive_one_by_one("proxy_buffering off;").await;
}

#[tokio::test]
async fn each_event_is_delivered_at_once_with_default_buffering() {
    // tether never buffers responses; `proxy_buffering on` (nginx's default) streams too.
    events_arrive_one_by_one("").await;
}
