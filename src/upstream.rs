//! An upstream group at run time: its primary and backup peers and how it balances them.
//!
//! `pick` serves primaries while any is usable and falls back to backups only when none is,
//! skipping `down` servers and the ones this request already tried.

use std::sync::Arc;
use std::time::Duration;

use crate::balance::Balancer;
use crate::peer::Peer;

/// A group of upstream servers as one snapshot sees it.
#[derive(Debug)]
pub struct Group {
    /// The `upstream` name (or the address for `proxy_pass http://host:port`).
    pub name: Arc<str>,
    /// How long an idle upstream connection may be reused (`keepalive_timeout` in `upstream`).
    pub keepalive_timeout: Duration,
    primary: Tier,
    backup: Tier,
}

/// The peers of one tier and the balancer that takes turns over them.
#[derive(Debug)]
struct Tier {
    members: Vec<Member>,
    balancer: Balancer,
}

/// A peer as configured in this snapshot (flags like `down` belong to the config, not the peer).
#[derive(Debug)]
struct Member {
    peer: Arc<Peer>,
    down: bool,
}

/// The peers one request has already tried, so a retry moves on to another server.
/// Empty until the first retry, so the common single attempt allocates nothing.
#[derive(Debug, Default)]
pub struct Tried {
    peers: Vec<Arc<Peer>>,
}

impl Tried {
    /// Records that `peer` was tried.
    pub fn add(&mut self, peer: &Arc<Peer>) {
        self.peers.push(peer.clone());
    }

    fn contains(&self, peer: &Arc<Peer>) -> bool {
        self.peers.iter().any(|p| Arc::ptr_eq(p, peer))
    }

    /// How many attempts were made.
    pub fn count(&self) -> usize {
        self.peers.len()
    }
}

/// A group member before it goes into a tier: the peer and its config flags.
#[derive(Debug)]
pub struct MemberSpec {
    /// The live peer.
    pub peer: Arc<Peer>,
    /// `backup`.
    pub backup: bool,
    /// `down`.
    pub down: bool,
}

impl Group {
    /// Builds a round-robin group from its members in config order.
    pub fn new(name: Arc<str>, members: Vec<MemberSpec>, keepalive_timeout: Duration) -> Group {
        let (backup, primary): (Vec<_>, Vec<_>) = members.into_iter().partition(|m| m.backup);
        let tier = |members: Vec<MemberSpec>| Tier {
            members: members
                .into_iter()
                .map(|m| Member {
                    peer: m.peer,
                    down: m.down,
                })
                .collect(),
            balancer: Balancer::round_robin(),
        };
        Group {
            name,
            keepalive_timeout,
            primary: tier(primary),
            backup: tier(backup),
        }
    }

    /// The next peer for a request that has already tried `tried`: a primary if any is usable,
    /// else a backup; None when every server is down or tried.
    pub fn pick(&self, tried: &Tried) -> Option<&Arc<Peer>> {
        self.primary.pick(tried).or_else(|| self.backup.pick(tried))
    }

    /// How many servers a request may try in all.
    pub fn len(&self) -> usize {
        self.primary.members.len() + self.backup.members.len()
    }

    /// True when the group has no servers (never for a validated config).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every peer of the group, primaries first.
    pub fn peers(&self) -> impl Iterator<Item = &Arc<Peer>> {
        self.primary
            .members
            .iter()
            .chain(&self.backup.members)
            .map(|m| &m.peer)
    }
}

impl Tier {
    fn pick(&self, tried: &Tried) -> Option<&Arc<Peer>> {
        let index = self.balancer.pick(self.members.len(), |i| {
            let member = &self.members[i];
            !member.down && !tried.contains(&member.peer)
        })?;
        Some(&self.members[index].peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::{PeerKey, PeerRegistry};

    fn group(specs: &[(&str, bool, bool)]) -> Group {
        let registry = PeerRegistry::default();
        let members = specs
            .iter()
            .map(|&(address, backup, down)| MemberSpec {
                peer: registry.get_or_insert(
                    PeerKey {
                        group: "g".into(),
                        address: address.into(),
                    },
                    vec!["127.0.0.1:1".parse().unwrap()],
                    4,
                ),
                backup,
                down,
            })
            .collect();
        Group::new("g".into(), members, Duration::from_secs(60))
    }

    fn address(peer: Option<&Arc<Peer>>) -> Option<&str> {
        peer.map(|p| &*p.key.address)
    }

    #[test]
    fn primaries_first_then_backups_then_nothing() {
        let group = group(&[("a", false, false), ("b", false, true), ("c", true, false)]);
        let mut tried = Tried::default();
        assert_eq!(address(group.pick(&tried)), Some("a"));
        assert_eq!(address(group.pick(&tried)), Some("a"), "down b is skipped");
        tried.add(group.pick(&tried).unwrap());
        assert_eq!(
            address(group.pick(&tried)),
            Some("c"),
            "backup once a is tried"
        );
        tried.add(group.pick(&tried).unwrap());
        assert_eq!(address(group.pick(&tried)), None);
        assert_eq!(group.len(), 3);
    }
}
