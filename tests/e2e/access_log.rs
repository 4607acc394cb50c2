//! Access logs over real sockets: nginx's `combined` line byte for byte against real nginx,
//! formats and escaping, several logs per level and `off`, `if=`, the tries of a retried
//! request, one line per WebSocket when it ends, and reopening under load without a line lost.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::client::Connection;
use crate::harness::nginx::Nginx;
use crate::harness::process::TetherProcess;
use crate::harness::{Backend, Proxy, free_addr, get, within};
use crate::real_ip::get_from;

const LIMIT: Duration = Duration::from_secs(10);

/// The lines of `path` once there are at least `count` (bounded: fails after [`LIMIT`]).
async fn lines(path: &Path, count: usize) -> Vec<String> {
    within(
        LIMIT,
        &format!("{count} lines in {}", path.display()),
        async {
            loop {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let lines: Vec<String> = text.lines().map(str::to_string).collect();
                if lines.len() >= count {
                    return lines;
                }
                // Polling a condition: the writer thread writes as soon as it can.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        },
    )
    .await
}

/// Sends raw bytes, reads until the server closes.
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    within(LIMIT, "a raw exchange", async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        answer
    })
    .await
}

/// `[...]` (the time) replaced, everything else kept.
fn without_time(line: &str) -> (String, String) {
    let open = line.find('[').expect("a time field");
    let close = line[open..].find(']').expect("time field closes") + open;
    let masked = format!("{}[TIME]{}", &line[..open], &line[close + 1..]);
    (masked, line[open + 1..close].to_string())
}

