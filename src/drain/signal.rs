//! The per-stream half of a drain: a [`CloseSignal`] each tunnel (and event stream) waits on,
//! and the [`Closers`] list a server keeps of its own, from which a drain picks the next one
//! to close.
//!
//! The list holds weak references: a stream that ends on its own is gone from it without a
//! word, and the stream's task holds one pointer, no deregistration guard (every idle
//! WebSocket is one of those tasks; see `proxy::upgrade`'s size test). Dead entries are swept
//! when the list has doubled since the last sweep, so registering stays amortised O(1).
//!
//! Imports std and tokio-util only: it knows nothing of peers, HTTP or timers.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;
use tokio_util::sync::{
    CancellationToken, WaitForCancellationFuture, WaitForCancellationFutureOwned,
};

/// Why a stream is being closed: the close code a WebSocket gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// tether is stopping: `1001 Going Away`.
    Stop,
    /// The server is draining (the `drain` parameter, or removed by a reload): `1012 Service
    /// Restart`, which tells a client to reconnect, and it lands elsewhere.
    Drain,
}

impl CloseReason {
    /// The WebSocket close code (RFC 6455 7.4.1; 1012 from the IANA registry).
    pub fn code(self) -> u16 {
        match self {
            CloseReason::Stop => 1001,
            CloseReason::Drain => 1012,
        }
    }

    /// The word the logs and the status page use.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Stop => "stop",
            CloseReason::Drain => "drain",
        }
    }
}

/// What one stream waits on: cancelled by its connection's shutdown (which means a stop) or
/// by a drain, which says why first.
#[derive(Debug)]
pub struct CloseSignal {
    token: CancellationToken,
    /// 0 until a drain closes it, then the reason's code: `Stop` when only the parent token
    /// (tether's fast or final stop) cancelled it.
    reason: AtomicU8,
}

const REASON_NONE: u8 = 0;
const REASON_STOP: u8 = 1;
const REASON_DRAIN: u8 = 2;

impl CloseSignal {
    /// A signal that also fires when `parent` is cancelled (the connection's shutdown).
    pub fn under(parent: &CancellationToken) -> Arc<CloseSignal> {
        Arc::new(CloseSignal {
            token: parent.child_token(),
            reason: AtomicU8::new(REASON_NONE),
        })
    }

    /// Completes once the stream is to close. (The token's own future, not an async fn
    /// around it: every idle tunnel task holds this, and a wrapper would widen them all.)
    pub fn closed(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// [`CloseSignal::closed`] as a future that owns what it waits on, for a body to keep.
    pub fn closed_owned(&self) -> WaitForCancellationFutureOwned {
        self.token.clone().cancelled_owned()
    }

    /// True once the stream was told to close.
    pub fn is_closed(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Tells the stream to close for `reason`.
    pub fn close(&self, reason: CloseReason) {
        let code = match reason {
            CloseReason::Stop => REASON_STOP,
            CloseReason::Drain => REASON_DRAIN,
        };
        // The first reason given stays: a stream a drain closed is not re-labelled by the stop
        // that follows while its close frames are on their way.
        let _ =
            (self.reason).compare_exchange(REASON_NONE, code, Ordering::AcqRel, Ordering::Acquire);
        self.token.cancel();
    }

    /// Why the stream closes (a stop unless a drain said otherwise).
    pub fn reason(&self) -> CloseReason {
        match self.reason.load(Ordering::Acquire) {
            REASON_DRAIN => CloseReason::Drain,
            _ => CloseReason::Stop,
        }
    }
}

/// The streams open on one server that a drain may close, oldest first.
#[derive(Debug, Default)]
pub struct Closers {
    list: Mutex<List>,
    /// Woken by every registration: a drain with nothing left waits for latecomers.
    registered: Notify,
}

#[derive(Debug, Default)]
struct List {
    signals: Vec<Weak<CloseSignal>>,
    /// The length after the last sweep: the next sweep comes at twice that.
    swept_at: usize,
    /// Set while a drain has passed its deadline: a stream opened now is closed at once.
    overdue: Option<CloseReason>,
}

impl Closers {
    /// Registers a new stream (whose signal fires with `parent` too) and returns its signal.
    pub fn register(&self, parent: &CancellationToken) -> Arc<CloseSignal> {
        let signal = CloseSignal::under(parent);
        let overdue = {
            let mut list = self.lock();
            if list.signals.len() >= (2 * list.swept_at).max(16) {
                list.signals.retain(|weak| weak.strong_count() > 0);
                list.swept_at = list.signals.len();
            }
            list.signals.push(Arc::downgrade(&signal));
            list.overdue
        };
        if let Some(reason) = overdue {
            signal.close(reason);
        }
        self.registered.notify_waiters();
        signal
    }

    /// The streams still open and not yet told to close, oldest first.
    pub fn open(&self) -> Vec<Arc<CloseSignal>> {
        let list = self.lock();
        (list.signals.iter())
            .filter_map(Weak::upgrade)
            .filter(|signal| !signal.is_closed())
            .collect()
    }

    /// How many streams are open and not yet told to close.
    pub fn open_count(&self) -> usize {
        let list = self.lock();
        (list.signals.iter())
            .filter_map(Weak::upgrade)
            .filter(|signal| !signal.is_closed())
            .count()
    }

    /// Marks (or with None, unmarks) the server as past its drain's deadline.
    pub fn set_overdue(&self, reason: Option<CloseReason>) {
        self.lock().overdue = reason;
    }

    /// Completes at the next registration (created before the check it follows, so none is
    /// missed: see [`Notify::notified`]).
    pub fn next_registration(&self) -> tokio::sync::futures::Notified<'_> {
        self.registered.notified()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, List> {
        // Pushes and sweeps cannot panic halfway: a poisoned list is still consistent.
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_says_1012_and_a_stop_1001() {
        let parent = CancellationToken::new();
        let closers = Closers::default();
        let (a, b) = (closers.register(&parent), closers.register(&parent));
        assert_eq!(closers.open_count(), 2);
        a.close(CloseReason::Drain);
        assert!(a.is_closed() && !b.is_closed());
        assert_eq!(closers.open_count(), 1);
        parent.cancel();
        assert!(b.is_closed());
        assert_eq!((a.reason().code(), b.reason().code()), (1012, 1001));
        // A stop after a drain does not re-label the drained stream.
        a.close(CloseReason::Stop);
        assert_eq!(a.reason(), CloseReason::Drain);
    }

    #[test]
    fn ended_streams_leave_the_list_and_late_ones_close_when_overdue() {
        let parent = CancellationToken::new();
        let closers = Closers::default();
        let kept: Vec<_> = (0..100)
            .map(|i| (i, closers.register(&parent)))
            .filter(|(i, _)| i % 10 == 0)
            .map(|(_, signal)| signal)
            .collect();
        assert_eq!(closers.open_count(), 10);
        assert!(closers.lock().signals.len() < 100, "swept as it grew");
        assert!(Arc::ptr_eq(&closers.open()[0], &kept[0]), "oldest first");
        closers.set_overdue(Some(CloseReason::Drain));
        let late = closers.register(&parent);
        assert!(late.is_closed());
        assert_eq!(late.reason(), CloseReason::Drain);
    }
}
