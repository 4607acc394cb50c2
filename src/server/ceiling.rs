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
//! lock. The table is also how connections are told to go: shed (close if idle), retired
//! (their listener stopped accepting: finish the request in hand, then close) or aborted (a
//! fast stop). A connection learns of the first two through flags and one registered waker —
//! a load and a compare per poll — instead of a channel polled on every wake-up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use slab::Slab;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::config::{Config, WorkerProcesses};
use crate::sessions::clock;
use crate::telemetry::Throttle;

/// Connections told to close per shortage: as nginx's `ngx_drain_connections`.
const SHED_BATCH: usize = 32;
/// Descriptors kept for listeners, logs, config files and health checks.
const RESERVED_FDS: usize = 64;
/// No ceiling below this, whatever the open-file limit says.
const MIN_CEILING: usize = 256;
/// No ceiling above this (an open-file limit of "unlimited"): the count never nears overflow.
const MAX_CEILING: usize = usize::MAX >> 3;

/// The connection cap of a running tether, and the table of open connections it sheds from.
pub struct Ceiling {
    /// Connections admitted and not yet gone. A count and not a semaphore: admitting is a
    /// compare-and-swap and letting go a subtraction, where tokio's semaphore takes its
    /// waiters' lock at every release; only an accept loop waiting at the cap uses `room`.
    open: AtomicUsize,
    /// Accept loops waiting for room (at the cap), so that a connection that goes knows to
    /// wake one.
    waiting: AtomicUsize,
    /// Woken when a connection goes while an accept loop waits.
    room: Notify,
    limit: usize,
    table: Mutex<Slab<Arc<ConnSlot>>>,
    /// Where the cap comes from, for the shortage warning.
    source: String,
    /// The shortage warning, at most once a second.
    warned: Throttle,
}

/// One open client connection, as the ceiling sees it.
#[derive(Debug)]
pub struct ConnSlot {
    /// The `listen` address that accepted it.
    listen: SocketAddr,
    busy: AtomicU8,
    /// Since when it has been idle, on the coarse clock ([`clock::now_ms`]).
    idle_since_ms: AtomicU64,
    /// [`SHED`] and [`RETIRED`].
    flags: AtomicU8,
    /// The connection's task, woken when a flag is set.
    waker: AtomicWaker,
    /// Ends the connection's task at once (fast stop).
    abort: OnceLock<AbortHandle>,
}

/// The connection should close if it is idle.
const SHED: u8 = 1;
/// The connection should finish what it has in hand and close.
const RETIRED: u8 = 2;

/// What a connection has been told, as of one poll.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Told {
    /// Close now if idle (the ceiling needs room).
    pub shed: bool,
    /// Finish the request in hand, take no more, close.
    pub retired: bool,
}

/// Room for one connection: held for the connection's life, it keeps the connection counted
/// and in the table.
pub struct Admission {
    ceiling: Arc<Ceiling>,
    key: usize,
    /// The connection's slot: mark it busy and idle, and watch for being shed.
    pub slot: Arc<ConnSlot>,
}

impl Ceiling {
    /// The ceiling `config` asks for.
    pub fn from_config(config: &Config) -> Arc<Ceiling> {
        let (limit, source) = match config.worker_connections {
            Some(per_worker) => {
                let workers = workers(config);
                let source = format!("worker_connections {per_worker} × {workers} worker(s)");
                (per_worker.max(1).saturating_mul(workers), source)
            }
            None => {
                let files = crate::process::open_file_limit();
                let source = format!(
                    "the open-file limit {files}: two descriptors a connection, {RESERVED_FDS} \
                     kept; raise it or set worker_connections"
                );
                (from_open_files(files), source)
            }
        };
        Ceiling::with_source(limit, source)
    }

    /// A ceiling of `limit` connections.
    pub fn new(limit: usize) -> Arc<Ceiling> {
        Ceiling::with_source(limit, "as configured".to_string())
    }

    /// A ceiling of `limit` connections that `source` set (said when it is reached).
    fn with_source(limit: usize, source: String) -> Arc<Ceiling> {
        let limit = limit.min(MAX_CEILING);
        Arc::new(Ceiling {
            open: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            room: Notify::new(),
            limit,
            table: Mutex::new(Slab::new()),
            source,
            warned: Throttle::default(),
        })
    }

    /// The cap.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Waits for room for one more connection accepted on `listen`. At the cap, idle
    /// connections are shed to make it; when none is idle, this waits for one to close.
    pub async fn admit(self: &Arc<Self>, listen: SocketAddr) -> Admission {
        if !self.try_open() {
            let shed = self.shed(SHED_BATCH);
            self.warn_shortage(shed);
            self.wait_for_room().await;
        }
        let slot = Arc::new(ConnSlot {
            listen,
            busy: AtomicU8::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            flags: AtomicU8::new(0),
            waker: AtomicWaker::new(),
            abort: OnceLock::new(),
        });
        let key = self.lock().insert(slot.clone());
        Admission {
            ceiling: self.clone(),
            key,
            slot,
        }
    }

