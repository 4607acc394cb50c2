//! A `limit_req_zone`: nginx's leaky bucket per key, exactly — millisecond clock, excess kept
//! in thousandths of a request, the burst compared after counting the request itself — in a
//! table bounded by the zone's size that forgets idle keys and, when full, the least recently
//! used one, as nginx's `ngx_http_limit_req_lookup` / `_account` / `_expire` do.
//!
//! One short mutex per zone guards its table; nothing is held across a wait. Std only.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::config::RequestZoneSpec;
use crate::lru::{Slot, Table, slab_cost};

/// nginx's node: a red-black tree node's links (32 bytes) and the state before the key (48).
const NODE_BYTES: u64 = 80;
/// The smallest slab class such a node lands in on 64-bit: 128 bytes, nginx's documented
/// "about 8 thousand 128-byte states" per megabyte.
const MIN_COST: u64 = 128;
/// A key idle this long with its excess drained may be forgotten when a new key comes.
const IDLE_MS: u64 = 60_000;

/// One zone's buckets and its rate; outlives snapshots while its declaration is unchanged.
#[derive(Debug)]
pub struct RequestZone {
    /// The zone's name, for the log.
    pub name: Arc<str>,
    /// Thousandths of a request per second.
    pub(super) rate: u64,
    /// What it was declared with (a reload keeps the zone only if all of it is the same).
    spec: (String, u64),
    table: Mutex<Table<Bucket>>,
    epoch: Instant,
}

/// One key's bucket.
#[derive(Debug)]
struct Bucket {
    /// Requests beyond the rate not yet drained, in thousandths.
    excess: u64,
    /// When it was last accounted (ms on the zone's clock).
    last: u64,
    /// Requests between their lookup here and their accounting (several `limit_req`s): while
    /// counted, the bucket is not evicted.
    count: u32,
    /// Created by a lookup that did not account it yet: it drains to nothing when accounted
    /// (nginx's `last = 0`).
    fresh: bool,
}

/// What a lookup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lookup {
    /// Over the burst: refused, with the excess this request would have made.
    Busy(u64),
    /// Counted (the location's last limit): within the burst, with its excess.
    Passed(u64),
    /// Within the burst, held at `slot` to be counted by [`RequestZone::account`] or let go
    /// by [`RequestZone::release`].
    Held(Slot),
    /// A new key found no room, even after evicting: nginx answers the limit's status.
    Full,
}

impl RequestZone {
    /// An empty zone as declared.
    pub fn new(spec: &RequestZoneSpec) -> RequestZone {
        RequestZone {
            name: spec.name.as_str().into(),
            rate: spec.rate,
            spec: (spec.key.clone(), spec.size),
            table: Mutex::new(Table::new(spec.size)),
            epoch: Instant::now(),
        }
    }

    /// Whether `spec` declares this very zone (same name, key, size and rate).
    pub fn is(&self, spec: &RequestZoneSpec) -> bool {
        *self.name == *spec.name
            && self.rate == spec.rate
            && self.spec.0 == spec.key
            && self.spec.1 == spec.size
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks `key` up now; see [`RequestZone::lookup_at`].
    pub(super) fn lookup(&self, key: &[u8], burst: u64, account: bool) -> Lookup {
        let mut table = self.lock();
        let now = self.now();
        self.lookup_at(&mut table, key, burst, account, now)
    }

    /// Counts one request of `key` at `now`: refused if its excess would pass `burst`
    /// (thousandths), else accounted at once when `account` (the location's last limit) or
    /// held for [`RequestZone::account`].
    fn lookup_at(
        &self,
        table: &mut Table<Bucket>,
        key: &[u8],
        burst: u64,
        account: bool,
        now: u64,
    ) -> Lookup {
        if let Some(slot) = table.find(key) {
            table.touch(slot);
            let bucket = table.value_mut(slot);
            let excess = self.drained(bucket, now);
            if excess > burst {
                return Lookup::Busy(excess);
            }
            if account {
                bucket.excess = excess;
                bucket.last = now;
                bucket.fresh = false;
                return Lookup::Passed(excess);
            }
            bucket.count += 1;
            return Lookup::Held(slot);
        }
        let cost = slab_cost(NODE_BYTES, key.len(), MIN_COST);
        self.expire(table, now, false);
        if !table.fits(cost) {
            self.expire(table, now, true);
            // nginx frees one node by force; a key longer than the one it frees may need more.
            while !table.fits(cost) && self.evict_oldest(table) {}
            if !table.fits(cost) {
                return Lookup::Full;
            }
        }
        let bucket = Bucket {
            excess: 0,
            last: now,
            count: u32::from(!account),
            fresh: !account,
        };
        let slot = table.insert(key, bucket, cost);
        if account {
            Lookup::Passed(0)
        } else {
            Lookup::Held(slot)
        }
    }

    /// Accounts a held request now, returning its bucket's excess.
    pub(super) fn account(&self, slot: Slot) -> u64 {
        let mut table = self.lock();
        let now = self.now();
        let bucket = table.value_mut(slot);
        let excess = self.drained(bucket, now);
        bucket.excess = excess;
        bucket.last = now;
        bucket.fresh = false;
        bucket.count -= 1;
        excess
    }

    /// Lets go of a held request that a later limit refused: it is not counted.
    pub(super) fn release(&self, slot: Slot) {
        self.lock().value_mut(slot).count -= 1;
    }

    /// The bucket's excess at `now` with one more request in it: what drained since it was
    /// last accounted is taken off, never below nothing.
    fn drained(&self, bucket: &Bucket, now: u64) -> u64 {
        if bucket.fresh {
            return 0;
        }
        let ms = now.saturating_sub(bucket.last);
        let leaked = self.rate.saturating_mul(ms) / 1000;
        (bucket.excess + 1000).saturating_sub(leaked)
    }

    /// nginx's `ngx_http_limit_req_expire`: from the least recently used end, forgets up to
    /// two keys idle a minute with nothing left to drain — after forgetting the oldest key
    /// whatever its state when `force`. Stops at a key that is held or still in use.
    fn expire(&self, table: &mut Table<Bucket>, now: u64, force: bool) {
        let (mut first, mut removed) = (force, 0);
        while removed < 2 + usize::from(force) {
            let Some(slot) = table.oldest() else { return };
            let bucket = table.value(slot);
            if bucket.count > 0 {
                return;
            }
            if !first {
                let ms = now.saturating_sub(bucket.last);
                let left = bucket
                    .excess
                    .saturating_sub(self.rate.saturating_mul(ms) / 1000);
                if !bucket.fresh && (ms < IDLE_MS || left > 0) {
                    return;
                }
            }
            first = false;
            table.remove(slot);
            removed += 1;
        }
    }

    /// Forgets the least recently used key unless it is held; false if nothing was forgotten.
    fn evict_oldest(&self, table: &mut Table<Bucket>) -> bool {
        match table.oldest() {
            Some(slot) if table.value(slot).count == 0 => {
                table.remove(slot);
                true
            }
            _ => false,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, Table<Bucket>> {
        // A panic while holding the lock cannot leave a bucket half-written in a way that
        // matters more than refusing every request would: go on with the table.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
#[path = "requests_tests.rs"]
mod tests;
