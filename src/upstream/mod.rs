//! An upstream group at run time: its servers over live peers in two tiers (primary, backup),
//! the balancing method, stickiness, and the one question a request asks of all that — which
//! server, and must the answer pin the client to it ([`Group::choose`]).
//!
//! Choosing a server for a request, in order:
//! 1. a sticky cookie (or `sticky route`, or a session `sticky learn` knows) naming a usable
//!    server — primary, backup or draining without a `drain_timeout` — wins: sessions stay
//!    where they are (a drain with a timeout re-pins them, or its clients would reconnect to
//!    it as soon as it closed their tunnels);
//! 2. else the method picks among usable primaries;
//! 3. else among usable backups (Azure SignalR's failover: backups take new sessions only while
//!    every primary is unusable; when one recovers, new sessions return to it).
//!
//! The answer to a new session, or to a cookie naming no usable server, carries `Set-Cookie`;
//! with a sliding expiry every answer does.
//!
//! The rooms: `affinity.rs` reads what a request brings (its hash key, the server its cookie or
//! route names) once, before the request moves upstream; `tiers.rs` walks the tiers with
//! health and `max_conns`; `sticky.rs` maps cookies and routes to members and decides the
//! cookie; `cookie.rs` writes and reads the cookie itself; `learn.rs` looks sessions up and
//! learns them from responses. The pure halves — balancing methods
//! and cookie values — are `balance/`.
//!
//! Passive health is nginx's (see `peer/passive.rs`), with nginx's two exceptions decided in
//! `tiers.rs`: the only server of a group is never taken out, and when no server can be chosen
//! every server's failures are forgotten, so the next request tries them again.
//!
//! Must not import hyper, tokio or sockets: `http` types only for cookie headers.

mod affinity;
pub mod cookie;
mod learn;
mod sticky;
mod tiers;

use std::sync::Arc;
use std::time::Duration;

use crate::balance::{Balancer, Method, Node};
use crate::config::{HealthCheck, LearnSource};
pub use crate::peer::StickyStatus;
use crate::peer::{CheckState, FailPolicy, Peer};
use crate::sessions::SessionZone;
use crate::vars::Template;

pub use affinity::Affinity;
pub use learn::{AnswerReading, BodyLearner, Learn, LearnMode};
use sticky::Sticky;
pub use sticky::{SetCookie, StickyMode};

/// A group of upstream servers as one snapshot sees it, with everything a request needs to
/// choose among them.
#[derive(Debug)]
pub struct Group {
    /// The `upstream` name (or the address for `proxy_pass http://host:port`).
    pub name: Arc<str>,
    /// How long an idle upstream connection may be reused (`keepalive_timeout` in `upstream`).
    pub keepalive_timeout: Duration,
    /// `health_check`: active checks of every server, if configured.
    pub health_check: Option<HealthCheck>,
    method: Method,
    /// `hash KEY`, compiled.
    hash_key: Option<Template>,
    /// Primaries first, then backups: a member's index is its place in this list.
    members: Vec<Member>,
    /// How many of `members` are primaries.
    primaries: usize,
    primary: Balancer,
    backup: Balancer,
    sticky: Option<Sticky>,
    /// `sticky learn create=$upstream_http_NAME`: decided once, read per response.
    reads_answer_headers: bool,
}

/// How a group balances and pins, as its `upstream` block says.
#[derive(Debug)]
pub struct GroupSpec {
    /// The balancing method.
    pub method: Method,
    /// `hash KEY`, compiled (with [`Method::Hash`]).
    pub hash_key: Option<Template>,
    /// `sticky cookie`, `sticky route` or `sticky learn`.
    pub sticky: Option<StickyMode>,
    /// `keepalive_timeout` for idle upstream connections.
    pub keepalive_timeout: Duration,
    /// `health_check`.
    pub health_check: Option<HealthCheck>,
}

/// A server as configured in this snapshot, over its live peer.
#[derive(Debug)]
pub struct Member {
    /// The live peer (shared across snapshots).
    pub peer: Arc<Peer>,
    /// Its parameters in this config.
    pub spec: MemberSpec,
}

/// A server a reload removed while its drain (`drain_timeout`) runs: the status page still
/// shows it, in the group it was in, with the parameters it had there.
#[derive(Clone, Debug)]
pub struct Retired {
    /// The live peer (its streams are still being closed).
    pub peer: Arc<Peer>,
    /// Where it was.
    pub place: Place,
}

