//! The typed, validated configuration: pure data, produced by `lower` from the directive tree.
//!
//! Nothing here knows about sockets, tokio or hyper. Values that are evaluated per request
//! (header values, map sources, `hash` keys, `return` text) stay as template *strings* here;
//! `vars` compiles them when a snapshot is built. Every item that a later stage may need to
//! complain about keeps its [`Span`].
//!
//! nginx inheritance (http -> server -> location) is already resolved: a [`Location`] carries its
//! effective [`ProxySettings`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use super::source::Span;

/// A whole configuration, as loaded from one main file and its includes.
#[derive(Clone, Debug)]
pub struct Config {
    /// The main file, as given on the command line.
    pub main_file: PathBuf,
    /// Every file read (main file first, then includes in order): what a reload must watch.
    pub files: Vec<PathBuf>,
    /// The `include` patterns with wildcards, made absolute (the config's folder escaped): a
    /// new file matching one is a change of the config, though no file of it was read yet.
    pub include_globs: Vec<glob::Pattern>,
    /// `worker_processes N|auto`: the number of tokio worker threads.
    pub worker_processes: WorkerProcesses,
    /// `events { worker_connections N; }`: the cap on open client connections per worker.
    /// Unset, the cap follows the open-file limit (nginx's default of 512 is far too low for a
    /// WebSocket farm).
    pub worker_connections: Option<usize>,
    /// `pid FILE;` resolved against the prefix, if configured.
    pub pid: Option<PathBuf>,
    /// `shutdown_timeout T;` (or nginx's `worker_shutdown_timeout`): how long a graceful stop
    /// lets open requests finish before closing what is left (default 30s).
    pub shutdown_timeout: Duration,
    /// Directives accepted with no effect in tether, for `-t` to list.
    pub ignored: Vec<Ignored>,
    /// The `http {}` block (empty if the file has none).
    pub http: Http,
}

/// A directive tether accepts for compatibility but which does nothing here.
#[derive(Clone, Debug)]
pub struct Ignored {
    /// Directive name.
    pub name: String,
    /// Why it has no effect (shown by `-t`).
    pub reason: &'static str,
    /// Where it was written.
    pub span: Span,
}

/// `worker_processes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerProcesses {
    /// One worker thread per core.
    Auto,
    /// Exactly this many worker threads.
    Count(usize),
}

/// The `http {}` block.
#[derive(Clone, Debug, Default)]
pub struct Http {
    /// `map` blocks, in file order.
    pub maps: Vec<Map>,
    /// `upstream` blocks, in file order; names are unique.
    pub upstreams: Vec<Upstream>,
    /// `server` blocks, in file order.
    pub servers: Vec<Server>,
    /// `keepalive_timeout` (default 75s): how long an idle client keep-alive connection is kept.
    pub keepalive_timeout: Duration,
    /// `client_header_timeout` (default 60s): time allowed to read a request head.
    pub client_header_timeout: Duration,
    /// `send_timeout` at http level (default 60s): for answers no location gave (errors,
    /// server-level `return`); proxied responses use their location's.
    pub send_timeout: Duration,
    /// How request heads are read and checked.
    pub head_rules: HeadRules,
}

/// The limits and rules an HTTP/1 request head is read with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadRules {
    /// The longest request line or header line (`large_client_header_buffers`' SIZE).
    pub max_line: usize,
    /// The largest whole head (NUMBER × SIZE).
    pub max_head: usize,
    /// The most header lines (`client_max_headers`, tether's own; default 100).
    pub max_headers: usize,
    /// `underscores_in_headers`: a header name with `_` is kept (else dropped, as nginx).
    pub underscores: bool,
    /// `ignore_invalid_headers`: a header name outside `[A-Za-z0-9-_]` is dropped (else kept).
    pub ignore_invalid: bool,
}

impl Default for HeadRules {
    /// nginx's defaults: `large_client_header_buffers 4 8k`, `underscores_in_headers off`,
    /// `ignore_invalid_headers on`; and 100 header lines.
    fn default() -> HeadRules {
        HeadRules {
            max_line: 8 * 1024,
            max_head: 4 * 8 * 1024,
            max_headers: 100,
            underscores: false,
            ignore_invalid: true,
        }
    }
}

