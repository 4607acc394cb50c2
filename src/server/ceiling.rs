//! The cap on open client connections, and what happens at it.
//!
//! The cap is `worker_connections` × workers when configured; otherwise it follows the
//! process's open-file limit (as HAProxy derives `maxconn`): every proxied connection may hold
//! two descriptors, its own and its upstream's, so half the limit, less a reserve for
//! listeners, logs and config files. nginx's 512 per worker is far too low for a WebSocket farm.
//!
//! At the cap, tether sheds instead of stalling, the way nginx frees "reusable" connections:
//! the connections that are idle — in keep-alive between requests, or still waiting for (or in
//! the middle of) a request head, which is where a slowloris sits — are told to close, oldest
//! first, a batch at a time; a connection with a request in flight is never touched. The
//! shortage is logged at most once a second.
//!
//! Each connection has a [`ConnSlot`] in a table (locked once when it opens and once when it
//! closes); moving between idle and busy is two atomic stores, so the request path takes no
//! lock.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use slab::Slab;
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::config::{Config, WorkerProcesses};

/// Connections told to close per shortage: as nginx's `ngx_drain_connections`.
const SHED_BATCH: usize = 32;
/// Descriptors kept for listeners, logs, config files and health checks.
const RESERVED_FDS: usize = 64;
/// No ceiling below this, whatever the open-file limit says.
const MIN_CEILING: usize = 256;

/// The connection cap of a running tether, and the table of open connections it sheds from.
pub struct Ceiling {
    permits: Arc<Semaphore>,
    limit: usize,
    table: Mutex<Slab<Arc<ConnSlot>>>,
    /// When this ceiling was made: the zero of every `*_ms` stamp.
    epoch: Instant,
    /// Milliseconds after `epoch` of the last shortage warning (+1; 0 = never).
    warned_ms: AtomicU64,
}

/// One open client connection, as the ceiling sees it.
#[derive(Debug)]
pub struct ConnSlot {
    /// The ceiling's epoch, the zero of `idle_since_ms`.
    epoch: Instant,
    busy: AtomicU8,
    /// Milliseconds after the ceiling's epoch since when it has been idle.
    idle_since_ms: AtomicU64,
    shed: AtomicBool,
    wake: Notify,
}

/// Room for one connection: held for the connection's life, it keeps the connection counted
/// and in the table.
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    ceiling: Arc<Ceiling>,
    key: usize,
    /// The connection's slot: mark it busy and idle, and watch for being shed.
    pub slot: Arc<ConnSlot>,
}

impl Ceiling {
    /// The ceiling `config` asks for.
    pub fn from_config(config: &Config) -> Arc<Ceiling> {
        let limit = match config.worker_connections {
            Some(per_worker) => per_worker.max(1).saturating_mul(workers(config)),
            None => from_open_files(open_file_limit()),
        };
        Ceiling::new(limit)
    }

    /// A ceiling of `limit` connections.
    pub fn new(limit: usize) -> Arc<Ceiling> {
        let limit = limit.min(Semaphore::MAX_PERMITS);
        Arc::new(Ceiling {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            table: Mutex::new(Slab::new()),
            epoch: Instant::now(),
            warned_ms: AtomicU64::new(0),
        })
    }

    /// The cap.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Waits for room for one more connection. At the cap, idle connections are shed to make
    /// it; when none is idle, this waits for one to close.
    pub async fn admit(self: &Arc<Self>) -> Admission {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {
                let shed = self.shed(SHED_BATCH);
                self.warn_shortage(shed);
                match self.permits.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    // The semaphore is never closed: it lives as long as `self`.
                    Err(_) => unreachable!("the connection semaphore is never closed"),
                }
            }
        };
        let slot = Arc::new(ConnSlot {
            epoch: self.epoch,
            busy: AtomicU8::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            shed: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let key = self.lock().insert(slot.clone());
        Admission {
            _permit: permit,
            ceiling: self.clone(),
            key,
            slot,
        }
    }

    /// Tells up to `count` of the longest-idle connections to close; returns how many.
    fn shed(&self, count: usize) -> usize {
        let mut idle: Vec<(u64, Arc<ConnSlot>)> = self
            .lock()
            .iter()
            .filter(|(_, slot)| slot.is_idle() && !slot.shed.load(Ordering::Relaxed))
            .map(|(_, slot)| (slot.idle_since_ms.load(Ordering::Relaxed), slot.clone()))
            .collect();
        if idle.len() > count {
            idle.select_nth_unstable_by_key(count, |(since, _)| *since);
            idle.truncate(count);
        }
        for (_, slot) in &idle {
            slot.shed.store(true, Ordering::Relaxed);
            slot.wake.notify_waiters();
        }
        idle.len()
    }

    fn warn_shortage(&self, shed: usize) {
        let now = self.now_ms() + 1;
        let last = self.warned_ms.load(Ordering::Relaxed);
        if last != 0 && now < last + 1000 {
            return;
        }
        if self
            .warned_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::warn!(
                limit = self.limit,
                idle_closed = shed,
                "client connections at the ceiling (worker_connections): closing idle ones, \
                 new clients wait for room"
            );
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn lock(&self) -> MutexGuard<'_, Slab<Arc<ConnSlot>>> {
        // Inserts and removals only: nothing panics while it is held.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.ceiling.lock().try_remove(self.key);
    }
}

