//! Which file events concern the config, and which folders to watch to see them.
//!
//! Folders are watched, not files: an editor's save renames a new file over the old one and a
//! Kubernetes ConfigMap update renames a `..data_tmp` symlink over `..data`, and a watch on the
//! old inode would go deaf. A folder also holds files that are none of our business — a log
//! appended every few milliseconds, an editor's `.tether.conf.swp`, `4913` and `tether.conf~` —
//! and their events must not hold a reload back or cost a look at the config. So an event
//! counts only if it names a path a config file resolves through (the path itself, every
//! symlink on the way, the file at the end: the ConfigMap's events name `..data`, never
//! `tether.conf`), or a path an include pattern matches (a new file of the config), or a folder
//! level of such a pattern (a new `conf.d`).
//!
//! std + glob only: paths in, paths out.

use std::collections::{BTreeSet, VecDeque};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use super::sources::Sources;
use crate::config::parse::INCLUDE_GLOB;

/// Symlinks followed for one file before giving up (Linux's own limit for a path lookup).
const MAX_LINKS: usize = 40;

/// The paths and patterns that make an event relevant, and the folders to watch for them.
#[derive(Debug, Default)]
pub(super) struct Interest {
    /// Every path a config file resolves through, absolute.
    paths: BTreeSet<PathBuf>,
    /// Include patterns, and those of their folder levels that may still appear or change.
    patterns: Vec<glob::Pattern>,
    /// Where the events of all of these are reported.
    folders: BTreeSet<PathBuf>,
}

impl Interest {
    /// What to watch for `sources`, as the file system is now.
    pub fn of(sources: &Sources) -> Interest {
        let mut interest = Interest::default();
        for file in &sources.files {
            for hop in hops(file) {
                if let Some(folder) = hop.parent() {
                    interest.folders.insert(folder.to_path_buf());
                }
                interest.paths.insert(hop);
            }
        }
        for pattern in &sources.globs {
            interest.add_glob(pattern);
        }
        interest
    }

    /// Whether an event on `path` (absolute, as the watcher reports it) concerns the config.
    pub fn wants(&self, path: &Path) -> bool {
        // As `include` matches: `*` stops at `/` and skips dot files.
        self.paths.contains(path)
            || self
                .patterns
                .iter()
                .any(|pattern| pattern.matches_path_with(path, INCLUDE_GLOB))
    }

    /// The folders to watch.
    pub fn folders(&self) -> &BTreeSet<PathBuf> {
        &self.folders
    }

    /// A pattern's own matches count, and so does each folder level above them up to the first
    /// that exists without wildcards, which is watched: for `/etc/tether/conf.d/*.conf`, a new
    /// `/etc/tether/conf.d` counts while it is missing; for `/srv/sites-*/*.conf`, every
    /// `sites-*` folder is watched and a new one counts.
    fn add_glob(&mut self, pattern: &glob::Pattern) {
        self.patterns.push(pattern.clone());
        for level in Path::new(pattern.as_str()).ancestors().skip(1) {
            let text = level.to_string_lossy();
            if let Some(folder) = literal(&text).map(PathBuf::from)
                && folder.is_dir()
            {
                self.folders.insert(folder);
                return;
            }
            if let Ok(matches) = glob::glob(&text) {
                self.folders
                    .extend(matches.flatten().filter(|path| path.is_dir()));
            }
            if let Ok(level) = glob::Pattern::new(&text) {
                self.patterns.push(level);
            }
        }
    }
}

/// Every path `file` resolves through, absolute: the path as given, each symlink met on the
/// way (in any component: `tether.conf -> ..data/tether.conf`, then `..data -> ..2026_01`), and
/// the file at the end. Resolved component by component, so a `..` after a symlink means what
/// the kernel makes of it; at most [`MAX_LINKS`] symlinks are followed.
fn hops(file: &Path) -> Vec<PathBuf> {
    let Ok(file) = std::path::absolute(file) else {
        return vec![file.to_path_buf()];
    };
    let mut hops = vec![file.clone()];
    // `resolved` holds no symlink: popping it for `..` is what the kernel would do.
    let mut resolved = PathBuf::from("/");
    let mut rest: VecDeque<Step> = steps(&file).collect();
    let mut links = 0;
    while let Some(step) = rest.pop_front() {
        let name = match step {
            Step::Up => {
                resolved.pop();
                continue;
            }
            Step::Name(name) => name,
        };
        let path = resolved.join(&name);
        match std::fs::read_link(&path) {
            Ok(target) if links < MAX_LINKS => {
                links += 1;
                if target.is_absolute() {
                    resolved = PathBuf::from("/");
                }
                for step in steps(&target).rev() {
                    rest.push_front(step);
                }
                hops.push(path);
            }
            // Not a symlink (or missing, or one too many): a plain component.
            _ => resolved = path,
        }
    }
    hops.push(resolved);
    hops.dedup();
    hops
}

/// One component of a path to resolve.
enum Step {
    Name(OsString),
    Up,
}

fn steps(path: &Path) -> impl DoubleEndedIterator<Item = Step> + '_ {
    path.components().filter_map(|component| match component {
        Component::Normal(name) => Some(Step::Name(name.to_os_string())),
        Component::ParentDir => Some(Step::Up),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

/// The path a pattern names if it has no wildcard, its escapes (`[*]`, `[?]`, `[[]`, `[]]`, as
/// `glob::Pattern::escape` writes them) undone; None if it has wildcards.
fn literal(pattern: &str) -> Option<String> {
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        if let Some(escaped) = ["[*]", "[?]", "[[]", "[]]"]
            .iter()
            .find(|escape| rest.starts_with(**escape))
        {
            out.push_str(&escaped[1..2]);
            rest = &rest[3..];
            continue;
        }
        if matches!(c, '*' | '?' | '[') {
            return None;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Some(out)
}

#[cfg(test)]
#[path = "interest_tests.rs"]
mod tests;
