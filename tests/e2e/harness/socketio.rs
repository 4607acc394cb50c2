//! socket.io through tether with the real packages from npm, run by node from `tests/js/`:
//! [`SocketIoServer`] is an app server on the `socket.io` package (it acknowledges `whoami`
//! with its name and counts connections and requests naming a session it never issued);
//! [`SocketIoClient`] runs `socket.io-client` once, over long polling or with socket.io's
//! default polling-then-WebSocket upgrade. Skipped as the SignalR client is (`TETHER_REQUIRE_NODE`
//! makes a missing install a failure).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::harness::get;

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

/// `node`, when it and the socket.io packages are installed; else says why on the terminal
/// (or fails, with `TETHER_REQUIRE_NODE`).
fn node() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let node = std::env::split_paths(&path)
        .map(|dir| dir.join("node"))
        .find(|candidate| candidate.is_file());
    let installed = ["socket.io", "socket.io-client"].iter().all(|p| {
        js_dir()
            .join("node_modules")
            .join(p)
            .join("package.json")
            .is_file()
    });
    let why = match node {
        None => "node not installed (no `node` on PATH)",
        Some(_) if !installed => "socket.io not installed (`npm ci` in tests/js)",
        Some(node) => return Some(node),
    };
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    assert!(
        std::env::var_os("TETHER_REQUIRE_NODE").is_none(),
        "{test}: {why}, and TETHER_REQUIRE_NODE is set"
    );
    let line = format!("SKIPPED socket.io in {test}: {why}\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    None
}

/// A socket.io app server (node), stopped when dropped.
pub struct SocketIoServer {
    /// Its name: what `whoami` acknowledges.
    pub name: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    _child: Child,
}

/// What a server saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// socket.io connections made.
    pub connections: u64,
    /// Requests naming a session it never issued (engine.io's "Session ID unknown").
    pub unknown_sid: u64,
}

impl SocketIoServer {
    /// Starts servers called `names`; None when node or the packages are missing.
    pub async fn start_all<const N: usize>(
        names: [&'static str; N],
    ) -> Option<[SocketIoServer; N]> {
        let node = node()?;
        let mut servers = Vec::new();
        for name in names {
            servers.push(SocketIoServer::start(&node, name).await);
        }
        servers.try_into().ok()
    }

    async fn start(node: &Path, name: &'static str) -> SocketIoServer {
        let mut child = Command::new(node)
            .arg(js_dir().join("socketio-server.cjs"))
            .arg(name)
            .current_dir(js_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start node");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let mut stdout = BufReader::new(stdout);
        let read = stdout.read_line(&mut line);
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the socket.io server said where it listens within 10 s")
            .expect("its stdout");
        let said: Value = serde_json::from_str(&line).expect("{\"port\":N}");
        let port = said["port"].as_u64().expect("a port") as u16;
        SocketIoServer {
            name,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _child: child,
        }
    }

    /// What it saw so far (asked directly, not through the proxy).
    pub async fn counts(&self) -> Counts {
        let reply = get(self.addr, "/counts").await;
        let json: Value = serde_json::from_str(&reply.body).expect("counts JSON");
        let count = |name: &str| json[name].as_u64().expect("a count");
        Counts {
            connections: count("connections"),
            unknown_sid: count("unknown_sid"),
        }
    }
}

/// How a client session goes.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Long polling only.
    Polling,
    /// socket.io's default: polling, then an upgrade to a WebSocket.
    Upgrade,
}

/// What one client run reported: every `whoami` answer, and the transport it ended on.
#[derive(Debug)]
pub struct Run {
    /// The servers that answered, in order.
    pub servers: Vec<String>,
    /// `polling` or `websocket`.
    pub transport: String,
}

/// Runs `socket.io-client` against `url` once; Err with its stderr when it fails. Killed if
/// it has not finished within 15 s.
pub async fn run_client(url: &str, mode: Mode) -> Result<Run, String> {
    let node = node().expect("checked by SocketIoServer::start_all");
    let mode = match mode {
        Mode::Polling => "polling",
        Mode::Upgrade => "upgrade",
    };
    let child = Command::new(node)
        .arg(js_dir().join("socketio-client.cjs"))
        .args([url, mode])
        .current_dir(js_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let output = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("the socket.io client finished within 15 s")
        .expect("its output");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).expect("the client's JSON line");
    let servers = report["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|s| s.as_str().expect("a name").to_string())
        .collect();
    let transport = report["transport"]
        .as_str()
        .expect("a transport")
        .to_string();
    Ok(Run { servers, transport })
}
