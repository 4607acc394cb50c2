//! `proxy_read_timeout` for a body that streams: the time the body has been waiting for its
//! source's next piece, with one timer per body that is registered once and moved only when it
//! fires early.
//!
//! A timer made at every wait and dropped at every piece costs a registration and a
//! cancellation in tokio's timer wheel per piece — for an SSE stream, per event, more than
//! the rest of the event's way to the client. Here a piece costs a store, a wait one clock
//! read, and the timer, armed at the first wait, fires at most once per timeout to find the
//! deadline moved on and follow it.
//!
//! Only tokio's clock and timer: no hyper, no sockets, nothing of the proxy.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

/// The longest wait honoured: a config may say `proxy_read_timeout 99999999999999`, and a
/// deadline past what `Instant` holds would panic instead of meaning "never".
const MAX_WAIT: Duration = Duration::from_secs(365 * 86_400);

pin_project! {
    /// How long a body may wait for its source's next piece, counted from when the current
    /// wait began (nginx: the time between two successive reads).
    #[derive(Debug)]
    pub struct ReadIdle {
        // Made at the first wait: a body that arrives whole never touches the timer wheel.
        // Its deadline is never later than the current wait's.
        #[pin]
        sleep: Option<Sleep>,
        // The waker the timer holds. While the timer has not fired and this waker wakes the
        // task polling now, polling the timer again would only register the same waker again
        // (a few hundred instructions per SSE event), so it is skipped.
        armed: Option<Waker>,
        // When the current wait began; None while the body is not waiting.
        waiting_since: Option<Instant>,
        timeout: Duration,
    }
}

impl ReadIdle {
    /// A wait limit of `timeout`, not yet waiting.
    pub fn new(timeout: Duration) -> ReadIdle {
        ReadIdle {
            sleep: None,
            armed: None,
            waiting_since: None,
            timeout: timeout.min(MAX_WAIT),
        }
    }

    /// A piece arrived: the current wait, if any, is over.
    pub fn moved(self: Pin<&mut Self>) {
        *self.project().waiting_since = None;
    }

    /// The source has nothing at hand: starts the wait if it has not started, and is ready
    /// once it has lasted the timeout (else the task is woken when it may have).
    pub fn poll_expired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let since = *this.waiting_since.get_or_insert_with(Instant::now);
        let due = since + *this.timeout;
        if this.sleep.is_none() {
            this.sleep.set(Some(sleep_until(due)));
        }
        let Some(mut sleep) = this.sleep.as_pin_mut() else {
            return Poll::Pending;
        };
        if this
            .armed
            .as_ref()
            .is_some_and(|armed| armed.will_wake(cx.waker()))
            && !sleep.is_elapsed()
        {
            return Poll::Pending;
        }
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                if !this
                    .armed
                    .as_ref()
                    .is_some_and(|armed| armed.will_wake(cx.waker()))
                {
                    *this.armed = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            // Fired at the deadline of an earlier wait: follow the current one.
            if sleep.deadline() >= due {
                return Poll::Ready(());
            }
            sleep.as_mut().reset(due);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::pin::pin;

    use super::*;

    /// Waits on `idle` for at most `limit`; true if it expired.
    async fn expires_within(idle: Pin<&mut ReadIdle>, limit: Duration) -> bool {
        let mut idle = idle;
        tokio::time::timeout(limit, poll_fn(|cx| idle.as_mut().poll_expired(cx)))
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_expires_after_the_timeout_counted_from_its_own_start() {
        let timeout = Duration::from_secs(10);
        let mut idle = pin!(ReadIdle::new(timeout));
        // A first wait of 7 s, then a piece: the timer stays where it was armed.
        assert!(!expires_within(idle.as_mut(), Duration::from_secs(7)).await);
        idle.as_mut().moved();
        // The next wait starts now; at the first timer's deadline (3 s on) it has not
        // expired, and it does 10 s after it began, not earlier and not later.
        let start = Instant::now();
        assert!(!expires_within(idle.as_mut(), Duration::from_secs(9)).await);
        assert!(expires_within(idle.as_mut(), Duration::from_secs(2)).await);
        assert_eq!(start.elapsed(), timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn pieces_more_often_than_the_timeout_never_expire_it() {
        let mut idle = pin!(ReadIdle::new(Duration::from_secs(1)));
        for _ in 0..50 {
            assert!(!expires_within(idle.as_mut(), Duration::from_millis(900)).await);
            idle.as_mut().moved();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_first_polled_elsewhere_still_wakes_the_task_that_waits_now() {
        let mut idle = pin!(ReadIdle::new(Duration::from_secs(5)));
        // Polled once with a waker that wakes nobody (another task, say): the timer holds it.
        let mut elsewhere = Context::from_waker(Waker::noop());
        assert!(idle.as_mut().poll_expired(&mut elsewhere).is_pending());
        // This task must still be woken at the deadline, not left waiting for ever.
        let start = Instant::now();
        assert!(expires_within(idle.as_mut(), Duration::from_secs(60)).await);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_too_long_for_the_clock_means_never() {
        let mut idle = pin!(ReadIdle::new(Duration::from_secs(u64::MAX)));
        assert!(!expires_within(idle.as_mut(), Duration::from_secs(86_400)).await);
    }
}
