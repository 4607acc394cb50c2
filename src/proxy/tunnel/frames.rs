//! WebSocket framing, just enough to end a tunnel politely: a tracker that follows frame
//! boundaries in the bytes one direction carries, and the close frame tether injects when it
//! ends a tunnel (`1001 Going Away` at a stop, `1012 Service Restart` in a drain).
//!
//! Nothing here parses payloads or validates the protocol: the endpoints do that. The tracker
//! only has to know, at any moment, whether the bytes written so far end exactly at a frame's
//! end — the one place a frame of our own can be slipped in without corrupting the stream.
//! Plain std: no tokio, no hyper.

/// The close code for "the endpoint is going away" (RFC 6455, 7.4.1): a server shutting down.
pub const GOING_AWAY: u16 = 1001;

/// The opcode of a close frame.
const OPCODE_CLOSE: u8 = 0x8;

/// The longest frame header: 2 bytes, 8 of extended length, 4 of mask key.
const MAX_HEADER: usize = 14;

/// Follows the frame boundaries of one direction of a WebSocket, fed with the bytes as they
/// are delivered. Headers may arrive split across any number of feeds.
#[derive(Debug, Default)]
pub struct FrameTracker {
    /// The header bytes of the current frame gathered so far (only while `remaining` is 0).
    header: [u8; MAX_HEADER],
    /// How many of `header` are filled; 0 at a frame boundary.
    have: usize,
    /// Payload bytes still to come in the current frame.
    remaining: u64,
    /// A close frame went this way: nothing may follow it, not even our own close.
    saw_close: bool,
}

impl FrameTracker {
    /// Accounts for `bytes` having been delivered in this direction.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                // Skip payload without looking at it: large frames cost one subtraction.
                let skip =
                    usize::try_from(self.remaining).map_or(bytes.len(), |r| r.min(bytes.len()));
                self.remaining -= skip as u64;
                bytes = &bytes[skip..];
                continue;
            }
            // A whole header at hand (the usual case: a frame starts a write) is read where it
            // is, not gathered byte by byte.
            if self.have == 0
                && let [_, second, ..] = *bytes
                && let len = header_len(second)
                && bytes.len() >= len
            {
                self.start_payload(&bytes[..len]);
                bytes = &bytes[len..];
                continue;
            }
            let take = (self.header_len() - self.have).min(bytes.len());
            self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
            self.have += take;
            bytes = &bytes[take..];
            // The length of the header is only known once its first two bytes are in, so a
            // complete header is one whose length, recomputed now, is reached.
            if self.have >= 2 && self.have == self.header_len() {
                let header = self.header;
                self.start_payload(&header[..self.have]);
                self.have = 0;
            }
        }
    }

    /// True when everything fed so far ends exactly at the end of a frame.
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.remaining == 0
    }

    /// True once a close frame passed in this direction.
    pub fn saw_close(&self) -> bool {
        self.saw_close
    }

    /// The header length implied by the bytes gathered so far (2 until the second byte is in).
    fn header_len(&self) -> usize {
        if self.have < 2 {
            return 2;
        }
        header_len(self.header[1])
    }

    /// `header` is a complete frame header: note a close and start counting its payload.
    #[inline]
    fn start_payload(&mut self, header: &[u8]) {
        if header[0] & 0x0f == OPCODE_CLOSE {
            self.saw_close = true;
        }
        // A complete header is as long as its second byte says, so the extended length is in.
        self.remaining = match header[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
            127 => u64::from_be_bytes(header[2..10].try_into().unwrap_or([0; 8])),
            short => u64::from(short),
        };
    }
}

/// The length of a frame header whose second byte is `second`: 2, the extended length, the
/// mask key.
#[inline]
fn header_len(second: u8) -> usize {
    let extended = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + extended + mask
}

