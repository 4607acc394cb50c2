//! One request's log lines in the making, and what the response side learns for them: the
//! status, the bytes, the times, every upstream try. The proxy feeds a [`Record`] as the
//! exchange goes; the response body (or the tunnel) finishes it when it ends or is dropped.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::HeaderMap;

use crate::vars::{Late, Phase, ResponseFacts, clock, push_u64};

use super::holes::Holes;
use super::{CompiledLog, buffers};

/// A new line buffer's size: a `combined` line fits.
const FRESH_LINE: usize = 256;

/// A buffer grown past this (a line with a long URI or header) is freed, not kept.
const LARGEST_KEPT: usize = 2048;

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

/// One request's lines and the facts they wait for. Records are recycled per thread with their
/// buffers (see [`buffers`]): a logged request allocates nothing of its own once its thread has
/// served a few.
#[derive(Debug, Default)]
pub struct Record {
    lines: Vec<Line>,
    /// Buffers of lines finished before, for the next request's lines.
    spare: Vec<String>,
    /// Where a line is put together when it is finished.
    finished: String,
    /// The last phase whose holes are filled.
    done: Option<Phase>,
    /// A line shows a size (`$bytes_sent`, `$request_length`, ...): heads are measured.
    needs_sizes: bool,
    /// A line shows a header of a response (`$sent_http_*`, `$upstream_http_*`).
    needs_heads: bool,
    known: Known,
}

/// What the response side learned so far.
#[derive(Debug, Default)]
struct Known {
    /// When the request began (None: no line shows a time).
    start: Option<Instant>,
    status: u16,
    body_bytes: u64,
    head_bytes: u64,
    request_length: u64,
    group: Option<Arc<str>>,
    sticky: &'static str,
    /// `$limit_req_status` and `$limit_conn_status`.
    limits: (&'static str, &'static str),
    tries: Vec<Try>,
}

impl Record {
    /// An empty record, one this thread finished before if it kept one.
    pub(super) fn recycled() -> Box<Record> {
        buffers::take_record().unwrap_or_default()
    }

    /// An empty buffer for a line of the request.
    pub(super) fn buffer(&mut self) -> String {
        self.spare
            .pop()
            .unwrap_or_else(|| String::with_capacity(FRESH_LINE))
    }

    /// Adds a line begun for the request.
    pub(super) fn add(&mut self, line: Line) {
        self.needs_heads |= line.log.format.needs_heads();
        self.lines.push(line);
    }

    /// Whether no line was begun.
    pub(super) fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Starts waiting for the response: notes the request's length and, when a line shows a
    /// duration, when it began. The clock is read for times only then: a read is a system
    /// call's worth of instructions on every request.
    pub(super) fn start(&mut self, needs: Needs, request_length: u64) {
        self.needs_sizes = needs.sizes;
        self.known.request_length = request_length;
        self.known.start = needs.times.then(Instant::now);
    }

    /// Empties the record and keeps it (and its lines' buffers) for another request on this
    /// thread; what it refers to (the log, the group) is let go now.
    pub(super) fn recycle(mut self: Box<Self>) {
        for line in self.lines.drain(..) {
            let mut text = line.text;
            if text.capacity() <= LARGEST_KEPT {
                text.clear();
                self.spare.push(text);
            }
        }
        if self.finished.capacity() > LARGEST_KEPT {
            self.finished = String::new();
        }
        self.done = None;
        self.needs_sizes = false;
        self.needs_heads = false;
        let mut tries = std::mem::take(&mut self.known.tries);
        tries.clear();
        self.known = Known {
            tries,
            ..Known::default()
        };
        buffers::give_record(self);
    }

    /// The group the request is proxied to (`$upstream_group`).
    pub fn set_group(&mut self, name: &Arc<str>) {
        self.known.group = Some(name.clone());
    }

    /// What `limit_req` and `limit_conn` decided (`$limit_req_status`, `$limit_conn_status`).
    pub fn set_limit_statuses(&mut self, requests: &'static str, connections: &'static str) {
        self.known.limits = (requests, connections);
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
        self.known.tries.push(attempt);
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
        if self.needs_heads {
            let facts = Facts {
                known: &self.known,
                headers: Some(headers),
                now: SystemTime::now(),
            };
            for line in &mut self.lines {
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

    /// Gets ready for a long wait (a tunnel's line waits for the tunnel's end): keeps only what
    /// finishing the lines needs. A recycled record carries buffers for the next requests of
    /// its thread (spare lines, the finished line's, room for more tries): ~1.2 KiB that every
    /// idle WebSocket would hold for its whole life, more than half of what one costs.
    pub fn settle(&mut self) {
        self.spare = Vec::new();
        self.finished = String::new();
        self.lines.shrink_to_fit();
        for line in &mut self.lines {
            line.text.shrink_to_fit();
            line.holes.shrink_to_fit();
        }
        self.known.tries.shrink_to_fit();
    }

    /// The heap bytes the record holds besides its own box.
    #[cfg(test)]
    fn held_bytes(&self) -> usize {
        let lines = self.lines.capacity() * size_of::<Line>();
        let texts: usize = self.lines.iter().map(|line| line.text.capacity()).sum();
        let spare: usize = self.spare.iter().map(String::capacity).sum();
        let spare = spare + self.spare.capacity() * size_of::<String>();
        let tries = self.known.tries.capacity() * size_of::<Try>();
        lines + texts + spare + self.finished.capacity() + tries
    }

    /// The response ended (or was dropped): fills what is left and hands each line whose
    /// condition holds to its file.
    pub fn finish(mut self: Box<Self>) {
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
        for line in &self.lines {
            let log = &line.log;
            let finished = &mut self.finished;
            finished.clear();
            let (text, holes) = (&line.text, &line.holes);
            log.format.finish(self.done, &facts, text, holes, finished);
            if log.passes_at_end(&facts) {
                finished.push('\n');
                log.file.push(finished.as_bytes());
            }
        }
        self.recycle();
    }
}

impl Known {
    fn last_try(&mut self) -> Option<&mut Try> {
        self.tries.last_mut()
    }

    fn tries(&self) -> impl Iterator<Item = &Try> {
        self.tries.iter()
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
            Late::LimitReqStatus => out.push_str(known.limits.0),
            Late::LimitConnStatus => out.push_str(known.limits.1),
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

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
