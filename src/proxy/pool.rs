//! Idle keep-alive connections to one upstream server.
//!
//! A pool belongs to its [`Peer`](crate::peer::Peer), so it survives reloads with the peer and
//! goes away with it. Connections are reused newest first (the one least likely to have been
//! closed by the server's own idle timeout), and ones idle past the keep-alive timeout or
//! already closed are dropped on the way.
//!
//! A connection is reused only by a request that would have opened the same one: each entry
//! keeps the [`TlsTarget`] it was secured with (None: plain), so a server reached by both
//! `http://` and `https://` locations, or with different `proxy_ssl_*` settings, never hands a
//! plain connection to an https request or one verified for another name.
//!
//! The peer importing this pool is the one sanctioned upward import (a proxy type below
//! `proxy`). It closes no circle because the pool names only the connection
//! ([`origin`](crate::proxy::origin)), never the response side that returns connections here:
//! keep it so.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sessions::clock;

pub use crate::proxy::origin::Connection;
use crate::tls::upstream::TlsTarget;

/// Idle connections to one server.
#[derive(Debug)]
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
    limit: usize,
}

/// A connection on its way back to the pool, and what it was secured with.
#[derive(Debug)]
pub struct Pooled {
    /// The connection.
    pub connection: Box<Connection>,
    /// Its TLS (None: plain).
    pub tls: Option<Arc<TlsTarget>>,
}

#[derive(Debug)]
struct Idle {
    connection: Pooled,
    /// When it went idle, on the coarse clock: an idle connection's age needs no more than
    /// its tick (`keepalive_timeout` is seconds), and the real clock cost two reads a request.
    since_ms: u64,
}

impl Pool {
    /// An empty pool keeping at most `limit` idle connections.
    pub fn new(limit: usize) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            limit,
        }
    }

    /// The newest idle connection secured as `tls` says (None: plain), still open and idle for
    /// less than `max_idle`. Dead entries met on the way are dropped.
    pub fn take(&self, max_idle: Duration, tls: Option<&TlsTarget>) -> Option<Box<Connection>> {
        let mut idle = self.lock();
        // Newest first; with one kind of connection per server (the usual case) the newest
        // matches and the scan is one step.
        let mut at = idle.len();
        while at > 0 {
            at -= 1;
            let entry = &mut idle[at];
            let idle_ms = clock::now_ms().saturating_sub(entry.since_ms);
            if idle_ms >= max_idle.as_millis() as u64 || !entry.connection.connection.is_usable() {
                idle.remove(at);
                continue;
            }
            let fits = match (entry.connection.tls.as_deref(), tls) {
                (None, None) => true,
                (Some(pooled), Some(wanted)) => pooled.same(wanted),
                _ => false,
            };
            if fits {
                return Some(idle.remove(at).connection.connection);
            }
        }
        None
    }

    /// Returns a connection whose last response was read to the end.
    pub fn put(&self, connection: Pooled) {
        let mut idle = self.lock();
        if idle.len() >= self.limit {
            // Full: drop the oldest, it is the likeliest to be closed by the server soon.
            idle.remove(0);
        }
        idle.push(Idle {
            connection,
            since_ms: clock::now_ms(),
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
