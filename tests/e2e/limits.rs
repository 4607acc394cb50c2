//! The limits that keep slow and hostile clients from holding tether: `client_body_timeout`
//! and `send_timeout` on HTTP/1 and HTTP/2 (each also proving the upstream connection was let
//! go, as the backend sees it), idle HTTP/2 connections closed with GOAWAY, shedding at the
//! connection ceiling, and `large_client_header_buffers` / `client_max_headers`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::harness::h2_frames::{self, DATA, END_STREAM, GOAWAY, HEADERS};
use crate::harness::h2_window;
use crate::harness::logs::Logs;
use crate::harness::raw::{RawBackend, exchange, parse_responses, read_response, read_to_close};
use crate::harness::slowloris::Slowloris;
use crate::harness::witness::{Sighting, Witness};
use crate::harness::{Proxy, get, within};
use tether::process::raise_soft_open_files;

const LIMIT: Duration = Duration::from_secs(8);
const BIG: u64 = 64 << 20;

fn conf(http_level: &str) -> String {
    format!(
        "events {{}} http {{ {http_level} upstream up {{ server {{a}}; }} \
         server {{ listen {{listen}}; location / {{ proxy_pass http://up; }} }} }}"
    )
}

async fn proxy_to(witness: &Witness, http_level: &str) -> Proxy {
    Proxy::start(&conf(http_level), &[("a", witness.addr)]).await
}

#[tokio::test]
async fn a_client_that_stalls_mid_body_gets_408_and_its_upstream_connection_is_let_go() {
    let backend = Witness::start().await;
    let proxy = proxy_to(&backend, "client_body_timeout 1s;").await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    // Taken before the bytes go: tether's timer cannot start earlier, so a slow test thread
    // cannot make the timeout look early.
    let stalled = Instant::now();
    client
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    backend.wait_request(LIMIT, "/upload").await;
    let read = backend
        .wait_for(LIMIT, "tether to let the upstream go", Sighting::body_cut)
        .await;
    let released = stalled.elapsed();
    assert!(read < 100, "the backend got the whole body ({read} bytes)");
    let answers = parse_responses(&read_to_close(&mut client, LIMIT).await);
    let closed = stalled.elapsed();
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [408], "the stalled client is told 408");
    assert!(
        released >= Duration::from_millis(900) && closed < Duration::from_secs(4),
        "upstream let go after {released:?}, client closed after {closed:?}: expected ~1 s"
    );
}

#[tokio::test]
async fn an_h2_stream_whose_body_stalls_is_ended_and_its_upstream_let_go() {
    let backend = Witness::start().await;
    let proxy = proxy_to(&backend, "client_body_timeout 1s;").await;
    let client = h2_window::connect(proxy.addr, 65_535).await;
    let request = http::Request::post(format!("http://{}/upload", proxy.addr))
        .header("content-length", "100")
        .body(())
        .unwrap();
    let mut ready = client.clone().ready().await.unwrap();
    let (response, mut upload) = ready.send_request(request, false).unwrap();
    // Before the data goes (see above).
    let stalled = Instant::now();
    upload
        .send_data(Bytes::from_static(b"0123456789"), false)
        .unwrap();
    let read = backend
        .wait_for(LIMIT, "tether to let the upstream go", Sighting::body_cut)
        .await;
    assert!(read < 100, "the backend got the whole body ({read} bytes)");
    let answer = within(LIMIT, "the stalled stream's answer", response).await;
    let ended = stalled.elapsed();
    println!(
        "the stalled stream ended after {ended:?}: {:?}",
        answer.as_ref().map(|r| r.status())
    );
    match &answer {
        Ok(response) => assert_eq!(response.status(), 408),
        Err(error) => assert!(error.is_reset(), "ended by {error:?}"),
    }
    assert!(
        ended >= Duration::from_millis(900) && ended < Duration::from_secs(4),
        "the stalled stream ended after {ended:?}, expected ~1 s"
    );
    // One stream timed out, not the connection.
    assert_eq!(
        h2_window::text(&client, proxy.addr, "/next", LIMIT).await,
        (200, "read 0".into())
    );
    drop(upload);
}

