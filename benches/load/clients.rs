//! The load generators: `wrk` (a Debian package, run as a child on the client core) for
//! HTTP/1.1 (plain and https), `h2load` (nghttp2-client) for HTTP/2 over TLS, and the bench's own small clients where no packaged tool fits: WebSockets held open
//! or echoing 1 KiB messages, SSE streams counting events, and one raw GET to read a header.
//!
//! The TLS handshake client is in `tls.rs`; WebSockets here open over it for `wss://`.
//!
//! Every client here talks to 127.0.0.1 only, and every wait is bounded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ClientConfig;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::either::Either;

/// What one `wrk` run reported.
#[derive(Clone, Debug, Default)]
pub struct Wrk {
    /// `Requests/sec`.
    pub rps: f64,
    /// Requests completed.
    pub requests: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Socket errors: connect + read + write + timeout.
    pub socket_errors: f64,
    /// `Non-2xx or 3xx responses`.
    pub non_2xx: f64,
}

/// Runs `wrk -t1 -cCONNS -dSECS --latency` against `url` with extra `headers`, on the client
/// core (inherited from the bench process).
pub async fn wrk(url: &str, conns: usize, secs: u64, headers: &[&str]) -> Result<Wrk, String> {
    let mut command = tokio::process::Command::new("wrk");
    command.args(["-t1", "--latency", "--timeout", "2s"]);
    command.arg(format!("-c{conns}")).arg(format!("-d{secs}s"));
    for header in headers {
        command.arg("-H").arg(header);
    }
    let text = stdout_of("wrk", command.arg(url)).await?;
    parse_wrk(&text).ok_or_else(|| format!("unreadable wrk output:\n{text}"))
}

/// Reads the numbers out of wrk's report.
/// Runs a load tool to its end (killed if the bench is dropped first): its output, or an error
/// with everything it printed.
async fn stdout_of(tool: &str, command: &mut tokio::process::Command) -> Result<String, String> {
    let output = command
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("{tool}: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "{tool} {}: {text}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(text)
}

fn parse_wrk(text: &str) -> Option<Wrk> {
    let mut report = Wrk::default();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            report.rps = rest.trim().parse().ok()?;
        } else if let Some(rest) = line.strip_prefix("50%") {
            report.p50_ms = duration_ms(rest.trim())?;
        } else if let Some(rest) = line.strip_prefix("99%") {
            report.p99_ms = duration_ms(rest.trim())?;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            report.socket_errors = rest
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<f64>().ok())
                .sum();
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            report.non_2xx = rest.trim().parse().ok()?;
        } else if line.contains(" requests in ") {
            report.requests = line.split_whitespace().next()?.parse().ok()?;
        }
    }
    (report.rps > 0.0 || report.requests == 0.0).then_some(report)
}

/// wrk's durations: `640.00us`, `1.03ms`, `2.00s`, `1.50m`.
fn duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        _ => return None,
    };
    Some(number * scale)
}

/// What one `h2load` run reported.
#[derive(Clone, Debug, Default)]
pub struct H2load {
    /// Requests per second over the run.
    pub rps: f64,
    /// Requests that succeeded.
    pub succeeded: f64,
    /// Requests that failed, errored or timed out.
    pub failed: f64,
}

/// Runs `h2load -t1 -cCONNS -mSTREAMS -DSECS` (HTTP/2 over TLS by ALPN) against `url`, on the
/// client core (inherited from the bench process).
pub async fn h2load(url: &str, conns: usize, streams: usize, secs: u64) -> Result<H2load, String> {
    let mut command = tokio::process::Command::new("h2load");
    command
        .args(["-t1", &format!("-c{conns}"), &format!("-m{streams}")])
        .arg(format!("-D{secs}"));
    let text = stdout_of("h2load", command.arg(url)).await?;
    parse_h2load(&text).ok_or_else(|| format!("unreadable h2load output:\n{text}"))
}

/// Runs `h2load --h1 -t1 -cCONNS -nREQUESTS` (HTTP/1.1 keep-alive, one request in flight per
/// connection) against `url` with extra `headers`, on the client core.
pub async fn h2load_h1(
    url: &str,
    conns: usize,
    requests: u64,
    headers: &[String],
) -> Result<H2load, String> {
    let mut command = tokio::process::Command::new("h2load");
    command.args([
        "--h1",
        "-t1",
        "-m1",
        &format!("-c{conns}"),
        &format!("-n{requests}"),
    ]);
    for header in headers {
        command.arg("-H").arg(header);
    }
    let text = stdout_of("h2load", command.arg(url)).await?;
    parse_h2load(&text).ok_or_else(|| format!("unreadable h2load output:\n{text}"))
}

