//! What tether asks of the operating system as a process, nginx's master's jobs: the open-file
//! limit `worker_rlimit_nofile` sets, the `user` and `group` it runs as once its listeners are
//! bound, and telling systemd (`Type=notify`) when it is ready and when it stops.
//!
//! std and nix (the system calls, safely) only; nothing here knows the config's grammar or a socket tether serves on.
//! Must not import `proxy`, `server` or `runtime`: `main` calls these at the right moments.

use std::ffi::CString;
use std::io;
use std::os::unix::net::UnixDatagram;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::unistd::{Gid, Group, Uid, User, initgroups, setgid, setgroups, setuid};

use crate::config::RunAs;

/// The soft open-file limit in force (1,024, the usual default, if it cannot be read): what
/// bounds tether's connections and what the status page shows.
pub fn open_file_limit() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft)
}

/// Raises the soft open-file limit to the hard one, as nginx's `worker_rlimit_nofile` would —
/// every proxied connection holds two descriptors, and the usual soft default (1,024) would
/// cap tether at ~500 WebSockets — and returns the limit in force.
pub fn raise_soft_open_files() -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard {
        if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
            return hard;
        }
        tracing::warn!(soft, "cannot raise the open-file limit");
    }
    soft
}

/// Sets the open-file limit to `wanted` (soft and hard, as nginx does) when that is above the
/// current hard limit — tether raises the soft limit to the hard one by itself at start, so a
/// smaller value would only lower it. Returns the soft limit in force afterwards. Raising the
/// hard limit needs root (CAP_SYS_RESOURCE); the error says so.
pub fn raise_open_files_to(wanted: u64) -> io::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if wanted <= hard {
        return Ok(soft);
    }
    setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted)?;
    Ok(wanted)
}

/// Whether the process runs as root, when `user` means something (as in nginx: otherwise the
/// directive is ignored with a warning).
pub fn is_root() -> bool {
    Uid::effective().is_root()
}

/// Becomes `who` (supplementary groups, group, then user — in that order, since changing the
/// user first would take away the right to change the rest). Called once the listeners are
/// bound, so ports below 1024 are already open. Names are looked up in the system's databases;
/// a number is taken as an id.
pub fn drop_privileges(who: &RunAs) -> Result<(), String> {
    let user = find_user(&who.user)?;
    // nginx: "If group is omitted, a group whose name equals that of user is used."
    let group_name = who.group.as_deref().unwrap_or(&who.user);
    let gid = find_group(group_name)?;
    let name = CString::new(who.user.as_str()).map_err(|_| "a user name with a NUL".to_string())?;
    if initgroups(&name, gid).is_err() {
        setgroups(&[]).map_err(|e| format!("setgroups() failed ({e})"))?;
    }
    setgid(gid).map_err(|e| format!("setgid({gid}) failed ({e})"))?;
    setuid(user).map_err(|e| format!("setuid({user}) failed ({e})"))?;
    Ok(())
}

/// The uid of `name` (or the number it is).
fn find_user(name: &str) -> Result<Uid, String> {
    if let Ok(id) = name.parse() {
        return Ok(Uid::from_raw(id));
    }
    match User::from_name(name) {
        Ok(Some(user)) => Ok(user.uid),
        _ => Err(format!("getpwnam(\"{name}\") failed: no such user")),
    }
}

/// The gid of `name` (or the number it is).
fn find_group(name: &str) -> Result<Gid, String> {
    if let Ok(id) = name.parse() {
        return Ok(Gid::from_raw(id));
    }
    match Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid),
        _ => Err(format!("getgrnam(\"{name}\") failed: no such group")),
    }
}

/// A state to tell systemd's `Type=notify` supervision (sd_notify(3)'s words).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Listening and serving: `systemctl start` returns.
    Ready,
    /// A stop began.
    Stopping,
}

/// Tells the service manager `state` when it asked to be told (`NOTIFY_SOCKET` is set: a
/// path, or `@name` for an abstract socket); does nothing otherwise. A failure is returned for
/// the caller to log: systemd would then time the start out, which is the right outcome.
pub fn notify(state: Readiness) -> io::Result<()> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let message = match state {
        Readiness::Ready => format!("READY=1\nMAINPID={}\n", std::process::id()),
        Readiness::Stopping => "STOPPING=1\n".to_string(),
    };
    let socket = UnixDatagram::unbound()?;
    let bytes = target.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(message.as_bytes(), &addr)?;
    } else {
        socket.send_to(message.as_bytes(), &target)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_found_by_name_and_by_number() {
        assert_eq!(find_user("root"), Ok(Uid::from_raw(0)));
        assert_eq!(find_user("0"), Ok(Uid::from_raw(0)));
        assert_eq!(find_group("0"), Ok(Gid::from_raw(0)));
        assert!(find_user("no-such-user-of-tether").is_err());
        assert!(find_group("no-such-group-of-tether").is_err());
    }

    #[test]
    fn without_a_notify_socket_nothing_is_sent() {
        // Only meaningful when the test itself is not run under systemd's notify supervision.
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            assert!(notify(Readiness::Ready).is_ok());
        }
    }
}
