//! nginx's value syntaxes: times (`1m30s`), sizes (`4k`), flags (`on|off`), integers, ports and
//! `host:port` addresses.
//!
//! The bare parsers are pure functions; the `Lowering` methods wrap them so that a bad value
//! becomes the right [`ErrorKind`] with the word's span. Must not import `model`: values know
//! nothing of what they configure.

use std::str::FromStr;
use std::time::Duration;

use super::Lowering;
use crate::config::ast::{Directive, Word};
use crate::config::error::ErrorKind;

/// Parses an nginx time: one or more `NUMBER UNIT` groups with units `y M w d h m s ms` in
/// decreasing order, each at most once (`1m30s`); a bare number means seconds.
pub(crate) fn parse_time(text: &str) -> Option<Duration> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().map(Duration::from_secs);
    }
    // Units from largest to smallest, in milliseconds; `M` is 30 days and `y` 365, as nginx.
    const UNITS: [(&str, u64); 8] = [
        ("y", 365 * 86_400_000),
        ("M", 30 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("ms", 1),
        ("m", 60_000),
        ("s", 1_000),
    ];
    // Rank of each unit in nginx's required order (`ms` comes last even though it is tried
    // before `m` so that `5ms` is not read as `5m` + junk).
    let rank = |unit: &str| match unit {
        "y" => 0,
        "M" => 1,
        "w" => 2,
        "d" => 3,
        "h" => 4,
        "m" => 5,
        "s" => 6,
        _ => 7,
    };
    let mut rest = text;
    let mut total: u64 = 0;
    let mut last_rank = None;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, millis) = UNITS.iter().find(|(unit, _)| rest.starts_with(unit))?;
        if last_rank.is_some_and(|last| rank(unit) <= last) {
            return None;
        }
        last_rank = Some(rank(unit));
        rest = &rest[unit.len()..];
        total = total.checked_add(number.checked_mul(*millis)?)?;
    }
    Some(Duration::from_millis(total))
}

/// Parses an nginx size: a number with an optional `k`/`K`, `m`/`M`, `g`/`G` suffix; bytes.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let (digits, scale) = match text.chars().last()? {
        'k' | 'K' => (&text[..text.len() - 1], 1u64 << 10),
        'm' | 'M' => (&text[..text.len() - 1], 1 << 20),
        'g' | 'G' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    parse_number::<u64>(digits)?.checked_mul(scale)
}

/// `on` -> true, `off` -> false (nginx accepts exactly these, case-insensitively).
pub(crate) fn parse_flag(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("on") {
        Some(true)
    } else if text.eq_ignore_ascii_case("off") {
        Some(false)
    } else {
        None
    }
}

/// A plain decimal number: digits only, no sign (Rust's `parse` would accept `+5`).
pub(crate) fn parse_number<T: FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A TCP port, 1..=65535 as nginx requires.
pub(crate) fn parse_port(text: &str) -> Option<u16> {
    parse_number::<u16>(text).filter(|&port| port != 0)
}

