//! The client's real address behind trusted proxies: nginx's realip module, step for step.
//!
//! A request's peer (the address its TCP connection came from) may say who the client really
//! is — in a header (`X-Forwarded-For`, `X-Real-IP`, any other) or in the connection's PROXY
//! protocol header — but only a peer named by `set_real_ip_from` is believed. Without
//! `real_ip_recursive` the last address of the header replaces the peer; with it, addresses are
//! taken from the right for as long as the address in hand is trusted, so the result is the
//! last address that is not. An entry that is not an address ends the walk with the last good
//! one (none at all: the address stays). An entry may carry a port (`1.2.3.4:80`,
//! `[2001:db8::1]:80`), which becomes the client's port; without one the port is unknown (0,
//! and `$remote_port` is empty, as nginx).
//!
//! Pure: `http` header types and std only, so the walk is tested without sockets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use http::HeaderName;

use crate::header_list::HeaderList;

use crate::config::{Peers, RealIp, RealIpHeader};

/// The addresses a PROXY protocol header gave for a connection (v1 `TCP4`/`TCP6`, v2 `PROXY`
/// over IPv4 or IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proxied {
    /// The client's address and port (`$proxy_protocol_addr`, `$proxy_protocol_port`).
    pub client: SocketAddr,
    /// The address the client connected to (`$proxy_protocol_server_addr`, `..._port`).
    pub server: SocketAddr,
}

static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client's real address by `rules`, for a request from `peer` carrying `headers` on a
/// connection whose PROXY header gave `proxied`. None when the address stays the peer's: realip
/// is off, the peer is not trusted, or nothing usable was sent.
pub fn real_client(
    rules: &RealIp,
    peer: SocketAddr,
    headers: &HeaderList,
    proxied: Option<&Proxied>,
) -> Option<SocketAddr> {
    let trusted = |ip: IpAddr| rules.trusted.iter().any(|peers: &Peers| peers.contains(ip));
    if rules.trusted.is_empty() || !trusted(peer.ip()) {
        return None;
    }
    let name = match &rules.header {
        // One address, however recursive the walk: nothing is left to its left.
        RealIpHeader::ProxyProtocol => return proxied.map(|p| p.client),
        RealIpHeader::XRealIp => &X_REAL_IP,
        RealIpHeader::XForwardedFor => &X_FORWARDED_FOR,
        RealIpHeader::Other(name) => {
            // A name that is no header name matches no header.
            let value = headers.get(name.as_str())?;
            return walk([value.as_bytes()], rules.recursive, trusted);
        }
    };
    if rules.header != RealIpHeader::XForwardedFor {
        // nginx reads the first `X-Real-IP` (and the first of any other header).
        return walk([headers.get(name)?.as_bytes()], rules.recursive, trusted);
    }
    // Every `X-Forwarded-For` line, last first; without recursion only the last line counts.
    let lines = headers
        .get_all(name)
        .iter()
        .rev()
        .map(|value| value.as_bytes());
    let lines = lines.take(if rules.recursive { usize::MAX } else { 1 });
    walk(lines, rules.recursive, trusted)
}

/// The walk over header lines given last first: each entry, from the right, replaces the
/// address in hand while that address is trusted (the peer is, or the walk never starts).
fn walk<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
    recursive: bool,
    trusted: impl Fn(IpAddr) -> bool,
) -> Option<SocketAddr> {
    let mut found: Option<SocketAddr> = None;
    for line in lines {
        let entries = line
            .split(|&b| b == b',' || b == b' ')
            .filter(|entry| !entry.is_empty())
            .rev();
        for entry in entries {
            if found.is_some_and(|addr| !trusted(addr.ip())) {
                return found;
            }
            let Some(addr) = parse_addr_port(entry) else {
                return found;
            };
            found = Some(addr);
            if !recursive {
                return found;
            }
        }
    }
    found
}

/// An entry as nginx's `ngx_parse_addr_port` reads it: `ADDRESS`, `IPv4:PORT` or
/// `[IPv6]:PORT`, the port 1..=65535 (a bare address gets port 0: unknown).
fn parse_addr_port(text: &[u8]) -> Option<SocketAddr> {
    if let Some(ip) = parse_ip(text) {
        return Some(SocketAddr::new(ip, 0));
    }
    let (host, port) = if let Some(rest) = text.strip_prefix(b"[") {
        let close = rest.iter().position(|&b| b == b']')?;
        let port = rest[close + 1..].strip_prefix(b":")?;
        (&rest[..close], port)
    } else {
        let colon = text.iter().position(|&b| b == b':')?;
        (&text[..colon], &text[colon + 1..])
    };
    let port = std::str::from_utf8(port).ok()?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|&p| p > 0)?;
    Some(SocketAddr::new(parse_ip(host)?, port))
}

/// An IPv4 address as nginx's `ngx_inet_addr` reads it (four decimal octets, leading zeros
/// allowed), else an IPv6 address.
fn parse_ip(text: &[u8]) -> Option<IpAddr> {
    if let Some(v4) = parse_v4(text) {
        return Some(IpAddr::V4(v4));
    }
    let text = std::str::from_utf8(text).ok()?;
    text.contains(':').then(|| text.parse().ok()).flatten()
}

fn parse_v4(text: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split(|&b| b == b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        // Three digits at most keeps the value in range of the check below.
        if part.is_empty() || part.len() > 3 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let value = part.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
        *octet = u8::try_from(value).ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

#[cfg(test)]
#[path = "realip_tests.rs"]
mod tests;
