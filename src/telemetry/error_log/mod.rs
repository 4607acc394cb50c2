//! The error log: tether's own events (failures, health changes, reloads, limits), written
//! one line each in nginx's format (`line`) to stderr or files (`sink`), as `error_log`
//! says.
//!
//! Events are `tracing` events; this module is the subscriber's one layer that writes them.
//! Which file an event goes to follows nginx: a server's `error_log` takes the events of its
//! requests (an event names its virtual server in its `server` field, by the first
//! `server_name`, which the config makes unambiguous); one at http level the other events of
//! the http machinery (requests, upstreams, health checks, listeners, TLS — every target but
//! tether's process-level modules); the main level's the rest (start, reload, stop), and the
//! http events too when http has none. With no `error_log` at all, everything goes to
//! stderr from `info` on. Levels are nginx's names over tracing's five levels
//! ([`tracing_level`]). `TETHER_LOG` (tracing's filter syntax), when set, replaces every
//! level: a debugging aid.
//!
//! Levels cost nothing where they filter: the layer tells tracing the most verbose level any
//! log wants, so a `debug!` on the request path is one comparison when no log takes debug. A
//! reload that changes the logs opens the new files first ([`prepare`]: a file that cannot be
//! opened fails the reload, as in nginx) and swaps them in whole ([`Prepared::commit`]);
//! files that stay keep their open handle. [`reopen`] opens every file again by name
//! (SIGUSR1, `tether -s reopen`).
//!
//! Imports the config model, tracing and std; never `proxy`, `server` or `runtime`, which log
//! through it.

mod line;
mod sink;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use crate::config::{Config, ErrorLevel, ErrorLogDestination, ErrorLogTarget};
pub use sink::Sink;

/// The installed error log (None until [`install`]: tests that run tether in-process log
/// through their own subscriber, and a reload then leaves logging alone).
static INSTALLED: OnceLock<Arc<Logs>> = OnceLock::new();

/// The level of tracing an nginx level filters at. tracing has five levels to nginx's eight:
/// `notice` filters as `info`, and `crit`, `alert` and `emerg` as `error` (every event tether
/// writes at those is an `error`).
pub fn tracing_level(level: ErrorLevel) -> LevelFilter {
    match level {
        ErrorLevel::Debug => LevelFilter::DEBUG,
        ErrorLevel::Info | ErrorLevel::Notice => LevelFilter::INFO,
        ErrorLevel::Warn => LevelFilter::WARN,
        ErrorLevel::Error | ErrorLevel::Crit | ErrorLevel::Alert | ErrorLevel::Emerg => {
            LevelFilter::ERROR
        }
    }
}

/// The error logs in force, and whether `TETHER_LOG` overrides their levels.
pub struct Logs {
    routes: ArcSwap<Routes>,
    overridden: bool,
}

/// Where events go.
struct Routes {
    main: Vec<Route>,
    /// Empty: http events go to `main`.
    http: Vec<Route>,
    /// Server-level logs by the server's first name: where the events of its requests go.
    servers: HashMap<String, Vec<Route>>,
    /// The most verbose level of any route.
    max: LevelFilter,
}

struct Route {
    sink: Arc<Sink>,
    level: LevelFilter,
}

impl Routes {
    /// stderr from `info` on: before a config is read, and when it has no `error_log`.
    fn default_stderr() -> Routes {
        // Opening stderr opens no file: it cannot fail.
        let sink = Arc::new(Sink::open(&ErrorLogDestination::Stderr).expect("stderr opens"));
        Routes::new(
            vec![Route {
                sink,
                level: LevelFilter::INFO,
            }],
            Vec::new(),
        )
    }

    fn new(main: Vec<Route>, http: Vec<Route>) -> Routes {
        Routes::with_servers(main, http, HashMap::new())
    }

    fn with_servers(
        main: Vec<Route>,
        http: Vec<Route>,
        servers: HashMap<String, Vec<Route>>,
    ) -> Routes {
        let max = main
            .iter()
            .chain(&http)
            .chain(servers.values().flatten())
            .map(|route| route.level)
            .max()
            .unwrap_or(LevelFilter::OFF);
        Routes {
            main,
            http,
            servers,
            max,
        }
    }

    fn all(&self) -> impl Iterator<Item = &Route> {
        let servers = self.servers.values().flatten();
        self.main.iter().chain(&self.http).chain(servers)
    }

    /// Every sink in use, by destination.
    fn sinks(&self) -> HashMap<ErrorLogDestination, Arc<Sink>> {
        self.all()
            .map(|route| (route.sink.destination().clone(), route.sink.clone()))
            .collect()
    }

    /// The logs `event` goes to: its server's, else the http level's (for an http event),
    /// else the main level's.
    fn for_event(&self, event: &Event<'_>) -> &[Route] {
        if !is_http(event.metadata().target()) {
            return &self.main;
        }
        if !self.servers.is_empty() {
            let own = server_of(event).and_then(|name| self.servers.get(&name));
            if let Some(own) = own {
                return own;
            }
        }
        if self.http.is_empty() {
            &self.main
        } else {
            &self.http
        }
    }
}

/// The `server` field of an event (the virtual server a request event is about).
fn server_of(event: &Event<'_>) -> Option<String> {
    struct Server(Option<String>);
    impl tracing::field::Visit for Server {
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            if field.name() == "server" {
                self.0 = Some(value.to_string());
            }
        }
        fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn fmt::Debug) {}
    }
    let mut server = Server(None);
    event.record(&mut server);
    server.0
}

