//! Drains that finish: a draining server's tunnels and event streams closed spread evenly over
//! its `drain_timeout`, each where its stream allows (a WebSocket between frames with close
//! code 1012, an event stream after a complete event), and a graceful stop's spread the same
//! way over `shutdown_timeout` (close code 1001).
//!
//! - `signal`: what one stream waits on, and the list of them each server keeps (std and
//!   tokio-util only; `peer` holds one, the proxy registers every tunnel and event stream);
//! - `schedule`: the task that spaces one server's closes over the time left;
//! - [`Drains`] (here): which servers drain now, decided by the runtime from the snapshot in
//!   force — a server marked `drain`, one a reload removed, or every server at a graceful stop —
//!   with one schedule task per draining server.
//!
//! Imports `peer` and `snapshot` (read-only) and tokio; never `proxy`, `runtime` or hyper.

pub mod schedule;
pub mod signal;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::peer::Peer;
use crate::snapshot::Snapshot;
use crate::upstream::{Place, Retired};
pub use schedule::{Board, Progress, stop_spread};
pub use signal::{CloseReason, CloseSignal, Closers};

/// The drains running now, one per draining server (keyed by the peer's address in memory:
/// a server that a re-resolved name replaced is another peer, with its own streams).
#[derive(Debug, Default)]
pub struct Drains {
    running: Mutex<HashMap<usize, Running>>,
}

#[derive(Debug)]
struct Running {
    peer: Arc<Peer>,
    reason: CloseReason,
    task: JoinHandle<()>,
    /// Set when a reload removed the server: where it was, for the status page.
    removed_from: Option<Place>,
}

impl Drains {
    /// Puts `new` in force after `old` (None at start): servers `drain`ed with a
    /// `drain_timeout` start draining, servers `new` dropped drain over their old timeout, and
    /// servers no longer drained stop (what was closed stays closed).
    pub fn reconcile(&self, old: Option<&Snapshot>, new: &Snapshot) {
        let mut in_new = std::collections::HashSet::new();
        for member in new.upstreams().flat_map(|group| group.members()) {
            in_new.insert(key(&member.peer));
            match member.spec.drain_timeout {
                Some(timeout) if member.spec.drain => {
                    self.start(&member.peer, timeout, CloseReason::Drain, None);
                }
                _ => self.cancel(&member.peer),
            }
        }
        let removed = (old.into_iter())
            .flat_map(|old| old.upstreams())
            .flat_map(|group| group.members().iter().map(move |member| (group, member)))
            .filter(|(_, member)| !in_new.contains(&key(&member.peer)));
        for (group, member) in removed {
            if let Some(timeout) = member.spec.drain_timeout {
                let place = Place {
                    group: group.name.to_string(),
                    spec: member.spec.clone(),
                    sticky: group.is_sticky(),
                };
                self.start(&member.peer, timeout, CloseReason::Drain, Some(place));
            }
        }
        self.lock().retain(|_, running| !running.task.is_finished());
    }

    /// A graceful stop: every server in `peers` closes its streams with 1001 spread over
    /// `over`, whatever drain it had running (a stop overtakes it).
    pub fn stop_all(&self, peers: impl IntoIterator<Item = Arc<Peer>>, over: Duration) {
        for peer in peers {
            self.start(&peer, over, CloseReason::Stop, None);
        }
    }

    /// The servers reloads removed whose drain still runs.
    pub fn retired(&self) -> Vec<Retired> {
        let running = self.lock();
        (running.values())
            .filter(|drain| !drain.task.is_finished())
            .filter_map(|drain| {
                let place = drain.removed_from.as_ref()?;
                Some(Retired {
                    peer: drain.peer.clone(),
                    place: place.clone(),
                })
            })
            .collect()
    }

    /// Starts draining `peer` over `timeout` for `reason`, unless a drain for that reason
    /// already runs (a reload that keeps a server drained does not restart its clock, but a
    /// drained server the reload removed, or one removed and put back drained, is marked so).
    fn start(
        &self,
        peer: &Arc<Peer>,
        timeout: Duration,
        reason: CloseReason,
        removed_from: Option<Place>,
    ) {
        let mut running = self.lock();
        if let Some(now) = running.get_mut(&key(peer))
            && now.reason == reason
        {
            now.removed_from = removed_from;
            return;
        }
        if let Some(before) = running.remove(&key(peer)) {
            before.task.abort();
        }
        let board = Arc::new(Board::new(reason, Instant::now() + timeout));
        peer.set_drain(Some(board.clone()));
        let task = tokio::spawn(schedule::run(
            peer.closers.clone(),
            board,
            peer.key.address.clone(),
        ));
        let drain = Running {
            peer: peer.clone(),
            reason,
            task,
            removed_from,
        };
        running.insert(key(peer), drain);
    }

    /// Stops `peer`'s drain, if one runs: it takes new streams again and keeps them.
    fn cancel(&self, peer: &Arc<Peer>) {
        if let Some(before) = self.lock().remove(&key(peer)) {
            before.task.abort();
            tracing::info!(upstream = %before.peer.key.address, "no longer draining");
        }
        if peer.drain_progress().is_some() {
            peer.set_drain(None);
            peer.closers.set_overdue(None);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Running>> {
        // Inserts and removes cannot panic halfway: a poisoned map is still consistent.
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A peer's identity in memory.
fn key(peer: &Arc<Peer>) -> usize {
    Arc::as_ptr(peer) as usize
}
