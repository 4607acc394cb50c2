//! A real nginx, started as a child process, to compare tether's choices with nginx's.
//!
//! Everything nginx writes (pid, error log, temp paths) lives in a temporary directory, it runs
//! in the foreground as one process (`daemon off; master_process off;`), and it is killed when
//! the handle is dropped. Tests that need it skip (loudly) when no `nginx` binary is installed;
//! CI installs one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::net::TcpStream;

use super::{free_addr, within};

/// A running nginx; killed on drop.
pub struct Nginx {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    dir: TempDir,
}

/// The `nginx` binary: on `PATH`, else where Debian and Ubuntu put it (often not on a user's
/// `PATH`).
pub fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
}

impl Nginx {
    /// Starts nginx proxying `location /` to `upstream u { UPSTREAM }`, with `{NAME}`
    /// placeholders filled from `backends` as [`super::Proxy::start`] does. Returns `None`
    /// (after saying so on stderr) when nginx is not installed.
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
        let Some(binary) = binary() else {
            eprintln!("SKIPPED: nginx not installed (no `nginx` on PATH or in /usr/sbin)");
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary directory for nginx");
        let addr = free_addr();
        let mut upstream = upstream.to_string();
        for (name, backend) in backends {
            upstream = upstream.replace(&format!("{{{name}}}"), &backend.to_string());
        }
        let conf = config(dir.path(), addr, &upstream, locations);
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

/// The whole nginx.conf: one process in the foreground, every file inside `dir`.
fn config(dir: &Path, listen: SocketAddr, upstream: &str, locations: &str) -> String {
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
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 100000;
    upstream u {{ {upstream} }}
    server {{
        listen {listen};
        {locations}
    }}
}}
"
    )
}
