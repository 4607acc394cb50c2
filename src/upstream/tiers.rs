//! The walk behind [`Group::choose`]: the pinned server first, then the method over the primary
//! tier, then over the backup tier, each server asked whether it is usable right now.
//!
//! "Usable" = not `down`, not tried by this request, passive and active health agree, below
//! `max_conns`; the balancer also skips `drain` servers and prefers not to send a server in
//! `slow_start` more than a share growing over its ramp. A server held back by `max_conns`
//! alone is busy, not out: when nobody else can take the request, that is a 503, not a 502.
//!
//! When no server can be chosen every server's passive failures are forgotten, so the next
//! request tries them again (nginx's quick recovery). A server active checks hold down stays
//! down through that: a probe is evidence gathered on its own clock, not a guess from the last
//! few requests. Imports nothing beyond `balance`, `peer` and the group.

use std::cell::Cell;
use std::ops::Range;

use super::{Affinity, Choice, Group, Member, NoPeer, StickyStatus, Tried};
use crate::balance::{Balancer, Key};
use crate::peer::{CheckState, Moment};

/// Whether one server can take a request right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Availability {
    /// It can.
    Usable,
    /// Healthy, but at `max_conns`.
    Busy,
    /// Down, failed, checked down or already tried by this request.
    Out,
}

impl Group {
    /// The server for the next attempt of a request that has already tried `tried`, and
    /// whether its answer must set the sticky cookie.
    ///
    /// When none can be chosen, the request gets the error and every server's passive
    /// failures are forgotten: the next request tries them again (nginx's quick recovery).
    pub fn choose(&self, affinity: &Affinity, tried: &Tried) -> Result<Choice<'_>, NoPeer> {
        self.choose_at(affinity, tried, &Moment::lazy())
    }

    pub(super) fn choose_at(
        &self,
        affinity: &Affinity,
        tried: &Tried,
        now: &Moment,
    ) -> Result<Choice<'_>, NoPeer> {
        let mut busy = false;
        // The pin is this group's own reading of the request, so `get` always finds it.
        if let Some(index) = affinity.pinned
            && !tried.contains(index)
            && let Some(member) = self.members.get(index)
        {
            match member.availability(now) {
                Availability::Usable if member.claim(now) => {
                    return Ok(self.chosen(index, true, affinity));
                }
                Availability::Busy => busy = true,
                _ => {}
            }
        }
        let tiers = [
            (0..self.primaries, &self.primary),
            (self.primaries..self.members.len(), &self.backup),
        ];
        for (range, balancer) in tiers {
            match self.balance(range, balancer, affinity.key(), tried, now) {
                Ok(index) => return Ok(self.chosen(index, false, affinity)),
                Err(NoPeer::AllBusy) => busy = true,
                Err(NoPeer::AllDown) => {}
            }
        }
        self.recover_quickly();
        Err(if busy {
            NoPeer::AllBusy
        } else {
            NoPeer::AllDown
        })
    }

    /// The method's choice among the usable, non-draining members in `range` (one tier); when
    /// there is none, whether some member was only busy.
    fn balance(
        &self,
        range: Range<usize>,
        balancer: &Balancer,
        key: Key<'_>,
        tried: &Tried,
        now: &Moment,
    ) -> Result<usize, NoPeer> {
        let offset = range.start;
        let tier = &self.members[range];
        // Members the balancer chose but a concurrent request got to first (it took the trial,
        // or a failure came in): rare, so this stays empty and unallocated.
        let mut lost: Vec<usize> = Vec::new();
        // `slow_start` is a preference: with nobody else usable, a ramping server serves.
        let mut ramp = true;
        // The balancer asks through a shared closure, so what it saw is noted in cells.
        let busy = Cell::new(false);
        loop {
            let held_back = Cell::new(false);
            let found = balancer.pick(
                key,
                |i| {
                    let member = &tier[i];
                    if member.spec.drain || lost.contains(&i) || tried.contains(offset + i) {
                        return false;
                    }
                    match member.availability(now) {
                        Availability::Usable => {}
                        Availability::Busy => {
                            busy.set(true);
                            return false;
                        }
                        Availability::Out => return false,
                    }
                    let admitted = !ramp || member.admitted();
                    held_back.set(held_back.get() || !admitted);
                    admitted
                },
                |i| tier[i].peer.state.active(),
            );
            match found {
                Some(i) if tier[i].claim(now) => return Ok(offset + i),
                Some(i) => lost.push(i),
                None if ramp && held_back.get() => ramp = false,
                None if busy.get() => return Err(NoPeer::AllBusy),
                None => return Err(NoPeer::AllDown),
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
            // The request that found none logs "no live upstreams" as an error already.
            tracing::info!(
                group = %self.name,
                "no live upstreams: failures forgotten, the next request tries every server again"
            );
        }
    }

    /// The choice of member `index`, counted on its peer by how stickiness came out.
    fn chosen(&self, index: usize, by_sticky: bool, affinity: &Affinity) -> Choice<'_> {
        let peer = &self.members[index].peer;
        let sticky = match (&self.sticky, by_sticky, affinity.presented) {
            (None, ..) => StickyStatus::None,
            (Some(_), true, _) => StickyStatus::Hit,
            (Some(_), false, Some(_)) => StickyStatus::Repinned,
            (Some(_), false, None) => StickyStatus::New,
        };
        peer.state.record_pick(sticky);
        Choice {
            peer,
            member: index,
            sticky,
            set_cookie: self
                .sticky
                .as_ref()
                .and_then(|sticky| sticky.set_cookie(index, by_sticky)),
            learn: self
                .sticky
                .as_ref()
                .and_then(|sticky| sticky.learn_on(index, by_sticky, &affinity.learned)),
        }
    }
}

impl Member {
    /// Whether this server can take a request right now: configured up, healthy, below
    /// `max_conns` (whether this request tried it already is the walk's business).
    fn availability(&self, now: &Moment) -> Availability {
        if self.spec.down {
            return Availability::Out;
        }
        let state = &self.peer.state;
        if matches!(state.check_state(), CheckState::Down | CheckState::Pending)
            || !state.passive_ok(self.spec.fail_policy, now)
        {
            return Availability::Out;
        }
        if self.spec.max_conns != 0 && state.active() >= u64::from(self.spec.max_conns) {
            return Availability::Busy;
        }
        Availability::Usable
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
