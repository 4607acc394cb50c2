//! The methods through the public `Balancer`: keys, fallbacks, and the measured consistency
//! figures (remap on scale events, spread) that the README quotes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

fn nodes<'a>(names: &'a [String], weights: &[u32]) -> Vec<Node<'a>> {
    names
        .iter()
        .zip(weights.iter().chain(std::iter::repeat(&1)))
        .map(|(name, &weight)| Node { name, weight })
        .collect()
}

fn names(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("10.0.0.{}:8080", i + 1))
        .collect()
}

fn letters(balancer: &Balancer, count: usize, usable: impl Fn(usize) -> bool) -> String {
    (0..count)
        .map(|_| match balancer.pick(Key::None, &usable, |_| 0) {
            Some(node) => char::from(b'a' + node as u8),
            None => '-',
        })
        .collect()
}

#[test]
fn round_robin_is_nginx_smooth_order() {
    let names = names(3);
    let balancer = Balancer::new(Method::RoundRobin, &nodes(&names, &[5, 1, 1]));
    assert_eq!(letters(&balancer, 7, |_| true), "aabacaa");
    assert_eq!(letters(&balancer, 4, |i| i != 0), "bcbc");
    assert_eq!(letters(&balancer, 2, |_| false), "--");
    assert_eq!(
        letters(&Balancer::new(Method::RoundRobin, &[]), 1, |_| true),
        "-"
    );
}

#[test]
fn least_conn_through_the_balancer() {
    let names = names(3);
    let balancer = Balancer::new(Method::LeastConn, &nodes(&names, &[]));
    let loads = [4, 1, 3];
    let pick = |usable: &dyn Fn(usize) -> bool| balancer.pick(Key::None, usable, |i| loads[i]);
    assert_eq!(pick(&|_| true), Some(1));
    assert_eq!(pick(&|i| i != 1), Some(2));
    let fresh = Balancer::new(Method::LeastConn, &nodes(&names, &[]));
    assert_eq!(
        letters(&fresh, 6, |_| true),
        "abcabc",
        "idle servers take turns"
    );
}

#[test]
fn random_methods_through_the_balancer() {
    let names = names(2);
    for two in [false, true] {
        let balancer = Balancer::new(Method::Random { two }, &nodes(&names, &[1, 4]));
        let heavy = (0..10_000)
            .filter(|_| balancer.pick(Key::None, |_| true, |_| 0) == Some(1))
            .count();
        // Idle: weights alone decide, about 8000 of 10000 (two: ties keep the first draw).
        assert!((7_000..9_500).contains(&heavy), "two={two}: {heavy}");
        assert_eq!(balancer.pick(Key::None, |i| i == 0, |_| 0), Some(0));
    }
}

#[test]
fn hash_methods_without_a_key_take_turns() {
    let names = names(3);
    for method in [
        Method::IpHash,
        Method::Hash { consistent: true },
        Method::Hash { consistent: false },
    ] {
        let balancer = Balancer::new(method, &nodes(&names, &[]));
        assert_eq!(letters(&balancer, 6, |_| true), "abcabc", "{method:?}");
        let empty = balancer.pick(Key::Bytes(b""), |_| true, |_| 0);
        assert_eq!(empty, Some(0), "{method:?}: an empty key is no key");
    }
}

#[test]
fn ip_hash_keys_on_the_slash_24_and_the_whole_ipv6_address() {
    let names = names(10);
    let balancer = Balancer::new(Method::IpHash, &nodes(&names, &[]));
    let pick = |ip: IpAddr| balancer.pick(Key::Ip(ip), |_| true, |_| 0).unwrap();
    for third in 0..50u8 {
        let home = pick(IpAddr::V4(Ipv4Addr::new(192, 168, third, 1)));
        for last in [2, 77, 255] {
            assert_eq!(pick(IpAddr::V4(Ipv4Addr::new(192, 168, third, last))), home);
        }
        let mapped = Ipv4Addr::new(192, 168, third, 9).to_ipv6_mapped();
        assert_eq!(
            pick(IpAddr::V6(mapped)),
            home,
            "IPv4-mapped IPv6 is the IPv4 client"
        );
    }
    // IPv6 hashes all 16 bytes: the interface identifier alone spreads clients.
    let homes: std::collections::HashSet<usize> = (0..200u16)
        .map(|last| {
            pick(IpAddr::V6(Ipv6Addr::new(
                0x2001, 0xdb8, 0, 0, 0, 0, 0, last,
            )))
        })
        .collect();
    assert!(homes.len() >= 8, "{homes:?}");
    // ip_hash sits on the hash-consistent ring: the key bytes are all that differ.
    let ring = Balancer::new(Method::Hash { consistent: true }, &nodes(&names, &[]));
    let ip = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    let by_bytes = ring.pick(Key::Bytes(&[10, 1, 2]), |_| true, |_| 0);
    assert_eq!(ring.pick(Key::Ip(ip), |_| true, |_| 0), by_bytes);
    assert_eq!(
        balancer.pick(Key::Bytes(&[10, 1, 2]), |_| true, |_| 0),
        by_bytes
    );
}

