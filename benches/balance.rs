//! Cost of one `Balancer::pick` per method and tier size, of a sticky cookie lookup, and of
//! building the consistent-hash ring a reload rebuilds.
//!
//! Every node is usable and idle-ish (load = index % 7), which is the hot path: what a
//! request pays on top of routing. Run: `cargo bench --bench balance`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tether::balance::sticky::{StickyKey, StickyTable};
use tether::balance::{Balancer, Key, Method, Node};

const METHODS: [(&str, Method); 7] = [
    ("round_robin", Method::RoundRobin),
    ("least_conn", Method::LeastConn),
    ("random", Method::Random { two: false }),
    ("random_two", Method::Random { two: true }),
    ("ip_hash", Method::IpHash),
    ("hash", Method::Hash { consistent: false }),
    ("hash_consistent", Method::Hash { consistent: true }),
];

fn names(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("10.0.{}.{}:8080", i / 250, i % 250 + 1))
        .collect()
}

/// One node per name, weights 1, 2, 3 in turn.
fn nodes(names: &[String]) -> Vec<Node<'_>> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| Node {
            name,
            weight: 1 + (i % 3) as u32,
        })
        .collect()
}

fn picks(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    for count in [3, 30, 300] {
        let names = names(count);
        let nodes = nodes(&names);
        for (label, method) in METHODS {
            let balancer = Balancer::new(method, &nodes);
            // A different key each iteration, so the hash methods do not hit one cached path.
            let mut n = 0u32;
            group.bench_function(BenchmarkId::new(label, count), |b| {
                b.iter(|| {
                    n = n.wrapping_add(1);
                    let bytes = n.to_le_bytes();
                    let key = match method {
                        Method::IpHash => Key::Ip(IpAddr::V4(Ipv4Addr::from(n << 8))),
                        Method::Hash { .. } => Key::Bytes(&bytes),
                        _ => Key::None,
                    };
                    balancer.pick(black_box(key), |i| black_box(i) < count, |i| (i % 7) as u64)
                })
            });
        }
    }
    group.finish();
}

fn sticky(c: &mut Criterion) {
    let mut group = c.benchmark_group("sticky_find");
    for count in [3, 30, 300] {
        let names = names(count);
        let identities: Vec<&str> = names.iter().map(String::as_str).collect();
        let table = StickyTable::new(&StickyKey::for_group("backend"), &identities);
        let values: Vec<String> = (0..count).map(|i| table.value(i).to_string()).collect();
        let mut n = 0usize;
        group.bench_function(BenchmarkId::from_parameter(count), |b| {
            b.iter(|| {
                n = (n + 1) % count;
                table.find(black_box(&values[n]))
            })
        });
    }
    group.finish();
}

/// Servers in the tier whose ring is rebuilt.
const RING_SERVERS: usize = 1_000;

fn ring_builds(c: &mut Criterion) {
    let names = names(RING_SERVERS);
    let nodes = nodes(&names);
    // Both methods place nodes on the same ketama ring (160 points per unit of weight, here
    // about 320,000 in all), which is what a reload of a large hashed tier pays.
    let mut group = c.benchmark_group("ring_build");
    for (label, method) in [
        ("hash_consistent", Method::Hash { consistent: true }),
        ("ip_hash", Method::IpHash),
    ] {
        group.bench_function(BenchmarkId::new(label, RING_SERVERS), |b| {
            b.iter_with_large_drop(|| Balancer::new(method, black_box(&nodes)))
        });
    }
    group.finish();
}

criterion_group!(benches, picks, sticky, ring_builds);
criterion_main!(benches);
