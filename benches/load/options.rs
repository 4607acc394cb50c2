//! What the load bench was asked to do: its command line (`--rows --runs --secs --proxies
//! --access-log ...`, as `cargo bench --bench load -- FLAGS` passes it), the `LOAD_*`
//! environment variables as a fallback for each flag, and the `--help` text.
//!
//! Pure: reads the arguments and a lookup of variables it is given, starts nothing.

use std::path::PathBuf;

use crate::proxies::Kind;
use crate::scenarios::Row;

/// Short requests in the callgrind mode's first run; the second sends five times as many.
pub const CALLGRIND_REQUESTS: u64 = 5_000;

/// What the bench binary should do.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// Print [`help`] and exit.
    Help,
    /// Not run by `cargo bench` (`cargo test` runs every target without `--bench`): do nothing.
    Skip,
    /// Run the load table.
    Table(Options),
    /// Count instructions per request under callgrind.
    Callgrind(Options),
}

/// The settings every flag or variable chooses.
#[derive(Debug, PartialEq)]
pub struct Options {
    /// Rows to run, in table order of the user's list.
    pub rows: Vec<Row>,
    /// Runs per proxy and row.
    pub runs: usize,
    /// Seconds per run.
    pub secs: u64,
    /// Proxies to run.
    pub proxies: Vec<Kind>,
    /// WebSockets in the idle rows.
    pub ws_idle: usize,
    /// Whether every proxy writes an access log in nginx's `combined` format.
    pub access_log: bool,
    /// The tether binary to run instead of the one cargo built.
    pub tether: Option<PathBuf>,
    /// tether's `TETHER_LOG` level.
    pub tether_log: String,
    /// Requests in the callgrind mode's short run.
    pub callgrind_requests: u64,
}

/// One setting: its flag, its variable, the value it takes (for the help) and what it does.
struct Setting {
    flag: &'static str,
    var: &'static str,
    value: &'static str,
    about: &'static str,
}

const SETTINGS: [Setting; 8] = [
    Setting {
        flag: "--rows",
        var: "LOAD_ROWS",
        value: "LIST",
        about: "comma-separated rows to run (below; default all, in the callgrind mode `get`)",
    },
    Setting {
        flag: "--runs",
        var: "LOAD_RUNS",
        value: "N",
        about: "runs per proxy and row, interleaved; a cell is their median (default 3)",
    },
    Setting {
        flag: "--secs",
        var: "LOAD_SECS",
        value: "N",
        about: "seconds per run (default 5; the reload row runs twice that)",
    },
    Setting {
        flag: "--proxies",
        var: "LOAD_PROXIES",
        value: "LIST",
        about: "tether,nginx,haproxy (default all installed; in the callgrind mode tether,nginx)",
    },
    Setting {
        flag: "--access-log",
        var: "LOAD_ACCESS_LOG",
        value: "on|off",
        about: "every proxy logs each request in nginx's `combined` format (default on)",
    },
    Setting {
        flag: "--ws-idle",
        var: "LOAD_WS_IDLE",
        value: "N",
        about: "WebSockets in the idle rows (default 9000; 2 descriptors each here)",
    },
    Setting {
        flag: "--tether",
        var: "LOAD_TETHER",
        value: "PATH",
        about: "the tether binary to run, e.g. a wrapper under a profiler (default cargo's)",
    },
    Setting {
        flag: "--tether-log",
        var: "LOAD_TETHER_LOG",
        value: "LEVEL",
        about: "tether's log level (default warn)",
    },
];

/// The `--help` text: usage, every flag with its variable, the rows and what is needed.
pub fn help() -> String {
    let mut text = String::from(
        "The load benchmark: tether against nginx and HAProxy on this machine, one Markdown table.\n\
         \n\
         Usage: cargo bench --bench load [-- FLAGS]\n\
         \x20      cargo bench --bench load -- --callgrind[=N] [--rows get,ip_hash,sticky,learn,ws_echo]\n\
         \n\
         Flags (each also read from its variable when the flag is not given):\n",
    );
    for s in &SETTINGS {
        let flag = format!("{} {}", s.flag, s.value);
        text.push_str(&format!("  {flag:<22} {:<16} {}\n", s.var, s.about));
    }
    text.push_str(&format!(
        "  {:<22} {:<16} instructions per request instead of the table: N and 5N keep-alive\n\
         {:<42}GETs through each proxy under valgrind, per request = difference / 4N\n\
         {:<42}(default N {CALLGRIND_REQUESTS}; rows get, ip_hash, sticky, learn; ws_echo:\n\
         {:<42}N and 5N 1 KiB echoes over its 100 WebSockets, per message)\n\
         \x20 {:<22} {:<16} this text\n\nRows:\n",
        "--callgrind[=N]", "LOAD_CALLGRIND", "", "", "", "-h, --help", ""
    ));
    for row in Row::ALL {
        text.push_str(&format!("  {:<16} {}\n", row.id(), row.about()));
    }
    text.push_str(
        "\nNeeds nginx (the HTTP backend and a peer), wrk (HTTP/1.1 rows), h2load (h2_get, the \
         callgrind mode),\nhaproxy (a peer) and valgrind (the callgrind mode); it installs \
         nothing: it names what is\nmissing with the apt-get line, and runs the rows and peers \
         it can.\n",
    );
    text
}

