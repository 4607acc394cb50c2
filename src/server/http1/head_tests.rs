use super::*;

fn rules() -> HeadRules {
    HeadRules::default()
}

/// Scans `input` fed `step` bytes at a time, then parses the head found.
fn read(input: &[u8], step: usize, rules: &HeadRules) -> Result<RequestHead, Rejection> {
    let mut scanner = HeadScanner::default();
    let mut buf = Vec::new();
    for piece in input.chunks(step) {
        buf.extend_from_slice(piece);
        if let Some(len) = scanner.scan(&buf, rules)? {
            return parse(&Bytes::copy_from_slice(&buf[..len]), rules);
        }
    }
    panic!("no complete head in {:?}", String::from_utf8_lossy(input));
}

fn ok(input: &str) -> RequestHead {
    read(input.as_bytes(), input.len(), &rules()).unwrap()
}

fn refused(input: &str) -> Rejection {
    read(input.as_bytes(), input.len(), &rules()).unwrap_err()
}

#[test]
fn a_plain_head_reads_the_same_however_it_arrives() {
    let input = b"\r\nPOST /up?x=1 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello";
    for step in [1, 2, 5, input.len()] {
        let head = read(input, step, &rules()).unwrap();
        assert_eq!(head.method, Method::POST);
        assert_eq!(head.uri, "/up?x=1");
        assert_eq!(head.version, Version::HTTP_11);
        assert_eq!(head.framing, Framing::Length(5));
        assert!(head.keep_alive);
        let values: Vec<_> = head.headers.get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
    }
}

#[test]
fn the_scanner_stops_at_the_blank_line_and_leaves_the_body() {
    let mut scanner = HeadScanner::default();
    let buf = b"GET / HTTP/1.1\nHost: a\n\nNEXT";
    assert_eq!(scanner.scan(buf, &rules()), Ok(Some(buf.len() - 4)));
}

#[test]
fn framing_and_connection_follow_the_headers() {
    assert_eq!(
        ok("GET / HTTP/1.1\r\nHost: a\r\n\r\n").framing,
        Framing::Empty
    );
    let chunked = ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n");
    assert_eq!(chunked.framing, Framing::Chunked);
    assert!(!ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive);
    assert!(!ok("GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(ok("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
    let keep_then_close = "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n";
    assert!(!ok(keep_then_close).keep_alive);
    assert!(
        ok("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
            .expect_continue
    );
    assert!(
        !ok("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").expect_continue
    );
}

#[test]
fn smuggling_shapes_are_refused() {
    let cases = [
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            501,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
            501,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        // Space before the colon, obs-fold, NUL in a value.
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
            400,
        ),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 400),
    ];
    for (input, status) in cases {
        assert_eq!(refused(input).status.as_u16(), status, "{input:?}");
    }
}

#[test]
fn host_is_required_once_in_http11() {
    assert_eq!(
        refused("GET / HTTP/1.1\r\n\r\n").status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").status,
        StatusCode::BAD_REQUEST
    );
    // HTTP/1.0 may omit it; an absolute-form target carries it.
    ok("GET / HTTP/1.0\r\n\r\n");
    let absolute = ok("GET http://a.test/x HTTP/1.1\r\n\r\n");
    assert_eq!(absolute.uri.host(), Some("a.test"));
    assert_eq!(absolute.uri.path(), "/x");
}

#[test]
fn methods_and_targets_follow_nginx() {
    for input in [
        "get / HTTP/1.1\r\nHost: a\r\n\r\n",
        "G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET a.test:80 HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/9.9\r\nHost: a\r\n\r\n",
        "GET / FTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        assert_eq!(refused(input).status, StatusCode::BAD_REQUEST, "{input:?}");
    }
    assert_eq!(
        refused("TRACE / HTTP/1.1\r\nHost: a\r\n\r\n").status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        refused("CONNECT a.test:443 HTTP/1.1\r\nHost: a.test\r\n\r\n").status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        ok("PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n").method.as_str(),
        "PROPFIND"
    );
}

#[test]
fn line_and_head_sizes_are_bounded_while_they_arrive() {
    let rules = HeadRules {
        max_line: 1024,
        max_head: 4096,
        ..HeadRules::default()
    };
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(1100));
    let refusal = read(long_target.as_bytes(), 7, &rules).unwrap_err();
    assert_eq!(refusal.status, StatusCode::URI_TOO_LONG);

    // Refused before the line ends: the rest need never arrive.
    let mut scanner = HeadScanner::default();
    let unending = format!("GET /{}", "a".repeat(1100));
    assert_eq!(scanner.scan(unending.as_bytes(), &rules), Err(URI_TOO_LONG));

    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nCookie: {}\r\n\r\n",
        "c".repeat(1100)
    );
    let refusal = read(long_header.as_bytes(), 64, &rules).unwrap_err();
    assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
    assert_eq!(refusal.title, Some("Request Header Or Cookie Too Large"));

    let many_lines: String = (0..60)
        .map(|i| format!("X-{i}: {}\r\n", "v".repeat(60)))
        .collect();
    let big_head = format!("GET / HTTP/1.1\r\nHost: a\r\n{many_lines}\r\n");
    let refusal = read(big_head.as_bytes(), 100, &rules).unwrap_err();
    assert_eq!(refusal.title, Some("Request Header Or Cookie Too Large"));
}

