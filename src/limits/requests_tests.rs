use super::*;

fn zone(rate: u64, size: u64) -> RequestZone {
    let spec = RequestZoneSpec {
        name: "one".into(),
        key: "$binary_remote_addr".into(),
        size,
        rate,
        span: crate::config::Span::builtin(),
    };
    RequestZone::new(&spec)
}

impl RequestZone {
    fn at(&self, key: &[u8], burst: u64, now: u64) -> Lookup {
        let mut table = self.lock();
        self.lookup_at(&mut table, key, burst, true, now)
    }
}

#[test]
fn one_per_second_without_burst() {
    let zone = zone(1000, 1 << 20);
    assert_eq!(zone.at(b"k", 0, 0), Lookup::Passed(0));
    // Half a second later the bucket still holds half a request: the new one overflows it.
    assert_eq!(zone.at(b"k", 0, 500), Lookup::Busy(500));
    // A refused request is not counted: one second after the first, there is room again.
    assert_eq!(zone.at(b"k", 0, 1000), Lookup::Passed(0));
    assert_eq!(zone.at(b"other", 0, 1000), Lookup::Passed(0));
}

#[test]
fn a_burst_at_once_fills_the_bucket_then_overflows() {
    let zone = zone(10_000, 1 << 20);
    let seen: Vec<Lookup> = (0..7).map(|_| zone.at(b"k", 5000, 0)).collect();
    let passed = |excess| Lookup::Passed(excess);
    assert_eq!(
        seen,
        [
            passed(0),
            passed(1000),
            passed(2000),
            passed(3000),
            passed(4000),
            passed(5000),
            Lookup::Busy(6000),
        ]
    );
    // 10 r/s drains one request in 100 ms: 250 ms later two and a half have gone.
    assert_eq!(zone.at(b"k", 5000, 250), Lookup::Passed(3500));
}

#[test]
fn per_minute_rates_drain_in_thousandths() {
    // 30r/m is 500 thousandths per second: a request every two seconds.
    let zone = zone(500, 1 << 20);
    assert_eq!(zone.at(b"k", 0, 0), Lookup::Passed(0));
    assert_eq!(zone.at(b"k", 0, 1999), Lookup::Busy(1));
    assert_eq!(zone.at(b"k", 0, 2000), Lookup::Passed(0));
}

#[test]
fn distinct_keys_never_outgrow_the_declared_size() {
    let zone = zone(1000, 32 * 1024);
    for n in 0..10_000u32 {
        assert!(matches!(zone.at(&n.to_be_bytes(), 0, 0), Lookup::Passed(_)));
        assert!(zone.len() <= 32 * 1024 / 128);
    }
    assert_eq!(zone.len(), 256);
    // The most recent keys are the ones remembered: the last one is still limited.
    assert_eq!(zone.at(&9_999u32.to_be_bytes(), 0, 1), Lookup::Busy(999));
    // The oldest were forgotten: the first key starts afresh.
    assert_eq!(zone.at(&0u32.to_be_bytes(), 0, 1), Lookup::Passed(0));
}

#[test]
fn idle_drained_keys_are_forgotten_when_new_ones_come() {
    let zone = zone(1000, 1 << 20);
    zone.at(b"old", 0, 0);
    zone.at(b"newer", 0, 30_000);
    assert_eq!(zone.len(), 2);
    // A minute after "old" was last seen, a new key takes it out (not "newer": 30 s only).
    zone.at(b"new", 0, 60_000);
    assert_eq!(zone.len(), 2);
    assert!(zone.lock().find(b"old").is_none());
}

#[test]
fn held_buckets_are_never_evicted_so_a_full_zone_refuses() {
    let zone = zone(1000, 32 * 1024);
    for n in 0..256u32 {
        assert!(matches!(
            zone.lookup(&n.to_be_bytes(), 0, false),
            Lookup::Held(_)
        ));
    }
    assert_eq!(zone.lookup(b"one more", 0, true), Lookup::Full);
}

#[test]
fn a_held_request_is_counted_when_accounted_and_not_when_released() {
    let zone = zone(1000, 1 << 20);
    let Lookup::Held(slot) = zone.lookup(b"k", 0, false) else {
        panic!("a new key within its burst is held");
    };
    assert_eq!(zone.account(slot), 0);
    // Accounted: the next request within the second overflows.
    assert!(matches!(zone.lookup(b"k", 0, true), Lookup::Busy(_)));
    let zone = self::zone(1000, 1 << 20);
    let Lookup::Held(slot) = zone.lookup(b"k", 0, false) else {
        panic!("held");
    };
    zone.release(slot);
    assert_eq!(zone.lookup(b"k", 0, true), Lookup::Passed(0));
}