#[tokio::test]
async fn a_client_that_never_reads_a_big_response_is_closed_after_send_timeout() {
    let backend = Witness::start().await;
    let proxy = proxy_to(&backend, "send_timeout 1s;").await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let asked = Instant::now();
    let head = format!("GET /big?bytes={BIG} HTTP/1.1\r\nHost: x\r\n\r\n");
    client.write_all(head.as_bytes()).await.unwrap();
    // The client reads nothing while tether's writes stall and the backend's with them.
    let written = backend
        .wait_for(
            LIMIT,
            "the backend's response write to fail",
            Sighting::write_failed,
        )
        .await;
    let released = asked.elapsed();
    assert!(written < BIG, "the backend wrote it all");
    assert!(
        released >= Duration::from_millis(900),
        "let go after {released:?}, before send_timeout could pass"
    );
    // Then tether has closed the client: what is left in the buffers, and the end.
    let received = read_to_close(&mut client, LIMIT).await;
    assert!(
        (received.len() as u64) < BIG,
        "the client got the whole body"
    );
    assert!(received.starts_with(b"HTTP/1.1 200"));
    println!("send_timeout: upstream let go after {released:?}, {written} of {BIG} bytes written");
}

#[tokio::test]
async fn an_h2_stream_stuck_at_a_closed_window_is_reset_and_the_connection_keeps_serving() {
    let backend = Witness::start().await;
    let proxy = proxy_to(&backend, "send_timeout 1s;").await;
    const WINDOW: u32 = 1024;
    let client = h2_window::connect(proxy.addr, WINDOW).await;
    let mut ready = client.clone().ready().await.unwrap();
    let path = format!("/big?bytes={BIG}");
    let (response, _) = ready
        .send_request(h2_window::get(proxy.addr, &path), true)
        .unwrap();
    let response = within(LIMIT, "the big response's head", response)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    // The window is never opened: after WINDOW bytes, the stream waits on the client.
    let first = within(LIMIT, "the first data", body.data()).await;
    let stuck = Instant::now();
    let mut received = first.expect("data").expect("data").len();
    // Another stream of the same connection is served meanwhile.
    assert_eq!(
        h2_window::text(&client, proxy.addr, "/beside", LIMIT).await,
        (200, "read 0".into())
    );
    let ended = within(LIMIT, "the stuck stream to be reset", async {
        loop {
            match body.data().await {
                Some(Ok(data)) => received += data.len(),
                Some(Err(error)) => return error,
                None => panic!("the stuck stream ended as if complete"),
            }
        }
    })
    .await;
    let reset_after = stuck.elapsed();
    assert!(ended.is_reset(), "ended by {ended:?}");
    assert!(
        received <= WINDOW as usize,
        "{received} bytes past a {WINDOW} byte window"
    );
    let written = backend
        .wait_for(
            LIMIT,
            "the backend's response write to fail",
            Sighting::write_failed,
        )
        .await;
    assert!(written < BIG);
    assert!(
        reset_after >= Duration::from_millis(500) && reset_after < Duration::from_secs(4),
        "reset {reset_after:?} after the window closed, expected ~1 s"
    );
    assert_eq!(
        h2_window::text(&client, proxy.addr, "/after", LIMIT).await,
        (200, "read 0".into())
    );
}

#[tokio::test]
async fn an_h2_connection_that_never_opens_a_stream_is_closed_after_client_header_timeout() {
    let backend = Witness::start().await;
    let proxy = proxy_to(&backend, "client_header_timeout 1s; keepalive_timeout 30s;").await;
    let connecting = Instant::now();
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(&h2_frames::opening()).await.unwrap();
    let opened = Instant::now();
    // The preface and an empty SETTINGS frame, then silence: no ACK, no PING answered.
    let received = h2_frames::until_close(&mut stream, false, LIMIT).await;
    let timer = (connecting, opened);
    expect_goaway_about_a_second_after(&received, timer, "the connection opened");
}

