//! What a location's rules do to the headers of its responses, as nginx: the upstream's
//! `Location`/`Refresh` rewritten by `proxy_redirect` (a rewritten relative one made absolute,
//! as nginx's `absolute_redirect on`), its `Set-Cookie` attributes by `proxy_cookie_domain`,
//! `proxy_cookie_path` and `proxy_cookie_flags`; `expires` on 2xx/3xx answers; and the
//! `Server` header every response carries (`server_tokens`).
//!
//! Compiled rules come from `snapshot::reply_headers`; this module only reads them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

use crate::config::{CookieFlag, Expires, SameSiteValue};
use crate::proxy::headers::Rewritable;
use crate::snapshot::reply_headers::{
    FlagRule, Matcher, Rendered, ReplyPlan, Segment, TextRewrite,
};

/// Where the client reached us: what a relative redirect is made absolute with.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The request's host (without port).
    pub host: &'a str,
    /// The port the connection came in on (left out when it is the scheme's default).
    pub port: u16,
}

/// Rewrites a proxied response's `Location`, `Refresh` and `Set-Cookie` headers by `plan`.
/// Nothing is looked at when the plan has no rule for them.
pub fn rewrite_upstream(
    headers: &mut HeaderMap,
    plan: &ReplyPlan,
    rendered: &Rendered,
    origin: Origin<'_>,
    present: u8,
) {
    let present = present & plan.rewritten;
    if present & (Rewritable::LOCATION | Rewritable::REFRESH) != 0 {
        if let Some(location) = headers.get(header::LOCATION)
            && let Some(text) = rewritten(location, 0, &plan.redirects, rendered)
        {
            let text = absolute(text, origin);
            if let Ok(value) = HeaderValue::from_str(&text) {
                headers.insert(header::LOCATION, value);
            }
        }
        if let Some(refresh) = headers.get(header::REFRESH)
            && let Some(at) = find_url(refresh.as_bytes())
            && let Some(text) = rewritten(refresh, at, &plan.redirects, rendered)
            && let Ok(value) = HeaderValue::from_str(&text)
        {
            headers.insert(header::REFRESH, value);
        }
    }
    if present & Rewritable::SET_COOKIE != 0 {
        let values: Vec<HeaderValue> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|value| rewrite_cookie(value, plan, rendered).unwrap_or_else(|| value.clone()))
            .collect();
        headers.remove(header::SET_COOKIE);
        for value in values {
            headers.append(header::SET_COOKIE, value);
        }
    }
}

/// The statuses `add_header` (without `always`) and `expires` apply to, as nginx.
pub fn is_eligible(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
    )
}

/// What every response of a location gets last: `expires` (2xx/3xx only) and, with
/// `server_tokens off`, `Server: tether` (unless the upstream's was let through by
/// `proxy_pass_header Server`). The default `Server` is written by the HTTP/1 writer, and
/// for HTTP/2 by [`default_server`], so the common case costs no header map work here.
pub fn finish(headers: &mut HeaderMap, status: StatusCode, plan: &ReplyPlan) {
    if plan.expires != Expires::Off && is_eligible(status) {
        set_expires(headers, plan.expires, SystemTime::now());
    }
    if let Some(server) = &plan.server
        && !headers.contains_key(header::SERVER)
    {
        headers.insert(header::SERVER, server.clone());
    }
}

/// `Server` for a response that has none (nginx's default, `server_tokens on`).
pub fn default_server(headers: &mut HeaderMap) {
    if !headers.contains_key(header::SERVER) {
        let tokens = crate::config::ServerTokens::On;
        headers.insert(
            header::SERVER,
            crate::snapshot::reply_headers::server_value(tokens),
        );
    }
}

/// The upstream's value with its text from byte `at` rewritten by the first rule that
/// matches (None: no rule matched). A text rule replaces the prefix it matched, a regex the
/// whole rest, as nginx.
fn rewritten(
    value: &HeaderValue,
    at: usize,
    rules: &[TextRewrite],
    rendered: &Rendered,
) -> Option<String> {
    let text = value.to_str().ok()?;
    let (head, rest) = text.split_at(at);
    for rule in rules {
        if let Some(replaced) = apply(rule, rest, rendered, false) {
            return Some(format!("{head}{replaced}"));
        }
    }
    None
}

/// `rest` rewritten by `rule`, or None when it does not match. `whole`: a text pattern must
/// match all of `rest`, case-insensitively (a cookie domain), not only its start.
fn apply(rule: &TextRewrite, rest: &str, rendered: &Rendered, whole: bool) -> Option<String> {
    let mut out = String::new();
    match &rule.matcher {
        Matcher::Text(pattern) => {
            let pattern = pattern.get(rendered);
            let matched = if whole {
                rest.eq_ignore_ascii_case(pattern)
            } else {
                rest.starts_with(pattern)
            };
            if !matched {
                return None;
            }
            push_segments(&mut out, &rule.replacement, rendered, None, rest);
            out.push_str(&rest[pattern.len()..]);
        }
        Matcher::Regex(regex) => {
            let captures = regex.captures(rest)?;
            push_segments(&mut out, &rule.replacement, rendered, Some(&captures), rest);
        }
    }
    Some(out)
}

fn push_segments(
    out: &mut String,
    segments: &[Segment],
    rendered: &Rendered,
    captures: Option<&regex::Captures<'_>>,
    _source: &str,
) {
    for segment in segments {
        match segment {
            Segment::Text(text) => out.push_str(text.get(rendered)),
            Segment::Capture(group) => {
                if let Some(found) = captures.and_then(|c| c.get(*group)) {
                    out.push_str(found.as_str());
                }
            }
        }
    }
}

