//! Active health of one server: the verdict of its checks, and the run of probe results that
//! leads to the next verdict (`health_check passes= fails=`).
//!
//! Both live with the peer rather than in the task that probes it. A reload restarts the check
//! tasks (the check's interval, uri or thresholds may have changed), and a run kept in the task
//! started over at every reload: a server two passes into `passes=3` had to pass three more
//! times, and one reloaded often enough never came back at all. The peer outlives reloads, so
//! the run does too.
//!
//! Imports only std. Probing is `proxy::health`'s job; this only counts.

use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};

/// What active health checks last said about a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckState {
    /// No check has run (or none is configured).
    Unknown,
    /// The last checks passed.
    Up,
    /// The last checks failed.
    Down,
    /// Added by a reload to a group with active checks: takes no traffic until its first
    /// check passes (the "staging period" of Azure SignalR's dynamic scaling).
    Pending,
}

/// How many probe results in a row change a verdict (a group's `health_check passes= fails=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckPolicy {
    /// Consecutive passes that bring a server that is down up again.
    pub passes: u32,
    /// Consecutive fails that take a server down.
    pub fails: u32,
}

/// One server's active health, shared by whichever check task probes it (`&self` only).
#[derive(Debug, Default)]
pub struct ActiveHealth {
    /// The verdict, as [`encode`] writes it.
    verdict: AtomicU8,
    /// The current run: passes counted up from 1, fails down from -1, 0 before any probe.
    run: AtomicI64,
}

impl ActiveHealth {
    /// The verdict in force.
    pub fn verdict(&self) -> CheckState {
        decode(self.verdict.load(Ordering::Relaxed))
    }

    /// Sets the verdict; returns the one it replaced.
    pub fn set_verdict(&self, state: CheckState) -> CheckState {
        decode(self.verdict.swap(encode(state), Ordering::Relaxed))
    }

    /// Adds one probe result to the run. Returns the verdict the run now calls for when it
    /// differs from the one in force (None: nothing changes); the caller writes it.
    pub fn record(&self, passed: bool, policy: CheckPolicy) -> Option<CheckState> {
        let run = self.extend_run(passed);
        let before = self.verdict();
        let verdict = if passed {
            // A first verdict needs only one pass: a new server should not wait `passes`
            // intervals for its first request.
            (run >= policy.passes || matches!(before, CheckState::Unknown | CheckState::Pending))
                .then_some(CheckState::Up)
        } else {
            (run >= policy.fails).then_some(CheckState::Down)
        };
        verdict.filter(|verdict| *verdict != before)
    }

    /// The length of the run of `passed` results, this one included.
    fn extend_run(&self, passed: bool) -> u32 {
        let next = |run: i64| match (passed, run) {
            (true, run) if run > 0 => run.saturating_add(1),
            (true, _) => 1,
            (false, run) if run < 0 => run.saturating_sub(1),
            (false, _) => -1,
        };
        // The closure always answers Some, so both arms hold the run it replaced.
        let before = self
            .run
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |run| Some(next(run)))
            .unwrap_or_else(|run| run);
        u32::try_from(next(before).unsigned_abs()).unwrap_or(u32::MAX)
    }
}

fn encode(state: CheckState) -> u8 {
    match state {
        CheckState::Unknown => 0,
        CheckState::Up => 1,
        CheckState::Down => 2,
        CheckState::Pending => 3,
    }
}

fn decode(value: u8) -> CheckState {
    match value {
        1 => CheckState::Up,
        2 => CheckState::Down,
        3 => CheckState::Pending,
        _ => CheckState::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE_AND_TWO: CheckPolicy = CheckPolicy {
        passes: 3,
        fails: 2,
    };

    /// Records `results` in order; the verdicts that changed, in order.
    fn run(health: &ActiveHealth, results: &[bool]) -> Vec<CheckState> {
        let mut changes = Vec::new();
        for &passed in results {
            if let Some(verdict) = health.record(passed, THREE_AND_TWO) {
                health.set_verdict(verdict);
                changes.push(verdict);
            }
        }
        changes
    }

    #[test]
    fn a_first_verdict_takes_one_probe_of_either_kind_to_pass() {
        let health = ActiveHealth::default();
        assert_eq!(run(&health, &[true]), [CheckState::Up]);
        let staged = ActiveHealth::default();
        staged.set_verdict(CheckState::Pending);
        assert_eq!(run(&staged, &[true]), [CheckState::Up]);
        let unknown = ActiveHealth::default();
        assert_eq!(run(&unknown, &[false]), [], "one fail of two");
        assert_eq!(run(&unknown, &[false]), [CheckState::Down]);
    }

    #[test]
    fn only_a_run_long_enough_changes_the_verdict() {
        let health = ActiveHealth::default();
        assert_eq!(run(&health, &[false, false]), [CheckState::Down]);
        // Two passes, a fail, two passes: never three in a row.
        assert_eq!(run(&health, &[true, true, false, true, true]), []);
        assert_eq!(run(&health, &[true]), [CheckState::Up]);
        assert_eq!(
            run(&health, &[true, true, false, true]),
            [],
            "fails break a run too"
        );
        assert_eq!(run(&health, &[false, false]), [CheckState::Down]);
    }
}
