//! What a response head says about compressing it, and the head of a compressed response:
//! nginx's tests over `Content-Encoding`, `Content-Length`, `Content-Type` and, for proxied
//! requests, `Expires`, `Cache-Control`, `Last-Modified` and `ETag`.
//!
//! Must not import anything of tether but `config`.

use http::header::{self, HeaderMap, HeaderValue};

use crate::config::{GzipProxied, GzipTypes};

/// The response already has a content coding (an empty `Content-Encoding` does not count, as
/// in nginx).
pub(super) fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|value| !value.is_empty())
}

/// The `Content-Length` the response declares, if it declares one that reads.
pub(super) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether the response's type is in `gzip_types` (`text/html` always is).
///
/// The type compared is nginx's `content_type_len`: the value cut at a `;` only when a
/// `charset=` parameter follows it (`text/html; charset=utf-8` is `text/html`), else the
/// whole value (`text/html; q=1` matches nothing), compared without case. A response with no
/// `Content-Type` matches only `gzip_types *`.
pub(super) fn type_listed(headers: &HeaderMap, types: &GzipTypes) -> bool {
    let list = match types {
        GzipTypes::Any => return true,
        GzipTypes::List(list) => list,
    };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let media = media_type(value.as_bytes());
    media.eq_ignore_ascii_case(b"text/html")
        || list
            .iter()
            .any(|t| media.eq_ignore_ascii_case(t.as_bytes()))
}

/// The media type as nginx keeps it for type tests (see [`type_listed`]).
fn media_type(value: &[u8]) -> &[u8] {
    let mut from = 0;
    while let Some(found) = value[from..].iter().position(|&b| b == b';') {
        let semicolon = from + found;
        let rest = &value[semicolon + 1..];
        let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
        let rest = &rest[start..];
        if rest.len() >= 8 && rest[..8].eq_ignore_ascii_case(b"charset=") {
            return &value[..semicolon];
        }
        from = semicolon + 1;
    }
    value
}

/// A `text/event-stream` response: each event must reach the client as it comes.
pub(super) fn is_event_stream(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|value| {
        media_type(value.as_bytes()).eq_ignore_ascii_case(b"text/event-stream")
    })
}

/// `gzip_proxied` for a request that came through a proxy, as `ngx_http_gzip_ok` walks it:
/// `off` refuses and `any` allows outright, `auth` allows a request with `Authorization`; a
/// response with `Expires` is then judged by `expired` alone, one with `Cache-Control` by
/// `no-cache`/`no-store`/`private` alone; otherwise `no_last_modified` and `no_etag` refuse a
/// response that has the header they name — and with none of those the answer is yes.
pub(super) fn proxied_allows(proxied: &GzipProxied, authorized: bool, headers: &HeaderMap) -> bool {
    if proxied.off {
        return false;
    }
    if proxied.any || (authorized && proxied.auth) {
        return true;
    }
    if let Some(expires) = headers.get(header::EXPIRES) {
        return proxied.expired && expired(expires, headers.get(header::DATE));
    }
    let mut cache_control = headers.get_all(header::CACHE_CONTROL).iter().peekable();
    if cache_control.peek().is_some() {
        let says = |directive: &str| {
            headers
                .get_all(header::CACHE_CONTROL)
                .iter()
                .any(|value| has_directive(value.as_bytes(), directive))
        };
        return (proxied.no_cache && says("no-cache"))
            || (proxied.no_store && says("no-store"))
            || (proxied.private && says("private"));
    }
    if proxied.no_last_modified && headers.contains_key(header::LAST_MODIFIED) {
        return false;
    }
    !(proxied.no_etag && headers.contains_key(header::ETAG))
}

/// `Expires` before the response's `Date` (or now, without one); a date that does not parse
/// refuses, as in nginx.
fn expired(expires: &HeaderValue, date: Option<&HeaderValue>) -> bool {
    let parse = |value: &HeaderValue| httpdate::parse_http_date(value.to_str().ok()?).ok();
    let Some(expires) = parse(expires) else {
        return false;
    };
    let now = match date {
        Some(date) => match parse(date) {
            Some(date) => date,
            None => return false,
        },
        None => std::time::SystemTime::now(),
    };
    expires < now
}

/// Whether a `Cache-Control` value lists `directive` (any case, with or without a value).
fn has_directive(value: &[u8], directive: &str) -> bool {
    value.split(|&b| b == b',').any(|part| {
        let name = part.split(|&b| b == b'=').next().unwrap_or_default();
        name.trim_ascii().eq_ignore_ascii_case(directive.as_bytes())
    })
}

/// Turns the head into a compressed response's: `Content-Encoding: gzip`, no length (the body
/// is chunked, or runs to the close for HTTP/1.0), no `Accept-Ranges` (ranges of the
/// compressed bytes are not offered), and a weak `ETag` (`W/` added to a strong one; one that
/// is not a quoted string is dropped), as nginx does.
pub(super) fn mark_compressed(headers: &mut HeaderMap) {
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::ACCEPT_RANGES);
    let Some(etag) = headers.get(header::ETAG) else {
        return;
    };
    let bytes = etag.as_bytes();
    if bytes.len() > 2 && bytes.starts_with(b"W/") {
        return;
    }
    let weak = bytes
        .starts_with(b"\"")
        .then(|| HeaderValue::from_bytes(&[b"W/", bytes].concat()).ok())
        .flatten();
    match weak {
        Some(weak) => headers.insert(header::ETAG, weak),
        None => headers.remove(header::ETAG),
    };
}
