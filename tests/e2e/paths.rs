//! Request paths as nginx sees them: locations match the normalised path (percent-decoded,
//! slashes merged, `.` and `..` resolved), so no spelling of `/admin/` slips past
//! `location /admin/ { return 403; }`; `$uri` is that path and `$request_uri` the original;
//! upstream gets the original request target from `proxy_pass` without a URI and the rewritten,
//! re-escaped normalised path from one with a URI.
//!
//! One table of raw request lines says what must happen to each. It is checked against tether
//! and — when nginx is installed — against nginx with the same locations and the same recording
//! backend, so the table is nginx's behaviour, measured, not remembered. Requests are written on
//! a plain socket: a client library would tidy the paths before they left.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::harness::nginx::Nginx;
use crate::harness::{Proxy, within};

/// The same locations for nginx and tether (`u` is the upstream over the recording backend).
const LOCATIONS: &str = r#"
    location /admin/ { return 403; }
    location / { proxy_pass http://u; proxy_set_header X-Uri $uri; }
    location /api/ { proxy_pass http://u/v1/; proxy_set_header X-Uri $uri; }
    location /show/ { return 200 "uri=$uri request_uri=$request_uri args=$args"; }
"#;

/// What happened to one request: the status, and — when it was proxied — the request target
/// and `X-Uri` (`$uri`) the backend received; for `/show/`, the body (`$uri`, `$request_uri`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    status: u16,
    upstream: Option<(String, String)>,
    body: Option<String>,
}

/// One row: the request target sent, then what must come of it.
struct Case {
    target: &'static str,
    status: u16,
    /// (request target, `$uri`) at the backend; None: nothing reached it.
    upstream: Option<(&'static str, &'static str)>,
    /// Where nginx sends another request target (a known, documented difference).
    nginx_target: Option<&'static str>,
}

const fn case(target: &'static str, status: u16, upstream: (&'static str, &'static str)) -> Case {
    Case {
        target,
        status,
        upstream: Some(upstream),
        nginx_target: None,
    }
}

const fn refused(target: &'static str, status: u16) -> Case {
    Case {
        target,
        status,
        upstream: None,
        nginx_target: None,
    }
}

impl Case {
    /// What tether and nginx must do with this row's request.
    fn wants(&self) -> [Outcome; 2] {
        let outcome = |target: Option<&str>| Outcome {
            status: self.status,
            upstream: self
                .upstream
                .map(|(tether, uri)| (target.unwrap_or(tether).to_string(), uri.to_string())),
            body: None,
        };
        [outcome(None), outcome(self.nginx_target)]
    }
}

/// A fragment (`#...`, which has no place in a request target) goes up with the rest of the
/// target from nginx, and is dropped from tether's: hyper drops it while parsing the request
/// line. Both match locations, and set `$uri`, without it.
const fn fragment(
    target: &'static str,
    nginx_target: &'static str,
    upstream: (&'static str, &'static str),
) -> Case {
    Case {
        target,
        status: 200,
        upstream: Some(upstream),
        nginx_target: Some(nginx_target),
    }
}

/// Every row is nginx 1.22's answer, checked by `paths_are_seen_as_nginx_sees_them`.
const CASES: &[Case] = &[
    // The five bypasses of issue 10: each spelling of /admin/x is /admin/x.
    refused("/x/../admin/x", 403),
    refused("/%61dmin/x", 403),
    refused("//admin/x", 403),
    refused("/./admin/x", 403),
    refused("/admin%2Fx", 403),
    // Encoded dots are dots, encoded slashes slashes, in every position.
    refused("/x/%2e%2e/admin/x", 403),
    refused("/x/.%2E/admin/x", 403),
    refused("/x/..%2fadmin/x", 403),
    refused("/%2F%2Fadmin/x", 403),
    refused("/api/%2e%2e/admin/x", 403),
    // `..` above the root, and broken escapes, are bad requests.
    refused("/a/b/../../..", 400),
    refused("/..", 400),
    refused("/%2e%2e/x", 400),
    refused("/a%zz", 400),
    refused("/a%", 400),
    refused("/a%4", 400),
    refused("/a%00b", 400),
    // Without a URI in proxy_pass the target goes up exactly as it came; `$uri` is normal.
    case("/a//b///c", 200, ("/a//b///c", "/a/b/c")),
    case("/a%20b", 200, ("/a%20b", "/a b")),
    case("/a%25b", 200, ("/a%25b", "/a%b")),
    case("/caf%C3%A9", 200, ("/caf%C3%A9", "/caf\u{e9}")),
    case("/a/.", 200, ("/a/.", "/a/")),
    case("/a/..", 200, ("/a/..", "/")),
    case("/a/b/.", 200, ("/a/b/.", "/a/b/")),
    case("/a;b=c/d", 200, ("/a;b=c/d", "/a;b=c/d")),
    case("/a+b", 200, ("/a+b", "/a+b")),
    case("/a...b/..c", 200, ("/a...b/..c", "/a...b/..c")),
    case("/api/../x", 200, ("/api/../x", "/x")),
    case("/apix", 200, ("/apix", "/apix")),
    case("/caf\u{e9}", 200, ("/caf\u{e9}", "/caf\u{e9}")),
    fragment("/a#frag", "/a#frag", ("/a", "/a")),
    fragment("/admin#/x", "/admin#/x", ("/admin", "/admin")),
    // The query is never decoded, and its escapes are never judged.
    case(
        "/q?x=%2F..%2F&y=%zz&z=%",
        200,
        ("/q?x=%2F..%2F&y=%zz&z=%", "/q"),
    ),
    // With a URI in proxy_pass: the normalised path, prefix replaced, re-escaped when the
    // client escaped (nginx's set: controls, space, " # % < > ? \ ^ ` { | }, bytes from DEL
    // up), then the query if not empty.
    case("/api/users?x=1", 200, ("/v1/users?x=1", "/api/users")),
    case("/api/a//b///c", 200, ("/v1/a/b/c", "/api/a/b/c")),
    case("/api/x/./y/../z", 200, ("/v1/x/z", "/api/x/z")),
    case("/api/x/.", 200, ("/v1/x/", "/api/x/")),
    case("/api/x/..", 200, ("/v1/", "/api/")),
    case("/%61pi/x", 200, ("/v1/x", "/api/x")),
    case("/api/a%20b", 200, ("/v1/a%20b", "/api/a b")),
    case("/api/a%25b", 200, ("/v1/a%25b", "/api/a%b")),
    case("/api/a%2fb", 200, ("/v1/a/b", "/api/a/b")),
    case("/api/a%41b", 200, ("/v1/aAb", "/api/aAb")),
    case("/api/caf%c3%a9", 200, ("/v1/caf%C3%A9", "/api/caf\u{e9}")),
    case("/api/%3F%23%3C%22", 200, ("/v1/%3F%23%3C%22", "/api/?#<\"")),
    case(
        "/api/%7B%7D%5C%5E%60%7C%7E",
        200,
        ("/v1/%7B%7D%5C%5E%60%7C~", "/api/{}\\^`|~"),
    ),
    case(
        "/api/a%09b%ffc",
        200,
        ("/v1/a%09b%FFc", "/api/a\tb\u{fffd}c"),
    ),
    case("/api/a%252e", 200, ("/v1/a%252e", "/api/a%2e")),
    case("/api/x?q=%41&r=%zz", 200, ("/v1/x?q=%41&r=%zz", "/api/x")),
    case("/api/x?", 200, ("/v1/x", "/api/x")),
    case("/api/a;b", 200, ("/v1/a;b", "/api/a;b")),
    case("/api/x#frag", 200, ("/v1/x", "/api/x")),
    case("/api/x?q=1#frag", 200, ("/v1/x?q=1", "/api/x")),
    // A path without escapes goes on as it stands, never escaped.
    case("/api/caf\u{e9}", 200, ("/v1/caf\u{e9}", "/api/caf\u{e9}")),
    case("/api/a\"b", 200, ("/v1/a\"b", "/api/a\"b")),
];

/// `$uri`, `$request_uri` and `$args` in `return` text.
const SHOWN: &[(&str, &str)] = &[
    (
        "/show/%41//b/../c?x=%41",
        "uri=/show/A/c request_uri=/show/%41//b/../c?x=%41 args=x=%41",
    ),
    ("/show/./x", "uri=/show/x request_uri=/show/./x args="),
];

#[tokio::test]
async fn paths_are_seen_as_nginx_sees_them() {
    let backend = RecordingBackend::start().await;
    let conf = format!(
        "events {{}} http {{ upstream u {{ server {{b}}; }} server {{ listen {{listen}}; {LOCATIONS} }} }}"
    );
    let tether = Proxy::start(&conf, &[("b", backend.addr)]).await;
    let nginx = Nginx::start_with("server {b};", LOCATIONS, &[("b", backend.addr)]).await;

    let servers = [
        ("tether", Some(tether.addr)),
        ("nginx", nginx.as_ref().map(|n| n.addr)),
    ];
    let mut report = Vec::new();
    let mut wrong = 0;
    for case in CASES {
        let wants = case.wants();
        wrong += compare(&backend, &servers, case.target, &wants, &mut report).await;
    }
    for &(target, body) in SHOWN {
        let want = Outcome {
            status: 200,
            upstream: None,
            body: Some(body.to_string()),
        };
        let wants = [want.clone(), want];
        wrong += compare(&backend, &servers, target, &wants, &mut report).await;
    }
    assert!(
        wrong == 0,
        "{wrong} outcomes differ from the table:\n{}\n{}",
        report.join("\n"),
        nginx.as_ref().map_or(String::new(), Nginx::logs)
    );
}

/// Sends `target` to each server running (tether, nginx), compares with what each must do
/// (`wants`, in the same order); returns how many differed and adds a line per difference to
/// `report`.
async fn compare(
    backend: &RecordingBackend,
    servers: &[(&str, Option<SocketAddr>); 2],
    target: &str,
    wants: &[Outcome; 2],
    report: &mut Vec<String>,
) -> usize {
    let mut wrong = 0;
    for (&(name, addr), want) in servers.iter().zip(wants) {
        let Some(addr) = addr else { continue };
        let got = outcome(backend, addr, target, want.body.is_some()).await;
        if &got != want {
            wrong += 1;
            report.push(format!(
                "{target:<28} {name}: {got:?}\n{:<28} table: {want:?}",
                ""
            ));
        }
    }
    wrong
}

/// Sends `GET target` and sees what came of it.
async fn outcome(
    backend: &RecordingBackend,
    addr: SocketAddr,
    target: &str,
    body: bool,
) -> Outcome {
    let before = backend.seen().len();
    let (status, text) = raw_get(addr, target).await;
    let seen = backend.seen();
    let upstream = match &seen[before..] {
        [] => None,
        [one] => Some(one.clone()),
        more => panic!(
            "one request reached the backend {} times: {more:?}",
            more.len()
        ),
    };
    Outcome {
        status,
        upstream,
        body: body.then_some(text),
    }
}

/// `GET target HTTP/1.1` on a fresh connection, written byte for byte; (status, body).
async fn raw_get(addr: SocketAddr, target: &str) -> (u16, String) {
    within(
        Duration::from_secs(10),
        "an answer to a raw request",
        async {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            let head =
                format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            stream.write_all(head.as_bytes()).await.expect("send");
            let mut answer = Vec::new();
            // Both servers close after answering (`Connection: close`): read to the end.
            stream
                .read_to_end(&mut answer)
                .await
                .expect("read the answer");
            let answer = String::from_utf8_lossy(&answer).into_owned();
            let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|code| code.parse().ok())
                .unwrap_or_else(|| panic!("no status line in {answer:?}"));
            let chunked = head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked");
            let body = if chunked {
                dechunk(body)
            } else {
                body.to_string()
            };
            (status, body)
        },
    )
    .await
}

