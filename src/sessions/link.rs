//! What ties a zone to the worker that syncs it with other instances: the outbox its local
//! learns go to, the worker's counters, and the store it syncs with. The zone holds it, so a
//! status page reads a zone's sync from the zone itself. Std only: the worker (tokio, Redis)
//! lives above and only counts here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::outbox::Outbox;

/// A zone's sync, as the zone holds it.
#[derive(Debug)]
pub struct SyncLink {
    /// Where local learns wait for the worker; None when the sync could not start (an unusable
    /// URL): the zone stays local.
    pub outbox: Option<Arc<Outbox>>,
    /// The store synced with, as `host:port/db` (no credentials).
    pub target: String,
    /// What the worker has done so far.
    pub counts: Arc<SyncCounts>,
}

/// The counters of one zone's sync, kept by its worker.
#[derive(Debug, Default)]
pub struct SyncCounts {
    /// Sessions learned here and written to the store.
    pub published: AtomicU64,
    /// Sessions learned elsewhere and stored here (announced, or read when connecting).
    pub received: AtomicU64,
    /// Failed connections, writes, reads and heartbeats.
    pub failures: AtomicU64,
    /// Sessions learned here that the worker dropped unwritten (the store away too long).
    pub dropped: AtomicU64,
    /// Whether the worker is connected and caught up right now.
    pub connected: AtomicBool,
}

/// What one zone's sync has done so far, read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncStats {
    /// Sessions learned here and written to the store.
    pub published: u64,
    /// Sessions learned elsewhere and stored here (announced, or read when connecting).
    pub received: u64,
    /// Failed connections, writes, reads and heartbeats.
    pub failures: u64,
    /// Sessions learned here that were never written: dropped while the store was away too
    /// long (from the outbox, or from the worker's own queue).
    pub dropped: u64,
    /// Whether the worker is connected and caught up right now.
    pub connected: bool,
}

impl SyncLink {
    /// What the sync has done so far.
    pub fn stats(&self) -> SyncStats {
        let counts = &self.counts;
        let dropped_queued = self.outbox.as_ref().map_or(0, |outbox| outbox.dropped());
        SyncStats {
            published: counts.published.load(Ordering::Relaxed),
            received: counts.received.load(Ordering::Relaxed),
            failures: counts.failures.load(Ordering::Relaxed),
            dropped: counts.dropped.load(Ordering::Relaxed) + dropped_queued,
            connected: counts.connected.load(Ordering::Relaxed),
        }
    }
}
