//! What a location does to the upstream's response headers and to the headers of every
//! response it sends: `proxy_hide_header`, `proxy_pass_header`, `proxy_ignore_headers`,
//! `expires`, `proxy_redirect`, `proxy_cookie_path`, `proxy_cookie_domain`,
//! `proxy_cookie_flags` and `server_tokens`, inheritance already resolved. Pure data, as the
//! rest of `model`: patterns and replacements stay strings until a snapshot compiles them.

use std::sync::Arc;
use std::time::Duration;

use super::Span;

/// The response-header rules in force in one location (or at server level).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseRules {
    /// `proxy_hide_header` names, lowercased, beyond nginx's default hidden set (inherited as
    /// a whole by a level that writes none).
    pub hide: Arc<Vec<String>>,
    /// `proxy_pass_header` names, lowercased: default-hidden headers let through.
    pub pass: Arc<Vec<String>>,
    /// `proxy_ignore_headers` as written (validated; none of them changes what tether does,
    /// see README).
    pub ignore: Arc<Vec<String>>,
    /// `expires` (default off).
    pub expires: Expires,
    /// `proxy_redirect` rules in order; empty: `proxy_redirect off`. None: never written, so
    /// nginx's default (`proxy_redirect default`).
    pub redirects: Option<Arc<Vec<Redirect>>>,
    /// `proxy_cookie_domain` rules in order (empty: off, the default).
    pub cookie_domains: Arc<Vec<ValueRewrite>>,
    /// `proxy_cookie_path` rules in order (empty: off, the default).
    pub cookie_paths: Arc<Vec<ValueRewrite>>,
    /// `proxy_cookie_flags` rules in order (empty: off, the default).
    pub cookie_flags: Arc<Vec<CookieFlags>>,
    /// `server_tokens` (default on).
    pub server_tokens: ServerTokens,
}

/// `expires`: the `Expires` and `Cache-Control` a 2xx/3xx response gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Expires {
    /// `off` (the default): headers left alone.
    #[default]
    Off,
    /// `epoch`: `Expires` at 1 January 1970 00:00:01 GMT, `Cache-Control: no-cache`.
    Epoch,
    /// `max`: `Expires` in 2037, `Cache-Control: max-age=315360000`.
    Max,
    /// `[modified] TIME` (TIME may be negative): from now, or from the response's
    /// `Last-Modified` with `modified`.
    After {
        /// Seconds; negative in the past (`Cache-Control: no-cache`).
        seconds: i64,
        /// `modified`: counted from `Last-Modified` (no header, no change).
        modified: bool,
    },
    /// `@TIME`: the next such time of day (UTC, tether's only zone).
    TimeOfDay(Duration),
}

/// One `proxy_redirect` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redirect {
    /// `default`: the `proxy_pass` URL becomes the location's prefix.
    Default {
        /// Where it was written (an error if `proxy_pass` has variables).
        span: Option<Span>,
    },
    /// `REDIRECT REPLACEMENT`.
    Rewrite(ValueRewrite),
}

/// A `FROM TO` pair of `proxy_redirect` / `proxy_cookie_*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueRewrite {
    /// What is matched.
    pub pattern: Pattern,
    /// What replaces it (a template; `$1`.. for a regex's captures).
    pub replacement: String,
    /// Where it was written.
    pub span: Span,
}

/// The matching half of a rewrite or a cookie name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// A template compared as nginx does for the directive (a prefix for `proxy_redirect` and
    /// `proxy_cookie_path`, the whole domain for `proxy_cookie_domain`).
    Text(String),
    /// `~REGEX` or `~*REGEX` (case-insensitive).
    Regex {
        /// The regex as written after the `~`/`~*`.
        source: String,
        /// `~*`.
        caseless: bool,
    },
}

/// One `proxy_cookie_flags COOKIE FLAG...` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieFlags {
    /// The cookie name (a template) or a regex.
    pub cookie: Pattern,
    /// The changes, in order.
    pub flags: Vec<CookieFlag>,
    /// Where it was written.
    pub span: Span,
}

/// One flag of `proxy_cookie_flags`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieFlag {
    /// `secure` / `nosecure`.
    Secure(bool),
    /// `httponly` / `nohttponly`.
    HttpOnly(bool),
    /// `samesite=strict|lax|none`; None: `nosamesite`.
    SameSite(Option<SameSiteValue>),
}

/// A `SameSite` value `proxy_cookie_flags` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSiteValue {
    /// `Strict`.
    Strict,
    /// `Lax`.
    Lax,
    /// `None`.
    None,
}

/// `server_tokens on|off|build` (nginx Plus's `string` is refused).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServerTokens {
    /// `on` (the default; `build` too, tether has no build name): `Server: tether/VERSION`.
    #[default]
    On,
    /// `off`: `Server: tether`.
    Off,
}
