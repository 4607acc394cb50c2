//! The path normaliser and escaper against nginx's rules: clean paths borrowed, dots, slashes
//! and escapes resolved, broken paths refused.

use super::*;

fn normal(path: &str) -> Result<String, BadPath> {
    normalise(path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

#[test]
fn plain_paths_are_borrowed_unchanged() {
    for path in [
        "/",
        "/a/b",
        "/a/b/",
        "/a.b/c..d",
        "/a/b...",
        "/;x=1",
        "*",
        "/caf\u{e9}",
    ] {
        assert!(
            matches!(normalise(path), Ok(Cow::Borrowed(p)) if p == path.as_bytes()),
            "{path}"
        );
    }
}

#[test]
fn dots_slashes_and_escapes_resolve_as_in_nginx() {
    let cases = [
        ("/x/../admin/x", "/admin/x"),
        ("/%61dmin/x", "/admin/x"),
        ("//admin/x", "/admin/x"),
        ("/./admin/x", "/admin/x"),
        ("/admin%2Fx", "/admin/x"),
        ("/x/%2e%2E/admin", "/admin"),
        ("/x/y/..%2f..%2Fz", "/z"),
        ("/a//b///c", "/a/b/c"),
        ("/a/.", "/a/"),
        ("/a/..", "/"),
        ("/a/b/..", "/a/"),
        ("/a/./b/./", "/a/b/"),
        ("/a/.b/..c/...", "/a/.b/..c/..."),
        ("/a/b/../../c", "/c"),
        ("/a%20b", "/a b"),
        ("/caf%C3%A9", "/caf\u{e9}"),
        // Encoded `%`, `?` and `#` are ordinary characters, never decoded twice.
        ("/a%25b", "/a%b"),
        ("/a%252e", "/a%2e"),
        ("/a%3Fb%23c", "/a?b#c"),
        // A decoded `%` or `?` leaves the dot state: `/.%25` is a segment, not `/.`.
        ("/.%25/x", "/.%/x"),
    ];
    for (path, want) in cases {
        assert_eq!(normal(path).as_deref(), Ok(want), "{path}");
    }
    assert_eq!(normalise("/a%FF").as_deref(), Ok(&b"/a\xff"[..]));
}

#[test]
fn invalid_paths_are_refused() {
    let cases = [
        ("/..", BadPath::AboveRoot),
        ("/../a", BadPath::AboveRoot),
        ("/a/../..", BadPath::AboveRoot),
        ("/a/b/../../../c", BadPath::AboveRoot),
        ("/%2e%2e/a", BadPath::AboveRoot),
        ("/a%zz", BadPath::BrokenEscape),
        ("/a%", BadPath::BrokenEscape),
        ("/a%4", BadPath::BrokenEscape),
        ("/a%4g", BadPath::BrokenEscape),
        ("/a%00b", BadPath::EncodedNul),
    ];
    for (path, want) in cases {
        assert_eq!(normal(path), Err(want), "{path}");
    }
}

#[test]
fn escape_encodes_what_nginx_encodes() {
    let mut out = Vec::new();
    escape(
        b"/a b%c?d#e\"<>\\^`{|}~\x01\x7f\xc3\xa9;:@!$&'()*+,=[]",
        &mut out,
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "/a%20b%25c%3Fd%23e%22%3C%3E%5C%5E%60%7B%7C%7D~%01%7F%C3%A9;:@!$&'()*+,=[]"
    );
}
