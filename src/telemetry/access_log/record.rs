//! One request's log lines in the making, and what the response side learns for them: the
//! status, the bytes, the times, every upstream try. The proxy feeds a [`Record`] as the
//! exchange goes; the response body (or the tunnel) finishes it when it ends or is dropped.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::HeaderMap;

use crate::vars::{Late, Phase, ResponseFacts, clock, push_u64};

use super::CompiledLog;
use super::format::Holes;

/// One line in the making.
#[derive(Debug)]
pub(super) struct Line {
    pub(super) log: Arc<CompiledLog>,
    pub(super) text: String,
    pub(super) holes: Holes,
}

/// One upstream try, for `$upstream_addr`, `$upstream_status` and the upstream times.
#[derive(Clone, Copy, Debug)]
struct Try {
    addr: Option<SocketAddr>,
    /// The status the server answered with; for a try that got none, nginx's 502 or 504.
    status: Option<u16>,
    /// When it began (None: no line shows a time, and the clock is not read for them).
    start: Option<Instant>,
    connect: Option<Duration>,
    header: Option<Duration>,
    /// When the response ended (the last try's), or the try failed.
    end: Option<Duration>,
}

/// What the lines of a request show, so that only that is measured.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Needs {
    /// A size (`$bytes_sent`, `$request_length`, ...): heads are measured.
    pub(super) sizes: bool,
    /// A duration (`$request_time`, the upstream times, or an end-of-line `if=`).
    pub(super) times: bool,
}

/// One request's lines and the facts they wait for.
#[derive(Debug)]
pub struct Record {
    first: Line,
    more: Vec<Line>,
    /// The last phase whose holes are filled.
    done: Option<Phase>,
    /// A line shows a size (`$bytes_sent`, `$request_length`, ...): heads are measured.
    needs_sizes: bool,
    known: Known,
}

/// What the response side learned so far.
#[derive(Debug)]
struct Known {
    /// When the request began (None: no line shows a time).
    start: Option<Instant>,
    status: u16,
    body_bytes: u64,
    head_bytes: u64,
    request_length: u64,
    group: Option<Arc<str>>,
    sticky: &'static str,
    first_try: Option<Try>,
    more_tries: Vec<Try>,
}

impl Record {
    pub(super) fn new(first: Line, more: Vec<Line>, needs: Needs, request_length: u64) -> Record {
        let needs_sizes = needs.sizes;
        // The clock is read for times only when a line shows one: a read is a system call's
        // worth of instructions on every request.
        let now = || needs.times.then(Instant::now);
        Record {
            first,
            more,
            done: None,
            needs_sizes,
            known: Known {
                start: now(),
                status: 0,
                body_bytes: 0,
                head_bytes: 0,
                request_length,
                group: None,
                sticky: "",
                first_try: None,
                more_tries: Vec::new(),
            },
        }
    }

    /// The group the request is proxied to (`$upstream_group`).
    pub fn set_group(&mut self, name: &Arc<str>) {
        self.known.group = Some(name.clone());
    }

    /// A try on a server begins (`sticky`: how stickiness came out for it).
    pub fn try_started(&mut self, addr: Option<SocketAddr>, sticky: &'static str) {
        self.known.sticky = sticky;
        let attempt = Try {
            addr,
            status: None,
            start: self.known.start.map(|_| Instant::now()),
            connect: None,
            header: None,
            end: None,
        };
        match self.known.first_try {
            None => self.known.first_try = Some(attempt),
            Some(_) => self.known.more_tries.push(attempt),
        }
    }

    /// The current try's connection was ready after `took`.
    pub fn try_connected(&mut self, took: Duration) {
        if let Some(last) = self.known.last_try() {
            last.connect = Some(took);
        }
    }

    /// The current try got a response head with `status`.
    pub fn try_answered(&mut self, status: u16) {
        if let Some(last) = self.known.last_try() {
            last.status = Some(status);
            last.header = last.start.map(|start| start.elapsed());
        }
    }

    /// The current try failed without a response; nginx shows `status` (502, 504) for it.
    pub fn try_failed(&mut self, status: u16) {
        if let Some(last) = self.known.last_try() {
            last.status = last.status.or(Some(status));
            last.end = last.start.map(|start| start.elapsed());
        }
    }

    /// Fills the holes of `phase` from a response head: the upstream's as received
    /// ([`Phase::UpstreamHead`]) or the client's as sent ([`Phase::SentHead`]).
    pub fn head(&mut self, phase: Phase, status: u16, headers: &HeaderMap) {
        if phase == Phase::SentHead {
            self.known.status = status;
            if self.needs_sizes {
                self.known.head_bytes = head_size(status, headers);
            }
        }
        let heads = self.first.log.format.needs_heads()
            || self.more.iter().any(|line| line.log.format.needs_heads());
        if heads {
            let facts = Facts {
                known: &self.known,
                headers: Some(headers),
                now: SystemTime::now(),
            };
            for line in std::iter::once(&mut self.first).chain(&mut self.more) {
                let format = &line.log.format;
                format.fill(phase, self.done, &facts, &mut line.text, &mut line.holes);
            }
            self.done = Some(phase);
        }
    }

    /// Counts body bytes sent to the client.
    pub fn body_sent(&mut self, bytes: u64) {
        self.known.body_bytes += bytes;
    }

    /// The request's tunnel ended: `from_client` bytes went up through it, `to_client` down.
    pub fn tunnel_ended(&mut self, from_client: u64, to_client: u64) {
        self.known.request_length += from_client;
        self.known.body_bytes += to_client;
    }

