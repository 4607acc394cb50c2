//! One `sticky learn` zone: session keys to the sticky value of the server they are pinned to,
//! in a table bounded by the zone's size (least recently used out first) where a session
//! expires after `timeout` without a request (the expiry slides on every lookup, as nginx's).
//!
//! Values are the servers' sticky values (the keyed hashes `sticky cookie` writes), not member
//! indexes: they mean the same server after a reload that reorders `server` lines and on every
//! instance with the same config, which is what lets a sync share them. One short mutex per
//! zone; a lookup copies nothing out, and hands back a [`SessionRef`] rather than the key, so
//! the request path keeps no copy of the key for a re-pin it rarely makes.
//!
//! The table hashes keys with foldhash (keyed by a per-process random seed), not SipHash:
//! its keys are only ever ids an upstream issued (a client's lookup of a key the zone does
//! not know stores nothing), so a client cannot fill it with keys chosen to collide, and the
//! zone's size bounds it besides. Every `now` is a [`now_ms`](super::clock::now_ms) reading: expiry is a
//! sum and a comparison of two numbers. Std and foldhash only, and balance's placement hash of
//! a key ([`Key::stale`]), kept with each session so that a request whose session is known
//! need not hash its key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::link::SyncLink;
use crate::balance::Key;
use crate::lru::{Slot, Table, slab_cost};

/// The table of one zone: keys hashed by foldhash (the module doc says why that is enough).
type Sessions = Table<Session, foldhash::fast::RandomState>;

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
    /// `timeout` in [`now_ms`](super::clock::now_ms) units.
    timeout_ms: u64,
    table: Mutex<Sessions>,
    /// The sync worker's link, once one is attached: where local `learn`s go.
    sync: Mutex<Option<Arc<SyncLink>>>,
    counts: ZoneCounts,
    /// The next session's [`Session::serial`].
    serials: AtomicU64,
}

/// One session: its server's sticky value and when it expires unless used.
#[derive(Debug)]
struct Session {
    value: Box<str>,
    /// In [`now_ms`](super::clock::now_ms) units.
    expires: u64,
    /// Tells this session from a later one in the same slot (see [`SessionRef`]).
    serial: u64,
    /// The key's [`Key::stale`].
    placement: u64,
}

/// A session a lookup found, to re-pin it later without a copy of its key: its slot, and the
/// serial that tells it from a session stored in that slot since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionRef {
    slot: Slot,
    serial: u64,
    placement: u64,
}

impl SessionRef {
    /// The session key's placement hash ([`Key::stale`]), taken when the session was stored:
    /// where a re-pin places it, as it would place the key if it were unknown.
    pub fn placement(&self) -> u64 {
        self.placement
    }
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
    /// Sessions whose server could not take a request, pinned to another one.
    pub repinned: AtomicU64,
}

impl SessionZone {
    /// An empty zone `name` of `size_bytes`, whose sessions expire after `timeout` unused.
    pub fn new(name: &str, size_bytes: usize, timeout: Duration) -> SessionZone {
        SessionZone {
            name: name.into(),
            size: size_bytes as u64,
            timeout,
            timeout_ms: timeout.as_millis().try_into().unwrap_or(u64::MAX),
            table: Mutex::new(Table::with_hasher(size_bytes as u64, Default::default())),
            sync: Mutex::new(None),
            counts: ZoneCounts::default(),
            serials: AtomicU64::new(0),
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
    pub fn lookup(&self, key: &[u8], now: u64) -> Option<String> {
        self.lookup_with(key, now, str::to_string)
            .map(|(value, _)| value)
    }

    /// As [`SessionZone::lookup`], handing the value to `read` under the zone's lock instead of
    /// copying it out (the request path maps it to a member without an allocation), and
    /// returning with what `read` made the session's [`SessionRef`], for a re-pin.
    pub fn lookup_with<R>(
        &self,
        key: &[u8],
        now: u64,
        read: impl FnOnce(&str) -> R,
    ) -> Option<(R, SessionRef)> {
        let mut table = self.lock();
        let slot = table.find(key)?;
        if table.value(slot).expires <= now {
            table.remove(slot);
            self.counts.expired.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        table.touch(slot);
        let session = table.value_mut(slot);
        session.expires = now.saturating_add(self.timeout_ms);
        self.counts.hits.fetch_add(1, Ordering::Relaxed);
        let found = SessionRef {
            slot,
            serial: session.serial,
            placement: session.placement,
        };
        Some((read(&session.value), found))
    }

    /// A session learned here; queued for the sync if one is attached. A key longer than
    /// [`MAX_KEY_LEN`] or an empty one is ignored.
    pub fn learn(&self, key: &[u8], value: &str, now: u64) {
        if self.store(key, value, now) {
            self.counts.learned.fetch_add(1, Ordering::Relaxed);
            self.publish(key, value);
        }
    }

    /// Pins the session a lookup found to the server whose sticky value is `value` (its own
    /// server could not take a request), and queues it for the sync as a learn. A session gone
    /// since the lookup (expired or evicted in between) stays gone.
    pub fn repin(&self, found: SessionRef, value: &str, now: u64) {
        let key = {
            let table = self.lock();
            match table.get(found.slot) {
                Some(session) if session.serial == found.serial => table.key(found.slot).to_vec(),
                _ => return,
            }
        };
        if self.store(&key, value, now) {
            self.counts.repinned.fetch_add(1, Ordering::Relaxed);
            self.publish(&key, value);
        }
    }

    /// Queues a session learned here for the sync, if one is attached.
    fn publish(&self, key: &[u8], value: &str) {
        // Cloned out so the push (and the worker's wake-up) runs outside this lock.
        let outbox = self.sync().and_then(|link| link.outbox.clone());
        if let Some(outbox) = outbox {
            outbox.push(key, value);
        }
    }

    /// A session learned by another instance (from the sync): stored, never re-published.
    pub fn learned_elsewhere(&self, key: &[u8], value: &str, now: u64) {
        if self.store(key, value, now) {
            self.counts.received.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Attaches a sync: every later local `learn` pushes (key, value) to its outbox without
    /// blocking, and status pages read its counters here. Attaching again replaces it (a
    /// restarted worker).
    pub fn attach_sync(&self, link: Arc<SyncLink>) {
        *self.sync.lock().unwrap_or_else(PoisonError::into_inner) = Some(link);
    }

    /// The sync attached, if any (one that could not start included).
    pub fn sync(&self) -> Option<Arc<SyncLink>> {
        self.sync
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// True once a running sync's outbox is attached: the runtime starts one sync worker per
    /// zone, and tries again for a zone whose sync could not start.
    pub fn has_outbox(&self) -> bool {
        self.sync().is_some_and(|link| link.outbox.is_some())
    }

    /// Stores or replaces `key`'s session as the most recently used, making room by dropping
    /// expired sessions, then the least recently used. False when the key is not storable.
    fn store(&self, key: &[u8], value: &str, now: u64) -> bool {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return false;
        }
        let session = Session {
            value: value.into(),
            expires: now.saturating_add(self.timeout_ms),
            serial: self.serials.fetch_add(1, Ordering::Relaxed),
            placement: Key::stale(key),
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

    fn lock(&self) -> MutexGuard<'_, Sessions> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
