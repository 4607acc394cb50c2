//! The real binary stopped from outside: `tether -s quit` and SIGQUIT stop it gracefully (up to
//! `shutdown_timeout`, or nginx's `worker_shutdown_timeout`), `tether -s stop` and SIGTERM at
//! once; each removes its pid file; and a SIGHUP sent as soon as the pid file exists reloads
//! rather than kills it.

use std::time::{Duration, Instant};

use super::{LIMIT, refuses, until_held};
use crate::harness::load::try_get;
use crate::harness::process::{TetherProcess, signal};
use crate::harness::session::eventually;
use crate::harness::{Backend, within};

/// `tether.conf` with one upstream server and `shutdown`: a main-context directive.
fn binary_conf(a: &Backend, shutdown: &str) -> String {
    format!(
        "{shutdown}\nevents {{}}\nhttp {{\n  upstream up {{ server {}; }}\n  server {{ listen {{listen}}; location / {{ proxy_pass http://up; }} }}\n}}\n",
        a.addr
    )
}

#[tokio::test]
async fn the_binary_stops_gracefully_on_s_quit_and_removes_its_pid_file() {
    let a = Backend::start("a").await;
    let mut tether = TetherProcess::start(&binary_conf(&a, "shutdown_timeout 3s;")).await;
    let pid: u32 = std::fs::read_to_string(tether.pid_file())
        .expect("the pid file beside the config")
        .trim()
        .parse()
        .expect("a pid");
    assert_eq!(pid, tether.process.pid());

    let held = tokio::spawn(try_get(tether.addr, "/hold?ms=1500"));
    until_held(&a, 1).await;
    tether.send("quit");
    eventually(
        Duration::from_secs(1),
        "new connections to be refused",
        || refuses(tether.addr),
    )
    .await;
    assert!(!held.is_finished(), "the held request is still running");

    let reply = within(LIMIT, "the held request", held)
        .await
        .unwrap()
        .expect("the held request completes");
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (200, "a held")
    );
    tether
        .process
        .exits_cleanly_within(Duration::from_secs(3))
        .await;
    assert!(!tether.pid_file().exists(), "the pid file is removed");
}

#[tokio::test]
async fn the_binary_cuts_requests_at_worker_shutdown_timeout_on_sigquit() {
    let a = Backend::start("a").await;
    // nginx's name for the directive is accepted too.
    let mut tether = TetherProcess::start(&binary_conf(&a, "worker_shutdown_timeout 1s;")).await;
    let held = tokio::spawn(try_get(tether.addr, "/hold?ms=10000"));
    until_held(&a, 1).await;
    let started = Instant::now();
    signal(tether.process.pid(), libc::SIGQUIT);
    tether
        .process
        .exits_cleanly_within(Duration::from_secs(4))
        .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "it waited the timeout ({took:?})"
    );
    assert!(
        took < Duration::from_secs(3),
        "not the whole hold ({took:?})"
    );
    let cut = within(Duration::from_secs(1), "the held request", held)
        .await
        .unwrap();
    assert!(cut.is_err(), "cut at the timeout: {cut:?}");
    assert!(!tether.pid_file().exists(), "the pid file is removed");
}

/// Starts the binary with a request held for 10 s, stops it with `how`, and expects it gone
/// within a second, the request cut and the pid file removed.
async fn stops_promptly(how: impl FnOnce(&TetherProcess)) {
    let a = Backend::start("a").await;
    let mut tether = TetherProcess::start(&binary_conf(&a, "shutdown_timeout 3s;")).await;
    let held = tokio::spawn(try_get(tether.addr, "/hold?ms=10000"));
    until_held(&a, 1).await;
    let started = Instant::now();
    how(&tether);
    tether
        .process
        .exits_cleanly_within(Duration::from_secs(1))
        .await;
    let cut = within(Duration::from_secs(1), "the held request", held)
        .await
        .unwrap();
    assert!(cut.is_err(), "a fast stop cuts it: {cut:?}");
    assert!(!tether.pid_file().exists(), "the pid file is removed");
    eprintln!("stopped in {:?}", started.elapsed());
}

#[tokio::test]
async fn the_binary_stops_at_once_on_s_stop() {
    stops_promptly(|tether| tether.send("stop")).await;
}

#[tokio::test]
async fn the_binary_stops_at_once_on_sigterm() {
    stops_promptly(|tether| signal(tether.process.pid(), libc::SIGTERM)).await;
}

#[tokio::test]
async fn a_reload_signal_sent_as_soon_as_the_pid_file_exists_does_not_kill_the_binary() {
    // What `ExecReload=kill -HUP $MAINPID` or a deploy script does right after a start: the
    // pid file says tether is there, so its signals must be handled by then, as nginx's are.
    let a = Backend::start("a").await;
    let mut tether = TetherProcess::spawn(&binary_conf(&a, ""));
    // Watched closely (no pause between looks, bounded): a signal sent milliseconds late
    // would miss the window this is about.
    let pid_file = tether.pid_file();
    let deadline = Instant::now() + LIMIT;
    while !std::fs::read_to_string(&pid_file).is_ok_and(|t| !t.trim().is_empty()) {
        assert!(Instant::now() < deadline, "no pid file after {LIMIT:?}");
        std::thread::yield_now();
    }
    signal(tether.process.pid(), libc::SIGHUP);
    let reply = within(LIMIT, "an answer after the SIGHUP", async {
        loop {
            if let Some(status) = tether.process.exit_within(Duration::ZERO).await {
                panic!("tether died of the SIGHUP ({status})");
            }
            if let Ok(reply) = try_get(tether.addr, "/").await {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "a"));
    assert!(
        tether.process.exit_within(Duration::ZERO).await.is_none(),
        "still running"
    );
}
