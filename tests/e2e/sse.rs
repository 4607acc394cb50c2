//! Server-Sent Events through tether: each event reaches the client as soon as the upstream
//! writes it. The backend sends event i+1 only after the test has *received* event i, so a
//! proxy that buffered even one event would stall this test.

use std::time::{Duration, Instant};

use crate::harness::client::request;
use crate::harness::{Backend, Proxy, expect_events_one_by_one, within};

/// Backend "a" behind a proxy, and one SSE response from it on a connection of its own.
struct Stream {
    backend: Backend,
    _proxy: Proxy,
    response: hyper::Response<hyper::body::Incoming>,
    _sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
}

/// Starts backend "a" behind a proxy configured with `extra`, releases its first event and
/// GETs `path`.
async fn open_stream(extra: &str, path: &str) -> Stream {
    send_for_stream(extra, request("GET", path, "")).await
}

/// Starts backend "a" behind a proxy configured with `extra`, releases its first event and
/// sends `asking` on a connection of its own.
async fn send_for_stream(
    extra: &str,
    asking: hyper::Request<http_body_util::Full<bytes::Bytes>>,
) -> Stream {
    let backend = Backend::start("a").await;
    let proxy = Proxy::round_robin(&[backend.addr], extra).await;
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    backend.release_event();
    let response = sender.send_request(asking).await.unwrap();
    assert_eq!(response.status(), 200);
    Stream {
        backend,
        _proxy: proxy,
        response,
        _sender: sender,
    }
}

async fn events_arrive_one_by_one(extra: &str, path: &str) {
    // Every field bound: the proxy and the connection must outlive the reads below.
    let Stream {
        backend,
        _proxy,
        response,
        _sender,
    } = open_stream(extra, path).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    // nginx consumes X-Accel-* headers rather than passing them to the client.
    assert!(response.headers().get("x-accel-buffering").is_none());
    let mut body = response.into_body();
    expect_events_one_by_one(&mut body, &backend, 5).await;
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

/// A client that will close after the response (`Connection: close`) still gets each event at
/// once: only the end of a response may wait for the close to leave with its FIN. An event held
/// by the kernel for more (`MSG_MORE`) would not stall — its probe timer sends it after
/// 200 ms (TCP_RTO_MIN) — so the time from each release to its event is what is checked (the
/// five released after the first arrived): the median of five, well under that hold, whatever
/// one slow wake-up on a busy machine costs.
#[tokio::test]
async fn each_event_is_delivered_at_once_on_a_connection_that_closes_after_it() {
    use http_body_util::BodyExt;
    let mut closing = request("GET", "/sse?n=6", "");
    closing.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    // Every field bound: the proxy and the connection must outlive the reads below.
    let Stream {
        backend,
        _proxy,
        response,
        _sender,
    } = send_for_stream("", closing).await;
    assert_eq!(response.headers()["connection"], "close");
    let mut body = response.into_body();
    let mut pending = String::new();
    let mut delays = Vec::new();
    let mut released = None;
    for i in 0..6 {
        while !pending.contains("\n\n") {
            let frame = within(Duration::from_secs(5), "the next event", body.frame()).await;
            let frame = frame.expect("stream open").expect("frame");
            if let Some(data) = frame.data_ref() {
                pending.push_str(std::str::from_utf8(data).expect("UTF-8 events"));
            }
        }
        delays.extend(released.map(|at: Instant| at.elapsed()));
        let end = pending.find("\n\n").expect("a complete event") + 2;
        let event: String = pending.drain(..end).collect();
        assert_eq!(event, format!("data: a {i}\n\n"));
        released = Some(Instant::now());
        backend.release_event();
    }
    assert_eq!(delays.len(), 5);
    delays.sort();
    assert!(
        delays[2] < Duration::from_millis(100),
        "events were held: {delays:?}"
    );
}

/// `/sse?n=N` through a proxy with `proxy_read_timeout 1s`, its first event released.
async fn stream_under_a_1s_read_timeout(n: usize) -> Stream {
    let extra = "proxy_buffering off; proxy_read_timeout 1s;";
    open_stream(extra, &format!("/sse?n={n}")).await
}

/// The next frame's text, `None` at the end of the stream, or the stream's error.
async fn next_text(body: &mut hyper::body::Incoming) -> Result<Option<String>, hyper::Error> {
    use http_body_util::BodyExt;
    let frame = within(Duration::from_secs(5), "the next frame", body.frame()).await;
    let frame = frame.transpose()?;
    Ok(frame.map(|frame| String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()))
}

#[tokio::test]
async fn a_stream_silent_past_proxy_read_timeout_is_cut_about_then() {
    // tether's idle timer starts once it has passed the first event on: after `asked`, and
    // before that event reaches us (`silent`). The lower bound counts from the first, the upper
    // from the second, so neither depends on how promptly this test was scheduled.
    let asked = Instant::now();
    let stream = stream_under_a_1s_read_timeout(3).await;
    let mut body = stream.response.into_body();
    assert_eq!(
        next_text(&mut body).await.unwrap().unwrap(),
        "data: a 0\n\n"
    );
    // No more events are released: the upstream stays silent.
    let silent = Instant::now();
    let end = next_text(&mut body).await;
    let (at_most, at_least) = (asked.elapsed(), silent.elapsed());
    assert!(end.is_err(), "a cut stream must not look complete: {end:?}");
    assert!(
        at_most >= Duration::from_millis(900),
        "cut early, at most {at_most:?} after the first event"
    );
    assert!(
        at_least < Duration::from_secs(3),
        "cut late, at least {at_least:?} after the first event"
    );
}

#[tokio::test]
async fn a_stream_that_keeps_moving_outlives_its_read_timeout() {
    let stream = stream_under_a_1s_read_timeout(5).await;
    let mut body = stream.response.into_body();
    let started = Instant::now();
    for i in 0..5 {
        assert_eq!(
            next_text(&mut body).await.unwrap().unwrap(),
            format!("data: a {i}\n\n")
        );
        // Half the 1 s timeout between reads (the other half absorbs a slow test thread),
        // 2.5 s in all.
        tokio::time::sleep(Duration::from_millis(500)).await;
        stream.backend.release_event();
    }
    assert!(started.elapsed() > Duration::from_secs(2));
    while let Some(text) = next_text(&mut body).await.unwrap() {
        assert!(text.is_empty(), "nothing after the last event: {text:?}");
    }
}
