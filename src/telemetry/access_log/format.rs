//! A `log_format`, compiled once per snapshot: literal text, variables rendered when the
//! request arrives, and holes for what only the response knows.
//!
//! [`Format::begin`] writes a line's known parts into its buffer and notes where each hole
//! is; [`Format::fill`] renders the holes of one [`Phase`] in place once their facts exist
//! (the rest of the line moves right by the value's length — a line is a few hundred bytes).
//! Nothing is allocated but the line buffer itself, and a spill of hole offsets for a format
//! with more than [`INLINE_HOLES`] response variables.

use std::cell::RefCell;

use crate::config::{self, ConfigError, LogEscape};
use crate::vars::{Late, Phase, RequestInfo, ResponseFacts, Segment, Vars};

use super::escape::push_value;

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

thread_local! {
    /// Where one variable's value is rendered before it is escaped into a line: reused, so a
    /// line costs no allocation but its own buffer.
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
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
        Ok(Format {
            escape: format.escape,
            segments,
            holes,
            needs_heads,
        })
    }

    /// Whether a hole is filled from a response head (`$sent_http_*`, `$upstream_http_*`).
    pub fn needs_heads(&self) -> bool {
        self.needs_heads
    }

    /// Writes what the request knows into `line` and notes the holes.
    pub fn begin(&self, vars: &Vars, req: &RequestInfo, line: &mut Vec<u8>, holes: &mut Holes) {
        let mut hole = 0;
        SCRATCH.with_borrow_mut(|scratch| {
            for segment in &self.segments {
                match segment {
                    Segment::Literal(text) => line.extend_from_slice(text.as_bytes()),
                    Segment::Early {
                        template,
                        empty_is_value,
                    } => {
                        scratch.clear();
                        template.render(vars, req, scratch);
                        push_value(self.escape, scratch.as_bytes(), *empty_is_value, line);
                    }
                    Segment::Late(_) => {
                        holes.set(hole, line.len());
                        hole += 1;
                    }
                }
            }
        });
    }

    /// Renders into `line`, from `facts`, the holes known by `phase` and not filled yet
    /// (`done`: the last phase filled before).
    pub fn fill(
        &self,
        phase: Phase,
        done: Option<Phase>,
        facts: &dyn ResponseFacts,
        line: &mut Vec<u8>,
        holes: &mut Holes,
    ) {
        let count = self.holes.len();
        SCRATCH.with_borrow_mut(|scratch| {
            for (index, late) in self.holes.iter().enumerate() {
                let known = late.phase();
                if known > phase || done.is_some_and(|done| known <= done) {
                    continue;
                }
                scratch.clear();
                facts.render(late, scratch);
                let at = holes.get(index).min(line.len());
                let before = line.len();
                let counts = matches!(late, Late::UpstreamTries);
                push_value(self.escape, scratch.as_bytes(), counts, line);
                let added = line.len() - before;
                line[at..].rotate_right(added);
                holes.shift_after(index, added, count);
            }
        });
    }
}
