//! How a value goes into a log line: nginx's `escape=default|json|none`, and `-` for a value
//! that is not there. Pure std.

use crate::config::LogEscape;

const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";
const LOWER_HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `value` to `line` as `escape` says. An empty value that is not a value of its own
/// (an absent header, no upstream) is `-`, as nginx logs it, except in JSON where it is empty.
pub fn push_value(escape: LogEscape, value: &[u8], empty_is_value: bool, line: &mut Vec<u8>) {
    if value.is_empty() {
        if !empty_is_value && escape != LogEscape::Json {
            line.push(b'-');
        }
        return;
    }
    match escape {
        LogEscape::None => line.extend_from_slice(value),
        LogEscape::Default => push_default(value, line),
        LogEscape::Json => push_json(value, line),
    }
}

/// nginx's default: `"`, `\`, control bytes and everything from 0x7f up as `\xHH`.
fn push_default(value: &[u8], line: &mut Vec<u8>) {
    let plain = |b: u8| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
    // The common case, nothing to escape, is one copy.
    if value.iter().all(|&b| plain(b)) {
        line.extend_from_slice(value);
        return;
    }
    for &byte in value {
        if plain(byte) {
            line.push(byte);
        } else {
            let hex = [
                b'\\',
                b'x',
                UPPER_HEX[usize::from(byte >> 4)],
                UPPER_HEX[usize::from(byte & 15)],
            ];
            line.extend_from_slice(&hex);
        }
    }
}

/// JSON string content: `"` and `\` backslashed, control bytes as `\n`-style or `\u00hh`;
/// bytes from 0x7f up kept (UTF-8 stays UTF-8), as nginx's `escape=json`.
fn push_json(value: &[u8], line: &mut Vec<u8>) {
    for &byte in value {
        match byte {
            b'"' => line.extend_from_slice(b"\\\""),
            b'\\' => line.extend_from_slice(b"\\\\"),
            b'\n' => line.extend_from_slice(b"\\n"),
            b'\r' => line.extend_from_slice(b"\\r"),
            b'\t' => line.extend_from_slice(b"\\t"),
            0x08 => line.extend_from_slice(b"\\b"),
            0x0c => line.extend_from_slice(b"\\f"),
            0..0x20 => {
                let hex = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    LOWER_HEX[usize::from(byte >> 4)],
                    LOWER_HEX[usize::from(byte & 15)],
                ];
                line.extend_from_slice(&hex);
            }
            _ => line.push(byte),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(escape: LogEscape, value: &[u8], empty_is_value: bool) -> String {
        let mut line = Vec::new();
        push_value(escape, value, empty_is_value, &mut line);
        String::from_utf8(line).unwrap()
    }

    #[test]
    fn nginx_escaping() {
        let raw = b"a\"b\\c\x01\x7f\xc3\xa9 d";
        assert_eq!(
            escaped(LogEscape::Default, raw, false),
            "a\\x22b\\x5Cc\\x01\\x7F\\xC3\\xA9 d"
        );
        assert_eq!(
            escaped(LogEscape::Json, b"a\"b\\c\n\x01\xc3\xa9", false),
            "a\\\"b\\\\c\\n\\u0001\u{e9}"
        );
        assert_eq!(escaped(LogEscape::None, raw, false).as_bytes(), raw);
        assert_eq!(escaped(LogEscape::Default, b"", false), "-");
        assert_eq!(escaped(LogEscape::Default, b"", true), "");
        assert_eq!(escaped(LogEscape::Json, b"", false), "");
    }
}
