//! Fleets for lifecycle and soak tests: many WebSockets held open at once, a steady HTTP load
//! that counts every failure, tether and nginx run as real processes (killed, with every child,
//! when the handle drops), and what a report needs from `/proc`: resident memory, child
//! processes, installed signal handlers.
//!
//! Everything talks to 127.0.0.1 only, and every wait is bounded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::client::request;
use super::session::{Ws, eventually, websocket};
use super::{Reply, free_addr, within};

// ---------------------------------------------------------------------------------------------
// Clients that report failures instead of panicking (a soak counts them).

/// Sends `request` on `sender`, reading the whole answer; any failure becomes text.
async fn exchange(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    request: http::Request<Full<Bytes>>,
) -> Result<Reply, String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection not ready: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("no response: {e}"))?;
    Reply::read(response)
        .await
        .map_err(|e| format!("body cut: {e}"))
}

/// An HTTP/1.1 connection whose failures are values.
pub struct TryConnection {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl TryConnection {
    /// Connects to `addr`.
    pub async fn open(addr: SocketAddr) -> Result<TryConnection, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        Ok(TryConnection { sender })
    }

    /// `GET path` on this connection.
    pub async fn get(&mut self, path: &str) -> Result<Reply, String> {
        exchange(&mut self.sender, request("GET", path, "")).await
    }
}

/// `GET path` on a fresh connection; failures (refused, cut, no answer) are values.
pub async fn try_get(addr: SocketAddr, path: &str) -> Result<Reply, String> {
    TryConnection::open(addr).await?.get(path).await
}

