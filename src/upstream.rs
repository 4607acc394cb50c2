//! An upstream group at run time: primary and backup tiers over live peers, the balancing
//! method, and stickiness.
//!
//! Choosing a server for a request, in order:
//! 1. a sticky cookie (or `sticky route`) naming a usable server — primary, backup or draining —
//!    wins: sessions stay where they are;
//! 2. else the method picks among usable primaries;
//! 3. else among usable backups (Azure SignalR's failover: backups take new sessions only while
//!    every primary is unusable; when one recovers, new sessions return to it).
//!
//! "Usable" = not `down`, not tried by this request, passive and active health agree, below
//! `max_conns`; the balancer also skips `drain` servers and admits servers in `slow_start`
//! with a probability that grows over the ramp.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::balance::sticky::{StickyKey, StickyTable};
use crate::balance::{Balancer, Key, Method, Node};
use crate::peer::{CheckState, FailPolicy, Peer};

/// A group of upstream servers as one snapshot sees it.
#[derive(Debug)]
pub struct Group {
    /// The `upstream` name (or the address for `proxy_pass http://host:port`).
    pub name: Arc<str>,
    /// How long an idle upstream connection may be reused (`keepalive_timeout` in `upstream`).
    pub keepalive_timeout: Duration,
    /// The balancing method.
    pub method: Method,
    /// Primaries first, then backups: a member's index is its place in this list.
    members: Vec<Member>,
    /// How many of `members` are primaries.
    primaries: usize,
    primary: Balancer,
    backup: Balancer,
    sticky: Option<Pinning>,
}

/// How a pinned value maps to a member.
#[derive(Debug)]
enum Pinning {
    /// `sticky cookie`: keyed hashes of the servers' identities.
    Cookie(StickyTable),
    /// `sticky route`: the `route=` values as written.
    Route(HashMap<String, usize>),
}

/// A server as configured in this snapshot, over its live peer.
#[derive(Debug)]
pub struct Member {
    /// The live peer (shared across snapshots).
    pub peer: Arc<Peer>,
    /// Its parameters in this config.
    pub spec: MemberSpec,
}

/// A server's `server` line parameters, as the group needs them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSpec {
    /// `weight=`.
    pub weight: u32,
    /// `max_fails=` / `fail_timeout=`.
    pub fail_policy: FailPolicy,
    /// `max_conns=` (0: unlimited).
    pub max_conns: u32,
    /// `backup`.
    pub backup: bool,
    /// `down`: keeps its place (on a hash ring) but takes nothing.
    pub down: bool,
    /// `drain`: takes only requests pinned to it.
    pub drain: bool,
    /// `slow_start=` (zero: off).
    pub slow_start: Duration,
    /// `route=`: the sticky identity (else the address as written).
    pub route: Option<String>,
}

/// How the group is keyed for sticky sessions.
#[derive(Clone, Debug)]
pub enum StickyMode {
    /// Cookie values are keyed by this secret (`sticky_secret`), else by the group name.
    Cookie {
        /// `sticky_secret`.
        secret: Option<String>,
    },
    /// `sticky route`: values are the servers' `route=` as written.
    Route,
}

/// What a request brings to the choice.
#[derive(Clone, Copy, Debug)]
pub struct PickCtx<'a> {
    /// The hash key (`ip_hash`: the client address; `hash`: the rendered key).
    pub key: Key<'a>,
    /// The sticky cookie's value, or the first non-empty `sticky route` variable.
    pub pinned: Option<&'a str>,
}

/// The server chosen for one attempt.
#[derive(Clone, Copy, Debug)]
pub struct Pick<'g> {
    /// The member's index in the group (for its sticky value).
    pub member: usize,
    /// Its live peer.
    pub peer: &'g Arc<Peer>,
    /// True when the sticky cookie or route chose it.
    pub by_sticky: bool,
}

/// Why no server could be chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoPeer {
    /// Every server is down, failed or already tried (502).
    AllDown,
    /// Some server is healthy but every healthy one is at `max_conns` (503).
    AllBusy,
}

/// The servers one request has already tried, so a retry moves on to another server.
/// Empty until the first retry, so the common single attempt allocates nothing.
#[derive(Debug, Default)]
pub struct Tried {
    members: Vec<usize>,
}

impl Tried {
    /// Records that member `index` was tried.
    pub fn add(&mut self, index: usize) {
        self.members.push(index);
    }

    fn contains(&self, index: usize) -> bool {
        self.members.contains(&index)
    }

    /// How many attempts were made.
    pub fn count(&self) -> usize {
        self.members.len()
    }
}

