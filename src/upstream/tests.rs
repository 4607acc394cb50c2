use std::time::Duration;

use super::affinity::HashKey;
use super::learn::Presented;
use super::*;
use crate::balance::{Key, Method};
use crate::config::{Span, StickyCookie};
use crate::peer::{Moment, PeerKey, PeerRegistry, now_ms};

struct Server {
    address: &'static str,
    backup: bool,
    down: bool,
    drain: bool,
    drain_timeout: Option<Duration>,
    max_conns: u32,
}

fn server(address: &'static str) -> Server {
    Server {
        address,
        backup: false,
        down: false,
        drain: false,
        drain_timeout: None,
        max_conns: 0,
    }
}

/// Servers with `max_fails=1 fail_timeout=60s`, balanced round robin.
fn group(servers: Vec<Server>, sticky: Option<StickyMode>) -> Group {
    group_with(Method::RoundRobin, servers, sticky)
}

fn group_with(method: Method, servers: Vec<Server>, sticky: Option<StickyMode>) -> Group {
    let registry = PeerRegistry::default();
    let members = servers
        .into_iter()
        .map(|s| Member {
            peer: registry.get_or_insert(
                PeerKey::new("g".into(), s.address.into()),
                vec!["127.0.0.1:1".parse().unwrap()],
                4,
            ),
            spec: MemberSpec {
                weight: 1,
                fail_policy: FailPolicy {
                    max_fails: 1,
                    fail_timeout_ms: 60_000,
                },
                max_conns: s.max_conns,
                backup: s.backup,
                down: s.down,
                drain: s.drain,
                drain_timeout: s.drain_timeout,
                slow_start: Duration::ZERO,
                route: Some(format!("r-{}", s.address)),
            },
        })
        .collect();
    let spec = GroupSpec {
        method,
        hash_key: None,
        sticky,
        keepalive_timeout: Duration::from_secs(60),
        health_check: None,
    };
    Group::new("g".into(), members, spec)
}

/// `sticky cookie srv` (a session cookie, values keyed by the group name).
fn cookie() -> Option<StickyMode> {
    Some(StickyMode::Cookie(StickyCookie {
        name: "srv".into(),
        expires: None,
        domain: None,
        path: "/".into(),
        http_only: false,
        secure: false,
        same_site: None,
        secret: None,
        span: Span::builtin(),
    }))
}

/// A request with neither a hash key nor a pin.
const NO_KEY: Affinity = Affinity {
    key: HashKey::None,
    pinned: None,
    presented: None,
    learned: Presented::NOTHING,
};

/// A request whose cookie (or route) carries `value`.
fn pinned(g: &Group, value: &str) -> Affinity {
    Affinity {
        key: HashKey::None,
        pinned: g.sticky.as_ref().and_then(|sticky| sticky.find(value)),
        presented: Some(Key::stale(value.as_bytes())),
        learned: Presented::NOTHING,
    }
}

fn address(g: &Group, affinity: &Affinity, tried: &Tried) -> Result<String, NoPeer> {
    g.choose(affinity, tried)
        .map(|c| c.peer.key.address.to_string())
}

/// The address a choice at `now` (milliseconds on [`now_ms`]'s clock) makes.
fn address_at(g: &Group, affinity: &Affinity, now: u64) -> Result<String, NoPeer> {
    g.choose_at(affinity, &Tried::default(), &Moment::at(now))
        .map(|c| c.peer.key.address.to_string())
}

/// After the test groups' `fail_timeout`, on [`now_ms`]'s clock.
fn after_fail_timeout() -> u64 {
    now_ms() + 60_001
}

#[test]
fn primaries_take_new_sessions_then_backups_then_nothing() {
    let g = group(
        vec![
            server("a"),
            Server {
                down: true,
                ..server("b")
            },
            Server {
                backup: true,
                ..server("c")
            },
        ],
        None,
    );
    let mut tried = Tried::default();
    for _ in 0..4 {
        assert_eq!(
            address(&g, &NO_KEY, &tried).unwrap(),
            "a",
            "down b is skipped"
        );
    }
    tried.add(0);
    assert_eq!(
        address(&g, &NO_KEY, &tried).unwrap(),
        "c",
        "the backup once a is out"
    );
    tried.add(2);
    assert_eq!(address(&g, &NO_KEY, &tried), Err(NoPeer::AllDown));
}

