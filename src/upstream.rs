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
//! `max_conns`; the balancer also skips `drain` servers and prefers not to send a server in
//! `slow_start` more than a share growing over its ramp.
//!
//! Passive health is nginx's (see `peer/passive.rs`), with nginx's two exceptions decided here:
//! the only server of a group is never taken out, and when no server can be chosen every
//! server's failures are forgotten, so the next request tries them again ("quick recovery").
//! A server active checks hold down stays down through that: a probe is evidence gathered on
//! its own clock, not a guess from the last few requests.

use std::cell::Cell;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use crate::balance::sticky::{StickyKey, StickyTable};
use crate::balance::{Balancer, Key, Method, Node};
use crate::peer::{CheckState, FailPolicy, Moment, Peer};

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
    /// `max_fails=` / `fail_timeout=` (`max_fails` 0 for the only server of a group, which
    /// nginx never takes out).
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
        let mut members: Vec<Member> = primaries.into_iter().chain(backups).collect();
        // nginx's `single`: with nowhere else to send a request, taking the only server out
        // would turn one bad answer into `fail_timeout` of 502s. Its failures are not even
        // counted, so a reload that gives it company starts it afresh.
        if let [only] = members.as_mut_slice() {
            only.spec.fail_policy.max_fails = 0;
        }
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
    ///
    /// When none can be chosen, the request gets the error and every server's passive
    /// failures are forgotten: the next request tries them again (nginx's quick recovery).
    pub fn pick(&self, ctx: &PickCtx<'_>, tried: &Tried) -> Result<Pick<'_>, NoPeer> {
        self.pick_at(ctx, tried, &Moment::lazy())
    }

    fn pick_at(&self, ctx: &PickCtx<'_>, tried: &Tried, now: &Moment) -> Result<Pick<'_>, NoPeer> {
        let busy = Cell::new(false);
        if let Some(index) = self.pinned(ctx, tried, now, &busy) {
            return Ok(self.chosen(index, true));
        }
        let tiers = [
            (0..self.primaries, &self.primary),
            (self.primaries..self.members.len(), &self.backup),
        ];
        for (range, balancer) in tiers {
            if let Some(index) = self.balance(range, balancer, ctx.key, tried, now, &busy) {
                return Ok(self.chosen(index, false));
            }
        }
        self.recover_quickly();
        Err(if busy.get() {
            NoPeer::AllBusy
        } else {
            NoPeer::AllDown
        })
    }

    /// The member a sticky cookie or route names, if it is usable.
    fn pinned(
        &self,
        ctx: &PickCtx<'_>,
        tried: &Tried,
        now: &Moment,
        busy: &Cell<bool>,
    ) -> Option<usize> {
        let pinned = ctx.pinned?;
        let index = match self.sticky.as_ref()? {
            Pinning::Cookie(table) => table.find(pinned)?,
            Pinning::Route(routes) => *routes.get(pinned)?,
        };
        let member = &self.members[index];
        (self.usable(index, member, tried, now, busy) && member.claim(now)).then_some(index)
    }

    /// The method's choice among the usable, non-draining members in `range` (one tier).
    fn balance(
        &self,
        range: Range<usize>,
        balancer: &Balancer,
        key: Key<'_>,
        tried: &Tried,
        now: &Moment,
        busy: &Cell<bool>,
    ) -> Option<usize> {
        let offset = range.start;
        let tier = &self.members[range];
        // Members the balancer chose but a concurrent request got to first (it took the trial,
        // or a failure came in): rare, so this stays empty and unallocated.
        let mut lost: Vec<usize> = Vec::new();
        // `slow_start` is a preference: with nobody else usable, a ramping server serves.
        let mut ramp = true;
        loop {
            let held_back = Cell::new(false);
            let found = balancer.pick(
                key,
                |i| {
                    let member = &tier[i];
                    if member.spec.drain
                        || lost.contains(&i)
                        || !self.usable(offset + i, member, tried, now, busy)
                    {
                        return false;
                    }
                    let admitted = !ramp || member.admitted();
                    held_back.set(held_back.get() || !admitted);
                    admitted
                },
                |i| tier[i].peer.state.active(),
            );
            match found {
                Some(i) if tier[i].claim(now) => return Some(offset + i),
                Some(i) => lost.push(i),
                None if ramp && held_back.get() => ramp = false,
                None => return None,
            }
        }
    }

    /// nginx's quick recovery: no server could be chosen, so each one's passive failures are
    /// forgotten and the next request tries them again, instead of every request meeting a
    /// 502 for a whole `fail_timeout`. Active checks' verdicts stand.
    fn recover_quickly(&self) {
        let mut forgot = false;
        for member in &self.members {
            forgot |= member.peer.state.forget_failures();
        }
        if forgot {
            tracing::warn!(
                group = %self.name,
                "no live upstreams: failures forgotten, the next request tries every server again"
            );
        }
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
    fn usable(
        &self,
        index: usize,
        member: &Member,
        tried: &Tried,
        now: &Moment,
        busy: &Cell<bool>,
    ) -> bool {
        if member.spec.down || tried.contains(index) {
            return false;
        }
        let state = &member.peer.state;
        if matches!(state.check_state(), CheckState::Down | CheckState::Pending)
            || !state.passive_ok(member.spec.fail_policy, now)
        {
            return false;
        }
        if member.spec.max_conns != 0 && state.active() >= u64::from(member.spec.max_conns) {
            busy.set(true);
            return false;
        }
        true
    }

    /// Counts a failed attempt on member `index` toward its `max_fails`.
    pub fn record_failure(&self, index: usize) {
        let member = &self.members[index];
        if member.peer.state.record_failure(member.spec.fail_policy) {
            tracing::warn!(
                upstream = %member.peer.key.address,
                group = %self.name,
                "upstream server temporarily disabled"
            );
        }
    }

    /// Counts a successful exchange with member `index` (it may bring the server back).
    pub fn record_success(&self, index: usize) {
        let member = &self.members[index];
        member.peer.state.record_success(member.spec.fail_policy);
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

    /// Passive health's say once a pick has chosen this member ([`PeerState::claim`]).
    ///
    /// [`PeerState::claim`]: crate::peer::PeerState::claim
    fn claim(&self, now: &Moment) -> bool {
        self.peer.state.claim(self.spec.fail_policy, now)
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
mod tests;
