//! The task behind one zone's sync: connect (a command connection and a subscription), write
//! what waits, read every key of the zone, then serve until something fails — writing sessions
//! learned here, storing those announced by others, and a heartbeat that notices a Redis that
//! stopped answering. After a failure: count it, log it (once per interval), wait a little
//! longer each time, and start over.
//!
//! Every Redis call is bounded by a timeout, so a slow Redis is a failure here, never a stall
//! anywhere else. Owns the redis client's connections; must not import hyper or the proxy.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubStream};
use redis::{AsyncConnectionConfig, RedisError};
use tokio::sync::Notify;

use super::failures::{FailureLog, Report};
use super::wire::{Names, announce, read_announcement};
use crate::sessions::{Learned, Outbox, SessionZone, SyncCounts, clock};

/// How long connecting may take, and one command's answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an idle connection is checked (PING), and the zone looked for.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// The first wait before reconnecting, doubled after each failed attempt up to the last.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(2);
/// Sessions written per round trip (SET + PUBLISH each, pipelined), and keys asked per SCAN.
const BATCH: usize = 256;

/// Why a connection ended.
enum Failure {
    /// Redis answered with an error, or the connection broke.
    Redis(RedisError),
    /// Redis did not answer within the bound.
    TimedOut(&'static str),
    /// The subscription's connection closed.
    Lost,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Redis(error) => write!(f, "{error}"),
            Failure::TimedOut(what) => write!(f, "no answer to {what} within the time allowed"),
            Failure::Lost => f.write_str("the subscription's connection closed"),
        }
    }
}

impl From<RedisError> for Failure {
    fn from(error: RedisError) -> Failure {
        Failure::Redis(error)
    }
}

/// The zone is gone: the task has nothing left to do.
struct ZoneGone;

/// What ends a connected session: the zone going away, or a failure.
type Outcome = Result<ZoneGone, Failure>;

/// What the handle and the task share.
pub(super) struct Wiring {
    pub outbox: Arc<Outbox>,
    pub wake: Arc<Notify>,
    pub counters: Arc<SyncCounts>,
    pub target: String,
    pub log_interval: Duration,
}

/// One zone's sync task.
pub(super) struct Worker {
    zone: Weak<SessionZone>,
    zone_name: String,
    names: Names,
    /// The zone's timeout in whole seconds (at least one): the keys' expiry.
    expiry: u64,
    client: redis::Client,
    wiring: Wiring,
    /// This task's id in its announcements, to ignore their echo.
    origin: u64,
    /// Sessions taken from the outbox that Redis has not acknowledged yet, oldest first.
    unsent: VecDeque<Learned>,
    log: FailureLog,
}

/// The Redis server and database of `client`, without credentials.
pub(super) fn target(client: &redis::Client) -> String {
    let info = client.get_connection_info();
    format!("{}/{}", info.addr(), info.redis_settings().db())
}

