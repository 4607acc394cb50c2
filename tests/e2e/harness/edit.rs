//! Live reconfiguration from outside: editing a config file the ways operators do (an editor's
//! save, `cp` over the file, a Kubernetes ConfigMap's `..data` symlink swap), an in-process
//! tether run from any path with the reload watcher, the real `tether` binary as a child
//! process with its log captured, a steady load that counts every failed request, and a
//! backend whose health checks pass only when the test says so.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tether::runtime::Tether;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::client::request;
use super::session::eventually;

/// Saves `text` as an editor does: writes `PATH.tmp`, then renames it over `path` (the file's
/// inode changes, so only a watch on the folder sees it).
pub fn save_like_editor(path: &Path, text: &str) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text).expect("write the temporary file");
    std::fs::rename(&tmp, path).expect("rename it over the config");
}

/// Writes `text` as `cp` does: opens the existing file, truncates it, writes (same inode).
pub fn copy_over(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write over the config");
}

/// A folder laid out as Kubernetes mounts a ConfigMap: `..2026_01/tether.conf`,
/// `..data -> ..2026_01`, `tether.conf -> ..data/tether.conf`.
pub struct ConfigMap {
    dir: PathBuf,
    version: u32,
}

impl ConfigMap {
    /// Lays out version 1 with `text` in `dir`; the config's path is [`ConfigMap::path`].
    pub fn create(dir: &Path, text: &str) -> ConfigMap {
        let map = ConfigMap {
            dir: dir.to_path_buf(),
            version: 1,
        };
        map.write_version(text);
        std::os::unix::fs::symlink(map.version_dir(), dir.join("..data")).expect("..data link");
        std::os::unix::fs::symlink("..data/tether.conf", map.path()).expect("tether.conf link");
        map
    }

    /// `tether.conf`, the symlink tether is started with.
    pub fn path(&self) -> PathBuf {
        self.dir.join("tether.conf")
    }

    /// What the kubelet does on an update: writes the new version in a folder of its own,
    /// points `..data_tmp` at it and renames that over `..data` (one atomic swap).
    pub fn update(&mut self, text: &str) {
        self.version += 1;
        self.write_version(text);
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(self.version_dir(), &tmp).expect("..data_tmp link");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
    }

    fn version_dir(&self) -> String {
        format!("..2026_{:02}", self.version)
    }

    fn write_version(&self, text: &str) {
        let dir = self.dir.join(self.version_dir());
        std::fs::create_dir(&dir).expect("version folder");
        std::fs::write(dir.join("tether.conf"), text).expect("versioned config");
    }
}

/// An in-process tether started from the config file at `path` (any path: a symlink, a file
/// with includes), with the reload watcher running as `tether -c` runs it.
pub struct Watching {
    /// Where clients connect (the listener passed to [`Watching::start`]).
    pub addr: SocketAddr,
    tether: Arc<Tether>,
    stop: watch::Sender<bool>,
}

impl Watching {
    /// Loads `path` (includes relative to its folder) and serves on `listener`, which the config
    /// must `listen` on; returns once the watcher watches the config's folders.
    pub async fn start(path: &Path, listener: TcpListener) -> Watching {
        let addr = listener.local_addr().expect("listener address");
        let prefix = path
            .parent()
            .expect("the config is in a folder")
            .to_path_buf();
        let config = tether::config::load(path, &prefix)
            .unwrap_or_else(|errors| panic!("test config rejected:\n{errors}"));
        let tether = Arc::new(
            Tether::start_with_listeners(&config, vec![(addr, listener)])
                .await
                .unwrap_or_else(|error| panic!("tether did not start: {error}")),
        );
        let (stop, stopped) = watch::channel(false);
        let watcher = tether::reload::Watcher::arm(&config);
        let hangups = tether::reload::hangups();
        tokio::spawn(watcher.run(tether.clone(), prefix, hangups, stopped));
        Watching { addr, tether, stop }
    }

    /// The running tether.
    pub fn tether(&self) -> &Arc<Tether> {
        &self.tether
    }

