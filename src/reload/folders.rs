//! The file watch: notify (inotify) watches on the folders an [`Interest`] names, and only the
//! events it wants passed on. The filter runs on notify's own thread, so a busy log beside the
//! config costs a set lookup per event and never wakes the reload loop.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::interest::Interest;
use super::sources::Sources;

/// Watches the folders of some [`Sources`], sending `()` for each relevant event.
pub(super) struct FileWatch {
    watcher: Option<RecommendedWatcher>,
    /// Shared with the watcher's callback, which filters with it.
    interest: Arc<Mutex<Interest>>,
    /// Folders watched now.
    watched: BTreeSet<PathBuf>,
}

impl FileWatch {
    /// A watch on nothing yet; [`FileWatch::follow`] says what to watch. Events go to `events`,
    /// a channel of one: an event already waiting there says all the next one would.
    pub fn new(events: mpsc::Sender<()>) -> FileWatch {
        let interest = Arc::new(Mutex::new(Interest::default()));
        let filter = interest.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let relevant = match event {
                // Reading a file is no change, and our own reads (the content check, the
                // reload) must not wake us up again: inotify reports opens and closes too.
                Ok(event) if event.kind.is_access() => false,
                // Events were lost (the kernel's queue overflowed): look, to be safe.
                Ok(event) if event.need_rescan() => true,
                Ok(event) => {
                    let interest = filter.lock().unwrap_or_else(|poison| poison.into_inner());
                    event.paths.iter().any(|path| interest.wants(path))
                }
                // The watch failed somehow: look too; the content check decides.
                Err(_) => true,
            };
            if relevant {
                let _ = events.try_send(());
            }
        });
        let watcher = match watcher {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::warn!(%error, "cannot watch config files; reload with SIGHUP");
                None
            }
        };
        FileWatch {
            watcher,
            interest,
            watched: BTreeSet::new(),
        }
    }

    /// Watches what `sources` need now — symlinks may point elsewhere, pattern folders may
    /// have appeared — and stops watching folders no longer needed.
    pub fn follow(&mut self, sources: &Sources) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        let interest = Interest::of(sources);
        let wanted = interest.folders().clone();
        // The filter first, so that the events of new watches are judged by it.
        *self
            .interest
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = interest;
        for folder in self.watched.difference(&wanted) {
            let _ = watcher.unwatch(folder);
        }
        let mut watched = BTreeSet::new();
        // Folders watched already are watched again: one deleted and created anew since (a
        // `conf.d` replaced whole) lost its watch with its inode, and adding one is cheap.
        for folder in wanted {
            match watcher.watch(&folder, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    watched.insert(folder);
                }
                Err(error) => {
                    tracing::warn!(folder = %folder.display(), %error, "cannot watch config folder")
                }
            }
        }
        self.watched = watched;
    }
}
