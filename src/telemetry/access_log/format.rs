//! A `log_format`, compiled once per snapshot: literal text, variables rendered when the
//! request arrives, and holes for what only the response knows.
//!
//! [`Format::begin`] writes a line's known parts into its buffer and notes where each hole
//! is; [`Format::fill`] renders the holes of a response head's [`Phase`] in place once their
//! facts exist (the rest of the line moves right by the value's length — a line is a few
//! hundred bytes); [`Format::finish`] writes the finished line, the end's values in their
//! places, in one pass.
//! Values are rendered straight into the line; nothing is allocated but the line buffer
//! itself (and, rarely, a value that needs escaping, or a spill of hole offsets for a format
//! with more than [`INLINE_HOLES`] response variables).

use crate::config::{self, ConfigError, LogEscape};
use crate::vars::{Late, Phase, Raw, RequestInfo, ResponseFacts, Segment, Vars};

use super::escape::{dash_if_empty, push_bytes, settle};

/// Formats with at most this many response variables keep their hole offsets inline.
pub const INLINE_HOLES: usize = 8;

/// A compiled `log_format`.
#[derive(Debug)]
pub struct Format {
    escape: LogEscape,
    segments: Box<[Segment]>,
    /// The [`Late`] segments, in order, with their position in `segments`.
    holes: Box<[Late]>,
    /// Whether some hole is filled before the end (the relay then calls `fill` early).
    needs_heads: bool,
    /// Whether a hole shows a size, for which request and response heads are measured.
    needs_sizes: bool,
    /// Whether a hole shows a duration, for which the clock is read.
    needs_times: bool,
}

/// Where the holes of one line are: byte offsets into the line, one per [`Late`] segment.
#[derive(Debug, Default)]
pub struct Holes {
    inline: [u32; INLINE_HOLES],
    spill: Vec<u32>,
}

impl Holes {
    fn set(&mut self, index: usize, at: usize) {
        let at = u32::try_from(at).unwrap_or(u32::MAX);
        match self.inline.get_mut(index) {
            Some(slot) => *slot = at,
            None => self.spill.push(at),
        }
    }

    fn get(&self, index: usize) -> usize {
        let at = match self.inline.get(index) {
            Some(&at) => at,
            None => self.spill.get(index - INLINE_HOLES).copied().unwrap_or(0),
        };
        at as usize
    }

    fn shift_after(&mut self, index: usize, by: usize, count: usize) {
        for later in index + 1..count {
            let at = self.get(later) + by;
            let at = u32::try_from(at).unwrap_or(u32::MAX);
            match self.inline.get_mut(later) {
                Some(slot) => *slot = at,
                None => {
                    if let Some(slot) = self.spill.get_mut(later - INLINE_HOLES) {
                        *slot = at;
                    }
                }
            }
        }
    }
}

impl Format {
    /// Compiles `format` against the config's variables; an unknown variable is an error at
    /// the `log_format`.
    pub fn compile(format: &config::LogFormat, vars: &Vars) -> Result<Format, ConfigError> {
        let template = vars.compile(&format.text, &format.span)?;
        let segments: Box<[Segment]> = template.segments().into();
        let holes: Box<[Late]> = segments
            .iter()
            .filter_map(|segment| match segment {
                Segment::Late(late) => Some(late.clone()),
                _ => None,
            })
            .collect();
        let needs_heads = holes.iter().any(|late| late.phase() != Phase::End);
        let needs_sizes = holes.iter().any(|late| {
            matches!(
                late,
                Late::BytesSent
                    | Late::RequestLength
                    | Late::UpstreamBytesSent
                    | Late::UpstreamBytesReceived
            )
        });
        let needs_times = holes.iter().any(|late| {
            matches!(
                late,
                Late::RequestTime
                    | Late::UpstreamResponseTime
                    | Late::UpstreamConnectTime
                    | Late::UpstreamHeaderTime
            )
        });
        Ok(Format {
            escape: format.escape,
            segments,
            holes,
            needs_heads,
            needs_sizes,
            needs_times,
        })
    }

    /// Whether a hole is filled from a response head (`$sent_http_*`, `$upstream_http_*`).
    pub fn needs_heads(&self) -> bool {
        self.needs_heads
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
        let mut hole = 0;
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => line.push_str(text),
                Segment::Early(value) => {
                    let start = line.len();
                    let empty_is_value = value.empty_is_value();
                    match value.raw(req) {
                        Raw::Safe => {
                            value.render(vars, req, line);
                            dash_if_empty(self.escape, line, start, empty_is_value);
                        }
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
                        Raw::Text => {
                            value.render(vars, req, line);
                            settle(self.escape, line, start, empty_is_value);
                        }
                    }
                }
                Segment::Late(_) => {
                    holes.set(hole, line.len());
                    hole += 1;
                }
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
        for (index, late) in self.holes.iter().enumerate() {
            let known = late.phase();
            if known > phase || done.is_some_and(|done| known <= done) {
                continue;
            }
            // Rendered at the end of the line, then turned into its place.
            let at = holes.get(index).min(line.len());
            let start = line.len();
            self.render_late(late, facts, line);
            let added = line.len() - start;
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
        for (index, late) in self.holes.iter().enumerate() {
            if done.is_some_and(|done| late.phase() <= done) {
                continue;
            }
            let at = holes.get(index).clamp(copied, line.len());
            // Holes are at the ends of values pushed whole, so these are whole text.
            out.push_str(line.get(copied..at).unwrap_or_default());
            copied = at;
            self.render_late(late, facts, out);
        }
        out.push_str(line.get(copied..).unwrap_or_default());
    }

    /// Appends a response variable's value, escaped.
    fn render_late(&self, late: &Late, facts: &dyn ResponseFacts, out: &mut String) {
        let start = out.len();
        facts.render(late, out);
        let counts = matches!(late, Late::UpstreamTries);
        if late.is_safe() {
            dash_if_empty(self.escape, out, start, counts);
        } else {
            settle(self.escape, out, start, counts);
        }
    }
}
