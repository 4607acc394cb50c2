//! How a sync worker speaks of failures: every failure is counted, but the log gets at most one
//! line per interval (with how many failures it stands for), and one line when the store is
//! back. A Redis that is down for an hour is one line a minute, not one per reconnect attempt
//! or per learned session. Owns only that decision; the counting atomics live in the handle.
//! Must not import the redis client or tokio.

use std::time::{Duration, Instant};

/// What to log after a failure or a recovery.
#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    /// Nothing: a line went out less than an interval ago.
    Quiet,
    /// A failure line standing for this many failures (this one and the quiet ones before it).
    Failing(u64),
    /// The store is back after this many failures.
    Recovered(u64),
}

/// The once-per-interval rule for one worker.
#[derive(Debug)]
pub struct FailureLog {
    interval: Duration,
    /// When the last failure line went out.
    last_line: Option<Instant>,
    /// Failures since the last failure line.
    unreported: u64,
    /// Failures since the store last worked.
    since_working: u64,
}

impl FailureLog {
    /// A log that writes at most one failure line per `interval`.
    pub fn new(interval: Duration) -> FailureLog {
        FailureLog {
            interval,
            last_line: None,
            unreported: 0,
            since_working: 0,
        }
    }

    /// A failure at `now`: whether to write a line for it.
    pub fn failed(&mut self, now: Instant) -> Report {
        self.unreported += 1;
        self.since_working += 1;
        let due = self
            .last_line
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if !due {
            return Report::Quiet;
        }
        self.last_line = Some(now);
        Report::Failing(std::mem::take(&mut self.unreported))
    }

    /// The store worked again: a line if there had been failures.
    pub fn worked(&mut self) -> Report {
        self.unreported = 0;
        match std::mem::take(&mut self.since_working) {
            0 => Report::Quiet,
            failures => Report::Recovered(failures),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn the_first_failure_is_logged_then_one_line_per_interval_counting_the_quiet_ones() {
        let mut log = FailureLog::new(MINUTE);
        let start = Instant::now();
        assert_eq!(log.failed(start), Report::Failing(1));
        for second in 1..60 {
            assert_eq!(
                log.failed(start + Duration::from_secs(second)),
                Report::Quiet
            );
        }
        assert_eq!(log.failed(start + MINUTE), Report::Failing(60));
        assert_eq!(log.failed(start + MINUTE * 2), Report::Failing(1));
    }

    #[test]
    fn recovery_is_logged_once_with_every_failure_of_the_outage() {
        let mut log = FailureLog::new(MINUTE);
        let start = Instant::now();
        assert_eq!(log.worked(), Report::Quiet);
        log.failed(start);
        log.failed(start + Duration::from_secs(1));
        assert_eq!(log.worked(), Report::Recovered(2));
        assert_eq!(log.worked(), Report::Quiet);
        // Within the interval of the last line: a new outage stays quiet until it is due.
        assert_eq!(log.failed(start + Duration::from_secs(2)), Report::Quiet);
        assert_eq!(log.failed(start + MINUTE), Report::Failing(2));
    }
}
