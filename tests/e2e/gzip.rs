//! `gzip on` through tether over real sockets: which responses are compressed and how their
//! heads change, that a compressed stream still delivers each event at once, HTTP/2 clients,
//! a WebSocket beside `gzip_types *`, and a large body streamed through the compressor. The
//! same cases next to real nginx are in `gzip/nginx.rs`.

mod nginx;
mod pages;

use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::harness::{Backend, Proxy, raw, within};
use pages::{Headers, fetch, page_text};

const GZIP: (&str, &str) = ("accept-encoding", "gzip, deflate, br");

/// tether in front of `{b}` with the server-level `settings` and `location / { proxy_pass }`.
fn conf(settings: &str) -> String {
    format!(
        "events {{}} http {{ upstream u {{ server {{b}}; }} server {{ listen {{listen}}; {settings}
           location / {{ proxy_pass http://u; }}
           location /said {{ return 200 \"a text tether says itself, long enough to be worth it\"; }} }} }}"
    )
}

async fn proxy(settings: &str) -> Proxy {
    let pages = pages::start().await;
    Proxy::start(&conf(settings), &[("b", pages)]).await
}

#[tokio::test]
async fn html_is_compressed_for_a_client_that_takes_gzip_and_the_head_says_so() {
    let proxy = proxy("gzip on; gzip_vary on;").await;
    let got = fetch(proxy.addr, "GET", "/page", &[GZIP]).await;
    assert_eq!(got.status, 200);
    assert!(got.gzipped(), "{:?}", got.headers);
    assert_eq!(got.decoded, page_text().as_bytes());
    assert!(got.raw.len() < 500, "compressed to {} bytes", got.raw.len());
    // The length is the compressed one's, unknown up front: chunked.
    assert!(got.headers.get("content-length").is_none());
    assert_eq!(got.header("transfer-encoding"), "chunked");
    assert_eq!(got.header("vary"), "Accept-Encoding");
    assert_eq!(got.header("etag"), "W/\"v1\"");
    assert!(got.headers.get("accept-ranges").is_none());

    // A client that does not take gzip gets the page as it is, and the Vary that tells caches.
    let plain = fetch(proxy.addr, "GET", "/page", &[]).await;
    assert!(!plain.gzipped());
    assert_eq!(plain.raw, page_text().as_bytes());
    assert_eq!(plain.header("content-length"), "1998");
    assert_eq!(plain.header("vary"), "Accept-Encoding");
    assert_eq!(plain.header("etag"), "\"v1\"");
}

#[tokio::test]
async fn what_is_never_compressed() {
    let proxy = proxy("gzip on; gzip_types *;").await;
    let cases: [(&str, &str, Headers, &str); 7] = [
        (
            "GET",
            "/page",
            &[("accept-encoding", "gzip;q=0")],
            "refused by q=0",
        ),
        (
            "GET",
            "/page",
            &[("accept-encoding", "deflate, br")],
            "no gzip offered",
        ),
        ("GET", "/tiny", &[GZIP], "shorter than gzip_min_length"),
        ("GET", "/encoded", &[GZIP], "already encoded"),
        ("GET", "/range", &[GZIP], "a range (206)"),
        ("GET", "/broken", &[GZIP], "a 500"),
        (
            "GET",
            "/page",
            &[GZIP, ("via", "1.1 cdn")],
            "proxied, gzip_proxied off",
        ),
    ];
    for (method, path, headers, why) in cases {
        let got = fetch(proxy.addr, method, path, headers).await;
        assert!(
            got.headers.get("transfer-encoding").is_none(),
            "{why}: {:?}",
            got.headers
        );
        if path != "/encoded" {
            assert!(!got.gzipped(), "{why}: {:?}", got.headers);
        }
    }
    // The upstream's own encoding passes through byte for byte.
    let encoded = fetch(proxy.addr, "GET", "/encoded", &[GZIP]).await;
    assert_eq!(encoded.raw, pages::gzipped(page_text().as_bytes()));
    // A HEAD gets the head a GET would get (as nginx), and no body.
    let head = fetch(proxy.addr, "HEAD", "/page", &[GZIP]).await;
    assert!(head.gzipped() && head.raw.is_empty());
    assert!(head.headers.get("content-length").is_none());
}

#[tokio::test]
async fn settings_choose_types_levels_proxied_clients_and_tether_s_own_answers() {
    let settings = "gzip on; gzip_types application/json text/plain; gzip_comp_level 9;
        gzip_proxied expired; gzip_disable msie6 \"^Lynx\"; gzip_min_length 100;";
    let proxy = proxy(settings).await;
    let json = fetch(proxy.addr, "GET", "/json", &[GZIP]).await;
    assert!(json.gzipped());
    assert!(
        String::from_utf8(json.decoded)
            .unwrap()
            .starts_with("{\"text\": \"json")
    );
    assert!(!fetch(proxy.addr, "GET", "/png", &[GZIP]).await.gzipped());
    assert!(
        fetch(proxy.addr, "GET", "/missing", &[GZIP])
            .await
            .gzipped()
    );
    let streamed = fetch(proxy.addr, "GET", "/stream", &[GZIP]).await;
    assert!(streamed.gzipped());
    assert_eq!(streamed.decoded, page_text().as_bytes());
    let via = ("via", "1.1 cdn");
    assert!(
        fetch(proxy.addr, "GET", "/expired", &[GZIP, via])
            .await
            .gzipped()
    );
    assert!(
        !fetch(proxy.addr, "GET", "/cached", &[GZIP, via])
            .await
            .gzipped()
    );
    let msie = (
        "user-agent",
        "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)",
    );
    assert!(
        !fetch(proxy.addr, "GET", "/page", &[GZIP, msie])
            .await
            .gzipped()
    );
    let lynx = ("user-agent", "lynx/2.9");
    assert!(
        !fetch(proxy.addr, "GET", "/page", &[GZIP, lynx])
            .await
            .gzipped()
    );
    // tether's own answers are compressed as nginx's are: `return` text and error pages.
    let said = fetch(proxy.addr, "GET", "/said", &[GZIP]).await;
    assert!(!said.gzipped(), "54 bytes, under gzip_min_length 100");
    let small = proxy_with_min_length(20).await;
    let said = fetch(small.addr, "GET", "/said", &[GZIP]).await;
    assert!(said.gzipped());
    assert_eq!(
        said.decoded,
        b"a text tether says itself, long enough to be worth it"
    );
}

async fn proxy_with_min_length(length: u32) -> Proxy {
    proxy(&format!(
        "gzip on; gzip_types text/plain; gzip_min_length {length};"
    ))
    .await
}

#[tokio::test]
async fn a_compressed_event_stream_delivers_each_event_at_once() {
    // The backend sends event i+1 only after this test has decoded event i.
    let backend = Backend::start("a").await;
    let extra = "gzip on; gzip_types text/event-stream;";
    let proxy = Proxy::round_robin(&[backend.addr], extra).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    backend.release_event();
    let request = http::Request::get("/sse?n=3")
        .header("host", "localhost")
        .header("accept-encoding", "gzip")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let mut body = response.into_body();
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    let limit = Duration::from_secs(5);
    for i in 0..3 {
        let event = format!("data: a {i}\n\n");
        while !String::from_utf8_lossy(decoder.get_ref()).contains(&event) {
            let frame = within(limit, "the next compressed event", body.frame())
                .await
                .expect("the stream stays open until the last event")
                .expect("a frame");
            if let Some(data) = frame.data_ref() {
                decoder.write_all(data).unwrap();
                decoder.flush().unwrap();
            }
        }
        backend.release_event();
    }
    while let Some(frame) = within(limit, "the end of the stream", body.frame()).await {
        decoder
            .write_all(frame.unwrap().data_ref().unwrap_or(&Bytes::new()))
            .unwrap();
    }
    let decoded = decoder.finish().expect("a complete gzip stream");
    assert_eq!(decoded, b"data: a 0\n\ndata: a 1\n\ndata: a 2\n\n");
}

#[tokio::test]
async fn http2_clients_get_gzip_too() {
    let proxy = proxy("gzip on; gzip_vary on;").await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/page", proxy.addr))
        .header("accept-encoding", "gzip")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(response.headers()["vary"], "Accept-Encoding");
    assert!(response.headers().get("content-length").is_none());
    let raw = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(pages::gunzip(&raw), page_text().as_bytes());
}

#[tokio::test]
async fn a_websocket_upgrade_is_left_alone_under_gzip_types_any() {
    let backend = Backend::start("a").await;
    let extra = "gzip on; gzip_types *; gzip_min_length 0;";
    let proxy = Proxy::round_robin(&[backend.addr], extra).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let url = proxy.url("/ws").replace("http", "ws");
    let request = http::Request::get(&url)
        .header("host", "localhost")
        .header("accept-encoding", "gzip")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(())
        .unwrap();
    let connecting = tokio_tungstenite::client_async(request, stream);
    let (mut ws, response) = within(Duration::from_secs(5), "the upgrade", connecting)
        .await
        .expect("a WebSocket through gzip");
    assert_eq!(response.status(), 101);
    assert!(response.headers().get("content-encoding").is_none());
    use futures_util::{SinkExt, StreamExt};
    let message = tokio_tungstenite::tungstenite::Message::text("plain text, not gzip");
    ws.send(message.clone()).await.unwrap();
    let echoed = within(Duration::from_secs(5), "the echo", ws.next()).await;
    assert_eq!(echoed.unwrap().unwrap(), message);
}

#[tokio::test]
async fn an_http2_websocket_is_left_alone_under_gzip_types_any() {
    use crate::harness::h2_websocket;
    use futures_util::{SinkExt, StreamExt};
    // Its 200 opens a tunnel: a gzip header there would reach the client as WebSocket bytes.
    let backend = Backend::start("a").await;
    let extra = "gzip on; gzip_types *; gzip_min_length 0;";
    let proxy = Proxy::round_robin(&[backend.addr], extra).await;
    let client = h2_websocket::connect(proxy.addr).await;
    let offered = [("accept-encoding", "gzip")];
    let (response, mut ws) = h2_websocket::websocket(&client, proxy.addr, "/ws", &offered).await;
    assert!(response.headers().get("content-encoding").is_none());
    let message = tokio_tungstenite::tungstenite::Message::text("plain text, not gzip");
    ws.send(message.clone()).await.unwrap();
    let echoed = within(Duration::from_secs(5), "the echo", ws.next()).await;
    assert_eq!(echoed.unwrap().unwrap(), message);
}

#[tokio::test]
async fn a_large_stream_goes_through_the_compressor_piece_by_piece() {
    let proxy = proxy("gzip on; gzip_types text/plain;").await;
    let got = within(
        Duration::from_secs(30),
        "4 MiB through gzip",
        fetch(proxy.addr, "GET", "/big", &[GZIP]),
    )
    .await;
    assert!(got.gzipped());
    let piece = pages::big_piece();
    assert_eq!(got.decoded.len(), piece.len() * pages::BIG_PIECES);
    assert!(got.decoded.chunks(piece.len()).all(|chunk| chunk == piece));
    assert!(
        got.raw.len() < got.decoded.len() / 20,
        "{} bytes",
        got.raw.len()
    );
}

/// `GET /page` over HTTP/1.0 through a proxy with `settings`; the head as text and the body
/// that ran until the connection closed.
async fn http10_page(settings: &str) -> (String, Vec<u8>) {
    let proxy = proxy(settings).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let request = b"GET /page HTTP/1.0\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n\r\n";
    tokio::io::AsyncWriteExt::write_all(&mut stream, request)
        .await
        .unwrap();
    let all = raw::read_to_close(&mut stream, Duration::from_secs(5)).await;
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8(all[..end].to_vec())
        .unwrap()
        .to_ascii_lowercase();
    (head, all[end..].to_vec())
}

#[tokio::test]
async fn http10_clients_are_compressed_only_from_gzip_http_version_1_0() {
    let (head, body) = http10_page("gzip on;").await;
    assert!(!head.contains("content-encoding"), "{head}");
    assert_eq!(body, page_text().as_bytes());
    // Compressed, the length is unknown up front: the body runs until the close.
    let (head, body) = http10_page("gzip on; gzip_http_version 1.0;").await;
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(!head.contains("content-length") && !head.contains("transfer-encoding"));
    assert_eq!(pages::gunzip(&body), page_text().as_bytes());
}
