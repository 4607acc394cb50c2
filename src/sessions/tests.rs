use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;

const MINUTE: Duration = Duration::from_secs(60);
/// [`MINUTE`] as the zone's clock counts.
const MINUTE_MS: u64 = 60_000;

#[test]
fn a_learned_session_is_found_and_an_unknown_one_is_not() {
    let zone = SessionZone::new("s", 1 << 20, MINUTE);
    let now = 1_000;
    assert_eq!(zone.lookup(b"abc", now), None);
    zone.learn(b"abc", "0123456789abcdef", now);
    assert_eq!(
        zone.lookup(b"abc", now).as_deref(),
        Some("0123456789abcdef")
    );
    zone.learn(b"abc", "fedcba9876543210", now);
    assert_eq!(
        zone.lookup(b"abc", now).as_deref(),
        Some("fedcba9876543210")
    );
    assert_eq!(zone.len(), 1);
}

#[test]
fn a_repin_moves_the_session_a_lookup_found_and_nothing_stored_since() {
    let zone = SessionZone::new("s", 1 << 20, MINUTE);
    let now = 1_000;
    zone.learn(b"abc", "0123456789abcdef", now);
    let (_, found) = zone.lookup_with(b"abc", now, |_| ()).unwrap();
    zone.repin(found, "fedcba9876543210", now);
    assert_eq!(
        zone.lookup(b"abc", now).as_deref(),
        Some("fedcba9876543210")
    );
    let counts = zone.counts();
    assert_eq!(counts.repinned.load(Ordering::Relaxed), 1);
    assert_eq!(counts.learned.load(Ordering::Relaxed), 1);
    // The re-pin stored the session anew: the old reference names nothing now, even though the
    // slot it points to holds a session again.
    zone.repin(found, "aaaaaaaaaaaaaaaa", now);
    assert_eq!(
        zone.lookup(b"abc", now).as_deref(),
        Some("fedcba9876543210")
    );
    assert_eq!(counts.repinned.load(Ordering::Relaxed), 1);
}

#[test]
fn a_session_expires_after_timeout_without_a_request_and_each_request_slides_it() {
    let zone = SessionZone::new("s", 1 << 20, MINUTE);
    let start = 1_000;
    zone.learn(b"kept", "a", start);
    zone.learn(b"idle", "b", start);
    // A request 50 s in renews "kept" to 110 s; "idle" still ends at 60 s.
    let later = start + 50_000;
    assert!(zone.lookup(b"kept", later).is_some());
    let past_first_timeout = start + 61_000;
    assert_eq!(zone.lookup(b"idle", past_first_timeout), None);
    assert!(zone.lookup(b"kept", past_first_timeout).is_some());
    assert_eq!(zone.lookup(b"kept", past_first_timeout + MINUTE_MS), None);
    assert_eq!(
        zone.counts()
            .expired
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[test]
fn a_full_zone_forgets_the_least_recently_used_session() {
    // 256 bytes a session: a 1 KiB zone holds four (nginx: ~4000 per megabyte).
    let zone = SessionZone::new("s", 1024, MINUTE);
    let now = 1_000;
    for key in [b"a", b"b", b"c", b"d"] {
        zone.learn(key, "v", now);
    }
    assert!(zone.lookup(b"a", now).is_some()); // "b" is now the least recently used
    zone.learn(b"e", "v", now);
    assert_eq!(zone.len(), 4);
    assert_eq!(zone.lookup(b"b", now), None);
    for key in [b"a", b"c", b"d", b"e"] {
        assert!(zone.lookup(key, now).is_some());
    }
}

#[test]
fn a_megabyte_holds_about_four_thousand_sessions_as_nginx_documents() {
    let zone = SessionZone::new("s", 1 << 20, MINUTE);
    let now = 1_000;
    for i in 0..10_000u32 {
        // A SignalR connection token is 22 characters.
        zone.learn(format!("{i:022}").as_bytes(), "0123456789abcdef", now);
    }
    assert_eq!(zone.len(), 4096);
}

#[test]
fn expired_sessions_make_room_before_live_ones_are_evicted() {
    let zone = SessionZone::new("s", 512, MINUTE);
    let now = 1_000;
    zone.learn(b"old", "v", now);
    zone.learn(b"live", "v", now + 30_000);
    zone.learn(b"new", "v", now + 61_000);
    let counts = zone.counts();
    assert_eq!(counts.evicted.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert!(zone.lookup(b"live", now + 61_000).is_some());
}

#[test]
fn keys_that_are_empty_or_too_long_are_not_learned() {
    let zone = SessionZone::new("s", 1 << 20, MINUTE);
    let now = 1_000;
    zone.learn(b"", "v", now);
    zone.learn(&[b'x'; MAX_KEY_LEN + 1], "v", now);
    assert!(zone.is_empty());
    zone.learn(&[b'x'; MAX_KEY_LEN], "v", now);
    assert_eq!(zone.len(), 1);
}

#[test]
fn local_learns_reach_the_outbox_and_sessions_from_elsewhere_do_not() {
    let zone = SessionZone::new("s", 1 << 20, MINUTE);
    let now = 1_000;
    zone.learn(b"before", "v", now); // no outbox yet: nothing to publish to
    let outbox = Arc::new(Outbox::new(16, || {}));
    zone.attach_sync(Arc::new(SyncLink {
        outbox: Some(outbox.clone()),
        target: "test".into(),
        counts: Arc::default(),
    }));
    assert!(zone.has_outbox());
    zone.learn(b"here", "1", now);
    zone.learned_elsewhere(b"there", "2", now);
    assert_eq!(outbox.take(), vec![(b"here".to_vec(), "1".to_string())]);
    assert_eq!(zone.lookup(b"there", now).as_deref(), Some("2"));
}

#[test]
fn the_registry_keeps_a_zone_whose_declaration_is_unchanged() {
    let registry = SessionRegistry::default();
    let spec = ZoneSpec {
        name: "s".into(),
        size: 1 << 20,
        timeout: MINUTE,
        sync: None,
    };
    let zone = registry.zone(&spec);
    zone.learn(b"k", "v", 1_000);
    assert!(Arc::ptr_eq(&zone, &registry.zone(&spec)));
    let resized = ZoneSpec {
        size: 2 << 20,
        ..spec.clone()
    };
    let new = registry.zone(&resized);
    assert!(!Arc::ptr_eq(&zone, &new));
    assert!(new.is_empty());
    assert!(registry.synced().is_empty());
    let synced = ZoneSpec {
        sync: Some("redis://127.0.0.1:6379".into()),
        ..resized
    };
    let zone = registry.zone(&synced);
    let listed = registry.synced();
    assert_eq!(listed.len(), 1);
    assert!(Arc::ptr_eq(&listed[0].0, &zone));
    assert_eq!(listed[0].1, "redis://127.0.0.1:6379");
}
