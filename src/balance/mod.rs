//! TEMPORARY stub with the new API (round robin only) until the balancing work lands.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A balancing method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    RoundRobin,
    LeastConn,
    Random { two: bool },
    IpHash,
    Hash { consistent: bool },
}

/// One server of a tier.
pub struct Node<'a> {
    pub name: &'a str,
    pub weight: u32,
}

/// What a request offers to key a hash on.
#[derive(Clone, Copy, Debug)]
pub enum Key<'a> {
    None,
    Ip(IpAddr),
    Bytes(&'a [u8]),
}

/// Balancer.
#[derive(Debug)]
pub struct Balancer {
    count: usize,
    next: AtomicUsize,
}

impl Balancer {
    pub fn new(_method: Method, nodes: &[Node]) -> Balancer {
        Balancer {
            count: nodes.len(),
            next: AtomicUsize::new(0),
        }
    }

    pub fn pick(
        &self,
        _key: Key<'_>,
        usable: impl Fn(usize) -> bool,
        _load: impl Fn(usize) -> u64,
    ) -> Option<usize> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..self.count)
            .map(|step| (start + step) % self.count.max(1))
            .find(|&index| index < self.count && usable(index))
    }
}

pub mod sticky {
    use std::collections::HashMap;

    pub struct StickyKey(String);
    impl StickyKey {
        pub fn from_secret(secret: &str) -> StickyKey {
            StickyKey(secret.to_string())
        }
        pub fn for_group(group: &str) -> StickyKey {
            StickyKey(group.to_string())
        }
    }
    #[derive(Debug)]
    pub struct StickyTable {
        values: Vec<String>,
        by_value: HashMap<String, usize>,
    }
    impl StickyTable {
        pub fn new(key: &StickyKey, identities: &[&str]) -> StickyTable {
            let values: Vec<String> = identities
                .iter()
                .map(|id| {
                    format!(
                        "{:016x}",
                        crc32fast::hash(format!("{}{id}", key.0).as_bytes())
                    )
                })
                .collect();
            let by_value = values
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, v)| (v, i))
                .collect();
            StickyTable { values, by_value }
        }
        pub fn value(&self, index: usize) -> &str {
            &self.values[index]
        }
        pub fn find(&self, value: &str) -> Option<usize> {
            self.by_value.get(value).copied()
        }
    }
}
