//! What the bench runs on and with: the packaged tools it drives (found, or named as missing
//! with the `apt-get` line that installs them — the bench installs nothing itself) and the
//! machine's description printed next to the table (CPU, cores, kernel, each tool's version,
//! rustc, the tether commit).
//!
//! Knows nothing of proxies' configs or scenarios.

use std::path::PathBuf;
use std::process::Command;

use crate::procs::find_binary;
use crate::proxies::{CLIENT_CORE, PROXY_CORE};

/// A program the bench runs and the Debian package that has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tool {
    /// The binary's name.
    pub binary: &'static str,
    /// The Debian package.
    pub package: &'static str,
    /// What the bench needs it for.
    pub role: &'static str,
    /// The arguments that make it print its version (first line kept).
    version_args: &'static [&'static str],
}

/// nginx: the HTTP backend, and a peer.
pub const NGINX: Tool = Tool {
    binary: "nginx",
    package: "nginx",
    role: "the HTTP backend and a peer; without it nothing runs",
    version_args: &["-v"],
};
/// HAProxy: a peer.
pub const HAPROXY: Tool = Tool {
    binary: "haproxy",
    package: "haproxy",
    role: "a peer; its column is left out without it",
    version_args: &["-v"],
};
/// wrk: the HTTP/1.1 load.
pub const WRK: Tool = Tool {
    binary: "wrk",
    package: "wrk",
    role: "the HTTP/1.1 rows; they are left out without it",
    version_args: &["-v"],
};
/// h2load: the HTTP/2 load and the callgrind mode's requests.
pub const H2LOAD: Tool = Tool {
    binary: "h2load",
    package: "nghttp2-client",
    role: "the HTTP/2 row and the callgrind mode",
    version_args: &["--version"],
};
/// valgrind: the callgrind mode.
pub const VALGRIND: Tool = Tool {
    binary: "valgrind",
    package: "valgrind",
    role: "the callgrind mode",
    version_args: &["--version"],
};

/// Every tool the bench may run.
pub const TOOLS: [Tool; 5] = [NGINX, HAPROXY, WRK, H2LOAD, VALGRIND];

/// Where each tool is, if installed.
pub struct Found(Vec<(Tool, Option<PathBuf>)>);

impl Found {
    /// Looks for every tool in [`TOOLS`] (`PATH` and the sbin folders).
    pub fn look() -> Found {
        Found(
            TOOLS
                .iter()
                .map(|tool| (*tool, find_binary(tool.binary)))
                .collect(),
        )
    }

    /// Where `tool` is.
    pub fn path(&self, tool: Tool) -> Option<&PathBuf> {
        self.0.iter().find(|(t, _)| *t == tool)?.1.as_ref()
    }

    /// Whether `binary` is installed (by name: rows name their tool so).
    pub fn has(&self, binary: &str) -> bool {
        self.0
            .iter()
            .any(|(tool, path)| tool.binary == binary && path.is_some())
    }

    /// What is missing among `wanted`, each with what it is for, and the one `apt-get` line
    /// that installs them all; `None` if nothing is.
    pub fn missing(&self, wanted: &[Tool]) -> Option<String> {
        let missing: Vec<Tool> = wanted
            .iter()
            .filter(|tool| self.path(**tool).is_none())
            .copied()
            .collect();
        if missing.is_empty() {
            return None;
        }
        let mut text = String::from("not installed:\n");
        for tool in &missing {
            text.push_str(&format!("  {:<9} {}\n", tool.binary, tool.role));
        }
        let packages: Vec<&str> = missing.iter().map(|tool| tool.package).collect();
        text.push_str(&format!(
            "install with: sudo apt-get install {}",
            packages.join(" ")
        ));
        Some(text)
    }

    /// The Markdown section describing this machine and every version involved.
    pub fn describe(&self, tether: &std::path::Path) -> String {
        let mut lines = vec![
            format!("- CPU: {}", cpu_model()),
            format!(
                "- cores: {} (online: {}); the proxy pinned to core {PROXY_CORE}, everything \
                 else to core {CLIENT_CORE}",
                core_count(),
                read_trimmed("/sys/devices/system/cpu/online")
            ),
            format!(
                "- kernel: Linux {}",
                read_trimmed("/proc/sys/kernel/osrelease")
            ),
            format!("- memory: {}", memory()),
            format!("- system: {}", os_name()),
        ];
        for (tool, path) in &self.0 {
            let version = match path {
                Some(path) => first_line(path.as_os_str(), tool.version_args),
                None => "not installed".to_string(),
            };
            lines.push(format!("- {}: {version}", tool.binary));
        }
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        lines.push(format!("- rustc: {}", first_line(&rustc, &["-V"])));
        lines.push(format!("- tether: {} ({})", commit(), tether.display()));
        format!("## Machine\n\n{}\n", lines.join("\n"))
    }
}

/// The first non-empty line `program args` prints on stdout or stderr (nginx prints its
/// version on stderr, and wrk exits 1 after printing it).
fn first_line(program: &std::ffi::OsStr, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(output) => {
            let text = [output.stdout, output.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .map(str::trim)
                .find(|line| !line.is_empty())
                .unwrap_or("(no version printed)")
                .to_string()
        }
        Err(e) => format!("({e})"),
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map_or_else(|e| format!("({e})"), |s| s.trim().to_string())
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// The machine's cores, counted in `/proc/cpuinfo` (the bench has pinned itself to one by the
/// time it asks, so its own affinity would say 1).
fn core_count() -> usize {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .filter(|line| {
            line.split(':')
                .next()
                .is_some_and(|key| key.trim() == "processor")
        })
        .count()
}

fn memory() -> String {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    info.lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or("unknown".to_string(), |kb| {
            format!("{:.1} GiB", kb as f64 / (1024.0 * 1024.0))
        })
}

fn os_name() -> String {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    release
        .lines()
        .find_map(|line| line.strip_prefix("PRETTY_NAME="))
        .map_or("unknown".to_string(), |name| {
            name.trim_matches('"').to_string()
        })
}

/// The tether commit the bench was built from, `+ uncommitted changes` if the tree differs.
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        None => "commit unknown (no git)".to_string(),
        Some(hash) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if !changes.is_empty() => format!("commit {hash} + uncommitted changes"),
            _ => format!("commit {hash}"),
        },
    }
}