/// `map SOURCE $variable { ... }`.
#[derive(Clone, Debug)]
pub struct Map {
    /// The source template, e.g. `$http_connection`.
    pub source: String,
    /// The variable it defines, without the `$`.
    pub variable: String,
    /// The `default` value template (empty string if none, as nginx).
    pub default: String,
    /// `hostnames;` was given: patterns may be `*.example.com`, `.example.com`, `www.example.*`.
    pub hostnames: bool,
    /// Entries in file order.
    pub entries: Vec<MapEntry>,
    /// The `map` directive.
    pub span: Span,
}

/// One `pattern value;` line of a map.
#[derive(Clone, Debug)]
pub struct MapEntry {
    /// What the source is compared with.
    pub pattern: MapPattern,
    /// The value template; may use `$1`.. from a regex pattern's captures.
    pub value: String,
    /// Where the entry was written.
    pub span: Span,
}

/// How a map entry matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapPattern {
    /// Exact string (case-sensitive, as nginx; hostnames are compared lowercase).
    Exact(String),
    /// `~regex` or `~*regex` (case-insensitive).
    Regex {
        /// The pattern without the `~`/`~*` prefix.
        pattern: String,
        /// `~*`.
        case_insensitive: bool,
    },
}

/// `upstream NAME { ... }`.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Group name, as used by `proxy_pass http://NAME`.
    pub name: String,
    /// The balancing method (last method directive wins as in nginx; default round robin).
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
    /// Host part (name or IP literal, without brackets).
    pub host: String,
    /// Port (80 if not written, as nginx).
    pub port: u16,
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

/// A `server {}` block (virtual server).
#[derive(Clone, Debug)]
pub struct Server {
    /// `listen` lines; nginx's default (`*:80`) if none were written.
    pub listens: Vec<Listen>,
    /// `server_name` entries in file order (empty: matches only as a default server).
    pub names: Vec<ServerName>,
    /// A server-level `return`, applied before location matching (nginx's rewrite phase).
    pub return_: Option<Return>,
    /// Top-level `location` blocks in file order.
    pub locations: Vec<Location>,
    /// The `server` directive.
    pub span: Span,
}

/// `listen ADDRESS[:PORT] [default_server] [ssl] [http2];`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    /// Socket address to bind (`listen 80` = 0.0.0.0:80, `listen [::]:80` = [::]:80).
    pub addr: SocketAddr,
    /// `default_server` (or the older `default`).
    pub default_server: bool,
    /// `ssl` (TLS arrives in a later issue; recorded now).
    pub ssl: bool,
    /// `http2` (h2 is always accepted: prior knowledge on plain text).
    pub http2: bool,
    /// Where it was written.
    pub span: Span,
}

/// One `server_name` entry; names are stored lowercase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerName {
    /// `example.com`.
    Exact(String),
    /// `*.example.com` (stored as `.example.com`, matches any subdomain) or `.example.com`
    /// (stored as `.example.com` with `include_bare = true`: matches `example.com` too).
    WildcardPrefix {
        /// The suffix that must end the host, starting with a dot.
        suffix: String,
        /// Also match the bare domain (`.example.com` form).
        include_bare: bool,
    },
    /// `www.example.*` (stored as `www.example.`).
    WildcardSuffix(String),
    /// `~regex`.
    Regex(String),
}

/// A `location [=|~|~*|^~] PATH { ... }` block.
#[derive(Clone, Debug)]
pub struct Location {
    /// How the request path is matched.
    pub matcher: LocationMatch,
    /// What the location does with a request.
    pub handler: Handler,
    /// Effective proxy settings (inheritance resolved).
    pub proxy: ProxySettings,
    /// The `location` directive.
    pub span: Span,
}

/// A location's match rule, in nginx's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocationMatch {
    /// `= /path`.
    Exact(String),
    /// `/path` or `^~ /path` (`no_regex`: a match here stops the regex search).
    Prefix {
        /// The prefix.
        path: String,
        /// `^~`.
        no_regex: bool,
    },
    /// `~ re` / `~* re`.
    Regex {
        /// The pattern.
        pattern: String,
        /// `~*`.
        case_insensitive: bool,
    },
}

/// What a location does.
#[derive(Clone, Debug)]
pub enum Handler {
    /// `proxy_pass`.
    Proxy(ProxyPass),
    /// `return`.
    Return(Return),
    /// Neither: nginx would serve files from `root`; tether answers 404.
    NotFound,
}

