//! Conditions that persist or repeat, logged once per change or at most once a second: a
//! server's health verdict, the connection ceiling, accept() out of descriptors.

use std::process::Command;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::{LIMIT, Logged, assert_nginx_shaped, lines_with};
use crate::harness::Backend;
use crate::harness::process::tether_binary;
use crate::harness::session::{Gate, eventually};

#[tokio::test]
async fn health_transitions_are_logged_once_per_change_at_their_level() {
    let backend = Backend::start("a").await;
    let mut gate = Gate::open(backend.addr).await;
    let tether = Logged::start(&format!(
        "error_log logs/error.log info;
         http {{
           upstream farm {{ server {}; health_check interval=50ms fails=1 passes=1 uri=/health; }}
           server {{ listen {{listen}}; location / {{ proxy_pass http://farm; }} }}
         }}",
        gate.addr
    ))
    .await;
    let log = "logs/error.log";
    let up = tether.lines_with(log, "upstream server is up", 1).await;
    assert!(
        up[0].contains("[info] "),
        "coming up at start is no warning: {up:?}"
    );

    gate.close().await;
    let down = tether.lines_with(log, "upstream server is down", 1).await;
    assert!(down[0].contains("[warn] "), "{down:?}");
    assert!(
        down[0].contains("health check failed: connect() failed (111: Connection refused)"),
        "{down:?}"
    );
    // Probes that find it down again and again: the verdict stands, nothing more is said.
    let probes = backend.hits();
    gate.reopen().await;
    let back = tether
        .lines_with(log, "upstream server is back up", 1)
        .await;
    assert!(back[0].contains("[info] "), "{back:?}");
    // Ten more passing probes: still one line per change.
    let what = "ten more probes";
    eventually(LIMIT, what, || {
        let done = backend.hits() >= probes + 10;
        async move { done }
    })
    .await;
    let text = tether.read(log);
    assert_eq!(lines_with(&text, "upstream server is").len(), 3, "{text}");
    assert_eq!(lines_with(&text, "is down").len(), 1, "{text}");
}

#[tokio::test]
async fn the_connection_ceiling_is_reported_at_most_once_a_second_and_names_its_limit() {
    let tether = Logged::start(
        "worker_processes 1; events { worker_connections 2; }
         error_log logs/error.log warn;
         http { server { listen {listen}; location / { return 200 ok; } } }",
    )
    .await;
    // Idle connections, one every 2 ms for 2.5 s: each new one finds the ceiling.
    let started = Instant::now();
    let mut held = Vec::new();
    while started.elapsed() < Duration::from_millis(2500) {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(tether.addr)).await
        {
            held.push(stream);
        }
        if held.len() > 64 {
            held.remove(0);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let lines = tether
        .lines_with("logs/error.log", "at the ceiling", 1)
        .await;
    assert_nginx_shaped(&lines);
    assert!(
        lines[0].contains(
            "client connections at the ceiling of 2 (worker_connections 2 × 1 worker(s))"
        ),
        "{lines:?}"
    );
    assert!(
        lines.len() as f64 <= elapsed.ceil() + 1.0,
        "{} lines in {elapsed:.1} s: {lines:#?}",
        lines.len()
    );
}

#[tokio::test]
async fn accept_failing_for_want_of_descriptors_is_reported_at_most_once_a_second() {
    let mut command = Command::new(tether_binary());
    // SAFETY: setrlimit(2) between fork and exec touches only the child's own limits.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 48,
                rlim_max: 48,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let tether = Logged::start_with(
        "worker_processes 1; error_log logs/error.log warn;
         http { server { listen {listen}; location / { return 200 ok; } } }",
        command,
    )
    .await;
    // More connections held open than tether has descriptors for.
    let started = Instant::now();
    let mut held = Vec::new();
    for _ in 0..80 {
        if let Ok(stream) = TcpStream::connect(tether.addr).await {
            held.push(stream);
        }
    }
    tether.lines_with("logs/error.log", "accept", 1).await;
    // Out of descriptors for the 2.5 s that follow.
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(started.elapsed())).await;
    let elapsed = started.elapsed().as_secs_f64();
    let lines = lines_with(&tether.read("logs/error.log"), "accept");
    assert!(
        lines[0].contains("accept4() failed (24: Too many open files)"),
        "{lines:?}"
    );
    assert!(
        lines.len() as f64 <= elapsed.ceil() + 1.0,
        "{} lines in {elapsed:.1} s: {lines:#?}",
        lines.len()
    );
    drop(held);
}