/// Process-level modules log to the main level's error log; everything else (tether's http
/// machinery, hyper, rustls) is an http event.
fn is_http(target: &str) -> bool {
    const MAIN: [&str; 4] = [
        "tether::runtime",
        "tether::reload",
        "tether::heap",
        "tether::config",
    ];
    target != "tether" && !MAIN.iter().any(|main| target.starts_with(main))
}

/// A file named by `error_log` that could not be opened.
#[derive(Debug)]
pub struct OpenError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub error: io::Error,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let error = super::errno::described(&self.error);
        write!(f, "open() \"{}\" failed ({error})", self.path.display())
    }
}

impl std::error::Error for OpenError {}

/// Makes the error log the process's tracing subscriber, writing to stderr from `info` on
/// until [`configure`] gives it the config's logs. Call once, first thing.
pub fn install() {
    let overrides = tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG").ok();
    let logs = Arc::new(Logs {
        routes: ArcSwap::from_pointee(Routes::default_stderr()),
        overridden: overrides.is_some(),
    });
    if INSTALLED.set(logs.clone()).is_err() {
        return;
    }
    // Fails only if a subscriber was set already (an embedding program's): it keeps its own.
    let _ = tracing_subscriber::registry()
        .with(overrides)
        .with(ErrorLogLayer { logs })
        .try_init();
}

/// Puts the logs `config` names in force at once (start-up).
pub fn configure(config: &Config) -> Result<(), OpenError> {
    if let Some(prepared) = prepare(config)? {
        prepared.commit();
    }
    Ok(())
}

/// Opens the files `config` names — reusing those open already — without changing anything
/// yet. None when no error log is installed.
pub fn prepare(config: &Config) -> Result<Option<Prepared>, OpenError> {
    let Some(logs) = INSTALLED.get() else {
        return Ok(None);
    };
    let routes = logs.routes_for(config)?;
    Ok(Some(Prepared {
        logs: logs.clone(),
        routes,
    }))
}

/// Opens every error-log file again by its name; the ones that fail keep their old file and
/// are returned.
pub fn reopen() -> Vec<OpenError> {
    let Some(logs) = INSTALLED.get() else {
        return Vec::new();
    };
    logs.reopen()
}

/// Error logs opened for a config, not yet in force.
pub struct Prepared {
    logs: Arc<Logs>,
    routes: Routes,
}

impl Prepared {
    /// Puts them in force: the next event goes to them.
    pub fn commit(self) {
        self.logs.routes.store(Arc::new(self.routes));
        // Callsites remember whether their level was wanted: ask them again.
        tracing::callsite::rebuild_interest_cache();
    }
}

impl Logs {
    fn routes_for(&self, config: &Config) -> Result<Routes, OpenError> {
        let servers = config.http.servers.iter();
        if config.error_log.is_empty()
            && config.http.error_log.is_empty()
            && servers.clone().all(|server| server.error_log.is_empty())
        {
            return Ok(Routes::default_stderr());
        }
        let mut open = self.routes.load().sinks();
        let mut routes_of = |targets: &[ErrorLogTarget]| -> Result<Vec<Route>, OpenError> {
            let mut routes = Vec::with_capacity(targets.len());
            for target in targets {
                let sink = match open.get(&target.destination) {
                    Some(sink) => sink.clone(),
                    None => {
                        let sink = Arc::new(Sink::open(&target.destination).map_err(|error| {
                            let path = match &target.destination {
                                ErrorLogDestination::File(path) => path.clone(),
                                ErrorLogDestination::Stderr => PathBuf::from("stderr"),
                            };
                            OpenError { path, error }
                        })?);
                        open.insert(target.destination.clone(), sink.clone());
                        sink
                    }
                };
                let level = tracing_level(target.level);
                routes.push(Route { sink, level });
            }
            Ok(routes)
        };
        let mut main = routes_of(&config.error_log)?;
        let http = routes_of(&config.http.error_log)?;
        let mut servers = HashMap::new();
        for server in config.http.servers.iter() {
            if !server.error_log.is_empty() {
                servers.insert(server.first_name(), routes_of(&server.error_log)?);
            }
        }
        if main.is_empty() {
            // Process events still need a home: stderr, as before any config.
            main = Routes::default_stderr().main;
        }
        Ok(Routes::with_servers(main, http, servers))
    }

    fn reopen(&self) -> Vec<OpenError> {
        let mut failed = Vec::new();
        for (destination, sink) in self.routes.load().sinks() {
            if let (Err(error), ErrorLogDestination::File(path)) = (sink.reopen(), destination) {
                failed.push(OpenError { path, error });
            }
        }
        failed
    }
}

/// The tracing layer that filters by the logs' levels and writes each event's line.
pub struct ErrorLogLayer {
    logs: Arc<Logs>,
}

impl ErrorLogLayer {
    fn wants(&self, metadata: &Metadata<'_>) -> bool {
        self.logs.overridden || *metadata.level() <= self.logs.routes.load().max
    }
}

impl<S: Subscriber> Layer<S> for ErrorLogLayer {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.wants(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        self.wants(metadata)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        if self.logs.overridden {
            return None;
        }
        Some(self.logs.routes.load().max)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let routes = self.logs.routes.load();
        let level = event.metadata().level();
        let overridden = self.logs.overridden;
        let mut wanted = routes
            .for_event(event)
            .iter()
            .filter(|route| overridden || *level <= route.level)
            .peekable();
        if wanted.peek().is_none() {
            return;
        }
        let mut text = String::with_capacity(256);
        line::render(&mut text, event);
        for route in wanted {
            route.sink.write_line(text.as_bytes());
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
