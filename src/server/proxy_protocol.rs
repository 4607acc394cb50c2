//! The PROXY protocol header (HAProxy's spec, versions 1 and 2) that a balancer in front sends
//! before anything else on a `listen ... proxy_protocol` connection: who the client is.
//!
//! Read before TLS and before the HTTP/2 sniff, taking exactly the header's bytes from the
//! socket and not one more: the header is first peeked at (at most [`PEEK`] bytes, the longest
//! v1 line or v2 address block), its length told from what was peeked, and then that many
//! bytes are read. v2's TLVs (which may run to 64 KiB) are read through a small buffer and
//! dropped unparsed, so memory stays bounded whatever the peer claims. The caller bounds the
//! time (`client_header_timeout`).
//!
//! [`frame`] and the parsers are pure functions of a byte slice, tested on their own and with
//! arbitrary input. Must not import `proxy` or `snapshot`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::socket::SocketRef;
use tokio::io::Interest;

use super::sniff::peek;
use crate::realip::Proxied;

/// What starts every v2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// What starts every v1 header.
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// The longest v1 header, CRLF included (the spec's bound).
const V1_MAX: usize = 107;
/// v2's fixed part: signature, version and command, family and transport, length.
const V2_FIXED: usize = 16;
/// The longest v2 address block tether reads (two UNIX paths of 108 bytes); the rest of a
/// header is TLVs, skipped.
const V2_ADDRESSES_MAX: usize = 216;
/// What is peeked at most: enough for any v1 line and for v2's fixed part and addresses.
const PEEK: usize = V2_FIXED + V2_ADDRESSES_MAX;

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The peer closed without sending a byte (a balancer's TCP health check does).
    #[error("the connection closed before sending anything")]
    Empty,
    /// The peer closed before the header was whole.
    #[error("the connection closed before its PROXY protocol header was complete")]
    Closed,
    /// The first bytes are not a PROXY header's.
    #[error("no PROXY protocol header (the connection starts with {0:?})")]
    Missing(String),
    /// A PROXY header that breaks the spec.
    #[error("broken PROXY protocol header: {0}")]
    Broken(&'static str),
    /// The socket failed.
    #[error("reading the PROXY protocol header failed: {0}")]
    Io(#[from] io::Error),
}

/// What the peeked bytes tell so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// More bytes are needed to tell.
    Incomplete,
    /// A whole header: its length in bytes, and the addresses it gives (None for v1
    /// `UNKNOWN`, v2 `LOCAL`, and v2 families other than IPv4 and IPv6).
    Header {
        /// Bytes to take from the socket (a v2 header's TLVs included).
        len: usize,
        /// The client and server addresses.
        proxied: Option<Proxied>,
    },
}

/// Reads a connection's PROXY header, leaving the socket at the first byte after it.
pub async fn read<'a>(stream: impl Into<SocketRef<'a>>) -> Result<Option<Proxied>, Refusal> {
    let stream = stream.into();
    let mut seen = [0u8; PEEK];
    let (len, proxied) = loop {
        let ready = stream.ready(Interest::READABLE).await?;
        // A peer that closed after part of a header is done: the part stays peekable, and
        // waiting for more would spin, as a closed socket stays readable.
        let closed = ready.is_read_closed();
        let peeked = stream.try_io(Interest::READABLE, || {
            let n = peek(stream, &mut seen)?;
            // A header split across segments waits for the rest; WouldBlock makes tokio wait
            // for the next segment instead of handing back the same bytes at once.
            match frame(&seen[..n]) {
                Ok(Frame::Incomplete) if n > 0 && n < PEEK && !closed => {
                    Err(io::ErrorKind::WouldBlock.into())
                }
                outcome => Ok((n, outcome)),
            }
        });
        match peeked {
            Ok((0, _)) => return Err(Refusal::Empty),
            Ok((_, Ok(Frame::Header { len, proxied }))) => break (len, proxied),
            // Closed part way (a whole PEEK always tells).
            Ok((_, Ok(Frame::Incomplete))) => return Err(Refusal::Closed),
            Ok((_, Err(refusal))) => return Err(refusal),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error.into()),
        }
    };
    skip(stream, len).await?;
    Ok(proxied)
}