/// Reads `finished in 5.00s, 38264.00 req/s, ...` and `requests: N total, N started, N done,
/// N succeeded, N failed, N errored, N timeout`.
fn parse_h2load(text: &str) -> Option<H2load> {
    let mut report = H2load::default();
    let count = |part: &str| part.split_whitespace().next()?.parse::<f64>().ok();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in") {
            let rate = rest.split(',').nth(1)?.trim().strip_suffix(" req/s")?;
            report.rps = rate.parse().ok()?;
        } else if let Some(rest) = line.strip_prefix("requests:") {
            for part in rest.split(',').map(str::trim) {
                if part.ends_with(" succeeded") {
                    report.succeeded = count(part)?;
                } else if part.ends_with(" failed")
                    || part.ends_with(" errored")
                    || part.ends_with(" timeout")
                {
                    report.failed += count(part)?;
                }
            }
        }
    }
    (report.rps > 0.0).then_some(report)
}

/// `GET path` on a fresh connection; the response head.
pub async fn get_head(addr: SocketAddr, path: &str) -> Result<String, String> {
    get_head_within(addr, path, Duration::from_secs(5)).await
}

/// [`get_head`] with the response bounded by `limit`.
pub async fn get_head_within(
    addr: SocketAddr,
    path: &str,
    limit: Duration,
) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut response))
        .await
        .map_err(|_| format!("no response within {limit:?}"))?
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    Ok(text.split("\r\n\r\n").next().unwrap_or("").to_string())
}

/// The value of the first `Set-Cookie` in `head` that sets `name`, as `name=value`.
pub fn set_cookie(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (header, value) = line.split_once(':')?;
        if !header.eq_ignore_ascii_case("set-cookie") {
            return None;
        }
        let pair = value.trim().split(';').next()?.trim();
        pair.strip_prefix(name)?
            .starts_with('=')
            .then(|| pair.to_string())
    })
}

/// The echo payload: 1 KiB.
pub const MESSAGE: usize = 1024;
/// The mask key of our client frames (any key is valid; the backend unmasks).
const MASK: [u8; 4] = [0x5a, 0xa5, 0x3c, 0xc3];

/// A client connection: plain, or TLS (`wss://`).
type Conn = Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

/// One WebSocket client connection, after a successful upgrade.
pub struct Ws {
    stream: BufReader<Conn>,
    frame: Arc<[u8]>,
    answer: Vec<u8>,
}

impl Ws {
    /// Upgrades a fresh connection to `addr` on `/ws` (over TLS with `tls`); fails unless
    /// the answer is a 101.
    pub async fn open(
        addr: SocketAddr,
        frame: Arc<[u8]>,
        tls: Option<&Arc<ClientConfig>>,
    ) -> Result<Ws, String> {
        let stream = match tls {
            Some(config) => Either::Right(Box::new(crate::tls::connect(addr, config).await?)),
            None => {
                let tcp = TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                tcp.set_nodelay(true).map_err(|e| e.to_string())?;
                Either::Left(tcp)
            }
        };
        let mut stream = BufReader::with_capacity(2048, stream);
        let request = "GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n\
                       Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                       Sec-WebSocket-Version: 13\r\n\r\n";
        // Flushed: over TLS, a write may leave its record in rustls's buffer (accepted, not yet
        // sent) when the socket is not ready, and nothing would send it while we read.
        let conn = stream.get_mut();
        conn.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send upgrade: {e}"))?;
        conn.flush()
            .await
            .map_err(|e| format!("send upgrade: {e}"))?;
        let mut status = String::new();
        loop {
            let mut line = String::new();
            let n = stream
                .read_line(&mut line)
                .await
                .map_err(|e| format!("read 101: {e}"))?;
            if n == 0 {
                return Err("closed before the 101".into());
            }
            if status.is_empty() {
                status = line.trim_end().to_string();
            }
            if line == "\r\n" {
                break;
            }
        }
        if !status.contains(" 101") {
            return Err(format!("upgrade answered {status:?}"));
        }
        Ok(Ws {
            stream,
            answer: vec![0; frame.len()],
            frame,
        })
    }

    /// Sends one 1 KiB binary message and reads its echo.
    pub async fn echo(&mut self) -> Result<(), String> {
        let conn = self.stream.get_mut();
        conn.write_all(&self.frame)
            .await
            .map_err(|e| format!("send: {e}"))?;
        conn.flush().await.map_err(|e| format!("send: {e}"))?;
        // The echo is unmasked: 4 header bytes plus the payload.
        let answer = &mut self.answer[..4 + MESSAGE];
        self.stream
            .read_exact(answer)
            .await
            .map_err(|e| format!("read echo: {e}"))?;
        if answer[0] != 0x82 || answer[4] != b'x' {
            return Err("a garbled echo".into());
        }
        Ok(())
    }

    /// `echo` bounded by `limit`.
    pub async fn echo_within(&mut self, limit: Duration) -> Result<(), String> {
        tokio::time::timeout(limit, self.echo())
            .await
            .map_err(|_| format!("no echo within {limit:?}"))?
    }
}

