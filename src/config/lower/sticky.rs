//! Session stickiness of an upstream: `sticky cookie`, `sticky route` and `sticky_secret`.
//!
//! `sticky_secret` may be written in `http` and in `upstream`; the upstream's wins, and it only
//! means something under `sticky cookie` and `sticky learn` (elsewhere it is harmless, so one
//! http-level secret can serve every group). `sticky learn` is nginx Plus's syntax with two
//! sources of tether's own (`$signalr_connection_token`, `$engineio_sid`); its `lookup=`
//! variables are compiled by `vars`, and a zone named by two groups is refused here. `sticky route` arguments stay verbatim templates: `vars` compiles them.
//! Whether a group *can* be sticky by route (servers with `route=`, no two alike) is checked by
//! `upstream`, which sees the servers. Must not import `balance` or `peer`: this is stickiness
//! as written, not the cookie codec.

use std::collections::HashMap;
use std::time::Duration;

use super::Lowering;
use super::upstream::set;
use super::values::parse_time;
use crate::config::ast::{Directive, Word};
use crate::config::error::ErrorKind;
use crate::config::model::{
    CookieExpiry, LearnSource, SameSite, Sticky, StickyCookie, StickyLearn, Upstream,
};

/// nginx's default `timeout=` of `sticky learn`.
const LEARN_TIMEOUT: Duration = Duration::from_secs(600);

impl Lowering {
    /// `sticky cookie NAME [params]` or `sticky route $var ...`; `None` once an error is
    /// reported. `d` has at least one argument (the directive table says so).
    pub(super) fn sticky(&mut self, d: &Directive) -> Option<Sticky> {
        let mode = &d.args[0];
        match mode.text.as_str() {
            "cookie" => self.sticky_cookie(d).map(Sticky::Cookie),
            "route" => self.sticky_route(d),
            "learn" => self.sticky_learn(d).map(Sticky::Learn),
            _ => {
                let kind = ErrorKind::InvalidValue {
                    directive: d.name().into(),
                    value: mode.text.clone(),
                };
                self.error(&mode.span, kind);
                None
            }
        }
    }

    /// `sticky cookie NAME [expires=TIME|max] [domain=D] [path=P] [httponly] [secure]
    /// [samesite=strict|lax|none]`. The secret is filled in by the caller.
    fn sticky_cookie(&mut self, d: &Directive) -> Option<StickyCookie> {
        let Some(name) = d.args.get(1) else {
            let name = d.name().into();
            self.error(&d.span, ErrorKind::InvalidArgCount { name });
            return None;
        };
        let mut valid = true;
        if !is_cookie_token(&name.text) {
            let kind = ErrorKind::InvalidCookieName {
                name: name.text.clone(),
            };
            self.error(&name.span, kind);
            valid = false;
        }
        let mut cookie = StickyCookie {
            name: name.text.clone(),
            expires: None,
            domain: None,
            path: "/".to_string(),
            http_only: false,
            secure: false,
            same_site: None,
            secret: None,
            span: d.span.clone(),
        };
        // As on `server` lines, a parameter given twice keeps its last value.
        for param in &d.args[2..] {
            let text = param.text.as_str();
            let (key, value) = text.split_once('=').unwrap_or((text, ""));
            let ok = match (key, text.contains('=')) {
                ("expires", true) => set(&mut cookie.expires, cookie_expiry(value).map(Some)),
                ("domain", true) if is_attribute_value(value) => {
                    cookie.domain = Some(value.to_string());
                    true
                }
                // A path not starting with `/` is silently replaced by browsers (RFC 6265
                // 5.2.4), which would make stickiness fail with no visible cause.
                ("path", true) if value.starts_with('/') && is_attribute_value(value) => {
                    cookie.path = value.to_string();
                    true
                }
                ("httponly", false) => set(&mut cookie.http_only, Some(true)),
                ("secure", false) => set(&mut cookie.secure, Some(true)),
                ("samesite", true) => set(&mut cookie.same_site, same_site(value).map(Some)),
                _ => false,
            };
            if !ok {
                valid = false;
                self.invalid_parameter(d, param);
            }
        }
        valid.then_some(cookie)
    }

