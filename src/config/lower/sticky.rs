//! Session stickiness of an upstream: `sticky cookie`, `sticky route` and `sticky_secret`.
//!
//! `sticky_secret` may be written in `http` and in `upstream`; the upstream's wins, and it only
//! means something under `sticky cookie` (elsewhere it is harmless, so one http-level secret can
//! serve every group). `sticky route` arguments stay verbatim templates: `vars` compiles them.
//! Whether a group *can* be sticky by route (servers with `route=`, no two alike) is checked by
//! `upstream`, which sees the servers. Must not import `balance` or `peer`: this is stickiness
//! as written, not the cookie codec.

use super::Lowering;
use super::upstream::set;
use super::values::parse_time;
use crate::config::ast::Directive;
use crate::config::error::ErrorKind;
use crate::config::model::{CookieExpiry, SameSite, Sticky, StickyCookie, Upstream};

impl Lowering {
    /// `sticky cookie NAME [params]` or `sticky route $var ...`; `None` once an error is
    /// reported. `d` has at least one argument (the directive table says so).
    pub(super) fn sticky(&mut self, d: &Directive) -> Option<Sticky> {
        let mode = &d.args[0];
        match mode.text.as_str() {
            "cookie" => self.sticky_cookie(d).map(Sticky::Cookie),
            "route" => self.sticky_route(d),
            // nginx Plus learns sessions from upstream responses; tether does not.
            "learn" => {
                let kind = ErrorKind::ValueNotSupported {
                    directive: d.name().into(),
                    value: mode.text.clone(),
                };
                self.error(&mode.span, kind);
                None
            }
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
        if let Some(Sticky::Cookie(cookie)) = &mut upstream.sticky
            && cookie.secret.is_none()
        {
            cookie.secret = Some(secret.to_string());
        }
    }
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
