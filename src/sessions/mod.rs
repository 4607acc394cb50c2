//! Sessions learned from upstream responses (`sticky learn`): per zone, a bounded table from a
//! session key (a cookie's value, a SignalR connection token, an engine.io sid) to the sticky
//! value of the server that created the session, and the link to a sync worker (`link.rs`:
//! the outbox through which it shares local learns with other instances, and its counters,
//! which status pages read from the zone).
//!
//! A [`SessionRegistry`] keeps every zone a running tether has, by name, weakly; a snapshot
//! build takes a zone from it when its declaration (size, timeout, sync URL) is unchanged, so
//! a reload keeps every session, as `limits::ZoneRegistry` keeps limit_req buckets.
//!
//! Expiry reads [`clock`], a coarse clock a std thread moves forward, not the real one.
//!
//! Pure: std, foldhash (the table is `lru`) and balance's placement hash. No tokio, no hyper:
//! the sync worker (Redis) lives above, is woken through the outbox's callback, and writes back
//! through [`SessionZone::learned_elsewhere`].

pub mod clock;
pub mod handshake;
mod link;
mod outbox;
mod zone;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

pub use link::{SyncCounts, SyncLink, SyncStats};
pub use outbox::{Learned, Outbox};
pub use zone::{MAX_KEY_LEN, SessionRef, SessionZone, ZoneCounts};

/// A zone as `sticky learn` declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneSpec {
    /// `zone=NAME:...`.
    pub name: String,
    /// `zone=...:SIZE`, in bytes.
    pub size: usize,
    /// `timeout=` (sliding).
    pub timeout: Duration,
    /// `sync=redis://...`, as written.
    pub sync: Option<String>,
}

/// A zone and what it was declared with.
#[derive(Debug)]
struct Declared {
    zone: Weak<SessionZone>,
    spec: ZoneSpec,
}

/// The session zones of a running tether, by name, held weakly: a zone lives as long as a
/// snapshot (or its sync worker) uses it.
#[derive(Debug, Default)]
pub struct SessionRegistry {
    zones: Mutex<HashMap<String, Declared>>,
}

impl SessionRegistry {
    /// The zone `spec` declares: the live one if its declaration is unchanged, else a new one.
    pub fn zone(&self, spec: &ZoneSpec) -> Arc<SessionZone> {
        let mut zones = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
        zones.retain(|_, declared| declared.zone.strong_count() > 0);
        if let Some(declared) = zones.get(&spec.name)
            && declared.spec == *spec
            && let Some(zone) = declared.zone.upgrade()
        {
            return zone;
        }
        let zone = Arc::new(SessionZone::new(&spec.name, spec.size, spec.timeout));
        let declared = Declared {
            zone: Arc::downgrade(&zone),
            spec: spec.clone(),
        };
        zones.insert(spec.name.clone(), declared);
        zone
    }

    /// Every live zone with a `sync=` URL, and the URL: what the runtime keeps a sync worker
    /// for (one per zone; [`SessionZone::has_outbox`] says whether it has one).
    pub fn synced(&self) -> Vec<(Arc<SessionZone>, String)> {
        let zones = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
        zones
            .values()
            .filter_map(|d| Some((d.zone.upgrade()?, d.spec.sync.clone()?)))
            .collect()
    }
}

#[cfg(test)]
mod tests;
