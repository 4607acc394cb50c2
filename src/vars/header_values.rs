//! Values read from a request's headers: a header's values joined, a cookie, the user of a
//! `Basic` credential; and non-UTF-8 bytes appended as text. Pure (`http` only).

use crate::header_list::HeaderList;
use http::{HeaderName, HeaderValue};

/// Every value of a header, joined with ", " (as nginx does for repeated headers).
pub(super) fn push_header(headers: &HeaderList, name: &HeaderName, out: &mut String) {
    for (i, value) in headers.get_all(name).iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_lossy(value.as_bytes(), out);
    }
}

/// Appends `bytes` as text: header values and decoded paths need not be UTF-8, so what is not
/// becomes U+FFFD, without allocating.
pub(super) fn push_lossy(bytes: &[u8], out: &mut String) {
    // The common case, valid UTF-8 (mostly ASCII), checked a word at a time.
    if let Ok(text) = std::str::from_utf8(bytes) {
        out.push_str(text);
        return;
    }
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

/// The first cookie called `name` across all `Cookie` headers (HTTP/2 may split them).
pub(super) fn push_cookie(headers: &HeaderList, name: &str, out: &mut String) {
    if let Some(value) = find_cookie(headers, |found, _| found.eq_ignore_ascii_case(name)) {
        out.push_str(value);
    }
}

/// The value of the first `NAME=VALUE` pair of a request's `Cookie` headers that `wanted`
/// accepts, borrowed from them; `wanted` sees the pairs in order up to it (and may see pairs
/// of a header that a byte past them then shows to be skipped: its answer for those is not
/// used).
///
/// Read as the `cookie` crate's `split_parse` reads them (what tether used before), without
/// building a `Cookie` per pair (which cost the sticky row a thousand instructions a request):
/// a header that is not visible ASCII is skipped whole, pairs are split at `;`, name and
/// value are cut at the first `=` and trimmed of spaces and tabs, and a piece without `=` or
/// with an empty name is skipped. The value is raw: quotes kept.
pub fn find_cookie<'h>(
    headers: &'h HeaderList,
    mut wanted: impl FnMut(&'h str, &'h str) -> bool,
) -> Option<&'h str> {
    'headers: for header in headers.get_all(http::header::COOKIE).iter() {
        // One pass over the header's bytes, which checks them as `HeaderValue::to_str` does,
        // cuts pieces at `;` and names at a piece's first `=`: cookie headers are short, and
        // one loop costs less than the set-up of the three scans it replaces.
        let bytes = header.as_bytes();
        let mut found = None;
        let mut start = 0;
        let mut equals = usize::MAX;
        for (at, &byte) in bytes.iter().enumerate() {
            match byte {
                b';' => {
                    if found.is_none() {
                        found = wanted_pair(bytes, start, equals, at, &mut wanted);
                    }
                    start = at + 1;
                    equals = usize::MAX;
                }
                b'=' => equals = equals.min(at),
                b' '..=b'~' | b'\t' => {}
                _ => continue 'headers,
            }
        }
        if found.is_none() {
            found = wanted_pair(bytes, start, equals, bytes.len(), &mut wanted);
        }
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The value of the piece `bytes[start..end]` (its first `=` at `equals`, `usize::MAX` for
/// none) when its name is not empty and `wanted` accepts the pair; both trimmed of spaces and
/// tabs. `bytes` is visible ASCII or tabs up to `end`.
#[inline(always)]
fn wanted_pair<'h>(
    bytes: &'h [u8],
    start: usize,
    equals: usize,
    end: usize,
    wanted: &mut impl FnMut(&'h str, &'h str) -> bool,
) -> Option<&'h str> {
    if equals == usize::MAX {
        return None;
    }
    let name = bytes[start..equals].trim_ascii();
    let value = bytes[equals + 1..end].trim_ascii();
    // SAFETY: the caller checked every byte up to `end` to be visible ASCII or a tab, so
    // these are UTF-8; checking again cost as much as the scan.
    let (name, value) = unsafe {
        (
            std::str::from_utf8_unchecked(name),
            std::str::from_utf8_unchecked(value),
        )
    };
    (!name.is_empty() && wanted(name, value)).then_some(value)
}