impl Group {
    /// Builds a group from its members in config order.
    pub fn new(
        name: Arc<str>,
        method: Method,
        members: Vec<Member>,
        sticky: Option<StickyMode>,
        keepalive_timeout: Duration,
    ) -> Group {
        let (backups, primaries): (Vec<_>, Vec<_>) =
            members.into_iter().partition(|m| m.spec.backup);
        let balancer = |tier: &[Member]| {
            let nodes: Vec<Node> = tier
                .iter()
                .map(|m| Node {
                    name: &m.peer.key.address,
                    weight: m.spec.weight.max(1),
                })
                .collect();
            Balancer::new(method, &nodes)
        };
        let primary = balancer(&primaries);
        let backup = balancer(&backups);
        let primaries_len = primaries.len();
        let members: Vec<Member> = primaries.into_iter().chain(backups).collect();
        let sticky = sticky.map(|mode| match mode {
            StickyMode::Cookie { secret } => {
                let key = match secret {
                    Some(secret) => StickyKey::from_secret(&secret),
                    None => StickyKey::for_group(&name),
                };
                let identities: Vec<&str> = members
                    .iter()
                    .map(|m| m.spec.route.as_deref().unwrap_or(&m.peer.key.address))
                    .collect();
                Pinning::Cookie(StickyTable::new(&key, &identities))
            }
            StickyMode::Route => Pinning::Route(
                members
                    .iter()
                    .enumerate()
                    .filter_map(|(i, m)| Some((m.spec.route.clone()?, i)))
                    .collect(),
            ),
        });
        Group {
            name,
            keepalive_timeout,
            method,
            members,
            primaries: primaries_len,
            primary,
            backup,
            sticky,
        }
    }

    /// The server for the next attempt of a request that has already tried `tried`.
    pub fn pick(&self, ctx: &PickCtx<'_>, tried: &Tried) -> Result<Pick<'_>, NoPeer> {
        let mut busy = false;
        if let Some(index) = self.pinned(ctx, tried, &mut busy) {
            return Ok(self.chosen(index, true));
        }
        let (primaries, backups) = self.members.split_at(self.primaries);
        let mut found = None;
        for (tier, offset, balancer) in [
            (primaries, 0, &self.primary),
            (backups, self.primaries, &self.backup),
        ] {
            let busy_cell = Cell::new(false);
            found = balancer
                .pick(
                    ctx.key,
                    |i| {
                        let member = &tier[i];
                        !member.spec.drain
                            && self.usable(offset + i, member, tried, &busy_cell)
                            && member.admitted()
                    },
                    |i| tier[i].peer.state.active(),
                )
                .map(|i| offset + i);
            busy |= busy_cell.get();
            if found.is_some() {
                break;
            }
        }
        match found {
            Some(index) => Ok(self.chosen(index, false)),
            None if busy => Err(NoPeer::AllBusy),
            None => Err(NoPeer::AllDown),
        }
    }

    /// The member a sticky cookie or route names, if it is usable.
    fn pinned(&self, ctx: &PickCtx<'_>, tried: &Tried, busy: &mut bool) -> Option<usize> {
        let pinned = ctx.pinned?;
        let index = match self.sticky.as_ref()? {
            Pinning::Cookie(table) => table.find(pinned)?,
            Pinning::Route(routes) => *routes.get(pinned)?,
        };
        let busy_cell = Cell::new(false);
        let usable = self.usable(index, &self.members[index], tried, &busy_cell);
        *busy |= busy_cell.get();
        usable.then_some(index)
    }

    fn chosen(&self, index: usize, by_sticky: bool) -> Pick<'_> {
        let peer = &self.members[index].peer;
        peer.state.record_pick(by_sticky);
        Pick {
            member: index,
            peer,
            by_sticky,
        }
    }

    /// Usable for any request: configured up, not tried, healthy, below `max_conns` (noting in
    /// `busy` when that last one alone said no).
    fn usable(&self, index: usize, member: &Member, tried: &Tried, busy: &Cell<bool>) -> bool {
        if member.spec.down || tried.contains(index) {
            return false;
        }
        let state = &member.peer.state;
        if matches!(state.check_state(), CheckState::Down | CheckState::Pending)
            || !state.passive_ok(member.spec.fail_policy)
        {
            return false;
        }
        if member.spec.max_conns != 0 && state.active() >= u64::from(member.spec.max_conns) {
            busy.set(true);
            return false;
        }
        true
    }

    /// The cookie value of member `index`, if the group has `sticky cookie`.
    pub fn cookie_value(&self, index: usize) -> Option<&str> {
        match self.sticky.as_ref()? {
            Pinning::Cookie(table) => Some(table.value(index)),
            Pinning::Route(_) => None,
        }
    }

