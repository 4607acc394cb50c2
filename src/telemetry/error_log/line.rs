//! One event as one line of nginx's error-log format:
//!
//! ```text
//! 2026/12/06 04:20:38 [error] 1234#1240: *5 no live upstreams while connecting to upstream, client: 10.1.2.3, server: example.com, request: "GET /hub HTTP/1.1", upstream: "http://hub/hub", host: "example.com"
//! ```
//!
//! local time, `[level]`, pid#thread id, `*N ` when the event names its client `connection`,
//! the message, then every other field as `, key: value` in the order the event wrote them —
//! `request`, `upstream`, `host` and `referrer` quoted as nginx quotes them. Control bytes
//! (newlines, ESC) are written as `\xNN`, so an event is always one line and nothing a client
//! sent can colour a terminal or forge a line. Imports std, tracing and libc (local time, the
//! thread id).

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level};

/// Fields nginx writes in quotes.
const QUOTED: [&str; 4] = ["request", "upstream", "host", "referrer"];

/// Appends the line for `event` (with its `\n`) to `out`.
pub fn render(out: &mut String, event: &Event<'_>) {
    let mut fields = Fields::default();
    event.record(&mut fields);
    push_time(out);
    let _ = write!(
        out,
        " [{}] {}#{}: ",
        level_name(event.metadata().level()),
        std::process::id(),
        thread_id()
    );
    if let Some(connection) = fields.connection {
        let _ = write!(out, "*{connection} ");
    }
    out.push_str(&fields.message);
    out.push_str(&fields.tail);
    out.push('\n');
}

/// nginx's name for a tracing level (tracing's `TRACE` is finer than nginx's `debug`).
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG | Level::TRACE => "debug",
    }
}

/// An event's fields, as they will be written.
#[derive(Default)]
struct Fields {
    message: String,
    connection: Option<u64>,
    /// `, key: value` for every other field.
    tail: String,
    scratch: String,
}

impl Fields {
    fn push(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => push_escaped(&mut self.message, value),
            name => {
                let quoted = QUOTED.contains(&name);
                let _ = write!(self.tail, ", {name}: ");
                if quoted {
                    self.tail.push('"');
                }
                push_escaped(&mut self.tail, value);
                if quoted {
                    self.tail.push('"');
                }
            }
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "connection" {
            self.connection = Some(value);
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // An error reads as its message, not its Debug structure.
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let _ = write!(scratch, "{value:?}");
        self.push(field, &scratch);
        self.scratch = scratch;
    }
}

/// Appends `text` with control characters as `\xNN`.
fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        if c.is_ascii_control() {
            let _ = write!(out, "\\x{:02X}", c as u32);
        } else {
            out.push(c);
        }
    }
}

/// Local time as nginx writes it: `2026/12/06 04:20:38`.
fn push_time(out: &mut String) {
    // SAFETY: time(2) with a null pointer only returns; localtime_r writes the `tm` it is
    // given (zeroed, a valid value for the plain-data struct) and nothing else.
    let tm = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        tm
    };
    let _ = write!(
        out,
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    );
}

fn thread_id() -> i32 {
    // SAFETY: gettid(2) has no preconditions.
    unsafe { libc::gettid() }
}
