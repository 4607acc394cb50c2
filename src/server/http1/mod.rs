//! tether's own HTTP/1 server side: each head is read once, checked with nginx's rules and
//! limits, and handed to the proxy; bodies stream both ways; the socket goes to a tunnel after
//! a `101`.
//!
//! Why not hyper's server here: a proxy must refuse what it cannot forward unambiguously, and
//! hyper reads some of that away before anyone can look — a request carrying both
//! `Content-Length` and `Transfer-Encoding` reaches its service with the length already
//! dropped. Owning the read also puts every client-side limit in one place: line and head
//! sizes (`large_client_header_buffers`), header counts, `client_header_timeout`,
//! `keepalive_timeout`, `client_body_timeout`, `send_timeout`. hyper still serves HTTP/2 and
//! speaks to upstreams.
//!
//! `head` and `decode` are pure (bytes in, verdicts out), fuzzed through `replay`; `write` encodes;
//! `conn` (and `pump`, which it drives to feed request bodies) touch the socket.

mod conn;
pub mod decode;
pub mod head;
mod pump;
pub mod replay;
pub(in crate::server) mod timer;
mod write;

pub use conn::{refuse, serve};
/// Chunked framing is spelled the same way both ways (tether's own upstream client too).
pub use write::chunk_size_line;

/// Fewest free bytes asked of a read (the connection's, its body pump's, and the sniff's first
/// one); the read buffer grows by this much when fuller.
pub const READ_CHUNK: usize = 8 * 1024;
