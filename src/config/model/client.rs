//! Who the client is and whether it may come in, as one level (http, server or location)
//! configures it: the realip settings (`set_real_ip_from`, `real_ip_header`,
//! `real_ip_recursive`) and the `allow`/`deny` rules, nginx inheritance resolved. Pure data,
//! with the address arithmetic it needs: a CIDR is parsed once, masked, and matched per request
//! with two integer operations.

use std::net::IpAddr;
use std::sync::Arc;

/// The effective client-address rules of a server or a location.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientRules {
    /// How the client's real address is found behind trusted proxies.
    pub real_ip: RealIp,
    /// `allow`/`deny` in order (empty: everyone may come in). Inherited as a whole, and only by
    /// a level that writes none, as nginx; shared with the level that wrote them.
    pub access: Arc<Vec<AccessRule>>,
}

impl ClientRules {
    /// Whether `allow`/`deny` let `client` in: the first rule that names it decides, as in
    /// nginx; a client no rule names is let in.
    pub fn admits(&self, client: IpAddr) -> bool {
        let decisive = self.access.iter().find(|rule| rule.peers.contains(client));
        decisive.is_none_or(|rule| rule.allow)
    }
}

/// `set_real_ip_from`, `real_ip_header`, `real_ip_recursive`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RealIp {
    /// The peers trusted to say who the client is (empty: realip is off). Inherited as a
    /// whole, and only by a level that names none, as nginx.
    pub trusted: Arc<Vec<Peers>>,
    /// Where the real address is read.
    pub header: RealIpHeader,
    /// `real_ip_recursive on`: skip trusted addresses from the right of the list.
    pub recursive: bool,
}

/// Where `real_ip_header` says the real address is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RealIpHeader {
    /// `X-Real-IP` (nginx's default), its first occurrence.
    #[default]
    XRealIp,
    /// `X-Forwarded-For`, every occurrence in order, as one list.
    XForwardedFor,
    /// The address of the connection's PROXY protocol header.
    ProxyProtocol,
    /// Any other header (stored lowercase), its first occurrence.
    Other(String),
}

/// One `allow` or `deny`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRule {
    /// `allow` (else `deny`).
    pub allow: bool,
    /// Whom it is about.
    pub peers: Peers,
}

/// A set of peers as `allow`, `deny` and `set_real_ip_from` name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peers {
    /// `all`.
    All,
    /// An address or a CIDR block.
    Cidr(Cidr),
    /// `unix:`: clients on UNIX-domain sockets (`listen unix:PATH`).
    Unix,
}

impl Peers {
    /// Whether `ip` is among these peers (an IPv4 client on a dual-stack socket counts as IPv4;
    /// a UNIX-domain socket's client, [`super::UNIX_PEER`], only in `unix:` and `all`, as nginx).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let unix = ip == super::UNIX_PEER.ip();
        match self {
            Peers::All => true,
            Peers::Cidr(cidr) => !unix && cidr.contains(ip),
            Peers::Unix => unix,
        }
    }
}

/// An address block, stored masked: `10.1.2.3/8` is kept as `10.0.0.0/8`, as nginx does (it
/// warns that the low bits are meaningless).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cidr {
    /// An IPv4 block.
    V4 {
        /// The network, masked.
        network: u32,
        /// The mask.
        mask: u32,
    },
    /// An IPv6 block.
    V6 {
        /// The network, masked.
        network: u128,
        /// The mask.
        mask: u128,
    },
}

