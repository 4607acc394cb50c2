//! HTTP/2 spoken frame by frame, for tests that play a client no library would be: one that
//! sends the preface and nothing more, or never answers a PING.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A DATA frame.
pub const DATA: u8 = 0x0;
/// A HEADERS frame.
pub const HEADERS: u8 = 0x1;
/// A SETTINGS frame.
pub const SETTINGS: u8 = 0x4;
/// A PING frame.
pub const PING: u8 = 0x6;
/// A GOAWAY frame.
pub const GOAWAY: u8 = 0x7;
/// END_STREAM (on DATA and HEADERS).
pub const END_STREAM: u8 = 0x1;
/// END_HEADERS (on HEADERS).
pub const END_HEADERS: u8 = 0x4;
/// ACK on SETTINGS and PING.
pub const ACK: u8 = 0x1;

/// One frame as received.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The type.
    pub kind: u8,
    /// The flags.
    pub flags: u8,
    /// The stream id (0: the connection).
    pub stream: u32,
    /// The payload.
    pub payload: Vec<u8>,
}

/// A frame's bytes.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = payload.len() as u32;
    let mut bytes = length.to_be_bytes()[1..].to_vec();
    bytes.extend_from_slice(&[kind, flags]);
    bytes.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// The preface and an empty SETTINGS frame: all a client must send to hold a connection.
pub fn opening() -> Vec<u8> {
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(SETTINGS, 0, 0, &[]));
    bytes
}

/// A HEADERS frame for `GET path` on `stream`, ending the stream (HPACK literals without
/// indexing, no Huffman: nothing for the decoder to remember).
pub fn get(stream: u32, authority: &str, path: &str) -> Vec<u8> {
    // :method GET and :scheme http are static-table entries 2 and 6.
    let mut block = vec![0x82, 0x86];
    for (name_index, value) in [(4u8, path), (1u8, authority)] {
        assert!(value.len() < 127, "short values only");
        block.push(name_index);
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    frame(HEADERS, END_HEADERS | END_STREAM, stream, &block)
}

/// Reads one frame; `None` once the connection is closed (or reset).
pub async fn read_frame(stream: &mut TcpStream) -> Option<Frame> {
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).await.ok()?;
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).await.ok()?;
    Some(Frame {
        kind: header[3],
        flags: header[4],
        stream: u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff,
        payload,
    })
}

/// What a connection received until the server closed it.
pub struct Received {
    /// Every frame, with when it arrived.
    pub frames: Vec<(Instant, Frame)>,
    /// The server closed the connection (rather than the wait running out).
    pub closed: bool,
}

impl Received {
    /// When the first frame `is` picks arrived.
    pub fn first(&self, is: impl Fn(&Frame) -> bool) -> Option<Instant> {
        self.frames.iter().find(|(_, f)| is(f)).map(|(at, _)| *at)
    }

    /// The frame types in order, for failure messages.
    pub fn kinds(&self) -> Vec<u8> {
        self.frames.iter().map(|(_, f)| f.kind).collect()
    }
}

/// Reads frames until the server closes the connection or `limit` passes, answering PINGs
/// when `answer_pings` (a polite client) and nothing at all otherwise.
pub async fn until_close(stream: &mut TcpStream, answer_pings: bool, limit: Duration) -> Received {
    let mut frames = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        while let Some(frame) = read_frame(stream).await {
            if answer_pings && frame.kind == PING && frame.flags & ACK == 0 {
                let pong = self::frame(PING, ACK, 0, &frame.payload);
                let _ = stream.write_all(&pong).await;
            }
            frames.push((Instant::now(), frame));
        }
    })
    .await
    .is_ok();
    Received { frames, closed }
}