fn is_time_local(text: &str) -> bool {
    // 06/Dec/2026:04:20:38 +0000
    let bytes = text.as_bytes();
    bytes.len() == 26
        && text[0..2].bytes().all(|b| b.is_ascii_digit())
        && &text[2..3] == "/"
        && [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .contains(&&text[3..6])
        && &text[6..7] == "/"
        && text[7..11].bytes().all(|b| b.is_ascii_digit())
        && &text[11..12] == ":"
        && &text[20..21] == " "
        && (text.ends_with("+0000") || text[21..].bytes().skip(1).all(|b| b.is_ascii_digit()))
}

fn temp_log(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

#[tokio::test]
async fn a_combined_line_is_nginxs_byte_for_byte() {
    let app = Backend::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let ours = temp_log(&dir, "tether.log");
    let theirs = temp_log(&dir, "nginx.log");
    let Some(nginx) = Nginx::start_with(
        "server {app};",
        &format!(
            "location / {{ proxy_pass http://u; access_log {} combined; }}",
            theirs.display()
        ),
        &[("app", app.addr)],
    )
    .await
    else {
        return;
    };
    let conf = format!(
        "http {{ upstream u {{ server {{app}}; }} server {{ listen {{listen}}; \
         location / {{ proxy_pass http://u; access_log {}; }} }} }}",
        ours.display()
    );
    let proxy = Proxy::start(&conf, &[("app", app.addr)]).await;
    // A quote, a backslash and UTF-8 in the headers (escaped as \xHH), a Basic user, a query.
    let request = b"GET /some/path?q=1&r=%20 HTTP/1.1\r\nHost: example.com\r\n\
        Referer: http://ref.example/\"quoted\"\\back\r\n\
        User-Agent: t\xc3\xa9st-agent/1.0\r\n\
        Authorization: Basic YWxpY2U6c2VjcmV0\r\nConnection: close\r\n\r\n";
    let from_nginx = raw_exchange(nginx.addr, request).await;
    let from_tether = raw_exchange(proxy.addr, request).await;
    assert!(from_nginx.starts_with(b"HTTP/1.1 200"), "{}", nginx.logs());
    assert!(from_tether.starts_with(b"HTTP/1.1 200"));
    // And one nginx answers itself: a 404 with no body from the backend.
    let missing = b"HEAD /status?code=404 HTTP/1.0\r\n\r\n";
    raw_exchange(nginx.addr, missing).await;
    raw_exchange(proxy.addr, missing).await;
    // Header bytes that are not UTF-8 are escaped as they are (not as U+FFFD).
    let not_utf8 = b"GET /bytes HTTP/1.1\r\nHost: example.com\r\n\
        User-Agent: a\xffb\xc3\r\nConnection: close\r\n\r\n";
    raw_exchange(nginx.addr, not_utf8).await;
    raw_exchange(proxy.addr, not_utf8).await;

    let nginx_lines = lines(&theirs, 3).await;
    let tether_lines = lines(&ours, 3).await;
    assert!(
        nginx_lines[2].ends_with("\"a\\xFFb\\xC3\""),
        "{}",
        nginx_lines[2]
    );
    for (n, t) in nginx_lines.iter().zip(&tether_lines) {
        let (n_masked, n_time) = without_time(n);
        let (t_masked, t_time) = without_time(t);
        assert_eq!(t_masked, n_masked, "\nnginx:  {n}\ntether: {t}");
        assert!(is_time_local(&n_time), "nginx's time {n_time:?}");
        assert!(is_time_local(&t_time), "tether's time {t_time:?}");
        assert_eq!(t_time.len(), n_time.len());
    }
    assert!(
        tether_lines[0].starts_with("127.0.0.1 - alice ["),
        "{}",
        tether_lines[0]
    );
}

#[tokio::test]
async fn a_format_shows_request_response_and_upstream_facts() {
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = temp_log(&dir, "facts.log");
    let conf = format!(
        "http {{ log_format facts 'id=$request_id conn=$connection n=$connection_requests \
         s=$status body=$body_bytes_sent all=$bytes_sent rt=$request_time msec=$msec \
         iso=$time_iso8601 up=$upstream_addr us=$upstream_status urt=$upstream_response_time \
         uct=$upstream_connect_time uht=$upstream_header_time g=$upstream_group \
         tries=$upstream_tries sticky=$sticky_status sent=$sent_http_x_backend \
         uh=$upstream_http_x_backend args=[$args] m=$request_method u=$uri pipe=$pipe'; \
         upstream farm {{ server {{a}}; }} server {{ listen {{listen}}; \
         location / {{ proxy_pass http://farm; access_log {} facts; \
         add_header X-Request-Id $request_id; }} }} }}",
        log.display()
    );
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;
    let mut connection = Connection::open(proxy.addr).await;
    let first = connection.get("/one").await;
    let second = connection.get("/two?x=1").await;
    assert_eq!(first.status, 200);
    let lines = lines(&log, 2).await;
    let field = |line: &str, key: &str| -> String {
        let prefix = format!("{key}=");
        let found = line.split(' ').find_map(|word| word.strip_prefix(&prefix));
        found
            .unwrap_or_else(|| panic!("{key} in {line}"))
            .to_string()
    };
    let (one, two) = (&lines[0], &lines[1]);
    let id = field(one, "id");
    assert_eq!(id.len(), 32, "{one}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    // The header shows the same id as the line; each request gets its own.
    assert_eq!(first.header("x-request-id"), id);
    assert_ne!(field(two, "id"), id);
    assert_eq!(field(one, "conn"), field(two, "conn"));
    assert_eq!(
        (field(one, "n").as_str(), field(two, "n").as_str()),
        ("1", "2")
    );
    assert_eq!(field(one, "s"), "200");
    assert_eq!(field(one, "body"), "1", "the body is `a`: {one}");
    assert!(field(one, "all").parse::<u64>().unwrap() > 20);
    for key in ["rt", "urt", "uct", "uht"] {
        let value = field(one, key);
        let (secs, millis) = value.split_once('.').expect(key);
        assert!(
            secs.parse::<u64>().is_ok() && millis.len() == 3,
            "{key}={value}"
        );
    }
    let msec = field(one, "msec");
    assert!(msec.len() == 14 && msec.as_bytes()[10] == b'.', "{msec}");
    assert_eq!(field(one, "iso").len(), 25);
    assert_eq!(field(one, "up"), a.addr.to_string());
    assert_eq!(field(one, "us"), "200");
    assert_eq!(field(one, "g"), "farm");
    assert_eq!(field(one, "tries"), "1");
    assert_eq!(field(one, "sticky"), "none");
    assert_eq!(field(one, "sent"), "a");
    assert_eq!(field(one, "uh"), "a");
    assert_eq!(field(one, "args"), "[]");
    assert_eq!(field(two, "args"), "[x=1]");
    assert_eq!(field(two, "u"), "/two");
    assert_eq!(field(one, "pipe"), ".");
    drop(second);
}

/// The upstream's own head, for the two tests below: what nginx hides, and a header its
/// `Connection` line makes hop-by-hop.
fn hop_by_hop_answer(_path: &str) -> String {
    crate::response_headers::response(
        "200 OK",
        &[
            "Server: kestrel",
            "X-Accel-Buffering: no",
            "Connection: keep-alive, X-Trace",
            "X-Trace: t1",
            "X-Kept: 1",
        ],
        "ok",
    )
}

#[tokio::test]
async fn a_line_shows_the_upstreams_own_head_which_the_client_never_sees() {
    let backend = crate::response_headers::Scripted::start(hop_by_hop_answer).await;
    let dir = tempfile::tempdir().unwrap();
    let log = temp_log(&dir, "upstream.log");
    let conf = format!(
        "http {{ log_format up 'srv=$upstream_http_server buf=$upstream_http_x_accel_buffering \
         conn=[$upstream_http_connection] trace=$upstream_http_x_trace'; \
         upstream u {{ server {{a}}; }} server {{ listen {{listen}}; \
         location /logged {{ proxy_pass http://u; access_log {} up; }} \
         location / {{ proxy_pass http://u; access_log off; }} }} }}",
        log.display()
    );
    let proxy = Proxy::start(&conf, &[("a", backend.addr)]).await;
    for path in ["/logged", "/plain"] {
        let seen = crate::response_headers::fetch(proxy.addr, path).await;
        assert_eq!(seen.status, 200, "{path}: {seen:?}");
        assert_eq!(seen.get("x-kept").as_deref(), Some("1"), "{path}: {seen:?}");
        for hidden in ["x-accel-buffering", "x-trace"] {
            assert_eq!(seen.get(hidden), None, "{path}: {seen:?}");
        }
        let server = seen.get("server").unwrap_or_default();
        assert!(server.starts_with("tether"), "{path}: {seen:?}");
    }
    let lines = lines(&log, 1).await;
    assert_eq!(
        lines[0], "srv=kestrel buf=no conn=[keep-alive, X-Trace] trace=t1",
        "the line reads the upstream's head as it came"
    );
}

#[tokio::test]
async fn json_escaping_and_default_escaping_of_one_header() {
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let (json, plain) = (temp_log(&dir, "json.log"), temp_log(&dir, "plain.log"));
    let conf = format!(
        "http {{ log_format j escape=json '{{\"ua\":\"$http_user_agent\",\"none\":\"$http_x_none\"}}'; \
         log_format d '$http_user_agent|$http_x_none'; \
         upstream u {{ server {{a}}; }} server {{ listen {{listen}}; \
         location / {{ proxy_pass http://u; access_log {} j; access_log {} d; }} }} }}",
        json.display(),
        plain.display()
    );
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;
    let request =
        b"GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: a\"b\\c\tt\xc3\xa9\r\nConnection: close\r\n\r\n";
    raw_exchange(proxy.addr, request).await;
    let json_line = lines(&json, 1).await.remove(0);
    assert_eq!(
        json_line,
        "{\"ua\":\"a\\\"b\\\\c\\tt\u{e9}\",\"none\":\"\"}"
    );
    let value: serde_json::Value = serde_json::from_str(&json_line).unwrap();
    assert_eq!(value["ua"], "a\"b\\c\tt\u{e9}");
    let plain_line = lines(&plain, 1).await.remove(0);
    assert_eq!(plain_line, "a\\x22b\\x5Cc\\x09t\\xC3\\xA9|-");
}

#[tokio::test]
async fn a_level_with_its_own_logs_replaces_the_outer_ones_and_off_silences() {
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let [outer, one, two] = ["outer.log", "one.log", "two.log"].map(|n| temp_log(&dir, n));
    let conf = format!(
        "http {{ log_format path '$uri'; access_log {} path; upstream u {{ server {{a}}; }} \
         server {{ listen {{listen}}; \
         location / {{ proxy_pass http://u; }} \
         location /quiet {{ proxy_pass http://u; access_log off; }} \
         location /both {{ proxy_pass http://u; access_log {} path; access_log {} path; }} }} }}",
        outer.display(),
        one.display(),
        two.display()
    );
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;
    for path in ["/quiet", "/both", "/plain"] {
        assert_eq!(get(proxy.addr, path).await.status, 200);
    }
    // The last request's line is there, so the ones before it are too (one writer, in order).
    assert_eq!(lines(&outer, 1).await, ["/plain"]);
    assert_eq!(lines(&one, 1).await, ["/both"]);
    assert_eq!(lines(&two, 1).await, ["/both"]);
}

#[tokio::test]
async fn if_decides_by_request_or_by_response() {
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let (errors, asked) = (temp_log(&dir, "errors.log"), temp_log(&dir, "asked.log"));
    let conf = format!(
        "http {{ log_format line '$status $request_uri'; \
         map $status $loggable {{ ~^[23] 0; default 1; }} \
         upstream u {{ server {{a}}; }} server {{ listen {{listen}}; \
         location / {{ proxy_pass http://u; access_log {} line if=$loggable; \
         access_log {} line if=$arg_log; }} }} }}",
        errors.display(),
        asked.display()
    );
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;
    for path in [
        "/ok",
        "/status?code=404",
        "/ok?log=1",
        "/ok?log=0",
        "/status?code=503&log=yes",
    ] {
        get(proxy.addr, path).await;
    }
    get(proxy.addr, "/status?code=500").await;
    assert_eq!(
        lines(&errors, 3).await,
        [
            "404 /status?code=404",
            "503 /status?code=503&log=yes",
            "500 /status?code=500"
        ]
    );
    assert_eq!(
        lines(&asked, 2).await,
        ["200 /ok?log=1", "503 /status?code=503&log=yes"]
    );
}

#[tokio::test]
async fn a_retried_request_lists_every_try() {
    let a = Backend::start("a").await;
    let dead = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let log = temp_log(&dir, "tries.log");
    let conf = format!(
        "http {{ log_format tries '$upstream_tries|$upstream_addr|$upstream_status|$upstream_connect_time'; \
         upstream u {{ server {{dead}}; server {{a}}; }} server {{ listen {{listen}}; \
         location / {{ proxy_pass http://u; access_log {} tries; }} }} }}",
        log.display()
    );
    let proxy = Proxy::start(&conf, &[("a", a.addr), ("dead", dead)]).await;
    // Round robin starts at the first server; once it failed it is down for fail_timeout.
    for _ in 0..2 {
        assert_eq!(get(proxy.addr, "/").await.status, 200);
    }
    let lines = lines(&log, 2).await;
    let retried = lines
        .iter()
        .find(|line| line.starts_with("2|"))
        .unwrap_or_else(|| panic!("no retried request in {lines:?}"));
    let fields: Vec<&str> = retried.split('|').collect();
    assert_eq!(fields[1], format!("{dead}, {}", a.addr));
    assert_eq!(fields[2], "502, 200");
    // The failed try never connected: nginx's `-` in its place.
    assert!(fields[3].starts_with("-, "), "{retried}");
}

#[tokio::test]
async fn a_websocket_is_logged_once_when_it_ends() {
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = temp_log(&dir, "ws.log");
    let conf = format!(
        "http {{ log_format ws '$status $request_length $bytes_sent $body_bytes_sent $request_time'; \
         upstream u {{ server {{a}}; }} server {{ listen {{listen}}; \
         location / {{ proxy_pass http://u; proxy_set_header Upgrade $http_upgrade; \
         proxy_set_header Connection upgrade; access_log {} ws; }} }} }}",
        log.display()
    );
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;
    let (mut ws, response) =
        tokio_tungstenite::connect_async(proxy.url("/ws").replace("http", "ws"))
            .await
            .expect("WebSocket through tether");
    assert_eq!(response.status(), 101);
    let payload = "x".repeat(1000);
    ws.send(Message::text(payload.clone())).await.unwrap();
    let echoed = within(LIMIT, "the echo", ws.next()).await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), payload);
    // Open for a while: no line yet.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(std::fs::read_to_string(&log).unwrap_or_default(), "");
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = within(LIMIT, "the close", ws.next()).await {}
    drop(ws);
    let line = lines(&log, 1).await.remove(0);
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields[0], "101", "{line}");
    // Up: the upgrade request and the masked 1000-byte frame and close; down: the echo.
    assert!(fields[1].parse::<u64>().unwrap() > 1000, "{line}");
    assert!(fields[3].parse::<u64>().unwrap() > 1000, "{line}");
    assert!(fields[2].parse::<u64>().unwrap() > fields[3].parse::<u64>().unwrap());
    assert!(
        fields[4].parse::<f64>().unwrap() >= 0.1,
        "the tunnel's whole life: {line}"
    );
}