/// Reads and drops `len` bytes (the header just framed), a bounded buffer at a time.
async fn skip(stream: SocketRef<'_>, mut len: usize) -> Result<(), Refusal> {
    let mut sink = [0u8; 512];
    while len > 0 {
        stream.readable().await?;
        let want = len.min(sink.len());
        match stream.try_read(&mut sink[..want]) {
            Ok(0) => return Err(Refusal::Closed),
            Ok(n) => len -= n,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// Tells a PROXY header from the first bytes of a connection: whole (with its length and
/// addresses), not yet whole, or refused. Never reads past `bytes` nor panics, whatever they are.
pub fn frame(bytes: &[u8]) -> Result<Frame, Refusal> {
    let starts = |signature: &[u8]| {
        let n = bytes.len().min(signature.len());
        bytes[..n] == signature[..n]
    };
    if starts(V2_SIGNATURE) {
        frame_v2(bytes)
    } else if starts(V1_PREFIX) {
        frame_v1(bytes)
    } else {
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(16)]).into_owned();
        Err(Refusal::Missing(shown))
    }
}

/// `PROXY TCP4|TCP6 SRC DST SRCPORT DSTPORT\r\n` or `PROXY UNKNOWN ...\r\n`.
fn frame_v1(bytes: &[u8]) -> Result<Frame, Refusal> {
    let window = &bytes[..bytes.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|pair| pair == b"\r\n") else {
        return if bytes.len() >= V1_MAX {
            Err(Refusal::Broken("v1 line longer than 107 bytes"))
        } else {
            Ok(Frame::Incomplete)
        };
    };
    let line = std::str::from_utf8(&bytes[V1_PREFIX.len()..end])
        .map_err(|_| Refusal::Broken("v1 line is not text"))?;
    let mut fields = line.split(' ');
    let proxied = match fields.next() {
        // The spec: the rest of an UNKNOWN line is to be ignored.
        Some("UNKNOWN") => None,
        Some(family @ ("TCP4" | "TCP6")) => {
            let mut next = || fields.next().ok_or(Refusal::Broken("v1 line too short"));
            let (source, destination) = (next()?, next()?);
            let (source_port, destination_port) = (next()?, next()?);
            let ip = |text: &str| -> Result<IpAddr, Refusal> {
                let parsed = if family == "TCP4" {
                    text.parse::<Ipv4Addr>().map(IpAddr::V4).ok()
                } else {
                    text.parse::<Ipv6Addr>().map(IpAddr::V6).ok()
                };
                parsed.ok_or(Refusal::Broken("v1 address does not match its family"))
            };
            let proxied = Proxied {
                client: SocketAddr::new(ip(source)?, v1_port(source_port)?),
                server: SocketAddr::new(ip(destination)?, v1_port(destination_port)?),
            };
            if fields.next().is_some() {
                return Err(Refusal::Broken("v1 line has extra fields"));
            }
            Some(proxied)
        }
        _ => return Err(Refusal::Broken("v1 protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    Ok(Frame::Header {
        len: end + 2,
        proxied,
    })
}

/// A v1 port: decimal, no sign, no leading zero (the spec's words), 0..=65535.
fn v1_port(text: &str) -> Result<u16, Refusal> {
    let plain = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    let port = plain.then(|| text.parse().ok()).flatten();
    port.ok_or(Refusal::Broken("v1 port is not a number from 0 to 65535"))
}

/// The binary header: signature, version 2 and command, family and transport, a big-endian
/// length, the addresses, TLVs.
fn frame_v2(bytes: &[u8]) -> Result<Frame, Refusal> {
    if bytes.len() < V2_FIXED {
        return Ok(Frame::Incomplete);
    }
    let version_command = bytes[12];
    if version_command >> 4 != 2 {
        return Err(Refusal::Broken("v2 version is not 2"));
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(Refusal::Broken("v2 command is neither LOCAL nor PROXY")),
    };
    let family = bytes[13] >> 4;
    let length = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    let len = V2_FIXED + length;
    // AF_INET and AF_INET6 give addresses; AF_UNSPEC and AF_UNIX none tether can use.
    let needed = match family {
        0x1 => 12,
        0x2 => 36,
        0x0 | 0x3 => 0,
        _ => return Err(Refusal::Broken("v2 address family is unknown")),
    };
    if local || needed == 0 {
        return Ok(Frame::Header { len, proxied: None });
    }
    if length < needed {
        return Err(Refusal::Broken("v2 header too short for its addresses"));
    }
    let Some(block) = bytes.get(V2_FIXED..V2_FIXED + needed) else {
        return Ok(Frame::Incomplete);
    };
    let (source, destination, ports) = if family == 0x1 {
        let ip = |at: usize| IpAddr::V4(Ipv4Addr::from(u32_at(block, at)));
        (ip(0), ip(4), &block[8..12])
    } else {
        let ip = |at: usize| IpAddr::V6(Ipv6Addr::from(u128_at(block, at)));
        (ip(0), ip(16), &block[32..36])
    };
    let proxied = Proxied {
        client: SocketAddr::new(source, u16::from_be_bytes([ports[0], ports[1]])),
        server: SocketAddr::new(destination, u16::from_be_bytes([ports[2], ports[3]])),
    };
    Ok(Frame::Header {
        len,
        proxied: Some(proxied),
    })
}

fn u32_at(block: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&block[at..at + 4]);
    u32::from_be_bytes(word)
}

fn u128_at(block: &[u8], at: usize) -> u128 {
    let mut word = [0u8; 16];
    word.copy_from_slice(&block[at..at + 16]);
    u128::from_be_bytes(word)
}

#[cfg(test)]
#[path = "proxy_protocol_tests.rs"]
mod tests;
