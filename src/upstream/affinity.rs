//! What one request brings to the choice of a server: the key a hash method places it by
//! (`ip_hash`: the client's address; `hash KEY`: the key rendered against the request) and the
//! member its sticky cookie, `sticky route` or learned session names.
//!
//! Read once, before the request moves on upstream (its headers go with it), and kept for every
//! attempt: a retry places the same key and honours the same pin. The pin is kept as a member
//! index, so nothing of the request is copied. Imports the request's variables from `vars`,
//! nothing of hyper.

use std::net::IpAddr;

use super::Group;
use super::learn::Presented;
use crate::balance::{Key, Method};
use crate::vars::{RequestInfo, Vars};

/// A request's ties to the servers of one group (see the module doc). Only meaningful to the
/// group that read it.
#[derive(Debug, Default)]
pub struct Affinity {
    pub(super) key: HashKey,
    /// The member the cookie or route names, usable or not; None without one, or for a value
    /// that names no member (forged, stale, from a removed server).
    pub(super) pinned: Option<usize>,
    /// The cookie or route value the request brought, hashed ([`Key::stale`]), whether or not
    /// it names a member: when it is not honoured, the client is re-pinned (not pinned for the
    /// first time), by this value, so all of its concurrent requests land together.
    pub(super) presented: Option<u64>,
    /// `sticky learn`: the session key if the zone knows it, and whether the answer may be a
    /// handshake to learn from.
    pub(super) learned: Presented,
}

/// The hash key, owned so it outlives the request it was read from.
#[derive(Debug, Default)]
pub(super) enum HashKey {
    /// No hash method (or no key): hash methods fall back to round robin.
    #[default]
    None,
    /// `ip_hash`: the client's address.
    Client(IpAddr),
    /// `hash KEY`: the key as rendered.
    Rendered(String),
}

impl Affinity {
    /// The key as the balancer takes it. Without a hash key, a sticky value that was not
    /// honoured places the request (the group only asks the balancer once the pin failed).
    pub(super) fn key(&self) -> Key<'_> {
        match &self.key {
            HashKey::None => self.presented.map_or(Key::None, Key::Stale),
            HashKey::Client(ip) => Key::Ip(*ip),
            HashKey::Rendered(text) => Key::Bytes(text.as_bytes()),
        }
    }
}

impl Group {
    /// Reads `request`'s ties to this group's servers: renders the hash key (`vars` for its
    /// `map`s) and finds the member its sticky cookie or route names.
    pub fn affinity(&self, request: &RequestInfo<'_>, vars: &Vars) -> Affinity {
        let key = match (self.method, &self.hash_key) {
            (Method::IpHash, _) => HashKey::Client(request.client.ip()),
            (Method::Hash { .. }, Some(template)) => {
                let mut text = String::new();
                template.render(vars, request, &mut text);
                HashKey::Rendered(text)
            }
            _ => HashKey::None,
        };
        let (pinned, presented, learned) = match &self.sticky {
            Some(sticky) => sticky.pinned(request, vars),
            None => (None, None, Presented::default()),
        };
        Affinity {
            key,
            pinned,
            presented,
            learned,
        }
    }
}
