//! Response headers as nginx sends them: `add_header` on tether's own answers, the upstream's
//! headers hidden or passed (`proxy_hide_header`, `proxy_pass_header`), `proxy_redirect`,
//! `proxy_cookie_*`, `expires`, `server_tokens`, a 426's `Upgrade`, and header names spelled
//! as the upstream spelled them. Where nginx has the behaviour, the same server block runs in
//! real nginx and in tether and the answers are compared.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::nginx::Nginx;
use crate::harness::{Proxy, within};

/// A backend answering each request with the bytes `script` gives for its path (a whole
/// response head and body), on keep-alive connections.
pub struct Scripted {
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Scripted {
    /// Starts one; `script(path)` is the raw response to send.
    pub async fn start(script: fn(&str) -> String) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, script));
            }
        });
        Scripted { addr }
    }
}

async fn serve(mut stream: TcpStream, script: fn(&str) -> String) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while find_head_end(&buffer).is_none() {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let end = find_head_end(&buffer).unwrap_or(0);
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        buffer.drain(..end);
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        if stream.write_all(script(&path).as_bytes()).await.is_err() {
            return;
        }
    }
}

fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// A whole response with the given head lines and body.
pub fn response(status: &str, lines: &[&str], body: &str) -> String {
    let mut text = format!("HTTP/1.1 {status}\r\n");
    for line in lines {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    text
}

/// One response as received: status, header lines as sent (names in their spelling), body.
#[derive(Debug)]
pub struct Seen {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    /// Every value of `name` (any case), in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The one value of `name`, if any.
    pub fn get(&self, name: &str) -> Option<String> {
        self.all(name).into_iter().next()
    }
}

/// `GET path` with `Connection: close`; the response as it came.
pub async fn fetch(addr: SocketAddr, path: &str) -> Seen {
    let request = format!("GET {path} HTTP/1.1\r\nHost: front\r\nConnection: close\r\n\r\n");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let all = within(Duration::from_secs(10), "a response", async {
        let mut all = Vec::new();
        let _ = stream.read_to_end(&mut all).await;
        all
    })
    .await;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    let head_len = match parsed.parse(&all) {
        Ok(httparse::Status::Complete(len)) => len,
        _ => panic!(
            "no whole response head: {:?}",
            String::from_utf8_lossy(&all)
        ),
    };
    Seen {
        status: parsed.code.unwrap_or(0),
        headers: parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&all[head_len..]).into_owned(),
    }
}

/// The same `server` block content (`{a}` the scripted backend, in `upstream u`) in tether
/// and, when installed, nginx.
struct Both {
    tether: Proxy,
    nginx: Option<Nginx>,
}

impl Both {
    async fn start(backend: SocketAddr, block: &str) -> Both {
        let conf = format!(
            "http {{ upstream u {{ server {{a}}; }} server {{ listen {{listen}}; {block} }} }}"
        );
        let tether = Proxy::start(&conf, &[("a", backend)]).await;
        let nginx = Nginx::start_with("server {a};", block, &[("a", backend)]).await;
        Both { tether, nginx }
    }

    /// The answers of both to `path`, each proxy's own address in them replaced by `SELF`
    /// (tether's and nginx's server tokens by `SERVER`).
    async fn fetch(&self, path: &str) -> (Seen, Option<Seen>) {
        let ours = normalised(fetch(self.tether.addr, path).await, self.tether.addr);
        let theirs = match &self.nginx {
            Some(nginx) => Some(normalised(fetch(nginx.addr, path).await, nginx.addr)),
            None => None,
        };
        (ours, theirs)
    }
}

fn normalised(mut seen: Seen, addr: SocketAddr) -> Seen {
    for (_, value) in &mut seen.headers {
        *value = value.replace(&format!("front:{}", addr.port()), "front:SELF");
    }
    seen
}

/// The headers both must agree on, lowercased names, in a stable order.
fn compared(seen: &Seen, names: &[&str]) -> Vec<(String, Vec<String>)> {
    names
        .iter()
        .map(|name| (name.to_string(), seen.all(name)))
        .collect()
}

