//! Cutting a request body out of the connection's read buffer: `Content-Length` bytes, or
//! `Transfer-Encoding: chunked` decoded (sizes, extensions, trailers), strictly.
//!
//! Strict because the body is re-framed on its way upstream: whatever this decoder accepts,
//! the upstream sees re-encoded, so a lax reading here (a bare LF, a size with a sign or
//! spaces, an overlong size) is where a request could be read two ways. Such input is an
//! error, answered 400, never guessed at. Std and `bytes` only.

use bytes::{Buf, Bytes, BytesMut};

/// The longest chunk-size line (size, extensions) or trailer line taken.
const MAX_LINE: usize = 4096;
/// The most trailer bytes taken (they are read and dropped).
const MAX_TRAILERS: usize = 16 * 1024;

/// What one call to [`Decoder::decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes, taken out of the buffer without copying.
    Data(Bytes),
    /// The buffer holds no more of the body: read more.
    NeedMore,
    /// The body is complete; what follows in the buffer is the next request.
    End,
}

/// Why a chunked body cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// The state of one body being decoded.
#[derive(Debug)]
pub enum Decoder {
    /// `remaining` bytes of a `Content-Length` body.
    Length(u64),
    /// A chunked body.
    Chunked(Chunked),
}

/// Where a chunked body's decoding is.
#[derive(Debug)]
pub struct Chunked {
    state: State,
    /// The size being read, or the bytes left of the chunk being passed on.
    size: u64,
    /// Bytes of the current size, extension or trailer line (bounded by [`MAX_LINE`]).
    line: usize,
    /// Hex digits of the size read so far.
    digits: u8,
    trailers: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

impl Decoder {
    /// A decoder for a body of `length` bytes.
    pub fn length(length: u64) -> Decoder {
        Decoder::Length(length)
    }

    /// A decoder for a chunked body.
    pub fn chunked() -> Decoder {
        Decoder::Chunked(Chunked {
            state: State::Size,
            size: 0,
            line: 0,
            digits: 0,
            trailers: 0,
        })
    }

    /// True once the whole body was decoded.
    pub fn is_done(&self) -> bool {
        match self {
            Decoder::Length(remaining) => *remaining == 0,
            Decoder::Chunked(chunked) => chunked.state == State::Done,
        }
    }

    /// Body bytes still announced (`Content-Length`), if known.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(remaining) => Some(*remaining),
            Decoder::Chunked(_) => None,
        }
    }

    /// Takes the next piece of the body out of `buf`.
    ///
    /// Inline where it is called: a streamed body (SSE) asks with nothing buffered at every
    /// wake-up, and that answer costs one test here instead of an out-of-line call into the
    /// framing (two a streamed event: +86 instructions per SSE event on the callgrind rig).
    #[inline]
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Malformed> {
        if buf.is_empty() && !self.is_done() {
            return Ok(Decoded::NeedMore);
        }
        self.decode_buffered(buf)
    }

    fn decode_buffered(&mut self, buf: &mut BytesMut) -> Result<Decoded, Malformed> {
        match self {
            Decoder::Length(0) => Ok(Decoded::End),
            Decoder::Length(remaining) => {
                let take = (*remaining).min(buf.len() as u64) as usize;
                *remaining -= take as u64;
                Ok(Decoded::Data(buf.split_to(take).freeze()))
            }
            Decoder::Chunked(chunked) => chunked.decode(buf),
        }
    }
}