#[test]
fn too_many_header_lines_is_431() {
    let rules = HeadRules {
        max_headers: 3,
        ..HeadRules::default()
    };
    let input = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    let refusal = read(input.as_bytes(), input.len(), &rules).unwrap_err();
    assert_eq!(refusal.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // More than fit on the stack take the heap, and still count.
    let rules = HeadRules {
        max_headers: 300,
        ..HeadRules::default()
    };
    let lines: String = (0..250).map(|i| format!("X-{i}: 1\r\n")).collect();
    let input = format!("GET / HTTP/1.1\r\nHost: a\r\n{lines}\r\n");
    let head = read(input.as_bytes(), input.len(), &rules).unwrap();
    assert_eq!(head.headers.len(), 251);
}

#[test]
fn header_names_nginx_calls_invalid_are_dropped_unless_allowed() {
    let input =
        "GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\nX.Dot: 1\r\nX-Ok: 1\r\n\r\n";
    let head = ok(input);
    assert_eq!(head.dropped_headers, 2);
    assert!(head.headers.get("x_forwarded_for").is_none());
    assert!(head.headers.get("x-ok").is_some());
    let lenient = HeadRules {
        underscores: true,
        ..HeadRules::default()
    };
    let head = read(input.as_bytes(), input.len(), &lenient).unwrap();
    assert_eq!(head.dropped_headers, 1);
    assert_eq!(head.headers["x_forwarded_for"], "6.6.6.6");
    let anything = HeadRules {
        ignore_invalid: false,
        ..HeadRules::default()
    };
    assert_eq!(
        read(input.as_bytes(), input.len(), &anything)
            .unwrap()
            .dropped_headers,
        0
    );
}

#[test]
fn a_header_name_is_allowed_exactly_as_nginx_checks_each_byte() {
    let nginx = |name: &[u8], rules: &HeadRules| {
        name.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || b == b'-'
                || (b == b'_' && rules.underscores)
                || !rules.ignore_invalid
        })
    };
    let all_rules = [(true, true), (true, false), (false, true), (false, false)].map(
        |(underscores, ignore_invalid)| HeadRules {
            underscores,
            ignore_invalid,
            ..HeadRules::default()
        },
    );
    for rules in &all_rules {
        for byte in 0..=255u8 {
            for name in [vec![byte], vec![b'X', byte, b'a'], vec![b'a'; 40]] {
                assert_eq!(name_allowed(&name, rules), nginx(&name, rules), "{name:?}");
            }
            let mut long = b"Content-Type-And-More".to_vec();
            long.push(byte);
            assert_eq!(name_allowed(&long, rules), nginx(&long, rules), "{long:?}");
        }
    }
}

#[test]
fn a_trickled_head_is_scanned_in_linear_time() {
    // Each byte is looked at once: a slowloris feeding one byte per read costs no more than
    // the same head read at once. Counted, not timed: the scanner's position only moves ahead.
    let input = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "v".repeat(8000)
    );
    let mut scanner = HeadScanner::default();
    let mut positions = Vec::new();
    for end in 1..=input.len() {
        let found = scanner.scan(&input.as_bytes()[..end], &rules()).unwrap();
        positions.push(scanner.scanned);
        if found.is_some() {
            assert_eq!(end, input.len());
        }
    }
    assert!(positions.windows(2).all(|w| w[1] == w[0] + 1));
}

#[test]
fn a_line_of_exactly_the_limit_passes_even_when_its_cr_arrives_alone() {
    // Found by the property test: fed byte by byte, the CR of a line at the limit was counted
    // as part of the line before its LF arrived, and the head was refused; whole, it passed.
    let rules = HeadRules {
        max_line: 20,
        ..HeadRules::default()
    };
    let input = b"GET /aaaaaa HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(input.iter().position(|&b| b == b'\r'), Some(20));
    for step in [1, 21, input.len()] {
        let head = read(input, step, &rules).unwrap();
        assert_eq!(head.uri, "/aaaaaa", "step {step}");
    }
}

