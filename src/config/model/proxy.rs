//! The effective `proxy_*` and client limits of one location, inheritance (http -> server ->
//! location) already resolved, with nginx's defaults. Pure data, as the rest of `model`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{ClientRules, ErrorPages, LimitRules, Span, TlsVersion};

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
    /// `proxy_ssl_*`: how `proxy_pass https://` speaks TLS (unused by `http://` targets).
    pub ssl: UpstreamSsl,
    /// `access_log`s in effect (inherited as a whole by a level that writes none, as nginx;
    /// empty: `access_log off`, or none written anywhere — tether's default, unlike nginx's
    /// `logs/access.log`).
    pub access_logs: Arc<Vec<super::AccessLog>>,
    /// The realip settings and `allow`/`deny` rules in force here.
    pub client: ClientRules,
    /// `gzip` and its tuning directives.
    pub gzip: super::Gzip,
    /// `limit_req` and `limit_conn` in force here.
    pub limits: LimitRules,
    /// What happens to response headers (`proxy_hide_header`, `expires`, `proxy_redirect`,
    /// `proxy_cookie_*`, `server_tokens`, ...).
    pub response: super::ResponseRules,
    /// How the `Location` of tether's own redirects is written here.
    pub redirects: super::RedirectRules,
    /// `error_page`, `proxy_intercept_errors`, `recursive_error_pages` in force here.
    pub error_pages: ErrorPages,
}

/// The `proxy_ssl_*` settings of a location, nginx's defaults where unset. Files are named,
/// not read: `tls::upstream` loads them when a snapshot is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamSsl {
    /// `proxy_ssl_verify` (default off, as nginx: any certificate is taken).
    pub verify: bool,
    /// `proxy_ssl_trusted_certificate`: PEM CAs a verified upstream must chain to.
    pub trusted_certificate: Option<SslFile>,
    /// `proxy_ssl_verify_depth` (default 1: the upstream's certificate is signed by a trusted
    /// CA directly).
    pub verify_depth: u32,
    /// `proxy_ssl_server_name` (default off: no SNI is sent).
    pub server_name: bool,
    /// `proxy_ssl_name` as written (a template); None means nginx's default, `$proxy_host`.
    /// Its port, if any, is stripped.
    pub name: Option<String>,
    /// `proxy_ssl_certificate` + `proxy_ssl_certificate_key`: a client certificate.
    pub certificate: Option<SslFile>,
    /// `proxy_ssl_certificate_key`.
    pub certificate_key: Option<SslFile>,
    /// `proxy_ssl_protocols` (default TLSv1.2 TLSv1.3).
    pub protocols: Vec<TlsVersion>,
    /// `proxy_ssl_session_reuse` (default on): sessions resumed toward upstreams.
    pub session_reuse: bool,
    /// Where the first `proxy_ssl_*` directive in effect was written, for errors about the
    /// settings as a whole (`proxy_ssl_verify` with no trusted certificate).
    pub span: Option<Span>,
}

/// A file named by a `proxy_ssl_*` directive, resolved against the prefix, with the place
/// it was named so that an unreadable file is reported there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SslFile {
    /// The resolved path.
    pub path: PathBuf,
    /// The directive.
    pub span: Span,
}

impl UpstreamSsl {
    /// The same TLS behaviour as `other`, wherever each was written: such locations share one
    /// client config, and so its session cache.
    pub fn same_as(&self, other: &UpstreamSsl) -> bool {
        let path = |file: &Option<SslFile>| file.as_ref().map(|f| f.path.clone());
        self.verify == other.verify
            && path(&self.trusted_certificate) == path(&other.trusted_certificate)
            && self.verify_depth == other.verify_depth
            && self.server_name == other.server_name
            && path(&self.certificate) == path(&other.certificate)
            && path(&self.certificate_key) == path(&other.certificate_key)
            && self.protocols == other.protocols
            && self.session_reuse == other.session_reuse
    }
}

impl Default for UpstreamSsl {
    fn default() -> UpstreamSsl {
        UpstreamSsl {
            verify: false,
            trusted_certificate: None,
            verify_depth: 1,
            server_name: false,
            name: None,
            certificate: None,
            certificate_key: None,
            protocols: vec![TlsVersion::Tls12, TlsVersion::Tls13],
            session_reuse: true,
            span: None,
        }
    }
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
            ssl: UpstreamSsl::default(),
            access_logs: Arc::default(),
            client: ClientRules::default(),
            gzip: super::Gzip::default(),
            limits: LimitRules::default(),
            response: super::ResponseRules::default(),
            redirects: super::RedirectRules::default(),
            error_pages: ErrorPages::default(),
        }
    }
}
