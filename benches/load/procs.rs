//! Child processes for the load bench: pinned to one core, each in its own process group that
//! is killed whole when its [`Guard`] drops (on panic too), and what `/proc` says about a
//! group: CPU time and resident memory. Also the process-wide setup: our own core, and where
//! a program is installed.
//!
//! Knows nothing of proxies or scenarios.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A child process group, killed (SIGKILL to the whole group) when dropped.
pub struct Guard {
    child: Child,
    log: PathBuf,
}

impl Guard {
    /// Spawns `command` in a new process group, pinned to `core` (as `taskset -c CORE` would)
    /// when given, with stdout and stderr appended to `log`. The child also gets SIGTERM if
    /// the bench dies without unwinding (`PR_SET_PDEATHSIG`), so nothing outlives a crash.
    pub fn spawn(mut command: Command, core: Option<usize>, log: &Path) -> Result<Guard, String> {
        let out = fs::File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("open {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("dup log: {e}"))?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
        // system calls (sched_setaffinity, prctl) on local data.
        unsafe {
            command.pre_exec(move || {
                if let Some(core) = core {
                    pin_thread(core)?;
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let program = format!("{:?}", command.get_program());
        let child = command
            .spawn()
            .map_err(|e| format!("start {program}: {e}"))?;
        Ok(Guard {
            child,
            log: log.to_path_buf(),
        })
    }

    /// The leader's pid, which is also the process group id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether the leader has exited (and how), without waiting.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// The last lines the group wrote, for error messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    /// CPU time and memory of every live process in the group.
    pub fn usage(&self) -> Usage {
        Usage::of_group(self.pid())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a negative pid signals our own child's process group.
        unsafe {
            libc::kill(-self.pid(), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// What a process group has used so far: CPU nanoseconds (from the per-thread
/// `/proc/PID/task/TID/schedstat`, which has nanosecond resolution where `utime`/`stime` have
/// 10 ms ticks) and resident memory now.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// CPU time of the group's live threads, in nanoseconds.
    pub cpu_ns: u64,
    /// Resident set size summed over the group's processes, in bytes.
    pub rss_bytes: u64,
}

impl Usage {
    /// Sums over every process whose process group is `pgid`. Time of processes or threads
    /// that already exited is not counted (only the reload scenario has such, and it reports
    /// no CPU).
    pub fn of_group(pgid: i32) -> Usage {
        let mut usage = Usage::default();
        let Ok(entries) = fs::read_dir("/proc") else {
            return usage;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if group_of(pid) != Some(pgid) {
                continue;
            }
            usage.rss_bytes += rss_of(pid);
            usage.cpu_ns += cpu_of(pid);
        }
        usage
    }
}

/// The process group of `pid`: field 5 of `/proc/PID/stat`, counted after the `)` that ends
/// the command name (which may itself hold spaces or parentheses).
fn group_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

fn rss_of(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn cpu_of(pid: i32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Pins the calling thread (and every thread or process it creates later) to `core`.
pub fn pin_thread(core: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity only
    // touch that local set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Where `name` is installed: `PATH`, else the sbin folders Debian keeps off a user's `PATH`.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Busy and total jiffies of every core so far, from `/proc/stat` (`cpuN` lines; idle and
/// iowait count as not busy). Busy includes kernel and softirq time, such as loopback
/// packet processing, that no process is charged for.
pub fn core_ticks() -> Vec<(u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .filter(|line| line.starts_with("cpu") && !line.starts_with("cpu "))
        .map(|line| {
            let fields: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|f| f.parse().ok())
                .collect();
            let total: u64 = fields.iter().take(8).sum();
            let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

/// How busy `core` was between two [`core_ticks`] readings, in percent.
pub fn busy_pct(before: &[(u64, u64)], after: &[(u64, u64)], core: usize) -> f64 {
    let (Some(before), Some(after)) = (before.get(core), after.get(core)) else {
        return 0.0;
    };
    let total = after.1.saturating_sub(before.1).max(1) as f64;
    100.0 * after.0.saturating_sub(before.0) as f64 / total
}