/// A rewritten redirect that starts with `/` made absolute, as nginx's header filter does.
fn absolute(text: String, origin: Origin<'_>) -> String {
    if !text.starts_with('/') {
        return text;
    }
    let default_port = if origin.scheme == "https" { 443 } else { 80 };
    if origin.port == default_port || origin.port == 0 {
        format!("{}://{}{text}", origin.scheme, origin.host)
    } else {
        format!("{}://{}:{}{text}", origin.scheme, origin.host, origin.port)
    }
}

/// Where the URL of a `Refresh` value starts (after `url=`, any case).
fn find_url(value: &[u8]) -> Option<usize> {
    value
        .windows(4)
        .position(|w| w.eq_ignore_ascii_case(b"url="))
        .map(|at| at + 4)
}

/// One `Set-Cookie` value rewritten (None: nothing changed).
fn rewrite_cookie(
    value: &HeaderValue,
    plan: &ReplyPlan,
    rendered: &Rendered,
) -> Option<HeaderValue> {
    let text = value.to_str().ok()?;
    let mut parts: Vec<String> = text.split(';').map(str::to_string).collect();
    let mut changed = false;
    for part in parts.iter_mut().skip(1) {
        let Some((name, attr)) = part.split_once('=') else {
            continue;
        };
        let key = name.trim();
        let (rules, whole) = if key.eq_ignore_ascii_case("domain") {
            (&plan.cookie_domains, true)
        } else if key.eq_ignore_ascii_case("path") {
            (&plan.cookie_paths, false)
        } else {
            continue;
        };
        // nginx keeps one leading dot of a domain out of the comparison (and in the result).
        let (dot, bare) = match attr.strip_prefix('.') {
            Some(bare) if whole => (".", bare),
            _ => ("", attr),
        };
        if let Some(new) = rules
            .iter()
            .find_map(|rule| apply(rule, bare, rendered, whole))
        {
            *part = format!("{name}={dot}{new}");
            changed = true;
        }
    }
    let cookie_name = parts[0].split('=').next().unwrap_or("").trim().to_string();
    if let Some(rule) = plan
        .cookie_flags
        .iter()
        .find(|rule| flag_rule_matches(rule, &cookie_name, rendered))
    {
        for flag in &rule.flags {
            changed |= edit_flag(&mut parts, *flag);
        }
    }
    if !changed {
        return None;
    }
    HeaderValue::from_str(&parts.join(";")).ok()
}

fn flag_rule_matches(rule: &FlagRule, name: &str, rendered: &Rendered) -> bool {
    match &rule.cookie {
        Matcher::Text(text) => text.get(rendered) == name,
        Matcher::Regex(regex) => regex.is_match(name),
    }
}

/// Applies one flag to a cookie's attributes; true when it changed them. A flag already in
/// place is left as written (nginx); `samesite=` replaces another value.
fn edit_flag(parts: &mut Vec<String>, flag: CookieFlag) -> bool {
    let (attr, want): (&str, Option<String>) = match flag {
        CookieFlag::Secure(on) => ("secure", on.then(|| "Secure".to_string())),
        CookieFlag::HttpOnly(on) => ("httponly", on.then(|| "HttpOnly".to_string())),
        CookieFlag::SameSite(value) => (
            "samesite",
            value.map(|v| {
                let v = match v {
                    SameSiteValue::Strict => "Strict",
                    SameSiteValue::Lax => "Lax",
                    SameSiteValue::None => "None",
                };
                format!("SameSite={v}")
            }),
        ),
    };
    let found = parts.iter().skip(1).position(|part| {
        let name = part.split('=').next().unwrap_or("").trim();
        name.eq_ignore_ascii_case(attr)
    });
    match (found, want) {
        (None, None) => false,
        (Some(index), None) => {
            parts.remove(index + 1);
            true
        }
        (None, Some(want)) => {
            parts.push(format!(" {want}"));
            true
        }
        (Some(index), Some(want)) => {
            let part = &mut parts[index + 1];
            if attr == "samesite" && !part.trim().eq_ignore_ascii_case(&want) {
                *part = format!(" {want}");
                return true;
            }
            false
        }
    }
}

/// nginx's `expires` at `now`: `Expires` and `Cache-Control`, replacing the upstream's.
fn set_expires(headers: &mut HeaderMap, expires: Expires, now: SystemTime) {
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (at, control): (i64, String) = match expires {
        Expires::Off => return,
        Expires::Epoch => (1, "no-cache".into()),
        Expires::Max => (2_145_916_555, "max-age=315360000".into()),
        Expires::After { seconds, modified } => {
            let base = if modified {
                let last = headers
                    .get(header::LAST_MODIFIED)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| httpdate::parse_http_date(v).ok());
                match last {
                    Some(last) => last
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64),
                    None => return,
                }
            } else {
                now_secs
            };
            let at = base + seconds;
            let left = at - now_secs;
            let control = if seconds < 0 || left < 0 {
                "no-cache".to_string()
            } else {
                format!("max-age={left}")
            };
            (at, control)
        }
        Expires::TimeOfDay(of_day) => {
            let day = 86_400;
            let midnight = now_secs - now_secs.rem_euclid(day);
            let mut at = midnight + of_day.as_secs() as i64;
            if at <= now_secs {
                at += day;
            }
            (at, format!("max-age={}", at - now_secs))
        }
    };
    let when = UNIX_EPOCH + Duration::from_secs(at.max(0) as u64);
    if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(when)) {
        headers.insert(header::EXPIRES, value);
    }
    if let Ok(value) = HeaderValue::from_str(&control) {
        headers.insert(header::CACHE_CONTROL, value);
    }
}

#[cfg(test)]
#[path = "reply_headers_tests.rs"]
mod tests;
