//! The limits of one location, compiled against its snapshot's zones and keys, and the two
//! checks nginx's preaccess phase runs with them: `limit_req` (every limit's bucket, the last
//! one accounted at once and the others held until all agree, the longest delay wins — nginx's
//! `ngx_http_limit_req_handler` and `_account`) and then `limit_conn` (a hold in every zone, or
//! none at all). Keys are rendered per request; an empty key is not limited, nor is one over
//! 65535 bytes (nginx logs it and goes on). Pure: no tokio, no hyper.

use std::sync::Arc;
use std::time::Duration;

use super::connections::{ConnectionHold, ConnectionZone, Refusal};
use super::requests::{Lookup, RequestZone};
use crate::config::{ConfigError, LimitResponse, Span};
use crate::vars::{RequestInfo, Template, Vars};

/// The longest key nginx counts.
const MAX_KEY: usize = 65535;

/// A zone's key, compiled.
#[derive(Debug)]
pub enum Key {
    /// `$binary_remote_addr` alone, the common key: the client address's 4 or 16 bytes,
    /// rendered without a template (and charged as nginx charges it).
    ClientAddress,
    /// Any other template. `$binary_remote_addr` inside a longer key counts as `$remote_addr`
    /// (the same client, the same key; tether's templates are text).
    Template(Template),
}

impl Key {
    /// Compiles a zone's key template.
    pub fn compile(text: &str, vars: &Vars, span: &Span) -> Result<Key, ConfigError> {
        if text == "$binary_remote_addr" || text == "${binary_remote_addr}" {
            return Ok(Key::ClientAddress);
        }
        let text = text
            .replace("${binary_remote_addr}", "${remote_addr}")
            .replace("$binary_remote_addr", "$remote_addr");
        vars.compile(&text, span).map(Key::Template)
    }

    /// The key's bytes for `info`, in `out` (cleared first).
    fn render(&self, vars: &Vars, info: &RequestInfo, scratch: &mut String, out: &mut Vec<u8>) {
        out.clear();
        match self {
            Key::ClientAddress => match info.client.ip().to_canonical() {
                std::net::IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
                std::net::IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
            },
            Key::Template(template) => {
                scratch.clear();
                template.render(vars, info, scratch);
                out.extend_from_slice(scratch.as_bytes());
            }
        }
    }
}

/// One `limit_req`, compiled.
#[derive(Debug)]
pub(super) struct RequestLimiter {
    pub(super) zone: Arc<RequestZone>,
    pub(super) key: Arc<Key>,
    /// `burst`, in thousandths.
    pub(super) burst: u64,
    /// `delay` (or `nodelay`), in thousandths.
    pub(super) delay: u64,
}

/// One `limit_conn`, compiled.
#[derive(Debug)]
pub(super) struct ConnectionLimiter {
    pub(super) zone: Arc<ConnectionZone>,
    pub(super) key: Arc<Key>,
    pub(super) max: u32,
}

/// The `limit_req`s and `limit_conn`s of one location.
#[derive(Debug)]
pub struct Limits {
    pub(super) requests: Vec<RequestLimiter>,
    /// `limit_req_status`, `limit_req_log_level`, `limit_req_dry_run`.
    pub request_response: LimitResponse,
    pub(super) connections: Vec<ConnectionLimiter>,
    /// `limit_conn_status`, `limit_conn_log_level`, `limit_conn_dry_run`.
    pub connection_response: LimitResponse,
}

/// What `limit_req` decided for one request (before `limit_req_dry_run` is applied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestVerdict {
    /// No limit applied: every key was empty, or the location has no `limit_req`.
    Unlimited,
    /// Within every rate.
    Passed,
    /// Within every burst, but to be held back this long to keep the rate.
    Delayed {
        /// How long.
        delay: Duration,
        /// The excess of the limit that asked for the delay, in thousandths.
        excess: u64,
        /// That limit's zone.
        zone: Arc<str>,
    },
    /// Over a burst (`excess` said), or a new key found its zone full (no excess).
    Rejected {
        /// The excess the request would have made, in thousandths.
        excess: Option<u64>,
        /// The zone that refused.
        zone: Arc<str>,
    },
}

impl RequestVerdict {
    /// `$limit_req_status`: PASSED, DELAYED, REJECTED, DELAYED_DRY_RUN, REJECTED_DRY_RUN, or
    /// empty when no limit applied.
    pub fn status_name(&self, dry_run: bool) -> &'static str {
        match (self, dry_run) {
            (RequestVerdict::Unlimited, _) => "",
            (RequestVerdict::Passed, _) => "PASSED",
            (RequestVerdict::Delayed { .. }, false) => "DELAYED",
            (RequestVerdict::Delayed { .. }, true) => "DELAYED_DRY_RUN",
            (RequestVerdict::Rejected { .. }, false) => "REJECTED",
            (RequestVerdict::Rejected { .. }, true) => "REJECTED_DRY_RUN",
        }
    }
}

