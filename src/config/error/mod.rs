//! Config errors, rendered like nginx's plus a column and a hint:
//! `unknown directive "proxy_pas" in conf/tether.conf:12:5 (did you mean "proxy_pass"?)`.
//!
//! Owns [`ConfigError`] (a kind and where) and [`ConfigErrors`]; `kind` holds [`ErrorKind`],
//! each variant with its message, and `shown` the shortening of user text in messages. One
//! variant per kind of problem, with structured fields, so callers and tests match on meaning
//! rather than on text. Must not import anything from `config` but `source`.

mod kind;
mod shown;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use kind::{ErrorKind, Expecting, TlsFileRole};

use super::source::Span;

/// One problem in a config, with where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Where; `None` for whole-file problems (e.g. the main file cannot be read).
    pub span: Option<Span>,
    /// What.
    pub kind: ErrorKind,
}

impl ConfigError {
    /// An error at a place in a file.
    pub fn at(span: &Span, kind: ErrorKind) -> ConfigError {
        ConfigError {
            span: Some(span.clone()),
            kind,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(span) = &self.span {
            write!(f, " in {span}")?;
        }
        if let Some(hint) = self.kind.hint() {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// Every error found in one config (lowering reports them all, not just the first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Sorts the errors by where they were written: `files` ranks the files (the main file
    /// first, then includes as read), then line and column. Errors without a place come first.
    pub fn sort_in_file_order(&mut self, files: &[PathBuf]) {
        let ranks: HashMap<&Path, usize> = files
            .iter()
            .enumerate()
            .map(|(rank, file)| (file.as_path(), rank + 1))
            .collect();
        let file_rank = |error: &ConfigError| match &error.span {
            None => (0, 0, 0),
            Some(span) => {
                let rank = ranks.get(&*span.file).copied();
                (rank.unwrap_or(usize::MAX), span.line, span.col)
            }
        };
        // Stable: errors at one place keep the order they were found in.
        self.0.sort_by_key(file_rank);
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::source::SourceFile;

    #[test]
    fn renders_location_then_hint() {
        let file = SourceFile::new("conf/tether.conf", "a\n".repeat(11) + "    proxy_pas x;");
        let error = ConfigError::at(
            &file.span_at(26),
            ErrorKind::UnknownDirective {
                name: "proxy_pas".into(),
                suggestion: Some("proxy_pass".into()),
            },
        );
        assert_eq!(
            error.to_string(),
            "unknown directive \"proxy_pas\" in conf/tether.conf:12:5 (did you mean \"proxy_pass\"?)"
        );
    }

    #[test]
    fn whole_file_errors_have_no_location() {
        let error = ConfigError {
            span: None,
            kind: ErrorKind::OpenFailed {
                path: "x.conf".into(),
                reason: "No such file or directory".into(),
            },
        };
        assert_eq!(
            error.to_string(),
            "open() \"x.conf\" failed (No such file or directory)"
        );
    }
}