/// The data of a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut data = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        data.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    data
}

/// A backend that records the request target and `X-Uri` of each request byte for byte (a
/// server library would tidy the target first), answers `200 b` and closes.
struct RecordingBackend {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    task: JoinHandle<()>,
}

impl RecordingBackend {
    async fn start() -> RecordingBackend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("backend address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, record.clone()));
            }
        });
        RecordingBackend { addr, seen, task }
    }

    fn seen(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for RecordingBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(mut stream: TcpStream, seen: Arc<Mutex<Vec<(String, String)>>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let target = head.split(' ').nth(1).unwrap_or("").to_string();
    let uri = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("x-uri"))
        .map_or("", |(_, value)| value.trim())
        .to_string();
    seen.lock().unwrap().push((target, uri));
    let _ = stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nb")
        .await;
    let _ = stream.shutdown().await;
}

/// HTTP/2 requests take the same normalisation (h2c with prior knowledge; hyper's client sends
/// the `:path` as given).
#[tokio::test]
async fn http2_paths_are_normalised_too() {
    let backend = RecordingBackend::start().await;
    let conf = format!(
        "events {{}} http {{ upstream u {{ server {{b}}; }} server {{ listen {{listen}}; {LOCATIONS} }} }}"
    );
    let tether = Proxy::start(&conf, &[("b", backend.addr)]).await;
    let stream = TcpStream::connect(tether.addr).await.expect("connect");
    let (mut sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    tokio::spawn(connection);
    for (path, status) in [
        ("/x/../admin/x", 403),
        ("/%61dmin/x", 403),
        ("//admin/x", 403),
        ("/a/b/../../..", 400),
        ("/api/x/../a%20b?q=%41", 200),
    ] {
        let request = http::Request::get(format!("http://localhost{path}"))
            .body(Empty::<Bytes>::new())
            .expect("a request");
        sender.ready().await.expect("connection ready");
        let response = within(
            Duration::from_secs(10),
            "an h2 answer",
            sender.send_request(request),
        )
        .await
        .expect("an h2 answer");
        assert_eq!(response.status(), status, "{path}");
        let _ = response.into_body().collect().await;
    }
    let seen = backend.seen();
    assert_eq!(
        seen,
        [("/v1/a%20b?q=%41".to_string(), "/api/a b".to_string())],
        "only the last request reached the backend"
    );
}
