//! `error_log PATH|stderr [LEVEL];`: where tether's own events go, and from which level on.
//! Pure data: `telemetry::error_log` opens the files and routes the events.

use std::path::PathBuf;

use super::Span;

/// One `error_log` directive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorLogTarget {
    /// Where the lines go.
    pub destination: ErrorLogDestination,
    /// The least severe level written (nginx's default: `error`).
    pub level: ErrorLevel,
    /// Where the directive was written.
    pub span: Span,
}

/// Where an error log writes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ErrorLogDestination {
    /// `stderr`.
    Stderr,
    /// A file, resolved against the prefix, opened for appending.
    File(PathBuf),
}

/// nginx's eight error-log levels, least severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorLevel {
    /// `debug`.
    Debug,
    /// `info`.
    Info,
    /// `notice`.
    Notice,
    /// `warn`.
    Warn,
    /// `error` (the default, as nginx's).
    Error,
    /// `crit`.
    Crit,
    /// `alert`.
    Alert,
    /// `emerg`.
    Emerg,
}

impl ErrorLevel {
    /// Every level with its nginx name, least severe first.
    pub const ALL: [(ErrorLevel, &'static str); 8] = [
        (ErrorLevel::Debug, "debug"),
        (ErrorLevel::Info, "info"),
        (ErrorLevel::Notice, "notice"),
        (ErrorLevel::Warn, "warn"),
        (ErrorLevel::Error, "error"),
        (ErrorLevel::Crit, "crit"),
        (ErrorLevel::Alert, "alert"),
        (ErrorLevel::Emerg, "emerg"),
    ];

    /// The level nginx calls `name`.
    pub fn from_name(name: &str) -> Option<ErrorLevel> {
        ErrorLevel::ALL
            .iter()
            .find(|(_, known)| *known == name)
            .map(|(level, _)| *level)
    }

    /// nginx's name for the level.
    pub fn name(self) -> &'static str {
        ErrorLevel::ALL[self as usize].1
    }
}
