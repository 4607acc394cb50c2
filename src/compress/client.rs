//! What a request's headers say about compressing its response, read nginx's way, byte for
//! byte: whether `Accept-Encoding` takes gzip (with nginx's `q=` parser, quirks included), and
//! whether the `User-Agent` is the MSIE 4-6 that `gzip_disable msie6` names.
//!
//! Pure: bytes in, a yes or no out. Must not import anything of tether.

/// Whether an `Accept-Encoding` value takes gzip, as nginx's `ngx_http_gzip_accept_encoding`
/// decides: the first `gzip` that starts a token (at the start, or after `,` or a space; so
/// `x-gzip` alone is not enough), followed by the end, `,`, spaces, or `;q=` with a quality
/// above zero. `*` does not count, as in nginx.
pub fn accepts_gzip(value: &[u8]) -> bool {
    if value.len() < 4 {
        return false;
    }
    if value.starts_with(b"gzip,") {
        return true;
    }
    let Some(at) = token_start(value) else {
        return false;
    };
    let mut rest = value[at + 4..].iter();
    loop {
        match rest.next() {
            None | Some(b',') => return true,
            Some(b';') => break,
            Some(b' ') => continue,
            Some(_) => return false,
        }
    }
    loop {
        match rest.next() {
            None => return true,
            Some(b'q' | b'Q') => break,
            Some(b' ') => continue,
            Some(_) => return false,
        }
    }
    let rest = rest.as_slice();
    match rest.split_first() {
        Some((b'=', quality)) if !quality.is_empty() => nginx_quality(quality) > 0,
        _ => false,
    }
}

/// Where the first `gzip` (any case) that starts a token begins.
fn token_start(value: &[u8]) -> Option<usize> {
    let mut from = 0;
    while from + 4 <= value.len() {
        let found = value[from..]
            .windows(4)
            .position(|w| w.eq_ignore_ascii_case(b"gzip"))?;
        let at = from + found;
        if at == 0 || matches!(value[at - 1], b',' | b' ') {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

/// nginx's `ngx_http_gzip_quantity`, quirk for quirk: `0` or `1`, then optionally `.` and at
/// most three digits that it adds up (so `0.5` and `0.05` both count as 5); anything
/// malformed is 0, refused.
fn nginx_quality(text: &[u8]) -> u32 {
    let mut bytes = text.iter();
    let mut quality = match bytes.next() {
        Some(b'0') => 0,
        Some(b'1') => 100,
        _ => return 0,
    };
    match bytes.next() {
        None | Some(b',' | b' ') => return quality,
        Some(b'.') => {}
        Some(_) => return 0,
    }
    let mut digits = 0;
    for &byte in bytes {
        match byte {
            b',' | b' ' => break,
            b'0'..=b'9' => {
                quality += u32::from(byte - b'0');
                digits += 1;
            }
            _ => return 0,
        }
    }
    if quality > 100 || digits > 3 {
        0
    } else {
        quality
    }
}

/// Whether a `User-Agent` is what nginx calls `msie6`: `MSIE 4.`, `MSIE 5.`, or `MSIE 6.`
/// without `SV1` after it (Windows XP SP2's MSIE 6 handles gzip), and not Opera posing as
/// MSIE.
pub fn is_msie6(agent: &[u8]) -> bool {
    let Some(at) = find(agent, b"MSIE ") else {
        return false;
    };
    // nginx looks at the version only when a few bytes follow it.
    if at + 7 >= agent.len() || agent[at + 6] != b'.' || find(agent, b"Opera").is_some() {
        return false;
    }
    match agent[at + 5] {
        b'4' | b'5' => true,
        b'6' => find(&agent[at + 8..], b"SV1").is_none(),
        _ => false,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_as_nginx_reads_it() {
        for yes in [
            "gzip",
            "gzip, deflate, br",
            "deflate, gzip",
            "br,gzip",
            "GZIP",
            "gzip;q=1.0",
            "gzip; q=0.5",
            "gzip;q=1",
            "gzip ;q=0.001",
            "x-gzip, gzip",
            "gzip,",
        ] {
            assert!(accepts_gzip(yes.as_bytes()), "{yes}");
        }
        for no in [
            "",
            "gzi",
            "deflate, br",
            "*",
            "x-gzip",
            "gzipx",
            "gzip;q=0",
            "gzip;q=0.000",
            "gzip; q=0,deflate",
            "gzip;q=2",
            "gzip;q=0.0001",
            "gzip;q=",
            "gzip;level=1",
            "identity;gzip",
        ] {
            assert!(!accepts_gzip(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn msie6_is_msie_four_to_six_without_sv1() {
        let agents = [
            ("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)", true),
            ("Mozilla/4.0 (compatible; MSIE 5.5; Windows 98)", true),
            (
                "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)",
                false,
            ),
            ("Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.0)", false),
            ("Opera/9.0 (compatible; MSIE 6.0; Windows NT 5.1)", false),
            ("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0", false),
            ("MSIE 6.0", true),
            ("MSIE 6.", false),
        ];
        for (agent, msie6) in agents {
            assert_eq!(is_msie6(agent.as_bytes()), msie6, "{agent}");
        }
    }
}
