//! The live state of one upstream server, shared by every snapshot that names it.
//!
//! A [`Peer`] is keyed by identity — group name plus the address *as written* — in the
//! [`PeerRegistry`], which outlives snapshots: a reload that keeps a server keeps its `Arc<Peer>`,
//! so counters, health and idle upstream connections carry over, and a request that began under
//! the old snapshot still holds the peer and finishes undisturbed.
//!
//! The one hyper-flavoured field is the idle connection pool: pooled connections belong to the
//! server they lead to and must follow its lifetime across reloads. Nothing else here knows
//! about HTTP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::proxy::pool::Pool;

/// A server's identity: the group it belongs to and its address as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerKey {
    /// Upstream group name (for `proxy_pass http://host:port` the group is named after the address).
    pub group: Arc<str>,
    /// The `server` address exactly as written in the config.
    pub address: Arc<str>,
}

/// One upstream server: where it is, and what is happening on it right now.
#[derive(Debug)]
pub struct Peer {
    /// Identity.
    pub key: PeerKey,
    /// Resolved socket addresses, tried in order when connecting (a name like `localhost` may
    /// give both 127.0.0.1 and ::1).
    pub addrs: Vec<SocketAddr>,
    /// Counters.
    pub state: PeerState,
    /// Idle keep-alive connections to this server.
    pub pool: Pool,
}

/// Live counters of a peer; plain atomics, updated on the request path without locks.
#[derive(Debug, Default)]
pub struct PeerState {
    active: AtomicU64,
    requests: AtomicU64,
    failures: AtomicU64,
}

impl PeerState {
    /// Requests and tunnels in flight right now.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Requests sent to this server since it was first configured.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Failed attempts (connect errors, resets, timeouts) since it was first configured.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Records one failed attempt.
    pub fn record_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
}

impl Peer {
    /// Starts one request on this peer; it counts as active until the guard is dropped, which
    /// callers arrange to happen when the response body (or the tunnel) ends.
    pub fn begin(self: &Arc<Self>) -> ActiveGuard {
        self.state.requests.fetch_add(1, Ordering::Relaxed);
        self.state.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard { peer: self.clone() }
    }
}

/// Counts one in-flight request or tunnel on a peer for as long as it lives (RAII: nothing to
/// forget to decrement, whichever way the exchange ends).
#[derive(Debug)]
pub struct ActiveGuard {
    peer: Arc<Peer>,
}

impl ActiveGuard {
    /// The peer this guard counts on.
    pub fn peer(&self) -> &Arc<Peer> {
        &self.peer
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.peer.state.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every peer currently alive, by identity. Snapshots hold strong references; the registry
/// holds weak ones, so a server removed from the config disappears once its last request ends.
#[derive(Debug, Default)]
pub struct PeerRegistry {
    peers: Mutex<HashMap<PeerKey, Weak<Peer>>>,
}

impl PeerRegistry {
    /// The live peer for `key`, or a new one built from `addrs`. Only snapshot building calls
    /// this, never the request path, so the lock is uncontended.
    pub fn get_or_insert(
        &self,
        key: PeerKey,
        addrs: Vec<SocketAddr>,
        idle_limit: usize,
    ) -> Arc<Peer> {
        // The lock only guards a map of weak pointers; a panic while holding it cannot leave
        // it inconsistent, so a poisoned lock is still usable.
        let mut peers = self
            .peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        peers.retain(|_, peer| peer.strong_count() > 0);
        if let Some(peer) = peers.get(&key).and_then(Weak::upgrade) {
            return peer;
        }
        let peer = Arc::new(Peer {
            key: key.clone(),
            addrs,
            state: PeerState::default(),
            pool: Pool::new(idle_limit),
        });
        peers.insert(key, Arc::downgrade(&peer));
        peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(group: &str, address: &str) -> PeerKey {
        PeerKey {
            group: group.into(),
            address: address.into(),
        }
    }

    #[test]
    fn the_same_identity_gets_the_same_peer_while_it_lives() {
        let registry = PeerRegistry::default();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let a = registry.get_or_insert(key("g", "127.0.0.1:1"), vec![addr], 8);
        let guard = a.begin();
        let again = registry.get_or_insert(key("g", "127.0.0.1:1"), vec![addr], 8);
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(again.state.active(), 1);
        drop(guard);
        assert_eq!(again.state.active(), 0);
        assert_eq!(again.state.requests(), 1);

        let other_group = registry.get_or_insert(key("h", "127.0.0.1:1"), vec![addr], 8);
        assert!(!Arc::ptr_eq(&a, &other_group));
    }

    #[test]
    fn a_forgotten_peer_starts_afresh() {
        let registry = PeerRegistry::default();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let first = registry.get_or_insert(key("g", "a"), vec![addr], 8);
        drop(first.begin());
        drop(first);
        let second = registry.get_or_insert(key("g", "a"), vec![addr], 8);
        assert_eq!(second.state.requests(), 0);
    }
}
