//! Sticky cookie values: a keyed SipHash-2-4 of each server's identity, in hex.
//!
//! A value depends only on the key and the server's identity (its `route=`, else its address
//! as written), never on its position in the list: a restart, a reload, reordered `server`
//! lines or another tether instance with the same config all give the same value, so a
//! client keeps its server. The key comes from `sticky_secret` when set, else from the group
//! name, so values are not guessable across groups by default. Owns keys and the value table;
//! imports nothing outside std and siphasher.

use std::hash::Hasher;

use siphasher::sip::SipHasher24;
use siphasher::sip128::{Hasher128, SipHasher24 as SipHasher24x128};

/// Fixed keys for deriving cookie keys: part of the cookie format, never to change (every
/// issued cookie would stop matching). The digits of pi, as nothing-up-my-sleeve numbers.
const DERIVE_K0: u64 = 0x243f_6a88_85a3_08d3;
const DERIVE_K1: u64 = 0x1319_8a2e_0370_7344;

/// Length of a value: 64 bits in lowercase hex.
const VALUE_LEN: usize = 16;

/// The SipHash-2-4 keys cookie values are computed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StickyKey {
    k0: u64,
    k1: u64,
}

impl StickyKey {
    /// The key for a configured `sticky_secret`.
    pub fn from_secret(secret: &str) -> StickyKey {
        StickyKey::derive(b"tether sticky secret\0", secret.as_bytes())
    }

    /// The key for a group without a secret, derived from its name; the prefix keeps it from
    /// ever equalling a secret's key.
    pub fn for_group(group: &str) -> StickyKey {
        StickyKey::derive(b"tether sticky group\0", group.as_bytes())
    }

    fn derive(domain: &[u8], input: &[u8]) -> StickyKey {
        let mut hasher = SipHasher24x128::new_with_keys(DERIVE_K0, DERIVE_K1);
        // Raw bytes, no length prefixes: `write` is stable where `Hash` impls might not be.
        hasher.write(domain);
        hasher.write(input);
        let hash = hasher.finish128();
        StickyKey {
            k0: hash.h1,
            k1: hash.h2,
        }
    }

    /// The cookie value of `identity` as a number.
    fn value_of(&self, identity: &str) -> u64 {
        let mut hasher = SipHasher24::new_with_keys(self.k0, self.k1);
        hasher.write(identity.as_bytes());
        hasher.finish()
    }
}

/// Cookie value <-> node index, precomputed for one tier list.
#[derive(Debug)]
pub struct StickyTable {
    /// `values[i]`: node i's cookie value, ready to send.
    values: Box<[Box<str>]>,
    /// (value, index) sorted, for lookups by binary search. A value is kept as its 16 ASCII
    /// bytes read as one number: a lookup compares whole values and parses no hex, and only
    /// an exact match with a value we issued counts, so nothing else needs checking.
    sorted: Box<[(u128, usize)]>,
}

impl StickyTable {
    /// The table for `identities[i]`: node i's `route=` if set, else its address as written.
    pub fn new(key: &StickyKey, identities: &[&str]) -> StickyTable {
        let values: Box<[Box<str>]> = identities
            .iter()
            .map(|id| format!("{:016x}", key.value_of(id)).into_boxed_str())
            .collect();
        let mut sorted: Vec<(u128, usize)> = values
            .iter()
            .map(|value| as_number(value))
            .zip(0..)
            .filter_map(|(number, index)| Some((number?, index)))
            .collect();
        // Equal values keep their order of index: the first node of an identity is found.
        sorted.sort_unstable();
        StickyTable {
            values,
            sorted: sorted.into_boxed_slice(),
        }
    }

    /// Node `index`'s cookie value: 16 lowercase hex characters. Panics when `index` is out of
    /// range, like slice indexing: the caller's indices come from the same tier list.
    pub fn value(&self, index: usize) -> &str {
        &self.values[index]
    }

    /// The node a cookie value names; None for garbage, forged or stale values (never a panic).
    /// Two nodes of one identity share a value; it names the first of them.
    pub fn find(&self, value: &str) -> Option<usize> {
        let number = as_number(value)?;
        let at = self.sorted.partition_point(|&(n, _)| n < number);
        match self.sorted.get(at) {
            Some(&(n, index)) if n == number => Some(index),
            _ => None,
        }
    }
}

/// A value's 16 bytes as one number; None for any other length. Not a hex parse: uppercase
/// or non-hex bytes give numbers no issued value has, so they are refused by not matching.
fn as_number(value: &str) -> Option<u128> {
    let bytes: [u8; VALUE_LEN] = value.as_bytes().try_into().ok()?;
    Some(u128::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVERS: [&str; 3] = ["127.0.0.1:9001", "127.0.0.1:9002", "app-3"];

    #[test]
    fn values_are_pinned_across_machines_and_versions() {
        let table = StickyTable::new(&StickyKey::from_secret("s3cret"), &SERVERS);
        // Changing these breaks every cookie already issued: only ever on purpose. Both were
        // checked against an independent SipHash-2-4 (and its 128-bit variant) in Python.
        assert_eq!(table.value(0), "86f4542c4a618507");
        let table = StickyTable::new(&StickyKey::for_group("backend"), &SERVERS);
        assert_eq!(table.value(0), "79a1d81dbf1438a8");
    }

    #[test]
    fn values_are_hex_distinct_and_found_again() {
        let table = StickyTable::new(&StickyKey::for_group("backend"), &SERVERS);
        for (index, _) in SERVERS.iter().enumerate() {
            let value = table.value(index);
            assert_eq!(value.len(), 16);
            assert!(
                value
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
            assert_eq!(table.find(value), Some(index));
        }
        assert_ne!(table.value(0), table.value(1));
        assert_ne!(table.value(1), table.value(2));
    }

    #[test]
    fn reordering_or_rekeying_behaves() {
        let key = StickyKey::for_group("backend");
        let table = StickyTable::new(&key, &SERVERS);
        let reordered = StickyTable::new(&key, &["app-3", "127.0.0.1:9001"]);
        assert_eq!(reordered.value(1), table.value(0));
        assert_eq!(reordered.value(0), table.value(2));
        assert_eq!(
            reordered.find(table.value(1)),
            None,
            "a removed server's cookie is stale"
        );
        // Another group or a secret gives other values; the same inputs the same key.
        let other = StickyTable::new(&StickyKey::for_group("other"), &SERVERS);
        assert_ne!(other.value(0), table.value(0));
        assert_ne!(StickyKey::from_secret("backend"), key);
        assert_eq!(StickyKey::for_group("backend"), key);
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let table = StickyTable::new(&StickyKey::from_secret("s3cret"), &SERVERS);
        let good = table.value(0).to_string();
        let upper = good.to_uppercase();
        let mut flipped = good.clone().into_bytes();
        flipped[15] = if flipped[15] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        let cases = [
            "",
            "0",
            &good[..15],
            &format!("{good}0"),
            &upper,
            &flipped,
            "zzzzzzzzzzzzzzzz",
            "+123456789abcdef",
            " 123456789abcdef",
            "é23456789abcdef",
            "\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}",
        ];
        for case in cases {
            if case != good {
                assert_eq!(table.find(case), None, "{case:?}");
            }
        }
        assert_eq!(
            StickyTable::new(&StickyKey::from_secret(""), &[]).find(&good),
            None
        );
    }
}