/// `return CODE [TEXT|URL];` or `return URL;`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Return {
    /// Status code (302 for the `return URL;` form).
    pub code: u16,
    /// Body text template, or the `Location` URL template for 301/302/303/307/308.
    pub text: Option<String>,
    /// Where it was written.
    pub span: Span,
}

/// `proxy_pass http://TARGET[URI];`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyPass {
    /// Where requests go.
    pub target: ProxyTarget,
    /// The URI part after the authority, if any (`proxy_pass http://b/api/;` -> `/api/`):
    /// nginx then replaces the matched location prefix with it.
    pub uri: Option<String>,
    /// Where it was written.
    pub span: Span,
}

/// The authority part of `proxy_pass`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyTarget {
    /// An `upstream` group defined in this config.
    Upstream(String),
    /// A literal `host:port` (an implicit one-server group, as in nginx).
    Address {
        /// Host name or IP literal.
        host: String,
        /// Port (80 if not written).
        port: u16,
    },
    /// A template with variables (`http://$backend`): evaluated per request, must name an
    /// upstream group.
    Variable(String),
}

/// Effective `proxy_*` and related settings of a location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySettings {
    /// `proxy_set_header NAME VALUE;` in order (inherited as a whole only when the location
    /// sets none, as nginx). An empty value removes the header. An inherited list is shared
    /// with the level that wrote it, not copied into every location (a config of N headers and
    /// N locations would otherwise make N * N).
    pub set_headers: Arc<Vec<(String, String)>>,
    /// `add_header NAME VALUE [always];` added to responses; inherited and shared likewise.
    pub add_headers: Arc<Vec<AddHeader>>,
    /// `proxy_connect_timeout` (default 60s).
    pub connect_timeout: Duration,
    /// `proxy_read_timeout` (default 60s): idle time between two reads from the upstream.
    pub read_timeout: Duration,
    /// `proxy_send_timeout` (default 60s): idle time between two writes to the upstream.
    pub send_timeout: Duration,
    /// `proxy_buffering` (default on). tether always streams; `off` is honoured trivially.
    pub buffering: bool,
    /// `proxy_next_upstream` conditions.
    pub next_upstream: NextUpstream,
    /// `proxy_next_upstream_tries` (0 = no limit beyond the number of servers).
    pub next_upstream_tries: u32,
    /// `client_max_body_size` in bytes (default 1m, as nginx; 0 = unlimited).
    pub client_max_body_size: u64,
    /// `client_body_timeout` (default 60s): idle time between two reads of the request body.
    pub client_body_timeout: Duration,
    /// `send_timeout` (default 60s): idle time between two writes to a client that does not
    /// read its response.
    pub client_send_timeout: Duration,
}

/// `add_header` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddHeader {
    /// Header name.
    pub name: String,
    /// Value template.
    pub value: String,
    /// `always`: also on error responses.
    pub always: bool,
}

/// When a failed attempt moves on to the next server (`proxy_next_upstream`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextUpstream {
    /// `error` (default on): connection failures and resets.
    pub error: bool,
    /// `timeout` (default on): connect/read timeouts before a response.
    pub timeout: bool,
    /// `invalid_header`: an upstream answered with an empty or malformed response head.
    pub invalid_header: bool,
    /// `non_idempotent`: also retry POST/PATCH/LOCK after the request was sent.
    pub non_idempotent: bool,
    /// Status codes that also count as failures (`http_502`, `http_503`, ...).
    pub statuses: Vec<u16>,
}

impl NextUpstream {
    /// nginx's default: `error timeout`.
    pub const DEFAULT: NextUpstream = NextUpstream {
        error: true,
        timeout: true,
        invalid_header: false,
        non_idempotent: false,
        statuses: Vec::new(),
    };
    /// `proxy_next_upstream off`.
    pub const OFF: NextUpstream = NextUpstream {
        error: false,
        timeout: false,
        invalid_header: false,
        non_idempotent: false,
        statuses: Vec::new(),
    };
}

impl Default for ProxySettings {
    fn default() -> ProxySettings {
        ProxySettings {
            set_headers: Arc::default(),
            add_headers: Arc::default(),
            connect_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            buffering: true,
            next_upstream: NextUpstream::DEFAULT,
            next_upstream_tries: 0,
            client_max_body_size: 1024 * 1024,
            client_body_timeout: Duration::from_secs(60),
            client_send_timeout: Duration::from_secs(60),
        }
    }
}
