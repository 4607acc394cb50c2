//! nginx's ketama ring (`hash ... consistent`), bit for bit, also carrying tether's ip_hash.
//!
//! Each node puts `weight * 160` points on a ring of u32s: point j is the CRC-32 of
//! `HOST \0 PORT` followed by point j-1's four bytes little-endian (zero for the first), the
//! name split as nginx splits it. A key goes to the first point at or after its CRC-32,
//! wrapping past the end. Adding or removing one of N nodes thus moves about 1/N of the keys,
//! and a user moving from nginx keeps every mapping. Owns the ring; imports nothing outside
//! `balance`.

use super::{Node, scaled};

/// Points per unit of weight, nginx's constant.
const POINTS_PER_WEIGHT: u64 = 160;

/// The most points kept (32 MiB of ring). Past it weights are scaled down, which gives up
/// nginx parity only for configurations of absurd total weight.
const MAX_POINTS: u64 = 1 << 22;

/// The sorted points: `hashes[k]` belongs to node `nodes[k]`. Two arrays, so the binary
/// search touches only the hashes.
#[derive(Debug)]
pub(super) struct Ring {
    hashes: Box<[u32]>,
    nodes: Box<[u32]>,
}

impl Ring {
    /// The ring of `nodes` (weights of 0 count as 1).
    pub(super) fn new(nodes: &[Node]) -> Ring {
        let weights: Vec<u32> = nodes.iter().map(|node| node.weight.max(1)).collect();
        let weights = scaled(&weights, MAX_POINTS / POINTS_PER_WEIGHT);
        let mut points: Vec<(u32, u32)> = Vec::new();
        for (index, (node, &weight)) in nodes.iter().zip(&weights).enumerate() {
            let (host, port) = split_host_port(node.name.as_bytes());
            let mut base = crc32fast::Hasher::new();
            base.update(host);
            base.update(&[0]);
            base.update(port);
            let mut previous = 0u32;
            for _ in 0..u64::from(weight) * POINTS_PER_WEIGHT {
                // nginx continues a copy of the base state; a cloned hasher is exactly that.
                let mut point = base.clone();
                point.update(&previous.to_le_bytes());
                previous = point.finalize();
                points.push((previous, index as u32));
            }
        }
        // nginx sorts by hash alone (libc qsort) and keeps the first of equal hashes. Which
        // point is "first" among equal hashes is then up to the libc; breaking the tie by
        // name keeps a (rare) collision independent of the order of the `server` lines.
        points.sort_by(|a, b| {
            let name = |point: &(u32, u32)| nodes[point.1 as usize].name;
            a.0.cmp(&b.0).then_with(|| name(a).cmp(name(b)))
        });
        points.dedup_by_key(|point| point.0);
        Ring {
            hashes: points.iter().map(|point| point.0).collect(),
            nodes: points.iter().map(|point| point.1).collect(),
        }
    }

    /// The node owning `hash` (the key's CRC-32), or the next usable one along the ring; None
    /// when a whole turn finds none.
    pub(super) fn pick(&self, hash: u32, usable: &impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.hashes.len();
        let first = self.hashes.partition_point(|&point| point < hash);
        let mut rejected = None;
        for step in 0..len {
            let node = self.nodes[(first + step) % len] as usize;
            // Neighbouring points often share a node: ask about it once per run.
            if rejected == Some(node) {
                continue;
            }
            if usable(node) {
                return Some(node);
            }
            rejected = Some(node);
        }
        None
    }
}

/// nginx's split of a server name into host and port: the port is the digits after the last
/// `:` (`[::1]:80` -> `[::1]`, `80`); a name without one, or ending in a non-digit, is all
/// host; `unix:/path` hashes the path with no port.
fn split_host_port(name: &[u8]) -> (&[u8], &[u8]) {
    if name.len() >= 5 && name[..5].eq_ignore_ascii_case(b"unix:") {
        return (&name[5..], b"");
    }
    for (at, &byte) in name.iter().enumerate().rev() {
        match byte {
            b':' => return (&name[..at], &name[at + 1..]),
            b'0'..=b'9' => continue,
            _ => break,
        }
    }
    (name, b"")
}

#[cfg(test)]
mod tests;
