//! What a report needs from `/proc`: resident memory, child processes, installed signal
//! handlers. Linux only, as the tests that use it.

/// A field of `/proc/PID/status` (`VmRSS`, `SigCgt`, `PPid`...), as written there.
fn status_field(pid: u32, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(|value| value.trim().to_string())
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS")?
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Resident memory of this test process, in KiB.
pub fn own_rss_kib() -> u64 {
    rss_kib(std::process::id()).expect("VmRSS of this process")
}

/// The processes whose parent is `pid` (what `pgrep -P` lists).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| status_field(child, "PPid").as_deref() == Some(&pid.to_string()))
        .collect()
}

/// True when process `pid` has installed a handler for every signal in `signals`
/// (`SigCgt` in `/proc/PID/status`): before that, the default action of SIGHUP or SIGQUIT
/// would kill it.
pub fn catches(pid: u32, signals: &[i32]) -> bool {
    let Some(mask) = status_field(pid, "SigCgt").and_then(|m| u64::from_str_radix(&m, 16).ok())
    else {
        return false;
    };
    signals.iter().all(|&s| mask & (1u64 << (s - 1)) != 0)
}
