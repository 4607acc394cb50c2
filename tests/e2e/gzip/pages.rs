//! A backend of fixed pages, one per case `gzip` must decide, and a client that reads a
//! response's raw body and its decoded form.
//!
//! Pages (`GET` or `HEAD`):
//! - `/page`     2000 bytes of HTML, with `Content-Length`, a strong `ETag`, `Accept-Ranges`
//! - `/tiny`     11 bytes of HTML
//! - `/json`     `application/json; charset=utf-8`
//! - `/png`      `image/png`
//! - `/encoded`  HTML already gzipped by the backend (`Content-Encoding: gzip`)
//! - `/range`    `206` with `Content-Range`
//! - `/missing`  a `404` HTML page; `/broken` a `500` one
//! - `/expired`  HTML with an `Expires` before its `Date`; `/cached` with `Cache-Control`
//! - `/stream`   HTML in three pieces, chunked (no length known up front)
//! - `/big`      4 MiB of text streamed in 64 KiB pieces

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

type Body = BoxBody<Bytes, std::io::Error>;

/// Request headers, as name and value.
pub type Headers<'a> = &'a [(&'a str, &'a str)];

/// The body of `/page` (and of every HTML page but `/tiny`).
pub fn page_text() -> String {
    let mut text = String::from("<html><body>\n");
    while text.len() < 1990 {
        text.push_str("<p>gzip me, I repeat</p>\n");
    }
    text.truncate(1990);
    text.push_str("</body>\n");
    text
}

/// The text `/big` streams.
pub fn big_piece() -> Bytes {
    let line = b"data: a line of a long stream that compresses well\n";
    Bytes::from(line.repeat(64 * 1024 / line.len() + 1)[..64 * 1024].to_vec())
}

/// How many pieces `/big` sends.
pub const BIG_PIECES: usize = 64;

/// Starts the pages backend; it serves until the test ends.
pub async fn start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service =
                    service_fn(|request| async move { Ok::<_, hyper::Error>(page(request)) });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into())
        .map_err(|never| match never {})
        .boxed()
}

fn page(request: Request<Incoming>) -> Response<Body> {
    let html = "text/html";
    let (status, kind, body, extra): (u16, &str, Body, Vec<(&str, String)>) =
        match request.uri().path() {
            "/page" => (
                200,
                html,
                full(page_text()),
                vec![("etag", "\"v1\"".into()), ("accept-ranges", "bytes".into())],
            ),
            "/tiny" => (200, html, full("<p>tiny</p>"), vec![]),
            "/json" => (
                200,
                "application/json; charset=utf-8",
                full(format!("{{\"text\": \"{}\"}}", "json ".repeat(100))),
                vec![],
            ),
            "/png" => (200, "image/png", full(vec![b'p'; 500]), vec![]),
            "/encoded" => (
                200,
                html,
                full(gzipped(page_text().as_bytes())),
                vec![("content-encoding", "gzip".into())],
            ),
            "/range" => (
                206,
                html,
                full(page_text()[..100].to_string()),
                vec![("content-range", "bytes 0-99/1998".into())],
            ),
            "/missing" => (404, html, full(page_text()), vec![]),
            "/broken" => (500, html, full(page_text()), vec![]),
            "/expired" => (
                200,
                html,
                full(page_text()),
                vec![
                    (
                        "date",
                        httpdate::fmt_http_date(std::time::SystemTime::now()),
                    ),
                    ("expires", "Thu, 01 Jan 1970 00:00:01 GMT".into()),
                ],
            ),
            "/cached" => (
                200,
                html,
                full(page_text()),
                vec![("cache-control", "max-age=60".into())],
            ),
            "/stream" => {
                let text = page_text();
                let pieces: Vec<Result<Frame<Bytes>, std::io::Error>> = text
                    .as_bytes()
                    .chunks(700)
                    .map(|piece| Ok(Frame::data(Bytes::copy_from_slice(piece))))
                    .collect();
                let stream = futures_util::stream::iter(pieces);
                (200, html, BodyExt::boxed(StreamBody::new(stream)), vec![])
            }
            "/big" => {
                let piece = big_piece();
                let pieces = (0..BIG_PIECES).map(move |_| Ok(Frame::data(piece.clone())));
                let stream = futures_util::stream::iter(pieces);
                (
                    200,
                    "text/plain",
                    BodyExt::boxed(StreamBody::new(stream)),
                    vec![],
                )
            }
            _ => (404, "text/plain", full("no such page"), vec![]),
        };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    let headers = response.headers_mut();
    headers.insert("content-type", kind.parse().unwrap());
    for (name, value) in extra {
        headers.insert(name, value.parse().unwrap());
    }
    response
}

/// `bytes` as one gzip stream.
pub fn gzipped(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A whole gzip stream, decoded.
pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut decoded)
        .expect("a whole, valid gzip stream");
    decoded
}

/// A response as received: the body raw, and decoded when it says `Content-Encoding: gzip`.
#[derive(Debug)]
pub struct Fetched {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The body as it came.
    pub raw: Bytes,
    /// The body with its gzip undone (the raw body when not gzipped).
    pub decoded: Vec<u8>,
}

impl Fetched {
    /// A header's values joined by `, ` ("" if absent).
    pub fn header(&self, name: &str) -> String {
        let values: Vec<&str> = self
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        values.join(", ")
    }

    /// True when the body came gzipped.
    pub fn gzipped(&self) -> bool {
        self.header("content-encoding") == "gzip"
    }
}

/// `METHOD path` with `headers` on a fresh HTTP/1.1 connection to `addr`, read whole.
pub async fn fetch(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Fetched {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::new())).unwrap();
    let response = sender.send_request(request).await.expect("a response");
    let (parts, body) = response.into_parts();
    let raw = body.collect().await.expect("the whole body").to_bytes();
    let gzipped = parts
        .headers
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    // A HEAD says how a GET would be encoded, with no body to decode.
    let decoded = if gzipped && !raw.is_empty() {
        gunzip(&raw)
    } else {
        raw.to_vec()
    };
    Fetched {
        status: parts.status,
        headers: parts.headers,
        raw,
        decoded,
    }
}