    /// The generation of the snapshot in force.
    pub fn generation(&self) -> u64 {
        self.tether.shared().snapshot.load().generation
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The real `tether` binary running `-c CONF` as a child process, its log (stderr, colours
/// off) captured line by line. Killed when dropped.
pub struct Binary {
    /// The config file it was started with.
    pub conf: PathBuf,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Binary {
    /// Starts `tether -c conf` with `TETHER_LOG=info` and waits until it serves on `listen`
    /// and catches SIGHUP (before that, a SIGHUP would kill it, as with any process).
    pub async fn start(conf: &Path, listen: SocketAddr) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
            .arg("-c")
            .arg(conf)
            .current_dir(conf.parent().expect("the config is in a folder"))
            .env("TETHER_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the tether binary");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn({
            let log = log.clone();
            move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push(strip_ansi(&line));
                }
            }
        });
        let binary = Binary {
            conf: conf.to_path_buf(),
            child,
            log,
        };
        let pid = binary.pid();
        let what = format!("tether (pid {pid}) serving on {listen} and catching SIGHUP");
        eventually(Duration::from_secs(10), &what, || async move {
            catches_sighup(pid) && TcpStream::connect(listen).await.is_ok()
        })
        .await;
        binary
    }

    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends SIGHUP.
    pub fn hangup(&self) {
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        let sent = unsafe { libc::kill(self.pid(), libc::SIGHUP) };
        assert_eq!(sent, 0, "kill -HUP: {}", std::io::Error::last_os_error());
    }

    /// Runs `tether -s reload -c CONF`, as an operator would, and expects it to succeed.
    pub fn send_reload(&self) {
        let output = Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["-s", "reload", "-c"])
            .arg(&self.conf)
            .env("NO_COLOR", "1")
            .output()
            .expect("run tether -s reload");
        assert!(
            output.status.success(),
            "tether -s reload failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log has `count` lines containing `needle`; returns those lines with the
    /// `after` lines that follow each (multi-line messages: errors come on the next lines).
    pub async fn lines_with(&self, needle: &str, count: usize, after: usize) -> Vec<String> {
        let what = format!("{count} log line(s) with {needle:?}");
        let found = || {
            let log = self.log();
            let hits: Vec<String> = log
                .iter()
                .enumerate()
                .filter(|(_, line)| line.contains(needle))
                .map(|(i, _)| log[i..log.len().min(i + 1 + after)].join("\n"))
                .collect();
            hits
        };
        eventually(Duration::from_secs(5), &what, || {
            let enough = found().len() >= count;
            async move { enough }
        })
        .await;
        found()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True once process `pid` has a handler for SIGHUP (`SigCgt` in `/proc/PID/status`).
fn catches_sighup(pid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (libc::SIGHUP - 1)) != 0)
}

/// Drops ANSI colour sequences (`ESC [ ... m`), in case the log is coloured anyway.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What a [`Load`] saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// 200 answers by `x-backend`.
    pub served: HashMap<String, usize>,
    /// Answers other than 200, with their status and body.
    pub bad: Vec<String>,
    /// Requests that failed outright (connect, reset, timeout).
    pub errors: Vec<String>,
}

impl Tally {
    /// 200 answers from backend `name`.
    pub fn served_by(&self, name: &str) -> usize {
        self.served.get(name).copied().unwrap_or(0)
    }
}

/// Steady traffic to a proxy: one client sending `GET /` over and over on a keep-alive
/// connection, another opening a new connection for each request. Every answer is counted.
pub struct Load {
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts both clients against `addr`.
    pub fn start(addr: SocketAddr) -> Load {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = [true, false]
            .into_iter()
            .map(|keep_alive| {
                let (tally, stop) = (tally.clone(), stop.clone());
                tokio::spawn(client_loop(addr, keep_alive, tally, stop))
            })
            .collect();
        Load { tally, stop, tasks }
    }

    /// 200 answers from backend `name` so far.
    pub fn served_by(&self, name: &str) -> usize {
        self.tally.lock().unwrap().served_by(name)
    }

    /// Waits until backend `name` has answered `more` requests beyond what it had answered
    /// when called.
    pub async fn wait_served(&self, name: &str, more: usize) {
        let target = self.served_by(name) + more;
        let what = format!("{more} more answers from {name} under load");
        eventually(Duration::from_secs(5), &what, || {
            let done = self.served_by(name) >= target;
            async move { done }
        })
        .await;
    }

