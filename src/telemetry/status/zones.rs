//! What a status page shows of `sticky learn`: each session zone of the config in force, once
//! (several groups may share a zone), with its counters and its Redis sync if it has one. Read
//! from the zones' own atomics, as the servers' numbers are read from theirs. Imports
//! `sessions` (and `snapshot`, to find the zones).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::sessions::{SessionZone, SyncStats};
use crate::snapshot::Snapshot;

/// One learned-session zone.
#[derive(Debug)]
pub struct ZoneReport {
    /// `zone=NAME:...`.
    pub name: String,
    /// `zone=...:SIZE`, in bytes.
    pub size: usize,
    /// `timeout=`.
    pub timeout: Duration,
    /// Sessions held now (expired ones not yet swept included).
    pub sessions: usize,
    /// Sessions learned from this instance's upstream responses.
    pub learned: u64,
    /// Sessions stored from other instances through the sync.
    pub received: u64,
    /// Requests whose session the zone knew.
    pub hits: u64,
    /// Sessions pushed out to make room (the zone was full).
    pub evicted: u64,
    /// Sessions forgotten after `timeout` without a request.
    pub expired: u64,
    /// Sessions whose server could not take a request, pinned to another.
    pub repinned: u64,
    /// Its `sync=`, once the sync started (or failed to).
    pub sync: Option<SyncReport>,
}

/// One zone's Redis sync.
#[derive(Debug)]
pub struct SyncReport {
    /// The Redis server and database, as `host:port/db`.
    pub target: String,
    /// What the sync has done so far.
    pub stats: SyncStats,
}

/// Every zone the snapshot's groups learn into, by name.
pub fn read(snapshot: &Snapshot) -> Vec<ZoneReport> {
    let mut zones: Vec<&Arc<SessionZone>> = Vec::new();
    for zone in snapshot.upstreams().filter_map(|g| g.learned_sessions()) {
        if !zones.iter().any(|seen| Arc::ptr_eq(seen, zone)) {
            zones.push(zone);
        }
    }
    zones.sort_by(|a, b| a.name().cmp(b.name()));
    zones.into_iter().map(|zone| report(zone)).collect()
}

fn report(zone: &SessionZone) -> ZoneReport {
    let counts = zone.counts();
    let read = |count: &std::sync::atomic::AtomicU64| count.load(Ordering::Relaxed);
    ZoneReport {
        name: zone.name().to_string(),
        size: zone.size(),
        timeout: zone.timeout(),
        sessions: zone.len(),
        learned: read(&counts.learned),
        received: read(&counts.received),
        hits: read(&counts.hits),
        evicted: read(&counts.evicted),
        expired: read(&counts.expired),
        repinned: read(&counts.repinned),
        sync: zone.sync().map(|link| SyncReport {
            target: link.target.clone(),
            stats: link.stats(),
        }),
    }
}
