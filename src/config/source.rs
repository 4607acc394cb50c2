//! Where a piece of config text came from: file, line and column.
//!
//! A [`Span`] is carried by every directive from parse to runtime, so any error — a typo found by
//! the grammar, an unknown upstream found by lowering, a host that does not resolve when the
//! snapshot is built — can point at the exact place, nginx `-t` style.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A position in a config file, printed as `path:line:col` (1-based).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    /// The file as the user named it (relative paths stay relative, so messages match what they typed).
    pub file: Arc<Path>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub col: u32,
}

impl Span {
    /// A span for a place that has no file (built-in defaults, tests).
    pub fn builtin() -> Span {
        Span {
            file: Arc::from(Path::new("<builtin>")),
            line: 0,
            col: 0,
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// One config file's text plus the byte offset of every line start, to turn offsets into spans.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as given (used in messages).
    pub path: Arc<Path>,
    /// The whole text.
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// Wraps a file's text, indexing its lines once.
    pub fn new(path: impl Into<PathBuf>, text: String) -> SourceFile {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            path: Arc::from(path.into()),
            text,
            line_starts,
        }
    }

    /// The span of a byte offset into [`SourceFile::text`].
    pub fn span_at(&self, offset: usize) -> Span {
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line.saturating_sub(1)];
        let end = offset.min(self.text.len());
        let col = self.text[line_start..end].chars().count() + 1;
        Span {
            file: self.path.clone(),
            line: line as u32,
            col: col as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_line_and_column() {
        let file = SourceFile::new("t.conf", "ab\ncd\n\nxé z".to_string());
        assert_eq!(file.span_at(0).to_string(), "t.conf:1:1");
        assert_eq!(file.span_at(4).to_string(), "t.conf:2:2");
        assert_eq!(file.span_at(7).to_string(), "t.conf:4:1");
        // Columns count characters, not bytes: 'z' follows a two-byte 'é'.
        assert_eq!(file.span_at(11).to_string(), "t.conf:4:4");
    }
}
