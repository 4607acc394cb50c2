//! Passive health of one server: nginx's rules (`ngx_http_upstream_round_robin.c`) on one
//! atomic word, with the time passed in (a [`Moment`], read only when a failure makes it
//! matter), so the rules are tested with explicit times.
//!
//! nginx keeps per server `fails`, `checked` and `accessed`:
//! - a pick skips the server while `fails >= max_fails` and `now - checked <= fail_timeout`;
//! - the server a pick chooses gets `checked = now` when `now - checked > fail_timeout`: the
//!   first request after the timeout is the *trial* (and every other pick keeps away from an
//!   out server until its outcome is known, for `checked` is fresh again);
//! - a failure does `fails++; accessed = checked = now`;
//! - a success does `fails = 0` only if `accessed < checked`, i.e. only when the request was
//!   chosen after a check opened a new window. Successes between failures inside the window
//!   therefore do not forgive them: a server failing one request in three is taken out.
//!
//! `accessed` is only ever compared with `checked`, so it is kept as one bit: "checked since
//! the last failure". `fails`, that bit and `checked` share one `u64`, so a failure, a success
//! and a pick racing on the same server each see and leave a whole state, as under nginx's
//! lock, without any lock on the request path.
//!
//! Imports only std and its parent's [`FailPolicy`] and [`Moment`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{FailPolicy, Moment};

/// Bits of the word holding `fails` (saturating there: about a million).
const FAILS_BITS: u32 = 20;
const FAILS_MAX: u32 = (1 << FAILS_BITS) - 1;
/// The "checked since the last failure" bit (nginx: `accessed < checked`).
const RECHECKED_BIT: u64 = 1 << FAILS_BITS;
/// `checked` takes the remaining 43 bits: milliseconds of process uptime for 278 years.
const CHECKED_SHIFT: u32 = FAILS_BITS + 1;

/// One server's passive health, shared by every request (`&self` only).
#[derive(Default)]
pub struct PassiveHealth(AtomicU64);

/// The unpacked word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Passive {
    /// Failures counted toward `max_fails`.
    fails: u32,
    /// A request was chosen after `fail_timeout` since the last failure (its success will
    /// clear `fails`).
    rechecked: bool,
    /// When the last failure or check happened, in the caller's milliseconds.
    checked_ms: u64,
}

impl Passive {
    fn unpack(bits: u64) -> Passive {
        Passive {
            fails: (bits & u64::from(FAILS_MAX)) as u32,
            rechecked: bits & RECHECKED_BIT != 0,
            checked_ms: bits >> CHECKED_SHIFT,
        }
    }

    fn pack(self) -> u64 {
        u64::from(self.fails.min(FAILS_MAX))
            | if self.rechecked { RECHECKED_BIT } else { 0 }
            | self.checked_ms << CHECKED_SHIFT
    }

    /// True while the server is out: `max_fails` reached and `fail_timeout` not yet over.
    fn holds_out(self, policy: FailPolicy, now: &Moment) -> bool {
        policy.max_fails != 0
            && self.fails >= limit(policy)
            && now.get().saturating_sub(self.checked_ms) <= policy.fail_timeout_ms
    }
}

/// `max_fails` as the saturating counter can reach it.
fn limit(policy: FailPolicy) -> u32 {
    policy.max_fails.min(FAILS_MAX)
}

impl PassiveHealth {
    fn load(&self) -> Passive {
        Passive::unpack(self.0.load(Ordering::Relaxed))
    }