/// The masked client frame carrying a 1 KiB binary message of `x`s.
pub fn message_frame() -> Arc<[u8]> {
    let mut frame = vec![0x82, 0x80 | 126];
    frame.extend_from_slice(&(MESSAGE as u16).to_be_bytes());
    frame.extend_from_slice(&MASK);
    frame.extend((0..MESSAGE).map(|i| b'x' ^ MASK[i % 4]));
    frame.into()
}

/// Opens `count` WebSockets through `addr` (`wss://` with `tls`), `batch` upgrades in flight
/// at a time.
pub async fn open_websockets(
    addr: SocketAddr,
    count: usize,
    batch: usize,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Vec<Ws>, String> {
    let frame = message_frame();
    let mut open = Vec::with_capacity(count);
    while open.len() < count {
        let n = batch.min(count - open.len());
        let opened =
            futures_util::future::join_all((0..n).map(|_| Ws::open(addr, frame.clone(), tls)))
                .await;
        for ws in opened {
            open.push(ws.map_err(|e| format!("WebSocket {} of {count}: {e}", open.len() + 1))?);
        }
    }
    Ok(open)
}

/// SSE streams held open through a proxy, counting the events that arrive and noting how
/// long each took from the backend's write (a proxy that holds events back shows here).
pub struct SseClients {
    connected: Arc<AtomicUsize>,
    events: Arc<AtomicU64>,
    delays: Arc<Mutex<Vec<u64>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl SseClients {
    /// Opens `count` `GET /sse` streams through `addr`.
    pub fn open(addr: SocketAddr, count: usize) -> SseClients {
        let connected = Arc::new(AtomicUsize::new(0));
        let events = Arc::new(AtomicU64::new(0));
        let delays = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..count)
            .map(|_| {
                let counts = (connected.clone(), events.clone(), delays.clone());
                tokio::spawn(async move {
                    let _ = sse_stream(addr, &counts.0, &counts.1, &counts.2).await;
                })
            })
            .collect();
        SseClients {
            connected,
            events,
            delays,
            tasks,
        }
    }

    /// The median delay, in milliseconds, of the events that arrived since the last call
    /// (None if none did), from the backend's write to the client's read.
    pub fn take_median_delay_ms(&self) -> Option<f64> {
        let mut delays =
            std::mem::take(&mut *self.delays.lock().unwrap_or_else(|e| e.into_inner()));
        if delays.is_empty() {
            return None;
        }
        let middle = delays.len() / 2;
        let (_, median, _) = delays.select_nth_unstable(middle);
        Some(*median as f64 / 1000.0)
    }

    /// Streams whose response head arrived.
    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    /// Events received on all streams so far.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }
}

impl Drop for SseClients {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Reads one stream: skips the response head, then counts events and notes their delays.
/// Each event (`data: N`) holds exactly one `:`, and neither chunk-size lines nor the blank
/// lines do, so counting that one byte counts events whatever way the bytes were split into
/// reads or re-chunked by the proxy.
async fn sse_stream(
    addr: SocketAddr,
    connected: &AtomicUsize,
    events: &AtomicU64,
    delays: &Mutex<Vec<u64>>,
) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /sse HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
        .await?;
    let mut buffer = vec![0u8; 4096];
    let mut head = Vec::new();
    loop {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            connected.fetch_add(1, Ordering::Relaxed);
            let body = &head[end + 4..];
            events.fetch_add(colons(body), Ordering::Relaxed);
            break;
        }
    }
    loop {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        let now = crate::backends::event_clock();
        events.fetch_add(colons(&buffer[..n]), Ordering::Relaxed);
        let mut delays = delays.lock().unwrap_or_else(|e| e.into_inner());
        delays.extend(stamps(&buffer[..n]).map(|sent| now.saturating_sub(sent)));
    }
}

/// The stamps of the events read whole in `bytes` (`data: T` and its line end; one split
/// across two reads is counted, not timed).
fn stamps(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes
        .split(|b| *b == b'\n')
        .zip(bytes.split(|b| *b == b'\n').skip(1))
        .filter_map(|(line, _)| line.strip_prefix(b"data: "))
        .filter_map(|digits| std::str::from_utf8(digits).ok()?.parse().ok())
}

fn colons(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b == b':').count() as u64
}

/// Checks the pure parts (run by `cargo test`); panics on the first that does not hold.
pub fn check() {
    let read = b"e\r\ndata: 1500\n\n\r\ne\r\ndata: 2700\n\n\r\ne\r\ndata: 39";
    assert_eq!(stamps(read).collect::<Vec<_>>(), [1500, 2700]);
    // The rest of the split event: its digits are not a stamp.
    assert_eq!(stamps(b"00\n\n\r\n").count(), 0);
    assert_eq!(colons(read), 3);
}
