//! A real HAProxy in front of tether, sending the PROXY protocol as a cloud balancer does: two
//! TCP frontends on loopback, one whose connections to tether start with a v1 header
//! (`send-proxy`), one with v2 and a TLV (`send-proxy-v2`, `proxy-v2-options crc32c`). Each
//! backend line connects from a source address of its own, so tether can tell (and trust)
//! HAProxy by address.
//!
//! As with nginx, a test that needs it skips when no `haproxy` binary is installed, with a
//! line on the terminal; with `TETHER_REQUIRE_HAPROXY` set (CI sets it after installing
//! HAProxy) it fails instead.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::net::TcpStream;

use super::{free_addr, system_tool, within};

/// A running HAProxy; killed on drop.
pub struct HaProxy {
    /// The frontend that sends PROXY protocol v1.
    pub v1: SocketAddr,
    /// The frontend that sends PROXY protocol v2.
    pub v2: SocketAddr,
    child: Child,
    dir: TempDir,
}

/// The binary, or `None` after saying on the terminal that the test skips; a failure instead
/// when `TETHER_REQUIRE_HAPROXY` is set.
fn installed() -> Option<PathBuf> {
    system_tool::installed("haproxy", "TETHER_REQUIRE_HAPROXY", "HAProxy test")
}

impl HaProxy {
    /// Starts HAProxy forwarding both frontends to `tether`, the v1 one connecting from
    /// `v1_source`, the v2 one from `v2_source`. `None` when HAProxy is not installed.
    pub async fn start(tether: SocketAddr, v1_source: IpAddr, v2_source: IpAddr) -> Option<Self> {
        let binary = installed()?;
        let dir = tempfile::tempdir().expect("a temporary directory for haproxy");
        let (v1, v2) = (free_addr(), free_addr());
        let conf = format!(
            "global
    maxconn 256
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend v1
    bind {v1}
    default_backend tether_v1
frontend v2
    bind {v2}
    default_backend tether_v2
backend tether_v1
    server tether {tether} send-proxy source {v1_source}
backend tether_v2
    server tether {tether} send-proxy-v2 proxy-v2-options crc32c source {v2_source}
"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, conf).expect("write haproxy.cfg");
        let output = std::fs::File::create(dir.path().join("output.log")).expect("log file");
        let child = Command::new(&binary)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("log file"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", binary.display()));
        let mut haproxy = HaProxy { v1, v2, child, dir };
        haproxy.until_accepting().await;
        Some(haproxy)
    }

    /// Waits (bounded) until both frontends accept, failing with HAProxy's output if it exits.
    async fn until_accepting(&mut self) {
        within(
            Duration::from_secs(10),
            "haproxy to accept connections",
            async {
                for frontend in [self.v1, self.v2] {
                    loop {
                        if let Some(status) = self.child.try_wait().expect("haproxy status") {
                            panic!("haproxy exited ({status}):\n{}", self.output());
                        }
                        if TcpStream::connect(frontend).await.is_ok() {
                            break;
                        }
                        // Polling a condition: the loop ends as soon as HAProxy listens.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            },
        )
        .await;
    }

    /// What HAProxy printed, for failure messages.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("output.log")).unwrap_or_default()
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