/// Sends `GET path` on fresh connections until a backend named `name` answers (the sign that
/// a config naming it is serving); every answer must be a 200. Returns how many requests it
/// took. Fails the test after `limit`.
pub async fn until_answered_by(addr: SocketAddr, name: &str, limit: Duration) -> usize {
    within(limit, &format!("an answer from {name}"), async {
        let mut tries = 0;
        loop {
            tries += 1;
            let reply = try_get(addr, "/")
                .await
                .unwrap_or_else(|e| panic!("a request failed while waiting for {name}: {e}"));
            assert_eq!(reply.status, 200, "{reply:?}");
            if reply.header("x-backend") == name {
                return tries;
            }
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// WebSockets held open.

/// One WebSocket held open through a proxy, and the backend that answered its upgrade.
pub struct Held {
    /// The client stream.
    pub ws: Ws,
    /// `x-backend` of the 101.
    pub backend: String,
}

/// Opens `count` WebSockets on `/ws` through `addr`, `batch` handshakes at a time.
pub async fn open_websockets(addr: SocketAddr, count: usize, batch: usize) -> Vec<Held> {
    let mut held = Vec::with_capacity(count);
    while held.len() < count {
        let n = batch.min(count - held.len());
        let opened =
            futures_util::future::join_all((0..n).map(|_| websocket(addr, "/ws", None))).await;
        held.extend(opened.into_iter().map(|(ws, response)| {
            let backend = response
                .headers()
                .get("x-backend")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            Held { ws, backend }
        }));
    }
    held
}

/// Sends `text` and expects it echoed within `limit`; the failure, if any, as text.
pub async fn echo(ws: &mut Ws, text: &str, limit: Duration) -> Result<(), String> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| format!("send: {e}"))?;
    match tokio::time::timeout(limit, ws.next()).await {
        Err(_) => Err(format!("no echo within {limit:?}")),
        Ok(None) => Err("closed".to_string()),
        Ok(Some(Err(e))) => Err(format!("read: {e}")),
        Ok(Some(Ok(message))) if message == Message::text(text) => Ok(()),
        Ok(Some(Ok(other))) => Err(format!("expected the echo, got {other:?}")),
    }
}

/// Echoes one message on every held WebSocket, `batch` at a time; returns the index and
/// failure of each that did not echo.
pub async fn echo_all(held: &mut [Held], tag: &str, batch: usize) -> Vec<(usize, String)> {
    let mut failed = Vec::new();
    for (chunk_index, chunk) in held.chunks_mut(batch).enumerate() {
        let results =
            futures_util::future::join_all(chunk.iter_mut().enumerate().map(|(i, h)| async move {
                let index = chunk_index * batch + i;
                let text = format!("{tag} #{index}");
                (index, echo(&mut h.ws, &text, Duration::from_secs(5)).await)
            }))
            .await;
        failed.extend(
            results
                .into_iter()
                .filter_map(|(index, result)| result.err().map(|e| (index, e))),
        );
    }
    failed
}

// ---------------------------------------------------------------------------------------------
// Server-sent events read piece by piece.

/// Reads the next complete event (`...\n\n`) from `body`, keeping what follows in `pending`.
pub async fn next_event(body: &mut hyper::body::Incoming, pending: &mut String) -> String {
    while !pending.contains("\n\n") {
        let frame = within(Duration::from_secs(5), "the next SSE event", body.frame())
            .await
            .expect("the event stream is still open")
            .expect("an event frame");
        if let Some(data) = frame.data_ref() {
            pending.push_str(std::str::from_utf8(data).expect("UTF-8 events"));
        }
    }
    let end = pending.find("\n\n").expect("a complete event") + 2;
    pending.drain(..end).collect()
}

// ---------------------------------------------------------------------------------------------
// Steady HTTP load.

/// Client tasks sending `GET /` back to back until stopped (or a cap is reached): one over a
/// single keep-alive connection, one over a fresh connection per request. Every answer must be
/// a 200 from a backend; anything else is recorded as a failure.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts the clients against `addr`; each sends at most `cap` requests.
    pub fn start(addr: SocketAddr, cap: usize) -> Load {
        let load = Load {
            stop: Arc::default(),
            ok: Arc::default(),
            failures: Arc::default(),
            tasks: Vec::new(),
        };
        let keep_alive = {
            let (stop, ok, failures) = (load.stop.clone(), load.ok.clone(), load.failures.clone());
            tokio::spawn(async move {
                let mut connection: Option<TryConnection> = None;
                for _ in 0..cap {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let outcome = match connection.as_mut() {
                        Some(c) => c.get("/").await,
                        None => match TryConnection::open(addr).await {
                            Ok(mut c) => {
                                let outcome = c.get("/").await;
                                connection = Some(c);
                                outcome
                            }
                            Err(e) => Err(e),
                        },
                    };
                    if outcome.is_err() {
                        // A new connection next time; this one is not trusted any more.
                        connection = None;
                    }
                    record(outcome, "keep-alive", &ok, &failures);
                }
            })
        };
        let fresh = {
            let (stop, ok, failures) = (load.stop.clone(), load.ok.clone(), load.failures.clone());
            tokio::spawn(async move {
                for _ in 0..cap {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    record(try_get(addr, "/").await, "fresh", &ok, &failures);
                }
            })
        };
        Load {
            tasks: vec![keep_alive, fresh],
            ..load
        }
    }

    /// Successful requests so far.
    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until `more` further requests succeeded, so traffic really ran under
    /// the config now in force. Fails early with the failures if the clients hit any.
    pub async fn advance(&self, more: usize) {
        let target = self.ok() + more;
        eventually(Duration::from_secs(5), "the HTTP load to advance", || {
            let failures = self.failures.lock().unwrap().len();
            async move {
                assert_eq!(failures, 0, "HTTP requests failed: {:?}", self.failures());
                self.ok() >= target
            }
        })
        .await;
    }

    /// The failures so far, each with the client that saw it.
    pub fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }

    /// Stops the clients and waits for them; returns (successes, failures).
    pub async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            within(Duration::from_secs(5), "the load clients to stop", task)
                .await
                .expect("a load client panicked");
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::SeqCst), failures)
    }
}

fn record(
    outcome: Result<Reply, String>,
    client: &str,
    ok: &AtomicUsize,
    failures: &Mutex<Vec<String>>,
) {
    match outcome {
        Ok(reply) if reply.status == 200 && !reply.header("x-backend").is_empty() => {
            ok.fetch_add(1, Ordering::SeqCst);
        }
        Ok(reply) => failures
            .lock()
            .unwrap()
            .push(format!("{client}: {} {:?}", reply.status, reply.body)),
        Err(error) => failures.lock().unwrap().push(format!("{client}: {error}")),
    }
}

// ---------------------------------------------------------------------------------------------
// What /proc says.

