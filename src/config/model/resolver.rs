//! `resolver` and `resolver_timeout` as configured: the DNS servers that `server NAME resolve`
//! asks while tether runs. Pure data, as the rest of `model`: nothing here asks DNS anything.

use std::time::Duration;

use super::Span;

/// nginx's `resolver_timeout` default.
pub const RESOLVER_TIMEOUT: Duration = Duration::from_secs(30);

/// `resolver ADDRESS ... [valid=TIME] [ipv4=on|off] [ipv6=on|off];` with the
/// `resolver_timeout` in force where it applies (an upstream's own, else the http level's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolver {
    /// The DNS servers as `(host, port)` (port 53 when not written); a host name among them is
    /// looked up through the system when tether starts, as nginx does.
    pub servers: Vec<(String, u16)>,
    /// `valid=`: how long an answer is used; None = the answer's own TTL, as nginx.
    pub valid: Option<Duration>,
    /// `ipv4=` (default on): ask for A records.
    pub ipv4: bool,
    /// `ipv6=` (default on): ask for AAAA records.
    pub ipv6: bool,
    /// `resolver_timeout` (default 30s): how long one lookup may take.
    pub timeout: Duration,
    /// Where the `resolver` directive was written.
    pub span: Span,
}
