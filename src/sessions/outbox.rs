//! The queue between a zone's local `learn`s and its sync worker: bounded, never blocking the
//! request path, and waking the worker through a callback so this module stays std-only (the
//! worker passes a closure over its own `tokio::sync::Notify`).
//!
//! When the worker falls behind (the store is down or slow), the oldest sessions are dropped
//! and counted: a session the store never heard of is still routed by the instance that
//! learned it, and the newest sessions matter most to the others. Std only.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// One learned session: its key and the sticky value it is pinned to.
pub type Learned = (Vec<u8>, String);

/// A bounded queue of sessions learned here, for the sync worker to publish.
pub struct Outbox {
    queue: Mutex<VecDeque<Learned>>,
    capacity: usize,
    /// Sessions dropped because the queue was full.
    dropped: AtomicU64,
    /// Called after every push: the worker's wake-up.
    wake: Box<dyn Fn() + Send + Sync>,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("capacity", &self.capacity)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// An empty outbox holding at most `capacity` sessions (at least one); `wake` is called
    /// after each push and must not block (e.g. `Notify::notify_one`).
    pub fn new(capacity: usize, wake: impl Fn() + Send + Sync + 'static) -> Outbox {
        Outbox {
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
            wake: Box::new(wake),
        }
    }

    /// Queues a session; when full, the oldest queued one is dropped and counted.
    pub fn push(&self, key: &[u8], value: &str) {
        {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.len() >= self.capacity {
                queue.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            queue.push_back((key.to_vec(), value.to_string()));
        }
        (self.wake)();
    }

    /// Everything queued, oldest first, leaving the outbox empty.
    pub fn take(&self) -> Vec<Learned> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.drain(..).collect()
    }

    /// How many sessions are queued.
    pub fn len(&self) -> usize {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sessions dropped because the worker fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn a_full_outbox_drops_the_oldest_and_counts_it_and_every_push_wakes() {
        let wakes = Arc::new(AtomicUsize::new(0));
        let counter = wakes.clone();
        let outbox = Outbox::new(2, move || {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        outbox.push(b"a", "1");
        outbox.push(b"b", "2");
        outbox.push(b"c", "3");
        assert_eq!(wakes.load(Ordering::Relaxed), 3);
        assert_eq!(outbox.dropped(), 1);
        let taken = outbox.take();
        assert_eq!(
            taken,
            vec![
                (b"b".to_vec(), "2".to_string()),
                (b"c".to_vec(), "3".to_string())
            ]
        );
        assert!(outbox.is_empty());
    }
}
