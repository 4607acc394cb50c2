//! Hostile HTTP/1 input, byte for byte: every vector goes to tether on a raw connection, and
//! the test checks both sides — what the client was answered, and that the backend received
//! exactly the requests the client got answers for (nothing smuggled past, nothing half-read
//! and acted on).

use std::time::Duration;

use crate::harness::Proxy;
use crate::harness::raw::{RawBackend, exchange};

const LIMIT: Duration = Duration::from_secs(5);

/// One vector: the bytes sent, the statuses the client must get back in order, and the
/// requests (`METHOD target`, body) the backend must have received, in order.
struct Vector {
    name: &'static str,
    sent: &'static [u8],
    answers: &'static [u16],
    forwarded: &'static [(&'static str, &'static [u8])],
}

const fn vector(
    name: &'static str,
    sent: &'static [u8],
    answers: &'static [u16],
    forwarded: &'static [(&'static str, &'static [u8])],
) -> Vector {
    Vector {
        name,
        sent,
        answers,
        forwarded,
    }
}

const VECTORS: &[Vector] = &[
    vector(
        "a plain request, for reference",
        b"GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        &[200],
        &[("GET /ok", b"")],
    ),
    vector(
        "CL.TE: both framings at once",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        &[400],
        &[],
    ),
    vector(
        "TE.CL: both framings, the other order",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
        &[400],
        &[],
    ),
    vector(
        "two equal Content-Lengths",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        &[400],
        &[],
    ),
    vector(
        "two different Content-Lengths",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc",
        &[400],
        &[],
    ),
    vector(
        "a Content-Length list",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
        &[400],
        &[],
    ),
    vector(
        "a negative Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\nabc",
        &[400],
        &[],
    ),
    vector(
        "chunked, identity",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        &[501],
        &[],
    ),
    vector(
        "a transfer coding nobody knows",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        &[501],
        &[],
    ),
    vector(
        "Transfer-Encoding in HTTP/1.0",
        b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        &[400],
        &[],
    ),
    vector(
        "a space before the colon",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc",
        &[400],
        &[],
    ),
    vector(
        "an obs-folded header",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\nConnection: close\r\n\r\n",
        &[400],
        &[],
    ),
    vector(
        "a NUL in a header value",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Nul: a\0b\r\n\r\n",
        &[400],
        &[],
    ),
    vector(
        "a lone CR in a header value",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Cr: a\rb\r\n\r\n",
        &[400],
        &[],
    ),
    vector(
        "bare LF line ends (nginx takes them too)",
        b"GET /lf HTTP/1.1\nHost: a\nConnection: close\n\n",
        &[200],
        &[("GET /lf", b"")],
    ),
    vector(
        "a chunk size that overflows",
        b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nabc\r\n0\r\n\r\n",
        &[400],
        &[],
    ),
    vector(
        "a chunk longer than its size",
        b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        &[400],
        &[],
    ),
    vector(
        "a bare LF in chunked framing",
        b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
        &[400],
        &[],
    ),
    vector(
        "a chunked body, whole, then a pipelined request",
        b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        &[200, 200],
        &[("POST /up", b"abc"), ("GET /next", b"")],
    ),
    vector(
        "a Content-Length body, then a pipelined request",
        b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n1\r\nZGET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        &[200, 200],
        &[("POST /up", b"1\r\nZ"), ("GET /next", b"")],
    ),
    vector(
        "HTTP/1.1 without Host",
        b"GET / HTTP/1.1\r\n\r\n",
        &[400],
        &[],
    ),
    vector(
        "two Hosts",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        &[400],
        &[],
    ),
    vector(
        "a lowercase method",
        b"get / HTTP/1.1\r\nHost: a\r\n\r\n",
        &[400],
        &[],
    ),
    vector(
        "TRACE",
        b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n",
        &[405],
        &[],
    ),
    vector(
        "CONNECT",
        b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
        &[405],
        &[],
    ),
    vector(
        "an asterisk target",
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        &[400],
        &[],
    ),
    vector(
        "HTTP/2.0 on an HTTP/1 connection",
        b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        &[400],
        &[],
    ),
    vector(
        "an underscored header is dropped, the request served",
        b"GET /u HTTP/1.1\r\nHost: a\r\nX_Real_Ip: 6.6.6.6\r\nConnection: close\r\n\r\n",
        &[200],
        &[("GET /u", b"")],
    ),
];

