//! `limit_req` and `limit_conn` over real sockets: a burst at once passes `burst + 1` and
//! refuses the rest, queued requests are held back to the rate (`delay=` letting some through
//! at once), requests pass at the configured rate when measured, `limit_req_status` and dry
//! runs, empty keys, zones that keep their buckets across a reload and stay within their size
//! under a flood of keys, and `limit_conn` counting a WebSocket, and an SSE stream, until it
//! ends. The timing of a burst is compared with real nginx's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::client::{Connection, request};
use crate::harness::logs::Logs;
use crate::harness::nginx::Nginx;
use crate::harness::{Backend, Proxy, get, send, within};

const LIMIT: Duration = Duration::from_secs(10);

/// tether with `http_level` zones, `location /` limited by `limits` and `location /free` not.
fn conf(http_level: &str, limits: &str) -> String {
    format!(
        "events {{}} http {{ {http_level} upstream up {{ server {{a}}; }} \
         server {{ listen {{listen}}; \
         location / {{ proxy_pass http://up; proxy_set_header Upgrade $http_upgrade; \
                      proxy_set_header Connection upgrade; {limits} }} \
         location /free {{ proxy_pass http://up; }} }} }}"
    )
}

/// `count` GETs of `path` sent at once, each on its own connection: each one's status and how
/// long it took, in the order they were sent.
async fn burst(addr: SocketAddr, path: &str, count: usize) -> Vec<(StatusCode, Duration)> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let path = path.to_string();
            tokio::spawn(async move {
                let reply = get(addr, &path).await;
                (reply.status, started.elapsed())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(within(LIMIT, "a limited request", task).await.unwrap());
    }
    answers
}

fn statuses(answers: &[(StatusCode, Duration)]) -> (usize, usize) {
    let passed = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let refused = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    (passed, refused)
}

/// How long the requests that passed took, shortest first.
fn passed_times(answers: &[(StatusCode, Duration)]) -> Vec<Duration> {
    let mut times: Vec<Duration> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .map(|(_, t)| *t)
        .collect();
    times.sort();
    times
}

const ONE_PER_SECOND: &str = "limit_req_zone $binary_remote_addr zone=one:1m rate=1r/s;";

#[tokio::test]
async fn a_burst_at_once_passes_burst_plus_one_and_refuses_the_rest() {
    let a = Backend::start("a").await;
    let conf = conf(ONE_PER_SECOND, "limit_req zone=one burst=3 nodelay;");
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;
    let answers = burst(proxy.addr, "/", 8).await;
    assert_eq!(statuses(&answers), (4, 4), "{answers:?}");
    assert_eq!(a.hits(), 4, "refused requests never reach the upstream");
    // Another location is not limited.
    assert_eq!(get(proxy.addr, "/free").await.status, StatusCode::OK);
    proxy.stop().await;
}