    /// Applies `change` as one compare-and-swap (retried on contention); `change` says None
    /// when there is nothing to do. Ok(state before) when it wrote, Err(state seen) otherwise.
    fn update(&self, change: impl Fn(Passive) -> Option<Passive>) -> Result<Passive, Passive> {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                change(Passive::unpack(bits)).map(Passive::pack)
            })
            .map(Passive::unpack)
            .map_err(Passive::unpack)
    }

    /// True when a pick at `now` may consider the server (reads only).
    pub fn usable(&self, policy: FailPolicy, now: &Moment) -> bool {
        policy.max_fails == 0 || !self.load().holds_out(policy, now)
    }

    /// Called for the server a pick chose: opens a new window when `fail_timeout` has passed
    /// since the last failure or check (for an out server, this request is its one trial).
    /// False when, since [`PassiveHealth::usable`] said yes, the server went out — a failure
    /// came in, or a concurrent pick took the trial: choose another.
    pub fn claim(&self, policy: FailPolicy, now: &Moment) -> bool {
        if policy.max_fails == 0 {
            return true;
        }
        // With no failure counted there is nothing a window could forgive: no write at all on
        // the healthy path (nginx stamps `checked` anyway; nothing ever reads it then).
        let due = |s: Passive| {
            s.fails != 0 && now.get().saturating_sub(s.checked_ms) > policy.fail_timeout_ms
        };
        match self.update(|s| {
            due(s).then(|| Passive {
                rechecked: true,
                checked_ms: now.get(),
                ..s
            })
        }) {
            Ok(_) => true,
            Err(seen) => !seen.holds_out(policy, now),
        }
    }

    /// Counts a failed attempt at `now`; true when the server is out now (nginx's "upstream
    /// server temporarily disabled"). With `max_fails=0` nothing is counted.
    pub fn fail(&self, policy: FailPolicy, now: u64) -> bool {
        if policy.max_fails == 0 {
            return false;
        }
        let before = self.update(|s| {
            Some(Passive {
                fails: s.fails.saturating_add(1).min(FAILS_MAX),
                rechecked: false,
                checked_ms: now,
            })
        });
        // The change always applies; both arms hold the state it replaced.
        let before = before.unwrap_or_else(|seen| seen);
        before.fails.saturating_add(1) >= limit(policy)
    }

    /// A successful exchange: clears the failures if the request was chosen in a window opened
    /// after them. True when that brought the server back from being out (slow start begins).
    pub fn succeed(&self, policy: FailPolicy) -> bool {
        let cleared =
            self.update(|s| (s.fails != 0 && s.rechecked).then_some(Passive { fails: 0, ..s }));
        matches!(cleared, Ok(before) if policy.max_fails != 0 && before.fails >= limit(policy))
    }

    /// Forgets the failures (nginx's quick recovery, or a passing active check); the window
    /// stamps stay. True when there was something to forget.
    pub fn reset(&self) -> bool {
        self.update(|s| (s.fails != 0).then_some(Passive { fails: 0, ..s }))
            .is_ok()
    }

    /// True while the server is out at `now` (for status; takes no trial).
    pub fn is_out(&self, policy: FailPolicy, now: &Moment) -> bool {
        self.load().holds_out(policy, now)
    }
}

