//! Sharing learned sessions between tether instances through Redis (`sticky learn ...
//! sync=redis://HOST:PORT[/DB]`): a session learned on instance A is routed the same way by
//! instance B.
//!
//! One tokio task per synced zone ([`spawn_sync`]). The request path never waits on it: a local
//! `learn` only pushes into the zone's [`Outbox`] and wakes the task, and every lookup is served
//! by the zone's own table. The task writes each learned session as the key
//! `tether:{zone}:{key}` (the sticky value, expiring after the zone's timeout) and announces it
//! on the zone's channel; the other instances' tasks hear the announcement and store the
//! session with [`SessionZone::learned_elsewhere`], and read every key of the zone (SCAN) each
//! time they connect, which is how an instance that starts late, or was cut off, catches up.
//! When Redis is down or slow, requests go on with what the instance knows; failures are counted
//! ([`SyncStats`], kept on the zone's [`SyncLink`] for status pages) and logged at most once
//! per interval; sessions learned meanwhile wait in the outbox (bounded: the oldest give way)
//! and are written when Redis is back.
//!
//! A task holds its zone weakly and ends by itself once the zone is gone, so it lives exactly as
//! long as the zone: through reloads that keep the zone, not past one that drops or changes it.
//!
//! Owns the Redis client and the task; the table and the counters the task keeps are `sessions`
//! (pure). Must
//! not import hyper or the proxy: nothing here is on the request path.

mod failures;
mod syncs;
mod wire;
mod worker;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::sessions::{Outbox, SessionZone, SyncCounts, SyncLink};

pub use crate::sessions::SyncStats;
pub use syncs::{SyncStatus, Syncs};

/// How often a failing sync may write a line to the log (the first failure at once).
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// How many learned sessions wait for Redis at most (in the outbox, and again in the task while
/// a write is unacknowledged): a minute of a busy farm's handshakes. Past it, the oldest give
/// way; those sessions are still routed by the instance that learned them.
pub const OUTBOX_CAPACITY: usize = 16_384;

/// A running sync: its counters (shared with the zone, where status pages read them), and a
/// way to stop it. Dropping the handle does not stop the task (it ends with its zone), as
/// dropping a tokio `JoinHandle` detaches.
#[derive(Debug)]
pub struct SyncHandle {
    link: Arc<SyncLink>,
    task: tokio::task::AbortHandle,
}

impl SyncHandle {
    /// What the sync has done so far.
    pub fn stats(&self) -> SyncStats {
        self.link.stats()
    }

    /// The Redis server and database synced with, as `host:port/db` (no credentials), for
    /// status pages and logs.
    pub fn target(&self) -> &str {
        &self.link.target
    }

    /// Stops the task now (the zone keeps what it learned).
    pub fn stop(&self) {
        self.task.abort();
    }

    /// Whether the task has ended (stopped, its zone gone, or its URL unusable).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Starts sharing `zone` through the Redis at `url` (`redis://[user:password@]HOST[:PORT][/DB]`),
/// logging failures at most once per `log_interval`. Attaches the sync to the zone (its outbox,
/// its counters); call it once per zone (`SessionZone::has_outbox` says whether a zone has one).
/// Must run inside a tokio runtime. An unusable URL is logged and counted as a failure, and the
/// zone stays local.
pub fn spawn_sync(zone: Arc<SessionZone>, url: &str, log_interval: Duration) -> SyncHandle {
    let counters = Arc::new(SyncCounts::default());
    let client = match redis::Client::open(url) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(
                zone = zone.name(),
                "sticky learn sync={url:?} is not usable: {error}"
            );
            counters.failures.fetch_add(1, Ordering::Relaxed);
            let link = Arc::new(SyncLink {
                outbox: None,
                target: String::from("(unusable URL)"),
                counts: counters,
            });
            zone.attach_sync(link.clone());
            let task = tokio::spawn(async {}).abort_handle();
            return SyncHandle { link, task };
        }
    };
    let target = worker::target(&client);
    let wake = Arc::new(tokio::sync::Notify::new());
    let waker = wake.clone();
    let outbox = Arc::new(Outbox::new(OUTBOX_CAPACITY, move || waker.notify_one()));
    let link = Arc::new(SyncLink {
        outbox: Some(outbox.clone()),
        target: target.clone(),
        counts: counters.clone(),
    });
    zone.attach_sync(link.clone());
    let worker = worker::Worker::new(
        &zone,
        client,
        worker::Wiring {
            outbox,
            wake,
            counters,
            target,
            log_interval,
        },
    );
    let task = tokio::spawn(worker.run()).abort_handle();
    SyncHandle { link, task }
}