/// Where a server a reload removed was: its group and its parameters there.
#[derive(Clone, Debug)]
pub struct Place {
    /// The name of the group it was in.
    pub group: String,
    /// Its parameters in the last config that had it.
    pub spec: MemberSpec,
    /// Its group pinned sessions (for the status page's count of new ones).
    pub sticky: bool,
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
    /// `drain`: takes only requests pinned to it (none at all with a `drain_timeout`).
    pub drain: bool,
    /// `drain_timeout`: once draining, its tunnels and event streams close spread over this.
    pub drain_timeout: Option<Duration>,
    /// `slow_start=` (zero: off).
    pub slow_start: Duration,
    /// `route=`: the sticky identity (else the address as written).
    pub route: Option<String>,
}

/// The server chosen for one attempt, and whether its answer pins the client to it.
#[derive(Clone, Copy, Debug)]
pub struct Choice<'g> {
    /// Its live peer.
    pub peer: &'g Arc<Peer>,
    /// The member's index in the group (what a failure or success is recorded against).
    pub member: usize,
    /// The `Set-Cookie` its answer carries: a new session is pinned, a cookie that named no
    /// usable server is re-issued, a sliding expiry is renewed. None otherwise.
    pub set_cookie: Option<SetCookie<'g>>,
    /// `sticky learn`: what its answer may create a session from (and for which server).
    pub learn: Option<Learn<'g>>,
    /// How stickiness came out for this attempt (`$sticky_status`).
    pub sticky: StickyStatus,
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
    pub fn new(name: Arc<str>, members: Vec<Member>, spec: GroupSpec) -> Group {
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
            Balancer::new(spec.method, &nodes)
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
        let sticky = spec
            .sticky
            .and_then(|mode| Sticky::new(mode, &name, &members));
        let reads_answer_headers = matches!(&sticky, Some(Sticky::Learn { mode, .. })
            if mode.create.iter().any(|source| matches!(source, LearnSource::UpstreamHeader(_))));
        Group {
            reads_answer_headers,
            name,
            keepalive_timeout: spec.keepalive_timeout,
            health_check: spec.health_check,
            method: spec.method,
            hash_key: spec.hash_key,
            members,
            primaries: primaries_len,
            primary,
            backup,
            sticky,
        }
    }

    /// Counts a failed attempt on member `index` toward its `max_fails`. True when this
    /// failure took the server out for `fail_timeout` (the caller logs it with the request's
    /// context, as nginx does).
    pub fn record_failure(&self, index: usize) -> bool {
        let member = &self.members[index];
        member.peer.state.record_failure(member.spec.fail_policy)
    }

    /// Counts a successful exchange with member `index` (it may bring the server back).
    pub fn record_success(&self, index: usize) {
        let member = &self.members[index];
        member.peer.state.record_success(member.spec.fail_policy);
    }

    /// True when the group pins clients (`sticky cookie` or `sticky route`).
    pub fn is_sticky(&self) -> bool {
        self.sticky.is_some()
    }

    /// True when its answers' own header lines are read (`sticky learn
    /// create=$upstream_http_NAME`): none may be left out of a response as it is parsed.
    pub fn reads_answer_headers(&self) -> bool {
        self.reads_answer_headers
    }

    /// The session zone of a `sticky learn` group (status pages read it).
    pub fn learned_sessions(&self) -> Option<&Arc<SessionZone>> {
        match self.sticky.as_ref()? {
            Sticky::Learn { mode, .. } => Some(&mode.zone),
            Sticky::Cookie { .. } | Sticky::Route { .. } => None,
        }
    }

    /// The cookie value of member `index`, if the group has `sticky cookie`.
    pub fn cookie_value(&self, index: usize) -> Option<&str> {
        self.sticky.as_ref()?.cookie_value(index)
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
    /// Back from being down and ramping up over `slow_start=`: `percent` of the way.
    SlowStart {
        /// How far along the ramp, 0..=99.
        percent: u8,
    },
}

impl ServerState {
    /// The name the status page gives it: `up`, `down`, `draining`, `checking`, `slow-start`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Up => "up",
            ServerState::Down => "down",
            ServerState::Draining => "draining",
            ServerState::Checking => "checking",
            ServerState::SlowStart { .. } => "slow-start",
        }
    }
}

impl Member {
    /// True for a server in a drain that finishes (`drain` with a `drain_timeout`): it takes
    /// nothing new, pinned or not.
    pub fn drains_with_timeout(&self) -> bool {
        self.spec.drain && self.spec.drain_timeout.is_some()
    }

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
        } else if let Some(percent) = self.ramp_percent() {
            ServerState::SlowStart { percent }
        } else {
            ServerState::Up
        }
    }

    /// How far along its `slow_start` ramp the server is, while it is on one.
    fn ramp_percent(&self) -> Option<u8> {
        let ramp = self.spec.slow_start.as_millis() as u64;
        let elapsed = self.peer.state.recovered_for_ms()?;
        (elapsed < ramp).then(|| (elapsed * 100 / ramp) as u8)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod choose_tests;
