//! A `server {}` block as configured: where it listens, the names it answers to, and its
//! locations with what each does (`proxy_pass`, a status page) and their rewrite directives. Pure data, as the rest of `model`.

use std::net::SocketAddr;

use super::client::ClientRules;
use super::error_log::ErrorLogTarget;
use super::error_page::ErrorPages;
use super::proxy::ProxySettings;
use super::proxy_pass::ProxyPass;
use super::rewrite::RewriteStep;
use super::tls::ServerTls;
use crate::config::source::Span;

/// A `server {}` block (virtual server).
#[derive(Clone, Debug)]
pub struct Server {
    /// `listen` lines; nginx's default (`*:80`) if none were written.
    pub listens: Vec<Listen>,
    /// `server_name` entries in file order (empty: matches only as a default server).
    pub names: Vec<ServerName>,
    /// The server's rewrite directives (`return`, `rewrite`, `set`, `break`, `if`), run before
    /// location matching (nginx's server rewrite phase).
    pub rewrite: Vec<RewriteStep>,
    /// How the `Location` of the server-level directives' redirects is written.
    pub redirects: super::rewrite::RedirectRules,
    /// Top-level `location` blocks in file order (nested ones inside them).
    pub locations: Vec<Location>,
    /// TLS termination settings: Some when the server listens with `ssl` on any address.
    pub tls: Option<ServerTls>,
    /// The realip settings and `allow`/`deny` rules at server level (http's inherited): realip
    /// runs with them as soon as the server is chosen (nginx's post-read phase), and a request
    /// no location matches is checked against its rules.
    pub client: ClientRules,
    /// `http2 on` (nginx ≥ 1.25; default off, as nginx) or `http2` on one of its `listen`
    /// lines: h2 is offered by ALPN on its TLS addresses.
    pub http2: bool,
    /// The error pages in effect before any location (a server-level `return`, no location
    /// matching).
    pub error_pages: ErrorPages,
    /// `error_log` in this server: where its requests' events go instead of the http
    /// level's (empty: the http level's).
    pub error_log: Vec<ErrorLogTarget>,
    /// `add_header`s in force at server level: they go on its own answers made before any
    /// location is chosen (a server-level `return`, a 404 for no location).
    pub add_headers: std::sync::Arc<Vec<super::AddHeader>>,
    /// Response-header rules at server level (`expires`, `server_tokens`), for those answers.
    pub response: super::ResponseRules,
    /// The `server` directive.
    pub span: Span,
}

impl Server {
    /// The first `server_name` as written (`$server_name`, and what log lines call the
    /// server), or "".
    pub fn first_name(&self) -> String {
        self.names
            .first()
            .map(ServerName::as_written)
            .unwrap_or_default()
    }
}

/// `listen ADDRESS[:PORT] [default_server] [ssl] [http2];`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    /// Socket address to bind (`listen 80` = 0.0.0.0:80, `listen [::]:80` = [::]:80).
    pub addr: SocketAddr,
    /// `default_server` (or the older `default`).
    pub default_server: bool,
    /// `ssl`: connections on this address speak TLS (nginx: one `ssl` listen makes the whole
    /// address TLS, for every server on it).
    pub ssl: bool,
    /// `http2`: offer h2 by ALPN on this address (h2 by prior knowledge is always accepted on
    /// plain text).
    pub http2: bool,
    /// `proxy_protocol`: every connection on this address starts with a PROXY protocol header
    /// (v1 or v2), as one such listen makes it for the whole address (like `ssl`).
    pub proxy_protocol: bool,
    /// `ipv6only=on|off` (default on, as nginx): an IPv6 wildcard address takes IPv6 only, so
    /// `listen [::]:80` and `listen 80` bind side by side; `off` takes IPv4 on it too.
    pub ipv6only: bool,
    /// `listen unix:/path.sock`: the UNIX-domain socket's path; `addr` is then its key,
    /// [`unix_listen_key`], not an address anyone connects to.
    pub unix: Option<std::path::PathBuf>,
    /// Where it was written.
    pub span: Span,
}

/// The peer address a connection accepted on a UNIX-domain socket gets (`[100::]:0`, in
/// RFC 6666's discard-only prefix, which no real TCP peer has): `$remote_addr` reads `unix:`
/// and `$remote_port` is empty for it, as nginx writes them.
pub const UNIX_PEER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V6(std::net::Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0)),
    0,
);

