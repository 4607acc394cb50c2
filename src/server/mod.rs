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
mod tls;

pub use accept::{Lifecycle, accept_loop};
pub use ceiling::{Ceiling, raise_open_file_limit};

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Accept queue length asked of the kernel (which caps it at `net.core.somaxconn`). The
/// default 128 overflows when hundreds of WebSockets reconnect at once — after a deploy, a
/// network blip — and dropped SYNs cost clients a second each; nginx asks for 511, HAProxy more.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds and listens on `addr`, with `SO_REUSEADDR` and a long accept queue.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }?;
    // As every server does: a restart must not wait out TIME_WAIT on its own port.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