#[test]
fn modulo_hash_falls_back_to_round_robin_after_its_tries() {
    let names = names(3);
    let balancer = Balancer::new(Method::Hash { consistent: false }, &nodes(&names, &[]));
    let key = Key::Bytes(b"alice");
    assert_eq!(
        balancer.pick(key, |_| true, |_| 0),
        Some(1),
        "crc32 modulo, as nginx"
    );
    // One usable node of three: a rehash lands on it or the round-robin fallback does.
    for i in 0..200 {
        let key = format!("user-{i}");
        assert_eq!(
            balancer.pick(Key::Bytes(key.as_bytes()), |n| n == 2, |_| 0),
            Some(2)
        );
    }
    assert_eq!(balancer.pick(key, |_| false, |_| 0), None);
    // Key::Ip hashes the ip_hash key bytes.
    let ip = Key::Ip(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
    let bytes = Key::Bytes(&[10, 1, 2]);
    assert_eq!(
        balancer.pick(ip, |_| true, |_| 0),
        balancer.pick(bytes, |_| true, |_| 0)
    );
}

/// Which node each of `keys` lands on.
fn owners(balancer: &Balancer, keys: &[Key]) -> Vec<usize> {
    keys.iter()
        .map(|&key| balancer.pick(key, |_| true, |_| 0).unwrap())
        .collect()
}

/// The share of keys whose server changes when the tier goes from `before` to `after`.
fn remap(method: Method, keys: &[Key], before: &[String], after: &[String]) -> f64 {
    let owners_named = |names: &[String]| {
        let balancer = Balancer::new(method, &nodes(names, &[]));
        let owners = owners(&balancer, keys);
        owners
            .into_iter()
            .map(|node| names[node].clone())
            .collect::<Vec<_>>()
    };
    let (old, new) = (owners_named(before), owners_named(after));
    let mut moved = 0;
    for (old, new) in old.iter().zip(&new).filter(|(a, b)| a != b) {
        moved += 1;
        // Consistency proper: only the added server gains keys, only the removed one loses.
        if method != (Method::Hash { consistent: false }) {
            assert!(
                !before.contains(new) || !after.contains(old),
                "{old} -> {new}"
            );
        }
    }
    moved as f64 / keys.len() as f64
}

/// A scale event: `count` servers, then one added at the end (`grow`) or the middle one removed.
fn scale(count: usize, grow: bool) -> (Vec<String>, Vec<String>) {
    let before = names(count);
    let after = if grow {
        names(count + 1)
    } else {
        let mut fewer = before.clone();
        fewer.remove(count / 2);
        fewer
    };
    (before, after)
}

/// Each node's share of `keys` relative to a fair share: (min, max).
fn spread(method: Method, keys: &[Key], count: usize) -> (f64, f64) {
    let names = names(count);
    let mut counts = vec![0usize; count];
    for node in owners(&Balancer::new(method, &nodes(&names, &[])), keys) {
        counts[node] += 1;
    }
    let fair = keys.len() as f64 / count as f64;
    let min = *counts.iter().min().unwrap() as f64 / fair;
    let max = *counts.iter().max().unwrap() as f64 / fair;
    (min, max)
}

/// 100k distinct /24 networks (a bijection of 0..2^24 scatters them) and 100k string keys.
fn key_sets(strings: &[String]) -> [(Method, Vec<Key<'_>>); 2] {
    let ips = (0..100_000u32)
        .map(|i| {
            let [_, a, b, c] = (i.wrapping_mul(0x9e37_79b1) & 0xff_ffff).to_be_bytes();
            Key::Ip(IpAddr::V4(Ipv4Addr::new(a, b, c, 1)))
        })
        .collect();
    let bytes = strings.iter().map(|s| Key::Bytes(s.as_bytes())).collect();
    [
        (Method::IpHash, ips),
        (Method::Hash { consistent: true }, bytes),
    ]
}

#[test]
fn consistent_methods_move_about_one_nth_and_spread_evenly() {
    let strings: Vec<String> = (0..100_000).map(|i| format!("session-{i}")).collect();
    for (method, keys) in key_sets(&strings) {
        for (count, grow) in [(4, true), (5, false), (10, true), (10, false)] {
            let (before, after) = scale(count, grow);
            let moved = remap(method, &keys, &before, &after);
            let (from, to) = (before.len(), after.len());
            let bound = 1.0 / from.max(to) as f64 + 0.05;
            eprintln!(
                "{method:?} {from}->{to} servers: {:.2}% of keys moved",
                moved * 100.0
            );
            assert!(moved <= bound, "{method:?} {from}->{to}: {moved}");
        }
        if method == Method::IpHash {
            // For contrast: nginx's modulo `hash` (and its ip_hash, also a modulo) on the same keys.
            let (before, after) = scale(10, true);
            let modulo = Method::Hash { consistent: false };
            let moved = remap(modulo, &keys, &before, &after);
            eprintln!(
                "{modulo:?} (same /24 keys) 10->11 servers: {:.2}% moved",
                moved * 100.0
            );
        }
        let (min, max) = spread(method, &keys, 10);
        eprintln!(
            "{method:?} over 10 servers: least loaded {:.1}%, most loaded {:.1}% of a fair share",
            min * 100.0,
            max * 100.0
        );
        assert!(min >= 0.75 && max <= 1.25, "{method:?}: {min}..{max}");
    }
}

#[test]
fn balancers_and_tables_are_shared_across_tasks() {
    fn shared<T: Send + Sync>() {}
    shared::<Balancer>();
    shared::<sticky::StickyTable>();
    shared::<sticky::StickyKey>();
}
