//! An in-process tether run from a config file on disk (any path: a symlink, a file with
//! includes) with the reload watcher running as `tether -c` runs it, so tests can edit the file
//! and send SIGHUP.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tether::runtime::Tether;
use tokio::net::TcpListener;
use tokio::sync::watch;

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
