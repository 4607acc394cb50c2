//! Live reconfiguration: a change of the config file or of any file it includes (watched by
//! directory, so an editor's write-then-rename, `cp` over the file and a Kubernetes ConfigMap's
//! `..data` symlink swap are all seen), or SIGHUP, loads the config again and hands it to
//! [`Tether::apply`], which swaps it in whole or not at all. Bursts of file events are
//! debounced into one reload, and a reload runs only when some file's content really changed.
//!
//! Every reload is logged with its generation, what changed and how long it took; a failed one
//! with every error, file:line:col, while the old config keeps serving. Never touches sockets
//! itself: binding is `Tether::apply`'s job.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, watch};

use crate::config::{self, Config};
use crate::server::{Applied, StartError, Tether, blocking};

/// How long the files must stay quiet before a burst of events becomes one reload.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Why a reload did not take effect.
#[derive(Debug)]
pub enum ReloadError {
    /// The new config is invalid, or a new `listen` address could not be bound.
    Rejected(StartError),
    /// The file could not even be loaded (syntax, includes).
    Load(config::ConfigErrors),
    /// Loading the file panicked (a bug; the message says where).
    Panicked(blocking::Panic),
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::Rejected(error) => error.fmt(f),
            ReloadError::Load(errors) => errors.fmt(f),
            ReloadError::Panicked(panic) => write!(f, "loading the configuration {panic}"),
        }
    }
}

/// Loads the config at `path` again and applies it, logging the outcome.
pub async fn reload(tether: &Tether, path: &Path, prefix: &Path) -> Result<Applied, ReloadError> {
    let (path, prefix) = (path.to_path_buf(), prefix.to_path_buf());
    reload_with(tether, move || config::load(&path, &prefix)).await
}

/// [`reload`] with the loading given: it runs off the async threads (it reads files).
async fn reload_with(
    tether: &Tether,
    load: impl FnOnce() -> Result<Config, config::ConfigErrors> + Send + 'static,
) -> Result<Applied, ReloadError> {
    let outcome = match blocking::run(load).await {
        Ok(Ok(config)) => tether.apply(&config).await.map_err(ReloadError::Rejected),
        Ok(Err(errors)) => Err(ReloadError::Load(errors)),
        Err(panic) => Err(ReloadError::Panicked(panic)),
    };
    match &outcome {
        Ok(applied) => tracing::info!(
            generation = applied.new.generation,
            elapsed_ms = format!("{:.1}", applied.elapsed.as_secs_f64() * 1000.0),
            "reload applied: {}",
            Changes(applied)
        ),
        Err(error) => {
            tracing::error!("reload failed, the running config stays in force:\n{error}")
        }
    }
    outcome
}

/// Reloads on SIGHUP and on changes of the config's files until `stop` turns true.
/// `hangups` should be registered before the pid file is written, so that a `tether -s reload`
/// right after start cannot meet SIGHUP's default action (exit); [`hangups`] makes one.
pub async fn watch(
    tether: Arc<Tether>,
    config: &Config,
    prefix: PathBuf,
    mut hangups: Option<Signal>,
    mut stop: watch::Receiver<bool>,
) {
    let path = config.main_file.clone();
    let (events, mut changed) = mpsc::unbounded_channel();
    let mut files = FileWatch::new(events);
    files.follow(&config.files);
    let mut fingerprint = Fingerprint::of(&config.files);
    loop {
        let forced = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            Some(()) = changed.recv() => false,
            Some(()) = async { match hangups.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        if !forced {
            // Let the burst settle: editors and `kubectl` write several events per change.
            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, changed.recv()).await {}
            let now = Fingerprint::of(&fingerprint.files());
            if now == fingerprint {
                continue;
            }
        }
        if let Ok(applied) = reload(&tether, &path, &prefix).await {
            fingerprint = Fingerprint::of(&applied.new.files);
        } else {
            // Watch what we have: fixing the broken file triggers the next attempt.
            fingerprint = Fingerprint::of(&fingerprint.files());
        }
        files.follow(&fingerprint.files());
    }
}

/// Starts catching SIGHUP (None, with a warning, where that is impossible).
pub fn hangups() -> Option<Signal> {
    match signal(SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP");
            None
        }
    }
}

/// The directories of the config's files, watched for any change.
struct FileWatch {
    watcher: Option<RecommendedWatcher>,
    watched: BTreeSet<PathBuf>,
}

