//! The Redis sync rate of `sticky learn ... sync=redis://`: two zones stand for one zone on two
//! tether instances, each with its own sync task, on a real redis-server (Debian's package)
//! started on a free loopback port.
//!
//! - *burst*: 50,000 sessions learned on A at once; how fast A writes them (SET + PUBLISH,
//!   pipelined) and B stores them.
//! - *one at a time*: a session learned on A, then the time until B's table has it (the
//!   staleness a client sees when its next request lands on the other instance), 500 times.
//!
//! Run: `cargo bench --bench session_sync` (skips with a line when redis-server is missing).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tether::session_sync::{SyncHandle, spawn_sync};
use tether::sessions::{SessionZone, clock};

const BURST: u64 = 50_000;
const SINGLES: usize = 500;
const VALUE: &str = "4f2a9c0d11e3b7a5";

/// A redis-server child, killed on drop.
struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--port", &port.to_string()])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        eprintln!("SKIPPED session_sync bench: redis-server not installed");
        return;
    };
    let _redis = Redis(child);
    let url = format!("redis://127.0.0.1:{port}/0");
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(run(&url));
}

async fn run(url: &str) {
    let (a, a_sync) = instance(url);
    let (b, b_sync) = instance(url);
    until(|| a_sync.stats().connected && b_sync.stats().connected).await;

    let started = Instant::now();
    let now = clock::now_ms();
    for i in 0..BURST {
        a.learn(format!("burst-{i:016}").as_bytes(), VALUE, now);
    }
    let queued = started.elapsed();
    // Sessions the outbox had no room for are dropped (and counted), not written.
    until(|| a_sync.stats().published + a_sync.stats().dropped == BURST).await;
    let written = started.elapsed();
    let sent = a_sync.stats().published;
    until(|| b_sync.stats().received == sent).await;
    let received = started.elapsed();
    let rate = |elapsed: Duration| sent as f64 / elapsed.as_secs_f64();
    println!(
        "burst of {BURST}: queued in {queued:.1?} ({:.0} ns a learn), written by A in \
         {written:.1?} ({:.0}/s), stored by B in {received:.1?} ({:.0}/s); dropped {}",
        queued.as_nanos() as f64 / BURST as f64,
        rate(written),
        rate(received),
        a_sync.stats().dropped,
    );

    let mut delays = Vec::with_capacity(SINGLES);
    for i in 0..SINGLES {
        let key = format!("single-{i}");
        let started = Instant::now();
        a.learn(key.as_bytes(), VALUE, clock::now_ms());
        while b.lookup(key.as_bytes(), clock::now_ms()).is_none() {
            tokio::task::yield_now().await;
        }
        delays.push(started.elapsed());
    }
    delays.sort();
    let at = |q: f64| delays[((delays.len() - 1) as f64 * q) as usize];
    println!(
        "learned on A -> known on B, {SINGLES} one at a time: p50 {:.0?}, p99 {:.0?}, max {:.0?}",
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

fn instance(url: &str) -> (Arc<SessionZone>, SyncHandle) {
    let zone = Arc::new(SessionZone::new(
        "bench",
        64 << 20,
        Duration::from_secs(600),
    ));
    let sync = spawn_sync(zone.clone(), url, Duration::from_secs(60));
    (zone, sync)
}

/// Polls `condition`, giving up after a minute.
async fn until(condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
