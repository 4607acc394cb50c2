//! The syncs of a running tether: one per zone declared with `sync=`, started when a snapshot
//! first brings the zone, kept while the zone lives (reloads that keep the zone keep its sync,
//! counters and all). Status pages read each sync's counters from its zone; [`Syncs::status`]
//! lists them from here (the tests read it). The runtime calls [`Syncs::reconcile`] after each
//! snapshot build. Must not import hyper or the proxy.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use super::{SyncHandle, SyncStats, spawn_sync};
use crate::sessions::{SessionRegistry, SessionZone};

/// Every zone's sync, held beside a weak reference to its zone.
#[derive(Debug, Default)]
pub struct Syncs {
    running: Mutex<Vec<Running>>,
}

/// One zone's sync.
#[derive(Debug)]
struct Running {
    zone: Weak<SessionZone>,
    name: String,
    handle: SyncHandle,
}

/// A zone's sync as a status page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncStatus {
    /// The zone's name.
    pub zone: String,
    /// The Redis server and database, as `host:port/db`.
    pub target: String,
    /// What the sync has done so far.
    pub stats: SyncStats,
}

impl Syncs {
    /// Starts a sync for each zone of `registry` declared with `sync=` that has none yet, and
    /// forgets the syncs whose zone is gone. Must run inside a tokio runtime.
    pub fn reconcile(&self, registry: &SessionRegistry, log_interval: Duration) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.retain(|sync| sync.zone.strong_count() > 0 && !sync.handle.is_finished());
        for (zone, url) in registry.synced() {
            // A zone gets its outbox from its sync: one with an outbox has a sync already.
            // A zone whose URL was unusable has none, and is tried again (and logged) at the
            // next reload.
            if zone.has_outbox() {
                continue;
            }
            let handle = spawn_sync(zone.clone(), &url, log_interval);
            running.push(Running {
                zone: Arc::downgrade(&zone),
                name: zone.name().to_string(),
                handle,
            });
        }
    }

    /// Each live zone's sync, in the order they started.
    pub fn status(&self) -> Vec<SyncStatus> {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running
            .iter()
            .filter(|sync| sync.zone.strong_count() > 0)
            .map(|sync| SyncStatus {
                zone: sync.name.clone(),
                target: sync.handle.target().to_string(),
                stats: sync.handle.stats(),
            })
            .collect()
    }
}