    /// How many servers a request may try in all.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when the group has no servers (never for a validated config).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member, primaries first.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member at `index`.
    pub fn member(&self, index: usize) -> &Member {
        &self.members[index]
    }
}

/// A server's state as the status page shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerState {
    /// Taking new sessions.
    Up,
    /// `down` in the config, failed passive checks or failed active checks.
    Down,
    /// `drain`: only sessions pinned to it.
    Draining,
    /// Active checks are configured and none has passed yet.
    Checking,
}

impl Member {
    /// The state right now; `checked` says whether the group has active health checks.
    pub fn state(&self, checked: bool) -> ServerState {
        let state = &self.peer.state;
        if self.spec.down
            || state.check_state() == CheckState::Down
            || state.is_failed(self.spec.fail_policy)
        {
            ServerState::Down
        } else if state.check_state() == CheckState::Pending
            || (checked && state.check_state() == CheckState::Unknown)
        {
            ServerState::Checking
        } else if self.spec.drain {
            ServerState::Draining
        } else {
            ServerState::Up
        }
    }

    /// `slow_start`: a server back from being down is admitted with a probability rising
    /// linearly from 0 to 1 over the ramp, so it is not flooded at once.
    fn admitted(&self) -> bool {
        if self.spec.slow_start.is_zero() {
            return true;
        }
        let ramp = self.spec.slow_start.as_millis() as u64;
        match self.peer.state.recovered_for_ms() {
            Some(elapsed) if elapsed < ramp => fastrand::u64(0..ramp) < elapsed.max(1),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::{PeerKey, PeerRegistry};

    struct Server {
        address: &'static str,
        backup: bool,
        down: bool,
        drain: bool,
        max_conns: u32,
    }

    fn server(address: &'static str) -> Server {
        Server {
            address,
            backup: false,
            down: false,
            drain: false,
            max_conns: 0,
        }
    }

    fn group(servers: Vec<Server>, sticky: Option<StickyMode>) -> Group {
        let registry = PeerRegistry::default();
        let members = servers
            .into_iter()
            .map(|s| Member {
                peer: registry.get_or_insert(
                    PeerKey {
                        group: "g".into(),
                        address: s.address.into(),
                    },
                    vec!["127.0.0.1:1".parse().unwrap()],
                    4,
                ),
                spec: MemberSpec {
                    weight: 1,
                    fail_policy: FailPolicy {
                        max_fails: 1,
                        fail_timeout_ms: 60_000,
                    },
                    max_conns: s.max_conns,
                    backup: s.backup,
                    down: s.down,
                    drain: s.drain,
                    slow_start: Duration::ZERO,
                    route: Some(format!("r-{}", s.address)),
                },
            })
            .collect();
        Group::new(
            "g".into(),
            Method::RoundRobin,
            members,
            sticky,
            Duration::from_secs(60),
        )
    }

    const NO_KEY: PickCtx<'static> = PickCtx {
        key: Key::None,
        pinned: None,
    };

    fn address(g: &Group, ctx: &PickCtx<'_>, tried: &Tried) -> Result<String, NoPeer> {
        g.pick(ctx, tried).map(|p| p.peer.key.address.to_string())
    }

    #[test]
    fn primaries_take_new_sessions_then_backups_then_nothing() {
        let g = group(
            vec![
                server("a"),
                Server {
                    down: true,
                    ..server("b")
                },
                Server {
                    backup: true,
                    ..server("c")
                },
            ],
            None,
        );
        let mut tried = Tried::default();
        for _ in 0..4 {
            assert_eq!(
                address(&g, &NO_KEY, &tried).unwrap(),
                "a",
                "down b is skipped"
            );
        }
        tried.add(0);
        assert_eq!(
            address(&g, &NO_KEY, &tried).unwrap(),
            "c",
            "the backup once a is out"
        );
        tried.add(2);
        assert_eq!(address(&g, &NO_KEY, &tried), Err(NoPeer::AllDown));
    }

    #[test]
    fn a_failed_primary_sends_new_sessions_to_backups_until_it_recovers() {
        let g = group(
            vec![
                server("a"),
                Server {
                    backup: true,
                    ..server("b")
                },
            ],
            None,
        );
        let tried = Tried::default();
        g.member(0)
            .peer
            .state
            .record_failure(g.member(0).spec.fail_policy);
        assert_eq!(address(&g, &NO_KEY, &tried).unwrap(), "b");
        g.member(0).peer.state.record_success();
        assert_eq!(address(&g, &NO_KEY, &tried).unwrap(), "a");
        g.member(0).peer.state.set_check_state(CheckState::Down);
        assert_eq!(
            address(&g, &NO_KEY, &tried).unwrap(),
            "b",
            "active checks count too"
        );
    }

    #[test]
    fn a_cookie_pins_to_any_usable_server_and_garbage_is_rebalanced() {
        let g = group(
            vec![
                server("a"),
                Server {
                    drain: true,
                    ..server("b")
                },
                Server {
                    backup: true,
                    ..server("c")
                },
            ],
            Some(StickyMode::Cookie { secret: None }),
        );
        let tried = Tried::default();
        for index in [1, 2] {
            let value = g.cookie_value(index).unwrap().to_string();
            let ctx = PickCtx {
                key: Key::None,
                pinned: Some(&value),
            };
            let pick = g.pick(&ctx, &tried).unwrap();
            assert_eq!(
                (pick.member, pick.by_sticky),
                (index, true),
                "draining and backup servers keep their sessions"
            );
        }
        for garbage in ["", "zz", "0123456789abcdef0", "a"] {
            let ctx = PickCtx {
                key: Key::None,
                pinned: Some(garbage),
            };
            let pick = g.pick(&ctx, &tried).unwrap();
            assert_eq!(
                (pick.member, pick.by_sticky),
                (0, false),
                "{garbage:?} is rebalanced to a primary, never to a draining server"
            );
        }
        assert_eq!(g.member(0).peer.state.picked_by_balancer(), 4);
        assert_eq!(g.member(2).peer.state.picked_by_sticky(), 1);
    }

    #[test]
    fn a_recovered_server_in_slow_start_is_ramped_up_not_flooded() {
        let mut g = group(vec![server("a"), server("b")], None);
        g.members[1].spec.slow_start = Duration::from_secs(3600);
        let b = &g.member(1).peer.state;
        let tried = Tried::default();
        // Never down: slow start does not apply, b takes its turn.
        let to_b = (0..100)
            .filter(|_| address(&g, &NO_KEY, &tried).unwrap() == "b")
            .count();
        assert_eq!(to_b, 50);
        // Back from a failure a moment ago: at the very start of an hour's ramp.
        b.record_failure(g.member(1).spec.fail_policy);
        b.record_success();
        let to_b = (0..1000)
            .filter(|_| address(&g, &NO_KEY, &tried).unwrap() == "b")
            .count();
        assert!(
            to_b < 20,
            "{to_b} of 1000 reached a server 0 % into its ramp"
        );
    }

    #[test]
    fn states_for_the_status_page() {
        let g = group(
            vec![
                server("a"),
                Server {
                    down: true,
                    ..server("b")
                },
                Server {
                    drain: true,
                    ..server("c")
                },
            ],
            None,
        );
        let states: Vec<_> = g.members().iter().map(|m| m.state(false)).collect();
        assert_eq!(
            states,
            [ServerState::Up, ServerState::Down, ServerState::Draining]
        );
        assert_eq!(g.member(0).state(true), ServerState::Checking);
        g.member(0).peer.state.set_check_state(CheckState::Up);
        assert_eq!(g.member(0).state(true), ServerState::Up);
        g.member(0)
            .peer
            .state
            .record_failure(g.member(0).spec.fail_policy);
        assert_eq!(g.member(0).state(true), ServerState::Down);
    }

    #[test]
    fn sticky_route_matches_route_values() {
        let g = group(vec![server("a"), server("b")], Some(StickyMode::Route));
        let ctx = PickCtx {
            key: Key::None,
            pinned: Some("r-b"),
        };
        let pick = g.pick(&ctx, &Tried::default()).unwrap();
        assert_eq!(
            (pick.peer.key.address.as_ref(), pick.by_sticky),
            ("b", true)
        );
        assert!(g.cookie_value(0).is_none());
    }

    #[test]
    fn full_servers_are_passed_over_and_all_full_is_busy() {
        let g = group(
            vec![
                Server {
                    max_conns: 1,
                    ..server("a")
                },
                Server {
                    max_conns: 1,
                    ..server("b")
                },
            ],
            None,
        );
        let tried = Tried::default();
        let first = g.pick(&NO_KEY, &tried).unwrap().peer.begin();
        let second = g.pick(&NO_KEY, &tried).unwrap().peer.begin();
        assert_ne!(first.peer().key.address, second.peer().key.address);
        assert_eq!(address(&g, &NO_KEY, &tried), Err(NoPeer::AllBusy));
        drop(first);
        assert!(g.pick(&NO_KEY, &tried).is_ok());
    }
}
