//! Live reconfiguration: a change of the config file, of any file it includes or a new file
//! matching one of its include patterns, or SIGHUP, loads the config again and hands it to
//! [`Tether::apply`], which swaps it in whole or not at all.
//!
//! The folders of the config's files are watched and their events filtered to the config's own
//! paths (`interest`), so an editor's write-then-rename, `cp` over the file and a Kubernetes
//! ConfigMap's `..data` symlink swap are seen, and a busy log beside the config is not. Bursts
//! of events are debounced into one reload, with a maximum wait (`debounce`), and a reload runs
//! only when some file's content really changed (`sources`). SIGHUP reloads at once, even in
//! the middle of a burst.
//!
//! Every reload is logged with its generation, what changed and how long it took; a failed one
//! — an invalid config, a port in use, even a panic while loading or building — with its
//! errors, while the old config keeps serving. Never touches sockets itself: binding is
//! `Tether::apply`'s job.

mod debounce;
mod folders;
mod interest;
mod sources;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, watch};

use crate::config::{self, Config};
use crate::runtime::{Applied, StartError, Tether};
use crate::server::blocking;
use debounce::{DEBOUNCE, Trigger};
use folders::FileWatch;
use sources::{Fingerprint, Sources};

/// Why a reload did not take effect.
#[derive(Debug)]
pub enum ReloadError {
    /// The new config is invalid, a new `listen` address could not be bound, or building the
    /// snapshot panicked.
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
    let reloaded = reload_with(tether, move || config::load(&path, &prefix)).await?;
    Ok(reloaded.applied)
}

/// A reload that took effect, and the files the config in force is now made of.
struct Reloaded {
    applied: Applied,
    sources: Sources,
}

/// [`reload`] with the loading given: it runs off the async threads (it reads files), and a
/// panic in it is a failed reload like any other.
async fn reload_with(
    tether: &Tether,
    load: impl FnOnce() -> Result<Config, config::ConfigErrors> + Send + 'static,
) -> Result<Reloaded, ReloadError> {
    let outcome = match blocking::run(load).await {
        Ok(Ok(config)) => match tether.apply(&config).await {
            Ok(applied) => Ok(Reloaded {
                applied,
                sources: Sources::of(&config),
            }),
            Err(error) => Err(ReloadError::Rejected(error)),
        },
        Ok(Err(errors)) => Err(ReloadError::Load(errors)),
        Err(panic) => Err(ReloadError::Panicked(panic)),
    };
    let counted = match &outcome {
        Ok(_) => Ok(()),
        Err(error) => Err(error.to_string()),
    };
    tether.telemetry().record_reload(counted);
    match &outcome {
        Ok(Reloaded { applied, .. }) => tracing::info!(
            generation = applied.new.generation,
            elapsed_ms = format!("{:.1}", applied.elapsed.as_secs_f64() * 1000.0),
            "reload applied: {}",
            Changes(applied)
        ),
        Err(error) => {
            // One line per problem: the error log holds one event per line.
            for problem in error.to_string().lines() {
                tracing::error!("reload failed, the running config stays in force: {problem}");
            }
        }
    }
    outcome
}

/// The reload loop, armed: the config's folders are watched from the moment it is made, so a
/// change right after start is not missed; [`Watcher::run`] then serves it.
pub struct Watcher {
    path: PathBuf,
    sources: Sources,
    files: FileWatch,
    changed: mpsc::Receiver<()>,
    fingerprint: Fingerprint,
}

impl Watcher {
    /// Starts watching the files `config` was read from.
    pub fn arm(config: &Config) -> Watcher {
        let (events, changed) = mpsc::channel(1);
        let sources = Sources::of(config);
        let mut files = FileWatch::new(events);
        files.follow(&sources);
        Watcher {
            path: config.main_file.clone(),
            fingerprint: Fingerprint::of(&sources),
            sources,
            files,
            changed,
        }
    }

    /// Reloads on SIGHUP and on changes of the config's files until `stop` turns true.
    /// `hangups` should be registered before the pid file is written, so that a
    /// `tether -s reload` right after start cannot meet SIGHUP's default action (exit);
    /// [`hangups`] makes one.
    pub async fn run(
        mut self,
        tether: Arc<Tether>,
        prefix: PathBuf,
        mut hangups: Option<Signal>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let trigger = tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => return,
                trigger = DEBOUNCE.next(&mut self.changed, next_hangup(&mut hangups)) => trigger,
            };
            // Taken before loading: a file changed while the reload runs is seen changed next
            // time.
            let before = Fingerprint::of(&self.sources);
            if trigger == Trigger::Files && before == self.fingerprint {
                // Nothing of ours changed, but a pattern's folder may have appeared.
                self.files.follow(&self.sources);
                continue;
            }
            let (path, prefix) = (self.path.clone(), prefix.clone());
            self.fingerprint =
                match reload_with(&tether, move || config::load(&path, &prefix)).await {
                    Ok(reloaded) => {
                        self.sources = reloaded.sources;
                        Fingerprint::of(&self.sources).keeping(&before)
                    }
                    // Watch what we have: fixing the broken file triggers the next attempt.
                    Err(_) => before,
                };
            self.files.follow(&self.sources);
        }
    }
}

/// The next SIGHUP; never, without a handler.
async fn next_hangup(hangups: &mut Option<Signal>) {
    if let Some(signal) = hangups.as_mut()
        && signal.recv().await.is_some()
    {
        return;
    }
    std::future::pending().await
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

/// What a reload changed, for the log line.
struct Changes<'a>(&'a Applied);

impl fmt::Display for Changes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (old, new) = (&self.0.old, &self.0.new);
        let mut parts = Vec::new();
        for group in new.upstreams() {
            let Some(before) = old.upstream(&group.name) else {
                parts.push(format!("upstream {} added", group.name));
                continue;
            };
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
        for group in old.upstreams() {
            if new.upstream(&group.name).is_none() {
                parts.push(format!("upstream {} removed", group.name));
            }
        }
        parts.extend(
            self.0
                .listeners_added
                .iter()
                .map(|a| format!("listen +{}", crate::config::model::shown_listen(*a))),
        );
        parts.extend(
            self.0
                .listeners_removed
                .iter()
                .map(|a| format!("listen -{}", crate::config::model::shown_listen(*a))),
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
    use std::time::Duration;

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
        // Answered in HTTP/1.1 whatever the client spoke, as nginx does.
        assert!(answer(addr).await.starts_with("HTTP/1.1 200"));

        // And the next good load is applied as usual.
        let reloaded = reload_with(&tether, move || Ok(serving(addr)))
            .await
            .expect("a good config applies");
        assert_eq!(reloaded.applied.new.generation, 2);
        tether.stop().await;
    }
}
