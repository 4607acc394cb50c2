//! A `log_format`, compiled once per snapshot: literal text, variables rendered when the
//! request arrives, and holes for what only the response knows.
//!
//! [`Format::begin`] writes a line's known parts into its buffer and notes where each hole
//! is; [`Format::fill`] renders the holes of a response head's [`Phase`] in place once their
//! facts exist (the rest of the line moves right by the value's length — a line is a few
//! hundred bytes); [`Format::finish`] writes the finished line, the end's values in their
//! places, in one pass.
//!
//! What a piece needs is decided when the format is compiled, so that a line costs little on
//! every request: literal text around holes is one copy; the request headers a format shows
//! are found in one pass over the request's; values are rendered straight into the line, and
//! values the request holds as bytes are escaped as they are copied. Nothing is allocated but
//! the line buffer (recycled with its record), and, rarely, a value that needs escaping or a
//! spill of hole offsets for a format with more than
//! [`INLINE_HOLES`](super::holes::INLINE_HOLES) response variables.

use crate::config::{self, ConfigError, LogEscape};
use crate::header_list::HeaderList;
use http::{HeaderName, HeaderValue};

use crate::vars::{
    Early, Late, Phase, Raw, RequestInfo, ResponseFacts, Segment, Vars, push_basic_user,
};

use super::escape::{dash_if_empty, push_bytes, settle};
use super::holes::Holes;

/// A compiled `log_format`.
#[derive(Debug)]
pub struct Format {
    escape: LogEscape,
    pieces: Box<[Piece]>,
    /// The request headers the pieces show (at most [`FOUND_HEADERS`]).
    headers: Box<[HeaderName]>,
    /// The response variables, in order: one for each hole of a [`Piece::Text`].
    holes: Box<[Hole]>,
    /// Whether some hole is filled before the end (the relay then calls `fill` early).
    needs_heads: bool,
    /// A hole is filled from the upstream's own head.
    reads_upstream_head: bool,
    /// Whether a hole shows a size, for which request and response heads are measured.
    needs_sizes: bool,
    /// Whether a hole shows a duration, for which the clock is read.
    needs_times: bool,
}

/// A piece of a compiled format, with what rendering asks of it decided once.
#[derive(Debug)]
enum Piece {
    /// Literal text, with the holes that sit in it: a hole writes nothing when the line
    /// begins, so the text around it is written in one copy.
    Text {
        text: String,
        /// Where each hole is in `text`, in order.
        holes: Vec<usize>,
    },
    /// A variable known when the request arrives.
    Value {
        value: Early,
        /// Its text never needs escaping.
        safe: bool,
        /// An empty value is a value, not `-`.
        empty_is_value: bool,
    },
    /// `$http_NAME`: the value of the format's `index`th header.
    Header { index: usize, value: Early },
    /// `$remote_user`: decoded from the format's `index`th header, `Authorization`.
    User { index: usize },
}

/// The most distinct request headers a format finds in one pass over the request's; the
/// values of any more are looked up one by one.
const FOUND_HEADERS: usize = 8;

/// The request headers a line shows, found in one pass: for each of the format's, its first
/// value and whether more follow.
struct Found<'r> {
    first: [Option<&'r HeaderValue>; FOUND_HEADERS],
    repeated: [bool; FOUND_HEADERS],
}

/// A response variable, with what filling it asks decided once.
#[derive(Debug)]
struct Hole {
    late: Late,
    phase: Phase,
    /// Its text never needs escaping.
    safe: bool,
    /// An empty value is a value (`$upstream_tries`), not `-`.
    empty_is_value: bool,
}

/// Appends literal `text` (and a hole after it, if `hole`) to the pieces, joined to the text
/// before when there is one.
fn push_text(pieces: &mut Vec<Piece>, text: &str, hole: bool) {
    if !matches!(pieces.last(), Some(Piece::Text { .. })) {
        pieces.push(Piece::Text {
            text: String::new(),
            holes: Vec::new(),
        });
    }
    if let Some(Piece::Text {
        text: joined,
        holes,
    }) = pieces.last_mut()
    {
        joined.push_str(text);
        if hole {
            holes.push(joined.len());
        }
    }
}