#[test]
fn a_failed_primary_sends_new_sessions_to_backups_until_it_recovers() {
    let g = group(
        vec![
            server("a"),
            Server {
                backup: true,
                ..server("b")
            },
        ],
        None,
    );
    let tried = Tried::default();
    g.record_failure(0);
    for _ in 0..3 {
        assert_eq!(address(&g, &NO_KEY, &tried).unwrap(), "b");
    }
    assert!(
        g.member(0)
            .peer
            .state
            .is_failed(g.member(0).spec.fail_policy)
    );
    // After fail_timeout a is tried again; its success brings it back.
    assert_eq!(address_at(&g, &NO_KEY, after_fail_timeout()).unwrap(), "a");
    g.record_success(0);
    assert_eq!(address(&g, &NO_KEY, &tried).unwrap(), "a");
    g.member(0).peer.state.set_check_state(CheckState::Down);
    assert_eq!(
        address(&g, &NO_KEY, &tried).unwrap(),
        "b",
        "active checks count too"
    );
}

#[test]
fn a_cookie_pins_to_any_usable_server_and_garbage_is_rebalanced() {
    let g = group(
        vec![
            server("a"),
            Server {
                drain: true,
                ..server("b")
            },
            Server {
                backup: true,
                ..server("c")
            },
        ],
        cookie(),
    );
    let tried = Tried::default();
    for index in [1, 2] {
        let choice = g.choose(&pinned(&g, g.cookie_value(index).unwrap()), &tried);
        let choice = choice.unwrap();
        assert_eq!(
            (choice.member, choice.set_cookie.is_some()),
            (index, false),
            "draining and backup servers keep their sessions"
        );
    }
    for garbage in ["", "zz", "0123456789abcdef0", "a"] {
        let choice = g.choose(&pinned(&g, garbage), &tried).unwrap();
        assert_eq!(
            (choice.member, choice.set_cookie.is_some()),
            (0, true),
            "{garbage:?} is rebalanced to a primary, never to a draining server"
        );
    }
    assert_eq!(g.member(0).peer.state.picked_by_balancer(), 4);
    assert_eq!(g.member(2).peer.state.picked_by_sticky(), 1);
}

#[test]
fn a_recovered_server_in_slow_start_is_ramped_up_not_flooded() {
    let mut g = group(vec![server("a"), server("b")], None);
    g.members[1].spec.slow_start = Duration::from_secs(3600);
    let b = &g.member(1).peer.state;
    let tried = Tried::default();
    // Never down: slow start does not apply, b takes its turn.
    let to_b = (0..100)
        .filter(|_| address(&g, &NO_KEY, &tried).unwrap() == "b")
        .count();
    assert_eq!(to_b, 50);
    // Back from being out a moment ago (its trial succeeded): at the very start of an hour's
    // ramp.
    let policy = g.member(1).spec.fail_policy;
    assert!(b.record_failure(policy));
    assert!(b.claim(policy, &Moment::at(after_fail_timeout())));
    b.record_success(policy);
    assert!(b.recovered_for_ms().is_some());
    let to_b = (0..1000)
        .filter(|_| address(&g, &NO_KEY, &tried).unwrap() == "b")
        .count();
    assert!(
        to_b < 20,
        "{to_b} of 1000 reached a server 0 % into its ramp"
    );
}

#[test]
fn states_for_the_status_page() {
    let g = group(
        vec![
            server("a"),
            Server {
                down: true,
                ..server("b")
            },
            Server {
                drain: true,
                ..server("c")
            },
        ],
        None,
    );
    let states: Vec<_> = g.members().iter().map(|m| m.state(false)).collect();
    assert_eq!(
        states,
        [ServerState::Up, ServerState::Down, ServerState::Draining]
    );
    assert_eq!(g.member(0).state(true), ServerState::Checking);
    g.member(0).peer.state.set_check_state(CheckState::Up);
    assert_eq!(g.member(0).state(true), ServerState::Up);
    g.record_failure(0);
    assert_eq!(g.member(0).state(true), ServerState::Down);
}

#[test]
fn a_server_ramping_up_shows_slow_start_with_its_progress() {
    let mut g = group(vec![server("a"), server("b")], None);
    g.members[1].spec.slow_start = Duration::from_secs(3600);
    assert_eq!(g.member(1).state(false), ServerState::Up, "never down yet");
    g.member(1).peer.state.set_check_state(CheckState::Down);
    assert_eq!(g.member(1).state(false), ServerState::Down);
    g.member(1).peer.state.set_check_state(CheckState::Up);
    assert_eq!(
        g.member(1).state(false),
        ServerState::SlowStart { percent: 0 },
        "an hour's ramp has just begun"
    );
    assert_eq!(g.member(1).state(false).as_str(), "slow-start");
}