/// The connection got GOAWAY about a second (the configured timeout) after `what`, and was
/// then closed. `what` happened between the two instants of `timer`: the lower bound counts
/// from the first (tether's timer cannot have started earlier), the upper from the second (it
/// has surely started by then), so neither depends on how promptly this test was scheduled.
fn expect_goaway_about_a_second_after(
    received: &h2_frames::Received,
    timer: (Instant, Instant),
    what: &str,
) {
    let kinds = received.kinds();
    let goaway = received
        .first(|f| f.kind == GOAWAY)
        .unwrap_or_else(|| panic!("no GOAWAY; frames {kinds:?}"));
    let (at_most, at_least) = (goaway - timer.0, goaway - timer.1);
    assert!(
        at_most >= Duration::from_millis(900) && at_least < Duration::from_secs(3),
        "GOAWAY {at_least:?} to {at_most:?} after {what}, expected ~1 s"
    );
    assert!(
        received.closed,
        "still open after the GOAWAY; frames {kinds:?}"
    );
}

#[tokio::test]
async fn an_h2_connection_idle_after_its_stream_gets_goaway_after_keepalive_timeout() {
    let backend = Witness::start().await;
    let proxy = proxy_to(&backend, "client_header_timeout 30s; keepalive_timeout 1s;").await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let mut opening = h2_frames::opening();
    opening.extend(h2_frames::get(1, "localhost", "/once"));
    // The stream cannot end before it is asked for.
    let asked = Instant::now();
    stream.write_all(&opening).await.unwrap();
    // A polite client: it answers PINGs, so a graceful GOAWAY can complete.
    let received = h2_frames::until_close(&mut stream, true, LIMIT).await;
    let answered = received
        .first(|f| f.stream == 1 && f.flags & END_STREAM != 0 && [DATA, HEADERS].contains(&f.kind))
        .unwrap_or_else(|| panic!("stream 1 was never answered; frames {:?}", received.kinds()));
    let timer = (asked, answered);
    expect_goaway_about_a_second_after(&received, timer, "the last stream ended");
}

#[tokio::test]
async fn at_the_ceiling_idle_connections_are_shed_oldest_first_and_a_request_in_flight_never() {
    let logs = Logs::capture();
    let backend = Witness::start().await;
    let conf = "worker_processes 1; events { worker_connections 50; } \
                http { client_header_timeout 30s; upstream up { server {a}; } \
                server { listen {listen}; location / { proxy_pass http://up; } } }";
    let proxy = Proxy::start(conf, &[("a", backend.addr)]).await;
    // The oldest connection of all waits on a long poll: busy, so never shed.
    let mut long_poll = TcpStream::connect(proxy.addr).await.unwrap();
    long_poll
        .write_all(b"GET /park HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    backend.wait_request(LIMIT, "/park").await;
    const ATTACKERS: usize = 150;
    let mut slowloris = Slowloris::attack(proxy.addr, ATTACKERS).await;

    let asked = Instant::now();
    let reply = within(
        LIMIT,
        "a normal client's answer",
        get(proxy.addr, "/normal"),
    )
    .await;
    let latency = asked.elapsed();
    println!("ceiling 50, {ATTACKERS} slowloris: a normal request took {latency:?}");
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (200, "read 0")
    );
    // Everyone queued before the normal client was let in: at most 48 of them fit beside it.
    slowloris.wait_closed(ATTACKERS - 48, LIMIT).await;
    assert!(!slowloris.is_open(0), "the oldest slowloris is shed first");
    assert!(
        slowloris.is_open(ATTACKERS - 1),
        "the youngest slowloris outlived older ones"
    );

    backend.release_parked();
    let answer = read_response(&mut long_poll, LIMIT).await;
    assert_eq!(
        (answer.status, answer.body.as_slice()),
        (200, &b"parked"[..])
    );
    let warnings = logs.lines_with("at the ceiling");
    let seconds = asked.elapsed().as_secs() as usize;
    assert!(
        !warnings.is_empty() && warnings.len() <= seconds + 2,
        "the shortage is logged, at most once a second: {warnings:#?}"
    );
    println!(
        "{} slowloris shed; shortage logged {} time(s)",
        slowloris.closed(),
        warnings.len()
    );
}