/// Reads `args` (the binary's arguments, without its name) and, for each flag not given, the
/// variable `var` returns.
pub fn parse(args: &[String], var: impl Fn(&str) -> Option<String>) -> Result<Command, String> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        return Ok(Command::Help);
    }
    // `cargo bench` passes `--bench`; `cargo test` runs the binary with test filters and
    // libtest flags that are not ours, so without `--bench` nothing else is read.
    if !args.iter().any(|a| a == "--bench") {
        return Ok(Command::Skip);
    }
    let mut given: Vec<(&'static str, String)> = Vec::new();
    let mut callgrind: Option<Option<String>> = None;
    let mut rest = args.iter().filter(|a| *a != "--bench").peekable();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_string())),
            None => (arg.as_str(), None),
        };
        if flag == "--callgrind" {
            // Its count is optional: taken from the next argument only if that is a number.
            let next_is_number = rest.peek().is_some_and(|n| n.parse::<u64>().is_ok());
            callgrind =
                Some(inline.or_else(|| next_is_number.then(|| rest.next()).flatten().cloned()));
            continue;
        }
        let setting = SETTINGS
            .iter()
            .find(|s| s.flag == flag)
            .ok_or_else(|| format!("unknown argument {arg:?} (see --help)"))?;
        let value = match inline {
            Some(value) => value,
            None => rest
                .next()
                .ok_or_else(|| format!("{flag} needs a value ({})", setting.value))?
                .clone(),
        };
        given.push((setting.flag, value));
    }
    // The flag if given, else the variable; named by where it came from in errors.
    let value = |flag: &str| -> Option<(String, String)> {
        let setting = SETTINGS.iter().find(|s| s.flag == flag)?;
        match given.iter().rev().find(|(f, _)| *f == flag) {
            Some((_, v)) => Some((flag.to_string(), v.clone())),
            None => var(setting.var).map(|v| (setting.var.to_string(), v)),
        }
    };
    let number = |flag: &str, default: u64| -> Result<u64, String> {
        match value(flag) {
            None => Ok(default),
            Some((from, v)) => v
                .trim()
                .parse()
                .map_err(|_| format!("{from} {v:?} is not a number")),
        }
    };
    let callgrind = match callgrind {
        Some(count) => Some(count.or_else(|| var("LOAD_CALLGRIND"))),
        // The variable turns the mode on with a count or `on`.
        None => var("LOAD_CALLGRIND")
            .filter(|v| v != "off" && v != "0")
            .map(Some),
    };
    let callgrind_requests = match callgrind.as_ref().and_then(|c| c.as_deref()) {
        None | Some("on") => CALLGRIND_REQUESTS,
        Some(n) => match n.trim().parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(format!(
                    "--callgrind={n:?}: the count must be a number above 0"
                ));
            }
        },
    };
    let rows = match value("--rows") {
        Some((from, list)) => rows(&from, &list)?,
        None if callgrind.is_some() => vec![Row::Get],
        None => Row::ALL.to_vec(),
    };
    let proxies = match value("--proxies") {
        Some((from, list)) => proxies(&from, &list)?,
        None if callgrind.is_some() => vec![Kind::Tether, Kind::Nginx],
        None => Kind::ALL.to_vec(),
    };
    let access_log = match value("--access-log") {
        None => true,
        Some((from, v)) => match v.trim() {
            "on" | "1" => true,
            "off" | "0" => false,
            _ => return Err(format!("{from} {v:?}: on or off")),
        },
    };
    let options = Options {
        rows,
        runs: number("--runs", 3)?.max(1) as usize,
        secs: number("--secs", 5)?.max(1),
        proxies,
        ws_idle: number("--ws-idle", 9000)? as usize,
        access_log,
        tether: value("--tether").map(|(_, path)| PathBuf::from(path)),
        tether_log: value("--tether-log").map_or_else(|| "warn".to_string(), |(_, v)| v),
        callgrind_requests,
    };
    if callgrind.is_none() {
        return Ok(Command::Table(options));
    }
    if let Some(row) = options.rows.iter().find(|row| !row.in_callgrind()) {
        return Err(format!(
            "the callgrind mode measures keep-alive GETs and WebSocket echoes: rows get, ip_hash, \
             sticky, learn, ws_echo (not {})",
            row.id()
        ));
    }
    Ok(Command::Callgrind(options))
}

