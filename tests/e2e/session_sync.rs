//! Learned sessions shared through a real redis-server (`sticky learn ... sync=redis://`): two
//! zones stand for the same zone on two tether instances, each with its own sync task, as two
//! processes would have. A session learned on one is known on the other; an instance that
//! starts late catches up; Redis killed, restarted or frozen costs no learn a wait, is counted
//! and logged once per interval, and the sessions learned meanwhile arrive once Redis is back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tether::session_sync::{SyncHandle, SyncStats, Syncs, spawn_sync};
use tether::sessions::{SessionRegistry, SessionZone, ZoneSpec, clock};

use crate::harness::logs::Logs;
use crate::harness::redis::Redis;
use crate::harness::session::until;

const TIMEOUT: Duration = Duration::from_secs(600);
/// Long enough that a test sees at most one failure line per task.
const LOG_INTERVAL: Duration = Duration::from_secs(60);
/// A sticky value, as a `sticky cookie` would carry it.
const SERVER_A: &str = "4f2a9c0d11e3b7a5";
const SERVER_B: &str = "9b03e1c2d4f5a607";

/// One tether instance's view: its zone and the sync sharing it.
struct Instance {
    zone: Arc<SessionZone>,
    sync: SyncHandle,
}

impl Instance {
    fn start(name: &str, url: &str) -> Instance {
        let zone = Arc::new(SessionZone::new(name, 1 << 20, TIMEOUT));
        let sync = spawn_sync(zone.clone(), url, LOG_INTERVAL);
        Instance { zone, sync }
    }

    fn knows(&self, key: &str) -> Option<String> {
        self.zone.lookup(key.as_bytes(), clock::now_ms())
    }

    fn learn(&self, key: &str, value: &str) {
        self.zone.learn(key.as_bytes(), value, clock::now_ms());
    }

    fn stats(&self) -> SyncStats {
        self.sync.stats()
    }
}

/// Two instances of zone `chat` syncing through `redis`'s database 0, both connected.
async fn two_connected(redis: &Redis) -> (Instance, Instance) {
    let (a, b) = (
        Instance::start("chat", &redis.url(0)),
        Instance::start("chat", &redis.url(0)),
    );
    until_connected(&[&a, &b]).await;
    (a, b)
}

async fn until_connected(instances: &[&Instance]) {
    until("every sync to connect", || {
        instances.iter().all(|instance| instance.stats().connected)
    })
    .await;
}

#[tokio::test]
async fn a_session_learned_on_one_instance_is_routed_the_same_on_the_other() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let (a, b) = two_connected(&redis).await;

    a.learn("token-1", SERVER_A);
    until("b to know the session a learned", || {
        b.knows("token-1").is_some()
    })
    .await;
    assert_eq!(b.knows("token-1").as_deref(), Some(SERVER_A));

    // In Redis as the module documents it: the sticky value, expiring after the zone's timeout.
    let mut redis_connection = redis.connection(0).await;
    let (value, ttl): (String, i64) = redis::pipe()
        .get("tether:chat:token-1")
        .ttl("tether:chat:token-1")
        .query_async(&mut redis_connection)
        .await
        .expect("read the key");
    assert_eq!(value, SERVER_A);
    assert!(
        (1..=TIMEOUT.as_secs() as i64).contains(&ttl),
        "expires with the zone's timeout: {ttl}"
    );

    // What b received is not written again, and a does not take its own announcement back.
    b.learn("token-2", SERVER_B);
    until("a to know the session b learned", || {
        a.knows("token-2").is_some()
    })
    .await;
    let (a_stats, b_stats) = (a.stats(), b.stats());
    assert_eq!((a_stats.published, a_stats.received), (1, 1), "{a_stats:?}");
    assert_eq!((b_stats.published, b_stats.received), (1, 1), "{b_stats:?}");
    assert_eq!((a_stats.failures, b_stats.failures), (0, 0));
}

#[tokio::test]
async fn an_instance_that_starts_late_reads_every_session_already_in_redis() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let a = Instance::start("chat", &redis.url(0));
    // Another zone's session on the same Redis: not this zone's business.
    let other = Instance::start("other", &redis.url(0));
    until_connected(&[&a, &other]).await;
    // More than one SCAN page and one write batch.
    let count = 600;
    for i in 0..count {
        a.learn(&format!("token-{i}"), SERVER_A);
    }
    other.learn("elsewhere", SERVER_B);
    until("a to write every session", || a.stats().published == count).await;
    until("the other zone to write", || other.stats().published == 1).await;

    let late = Instance::start("chat", &redis.url(0));
    until_connected(&[&late]).await;
    for i in 0..count {
        assert_eq!(late.knows(&format!("token-{i}")).as_deref(), Some(SERVER_A));
    }
    assert_eq!(late.knows("elsewhere"), None);
    assert_eq!(late.stats().received, count);
}

#[tokio::test]
async fn instances_on_other_databases_of_one_redis_do_not_share() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let a = Instance::start("chat", &redis.url(1));
    let same_db = Instance::start("chat", &redis.url(1));
    let other_db = Instance::start("chat", &redis.url(2));
    until_connected(&[&a, &same_db, &other_db]).await;
    a.learn("token-1", SERVER_A);
    until("the same database to hear of it", || {
        same_db.knows("token-1").is_some()
    })
    .await;
    assert_eq!(other_db.knows("token-1"), None);
    assert_eq!(other_db.stats().received, 0);
}

