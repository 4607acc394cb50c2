//! A table of per-key states bounded by a byte budget, least recently used first out: what a
//! zone's declared size buys (`limit_req_zone`, `limit_conn_zone`, `sticky learn`). Each entry is charged what nginx's slab allocator would charge
//! for it (see [`Table::new`]'s callers), so `zone=one:1m` remembers as many keys as nginx's
//! would, and a flood of distinct keys cannot grow memory past it.
//!
//! Entries live in a slab and are linked from most to least recently used; the index maps key
//! bytes to slab slots, hashed by SipHash unless the zone says otherwise (`sticky learn`'s,
//! whose keys no client chooses, takes a faster one). Std and `slab` only: no tokio, no hyper.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use slab::Slab;

/// Where an entry lives; stable until it is removed.
pub(crate) type Slot = usize;

/// Keys to states, with a byte budget and a recency order; keys hashed by `S`.
#[derive(Debug)]
pub(crate) struct Table<V, S = RandomState> {
    index: HashMap<Box<[u8]>, Slot, S>,
    entries: Slab<Entry<V>>,
    /// Most recently used.
    head: Option<Slot>,
    /// Least recently used: the first to go.
    tail: Option<Slot>,
    /// Bytes charged for the entries present.
    used: u64,
    /// The zone's declared size.
    budget: u64,
}

#[derive(Debug)]
struct Entry<V> {
    key: Box<[u8]>,
    value: V,
    cost: u64,
    /// Toward the head (more recent).
    newer: Option<Slot>,
    /// Toward the tail (less recent).
    older: Option<Slot>,
}

impl<V> Table<V> {
    /// An empty table that may hold entries costing `budget` bytes in all.
    pub(crate) fn new(budget: u64) -> Table<V> {
        Table::with_hasher(budget, RandomState::new())
    }
}

impl<V, S: BuildHasher> Table<V, S> {
    /// As [`Table::new`], with keys hashed by `hasher`.
    pub(crate) fn with_hasher(budget: u64, hasher: S) -> Table<V, S> {
        Table {
            index: HashMap::with_hasher(hasher),
            entries: Slab::new(),
            head: None,
            tail: None,
            used: 0,
            budget,
        }
    }

    /// The entry for `key`, if present (its recency unchanged).
    pub(crate) fn find(&self, key: &[u8]) -> Option<Slot> {
        self.index.get(key).copied()
    }

    /// Entries present.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether an entry costing `cost` fits in what is left of the budget.
    pub(crate) fn fits(&self, cost: u64) -> bool {
        self.used + cost <= self.budget
    }

    /// The least recently used entry.
    pub(crate) fn oldest(&self) -> Option<Slot> {
        self.tail
    }

    /// The state of the entry at `slot`. `slot` must be present: slots come from this table
    /// and callers hold a count on an entry they will come back to, which keeps it in.
    pub(crate) fn value(&self, slot: Slot) -> &V {
        &self.entries[slot].value
    }

    /// The state at `slot`, if an entry is there (a slot kept past its entry's removal may
    /// hold another entry by now, or none).
    pub(crate) fn get(&self, slot: Slot) -> Option<&V> {
        self.entries.get(slot).map(|entry| &entry.value)
    }

    /// The key of the entry at `slot` (present, as for [`Table::value`]).
    pub(crate) fn key(&self, slot: Slot) -> &[u8] {
        &self.entries[slot].key
    }

    /// As [`Table::value`], to change it.
    pub(crate) fn value_mut(&mut self, slot: Slot) -> &mut V {
        &mut self.entries[slot].value
    }

    /// Adds `key` as the most recently used entry, charging `cost` (the caller made room).
    pub(crate) fn insert(&mut self, key: &[u8], value: V, cost: u64) -> Slot {
        let key: Box<[u8]> = key.into();
        let slot = self.entries.insert(Entry {
            key: key.clone(),
            value,
            cost,
            newer: None,
            older: None,
        });
        self.index.insert(key, slot);
        self.used += cost;
        self.link_at_head(slot);
        slot
    }

    /// Makes `slot` the most recently used entry.
    pub(crate) fn touch(&mut self, slot: Slot) {
        if self.head != Some(slot) {
            self.unlink(slot);
            self.link_at_head(slot);
        }
    }

    /// Removes the entry at `slot`, giving its cost back.
    pub(crate) fn remove(&mut self, slot: Slot) {
        self.unlink(slot);
        let entry = self.entries.remove(slot);
        self.index.remove(&entry.key);
        self.used -= entry.cost;
    }

    fn link_at_head(&mut self, slot: Slot) {
        let old_head = self.head.replace(slot);
        let entry = &mut self.entries[slot];
        entry.newer = None;
        entry.older = old_head;
        match old_head {
            Some(old) => self.entries[old].newer = Some(slot),
            None => self.tail = Some(slot),
        }
    }

    fn unlink(&mut self, slot: Slot) {
        let (newer, older) = {
            let entry = &self.entries[slot];
            (entry.newer, entry.older)
        };
        match newer {
            Some(newer) => self.entries[newer].older = older,
            None => self.head = older,
        }
        match older {
            Some(older) => self.entries[older].newer = newer,
            None => self.tail = newer,
        }
    }
}

/// What nginx's slab allocator charges for a node of `header` bytes plus a key of `key_len`
/// bytes: the next power of two, at least `floor` (nginx's smallest size class that such a
/// node falls in on 64-bit).
pub(crate) fn slab_cost(header: u64, key_len: usize, floor: u64) -> u64 {
    (header + key_len as u64).next_power_of_two().max(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_is_oldest_and_removal_gives_room_back() {
        let mut table = Table::new(300);
        let a = table.insert(b"a", 1, 100);
        let b = table.insert(b"b", 2, 100);
        let c = table.insert(b"c", 3, 100);
        assert!(!table.fits(1));
        assert_eq!(table.oldest(), Some(a));
        table.touch(a);
        assert_eq!(table.oldest(), Some(b));
        table.remove(b);
        assert!(table.fits(100));
        assert_eq!(table.oldest(), Some(c));
        assert_eq!(table.find(b"b"), None);
        assert_eq!(table.find(b"a"), Some(a));
        table.remove(c);
        table.remove(a);
        assert_eq!((table.len(), table.oldest()), (0, None));
        let d = table.insert(b"d", 4, 100);
        assert_eq!((table.oldest(), *table.value(d)), (Some(d), 4));
    }

    #[test]
    fn costs_follow_nginx_size_classes() {
        // limit_req: 80 bytes of node; a 4- or 16-byte address key costs 128.
        assert_eq!(slab_cost(80, 4, 128), 128);
        assert_eq!(slab_cost(80, 48, 128), 128);
        assert_eq!(slab_cost(80, 49, 128), 256);
        // limit_conn: 36 bytes of node; an address key costs 64.
        assert_eq!(slab_cost(36, 16, 64), 64);
        assert_eq!(slab_cost(36, 29, 64), 128);
    }
}