#[tokio::test]
async fn without_worker_connections_the_ceiling_follows_the_open_file_limit() {
    let open_files = raise_soft_open_files();
    if open_files < 4096 {
        println!("skipped: the open-file limit ({open_files}) leaves no room to tell");
        return;
    }
    let logs = Logs::capture();
    let backend = Witness::start().await;
    let conf = "worker_processes 1; events {} \
                http { client_header_timeout 30s; upstream up { server {a}; } \
                server { listen {listen}; location / { proxy_pass http://up; } } }";
    let proxy = Proxy::start(conf, &[("a", backend.addr)]).await;
    // More than nginx's 512 per worker: the ceiling is the open-file limit's, not that.
    const IDLE: usize = 600;
    let slowloris = Slowloris::attack(proxy.addr, IDLE).await;
    let reply = within(
        LIMIT,
        "a normal client's answer",
        get(proxy.addr, "/normal"),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(slowloris.closed(), 0, "nothing was shed below the ceiling");
    assert!(logs.lines_with("at the ceiling").is_empty());
    let expected = (open_files as usize - 64) / 2;
    let capped = logs.lines_with("client connections capped");
    assert!(
        capped
            .iter()
            .any(|line| line.ends_with(&format!("limit={expected}"))),
        "the ceiling is (open files - 64) / 2 = {expected}: {capped:#?}"
    );
}

#[tokio::test]
async fn over_long_lines_and_heads_and_too_many_headers_are_refused_with_nginx_statuses() {
    let logs = Logs::capture();
    let backend = RawBackend::start().await;
    let conf = "events {} http { large_client_header_buffers 2 1k; client_max_headers 6; \
                upstream up { server {a}; } \
                server { listen {listen}; location / { proxy_pass http://up; } } }";
    let proxy = Proxy::start(conf, &[("a", backend.addr)]).await;
    let line =
        |name: &str, length: usize| format!("{name}: {}\r\n", "v".repeat(length - name.len() - 4));
    let too_large = "Request Header Or Cookie Too Large";
    let cases = [
        (
            "a 1.5 KB request line",
            format!(
                "GET /{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                "u".repeat(1500)
            ),
            414,
            "414",
        ),
        (
            "a 1.5 KB header line",
            format!(
                "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}\r\n",
                line("X-Long", 1502)
            ),
            400,
            too_large,
        ),
        (
            // nginx 1.22 takes three (its 1k client_header_buffer_size comes on top of the
            // two large buffers) and refuses four.
            "four 900-byte header lines (3.6 KB in all)",
            format!(
                "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}\r\n",
                ["X-A", "X-B", "X-C", "X-D"]
                    .map(|name| line(name, 902))
                    .concat()
            ),
            400,
            too_large,
        ),
        (
            "seven header lines",
            format!(
                "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}\r\n",
                (1..=5)
                    .map(|i| line(&format!("X-{i}"), 10))
                    .collect::<String>()
            ),
            431,
            "431",
        ),
    ];
    // (case, statuses, whether the page carries the title): every case, then one verdict.
    let mut answered = Vec::new();
    let mut expected = Vec::new();
    for (shown, request, status, title) in cases {
        let answers = exchange(proxy.addr, request.as_bytes(), LIMIT).await;
        let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
        let titled = answers
            .first()
            .is_some_and(|r| String::from_utf8_lossy(&r.body).contains(title));
        answered.push((shown, statuses, titled));
        expected.push((shown, vec![status], true));
    }
    assert_eq!(answered, expected);
    // Just inside every limit: six header lines, one of 900 bytes, 1 KB in all.
    let fits = format!(
        "GET /fits HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}{}{}{}\r\n",
        line("X-1", 12),
        line("X-2", 12),
        line("X-3", 12),
        line("X-A", 902)
    );
    let answers = exchange(proxy.addr, fits.as_bytes(), LIMIT).await;
    assert_eq!(answers.iter().map(|r| r.status).collect::<Vec<_>>(), [200]);
    let forwarded: Vec<String> = backend.requests().into_iter().map(|r| r.line).collect();
    assert_eq!(
        forwarded,
        ["GET /fits"],
        "nothing refused reached the backend"
    );
    for reason in [
        "client sent too long URI",
        "client sent too long header line",
        "client sent too many header lines",
    ] {
        assert!(!logs.lines_with(reason).is_empty(), "logged: {reason}");
    }
}
