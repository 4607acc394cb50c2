//! Seeing inside a running tether: the access log (formatted on the request path, written off
//! it, `access_log/`), the error log (tether's own events in nginx's line format,
//! `error_log/`), the throttle that keeps a flood of one condition to a line a second, the
//! process's and each listener's counters, and the status pages that show them with the
//! upstream servers' own (`status/`).
//!
//! Per-server numbers are not kept here: they are the peers' atomics, the very ones the
//! balancer reads (`peer`). What is here has no other home — client connections accepted per
//! listener, requests, reloads — and is counted the same way: relaxed atomics on the request
//! path, a lock only where a reload or the status page goes (the last reload error, the list
//! of listeners). The [`Telemetry`] outlives snapshots, so a reload keeps every count.
//!
//! Serves `runtime`, `server` and `proxy`; names no hyper type and binds no socket.

pub mod access_log;
pub mod errno;
pub mod error_log;
pub mod status;
pub mod throttle;

pub use throttle::Throttle;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::inflight::Inflight;
use crate::upstream::Retired;

/// The process's counters, shared by every listener and connection.
#[derive(Debug)]
pub struct Telemetry {
    started: Instant,
    /// Seconds since the Unix epoch at start, to turn monotonic times into wall-clock ones.
    started_unix: f64,
    /// Open client connections (the same count a graceful stop waits on). A connection
    /// upgraded to a WebSocket leaves it for `tunnels`.
    connections: Arc<Inflight>,
    /// Open tunnels (upgraded connections, HTTP/2 WebSocket streams).
    tunnels: Arc<Inflight>,
    requests: AtomicU64,
    reloads_applied: AtomicU64,
    reloads_failed: AtomicU64,
    last_reload_error: Mutex<Option<String>>,
    /// The servers reloads removed that were still draining at the last change of config.
    retired: Mutex<Vec<Retired>>,
    /// Every listen address served since start, with its counters (a retired one stays, its
    /// counts frozen, and comes back to life if a reload binds the address again).
    listeners: Mutex<Vec<(SocketAddr, Arc<ListenerStats>)>>,
}

/// One listen address's counters. `active` counts connections still speaking HTTP: one
/// upgraded to a WebSocket is counted with the tunnels from then on.
#[derive(Debug, Default)]
pub struct ListenerStats {
    accepted: AtomicU64,
    active: AtomicU64,
    tls_handshakes: AtomicU64,
    tls_failures: AtomicU64,
}

/// Counts one client connection as active on its listener for as long as it lives.
#[derive(Debug)]
pub struct ListenerToken {
    stats: Arc<ListenerStats>,
}

impl ListenerStats {
    /// Counts an accepted connection, active until the token is dropped.
    pub fn accept(self: &Arc<Self>) -> ListenerToken {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
        ListenerToken {
            stats: self.clone(),
        }
    }

    /// Connections accepted since start.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// TLS handshakes completed.
    pub fn tls_handshakes(&self) -> u64 {
        self.tls_handshakes.load(Ordering::Relaxed)
    }

    /// TLS handshakes that failed or timed out.
    pub fn tls_failures(&self) -> u64 {
        self.tls_failures.load(Ordering::Relaxed)
    }
}

impl ListenerToken {
    /// Counts the connection's TLS handshake, done or failed.
    pub fn tls_handshake(&self, done: bool) {
        let counter = if done {
            &self.stats.tls_handshakes
        } else {
            &self.stats.tls_failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for ListenerToken {
    fn drop(&mut self) {
        self.stats.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Telemetry {
    /// Counters from now, with `connections` the count of open client connections and
    /// `tunnels` the count of open tunnels.
    pub fn new(connections: Arc<Inflight>, tunnels: Arc<Inflight>) -> Telemetry {
        let started_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        Telemetry {
            started: Instant::now(),
            started_unix,
            connections,
            tunnels,
            requests: AtomicU64::new(0),
            reloads_applied: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            last_reload_error: Mutex::new(None),
            retired: Mutex::new(Vec::new()),
            listeners: Mutex::new(Vec::new()),
        }
    }

    /// The counters of `listen`, made the first time it is served (not on the request path).
    pub fn listener(&self, listen: SocketAddr) -> Arc<ListenerStats> {
        let mut listeners = lock(&self.listeners);
        if let Some((_, stats)) = listeners.iter().find(|(addr, _)| *addr == listen) {
            return stats.clone();
        }
        let stats = Arc::new(ListenerStats::default());
        listeners.push((listen, stats.clone()));
        stats
    }

    /// Every listener served since start, in the order first served.
    pub fn listeners(&self) -> Vec<(SocketAddr, Arc<ListenerStats>)> {
        lock(&self.listeners).clone()
    }

    /// Counts one client request (whatever answers it).
    pub fn record_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Client requests since start.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Open client connections still speaking HTTP.
    pub fn connections(&self) -> u64 {
        self.connections.count() as u64
    }

    /// Open tunnels.
    pub fn tunnels(&self) -> u64 {
        self.tunnels.count() as u64
    }

    /// Counts a reload: applied, or failed with what went wrong.
    pub fn record_reload(&self, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                self.reloads_applied.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                *lock(&self.last_reload_error) = Some(error);
            }
        }
    }

    /// Reloads applied and failed since start.
    pub fn reloads(&self) -> (u64, u64) {
        (
            self.reloads_applied.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed),
        )
    }

    /// Why the last failed reload failed.
    pub fn last_reload_error(&self) -> Option<String> {
        lock(&self.last_reload_error).clone()
    }

    /// Notes the servers reloads removed that drain now (the runtime's drains, after each
    /// change of config).
    pub fn set_retired(&self, retired: Vec<Retired>) {
        *lock(&self.retired) = retired;
    }

    /// The servers reloads removed whose drain was running at the last change of config.
    pub fn retired(&self) -> Vec<Retired> {
        lock(&self.retired).clone()
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Seconds since the Unix epoch at start.
    pub fn started_unix(&self) -> f64 {
        self.started_unix
    }
}

/// The locks here guard plain values a panic cannot leave half-written.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
