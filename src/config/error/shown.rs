//! How text the user wrote appears in an error message: shortened. A config may hold a
//! megabyte-long word, and a message that repeats it whole would bury the message (and the
//! log); the place (`file:line:col`) says where the whole text is. `kind`'s messages call these
//! from their `#[error(...)]` attributes. Must not import anything but std.

use std::fmt;
use std::path::Path;

/// How many characters of a word the user wrote an error message shows.
const SHOWN_CHARS: usize = 60;

/// How many characters of a path an error message shows: real paths are longer than words,
/// and a path is only ever as long as an `include` pattern (bounded by the OS's `PATH_MAX`).
const SHOWN_PATH_CHARS: usize = 512;

/// A piece of user text as an error message shows it: its first characters, then `...` if
/// there was more.
pub(super) struct Shown<'a> {
    text: &'a str,
    limit: usize,
}

/// `text` shortened to [`SHOWN_CHARS`] characters.
pub(super) fn shown(text: &str) -> Shown<'_> {
    Shown {
        text,
        limit: SHOWN_CHARS,
    }
}

/// A path, shortened to [`SHOWN_PATH_CHARS`] characters.
pub(super) fn shown_path(path: &Path) -> impl fmt::Display + '_ {
    PathShown(path)
}

/// A map cycle as `$a -> $b -> $a`, each name shortened.
pub(super) fn shown_cycle(cycle: &[String]) -> String {
    cycle
        .iter()
        .map(|v| format!("${}", shown(v)))
        .collect::<Vec<_>>()
        .join(" -> ")
}

struct PathShown<'a>(&'a Path);

impl fmt::Display for PathShown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string_lossy();
        let shown = Shown {
            text: &text,
            limit: SHOWN_PATH_CHARS,
        };
        write!(f, "{shown}")
    }
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text.char_indices().nth(self.limit) {
            Some((end, _)) => write!(f, "{}...", &self.text[..end]),
            None => f.write_str(self.text),
        }
    }
}
