//! `proxy_pass` with variables that renders a host which is no upstream
//! (`proxy_pass http://$backend:8080;`): as nginx, the name is looked up per request through
//! the http-level `resolver`, and the answer is kept for `valid=` or its TTL. Each name gets a
//! one-server group of its own (all its addresses tried in order, as for a name written in
//! `proxy_pass`), kept with its idle connections while the answer holds. Without a resolver
//! the request fails as nginx's does (`no resolver defined to resolve`): 502.
//!
//! The table is bounded: names come from requests, so a flood of distinct ones must not grow
//! it without end (past [`MAX_NAMES`] the expired go first, then everything).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{Clients, Followed, LookupError};
use crate::balance::Method;
use crate::config::Resolver;
use crate::peer::{FailPolicy, PeerKey, PeerRegistry};
use crate::upstream::{Group, GroupSpec, Member, MemberSpec};

/// Most names kept at once.
const MAX_NAMES: usize = 1024;
/// Idle connections kept per looked-up host.
const IDLE_PER_HOST: usize = 16;
/// How long an idle upstream connection to such a host is kept.
const KEEPALIVE: Duration = Duration::from_secs(60);

/// Why a rendered host could not be proxied to.
#[derive(Debug)]
pub enum DynamicError {
    /// No http-level `resolver`.
    NoResolver,
    /// Not `host[:port]`.
    BadName,
    /// The lookup failed or found nothing.
    NotFound(Option<LookupError>),
}

impl std::fmt::Display for DynamicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DynamicError::NoResolver => f.write_str("no resolver defined to resolve it"),
            DynamicError::BadName => f.write_str("not a host name"),
            DynamicError::NotFound(None) => f.write_str("could not be resolved (no address)"),
            DynamicError::NotFound(Some(why)) => write!(f, "could not be resolved ({why})"),
        }
    }
}

/// The groups of hosts looked up so far, for one snapshot.
pub struct DynamicHosts {
    resolver: Option<Resolver>,
    known: Mutex<HashMap<String, (Arc<Group>, Instant)>>,
    clients: tokio::sync::Mutex<Clients>,
    registry: PeerRegistry,
}

impl DynamicHosts {
    /// Hosts looked up through `resolver` (None: every lookup fails as nginx's does).
    pub fn new(resolver: Option<Resolver>) -> DynamicHosts {
        DynamicHosts {
            resolver,
            known: Mutex::new(HashMap::new()),
            clients: tokio::sync::Mutex::new(Clients::default()),
            registry: PeerRegistry::default(),
        }
    }

    /// The group for `name` (`host` or `host:port`, the port `default_port` when not
    /// written), looked up now unless a valid answer is kept.
    pub async fn group(&self, name: &str, default_port: u16) -> Result<Arc<Group>, DynamicError> {
        let Some(resolver) = &self.resolver else {
            return Err(DynamicError::NoResolver);
        };
        if let Some((group, until)) = self.lock().get(name)
            && *until > Instant::now()
        {
            return Ok(group.clone());
        }
        let (host, port) = split(name, default_port).ok_or(DynamicError::BadName)?;
        let followed = Followed {
            host: host.to_string(),
            port,
            resolver: resolver.clone(),
        };
        let looked_up = self.clients.lock().await.look_up(&followed).await;
        let (addrs, ttl) = looked_up.map_err(|why| DynamicError::NotFound(Some(why)))?;
        if addrs.is_empty() {
            return Err(DynamicError::NotFound(None));
        }
        let group = Arc::new(self.one_server(name, addrs));
        let until = Instant::now() + super::wait(&followed, Some(ttl));
        let mut known = self.lock();
        if known.len() >= MAX_NAMES {
            let now = Instant::now();
            known.retain(|_, (_, until)| *until > now);
            if known.len() >= MAX_NAMES {
                known.clear();
            }
        }
        known.insert(name.to_string(), (group.clone(), until));
        Ok(group)
    }

    fn one_server(&self, name: &str, addrs: Vec<SocketAddr>) -> Group {
        let name: Arc<str> = name.into();
        let peer = self.registry.get_or_insert(
            PeerKey::new(name.clone(), name.clone()),
            addrs,
            IDLE_PER_HOST,
        );
        let spec = MemberSpec {
            weight: 1,
            // The only server of its group: never taken out, as nginx's `single`.
            fail_policy: FailPolicy {
                max_fails: 0,
                fail_timeout_ms: 10_000,
            },
            max_conns: 0,
            backup: false,
            down: false,
            drain: false,
            drain_timeout: None,
            slow_start: Duration::ZERO,
            route: None,
        };
        let group = GroupSpec {
            method: Method::RoundRobin,
            hash_key: None,
            sticky: None,
            keepalive_timeout: KEEPALIVE,
            health_check: None,
        };
        Group::new(name, vec![Member { peer, spec }], group)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<Group>, Instant)>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `host[:port]` (IPv6 in brackets) into its parts.
fn split(name: &str, default_port: u16) -> Option<(&str, u16)> {
    if let Some(rest) = name.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, port.parse().ok()?)),
            None if after.is_empty() => Some((host, default_port)),
            None => None,
        };
    }
    match name.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => Some((host, port.parse().ok()?)),
        Some(_) => None,
        None if !name.is_empty() => Some((name, default_port)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_as_urls_write_them() {
        assert_eq!(split("app", 80), Some(("app", 80)));
        assert_eq!(split("app:8080", 80), Some(("app", 8080)));
        assert_eq!(split("[::1]:81", 80), Some(("::1", 81)));
        assert_eq!(split("[::1]", 443), Some(("::1", 443)));
        assert_eq!(split(":80", 80), None);
        assert_eq!(split("app:x", 80), None);
        assert_eq!(split("", 80), None);
    }
}
