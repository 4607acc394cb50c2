//! The hostile-request corpus (issue 15): heads and bodies built to be read two ways, sent
//! through tether to a raw recording backend. Each is either refused with a 4xx/5xx and
//! nothing reaches the backend, or what reaches the backend reads strictly
//! ([`crate::harness::framing`]) as exactly the requests the client sent, each with one
//! framing (one `Content-Length` or chunked, never both) and no hop-by-hop header left in it.
//!
//! Real nginx gets the same bytes where it is installed: its statuses are the reference, and
//! every place tether answers otherwise is written down in the case as deliberate.

use std::time::Duration;

use crate::harness::Proxy;
use crate::harness::framing::{self, Framing};
use crate::harness::nginx::Nginx;
use crate::harness::raw::{RawResponse, exchange_bytes, parse_responses};
use crate::harness::recorder::{Recorder, UNREADABLE};

/// How long a server has to answer and close; a case that takes longer is a fault, not a hang.
const LIMIT: Duration = Duration::from_secs(3);

/// Sends `bytes` on a new connection: every whole response, and whether the server closed
/// the connection within [`LIMIT`].
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> (Vec<RawResponse>, bool) {
    let (all, closed) = exchange_bytes(addr, bytes, LIMIT).await;
    (parse_responses(&all), closed)
}

/// What nginx answers the same bytes.
enum NginxSays {
    /// The statuses tether gives.
    Agrees,
    /// Other statuses, and why tether's differ on purpose.
    Differs(&'static [u16], &'static str),
}

/// One hostile input and what must become of it.
struct Case {
    name: &'static str,
    sent: Vec<u8>,
    /// Statuses the client gets, in order (1xx included).
    answers: &'static [u16],
    /// `METHOD target` and body of each request the backend must receive, in order.
    forwarded: &'static [(&'static str, &'static [u8])],
    nginx: NginxSays,
}

fn case(
    name: &'static str,
    sent: &[u8],
    answers: &'static [u16],
    forwarded: &'static [(&'static str, &'static [u8])],
) -> Case {
    Case {
        name,
        sent: sent.to_vec(),
        answers,
        forwarded,
        nginx: NginxSays::Agrees,
    }
}

impl Case {
    fn unlike_nginx(mut self, statuses: &'static [u16], why: &'static str) -> Case {
        self.nginx = NginxSays::Differs(statuses, why);
        self
    }
}

