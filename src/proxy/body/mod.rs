//! The three bodies of one proxied exchange, one file per direction:
//!
//! ```text
//! client ──ClientBody───> tether ──RequestBody───> upstream     client.rs, request.rs
//! client <──ResponseBody── tether <──UpstreamBody── upstream     response.rs
//! ```
//!
//! None is ever buffered whole; each frame is passed on as it arrives, so backpressure bounds
//! memory. [`client`] is the client's body whichever protocol brought it; [`request`] is what
//! is sent upstream (the client's body cut off past `client_max_body_size`, and the upload's
//! progress for `proxy_send_timeout`); [`response`] is what goes back (an upstream's body with
//! the bookkeeping that lasts as long as the stream, or tether's own).
//!
//! Split by direction so that the upstream connection pool, which sends [`request`] bodies,
//! and the response body, which returns connections to that pool, do not import each other.
//! This module itself holds only the error both directions end with; it re-exports nothing,
//! so importing one direction never pulls in the other.

pub mod client;
mod learn;
pub mod request;
pub mod response;

use client::ClientBodyError;

/// Why a body stream stopped early.
#[derive(Debug)]
pub enum BodyError {
    /// The upstream connection failed.
    Hyper(hyper::Error),
    /// The client's body could not be read to its end (gone, too slow, malformed).
    Client(ClientBodyError),
    /// The client sent more than `client_max_body_size`.
    TooLarge,
    /// The upstream sent nothing for `proxy_read_timeout`.
    ReadTimeout,
    /// The gzip compressor failed.
    Compress(std::io::Error),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Hyper(error) => error.fmt(f),
            BodyError::Client(error) => write!(f, "client stopped sending its body ({error})"),
            BodyError::TooLarge => f.write_str("request body larger than client_max_body_size"),
            BodyError::ReadTimeout => {
                f.write_str("upstream timed out while sending the response body")
            }
            BodyError::Compress(error) => write!(f, "gzip failed ({error})"),
        }
    }
}

impl std::error::Error for BodyError {}
