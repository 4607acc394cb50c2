//! The real SignalR client: `@microsoft/signalr` from npm, run by node from `tests/js/` (its
//! `package.json` pins the version; `npm ci` there installs it).
//!
//! A test that needs it skips when node or the package is missing, with a line on the terminal
//! that `cargo test` does not swallow; with `TETHER_REQUIRE_NODE` set (CI sets it, after
//! `npm ci`) it fails instead, so a SignalR test never passes by skipping.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use super::signalr::Transport;

/// The client's folder: its script, `package.json` and (once installed) `node_modules`.
fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

/// The `node` binary on `PATH`.
fn node() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("node"))
        .find(|candidate| candidate.is_file())
}

/// What one client session reported.
#[derive(Debug)]
pub struct Session {
    /// What `WhoAmI` answered.
    pub whoami: String,
    /// Each `Echo` answer: (the message echoed, the server that answered).
    pub echoes: Vec<(String, String)>,
}

/// How a client run ended when it did not report a session.
#[derive(Debug)]
pub struct Failed {
    /// The exit status.
    pub status: std::process::ExitStatus,
    /// What it wrote on stderr.
    pub stderr: String,
}

/// The SignalR client, ready to run; `None` (after saying so on the terminal) when node or the
/// package is missing, a failure instead when `TETHER_REQUIRE_NODE` is set.
pub struct SignalrClient {
    node: PathBuf,
}

impl SignalrClient {
    /// The installed client, if any.
    pub fn installed() -> Option<SignalrClient> {
        let package = js_dir().join("node_modules/@microsoft/signalr/package.json");
        let why = match node() {
            None => "node not installed (no `node` on PATH)",
            Some(_) if !package.is_file() => {
                "@microsoft/signalr not installed (`npm ci` in tests/js)"
            }
            Some(node) => return Some(SignalrClient { node }),
        };
        let thread = std::thread::current();
        // libtest names each test's thread after the test.
        let test = thread.name().unwrap_or("a test");
        assert!(
            std::env::var_os("TETHER_REQUIRE_NODE").is_none(),
            "{test}: {why}, and TETHER_REQUIRE_NODE is set"
        );
        // Straight to the terminal: `eprintln!` is captured by the test runner and shown only
        // for a failing test, and a skip is a pass.
        let line = format!("SKIPPED SignalR client in {test}: {why}\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
        None
    }

    /// node running `script` (a file of `tests/js`), from that folder, killed when dropped:
    /// for tests that drive a client script of their own.
    pub fn script(&self, script: &str) -> Command {
        let mut command = Command::new(&self.node);
        command
            .arg(js_dir().join(script))
            .current_dir(js_dir())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Connects to the hub at `url` over `transport` (negotiating first), invokes `WhoAmI` and
    /// `2 × echoes` Echoes, and stops. HTTPS certificates are checked against `ca_file`. The
    /// process is killed if it has not finished within `limit`.
    pub async fn run(
        &self,
        url: &str,
        transport: Transport,
        echoes: usize,
        ca_file: &Path,
        limit: Duration,
    ) -> Result<Session, Failed> {
        let child = Command::new(&self.node)
            .arg(js_dir().join("signalr-client.cjs"))
            .args([url, transport.name(), &echoes.to_string()])
            .env("NODE_EXTRA_CA_CERTS", ca_file)
            .current_dir(js_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A run that outlives `limit` is dropped below, and the child with it.
            .kill_on_drop(true)
            .spawn()
            .expect("start node");
        let output = match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(output) => output.expect("node's output"),
            Err(_) => panic!("the SignalR client ({transport:?}) did not finish within {limit:?}"),
        };
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if !output.status.success() {
            return Err(Failed {
                status: output.status,
                stderr,
            });
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let report: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("the client's report {stdout:?}: {e}; stderr: {stderr}"));
        assert_eq!(report["transport"], transport.name(), "{report}");
        let echoes = report["echoes"]
            .as_array()
            .unwrap_or_else(|| panic!("echoes in {report}"))
            .iter()
            .map(|echo| (as_text(&echo["message"]), as_text(&echo["server"])))
            .collect();
        Ok(Session {
            whoami: as_text(&report["whoami"]),
            echoes,
        })
    }
}

fn as_text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a string, not {value}"))
        .to_string()
}
