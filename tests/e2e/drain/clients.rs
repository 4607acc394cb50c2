//! What the real-client drain tests share: reading a client script's report line by line as
//! it comes (each line stamped when read), and the check that reconnects were spread.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};

use tokio::process::{Child, ChildStdout, Command};

use crate::harness::{Proxy, within};

/// How long the next line may take: the clients' start, or a whole drain.
const LIMIT: Duration = Duration::from_secs(20);

/// One line of a client script's report, with when the test read it.
pub struct Event {
    /// The `client` it is about (`usize::MAX` for lines about all of them).
    pub client: usize,
    /// Its `event`.
    pub event: String,
    /// The whole line.
    pub line: Value,
    /// When the test read it.
    pub at: Instant,
}

/// A client script's output, read line by line as it comes.
pub struct Report {
    lines: Lines<BufReader<ChildStdout>>,
    node: Child,
}

impl Report {
    /// Starts the client script `node` (from `SignalrClient::script`) with its output piped,
    /// and reads its report.
    pub fn start(mut command: Command) -> Report {
        let mut node = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start node");
        let stdout = node.stdout.take().expect("node's stdout piped");
        Report {
            lines: BufReader::new(stdout).lines(),
            node,
        }
    }

    /// Reads the first `count` events: each client connected, to `server`.
    pub async fn all_connected_to(&mut self, count: usize, server: &str) {
        for _ in 0..count {
            let connected = self.next().await;
            assert_eq!(connected.event, "connected", "{}", connected.line);
            assert_eq!(connected.line["server"], server, "{}", connected.line);
        }
    }

    /// The next line; a failure with the script's stderr if it ended instead.
    pub async fn next(&mut self) -> Event {
        let line = within(LIMIT, "the clients' next line", self.lines.next_line())
            .await
            .expect("read the clients' output");
        let Some(line) = line else {
            let mut stderr = String::new();
            if let Some(mut pipe) = self.node.stderr.take() {
                let _ = tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut stderr).await;
            }
            panic!("the clients ended early: {stderr}");
        };
        let line: Value = serde_json::from_str(&line).expect("a JSON line");
        Event {
            client: line["client"].as_u64().map_or(usize::MAX, |c| c as usize),
            event: line["event"].as_str().unwrap_or_default().to_string(),
            line,
            at: Instant::now(),
        }
    }
}

/// Asserts that the reconnects of `framework`'s clients, at `times` after the drain began, are
/// spread over `drain` (first to last at least half of it, no two nearer than a quarter of an
/// even share) and all within it (and a second for the handshakes); prints them for the report.
pub fn assert_spread(framework: &str, mut times: Vec<Duration>, drain: Duration) {
    times.sort();
    let clients = times.len();
    let spread = times[clients - 1] - times[0];
    println!("{framework}: drain_timeout {drain:?}, reconnects at {times:?} (spread {spread:?})");
    assert!(spread >= drain / 2, "not spread: {times:?}");
    assert!(
        times[clients - 1] <= drain + Duration::from_secs(1),
        "within the drain_timeout: {times:?}"
    );
    let gaps = times.windows(2).map(|pair| pair[1] - pair[0]);
    let narrowest = gaps.min().unwrap_or_default();
    assert!(
        narrowest >= drain / (4 * clients as u32),
        "a burst: {times:?}"
    );
}

/// When each client's connection was closed and when it reconnected, counted from the drain.
pub struct Drained {
    pub closed: HashMap<usize, Duration>,
    pub reconnected: HashMap<usize, Duration>,
}

/// The proxy, its config for given `server` lines, and the backends those lines name.
pub type Farm<'a> = (&'a Proxy, fn(&str) -> String, &'a [(&'a str, SocketAddr)]);

/// Once all `count` clients of `report` are on `a`, drains `a` (the proxy's config becomes
/// `farm("server {a} drain; server {b};")`) and reads the report to its `done`: each
/// `closed` and `reconnected` line is checked by `check` and timed from the drain.
pub async fn drain_a(
    report: &mut Report,
    count: usize,
    (proxy, farm, backends): Farm<'_>,
    check: impl Fn(&Event),
) -> Drained {
    report.all_connected_to(count, "a").await;
    let drained = Instant::now();
    proxy
        .apply(&farm("server {a} drain; server {b};"), backends)
        .await
        .unwrap();
    let mut closed = HashMap::new();
    let mut reconnected = HashMap::new();
    loop {
        let event = report.next().await;
        let times = match event.event.as_str() {
            "closed" => &mut closed,
            "reconnected" => &mut reconnected,
            "done" => break,
            other => panic!("unexpected {other}: {}", event.line),
        };
        check(&event);
        times.insert(event.client, event.at - drained);
    }
    Drained {
        closed,
        reconnected,
    }
}
