//! Sockets: binding listeners, accepting connections under the connection ceiling, telling
//! HTTP/2 by prior knowledge from HTTP/1 on each, and serving them (HTTP/1.1 by tether's own
//! `http1`, HTTP/2 by hyper, on the same port). Each request is `proxy`'s business, and each
//! connection reads the config in force from the snapshot pointer it is handed.
//!
//! Which listeners exist and when they stop is the runtime's decision: this module binds and
//! serves what it is given, and imports neither `runtime` nor `reload`.

mod accept;
pub mod blocking;
mod ceiling;
mod h2;
pub mod http1;
pub mod proxy_protocol;
mod sniff;
mod socket;
mod tls;

pub use accept::{Lifecycle, accept_loop};
pub use ceiling::Ceiling;

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket, UnixListener};

/// A bound listening socket: TCP, or a UNIX-domain stream socket (`listen unix:PATH`).
#[derive(Debug)]
pub enum Bound {
    /// `listen ADDRESS:PORT`.
    Tcp(TcpListener),
    /// `listen unix:PATH`, with its path (unlinked when the listener is retired).
    Unix(UnixListener, std::path::PathBuf),
}

impl From<TcpListener> for Bound {
    fn from(tcp: TcpListener) -> Bound {
        Bound::Tcp(tcp)
    }
}

/// Binds and listens on a UNIX-domain stream socket at `path`. As nginx: a file already there
/// (a live socket, a stale one, anything) fails with EADDRINUSE and is left alone, and the
/// socket is made readable and writable by all (0666; the directory's permissions are what
/// restrict who connects).
pub fn bind_unix(path: &std::path::Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// Accept queue length asked of the kernel (which caps it at `net.core.somaxconn`). The
/// default 128 overflows when hundreds of WebSockets reconnect at once — after a deploy, a
/// network blip — and dropped SYNs cost clients a second each; nginx asks for 511, HAProxy more.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds and listens on `addr`, with `SO_REUSEADDR` and a long accept queue. An IPv6 address
/// takes IPv6 only (nginx's `ipv6only=on` default, whatever the system's `bindv6only`), so
/// `[::]:80` and `0.0.0.0:80` bind side by side, unless `dual_stack` (`ipv6only=off`).
pub fn bind(addr: SocketAddr, dual_stack: bool) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        let socket = TcpSocket::new_v6()?;
        set_ipv6_only(&socket, !dual_stack)?;
        Ok(socket)
    }?;
    // As every server does: a restart must not wait out TIME_WAIT on its own port.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// `IPV6_V6ONLY`, which tokio's socket does not expose; it must be set before `bind`.
fn set_ipv6_only(socket: &TcpSocket, only: bool) -> io::Result<()> {
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::Ipv6V6Only, &only)
        .map_err(io::Error::from)
}
