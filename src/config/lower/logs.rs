//! `log_format` and `access_log`: checked here, compiled by `telemetry::access_log` when a
//! snapshot is built (variables are resolved there, against the config's maps). Must not import
//! other `lower` contexts.

use std::sync::Arc;

use super::Lowering;
use super::proxy::ProxyLayer;
use crate::config::ast::{Directive, Word};
use crate::config::error::ErrorKind;
use crate::config::model::{AccessLog, LogEscape, LogFormat};

impl Lowering {
    /// `log_format NAME [escape=default|json|none] STRING...;`. `earlier` are the formats
    /// lowered so far, to find duplicates.
    pub(super) fn log_format(&mut self, d: &Directive, earlier: &[LogFormat]) -> Option<LogFormat> {
        let name = &d.args[0].text;
        if name == "combined" || earlier.iter().any(|f| &f.name == name) {
            let kind = ErrorKind::DuplicateLogFormat { name: name.clone() };
            self.error(&d.args[0].span, kind);
            return None;
        }
        let mut strings = &d.args[1..];
        let mut escape = LogEscape::Default;
        if let Some(value) = strings[0].text.strip_prefix("escape=") {
            escape = match value {
                "default" => LogEscape::Default,
                "json" => LogEscape::Json,
                "none" => LogEscape::None,
                _ => {
                    self.invalid_parameter(d, &strings[0]);
                    return None;
                }
            };
            strings = &strings[1..];
            if strings.is_empty() {
                let kind = ErrorKind::InvalidArgCount {
                    name: d.name().into(),
                };
                self.error(&d.span, kind);
                return None;
            }
        }
        Some(LogFormat {
            name: name.clone(),
            escape,
            text: strings.iter().map(|word| word.text.as_str()).collect(),
            span: d.span.clone(),
        })
    }

    /// `access_log off;` or `access_log PATH [FORMAT [buffer=] [flush=] [if=]];`, added to the
    /// level's list (several per level, as nginx; `off` empties it).
    pub(super) fn access_log(&mut self, layer: &mut ProxyLayer, d: &Directive) {
        let list = layer.access_logs.get_or_insert_with(Arc::default);
        let path = &d.args[0].text;
        if path == "off" {
            if d.args.len() > 1 {
                self.invalid_parameter(d, &d.args[1]);
            }
            Arc::make_mut(list).clear();
            return;
        }
        if path.starts_with("syslog:") {
            // nginx's syslog target: not a file, and not one tether writes to.
            let kind = ErrorKind::ValueNotSupported {
                directive: d.name().into(),
                value: path.clone(),
            };
            self.error(&d.args[0].span, kind);
            return;
        }
        let format = d.args.get(1).map_or("combined", |word| word.text.as_str());
        if format != "combined" && !self.log_format_names.iter().any(|n| n == format) {
            let kind = ErrorKind::UnknownLogFormat {
                name: format.into(),
            };
            self.error(&d.args[1].span, kind);
            return;
        }
        let mut log = AccessLog {
            path: self.prefix.join(path),
            format: format.into(),
            buffer: None,
            flush: None,
            condition: None,
            span: d.span.clone(),
        };
        for word in d.args.iter().skip(2) {
            let ok = match word.text.split_once('=') {
                Some(("buffer", size)) => {
                    let size = Word {
                        text: size.into(),
                        ..word.clone()
                    };
                    let parsed = self.size(d, &size).and_then(|s| usize::try_from(s).ok());
                    log.buffer = parsed.filter(|&s| s > 0);
                    log.buffer.is_some()
                }
                Some(("flush", time)) => {
                    let time = Word {
                        text: time.into(),
                        ..word.clone()
                    };
                    log.flush = self.time(d, &time).filter(|t| !t.is_zero());
                    log.flush.is_some()
                }
                Some(("if", condition)) if !condition.is_empty() => {
                    log.condition = Some(condition.into());
                    true
                }
                _ => false,
            };
            if !ok {
                self.invalid_parameter(d, word);
                return;
            }
        }
        // The list may have been emptied by an `off` on this level: nginx then refuses the mix.
        Arc::make_mut(list).push(log);
    }
}