impl Format {
    /// Compiles `format` against the config's variables; an unknown variable is an error at
    /// the `log_format`.
    pub fn compile(format: &config::LogFormat, vars: &Vars) -> Result<Format, ConfigError> {
        let template = vars.compile(&format.text, &format.span)?;
        let mut pieces = Vec::new();
        let mut holes = Vec::new();
        let mut headers: Vec<HeaderName> = Vec::new();
        for segment in template.segments() {
            let found = |value: &Early, headers: &mut Vec<HeaderName>| {
                let name = value.header()?;
                match headers.iter().position(|known| known == name) {
                    Some(index) => Some(index),
                    None if headers.len() < FOUND_HEADERS => {
                        headers.push(name.clone());
                        Some(headers.len() - 1)
                    }
                    None => None,
                }
            };
            // Text, and holes, join the text before them.
            let piece = match segment {
                Segment::Literal(text) => {
                    push_text(&mut pieces, &text, false);
                    continue;
                }
                Segment::Early(value) => match found(&value, &mut headers) {
                    Some(index) if value.is_remote_user() => Piece::User { index },
                    Some(index) => Piece::Header { index, value },
                    None => Piece::Value {
                        safe: value.is_safe(),
                        empty_is_value: value.empty_is_value(),
                        value,
                    },
                },
                Segment::Late(late) => {
                    holes.push(Hole {
                        phase: late.phase(),
                        safe: late.is_safe(),
                        empty_is_value: matches!(late, Late::UpstreamTries),
                        late,
                    });
                    push_text(&mut pieces, "", true);
                    continue;
                }
            };
            pieces.push(piece);
        }
        let needs_heads = holes.iter().any(|hole| hole.phase != Phase::End);
        let reads_upstream_head = holes.iter().any(|hole| hole.phase == Phase::UpstreamHead);
        let needs_sizes = holes.iter().any(|hole| {
            matches!(
                hole.late,
                Late::BytesSent
                    | Late::RequestLength
                    | Late::UpstreamBytesSent
                    | Late::UpstreamBytesReceived
            )
        });
        let needs_times = holes.iter().any(|hole| {
            matches!(
                hole.late,
                Late::RequestTime
                    | Late::UpstreamResponseTime
                    | Late::UpstreamConnectTime
                    | Late::UpstreamHeaderTime
            )
        });
        Ok(Format {
            escape: format.escape,
            pieces: pieces.into(),
            headers: headers.into(),
            holes: holes.into(),
            needs_heads,
            reads_upstream_head,
            needs_sizes,
            needs_times,
        })
    }

    /// Whether a hole is filled from a response head (`$sent_http_*`, `$upstream_http_*`).
    pub fn needs_heads(&self) -> bool {
        self.needs_heads
    }

    /// Whether a hole is filled from the upstream's own head (`$upstream_http_*`,
    /// `$upstream_cookie_*`), before tether rewrites it.
    pub fn reads_upstream_head(&self) -> bool {
        self.reads_upstream_head
    }

    /// Whether a hole shows a size (`$bytes_sent`, `$request_length`, `$upstream_bytes_*`).
    pub fn needs_sizes(&self) -> bool {
        self.needs_sizes
    }

    /// Whether a hole shows a duration (`$request_time`, `$upstream_*_time`).
    pub fn needs_times(&self) -> bool {
        self.needs_times
    }

    /// Writes what the request knows into `line` and notes the holes.
    pub fn begin(&self, vars: &Vars, req: &RequestInfo, line: &mut String, holes: &mut Holes) {
        let found = self.find_headers(req.headers);
        let mut hole = 0;
        for piece in &self.pieces {
            match piece {
                Piece::Text { text, holes: at } => {
                    let start = line.len();
                    line.push_str(text);
                    for offset in at {
                        holes.set(hole, start + offset);
                        hole += 1;
                    }
                }
                Piece::Header { index, value } => {
                    if found.repeated[*index] {
                        // Rare: the values are joined as text.
                        self.push_value(value, false, vars, req, line);
                    } else {
                        let bytes = found.first[*index].map_or(&b""[..], |v| v.as_bytes());
                        push_bytes(self.escape, line, bytes, false);
                    }
                }
                Piece::User { index } => {
                    let start = line.len();
                    if let Some(value) = found.first[*index] {
                        push_basic_user(value, line);
                    }
                    settle(self.escape, line, start, false);
                }
                Piece::Value {
                    value,
                    safe: true,
                    empty_is_value,
                } => {
                    let start = line.len();
                    value.render(vars, req, line);
                    dash_if_empty(self.escape, line, start, *empty_is_value);
                }
                Piece::Value {
                    value,
                    empty_is_value,
                    ..
                } => self.push_value(value, *empty_is_value, vars, req, line),
            }
        }
    }

