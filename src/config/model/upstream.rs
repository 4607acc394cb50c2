//! An `upstream NAME { ... }` block as configured: its servers with their parameters, the
//! balancing method, stickiness and active health checks. Pure data, as the rest of `model`.

use std::time::Duration;

use crate::config::source::Span;

/// `upstream NAME { ... }`.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Group name, as used by `proxy_pass http://NAME`.
    pub name: String,
    /// The balancing method (one directive at most; default round robin).
    pub method: BalanceMethod,
    /// `server` lines in file order.
    pub servers: Vec<PeerSpec>,
    /// `keepalive N`: idle upstream connections kept per worker (None = tether's default pool).
    pub keepalive: Option<usize>,
    /// `keepalive_timeout` (default 60s): how long an idle upstream connection is kept.
    pub keepalive_timeout: Duration,
    /// `sticky cookie ...` or `sticky route ...`, if any.
    pub sticky: Option<Sticky>,
    /// `health_check ...`: active checks of every server of the group, if any.
    pub health_check: Option<HealthCheck>,
    /// The `resolver` in force for `server ... resolve` lines: the group's own, else the http
    /// level's.
    pub resolver: Option<super::Resolver>,
    /// The `upstream` directive.
    pub span: Span,
}

/// Session stickiness of an upstream group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sticky {
    /// `sticky cookie NAME [expires=TIME|max] [domain=D] [path=P] [httponly] [secure]
    /// [samesite=strict|lax|none];`
    Cookie(StickyCookie),
    /// `sticky route $var ...;`: the server whose `route=` equals the first non-empty value.
    Route {
        /// Variable templates, in order.
        variables: Vec<String>,
        /// Where it was written.
        span: Span,
    },
    /// `sticky learn create=$v lookup=$v zone=NAME:SIZE [timeout=T] [header] [sync=URL];`
    Learn(StickyLearn),
}

/// `sticky learn`: sessions created by an upstream's response, looked up from requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StickyLearn {
    /// `create=`: where a response's session key comes from; the first found is learned.
    pub create: Vec<LearnSource>,
    /// `lookup=`: variable templates read from a request; the first non-empty is the key.
    pub lookup: Vec<String>,
    /// `zone=NAME:...`.
    pub zone: String,
    /// `zone=...:SIZE`, in bytes.
    pub size: u64,
    /// `timeout=` (default 10m, as nginx): a session unused this long is forgotten.
    pub timeout: Duration,
    /// `header`: accepted (nginx creates at the response header with it); tether always
    /// learns as soon as the key is seen.
    pub header: bool,
    /// `sync=redis://HOST[:PORT][/DB]`: learned sessions shared through Redis.
    pub sync: Option<String>,
    /// `sticky_secret` (as for `sticky cookie`): keys the servers' sticky values.
    pub secret: Option<String>,
    /// Where it was written.
    pub span: Span,
}

/// Where `sticky learn` finds a session's key in an upstream's response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LearnSource {
    /// `$upstream_cookie_NAME`: a cookie the response sets.
    UpstreamCookie(String),
    /// `$upstream_http_NAME`: a response header (name lowercased, `_` as `-`).
    UpstreamHeader(String),
    /// `$signalr_connection_token`: `connectionToken` (negotiate v1), else `connectionId`
    /// (v0), in the JSON of a SignalR negotiate response.
    SignalrConnectionToken,
    /// `$engineio_sid`: the `sid` of an engine.io handshake (`0{"sid":...}`).
    EngineioSid,
}

/// `sticky cookie`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StickyCookie {
    /// Cookie name.
    pub name: String,
    /// `expires=`; None = a session cookie.
    pub expires: Option<CookieExpiry>,
    /// `domain=`.
    pub domain: Option<String>,
    /// `path=` (default `/`).
    pub path: String,
    /// `httponly`.
    pub http_only: bool,
    /// `secure`.
    pub secure: bool,
    /// `samesite=`.
    pub same_site: Option<SameSite>,
    /// `sticky_secret` (upstream level, else http level), keying the cookie values; None = a
    /// key derived from the group name.
    pub secret: Option<String>,
    /// Where it was written.
    pub span: Span,
}

