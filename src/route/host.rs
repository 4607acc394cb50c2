//! A request's host name, read the one way that server selection and `$host` share — nginx's
//! `ngx_http_validate_host`: the port dropped, one trailing dot dropped (`example.com.` is
//! `example.com`), lowercased, an IPv6 literal kept with its brackets; a host with an empty
//! name, `..`, a `/`, a `\`, a space or a control character is no host (answered 400).
//!
//! Std only, on bytes: the caller chooses where the host comes from (an absolute-form target,
//! `Host`, `:authority`). The result is held inline ([`HostName`]): no allocation per request.

/// A host value that names no host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidHost;

/// The longest host name kept: DNS names stop at 253 characters, an IPv6 literal with its
/// brackets and a zone at well under this.
pub const MAX_HOST: usize = 255;

/// A normalised host name, held inline: reading it costs no allocation, and it can outlive
/// the request it came from (the request moves on while its host is still in use).
#[derive(Clone, Copy)]
pub struct HostName {
    len: u8,
    bytes: [u8; MAX_HOST],
}

impl HostName {
    /// No host (the request named none).
    pub const EMPTY: HostName = HostName {
        len: 0,
        bytes: [0; MAX_HOST],
    };

    /// The name (`""` for [`HostName::EMPTY`]).
    pub fn as_str(&self) -> &str {
        let name = &self.bytes[..usize::from(self.len)];
        // SAFETY: `normalise` (the only way to a non-empty name) copies only a prefix it
        // checked to be UTF-8, and lowercasing ASCII letters keeps it so. Checking again
        // cost more than the rest of the name's reading, at every use.
        unsafe { std::str::from_utf8_unchecked(name) }
    }
}

impl std::fmt::Debug for HostName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

/// What a byte of a host value may be, one bit each: looked up once per byte, ORed over the
/// value, so that one pass says which of the rarer checks the value needs at all.
const FORBIDDEN: u8 = 1;
const UPPER: u8 = 2;
const NON_ASCII: u8 = 4;
const DOT: u8 = 8;

const BYTE_CLASS: [u8; 256] = {
    let mut class = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        class[byte] = match byte as u8 {
            b'/' | b'\\' | 0..=b' ' | 0x7f => FORBIDDEN,
            b'A'..=b'Z' => UPPER,
            0x80..=0xff => NON_ASCII,
            b'.' => DOT,
            _ => 0,
        };
        byte += 1;
    }
    class
};