    /// Finds the request headers the format shows, in one pass over the request's (a lookup
    /// each would hash the name and probe the map for every one).
    fn find_headers<'r>(&self, headers: &'r HeaderList) -> Found<'r> {
        let mut found = Found {
            first: [None; FOUND_HEADERS],
            repeated: [false; FOUND_HEADERS],
        };
        if self.headers.is_empty() {
            return found;
        }
        for (name, value) in headers {
            for (index, wanted) in self.headers.iter().enumerate() {
                if name == wanted {
                    match found.first[index] {
                        None => found.first[index] = Some(value),
                        Some(_) => found.repeated[index] = true,
                    }
                }
            }
        }
        found
    }

    /// Appends a request value that may need escaping.
    fn push_value(
        &self,
        value: &Early,
        empty_is_value: bool,
        vars: &Vars,
        req: &RequestInfo,
        line: &mut String,
    ) {
        let start = line.len();
        match value.raw(req) {
            Raw::Bytes(bytes) => push_bytes(self.escape, line, bytes, empty_is_value),
            Raw::Request {
                method,
                target,
                protocol,
            } => {
                line.push_str(method);
                line.push(' ');
                push_bytes(self.escape, line, target, true);
                line.push(' ');
                line.push_str(protocol);
            }
            Raw::Safe => {
                value.render(vars, req, line);
                dash_if_empty(self.escape, line, start, empty_is_value);
            }
            Raw::Text => {
                value.render(vars, req, line);
                settle(self.escape, line, start, empty_is_value);
            }
        }
    }

    /// Renders into `line`, from `facts`, the holes known by `phase` and not filled yet
    /// (`done`: the last phase filled before).
    pub fn fill(
        &self,
        phase: Phase,
        done: Option<Phase>,
        facts: &dyn ResponseFacts,
        line: &mut String,
        holes: &mut Holes,
    ) {
        let count = self.holes.len();
        for (index, hole) in self.holes.iter().enumerate() {
            let known = hole.phase;
            if known > phase || done.is_some_and(|done| known <= done) {
                continue;
            }
            // Rendered at the end of the line, then turned into its place.
            let at = holes.get(index).min(line.len());
            let start = line.len();
            self.render_late(hole, facts, line);
            let added = line.len() - start;
            debug_assert!(
                line.is_char_boundary(at),
                "a hole sits between whole values"
            );
            // SAFETY: `line[at..start]` and `line[start..]` are each whole UTF-8 text (`at` and
            // `start` are ends of values pushed whole), so swapping the two keeps the String
            // UTF-8.
            unsafe { line.as_mut_vec()[at..].rotate_right(added) };
            holes.shift_after(index, added, count);
        }
    }

    /// Writes the finished line into `out`: `line` with its holes still open (those known
    /// after `done`) filled from `facts`, the end's. One pass, each value written in its place.
    pub fn finish(
        &self,
        done: Option<Phase>,
        facts: &dyn ResponseFacts,
        line: &str,
        holes: &Holes,
        out: &mut String,
    ) {
        let mut copied = 0;
        for (index, hole) in self.holes.iter().enumerate() {
            if done.is_some_and(|done| hole.phase <= done) {
                continue;
            }
            let at = holes.get(index).clamp(copied, line.len());
            // Holes are at the ends of values pushed whole, so these are whole text.
            out.push_str(line.get(copied..at).unwrap_or_default());
            copied = at;
            self.render_late(hole, facts, out);
        }
        out.push_str(line.get(copied..).unwrap_or_default());
    }

    /// Appends a response variable's value, escaped.
    fn render_late(&self, hole: &Hole, facts: &dyn ResponseFacts, out: &mut String) {
        let start = out.len();
        facts.render(&hole.late, out);
        if hole.safe {
            dash_if_empty(self.escape, out, start, hole.empty_is_value);
        } else {
            settle(self.escape, out, start, hole.empty_is_value);
        }
    }
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
