//! Real processes started by a test: a child with its own folder, stopped with every child it
//! forked when the handle drops, and the `tether` binary run on a config file, either in a
//! fresh folder of its own ([`TetherProcess`]) or on a config the test laid out, its log
//! captured line by line ([`Binary`]).
//!
//! Every wait is bounded.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;
use tokio::net::TcpStream;

use super::free_addr;
use super::procfs::{catches, children};
use super::session::eventually;

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

    /// Starts `command` in `dir`, its stderr going to `stderr.log` there.
    pub fn start(mut command: Command, dir: TempDir) -> Process {
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
    pub async fn until_accepting(&mut self, addr: SocketAddr) {
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
            catches(pid as u32, &[libc::SIGHUP]) && TcpStream::connect(listen).await.is_ok()
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