impl Chunked {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Malformed> {
        loop {
            if self.state == State::Done {
                return Ok(Decoded::End);
            }
            // The framing stepped so far used up the buffer: the rest comes with the next read.
            if buf.is_empty() {
                return Ok(Decoded::NeedMore);
            }
            if self.state == State::Data {
                let take = self.size.min(buf.len() as u64) as usize;
                self.size -= take as u64;
                let data = buf.split_to(take).freeze();
                if self.size == 0 {
                    // The chunk's line end is taken with its data when it is there (a streamed
                    // event arrives whole): the buffer is then empty, and the next read goes
                    // straight to the socket instead of through another call to step it.
                    self.state = if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        State::Size
                    } else {
                        State::DataCr
                    };
                }
                return Ok(Decoded::Data(data));
            }
            // Framing is stepped through where it lies and taken out of the buffer at once:
            // one `advance` for a chunk's size line or line end, not one a byte (each moves
            // the buffer's start and length; a streamed event has five such bytes).
            let (taken, stepped) = self.step_framing(buf);
            buf.advance(taken);
            stepped?;
            if !matches!(self.state, State::Data | State::Done) {
                return Ok(Decoded::NeedMore);
            }
        }
    }

    /// Steps through the framing at the front of `bytes`, byte by byte, until a chunk's data
    /// or the body's end is reached or the bytes run out: how many bytes were taken (the
    /// refused one included), and whether they were all well-formed.
    fn step_framing(&mut self, bytes: &[u8]) -> (usize, Result<(), Malformed>) {
        // The usual framing, a chunk's line end and the next plain size line ("\r\n1a\r\n"),
        // is taken whole where it is all there: the states stepping its bytes would pass
        // through, without a match a byte. Anything else is stepped.
        let mut at = 0;
        if self.state == State::DataCr && bytes.starts_with(b"\r\n") {
            self.state = State::Size;
            at = 2;
        }
        if self.state == State::Size && self.digits == 0 {
            at += self.plain_size_line(&bytes[at..]);
            if self.state == State::Data {
                return (at, Ok(()));
            }
        }
        for (offset, &byte) in bytes[at..].iter().enumerate() {
            if let Err(malformed) = self.step(byte) {
                return (at + offset + 1, Err(malformed));
            }
            if matches!(self.state, State::Data | State::Done) {
                return (at + offset + 1, Ok(()));
            }
        }
        (bytes.len(), Ok(()))
    }

    /// At the start of a size line: takes a whole line of hex digits and CRLF from the front
    /// of `bytes`, as stepping would (at most 16 digits; no sign, space or extension), and
    /// says how many bytes it took; none when the line is not all there or not that plain.
    fn plain_size_line(&mut self, bytes: &[u8]) -> usize {
        let digits = bytes
            .iter()
            .take(17)
            .take_while(|byte| byte.is_ascii_hexdigit())
            .count();
        if digits == 0 || digits > 16 || bytes.get(digits..digits + 2) != Some(b"\r\n") {
            return 0;
        }
        // Stepping starts a size line at 0 (a chunk's data counts it down to 0).
        let size = bytes[..digits].iter().fold(0u64, |size, &byte| {
            (size << 4) | u64::from((byte as char).to_digit(16).unwrap_or(0))
        });
        self.size = size;
        self.line = 0;
        self.state = if size == 0 {
            State::TrailerStart
        } else {
            State::Data
        };
        digits + 2
    }

    /// One byte of framing (everything but chunk data).
    fn step(&mut self, byte: u8) -> Result<(), Malformed> {
        match self.state {
            State::Size => match byte {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    // 16 hex digits already overflow nothing, a 17th would: refuse it.
                    if self.digits == 16 {
                        return Err(Malformed("chunk size too large"));
                    }
                    let digit = (byte as char).to_digit(16).unwrap_or(0);
                    self.size = (self.size << 4) | u64::from(digit);
                    self.digits += 1;
                }
                b';' if self.digits > 0 => self.state = State::Extension,
                b'\r' if self.digits > 0 => self.state = State::SizeLf,
                _ => return Err(Malformed("invalid chunk size")),
            },
            State::Extension => match byte {
                b'\r' => self.state = State::SizeLf,
                b'\n' => return Err(Malformed("bare LF in chunk extension")),
                _ => {
                    self.line += 1;
                    if self.line > MAX_LINE {
                        return Err(Malformed("chunk extension too long"));
                    }
                }
            },
            State::SizeLf => {
                expect_lf(byte)?;
                self.line = 0;
                self.digits = 0;
                self.state = if self.size == 0 {
                    State::TrailerStart
                } else {
                    State::Data
                };
            }
            State::DataCr => {
                if byte != b'\r' {
                    return Err(Malformed("chunk data longer than its size"));
                }
                self.state = State::DataLf;
            }
            State::DataLf => {
                expect_lf(byte)?;
                self.state = State::Size;
            }
            State::TrailerStart => match byte {
                b'\r' => self.state = State::EndLf,
                b'\n' => return Err(Malformed("bare LF after the last chunk")),
                _ => {
                    self.line = 1;
                    self.count_trailer()?;
                    self.state = State::Trailer;
                }
            },
            State::Trailer => match byte {
                b'\r' => self.state = State::TrailerLf,
                b'\n' => return Err(Malformed("bare LF in trailer")),
                _ => {
                    self.line += 1;
                    if self.line > MAX_LINE {
                        return Err(Malformed("trailer line too long"));
                    }
                    self.count_trailer()?;
                }
            },
            State::TrailerLf => {
                expect_lf(byte)?;
                self.state = State::TrailerStart;
            }
            State::EndLf => {
                expect_lf(byte)?;
                self.state = State::Done;
            }
            State::Data | State::Done => {}
        }
        Ok(())
    }

    fn count_trailer(&mut self) -> Result<(), Malformed> {
        self.trailers += 1;
        if self.trailers > MAX_TRAILERS {
            return Err(Malformed("trailers too large"));
        }
        Ok(())
    }
}