/// `expires=` of a sticky cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieExpiry {
    /// `expires=max`: `Thu, 31-Dec-37 23:55:55 GMT`, `max-age=315360000`.
    Max,
    /// `expires=TIME`: that long from each response (sliding).
    After(Duration),
}

/// `samesite=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    /// `strict`.
    Strict,
    /// `lax`.
    Lax,
    /// `none`.
    None,
}

/// `health_check [interval=T] [fails=N] [passes=N] [uri=/path] [timeout=T] [status=LO-HI];`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// Time between two probes of one server (default 5s).
    pub interval: Duration,
    /// Consecutive failed probes that mark a server down (default 1).
    pub fails: u32,
    /// Consecutive passed probes that mark it up again (default 1).
    pub passes: u32,
    /// Path probed with `GET` (default `/`).
    pub uri: String,
    /// Connect + response timeout of one probe (default: the interval, at most 5s).
    pub timeout: Duration,
    /// Accepted status range, inclusive (default 200-399).
    pub status: (u16, u16),
    /// Where it was written.
    pub span: Span,
}

/// How an upstream group chooses a server for a new session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BalanceMethod {
    /// Smooth weighted round robin (the default).
    RoundRobin,
    /// `least_conn`.
    LeastConn,
    /// `ip_hash`.
    IpHash,
    /// `hash KEY [consistent]`.
    Hash {
        /// The key template.
        key: String,
        /// `consistent`: ketama ring.
        consistent: bool,
    },
    /// `random [two [least_conn]]`.
    Random {
        /// `two`: pick two at random, keep the less loaded.
        two: bool,
    },
}

/// One `server ADDRESS [params];` line inside an `upstream`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    /// The address exactly as written (`localhost:5000`, `10.0.0.1`): the server's identity.
    pub address: String,
    /// Host part (name or IP literal, without brackets); for a UNIX-domain socket, its path.
    pub host: String,
    /// Port (80 if not written, as nginx; 0 for a UNIX-domain socket).
    pub port: u16,
    /// `server unix:/path`: the server listens on the UNIX-domain socket `host`.
    pub unix: bool,
    /// `resolve`: the name is resolved again while running (through `resolver`), and each
    /// address it has is a server of its own.
    pub resolve: bool,
    /// `weight=` (default 1).
    pub weight: u32,
    /// `max_fails=` (default 1; 0 disables passive health accounting).
    pub max_fails: u32,
    /// `fail_timeout=` (default 10s).
    pub fail_timeout: Duration,
    /// `max_conns=` (0 = unlimited).
    pub max_conns: u32,
    /// `backup`.
    pub backup: bool,
    /// `down`.
    pub down: bool,
    /// `drain`.
    pub drain: bool,
    /// `slow_start=` (zero = off).
    pub slow_start: Duration,
    /// `route=` (sticky identity), if given.
    pub route: Option<String>,
    /// Where the line was written.
    pub span: Span,
}

impl PeerSpec {
    /// A `server` line with no parameters: nginx's defaults (weight 1, max_fails 1,
    /// fail_timeout 10s). `proxy_pass http://host:port` gets exactly this.
    pub fn with_defaults(address: &str, host: &str, port: u16, span: Span) -> PeerSpec {
        PeerSpec {
            address: address.to_string(),
            host: host.to_string(),
            port,
            unix: false,
            resolve: false,
            weight: 1,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            max_conns: 0,
            backup: false,
            down: false,
            drain: false,
            slow_start: Duration::ZERO,
            route: None,
            span,
        }
    }
}

impl PeerSpec {
    /// A `server unix:/path` line with no parameters; `proxy_pass http://unix:/path` gets
    /// exactly this.
    pub fn unix_with_defaults(address: &str, path: &str, span: Span) -> PeerSpec {
        PeerSpec {
            unix: true,
            ..PeerSpec::with_defaults(address, path, 0, span)
        }
    }
}