/// A field of `/proc/PID/status` (`VmRSS`, `SigCgt`, `PPid`...), as written there.
fn status_field(pid: u32, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(|value| value.trim().to_string())
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS")?
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Resident memory of this test process, in KiB.
pub fn own_rss_kib() -> u64 {
    rss_kib(std::process::id()).expect("VmRSS of this process")
}

/// The processes whose parent is `pid` (what `pgrep -P` lists).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| status_field(child, "PPid").as_deref() == Some(&pid.to_string()))
        .collect()
}

/// True when process `pid` has installed a handler for every signal in `signals`
/// (`SigCgt` in `/proc/PID/status`): before that, the default action of SIGHUP or SIGQUIT
/// would kill it.
pub fn catches(pid: u32, signals: &[i32]) -> bool {
    let Some(mask) = status_field(pid, "SigCgt").and_then(|m| u64::from_str_radix(&m, 16).ok())
    else {
        return false;
    };
    signals.iter().all(|&s| mask & (1u64 << (s - 1)) != 0)
}

/// Sends `signal` to `pid`.
pub fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a process this test started, with a valid signal number.
    let sent = unsafe { libc::kill(pid as i32, signal) };
    assert_eq!(
        sent,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

/// Median and maximum of some durations.
pub fn median_max(samples: &[Duration]) -> (Duration, Duration) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    (median, sorted.last().copied().unwrap_or_default())
}

/// Milliseconds with one decimal, for reports.
pub fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

// ---------------------------------------------------------------------------------------------
// Real processes.

/// A child process started by a test, with its folder; on drop it is stopped (SIGTERM, then
/// SIGKILL for it and every child it forked, such as nginx workers, after 2 s).
pub struct Process {
    child: Child,
    /// The folder holding its config, pid file and logs.
    pub dir: TempDir,
}

impl Process {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Waits up to `limit` for it to exit, polling; `None` if it is still running.
    pub async fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child's status") {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Expects it to exit with success within `limit`; fails with its stderr otherwise.
    pub async fn exits_cleanly_within(&mut self, limit: Duration) {
        let status = self
            .exit_within(limit)
            .await
            .unwrap_or_else(|| panic!("still running after {limit:?}:\n{}", self.stderr()));
        assert!(status.success(), "{status}\n{}", self.stderr());
    }

