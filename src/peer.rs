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
//!
//! Passive health (nginx's `max_fails` / `fail_timeout` bookkeeping) is in `passive.rs`; the
//! group decides when to consult it, and that the only server of a group never is. Active
//! health (the verdict of `health_check` probes and the run of results behind it) is in
//! `active.rs`, kept here so that a reload, which restarts the probing, keeps the run. The
//! RAII count of one exchange is `guard.rs`; what the status page shows beyond the counts the
//! balancer reads (answers by class, open streams by transport, times) is `traffic.rs`.

mod active;
mod guard;
mod passive;
mod traffic;

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

// The leaf rooms, not the drain task (`drain` reads peers and snapshots).
use crate::drain::schedule::{Board, Progress};
use crate::drain::signal::Closers;
use crate::proxy::pool::Pool;
use active::ActiveHealth;
pub use active::{CheckPolicy, CheckState};
pub use guard::ActiveGuard;
use passive::PassiveHealth;
pub use traffic::{
    DURATION_BOUNDS, HistogramReading, LONG_POLL_AFTER, LastCheck, Traffic, Transport,
};

/// A server's identity: the group it belongs to, its address as written and, when the group
/// has that address more than once, which of them it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerKey {
    /// Upstream group name (for `proxy_pass http://host:port` the group is named after the address).
    pub group: Arc<str>,
    /// The `server` address exactly as written in the config; for a `server NAME resolve`,
    /// one address the name resolved to (`10.0.0.7:8080`).
    pub address: Arc<str>,
    /// How many servers of the group with this same address come before it (0 for the
    /// first): nginx makes each repeated `server` line a server of its own, and so does
    /// tether, keeping them apart by their order among the lines of that address.
    pub ordinal: u32,
}

impl PeerKey {
    /// The key of the first (usually only) server with `address` in `group`.
    pub fn new(group: Arc<str>, address: Arc<str>) -> PeerKey {
        PeerKey {
            group,
            address,
            ordinal: 0,
        }
    }
}

/// Where a server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// TCP: the resolved socket addresses, tried in order when connecting (a name like
    /// `localhost` may give both 127.0.0.1 and ::1).
    Inet(Vec<SocketAddr>),
    /// A UNIX-domain socket (`server unix:/run/app.sock`).
    Unix(PathBuf),
}

impl From<Vec<SocketAddr>> for Endpoint {
    fn from(addrs: Vec<SocketAddr>) -> Endpoint {
        Endpoint::Inet(addrs)
    }
}

impl Endpoint {
    /// Whether both lead to the same place: the same socket path, or the same set of
    /// addresses in any order (resolvers may rotate them).
    pub fn same_place(&self, other: &Endpoint) -> bool {
        match (self, other) {
            (Endpoint::Inet(a), Endpoint::Inet(b)) => {
                let sorted = |addrs: &[SocketAddr]| {
                    let mut addrs = addrs.to_vec();
                    addrs.sort_unstable();
                    addrs
                };
                a.len() == b.len() && sorted(a) == sorted(b)
            }
            (Endpoint::Unix(a), Endpoint::Unix(b)) => a == b,
            _ => false,
        }
    }

    /// The first TCP address (what `$upstream_addr` shows); None for a UNIX-domain socket.
    pub fn first_inet(&self) -> Option<SocketAddr> {
        match self {
            Endpoint::Inet(addrs) => addrs.first().copied(),
            Endpoint::Unix(_) => None,
        }
    }
}

/// One upstream server: where it is, and what is happening on it right now.
#[derive(Debug)]
pub struct Peer {
    /// Identity.
    pub key: PeerKey,
    /// Where it listens.
    pub endpoint: Endpoint,
    /// Counters.
    pub state: PeerState,
    /// Idle keep-alive connections to this server.
    pub pool: Pool,
    /// Its open tunnels and event streams, which a drain closes one by one.
    pub closers: Arc<Closers>,
    /// The drain running on it, if any (for the status page).
    drain: Mutex<Option<Arc<Board>>>,
}

impl Peer {
    /// Sets (or with None, clears) the drain running on this server.
    pub fn set_drain(&self, board: Option<Arc<Board>>) {
        *self.drain.lock().unwrap_or_else(|p| p.into_inner()) = board;
    }

