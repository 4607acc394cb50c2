//! How a value goes into a log line: nginx's `escape=default|json|none`, and `-` for a value
//! that is not there. Pure std.
//!
//! Values are rendered straight into the line and checked there: the common value needs no
//! escaping and costs one scan; only one that does is taken out and written back escaped.

use crate::config::LogEscape;

const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";
const LOWER_HEX: &[u8; 16] = b"0123456789abcdef";

/// Escapes, as `escape` says, the value rendered into `line` from `start` on. An empty value
/// that is not a value of its own (an absent header, no upstream) becomes `-`, as nginx logs
/// it, except in JSON where it stays empty.
pub fn settle(escape: LogEscape, line: &mut String, start: usize, empty_is_value: bool) {
    let value = &line.as_bytes()[start.min(line.len())..];
    if value.is_empty() {
        dash_if_empty(escape, line, start, empty_is_value);
        return;
    }
    let clean = match escape {
        LogEscape::None => true,
        LogEscape::Default => all_plain(value),
        LogEscape::Json => value.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\'),
    };
    if !clean {
        escape_in_place(escape, line, start);
    }
}

/// Rare: a value with something to escape is taken out and written back. (Out of line, so
/// that the common path stays small.)
#[inline(never)]
fn escape_in_place(escape: LogEscape, line: &mut String, start: usize) {
    let raw = line.split_off(start);
    match escape {
        LogEscape::Default => push_default(raw.as_bytes(), line),
        _ => push_json(&raw, line),
    }
}

/// Writes `-` for a value rendered empty from `start` on (see [`settle`]); for a value that
/// needs no escaping.
pub fn dash_if_empty(escape: LogEscape, line: &mut String, start: usize, empty_is_value: bool) {
    if line.len() <= start && !empty_is_value && escape != LogEscape::Json {
        line.push('-');
    }
}

/// Appends the bytes of a request's value as `escape` says, as [`settle`] would have left
/// them rendered. With nginx's default escaping they are escaped as they are, byte for byte
/// as nginx does (text that is not UTF-8 included); the common plain value is scanned once and
/// copied whole.
pub fn push_bytes(escape: LogEscape, line: &mut String, bytes: &[u8], empty_is_value: bool) {
    if escape == LogEscape::Default && all_plain(bytes) {
        // SAFETY: every byte is plain, so printable ASCII, so `bytes` is UTF-8.
        line.push_str(unsafe { std::str::from_utf8_unchecked(bytes) });
        dash_if_empty(escape, line, line.len() - bytes.len(), empty_is_value);
        return;
    }
    push_escaped(escape, line, bytes, empty_is_value);
}

/// [`push_bytes`] for bytes with something to escape, or another escaping than nginx's
/// default. (Out of line, so that the common path stays small.)
#[inline(never)]
fn push_escaped(escape: LogEscape, line: &mut String, bytes: &[u8], empty_is_value: bool) {
    if escape == LogEscape::Default {
        push_default(bytes, line);
        return;
    }
    // `escape=none` and `escape=json` keep text as text: what is not UTF-8 becomes U+FFFD.
    let start = line.len();
    line.push_str(&String::from_utf8_lossy(bytes));
    settle(escape, line, start, empty_is_value);
}

fn plain(byte: u8) -> bool {
    (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\'
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether some byte of `word` is below `n` (at most 0x80): exact, the classic bit trick.
fn has_below(word: u64, n: u8) -> bool {
    word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS != 0
}

/// Whether every byte is [`plain`], eight at a time: a log line's values are scanned on every
/// request, and almost all of them are plain.
fn all_plain(value: &[u8]) -> bool {
    let mut words = value.chunks_exact(8);
    for chunk in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let word = u64::from_ne_bytes(bytes);
        // 0x7f and up: adding one sets the high bit of 0x7f, and the rest have it already (a
        // carry out of a byte only happens from one that is not plain anyway).
        let high = (word.wrapping_add(ONES) | word) & HIGHS != 0;
        if high
            || has_below(word, 0x20)
            || has_below(word ^ (ONES * u64::from(b'"')), 1)
            || has_below(word ^ (ONES * u64::from(b'\\')), 1)
        {
            return false;
        }
    }
    words.remainder().iter().all(|&b| plain(b))
}

/// nginx's default: `"`, `\`, control bytes and everything from 0x7f up as `\xHH` (so the
/// result is ASCII).
fn push_default(value: &[u8], line: &mut String) {
    for &byte in value {
        if plain(byte) {
            line.push(char::from(byte));
        } else {
            line.push_str("\\x");
            line.push(char::from(UPPER_HEX[usize::from(byte >> 4)]));
            line.push(char::from(UPPER_HEX[usize::from(byte & 15)]));
        }
    }
}

/// JSON string content: `"` and `\` backslashed, control characters as `\n`-style or
/// `\u00hh`; everything else kept (UTF-8 stays UTF-8), as nginx's `escape=json`.
fn push_json(value: &str, line: &mut String) {
    for c in value.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            '\u{8}' => line.push_str("\\b"),
            '\u{c}' => line.push_str("\\f"),
            '\0'..='\u{1f}' => {
                let byte = c as u8;
                line.push_str("\\u00");
                line.push(char::from(LOWER_HEX[usize::from(byte >> 4)]));
                line.push(char::from(LOWER_HEX[usize::from(byte & 15)]));
            }
            _ => line.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(escape: LogEscape, value: &str, empty_is_value: bool) -> String {
        let mut line = String::from("x=");
        line.push_str(value);
        settle(escape, &mut line, 2, empty_is_value);
        line[2..].to_string()
    }

    #[test]
    fn the_word_scan_agrees_with_the_byte_test() {
        for position in 0..16 {
            for byte in 0..=255u8 {
                let mut value = *b"0123456789abcdef";
                value[position] = byte;
                assert_eq!(all_plain(&value), plain(byte), "{byte:#x} at {position}");
            }
        }
    }

    #[test]
    fn nginx_escaping() {
        let raw = "a\"b\\c\x01\x7f\u{e9} d";
        assert_eq!(
            escaped(LogEscape::Default, raw, false),
            "a\\x22b\\x5Cc\\x01\\x7F\\xC3\\xA9 d"
        );
        assert_eq!(
            escaped(LogEscape::Json, "a\"b\\c\n\x01\u{e9}", false),
            "a\\\"b\\\\c\\n\\u0001\u{e9}"
        );
        assert_eq!(escaped(LogEscape::None, raw, false), raw);
        assert_eq!(
            escaped(LogEscape::Default, "plain text", false),
            "plain text"
        );
        assert_eq!(escaped(LogEscape::Default, "", false), "-");
        assert_eq!(escaped(LogEscape::Default, "", true), "");
        assert_eq!(escaped(LogEscape::Json, "", false), "");
    }
}