impl Worker {
    /// The task for `zone`, not yet started.
    pub(super) fn new(zone: &Arc<SessionZone>, client: redis::Client, wiring: Wiring) -> Worker {
        let db = client.get_connection_info().redis_settings().db();
        let timeout = zone.timeout();
        let expiry = (timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0)).max(1);
        Worker {
            zone: Arc::downgrade(zone),
            zone_name: zone.name().to_string(),
            names: Names::new(zone.name(), db),
            expiry,
            client,
            origin: fastrand::u64(..),
            unsent: VecDeque::new(),
            log: FailureLog::new(wiring.log_interval),
            wiring,
        }
    }

    /// Syncs until the zone is gone.
    pub(super) async fn run(mut self) {
        let mut retry = FIRST_RETRY;
        loop {
            let failure = match self.session().await {
                Ok(ZoneGone) => return,
                Err(failure) => failure,
            };
            if self
                .wiring
                .counters
                .connected
                .swap(false, Ordering::Relaxed)
            {
                // It had worked: the next attempt is soon, as for a first failure.
                retry = FIRST_RETRY;
            }
            self.failed(&failure);
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(LAST_RETRY);
            if self.zone.strong_count() == 0 {
                return;
            }
        }
    }

    /// One connection, from connecting to its failure.
    async fn session(&mut self) -> Outcome {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let mut connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        // Subscribed before reading the keys: a session announced meanwhile is heard, not lost
        // between the scan and the subscription.
        let mut pubsub =
            bounded(CONNECT_TIMEOUT, "SUBSCRIBE", self.client.get_async_pubsub()).await??;
        bounded(
            RESPONSE_TIMEOUT,
            "SUBSCRIBE",
            pubsub.subscribe(self.names.channel()),
        )
        .await??;
        let mut announcements = pubsub.into_on_message();
        // What waited is written before the keys are read, so a session re-pinned here while
        // Redis was away is not overwritten by its older value in Redis.
        self.publish(&mut connection).await?;
        self.catch_up(&mut connection).await?;
        self.wiring
            .counters
            .connected
            .store(true, Ordering::Relaxed);
        if let Report::Recovered(failures) = self.log.worked() {
            tracing::warn!(
                zone = %self.zone_name,
                "session sync with redis {} works again after {failures} failures; caught up",
                self.wiring.target
            );
        }
        self.serve(&mut connection, &mut announcements).await
    }

    /// Writes, stores and checks until something fails or the zone is gone.
    async fn serve(
        &mut self,
        connection: &mut MultiplexedConnection,
        announcements: &mut PubSubStream,
    ) -> Outcome {
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.publish(connection).await?;
            let wake = self.wiring.wake.clone();
            tokio::select! {
                message = announcements.next() => {
                    let Some(message) = message else {
                        return Err(Failure::Lost);
                    };
                    if self.store(message.get_payload_bytes()).is_none() {
                        return Ok(ZoneGone);
                    }
                }
                () = wake.notified() => {}
                _ = heartbeat.tick() => {
                    if self.zone.strong_count() == 0 {
                        return Ok(ZoneGone);
                    }
                    redis::cmd("PING").query_async::<()>(connection).await?;
                }
            }
        }
    }

    /// Writes every session waiting, in pipelined batches; on a failure the unwritten ones stay
    /// for the next connection.
    async fn publish(&mut self, connection: &mut MultiplexedConnection) -> Result<(), Failure> {
        self.take_outbox();
        while !self.unsent.is_empty() {
            let count = self.unsent.len().min(BATCH);
            let mut pipe = redis::pipe();
            for (key, value) in self.unsent.range(..count) {
                pipe.cmd("SET")
                    .arg(self.names.key(key))
                    .arg(value.as_str())
                    .arg("EX")
                    .arg(self.expiry)
                    .ignore()
                    .cmd("PUBLISH")
                    .arg(self.names.channel())
                    .arg(announce(self.origin, key, value))
                    .ignore();
            }
            pipe.query_async::<()>(connection).await?;
            self.unsent.drain(..count);
            let counters = &self.wiring.counters;
            counters
                .published
                .fetch_add(count as u64, Ordering::Relaxed);
            self.take_outbox();
        }
        Ok(())
    }

    /// Moves what the outbox holds behind the unsent sessions, the oldest giving way past the
    /// bound.
    fn take_outbox(&mut self) {
        self.unsent.extend(self.wiring.outbox.take());
        let excess = self.unsent.len().saturating_sub(super::OUTBOX_CAPACITY);
        if excess > 0 {
            self.unsent.drain(..excess);
            let counters = &self.wiring.counters;
            counters.dropped.fetch_add(excess as u64, Ordering::Relaxed);
        }
    }

    /// Reads every session of the zone in Redis into the zone.
    async fn catch_up(&mut self, connection: &mut MultiplexedConnection) -> Result<(), Failure> {
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(self.names.pattern())
                .arg("COUNT")
                .arg(BATCH)
                .query_async(connection)
                .await?;
            if !keys.is_empty() {
                let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(connection)
                    .await?;
                let Some(zone) = self.zone.upgrade() else {
                    return Ok(());
                };
                let now = clock::now_ms();
                let mut stored = 0;
                for (key, value) in keys.iter().zip(values) {
                    // A key that expired between SCAN and MGET has no value.
                    let (Some(session), Some(value)) = (self.names.session(key), value) else {
                        continue;
                    };
                    if let Ok(value) = std::str::from_utf8(&value) {
                        zone.learned_elsewhere(session, value, now);
                        stored += 1;
                    }
                }
                let counters = &self.wiring.counters;
                counters.received.fetch_add(stored, Ordering::Relaxed);
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Stores a session another instance announced; `None` when the zone is gone.
    fn store(&self, message: &[u8]) -> Option<()> {
        let zone = self.zone.upgrade()?;
        let Some(announcement) = read_announcement(message) else {
            return Some(());
        };
        if announcement.origin == self.origin {
            return Some(());
        }
        zone.learned_elsewhere(announcement.key, announcement.value, clock::now_ms());
        let counters = &self.wiring.counters;
        counters.received.fetch_add(1, Ordering::Relaxed);
        Some(())
    }

    /// Counts a failure and logs it if one is due.
    fn failed(&mut self, failure: &Failure) {
        self.wiring
            .counters
            .failures
            .fetch_add(1, Ordering::Relaxed);
        if let Report::Failing(failures) = self.log.failed(Instant::now()) {
            tracing::warn!(
                zone = %self.zone_name,
                "session sync with redis {} failing: {failure} ({failures} failures since the \
                 last report); requests are routed on this instance's sessions",
                self.wiring.target
            );
        }
    }
}

/// `future`, or a [`Failure::TimedOut`] naming `what` once `limit` has passed.
async fn bounded<T>(
    limit: Duration,
    what: &'static str,
    future: impl Future<Output = Result<T, RedisError>>,
) -> Result<Result<T, RedisError>, Failure> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| Failure::TimedOut(what))
}