    /// `sticky route $var ...`: at least one variable, each written as one.
    fn sticky_route(&mut self, d: &Directive) -> Option<Sticky> {
        let words = &d.args[1..];
        if words.is_empty() {
            let name = d.name().into();
            self.error(&d.span, ErrorKind::InvalidArgCount { name });
            return None;
        }
        let mut valid = true;
        for word in words {
            if word.text.len() < 2 || !word.text.starts_with('$') {
                let value = word.text.clone();
                self.error(&word.span, ErrorKind::InvalidVariableName { value });
                valid = false;
            }
        }
        valid.then(|| Sticky::Route {
            variables: words.iter().map(|w| w.text.clone()).collect(),
            span: d.span.clone(),
        })
    }

    /// `sticky learn create=$v... lookup=$v... zone=NAME:SIZE [timeout=T] [header]
    /// [sync=redis://HOST[:PORT][/DB]]`: `create`, `lookup` and `zone` required, the first two
    /// repeatable (the first key found wins, as nginx's).
    fn sticky_learn(&mut self, d: &Directive) -> Option<StickyLearn> {
        let mut learn = StickyLearn {
            create: Vec::new(),
            lookup: Vec::new(),
            zone: String::new(),
            size: 0,
            timeout: LEARN_TIMEOUT,
            header: false,
            sync: None,
            secret: None,
            span: d.span.clone(),
        };
        let mut valid = true;
        for param in &d.args[1..] {
            valid &= self.learn_parameter(d, param, &mut learn);
        }
        let missing = [
            ("create", learn.create.is_empty()),
            ("lookup", learn.lookup.is_empty()),
            ("zone", learn.zone.is_empty()),
        ];
        for (parameter, _) in missing.iter().filter(|(_, missing)| *missing) {
            if valid {
                self.error(&d.span, ErrorKind::StickyLearnMissing { parameter });
            }
            valid = false;
        }
        valid.then_some(learn)
    }

    /// One parameter of `sticky learn` into `learn`; false once an error is reported.
    fn learn_parameter(&mut self, d: &Directive, param: &Word, learn: &mut StickyLearn) -> bool {
        let text = param.text.as_str();
        let (key, value) = text.split_once('=').unwrap_or((text, ""));
        match (key, text.contains('=')) {
            ("create", true) => match learn_source(value) {
                Some(source) => learn.create.push(source),
                None => {
                    let value = value.to_string();
                    self.error(&param.span, ErrorKind::StickyLearnSource { value });
                    return false;
                }
            },
            ("lookup", true) => {
                if value.len() < 2 || !value.starts_with('$') {
                    let value = value.to_string();
                    self.error(&param.span, ErrorKind::InvalidVariableName { value });
                    return false;
                }
                learn.lookup.push(value.to_string());
            }
            ("zone", true) => match self.zone_parameter(d, param, value) {
                Some((name, size)) => (learn.zone, learn.size) = (name, size),
                None => return false,
            },
            ("timeout", true) => match parse_time(value).filter(|t| !t.is_zero()) {
                Some(timeout) => learn.timeout = timeout,
                None => {
                    self.invalid_parameter(d, param);
                    return false;
                }
            },
            ("header", false) => learn.header = true,
            ("sync", true) if is_redis_url(value) => learn.sync = Some(value.to_string()),
            ("sync", true) => {
                let value = value.to_string();
                self.error(&param.span, ErrorKind::InvalidSyncUrl { value });
                return false;
            }
            _ => {
                self.invalid_parameter(d, param);
                return false;
            }
        }
        true
    }

