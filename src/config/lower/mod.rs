//! Directive tree -> typed [`Config`]: gives each directive its nginx meaning and runs every
//! semantic check.
//!
//! Lowering never stops at the first problem: each error is recorded and the walk goes on, so
//! `tether -t` lists them all. Submodules own one context each (`http`: http, server, listen,
//! server_name; `location`: location, return, proxy_pass; `upstream`: upstream and map), plus
//! the upstream's `sticky`/`sticky_secret` (`sticky`) and `health_check` (`health_check`), the
//! rewrite module's `return`/`rewrite`/`set`/`break`/`if` (`rewrite`), the
//! `ssl_*` directives (`tls`), the directive table (`directives`), inherited proxy settings
//! (`proxy`) and value syntaxes (`values`). Must not import `parse`: it works on the finished tree.

mod client;
mod directives;
mod error_log;
mod error_page;
mod gzip;
mod headers;
mod health_check;
mod http;
mod limits;
mod location;
mod logs;
mod proxy;
mod proxy_ssl;
mod resolver;
mod rewrite;
mod sticky;
mod tls;
mod upstream;
mod values;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use directives::{Context, SUGGESTION_BUDGET};

use super::ast::Directive;
use super::error::{ConfigError, ConfigErrors, ErrorKind};
use super::model::{Config, Http, Ignored, RunAs, Warning, WorkerProcesses};
use super::source::Span;

/// How long a graceful stop waits for open requests (nginx waits forever by default; an
/// operator stopping a proxy wants it to end).
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Lowers a parsed main file. `files` are the files read (main first, from `parse`) and
/// `include_globs` its wildcard includes; `prefix` resolves relative paths such as `pid`.
/// Returns the config made of every directive that lowered cleanly, and every error found, in
/// file order: the config is only fit to run when there are none, but `tether -t` checks the
/// rest of it (variables, host names) so that one run reports everything.
pub fn lower(
    directives: &[Directive],
    main_file: &Path,
    files: Vec<PathBuf>,
    include_globs: Vec<glob::Pattern>,
    prefix: &Path,
) -> (Config, ConfigErrors) {
    let mut cx = Lowering::new();
    cx.prefix = prefix.to_path_buf();
    // nginx resolves certificate paths against its conf prefix, the main file's folder here
    // (`include`'s base too).
    cx.conf_dir = main_file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    cx.prefix = prefix.to_path_buf();
    let mut worker_processes = None;
    let mut worker_connections = None;
    let mut pid = None;
    let mut shutdown_timeout = None;
    let mut worker_rlimit_nofile = None;
    let mut user = None;
    let mut http = None;
    let mut error_log = Vec::new();
    let mut events_seen = false;
    for d in directives {
        if !cx.accepts(Context::Main, d) {
            continue;
        }
        let arg = d.args.first();
        match (d.name(), arg) {
            ("worker_processes", Some(word)) => cx.once(&mut worker_processes, d, |cx| {
                if word.text == "auto" {
                    Some(WorkerProcesses::Auto)
                } else {
                    cx.number(d, word, 1).map(WorkerProcesses::Count)
                }
            }),
            ("pid", Some(word)) => cx.once(&mut pid, d, |_| Some(prefix.join(&word.text))),
            ("shutdown_timeout" | "worker_shutdown_timeout", Some(word)) => {
                cx.once(&mut shutdown_timeout, d, |cx| cx.time(d, word))
            }
            ("worker_rlimit_nofile", Some(word)) => {
                cx.once(&mut worker_rlimit_nofile, d, |cx| cx.number(d, word, 1))
            }
            ("user", Some(word)) => cx.once(&mut user, d, |_| {
                Some(RunAs {
                    user: word.text.clone(),
                    group: d.args.get(1).map(|group| group.text.clone()),
                })
            }),
            ("error_log", _) => error_log.extend(cx.error_log(d)),
            ("events", _) if events_seen => cx.duplicate(d),
            ("http", _) if http.is_some() => cx.duplicate(d),
            ("events", _) => {
                events_seen = true;
                cx.events(d, &mut worker_connections);
            }
            ("http", _) => http = Some(cx.http(d.block.as_deref().unwrap_or_default())),
            _ => {}
        }
    }
    let mut errors = ConfigErrors(cx.errors);
    // Errors are found context by context; users read them best in file order.
    errors.sort_in_file_order(&files);
    let config = Config {
        main_file: main_file.to_path_buf(),
        files,
        include_globs,
        worker_processes: worker_processes.unwrap_or(WorkerProcesses::Auto),
        worker_connections,
        pid,
        shutdown_timeout: shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
        error_log,
        worker_rlimit_nofile,
        user,
        ignored: cx.ignored,
        warnings: cx.warnings,
        http: http.unwrap_or_else(empty_http),
    };
    (config, errors)
}

