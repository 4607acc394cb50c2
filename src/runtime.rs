//! The running tether: the config in force and the one way to change it. [`Tether::start`]
//! builds the first snapshot and binds its listeners; [`Tether::apply`] takes a new config
//! through build -> bind the listen addresses it adds -> swap the snapshot -> reconcile the
//! listeners and restart the health checks, all or nothing; [`Tether::shutdown`] and
//! [`Tether::stop`] end it.
//!
//! Sockets (bind, accept, sniffing, the connection ceiling) are `server`'s and health probes
//! `proxy::health`'s: this module decides when they start and stop. It imports what lies
//! below it — config, snapshot, peer, proxy, server — and never `reload` or `main`.

mod listeners;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Config, ConfigErrors};
use crate::drain::{self, Drains};
use crate::limits::ZoneRegistry;
use crate::peer::PeerRegistry;
use crate::proxy::health::{self, HealthChecks};
use crate::resolve::{self, Answers, Follower};
use crate::server::{self, Ceiling, Lifecycle, blocking};
use crate::session_sync::{self, Syncs};
use crate::snapshot::Snapshot;
use crate::telemetry::Telemetry;
use crate::telemetry::error_log;
use crate::tls::SessionStore;
use listeners::{ListenerHandle, Listeners};

/// The state a running tether keeps across config changes.
pub struct Shared {
    /// The config in force: one pointer, swapped whole on reload. Every connection holds it
    /// and loads the snapshot once per request.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Live per-server state, which outlives snapshots (each build looks its peers up here).
    pub registry: Arc<PeerRegistry>,
    /// TLS session caches and ticket keys, which outlive snapshots too.
    pub sessions: Arc<SessionStore>,
    /// `limit_req_zone` and `limit_conn_zone` state, which outlives snapshots too.
    pub zones: Arc<ZoneRegistry>,
    /// The addresses of `server NAME resolve` names now, kept by the DNS follower.
    pub answers: Arc<Answers>,
    /// The servers draining now (`drain_timeout`), each with the task spreading its closes.
    pub drains: Arc<Drains>,
    /// The Redis syncs of `sticky learn ... sync=` zones, one per zone, living with it.
    pub syncs: Arc<Syncs>,
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
    /// A file `error_log` names could not be opened.
    ErrorLog(error_log::OpenError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(errors) => errors.fmt(f),
            StartError::Bind { addr, error } => match crate::config::model::unix_listen_path(*addr)
            {
                Some(path) => write!(f, "bind() to unix:{path} failed ({error})"),
                None => write!(f, "bind() to {addr} failed ({error})"),
            },
            StartError::Panicked(panic) => write!(f, "building the configuration {panic}"),
            StartError::ErrorLog(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for StartError {}

/// A running tether: its listeners, its shared state, and what is in flight.
pub struct Tether {
    shared: Shared,
    live: Arc<Mutex<Live>>,
    ceiling: Arc<Ceiling>,
    lifecycle: Lifecycle,
    /// Serialises config changes: one reload (or DNS rebuild) at a time.
    applying: Arc<tokio::sync::Mutex<()>>,
    /// The config in force, for the DNS follower (which rebuilds from it).
    config: watch::Sender<Arc<Config>>,
    /// Follows the names of `server ... resolve` lines; ends with the tether.
    _follower: Follower,
}

/// What a config change replaces: the listeners, and the health checks of the snapshot in
/// force.
struct Live {
    listeners: Listeners,
    /// Bound but not yet accepting: between [`Tether::bind`] and [`Tether::open`].
    unopened: Option<Vec<(SocketAddr, server::Bound)>>,
    _health: HealthChecks,
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
    /// Builds the snapshot, binds every `listen` address of `config` and starts accepting.
    pub async fn start(config: &Config) -> Result<Tether, StartError> {
        Tether::start_with_listeners(config, Vec::new()).await
    }

    /// Like [`Tether::start`], but accepts nothing until [`Tether::open`]: the process binds
    /// as root and serves only once it has become the configured user, as nginx's workers do.
    pub async fn bind(config: &Config) -> Result<Tether, StartError> {
        Tether::bind_with_listeners(config, Vec::new()).await
    }

    /// Starts accepting on the listeners [`Tether::bind`] bound (once; later calls do
    /// nothing).
    pub fn open(&self) {
        let Some(bound) = self.lock().unopened.take() else {
            return;
        };
        let handles = self.serve_all(bound);
        self.lock().listeners.extend(handles);
    }

    /// Like [`Tether::start`], but serves on listeners the caller bound already — keyed by the
    /// `listen` address the config names (tests bind 127.0.0.1:0 and write the port they got).
    /// Config addresses without a listener here are bound as usual.
    pub async fn start_with_listeners(
        config: &Config,
        prebound: Vec<(SocketAddr, TcpListener)>,
    ) -> Result<Tether, StartError> {
        let tether = Tether::bind_with_listeners(config, prebound).await?;
        tether.open();
        Ok(tether)
    }

    async fn bind_with_listeners(
        config: &Config,
        prebound: Vec<(SocketAddr, TcpListener)>,
    ) -> Result<Tether, StartError> {
        let registry = Arc::new(PeerRegistry::default());
        let sessions = Arc::new(SessionStore::default());
        let zones = Arc::new(ZoneRegistry::default());
        let answers = Arc::new(Answers::default());
        resolve::look_up_new(config, &answers).await;
        let kept = (&sessions, &zones, &answers);
        let snapshot = build(config, &registry, kept, 1).await?;
        let wanted: Vec<SocketAddr> = snapshot.listen_addrs().collect();
        let bound = Listeners::default()
            .bind_new(&wanted, prebound, |addr| snapshot.is_dual_stack(addr))?;
        let ceiling = Ceiling::from_config(config);
        tracing::info!(
            limit = ceiling.limit(),
            "client connections capped (worker_connections, else the open-file limit)"
        );
        let health = health::spawn(&snapshot);
        let drains = Arc::new(Drains::default());
        drains.reconcile(None, &snapshot);
        let syncs = Arc::new(Syncs::default());
        syncs.reconcile(&zones.learned, session_sync::LOG_INTERVAL);
        let shared = Shared {
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            registry,
            sessions,
            zones,
            answers,
            drains,
            syncs,
        };
        let live = Arc::new(Mutex::new(Live {
            listeners: Listeners::default(),
            unopened: Some(bound),
            _health: health,
        }));
        let applying = Arc::new(tokio::sync::Mutex::new(()));
        let (config_tx, config_rx) = watch::channel(Arc::new(config.clone()));
        let lifecycle = Lifecycle::default();
        let rebuild = Rebuild {
            snapshot: shared.snapshot.clone(),
            registry: shared.registry.clone(),
            sessions: shared.sessions.clone(),
            zones: shared.zones.clone(),
            answers: shared.answers.clone(),
            drains: shared.drains.clone(),
            telemetry: lifecycle.telemetry.clone(),
            live: live.clone(),
            applying: applying.clone(),
            config: config_tx.subscribe(),
        };
        let follower = resolve::follow(config_rx, shared.answers.clone(), move || {
            let rebuild = rebuild.clone();
            async move { rebuild.run().await }
        });
        let tether = Tether {
            shared,
            live,
            ceiling,
            lifecycle,
            applying,
            config: config_tx,
            _follower: follower,
        };
        Ok(tether)
    }

    /// Applies a new config: builds and validates a complete snapshot, binds the listen
    /// addresses it adds, and only then swaps the snapshot, stops accepting on the addresses it
    /// drops (their open connections finish) and restarts health checks. Any failure leaves
    /// the running config untouched. Peers that stay keep their state — counters, health,
    /// the run of check results — and requests, tunnels and streams already running finish
    /// where they are.
    pub async fn apply(&self, config: &Config) -> Result<Applied, StartError> {
        let _one_at_a_time = self.applying.lock().await;
        debug_assert!(
            self.lock().unopened.is_none(),
            "a config applied before the listeners opened"
        );
        let started = Instant::now();
        let old = self.shared.snapshot.load_full();
        let (registry, sessions) = (&self.shared.registry, &self.shared.sessions);
        let answers = &self.shared.answers;
        let generation = old.generation + 1;
        resolve::look_up_new(config, answers).await;
        let kept = (sessions, &self.shared.zones, answers);
        let snapshot = build(config, registry, kept, generation).await?;
        let wanted: Vec<SocketAddr> = snapshot.listen_addrs().collect();
        // Opened before anything changes: an error log that cannot be opened fails the
        // reload, as in nginx.
        let error_log = error_log::prepare(config).map_err(StartError::ErrorLog)?;
        // Bound before anything changes: a port in use fails the reload, not the service.
        let added = (self.lock().listeners)
            .bind_new(&wanted, Vec::new(), |addr| snapshot.is_dual_stack(addr))?;

        let new = Arc::new(snapshot);
        let health = health::spawn(&new);
        self.shared.snapshot.store(new.clone());
        // After the swap: a server drained or removed now takes nothing new, so the streams
        // its drain counts are all it will ever have.
        self.shared.drains.reconcile(Some(&old), &new);
        (self.lifecycle.telemetry).set_retired(self.shared.drains.retired());
        // A zone the new snapshot brought (or declared anew) starts sharing now; one it kept
        // keeps its sync; one it dropped takes its sync with it once the old snapshot goes.
        (self.shared.syncs).reconcile(&self.shared.zones.learned, session_sync::LOG_INTERVAL);
        self.config.send_replace(Arc::new(config.clone()));
        if let Some(error_log) = error_log {
            error_log.commit();
        }

        let handles = self.serve_all(added);
        let listeners_added = handles.iter().map(|(addr, _)| *addr).collect();
        let mut live = self.lock();
        // The old snapshot's probes stop here; the peers keep what they found.
        live._health = health;
        live.listeners.extend(handles);
        let listeners_removed = live.listeners.retire_unwanted(&wanted);
        for addr in &listeners_removed {
            self.ceiling.retire(Some(*addr));
        }
        Ok(Applied {
            old,
            new,
            listeners_added,
            listeners_removed,
            elapsed: started.elapsed(),
        })
    }

    /// Starts accepting on each listener.
    fn serve_all(
        &self,
        bound: Vec<(SocketAddr, server::Bound)>,
    ) -> Vec<(SocketAddr, ListenerHandle)> {
        bound
            .into_iter()
            .map(|(listen, listener)| (listen, self.serve(listen, listener)))
            .collect()
    }

    fn serve(&self, listen: SocketAddr, listener: server::Bound) -> ListenerHandle {
        let (local, unix) = match &listener {
            server::Bound::Tcp(tcp) => (tcp.local_addr().unwrap_or(listen), None),
            server::Bound::Unix(_, path) => (listen, Some(path.clone())),
        };
        match &unix {
            Some(path) => {
                tracing::info!(listen = %format_args!("unix:{}", path.display()), "listening")
            }
            None => tracing::info!(%listen, %local, "listening"),
        }
        let (retire, retired) = watch::channel(false);
        let task = tokio::spawn(server::accept_loop(
            listener,
            listen,
            self.shared.snapshot.clone(),
            self.ceiling.clone(),
            self.lifecycle.clone(),
            retired,
        ));
        ListenerHandle {
            local,
            unix,
            retire,
            task,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        // Held only for table updates that cannot panic halfway.
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The address actually bound for a `listen` address (differs when the port was 0).
    pub fn local_addr(&self, listen: SocketAddr) -> Option<SocketAddr> {
        self.lock().listeners.local(listen)
    }

    /// Every bound address.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.lock().listeners.locals()
    }

    /// The shared state (snapshot pointer, peer registry).
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Opens every log file again by its name (SIGUSR1, `tether -s reopen`): after logrotate
    /// renamed them, new lines go to new files. A file that cannot be reopened keeps the old
    /// one, and says so.
    pub fn reopen_logs(&self) {
        // Access logs: what was written goes to the file open until now, every later line to
        // the path opened afresh.
        crate::telemetry::access_log::reopen_logs();
        for failed in error_log::reopen() {
            tracing::error!("{failed}: the error log stays on the file it had");
        }
        tracing::info!("log files reopened");
    }

    /// Open client connections right now.
    pub fn open_connections(&self) -> usize {
        self.lifecycle.connections.count()
    }

    /// The process's and listeners' counters (what the status pages show besides the peers').
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.lifecycle.telemetry
    }

    /// Open tunnels (WebSockets and other upgrades) right now.
    pub fn open_tunnels(&self) -> usize {
        self.lifecycle.tunnels.count()
    }

    /// Graceful stop (SIGQUIT): stop accepting, let open requests finish for up to `timeout`,
    /// and close tunnels and event streams spread evenly over it (less a close grace) —
    /// WebSockets with a close frame (1001, going away), so their clients do not all reconnect
    /// elsewhere at the same instant — then whatever is left.
    pub async fn shutdown(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let _retired = self.lock().listeners.retire_all();
        self.ceiling.retire(None);
        let spread = drain::stop_spread(timeout, crate::proxy::tunnel::CLOSE_GRACE);
        self.shared
            .drains
            .stop_all(self.shared.registry.live(), spread);
        let (connections, tunnels) = (&self.lifecycle.connections, &self.lifecycle.tunnels);
        let everything = async {
            connections.idle().await;
            tunnels.idle().await;
        };
        if tokio::time::timeout_at(deadline, everything).await.is_err() {
            tracing::warn!(
                open = connections.count(),
                tunnels = tunnels.count(),
                "shutdown_timeout reached with requests or tunnels still open"
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
        let listeners = self.lock().listeners.retire_all();
        for listener in listeners {
            let _ = listener.task.await;
        }
    }
}

/// Builds a snapshot off the async threads (it may resolve host names, which blocks), with
/// peers from `registry`. A panic in the build is a [`StartError::Panicked`], never a crash;
/// the registry is untouched by a failed build but for peers nothing holds, which the next
/// build forgets.
async fn build(
    config: &Config,
    registry: &Arc<PeerRegistry>,
    (sessions, zones, answers): (&Arc<SessionStore>, &Arc<ZoneRegistry>, &Arc<Answers>),
    generation: u64,
) -> Result<Snapshot, StartError> {
    let config = config.clone();
    let registry = registry.clone();
    let (sessions, zones, answers) = (sessions.clone(), zones.clone(), answers.clone());
    blocking::run(move || {
        let kept = (&*sessions, &*zones, &*answers);
        Snapshot::build_with(&config, &registry, kept, generation)
    })
    .await
    .map_err(StartError::Panicked)?
    .map_err(StartError::Config)
}

/// What the DNS follower needs to put a new snapshot in force when a `resolve` name's
/// addresses change: a reload of the config in force that binds nothing (its listeners are
/// the same), with the same no-drop, state-keeping rules.
#[derive(Clone)]
struct Rebuild {
    snapshot: Arc<ArcSwap<Snapshot>>,
    registry: Arc<PeerRegistry>,
    sessions: Arc<SessionStore>,
    zones: Arc<ZoneRegistry>,
    answers: Arc<Answers>,
    drains: Arc<Drains>,
    telemetry: Arc<Telemetry>,
    live: Arc<Mutex<Live>>,
    applying: Arc<tokio::sync::Mutex<()>>,
    config: watch::Receiver<Arc<Config>>,
}

impl Rebuild {
    async fn run(&self) {
        let _one_at_a_time = self.applying.lock().await;
        let config = self.config.borrow().clone();
        let generation = self.snapshot.load().generation + 1;
        let built = build(
            &config,
            &self.registry,
            (&self.sessions, &self.zones, &self.answers),
            generation,
        );
        match built.await {
            Ok(snapshot) => {
                let new = Arc::new(snapshot);
                let health = health::spawn(&new);
                let old = self.snapshot.swap(new.clone());
                self.drains.reconcile(Some(&old), &new);
                self.telemetry.set_retired(self.drains.retired());
                let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
                live._health = health;
                tracing::info!("upstream servers follow the new DNS answers");
            }
            // The config was valid when it was applied, so this is unexpected; the snapshot
            // in force stays.
            Err(error) => tracing::error!("rebuilding after a DNS change failed: {error}"),
        }
    }
}