#[tokio::test]
async fn requests_pass_at_the_configured_rate() {
    let a = Backend::start("a").await;
    let zone = "limit_req_zone $binary_remote_addr zone=one:1m rate=10r/s;";
    let proxy = Proxy::start(&conf(zone, "limit_req zone=one;"), &[("a", a.addr)]).await;
    let mut connection = Connection::open(proxy.addr).await;
    // Requests one after another for a second (a bounded stimulus, not a wait): at 10 r/s
    // without burst, two passes are at least 100 ms apart.
    let started = Instant::now();
    let (mut passed, mut refused) = (0u64, 0u64);
    while started.elapsed() < Duration::from_secs(1) {
        match connection.get("/").await.status {
            StatusCode::OK => passed += 1,
            StatusCode::SERVICE_UNAVAILABLE => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    assert!(
        passed <= 1 + elapsed_ms / 100,
        "{passed} passed in {elapsed_ms} ms at 10 r/s"
    );
    // Not a speed target: requests kept coming, so more than the first passed, and some
    // came too soon.
    assert!(
        passed >= 2 && refused >= 1,
        "{passed} passed, {refused} refused in {elapsed_ms} ms"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn queued_requests_are_held_back_to_the_rate() {
    let a = Backend::start("a").await;
    let zone = "limit_req_zone $binary_remote_addr zone=one:1m rate=2r/s;";
    let (dir, limits) = logged("limit_req zone=one burst=3;");
    let proxy = Proxy::start(&conf(&with_format(zone), &limits), &[("a", a.addr)]).await;
    let answers = burst(proxy.addr, "/", 5).await;
    assert_eq!(statuses(&answers), (4, 1), "{answers:?}");
    // The three queued requests leave at the rate: ~500, ~1000 and ~1500 ms (less the few ms
    // the requests took to arrive, which the bucket drained meanwhile).
    let times = passed_times(&answers);
    for (queued, time) in times.iter().enumerate().skip(1) {
        let at_least = Duration::from_millis(queued as u64 * 500 - 100);
        assert!(*time >= at_least, "queued request {queued}: {times:?}");
    }
    let decided = decisions(&dir, 5).await;
    assert_eq!(
        decided,
        [
            "200 DELAYED -",
            "200 DELAYED -",
            "200 DELAYED -",
            "200 PASSED -",
            "503 REJECTED -"
        ]
    );
    proxy.stop().await;
}

#[tokio::test]
async fn delay_lets_the_first_of_a_burst_through_at_once() {
    let a = Backend::start("a").await;
    let zone = "limit_req_zone $binary_remote_addr zone=one:1m rate=2r/s;";
    let (dir, limits) = logged("limit_req zone=one burst=4 delay=2;");
    let proxy = Proxy::start(&conf(&with_format(zone), &limits), &[("a", a.addr)]).await;
    let answers = burst(proxy.addr, "/", 6).await;
    assert_eq!(statuses(&answers), (5, 1), "{answers:?}");
    // Three pass at once (excess up to 2), the fourth and fifth wait ~500 and ~1000 ms.
    let decided = decisions(&dir, 6).await;
    let delayed = decided
        .iter()
        .filter(|line| line.contains("DELAYED"))
        .count();
    assert_eq!(delayed, 2, "{decided:?}");
    let times = passed_times(&answers);
    assert!(times[3] >= Duration::from_millis(400), "{times:?}");
    assert!(times[4] >= Duration::from_millis(900), "{times:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn limit_req_status_answers_and_a_dry_run_only_logs() {
    let a = Backend::start("a").await;
    let limits = "limit_req zone=one; limit_req_status 429;";
    let proxy = Proxy::start(&conf(ONE_PER_SECOND, limits), &[("a", a.addr)]).await;
    let answers = burst(proxy.addr, "/", 3).await;
    let refused: Vec<_> = answers.iter().filter(|(s, _)| s.as_u16() == 429).collect();
    assert_eq!(refused.len(), 2, "{answers:?}");
    proxy.stop().await;

    let (dir, limits) = logged("limit_req zone=one; limit_req_dry_run on;");
    let proxy = Proxy::start(
        &conf(&with_format(ONE_PER_SECOND), &limits),
        &[("a", a.addr)],
    )
    .await;
    let answers = burst(proxy.addr, "/", 3).await;
    assert_eq!(statuses(&answers), (3, 0), "{answers:?}");
    let decided = decisions(&dir, 3).await;
    assert_eq!(
        decided,
        [
            "200 PASSED -",
            "200 REJECTED_DRY_RUN -",
            "200 REJECTED_DRY_RUN -"
        ]
    );
    assert_eq!(a.hits(), 4, "a dry run lets the refused through");
    proxy.stop().await;
}

#[tokio::test]
async fn an_empty_key_is_not_limited() {
    let a = Backend::start("a").await;
    let zone = "limit_req_zone $http_x_user zone=users:1m rate=1r/m;";
    let proxy = Proxy::start(&conf(zone, "limit_req zone=users;"), &[("a", a.addr)]).await;
    let as_user = |user: &str| {
        let mut request = request("GET", "/", "");
        if !user.is_empty() {
            request
                .headers_mut()
                .insert("x-user", user.parse().unwrap());
        }
        send(proxy.addr, request)
    };
    for _ in 0..4 {
        assert_eq!(as_user("").await.status, StatusCode::OK, "no key, no limit");
    }
    assert_eq!(as_user("ann").await.status, StatusCode::OK);
    assert_eq!(as_user("ann").await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        as_user("bob").await.status,
        StatusCode::OK,
        "each key its own bucket"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_request_refused_by_one_limit_is_not_counted_by_the_others() {
    let a = Backend::start("a").await;
    let zones = "limit_req_zone $binary_remote_addr zone=client:1m rate=1r/m; \
                 limit_req_zone $http_x_user zone=user:1m rate=1r/m;";
    let limits = "limit_req zone=client burst=5 nodelay; limit_req zone=user;";
    let proxy = Proxy::start(&conf(zones, limits), &[("a", a.addr)]).await;
    let get_as = |user: Option<&str>| {
        let mut request = request("GET", "/", "");
        if let Some(user) = user {
            request
                .headers_mut()
                .insert("x-user", user.parse().unwrap());
        }
        send(proxy.addr, request)
    };
    assert_eq!(get_as(Some("ann")).await.status, StatusCode::OK);
    // Within the client's burst, over the user's rate: refused, and the client's bucket,
    // held meanwhile, is let go uncounted.
    for _ in 0..3 {
        let status = get_as(Some("ann")).await.status;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    // Without the header the user's key is empty: only the client's limit applies, and it
    // still has its whole burst of five.
    for n in 0..5 {
        assert_eq!(
            get_as(None).await.status,
            StatusCode::OK,
            "burst request {n}"
        );
    }
    assert_eq!(get_as(None).await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.hits(), 6);
    proxy.stop().await;
}

#[tokio::test]
async fn a_flood_of_keys_stays_within_the_zone_size() {
    let a = Backend::start("a").await;
    // 32k is nginx's smallest zone: 256 states of 128 bytes.
    let zone = "limit_req_zone $http_x_key zone=keys:32k rate=1r/m;";
    let proxy = Proxy::start(&conf(zone, "limit_req zone=keys;"), &[("a", a.addr)]).await;
    let mut connection = Connection::open(proxy.addr).await;
    let keyed = |key: usize| {
        let mut request = request("GET", "/", "");
        request
            .headers_mut()
            .insert("x-key", key.to_string().parse().unwrap());
        request
    };
    for key in 0..600 {
        let reply = connection.send(keyed(key)).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "key {key}: the oldest key makes room"
        );
    }
    let snapshot = proxy.snapshot();
    let zone = snapshot.zones.request_zone("keys").expect("the zone");
    assert_eq!(zone.len(), 256, "bounded by the declared size");
    // The most recent keys are remembered (and limited); the oldest were forgotten.
    let recent = connection.send(keyed(599)).await.status;
    assert_eq!(recent, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(connection.send(keyed(0)).await.status, StatusCode::OK);
    assert_eq!(zone.len(), 256);
    proxy.stop().await;
}

#[tokio::test]
async fn a_reload_keeps_the_buckets_of_an_unchanged_zone() {
    let a = Backend::start("a").await;
    let backends = [("a", a.addr)];
    let slow = "limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;";
    let proxy = Proxy::start(&conf(slow, "limit_req zone=one;"), &backends).await;
    assert_eq!(get(proxy.addr, "/").await.status, StatusCode::OK);
    assert_eq!(
        get(proxy.addr, "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Another location changes; the zone does not: the client is still over its rate.
    let more = conf(slow, "limit_req zone=one; add_header X-Reloaded 1;");
    proxy.apply(&more, &backends).await.expect("reload");
    let reply = get(proxy.addr, "/").await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        reply.headers
    );
    // A zone declared anew (another rate) starts afresh.
    let faster = "limit_req_zone $binary_remote_addr zone=one:1m rate=2r/m;";
    proxy
        .apply(&conf(faster, "limit_req zone=one;"), &backends)
        .await
        .expect("reload");
    assert_eq!(get(proxy.addr, "/").await.status, StatusCode::OK);
    proxy.stop().await;
}

const ONE_CONNECTION: &str = "limit_conn_zone $binary_remote_addr zone=addr:1m;";

#[tokio::test]
async fn a_websocket_holds_its_connection_place_until_it_closes() {
    let a = Backend::start("a").await;
    let limits = "limit_conn addr 1;";
    let proxy = Proxy::start(&conf(ONE_CONNECTION, limits), &[("a", a.addr)]).await;
    let url = proxy.url("/ws").replace("http", "ws");
    let (mut ws, response) = within(LIMIT, "the upgrade", tokio_tungstenite::connect_async(url))
        .await
        .expect("WebSocket through tether");
    assert_eq!(response.status(), 101);
    ws.send(Message::text("ping")).await.unwrap();
    within(LIMIT, "the echo", ws.next()).await.unwrap().unwrap();
    // The 101 was answered long ago; the tunnel still counts.
    assert_eq!(
        get(proxy.addr, "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get(proxy.addr, "/free").await.status, StatusCode::OK);
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = within(LIMIT, "the close", ws.next()).await {}
    drop(ws);
    within(LIMIT, "the place to be given back", async {
        while get(proxy.addr, "/").await.status != StatusCode::OK {
            // Polling a condition: the tunnel task ends right after the close.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let zone = proxy.snapshot().zones.connection_zone("addr").cloned();
    assert_eq!(zone.expect("the zone").len(), 0, "nothing left counted");
    proxy.stop().await;
}

#[tokio::test]
async fn an_event_stream_holds_its_place_until_its_body_ends() {
    let a = Backend::start("a").await;
    let limits = "limit_conn addr 1; limit_conn_status 429;";
    let proxy = Proxy::start(&conf(ONE_CONNECTION, limits), &[("a", a.addr)]).await;
    let mut connection = Connection::open(proxy.addr).await;
    let stream = tokio::spawn(async move { connection.get("/sse?n=1").await });
    within(LIMIT, "the stream to be counted", async {
        while get(proxy.addr, "/").await.status != StatusCode::TOO_MANY_REQUESTS {
            // Polling until the stream's request has been counted.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    a.release_event();
    let reply = within(LIMIT, "the stream to end", stream).await.unwrap();
    assert!(reply.body.contains("data:"), "{}", reply.body);
    within(LIMIT, "the place to be given back", async {
        while get(proxy.addr, "/").await.status != StatusCode::OK {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    proxy.stop().await;
}

/// A burst at t=0 through one proxy: how many were refused, and for the ones that passed, in
/// how many 500 ms periods each was answered (0: at once, 1: held ~500 ms, 2: ~1 s).
async fn burst_shape(addr: SocketAddr) -> (usize, Vec<u128>) {
    let answers = burst(addr, "/", 6).await;
    let refused = answers.iter().filter(|(s, _)| s.as_u16() == 503).count();
    let periods = passed_times(&answers)
        .iter()
        .map(|time| (time.as_millis() + 250) / 500)
        .collect();
    (refused, periods)
}

#[tokio::test]
async fn a_burst_is_shaped_as_nginx_shapes_it() {
    let a = Backend::start("a").await;
    let zone = "limit_req_zone $binary_remote_addr zone=one:1m rate=2r/s;";
    for limits in [
        "limit_req zone=one burst=2;",
        "limit_req zone=one burst=3 delay=1;",
    ] {
        let location = format!("location / {{ proxy_pass http://u; {limits} }}");
        // A stall of the machine (other builds share it) makes a request look later than it
        // was, never earlier: a mismatch is measured again, twice at most, each side with a
        // fresh zone.
        let mut shapes = Vec::new();
        for _ in 0..3 {
            let backends = [("a", a.addr)];
            let Some(nginx) = Nginx::start_http(zone, "server {a};", &location, &backends).await
            else {
                return;
            };
            let theirs = burst_shape(nginx.addr).await;
            drop(nginx);
            let proxy = Proxy::start(&conf(zone, limits), &backends).await;
            let ours = burst_shape(proxy.addr).await;
            proxy.stop().await;
            if ours == theirs {
                break;
            }
            shapes.push((ours, theirs));
        }
        assert!(shapes.len() < 3, "{limits}: (tether, nginx) {shapes:?}");
    }
}

/// The lines of `path` once it has `count` of them (bounded wait: the writer is off the
/// request path).
async fn log_lines(path: &std::path::Path, count: usize) -> Vec<String> {
    within(LIMIT, "the access log lines", async {
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            if lines.len() >= count {
                return lines;
            }
            // Polling the file until the writer has caught up.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test]
async fn the_access_log_shows_what_each_limit_decided() {
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limits.log");
    let http_level = format!(
        "{ONE_PER_SECOND} {ONE_CONNECTION} \
         log_format limits '$status $limit_req_status $limit_conn_status';"
    );
    let limits = format!(
        "limit_req zone=one burst=1; limit_conn addr 5; access_log {} limits;",
        path.display()
    );
    let proxy = Proxy::start(&conf(&http_level, &limits), &[("a", a.addr)]).await;
    burst(proxy.addr, "/", 3).await;
    let mut lines = log_lines(&path, 3).await;
    lines.sort();
    // A refused request never reached limit_conn: its variable is not found, logged "-".
    assert_eq!(
        lines,
        ["200 DELAYED PASSED", "200 PASSED PASSED", "503 REJECTED -"]
    );
    proxy.stop().await;
}

/// `log_format limits` next to `http_level`.
fn with_format(http_level: &str) -> String {
    format!("{http_level} log_format limits '$status $limit_req_status $limit_conn_status';")
}

/// `limits` with an access log of what each limit decided, in a fresh folder.
fn logged(limits: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limits.log");
    let limits = format!("{limits} access_log {} limits;", path.display());
    (dir, limits)
}

/// The `count` lines of a [`logged`] access log, sorted.
async fn decisions(dir: &tempfile::TempDir, count: usize) -> Vec<String> {
    let mut lines = log_lines(&dir.path().join("limits.log"), count).await;
    lines.sort();
    lines
}

/// One refused request, one delayed, and one refused connection.
async fn provoke_every_line(proxy: &Proxy, a: &Backend) {
    burst(proxy.addr, "/r", 3).await;
    let holds = || {
        let seen = a.seen();
        seen.iter().filter(|s| s.uri.starts_with("/hold")).count()
    };
    let before = holds();
    let held = tokio::spawn(get(proxy.addr, "/c/hold?ms=400"));
    within(LIMIT, "the held request to reach the backend", async {
        while holds() == before {
            // Polling until the backend has it: from then on it holds its place.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(
        get(proxy.addr, "/c/x").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    within(LIMIT, "the held request", held).await.unwrap();
}

#[tokio::test]
async fn refusals_and_delays_are_logged_as_nginx_logs_them() {
    let a = Backend::start("a").await;
    let conf = "events {} http { \
        limit_req_zone $binary_remote_addr zone=one:1m rate=2r/s; \
        limit_conn_zone $binary_remote_addr zone=addr:1m; \
        upstream up { server {a}; } server { listen {listen}; \
        location /r { limit_req zone=one burst=1; proxy_pass http://up; } \
        location /c/ { limit_conn addr 1; proxy_pass http://up/; } } }";
    // tracing decides once per log statement, when it first runs, whether anyone listens: run
    // every statement once before listening, so that listening recomputes it for this thread.
    let warm = Proxy::start(conf, &[("a", a.addr)]).await;
    provoke_every_line(&warm, &a).await;
    warm.stop().await;
    let logs = Logs::capture();
    let proxy = Proxy::start(conf, &[("a", a.addr)]).await;
    // A stall on a loaded machine only makes the burst look slower (a refusal becomes a
    // delay or a pass), never the other way: provoke again, at most three times, until every
    // line was written.
    for _ in 0..3 {
        provoke_every_line(&proxy, &a).await;
        let written = ["limiting requests, excess: ", "delaying request, excess: "]
            .iter()
            .all(|line| !logs.lines_with(line).is_empty());
        if written {
            break;
        }
        // The bucket drains at 2 r/s: an empty one makes the next burst like the first.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let refused = logs.lines_with("limiting requests, excess: ");
    assert!(!refused.is_empty(), "{refused:?}");
    assert!(refused[0].contains("ERROR"), "{refused:?}");
    assert!(refused[0].contains(" by zone \"one\""), "{refused:?}");
    assert!(
        refused[0].contains("request=GET /r HTTP/1.1"),
        "{refused:?}"
    );
    // Delays one level below refusals.
    let delayed = logs.lines_with("delaying request, excess: ");
    assert!(!delayed.is_empty(), "{delayed:?}");
    assert!(delayed[0].contains("WARN"), "{delayed:?}");
    let connections = logs.lines_with("limiting connections by zone \"addr\"");
    assert!(!connections.is_empty(), "{connections:?}");
    assert!(connections[0].contains("ERROR"), "{connections:?}");
    proxy.stop().await;
}