/// A request to `/` with `headers` (each ending in CRLF) and `body`, closing the connection.
fn post(headers: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes =
        format!("POST /p HTTP/1.1\r\nHost: a\r\nConnection: close\r\n{headers}\r\n").into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn chunked(body: &[u8]) -> Vec<u8> {
    post("Transfer-Encoding: chunked\r\n", body)
}

fn get_with(header_lines: &str) -> Vec<u8> {
    format!("GET /g HTTP/1.1\r\nHost: a\r\n{header_lines}Connection: close\r\n\r\n").into_bytes()
}

fn cases() -> Vec<Case> {
    const NONE: &[(&str, &[u8])] = &[];
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "t".repeat(9000));
    let long_header = get_with(&format!("X-Long: {}\r\n", "v".repeat(9000)));
    let big_section = get_with(&format!("X-Part: {}\r\n", "v".repeat(7000)).repeat(5));
    let many_headers = get_with(
        &(0..150)
            .map(|i| format!("X-H{i}: 1\r\n"))
            .collect::<String>(),
    );
    let long_extension = chunked(format!("3;{}\r\nabc\r\n0\r\n\r\n", "e".repeat(5000)).as_bytes());
    vec![
        case("a plain request, for reference", &get_with(""), &[200], &[("GET /g", b"")]),
        case("CL.TE", &post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), &[400], NONE),
        case("TE.CL", &post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"), &[400], NONE),
        case("two equal Content-Lengths", &post("Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"), &[400], NONE),
        case("two different Content-Lengths", &post("Content-Length: 3\r\nContent-Length: 4\r\n", b"abcd"), &[400], NONE),
        case("Content-Length +3", &post("Content-Length: +3\r\n", b"abc"), &[400], NONE),
        case("Content-Length -3", &post("Content-Length: -3\r\n", b"abc"), &[400], NONE),
        case("Content-Length 0x3", &post("Content-Length: 0x3\r\n", b"abc"), &[400], NONE),
        case("Content-Length with a space inside", &post("Content-Length: 1 2\r\n", b"abc"), &[400], NONE),
        case("Content-Length padded with spaces", &post("Content-Length:   3  \r\n", b"abc"), &[200], &[("POST /p", b"abc")]),
        case("Content-Length past u64", &post("Content-Length: 99999999999999999999\r\n", b"abc"), &[400], NONE),
        case("Transfer-Encoding gzip", &post("Transfer-Encoding: gzip\r\n", b"abc"), &[501], NONE),
        case("Transfer-Encoding: chunked, x", &post("Transfer-Encoding: chunked, x\r\n", b"3\r\nabc\r\n0\r\n\r\n"), &[501], NONE),
        case("Transfer-Encoding gzip with a Content-Length", &post("Transfer-Encoding: gzip\r\nContent-Length: 3\r\n", b"abc"), &[400], NONE)
            .unlike_nginx(&[501], "tether refuses both framings at once before it looks at the coding; either way a refusal"),
        case("two Transfer-Encodings", &post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), &[400], NONE),
        case("Transfer-Encoding in HTTP/1.0", b"POST /p HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", &[400], NONE),
        case("an obs-folded header", &get_with("X-Folded: one\r\n two\r\n"), &[400], NONE),
        case("an obs-folded Content-Length", &post("Content-Length:\r\n 3\r\n", b"abc"), &[400], NONE),
        case("bare LF line ends", b"GET /lf HTTP/1.1\nHost: a\nConnection: close\n\n", &[200], &[("GET /lf", b"")]),
        case("a bare CR ending a header line", &get_with("X-Cr: a\r"), &[400], NONE),
        case("a bare CR inside a value", &get_with("X-Cr: a\rb\r\n"), &[400], NONE),
        case("a NUL in a value", &get_with("X-Nul: a\0b\r\n"), &[400], NONE),
        case("a NUL in a name", &get_with("X-N\0ul: a\r\n"), &[400], NONE),
        case("a control byte in a value", &get_with("X-Ctl: a\x01b\r\n"), &[400], NONE)
            .unlike_nginx(&[UNREADABLE], "nginx forwards controls other than NUL, CR and LF in values (the strict backend refuses them); tether refuses every control but HTAB, httparse's rule"),
        case("a control byte in a name", &get_with("X-C\x01tl: a\r\n"), &[400], NONE),
        case("DEL in a value", &get_with("X-Del: a\x7fb\r\n"), &[400], NONE)
            .unlike_nginx(&[UNREADABLE], "as for other control bytes: nginx forwards DEL"),
        case("a space before the colon", &post("Transfer-Encoding : chunked\r\nContent-Length: 3\r\n", b"abc"), &[400], NONE),
        case("a tab before the colon", &get_with("X-Tab\t: a\r\n"), &[400], NONE),
        case("a request line longer than a buffer", long_target.as_bytes(), &[414], NONE),
        case("a header line longer than a buffer", &long_header, &[400], NONE),
        case("a header section larger than the buffers", &big_section, &[400], NONE),
        case("150 header lines", &many_headers, &[431], NONE)
            .unlike_nginx(&[200], "nginx counts only bytes; tether also caps header lines (client_max_headers, default 100)"),
        case("a chunk size past u64", &chunked(b"1ffffffffffffffff\r\nabc\r\n0\r\n\r\n"), &[400], NONE),
        case("a chunk size with 0x", &chunked(b"0x3\r\nabc\r\n0\r\n\r\n"), &[400], NONE),
        case("a chunk size with a sign", &chunked(b"+3\r\nabc\r\n0\r\n\r\n"), &[400], NONE),
        case("an empty chunk size", &chunked(b"\r\nabc\r\n0\r\n\r\n"), &[400], NONE),
        case("a space before a chunk size", &chunked(b" 3\r\nabc\r\n0\r\n\r\n"), &[400], NONE),
        case("a chunk longer than its size", &chunked(b"2\r\nabc\r\n0\r\n\r\n"), &[400], NONE),
        case("a bare LF after a chunk size", &chunked(b"3\nabc\r\n0\r\n\r\n"), &[400], NONE)
            .unlike_nginx(&[200], "nginx takes a bare LF in chunked framing; tether's decoder does not, since the upstream may not"),
        case("a chunk extension", &chunked(b"3;name=value\r\nabc\r\n0\r\n\r\n"), &[200], &[("POST /p", b"abc")]),
        case("a quoted chunk extension", &chunked(b"3;q=\"a;b\\\"c\"\r\nabc\r\n0\r\n\r\n"), &[200], &[("POST /p", b"abc")]),
        case("a chunk extension longer than a line", &long_extension, &[400], NONE)
            .unlike_nginx(&[200], "nginx reads an extension of any length; tether bounds a chunk-size line at 4 KiB"),
        case("a bare CR in a chunk extension", &chunked(b"3;a\rb\r\nabc\r\n0\r\n\r\n"), &[400], NONE),
        case("trailers", &chunked(b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n"), &[200], &[("POST /p", b"abc")]),
        case(
            "pipelined, without bodies",
            b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            &[200, 200],
            &[("GET /1", b""), ("GET /2", b"")],
        ),
        case(
            "pipelined, with bodies",
            b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcPOST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            &[200, 200, 200],
            &[("POST /1", b"abc"), ("POST /2", b"de"), ("GET /3", b"")],
        ),
        case(
            "pipelined, a smuggling attempt behind a good request",
            b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
            &[200, 400],
            &[("GET /1", b"")],
        ),
        case("absolute-form", b"GET http://a/abs?q=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", &[200], &[("GET /abs?q=1", b"")]),
        case("absolute-form naming another host than Host", b"GET http://b/abs HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", &[200], &[("GET /abs", b"")]),
        case("absolute-form with two Hosts", b"GET http://b/abs HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n", &[400], NONE),
        case("two Hosts", &get_with("Host: b\r\n"), &[400], NONE),
        case("two equal Hosts", &get_with("Host: a\r\n"), &[400], NONE),
        case("Expect: 100-continue", &post("Expect: 100-continue\r\nContent-Length: 3\r\n", b"abc"), &[100, 200], &[("POST /p", b"abc")]),
        case("an expectation nobody knows", &post("Expect: teapot\r\nContent-Length: 3\r\n", b"abc"), &[200], &[("POST /p", b"abc")]),
        case(
            "a GET with a Content-Length body",
            b"GET /g HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
            &[200],
            &[("GET /g", b"abc")],
        ),
        case(
            "a POST with a chunked body, then a broken request",
            b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /bad HTTP/1.1\r\n\r\n",
            &[200, 400],
            &[("POST /p", b"abc")],
        ),
        case(
            "hop-by-hop headers the client names",
            &get_with("TE: trailers\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nTrailer: X\r\n"),
            &[200],
            &[("GET /g", b"")],
        ),
    ]
}

/// Hop-by-hop headers a request must never carry upstream (Connection is tether's own).
const HOP_BY_HOP: &[&str] = &[
    "te",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "trailer",
    "expect",
];

/// What tether did with `case` that it must not have, one line per fault.
fn judge(case: &Case, answers: &[RawResponse], recorder: &Recorder) -> Vec<String> {
    let mut faults = Vec::new();
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    if statuses != case.answers {
        faults.push(format!("answered {statuses:?}, want {:?}", case.answers));
    }
    for answer in answers.iter().filter(|r| r.status >= 400) {
        if answer.body.is_empty() || answer.header("content-length").is_none() {
            faults.push(format!("a {} without an error page", answer.status));
        }
    }
    let mut forwarded = Vec::new();
    for (n, connection) in recorder.requests().into_iter().enumerate() {
        match connection {
            Ok(requests) => forwarded.extend(requests),
            Err(error) => faults.push(format!(
                "upstream connection {n} does not read strictly: {error}"
            )),
        }
    }
    let seen: Vec<(String, Vec<u8>)> = forwarded
        .iter()
        .map(|m| (m.line.clone(), m.body.clone()))
        .collect();
    let want: Vec<(String, Vec<u8>)> = case
        .forwarded
        .iter()
        .map(|(l, b)| (l.to_string(), b.to_vec()))
        .collect();
    if seen != want {
        let shown: Vec<String> = seen
            .iter()
            .map(|(l, b)| format!("{l} {:?}", String::from_utf8_lossy(b)))
            .collect();
        faults.push(format!(
            "the backend got {shown:?}, want {:?}",
            case.forwarded
        ));
    }
    for request in &forwarded {
        if !request.body.is_empty() && request.framing == Framing::Unframed {
            faults.push(format!("{}: a body without framing", request.line));
        }
        for name in HOP_BY_HOP {
            if !request.values(name).is_empty() {
                faults.push(format!("{}: forwarded {name}", request.line));
            }
        }
    }
    faults
}

/// Cases hyper's upstream client gets wrong: it sends a GET's (or HEAD's) body of unknown
/// length as no body at all, so a chunked body is dropped on its way upstream (and the bytes
/// after it are never read as the next request). tether's own client must forward it.
fn cases_for_tethers_own_client() -> Vec<Case> {
    vec![
        case(
            "a GET with a chunked body",
            b"GET /g HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            &[200],
            &[("GET /g", b"abc")],
        ),
        case(
            "a GET with a chunked body, then a broken request",
            b"GET /g HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /bad HTTP/1.1\r\n\r\n",
            &[200, 400],
            &[("GET /g", b"abc")],
        ),
    ]
}

#[tokio::test]
async fn hostile_requests_are_refused_or_forwarded_with_one_reading() {
    run(cases()).await;
}

#[tokio::test]

async fn a_get_with_a_chunked_body_is_forwarded_with_it() {
    run(cases_for_tethers_own_client()).await;
}

/// Runs `cases` through tether (a backend and a proxy each) and, where installed, through one
/// nginx.
async fn run(cases: Vec<Case>) {
    let conf = "http { server { listen {listen}; location / { proxy_pass http://{b}; } } }";
    let nginx_backend = Recorder::start().await;
    let nginx = Nginx::start("server {b};", &[("b", nginx_backend.addr)]).await;
    let mut failures = Vec::new();
    for case in cases {
        // A backend and a proxy per case: what the backend saw is this case's alone, and no
        // pooled connection carries over from the one before.
        let recorder = Recorder::start().await;
        let proxy = Proxy::start(conf, &[("b", recorder.addr)]).await;
        let (answers, closed) = exchange(proxy.addr, &case.sent).await;
        if !closed {
            failures.push(format!(
                "{}: tether did not close within {LIMIT:?}",
                case.name
            ));
        }
        for fault in judge(&case, &answers, &recorder) {
            failures.push(format!("{}: {fault}", case.name));
        }
        let Some(nginx) = &nginx else { continue };
        let theirs: Vec<u16> = exchange(nginx.addr, &case.sent)
            .await
            .0
            .iter()
            .map(|r| r.status)
            .collect();
        let (want, why) = match case.nginx {
            NginxSays::Agrees => (case.answers, "as tether"),
            NginxSays::Differs(statuses, why) => (statuses, why),
        };
        if theirs != want {
            failures.push(format!(
                "{}: nginx answered {theirs:?}, the case says {want:?} ({why})",
                case.name
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The strict reader these cases lean on refuses what it must: a test of the measure itself.
#[test]
fn the_strict_reader_refuses_two_framings_and_loose_line_ends() {
    let refused: [&[u8]; 6] = [
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        b"GET / HTTP/1.1\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\nx\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
    ];
    for bytes in refused {
        assert!(
            framing::requests(bytes).is_err(),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    let two = b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;x=\"y\"\r\nz\r\n0\r\nT: 1\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n";
    let read = framing::requests(two).expect("two strict requests");
    assert_eq!(
        (read[0].line.as_str(), read[0].body.as_slice()),
        ("POST /a", &b"z"[..])
    );
    assert_eq!(read[1].line, "GET /b");
}