#[tokio::test]
async fn hostile_heads_and_bodies_are_answered_and_never_forwarded_ambiguously() {
    let mut failures = Vec::new();
    for vector in VECTORS {
        // A backend per vector: what it saw is this vector's alone.
        let backend = RawBackend::start().await;
        let conf = "http { server { listen {listen}; location / { proxy_pass http://{b}; } } }";
        let proxy = Proxy::start(conf, &[("b", backend.addr)]).await;
        let answers = exchange(proxy.addr, vector.sent, LIMIT).await;
        let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
        let forwarded: Vec<(String, Vec<u8>)> = backend
            .requests()
            .into_iter()
            .map(|r| (r.line, r.body))
            .collect();
        let expected: Vec<(String, Vec<u8>)> = vector
            .forwarded
            .iter()
            .map(|(line, body)| (line.to_string(), body.to_vec()))
            .collect();
        if statuses != vector.answers || forwarded != expected || backend.torn() > 0 {
            failures.push(format!(
                "{}: answered {statuses:?} (want {:?}); backend saw {:?} and {} torn (want {:?})",
                vector.name,
                vector.answers,
                forwarded
                    .iter()
                    .map(|(l, b)| format!("{l} {:?}", String::from_utf8_lossy(b)))
                    .collect::<Vec<_>>(),
                backend.torn(),
                vector.forwarded.iter().map(|(l, _)| l).collect::<Vec<_>>(),
            ));
        }
        // Every answer the backend did not give is an error page with a body (nginx's shape).
        for answer in answers.iter().filter(|r| r.status >= 400) {
            if answer.body.is_empty() || answer.header("content-length").is_none() {
                failures.push(format!(
                    "{}: a {} without a body",
                    vector.name, answer.status
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[tokio::test]
async fn an_underscored_header_never_reaches_the_backend() {
    // nginx drops header names with `_` unless `underscores_in_headers on`: a backend that
    // maps `_` to `-` would otherwise take `X_Forwarded_For` for the header tether sets.
    let backend = RawBackend::start().await;
    let conf = "http { server { listen {listen}; location / { proxy_pass http://{b}; } } }";
    let proxy = Proxy::start(conf, &[("b", backend.addr)]).await;
    let sent =
        b"GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\nConnection: close\r\n\r\n";
    let answers = exchange(proxy.addr, sent, LIMIT).await;
    assert_eq!(answers.len(), 1);
    let seen = &backend.requests()[0];
    assert_eq!(seen.header("x_forwarded_for"), None, "{seen:?}");

    let conf = "http { underscores_in_headers on; \
                server { listen {listen}; location / { proxy_pass http://{b}; } } }";
    let proxy = Proxy::start(conf, &[("b", backend.addr)]).await;
    exchange(proxy.addr, sent, LIMIT).await;
    let seen = &backend.requests()[1];
    assert_eq!(seen.header("x_forwarded_for"), Some("6.6.6.6"), "{seen:?}");
}

/// One host parser for routing and `$host`, nginx's: the trailing-dot form routes like the
/// plain name, an absolute-form target names the host over `Host`, and a host nginx would
/// refuse is a 400, never the default server.
#[tokio::test]
async fn hosts_route_and_read_one_way() {
    let conf = "http { \
        server { listen {listen}; server_name default.test; return 200 \"default $host\"; } \
        server { listen {listen}; server_name a.test; return 200 \"a $host\"; } \
        server { listen {listen}; server_name b.test; return 200 \"b $host\"; } }";
    let proxy = Proxy::start(conf, &[]).await;
    let cases: [(&[u8], u16, &str); 8] = [
        (
            b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
            200,
            "a a.test",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: A.Test.:8080\r\nConnection: close\r\n\r\n",
            200,
            "a a.test",
        ),
        (
            b"GET http://b.test/ HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
            200,
            "b b.test",
        ),
        (b"GET / HTTP/1.0\r\n\r\n", 200, "default default.test"),
        (
            b"GET / HTTP/1.1\r\nHost: a..test\r\nConnection: close\r\n\r\n",
            400,
            "",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a.test/x\r\nConnection: close\r\n\r\n",
            400,
            "",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
            400,
            "",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: [::1\r\nConnection: close\r\n\r\n",
            400,
            "",
        ),
    ];
    for (sent, status, body) in cases {
        let answers = exchange(proxy.addr, sent, LIMIT).await;
        let shown = String::from_utf8_lossy(sent);
        assert_eq!(answers.len(), 1, "{shown:?}");
        assert_eq!(answers[0].status, status, "{shown:?}");
        if status == 200 {
            assert_eq!(String::from_utf8_lossy(&answers[0].body), body, "{shown:?}");
        }
    }
}