    /// Refuses a `sticky learn` zone named by a second upstream: sessions hold the servers'
    /// values, which are keyed per group, so two groups' sessions cannot share a table.
    pub(super) fn check_learn_zones(&mut self, upstreams: &[Upstream]) {
        let mut owners: HashMap<&str, &str> = HashMap::new();
        for upstream in upstreams {
            let Some(Sticky::Learn(learn)) = &upstream.sticky else {
                continue;
            };
            match owners.get(learn.zone.as_str()) {
                Some(owner) => {
                    let kind = ErrorKind::StickyLearnZoneShared {
                        name: learn.zone.clone(),
                        upstream: owner.to_string(),
                    };
                    self.error(&learn.span, kind);
                }
                None => {
                    owners.insert(&learn.zone, &upstream.name);
                }
            }
        }
    }

    /// `sticky_secret STRING` (http or upstream): any non-empty string.
    pub(super) fn sticky_secret(&mut self, d: &Directive) -> Option<String> {
        let word = &d.args[0];
        if word.text.is_empty() {
            let kind = ErrorKind::InvalidValue {
                directive: d.name().into(),
                value: String::new(),
            };
            self.error(&word.span, kind);
            return None;
        }
        Some(word.text.clone())
    }
}

/// Gives each `sticky cookie` group without its own `sticky_secret` the http-level one. Runs
/// after the whole `http` block is read: nginx merges levels after parsing, so the http-level
/// directive may come after the upstream.
pub(super) fn inherit_secret(upstreams: &mut [Upstream], secret: Option<&str>) {
    let Some(secret) = secret else {
        return;
    };
    for upstream in upstreams {
        let own = match &mut upstream.sticky {
            Some(Sticky::Cookie(cookie)) => &mut cookie.secret,
            Some(Sticky::Learn(learn)) => &mut learn.secret,
            _ => continue,
        };
        if own.is_none() {
            *own = Some(secret.to_string());
        }
    }
}

/// A `create=` variable: one whose value a response carries. Variable names are matched
/// without case, as nginx's; a cookie's name keeps its case (cookie names are case-sensitive).
fn learn_source(text: &str) -> Option<LearnSource> {
    let name = text.strip_prefix('$')?;
    let after = |prefix: &str| {
        name.get(..prefix.len())
            .filter(|head| head.eq_ignore_ascii_case(prefix))
            .map(|_| &name[prefix.len()..])
            .filter(|rest| !rest.is_empty())
    };
    if name.eq_ignore_ascii_case("signalr_connection_token") {
        Some(LearnSource::SignalrConnectionToken)
    } else if name.eq_ignore_ascii_case("engineio_sid") {
        Some(LearnSource::EngineioSid)
    } else if let Some(cookie) = after("upstream_cookie_") {
        Some(LearnSource::UpstreamCookie(cookie.to_string()))
    } else {
        let header = after("upstream_http_")?;
        Some(LearnSource::UpstreamHeader(
            header.to_ascii_lowercase().replace('_', "-"),
        ))
    }
}

/// `redis://HOST[:PORT][/DB]`: a host, a port in 1..=65535 if given, a database number if
/// given. What the sync's Redis client is handed.
fn is_redis_url(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("redis://") else {
        return false;
    };
    let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
    let db_ok = db.is_empty() || db.parse::<u32>().is_ok();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (host, Some(port)),
        _ => (authority, None),
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p != 0));
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_[]:".contains(&b));
    db_ok && port_ok && host_ok
}

/// `max` or a non-zero time (a cookie that expires at once could never keep a session).
fn cookie_expiry(text: &str) -> Option<CookieExpiry> {
    if text == "max" {
        return Some(CookieExpiry::Max);
    }
    parse_time(text)
        .filter(|t| !t.is_zero())
        .map(CookieExpiry::After)
}

fn same_site(text: &str) -> Option<SameSite> {
    match text {
        "strict" => Some(SameSite::Strict),
        "lax" => Some(SameSite::Lax),
        "none" => Some(SameSite::None),
        _ => None,
    }
}

/// An RFC 6265 cookie name: an RFC 7230 token (no separators, spaces or controls).
fn is_cookie_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A `Domain`/`Path` attribute value: non-empty ASCII without controls or `;` (RFC 6265), so
/// it cannot end the attribute early or break the `Set-Cookie` header.
fn is_attribute_value(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii() && !b.is_ascii_control() && b != b';')
}