/// A close frame carrying `code` and no reason. Frames toward a server must be masked
/// (RFC 6455, 5.3), so `mask` carries the key for those; frames toward a client must not be.
pub fn close_frame(code: u16, mask: Option<[u8; 4]>) -> Vec<u8> {
    let payload = code.to_be_bytes();
    let mut frame = Vec::with_capacity(8);
    frame.push(0x80 | OPCODE_CLOSE);
    match mask {
        None => {
            frame.push(payload.len() as u8);
            frame.extend_from_slice(&payload);
        }
        Some(key) => {
            frame.push(0x80 | payload.len() as u8);
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
        }
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame with `opcode` and `len` payload bytes, masked with `mask` if given.
    fn frame(opcode: u8, len: usize, mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![0x80 | opcode];
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        match len {
            0..=125 => out.push(mask_bit | len as u8),
            126..=65_535 => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        let payload = (0..len).map(|i| (i % 251) as u8);
        match mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(payload.zip(key.iter().cycle()).map(|(b, k)| b ^ k));
            }
            None => out.extend(payload),
        }
        out
    }

    const LENGTHS: [usize; 9] = [0, 1, 125, 126, 127, 65_535, 65_536, 65_537, 200_000];

    #[test]
    fn every_length_encoding_masked_or_not_ends_at_a_boundary() {
        for len in LENGTHS {
            for mask in [None, Some([0xde, 0xad, 0xbe, 0xef])] {
                let bytes = frame(0x2, len, mask);
                let mut whole = FrameTracker::default();
                whole.feed(&bytes);
                assert!(whole.at_boundary(), "{len} bytes, mask {mask:?}");
                // One byte short of the end is inside the frame (its header, if it is empty).
                let mut short = FrameTracker::default();
                short.feed(&bytes[..bytes.len() - 1]);
                assert!(!short.at_boundary(), "{len} bytes, mask {mask:?}");
                short.feed(&bytes[bytes.len() - 1..]);
                assert!(short.at_boundary(), "{len} bytes, mask {mask:?}");
            }
        }
    }

    #[test]
    fn headers_split_byte_by_byte_are_followed() {
        for len in LENGTHS {
            for mask in [None, Some([1, 2, 3, 4])] {
                // Two frames back to back, fed one byte at a time: the boundary is seen exactly
                // after each frame's last byte and nowhere else.
                let first = frame(0x1, len, mask);
                let second = frame(0x9, 3, mask);
                let stream: Vec<u8> = first.iter().chain(&second).copied().collect();
                let mut tracker = FrameTracker::default();
                let mut boundaries = Vec::new();
                for (at, byte) in stream.iter().enumerate() {
                    tracker.feed(std::slice::from_ref(byte));
                    if tracker.at_boundary() {
                        boundaries.push(at + 1);
                    }
                }
                assert_eq!(
                    boundaries,
                    vec![first.len(), stream.len()],
                    "{len} bytes, mask {mask:?}"
                );
            }
        }
    }

    #[test]
    fn a_passing_close_frame_is_remembered() {
        let mut tracker = FrameTracker::default();
        tracker.feed(&frame(0x1, 10, None));
        assert!(!tracker.saw_close());
        tracker.feed(&close_frame(1000, None));
        assert!(tracker.saw_close() && tracker.at_boundary());
    }

    #[test]
    fn close_frames_carry_the_code_masked_only_toward_servers() {
        assert_eq!(close_frame(GOING_AWAY, None), [0x88, 0x02, 0x03, 0xe9]);
        let masked = close_frame(GOING_AWAY, Some([0xff, 0x00, 0x0f, 0xf0]));
        assert_eq!(
            masked,
            [0x88, 0x82, 0xff, 0x00, 0x0f, 0xf0, 0x03 ^ 0xff, 0xe9]
        );
        let mut tracker = FrameTracker::default();
        tracker.feed(&masked[..3]);
        assert!(!tracker.at_boundary());
        tracker.feed(&masked[3..]);
        assert!(tracker.at_boundary() && tracker.saw_close());
    }
}
