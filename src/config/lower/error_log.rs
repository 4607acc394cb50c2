//! `error_log PATH|stderr [LEVEL];` at main and http level (a server or location refuses it in
//! `directives`). Paths resolve against the prefix, as nginx's do. Must not import `parse`.

use super::Lowering;
use crate::config::ast::Directive;
use crate::config::error::ErrorKind;
use crate::config::model::{ErrorLevel, ErrorLogDestination, ErrorLogTarget};

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
