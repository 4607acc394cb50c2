//! A `limit_conn_zone`: how many requests of each key are in progress, each held by a
//! [`ConnectionHold`] that gives its place back when dropped — when the response body ends, or
//! when a WebSocket's tunnel closes, so a WebSocket counts as one connection for its whole
//! life. A key's entry exists only while something holds it; the zone's size bounds how many
//! keys can be counted at once, and a new key that finds no room is refused, as nginx refuses
//! it ("all further requests" get the status until entries go).
//!
//! One short mutex per zone. Std only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::config::ConnectionZoneSpec;
use crate::lru::slab_cost;

/// nginx's node: the red-black tree links (32 bytes) and the count before the key (4).
const NODE_BYTES: u64 = 36;
/// The smallest slab class such a node lands in on 64-bit (nginx documents 64-byte states).
const MIN_COST: u64 = 64;

/// One zone's counts; outlives snapshots while its declaration is unchanged.
#[derive(Debug)]
pub struct ConnectionZone {
    /// The zone's name, for the log.
    pub name: Arc<str>,
    spec: (String, u64),
    counts: Mutex<Counts>,
}

#[derive(Debug)]
struct Counts {
    by_key: HashMap<Box<[u8]>, u32>,
    used: u64,
    budget: u64,
}

/// Why a request was not let in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The key already has its number of requests in progress.
    AtLimit,
    /// A new key found the zone full.
    Full,
}

/// One request counted in a zone until this is dropped.
#[derive(Debug)]
pub struct ConnectionHold {
    zone: Arc<ConnectionZone>,
    key: Box<[u8]>,
}

impl ConnectionZone {
    /// An empty zone as declared.
    pub fn new(spec: &ConnectionZoneSpec) -> ConnectionZone {
        ConnectionZone {
            name: spec.name.as_str().into(),
            spec: (spec.key.clone(), spec.size),
            counts: Mutex::new(Counts {
                by_key: HashMap::new(),
                used: 0,
                budget: spec.size,
            }),
        }
    }

    /// Whether `spec` declares this very zone (same name, key and size).
    pub fn is(&self, spec: &ConnectionZoneSpec) -> bool {
        *self.name == *spec.name && self.spec.0 == spec.key && self.spec.1 == spec.size
    }

    /// Keys with requests in progress now.
    pub fn len(&self) -> usize {
        self.lock().by_key.len()
    }

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests of `key` in progress now.
    pub fn count(&self, key: &[u8]) -> u32 {
        self.lock().by_key.get(key).copied().unwrap_or(0)
    }

    /// Counts one more request of `key` unless it has `max` in progress or a new key finds
    /// no room.
    pub(super) fn enter(self: &Arc<Self>, key: &[u8], max: u32) -> Result<ConnectionHold, Refusal> {
        let mut counts = self.lock();
        match counts.by_key.get_mut(key) {
            Some(count) if *count >= max => return Err(Refusal::AtLimit),
            Some(count) => *count += 1,
            None => {
                let cost = slab_cost(NODE_BYTES, key.len(), MIN_COST);
                if counts.used + cost > counts.budget {
                    return Err(Refusal::Full);
                }
                counts.used += cost;
                counts.by_key.insert(key.into(), 1);
            }
        }
        Ok(ConnectionHold {
            zone: self.clone(),
            key: key.into(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        // Counts stay consistent under a panic elsewhere: each change is one statement.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for ConnectionHold {
    fn drop(&mut self) {
        let mut counts = self.zone.lock();
        let Some(count) = counts.by_key.get_mut(&self.key) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            counts.by_key.remove(&self.key);
            counts.used -= slab_cost(NODE_BYTES, self.key.len(), MIN_COST);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(size: u64) -> Arc<ConnectionZone> {
        Arc::new(ConnectionZone::new(&ConnectionZoneSpec {
            name: "addr".into(),
            key: "$binary_remote_addr".into(),
            size,
            span: crate::config::Span::builtin(),
        }))
    }

    #[test]
    fn a_key_is_counted_while_held_and_forgotten_at_zero() {
        let zone = zone(1 << 20);
        let first = zone.enter(b"k", 2).expect("first of two");
        let second = zone.enter(b"k", 2).expect("second of two");
        assert_eq!(zone.enter(b"k", 2).unwrap_err(), Refusal::AtLimit);
        assert!(zone.enter(b"other", 2).is_ok());
        drop(first);
        let third = zone.enter(b"k", 2).expect("a place was given back");
        drop((second, third));
        assert_eq!((zone.count(b"k"), zone.len()), (0, 0));
    }

    #[test]
    fn a_full_zone_refuses_new_keys_until_one_goes() {
        let zone = zone(32 * 1024);
        let held: Vec<_> = (0..512u32)
            .map(|n| zone.enter(&n.to_be_bytes(), 1).expect("room for 512"))
            .collect();
        assert_eq!(zone.enter(b"new", 1).unwrap_err(), Refusal::Full);
        drop(held);
        assert!(zone.enter(b"new", 1).is_ok());
    }
}