#[tokio::test]
async fn redis_killed_and_restarted_costs_no_session_learned_meanwhile_and_one_log_line() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let logs = Logs::capture();
    let (a, b) = two_connected(&redis).await;
    a.learn("before", SERVER_A);
    until("b to know the first session", || {
        b.knows("before").is_some()
    })
    .await;

    redis.kill();
    // The request path only queues: learning and looking up go on while Redis is gone.
    a.learn("during", SERVER_B);
    assert_eq!(a.knows("during").as_deref(), Some(SERVER_B));
    assert_eq!(b.knows("before").as_deref(), Some(SERVER_A));
    until("several failed reconnects of a", || a.stats().failures >= 3).await;
    assert!(!a.stats().connected);
    let failing = logs.lines_with("failing");
    assert_eq!(
        failing.len(),
        2,
        "one line per task within the interval, whatever the attempts: {failing:#?}"
    );

    // Back empty, as a Redis without persistence comes back: a writes what waited, b hears it.
    redis.restart().await;
    until(
        "b to know the session a learned while redis was down",
        || b.knows("during").is_some(),
    )
    .await;
    assert_eq!(b.knows("during").as_deref(), Some(SERVER_B));
    until_connected(&[&a, &b]).await;
    assert_eq!(logs.lines_with("works again").len(), 2);
    assert_eq!(logs.lines_with("failing").len(), 2);
    assert_eq!(a.stats().dropped, 0);
}

#[tokio::test]
async fn a_redis_that_stops_answering_is_a_counted_failure_and_sessions_flow_again_after() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let (a, b) = two_connected(&redis).await;

    redis.freeze();
    let started = Instant::now();
    a.learn("during", SERVER_A);
    // Queued, not written: the learn cannot have waited on a Redis that does not answer.
    assert!(started.elapsed() < Duration::from_secs(1));
    until("a to count the hung redis as a failure", || {
        a.stats().failures >= 1
    })
    .await;
    redis.thaw();
    until("b to know the session once redis answers again", || {
        b.knows("during").is_some()
    })
    .await;
    // The write that timed out may still have been done once Redis woke (that may be how b
    // heard of it); a counts it published only when a write is acknowledged, after
    // reconnecting. Writing a session twice is harmless.
    until("a to write the session again on a new connection", || {
        a.stats().published == 1
    })
    .await;
    // What waited is written first, then the keys are read: connected once caught up.
    until("a to be connected again, caught up", || a.stats().connected).await;
}

#[tokio::test]
async fn the_sync_ends_with_its_zone() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let a = Instance::start("chat", &redis.url(0));
    until_connected(&[&a]).await;
    let Instance { zone, sync } = a;
    drop(zone);
    until("the task to end once the zone is gone", || {
        sync.is_finished()
    })
    .await;
}

#[tokio::test]
async fn an_unusable_url_is_a_counted_failure_and_the_zone_stays_local() {
    let zone = Arc::new(SessionZone::new("chat", 1 << 20, TIMEOUT));
    let sync = spawn_sync(zone.clone(), "http://not-redis", LOG_INTERVAL);
    assert_eq!(sync.stats().failures, 1);
    assert!(!zone.has_outbox());
    zone.learn(b"token", SERVER_A, clock::now_ms());
    assert_eq!(
        zone.lookup(b"token", clock::now_ms()).as_deref(),
        Some(SERVER_A)
    );
}

#[tokio::test]
async fn a_reload_that_keeps_a_synced_zone_keeps_its_one_sync_and_a_changed_zone_gets_a_new_one() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let (registry, syncs) = (SessionRegistry::default(), Syncs::default());
    let mut spec = ZoneSpec {
        name: "chat".to_string(),
        size: 1 << 20,
        timeout: TIMEOUT,
        sync: Some(redis.url(0)),
    };
    let zone = registry.zone(&spec);
    syncs.reconcile(&registry, LOG_INTERVAL);
    until("the zone's sync to connect", || {
        syncs.status().iter().all(|sync| sync.stats.connected)
    })
    .await;
    zone.learn(b"token", SERVER_A, clock::now_ms());
    until("the sync to write the session", || {
        syncs.status()[0].stats.published == 1
    })
    .await;

    // The same declaration after a reload: the same zone, the same sync and its counters.
    let kept = registry.zone(&spec);
    assert!(Arc::ptr_eq(&zone, &kept));
    syncs.reconcile(&registry, LOG_INTERVAL);
    let status = syncs.status();
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!(status[0].stats.published, 1);
    assert_eq!(status[0].target, format!("{}/0", redis.addr));

    // A changed declaration is a new zone: its own sync, which reads the old zone's sessions
    // back from Redis; the old zone's sync goes with the old zone.
    spec.timeout = TIMEOUT * 2;
    let changed = registry.zone(&spec);
    drop((zone, kept));
    syncs.reconcile(&registry, LOG_INTERVAL);
    let status = syncs.status();
    assert_eq!(status.len(), 1, "{status:?}");
    until("the new zone to read the session back", || {
        changed.lookup(b"token", clock::now_ms()).is_some()
    })
    .await;
}
