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
        if !empty_is_value && escape != LogEscape::Json {
            line.push('-');
        }
        return;
    }
    let clean = match escape {
        LogEscape::None => true,
        LogEscape::Default => value.iter().all(|&b| plain(b)),
        LogEscape::Json => value.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\'),
    };
    if clean {
        return;
    }
    // Rare: a value with something to escape is taken out and written back.
    let raw = line.split_off(start);
    match escape {
        LogEscape::Default => push_default(raw.as_bytes(), line),
        _ => push_json(&raw, line),
    }
}

fn plain(byte: u8) -> bool {
    (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\'
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
