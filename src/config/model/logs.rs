//! Access logging as written: `log_format` (http level) and `access_log` (http, server,
//! location; resolved per location like the proxy settings). Pure data: formats stay text here,
//! `telemetry::access_log` compiles them when a snapshot is built.

use std::path::PathBuf;
use std::time::Duration;

use super::Span;

/// How variable values are escaped in a log line (`log_format NAME escape=...`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogEscape {
    /// nginx's default: `"`, `\`, bytes below 0x20 and from 0x7f up as `\xHH`.
    #[default]
    Default,
    /// JSON string escaping: `"` `\` as `\"` `\\`, control bytes as `\n` `\r` `\t` `\b` `\f`
    /// or `\u00HH`.
    Json,
    /// Values written as they are.
    None,
}

/// `log_format NAME [escape=...] STRING...;` (the strings joined).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFormat {
    /// The name `access_log` refers to.
    pub name: String,
    /// How values are escaped.
    pub escape: LogEscape,
    /// The format text, its strings joined.
    pub text: String,
    /// Where it was written.
    pub span: Span,
}

impl LogFormat {
    /// nginx's predefined `combined` format.
    pub fn combined() -> LogFormat {
        LogFormat {
            name: "combined".into(),
            escape: LogEscape::Default,
            text: "$remote_addr - $remote_user [$time_local] \"$request\" $status \
                   $body_bytes_sent \"$http_referer\" \"$http_user_agent\""
                .into(),
            span: Span::builtin(),
        }
    }
}

/// One `access_log PATH [FORMAT [buffer=SIZE] [flush=TIME] [if=CONDITION]];`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLog {
    /// The file, resolved against the prefix.
    pub path: PathBuf,
    /// The format's name (default `combined`); checked when the snapshot is built.
    pub format: String,
    /// `buffer=`: lines are written once this many bytes are waiting (None: at once).
    pub buffer: Option<usize>,
    /// `flush=`: waiting lines are written at least this often.
    pub flush: Option<Duration>,
    /// `if=`: the line is written only when this template renders neither empty nor `0`.
    pub condition: Option<String>,
    /// Where it was written.
    pub span: Span,
}