/// The `http` block of a config that has none: nginx's defaults, no servers.
fn empty_http() -> Http {
    Http {
        keepalive_timeout: Duration::from_secs(75),
        client_header_timeout: Duration::from_secs(60),
        send_timeout: Duration::from_secs(60),
        ..Http::default()
    }
}

/// The state of one lowering pass: what went wrong and what was ignored so far, plus the names
/// of all upstreams (collected before servers, since `proxy_pass` may name a later one).
pub(super) struct Lowering {
    errors: Vec<ConfigError>,
    ignored: Vec<Ignored>,
    /// `-t` warnings (nginx's "if is evil" traps).
    warnings: Vec<Warning>,
    upstream_names: Vec<String>,
    /// The same names by their lowercase form (the first one written of each), to resolve a
    /// `proxy_pass` without a scan.
    upstream_keys: HashMap<String, String>,
    /// Name distances still allowed for "did you mean" hints (see `SUGGESTION_BUDGET`).
    suggestion_budget: usize,
    /// The main config file's folder: what relative TLS file paths are resolved against.
    conf_dir: PathBuf,
    /// The prefix (`-p`, else the current folder): what relative log paths are resolved
    /// against.
    prefix: PathBuf,
    /// The names of every `log_format` of the http block (collected before anything is
    /// lowered, so an `access_log` may name a format written further down).
    log_format_names: Vec<String>,
}

impl Lowering {
    fn new() -> Lowering {
        Lowering {
            errors: Vec::new(),
            ignored: Vec::new(),
            warnings: Vec::new(),
            upstream_names: Vec::new(),
            upstream_keys: HashMap::new(),
            suggestion_budget: SUGGESTION_BUDGET,
            conf_dir: PathBuf::new(),
            prefix: PathBuf::new(),
            log_format_names: Vec::new(),
        }
    }

    /// Records an error and lets the walk go on.
    fn error(&mut self, span: &Span, kind: ErrorKind) {
        self.errors.push(ConfigError::at(span, kind));
    }

    /// Reports a directive that may appear once in its block as duplicate.
    fn duplicate(&mut self, d: &Directive) {
        let name = d.name().to_string();
        self.error(&d.span, ErrorKind::DuplicateDirective { name });
    }

    /// Records a directive accepted without effect.
    fn ignore(&mut self, d: &Directive, reason: &'static str) {
        self.ignored.push(Ignored {
            name: d.name().to_string(),
            reason,
            span: d.span.clone(),
        });
    }

    /// `events { ... }`: only `worker_connections` means something to tether.
    fn events(&mut self, d: &Directive, worker_connections: &mut Option<usize>) {
        for inner in d.block.as_deref().unwrap_or_default() {
            if self.accepts(Context::Events, inner) && inner.name() == "worker_connections" {
                let word = &inner.args[0];
                self.once(worker_connections, inner, |cx| cx.number(inner, word, 1));
            }
        }
    }

    /// Checks that `pattern` compiles, reporting `invalid regex` at `span` if not.
    fn check_regex(&mut self, span: &Span, pattern: &str, case_insensitive: bool) {
        let built = regex::RegexBuilder::new(pattern)
            .case_insensitive(case_insensitive)
            .build();
        if let Err(e) = built {
            // The regex crate draws a multi-line caret diagram; its last line says what is wrong.
            let text = e.to_string();
            let last = text.lines().last().unwrap_or_default();
            let message = last.strip_prefix("error: ").unwrap_or(last).to_string();
            self.error(
                span,
                ErrorKind::InvalidRegex {
                    pattern: pattern.to_string(),
                    message,
                },
            );
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
#[path = "error_tests.rs"]
mod error_tests;
#[cfg(test)]
mod headers_tests;

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod upstream_tests;

#[cfg(test)]
#[path = "addrs_tests.rs"]
mod addrs_tests;

#[cfg(test)]
#[path = "client_tests.rs"]
mod client_tests;

#[cfg(test)]
#[path = "limits_tests.rs"]
mod limits_tests;

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tls_tests;

#[cfg(test)]
#[path = "proxy_ssl_tests.rs"]
mod proxy_ssl_tests;
