//! Counting things in flight (client connections, tunnels) so a graceful stop can wait for
//! them to end: an RAII token per thing, and a wait that wakes when the count reaches zero.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// A count of live tokens.
#[derive(Debug, Default)]
pub struct Inflight {
    count: AtomicUsize,
    idle: Notify,
}

/// One counted thing; the count drops when this does.
#[derive(Debug)]
pub struct Token {
    owner: Arc<Inflight>,
}

impl Inflight {
    /// Counts one more thing until the returned token is dropped.
    pub fn enter(self: &Arc<Self>) -> Token {
        self.count.fetch_add(1, Ordering::SeqCst);
        Token {
            owner: self.clone(),
        }
    }

    /// How many are in flight.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Completes once nothing is in flight.
    pub async fn idle(&self) {
        loop {
            // Register interest before checking, so a drop between the two is not missed.
            let notified = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if self.owner.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.owner.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_the_last_token() {
        let inflight = Arc::new(Inflight::default());
        inflight.idle().await;
        let a = inflight.enter();
        let b = inflight.enter();
        let waiter = tokio::spawn({
            let inflight = inflight.clone();
            async move { inflight.idle().await }
        });
        drop(a);
        assert_eq!(inflight.count(), 1);
        assert!(!waiter.is_finished());
        drop(b);
        waiter.await.unwrap();
        assert_eq!(inflight.count(), 0);
    }
}
