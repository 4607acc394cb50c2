//! Access logs, nginx's way: `log_format` compiled once per snapshot, a line per request (and
//! per tunnel, when it ends) formatted on the request path, written off it.
//!
//! The path of one request: [`Logs::begin`] — nothing at all for a location without
//! `access_log` — renders what the request knows into the line's buffer, leaving holes for
//! what only the response knows; the proxy tells the [`Record`] about each upstream try; the
//! response heads fill their holes; the end of the response body (or its drop, or the end of a
//! tunnel) fills the rest and hands the line to the file's writer thread ([`writer`]), which
//! never makes a request wait: lines it cannot keep up with are dropped and counted.
//!
//! May use `vars`, `config` and std; must not import `proxy`, `server`, hyper or tokio.

mod buffers;
pub mod escape;
mod format;
mod holes;
mod record;
mod writer;

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{self, ConfigError, ErrorKind};
use crate::header_list::HeaderList;
use crate::vars::{RequestInfo, Template, Vars};

pub use format::Format;
use holes::Holes;
pub use record::Record;
use record::{Facts, Line, Needs};
pub use writer::{LogFile, dropped_lines, flush_all};

/// Makes every access log file be written out and opened afresh (SIGUSR1, `-s reopen`).
pub fn reopen_logs() {
    writer::reopen_all();
}

/// The `log_format`s of a config, compiled, with nginx's `combined`.
#[derive(Debug, Default)]
pub struct Formats(HashMap<String, Arc<Format>>);

impl Formats {
    /// Compiles every format; unknown variables are reported at their `log_format`.
    pub fn build(
        formats: &[config::LogFormat],
        vars: &Vars,
        errors: &mut Vec<ConfigError>,
    ) -> Formats {
        let mut compiled = HashMap::new();
        let combined = config::LogFormat::combined();
        for format in std::iter::once(&combined).chain(formats) {
            match Format::compile(format, vars) {
                Ok(done) => {
                    compiled.insert(format.name.clone(), Arc::new(done));
                }
                Err(error) => errors.push(error),
            }
        }
        Formats(compiled)
    }
}

/// One `access_log`, compiled.
#[derive(Debug)]
pub struct CompiledLog {
    format: Arc<Format>,
    file: Arc<LogFile>,
    condition: Option<Condition>,
}

/// `if=`: rendered when the request arrives when it can be, else when the line is finished.
#[derive(Debug)]
struct Condition {
    template: Template,
    /// Set when the condition reads response facts (`$status`, or a map of it): it is then
    /// evaluated at the end against these variables, where request variables read empty.
    at_end: Option<Arc<Vars>>,
}

fn holds(value: &str) -> bool {
    !value.is_empty() && value != "0"
}

impl CompiledLog {
    fn passes_at_end(&self, facts: &Facts) -> bool {
        let Some(Condition {
            template,
            at_end: Some(vars),
        }) = &self.condition
        else {
            return true;
        };
        let info = RequestInfo {
            late: Some(facts),
            ..crate::vars::empty_request()
        };
        let mut value = String::new();
        template.render(vars, &info, &mut value);
        holds(&value)
    }
}

/// The `access_log`s of one location (empty: none, or `access_log off`).
#[derive(Debug, Default)]
pub struct Logs {
    logs: Box<[Arc<CompiledLog>]>,
    /// A format shows the upstream's own head (`$upstream_http_*`), decided once here.
    reads_upstream_head: bool,
    /// A format shows a header of a response head or its size (`$sent_http_*`,
    /// `$upstream_http_*`, `$bytes_sent`), decided once here.
    reads_response_heads: bool,
}

