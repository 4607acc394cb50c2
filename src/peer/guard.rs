//! Counting one exchange on a peer for as long as it lives: [`ActiveGuard`], made by
//! [`Peer::begin`] and dropped when the response body or the tunnel ends. Beside the count
//! `least_conn` and `max_conns` read, it marks the transport the exchange turned out to be and,
//! once answered, times it — all in one word, since every idle WebSocket task holds a guard.
//!
//! Imports only std and its parent.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Peer, Transport, epoch};

impl Peer {
    /// Starts one request on this peer; it counts as active until the guard is dropped, which
    /// callers arrange to happen when the response body (or the tunnel) ends.
    pub fn begin(self: &Arc<Self>) -> ActiveGuard {
        self.state.requests.fetch_add(1, Ordering::Relaxed);
        self.state.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard {
            peer: self.clone(),
            marks: Marks::started(),
        }
    }
}

/// Counts one in-flight request or tunnel on a peer for as long as it lives (RAII: nothing to
/// forget to decrement, whichever way the exchange ends) — and, once marked, the transport it
/// turned out to be, and on its end how long an answered exchange took.
#[derive(Debug)]
pub struct ActiveGuard {
    peer: Arc<Peer>,
    marks: Marks,
}

/// When an exchange started, its transport and whether it was answered, in one word: every
/// idle WebSocket task holds a guard, and a wider one would widen them all.
#[derive(Clone, Copy, Debug)]
struct Marks(u64);

/// Microseconds since [`micros`]'s epoch take the low 56 bits: two thousand years.
const STARTED_BITS: u32 = 56;
const TRANSPORT_SHIFT: u32 = STARTED_BITS;
const ANSWERED_BIT: u64 = 1 << (STARTED_BITS + 2);

impl Marks {
    fn started() -> Marks {
        Marks(micros() & ((1 << STARTED_BITS) - 1))
    }

    fn elapsed(self) -> std::time::Duration {
        let started = self.0 & ((1 << STARTED_BITS) - 1);
        std::time::Duration::from_micros(micros().saturating_sub(started))
    }

    fn transport(self) -> Option<Transport> {
        match (self.0 >> TRANSPORT_SHIFT) & 0b11 {
            0 => None,
            n => Some(Transport::ALL[n as usize - 1]),
        }
    }

    fn with_transport(self, transport: Transport) -> Marks {
        let code = Transport::ALL
            .iter()
            .position(|t| *t == transport)
            .map_or(0, |i| i as u64 + 1);
        Marks(self.0 & !(0b11 << TRANSPORT_SHIFT) | code << TRANSPORT_SHIFT)
    }

    fn answered(self) -> bool {
        self.0 & ANSWERED_BIT != 0
    }
}

/// Microseconds on the process-wide monotonic clock of [`now_ms`].
fn micros() -> u64 {
    u64::try_from(epoch().elapsed().as_micros()).unwrap_or(u64::MAX)
}

impl ActiveGuard {
    /// The peer this guard counts on.
    pub fn peer(&self) -> &Arc<Peer> {
        &self.peer
    }

    /// Records that the server answered with `status` and that the answer is being relayed:
    /// counted by class now, and its time when the exchange ends.
    pub fn answered(&mut self, status: u16) {
        self.peer.state.traffic.record_status(status);
        self.marks = Marks(self.marks.0 | ANSWERED_BIT);
    }

    /// Counts the exchange as open over `transport` until it ends (a later mark replaces an
    /// earlier one: a long poll whose answer is an event stream is an event stream).
    pub fn mark(&mut self, transport: Transport) {
        let traffic = &self.peer.state.traffic;
        if let Some(before) = self.marks.transport() {
            traffic.closed(before);
        }
        self.marks = self.marks.with_transport(transport);
        traffic.opened(transport);
    }

    /// The transport the exchange was marked with.
    pub fn transport(&self) -> Option<Transport> {
        self.marks.transport()
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let state = &self.peer.state;
        state.active.fetch_sub(1, Ordering::Relaxed);
        let transport = self.marks.transport();
        if let Some(transport) = transport {
            state.traffic.closed(transport);
        }
        // A tunnel's life is not a request's time.
        if self.marks.answered() && transport != Some(Transport::WebSocket) {
            state.traffic.observe(self.marks.elapsed());
        }
    }
}
