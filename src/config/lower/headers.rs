//! The response-header directives shared by `http`, `server` and `location`:
//! `proxy_hide_header`, `proxy_pass_header`, `proxy_ignore_headers`, `expires`,
//! `proxy_redirect`, `proxy_cookie_path`, `proxy_cookie_domain`, `proxy_cookie_flags` and
//! `server_tokens`, with nginx's inheritance (each list as a whole, by a level that writes
//! none). Must not import other `lower` contexts.

use std::sync::Arc;
use std::time::Duration;

use super::Lowering;
use super::values::parse_time;
use crate::config::ast::{Directive, Word};
use crate::config::error::ErrorKind;
use crate::config::model::{
    CookieFlag, CookieFlags, Expires, Pattern, Redirect, ResponseRules, SameSiteValue,
    ServerTokens, ValueRewrite,
};

/// The response-header rules written at one level; `None` means "inherit".
#[derive(Clone, Debug, Default)]
pub(super) struct ResponseLayer {
    hide: Option<Arc<Vec<String>>>,
    pass: Option<Arc<Vec<String>>>,
    ignore: Option<Arc<Vec<String>>>,
    expires: Option<Expires>,
    redirects: Option<Arc<Vec<Redirect>>>,
    cookie_domains: Option<Arc<Vec<ValueRewrite>>>,
    cookie_paths: Option<Arc<Vec<ValueRewrite>>>,
    cookie_flags: Option<Arc<Vec<CookieFlags>>>,
    server_tokens: Option<ServerTokens>,
}

/// Why `proxy_ignore_headers` changes nothing in tether.
const IGNORE_HEADERS: &str = "without a cache tether acts on none of these headers (it streams, \
                              follows no X-Accel-Redirect, limits no rate)";

/// The headers `proxy_ignore_headers` names (nginx's list).
const IGNORABLE: [&str; 9] = [
    "x-accel-redirect",
    "x-accel-expires",
    "x-accel-limit-rate",
    "x-accel-buffering",
    "x-accel-charset",
    "expires",
    "cache-control",
    "set-cookie",
    "vary",
];

impl ResponseLayer {
    /// This level's rules, falling back to `outer`'s list by list.
    pub(super) fn over(&self, outer: &ResponseLayer) -> ResponseLayer {
        fn pick<T: Clone>(inner: &Option<T>, outer: &Option<T>) -> Option<T> {
            inner.as_ref().or(outer.as_ref()).cloned()
        }
        ResponseLayer {
            hide: pick(&self.hide, &outer.hide),
            pass: pick(&self.pass, &outer.pass),
            ignore: pick(&self.ignore, &outer.ignore),
            expires: pick(&self.expires, &outer.expires),
            redirects: pick(&self.redirects, &outer.redirects),
            cookie_domains: pick(&self.cookie_domains, &outer.cookie_domains),
            cookie_paths: pick(&self.cookie_paths, &outer.cookie_paths),
            cookie_flags: pick(&self.cookie_flags, &outer.cookie_flags),
            server_tokens: pick(&self.server_tokens, &outer.server_tokens),
        }
    }

    /// The effective rules: this layer over nginx's defaults.
    pub(super) fn resolve(self) -> ResponseRules {
        ResponseRules {
            hide: self.hide.unwrap_or_default(),
            pass: self.pass.unwrap_or_default(),
            ignore: self.ignore.unwrap_or_default(),
            expires: self.expires.unwrap_or_default(),
            redirects: self.redirects,
            cookie_domains: self.cookie_domains.unwrap_or_default(),
            cookie_paths: self.cookie_paths.unwrap_or_default(),
            cookie_flags: self.cookie_flags.unwrap_or_default(),
            server_tokens: self.server_tokens.unwrap_or_default(),
        }
    }
}

impl Lowering {
    /// Applies `d` to `layer` if it is a response-header directive; false if it is not one.
    /// `d` has passed [`Lowering::accepts`].
    pub(super) fn response_setting(&mut self, layer: &mut ResponseLayer, d: &Directive) -> bool {
        let args = &d.args;
        match d.name() {
            "proxy_hide_header" | "proxy_pass_header" => {
                let name = args[0].text.to_ascii_lowercase();
                let slot = if d.name() == "proxy_hide_header" {
                    &mut layer.hide
                } else {
                    &mut layer.pass
                };
                Arc::make_mut(slot.get_or_insert_with(Arc::default)).push(name);
            }
            "proxy_ignore_headers" => {
                let mut names = Vec::new();
                for word in args {
                    let lower = word.text.to_ascii_lowercase();
                    if IGNORABLE.contains(&lower.as_str()) {
                        names.push(lower);
                    } else {
                        self.invalid_value(d, word);
                    }
                }
                let slot = layer.ignore.get_or_insert_with(Arc::default);
                Arc::make_mut(slot).extend(names);
                // Recorded, so `-t` says it changes nothing (README: Response headers).
                self.ignore(d, IGNORE_HEADERS);
            }
            "expires" => self.once(&mut layer.expires, d, |cx| cx.expires(d)),
            "server_tokens" => {
                let tokens = match args[0].text.as_str() {
                    "on" | "build" => Some(ServerTokens::On),
                    "off" => Some(ServerTokens::Off),
                    _ => {
                        self.invalid_value(d, &args[0]);
                        None
                    }
                };
                self.once(&mut layer.server_tokens, d, |_| tokens);
            }
            "proxy_redirect" => self.redirect(layer, d),
            "proxy_cookie_domain" | "proxy_cookie_path" => {
                let slot = if d.name() == "proxy_cookie_domain" {
                    &mut layer.cookie_domains
                } else {
                    &mut layer.cookie_paths
                };
                let list = Arc::make_mut(slot.get_or_insert_with(Arc::default));
                match args.as_slice() {
                    [off] if off.text == "off" => list.clear(),
                    [_] => self.error(
                        &d.span,
                        ErrorKind::InvalidArgCount {
                            name: d.name().into(),
                        },
                    ),
                    [from, to] => {
                        let mut pattern = pattern(from);
                        // nginx drops one leading dot of a domain pattern: `.example.com`
                        // matches the cookie domain `example.com` or `.example.com`.
                        if let (Pattern::Text(text), "proxy_cookie_domain") =
                            (&mut pattern, d.name())
                            && text.starts_with('.')
                        {
                            text.remove(0);
                        }
                        list.push(ValueRewrite {
                            pattern,
                            replacement: to.text.clone(),
                            span: d.span.clone(),
                        });
                    }
                    _ => unreachable!("accepts checked 1 or 2 arguments"),
                }
            }
            "proxy_cookie_flags" => self.cookie_flags(layer, d),
            _ => return false,
        }
        true
    }

