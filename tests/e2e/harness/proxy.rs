//! A tether started in-process from a config string.
//!
//! `{listen}` in the config becomes the address of a listener the harness bound on port 0, and
//! `{NAME}` becomes the address of the backend passed under that name.

use std::net::SocketAddr;
use std::path::Path;

use tether::server::Tether;
use tokio::net::TcpListener;

/// A running proxy.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    tether: Option<Tether>,
}

impl Proxy {
    /// Starts tether with `conf`, placeholders filled from `backends`.
    pub async fn start(conf: &str, backends: &[(&str, SocketAddr)]) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy listener");
        let addr = listener.local_addr().expect("listener address");
        let mut text = conf.replace("{listen}", &addr.to_string());
        for (name, backend) in backends {
            text = text.replace(&format!("{{{name}}}"), &backend.to_string());
        }
        let config = tether::config::load_str(Path::new("test.conf"), &text, Path::new("."))
            .unwrap_or_else(|errors| panic!("test config rejected:\n{errors}\n---\n{text}"));
        let tether = Tether::start_with_listeners(&config, vec![(addr, listener)])
            .await
            .unwrap_or_else(|error| panic!("tether did not start: {error}"));
        Proxy {
            addr,
            tether: Some(tether),
        }
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
        if let Some(tether) = self.tether.take() {
            tether.stop().await;
        }
    }
}