fn rows(from: &str, list: &str) -> Result<Vec<Row>, String> {
    list.split(',')
        .map(|id| {
            Row::ALL
                .into_iter()
                .find(|row| row.id() == id.trim())
                .ok_or_else(|| {
                    let ids: Vec<&str> = Row::ALL.iter().map(|r| r.id()).collect();
                    format!("unknown row {id:?} in {from} (rows: {})", ids.join(","))
                })
        })
        .collect()
}

fn proxies(from: &str, list: &str) -> Result<Vec<Kind>, String> {
    list.split(',')
        .map(|name| {
            Kind::ALL
                .into_iter()
                .find(|kind| kind.name().eq_ignore_ascii_case(name.trim()))
                .ok_or_else(|| format!("unknown proxy {name:?} in {from} (tether,nginx,haproxy)"))
        })
        .collect()
}

/// Checks [`parse`] on the cases that matter (run by `cargo test`, where the bench itself is
/// skipped); panics on the first that does not hold.
pub fn check() {
    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let none = |_: &str| None;
    let table = |list: &[&str], var: &dyn Fn(&str) -> Option<String>| match parse(&args(list), var)
    {
        Ok(Command::Table(options)) => options,
        other => panic!("{list:?}: expected a table, got {other:?}"),
    };

    // `cargo test`'s own arguments are not ours; --help wins wherever it is.
    assert_eq!(
        parse(&args(&["peer", "--nocapture"]), none),
        Ok(Command::Skip)
    );
    assert_eq!(
        parse(&args(&["--help", "--bench"]), none),
        Ok(Command::Help)
    );
    assert_eq!(parse(&args(&["-h"]), none), Ok(Command::Help));

    // Defaults: every row and proxy, 3 runs of 5 s, access logs on.
    let defaults = table(&["--bench"], &none);
    assert_eq!(defaults.rows, Row::ALL.to_vec());
    assert_eq!(defaults.proxies, Kind::ALL.to_vec());
    assert_eq!(
        (defaults.runs, defaults.secs, defaults.access_log),
        (3, 5, true)
    );

    // Flags in both spellings; a flag beats its variable, the variable fills in the rest.
    let env = |name: &str| match name {
        "LOAD_RUNS" => Some("7".to_string()),
        "LOAD_SECS" => Some("9".to_string()),
        _ => None,
    };
    let flags = &[
        "--rows",
        "get,sticky",
        "--secs=1",
        "--proxies=tether",
        "--bench",
    ];
    let options = table(flags, &env);
    assert_eq!(options.rows, vec![Row::Get, Row::Sticky]);
    assert_eq!((options.runs, options.secs), (7, 1));
    assert_eq!(options.proxies, vec![Kind::Tether]);
    let off = |name: &str| (name == "LOAD_ACCESS_LOG").then(|| "off".to_string());
    assert!(!table(&["--bench"], &off).access_log);
    assert!(table(&["--access-log", "on", "--bench"], &off).access_log);

    // Mistakes are named, not ignored.
    for bad in [
        &["--rows", "gett", "--bench"][..],
        &["--secs", "many", "--bench"],
        &["--runs", "--bench"],
        &["--frobnicate", "--bench"],
        &["--access-log", "maybe", "--bench"],
        &["--callgrind", "--rows", "sse", "--bench"],
    ] {
        assert!(parse(&args(bad), none).is_err(), "{bad:?} was accepted");
    }

    // The callgrind mode: its own defaults, a count inline or as the next argument.
    let Ok(Command::Callgrind(options)) = parse(&args(&["--callgrind", "--bench"]), none) else {
        panic!("--callgrind is not the callgrind mode");
    };
    assert_eq!(options.rows, vec![Row::Get]);
    assert_eq!(options.proxies, vec![Kind::Tether, Kind::Nginx]);
    assert_eq!(options.callgrind_requests, CALLGRIND_REQUESTS);
    for spelling in [
        &["--callgrind=200", "--bench"][..],
        &["--callgrind", "200", "--bench"],
    ] {
        match parse(&args(spelling), none) {
            Ok(Command::Callgrind(options)) => assert_eq!(options.callgrind_requests, 200),
            other => panic!("{spelling:?}: {other:?}"),
        }
    }
    // It counts WebSocket echoes too (per message), beside the GET rows.
    let echo = parse(
        &args(&["--callgrind", "--rows", "get,ws_echo", "--bench"]),
        none,
    );
    match echo {
        Ok(Command::Callgrind(options)) => assert_eq!(options.rows, vec![Row::Get, Row::WsEcho]),
        other => panic!("--callgrind --rows get,ws_echo: {other:?}"),
    }

    // The help names every row and every flag with its variable.
    let text = help();
    for row in Row::ALL {
        assert!(
            text.contains(row.id()),
            "--help does not name row {}",
            row.id()
        );
    }
    for s in &SETTINGS {
        assert!(
            text.contains(s.flag) && text.contains(s.var),
            "--help misses {}",
            s.flag
        );
    }
}
