//! The timed half of a drain: closing one server's streams spread evenly over its timeout.
//!
//! With N streams open and the timeout T, the i-th close (from 1) comes at i·T/(N+1): equal
//! gaps before the first, between each two and after the last, so each close has a gap's time
//! for its handshake and its client's reconnect, and the clients come back one gap apart —
//! never a storm. The gap is recomputed before every close from what is open and the time
//! left, so streams that end on their own leave more time to the rest, and one opened
//! meanwhile (a request that chose the server just before the drain) is fitted in. Past the deadline
//! whatever is left closes at once, and a stream opened later is closed as it opens.
//!
//! Imports tokio's timers and `signal`; knows nothing of peers or configs (`reconcile` does).

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use super::signal::{CloseReason, Closers};

/// Where a drain stands: what the status page and the logs show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Why the server drains.
    pub reason: CloseReason,
    /// Streams still open and not yet told to close.
    pub left: usize,
    /// Streams told to close so far.
    pub closed: usize,
    /// How long until the last of them is closed (zero once past the deadline).
    pub finish_in: Duration,
}

/// One server's drain as it runs: read by the status page while the task writes it.
#[derive(Debug)]
pub struct Board {
    reason: CloseReason,
    deadline: Instant,
    closed: Mutex<usize>,
}

impl Board {
    /// A drain for `reason` ending at `deadline`.
    pub fn new(reason: CloseReason, deadline: Instant) -> Board {
        Board {
            reason,
            deadline,
            closed: Mutex::new(0),
        }
    }

    /// The drain's progress over `closers` now.
    pub fn progress(&self, closers: &Closers) -> Progress {
        Progress {
            reason: self.reason,
            left: closers.open_count(),
            closed: *self.closed.lock().unwrap_or_else(|p| p.into_inner()),
            finish_in: self.deadline.saturating_duration_since(Instant::now()),
        }
    }

    fn count_close(&self) -> usize {
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        *closed += 1;
        *closed
    }
}

/// Closes every stream of `closers` for `reason`, spread over the time to `board`'s deadline;
/// `server` names it in the logs. Ends once the deadline passed with nothing left open; from
/// then on `closers` closes latecomers itself.
pub async fn run(closers: Arc<Closers>, board: Arc<Board>, server: Arc<str>) {
    let (reason, deadline) = (board.reason, board.deadline);
    let total = closers.open_count();
    let over = deadline.saturating_duration_since(Instant::now());
    tracing::info!(
        upstream = %server,
        tunnels = total,
        over = ?over,
        reason = reason.as_str(),
        "draining: closing tunnels and event streams spread over the timeout"
    );
    // Progress lines at each quarter of the streams there were, so a long drain is visible
    // without a line per stream.
    let quarter = total.div_ceil(4).max(1);
    loop {
        // Created before the look at the list, so a registration in between is not missed.
        let registered = closers.next_registration();
        let open = closers.open_count();
        if open == 0 {
            if Instant::now() >= deadline {
                break;
            }
            tokio::select! {
                () = registered => {}
                () = sleep_until(deadline) => {}
            }
            continue;
        }
        // One equal share of the time left before each close, and one after the last, which
        // leaves it time for its handshake (none past the deadline).
        let now = Instant::now();
        sleep_until(now + deadline.saturating_duration_since(now) / (open as u32 + 1)).await;
        // Streams may have ended on their own meanwhile: the oldest still open goes.
        let Some(oldest) = closers.open().into_iter().next() else {
            continue;
        };
        oldest.close(reason);
        let closed = board.count_close();
        let left = closers.open_count();
        if closed.is_multiple_of(quarter) && left > 0 {
            tracing::info!(
                upstream = %server,
                closed,
                left,
                finish_in = ?deadline.saturating_duration_since(Instant::now()),
                "draining"
            );
        }
    }
    closers.set_overdue(Some(reason));
    tracing::info!(
        upstream = %server,
        closed = *board.closed.lock().unwrap_or_else(|p| p.into_inner()),
        reason = reason.as_str(),
        "drain finished: no tunnel or event stream left"
    );
}

/// How long a graceful stop spreads its closes: `shutdown_timeout` less the close grace, so
/// even among many streams the last close's handshake fits before the stop (all of it when
/// the timeout is shorter).
pub fn stop_spread(shutdown_timeout: Duration, close_grace: Duration) -> Duration {
    if shutdown_timeout > 2 * close_grace {
        shutdown_timeout - close_grace
    } else {
        shutdown_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    /// When each of `signals` was told to close, relative to `start`, in whole milliseconds.
    async fn close_times(
        signals: &[Arc<super::super::signal::CloseSignal>],
        start: Instant,
    ) -> Vec<u128> {
        let mut times = Vec::new();
        for signal in signals {
            signal.closed().await;
            times.push((Instant::now() - start).as_millis());
        }
        times
    }

    #[tokio::test(start_paused = true)]
    async fn closes_come_one_equal_gap_apart_oldest_first() {
        let parent = CancellationToken::new();
        let closers = Arc::new(Closers::default());
        let signals: Vec<_> = (0..4).map(|_| closers.register(&parent)).collect();
        let start = Instant::now();
        let board = Arc::new(Board::new(
            CloseReason::Drain,
            start + Duration::from_secs(8),
        ));
        let task = tokio::spawn(run(closers.clone(), board.clone(), "a".into()));
        assert_eq!(close_times(&signals, start).await, [1600, 3200, 4800, 6400]);
        assert!(signals.iter().all(|s| s.reason() == CloseReason::Drain));
        let progress = board.progress(&closers);
        assert_eq!((progress.left, progress.closed), (0, 4));
        // It waits out the deadline for latecomers, fitting them into the time left.
        let late = closers.register(&parent);
        assert_eq!(close_times(&[late], start).await, [7200]);
        task.await.unwrap();
        assert_eq!(Instant::now() - start, Duration::from_secs(8));
        assert!(
            closers.register(&parent).is_closed(),
            "overdue: closed at once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn streams_that_ended_on_their_own_take_no_share() {
        let parent = CancellationToken::new();
        let closers = Arc::new(Closers::default());
        let mut signals: Vec<_> = (0..4).map(|_| closers.register(&parent)).collect();
        // Two of the four ended by themselves: the two left share the time between them.
        signals.drain(1..3);
        let start = Instant::now();
        let deadline = start + Duration::from_secs(6);
        let board = Arc::new(Board::new(CloseReason::Stop, deadline));
        tokio::spawn(run(closers.clone(), board, "a".into()));
        assert_eq!(close_times(&signals, start).await, [2000, 4000]);
        assert_eq!(signals[1].reason(), CloseReason::Stop);
    }

    #[test]
    fn a_stop_keeps_a_close_grace_before_its_end() {
        let s = Duration::from_secs;
        assert_eq!(stop_spread(s(10), s(1)), s(9));
        assert_eq!(stop_spread(s(2), s(1)), s(2));
    }
}