impl fmt::Debug for PassiveHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.load().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_IN_10S: FailPolicy = FailPolicy {
        max_fails: 2,
        fail_timeout_ms: 10_000,
    };
    const ONE_IN_10S: FailPolicy = FailPolicy {
        max_fails: 1,
        fail_timeout_ms: 10_000,
    };

    /// A pick at `now` as the group makes it: consider, then claim.
    fn pick(health: &PassiveHealth, policy: FailPolicy, now: u64) -> bool {
        let now = Moment::at(now);
        health.usable(policy, &now) && health.claim(policy, &now)
    }

    fn usable(health: &PassiveHealth, policy: FailPolicy, now: u64) -> bool {
        health.usable(policy, &Moment::at(now))
    }

    #[test]
    fn the_word_round_trips() {
        for state in [
            Passive {
                fails: 0,
                rechecked: false,
                checked_ms: 0,
            },
            Passive {
                fails: FAILS_MAX,
                rechecked: true,
                checked_ms: (1 << 43) - 1,
            },
            Passive {
                fails: 3,
                rechecked: false,
                checked_ms: 123_456_789,
            },
        ] {
            assert_eq!(Passive::unpack(state.pack()), state);
        }
    }

    #[test]
    fn successes_between_failures_within_fail_timeout_do_not_forgive_them() {
        let health = PassiveHealth::default();
        // serve, serve, fail, serve, serve, fail: one request in three fails.
        for (now, ok) in [
            (1_000, true),
            (1_100, true),
            (1_200, false),
            (1_300, true),
            (1_400, true),
        ] {
            assert!(pick(&health, TWO_IN_10S, now), "usable at {now}");
            if ok {
                assert!(!health.succeed(TWO_IN_10S));
            } else {
                assert!(!health.fail(TWO_IN_10S, now), "one failure is not two");
            }
        }
        assert!(pick(&health, TWO_IN_10S, 1_500));
        assert!(
            health.fail(TWO_IN_10S, 1_500),
            "the second failure takes it out"
        );
        assert!(!usable(&health, TWO_IN_10S, 1_501));
        assert!(!usable(&health, TWO_IN_10S, 11_500), "out for fail_timeout");
        assert!(health.is_out(TWO_IN_10S, &Moment::at(11_500)));
    }

    #[test]
    fn after_fail_timeout_one_trial_decides() {
        let health = PassiveHealth::default();
        assert!(health.fail(ONE_IN_10S, 5_000));
        assert!(usable(&health, ONE_IN_10S, 15_001), "fail_timeout is over");
        assert!(health.claim(ONE_IN_10S, &Moment::at(15_001)), "the trial");
        // Any other pick, even one that looked before the trial was taken, keeps away.
        assert!(!usable(&health, ONE_IN_10S, 15_002));
        assert!(!health.claim(ONE_IN_10S, &Moment::at(15_002)));
        // The trial's success clears the failures: the server is back.
        assert!(health.succeed(ONE_IN_10S), "back from being out");
        assert!(pick(&health, ONE_IN_10S, 15_003));
        assert!(!health.succeed(ONE_IN_10S), "nothing left to clear");
    }

    #[test]
    fn a_failed_trial_takes_the_server_out_for_another_fail_timeout() {
        let health = PassiveHealth::default();
        assert!(health.fail(ONE_IN_10S, 0));
        assert!(pick(&health, ONE_IN_10S, 10_001));
        assert!(health.fail(ONE_IN_10S, 10_050));
        assert!(!usable(&health, ONE_IN_10S, 20_050));
        assert!(usable(&health, ONE_IN_10S, 20_051));
    }

    #[test]
    fn a_success_of_a_request_chosen_before_a_failure_does_not_clear_it() {
        let health = PassiveHealth::default();
        assert!(pick(&health, TWO_IN_10S, 100));
        assert!(!health.fail(TWO_IN_10S, 200));
        // A request picked at 150 (before the failure) answers at 250.
        assert!(!health.succeed(TWO_IN_10S));
        assert!(health.fail(TWO_IN_10S, 300), "two failures, both counted");
        assert!(!usable(&health, TWO_IN_10S, 301));
    }

    #[test]
    fn a_success_after_fail_timeout_clears_failures_short_of_max_fails() {
        let health = PassiveHealth::default();
        assert!(!health.fail(TWO_IN_10S, 1_000));
        // Within the window: the pick opens nothing, its success clears nothing.
        assert!(pick(&health, TWO_IN_10S, 5_000));
        assert!(!health.succeed(TWO_IN_10S));
        // After it: the pick opens a new window, its success forgives the old failure ...
        assert!(pick(&health, TWO_IN_10S, 11_001));
        assert!(!health.succeed(TWO_IN_10S), "it was never out");
        // ... so the next failure is the first again.
        assert!(!health.fail(TWO_IN_10S, 11_002));
        assert!(usable(&health, TWO_IN_10S, 11_003));
    }

    #[test]
    fn failures_far_apart_with_no_success_between_still_add_up() {
        // nginx only forgives on a success; a server that only ever fails is counted on.
        let health = PassiveHealth::default();
        assert!(!health.fail(TWO_IN_10S, 0));
        assert!(pick(&health, TWO_IN_10S, 60_000));
        assert!(health.fail(TWO_IN_10S, 60_010));
    }

    #[test]
    fn reset_forgets_failures_only() {
        let health = PassiveHealth::default();
        assert!(!health.reset(), "nothing to forget");
        assert!(health.fail(ONE_IN_10S, 100));
        assert!(health.reset());
        assert!(usable(&health, ONE_IN_10S, 101), "back at once");
        assert!(health.claim(ONE_IN_10S, &Moment::at(101)));
        // The window stamp stayed: a new failure is out again at once, and a success of a
        // request chosen inside the old window does not count as a trial.
        assert!(!health.succeed(ONE_IN_10S));
        assert!(health.fail(ONE_IN_10S, 102));
    }

    #[test]
    fn max_fails_0_counts_nothing_and_never_holds_out() {
        let off = FailPolicy {
            max_fails: 0,
            fail_timeout_ms: 10_000,
        };
        let health = PassiveHealth::default();
        for now in 0..5 {
            assert!(!health.fail(off, now));
            assert!(pick(&health, off, now));
        }
        assert_eq!(health.load().fails, 0, "a later max_fails starts afresh");
        assert!(!health.is_out(off, &Moment::at(5)));
    }

    #[test]
    fn a_huge_max_fails_is_still_reachable() {
        let policy = FailPolicy {
            max_fails: u32::MAX,
            fail_timeout_ms: 10_000,
        };
        let health = PassiveHealth::default();
        health.0.store(
            Passive {
                fails: FAILS_MAX - 1,
                rechecked: false,
                checked_ms: 1,
            }
            .pack(),
            Ordering::Relaxed,
        );
        assert!(health.fail(policy, 2));
        assert!(health.fail(policy, 3), "saturated, still out");
        assert!(!usable(&health, policy, 4));
    }
}