/// The key a `listen unix:PATH` is known by wherever listeners are keyed by socket address
/// (the listener table, virtual server selection, the connection ceiling, telemetry): an
/// address in RFC 6666's discard-only prefix `100::/64` whose low 64 bits hash the path, port
/// 0. The same path always gets the same key, so a reload keeps its listener. The path is
/// remembered for [`unix_listen_path`].
pub fn unix_listen_key(path: &std::path::Path) -> SocketAddr {
    // FNV-1a: stable across runs and builds, unlike std's hasher.
    let hash = path
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        })
        // Never the peer's own address.
        .max(1);
    let ip = std::net::Ipv6Addr::from((0x0100_u128 << 112) | u128::from(hash));
    let key = SocketAddr::new(std::net::IpAddr::V6(ip), 0);
    let mut paths = UNIX_PATHS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    paths
        .entry(key)
        .or_insert_with(|| path.to_string_lossy().into());
    key
}

/// The path of a key from [`unix_listen_key`] (None for any other address).
pub fn unix_listen_path(key: SocketAddr) -> Option<std::sync::Arc<str>> {
    if !is_unix_key(key) {
        return None;
    }
    let paths = UNIX_PATHS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    paths.get(&key).cloned()
}

/// A listen address as people write it: `unix:PATH` for a UNIX-domain listener's key, the
/// socket address otherwise (log lines, the status pages, reload summaries).
pub fn shown_listen(listen: SocketAddr) -> String {
    match unix_listen_path(listen) {
        Some(path) => format!("unix:{path}"),
        None => listen.to_string(),
    }
}

/// True for the keys of UNIX-domain listeners and for [`UNIX_PEER`].
pub fn is_unix_key(addr: SocketAddr) -> bool {
    matches!(addr.ip(), std::net::IpAddr::V6(ip) if ip.segments()[..4] == [0x100, 0, 0, 0])
        && addr.port() == 0
}

/// The paths of UNIX-domain listen keys: a handful per config, kept for the process's life (a
/// path dropped by a reload costs its few bytes), so `$server_addr` can name the path from
/// the connection's local key without every request carrying it.
static UNIX_PATHS: std::sync::RwLock<std::collections::BTreeMap<SocketAddr, std::sync::Arc<str>>> =
    std::sync::RwLock::new(std::collections::BTreeMap::new());

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

impl ServerName {
    /// The name as it was written.
    pub fn as_written(&self) -> String {
        match self {
            ServerName::Exact(name) => name.clone(),
            ServerName::WildcardPrefix {
                suffix,
                include_bare,
            } => {
                if *include_bare {
                    suffix.clone()
                } else {
                    format!("*{suffix}")
                }
            }
            ServerName::WildcardSuffix(prefix) => format!("{prefix}*"),
            ServerName::Regex(pattern) => format!("~{pattern}"),
        }
    }
}

/// A `location [=|~|~*|^~] PATH { ... }` block.
#[derive(Clone, Debug)]
pub struct Location {
    /// How the request path is matched.
    pub matcher: LocationMatch,
    /// What the location does with a request.
    pub handler: Handler,
    /// The location's rewrite directives, run once it is chosen (nginx's rewrite phase).
    pub rewrite: Vec<RewriteStep>,
    /// Effective proxy settings (inheritance resolved).
    pub proxy: ProxySettings,
    /// `internal`: reachable only by an internal redirect (`error_page`), 404 from outside.
    pub internal: bool,
    /// Locations nested in this one, in file order (they inherit its settings).
    pub nested: Vec<Location>,
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
    /// `@name` (kept with its `@`): never matched by path, reached by `error_page`.
    Named(String),
}

impl LocationMatch {
    /// The path, pattern or name as written (without its modifier), as nginx names a location
    /// in its messages.
    pub fn as_written(&self) -> &str {
        match self {
            LocationMatch::Exact(path) | LocationMatch::Prefix { path, .. } => path,
            LocationMatch::Regex { pattern, .. } => pattern,
            LocationMatch::Named(name) => name,
        }
    }
}

/// Every location of a server, each followed by its nested ones (depth first, file order).
pub fn all_locations(locations: &[Location]) -> Vec<&Location> {
    fn walk<'a>(level: &'a [Location], all: &mut Vec<&'a Location>) {
        for location in level {
            all.push(location);
            walk(&location.nested, all);
        }
    }
    let mut all = Vec::with_capacity(locations.len());
    walk(locations, &mut all);
    all
}

/// What a location does.
#[derive(Clone, Debug)]
pub enum Handler {
    /// `proxy_pass`.
    Proxy(ProxyPass),
    /// `status;` or `stub_status;`.
    Status(StatusPage),
    /// Neither: nginx would serve files from `root`; tether answers 404.
    NotFound,
}

/// Which status page a location serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusPage {
    /// `status;`: every number, as JSON or in Prometheus's text format.
    Full,
    /// `stub_status;`: nginx's few numbers in nginx's exact text.
    Stub,
}
