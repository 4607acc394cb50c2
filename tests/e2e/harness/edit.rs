//! Editing a config file the ways operators do: an editor's save (a new file renamed over),
//! `cp` over the file (same inode), a Kubernetes ConfigMap's `..data` symlink swap; and counting
//! how often a file is opened, to tell whether tether read it again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Saves `text` as an editor does: writes `PATH.tmp`, then renames it over `path` (the file's
/// inode changes, so only a watch on the folder sees it).
pub fn save_like_editor(path: &Path, text: &str) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text).expect("write the temporary file");
    std::fs::rename(&tmp, path).expect("rename it over the config");
}

/// Writes `text` as `cp` does: opens the existing file, truncates it, writes (same inode).
pub fn copy_over(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write over the config");
}

/// A folder laid out as Kubernetes mounts a ConfigMap: `..2026_01/tether.conf`,
/// `..data -> ..2026_01`, `tether.conf -> ..data/tether.conf`.
pub struct ConfigMap {
    dir: PathBuf,
    version: u32,
}

impl ConfigMap {
    /// Lays out version 1 with `text` in `dir`; the config's path is [`ConfigMap::path`].
    pub fn create(dir: &Path, text: &str) -> ConfigMap {
        let map = ConfigMap {
            dir: dir.to_path_buf(),
            version: 1,
        };
        map.write_version(text);
        std::os::unix::fs::symlink(map.version_dir(), dir.join("..data")).expect("..data link");
        std::os::unix::fs::symlink("..data/tether.conf", map.path()).expect("tether.conf link");
        map
    }

    /// `tether.conf`, the symlink tether is started with.
    pub fn path(&self) -> PathBuf {
        self.dir.join("tether.conf")
    }

    /// What the kubelet does on an update: writes the new version in a folder of its own,
    /// points `..data_tmp` at it and renames that over `..data` (one atomic swap).
    pub fn update(&mut self, text: &str) {
        self.version += 1;
        self.write_version(text);
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(self.version_dir(), &tmp).expect("..data_tmp link");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
    }

    fn version_dir(&self) -> String {
        format!("..2026_{:02}", self.version)
    }

    fn write_version(&self, text: &str) {
        let dir = self.dir.join(self.version_dir());
        std::fs::create_dir(&dir).expect("version folder");
        std::fs::write(dir.join("tether.conf"), text).expect("versioned config");
    }
}

/// Counts how often `file` is opened (by anyone), from an inotify watch on its folder.
pub struct OpenCounter {
    opens: Arc<AtomicUsize>,
    _watcher: notify::RecommendedWatcher,
}

impl OpenCounter {
    /// Starts counting; opens before this call are not counted.
    pub fn start(file: &Path) -> OpenCounter {
        use notify::Watcher;
        let opens = Arc::new(AtomicUsize::new(0));
        let counted = opens.clone();
        let target = file.to_path_buf();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event
                    && matches!(
                        event.kind,
                        notify::EventKind::Access(notify::event::AccessKind::Open(_))
                    )
                    && event.paths.contains(&target)
                {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            })
            .expect("an inotify watcher");
        let dir = file.parent().expect("the file is in a folder");
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .expect("watch the folder");
        OpenCounter {
            opens,
            _watcher: watcher,
        }
    }

    /// Opens seen so far.
    pub fn opens(&self) -> usize {
        self.opens.load(Ordering::SeqCst)
    }
}
