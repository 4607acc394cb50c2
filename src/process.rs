//! What tether asks of the operating system as a process, nginx's master's jobs: the open-file
//! limit `worker_rlimit_nofile` sets, the `user` and `group` it runs as once its listeners are
//! bound, and telling systemd (`Type=notify`) when it is ready and when it stops.
//!
//! std and libc only; nothing here knows the config's grammar or a socket tether serves on.
//! Must not import `proxy`, `server` or `runtime`: `main` calls these at the right moments.

use std::ffi::CString;
use std::io;
use std::os::unix::net::UnixDatagram;

use crate::config::RunAs;

/// Sets the open-file limit to `wanted` (soft and hard, as nginx does) when that is above the
/// current hard limit — tether raises the soft limit to the hard one by itself at start, so a
/// smaller value would only lower it. Returns the soft limit in force afterwards. Raising the
/// hard limit needs root (CAP_SYS_RESOURCE); the error says so.
pub fn raise_open_files_to(wanted: u64) -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a properly initialised local struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if wanted <= limit.rlim_max {
        return Ok(limit.rlim_cur);
    }
    let raised = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: wanted,
    };
    // SAFETY: setrlimit reads a properly initialised local struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(wanted)
}

/// Whether the process runs as root, when `user` means something (as in nginx: otherwise the
/// directive is ignored with a warning).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
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
    // SAFETY: plain system calls on valid ids and a NUL-terminated name; each result checked.
    unsafe {
        if libc::initgroups(name.as_ptr(), gid) != 0 && libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(format!(
                "setgroups() failed ({})",
                io::Error::last_os_error()
            ));
        }
        if libc::setgid(gid) != 0 {
            return Err(format!(
                "setgid({gid}) failed ({})",
                io::Error::last_os_error()
            ));
        }
        if libc::setuid(user) != 0 {
            return Err(format!(
                "setuid({user}) failed ({})",
                io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// The uid of `name` (or the number it is).
fn find_user(name: &str) -> Result<libc::uid_t, String> {
    if let Ok(id) = name.parse() {
        return Ok(id);
    }
    let c_name = CString::new(name).map_err(|_| "a user name with a NUL".to_string())?;
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: zeroed passwd is a valid value of a plain C struct, filled in by getpwnam_r.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to live local storage of the sizes passed.
    let code = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if code != 0 || found.is_null() {
        return Err(format!("getpwnam(\"{name}\") failed: no such user"));
    }
    Ok(entry.pw_uid)
}

/// The gid of `name` (or the number it is).
fn find_group(name: &str) -> Result<libc::gid_t, String> {
    if let Ok(id) = name.parse() {
        return Ok(id);
    }
    let c_name = CString::new(name).map_err(|_| "a group name with a NUL".to_string())?;
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: zeroed group is a valid value of a plain C struct, filled in by getgrnam_r.
    let mut entry: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is to live local storage of the sizes passed.
    let code = unsafe {
        libc::getgrnam_r(
            c_name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if code != 0 || found.is_null() {
        return Err(format!("getgrnam(\"{name}\") failed: no such group"));
    }
    Ok(entry.gr_gid)
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
        assert_eq!(find_user("root"), Ok(0));
        assert_eq!(find_user("0"), Ok(0));
        assert_eq!(find_group("0"), Ok(0));
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
