//! An event stream (`text/event-stream`) of a draining server is ended after a complete event:
//! told to close while the upstream is half-way through an event, tether passes the rest of
//! that event and ends the stream right after it — the client gets whole events only, and a
//! clean end its `EventSource` reconnects from.

use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::harness::client::request;
use crate::harness::session::{eventually, peer};
use crate::harness::{Backend, Proxy, within};

const LIMIT: Duration = Duration::from_secs(5);

/// A server answering one request with an event stream whose chunks the test sends through
/// the returned channel, one HTTP/1.1 chunk each.
async fn scripted_event_stream() -> (std::net::SocketAddr, mpsc::UnboundedSender<&'static str>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (chunks, mut next) = mpsc::unbounded_channel::<&'static str>();
    tokio::spawn(async move {
        let (mut stream, _): (TcpStream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if stream.read(&mut byte).await.unwrap() == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let answer = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                      Transfer-Encoding: chunked\r\n\r\n";
        stream.write_all(answer.as_bytes()).await.unwrap();
        while let Some(chunk) = next.recv().await {
            let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
            if stream.write_all(framed.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    (addr, chunks)
}

#[tokio::test]
async fn a_draining_server_s_event_stream_ends_after_the_event_in_flight() {
    let (a, chunks) = scripted_event_stream().await;
    let b = Backend::start("b").await;
    let backends = [("a", a), ("b", b.addr)];
    let conf = |servers: &str| {
        format!(
            "events {{}} http {{ upstream up {{ {servers} drain_timeout 1s; }} \
             server {{ listen {{listen}}; location / {{ proxy_pass http://up; }} }} }}"
        )
    };
    let proxy = Proxy::start(&conf("server {a}; server {b} down;"), &backends).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = within(
        LIMIT,
        "the stream's head",
        sender.send_request(request("GET", "/events", "")),
    )
    .await
    .unwrap();
    let mut body = response.into_body();
    let mut received = String::new();
    let mut read = async |received: &mut String| -> bool {
        match within(LIMIT, "the next frame or the end", body.frame()).await {
            Some(frame) => {
                let frame = frame.expect("a clean stream");
                received.push_str(std::str::from_utf8(frame.data_ref().unwrap()).unwrap());
                true
            }
            None => false,
        }
    };
    chunks.send("data: one\n\n").unwrap();
    chunks.send("data: tw").unwrap();
    while received != "data: one\n\ndata: tw" {
        assert!(read(&mut received).await, "ended early: {received:?}");
    }

    // Drained in the middle of the second event: its close comes (after half the timeout),
    // but the stream goes on until the event is complete.
    proxy
        .apply(&conf("server {a} drain; server {b};"), &backends)
        .await
        .unwrap();
    let drained = peer(&proxy, "up", a);
    eventually(LIMIT, "the drain to close the stream", || async {
        drained.drain_progress().is_some_and(|p| p.closed == 1)
    })
    .await;
    chunks.send("o\n\ndata: three\n\n").unwrap();
    while read(&mut received).await {}
    assert_eq!(received, "data: one\n\ndata: two\n\n", "whole events only");
}