    /// Stops both clients (each finishes its request in hand) and returns the tally.
    pub async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("a load client panicked");
        }
        std::mem::take(&mut *self.tally.lock().unwrap())
    }
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn client_loop(
    addr: SocketAddr,
    keep_alive: bool,
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
) {
    let mut connection: Option<Sender> = None;
    while !stop.load(Ordering::SeqCst) {
        let outcome =
            tokio::time::timeout(Duration::from_secs(5), one_request(addr, &mut connection))
                .await
                .unwrap_or_else(|_| Err("no answer within 5 s".to_string()));
        if outcome.is_err() || !keep_alive {
            connection = None;
        }
        {
            let mut tally = tally.lock().unwrap();
            match outcome {
                Ok((200, backend)) => *tally.served.entry(backend).or_default() += 1,
                Ok((status, body)) => tally.bad.push(format!("{status}: {body}")),
                Err(error) => tally.errors.push(error),
            }
        }
        // Pacing, not waiting for anything: a few hundred requests a second is plenty and
        // leaves the two CPUs to tether.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Sends `GET /` on `connection` (opening it if needed); `(status, x-backend or body)`. A
/// connection the proxy announced it would close (`Connection: close`) is not reused.
async fn one_request(
    addr: SocketAddr,
    connection: &mut Option<Sender>,
) -> Result<(u16, String), String> {
    if connection.as_ref().is_none_or(|sender| sender.is_closed()) {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        *connection = Some(sender);
    }
    let sender = connection.as_mut().expect("opened above");
    sender.ready().await.map_err(|e| format!("ready: {e}"))?;
    let response = sender
        .send_request(request("GET", "/", ""))
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    let closing = response
        .headers()
        .get("connection")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let backend = response
        .headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    if closing {
        *connection = None;
    }
    if status == 200 {
        Ok((status, backend))
    } else {
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// Counts how often `file` is opened (by anyone), from an inotify watch on its folder.
pub struct OpenCounter {
    opens: Arc<AtomicUsize>,
    _watcher: notify::RecommendedWatcher,
}

impl OpenCounter {
    /// Starts counting; opens before this call are not counted.
    pub fn start(file: &Path) -> OpenCounter {
        use notify::Watcher;
        let opens = Arc::new(AtomicUsize::new(0));
        let counted = opens.clone();
        let target = file.to_path_buf();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event
                    && matches!(
                        event.kind,
                        notify::EventKind::Access(notify::event::AccessKind::Open(_))
                    )
                    && event.paths.contains(&target)
                {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            })
            .expect("an inotify watcher");
        let dir = file.parent().expect("the file is in a folder");
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .expect("watch the folder");
        OpenCounter {
            opens,
            _watcher: watcher,
        }
    }

    /// Opens seen so far.
    pub fn opens(&self) -> usize {
        self.opens.load(Ordering::SeqCst)
    }
}

/// A backend whose health the test decides: `GET /health` waits until [`HeldHealth::pass`],
/// then answers 200; anything else is answered at once with `x-backend: NAME`.
pub struct HeldHealth {
    /// Where it listens.
    pub addr: SocketAddr,
    probes: Arc<AtomicUsize>,
    pass: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl HeldHealth {
    /// Starts it, its health held.
    pub async fn start(name: &'static str) -> HeldHealth {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let probes = Arc::new(AtomicUsize::new(0));
        let (pass, passing) = watch::channel(false);
        let task = tokio::spawn({
            let probes = probes.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (probes, passing) = (probes.clone(), passing.clone());
                    let service = service_fn(move |request: http::Request<_>| {
                        let (probes, mut passing) = (probes.clone(), passing.clone());
                        async move {
                            if request.uri().path() == "/health" {
                                probes.fetch_add(1, Ordering::SeqCst);
                                let _ = passing.wait_for(|pass| *pass).await;
                            }
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(StatusCode::OK)
                                    .header("x-backend", name)
                                    .body(Full::new(Bytes::from(name)))
                                    .expect("a valid response"),
                            )
                        }
                    });
                    tokio::spawn(
                        auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .into_owned(),
                    );
                }
            }
        });
        HeldHealth {
            addr,
            probes,
            pass,
            task,
        }
    }

    /// Health probes received so far (answered or still held).
    pub fn probes(&self) -> usize {
        self.probes.load(Ordering::SeqCst)
    }

    /// Lets every held probe, and every later one, pass.
    pub fn pass(&self) {
        self.pass.send_replace(true);
    }
}

impl Drop for HeldHealth {
    fn drop(&mut self) {
        self.task.abort();
    }
}