/// The host name in `raw` (a `Host` value or an authority), normalised.
pub fn normalise(raw: &[u8]) -> Result<HostName, InvalidHost> {
    // No byte of the value, its port included, may be a control, a space, `/` or `\`.
    let seen = raw
        .iter()
        .fold(0, |seen, &byte| seen | BYTE_CLASS[usize::from(byte)]);
    if seen & FORBIDDEN != 0 {
        return Err(InvalidHost);
    }
    let end = if raw.first() == Some(&b'[') {
        // An IPv6 literal keeps its brackets; whatever follows the `]` is the port.
        match raw.iter().position(|&byte| byte == b']') {
            Some(close) => close + 1,
            None => return Err(InvalidHost),
        }
    } else {
        let end = raw
            .iter()
            .position(|&byte| byte == b':')
            .unwrap_or(raw.len());
        let name = &raw[..end];
        if seen & DOT != 0 {
            if name.windows(2).any(|pair| pair == b"..") {
                return Err(InvalidHost);
            }
            if name.last() == Some(&b'.') {
                end - 1
            } else {
                end
            }
        } else {
            end
        }
    };
    if end == 0 || end > MAX_HOST {
        return Err(InvalidHost);
    }
    let name = &raw[..end];
    if seen & NON_ASCII != 0 {
        std::str::from_utf8(name).map_err(|_| InvalidHost)?;
    }
    let mut host = HostName::EMPTY;
    host.bytes[..end].copy_from_slice(name);
    if seen & UPPER != 0 {
        host.bytes[..end].make_ascii_lowercase();
    }
    // `end` is at most MAX_HOST (255), checked above.
    host.len = end as u8;
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(raw: &str) -> Result<String, InvalidHost> {
        normalise(raw.as_bytes()).map(|host| host.as_str().to_string())
    }

    #[test]
    fn hosts_lose_port_case_and_one_trailing_dot() {
        assert_eq!(host("example.com"), Ok("example.com".into()));
        assert_eq!(host("Example.COM:8080"), Ok("example.com".into()));
        assert_eq!(host("example.com."), Ok("example.com".into()));
        assert_eq!(host("example.com.:80"), Ok("example.com".into()));
        assert_eq!(host("[::1]:8080"), Ok("[::1]".into()));
        assert_eq!(host("[2001:DB8::1]"), Ok("[2001:db8::1]".into()));
        assert_eq!(host("10.0.0.1:80"), Ok("10.0.0.1".into()));
        assert_eq!(host("bücher.example"), Ok("bücher.example".into()));
        assert_eq!(host("BÜCHER.Example:80"), Ok("bÜcher.example".into()));
        // Bytes that are no UTF-8 are no host name.
        assert!(normalise(b"b\xfccher.example").is_err());
        assert!(normalise(b"example.\xc3").is_err());
        let longest = "a".repeat(MAX_HOST);
        assert_eq!(host(&longest), Ok(longest.clone()));
        assert_eq!(host(&format!("{longest}a")), Err(InvalidHost));
    }

    /// The state machine `normalise` replaced (one match per byte), kept as its reference.
    fn reference(raw: &[u8]) -> Result<HostName, InvalidHost> {
        #[derive(PartialEq)]
        enum State {
            Name,
            Literal,
            Port,
        }
        let mut state = State::Name;
        let mut end = raw.len();
        let mut last_dot = None;
        // The bytes ORed together: below 0x80, the name is ASCII and needs no UTF-8 check.
        let mut high = 0u8;
        for (i, &byte) in raw.iter().enumerate() {
            high |= byte;
            match byte {
                b'.' if state == State::Name => {
                    if last_dot.is_some_and(|dot| dot + 1 == i) {
                        return Err(InvalidHost);
                    }
                    last_dot = Some(i);
                }
                b':' if state == State::Name => {
                    end = i;
                    state = State::Port;
                }
                b'[' if i == 0 => state = State::Literal,
                b']' if state == State::Literal => {
                    end = i + 1;
                    state = State::Port;
                }
                b'/' | b'\\' | 0..=b' ' | 0x7f => return Err(InvalidHost),
                _ => {}
            }
        }
        if state == State::Literal {
            return Err(InvalidHost);
        }
        if last_dot.is_some_and(|dot| dot + 1 == end) {
            end -= 1;
        }
        if end == 0 || end > MAX_HOST {
            return Err(InvalidHost);
        }
        let name = &raw[..end];
        if high >= 0x80 {
            std::str::from_utf8(name).map_err(|_| InvalidHost)?;
        }
        let mut host = HostName::EMPTY;
        host.bytes[..end].copy_from_slice(name);
        host.bytes[..end].make_ascii_lowercase();
        // `end` is at most MAX_HOST (255), checked above.
        host.len = end as u8;
        Ok(host)
    }

    proptest::proptest! {
        /// Whatever the value, the one-pass reading agrees with the state machine it replaced.
        #[test]
        fn reads_every_value_as_the_state_machine_did(
            raw in proptest::collection::vec(
                proptest::sample::select(&b"aZ0.:[]/ \x7f\xc3\xa9-"[..]),
                0..12,
            )
        ) {
            let ours = normalise(&raw).map(|host| host.as_str().to_string());
            let theirs = reference(&raw).map(|host| host.as_str().to_string());
            proptest::prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn hosts_nginx_refuses_are_refused() {
        for bad in [
            "", ":80", ".", "a..b", "a/b", "a\\b", "a b", "a\tb", "a\0b", "[::1", "a\x7fb",
        ] {
            assert_eq!(host(bad), Err(InvalidHost), "{bad:?}");
        }
        assert!(normalise(b"a\xffb").is_err());
    }
}
