//! The typed, validated configuration: pure data, produced by `lower` from the directive tree.
//!
//! Nothing here knows about sockets, tokio or hyper. Values that are evaluated per request
//! (header values, map sources, `hash` keys, `return` text) stay as template *strings* here;
//! `vars` compiles them when a snapshot is built. Every item that a later stage may need to
//! complain about keeps its [`Span`].
//!
//! nginx inheritance (http -> server -> location) is already resolved: a [`Location`] carries its
//! effective [`ProxySettings`].
//!
//! One file per part of the config, as `lower/` is laid out: the top level and the `http {}`
//! block here (with its maps), `upstream` blocks in `upstream.rs`, `server` blocks and their
//! locations in `server.rs`, and the effective per-location proxy settings in `proxy.rs`.

mod client;
mod error_log;
mod error_page;
mod gzip;
mod headers;
mod limits;
mod logs;
mod proxy;
mod proxy_pass;
mod resolver;
mod rewrite;
mod server;
mod tls;
mod upstream;

use std::path::PathBuf;
use std::time::Duration;

pub use super::source::Span;
pub use client::{AccessRule, Cidr, ClientRules, Peers, RealIp, RealIpHeader};
pub use error_log::{ErrorLevel, ErrorLogDestination, ErrorLogTarget};
pub use error_page::{ErrorPage, ErrorPages, PageStatus};
pub use gzip::{Gzip, GzipDisable, GzipHttpVersion, GzipProxied, GzipTypes};
pub use headers::{
    CookieFlag, CookieFlags, Expires, Pattern, Redirect, ResponseRules, SameSiteValue,
    ServerTokens, ValueRewrite,
};
pub use limits::{
    ConnectionLimit, ConnectionZoneSpec, LimitResponse, LimitRules, RequestLimit, RequestZoneSpec,
};
pub use logs::{AccessLog, LogEscape, LogFormat};
pub use proxy::{AddHeader, NextUpstream, ProxySettings, SslFile, UpstreamSsl};
pub use proxy_pass::{ProxyPass, ProxyTarget};
pub use resolver::{RESOLVER_TIMEOUT, Resolver};
pub use rewrite::{
    Condition, IfBlock, IfConfig, RedirectRules, Return, Rewrite, RewriteFlag, RewriteStep, SetVar,
    Warning,
};
pub use server::{
    Handler, Listen, Location, LocationMatch, Server, ServerName, StatusPage, UNIX_PEER,
    all_locations, is_unix_key, shown_listen, unix_listen_key, unix_listen_path,
};
pub use tls::{CertificatePair, ServerTls, TlsVersion, VerifyClient};
pub use upstream::{
    BalanceMethod, CookieExpiry, HealthCheck, LearnSource, PeerSpec, SameSite, Sticky,
    StickyCookie, StickyLearn, Upstream,
};

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
    /// `error_log` at main level, in file order (empty: none written).
    pub error_log: Vec<ErrorLogTarget>,
    /// `worker_rlimit_nofile N`: the open-file limit (soft and hard, as nginx sets them) when
    /// it is above the hard limit tether starts with; tether raises the soft limit to the hard
    /// one by itself, and never lowers either.
    pub worker_rlimit_nofile: Option<u64>,
    /// `user NAME [GROUP]`: whom tether runs as after binding its listeners, when started as
    /// root (nginx's workers); `None`: stay who we are.
    pub user: Option<RunAs>,
    /// Directives accepted with no effect in tether, for `-t` to list.
    pub ignored: Vec<Ignored>,
    /// Constructs that work, but not as a reader may think (nginx's "if is evil"), for `-t`.
    pub warnings: Vec<Warning>,
    /// The `http {}` block (empty if the file has none).
    pub http: Http,
}

impl Config {
    /// Every certificate, key, CA and OCSP file the config names (terminating TLS and toward
    /// upstreams), in config order: files the config depends on without being config text.
    pub fn certificate_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for tls in self.http.servers.iter().filter_map(|s| s.tls.as_ref()) {
            files.extend(tls.files());
        }
        // `proxy_ssl_*` files: what `https://` locations trust and present to upstreams.
        let locations = self
            .http
            .servers
            .iter()
            .flat_map(|s| all_locations(&s.locations));
        for ssl in locations.map(|l| &l.proxy.ssl) {
            let named = [
                &ssl.trusted_certificate,
                &ssl.certificate,
                &ssl.certificate_key,
            ];
            for file in named.into_iter().flatten() {
                if !files.contains(&file.path) {
                    files.push(file.path.clone());
                }
            }
        }
        files
    }
}

/// `user NAME [GROUP]`, as written: names are looked up when tether starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// The user's name (or numeric id).
    pub user: String,
    /// The group's name (or numeric id); `None`: a group named like the user, as nginx.
    pub group: Option<String>,
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
    /// The http-level `resolver` (with its `resolver_timeout`): what `proxy_pass` with
    /// variables asks for a host that is no upstream, and what upstreams without their own
    /// take for `server ... resolve`.
    pub resolver: Option<Resolver>,
    /// `server` blocks, in file order.
    pub servers: Vec<Server>,
    /// `log_format`s, in file order (nginx's `combined` is not among them: it is built in).
    pub log_formats: Vec<LogFormat>,
    /// `keepalive_timeout` (default 75s): how long an idle client keep-alive connection is kept.
    pub keepalive_timeout: Duration,
    /// `client_header_timeout` (default 60s): time allowed to read a request head.
    pub client_header_timeout: Duration,
    /// `send_timeout` at http level (default 60s): for answers no location gave (errors,
    /// server-level `return`); proxied responses use their location's.
    pub send_timeout: Duration,
    /// How request heads are read and checked.
    pub head_rules: HeadRules,
    /// `error_log` at http level, in file order: where the events of requests, upstreams and
    /// listeners go (empty: the main level's).
    pub error_log: Vec<ErrorLogTarget>,
    /// `limit_req_zone`s, in file order; names are unique.
    pub request_zones: Vec<RequestZoneSpec>,
    /// `limit_conn_zone`s, in file order; names are unique.
    pub connection_zones: Vec<ConnectionZoneSpec>,
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
