//! Values read from a request's headers: a header's values joined, a cookie, the user of a
//! `Basic` credential; and non-UTF-8 bytes appended as text. Pure (`http` and `cookie`).

use http::{HeaderMap, HeaderName, HeaderValue};

/// Every value of a header, joined with ", " (as nginx does for repeated headers).
pub(super) fn push_header(headers: &HeaderMap, name: &HeaderName, out: &mut String) {
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
pub(super) fn push_cookie(headers: &HeaderMap, name: &str, out: &mut String) {
    let mut cookies = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok);
    if let Some(found) = cookies.find(|c| c.name().eq_ignore_ascii_case(name)) {
        out.push_str(found.value());
    }
}

/// `$remote_user`: the user name of `Authorization: Basic BASE64(user:password)`.
pub(super) fn push_remote_user(headers: &HeaderMap, out: &mut String) {
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
