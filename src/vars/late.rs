//! Variables whose value is known only once a response exists (`$status`, `$upstream_addr`,
//! `$bytes_sent`, ...) and the per-request facts known from the start (`$request_id`,
//! `$connection`, ...).
//!
//! A [`Late`] variable renders through [`ResponseFacts`], which the access log implements when
//! it fills a line; in a header, a `map` or anywhere else rendered before the response, no facts
//! are there and the value is empty, as nginx's. The time variables are late in a log line (the
//! time the line is written, as nginx) and read the clock anywhere else. Also how a template is
//! cut for the access log ([`Template::segments`]) and the empty request an end-of-line `if=`
//! sees. Pure std + `http`.

use std::fmt::Write as _;
use std::time::SystemTime;

use std::net::SocketAddr;

use crate::header_list::HeaderList;
use http::{HeaderName, Method, Uri, Version};

use super::{Early, Part, RequestInfo, Template, Var, Vars, clock};

/// A variable known only when the response is (or once it ended).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Late {
    /// `$status`.
    Status,
    /// `$body_bytes_sent`.
    BodyBytesSent,
    /// `$bytes_sent`.
    BytesSent,
    /// `$request_length`.
    RequestLength,
    /// `$request_time`.
    RequestTime,
    /// `$time_local`.
    TimeLocal,
    /// `$time_iso8601`.
    TimeIso8601,
    /// `$msec`.
    Msec,
    /// `$upstream_addr`.
    UpstreamAddr,
    /// `$upstream_status`.
    UpstreamStatus,
    /// `$upstream_response_time`.
    UpstreamResponseTime,
    /// `$upstream_connect_time`.
    UpstreamConnectTime,
    /// `$upstream_header_time`.
    UpstreamHeaderTime,
    /// `$upstream_bytes_sent`.
    UpstreamBytesSent,
    /// `$upstream_bytes_received`.
    UpstreamBytesReceived,
    /// `$upstream_group` (tether's own): the group that answered.
    UpstreamGroup,
    /// `$upstream_tries` (tether's own): how many servers were tried.
    UpstreamTries,
    /// `$sticky_status` (tether's own): none, new, hit or re-pinned.
    StickyStatus,
    /// `$limit_req_status`: PASSED, DELAYED, REJECTED, DELAYED_DRY_RUN or REJECTED_DRY_RUN.
    LimitReqStatus,
    /// `$limit_conn_status`: PASSED, REJECTED or REJECTED_DRY_RUN.
    LimitConnStatus,
    /// `$upstream_http_NAME`: a header of the upstream's response.
    UpstreamHttp(HeaderName),
    /// `$upstream_cookie_NAME`: a cookie the upstream's response sets.
    UpstreamCookie(Box<str>),
    /// `$sent_http_NAME`: a header of the response sent to the client.
    SentHttp(HeaderName),
}

/// When a [`Late`] variable's value becomes known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// With the upstream's response head, before tether rewrites it.
    UpstreamHead,
    /// With the response head sent to the client.
    SentHead,
    /// When the response (or tunnel) ended.
    End,
}

impl Late {
    /// When this variable's value is known.
    pub fn phase(&self) -> Phase {
        match self {
            Late::UpstreamHttp(_) | Late::UpstreamCookie(_) => Phase::UpstreamHead,
            Late::SentHttp(_) => Phase::SentHead,
            _ => Phase::End,
        }
    }

    /// Whether the value's text never needs escaping (numbers, times, addresses, tokens):
    /// everything but what comes from a response's headers or the config's names.
    pub fn is_safe(&self) -> bool {
        !matches!(
            self,
            Late::UpstreamGroup
                | Late::UpstreamHttp(_)
                | Late::UpstreamCookie(_)
                | Late::SentHttp(_)
        )
    }

    /// The variable called `name` (lowercase), if it is one of these.
    pub(super) fn by_name(name: &str) -> Option<Late> {
        Some(match name {
            "status" => Late::Status,
            "body_bytes_sent" => Late::BodyBytesSent,
            "bytes_sent" => Late::BytesSent,
            "request_length" => Late::RequestLength,
            "request_time" => Late::RequestTime,
            "time_local" => Late::TimeLocal,
            "time_iso8601" => Late::TimeIso8601,
            "msec" => Late::Msec,
            "upstream_addr" => Late::UpstreamAddr,
            "upstream_status" => Late::UpstreamStatus,
            "upstream_response_time" => Late::UpstreamResponseTime,
            "upstream_connect_time" => Late::UpstreamConnectTime,
            "upstream_header_time" => Late::UpstreamHeaderTime,
            "upstream_bytes_sent" => Late::UpstreamBytesSent,
            "upstream_bytes_received" => Late::UpstreamBytesReceived,
            "upstream_group" => Late::UpstreamGroup,
            "upstream_tries" => Late::UpstreamTries,
            "sticky_status" => Late::StickyStatus,
            "limit_req_status" => Late::LimitReqStatus,
            "limit_conn_status" => Late::LimitConnStatus,
            _ => return None,
        })
    }