fn expect_lf(byte: u8) -> Result<(), Malformed> {
    if byte == b'\n' {
        Ok(())
    } else {
        Err(Malformed("CR not followed by LF in chunked body"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed `step` bytes at a time; the body, or the error.
    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), Malformed> {
        let mut decoder = Decoder::chunked();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(data) => body.extend_from_slice(&data),
                Decoded::End => return Ok((body, buf.to_vec())),
                Decoded::NeedMore => {
                    if fed == input.len() {
                        return Err(Malformed("ran out of input"));
                    }
                    let end = (fed + step).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn chunks_extensions_and_trailers_decode_however_the_bytes_arrive() {
        let input = b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nGET /next";
        for step in [1, 2, 3, 7, input.len()] {
            let (body, rest) = decode_all(input, step).unwrap();
            assert_eq!(body, b"hello world", "step {step}");
            assert!(b"GET /next".starts_with(&rest), "step {step}: {rest:?}");
        }
    }

    #[test]
    fn anything_that_could_be_read_two_ways_is_refused() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],    // bare LF after the size
            b"5\r\nhello\n0\r\n\r\n",         // bare LF after the data
            b"5\r\nhello!\r\n0\r\n\r\n",      // more data than the size
            b"+5\r\nhello\r\n0\r\n\r\n",      // a sign
            b" 5\r\nhello\r\n0\r\n\r\n",      // a space
            b"\r\nhello\r\n0\r\n\r\n",        // no size at all
            b"0x5\r\nhello\r\n0\r\n\r\n",     // a 0x prefix
            b"10000000000000000\r\n",         // 17 hex digits: overflow
            b"5\r\nhello\r\n0\r\nX: 1\n\r\n", // bare LF in a trailer
            b"5\r\nhello\r\n0\r\n\r\r",       // CR not followed by LF
        ] {
            assert!(
                decode_all(bad, 1).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// The decoder as it was before framing was stepped in place: one byte taken and stepped
    /// at a time (and a finished chunk's CRLF stepped with its data, when it is there). Same
    /// results, same bytes left behind.
    fn decode_byte_at_a_time(
        chunked: &mut Chunked,
        buf: &mut BytesMut,
    ) -> Result<Decoded, Malformed> {
        loop {
            if chunked.state == State::Done {
                return Ok(Decoded::End);
            }
            if chunked.state == State::Data {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let take = chunked.size.min(buf.len() as u64) as usize;
                chunked.size -= take as u64;
                let data = buf.split_to(take).freeze();
                if chunked.size == 0 {
                    chunked.state = State::DataCr;
                    if buf.starts_with(b"\r\n") {
                        chunked.step(buf.get_u8())?;
                        chunked.step(buf.get_u8())?;
                    }
                }
                return Ok(Decoded::Data(data));
            }
            let Some(&byte) = buf.first() else {
                return Ok(Decoded::NeedMore);
            };
            buf.advance(1);
            chunked.step(byte)?;
        }
    }

    /// Random bodies, well-formed and not (sizes, extensions, trailers, stray CR, LF, signs
    /// and spaces), cut into random pieces: every call gives what the byte-at-a-time decoder
    /// gives, and leaves the same bytes in the buffer.
    #[test]
    fn framing_stepped_in_place_decodes_as_byte_at_a_time() {
        const PARTS: [&[u8]; 16] = [
            b"5",
            b"a",
            b"F",
            b"0",
            b"\r\n",
            b"\r",
            b"\n",
            b";x=y",
            b"hello",
            b"X: 1",
            b" ",
            b"+",
            b"g",
            b"0\r\n\r\n",
            b"fffffffffffffff",
            b"\r\n5\r\n",
        ];
        // The edges of a plain size line, certain to be tried: the most digits and one more.
        const EDGES: [&[u8]; 6] = [
            b"ffffffffffffffff\r\nab",
            b"10000000000000000\r\nab",
            b"5\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\r\n",
            b"5\r\nhello\r\n\r\n",
            b"A\r\n",
        ];
        let mut rng = fastrand::Rng::with_seed(15);
        for round in 0..20_000 {
            let input: Vec<u8> = match EDGES.get(round % 100) {
                Some(edge) => edge.to_vec(),
                None => (0..rng.usize(1..12))
                    .flat_map(|_| PARTS[rng.usize(..PARTS.len())].iter().copied())
                    .collect(),
            };
            let (mut fast, mut slow) = (Decoder::chunked(), Decoder::chunked());
            let Decoder::Chunked(slow_state) = &mut slow else {
                unreachable!("made chunked")
            };
            let (mut fast_buf, mut slow_buf) = (BytesMut::new(), BytesMut::new());
            let mut fed = 0;
            loop {
                let got = fast.decode(&mut fast_buf);
                let want = decode_byte_at_a_time(slow_state, &mut slow_buf);
                assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&input));
                assert_eq!(fast_buf, slow_buf, "{:?}", String::from_utf8_lossy(&input));
                match got {
                    Ok(Decoded::NeedMore) if fed < input.len() => {
                        // Whole at first, for the edges; in random pieces after.
                        let piece = if round < 100 {
                            input.len()
                        } else {
                            rng.usize(1..8)
                        };
                        let end = (fed + piece).min(input.len());
                        fast_buf.extend_from_slice(&input[fed..end]);
                        slow_buf.extend_from_slice(&input[fed..end]);
                        fed = end;
                    }
                    Ok(Decoded::Data(_)) => {}
                    _ => break,
                }
            }
        }
    }

    #[test]
    fn the_largest_size_is_taken_and_counted_down() {
        let mut decoder = Decoder::chunked();
        let mut buf = BytesMut::from(&b"ffffffffffffffff\r\nab"[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"ab")))
        );
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::NeedMore));
    }

    /// An event streamed whole leaves nothing in the buffer once its data is out, so the body
    /// reading it goes to the socket next; a line end not all there is stepped later.
    #[test]
    fn a_whole_chunk_takes_its_line_end_with_it() {
        let mut decoder = Decoder::chunked();
        let mut buf = BytesMut::from(&b"5\r\nhello\r\n"[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"hello")))
        );
        assert!(buf.is_empty());
        buf.extend_from_slice(b"2\r\nab\r");
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"ab")))
        );
        assert_eq!(&buf[..], b"\r");
        buf.extend_from_slice(b"x");
        assert_eq!(
            decoder.decode(&mut buf),
            Err(Malformed("CR not followed by LF in chunked body"))
        );
    }

    #[test]
    fn a_length_body_stops_at_its_length() {
        let mut decoder = Decoder::length(3);
        let mut buf = BytesMut::from(&b"abcGET"[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"abc")))
        );
        assert!(decoder.is_done());
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::End));
        assert_eq!(&buf[..], b"GET");
    }

    #[test]
    fn long_extensions_and_trailers_are_bounded() {
        let mut long_extension = b"1;".to_vec();
        long_extension.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
        assert!(decode_all(&long_extension, 4096).is_err());
        let mut many_trailers = b"0\r\n".to_vec();
        for _ in 0..(MAX_TRAILERS / 8 + 1) {
            many_trailers.extend_from_slice(b"X: 1234\r\n");
        }
        assert!(decode_all(&many_trailers, 4096).is_err());
    }
}