/// What `limit_conn` decided for one request (before `limit_conn_dry_run` is applied).
#[derive(Debug)]
pub enum ConnectionVerdict {
    /// No limit applied.
    Unlimited,
    /// Counted in every zone until the holds are dropped.
    Passed(ConnectionHolds),
    /// A key was at its limit, or a new key found its zone full; nothing stays counted.
    Rejected {
        /// The zone that refused.
        zone: Arc<str>,
        /// The zone had no room for a new key (else the key was at its limit).
        full: bool,
    },
}

/// The places one request holds in its location's `limit_conn` zones, given back when this is
/// dropped.
#[derive(Debug, Default)]
pub struct ConnectionHolds {
    _held: Vec<ConnectionHold>,
}

/// How far [`Limits::check_requests`] got.
enum Found {
    /// No key so far (nginx's `NGX_DECLINED`).
    Nothing,
    /// Every limit so far held its bucket (`NGX_AGAIN`).
    Held,
    /// The last limit counted the request with this excess (`NGX_OK`), at this index.
    Passed(u64, usize),
    /// Refused at this index.
    Refused(Option<u64>, usize),
}

impl Limits {
    /// Whether the location has any `limit_req`.
    pub fn limits_requests(&self) -> bool {
        !self.requests.is_empty()
    }

    /// Whether the location has any `limit_conn`.
    pub fn limits_connections(&self) -> bool {
        !self.connections.is_empty()
    }

    /// Runs the request through every `limit_req` of the location, as nginx does: each
    /// limit but the last holds its bucket, the last counts at once; a refusal lets the held
    /// ones go uncounted; otherwise the held ones are counted and the longest delay any of
    /// them asks (beyond its `delay=`) is the request's.
    pub fn check_requests(&self, vars: &Vars, info: &RequestInfo) -> RequestVerdict {
        let (mut scratch, mut key) = (String::new(), Vec::new());
        let mut held = Vec::with_capacity(self.requests.len().saturating_sub(1));
        let mut found = Found::Nothing;
        let last = self.requests.len().saturating_sub(1);
        for (index, limit) in self.requests.iter().enumerate() {
            limit.key.render(vars, info, &mut scratch, &mut key);
            if key.is_empty() || key.len() > MAX_KEY {
                continue;
            }
            match limit.zone.lookup(&key, limit.burst, index == last) {
                Lookup::Held(slot) => {
                    held.push((index, slot));
                    found = Found::Held;
                }
                Lookup::Passed(excess) => found = Found::Passed(excess, index),
                Lookup::Busy(excess) => found = Found::Refused(Some(excess), index),
                Lookup::Full => found = Found::Refused(None, index),
            }
            if matches!(found, Found::Passed(..) | Found::Refused(..)) {
                break;
            }
        }
        let (mut excess, mut at) = match found {
            Found::Nothing => return RequestVerdict::Unlimited,
            Found::Refused(excess, index) => {
                for (index, slot) in held {
                    self.requests[index].zone.release(slot);
                }
                let zone = self.requests[index].zone.name.clone();
                return RequestVerdict::Rejected { excess, zone };
            }
            Found::Held => (0, last),
            Found::Passed(excess, index) => (excess, index),
        };
        let mut max_delay = self.requests[at].delay_for(excess);
        // nginx accounts the held buckets from the last back to the first.
        for &(index, slot) in held.iter().rev() {
            let limit = &self.requests[index];
            let counted = limit.zone.account(slot);
            let delay = limit.delay_for(counted);
            if delay > max_delay {
                (max_delay, excess, at) = (delay, counted, index);
            }
        }
        if max_delay == 0 {
            return RequestVerdict::Passed;
        }
        RequestVerdict::Delayed {
            delay: Duration::from_millis(max_delay),
            excess,
            zone: self.requests[at].zone.name.clone(),
        }
    }

    /// Counts the request in every `limit_conn` zone of the location, or in none.
    pub fn enter_connections(&self, vars: &Vars, info: &RequestInfo) -> ConnectionVerdict {
        let (mut scratch, mut key) = (String::new(), Vec::new());
        let mut holds = Vec::with_capacity(self.connections.len());
        for limit in &self.connections {
            limit.key.render(vars, info, &mut scratch, &mut key);
            if key.is_empty() || key.len() > MAX_KEY {
                continue;
            }
            match limit.zone.enter(&key, limit.max) {
                Ok(hold) => holds.push(hold),
                // Dropping `holds` gives back the places taken so far, as nginx's cleanup.
                Err(refusal) => {
                    return ConnectionVerdict::Rejected {
                        zone: limit.zone.name.clone(),
                        full: refusal == Refusal::Full,
                    };
                }
            }
        }
        if holds.is_empty() {
            return ConnectionVerdict::Unlimited;
        }
        ConnectionVerdict::Passed(ConnectionHolds { _held: holds })
    }
}

impl RequestLimiter {
    /// How long a request leaving `excess` in this bucket waits: what is beyond `delay`,
    /// drained at the zone's rate, in milliseconds.
    fn delay_for(&self, excess: u64) -> u64 {
        if excess <= self.delay {
            return 0;
        }
        (excess - self.delay).saturating_mul(1000) / self.zone.rate.max(1)
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
