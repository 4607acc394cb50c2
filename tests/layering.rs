//! The layering rule of DESIGN.md, checked on the source text: the pure layers (`config`,
//! `balance`, `route`, `vars`, `realip`, `limits`), `snapshot` and `telemetry` name no hyper,
//! no tokio networking and no socket type; the demo imports nothing of tether.
//!
//! A text check, not a compiler one. It reads the code with comments and literals blanked out,
//! so a doc line saying "no hyper" is not a breach, and it matches across lines, so an import
//! that rustfmt spread over several (`use std::net::{\n    SocketAddr,\n    TcpStream,\n};`) is
//! still seen. `.ci/run` runs it with the rest of `cargo test`.

use std::path::{Path, PathBuf};

use regex::Regex;

/// Folders and files (relative to `src/`) that must stay free of network code.
const PURE: [&str; 16] = [
    "config",
    "rewrite",
    "balance",
    "route",
    "vars",
    "vars.rs",
    "snapshot",
    "snapshot.rs",
    // Counts and pages; the proxy turns a page into a response.
    "telemetry",
    "realip.rs",
    "realip_tests.rs",
    // Which responses are gzipped, and the compressor: http types and flate2 only.
    "compress",
    // Zones and buckets; the proxy waits out a delay.
    "limits",
    // The byte-budget LRU table under limits and sessions.
    "lru.rs",
    // sticky learn's session zones and handshake scanning; the sync worker lives above.
    "sessions",
    // The group at run time: stickiness, learning, the walk over tiers.
    "upstream",
];

/// What the pure layers must not name, each with why it is named here.
const NETWORK: [(&str, &str); 4] = [
    (r"\bhyper(_util)?\b", "hyper"),
    (r"\btokio\s*::\s*net\b", "tokio::net"),
    (r"\buse\s+tokio\s*::\s*\{[^;]*\bnet\b", "tokio::net"),
    (r"\b(TcpStream|TcpListener|UdpSocket)\b", "a socket type"),
];

/// What the demo must not name: anything of tether (it stands in for someone else's app).
const TETHER: [(&str, &str); 2] = [
    (r"\bcrate\s*::", "the tether crate"),
    (r"\btether\s*::", "the tether crate"),
];

#[test]
fn pure_layers_name_no_hyper_no_tokio_networking_and_no_socket() {
    let rules = compile(&NETWORK);
    let breaches: Vec<String> = PURE
        .iter()
        .flat_map(|place| rust_files(&src().join(place)))
        .flat_map(|file| breaches(&file, &rules))
        .collect();
    assert!(
        breaches.is_empty(),
        "the pure layers must not reach the network (DESIGN.md, layering):\n{}",
        breaches.join("\n")
    );
}

#[test]
fn the_demo_imports_nothing_of_tether() {
    let rules = compile(&TETHER);
    let breaches: Vec<String> = rust_files(&src().join("demo"))
        .iter()
        .flat_map(|file| breaches(file, &rules))
        .collect();
    assert!(
        breaches.is_empty(),
        "the demo must stand apart from tether (src/demo/mod.rs):\n{}",
        breaches.join("\n")
    );
}