    /// The value where no response facts exist (a header, a map evaluated before the
    /// response): the clock for the time variables, nothing for the rest.
    pub(super) fn render_early(&self, out: &mut String) {
        let now = SystemTime::now();
        match self {
            Late::TimeLocal => clock::time_local(now, out),
            Late::TimeIso8601 => clock::time_iso8601(now, out),
            Late::Msec => clock::msec(now, out),
            _ => {}
        }
    }
}

/// What the response side of a request knows, for [`Late`] variables.
pub trait ResponseFacts: Sync {
    /// Appends `late`'s value (nothing when it is not known).
    fn render(&self, late: &Late, out: &mut String);
}

/// Facts of a request fixed when it arrives: `$request_id`, `$connection`,
/// `$connection_requests`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestFacts {
    /// `$connection`: the connection's serial number.
    pub connection: u64,
    /// `$connection_requests`: this request's number on its connection (1 for the first).
    pub connection_requests: u64,
    /// `$request_id`: random, 128 bits, shown as 32 hex digits.
    pub id: u128,
}

impl RequestFacts {
    /// No facts (a request the tests made up, a health check).
    pub const NONE: RequestFacts = RequestFacts {
        connection: 0,
        connection_requests: 0,
        id: 0,
    };

    /// Appends `$request_id`.
    pub(super) fn render_id(&self, out: &mut String) {
        let _ = write!(out, "{:032x}", self.id);
    }
}

/// A piece of a template, as [`Template::segments`] cuts it.
#[derive(Clone, Debug)]
pub enum Segment {
    /// Text as written.
    Literal(Box<str>),
    /// One variable known when the request arrives.
    Early(Early),
    /// A variable known with the response.
    Late(Late),
}

impl Template {
    /// The template cut where its values are known: literals, variables known when the request
    /// arrives (each a template of its own), and [`Late`] ones (the access log fills those in
    /// when the response is there).
    pub fn segments(&self) -> Vec<Segment> {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Literal(text) => Segment::Literal(text.clone()),
                Part::Var(Var::Late(late)) => Segment::Late(late.clone()),
                Part::Var(var) => Segment::Early(Early(var.clone())),
            })
            .collect()
    }

    /// Whether rendering reads a [`Late`] variable, directly or through a map.
    pub fn uses_late(&self, vars: &Vars) -> bool {
        let mut seen = vec![false; vars.maps.len()];
        self.reads_late(vars, &mut seen)
    }

    fn reads_late(&self, vars: &Vars, seen: &mut [bool]) -> bool {
        self.parts.iter().any(|part| match part {
            Part::Var(Var::Late(_)) => true,
            Part::Var(Var::Map(index)) => {
                let Some(first) = seen.get_mut(*index).filter(|s| !**s) else {
                    return false;
                };
                *first = true;
                vars.maps[*index]
                    .templates()
                    .any(|template| template.reads_late(vars, seen))
            }
            _ => false,
        })
    }
}

/// A request with nothing in it: what an access log's `if=` evaluated at the end of a request
/// sees for the request's own variables (the response facts are set by the caller).
pub fn empty_request() -> RequestInfo<'static> {
    static EMPTY: std::sync::OnceLock<(Uri, HeaderList)> = std::sync::OnceLock::new();
    let (uri, headers) = EMPTY.get_or_init(|| (Uri::from_static("/"), HeaderList::new()));
    RequestInfo {
        method: &Method::GET,
        uri,
        path: b"/",
        host: "",
        version: Version::HTTP_11,
        headers,
        client: SocketAddr::from(([0, 0, 0, 0], 0)),
        peer: SocketAddr::from(([0, 0, 0, 0], 0)),
        proxy_protocol: None,
        local: SocketAddr::from(([0, 0, 0, 0], 0)),
        scheme: "http",
        tls: None,
        server_name: "",
        proxy_host: "",
        facts: &RequestFacts::NONE,
        late: None,
        locals: None,
    }
}