/// `$remote_user`: the user name of `Authorization: Basic BASE64(user:password)`.
pub(super) fn push_remote_user(headers: &HeaderList, out: &mut String) {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        push_basic_user(value, out);
    }
}

/// `$remote_user` from the (first) `Authorization` value.
pub fn push_basic_user(value: &HeaderValue, out: &mut String) {
    let bytes = value.as_bytes();
    let Some(encoded) = bytes
        .get(..6)
        .filter(|scheme| scheme.eq_ignore_ascii_case(b"basic "))
        .map(|_| bytes[6..].trim_ascii())
    else {
        return;
    };
    // Decoded a sextet at a time, up to the `:`; nothing is kept of the password.
    let start = out.len();
    let (mut bits, mut count) = (0u32, 0);
    for &byte in encoded {
        let sextet = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => break,
        };
        bits = (bits << 6) | u32::from(sextet);
        count += 6;
        if count >= 8 {
            count -= 8;
            let decoded = (bits >> count) as u8;
            if decoded == b':' {
                return;
            }
            out.push(char::from(decoded));
        }
    }
    // No `:`: not a Basic credential; nginx then leaves the user unset.
    out.truncate(start);
}

#[cfg(test)]
mod tests {
    use http::header::COOKIE;
    use proptest::prelude::*;

    use super::*;

    /// What the `cookie` crate reads from the same headers: the pairs tether read before.
    fn as_the_cookie_crate_reads(headers: &HeaderList) -> Vec<(&str, &str)> {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .filter_map(|c| Some((c.name_raw()?, c.value_raw()?)))
            .collect()
    }

    /// Asks [`find_cookie`] for every name the crate reads, and for names that are in no
    /// pair: each answer must be the value of the first pair of that name the crate reads.
    fn assert_found_as_the_crate_finds(headers: &HeaderList) {
        let pairs = as_the_cookie_crate_reads(headers);
        let absent = ["x", "", "a b", "\"a\""];
        for name in pairs.iter().map(|(name, _)| *name).chain(absent) {
            let expected = pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, value)| *value);
            assert_eq!(
                find_cookie(headers, |found, _| found == name),
                expected,
                "{name:?} in {headers:?}"
            );
        }
    }

    fn headers(values: &[&[u8]]) -> HeaderList {
        let mut headers = HeaderList::new();
        for value in values {
            headers.append(COOKIE, HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    #[test]
    fn pairs_are_trimmed_and_pieces_without_a_name_skipped() {
        let several = headers(&[b" a=1 ;b = \"2\";;=x; c; d==e\t", b"caf\xc3\xa9=1", b"f="]);
        let pairs = as_the_cookie_crate_reads(&several);
        assert_eq!(pairs, [("a", "1"), ("b", "\"2\""), ("d", "=e"), ("f", "")]);
        assert_found_as_the_crate_finds(&several);
        // Pairs before a byte that makes their header skipped are not found.
        let skipped_first = headers(&[b"g=1; h=\xc3\xa9".as_slice(), b"g=2"]);
        assert_eq!(
            find_cookie(&skipped_first, |name, _| name == "g"),
            Some("2")
        );
    }

    proptest! {
        /// Whatever the headers, the borrowed scan finds the pairs the `cookie` crate does.
        #[test]
        fn cookies_are_read_as_the_cookie_crate_reads_them(
            values in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::sample::select(&b"ab =;\t\"\xc3\xa9,"[..]),
                    0..24,
                ),
                0..3,
            )
        ) {
            let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            let headers = headers(&values);
            assert_found_as_the_crate_finds(&headers);
        }
    }
}