    fn start(mut command: Command, dir: TempDir) -> Process {
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr file");
        let child = command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| panic!("start {command:?}: {error}"));
        Process { child, dir }
    }

    /// Waits (bounded) until it accepts on `addr`, failing with its stderr if it exits.
    async fn until_accepting(&mut self, addr: SocketAddr) {
        let limit = Duration::from_secs(10);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child's status") {
                panic!("exited ({status}) before accepting:\n{}", self.stderr());
            }
            if TcpStream::connect(addr).await.is_ok() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not accepting on {addr} after {limit:?}:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // Asked first: an nginx master stops its workers and reaps them (no orphans).
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Then forced. Frozen first, as a master would replace a killed worker at once and one
        // forked after the listing below would outlive us; then its children, then it.
        // SAFETY: kill(2) on our own child and on processes it forked.
        unsafe { libc::kill(self.pid() as i32, libc::SIGSTOP) };
        for child in children(self.pid()) {
            // SAFETY: as above.
            unsafe { libc::kill(child as i32, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `tether` binary to run: `$TETHER_BIN` if set (e.g. a release build for measurements),
/// else the one cargo built for these tests.
pub fn tether_binary() -> PathBuf {
    std::env::var_os("TETHER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tether")))
}

/// `tether -c tether.conf` running as its own process.
pub struct TetherProcess {
    /// The process.
    pub process: Process,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The config file.
    pub conf: PathBuf,
}

impl TetherProcess {
    /// Writes `conf` (`{listen}` filled with a free port) to `tether.conf` in a fresh folder,
    /// starts the binary on it, and waits until it accepts and has its signal handlers in
    /// place (so a signal sent next is handled, not fatal).
    pub async fn start(conf: &str) -> TetherProcess {
        let mut tether = TetherProcess::spawn(conf);
        tether.process.until_accepting(tether.addr).await;
        let pid = tether.process.pid();
        eventually(
            Duration::from_secs(5),
            "tether's signal handlers",
            || async move { catches(pid, &[libc::SIGHUP, libc::SIGQUIT, libc::SIGTERM]) },
        )
        .await;
        tether
    }

    /// Like [`TetherProcess::start`] but returns at once, without waiting for anything.
    pub fn spawn(conf: &str) -> TetherProcess {
        let dir = tempfile::tempdir().expect("a folder for tether");
        let addr = free_addr();
        let conf_path = dir.path().join("tether.conf");
        write_atomically(&conf_path, &conf.replace("{listen}", &addr.to_string()));
        let mut command = Command::new(tether_binary());
        command.arg("-c").arg(&conf_path).env(
            "TETHER_LOG",
            std::env::var("TETHER_LOG").unwrap_or("warn".into()),
        );
        let process = Process::start(command, dir);
        TetherProcess {
            process,
            addr,
            conf: conf_path,
        }
    }

    /// The pid file tether writes beside its config.
    pub fn pid_file(&self) -> PathBuf {
        self.process.dir.path().join("tether.pid")
    }

    /// Runs `tether -s SIGNAL -c tether.conf` and expects it to succeed.
    pub fn send(&self, signal: &str) {
        let out = Command::new(tether_binary())
            .arg("-s")
            .arg(signal)
            .arg("-c")
            .arg(&self.conf)
            .env("TETHER_LOG", "warn")
            .output()
            .expect("run tether -s");
        assert!(
            out.status.success(),
            "tether -s {signal}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Rewrites the config (`{listen}` filled) the way editors do: a new file renamed over.
    pub fn rewrite(&self, conf: &str) {
        write_atomically(
            &self.conf,
            &conf.replace("{listen}", &self.addr.to_string()),
        );
    }
}

/// Writes `text` to `path` through a temporary file renamed over it, so no reader ever sees
/// half a file.
pub fn write_atomically(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).expect("write the new config");
    std::fs::rename(&temporary, path).expect("rename the new config into place");
}

/// Real nginx with a master and worker processes (`master_process on`), as production runs it,
/// so a reload starts new workers and the old ones linger while connections remain.
pub struct NginxFleet {
    /// The master process.
    pub process: Process,
    /// Where it listens.
    pub addr: SocketAddr,
    conf: PathBuf,
    binary: PathBuf,
}

impl NginxFleet {
    /// Starts nginx in the foreground with one worker, proxying every path (WebSockets too) to
    /// `upstream u { UPSTREAM }`; `None` when nginx is not installed.
    pub async fn start(upstream: &str) -> Option<NginxFleet> {
        let binary = super::nginx::binary()?;
        let dir = tempfile::tempdir().expect("a folder for nginx");
        let addr = free_addr();
        let conf = dir.path().join("nginx.conf");
        write_atomically(&conf, &nginx_conf(dir.path(), addr, upstream));
        let mut command = Command::new(&binary);
        command.arg("-p").arg(dir.path()).arg("-c").arg(&conf);
        let mut process = Process::start(command, dir);
        process.until_accepting(addr).await;
        Some(NginxFleet {
            process,
            addr,
            conf,
            binary,
        })
    }

    /// Rewrites nginx.conf with a new upstream block.
    pub fn rewrite(&self, upstream: &str) {
        write_atomically(
            &self.conf,
            &nginx_conf(self.process.dir.path(), self.addr, upstream),
        );
    }

    /// `nginx -s reload` with this config.
    pub fn reload(&self) {
        let out = Command::new(&self.binary)
            .arg("-p")
            .arg(self.process.dir.path())
            .arg("-c")
            .arg(&self.conf)
            .args(["-s", "reload"])
            .output()
            .expect("run nginx -s reload");
        assert!(
            out.status.success(),
            "nginx -s reload: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The worker processes (children of the master), old and new.
    pub fn workers(&self) -> Vec<u32> {
        children(self.process.pid())
    }

    /// Resident memory of the master and every worker, in KiB.
    pub fn total_rss_kib(&self) -> u64 {
        std::iter::once(self.process.pid())
            .chain(self.workers())
            .filter_map(rss_kib)
            .sum()
    }
}

fn nginx_conf(dir: &Path, listen: SocketAddr, upstream: &str) -> String {
    let dir = dir.display();
    // As root, workers would switch to `nobody` and could not use the temporary folder.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;"
    } else {
        ""
    };
    format!(
        "daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 16384;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream u {{ {upstream} }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://u;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $http_connection;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"
    )
}