#[tokio::test]
async fn reopening_under_load_loses_no_line() {
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = temp_log(&dir, "live.log");
    let rotated = temp_log(&dir, "live.log.1");
    let conf = format!(
        "http {{ log_format uri '$request_uri'; upstream u {{ server {{a}}; }} \
         server {{ listen {{listen}}; location / {{ proxy_pass http://u; access_log {} uri; }} }} }}",
        log.display()
    );
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;
    const CLIENTS: usize = 4;
    const EACH: usize = 150;
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let addr = proxy.addr;
        clients.push(tokio::spawn(async move {
            let mut connection = Connection::open(addr).await;
            for n in 0..EACH {
                let reply = connection.get(&format!("/c{client}/{n}")).await;
                assert_eq!(reply.status, 200);
            }
        }));
    }
    // Rotate as logrotate does, in the middle of the load.
    lines(&log, CLIENTS * EACH / 3).await;
    std::fs::rename(&log, &rotated).unwrap();
    proxy.tether().reopen_logs();
    for client in clients {
        within(LIMIT, "the load", client).await.unwrap();
    }
    let total = CLIENTS * EACH;
    let seen = within(LIMIT, "every line", async {
        loop {
            let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
            let (old, new) = (read(&rotated), read(&log));
            if old.lines().count() + new.lines().count() >= total {
                return (old, new);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let (old, new) = seen;
    assert!(!new.is_empty(), "the reopened file got the later lines");
    let mut all: Vec<&str> = old.lines().chain(new.lines()).collect();
    all.sort_unstable();
    let mut expected: Vec<String> = (0..CLIENTS)
        .flat_map(|c| (0..EACH).map(move |n| format!("/c{c}/{n}")))
        .collect();
    expected.sort_unstable();
    assert_eq!(all, expected);
    assert_eq!(tether::telemetry::access_log::dropped_lines(), 0);
}

#[test]
fn config_errors_point_at_the_directive() {
    let load = |text: &str| {
        tether::config::load_str(Path::new("logs.conf"), text, Path::new("/tmp"))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let unknown = load("http {\n  access_log /tmp/x.log nosuch;\n}\n");
    assert!(
        unknown.contains("unknown log format \"nosuch\" in logs.conf:2:25"),
        "{unknown}"
    );
    let syslog = load("http {\n  access_log syslog:server=unix:/dev/log;\n}\n");
    assert!(
        syslog.contains("not supported") && syslog.contains("logs.conf:2:14"),
        "{syslog}"
    );
    let bad = load("http {\n  access_log /tmp/x.log combined buffer=lots;\n}\n");
    assert!(bad.contains("logs.conf:2:"), "{bad}");
    let duplicate = load("http {\n  log_format combined '$uri';\n}\n");
    assert!(
        duplicate.contains("duplicate \"log_format\" name \"combined\""),
        "{duplicate}"
    );
    let config = tether::config::load_str(
        Path::new("logs.conf"),
        "http {\n  log_format f '$nosuch';\n  server { listen 127.0.0.1:1; access_log /tmp/tether-never.log f; }\n}\n",
        Path::new("/tmp"),
    )
    .unwrap();
    let registry = tether::peer::PeerRegistry::default();
    let error = tether::snapshot::Snapshot::build(&config, &registry, 1)
        .err()
        .expect("an unknown variable")
        .to_string();
    assert!(
        error.contains("unknown \"nosuch\" variable in logs.conf:2:3"),
        "{error}"
    );
}

#[tokio::test]
async fn the_binary_writes_out_on_s_reopen_and_when_it_stops() {
    let a = Backend::start("a").await;
    let logs = tempfile::tempdir().unwrap();
    let (log, rotated) = (
        temp_log(&logs, "access.log"),
        temp_log(&logs, "access.log.1"),
    );
    // Held in memory until told: neither a full buffer nor a flush deadline comes in this test.
    let conf = format!(
        "events {{}}\nhttp {{\n  log_format uri '$request_uri';\n  upstream up {{ server {}; }}\n  \
         server {{ listen {{listen}}; location / {{ proxy_pass http://up; \
         access_log {} uri buffer=64k flush=1h; }} }}\n}}\n",
        a.addr,
        log.display()
    );
    let mut tether = TetherProcess::start(&conf).await;
    assert_eq!(get(tether.addr, "/before").await.status, 200);
    std::fs::rename(&log, &rotated).unwrap();
    tether.send("reopen");
    assert_eq!(lines(&rotated, 1).await, ["/before"]);
    assert_eq!(get(tether.addr, "/after").await.status, 200);
    tether.send("quit");
    tether
        .process
        .exits_cleanly_within(Duration::from_secs(5))
        .await;
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "/after\n");
    assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "/before\n");
}

#[tokio::test]
async fn http2_streams_are_logged_one_line_each_on_one_connection() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = temp_log(&dir, "h2.log");
    let conf = format!(
        "http {{ log_format h2 '\"$request\" $status $body_bytes_sent $connection $connection_requests'; \
         upstream u {{ server {{a}}; }} server {{ listen {{listen}}; \
         location / {{ proxy_pass http://u; access_log {} h2; }} }} }}",
        log.display()
    );
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    for path in ["/x", "/y"] {
        let request = http::Request::get(format!("http://h{path}"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = within(LIMIT, "an h2 answer", sender.send_request(request))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
    }
    let lines = lines(&log, 2).await;
    let conn = lines[0].split(' ').nth(5).unwrap().to_string();
    assert_eq!(
        lines,
        [
            format!("\"GET /x HTTP/2.0\" 200 1 {conn} 1"),
            format!("\"GET /y HTTP/2.0\" 200 1 {conn} 2"),
        ]
    );
}

#[tokio::test]
async fn the_status_page_log_and_access_rules_all_see_the_real_client() {
    // The pieces together, as an operator behind a cloud balancer sets them up: the status
    // page open to the office only, every request logged — refusals and `return`s too — with
    // the client realip found, and the balancer's own address beside it.
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = temp_log(&dir, "access.log");
    let conf = format!(
        "http {{ log_format who '$remote_addr $realip_remote_addr $status $request_uri';
        access_log {} who;
        upstream farm {{ server {{a}}; }}
        server {{ listen {{listen}};
            set_real_ip_from 127.0.0.1; real_ip_header X-Forwarded-For;
            location /tether/status {{ status; allow 203.0.113.0/24; deny all; }}
            location / {{ proxy_pass http://farm; }}
        }} }}",
        log.display()
    );
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;
    let from = |client: &'static str| [("X-Forwarded-For", client)];
    let balancer: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let office = get_from(
        balancer,
        proxy.addr,
        "/tether/status",
        &from("203.0.113.50"),
    )
    .await;
    assert_eq!(office.status, 200);
    let page: serde_json::Value = serde_json::from_slice(&office.body).expect("the JSON page");
    assert_eq!(page["upstreams"][0]["name"], "farm");
    let stranger = get_from(
        balancer,
        proxy.addr,
        "/tether/status",
        &from("198.51.100.1"),
    )
    .await;
    assert_eq!(stranger.status, 403, "the page is not public");
    let app = get_from(balancer, proxy.addr, "/app", &from("198.51.100.1")).await;
    assert_eq!(app.status, 200);
    assert_eq!(
        lines(&log, 3).await,
        [
            "203.0.113.50 127.0.0.1 200 /tether/status",
            "198.51.100.1 127.0.0.1 403 /tether/status",
            "198.51.100.1 127.0.0.1 200 /app",
        ]
    );
    proxy.stop().await;
}
