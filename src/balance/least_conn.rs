//! nginx's weighted `least_conn`: the usable node with the least load per unit of weight.
//!
//! nginx breaks ties with smooth weighted round robin among the tied peers, under a lock.
//! Here the scan starts at the next node of the shared round-robin cycle and keeps the first
//! strictly lighter node, so tied nodes take turns (in proportion to weight when all are
//! idle) without any lock. Owns no state of its own; imports nothing outside `balance`.

use super::lighter;
use super::round_robin::SmoothOrder;

/// The usable node with the lowest `load / weight`, ties going to the first one met from a
/// rotating start; None when no node is usable. Calls `usable` once per node and `load` once
/// per usable node.
pub(super) fn pick(
    order: &SmoothOrder,
    weights: &[u32],
    usable: &impl Fn(usize) -> bool,
    load: &impl Fn(usize) -> u64,
) -> Option<usize> {
    let count = weights.len();
    let start = order.rotate();
    let mut best: Option<(usize, u64)> = None;
    for step in 0..count {
        let node = (start + step) % count;
        if !usable(node) {
            continue;
        }
        let node_load = load(node);
        let better = match best {
            None => true,
            Some((best_node, best_load)) => {
                lighter(node_load, weights[node], best_load, weights[best_node])
            }
        };
        if better {
            best = Some((node, node_load));
        }
    }
    best.map(|(node, _)| node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(weights: &[u32], loads: &[u64], usable: impl Fn(usize) -> bool, n: usize) -> Vec<usize> {
        let order = SmoothOrder::new(weights);
        (0..n)
            .map(|_| pick(&order, weights, &usable, &|i| loads[i]).unwrap_or(usize::MAX))
            .collect()
    }

    #[test]
    fn the_least_loaded_node_wins() {
        assert_eq!(run(&[1, 1, 1], &[5, 2, 9], |_| true, 3), [1, 1, 1]);
        assert_eq!(run(&[1, 1, 1], &[5, 2, 9], |i| i != 1, 2), [0, 0]);
        assert_eq!(run(&[1, 1], &[0, 0], |_| false, 1), [usize::MAX]);
        assert_eq!(run(&[], &[], |_| true, 1), [usize::MAX]);
    }

    #[test]
    fn equally_loaded_nodes_take_turns() {
        assert_eq!(run(&[1, 1, 1], &[0, 0, 0], |_| true, 6), [0, 1, 2, 0, 1, 2]);
        // Scan order from the rotating start decides among the tied: the node after a busy one
        // meets more starts, until its own load evens things out (see the test below).
        assert_eq!(run(&[1, 1, 1], &[3, 1, 1], |_| true, 4), [1, 1, 2, 1]);
    }

    #[test]
    fn load_is_weighed() {
        // 5/3 < 2/1: the heavier server takes more before it counts as busier.
        assert_eq!(run(&[3, 1], &[5, 2], |_| true, 2), [0, 0]);
        assert_eq!(run(&[3, 1], &[7, 2], |_| true, 2), [1, 1]);
        // Idle and tied: turns follow the weights, 3 to 1.
        let picks = run(&[3, 1], &[0, 0], |_| true, 8);
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 6);
    }

    #[test]
    fn load_follows_picks_like_a_live_server_would() {
        let order = SmoothOrder::new(&[2, 1, 1]);
        let mut loads = [0u64; 3];
        for _ in 0..400 {
            let node = pick(&order, &[2, 1, 1], &|_| true, &|i| loads[i]).unwrap();
            loads[node] += 1;
        }
        assert_eq!(loads, [200, 100, 100]);
    }
}
