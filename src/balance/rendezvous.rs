//! Placing a client whose sticky value names no usable server: weighted rendezvous hashing
//! (highest random weight) of the value over the usable nodes.
//!
//! Why not the method's own pick: a page opens its WebSocket, event stream, long poll and plain
//! requests at once, all carrying the same stale cookie. Round robin would scatter them over
//! the servers, and whichever answer's `Set-Cookie` came last would win — the transports of one
//! client split across servers. Keyed by the stale value, every one of them lands on the same
//! server, on every tether instance with the same config (the score depends on the value and
//! the server's name, never on order or running state), and when that server goes too, only
//! its clients move.
//!
//! std + siphasher only, like the rest of `balance`.

use std::hash::Hasher;

use siphasher::sip::SipHasher13;

/// Each node's name, hashed once, and its weight.
#[derive(Debug)]
pub(super) struct Rendezvous {
    /// Hash of each node's name as written.
    names: Box<[u64]>,
    /// `weight=` of each node (at least 1).
    weights: Box<[u32]>,
}

impl Rendezvous {
    /// The table for nodes named `names` with `weights` (same order).
    pub(super) fn new<'a>(names: impl Iterator<Item = &'a str>, weights: &[u32]) -> Rendezvous {
        Rendezvous {
            names: names.map(|name| mix(0, name.as_bytes())).collect(),
            weights: weights.into(),
        }
    }

    /// The usable node with the highest weighted score for `key`; None when none is usable.
    pub(super) fn pick(&self, key: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<(f64, usize)> = None;
        for (i, (&name, &weight)) in self.names.iter().zip(self.weights.iter()).enumerate() {
            if !usable(i) {
                continue;
            }
            let score = score(mix(key, &name.to_le_bytes()), weight);
            if best.is_none_or(|(top, _)| score > top) {
                best = Some((score, i));
            }
        }
        best.map(|(_, i)| i)
    }
}

/// The hash of `value` keyed by a client's sticky value (0 for node names).
pub(super) fn mix(key: u64, value: &[u8]) -> u64 {
    let mut hasher = SipHasher13::new_with_keys(key, 0x7465_7468_6572);
    hasher.write(value);
    hasher.finish()
}

/// Weighted rendezvous: `-weight / ln(u)` for `u` uniform in (0, 1) taken from the hash, so a
/// node's share of clients is its share of the weight.
fn score(hash: u64, weight: u32) -> f64 {
    // The top 53 bits, shifted into (0, 1): never 0, whose logarithm is -inf.
    let unit = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(weight) / unit.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(names: &[&str], weights: &[u32]) -> Rendezvous {
        Rendezvous::new(names.iter().copied(), weights)
    }

    #[test]
    fn the_same_value_lands_on_the_same_node_whatever_the_order() {
        let forward = table(&["a:1", "b:1", "c:1"], &[1, 1, 1]);
        let backward = table(&["c:1", "b:1", "a:1"], &[1, 1, 1]);
        for key in 0..200u64 {
            let one = forward.pick(key, |_| true).unwrap();
            let other = backward.pick(key, |_| true).unwrap();
            assert_eq!(one, 2 - other, "key {key}");
            assert_eq!(forward.pick(key, |_| true), Some(one), "deterministic");
        }
    }

    #[test]
    fn only_the_clients_of_a_node_that_goes_move() {
        let t = table(&["a:1", "b:1", "c:1", "d:1"], &[1; 4]);
        let mut moved = 0;
        for key in 0..4000u64 {
            let before = t.pick(key, |_| true).unwrap();
            let after = t.pick(key, |i| i != 1).unwrap();
            if before != 1 {
                assert_eq!(before, after, "key {key} did not live on the removed node");
            } else {
                moved += 1;
            }
        }
        assert!((800..1200).contains(&moved), "about a quarter: {moved}");
    }

    #[test]
    fn shares_follow_the_weights_and_nothing_usable_is_none() {
        let t = table(&["a:1", "b:1"], &[1, 3]);
        let heavy = (0..8000u64)
            .filter(|&key| t.pick(key, |_| true) == Some(1))
            .count();
        assert!((5600..6400).contains(&heavy), "weight 3 of 4: {heavy}");
        assert_eq!(t.pick(7, |_| false), None);
    }
}
