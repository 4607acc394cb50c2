//! A real nginx, started as a child process: [`Nginx`], one process, to compare tether's
//! choices with nginx's; [`NginxFleet`], a master with workers as production runs it, for
//! measurements across reloads.
//!
//! Everything nginx writes (pid, error log, temp paths) lives in a temporary directory, it runs
//! in the foreground, and it is stopped when the handle is dropped. A test that needs it skips
//! when no `nginx` binary is installed, with a line on the terminal that `cargo test` does not
//! swallow; with `TETHER_REQUIRE_NGINX` set (CI sets it, after installing nginx) it fails
//! instead, so a comparison never passes by skipping.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::net::TcpStream;

use super::process::{Process, write_atomically};
use super::procfs::{children, rss_kib};
use super::{free_addr, system_tool, within};

/// A running nginx; killed on drop.
pub struct Nginx {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    dir: TempDir,
}

/// The `nginx` binary for the test running on this thread, or `None` after saying on the
/// terminal that it skips its comparison; a failure instead when `TETHER_REQUIRE_NGINX` is set.
fn installed() -> Option<PathBuf> {
    system_tool::installed("nginx", "TETHER_REQUIRE_NGINX", "nginx comparison")
}

impl Nginx {
    /// Starts nginx proxying `location /` to `upstream u { UPSTREAM }`, with `{NAME}`
    /// placeholders filled from `backends` as [`super::Proxy::start`] does. Returns `None`
    /// (after saying so on the terminal) when nginx is not installed.
    pub async fn start(upstream: &str, backends: &[(&str, SocketAddr)]) -> Option<Nginx> {
        Nginx::start_with(upstream, "location / { proxy_pass http://u; }", backends).await
    }

    /// As [`Nginx::start`], with `locations` (the server block's content after `listen`) in
    /// place of the one `location /`.
    pub async fn start_with(
        upstream: &str,
        locations: &str,
        backends: &[(&str, SocketAddr)],
    ) -> Option<Nginx> {
        Nginx::start_http("", upstream, locations, backends).await
    }

    /// As [`Nginx::start_with`], with `http_level` directives (zones, maps) in the http block.
    pub async fn start_http(
        http_level: &str,
        upstream: &str,
        locations: &str,
        backends: &[(&str, SocketAddr)],
    ) -> Option<Nginx> {
        let binary = installed()?;
        let dir = tempfile::tempdir().expect("a temporary directory for nginx");
        let addr = free_addr();
        let mut upstream = upstream.to_string();
        for (name, backend) in backends {
            upstream = upstream.replace(&format!("{{{name}}}"), &backend.to_string());
        }
        let conf = config(
            dir.path(),
            addr,
            &format!("{http_level}\n    upstream u {{ {upstream} }}"),
            locations,
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        // nginx opens its compiled-in error log before it reads `error_log`; where that is not
        // writable it says so on stderr and carries on, so stderr goes to a file we can show.
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr file");
        let child = Command::new(&binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", binary.display()));
        let mut nginx = Nginx { addr, child, dir };
        nginx.until_accepting().await;
        Some(nginx)
    }

    /// Waits (bounded) until nginx accepts connections, failing with its logs if it exits.
    async fn until_accepting(&mut self) {
        within(
            Duration::from_secs(10),
            "nginx to accept connections",
            async {
                loop {
                    if let Some(status) = self.child.try_wait().expect("nginx status") {
                        panic!("nginx exited ({status}) before accepting:\n{}", self.logs());
                    }
                    if TcpStream::connect(self.addr).await.is_ok() {
                        return;
                    }
                    // Polling a condition, not waiting for time to pass: the loop ends as soon
                    // as nginx listens.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        )
        .await;
    }

    /// nginx's stderr and error log, for failure messages.
    pub fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name));
        format!(
            "--- stderr\n{}\n--- error.log\n{}",
            read("stderr.log").unwrap_or_default(),
            read("error.log").unwrap_or_default()
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `*_temp_path` lines that keep every nginx file inside `dir` (both configs below).
fn temp_paths(dir: &Path) -> String {
    let dir = dir.display();
    ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .map(|kind| format!("{kind}_temp_path {dir}/{kind};"))
        .join(" ")
}

/// The whole nginx.conf: one process in the foreground, every file inside `dir`; `http_level`
/// holds the upstream block and anything else the http block needs.
fn config(dir: &Path, listen: SocketAddr, http_level: &str, locations: &str) -> String {
    let temp_paths = temp_paths(dir);
    let dir = dir.display();
    format!(
        "daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    {temp_paths}
    keepalive_requests 100000;
    {http_level}
    server {{
        listen {listen};
        {locations}
    }}
}}
"
    )
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
    /// `upstream u { UPSTREAM }`; `None` (said on the terminal) when nginx is not installed.
    pub async fn start(upstream: &str) -> Option<NginxFleet> {
        let binary = installed()?;
        let dir = tempfile::tempdir().expect("a folder for nginx");
        let addr = free_addr();
        let conf = dir.path().join("nginx.conf");
        write_atomically(&conf, &fleet_config(dir.path(), addr, upstream));
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
            &fleet_config(self.process.dir.path(), self.addr, upstream),
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

/// nginx.conf of an [`NginxFleet`]: master and one worker, WebSockets passed through, every
/// file inside `dir`.
fn fleet_config(dir: &Path, listen: SocketAddr, upstream: &str) -> String {
    let temp_paths = temp_paths(dir);
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
    {temp_paths}
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
