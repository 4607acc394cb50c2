//! nginx's smooth weighted round robin, precomputed once and walked lock-free.
//!
//! nginx runs the smooth algorithm per pick under a lock (each peer's `current_weight` grows by
//! its weight, the largest wins and pays back the total). Its output is periodic: after one
//! cycle of `sum(weights)` picks every `current_weight` is back to zero. So the cycle is
//! computed here once and requests walk it with one atomic counter: weights 5,1,1 give
//! `a a b a c a a`, over and over. Owns only that order; imports nothing outside `balance`.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::scaled;

/// The longest cycle kept: past it weights are scaled down (after dividing by their common
/// divisor, which keeps the order exact), trading exact ratios of absurd weights for memory.
const MAX_CYCLE: u64 = 1 << 16;

/// One cycle of smooth weighted round robin and the shared position in it.
#[derive(Debug)]
pub(super) struct SmoothOrder {
    /// Node indices in pick order; every node appears (weights are at least 1).
    cycle: Box<[u32]>,
    /// The ticket of the next pick; its position is `ticket % cycle.len()`.
    next: AtomicUsize,
}

impl SmoothOrder {
    /// The cycle for nodes of `weights` (each at least 1).
    pub(super) fn new(weights: &[u32]) -> SmoothOrder {
        // Weights 2,4 pick exactly like 1,2 twice over: dividing keeps the cycle short.
        let divisor = weights.iter().copied().reduce(gcd).unwrap_or(1).max(1);
        let reduced: Vec<u32> = weights.iter().map(|&w| w / divisor).collect();
        let weights = scaled(&reduced, MAX_CYCLE);
        let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
        let mut current = vec![0i64; weights.len()];
        let mut cycle = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let mut best = 0;
            for (i, &weight) in weights.iter().enumerate() {
                current[i] += i64::from(weight);
                // Strictly greater: the first of equals wins, as in nginx.
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            cycle.push(best as u32);
        }
        SmoothOrder {
            cycle: cycle.into_boxed_slice(),
            next: AtomicUsize::new(0),
        }
    }

    /// The next usable node in the cycle; None when none is usable (checked over at most one
    /// whole cycle, which holds every node).
    ///
    /// A pick that skips a run of unusable entries also moves the shared ticket past them, so
    /// the node after a dead one does not inherit its share: with `a b c` and `b` down the
    /// picks go `a c a c`, not `a c c a c c`. Racing picks may lose that race; the skew is
    /// then one extra pick, never a wrong one.
    pub(super) fn pick(&self, usable: &impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.cycle.len();
        if len == 0 {
            return None;
        }
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        let mut rejected = None;
        for step in 0..len {
            let node = self.cycle[ticket.wrapping_add(step) % len] as usize;
            // Heavy nodes sit in runs; one refusal is enough for the whole run.
            if rejected == Some(node) {
                continue;
            }
            if usable(node) {
                if step > 0 {
                    let _ = self.next.compare_exchange(
                        ticket.wrapping_add(1),
                        ticket.wrapping_add(step + 1),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                return Some(node);
            }
            rejected = Some(node);
        }
        None
    }

    /// The node at the next position, usable or not: where least_conn starts its scan, so
    /// idle servers take turns in proportion to their weights.
    pub(super) fn rotate(&self) -> usize {
        let len = self.cycle.len();
        if len == 0 {
            return 0;
        }
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        self.cycle[ticket % len] as usize
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(order: &SmoothOrder, count: usize, usable: impl Fn(usize) -> bool) -> String {
        (0..count)
            .map(|_| match order.pick(&usable) {
                Some(node) => char::from(b'a' + node as u8),
                None => '-',
            })
            .collect()
    }

    #[test]
    fn weights_5_1_1_give_nginx_smooth_order() {
        let order = SmoothOrder::new(&[5, 1, 1]);
        assert_eq!(picks(&order, 14, |_| true), "aabacaaaabacaa");
    }

    #[test]
    fn equal_weights_take_turns_and_common_divisors_cancel() {
        assert_eq!(picks(&SmoothOrder::new(&[1, 1, 1]), 6, |_| true), "abcabc");
        let order = SmoothOrder::new(&[10, 2, 2]);
        assert_eq!(order.cycle.len(), 7);
        assert_eq!(picks(&order, 7, |_| true), "aabacaa");
    }

    #[test]
    fn unusable_nodes_are_skipped_without_doubling_their_successor() {
        let order = SmoothOrder::new(&[1, 1, 1]);
        assert_eq!(picks(&order, 6, |i| i != 1), "acacac");
        let order = SmoothOrder::new(&[5, 1, 1]);
        assert_eq!(picks(&order, 7, |i| i != 0), "bcbcbcb");
        let order = SmoothOrder::new(&[5, 1, 1]);
        let seen = picks(&order, 60, |i| i != 1);
        assert_eq!(seen.matches('a').count(), 50, "{seen}");
        assert_eq!(seen.matches('c').count(), 10, "{seen}");
        assert_eq!(picks(&order, 3, |_| false), "---");
    }

    #[test]
    fn absurd_weights_are_scaled_into_a_bounded_cycle() {
        let order = SmoothOrder::new(&[u32::MAX, 1, 7]);
        assert!(order.cycle.len() as u64 <= MAX_CYCLE + 2);
        assert_eq!(picks(&order, 1, |i| i == 2), "c");
        assert_eq!(picks(&SmoothOrder::new(&[]), 2, |_| true), "--");
    }
}
