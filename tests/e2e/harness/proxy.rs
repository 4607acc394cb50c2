//! A tether started in-process from a config string.
//!
//! `{listen}` in the config becomes the address of a listener the harness bound on port 0, and
//! `{NAME}` becomes the address of the backend passed under that name. A proxy started with
//! [`Proxy::start_watched`] runs from a real file in a temporary folder with tether's reload
//! watcher, so tests can edit the file the ways operators do.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tether::runtime::{Applied, Tether};
use tokio::net::TcpListener;

use super::watching::Watching;

/// A running proxy.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    tether: Option<Arc<Tether>>,
    watcher: Option<Watched>,
}

/// The file and watcher of a proxy started with [`Proxy::start_watched`].
pub struct Watched {
    /// The folder holding the config.
    pub dir: tempfile::TempDir,
    /// The config file.
    pub path: PathBuf,
    /// Stops the watcher when dropped.
    _watching: Watching,
}

/// Fills `{listen}` and `{NAME}` placeholders.
pub fn fill(conf: &str, listen: SocketAddr, backends: &[(&str, SocketAddr)]) -> String {
    let mut text = conf.replace("{listen}", &listen.to_string());
    for (name, backend) in backends {
        text = text.replace(&format!("{{{name}}}"), &backend.to_string());
    }
    text
}

impl Proxy {
    /// Starts tether with `conf`, placeholders filled from `backends`.
    pub async fn start(conf: &str, backends: &[(&str, SocketAddr)]) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy listener");
        let addr = listener.local_addr().expect("listener address");
        let text = fill(conf, addr, backends);
        let config = tether::config::load_str(Path::new("test.conf"), &text, Path::new("."))
            .unwrap_or_else(|errors| panic!("test config rejected:\n{errors}\n---\n{text}"));
        let tether = Tether::start_with_listeners(&config, vec![(addr, listener)])
            .await
            .unwrap_or_else(|error| panic!("tether did not start: {error}"));
        Proxy {
            addr,
            tether: Some(Arc::new(tether)),
            watcher: None,
        }
    }

    /// Starts tether from `conf` written to `tether.conf` in a fresh temporary folder, with the
    /// reload watcher (file changes and SIGHUP) running as `tether -c` runs it.
    pub async fn start_watched(conf: &str, backends: &[(&str, SocketAddr)]) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy listener");
        let addr = listener.local_addr().expect("listener address");
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("tether.conf");
        std::fs::write(&path, fill(conf, addr, backends)).expect("write the config");
        let watching = Watching::start(&path, listener).await;
        Proxy {
            addr,
            tether: Some(watching.tether().clone()),
            watcher: Some(Watched {
                dir,
                path,
                _watching: watching,
            }),
        }
    }

    /// The running tether.
    pub fn tether(&self) -> &Arc<Tether> {
        self.tether.as_ref().expect("the proxy is running")
    }

    /// The config file and folder of a watched proxy.
    pub fn watched(&self) -> &Watched {
        self.watcher
            .as_ref()
            .expect("started with Proxy::start_watched")
    }

    /// Applies a new config text directly (what a reload does after loading the file);
    /// `{listen}` is this proxy's address.
    pub async fn apply(
        &self,
        conf: &str,
        backends: &[(&str, SocketAddr)],
    ) -> Result<Applied, tether::runtime::StartError> {
        let text = fill(conf, self.addr, backends);
        let config = tether::config::load_str(Path::new("test.conf"), &text, Path::new("."))
            .map_err(tether::runtime::StartError::Config)?;
        self.tether().apply(&config).await
    }

    /// The common case: one `upstream up` over `servers`, `location /` proxying to it, plus
    /// `extra` directives inside the location.
    pub async fn round_robin(servers: &[SocketAddr], extra: &str) -> Proxy {
        let lines: String = servers.iter().map(|s| format!("server {s}; ")).collect();
        let conf = format!(
            "events {{}} http {{ upstream up {{ {lines} }} server {{ listen {{listen}}; location / {{ proxy_pass http://up; {extra} }} }} }}"
        );
        Proxy::start(&conf, &[]).await
    }

    /// The snapshot in force (groups, members and their live peer state).
    pub fn snapshot(&self) -> std::sync::Arc<tether::snapshot::Snapshot> {
        self.tether
            .as_ref()
            .expect("the proxy is running")
            .shared()
            .snapshot
            .load_full()
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the proxy and closes its connections.
    pub async fn stop(mut self) {
        // The watcher stops first, so nothing reloads a stopping tether.
        drop(self.watcher.take());
        if let Some(tether) = self.tether.take() {
            tether.stop().await;
        }
    }
}

/// `upstream up { SERVERS EXTRA }` behind `location /` on `{listen}`: the config most tests
/// run, with `{a}`-style placeholders for [`fill`].
pub fn upstream_up(servers: &str, extra: &str) -> String {
    format!(
        "events {{}} http {{ upstream up {{ {servers} {extra} }} \
         server {{ listen {{listen}}; location / {{ proxy_pass http://up; }} }} }}"
    )
}

/// The ASP.NET Core SignalR hosting guide's location for a WebSocket at `/ws` on backend `a`:
/// upgrade headers from variables (`$connection_upgrade` from `$http_connection`).
pub const SIGNALR_IDIOM: &str = r#"
    events {}
    http {
        map $http_connection $connection_upgrade { "~*Upgrade" $http_connection; default keep-alive; }
        upstream backend { server {a}; }
        server {
            listen {listen};
            location /ws {
                proxy_pass http://backend;
                proxy_set_header Upgrade $http_upgrade;
                proxy_set_header Connection $connection_upgrade;
                proxy_http_version 1.1;
                proxy_buffering off;
                proxy_read_timeout 100s;
                proxy_set_header Host $host;
            }
        }
    }"#;
