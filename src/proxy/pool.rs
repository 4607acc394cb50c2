//! Idle keep-alive connections to one upstream server.
//!
//! A pool belongs to its [`Peer`](crate::peer::Peer), so it survives reloads with the peer and
//! goes away with it. Connections are reused newest first (the one least likely to have been
//! closed by the server's own idle timeout), and ones idle past the keep-alive timeout or
//! already closed are dropped on the way.
//!
//! The peer importing this pool is the one sanctioned upward import (a hyper type below
//! `proxy`). It closes no circle because the pool names only the request body
//! ([`body::request`](crate::proxy::body::request)), never the response side that returns
//! connections here: keep it so.

use std::sync::Mutex;
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;

use crate::proxy::body::request::RequestBody;

/// The sending half of one HTTP/1.1 connection to an upstream.
pub type Sender = SendRequest<RequestBody>;

/// Idle connections to one server.
#[derive(Debug)]
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
    limit: usize,
}

#[derive(Debug)]
struct Idle {
    sender: Sender,
    since: Instant,
}

impl Pool {
    /// An empty pool keeping at most `limit` idle connections.
    pub fn new(limit: usize) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            limit,
        }
    }

    /// The newest idle connection still open and idle for less than `max_idle`.
    pub fn take(&self, max_idle: Duration) -> Option<Sender> {
        let mut idle = self.lock();
        while let Some(entry) = idle.pop() {
            if !entry.sender.is_closed() && entry.since.elapsed() < max_idle {
                return Some(entry.sender);
            }
        }
        None
    }

    /// Returns a connection whose last response was read to the end.
    pub fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() >= self.limit {
            // Full: drop the oldest, it is the likeliest to be closed by the server soon.
            idle.remove(0);
        }
        idle.push(Idle {
            sender,
            since: Instant::now(),
        });
    }

    /// How many connections are idle right now.
    pub fn idle_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // Holding the lock never runs user code, so a poisoned lock only means another thread
        // panicked elsewhere; the list itself is always consistent.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