#[test]
fn sticky_route_matches_route_values() {
    let g = group(
        vec![server("a"), server("b")],
        Some(StickyMode::Route(Vec::new())),
    );
    let choice = g.choose(&pinned(&g, "r-b"), &Tried::default()).unwrap();
    assert_eq!(&*choice.peer.key.address, "b");
    assert_eq!(choice.peer.state.picked_by_sticky(), 1);
    assert!(choice.set_cookie.is_none(), "routes set no cookie");
    assert!(g.cookie_value(0).is_none());
}

#[test]
fn full_servers_are_passed_over_and_all_full_is_busy() {
    let g = group(
        vec![
            Server {
                max_conns: 1,
                ..server("a")
            },
            Server {
                max_conns: 1,
                ..server("b")
            },
        ],
        None,
    );
    let tried = Tried::default();
    let first = g.choose(&NO_KEY, &tried).unwrap().peer.begin();
    let second = g.choose(&NO_KEY, &tried).unwrap().peer.begin();
    assert_ne!(first.peer().key.address, second.peer().key.address);
    assert_eq!(address(&g, &NO_KEY, &tried), Err(NoPeer::AllBusy));
    drop(first);
    assert!(g.choose(&NO_KEY, &tried).is_ok());
}

#[test]
fn the_only_server_of_a_group_is_never_taken_out() {
    let g = group(vec![server("a")], None);
    for _ in 0..3 {
        g.record_failure(0);
        assert_eq!(address(&g, &NO_KEY, &Tried::default()).unwrap(), "a");
    }
    assert_eq!(g.member(0).state(false), ServerState::Up);
    assert_eq!(
        g.member(0).peer.state.failures(),
        3,
        "still counted for status"
    );

    // With a backup it is not alone: nginx takes it out and the backup serves.
    let g = group(
        vec![
            server("a"),
            Server {
                backup: true,
                ..server("b")
            },
        ],
        None,
    );
    g.record_failure(0);
    assert_eq!(address(&g, &NO_KEY, &Tried::default()).unwrap(), "b");
}

#[test]
fn when_no_server_can_be_chosen_every_failure_is_forgotten() {
    let g = group(vec![server("a"), server("b")], None);
    g.record_failure(0);
    g.record_failure(1);
    let tried = Tried::default();
    assert_eq!(address(&g, &NO_KEY, &tried), Err(NoPeer::AllDown));
    // The next request tries them again, long before fail_timeout.
    let mut next: Vec<String> = (0..2)
        .map(|_| address(&g, &NO_KEY, &tried).unwrap())
        .collect();
    next.sort();
    assert_eq!(next, ["a", "b"]);
}

#[test]
fn quick_recovery_waits_for_the_backups_too() {
    let g = group(
        vec![
            server("a"),
            Server {
                backup: true,
                ..server("bk")
            },
        ],
        None,
    );
    let tried = Tried::default();
    g.record_failure(0);
    for _ in 0..3 {
        assert_eq!(
            address(&g, &NO_KEY, &tried).unwrap(),
            "bk",
            "a stays out while the backup serves"
        );
    }
    g.record_failure(1);
    assert_eq!(address(&g, &NO_KEY, &tried), Err(NoPeer::AllDown));
    assert_eq!(
        address(&g, &NO_KEY, &tried).unwrap(),
        "a",
        "primaries first"
    );
}

#[test]
fn quick_recovery_leaves_servers_active_checks_hold_down() {
    let g = group(vec![server("a"), server("b"), server("c")], None);
    g.member(0).peer.state.set_check_state(CheckState::Down);
    g.member(1).peer.state.set_check_state(CheckState::Pending);
    g.record_failure(2);
    let tried = Tried::default();
    assert_eq!(address(&g, &NO_KEY, &tried), Err(NoPeer::AllDown));
    for _ in 0..3 {
        assert_eq!(address(&g, &NO_KEY, &tried).unwrap(), "c");
    }
    // Checked down everywhere: nothing passive logic could forgive, 502 every time.
    g.member(2).peer.state.set_check_state(CheckState::Down);
    for _ in 0..3 {
        assert_eq!(address(&g, &NO_KEY, &tried), Err(NoPeer::AllDown));
    }
}

