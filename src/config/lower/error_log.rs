//! `error_log PATH|stderr [LEVEL];` at main, http and server level (a location refuses it in
//! `directives`). Paths resolve against the prefix, as nginx's do. Must not import `parse`.

use std::collections::HashMap;

use super::Lowering;
use crate::config::ast::Directive;
use crate::config::error::ErrorKind;
use crate::config::model::{ErrorLevel, ErrorLogDestination, ErrorLogTarget, Server};

impl Lowering {
    /// Lowers one `error_log`; None (with the error recorded) when it is malformed.
    pub(super) fn error_log(&mut self, d: &Directive) -> Option<ErrorLogTarget> {
        let where_to = &d.args[0];
        let destination = match where_to.text.as_str() {
            "stderr" => ErrorLogDestination::Stderr,
            text if text.starts_with("syslog:") || text.starts_with("memory:") => {
                let prefix = text.split(':').next().unwrap_or(text);
                let kind = ErrorKind::ValueNotSupported {
                    directive: d.name().to_string(),
                    value: format!("{prefix}:"),
                };
                self.error(&where_to.span, kind);
                return None;
            }
            path => ErrorLogDestination::File(self.prefix.join(path)),
        };
        let level = match d.args.get(1) {
            None => ErrorLevel::Error,
            Some(word) => {
                let Some(level) = ErrorLevel::from_name(&word.text) else {
                    let kind = ErrorKind::InvalidValue {
                        directive: d.name().to_string(),
                        value: word.text.clone(),
                    };
                    self.error(&word.span, kind);
                    return None;
                };
                level
            }
        };
        Some(ErrorLogTarget {
            destination,
            level,
            span: d.span.clone(),
        })
    }
}

impl Lowering {
    /// A server's events are routed by its first `server_name` (the `server` of every line),
    /// so servers that share one must share their `error_log`s too.
    pub(super) fn check_server_error_logs(&mut self, servers: &[Server]) {
        let written = |server: &Server| -> Vec<(ErrorLogDestination, ErrorLevel)> {
            let targets = server.error_log.iter();
            targets.map(|t| (t.destination.clone(), t.level)).collect()
        };
        let mut first_by_name: HashMap<String, &Server> = HashMap::new();
        for server in servers {
            let name = server.first_name();
            match first_by_name.get(&name) {
                None => {
                    first_by_name.insert(name, server);
                }
                Some(first) if written(first) != written(server) => {
                    self.error(&server.span, ErrorKind::ErrorLogNameClash { name });
                }
                Some(_) => {}
            }
        }
    }
}