#[test]
fn an_upgrade_request_is_known_from_the_one_pass_over_its_lines() {
    let upgrade = "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n\
                   Upgrade: websocket\r\n\r\n";
    assert!(ok(upgrade).upgrade);
    // Both lines are needed, and HTTP/1.1: what `requested_upgrade` reads.
    assert!(!ok("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").upgrade);
    assert!(!ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n").upgrade);
    let old = "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    assert!(!ok(old).upgrade);
    for input in [upgrade, old] {
        let head = ok(input);
        let read = crate::proxy::headers::requested_upgrade(head.version, &head.headers);
        assert_eq!(head.upgrade, read.is_some(), "{input:?}");
    }
}

/// What the scanner's way makes of `input` arriving whole: the head (or refusal) and the
/// bytes after it; None while it is incomplete.
fn scanned_whole(input: &[u8], rules: &HeadRules) -> Option<(Result<String, Rejection>, Vec<u8>)> {
    let mut scanner = HeadScanner::default();
    match scanner.scan(input, rules) {
        Ok(Some(len)) => {
            let parsed = parse(&Bytes::copy_from_slice(&input[..len]), rules);
            Some((
                parsed.map(|head| format!("{head:?}")),
                input[len..].to_vec(),
            ))
        }
        Ok(None) => None,
        Err(rejection) => Some((Err(rejection), Vec::new())),
    }
}

proptest::proptest! {
    /// Whatever arrived, reading it at once gives what the scanner's way gives — the same head
    /// and the same bytes left after it, or the same refusal — or leaves it to the scanner.
    #[test]
    fn a_head_read_at_once_is_the_head_the_scanner_finds(
        leading in proptest::sample::select(vec!["", "\r\n", "\n"]),
        request_line in proptest::sample::select(vec![
            "GET / HTTP/1.1", "POST /a?b HTTP/1.1", "GET http://h/x HTTP/1.1", "GET / HTTP/1.0",
            "get / HTTP/1.1", "GET /\r HTTP/1.1", "GET /a-rather-long-target-0123456789 HTTP/1.1",
        ]),
        lines in proptest::collection::vec(proptest::sample::select(vec![
            "Host: a", "host: b", "Content-Length: 3", "Content-Length: 4",
            "Transfer-Encoding: chunked", "Connection: close", "X_Y: 1", " folded", "X: a\rb",
            "Cookie: a-long-cookie-value-0123456789-0123456789", "Upgrade: websocket",
            "Connection: upgrade", "Bad Name: 1", "X:\t1 ",
        ]), 0..6),
        ends in proptest::collection::vec(proptest::sample::select(vec!["\r\n", "\n"]), 8),
        after in proptest::sample::select(vec!["", "abc", "GET / HTTP/1.1\r\n"]),
    ) {
        let mut input = format!("{leading}{request_line}{}", ends[0]);
        for (at, line) in lines.iter().enumerate() {
            input.push_str(line);
            input.push_str(ends[at + 1]);
        }
        input.push_str(ends[7]);
        input.push_str(after);
        let rules = HeadRules {
            max_line: 48,
            max_head: 160,
            max_headers: 4,
            ..HeadRules::default()
        };
        let mut read = BytesMut::from(input.as_bytes());
        if let Some(parsed) = parse_read(&mut read, &rules) {
            let at_once = (parsed.map(|head| format!("{head:?}")), read.to_vec());
            let scanned = scanned_whole(input.as_bytes(), &rules);
            match (&at_once, &scanned) {
                // A refusal leaves nothing to read after it on either way.
                ((Err(ours), _), Some((Err(theirs), _))) => proptest::prop_assert_eq!(ours, theirs),
                _ => proptest::prop_assert_eq!(Some(at_once), scanned),
            }
        }
    }
}

#[test]
fn a_head_in_one_read_is_read_at_once_and_leaves_the_rest() {
    let mut read =
        BytesMut::from(&b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"[..]);
    let head = parse_read(&mut read, &rules()).unwrap().unwrap();
    assert_eq!(
        (head.method, head.framing),
        (Method::POST, Framing::Length(5))
    );
    assert_eq!(head.headers.get("host").unwrap(), "a");
    assert_eq!(&read[..], b"hello");
    // Empty values are slices of the head too.
    let mut read =
        BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Blank:   \r\n\r\n"[..]);
    let head = parse_read(&mut read, &rules()).unwrap().unwrap();
    assert_eq!(head.headers.get("x-empty").unwrap(), "");
    assert_eq!(head.headers.get("x-blank").unwrap(), "");
    // Incomplete, or longer than a line may be: left to the scanner, nothing taken.
    for input in [
        &b"GET / HTTP/1.1\r\nHost: a\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let rules = HeadRules {
            max_line: 20,
            ..HeadRules::default()
        };
        let mut read = BytesMut::from(input);
        assert!(parse_read(&mut read, &rules).is_none());
        assert_eq!(&read[..], input);
    }
}
