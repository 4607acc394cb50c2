//! `proxy_pass` as configured: where a location (or an `if` block in one) sends requests.
//! Pure data, as the rest of `model`; a location's handler and an `if` block's configuration
//! both hold one, so it sits beside them rather than inside either.

use crate::config::source::Span;

/// `proxy_pass http://TARGET[URI];`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyPass {
    /// Where requests go.
    pub target: ProxyTarget,
    /// The URI part after the authority, if any (`proxy_pass http://b/api/;` -> `/api/`):
    /// nginx then replaces the matched location prefix with it.
    pub uri: Option<String>,
    /// `https://`: the upstream is spoken to over TLS (the location's `proxy_ssl_*`).
    pub https: bool,
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
        /// Port (80, or 443 for `https://`, if not written).
        port: u16,
        /// Whether the port was written: `$proxy_host` (the `Host` sent) has it only then, as
        /// nginx's.
        port_written: bool,
    },
    /// A template with variables (`http://$backend`): evaluated per request, must name an
    /// upstream group.
    Variable(String),
    /// `http://unix:/path.sock[:/uri]`: a UNIX-domain socket (an implicit one-server group).
    Unix {
        /// The socket's path.
        path: String,
    },
}