#[test]
fn a_hashed_key_steps_past_its_failed_server_and_comes_back_after_quick_recovery() {
    let g = group_with(
        Method::Hash { consistent: true },
        vec![server("a"), server("b"), server("c")],
        None,
    );
    let ctx = Affinity {
        key: HashKey::Rendered("user-42".into()),
        pinned: None,
        presented: None,
        learned: Presented::NOTHING,
    };
    let tried = Tried::default();
    let home = g.choose(&ctx, &tried).unwrap().member;
    g.record_failure(home);
    let next = g.choose(&ctx, &tried).unwrap().member;
    assert_ne!(next, home, "the key steps to the next server");
    for index in 0..3 {
        if index != home {
            g.record_failure(index);
        }
    }
    assert_eq!(
        g.choose(&ctx, &tried).map(|c| c.member),
        Err(NoPeer::AllDown)
    );
    assert_eq!(g.choose(&ctx, &tried).unwrap().member, home, "home again");
}

#[test]
fn a_cookie_of_a_failed_server_is_rebalanced_until_quick_recovery() {
    let g = group(vec![server("a"), server("b")], cookie());
    let ctx = pinned(&g, g.cookie_value(0).unwrap());
    let tried = Tried::default();
    g.record_failure(0);
    let choice = g.choose(&ctx, &tried).unwrap();
    assert_eq!(
        (choice.member, choice.set_cookie.is_some()),
        (1, true),
        "re-pinned"
    );
    g.record_failure(1);
    assert!(g.choose(&ctx, &tried).is_err());
    let choice = g.choose(&ctx, &tried).unwrap();
    assert_eq!(
        (choice.member, choice.set_cookie.is_some()),
        (0, false),
        "back home by its cookie"
    );
}

#[test]
fn an_out_server_gets_one_trial_however_many_picks_come() {
    let g = group(vec![server("a"), server("b")], None);
    g.record_failure(0);
    let later = after_fail_timeout();
    let to_a = (0..10)
        .filter(|_| address_at(&g, &NO_KEY, later).unwrap() == "a")
        .count();
    assert_eq!(to_a, 1, "the trial; the others wait for its outcome");
    // It failed: out again, for another fail_timeout counted from the failure.
    g.record_failure(0);
    for _ in 0..3 {
        assert_eq!(address(&g, &NO_KEY, &Tried::default()).unwrap(), "b");
    }
}

#[test]
fn slow_start_never_refuses_a_request_nobody_else_can_take() {
    for servers in [vec![server("a")], vec![server("a"), server("b")]] {
        let mut g = group(servers, None);
        for i in 0..g.len() {
            g.members[i].spec.slow_start = Duration::from_secs(3600);
            // Back from a failed check a moment ago: 0 % into an hour's ramp.
            let state = &g.member(i).peer.state;
            state.set_check_state(CheckState::Down);
            state.set_check_state(CheckState::Up);
        }
        for _ in 0..100 {
            assert!(g.choose(&NO_KEY, &Tried::default()).is_ok());
        }
    }
}

#[test]
fn a_drain_with_a_timeout_repins_its_sessions() {
    let g = group(
        vec![
            server("a"),
            Server {
                drain: true,
                drain_timeout: Some(Duration::from_secs(10)),
                ..server("b")
            },
        ],
        cookie(),
    );
    let choice = g.choose(&pinned(&g, g.cookie_value(1).unwrap()), &Tried::default());
    let choice = choice.unwrap();
    assert_eq!(
        (choice.member, choice.set_cookie.is_some()),
        (0, true),
        "its clients reconnect elsewhere, with a cookie that keeps them there"
    );
}

#[test]
fn a_value_naming_a_member_is_keyed_as_if_hashed_per_request() {
    // The keys are precomputed per member: they must be what hashing the value gives, or a
    // client re-pinned from a down server would land elsewhere than its other requests.
    let g = group(vec![server("a"), server("b")], cookie());
    let sticky = g.sticky.as_ref().unwrap();
    for index in 0..2 {
        let value = g.cookie_value(index).unwrap();
        let key = Key::stale(value.as_bytes());
        assert_eq!(sticky.placed_by(value), (Some(index), Some(key)));
    }
    let forged = "0123456789abcdef";
    let key = Key::stale(forged.as_bytes());
    assert_eq!(sticky.placed_by(forged), (None, Some(key)));

    let g = group(
        vec![server("a"), server("b")],
        Some(StickyMode::Route(Vec::new())),
    );
    let sticky = g.sticky.as_ref().unwrap();
    assert_eq!(sticky.placed_by("r-b"), (Some(1), Some(Key::stale(b"r-b"))));
    assert_eq!(sticky.placed_by("r-c"), (None, Some(Key::stale(b"r-c"))));
}
