//! The ring against nginx's arithmetic (re-derived independently) and its consistency.

use super::*;

fn ring(names: &[&str]) -> Ring {
    let nodes: Vec<Node> = names.iter().map(|&name| Node { name, weight: 1 }).collect();
    Ring::new(&nodes)
}

/// The name owning `key` when every node is usable.
fn owner<'a>(ring: &Ring, names: &[&'a str], key: &[u8]) -> &'a str {
    names[ring.pick(crc32fast::hash(key), &|_| true).expect("a node")]
}

/// CRC-32 the way nginx spells it: `ngx_crc32_init` (all ones), byte-wise `ngx_crc32_update`
/// on a state that may be copied and continued, `ngx_crc32_final` (invert). Bitwise here, so
/// it shares no code with crc32fast.
struct NginxCrc(u32);

impl NginxCrc {
    fn init() -> NginxCrc {
        NginxCrc(0xffff_ffff)
    }
    fn update(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u32::from(byte);
            for _ in 0..8 {
                self.0 = (self.0 >> 1) ^ (0xedb8_8320 & (self.0 & 1).wrapping_neg());
            }
        }
    }
    fn finalize(&self) -> u32 {
        !self.0
    }
}

#[test]
fn points_match_nginx_update_then_final() {
    let mut expected = Vec::new();
    for name in [
        "127.0.0.1:9001",
        "localhost:5000",
        "backend",
        "[::1]:80",
        "unix:/s",
    ] {
        let (host, port) = split_host_port(name.as_bytes());
        let mut base = NginxCrc::init();
        base.update(host);
        base.update(&[0]);
        base.update(port);
        let mut previous = 0u32;
        for _ in 0..160 {
            let mut point = NginxCrc(base.0);
            point.update(&previous.to_le_bytes());
            previous = point.finalize();
            expected.push(previous);
        }
    }
    expected.sort_unstable();
    expected.dedup();
    let names = [
        "127.0.0.1:9001",
        "localhost:5000",
        "backend",
        "[::1]:80",
        "unix:/s",
    ];
    assert_eq!(&*ring(&names).hashes, &expected[..]);
}

#[test]
fn ring_and_lookups_match_a_reference_implementation() {
    // Values from an independent ketama over Python's zlib.crc32, pinned so any drift from
    // nginx's arithmetic is noticed.
    let names = ["127.0.0.1:9001", "127.0.0.1:9002", "localhost:5000"];
    let three = ring(&names);
    assert_eq!(three.hashes.len(), 480);
    assert_eq!(three.hashes[..3], [0x00e6_0da0, 0x0106_f1fb, 0x017b_ea32]);
    assert_eq!(three.nodes[..3], [2, 1, 1]);
    let lookups: String = (0..40)
        .map(|i| owner(&three, &names, format!("key-{i}").as_bytes()))
        .map(|name| names.iter().position(|&n| n == name).unwrap().to_string())
        .collect();
    assert_eq!(lookups, "1111221012202122012001201012021120112010");
    assert_eq!(owner(&three, &names, b"carol"), "localhost:5000");
    assert_eq!(owner(&three, &names, &[192, 168, 1]), "127.0.0.1:9001");

    let weighted = Ring::new(&[
        Node {
            name: "10.0.0.1:80",
            weight: 1,
        },
        Node {
            name: "10.0.0.2:80",
            weight: 2,
        },
        Node {
            name: "10.0.0.3",
            weight: 3,
        },
    ]);
    assert_eq!(weighted.hashes.len(), 960);
    let lookups: String = (0..40)
        .map(|i| weighted.pick(crc32fast::hash(format!("key-{i}").as_bytes()), &|_| true))
        .map(|node| node.unwrap().to_string())
        .collect();
    assert_eq!(lookups, "2111022100201122202210210222021212202220");
}

#[test]
fn names_split_like_nginx() {
    let split = |name: &'static str| split_host_port(name.as_bytes());
    assert_eq!(split("127.0.0.1:9001"), (&b"127.0.0.1"[..], &b"9001"[..]));
    assert_eq!(split("[::1]:80"), (&b"[::1]"[..], &b"80"[..]));
    assert_eq!(split("backend"), (&b"backend"[..], &b""[..]));
    assert_eq!(split("host:"), (&b"host"[..], &b""[..]));
    assert_eq!(split("a:b"), (&b"a:b"[..], &b""[..]));
    assert_eq!(split("UNIX:/tmp/s"), (&b"/tmp/s"[..], &b""[..]));
    assert_eq!(split(""), (&b""[..], &b""[..]));
}

#[test]
fn mapping_ignores_the_order_of_server_lines() {
    let names = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "b:1", "a"];
    let reversed: Vec<&str> = names.iter().rev().copied().collect();
    let (one, two) = (ring(&names), ring(&reversed));
    assert_eq!(one.hashes, two.hashes);
    for i in 0..10_000 {
        let key = format!("user-{i}");
        assert_eq!(
            owner(&one, &names, key.as_bytes()),
            owner(&two, &reversed, key.as_bytes())
        );
    }
}

#[test]
fn an_unusable_node_hands_its_keys_to_the_next_and_takes_them_back() {
    let names = ["s0:80", "s1:80", "s2:80", "s3:80"];
    let ring = ring(&names);
    for i in 0..2_000 {
        let hash = crc32fast::hash(format!("user-{i}").as_bytes());
        let home = ring.pick(hash, &|_| true).unwrap();
        let away = ring.pick(hash, &|node| node != home).unwrap();
        assert_ne!(home, away);
        // The next node along the ring, not any node.
        let at = ring.hashes.partition_point(|&point| point < hash);
        let next = (0..ring.nodes.len())
            .map(|step| ring.nodes[(at + step) % ring.nodes.len()] as usize)
            .find(|&node| node != home);
        assert_eq!(Some(away), next);
        // Other nodes' keys stay put while it is down.
        if home != 0 {
            assert_eq!(ring.pick(hash, &|node| node != 0), Some(home));
        }
        assert_eq!(ring.pick(hash, &|_| true), Some(home), "back once usable");
    }
    assert_eq!(ring.pick(7, &|_| false), None);
    assert_eq!(Ring::new(&[]).pick(7, &|_| true), None);
}

#[test]
fn absurd_weights_stay_bounded() {
    let ring = Ring::new(&[
        Node {
            name: "a:1",
            weight: u32::MAX,
        },
        Node {
            name: "b:1",
            weight: 0,
        },
    ]);
    assert!(ring.hashes.len() as u64 <= MAX_POINTS + POINTS_PER_WEIGHT);
    assert!(ring.nodes.contains(&1));
}
