//! A request's host name, read the one way that server selection and `$host` share — nginx's
//! `ngx_http_validate_host`: the port dropped, one trailing dot dropped (`example.com.` is
//! `example.com`), lowercased, an IPv6 literal kept with its brackets; a host with an empty
//! name, `..`, a `/`, a `\`, a space or a control character is no host (answered 400).
//!
//! Std only, on bytes: the caller chooses where the host comes from (an absolute-form target,
//! `Host`, `:authority`).

use std::borrow::Cow;

/// A host value that names no host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidHost;

/// The host name in `raw` (a `Host` value or an authority), normalised. Borrowed unless it
/// had to be lowercased.
pub fn normalise(raw: &[u8]) -> Result<Cow<'_, str>, InvalidHost> {
    #[derive(PartialEq)]
    enum State {
        Name,
        Literal,
        Port,
    }
    let mut state = State::Name;
    let mut end = raw.len();
    let mut last_dot = None;
    let mut uppercase = false;
    for (i, &byte) in raw.iter().enumerate() {
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
            b'A'..=b'Z' if state != State::Port => uppercase = true,
            _ => {}
        }
    }
    if state == State::Literal {
        return Err(InvalidHost);
    }
    if last_dot.is_some_and(|dot| dot + 1 == end) {
        end -= 1;
    }
    if end == 0 {
        return Err(InvalidHost);
    }
    let name = std::str::from_utf8(&raw[..end]).map_err(|_| InvalidHost)?;
    Ok(if uppercase {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(raw: &str) -> Result<String, InvalidHost> {
        normalise(raw.as_bytes()).map(Cow::into_owned)
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
        assert!(matches!(normalise(b"plain"), Ok(Cow::Borrowed("plain"))));
    }

    #[test]
    fn hosts_nginx_refuses_are_refused() {
        for bad in [
            "", ":80", ".", "a..b", "a/b", "a\\b", "a b", "a\tb", "a\0b", "[::1", "a\x7fb",
        ] {
            assert_eq!(host(bad), Err(InvalidHost), "{bad:?}");
        }
        assert_eq!(normalise(b"a\xffb"), Err(InvalidHost));
    }
}
