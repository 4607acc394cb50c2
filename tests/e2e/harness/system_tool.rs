//! Real parts the tests compare with or put in front of tether (nginx, HAProxy): found where
//! Debian puts them, or skipped with a line on the terminal — a failure instead when CI asked
//! for them (`TETHER_REQUIRE_…`), so a machine without them cannot pass by skipping.

use std::io::Write;
use std::path::PathBuf;

/// `name` on `PATH`, else in /usr/sbin or /usr/local/sbin (Debian's place, often not on a
/// user's `PATH`).
pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// `name`'s binary for the test running on this thread, or `None` after saying on the
/// terminal that `what` is skipped; a failure instead when the variable `require` is set.
pub fn installed(name: &str, require: &str, what: &str) -> Option<PathBuf> {
    let found = find(name);
    if found.is_none() {
        let thread = std::thread::current();
        // libtest names each test's thread after the test.
        let test = thread.name().unwrap_or("a test");
        let why =
            format!("{name} not installed (no `{name}` on PATH, in /usr/sbin or /usr/local/sbin)");
        assert!(
            std::env::var_os(require).is_none(),
            "{test}: {why}, and {require} is set"
        );
        // Straight to the terminal: `eprintln!` is captured by the test runner and shown only
        // for a failing test, and a skip is a pass.
        let line = format!("SKIPPED {what} in {test}: {why}\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
    found
}