    /// The response ended (or was dropped): fills what is left and hands each line whose
    /// condition holds to its file.
    pub fn finish(mut self) {
        if let Some(last) = self.known.last_try()
            && last.end.is_none()
        {
            last.end = last.start.map(|start| start.elapsed());
        }
        let facts = Facts {
            known: &self.known,
            headers: None,
            now: SystemTime::now(),
        };
        for line in std::iter::once(&mut self.first).chain(&mut self.more) {
            let log = &line.log;
            log.format.fill(
                Phase::End,
                self.done,
                &facts,
                &mut line.text,
                &mut line.holes,
            );
            if log.passes_at_end(&facts) {
                line.text.push('\n');
                log.file.push(line.text.as_bytes());
            }
        }
    }
}

impl Known {
    fn last_try(&mut self) -> Option<&mut Try> {
        match self.more_tries.last_mut() {
            Some(last) => Some(last),
            None => self.first_try.as_mut(),
        }
    }

    fn tries(&self) -> impl Iterator<Item = &Try> {
        self.first_try.iter().chain(&self.more_tries)
    }
}

/// The response side's facts as variables read them.
pub(super) struct Facts<'a> {
    known: &'a Known,
    /// The response head of the phase being filled.
    headers: Option<&'a HeaderMap>,
    now: SystemTime,
}

/// nginx's `%T.%03M`: seconds with milliseconds.
fn seconds(out: &mut String, time: Duration) {
    push_u64(out, time.as_secs());
    let millis = time.subsec_millis();
    out.push('.');
    for digit in [millis / 100, millis / 10 % 10, millis % 10] {
        out.push(char::from(b'0' + digit as u8));
    }
}

/// Each try's value, `, `-separated as nginx lists them (`-` where a try has none).
fn per_try(out: &mut String, known: &Known, value: impl Fn(&Try, &mut String)) {
    for (index, attempt) in known.tries().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        let before = out.len();
        value(attempt, out);
        if out.len() == before {
            out.push('-');
        }
    }
}

impl ResponseFacts for Facts<'_> {
    fn render(&self, late: &Late, out: &mut String) {
        let known = self.known;
        let time = |out: &mut String, value: Option<Duration>| {
            if let Some(value) = value {
                seconds(out, value);
            }
        };
        match late {
            Late::Status => {
                if known.status != 0 {
                    push_u64(out, u64::from(known.status));
                }
            }
            Late::BodyBytesSent => push_u64(out, known.body_bytes),
            Late::BytesSent => push_u64(out, known.head_bytes + known.body_bytes),
            Late::RequestLength => push_u64(out, known.request_length),
            Late::RequestTime => {
                if let Some(start) = known.start {
                    seconds(out, start.elapsed());
                }
            }
            Late::TimeLocal => clock::time_local(self.now, out),
            Late::TimeIso8601 => clock::time_iso8601(self.now, out),
            Late::Msec => clock::msec(self.now, out),
            Late::UpstreamAddr => per_try(out, known, |t, out| {
                if let Some(addr) = t.addr {
                    let _ = write!(out, "{addr}");
                }
            }),
            Late::UpstreamStatus => per_try(out, known, |t, out| {
                if let Some(status) = t.status {
                    let _ = write!(out, "{status}");
                }
            }),
            Late::UpstreamResponseTime => per_try(out, known, |t, out| time(out, t.end)),
            Late::UpstreamConnectTime => per_try(out, known, |t, out| time(out, t.connect)),
            Late::UpstreamHeaderTime => per_try(out, known, |t, out| time(out, t.header)),
            // What went up and came down, as far as tether sees it: the request's length
            // for each try, the answered try's response.
            Late::UpstreamBytesSent => per_try(out, known, |t, out| {
                if t.connect.is_some() {
                    let _ = write!(out, "{}", known.request_length);
                }
            }),
            Late::UpstreamBytesReceived => per_try(out, known, |t, out| {
                let received = match t.header {
                    Some(_) if t.status == Some(known.status) => {
                        known.head_bytes + known.body_bytes
                    }
                    _ => 0,
                };
                let _ = write!(out, "{received}");
            }),
            Late::UpstreamGroup => {
                if let Some(group) = &known.group {
                    out.push_str(group);
                }
            }
            Late::UpstreamTries => {
                let _ = write!(out, "{}", known.tries().count());
            }
            Late::StickyStatus => out.push_str(known.sticky),
            Late::UpstreamHttp(name) | Late::SentHttp(name) => {
                if let Some(headers) = self.headers {
                    for (index, value) in headers.get_all(name).iter().enumerate() {
                        if index > 0 {
                            out.push_str(", ");
                        }
                        out.push_str(&String::from_utf8_lossy(value.as_bytes()));
                    }
                }
            }
            Late::UpstreamCookie(name) => {
                let Some(headers) = self.headers else {
                    return;
                };
                let cookies = headers
                    .get_all(http::header::SET_COOKIE)
                    .iter()
                    .filter_map(|value| value.to_str().ok())
                    .filter_map(|text| cookie::Cookie::parse(text).ok());
                for found in cookies {
                    if found.name().eq_ignore_ascii_case(name) {
                        out.push_str(found.value());
                        return;
                    }
                }
            }
        }
    }
}

/// The size of a response head as tether's HTTP/1 server writes it (status line, headers, the
/// blank line); close to what goes out over HTTP/2 before compression.
fn head_size(status: u16, headers: &HeaderMap) -> u64 {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map_or(0, str::len);
    // `HTTP/1.1 200 OK\r\n` ... `\r\n`
    let mut size = 9 + 3 + 1 + reason + 2 + 2;
    for (name, value) in headers {
        size += name.as_str().len() + 2 + value.len() + 2;
    }
    size as u64
}
