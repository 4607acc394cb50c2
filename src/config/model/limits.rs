//! `limit_req_zone` / `limit_req*` and `limit_conn_zone` / `limit_conn*`: the zones the http
//! block declares and the limits in force at one location, nginx inheritance already resolved.
//! Pure data, as the rest of `model`; `crate::limits` gives the zones their state.

use std::sync::Arc;

use super::{ErrorLevel, Span};

/// `limit_req_zone KEY zone=NAME:SIZE rate=RATE;`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestZoneSpec {
    /// The zone's name (`zone=NAME:`).
    pub name: String,
    /// The key template as written (`$binary_remote_addr`); an empty key is not limited.
    pub key: String,
    /// The declared size in bytes: what bounds the number of keys remembered.
    pub size: u64,
    /// The rate in thousandths of a request per second (`10r/s` = 10000, `30r/m` = 500), as
    /// nginx keeps it.
    pub rate: u64,
    /// Where the zone was declared.
    pub span: Span,
}

/// `limit_conn_zone KEY zone=NAME:SIZE;`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionZoneSpec {
    /// The zone's name.
    pub name: String,
    /// The key template as written; an empty key is not limited.
    pub key: String,
    /// The declared size in bytes: what bounds the number of keys counted at once.
    pub size: u64,
    /// Where the zone was declared.
    pub span: Span,
}

/// One `limit_req zone=NAME [burst=N] [nodelay | delay=N];`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestLimit {
    /// The zone it counts in.
    pub zone: String,
    /// `burst=N` (default 0): requests beyond the rate a key may have queued.
    pub burst: u64,
    /// `delay=N` (default 0): how many of the burst pass at once; `nodelay` is `u64::MAX`.
    pub delay: u64,
    /// Where it was written.
    pub span: Span,
}

/// One `limit_conn ZONE NUMBER;`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimit {
    /// The zone it counts in.
    pub zone: String,
    /// How many requests of one key may be in progress at once.
    pub max: u32,
    /// Where it was written.
    pub span: Span,
}

/// How one family of limits acts when it refuses: its status, log level and dry run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitResponse {
    /// `limit_req_status` / `limit_conn_status` (default 503).
    pub status: u16,
    /// `limit_req_log_level` / `limit_conn_log_level` (default error); delays are logged one
    /// level lower, as nginx does.
    pub log_level: ErrorLevel,
    /// `limit_req_dry_run` / `limit_conn_dry_run` (default off): count and log, never refuse
    /// or delay.
    pub dry_run: bool,
}

impl Default for LimitResponse {
    fn default() -> LimitResponse {
        LimitResponse {
            status: 503,
            log_level: ErrorLevel::Error,
            dry_run: false,
        }
    }
}

/// The `limit_req` and `limit_conn` settings in force at a location. The lists are inherited
/// as a whole, and only by a level that writes none (nginx's array merge).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitRules {
    /// `limit_req`s, in the order written.
    pub requests: Arc<Vec<RequestLimit>>,
    /// How refused and delayed requests are answered and logged.
    pub request_response: LimitResponse,
    /// `limit_conn`s, in the order written.
    pub connections: Arc<Vec<ConnectionLimit>>,
    /// How refused connections are answered and logged.
    pub connection_response: LimitResponse,
}

impl LimitRules {
    /// Whether a request here is limited at all (most locations are not).
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.connections.is_empty()
    }
}