    /// `expires [modified] TIME | @TIME | epoch | max | off`.
    fn expires(&mut self, d: &Directive) -> Option<Expires> {
        let (modified, word) = match d.args.as_slice() {
            [first, word] if first.text == "modified" => (true, word),
            [word] => (false, word),
            _ => {
                self.error(
                    &d.span,
                    ErrorKind::InvalidArgCount {
                        name: d.name().into(),
                    },
                );
                return None;
            }
        };
        let text = word.text.as_str();
        if text.contains('$') {
            // nginx allows a variable (usually a `map` of `$sent_http_content_type`); tether
            // does not read response headers in variables yet, so say so rather than ignore it.
            let kind = ErrorKind::ValueNotSupported {
                directive: d.name().into(),
                value: word.text.clone(),
            };
            self.error(&word.span, kind);
            return None;
        }
        let expires = match (text, modified) {
            ("epoch", false) => Some(Expires::Epoch),
            ("max", false) => Some(Expires::Max),
            ("off", false) => Some(Expires::Off),
            _ if text.starts_with('@') && !modified => parse_time(&text[1..])
                .filter(|t| *t < Duration::from_secs(86_400))
                .map(Expires::TimeOfDay),
            _ => {
                let (sign, digits) = match text.strip_prefix('-') {
                    Some(rest) => (-1, rest),
                    None => (1, text.strip_prefix('+').unwrap_or(text)),
                };
                parse_time(digits)
                    .and_then(|t| i64::try_from(t.as_secs()).ok())
                    .map(|s| Expires::After {
                        seconds: sign * s,
                        modified,
                    })
            }
        };
        if expires.is_none() {
            self.invalid_value(d, word);
        }
        expires
    }

    /// `proxy_redirect default | off | REDIRECT REPLACEMENT`, several per level.
    fn redirect(&mut self, layer: &mut ResponseLayer, d: &Directive) {
        let list = Arc::make_mut(layer.redirects.get_or_insert_with(Arc::default));
        match d.args.as_slice() {
            [word] if word.text == "off" => list.clear(),
            [word] if word.text == "default" => list.push(Redirect::Default {
                span: Some(d.span.clone()),
            }),
            // `false` is nginx's old spelling of `off`.
            [word] if word.text == "false" => list.clear(),
            [word] => self.invalid_value(d, word),
            [from, to] => list.push(Redirect::Rewrite(ValueRewrite {
                pattern: pattern(from),
                replacement: to.text.clone(),
                span: d.span.clone(),
            })),
            _ => unreachable!("accepts checked 1 or 2 arguments"),
        }
    }

    /// `proxy_cookie_flags off | COOKIE [FLAG...]`.
    fn cookie_flags(&mut self, layer: &mut ResponseLayer, d: &Directive) {
        let list = Arc::make_mut(layer.cookie_flags.get_or_insert_with(Arc::default));
        let [cookie, words @ ..] = d.args.as_slice() else {
            return;
        };
        if cookie.text == "off" && words.is_empty() {
            list.clear();
            return;
        }
        let mut flags = Vec::new();
        for word in words {
            let flag = match word.text.to_ascii_lowercase().as_str() {
                "secure" => CookieFlag::Secure(true),
                "nosecure" => CookieFlag::Secure(false),
                "httponly" => CookieFlag::HttpOnly(true),
                "nohttponly" => CookieFlag::HttpOnly(false),
                "samesite=strict" => CookieFlag::SameSite(Some(SameSiteValue::Strict)),
                "samesite=lax" => CookieFlag::SameSite(Some(SameSiteValue::Lax)),
                "samesite=none" => CookieFlag::SameSite(Some(SameSiteValue::None)),
                "nosamesite" => CookieFlag::SameSite(None),
                _ => {
                    let kind = ErrorKind::InvalidParameter {
                        directive: d.name().into(),
                        value: word.text.clone(),
                    };
                    self.error(&word.span, kind);
                    continue;
                }
            };
            flags.push(flag);
        }
        list.push(CookieFlags {
            cookie: pattern(cookie),
            flags,
            span: d.span.clone(),
        });
    }
}

/// `~REGEX`, `~*REGEX` or a text.
fn pattern(word: &Word) -> Pattern {
    let text = word.text.as_str();
    if let Some(source) = text.strip_prefix("~*") {
        Pattern::Regex {
            source: source.into(),
            caseless: true,
        }
    } else if let Some(source) = text.strip_prefix('~') {
        Pattern::Regex {
            source: source.into(),
            caseless: false,
        }
    } else {
        Pattern::Text(text.into())
    }
}