#[test]
fn the_check_sees_imports_across_lines_and_ignores_comments_and_literals() {
    let code = r####"
//! This layer knows no hyper and no tokio::net.
use std::net::{
    SocketAddr,
    TcpStream,
};
/* a block comment: hyper::Request, /* nested */ UdpSocket */
const TEXT: &str = "hyper::Body and TcpListener";
const RAW: &str = r#"tokio::net::TcpListener"#;
const QUOTE: char = '"';
fn uses<'a>(x: &'a str) -> &'a str { x }
use tokio::{
    io::AsyncRead,
    net::lookup_host,
};
type Client = hyper_util::client::legacy::Client;
"####;
    let blanked = blank(code);
    let mut found: Vec<(usize, &str)> = Vec::new();
    for (rule, why) in compile(&NETWORK) {
        for m in rule.find_iter(&blanked) {
            found.push((line_of(&blanked, m.start()), why));
        }
    }
    found.sort();
    assert_eq!(
        found,
        [(5, "a socket type"), (12, "tokio::net"), (16, "hyper")],
        "blanked:\n{blanked}"
    );
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn compile(rules: &[(&str, &'static str)]) -> Vec<(Regex, &'static str)> {
    rules
        .iter()
        .map(|&(pattern, why)| (Regex::new(pattern).expect("a valid rule"), why))
        .collect()
}

/// Every `.rs` file at or under `place` (none if it does not exist).
fn rust_files(place: &Path) -> Vec<PathBuf> {
    if place.is_file() {
        return vec![place.to_path_buf()];
    }
    let Ok(entries) = std::fs::read_dir(place) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flat_map(|entry| rust_files(&entry.expect("a readable folder").path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    files.sort();
    files
}

/// `file:line: names WHAT` for every rule the file's code breaks.
fn breaches(file: &Path, rules: &[(Regex, &str)]) -> Vec<String> {
    let text = std::fs::read_to_string(file).expect("a readable source file");
    let code = blank(&text);
    let shown = file.strip_prefix(src().parent().expect("the crate folder"));
    let shown = shown.unwrap_or(file).display().to_string();
    let mut found = Vec::new();
    for (rule, why) in rules {
        for m in rule.find_iter(&code) {
            let line = line_of(&code, m.start());
            found.push(format!("{shown}:{line}: names {why} ({:?})", m.as_str()));
        }
    }
    found
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// The code with comments, string and character literals replaced by spaces (newlines kept,
/// so offsets still give the right line).
fn blank(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    let wipe = |out: &mut Vec<u8>, from: usize, to: usize| {
        for byte in &mut out[from..to.min(bytes.len())] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
    };
    while i < bytes.len() {
        let rest = &bytes[i..];
        let end = if rest.starts_with(b"//") {
            rest.iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |n| i + n)
        } else if rest.starts_with(b"/*") {
            block_comment_end(bytes, i)
        } else if let Some(hashes) = raw_string_start(bytes, i) {
            raw_string_end(bytes, i, hashes)
        } else if rest[0] == b'"' {
            quoted_end(bytes, i, b'"')
        } else if rest[0] == b'\'' && is_char_literal(rest) {
            quoted_end(bytes, i, b'\'')
        } else {
            i += 1;
            continue;
        };
        wipe(&mut out, i, end);
        i = end;
    }
    // Only ASCII bytes were replaced, by ASCII spaces, so the text is still UTF-8.
    String::from_utf8(out).expect("blanking keeps UTF-8")
}

/// Just past the `*/` closing the (possibly nested) block comment opened at `start`.
fn block_comment_end(bytes: &[u8], start: usize) -> usize {
    let (mut depth, mut i) = (0, start);
    while i + 1 < bytes.len() {
        match &bytes[i..i + 2] {
            b"/*" => (depth, i) = (depth + 1, i + 2),
            b"*/" => {
                (depth, i) = (depth - 1, i + 2);
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The number of `#` of a raw string (`r"`, `r#"`, `br##"`...) starting at `i`, if one does.
fn raw_string_start(bytes: &[u8], i: usize) -> Option<usize> {
    let at_word_start = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
    let mut j = i;
    if bytes.get(j) == Some(&b'b') {
        j += 1;
    }
    if !at_word_start || bytes.get(j) != Some(&b'r') {
        return None;
    }
    let hashes = bytes[j + 1..].iter().take_while(|&&b| b == b'#').count();
    (bytes.get(j + 1 + hashes) == Some(&b'"')).then_some(hashes)
}

/// Just past the raw string starting at `i` with `hashes` hashes.
fn raw_string_end(bytes: &[u8], i: usize, hashes: usize) -> usize {
    let open = bytes[i..]
        .iter()
        .position(|&b| b == b'"')
        .map_or(i, |n| i + n);
    let mut closing = vec![b'"'];
    closing.extend(std::iter::repeat_n(b'#', hashes));
    bytes[open + 1..]
        .windows(closing.len())
        .position(|window| window == closing.as_slice())
        .map_or(bytes.len(), |n| open + 1 + n + closing.len())
}

/// Just past the literal opened by `quote` at `start`, escapes honoured.
fn quoted_end(bytes: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == quote => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// A `'` opening a character literal (`'a'`, `'\n'`, `'"'`, `'é'`), not a lifetime (`'a`).
fn is_char_literal(rest: &[u8]) -> bool {
    match rest.get(1) {
        Some(b'\\') => true,
        Some(_) => {
            // One character, however many UTF-8 bytes, then the closing quote.
            let width = std::str::from_utf8(&rest[1..rest.len().min(5)])
                .or_else(|e| std::str::from_utf8(&rest[1..1 + e.valid_up_to()]))
                .ok()
                .and_then(|s| s.chars().next())
                .map_or(1, char::len_utf8);
            rest.get(1 + width) == Some(&b'\'')
        }
        None => false,
    }
}
