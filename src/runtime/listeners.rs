//! The listeners of a running tether, by the `listen` address the config names: which ones a
//! snapshot adds (bound before anything changes, so a port in use fails a reload and not the
//! service), which it drops (they stop accepting; their connections finish), and the handle of
//! each one serving.
//!
//! Binding and accepting are `server`'s; this only keeps the table.

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::StartError;
use crate::server;

/// One listener being served.
pub struct ListenerHandle {
    /// The address actually bound (differs from the `listen` address when its port was 0;
    /// a UNIX-domain listener's key).
    pub local: SocketAddr,
    /// A UNIX-domain listener's path: unlinked when it is retired, as nginx removes its
    /// sockets' files when it stops or a reload drops them.
    pub unix: Option<std::path::PathBuf>,
    /// Set to true to stop accepting; the listener's connections then finish gracefully.
    pub retire: watch::Sender<bool>,
    /// The accept loop.
    pub task: JoinHandle<()>,
}

/// Listeners by `listen` address.
#[derive(Default)]
pub struct Listeners {
    by_listen: HashMap<SocketAddr, ListenerHandle>,
}

impl Listeners {
    /// Binds every address of `wanted` not served yet, taking one of `prebound` where the
    /// caller bound it already (tests bind port 0). Nothing is served yet: on an error the
    /// listeners bound so far are dropped and nothing has changed.
    /// `dual_stack` tells which IPv6 addresses take IPv4 too (`ipv6only=off`).
    pub fn bind_new(
        &self,
        wanted: &[SocketAddr],
        mut prebound: Vec<(SocketAddr, TcpListener)>,
        dual_stack: impl Fn(SocketAddr) -> bool,
    ) -> Result<Vec<(SocketAddr, server::Bound)>, StartError> {
        let mut bound = Vec::new();
        for &addr in wanted
            .iter()
            .filter(|addr| !self.by_listen.contains_key(addr))
        {
            let unix = crate::config::model::unix_listen_path(addr);
            let listener = match prebound.iter().position(|(listen, _)| *listen == addr) {
                Some(index) => prebound.swap_remove(index).1.into(),
                None => match unix {
                    Some(path) => {
                        let path = std::path::PathBuf::from(&*path);
                        let unix = server::bind_unix(&path)
                            .map_err(|error| StartError::Bind { addr, error })?;
                        server::Bound::Unix(unix, path)
                    }
                    None => server::bind(addr, dual_stack(addr))
                        .map_err(|error| StartError::Bind { addr, error })?
                        .into(),
                },
            };
            bound.push((addr, listener));
        }
        Ok(bound)
    }

    /// Adds listeners being served.
    pub fn extend(&mut self, handles: impl IntoIterator<Item = (SocketAddr, ListenerHandle)>) {
        self.by_listen.extend(handles);
    }

    /// Removes and tells to stop accepting every listener whose address is not in `wanted`;
    /// returns their addresses.
    pub fn retire_unwanted(&mut self, wanted: &[SocketAddr]) -> Vec<SocketAddr> {
        let unwanted: Vec<SocketAddr> = self
            .by_listen
            .keys()
            .filter(|addr| !wanted.contains(addr))
            .copied()
            .collect();
        for addr in &unwanted {
            if let Some(handle) = self.by_listen.remove(addr) {
                retire(&handle);
            }
        }
        unwanted
    }

    /// Removes every listener and tells each to stop accepting.
    pub fn retire_all(&mut self) -> Vec<ListenerHandle> {
        let handles: Vec<ListenerHandle> = self.by_listen.drain().map(|(_, l)| l).collect();
        for handle in &handles {
            retire(handle);
        }
        handles
    }

    /// The address actually bound for `listen`.
    pub fn local(&self, listen: SocketAddr) -> Option<SocketAddr> {
        self.by_listen.get(&listen).map(|l| l.local)
    }

    /// Every bound address.
    pub fn locals(&self) -> Vec<SocketAddr> {
        self.by_listen.values().map(|l| l.local).collect()
    }
}

/// Tells a listener to stop accepting and removes its socket file, if it has one: no new
/// client can connect by the path from then on, and the connections it accepted go on.
fn retire(handle: &ListenerHandle) {
    let _ = handle.retire.send(true);
    if let Some(path) = &handle.unix
        && let Err(error) = std::fs::remove_file(path)
    {
        tracing::warn!(path = %path.display(), %error, "could not remove the socket file");
    }
}
