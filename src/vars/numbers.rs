//! Numbers and addresses as text without `core::fmt`: its machinery costs several hundred
//! instructions a value, and a log line has several on every request. Pure std.

use std::fmt::Write as _;
use std::net::IpAddr;

/// Appends `n` in decimal.
pub fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    push_ascii(out, &digits[at..]);
}

/// Appends bytes known to be ASCII digits and dots in one copy.
fn push_ascii(out: &mut String, ascii: &[u8]) {
    debug_assert!(ascii.is_ascii());
    // SAFETY: the callers write only ASCII digits and dots into `ascii`, so it is UTF-8. (The
    // check it spares costs as much as writing the number: a log line has several.)
    out.push_str(unsafe { std::str::from_utf8_unchecked(ascii) });
}

/// Writes `octet` in decimal at `buf[at..]`, returning the position after it.
fn put_octet(buf: &mut [u8; 15], at: usize, octet: u8) -> usize {
    let mut at = at;
    if octet >= 100 {
        buf[at] = b'0' + octet / 100;
        at += 1;
    }
    if octet >= 10 {
        buf[at] = b'0' + octet / 10 % 10;
        at += 1;
    }
    buf[at] = b'0' + octet % 10;
    at + 1
}

/// Appends an address as `Display` writes it (IPv4 by hand, IPv6 through `fmt`: rarer, and
/// its zero-run compression is not worth repeating here).
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            // `255.255.255.255` is 15 bytes: built on the stack, appended in one copy.
            let mut buf = [0u8; 15];
            let [a, b, c, d] = v4.octets();
            let mut at = put_octet(&mut buf, 0, a);
            for octet in [b, c, d] {
                buf[at] = b'.';
                at = put_octet(&mut buf, at + 1, octet);
            }
            push_ascii(out, &buf[..at]);
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_display_writes_them() {
        for n in [0, 7, 10, 99, 100, 65_535, u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string());
        }
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "10.20.3.4",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = String::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
    }
}
