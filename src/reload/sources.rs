//! What a config is made of, as the reload watcher sees it: the files it was read from and the
//! include patterns that may match more files later — and a fingerprint of their contents, to
//! tell a real change from an event that changed nothing.
//!
//! std + glob only; the watching itself is `folders`'s.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::Config;

/// The files a config depends on and the patterns that may add more.
#[derive(Clone, Debug, Default)]
pub(super) struct Sources {
    /// Files whose change is a change of the config (as the config names them).
    pub files: Vec<PathBuf>,
    /// Absolute `include` patterns: a new file matching one is a change too.
    pub globs: Vec<glob::Pattern>,
}

impl Sources {
    /// What `config` was read from, and the certificate files it names: a renewed
    /// certificate (certbot's symlink swap, a Secret's `..data` swap, `cp` over the file) is
    /// a change of the config, and the reload it sets off hands new handshakes the new one.
    pub fn of(config: &Config) -> Sources {
        let mut files = config.files.clone();
        for file in config.certificate_files() {
            if !files.contains(&file) {
                files.push(file);
            }
        }
        Sources {
            files,
            globs: config.include_globs.clone(),
        }
    }
}

/// The content of every file of some [`Sources`] (and of every file its patterns match now),
/// by path; `None` for a file that cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Fingerprint(BTreeMap<PathBuf, Option<Vec<u8>>>);

impl Fingerprint {
    /// Reads them all now.
    pub fn of(sources: &Sources) -> Fingerprint {
        let matched = sources
            .globs
            .iter()
            // The same expansion as `include` does: a new match is a new file of the config.
            .filter_map(|pattern| glob::glob(pattern.as_str()).ok())
            .flat_map(|paths| paths.flatten());
        let contents = sources
            .files
            .iter()
            .cloned()
            .chain(matched)
            .map(|file| {
                let content = std::fs::read(&file).ok();
                (file, content)
            })
            .collect();
        Fingerprint(contents)
    }

    /// This fingerprint, taken after a reload, with `before`'s content for every file both
    /// know. `before` was taken before the files were loaded: a file changed while the reload
    /// ran then differs from it at the next look and is reloaded, never missed. (Taking it
    /// after the reload could record a change the reload did not see as already applied.)
    pub fn keeping(mut self, before: &Fingerprint) -> Fingerprint {
        for (file, content) in &mut self.0 {
            if let Some(earlier) = before.0.get(file) {
                content.clone_from(earlier);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn a_changed_added_or_removed_file_changes_the_fingerprint() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let main = dir.path().join("tether.conf");
        fs::write(&main, "events {}").expect("write");
        fs::create_dir(dir.path().join("conf.d")).expect("conf.d");
        let pattern = format!("{}/conf.d/*.conf", dir.path().display());
        let sources = Sources {
            files: vec![main.clone()],
            globs: vec![glob::Pattern::new(&pattern).expect("a pattern")],
        };
        let first = Fingerprint::of(&sources);
        assert_eq!(Fingerprint::of(&sources), first, "nothing changed");

        fs::write(&main, "events { }").expect("rewrite");
        let second = Fingerprint::of(&sources);
        assert_ne!(second, first, "content changed");

        let added = dir.path().join("conf.d/a.conf");
        fs::write(&added, "").expect("write a new included file");
        let third = Fingerprint::of(&sources);
        assert_ne!(third, second, "a new file matches the pattern");
        fs::write(dir.path().join("conf.d/a.conf~"), "").expect("a backup file");
        assert_eq!(
            Fingerprint::of(&sources),
            third,
            "a file the pattern misses"
        );

        fs::remove_file(&added).expect("remove it");
        assert_eq!(Fingerprint::of(&sources), second, "and gone again");
    }

    #[test]
    fn keeping_takes_the_earlier_content_of_files_both_know() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let (main, site) = (dir.path().join("main.conf"), dir.path().join("site.conf"));
        fs::write(&main, "one").expect("write");
        fs::write(&site, "site").expect("write");
        let before = Fingerprint::of(&Sources {
            files: vec![main.clone()],
            globs: Vec::new(),
        });
        // Written while the reload ran, which now also reads site.conf.
        fs::write(&main, "two").expect("rewrite");
        let sources = Sources {
            files: vec![main.clone(), site.clone()],
            globs: Vec::new(),
        };
        let kept = Fingerprint::of(&sources).keeping(&before);
        assert_ne!(
            Fingerprint::of(&sources),
            kept,
            "the late write still counts"
        );
        fs::write(&main, "one").expect("undo");
        assert_eq!(Fingerprint::of(&sources), kept);
    }
}