impl Logs {
    /// Opens (or shares) each file and compiles each `if=`; errors are reported at the
    /// `access_log`.
    pub fn build(
        logs: &[config::AccessLog],
        formats: &Formats,
        vars: &Arc<Vars>,
        errors: &mut Vec<ConfigError>,
    ) -> Logs {
        let mut compiled = Vec::new();
        for log in logs {
            let Some(format) = formats.0.get(&log.format) else {
                // Its own error was reported at the log_format (or in lowering).
                continue;
            };
            let condition = match &log.condition {
                None => None,
                Some(text) => match vars.compile(text, &log.span) {
                    Ok(template) => {
                        let at_end = template.uses_late(vars).then(|| vars.clone());
                        Some(Condition { template, at_end })
                    }
                    Err(error) => {
                        errors.push(error);
                        continue;
                    }
                },
            };
            match LogFile::open(&log.path, log.buffer, log.flush) {
                Ok(file) => compiled.push(Arc::new(CompiledLog {
                    format: format.clone(),
                    file,
                    condition,
                })),
                Err(error) => errors.push(ConfigError::at(
                    &log.span,
                    ErrorKind::OpenFailed {
                        path: log.path.clone(),
                        reason: error.to_string(),
                    },
                )),
            }
        }
        let reads_upstream_head = compiled.iter().any(|log| log.format.reads_upstream_head());
        let reads_response_heads =
            (compiled.iter()).any(|log| log.format.needs_heads() || log.format.needs_sizes());
        Logs {
            logs: compiled.into(),
            reads_upstream_head,
            reads_response_heads,
        }
    }

    /// Whether the location logs nothing.
    pub fn is_empty(&self) -> bool {
        self.logs.is_empty()
    }

    /// Whether a line may show a header of the upstream's own head (`$upstream_http_*`,
    /// `$upstream_cookie_*`): the response must keep every line it sent until then.
    pub fn reads_upstream_head(&self) -> bool {
        self.reads_upstream_head
    }

    /// Whether a line may show a header of a response head, or a head's size: the response
    /// needs its header map.
    pub fn reads_response_heads(&self) -> bool {
        self.reads_response_heads
    }

    /// Starts the request's lines (None when the location logs nothing, or every `if=` that can
    /// be decided now says no).
    pub fn begin(&self, vars: &Vars, req: &RequestInfo) -> Option<Box<Record>> {
        if self.logs.is_empty() {
            return None;
        }
        let mut record = Record::recycled();
        // Heads are measured, and the clock read, only for a line that shows it.
        let mut needs = Needs::default();
        for log in self
            .logs
            .iter()
            .filter(|log| log.passes_at_start(vars, req))
        {
            needs.sizes |= log.format.needs_sizes();
            needs.times |= log.format.needs_times() || log.decides_at_end();
            let mut text = record.buffer();
            let mut holes = Holes::default();
            log.format.begin(vars, req, &mut text, &mut holes);
            record.add(Line {
                log: log.clone(),
                text,
                holes,
            });
        }
        if record.is_empty() {
            record.recycle();
            return None;
        }
        let length = if needs.sizes { request_length(req) } else { 0 };
        record.start(needs, length);
        Some(record)
    }
}

impl CompiledLog {
    /// Whether its `if=` reads response facts (and may read a time).
    fn decides_at_end(&self) -> bool {
        self.condition
            .as_ref()
            .is_some_and(|condition| condition.at_end.is_some())
    }

    fn passes_at_start(&self, vars: &Vars, req: &RequestInfo) -> bool {
        match &self.condition {
            Some(Condition {
                template,
                at_end: None,
            }) => {
                let mut value = String::new();
                template.render(vars, req, &mut value);
                holds(&value)
            }
            _ => true,
        }
    }
}

/// `$request_length` as far as the head goes: the request line and headers as a client
/// writes them (`Name: value\r\n`), plus a declared body.
fn request_length(req: &RequestInfo) -> u64 {
    let target = req.uri.path_and_query().map_or(1, |pq| pq.as_str().len());
    let mut size = req.method.as_str().len() + 1 + target + 1 + 8 + 2 + 2;
    size += header_size(req.headers);
    let body = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok())
        .unwrap_or(0);
    size as u64 + body
}

fn header_size(headers: &HeaderList) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum()
}
