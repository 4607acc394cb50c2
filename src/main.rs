//! The `tether` command: flags in nginx's spirit (`-c`, `-p`, `-t`, `-T`, `-v`), logging,
//! signals, and the wiring from a config file to a running proxy.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};
use std::sync::Arc;

use tether::config::{self, Config, WorkerProcesses};
use tether::heap;
use tether::peer::PeerRegistry;
use tether::process::{self, Readiness};
use tether::reload;
use tether::runtime::Tether;
use tether::server::blocking;
use tether::snapshot::Snapshot;
use tether::telemetry::error_log;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// An nginx-flavoured sticky L7 load balancer for real-time app farms.
#[derive(Parser)]
#[command(name = "tether", version, disable_version_flag = true)]
struct Cli {
    /// Config file [default: conf/tether.conf if it exists, else /etc/tether/tether.conf].
    #[arg(short = 'c', long = "conf")]
    conf: Option<PathBuf>,
    /// Prefix for relative paths in the config (pid file, logs); default: the current directory.
    #[arg(short = 'p', long = "prefix")]
    prefix: Option<PathBuf>,
    /// Test the config and exit (0 if valid, 1 with every error otherwise).
    #[arg(short = 't')]
    test: bool,
    /// Test the config, then print it with every included file.
    #[arg(short = 'T')]
    dump: bool,
    /// Send a signal to the running tether (found by its pid file): `reload` (SIGHUP), `reopen`
    /// (SIGUSR1: reopen log files), `quit` (SIGQUIT: graceful stop), `stop` (SIGTERM: fast
    /// stop).
    #[arg(short = 's', value_name = "SIGNAL")]
    signal: Option<SignalName>,
    /// Print the version and exit.
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    version: Option<bool>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// `-s` signals, nginx's names.
#[derive(Clone, Copy, clap::ValueEnum)]
enum SignalName {
    /// Reload the config (SIGHUP).
    Reload,
    /// Reopen the log files (SIGUSR1), after logrotate moved them.
    Reopen,
    /// Stop gracefully (SIGQUIT).
    Quit,
    /// Stop now (SIGTERM).
    Stop,
}

#[derive(Subcommand)]
enum Command {
    /// Start three demo app servers on loopback with tether in front (conf/demo.conf).
    Demo {
        /// Also serve the demo over HTTPS and HTTP/2 on 127.0.0.1:8443, with a self-signed
        /// certificate made at start.
        #[arg(long)]
        tls: bool,
        /// Where the demo listens for plain HTTP, when 127.0.0.1:8080 is taken.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    error_log::install();
    tether::process::raise_soft_open_files();
    let prefix = cli.prefix.clone().unwrap_or_else(|| PathBuf::from("."));
    if let Some(Command::Demo { tls, listen }) = cli.command {
        return tether_demo::run(&prefix, tls, listen);
    }
    let conf = match cli.conf.clone().or_else(default_conf) {
        Some(conf) => conf,
        None => {
            return Emerg(format!(
                "no configuration file: neither {LOCAL_CONF} nor {SYSTEM_CONF} exists (name one \
                 with -c FILE)"
            ))
            .exit();
        }
    };
    if let Some(signal) = cli.signal {
        return send_signal(&conf, &prefix, signal);
    }
    let config = match check(&conf, &prefix) {
        Ok(config) => config,
        Err(()) => {
            if cli.test || cli.dump {
                eprintln!("tether: configuration file {} test failed", conf.display());
            }
            return ExitCode::FAILURE;
        }
    };
    if cli.test || cli.dump {
        for ignored in &config.ignored {
            eprintln!(
                "tether: [notice] \"{}\" has no effect in tether ({}) in {}",
                ignored.name, ignored.reason, ignored.span
            );
        }
        for warning in &config.warnings {
            eprintln!("tether: [warn] {} in {}", warning.message, warning.span);
        }
        eprintln!(
            "tether: the configuration file {} syntax is ok",
            conf.display()
        );
        eprintln!(
            "tether: configuration file {} test is successful",
            conf.display()
        );
        if cli.dump {
            dump(&config);
        }
        return ExitCode::SUCCESS;
    }
    run(&config, &prefix)
}

/// The config read when `-c` is not given and it exists: the source tree's (or a folder laid
/// out like it, run from its top).
const LOCAL_CONF: &str = "conf/tether.conf";

/// The config read when `-c` is not given and there is no [`LOCAL_CONF`]: where packages put it.
const SYSTEM_CONF: &str = "/etc/tether/tether.conf";

/// [`LOCAL_CONF`] if it exists, else [`SYSTEM_CONF`] if that does; `None` when neither does.
fn default_conf() -> Option<PathBuf> {
    [LOCAL_CONF, SYSTEM_CONF]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

/// Loads and fully validates a config (including what only building a snapshot finds: unknown
/// variables, unresolvable hosts), printing every error nginx-style, all kinds in one pass and
/// in file order. A panic on the way (a bug) is printed as an error too, not a crash.
fn check(path: &Path, prefix: &Path) -> Result<Config, ()> {
    let panicked = |what: &str, panic: blocking::Panic| {
        eprintln!("tether: [emerg] {what} {} {panic}", path.display());
    };
    let (config, mut errors) = match blocking::catching(|| config::load_for_check(path, prefix))
        .map_err(|panic| panicked("loading", panic))?
    {
        Ok(config) => (config, Vec::new()),
        // What lowered cleanly is built too: its variables and host names are checked now,
        // not after the directive errors are fixed.
        Err(config::Rejected {
            errors,
            partial: Some(partial),
        }) => (*partial, errors.0),
        Err(rejected) => {
            print_errors(&rejected.errors);
            return Err(());
        }
    };
    match blocking::catching(|| Snapshot::build(&config, &PeerRegistry::default(), 0)) {
        Ok(Ok(_)) => {}
        Ok(Err(found)) => errors.extend(found.0),
        // The errors lowering found are still worth printing.
        Err(panic) => {
            panicked("checking", panic);
            if errors.is_empty() {
                return Err(());
            }
        }
    }
    if !errors.is_empty() {
        let mut errors = config::ConfigErrors(errors);
        errors.sort_in_file_order(&config.files);
        print_errors(&errors);
        return Err(());
    }
    Ok(config)
}

fn print_errors(errors: &config::ConfigErrors) {
    for error in &errors.0 {
        eprintln!("tether: [emerg] {error}");
    }
}

/// `-T`: every file read, as nginx prints them.
fn dump(config: &Config) {
    for file in &config.files {
        println!("# configuration file {}:", file.display());
        match std::fs::read_to_string(file) {
            Ok(text) => println!("{text}"),
            Err(error) => println!("# (unreadable: {error})"),
        }
    }
}

/// A fatal start-up problem, printed nginx-style as `[emerg]`.
struct Emerg(String);

impl Emerg {
    fn exit(self) -> ExitCode {
        eprintln!("tether: [emerg] {}", self.0);
        ExitCode::FAILURE
    }
}

/// Runs in the foreground until SIGINT or SIGTERM (fast stop) or SIGQUIT (graceful stop),
/// reloading on SIGHUP and on config file changes.
fn run(config: &Config, prefix: &Path) -> ExitCode {
    // nginx opens its logs before anything else, and a log it cannot open stops it.
    if let Err(error) = error_log::configure(config) {
        return Emerg(error.to_string()).exit();
    }
    if let Some(wanted) = config.worker_rlimit_nofile {
        // Before the listeners: the connection ceiling follows the limit in force at start.
        if let Err(error) = process::raise_open_files_to(wanted) {
            tracing::warn!(wanted, %error, "worker_rlimit_nofile: cannot raise the open-file limit");
        }
    }
    let served = build_runtime(config.worker_processes).and_then(|runtime| {
        runtime.block_on(async {
            let tether = Arc::new(bind(config).await?);
            // The config's files are watched before anything says we are up (SIGHUP caught,
            // the pid file): an edit made from then on is seen.
            let watcher = reload::Watcher::arm(config);
            // Every signal handler is in place before the pid file tells `tether -s` where we
            // are: until then SIGHUP or SIGQUIT would take their default action and kill us.
            let stop_signals = StopSignals::register();
            let hangups = reload::hangups();
            let reopens = reopen_on_signal(tether.clone())?;
            let pid_file = PidFile::write(pid_path(config))?;
            // As nginx's workers: the listeners are bound and the pid file written as root,
            // and nothing is accepted before the process is the configured user.
            become_configured_user(config)?;
            tether.open();
            if let Err(error) = process::notify(Readiness::Ready) {
                tracing::warn!(%error, "cannot tell the service manager tether is ready");
            }
            let (stop_watching, watching) = tokio::sync::watch::channel(false);
            let watcher =
                tokio::spawn(watcher.run(tether.clone(), prefix.to_path_buf(), hangups, watching));
            let stop = stop_signals.wait().await;
            let _ = process::notify(Readiness::Stopping);
            match stop {
                Stop::Fast => {
                    tracing::info!("stopping");
                    tether.stop().await;
                }
                Stop::Graceful => {
                    tracing::info!(timeout = ?config.shutdown_timeout, "stopping gracefully");
                    tether.shutdown(config.shutdown_timeout).await;
                }
            }
            let _ = stop_watching.send(true);
            let _ = watcher.await;
            reopens.abort();
            // Lines of the last requests are in memory still.
            tether::telemetry::access_log::flush_all(std::time::Duration::from_secs(5));
            drop(pid_file);
            Ok(())
        })
    });
    served.map_or_else(Emerg::exit, |()| ExitCode::SUCCESS)
}

/// `user NAME [GROUP]`: becomes that user when running as root; ignored with a warning
/// otherwise, as nginx does.
fn become_configured_user(config: &Config) -> Result<(), Emerg> {
    let Some(who) = &config.user else {
        return Ok(());
    };
    if !process::is_root() {
        tracing::warn!(
            "the \"user\" directive makes sense only when tether is started as root, ignored"
        );
        return Ok(());
    }
    process::drop_privileges(who).map_err(Emerg)?;
    tracing::info!(user = %who.user, "running as");
    Ok(())
}

/// SIGUSR1 (`-s reopen`, logrotate's `postrotate`): every log file is reopened.
fn reopen_on_signal(tether: Arc<Tether>) -> Result<tokio::task::JoinHandle<()>, Emerg> {
    let mut usr1 = signal(SignalKind::user_defined1())
        .map_err(|error| Emerg(format!("cannot catch SIGUSR1 ({error})")))?;
    Ok(tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            tracing::info!("reopening log files");
            tether.reopen_logs();
        }
    }))
}

