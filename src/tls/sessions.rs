//! TLS session resumption that survives reloads: the session-ID caches (`ssl_session_cache`)
//! and ticket keys (`ssl_session_tickets`) live in a [`SessionStore`] kept by the runtime and
//! handed to every snapshot build, as `PeerRegistry` keeps peers.
//!
//! Entries are keyed by the server's `session_scope` (its names and listen addresses), so a
//! reload that keeps a server keeps its sessions, and two servers never resume each other's.
//! The store holds weak references: a server that no snapshot has any more lets its cache and
//! keys go with its last config.
//!
//! `ssl_session_timeout` is enforced here, not by rustls (whose cache has no clock and whose
//! tickets live 12 hours): each stored session and each ticket carries the time it was made,
//! and is refused once older than the timeout. Ticket keys are rustls's: rotated every 6 hours,
//! the previous key still accepted, so a timeout above 12 hours is cut to that. Must not import
//! the other `tls` files.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::server::StoresServerSessions;
use rustls::server::{NoServerSessionStorage, ProducesTickets, ServerSessionMemoryCache};

/// The longest a rustls ticket key decrypts (rotated every 6 h, the previous one kept).
const TICKET_KEY_LIFE: Duration = Duration::from_secs(12 * 60 * 60);

/// Session caches and ticket keys by server, outliving snapshots.
#[derive(Debug, Default)]
pub struct SessionStore {
    /// By scope and room (a new `ssl_session_cache` size starts a new cache).
    caches: Mutex<HashMap<(String, usize), Weak<ServerSessionMemoryCache>>>,
    tickets: Mutex<HashMap<String, Weak<dyn ProducesTickets>>>,
}

impl SessionStore {
    /// An empty store.
    pub fn new() -> SessionStore {
        SessionStore::default()
    }

    /// The session-ID storage for a server: its cache with `room` sessions (kept from an
    /// earlier build with the same scope and room), or none.
    pub(super) fn cache(
        &self,
        scope: &str,
        room: Option<usize>,
        timeout: Duration,
    ) -> Arc<dyn StoresServerSessions> {
        let Some(room) = room else {
            return Arc::new(NoServerSessionStorage {});
        };
        // A poisoned lock only means another build panicked; the map is still whole.
        let mut caches = self.caches.lock().unwrap_or_else(|e| e.into_inner());
        caches.retain(|_, cache| cache.strong_count() > 0);
        let key = (scope.to_string(), room);
        let inner = match caches.get(&key).and_then(Weak::upgrade) {
            Some(cache) => cache,
            None => {
                let cache = ServerSessionMemoryCache::new(room);
                caches.insert(key, Arc::downgrade(&cache));
                cache
            }
        };
        Arc::new(TimedCache { inner, timeout })
    }

    /// The ticket producer for a server (keys kept from an earlier build with the same
    /// scope), or None when rustls cannot make one.
    pub(super) fn ticketer(
        &self,
        scope: &str,
        timeout: Duration,
    ) -> Result<Arc<dyn ProducesTickets>, rustls::Error> {
        let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        tickets.retain(|_, keys| keys.strong_count() > 0);
        let inner = match tickets.get(scope).and_then(Weak::upgrade) {
            Some(keys) => keys,
            None => {
                let keys = rustls::crypto::aws_lc_rs::Ticketer::new()?;
                tickets.insert(scope.to_string(), Arc::downgrade(&keys));
                keys
            }
        };
        Ok(Arc::new(TimedTickets { inner, timeout }))
    }
}

/// Seconds since the epoch, as 8 bytes to put before a stored session or ticket.
fn stamp() -> [u8; 8] {
    let now = SystemTime::now().duration_since(UNIX_EPOCH);
    now.unwrap_or_default().as_secs().to_be_bytes()
}

/// The value after the stamp, if the stamp is no older than `timeout`.
fn fresh(stamped: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let (stamp, value) = stamped.split_first_chunk::<8>()?;
    let made = UNIX_EPOCH + Duration::from_secs(u64::from_be_bytes(*stamp));
    let age = SystemTime::now().duration_since(made).unwrap_or_default();
    (age <= timeout).then(|| value.to_vec())
}

/// A shared session-ID cache seen through one config's `ssl_session_timeout`.
#[derive(Debug)]
struct TimedCache {
    inner: Arc<ServerSessionMemoryCache>,
    timeout: Duration,
}

impl StoresServerSessions for TimedCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let stamped = stamp().into_iter().chain(value).collect();
        self.inner.put(key, stamped)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        fresh(&self.inner.get(key)?, self.timeout)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        fresh(&self.inner.take(key)?, self.timeout)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// Shared ticket keys seen through one config's `ssl_session_timeout`.
#[derive(Debug)]
struct TimedTickets {
    inner: Arc<dyn ProducesTickets>,
    timeout: Duration,
}

impl ProducesTickets for TimedTickets {
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }

    /// The lifetime hint sent to clients: the timeout, at most what the keys allow.
    fn lifetime(&self) -> u32 {
        let life = self.timeout.min(TICKET_KEY_LIFE).as_secs();
        u32::try_from(life).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let stamped: Vec<u8> = stamp().iter().chain(plain).copied().collect();
        self.inner.encrypt(&stamped)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        fresh(&self.inner.decrypt(cipher)?, self.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_older_than_the_timeout_is_refused() {
        let made = SystemTime::now() - Duration::from_secs(100);
        let secs = made
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let stamped: Vec<u8> = secs.to_be_bytes().into_iter().chain(*b"state").collect();
        assert_eq!(fresh(&stamped, Duration::from_secs(60)), None);
        assert_eq!(
            fresh(&stamped, Duration::from_secs(200)),
            Some(b"state".to_vec())
        );
        assert_eq!(fresh(b"short", Duration::from_secs(200)), None);
    }
}