/// Splits `host[:port]` or `[v6][:port]` into the host (without brackets) and the port text.
/// `None` for a malformed bracket form or an empty host.
pub(crate) fn split_host_port(text: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if let Some(inner) = text.strip_prefix('[') {
        let (host, after) = inner.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else if text.matches(':').count() > 1 {
        // An IPv6 literal without brackets has no port part.
        (text, None)
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    (!host.is_empty()).then_some((host, port))
}

impl Lowering {
    /// Reports `word` as an invalid value of `d`.
    pub(super) fn invalid_value(&mut self, d: &Directive, word: &Word) {
        let kind = ErrorKind::InvalidValue {
            directive: d.name().to_string(),
            value: word.text.clone(),
        };
        self.error(&word.span, kind);
    }

    /// The word as a time, or an `invalid time` error.
    pub(super) fn time(&mut self, d: &Directive, word: &Word) -> Option<Duration> {
        let value = parse_time(&word.text);
        if value.is_none() {
            self.error(
                &word.span,
                ErrorKind::InvalidTime {
                    directive: d.name().to_string(),
                    value: word.text.clone(),
                },
            );
        }
        value
    }

    /// The word as a size in bytes, or an `invalid size` error.
    pub(super) fn size(&mut self, d: &Directive, word: &Word) -> Option<u64> {
        let value = parse_size(&word.text);
        if value.is_none() {
            self.error(
                &word.span,
                ErrorKind::InvalidSize {
                    directive: d.name().to_string(),
                    value: word.text.clone(),
                },
            );
        }
        value
    }

    /// The word as `on`/`off`, or an error saying it must be one of them.
    pub(super) fn flag(&mut self, d: &Directive, word: &Word) -> Option<bool> {
        let value = parse_flag(&word.text);
        if value.is_none() {
            self.error(
                &word.span,
                ErrorKind::InvalidFlag {
                    directive: d.name().to_string(),
                    value: word.text.clone(),
                },
            );
        }
        value
    }

    /// The word as a number of at least `min`, or an `invalid number` error.
    pub(super) fn number<T: FromStr + PartialOrd>(
        &mut self,
        d: &Directive,
        word: &Word,
        min: T,
    ) -> Option<T> {
        let value = parse_number::<T>(&word.text).filter(|n| *n >= min);
        if value.is_none() {
            self.error(
                &word.span,
                ErrorKind::InvalidNumber {
                    directive: d.name().to_string(),
                    value: word.text.clone(),
                },
            );
        }
        value
    }

    /// The port text, or an `invalid port` error.
    pub(super) fn port(&mut self, d: &Directive, word: &Word, text: &str) -> Option<u16> {
        let value = parse_port(text);
        if value.is_none() {
            self.error(
                &word.span,
                ErrorKind::InvalidPort {
                    directive: d.name().to_string(),
                    value: text.to_string(),
                },
            );
        }
        value
    }

    /// Checks `path`, the path of a `unix:PATH` address written in `word`, as the kernel
    /// takes it (not empty, shorter than `sun_path`); reports `word` when it is not.
    pub(super) fn unix_path(&mut self, d: &Directive, word: &Word, path: &str) -> Option<()> {
        // `sun_path` holds 108 bytes on Linux, the last a NUL.
        if !path.is_empty() && path.len() < 108 {
            return Some(());
        }
        let kind = ErrorKind::InvalidAddress {
            directive: d.name().into(),
            address: word.text.clone(),
        };
        self.error(&word.span, kind);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let s = Duration::from_secs;
        assert_eq!(parse_time("30"), Some(s(30)));
        assert_eq!(parse_time("100s"), Some(s(100)));
        assert_eq!(parse_time("1m30s"), Some(s(90)));
        assert_eq!(parse_time("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_time("1s500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_time("2h"), Some(s(7200)));
        assert_eq!(parse_time("1d"), Some(s(86_400)));
        assert_eq!(parse_time("1w"), Some(s(604_800)));
        assert_eq!(parse_time("1M"), Some(s(30 * 86_400)));
        assert_eq!(parse_time("1y"), Some(s(365 * 86_400)));
        for bad in ["", "10q", "s", "1s1m", "1s1s", "-1s", "1.5s", "1 s"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn sizes_flags_numbers_ports() {
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("4k"), Some(4096));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("1x"), None);
        assert_eq!(parse_size("k"), None);
        assert_eq!(parse_flag("ON"), Some(true));
        assert_eq!(parse_flag("off"), Some(false));
        assert_eq!(parse_flag("yes"), None);
        assert_eq!(parse_number::<u32>("+5"), None);
        assert_eq!(parse_port("0"), None);
        assert_eq!(parse_port("99999"), None);
        assert_eq!(parse_port("8080"), Some(8080));
    }

    #[test]
    fn host_and_port() {
        assert_eq!(split_host_port("a:80"), Some(("a", Some("80"))));
        assert_eq!(split_host_port("a"), Some(("a", None)));
        assert_eq!(split_host_port("[::1]:8080"), Some(("::1", Some("8080"))));
        assert_eq!(split_host_port("[::]"), Some(("::", None)));
        assert_eq!(split_host_port("::1"), Some(("::1", None)));
        assert_eq!(split_host_port("[::1"), None);
        assert_eq!(split_host_port("[::1]x"), None);
        assert_eq!(split_host_port(":80"), None);
    }
}
