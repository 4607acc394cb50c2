//! A real `redis-server` (Debian's package) on a loopback port of its own, for the session sync
//! tests: started per test, with no persistence (a restart comes back empty, as a cache-only
//! Redis does), and the failures the sync must live through: killed, restarted on the same port,
//! stopped answering (SIGSTOP) and answering again.
//!
//! As with nginx, a test that needs it skips when `redis-server` is not installed, with a line
//! on the terminal; with `TETHER_REQUIRE_REDIS` set (`.ci/run` sets it after installing it) it
//! fails instead.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::{free_addr, system_tool, within};

/// A running redis-server; killed on drop.
pub struct Redis {
    /// Where it listens.
    pub addr: SocketAddr,
    binary: PathBuf,
    child: Option<Child>,
    dir: TempDir,
}

impl Redis {
    /// Starts a redis-server on a free loopback port and waits until it answers. `None` when it
    /// is not installed (and `TETHER_REQUIRE_REDIS` is not set).
    pub async fn start() -> Option<Redis> {
        let binary = system_tool::installed("redis-server", "TETHER_REQUIRE_REDIS", "Redis test")?;
        let dir = tempfile::tempdir().expect("a temporary directory for redis");
        let mut redis = Redis {
            addr: free_addr(),
            binary,
            child: None,
            dir,
        };
        redis.launch().await;
        Some(redis)
    }

    /// `redis://ADDR/DB`.
    pub fn url(&self, db: u32) -> String {
        format!("redis://{}/{db}", self.addr)
    }

    /// Kills it at once (SIGKILL: no goodbye to its clients beyond the kernel's resets).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty, and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }

    /// Stops it answering without closing anything (SIGSTOP): a Redis that hangs.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a frozen Redis answer again (SIGCONT).
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    /// A connection of the test's own, to look at what is stored.
    pub async fn connection(&self, db: u32) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url(db)).expect("a valid redis URL");
        within(
            Duration::from_secs(5),
            "a test connection to redis",
            client.get_multiplexed_async_connection(),
        )
        .await
        .expect("connect to the test redis")
    }

    /// What redis-server printed, for failure messages.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("redis is running");
        // SAFETY: kill(2) on our own child's pid, which we have not waited for yet.
        let sent = unsafe { libc::kill(child.id() as i32, signal) };
        assert_eq!(sent, 0, "signal redis-server");
    }

    async fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("redis.log"))
            .expect("redis log file");
        let child = Command::new(&self.binary)
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.addr.port().to_string())
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("redis log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", self.binary.display()));
        self.child = Some(child);
        self.until_answering().await;
    }

    /// Waits (bounded) until it answers PING, failing with its output if it exits.
    async fn until_answering(&mut self) {
        let client = redis::Client::open(self.url(0)).expect("a valid redis URL");
        within(Duration::from_secs(10), "redis-server to answer", async {
            loop {
                let child = self.child.as_mut().expect("redis launched");
                if let Some(status) = child.try_wait().expect("redis-server status") {
                    panic!("redis-server exited ({status}):\n{}", self.output());
                }
                if let Ok(mut connection) = client.get_multiplexed_async_connection().await
                    && redis::cmd("PING")
                        .query_async::<String>(&mut connection)
                        .await
                        .is_ok()
                {
                    return;
                }
                // Polling a condition: the loop ends as soon as redis-server answers.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // A frozen process would not die of SIGKILL any less, but let it go first anyway.
        if self.child.is_some() {
            self.thaw();
        }
        self.kill();
    }
}