/// Builds and binds, accepting nothing until [`Tether::open`].
async fn bind(config: &Config) -> Result<Tether, Emerg> {
    let tether = Tether::bind(config)
        .await
        .map_err(|error| Emerg(error.to_string()))?;
    // The process owns the allocator, so the binary, not the library, decides to trim it.
    tokio::spawn(heap::trim_periodically(heap::PERIOD, heap::WORTH_TRIMMING));
    Ok(tether)
}

/// The pid file: the `pid` directive's, else `tether.pid` beside the config file.
fn pid_path(config: &Config) -> PathBuf {
    config.pid.clone().unwrap_or_else(|| {
        config
            .main_file
            .parent()
            .unwrap_or(Path::new("."))
            .join("tether.pid")
    })
}

/// The running instance's pid file, removed when tether exits.
struct PidFile(PathBuf);

impl PidFile {
    fn write(path: PathBuf) -> Result<PidFile, Emerg> {
        std::fs::write(&path, format!("{}\n", std::process::id()))
            .map_err(|error| Emerg(format!("cannot write pid file {}: {error}", path.display())))?;
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `-s reload|quit|stop`: signals the instance whose pid file the config names.
fn send_signal(conf: &Path, prefix: &Path, signal: SignalName) -> ExitCode {
    // The config names the pid file; a config too broken to load still has the default one.
    let path = match blocking::catching(|| config::load(conf, prefix)) {
        Ok(Ok(config)) => pid_path(&config),
        _ => conf.parent().unwrap_or(Path::new(".")).join("tether.pid"),
    };
    let pid = match std::fs::read_to_string(&path).map(|text| text.trim().parse::<i32>()) {
        Ok(Ok(pid)) if pid > 0 => pid,
        _ => return Emerg(format!("invalid or missing pid file {}", path.display())).exit(),
    };
    let number = match signal {
        SignalName::Reload => libc::SIGHUP,
        SignalName::Reopen => libc::SIGUSR1,
        SignalName::Quit => libc::SIGQUIT,
        SignalName::Stop => libc::SIGTERM,
    };
    // SAFETY: kill(2) with a pid read from our own pid file and a valid signal number has no
    // memory-safety preconditions.
    if unsafe { libc::kill(pid, number) } != 0 {
        let error = std::io::Error::last_os_error();
        return Emerg(format!("kill({pid}) failed ({error})")).exit();
    }
    ExitCode::SUCCESS
}

fn build_runtime(workers: WorkerProcesses) -> Result<tokio::runtime::Runtime, Emerg> {
    let mut builder = match workers {
        // One worker is one thread, as in nginx: no work stealing, no cross-thread wake-ups,
        // and the I/O driver polled by the thread that runs every task.
        WorkerProcesses::Count(0 | 1) => tokio::runtime::Builder::new_current_thread(),
        WorkerProcesses::Count(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
        WorkerProcesses::Auto => tokio::runtime::Builder::new_multi_thread(),
    };
    builder
        .enable_all()
        .build()
        .map_err(|error| Emerg(format!("cannot start the runtime: {error}")))
}

/// How tether was asked to stop.
enum Stop {
    /// SIGINT, SIGTERM.
    Fast,
    /// SIGQUIT.
    Graceful,
}

/// SIGINT, SIGTERM and SIGQUIT, caught from the moment this is made.
struct StopSignals {
    terminate: Option<Signal>,
    quit: Option<Signal>,
}

impl StopSignals {
    fn register() -> StopSignals {
        StopSignals {
            terminate: signal(SignalKind::terminate()).ok(),
            quit: signal(SignalKind::quit()).ok(),
        }
    }

    async fn wait(mut self) -> Stop {
        async fn next(signal: &mut Option<Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Stop::Fast,
            () = next(&mut self.terminate) => Stop::Fast,
            () = next(&mut self.quit) => Stop::Graceful,
        }
    }
}

/// Waits for SIGINT or SIGTERM (the demo has no graceful mode).
async fn wait_for_stop_signal() {
    StopSignals {
        terminate: signal(SignalKind::terminate()).ok(),
        quit: None,
    }
    .wait()
    .await;
}

/// `tether demo`: the farm of three app servers plus tether in front.
mod tether_demo {
    use super::*;
    use tether::demo::{Farm, demo_apps};

    /// The demo config ships inside the binary too, so `tether demo` works from any folder.
    const BUILTIN_DEMO_CONF: &str = include_str!("../conf/demo.conf");

    /// The line of the demo config the HTTPS listener is added after.
    const PLAIN_LISTEN: &str = "listen 127.0.0.1:8080 default_server;";

    pub fn run(prefix: &Path, tls: bool, listen: std::net::SocketAddr) -> ExitCode {
        let path = prefix.join("conf/demo.conf");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(_) => BUILTIN_DEMO_CONF.to_string(),
        };
        let (text, certificate_folder) = if tls {
            match with_tls(&text) {
                Ok((text, folder)) => (text, Some(folder)),
                Err(error) => return Emerg(error).exit(),
            }
        } else {
            (text, None)
        };
        let text = text.replace(PLAIN_LISTEN, &format!("listen {listen} default_server;"));
        let config = match config::load_str(&path, &text, prefix) {
            Ok(config) => config,
            Err(errors) => {
                print_errors(&errors);
                return ExitCode::FAILURE;
            }
        };
        let served = build_runtime(config.worker_processes).and_then(|runtime| {
            runtime.block_on(async {
                let farm = Farm::start(demo_apps()).await.map_err(|error| {
                    Emerg(format!("cannot start the demo app servers: {error}"))
                })?;
                // The demo runs as whoever started it: nothing to drop before serving.
                let tether = bind(&config).await?;
                tether.open();
                for (name, addr, _) in farm.status().await {
                    println!("app server {name} on http://{addr}/");
                }
                for addr in tether.local_addrs() {
                    let scheme = if addr.port() == 8443 { "https" } else { "http" };
                    let insecure = if scheme == "https" { "-k " } else { "" };
                    println!();
                    println!(
                        "tether demo farm is up: open {scheme}://{addr}/ in a browser, or try"
                    );
                    println!("  curl {insecure}{scheme}://{addr}/whoami");
                    println!("  curl {insecure}-N {scheme}://{addr}/sse");
                    println!("  curl {insecure}'{scheme}://{addr}/poll?wait=2000'");
                }
                if tls {
                    println!("(the HTTPS certificate is self-signed: the browser will warn once)");
                }
                println!("(Ctrl-C stops everything)");
                wait_for_stop_signal().await;
                tether.stop().await;
                drop(farm);
                Ok(())
            })
        });
        if let Some(folder) = certificate_folder {
            let _ = std::fs::remove_dir_all(folder);
        }
        served.map_or_else(Emerg::exit, |()| ExitCode::SUCCESS)
    }

    /// The demo config with an HTTPS listener (HTTP/2 by ALPN) beside the plain one, its
    /// certificate self-signed for `localhost` and 127.0.0.1 and written to a folder of its own
    /// under the system's temporary folder.
    fn with_tls(text: &str) -> Result<(String, PathBuf), String> {
        if !text.contains(PLAIN_LISTEN) {
            return Err(format!(
                "the demo config has no \"{PLAIN_LISTEN}\" line to add HTTPS beside"
            ));
        }
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let made = rcgen::generate_simple_self_signed(names)
            .map_err(|error| format!("cannot make the demo certificate: {error}"))?;
        let folder = std::env::temp_dir().join(format!("tether-demo-{}", std::process::id()));
        let (cert, key) = (folder.join("demo.crt"), folder.join("demo.key"));
        std::fs::create_dir_all(&folder)
            .and_then(|()| std::fs::write(&cert, made.cert.pem()))
            .and_then(|()| std::fs::write(&key, made.signing_key.serialize_pem()))
            .map_err(|error| {
                format!(
                    "cannot write the demo certificate in {}: {error}",
                    folder.display()
                )
            })?;
        let tls_lines = format!(
            "{PLAIN_LISTEN}\n        listen 127.0.0.1:8443 ssl;\n        http2 on;\n        \
             ssl_certificate {};\n        ssl_certificate_key {};",
            cert.display(),
            key.display()
        );
        Ok((text.replace(PLAIN_LISTEN, &tls_lines), folder))
    }
}