    /// Counts one more connection if the cap allows it.
    fn try_open(&self) -> bool {
        // SeqCst, as `waiting` (see `wait_for_room` and `close`).
        self.open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |open| {
                (open < self.limit).then_some(open + 1)
            })
            .is_ok()
    }

    /// Waits until a connection goes and counts one more in its place.
    async fn wait_for_room(&self) {
        // Counted until the wait ends, whether it got in or was given up (dropped: the accept
        // loop's listener was retired meanwhile).
        let _waiting = Waiting::count(&self.waiting);
        loop {
            let mut notified = std::pin::pin!(self.room.notified());
            // Listening before looking: a connection that goes after the look sees `waiting`
            // and wakes this wait (or leaves it a permit to find).
            notified.as_mut().enable();
            if self.try_open() {
                break;
            }
            notified.await;
        }
    }

    /// One connection fewer; an accept loop waiting at the cap is woken.
    fn close(&self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.room.notify_one();
        }
    }

    /// Tells up to `count` of the longest-idle connections to close; returns how many.
    fn shed(&self, count: usize) -> usize {
        let mut idle: Vec<(u64, Arc<ConnSlot>)> = self
            .lock()
            .iter()
            .filter(|(_, slot)| slot.is_idle() && !slot.is_shed())
            .map(|(_, slot)| (slot.idle_since_ms.load(Ordering::Relaxed), slot.clone()))
            .collect();
        if idle.len() > count {
            idle.select_nth_unstable_by_key(count, |(since, _)| *since);
            idle.truncate(count);
        }
        for (_, slot) in &idle {
            slot.tell(SHED);
        }
        idle.len()
    }

    /// Tells the connections accepted on `listen` (every one, with None) to finish what they
    /// have in hand and close: their listener stopped accepting.
    pub fn retire(&self, listen: Option<SocketAddr>) {
        let slots: Vec<Arc<ConnSlot>> = self
            .lock()
            .iter()
            .filter(|(_, slot)| listen.is_none_or(|listen| slot.listen == listen))
            .map(|(_, slot)| slot.clone())
            .collect();
        for slot in slots {
            slot.tell(RETIRED);
        }
    }

    /// Ends every connection's task at once (a fast stop).
    pub fn abort_all(&self) {
        for (_, slot) in self.lock().iter() {
            if let Some(abort) = slot.abort.get() {
                abort.abort();
            }
        }
    }

    /// Says, at most once a second, that the ceiling was reached, which limit set it, and
    /// what was done.
    fn warn_shortage(&self, shed: usize) {
        if let Some(unlogged) = self.warned.allow() {
            tracing::warn!(
                limit = self.limit,
                idle_closed = shed,
                times_since_last_line = unlogged,
                "client connections at the ceiling of {} ({}): closing idle ones, new clients \
                 wait for room",
                self.limit,
                self.source
            );
        }
    }

    /// On the coarse clock: which idle connection is the oldest needs no finer time, and the
    /// real clock cost a read at every request's end.
    fn now_ms(&self) -> u64 {
        clock::now_ms()
    }

    fn lock(&self) -> MutexGuard<'_, Slab<Arc<ConnSlot>>> {
        // Inserts and removals only: nothing panics while it is held.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One accept loop counted as waiting at the cap, for as long as this lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(waiting: &'a AtomicUsize) -> Waiting<'a> {
        waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.ceiling.lock().try_remove(self.key);
        self.ceiling.close();
    }
}

impl ConnSlot {
    /// Marks the connection idle from now (between requests, or awaiting a head).
    pub fn idle(&self) {
        self.idle_since_ms.store(clock::now_ms(), Ordering::Relaxed);
        self.busy.store(0, Ordering::Release);
    }

    /// Marks the connection busy (a request in flight): it will not be shed.
    pub fn busy(&self) {
        self.busy.store(1, Ordering::Release);
        if self.flags.load(Ordering::Relaxed) & SHED != 0 {
            self.flags.fetch_and(!SHED, Ordering::AcqRel);
        }
    }

    /// The handle that ends the connection's task (set once, right after it is spawned).
    pub fn set_abort(&self, abort: AbortHandle) {
        let _ = self.abort.set(abort);
    }

    /// What the connection has been told; registers the task to be woken when that changes.
    pub fn poll_told(&self, cx: &mut Context<'_>) -> Told {
        // Register first, then read: a flag set in between wakes the task.
        self.waker.register(cx.waker());
        self.told()
    }

    /// What the connection has been told (no waker registered).
    pub fn told(&self) -> Told {
        let flags = self.flags.load(Ordering::Acquire);
        Told {
            shed: flags & SHED != 0,
            retired: flags & RETIRED != 0,
        }
    }

    /// Completes once the connection is shed or retired (for a connection with nothing in
    /// hand, either means: close).
    pub async fn told_to_go(&self) {
        std::future::poll_fn(|cx| {
            let told = self.poll_told(cx);
            if told.shed || told.retired {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    fn tell(&self, flag: u8) {
        self.flags.fetch_or(flag, Ordering::AcqRel);
        self.waker.wake();
    }

    fn is_idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
    }

    /// True once the ceiling asked this idle connection to close.
    pub fn is_shed(&self) -> bool {
        self.told().shed
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

#[cfg(test)]
#[path = "ceiling_tests.rs"]
mod tests;