impl FileWatch {
    fn new(events: mpsc::UnboundedSender<()>) -> FileWatch {
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Reading a file is no change, and our own reads (the content check, the reload)
            // must not wake us up again: inotify reports opens and closes too.
            if event.is_ok_and(|event| !event.kind.is_access()) {
                let _ = events.send(());
            }
        });
        match watcher {
            Ok(watcher) => FileWatch {
                watcher: Some(watcher),
                watched: BTreeSet::new(),
            },
            Err(error) => {
                tracing::warn!(%error, "cannot watch config files; reload with SIGHUP");
                FileWatch {
                    watcher: None,
                    watched: BTreeSet::new(),
                }
            }
        }
    }

    /// Watches the folders holding `files` (folders, not the files: a rename or a symlink
    /// swap replaces the file's inode, and a watch on the old inode would go deaf).
    fn follow(&mut self, files: &[PathBuf]) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        let wanted: BTreeSet<PathBuf> = files
            .iter()
            .map(|file| match file.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => PathBuf::from("."),
            })
            .collect();
        for dir in self.watched.difference(&wanted) {
            let _ = watcher.unwatch(dir);
        }
        for dir in wanted.difference(&self.watched) {
            if let Err(error) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), %error, "cannot watch config folder");
            }
        }
        self.watched = wanted;
    }
}

/// The contents of the config's files, to tell a real change from an unrelated event.
#[derive(PartialEq, Eq)]
struct Fingerprint(Vec<(PathBuf, Option<Vec<u8>>)>);

impl Fingerprint {
    fn of(files: &[PathBuf]) -> Fingerprint {
        Fingerprint(
            files
                .iter()
                .map(|file| (file.clone(), std::fs::read(file).ok()))
                .collect(),
        )
    }

    fn files(&self) -> Vec<PathBuf> {
        self.0.iter().map(|(file, _)| file.clone()).collect()
    }
}

/// What a reload changed, for the log line.
struct Changes<'a>(&'a Applied);

impl fmt::Display for Changes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (old, new) = (&self.0.old, &self.0.new);
        let mut parts = Vec::new();
        for upstream in new.upstreams() {
            let group = &upstream.group;
            let Some(before) = old.upstream(&group.name) else {
                parts.push(format!("upstream {} added", group.name));
                continue;
            };
            let before = &before.group;
            let find = |members: &[crate::upstream::Member], address: &str| {
                members
                    .iter()
                    .find(|m| &*m.peer.key.address == address)
                    .map(|m| m.spec.clone())
            };
            for member in group.members() {
                match find(before.members(), &member.peer.key.address) {
                    None => parts.push(format!("{}: +{}", group.name, member.peer.key.address)),
                    Some(spec) if spec != member.spec => {
                        parts.push(format!("{}: ~{}", group.name, member.peer.key.address))
                    }
                    Some(_) => {}
                }
            }
            for member in before.members() {
                if find(group.members(), &member.peer.key.address).is_none() {
                    parts.push(format!("{}: -{}", group.name, member.peer.key.address));
                }
            }
        }
        for upstream in old.upstreams() {
            if new.upstream(&upstream.group.name).is_none() {
                parts.push(format!("upstream {} removed", upstream.group.name));
            }
        }
        parts.extend(
            self.0
                .listeners_added
                .iter()
                .map(|a| format!("listen +{a}")),
        );
        parts.extend(
            self.0
                .listeners_removed
                .iter()
                .map(|a| format!("listen -{a}")),
        );
        if parts.is_empty() {
            f.write_str("no server or listener changed")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::Path;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A config answering `200 ok` on `listen`.
    fn serving(listen: SocketAddr) -> Config {
        let text = format!(
            "events {{}} http {{ server {{ listen {listen}; location / {{ return 200 ok; }} }} }}"
        );
        config::load_str(Path::new("test.conf"), &text, Path::new("."))
            .expect("the test config loads")
    }

    /// The whole answer to a `GET /` over HTTP/1.0.
    async fn answer(addr: SocketAddr) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET / HTTP/1.0\r\n\r\n")
            .await
            .expect("send");
        let mut answer = String::new();
        let read = stream.read_to_string(&mut answer);
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("an answer within 5 s")
            .expect("read");
        answer
    }

    #[tokio::test]
    async fn a_reload_whose_loading_panics_is_an_error_and_the_old_config_stays() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let tether = Tether::start_with_listeners(&serving(addr), vec![(addr, listener)])
            .await
            .expect("tether starts");

        let outcome = reload_with(&tether, || panic!("the parser tripped over itself")).await;
        let Err(error) = outcome else {
            panic!("a panicking load was applied");
        };
        assert!(
            error.to_string().contains("the parser tripped over itself"),
            "the panic message is in the error: {error}"
        );
        assert_eq!(tether.shared().snapshot.load().generation, 1);
        assert!(answer(addr).await.starts_with("HTTP/1.0 200"));

        // And the next good load is applied as usual.
        let applied = reload_with(&tether, move || Ok(serving(addr)))
            .await
            .expect("a good config applies");
        assert_eq!(applied.new.generation, 2);
        tether.stop().await;
    }
}
