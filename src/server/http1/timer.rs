//! The timer of an HTTP/1 connection's waits between requests (`keepalive_timeout`, and
//! `client_header_timeout` once a head has started), kept per connection and re-armed lazily
//! so that a busy keep-alive connection does not touch the timer wheel at every request — nor
//! the timer at all while it is registered and has not fired.

use std::pin::Pin;
use std::task::Context;

use tokio::time::{Instant, Sleep};

/// One timer per connection for the waits between requests, re-armed lazily: moving its
/// deadline later — at every keep-alive request — is a store, and the timer is registered again
/// only when it fires before the deadline it stands for, or must fire sooner.
pub struct IdleTimer<'a> {
    /// The one timer, pinned where the connection's task keeps it.
    sleep: Pin<&'a mut Sleep>,
    /// When the wait it stands for ends.
    due: Instant,
    /// The timer holds this task's waker for its current deadline: until it fires, polling it
    /// again (a coop budget check and a waker compare, every time the task waits) would
    /// change nothing.
    waking: bool,
}

impl<'a> IdleTimer<'a> {
    /// The connection's timer, `sleep`, standing for a wait that ends at its deadline. Polled
    /// only from the connection's own task: the waker it keeps is that task's.
    pub fn new(sleep: Pin<&'a mut Sleep>) -> IdleTimer<'a> {
        let due = sleep.deadline();
        IdleTimer {
            sleep,
            due,
            waking: false,
        }
    }

    /// Moves the deadline (later is a store; sooner re-arms the timer).
    pub fn set(&mut self, due: Instant) {
        self.due = due;
        if due < self.sleep.deadline() {
            self.sleep.as_mut().reset(due);
            self.waking = false;
        }
    }

    /// True once the deadline has passed; registers for a wake-up otherwise.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.waking && !self.sleep.is_elapsed() {
            return false;
        }
        while self.sleep.as_mut().poll(cx).is_ready() {
            if Instant::now() >= self.due {
                return true;
            }
            self.sleep.as_mut().reset(self.due);
        }
        self.waking = true;
        false
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::pin::pin;
    use std::task::Poll;
    use std::time::Duration;

    use super::*;

    async fn expiry(timer: &mut IdleTimer<'_>) {
        poll_fn(|cx| {
            if timer.poll_expired(cx) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_moved_later_is_kept_and_one_moved_sooner_is_too() {
        let start = Instant::now();
        let due = start + Duration::from_secs(10);
        let sleep = pin!(tokio::time::sleep_until(due));
        let mut timer = IdleTimer::new(sleep);
        // Later, as every keep-alive request does: the timer stays where it was registered,
        // fires there, finds the deadline not reached, and waits on.
        timer.set(start + Duration::from_secs(25));
        assert_eq!(timer.sleep.deadline(), due);
        expiry(&mut timer).await;
        assert_eq!(start.elapsed(), Duration::from_secs(25));
        // Sooner (a head has started: client_header_timeout): the timer follows.
        let now = Instant::now();
        timer.set(now + Duration::from_secs(60));
        timer.set(now + Duration::from_secs(3));
        expiry(&mut timer).await;
        assert_eq!(now.elapsed(), Duration::from_secs(3));
    }
}
