//! Choosing a node for a new session: nginx's balancing methods as plain index arithmetic.
//!
//! Owns each method's precomputed tables (the smooth weighted round-robin order, the ketama
//! ring, cumulative weights) and its lock-free running state; `sticky` owns cookie values.
//! The caller owns the peers: it describes them once as [`Node`]s, then on every pick says
//! which indices are usable and how loaded they are, so health never leaks in here.
//!
//! Must not import tokio, hyper, http, config, vars or peer: this is std + siphasher +
//! crc32fast + fastrand, tested without a runtime.

mod crc;
mod least_conn;
mod modulo;
mod random;
mod rendezvous;
mod ring;
mod round_robin;
pub mod sticky;

use std::fmt;
use std::net::IpAddr;

use modulo::Modulo;
use random::Cumulative;
use rendezvous::Rendezvous;
use ring::Ring;
use round_robin::SmoothOrder;

/// A balancing method, as the caller maps it from the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// nginx's smooth weighted round robin (the default).
    RoundRobin,
    /// `least_conn`: the lowest load per unit of weight.
    LeastConn,
    /// `random`, or `random two least_conn` when `two`.
    Random {
        /// Draw two nodes and keep the less loaded.
        two: bool,
    },
    /// `ip_hash`, placed on the same consistent ring as `hash ... consistent`.
    IpHash,
    /// `hash KEY`, or `hash KEY consistent` (ketama) when `consistent`.
    Hash {
        /// Use the ketama ring instead of the weighted modulo.
        consistent: bool,
    },
}

/// One server of a tier, as configured.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    /// The server address exactly as written (`127.0.0.1:9001`, `localhost:5000`): the ring
    /// hashes this text, so it must not be resolved or normalised first.
    pub name: &'a str,
    /// `weight=`, at least 1 (0 is read as 1).
    pub weight: u32,
}

/// What a request offers to key a hash on.
#[derive(Clone, Copy, Debug)]
pub enum Key<'a> {
    /// Nothing: hash methods fall back to round robin.
    None,
    /// The client address (`ip_hash`).
    Ip(IpAddr),
    /// The evaluated `hash` key.
    Bytes(&'a [u8]),
    /// A client's sticky value that named no usable node, hashed: every method then places it
    /// by rendezvous hashing (see `rendezvous.rs`), so all its requests land together.
    Stale(u64),
}

impl Key<'_> {
    /// The key for a sticky value (cookie or route) that named no usable node.
    pub fn stale(value: &[u8]) -> u64 {
        rendezvous::mix(1, value)
    }
}

/// A balancing method with its precomputed tables and running state (shared by all request
/// tasks: `&self` only, `Send + Sync`).
pub struct Balancer {
    method: Method,
    /// The smooth weighted round-robin order. Round robin itself, the fallback of the hash
    /// methods (no key, or nginx's 21 failed rehashes), and least_conn's rotating start.
    order: SmoothOrder,
    /// Weights as configured (at least 1): least_conn and `random two` compare load/weight.
    weights: Box<[u32]>,
    table: Table,
    /// Where a stale sticky value goes, whatever the method.
    rendezvous: Rendezvous,
}

/// What each method walks beyond the round-robin order every method keeps.
enum Table {
    /// The smooth weighted round-robin order alone.
    RoundRobin,
    /// Every node, scanned from a start that rotates along the round-robin order.
    LeastConn,
    /// Weighted random draws.
    Random { draws: Cumulative, two: bool },
    /// ip_hash and `hash ... consistent`.
    Ring(Ring),
    /// `hash` without `consistent`.
    Modulo(Modulo),
}

impl Balancer {
    /// Precomputes `method`'s tables for `nodes` (in config order; index i is `nodes[i]`).
    pub fn new(method: Method, nodes: &[Node]) -> Balancer {
        let weights: Box<[u32]> = nodes.iter().map(|node| node.weight.max(1)).collect();
        let table = match method {
            Method::RoundRobin => Table::RoundRobin,
            Method::LeastConn => Table::LeastConn,
            Method::Random { two } => Table::Random {
                draws: Cumulative::new(&weights),
                two,
            },
            Method::IpHash | Method::Hash { consistent: true } => Table::Ring(Ring::new(nodes)),
            Method::Hash { consistent: false } => Table::Modulo(Modulo::new(&weights)),
        };
        Balancer {
            method,
            rendezvous: Rendezvous::new(nodes.iter().map(|node| node.name), &weights),
            order: SmoothOrder::new(&weights),
            weights,
            table,
        }
    }

