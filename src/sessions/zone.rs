//! One `sticky learn` zone: session keys to the sticky value of the server they are pinned to,
//! in a table bounded by the zone's size (least recently used out first) where a session
//! expires after `timeout` without a request (the expiry slides on every lookup, as nginx's).
//!
//! Values are the servers' sticky values (the keyed hashes `sticky cookie` writes), not member
//! indexes: they mean the same server after a reload that reorders `server` lines and on every
//! instance with the same config, which is what lets a sync share them. One short mutex per
//! zone; lookups copy nothing out but the value. Std only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::outbox::Outbox;
use crate::lru::{Table, slab_cost};

/// What a session costs in the zone: nginx documents "about 4000 sessions" per megabyte on
/// 64-bit, 256 bytes each; longer keys fall in larger classes.
const NODE_BYTES: u64 = 128;
/// The smallest class a session lands in.
const MIN_COST: u64 = 256;
/// Keys longer than this are not learned: no framework's session id comes near it, and a
/// misbehaving upstream must not fill the zone with a few huge keys.
pub const MAX_KEY_LEN: usize = 256;

/// One `sticky learn` zone (see the module doc). Outlives snapshots while its declaration is
/// unchanged ([`super::SessionRegistry`]).
#[derive(Debug)]
pub struct SessionZone {
    name: Arc<str>,
    size: u64,
    timeout: Duration,
    table: Mutex<Table<Session>>,
    /// Where local `learn`s go for the sync worker, once one is attached.
    outbox: Mutex<Option<Arc<Outbox>>>,
    counts: ZoneCounts,
}

/// One session: its server's sticky value and when it expires unless used.
#[derive(Debug)]
struct Session {
    value: Box<str>,
    expires: Instant,
}

/// A zone's counters, for status and tests.
#[derive(Debug, Default)]
pub struct ZoneCounts {
    /// Sessions learned from this instance's upstream responses (re-pins included).
    pub learned: AtomicU64,
    /// Sessions stored from another instance through the sync.
    pub received: AtomicU64,
    /// Sessions that were asked for and known.
    pub hits: AtomicU64,
    /// Sessions pushed out to make room for a new one.
    pub evicted: AtomicU64,
    /// Sessions forgotten after `timeout` without a request.
    pub expired: AtomicU64,
}

impl SessionZone {
    /// An empty zone `name` of `size_bytes`, whose sessions expire after `timeout` unused.
    pub fn new(name: &str, size_bytes: usize, timeout: Duration) -> SessionZone {
        SessionZone {
            name: name.into(),
            size: size_bytes as u64,
            timeout,
            table: Mutex::new(Table::new(size_bytes as u64)),
            outbox: Mutex::new(None),
            counts: ZoneCounts::default(),
        }
    }

    /// The zone's name (`zone=NAME:SIZE`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long a session lives without a request (`timeout=`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The zone's size in bytes.
    pub fn size(&self) -> usize {
        self.size as usize
    }

    /// The zone's counters.
    pub fn counts(&self) -> &ZoneCounts {
        &self.counts
    }

    /// How many sessions the zone holds (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when the zone holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sticky value (the server's keyed hash, the same string a sticky cookie carries) a
    /// session key is pinned to; touches the entry (sliding expiry). None when unknown or
    /// expired.
    pub fn lookup(&self, key: &[u8], now: Instant) -> Option<String> {
        self.lookup_with(key, now, str::to_string)
    }

    /// As [`SessionZone::lookup`], handing the value to `read` under the zone's lock instead of
    /// copying it out (the request path maps it to a member without an allocation).
    pub fn lookup_with<R>(
        &self,
        key: &[u8],
        now: Instant,
        read: impl FnOnce(&str) -> R,
    ) -> Option<R> {
        let mut table = self.lock();
        let slot = table.find(key)?;
        if table.value(slot).expires <= now {
            table.remove(slot);
            self.counts.expired.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        table.touch(slot);
        let session = table.value_mut(slot);
        session.expires = now + self.timeout;
        self.counts.hits.fetch_add(1, Ordering::Relaxed);
        Some(read(&session.value))
    }

    /// A session learned here (or re-pinned here after its server went away); queued for the
    /// sync if one is attached. A key longer than [`MAX_KEY_LEN`] or an empty one is ignored.
    pub fn learn(&self, key: &[u8], value: &str, now: Instant) {
        if !self.store(key, value, now) {
            return;
        }
        self.counts.learned.fetch_add(1, Ordering::Relaxed);
        // Cloned out so the push (and the worker's wake-up) runs outside this lock.
        let outbox = self
            .outbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(outbox) = outbox {
            outbox.push(key, value);
        }
    }

    /// A session learned by another instance (from the sync): stored, never re-published.
    pub fn learned_elsewhere(&self, key: &[u8], value: &str, now: Instant) {
        if self.store(key, value, now) {
            self.counts.received.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Attaches the outbox the sync drains: every later local `learn` pushes (key, value) to
    /// it without blocking. Attaching again replaces it (a restarted worker).
    pub fn attach_outbox(&self, outbox: Arc<Outbox>) {
        *self.outbox.lock().unwrap_or_else(PoisonError::into_inner) = Some(outbox);
    }

    /// True once an outbox is attached: the runtime starts one sync worker per zone.
    pub fn has_outbox(&self) -> bool {
        self.outbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Stores or replaces `key`'s session as the most recently used, making room by dropping
    /// expired sessions, then the least recently used. False when the key is not storable.
    fn store(&self, key: &[u8], value: &str, now: Instant) -> bool {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return false;
        }
        let session = Session {
            value: value.into(),
            expires: now + self.timeout,
        };
        let cost = slab_cost(NODE_BYTES, key.len() + value.len(), MIN_COST);
        let mut table = self.lock();
        if let Some(slot) = table.find(key) {
            table.remove(slot);
        }
        // Every session's expiry is its last use plus the one timeout, so the least recently
        // used is also the first to expire: sweeping from the tail finds every expired one.
        while let Some(oldest) = table.oldest() {
            if table.value(oldest).expires > now {
                break;
            }
            table.remove(oldest);
            self.counts.expired.fetch_add(1, Ordering::Relaxed);
        }
        while !table.fits(cost) {
            let Some(oldest) = table.oldest() else {
                // Larger than the whole zone (a zone smaller than one session).
                return false;
            };
            table.remove(oldest);
            self.counts.evicted.fetch_add(1, Ordering::Relaxed);
        }
        table.insert(key, session, cost);
        true
    }

    fn lock(&self) -> MutexGuard<'_, Table<Session>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