    /// How the drain running on this server stands, if one does.
    pub fn drain_progress(&self) -> Option<Progress> {
        let board = self
            .drain
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        Some(board.progress(&self.closers))
    }
}

/// Live counters and health of a peer; plain atomics, updated on the request path without
/// locks. Thresholds (`max_fails`, `fail_timeout`) come from the config of the moment, passed in
/// by the caller: the state itself outlives configs.
#[derive(Debug, Default)]
pub struct PeerState {
    active: AtomicU64,
    requests: AtomicU64,
    failures: AtomicU64,
    by_sticky: AtomicU64,
    by_balancer: AtomicU64,
    /// Of `by_balancer`: the client brought a cookie or route naming no usable server.
    repinned: AtomicU64,
    /// Passive health (nginx's `fails` and `checked`), one atomic word.
    passive: PassiveHealth,
    /// When the server last became usable again after being down, for `slow_start`.
    recovered_ms: AtomicU64,
    /// Active health checks: their verdict and the run of results behind it.
    checks: ActiveHealth,
    /// What the status page shows beyond the counters above.
    traffic: Traffic,
}

/// How a request's stickiness came out: what `$sticky_status` shows, counted per server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StickyStatus {
    /// The group has no `sticky`.
    #[default]
    None,
    /// No cookie (or route) came: the method chose, and the answer pins the client.
    New,
    /// The cookie or route named a usable server, which took the request.
    Hit,
    /// The cookie or route named no usable server (forged, removed, down, busy, already
    /// tried): the method chose, and the answer pins the client anew.
    Repinned,
}

impl StickyStatus {
    /// The variable's text: `none`, `new`, `hit` or `re-pinned`.
    pub fn as_str(self) -> &'static str {
        match self {
            StickyStatus::None => "none",
            StickyStatus::New => "new",
            StickyStatus::Hit => "hit",
            StickyStatus::Repinned => "re-pinned",
        }
    }
}

/// Passive-health thresholds of a server (its `max_fails=` and `fail_timeout=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailPolicy {
    /// Failures within `fail_timeout_ms` that take the server out (0: never).
    pub max_fails: u32,
    /// The window, and how long the server stays out.
    pub fail_timeout_ms: u64,
}

/// Milliseconds on a process-wide monotonic clock (never 0, so 0 can mean "never").
pub fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

fn epoch() -> &'static Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now)
}

/// The time of one pick, in [`now_ms`] units: read from the clock the first time a server's
/// passive health needs it — never, while every server is healthy — then the same for the
/// rest of the pick.
#[derive(Debug, Default)]
pub struct Moment(Cell<u64>);

impl Moment {
    /// A moment read from the clock when first needed.
    pub fn lazy() -> Moment {
        Moment(Cell::new(0))
    }

    /// A fixed moment (`ms` in [`now_ms`] units; tests drive time with it).
    pub fn at(ms: u64) -> Moment {
        Moment(Cell::new(ms.max(1)))
    }

    /// The moment, in [`now_ms`] units.
    pub fn get(&self) -> u64 {
        match self.0.get() {
            0 => {
                let now = now_ms();
                self.0.set(now);
                now
            }
            at => at,
        }
    }
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

    /// Sessions sent here because a sticky cookie or route named this server.
    pub fn picked_by_sticky(&self) -> u64 {
        self.by_sticky.load(Ordering::Relaxed)
    }

    /// Sessions sent here by the balancing method.
    pub fn picked_by_balancer(&self) -> u64 {
        self.by_balancer.load(Ordering::Relaxed)
    }

    /// Of [`picked_by_balancer`](Self::picked_by_balancer): sessions whose cookie or route
    /// named no usable server, so they were placed (and pinned) anew.
    pub fn repinned(&self) -> u64 {
        self.repinned.load(Ordering::Relaxed)
    }

