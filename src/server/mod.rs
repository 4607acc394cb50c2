//! Sockets: binding listeners, accepting connections, serving each (HTTP/1.1 by tether's own
//! `http1`, HTTP/2 by hyper, on the same port), applying a new config's listeners, and stopping — at once or
//! gracefully. The request itself is `proxy`'s business; which config is live is the
//! [`Shared`] snapshot pointer's.

mod accept;
pub mod blocking;
mod ceiling;
mod h2;
pub mod http1;
mod sniff;

pub use ceiling::raise_open_file_limit;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigErrors};
use crate::peer::PeerRegistry;
use crate::proxy::health::{self, HealthChecks};
use crate::snapshot::Snapshot;

/// What every connection shares: the live snapshot (one atomic pointer, swapped whole on
/// reload) and the registry of live peers that outlives snapshots.
pub struct Shared {
    /// The config in force.
    pub snapshot: ArcSwap<Snapshot>,
    /// Live per-server state.
    pub registry: PeerRegistry,
}

/// Why a config could not be started or applied.
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
    /// Building the snapshot panicked (a bug; the message says where).
    Panicked(blocking::Panic),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(errors) => errors.fmt(f),
            StartError::Bind { addr, error } => write!(f, "bind() to {addr} failed ({error})"),
            StartError::Panicked(panic) => write!(f, "building the configuration {panic}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running tether: its listeners, its shared state, and what is in flight.
pub struct Tether {
    shared: Arc<Shared>,
    live: Mutex<Live>,
    ceiling: Arc<ceiling::Ceiling>,
    lifecycle: accept::Lifecycle,
    /// Serialises config changes: one reload at a time.
    applying: tokio::sync::Mutex<()>,
}

/// What a config change replaces: listeners by address, and the health checks of the
/// snapshot in force.
struct Live {
    listeners: HashMap<SocketAddr, ListenerHandle>,
    _health: HealthChecks,
}

struct ListenerHandle {
    local: SocketAddr,
    /// Set to true to stop accepting; the listener's connections then finish gracefully.
    retire: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A config change that took effect.
pub struct Applied {
    /// The snapshot replaced.
    pub old: Arc<Snapshot>,
    /// The snapshot now in force.
    pub new: Arc<Snapshot>,
    /// Listen addresses bound by this change.
    pub listeners_added: Vec<SocketAddr>,
    /// Listen addresses that stopped accepting.
    pub listeners_removed: Vec<SocketAddr>,
    /// From the start of building to the swap.
    pub elapsed: Duration,
}

impl Tether {
    /// Builds the snapshot and binds every `listen` address of `config`.
    pub async fn start(config: &Config) -> Result<Tether, StartError> {
        Tether::start_with_listeners(config, Vec::new()).await
    }

    /// Like [`Tether::start`], but serves on listeners the caller bound already — keyed by the
    /// `listen` address the config names (tests bind 127.0.0.1:0 and write the port they got).
    /// Config addresses without a listener here are bound as usual.
    pub async fn start_with_listeners(
        config: &Config,
        prebound: Vec<(SocketAddr, TcpListener)>,
    ) -> Result<Tether, StartError> {
        let registry = PeerRegistry::default();
        let (snapshot, registry) = build(config, registry, 1).await;
        let snapshot = snapshot?;
        let mut prebound = prebound;
        let mut bound = Vec::new();
        for addr in snapshot.listen_addrs() {
            let listener = match prebound.iter().position(|(listen, _)| *listen == addr) {
                Some(index) => prebound.swap_remove(index).1,
                None => bind(addr)?,
            };
            bound.push((addr, listener));
        }
        let ceiling = ceiling::Ceiling::from_config(config);
        tracing::info!(
            limit = ceiling.limit(),
            "client connections capped (worker_connections, else the open-file limit)"
        );
        let health = health::spawn(&snapshot);
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            registry,
        });
        let tether = Tether {
            shared,
            live: Mutex::new(Live {
                listeners: HashMap::new(),
                _health: health,
            }),
            ceiling,
            lifecycle: accept::Lifecycle::default(),
            applying: tokio::sync::Mutex::new(()),
        };
        let handles: Vec<_> = bound
            .into_iter()
            .map(|(listen, listener)| (listen, tether.serve(listen, listener)))
            .collect();
        tether.lock().listeners.extend(handles);
        Ok(tether)
    }

    /// Applies a new config: builds and validates a complete snapshot, binds the listen
    /// addresses it adds, and only then swaps the snapshot, stops accepting on the addresses it
    /// drops (their open connections finish) and restarts health checks. Any failure leaves
    /// the running config untouched. Peers that stay keep their state; requests, tunnels and
    /// streams already running finish where they are.
    pub async fn apply(&self, config: &Config) -> Result<Applied, StartError> {
        let _one_at_a_time = self.applying.lock().await;
        let started = Instant::now();
        let old = self.shared.snapshot.load_full();
        let snapshot = rebuild(config, self.shared.clone(), old.generation + 1).await?;

        let wanted: Vec<SocketAddr> = snapshot.listen_addrs().collect();
        let current: Vec<SocketAddr> = self.lock().listeners.keys().copied().collect();
        let mut added = Vec::new();
        for &addr in wanted.iter().filter(|addr| !current.contains(addr)) {
            // Bound before anything changes: a port in use fails the reload, not the service.
            added.push((addr, bind(addr)?));
        }

        let new = Arc::new(snapshot);
        let health = health::spawn(&new);
        self.shared.snapshot.store(new.clone());

        let handles: Vec<_> = added
            .into_iter()
            .map(|(listen, listener)| (listen, self.serve(listen, listener)))
            .collect();
        let listeners_added = handles.iter().map(|(addr, _)| *addr).collect();
        let mut live = self.lock();
        live._health = health;
        live.listeners.extend(handles);
        let listeners_removed: Vec<SocketAddr> = current
            .into_iter()
            .filter(|addr| !wanted.contains(addr))
            .collect();
        for addr in &listeners_removed {
            if let Some(handle) = live.listeners.remove(addr) {
                let _ = handle.retire.send(true);
                self.ceiling.retire(Some(*addr));
            }
        }
        Ok(Applied {
            old,
            new,
            listeners_added,
            listeners_removed,
            elapsed: started.elapsed(),
        })
    }

    fn serve(&self, listen: SocketAddr, listener: TcpListener) -> ListenerHandle {
        let local = listener.local_addr().unwrap_or(listen);
        tracing::info!(%listen, %local, "listening");
        let (retire, retired) = watch::channel(false);
        let task = tokio::spawn(accept::accept_loop(
            listener,
            listen,
            self.shared.clone(),
            self.ceiling.clone(),
            self.lifecycle.clone(),
            retired,
        ));
        ListenerHandle {
            local,
            retire,
            task,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        // Held only for map updates that cannot panic halfway.
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The address actually bound for a `listen` address (differs when the port was 0).
    pub fn local_addr(&self, listen: SocketAddr) -> Option<SocketAddr> {
        self.lock().listeners.get(&listen).map(|l| l.local)
    }

    /// Every bound address.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.lock().listeners.values().map(|l| l.local).collect()
    }

    /// The shared state (snapshot pointer, peer registry).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Open client connections right now.
    pub fn open_connections(&self) -> usize {
        self.lifecycle.connections.count()
    }

    /// Open tunnels (WebSockets and other upgrades) right now.
    pub fn open_tunnels(&self) -> usize {
        self.lifecycle.tunnels.count()
    }

    /// Graceful stop (SIGQUIT): stop accepting, let open requests finish for up to `timeout`,
    /// then close tunnels — WebSockets with a close frame (1001, going away) — and whatever
    /// is left.
    pub async fn shutdown(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let listeners: Vec<ListenerHandle> =
            self.lock().listeners.drain().map(|(_, l)| l).collect();
        for listener in &listeners {
            let _ = listener.retire.send(true);
        }
        self.ceiling.retire(None);
        let connections = self.lifecycle.connections.clone();
        if tokio::time::timeout_at(deadline, connections.idle())
            .await
            .is_err()
        {
            tracing::warn!(
                open = connections.count(),
                "shutdown_timeout reached with requests still open"
            );
        }
        self.lifecycle.close_tunnels.cancel();
        // Close frames need a moment to reach both sides.
        let tunnels = self.lifecycle.tunnels.clone();
        let _ = tokio::time::timeout(Duration::from_secs(2), tunnels.idle()).await;
        self.stop().await;
    }

    /// Fast stop (SIGTERM): stops accepting and closes every connection now.
    pub async fn stop(&self) {
        self.ceiling.abort_all();
        self.lifecycle.close_tunnels.cancel();
        let listeners: Vec<ListenerHandle> =
            self.lock().listeners.drain().map(|(_, l)| l).collect();
        for listener in listeners {
            let _ = listener.retire.send(true);
            let _ = listener.task.await;
        }
    }
}

/// Accept queue length asked of the kernel (which caps it at `net.core.somaxconn`). The
/// default 128 overflows when hundreds of WebSockets reconnect at once — after a deploy, a
/// network blip — and dropped SYNs cost clients a second each; nginx asks for 511, HAProxy more.
const LISTEN_BACKLOG: u32 = 4096;

fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    let error = |error| StartError::Bind { addr, error };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(error)?;
    // As every server does: a restart must not wait out TIME_WAIT on its own port.
    socket.set_reuseaddr(true).map_err(error)?;
    socket.bind(addr).map_err(error)?;
    socket.listen(LISTEN_BACKLOG).map_err(error)
}

/// Builds a snapshot off the async threads (it may resolve host names, which blocks), with
/// peers from `registry`; returns the registry too so the first start can keep it. A panic in
/// the build is a [`StartError::Panicked`], never a crash.
async fn build(
    config: &Config,
    registry: PeerRegistry,
    generation: u64,
) -> (Result<Snapshot, StartError>, PeerRegistry) {
    let config = config.clone();
    let built = blocking::run(move || {
        let built = Snapshot::build(&config, &registry, generation);
        (built, registry)
    })
    .await;
    match built {
        Ok((built, registry)) => (built.map_err(StartError::Config), registry),
        // Only a first start builds this way: its fresh registry is no loss.
        Err(panic) => (Err(StartError::Panicked(panic)), PeerRegistry::default()),
    }
}

/// [`build`] over the shared registry of a running tether.
async fn rebuild(
    config: &Config,
    shared: Arc<Shared>,
    generation: u64,
) -> Result<Snapshot, StartError> {
    let config = config.clone();
    blocking::run(move || Snapshot::build(&config, &shared.registry, generation))
        .await
        .map_err(StartError::Panicked)?
        .map_err(StartError::Config)
}