impl Cidr {
    /// Parses `ADDRESS` or `ADDRESS/PREFIX` (IPv4 or IPv6). None for anything else, or a prefix
    /// longer than the address.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => {
                // Digits only: `parse` would take a `+`.
                if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (address, Some(prefix.parse::<u32>().ok()?))
            }
            None => (text, None),
        };
        match address.parse::<IpAddr>().ok()? {
            IpAddr::V4(ip) => {
                let bits = prefix.unwrap_or(32);
                let mask = u32::MAX.checked_shl(32 - bits.min(32)).unwrap_or(0);
                (bits <= 32).then_some(Cidr::V4 {
                    network: u32::from(ip) & mask,
                    mask,
                })
            }
            IpAddr::V6(ip) => {
                let bits = prefix.unwrap_or(128);
                let mask = u128::MAX.checked_shl(128 - bits.min(128)).unwrap_or(0);
                (bits <= 128).then_some(Cidr::V6 {
                    network: u128::from(ip) & mask,
                    mask,
                })
            }
        }
    }

    /// Whether `ip` is in the block. An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, how a
    /// dual-stack socket shows an IPv4 client) is matched as the IPv4 address, as nginx does.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip.to_canonical()) {
            (Cidr::V4 { network, mask }, IpAddr::V4(ip)) => u32::from(ip) & mask == *network,
            (Cidr::V6 { network, mask }, IpAddr::V6(ip)) => u128::from(ip) & mask == *network,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn blocks_match_their_addresses_only() {
        let block = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(block.contains(ip("10.1.255.7")));
        assert!(!block.contains(ip("10.2.0.1")));
        // The dual-stack form of an IPv4 client is the IPv4 client.
        assert!(block.contains(ip("::ffff:10.1.2.3")));
        assert!(!block.contains(ip("2001:db8::1")));
        let single = Cidr::parse("192.0.2.1").unwrap();
        assert!(single.contains(ip("192.0.2.1")));
        assert!(!single.contains(ip("192.0.2.2")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.1.2.3")));
        // Everything, each family on its own.
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("203.0.113.9"))
        );
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
    }

    #[test]
    fn the_first_rule_that_names_the_client_decides() {
        let rule = |allow, text| AccessRule {
            allow,
            peers: match text {
                "all" => Peers::All,
                "unix:" => Peers::Unix,
                cidr => Peers::Cidr(Cidr::parse(cidr).unwrap()),
            },
        };
        let rules = ClientRules {
            access: Arc::new(vec![
                rule(false, "10.1.2.3"),
                rule(true, "10.0.0.0/8"),
                rule(true, "unix:"),
                rule(true, "2001:db8::/32"),
                rule(false, "all"),
            ]),
            ..ClientRules::default()
        };
        assert!(!rules.admits(ip("10.1.2.3")));
        assert!(rules.admits(ip("10.200.0.1")));
        assert!(rules.admits(ip("::ffff:10.200.0.1")));
        assert!(rules.admits(ip("2001:db8::1")));
        assert!(!rules.admits(ip("192.0.2.1")));
        assert!(!rules.admits(ip("::1")));
        // No rules: everyone.
        assert!(ClientRules::default().admits(ip("192.0.2.1")));
    }

    #[test]
    fn a_unix_socket_client_is_named_only_by_unix_and_all() {
        let unix = crate::config::model::UNIX_PEER.ip();
        assert!(Peers::Unix.contains(unix));
        assert!(Peers::All.contains(unix));
        for block in ["::/0", "100::/8", "100::/64"] {
            let cidr = Peers::Cidr(Cidr::parse(block).unwrap());
            assert!(!cidr.contains(unix), "{block}");
        }
        assert!(!Peers::Unix.contains(ip("::1")));
    }

    #[test]
    fn a_socket_path_keeps_its_listen_key_and_is_named_by_it() {
        use crate::config::model::{UNIX_PEER, shown_listen, unix_listen_key};
        let path = std::path::Path::new("/run/tether/a.sock");
        let key = unix_listen_key(path);
        assert_eq!(unix_listen_key(path), key);
        assert_ne!(
            unix_listen_key(std::path::Path::new("/run/tether/b.sock")),
            key
        );
        assert_ne!(key, UNIX_PEER);
        assert_eq!(shown_listen(key), "unix:/run/tether/a.sock");
        let tcp: std::net::SocketAddr = "0.0.0.0:80".parse().unwrap();
        assert_eq!(shown_listen(tcp), "0.0.0.0:80");
    }

    #[test]
    fn low_bits_are_masked_off_and_bad_blocks_refused() {
        assert_eq!(Cidr::parse("10.1.2.3/8"), Cidr::parse("10.0.0.0/8"));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0/8",
            "example.com",
            "all",
            "",
            "10.0.0.0/8/8",
            "010.0.0.1",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }
}
