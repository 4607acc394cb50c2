//! At most one log line a second for a condition that can fire thousands of times a second
//! (a connection ceiling reached, accept() out of descriptors): the first occurrence is logged
//! at once, the next ones only after a second, saying how many went unlogged in between.
//! Lock-free (a compare-and-swap on the time of the last line); imports only std.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The gap between two lines.
const PERIOD_MS: u64 = 1000;

/// One condition's log-line budget.
#[derive(Debug)]
pub struct Throttle {
    epoch: Instant,
    /// Milliseconds after `epoch` of the last line (+1; 0 = never).
    last_ms: AtomicU64,
    /// Occurrences not logged since the last line.
    suppressed: AtomicU64,
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }
}

impl Throttle {
    /// Counts one occurrence. `Some(n)` when it should be logged now — `n` occurrences went
    /// unlogged since the last line — None when a line was written less than a second ago.
    pub fn allow(&self) -> Option<u64> {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == 0 || now >= last + PERIOD_MS;
        if due
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_and_the_count_of_the_rest() {
        // Ten seconds old, so that moving the last line a second back stays after the epoch.
        let throttle = Throttle {
            epoch: Instant::now() - std::time::Duration::from_secs(10),
            ..Throttle::default()
        };
        assert_eq!(throttle.allow(), Some(0), "the first is logged at once");
        let burst = (0..1000).filter(|_| throttle.allow().is_some()).count();
        assert_eq!(burst, 0, "nothing more within the second");
        // Moved back a second: the next occurrence is due, and counts the unlogged ones.
        throttle.last_ms.fetch_sub(PERIOD_MS, Ordering::Relaxed);
        assert_eq!(throttle.allow(), Some(1000));
        assert_eq!(throttle.allow(), None);
    }
}
