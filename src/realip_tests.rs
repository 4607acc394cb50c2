//! The realip walk against nginx's documented behaviour: trust, the last entry, recursion
//! from the right, ports, bad entries, several header lines.

use crate::header_list::HeaderList;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::*;
use crate::config::Cidr;

fn rules(trusted: &[&str], header: RealIpHeader, recursive: bool) -> RealIp {
    let trusted = trusted
        .iter()
        .map(|text| Peers::Cidr(Cidr::parse(text).unwrap()))
        .collect();
    RealIp {
        trusted: Arc::new(trusted),
        header,
        recursive,
    }
}

fn headers(lines: &[(&'static str, &'static str)]) -> HeaderList {
    let mut map = HeaderList::new();
    for (name, value) in lines {
        map.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    map
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

const LB: &str = "10.0.0.5:40000";

fn xff(recursive: bool, lines: &[&'static str]) -> Option<String> {
    let rules = rules(
        &["10.0.0.0/8", "192.168.0.0/16"],
        RealIpHeader::XForwardedFor,
        recursive,
    );
    let lines: Vec<_> = lines.iter().map(|v| ("x-forwarded-for", *v)).collect();
    real_client(&rules, addr(LB), &headers(&lines), None).map(|a| a.to_string())
}

#[test]
fn without_recursion_the_last_entry_wins_even_if_trusted() {
    let chain = "203.0.113.7, 198.51.100.2, 192.168.1.1";
    assert_eq!(xff(false, &[chain]).as_deref(), Some("192.168.1.1:0"));
    assert_eq!(
        xff(false, &["203.0.113.7"]).as_deref(),
        Some("203.0.113.7:0")
    );
}

#[test]
fn with_recursion_the_last_untrusted_entry_wins() {
    let chain = "203.0.113.7, 198.51.100.2, 192.168.1.1, 10.9.9.9";
    assert_eq!(xff(true, &[chain]).as_deref(), Some("198.51.100.2:0"));
    // Every entry trusted: the leftmost one.
    assert_eq!(
        xff(true, &["10.1.1.1, 192.168.2.2"]).as_deref(),
        Some("10.1.1.1:0")
    );
}

#[test]
fn several_header_lines_read_as_one_list_when_recursive() {
    let lines = ["203.0.113.7", "198.51.100.2, 10.1.1.1", "192.168.3.3"];
    assert_eq!(xff(true, &lines).as_deref(), Some("198.51.100.2:0"));
    // Not recursive: the last line's last entry.
    assert_eq!(xff(false, &lines).as_deref(), Some("192.168.3.3:0"));
}

#[test]
fn a_bad_entry_ends_the_walk_with_the_last_good_address() {
    assert_eq!(xff(false, &["203.0.113.7, unknown"]), None);
    assert_eq!(
        xff(true, &["garbage, 10.1.1.1"]).as_deref(),
        Some("10.1.1.1:0")
    );
    assert_eq!(xff(true, &[""]), None);
    assert_eq!(xff(true, &[" , ,"]), None);
    assert_eq!(xff(false, &["1.2.3.4:0"]), None);
    assert_eq!(xff(false, &["1.2.3.4:65536"]), None);
    assert_eq!(xff(false, &["1.2.3.256"]), None);
    assert_eq!(xff(false, &["[::1]"]), None);
}

#[test]
fn entries_may_carry_ports_and_ipv6() {
    assert_eq!(
        xff(false, &["203.0.113.7:8443"]).as_deref(),
        Some("203.0.113.7:8443")
    );
    assert_eq!(
        xff(false, &["[2001:db8::7]:8443"]).as_deref(),
        Some("[2001:db8::7]:8443")
    );
    assert_eq!(
        xff(false, &["2001:db8::7"]).as_deref(),
        Some("[2001:db8::7]:0")
    );
    // nginx reads octets with leading zeros.
    assert_eq!(xff(false, &["010.000.0.1"]).as_deref(), Some("10.0.0.1:0"));
}

#[test]
fn an_untrusted_peer_is_never_believed() {
    let rules = rules(&["10.0.0.0/8"], RealIpHeader::XForwardedFor, true);
    let sent = headers(&[("x-forwarded-for", "203.0.113.7")]);
    assert_eq!(
        real_client(&rules, addr("198.51.100.9:1"), &sent, None),
        None
    );
    // No trusted peer at all: realip is off.
    let off = RealIp::default();
    assert_eq!(real_client(&off, addr(LB), &sent, None), None);
}

#[test]
fn x_real_ip_and_other_headers_take_their_first_line() {
    let sent = headers(&[
        ("x-real-ip", "203.0.113.1"),
        ("x-real-ip", "203.0.113.2"),
        ("cf-connecting-ip", "198.51.100.4"),
    ]);
    let real = rules(&["10.0.0.0/8"], RealIpHeader::XRealIp, false);
    assert_eq!(
        real_client(&real, addr(LB), &sent, None),
        Some(addr("203.0.113.1:0"))
    );
    let other = RealIpHeader::Other("cf-connecting-ip".into());
    let other = rules(&["10.0.0.0/8"], other, false);
    assert_eq!(
        real_client(&other, addr(LB), &sent, None),
        Some(addr("198.51.100.4:0"))
    );
    let missing = rules(
        &["10.0.0.0/8"],
        RealIpHeader::Other("x-client".into()),
        false,
    );
    assert_eq!(real_client(&missing, addr(LB), &sent, None), None);
}

#[test]
fn proxy_protocol_gives_its_address_and_port_to_a_trusted_peer_only() {
    let proxied = Proxied {
        client: addr("203.0.113.7:51000"),
        server: addr("192.0.2.1:443"),
    };
    let sent = headers(&[("x-forwarded-for", "198.51.100.1")]);
    let rules = rules(&["10.0.0.0/8"], RealIpHeader::ProxyProtocol, true);
    let real = real_client(&rules, addr(LB), &sent, Some(&proxied));
    assert_eq!(real, Some(proxied.client));
    assert_eq!(real_client(&rules, addr(LB), &sent, None), None);
    let stranger = addr("198.51.100.9:1");
    assert_eq!(real_client(&rules, stranger, &sent, Some(&proxied)), None);
}
