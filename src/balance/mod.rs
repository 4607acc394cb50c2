//! Choosing a peer for a new session: plain logic over a list of peers, no HTTP.
//!
//! The caller says which peers are usable (health, `down`, already tried); a balancer only
//! walks candidates. Round robin is the one method so far; `ip_hash`, `hash`, `least_conn` and
//! `random` arrive with the balancing work and fall back to round robin until then.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A balancing method with its running state.
#[derive(Debug)]
pub enum Balancer {
    /// Plain round robin over usable peers.
    RoundRobin {
        /// The position the next pick starts from.
        next: AtomicUsize,
    },
}

impl Balancer {
    /// A fresh round-robin balancer.
    pub fn round_robin() -> Balancer {
        Balancer::RoundRobin {
            next: AtomicUsize::new(0),
        }
    }

    /// Index of the peer to use among `count` peers, skipping those `usable` rejects; None if
    /// none is usable. The walk is capped at `count` steps.
    pub fn pick(&self, count: usize, usable: impl Fn(usize) -> bool) -> Option<usize> {
        match self {
            Balancer::RoundRobin { next } => {
                if count == 0 {
                    return None;
                }
                let start = next.fetch_add(1, Ordering::Relaxed);
                (0..count)
                    .map(|step| (start + step) % count)
                    .find(|&index| usable(index))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_takes_turns_and_skips_unusable_peers() {
        let balancer = Balancer::round_robin();
        let picks: Vec<_> = (0..6)
            .map(|_| balancer.pick(3, |_| true).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        let picks: Vec<_> = (0..4)
            .map(|_| balancer.pick(3, |i| i != 1).unwrap())
            .collect();
        assert!(!picks.contains(&1));
        assert_eq!(balancer.pick(3, |_| false), None);
        assert_eq!(balancer.pick(0, |_| true), None);
    }
}
