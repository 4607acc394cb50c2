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

    /// The span of a byte offset into [`SourceFile::text`]. Counts the characters from the
    /// line's start: for many offsets in order use a [`Locator`], which counts each once.
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

/// Spans for offsets met in increasing order, in time linear in the text overall.
///
/// [`SourceFile::span_at`] for every word of a file would count the characters before each word
/// on its line again: quadratic for a long line (a megabyte of short words on one line took
/// seconds). The locator remembers where it was and counts only from there.
#[derive(Debug)]
pub struct Locator<'a> {
    file: &'a SourceFile,
    /// The last offset asked for, its line (1-based) and column.
    offset: usize,
    line: usize,
    col: usize,
}

impl<'a> Locator<'a> {
    /// A locator at the start of `file`.
    pub fn new(file: &'a SourceFile) -> Locator<'a> {
        Locator {
            file,
            offset: 0,
            line: 1,
            col: 1,
        }
    }

    /// The span of `offset`; an offset before the last one asked for is looked up from its
    /// line's start instead.
    pub fn span_at(&mut self, offset: usize) -> Span {
        let offset = offset.min(self.file.text.len());
        if offset < self.offset {
            return self.file.span_at(offset);
        }
        let starts = &self.file.line_starts;
        let line = starts.partition_point(|&start| start <= offset);
        let (from, col) = if line == self.line {
            (self.offset, self.col)
        } else {
            (starts[line - 1], 1)
        };
        self.offset = offset;
        self.line = line;
        self.col = col + self.file.text[from..offset].chars().count();
        Span {
            file: self.file.path.clone(),
            line: line as u32,
            col: self.col as u32,
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

    #[test]
    fn a_locator_agrees_with_span_at_in_any_order() {
        let file = SourceFile::new("t.conf", "ab\ncd\n\nxé z\n".to_string());
        let offsets = [0, 1, 4, 4, 7, 8, 11, 13, 3, 0, 13];
        let mut locator = Locator::new(&file);
        for offset in offsets {
            assert_eq!(locator.span_at(offset), file.span_at(offset), "{offset}");
        }
    }
}
