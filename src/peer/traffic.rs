//! What one server's traffic looked like, for the status page: answers by class, connect
//! errors, how often passive health took it out, the last active check, open streams by
//! transport, and a histogram of exchange times.
//!
//! These are the counters the status page reads, and the only ones: plain relaxed atomics
//! next to the ones the balancer uses, bumped on the request path without a lock or an
//! allocation. They live in the peer, which outlives snapshots, so a reload keeps them.
//!
//! Imports only std.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How a long-lived exchange carries its messages; each is counted apart while it is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// An upgraded connection speaking WebSocket (HTTP/1.1 `101`, or HTTP/2 extended CONNECT).
    WebSocket,
    /// A response of type `text/event-stream`.
    ServerSentEvents,
    /// A request whose response head took longer than [`LONG_POLL_AFTER`].
    LongPoll,
}

impl Transport {
    /// Every transport, in the order the counters keep them.
    pub const ALL: [Transport; 3] = [
        Transport::WebSocket,
        Transport::ServerSentEvents,
        Transport::LongPoll,
    ];

    /// The name the status page gives it: `websocket`, `sse`, `long_poll`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::ServerSentEvents => "sse",
            Transport::LongPoll => "long_poll",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A request still waiting for its response head after this long is counted as a long poll,
/// from then until its response ends. Ordinary answers come well within it; a long poll's
/// server holds the request for tens of seconds. Recognising it this way costs nothing: the
/// wait for the head already has a timer, which first fires at this mark.
pub const LONG_POLL_AFTER: Duration = Duration::from_secs(1);

/// Upper bounds of the request-time histogram's buckets, in seconds (Prometheus's defaults);
/// a last bucket takes everything longer.
pub const DURATION_BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram of durations: a count per bucket (not cumulative), their sum and their number.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; DURATION_BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

/// A histogram read at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramReading {
    /// Observations per bucket, in the order of [`DURATION_BOUNDS`] plus the last one (not
    /// cumulative).
    pub buckets: Vec<u64>,
    /// The sum of every observation, in seconds.
    pub sum_seconds: f64,
}

impl HistogramReading {
    /// How many observations there were.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

impl Histogram {
    /// Counts one duration.
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = DURATION_BOUNDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(DURATION_BOUNDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn read(&self) -> HistogramReading {
        HistogramReading {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// One server's traffic counters (`&self` only).
#[derive(Debug, Default)]
pub struct Traffic {
    /// Answers relayed to clients, by class: 1xx .. 5xx.
    responses: [AtomicU64; 5],
    connect_errors: AtomicU64,
    /// Times passive health took the server out (`max_fails` reached).
    passive_downs: AtomicU64,
    /// The last active check: when ([`now_ms`](super::now_ms)) shifted left by one, and
    /// whether it passed in the low bit. 0: none yet.
    last_check: AtomicU64,
    /// Exchanges open right now, by [`Transport`].
    open: [AtomicU64; 3],
    /// How long answered exchanges took, from choosing the server to the end of the response
    /// (upgraded tunnels are not requests and are left out).
    durations: Histogram,
}

/// The last active health check of a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastCheck {
    /// It passed.
    pub passed: bool,
    /// When, in [`now_ms`](super::now_ms) units.
    pub at_ms: u64,
}

impl Traffic {
    /// Counts an answer relayed to the client.
    pub fn record_status(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Answers relayed, by class (index 0 is 1xx).
    pub fn responses(&self) -> [u64; 5] {
        std::array::from_fn(|class| self.responses[class].load(Ordering::Relaxed))
    }

    /// Counts a connection that could not be opened (refused, unreachable, timed out).
    pub fn record_connect_error(&self) {
        self.connect_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections that could not be opened.
    pub fn connect_errors(&self) -> u64 {
        self.connect_errors.load(Ordering::Relaxed)
    }

    pub(super) fn record_passive_down(&self) {
        self.passive_downs.fetch_add(1, Ordering::Relaxed);
    }

    /// Times passive health took the server out.
    pub fn passive_downs(&self) -> u64 {
        self.passive_downs.load(Ordering::Relaxed)
    }

    pub(super) fn record_check(&self, passed: bool, at_ms: u64) {
        self.last_check
            .store(at_ms << 1 | u64::from(passed), Ordering::Relaxed);
    }

    /// The last active health check, if any ran.
    pub fn last_check(&self) -> Option<LastCheck> {
        match self.last_check.load(Ordering::Relaxed) {
            0 => None,
            bits => Some(LastCheck {
                passed: bits & 1 == 1,
                at_ms: bits >> 1,
            }),
        }
    }

    /// Exchanges open now over `transport`.
    pub fn open(&self, transport: Transport) -> u64 {
        self.open[transport.index()].load(Ordering::Relaxed)
    }

    pub(super) fn opened(&self, transport: Transport) {
        self.open[transport.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn closed(&self, transport: Transport) {
        self.open[transport.index()].fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn observe(&self, duration: Duration) {
        self.durations.observe(duration);
    }

    /// How long answered exchanges took.
    pub fn durations(&self) -> HistogramReading {
        self.durations.read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_the_first_bucket_that_holds_them() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_millis(5));
        histogram.observe(Duration::from_millis(6));
        histogram.observe(Duration::from_secs(60));
        let reading = histogram.read();
        assert_eq!(reading.buckets[0], 1, "5 ms is within the 5 ms bound");
        assert_eq!(reading.buckets[1], 1);
        assert_eq!(
            reading.buckets[DURATION_BOUNDS.len()],
            1,
            "past every bound"
        );
        assert_eq!(reading.count(), 3);
        assert!((reading.sum_seconds - 60.011).abs() < 1e-9);
    }

    #[test]
    fn statuses_count_by_class_and_checks_keep_their_time() {
        let traffic = Traffic::default();
        for status in [101, 200, 204, 302, 404, 502, 503] {
            traffic.record_status(status);
        }
        assert_eq!(traffic.responses(), [1, 2, 1, 1, 2]);
        assert_eq!(traffic.last_check(), None);
        traffic.record_check(false, 42);
        assert_eq!(
            traffic.last_check(),
            Some(LastCheck {
                passed: false,
                at_ms: 42
            })
        );
    }
}
