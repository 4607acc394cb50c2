//! nginx's `random` and `random two least_conn`: weighted draws from a thread-local RNG.
//!
//! A draw is a uniform number below the total weight located in the cumulative weights, so
//! a node of weight 3 is drawn three times as often as one of weight 1. Like nginx, an
//! unusable draw is redrawn at most 20 times before a plain scan takes over, so a tier that is
//! mostly down still answers in bounded time. The RNG is `fastrand`'s per-thread generator:
//! no lock, no shared cache line. Owns the cumulative table; imports nothing outside `balance`.

use super::lighter;

/// How many draws before giving up on chance, as nginx does.
const MAX_DRAWS: usize = 20;

/// Cumulative weights: node i covers draws in `ends[i-1]..ends[i]`.
#[derive(Debug)]
pub(super) struct Cumulative {
    ends: Box<[u64]>,
}

impl Cumulative {
    /// The table for nodes of `weights` (each at least 1).
    pub(super) fn new(weights: &[u32]) -> Cumulative {
        let ends = weights
            .iter()
            .scan(0u64, |end, &weight| {
                *end += u64::from(weight);
                Some(*end)
            })
            .collect();
        Cumulative { ends }
    }

    /// One weighted draw, usable or not; None only without nodes.
    fn draw(&self) -> Option<usize> {
        let total = *self.ends.last()?;
        let point = fastrand::u64(0..total);
        Some(self.ends.partition_point(|&end| end <= point))
    }

    /// A weighted-random usable node (`random`).
    pub(super) fn pick(&self, usable: &impl Fn(usize) -> bool) -> Option<usize> {
        for _ in 0..MAX_DRAWS {
            let node = self.draw()?;
            if usable(node) {
                return Some(node);
            }
        }
        self.scan(usable)
    }

    /// Two distinct weighted-random usable nodes, keeping the one with less load per unit of
    /// weight (`random two least_conn`); a lone usable node when chance finds only one.
    pub(super) fn pick_two(
        &self,
        weights: &[u32],
        usable: &impl Fn(usize) -> bool,
        load: &impl Fn(usize) -> u64,
    ) -> Option<usize> {
        let mut first = None;
        for _ in 0..MAX_DRAWS {
            let node = self.draw()?;
            if first == Some(node) || !usable(node) {
                continue;
            }
            let Some(first) = first else {
                first = Some(node);
                continue;
            };
            // Ties keep the first draw, itself a plain weighted draw, so idle nodes share by
            // weight. (nginx keeps the second, which with two servers of weights 1 and 4 sends
            // 80% of an idle tier's picks to the light one.)
            return Some(
                if lighter(load(node), weights[node], load(first), weights[first]) {
                    node
                } else {
                    first
                },
            );
        }
        first.or_else(|| self.scan(usable))
    }

    /// The first usable node from a random start: the bounded way out when draws keep
    /// landing on unusable nodes.
    fn scan(&self, usable: &impl Fn(usize) -> bool) -> Option<usize> {
        let count = self.ends.len();
        if count == 0 {
            return None;
        }
        let start = fastrand::usize(0..count);
        (0..count)
            .map(|step| (start + step) % count)
            .find(|&node| usable(node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(picks: impl Iterator<Item = Option<usize>>, nodes: usize) -> Vec<usize> {
        let mut counts = vec![0; nodes];
        for node in picks {
            counts[node.expect("a usable node")] += 1;
        }
        counts
    }

    #[test]
    fn draws_follow_the_weights() {
        let table = Cumulative::new(&[1, 2, 7]);
        let counts = tally((0..100_000).map(|_| table.pick(&|_| true)), 3);
        // Expected 10k, 20k, 70k; a few hundred is many standard deviations.
        assert!((9_000..11_000).contains(&counts[0]), "{counts:?}");
        assert!((18_500..21_500).contains(&counts[1]), "{counts:?}");
        assert!((68_000..72_000).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn unusable_nodes_are_never_drawn() {
        let table = Cumulative::new(&[1, 1, 1, 1]);
        let counts = tally((0..10_000).map(|_| table.pick(&|i| i % 2 == 1)), 4);
        assert_eq!((counts[0], counts[2]), (0, 0));
        assert!(counts[1] > 4_000 && counts[3] > 4_000, "{counts:?}");
        // Only a weight-1 node out of 1000 weight left: the scan finds it.
        let table = Cumulative::new(&[1000, 1]);
        assert_eq!(table.pick(&|i| i == 1), Some(1));
        assert_eq!(table.pick(&|_| false), None);
        assert_eq!(Cumulative::new(&[]).pick(&|_| true), None);
    }

    #[test]
    fn two_prefers_the_less_loaded() {
        let table = Cumulative::new(&[1, 1, 1]);
        let weights = [1, 1, 1];
        let loads = [100, 0, 100];
        let counts = tally(
            (0..30_000).map(|_| table.pick_two(&weights, &|_| true, &|i| loads[i])),
            3,
        );
        // Node 1 wins whenever it is one of the two drawn: 2 pairs out of 3.
        assert!((19_000..21_000).contains(&counts[1]), "{counts:?}");
        // Its load per weight is what counts: 30 on weight 10 is lighter than 5 on weight 1.
        let weights = [10, 1];
        let table = Cumulative::new(&weights);
        let loads = [30, 5];
        let counts = tally(
            (0..1_000).map(|_| table.pick_two(&weights, &|_| true, &|i| loads[i])),
            2,
        );
        assert_eq!(counts, [1_000, 0]);
    }

    #[test]
    fn two_with_one_usable_node_returns_it() {
        let table = Cumulative::new(&[1, 1, 1]);
        let loads = |_| 0;
        assert_eq!(table.pick_two(&[1, 1, 1], &|i| i == 2, &loads), Some(2));
        assert_eq!(table.pick_two(&[1, 1, 1], &|_| false, &loads), None);
    }
}