    /// The index of the node for a new session, skipping nodes `usable` rejects; `load(i)` =
    /// requests/tunnels in flight on node i (least_conn, random two). None when no node is
    /// usable. Every walk is capped, so a pick over dead nodes ends.
    pub fn pick(
        &self,
        key: Key<'_>,
        usable: impl Fn(usize) -> bool,
        load: impl Fn(usize) -> u64,
    ) -> Option<usize> {
        if let Key::Stale(key) = key {
            return self.rendezvous.pick(key, usable);
        }
        match &self.table {
            Table::RoundRobin => self.order.pick(&usable),
            Table::LeastConn => least_conn::pick(&self.order, &self.weights, &usable, &load),
            Table::Random { draws, two: false } => draws.pick(&usable),
            Table::Random { draws, two: true } => draws.pick_two(&self.weights, &usable, &load),
            Table::Ring(ring) => match KeyBytes::of(key) {
                Some(bytes) => ring.pick(crc::crc32(bytes.as_slice()), &usable),
                None => self.order.pick(&usable),
            },
            // nginx gives up hashing after 21 rehashes and falls back to round robin.
            Table::Modulo(modulo) => KeyBytes::of(key)
                .and_then(|bytes| modulo.pick(bytes.as_slice(), &usable))
                .or_else(|| self.order.pick(&usable)),
        }
    }

    /// The method this balancer was built for.
    pub fn method(&self) -> Method {
        self.method
    }
}

impl fmt::Debug for Balancer {
    // The tables run to thousands of entries; what a log or a test wants is the shape.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balancer")
            .field("method", &self.method)
            .field("nodes", &self.weights.len())
            .finish_non_exhaustive()
    }
}

/// The bytes a hash method hashes for one request, borrowed or built on the stack.
enum KeyBytes<'a> {
    Borrowed(&'a [u8]),
    /// nginx's ip_hash key: the first three octets of an IPv4 address (so a /24 shares a
    /// server), all 16 bytes of an IPv6 one.
    Ip {
        bytes: [u8; 16],
        len: usize,
    },
}

impl<'a> KeyBytes<'a> {
    /// The key to hash, or None when the request offers none: an absent or empty key is
    /// balanced round robin rather than piling every keyless client onto one server.
    fn of(key: Key<'a>) -> Option<KeyBytes<'a>> {
        match key {
            Key::None => None,
            Key::Bytes([]) => None,
            Key::Bytes(bytes) => Some(KeyBytes::Borrowed(bytes)),
            Key::Ip(ip) => Some(ip_key(ip)),
            // Placed by rendezvous before any table is asked.
            Key::Stale(_) => None,
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            KeyBytes::Borrowed(bytes) => bytes,
            KeyBytes::Ip { bytes, len } => &bytes[..*len],
        }
    }
}

/// nginx's ip_hash key for `ip`; an IPv4-mapped IPv6 address (a dual-stack listener's view of
/// an IPv4 client) counts as the IPv4 address, so the client keeps its server either way.
fn ip_key(ip: IpAddr) -> KeyBytes<'static> {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None => {
                return KeyBytes::Ip {
                    bytes: v6.octets(),
                    len: 16,
                };
            }
        },
    };
    let mut bytes = [0; 16];
    bytes[..3].copy_from_slice(&v4.octets()[..3]);
    KeyBytes::Ip { bytes, len: 3 }
}

/// True when `load_a / weight_a < load_b / weight_b`, compared by cross-multiplying as nginx
/// does (no division, no rounding); u128 so no load or weight can overflow it.
fn lighter(load_a: u64, weight_a: u32, load_b: u64, weight_b: u32) -> bool {
    u128::from(load_a) * u128::from(weight_b) < u128::from(load_b) * u128::from(weight_a)
}

/// Weights scaled down so they add up to at most `max_total`, each kept at least 1; unchanged
/// when they already fit. Guards the tables against absurd `weight=` values.
fn scaled(weights: &[u32], max_total: u64) -> Vec<u32> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if total <= max_total {
        return weights.to_vec();
    }
    weights
        .iter()
        // w * max_total / total < w, so the result fits in u32.
        .map(|&w| (u64::from(w) * max_total / total).max(1) as u32)
        .collect()
}

#[cfg(test)]
mod tests;