impl ConnSlot {
    /// Marks the connection idle from now (between requests, or awaiting a head).
    pub fn idle(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.idle_since_ms.store(now, Ordering::Relaxed);
        self.busy.store(0, Ordering::Release);
    }

    /// Marks the connection busy (a request in flight): it will not be shed.
    pub fn busy(&self) {
        self.busy.store(1, Ordering::Release);
        self.shed.store(false, Ordering::Relaxed);
    }

    fn is_idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
    }

    /// True once the ceiling asked this idle connection to close.
    pub fn is_shed(&self) -> bool {
        self.shed.load(Ordering::Relaxed)
    }

    /// Completes when the ceiling sheds this connection. Create it *before* checking
    /// [`ConnSlot::is_shed`], so a shed in between is not missed.
    pub fn shed_signal(&self) -> Notified<'_> {
        self.wake.notified()
    }
}

fn workers(config: &Config) -> usize {
    match config.worker_processes {
        WorkerProcesses::Count(n) => n.max(1),
        WorkerProcesses::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// The ceiling an open-file limit allows: two descriptors per proxied connection.
fn from_open_files(limit: u64) -> usize {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    (limit.saturating_sub(RESERVED_FDS) / 2).max(MIN_CEILING)
}

/// The soft open-file limit (which `main` raised to the hard one at start).
fn open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes a properly initialised local struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        1024
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_default_ceiling_follows_the_open_file_limit() {
        assert_eq!(from_open_files(1024), 480);
        assert_eq!(from_open_files(20_000), 9_968);
        assert_eq!(from_open_files(1_048_576), 524_256);
        assert_eq!(from_open_files(100), MIN_CEILING);
        assert_eq!(
            Ceiling::new(from_open_files(u64::MAX)).limit(),
            Semaphore::MAX_PERMITS
        );
    }

    #[tokio::test]
    async fn the_longest_idle_connections_are_shed_first_and_busy_ones_never() {
        let ceiling = Ceiling::new(10);
        let oldest = ceiling.admit().await;
        let busy = ceiling.admit().await;
        busy.slot.busy();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let younger = ceiling.admit().await;
        assert_eq!(ceiling.shed(1), 1);
        assert!(oldest.slot.is_shed());
        assert!(!younger.slot.is_shed());
        assert_eq!(
            ceiling.shed(5),
            1,
            "only the younger idle one is left to shed"
        );
        assert!(younger.slot.is_shed());
        assert!(!busy.slot.is_shed());
        // A connection that turns busy is no longer marked.
        younger.slot.busy();
        assert!(!younger.slot.is_shed());
    }

    #[tokio::test]
    async fn a_full_ceiling_sheds_and_admits_once_a_shed_connection_is_gone() {
        let ceiling = Ceiling::new(2);
        let idle = ceiling.admit().await;
        let busy = ceiling.admit().await;
        busy.slot.busy();
        let admitting = tokio::spawn({
            let ceiling = ceiling.clone();
            async move { ceiling.admit().await }
        });
        {
            let shed = idle.slot.shed_signal();
            if !idle.slot.is_shed() {
                tokio::time::timeout(Duration::from_secs(5), shed)
                    .await
                    .unwrap();
            }
        }
        assert!(!busy.slot.is_shed());
        drop(idle);
        let newcomer = tokio::time::timeout(Duration::from_secs(5), admitting)
            .await
            .unwrap()
            .unwrap();
        assert!(!newcomer.slot.is_shed());
        assert_eq!(ceiling.lock().len(), 2);
    }
}
