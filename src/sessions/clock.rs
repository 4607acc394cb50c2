//! The coarse clock sessions expire by: milliseconds on a monotonic clock, read from one atomic
//! that a background thread moves forward every [`TICK`]. A learned-session lookup slides its
//! session's expiry on every request; reading the real clock for it cost a `clock_gettime` per
//! request, more than the expiry of a session that lives for minutes needs (nginx, likewise,
//! expires by a clock it updates once per turn of its event loop, not per request).
//!
//! Idle connections are aged by it too (the upstream pool's `keepalive_timeout`, the order in
//! which the connection ceiling sheds idle clients): seconds-scale ages that a real clock read
//! per request would measure no better.
//!
//! The thread is started by the first read (sessions are std-only: there is no runtime to hand
//! it to) and lives as long as the process; until it runs, and if it could not be started,
//! reads take the real clock. So a session expires within a tick of its timeout. Std only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

/// How often the clock moves: the precision of session expiry.
pub const TICK: Duration = Duration::from_millis(250);

/// The last tick, in [`now_ms`] units; 0 until the ticking thread runs.
static TICKED_MS: AtomicU64 = AtomicU64::new(0);
static TICKER: Once = Once::new();

/// Milliseconds since the clock's epoch (about the first session read of the process), never
/// 0, at most a [`TICK`] behind the real clock.
pub fn now_ms() -> u64 {
    match TICKED_MS.load(Ordering::Relaxed) {
        0 => {
            TICKER.call_once(start_ticking);
            precise_ms()
        }
        ms => ms,
    }
}

fn start_ticking() {
    let ticking = std::thread::Builder::new()
        .name("tether-clock".into())
        .spawn(|| {
            loop {
                std::thread::sleep(TICK);
                TICKED_MS.store(precise_ms(), Ordering::Relaxed);
            }
        });
    // Without the thread the atomic stays 0 and every read takes the real clock: a value that
    // never moved again would keep every session alive for ever.
    if ticking.is_ok() {
        TICKED_MS.store(precise_ms(), Ordering::Relaxed);
    }
}

/// The real clock, in [`now_ms`] units.
fn precise_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_keeps_up_with_real_time_within_a_few_ticks() {
        let tick = TICK.as_millis() as u64;
        let first = now_ms();
        let started = Instant::now();
        // The thread moves the clock every tick: two ticks on must come within twenty, however
        // busy the machine (a bounded wait; it fails if the clock stopped).
        while now_ms() < first + 2 * tick {
            assert!(started.elapsed() < 20 * TICK, "the clock stopped");
            std::thread::sleep(TICK / 5);
        }
        let behind = precise_ms().saturating_sub(now_ms());
        assert!(behind <= 10 * tick, "{behind} ms behind the real clock");
    }
}
