//! Sockets: binding listeners, accepting connections, serving each with hyper (HTTP/1.1 and
//! HTTP/2 on the same port), and stopping. The request itself is `proxy`'s business; which
//! config is live is the [`Shared`] snapshot pointer's.

mod accept;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigErrors};
use crate::health::{self, HealthChecks};
use crate::peer::PeerRegistry;
use crate::snapshot::Snapshot;

/// What every connection shares: the live snapshot (one atomic pointer, swapped whole on
/// reload) and the registry of live peers that outlives snapshots.
pub struct Shared {
    /// The config in force.
    pub snapshot: ArcSwap<Snapshot>,
    /// Live per-server state.
    pub registry: PeerRegistry,
}

/// Why tether could not start.
#[derive(Debug)]
pub enum StartError {
    /// The config is invalid (file:line:col for each problem).
    Config(ConfigErrors),
    /// A listen address could not be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: io::Error,
    },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(errors) => errors.fmt(f),
            StartError::Bind { addr, error } => write!(f, "bind() to {addr} failed ({error})"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running tether: its listeners and shared state.
pub struct Tether {
    shared: Arc<Shared>,
    /// Active health checks of the live snapshot.
    _health: HealthChecks,
    listeners: Vec<ListenerHandle>,
    stop: watch::Sender<bool>,
}

struct ListenerHandle {
    listen: SocketAddr,
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl Tether {
    /// Builds the snapshot and binds every `listen` address of `config`.
    pub async fn start(config: &Config) -> Result<Tether, StartError> {
        let (snapshot, registry) = build_first_snapshot(config).await?;
        let mut bound = Vec::new();
        for addr in snapshot.listen_addrs() {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|error| StartError::Bind { addr, error })?;
            bound.push((addr, listener));
        }
        Ok(Tether::serve(snapshot, registry, bound, config))
    }

    /// Like [`Tether::start`], but serves on listeners the caller bound already — keyed by the
    /// `listen` address the config names (tests bind 127.0.0.1:0 and write the port they got).
    /// Config addresses without a listener here are bound as usual.
    pub async fn start_with_listeners(
        config: &Config,
        mut listeners: Vec<(SocketAddr, TcpListener)>,
    ) -> Result<Tether, StartError> {
        let (snapshot, registry) = build_first_snapshot(config).await?;
        let mut bound = Vec::new();
        for addr in snapshot.listen_addrs() {
            let listener = match listeners.iter().position(|(listen, _)| *listen == addr) {
                Some(index) => listeners.swap_remove(index).1,
                None => TcpListener::bind(addr)
                    .await
                    .map_err(|error| StartError::Bind { addr, error })?,
            };
            bound.push((addr, listener));
        }
        Ok(Tether::serve(snapshot, registry, bound, config))
    }

    fn serve(
        snapshot: Snapshot,
        registry: PeerRegistry,
        bound: Vec<(SocketAddr, TcpListener)>,
        config: &Config,
    ) -> Tether {
        let health = health::spawn(&snapshot);
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            registry,
        });
        let (stop, stopped) = watch::channel(false);
        let limits = accept::Limits::from_config(config);
        let listeners = bound
            .into_iter()
            .map(|(listen, listener)| {
                let local = listener.local_addr().unwrap_or(listen);
                tracing::info!(%listen, %local, "listening");
                let task = tokio::spawn(accept::accept_loop(
                    listener,
                    listen,
                    shared.clone(),
                    limits.clone(),
                    stopped.clone(),
                ));
                ListenerHandle {
                    listen,
                    local,
                    task,
                }
            })
            .collect();
        Tether {
            shared,
            _health: health,
            listeners,
            stop,
        }
    }

    /// The address actually bound for a `listen` address (differs when the port was 0).
    pub fn local_addr(&self, listen: SocketAddr) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| l.listen == listen)
            .map(|l| l.local)
    }

    /// Every bound address.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.local).collect()
    }

    /// The shared state (snapshot pointer, peer registry).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops accepting and closes every connection now.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for listener in self.listeners {
            let _ = listener.task.await;
        }
    }
}

/// Builds the first snapshot off the async threads (it may resolve host names, which blocks),
/// with the registry its peers live in.
async fn build_first_snapshot(config: &Config) -> Result<(Snapshot, PeerRegistry), StartError> {
    let config = config.clone();
    let (built, registry) = tokio::task::spawn_blocking(move || {
        let registry = PeerRegistry::default();
        (Snapshot::build(&config, &registry, 1), registry)
    })
    .await
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
    Ok((built.map_err(StartError::Config)?, registry))
}