    /// Counts how this server was chosen.
    pub fn record_pick(&self, sticky: StickyStatus) {
        let counter = match sticky {
            StickyStatus::Hit => &self.by_sticky,
            StickyStatus::Repinned => {
                self.repinned.fetch_add(1, Ordering::Relaxed);
                &self.by_balancer
            }
            StickyStatus::New | StickyStatus::None => &self.by_balancer,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one failed attempt. True when the server is out now: `max_fails` failures
    /// within `fail_timeout` (successes in between do not forgive them) take it out for
    /// `fail_timeout` — nginx's "upstream server temporarily disabled".
    pub fn record_failure(&self, policy: FailPolicy) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let out = policy.max_fails != 0 && self.passive.fail(policy, now_ms());
        if out {
            self.traffic.record_passive_down();
        }
        out
    }

    /// Answers, connect errors, open streams and exchange times (for the status page).
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// Records a successful exchange. It clears the failures only when the request was
    /// chosen after `fail_timeout` had passed since the last one (nginx's rule); a server that
    /// comes back that way from being out starts its `slow_start` ramp.
    pub fn record_success(&self, policy: FailPolicy) {
        if self.passive.succeed(policy) {
            self.recovered_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// True when passive health lets a pick at `now` consider this server (reads only).
    pub fn passive_ok(&self, policy: FailPolicy, now: &Moment) -> bool {
        self.passive.usable(policy, now)
    }

    /// Called once a pick has chosen this server: the first request after `fail_timeout`
    /// opens a new window, and for a server that is out it is the one trial, so concurrent
    /// picks keep away until its outcome is known. False when the server went out since
    /// [`PeerState::passive_ok`] (a failure came in, or a concurrent pick took the trial).
    pub fn claim(&self, policy: FailPolicy, now: &Moment) -> bool {
        self.passive.claim(policy, now)
    }

    /// Forgets passive failures (nginx's "quick recovery" when every server of a group is
    /// out); true when there was something to forget. Active checks' verdict is untouched.
    pub fn forget_failures(&self) -> bool {
        self.passive.reset()
    }

    /// True while passive health holds the server out (for status reporting; no trial taken).
    pub fn is_failed(&self, policy: FailPolicy) -> bool {
        self.passive.is_out(policy, &Moment::lazy())
    }

    /// What active checks last said.
    pub fn check_state(&self) -> CheckState {
        self.checks.verdict()
    }

    /// Records the verdict of active checks; returns the one it replaced.
    pub fn set_check_state(&self, state: CheckState) -> CheckState {
        let before = self.checks.set_verdict(state);
        // Coming up from down or from staging starts the slow-start ramp.
        if state == CheckState::Up && matches!(before, CheckState::Down | CheckState::Pending) {
            self.recovered_ms.store(now_ms(), Ordering::Relaxed);
            self.passive.reset();
        }
        before
    }

    /// Records one active check's result. The run of results is the server's, not the
    /// probing task's, so it carries across reloads. Returns the verdict replaced and the new
    /// one when this result changed it.
    pub fn record_check(
        &self,
        passed: bool,
        policy: CheckPolicy,
    ) -> Option<(CheckState, CheckState)> {
        self.traffic.record_check(passed, now_ms());
        let verdict = self.checks.record(passed, policy)?;
        let before = self.set_check_state(verdict);
        Some((before, verdict))
    }

    /// Milliseconds since the server last came back from being down (None if it never was).
    pub fn recovered_for_ms(&self) -> Option<u64> {
        match self.recovered_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(now_ms().saturating_sub(at)),
        }
    }
}

/// Every peer currently alive, by identity. Snapshots hold strong references; the registry
/// holds weak ones, so a server removed from the config disappears once its last request ends.
#[derive(Debug, Default)]
pub struct PeerRegistry {
    peers: Mutex<HashMap<PeerKey, Weak<Peer>>>,
}

impl PeerRegistry {
    /// Forgets peers no snapshot or request holds any more. Called once per snapshot build
    /// (not per insert, which would make building a large group quadratic).
    pub fn forget_unused(&self) {
        let mut peers = self
            .peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        peers.retain(|_, peer| peer.strong_count() > 0);
    }

    /// Every peer alive now: those of the snapshot in force and those only open streams hold.
    pub fn live(&self) -> Vec<Arc<Peer>> {
        let peers = self
            .peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        peers.values().filter_map(Weak::upgrade).collect()
    }

    /// The live peer for `key`, or a new one built from `addrs`. Only snapshot building calls
    /// this, never the request path, so the lock is uncontended.
    pub fn get_or_insert(
        &self,
        key: PeerKey,
        endpoint: impl Into<Endpoint>,
        idle_limit: usize,
    ) -> Arc<Peer> {
        self.insert_or_get(key, endpoint, idle_limit).0
    }

    /// Like [`PeerRegistry::get_or_insert`], also telling whether the peer is new (a server
    /// this config adds).
    pub fn insert_or_get(
        &self,
        key: PeerKey,
        endpoint: impl Into<Endpoint>,
        idle_limit: usize,
    ) -> (Arc<Peer>, bool) {
        // The lock only guards a map of weak pointers; a panic while holding it cannot leave
        // it inconsistent, so a poisoned lock is still usable.
        let mut peers = self
            .peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let endpoint = endpoint.into();
        // A name that resolves elsewhere now (a reload looks every name up again) is another
        // server: it starts afresh, while requests on the old one finish there.
        if let Some(peer) = peers.get(&key).and_then(Weak::upgrade)
            && peer.endpoint.same_place(&endpoint)
        {
            return (peer, false);
        }
        let peer = Arc::new(Peer {
            key: key.clone(),
            endpoint,
            state: PeerState::default(),
            pool: Pool::new(idle_limit),
            closers: Arc::default(),
            drain: Mutex::default(),
        });
        peers.insert(key, Arc::downgrade(&peer));
        (peer, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(group: &str, address: &str) -> PeerKey {
        PeerKey::new(group.into(), address.into())
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
    fn a_guard_counts_its_transport_while_it_lives_and_its_time_once_answered() {
        let registry = PeerRegistry::default();
        let peer = registry.get_or_insert(key("g", "a"), vec![], 8);
        let traffic = peer.state.traffic();
        let mut poll = peer.begin();
        poll.mark(Transport::LongPoll);
        assert_eq!(traffic.open(Transport::LongPoll), 1);
        // A long poll answered with an event stream is an event stream.
        poll.answered(200);
        poll.mark(Transport::ServerSentEvents);
        assert_eq!(traffic.open(Transport::LongPoll), 0);
        assert_eq!(traffic.open(Transport::ServerSentEvents), 1);
        let mut socket = peer.begin();
        socket.answered(101);
        socket.mark(Transport::WebSocket);
        drop(peer.begin()); // never answered: no time counted
        drop(poll);
        drop(socket);
        assert_eq!(Transport::ALL.map(|t| traffic.open(t)), [0, 0, 0]);
        assert_eq!(traffic.responses(), [1, 1, 0, 0, 0]);
        assert_eq!(
            traffic.durations().count(),
            1,
            "the tunnel's life is no request time"
        );
        assert_eq!(peer.state.active(), 0);
    }

    #[test]
    fn taking_a_server_out_and_active_checks_are_counted_for_the_status_page() {
        let state = PeerState::default();
        let policy = FailPolicy {
            max_fails: 2,
            fail_timeout_ms: 10_000,
        };
        assert!(!state.record_failure(policy));
        assert!(
            state.record_failure(policy),
            "the second failure takes it out"
        );
        assert_eq!(state.traffic().passive_downs(), 1);
        assert_eq!(state.failures(), 2);
        let checks = CheckPolicy {
            passes: 1,
            fails: 1,
        };
        state.record_check(false, checks);
        let last = state.traffic().last_check().expect("a check ran");
        assert!(!last.passed);
        assert!(last.at_ms <= now_ms());
    }

    #[test]
    fn a_server_whose_name_resolves_elsewhere_now_is_a_new_peer() {
        let registry = PeerRegistry::default();
        let (one, two): (SocketAddr, SocketAddr) = (
            "10.0.0.1:80".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
        );
        let first = registry.get_or_insert(key("g", "app:80"), vec![one, two], 8);
        let rotated = registry.get_or_insert(key("g", "app:80"), vec![two, one], 8);
        assert!(
            Arc::ptr_eq(&first, &rotated),
            "the same addresses in another order"
        );
        let moved = registry.get_or_insert(key("g", "app:80"), vec![two], 8);
        assert!(!Arc::ptr_eq(&first, &moved));
        assert_eq!(moved.endpoint, Endpoint::Inet(vec![two]));
        let again = registry.get_or_insert(key("g", "app:80"), vec![two], 8);
        assert!(
            Arc::ptr_eq(&moved, &again),
            "the new peer is the one kept now"
        );
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