fn own_answers(path: &str) -> String {
    let _ = path;
    response("200 OK", &["Content-Type: text/plain"], "up")
}

const ADD_HEADER_BLOCK: &str = "add_header X-Server s;
    location /return { add_header X-Plain p; add_header X-Always a always; return 200 \"ok\"; }
    location /missing { add_header X-Plain p; add_header X-Always a always; return 404; }
    location /moved { add_header X-Plain p; add_header X-Always a always;
        return 301 http://front/elsewhere; }
    location /proxied { add_header X-Plain p; add_header X-Always a always; proxy_pass http://u; }
    location /dead { add_header X-Plain p; add_header X-Always a always;
        proxy_pass http://127.0.0.1:1; }
    location /inherits { return 204; }";

#[tokio::test]
async fn add_header_goes_on_tethers_own_answers_by_nginx_status_rule() {
    let backend = Scripted::start(own_answers).await;
    let both = Both::start(backend.addr, ADD_HEADER_BLOCK).await;
    let expected: &[(&str, u16, &[&str])] = &[
        ("/return", 200, &["X-Plain", "X-Always"]),
        ("/missing", 404, &["X-Always"]),
        ("/moved", 301, &["X-Plain", "X-Always"]),
        ("/proxied", 200, &["X-Plain", "X-Always"]),
        ("/dead", 502, &["X-Always"]),
        ("/inherits", 204, &["X-Server"]),
    ];
    for (path, status, present) in expected {
        let (ours, theirs) = both.fetch(path).await;
        assert_eq!(ours.status, *status, "{path}: {ours:?}");
        for name in ["X-Server", "X-Plain", "X-Always"] {
            assert_eq!(
                ours.get(name).is_some(),
                present.contains(&name),
                "{path}: {name} in {ours:?}"
            );
        }
        if let Some(theirs) = theirs {
            assert_eq!(ours.status, theirs.status, "{path}");
            let names = ["x-server", "x-plain", "x-always", "location"];
            assert_eq!(compared(&ours, &names), compared(&theirs, &names), "{path}");
        }
    }
    both.tether.stop().await;
}

fn upstream_headers(path: &str) -> String {
    // nginx follows an `X-Accel-Redirect` (an internal redirect tether does not make): sent
    // only where `proxy_ignore_headers` tells nginx not to.
    let accel = match path {
        "/ignore" => "X-Accel-Redirect: /secret",
        _ => "X-Other: 1",
    };
    match path {
        "/426" => response(
            "426 Upgrade Required",
            &["Upgrade: TLS/1.2, HTTP/1.1", "Connection: Upgrade"],
            "upgrade",
        ),
        _ => response(
            "200 OK",
            &[
                "Server: kestrel",
                "Date: Mon, 01 Jan 2001 00:00:00 GMT",
                "X-Powered-By: php",
                "X-Pad: avoid browser bug",
                "X-Accel-Buffering: no",
                accel,
                "X-Kept: 1",
            ],
            "body",
        ),
    }
}

const HIDE_BLOCK: &str = "location / { proxy_pass http://u; }
    location /426 { proxy_pass http://u; }
    location /hide { proxy_hide_header X-Powered-By; proxy_hide_header X-Kept; proxy_pass http://u; }
    location /pass { proxy_pass_header Server; proxy_pass_header Date;
        proxy_pass_header X-Accel-Buffering; proxy_pass http://u; }
    location /ignore { proxy_ignore_headers X-Accel-Redirect X-Accel-Buffering Expires;
        proxy_pass http://u; }";

#[tokio::test]
async fn upstream_headers_are_hidden_and_passed_as_nginx_does() {
    let backend = Scripted::start(upstream_headers).await;
    let both = Both::start(backend.addr, HIDE_BLOCK).await;
    let names = [
        "x-powered-by",
        "x-pad",
        "x-accel-buffering",
        "x-accel-redirect",
        "x-kept",
        "upgrade",
    ];
    for path in ["/", "/hide", "/pass", "/ignore", "/426"] {
        let (ours, theirs) = both.fetch(path).await;
        // tether's own `Server` and `Date` unless passed, as nginx's are.
        let server = ours.get("server").unwrap_or_default();
        let date = ours.get("date").unwrap_or_default();
        if path == "/pass" {
            assert_eq!(server, "kestrel", "{ours:?}");
            assert_eq!(date, "Mon, 01 Jan 2001 00:00:00 GMT", "{ours:?}");
        } else {
            assert!(server.starts_with("tether/"), "{path}: {ours:?}");
            assert!(!date.contains("2001"), "{path}: {ours:?}");
        }
        if path == "/426" {
            assert_eq!(ours.status, 426);
            assert_eq!(ours.get("upgrade").as_deref(), Some("TLS/1.2, HTTP/1.1"));
        }
        if let Some(theirs) = theirs {
            assert_eq!(ours.status, theirs.status, "{path}");
            assert_eq!(compared(&ours, &names), compared(&theirs, &names), "{path}");
            let by_us = ours.get("server") == Some("kestrel".into());
            let by_them = theirs.get("server") == Some("kestrel".into());
            assert_eq!(by_us, by_them, "{path}: {ours:?} {theirs:?}");
        }
    }
    both.tether.stop().await;
}

fn redirecting(path: &str) -> String {
    let cookies = [
        "Set-Cookie: sid=1; Domain=.internal.local; Path=/uri/app; HttpOnly",
        "Set-Cookie: pref=2; path=/uri/; domain=other.example",
        "Set-Cookie: theme=3; Path=/; SameSite=None",
    ];
    let mut lines: Vec<&str> = cookies.to_vec();
    let location = match path {
        p if p.ends_with("/absolute") => "Location: http://u/uri/next?x=1",
        p if p.ends_with("/other") => "Location: http://b7.internal/deep/path",
        p if p.ends_with("/relative") => "Location: /uri/relative",
        _ => "Refresh: 3; url=http://u/uri/refreshed",
    };
    lines.push(location);
    response("302 Found", &lines, "")
}

const REDIRECT_BLOCK: &str = "location /one/ { proxy_pass http://u/uri/; }
    location /off/ { proxy_redirect off; proxy_pass http://u/uri/; }
    location /rules/ { proxy_redirect ~^http://b(\\d)\\.internal/(.*)$ https://pod$1.example/$2;
        proxy_redirect http://u/uri/ http://$host/rules/;
        proxy_cookie_domain internal.local example.com;
        proxy_cookie_path /uri/ /rules/;
        proxy_cookie_flags sid secure samesite=strict;
        proxy_cookie_flags ~^th nosamesite httponly;
        proxy_pass http://u/uri/; }
    location /both/ { proxy_pass http://u/uri/; proxy_redirect default;
        proxy_redirect http://b7.internal/ /b7/; proxy_cookie_path ~^/uri/(.*)$ /both/$1; }";

#[tokio::test]
async fn redirects_and_cookies_are_rewritten_as_nginx_rewrites_them() {
    let backend = Scripted::start(redirecting).await;
    let both = Both::start(backend.addr, REDIRECT_BLOCK).await;
    let expected_location = [
        ("/one/absolute", Some("http://front:SELF/one/next?x=1")),
        ("/one/relative", Some("/uri/relative")),
        ("/off/absolute", Some("http://u/uri/next?x=1")),
        ("/rules/other", Some("https://pod7.example/deep/path")),
        ("/rules/absolute", Some("http://front/rules/next?x=1")),
        ("/both/other", Some("http://front:SELF/b7/deep/path")),
        ("/both/absolute", Some("http://front:SELF/both/next?x=1")),
        ("/one/refresh", None),
    ];
    for (path, location) in expected_location {
        let (ours, theirs) = both.fetch(path).await;
        assert_eq!(ours.status, 302, "{path}");
        assert_eq!(
            ours.get("location").as_deref(),
            location,
            "{path}: {ours:?}"
        );
        if let Some(theirs) = theirs {
            let names = ["location", "refresh", "set-cookie"];
            assert_eq!(compared(&ours, &names), compared(&theirs, &names), "{path}");
        }
    }
    let (ours, _) = both.fetch("/rules/absolute").await;
    assert_eq!(
        ours.all("set-cookie"),
        [
            "sid=1; Domain=.example.com; Path=/rules/app; HttpOnly; Secure; SameSite=Strict",
            "pref=2; path=/rules/; domain=other.example",
            "theme=3; Path=/; HttpOnly",
        ]
    );
    let (ours, _) = both.fetch("/one/refresh").await;
    assert_eq!(
        ours.get("refresh").as_deref(),
        Some("3; url=/one/refreshed")
    );
    both.tether.stop().await;
}

const EXPIRES_BLOCK: &str = "expires 1h;
    location /inherit { proxy_pass http://u; }
    location /max { expires max; proxy_pass http://u; }
    location /epoch { expires epoch; return 200 \"own\"; }
    location /past { expires -1; proxy_pass http://u; }
    location /off { expires off; proxy_pass http://u; }
    location /error { return 404; }
    location /tokens { server_tokens off; return 200 \"quiet\"; }";

#[tokio::test]
async fn expires_and_server_tokens_follow_nginx() {
    let backend = Scripted::start(own_answers).await;
    let both = Both::start(backend.addr, EXPIRES_BLOCK).await;
    for path in [
        "/inherit", "/max", "/epoch", "/past", "/off", "/error", "/tokens",
    ] {
        let (ours, theirs) = both.fetch(path).await;
        let control = ours.get("cache-control");
        let expected = match path {
            "/inherit" => Some("max-age=3600"),
            "/max" => Some("max-age=315360000"),
            "/epoch" | "/past" => Some("no-cache"),
            "/tokens" => Some("max-age=3600"),
            _ => None,
        };
        assert_eq!(control.as_deref(), expected, "{path}: {ours:?}");
        assert_eq!(ours.get("expires").is_some(), expected.is_some(), "{path}");
        let server = ours.get("server").unwrap_or_default();
        match path {
            "/tokens" => assert_eq!(server, "tether"),
            _ => assert_eq!(server, concat!("tether/", env!("CARGO_PKG_VERSION"))),
        }
        if let Some(theirs) = theirs {
            assert_eq!(ours.status, theirs.status, "{path}");
            assert_eq!(control, theirs.get("cache-control"), "{path}");
            let at = |seen: &Seen| {
                seen.get("expires")
                    .map(|v| httpdate::parse_http_date(&v).expect("an HTTP date"))
            };
            match (at(&ours), at(&theirs)) {
                (Some(a), Some(b)) => {
                    let apart = a.duration_since(b).or_else(|_| b.duration_since(a));
                    assert!(
                        apart.unwrap_or_default() <= Duration::from_secs(2),
                        "{path}"
                    );
                }
                (a, b) => assert_eq!(a.is_some(), b.is_some(), "{path}"),
            }
            let version_hidden = |server: &str| !server.contains('/');
            let theirs_server = theirs.get("server").unwrap_or_default();
            assert_eq!(
                version_hidden(&server),
                version_hidden(&theirs_server),
                "{path}"
            );
        }
    }
    both.tether.stop().await;
}

fn spelled(_: &str) -> String {
    response(
        "200 OK",
        &[
            "X-Request-ID: 7",
            "content-type: text/plain",
            "Set-Cookie: a=1",
            "ETag: \"v1\"",
            "set-cookie: b=2",
            "WWW-Authenticate: Basic",
            "last-modified: Mon, 01 Jan 2001 00:00:00 GMT",
            "Connection: keep-alive",
        ],
        "spelled",
    )
}

#[tokio::test]
async fn header_names_keep_the_upstreams_spelling_as_in_nginx() {
    let backend = Scripted::start(spelled).await;
    let block = "location / { add_header X-Added yes; proxy_pass http://u; }";
    let both = Both::start(backend.addr, block).await;
    let sent = [
        "X-Request-ID",
        "content-type",
        "Set-Cookie",
        "ETag",
        "WWW-Authenticate",
        "last-modified",
    ];
    let names = |seen: &Seen| -> Vec<String> {
        let mut names: Vec<String> = seen
            .headers
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| sent.iter().any(|s| s.eq_ignore_ascii_case(name)))
            .collect();
        names.sort();
        names
    };
    // Two requests: the second on a pooled upstream connection.
    for _ in 0..2 {
        let (ours, theirs) = both.fetch("/").await;
        assert_eq!(ours.body, "spelled");
        // As nginx: `Content-Type` is written in its canonical spelling (nginx keeps it apart
        // and writes it itself), the rest as sent.
        let mut expected = vec![
            "Content-Type",
            "ETag",
            "last-modified",
            "Set-Cookie",
            "WWW-Authenticate",
            "X-Request-ID",
        ];
        // Both cookies keep their own spelling of the one name.
        expected.push("set-cookie");
        expected.sort();
        assert_eq!(names(&ours), expected, "{ours:?}");
        // tether's own names are in nginx's canonical case.
        let own: Vec<&str> = ours.headers.iter().map(|(n, _)| n.as_str()).collect();
        for name in ["Server", "Date", "Content-Length", "Connection", "X-Added"] {
            assert!(own.contains(&name), "{name} in {own:?}");
        }
        if let Some(theirs) = theirs {
            let mut ours_names = names(&ours);
            let mut theirs_names = names(&theirs);
            // nginx may spell duplicated names either way; compare the rest exactly.
            ours_names.retain(|n| !n.eq_ignore_ascii_case("set-cookie"));
            theirs_names.retain(|n| !n.eq_ignore_ascii_case("set-cookie"));
            assert_eq!(ours_names, theirs_names);
        }
    }
    both.tether.stop().await;
}

fn relay_sample(_: &str) -> String {
    response(
        "200 OK",
        &[
            "Server: app",
            "Date: Mon, 01 Jan 2001 00:00:00 GMT",
            "X-Request-ID: 7",
            "Content-Type: text/plain",
            "Connection: keep-alive",
            "ETag: \"v1\"",
            "X-Pad: x",
            "last-modified: Mon, 01 Jan 2001 00:00:00 GMT",
            "Set-Cookie: a=1",
        ],
        "relayed",
    )
}

/// Where nothing reads or changes an answer's lines they are relayed from its head, with no
/// header map (`proxy::relayed`); a location whose log shows a sent header builds the map.
/// The client must not tell them apart.
#[tokio::test]
async fn a_relayed_head_reaches_the_client_as_the_header_map_would_write_it() {
    let backend = Scripted::start(relay_sample).await;
    let conf = "http { log_format sent '$sent_http_x_request_id';
        upstream u { server {a}; }
        server { listen {listen};
            location / { add_header X-Added yes; proxy_pass http://u; }
            location /mapped { access_log /dev/null sent; add_header X-Added yes;
                proxy_pass http://u; } } }";
    let tether = Proxy::start(conf, &[("a", backend.addr)]).await;
    // Tether's own Date is the clock's: equal only to the second.
    let lines = |seen: Seen| -> Vec<(String, String)> {
        assert_eq!((seen.status, seen.body.as_str()), (200, "relayed"));
        seen.headers
            .into_iter()
            .filter(|(name, _)| name != "Date")
            .collect()
    };
    // Twice: the second answer comes on a pooled upstream connection.
    for _ in 0..2 {
        let relayed = lines(fetch(tether.addr, "/").await);
        let mapped = lines(fetch(tether.addr, "/mapped").await);
        assert_eq!(relayed, mapped);
        let names: Vec<&str> = relayed.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "X-Request-ID",
                "Content-Type",
                "ETag",
                "last-modified",
                "Set-Cookie",
                "Content-Length",
                "X-Added",
                "Server",
                "Connection"
            ]
        );
    }
    tether.stop().await;
}
