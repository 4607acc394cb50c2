use super::*;

fn parse(text: &str, method: &Method) -> Result<Parsed, InvalidHead> {
    let mut buf = BytesMut::from(text.as_bytes());
    parse_response(&mut buf, method, Keeping::default())
}

fn head(text: &str) -> ResponseHead {
    head_keeping(text, Keeping::default())
}

/// The final head of `text`, answering a GET, parsed keeping what `keeping` says.
fn head_keeping(text: &str, keeping: Keeping) -> ResponseHead {
    let mut buf = BytesMut::from(text.as_bytes());
    match parse_response(&mut buf, &Method::GET, keeping) {
        Ok(Parsed::Final(head)) => *head,
        other => panic!("{text:?} parsed as {other:?}"),
    }
}

/// What the proxy keeps of an answer no rule reads: the lines the client will not see left out.
fn leaving_out() -> Keeping {
    Keeping {
        left_out: crate::proxy::headers::left_out_of_responses(0),
        ..Keeping::default()
    }
}

fn refused(text: &str) -> &'static str {
    match parse(text, &Method::GET) {
        Err(InvalidHead(why)) => why,
        other => panic!("{text:?} was not refused: {other:?}"),
    }
}

#[test]
fn a_length_framed_head_keeps_its_headers_and_the_body_stays_in_the_buffer() {
    let mut buf =
        BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Trace: a\r\n\r\nhello"[..]);
    let Ok(Parsed::Final(head)) = parse_response(&mut buf, &Method::GET, Keeping::default()) else {
        panic!("not parsed");
    };
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.framing, ResponseFraming::Length(5));
    assert!(head.keep_alive);
    assert_eq!(head.headers["x-trace"], "a");
    assert_eq!(&buf[..], b"hello");
    let names = head.lines.spellings().unwrap().names().unwrap();
    assert_eq!(names.speller().spell("x-trace"), Some(&b"X-Trace"[..]));
}

#[test]
fn framing_follows_rfc_9112() {
    assert_eq!(
        head("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n").framing,
        ResponseFraming::Chunked
    );
    let until_close = head("HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(until_close.framing, ResponseFraming::UntilClose);
    assert!(!until_close.keep_alive);
    assert_eq!(
        head("HTTP/1.1 204 No Content\r\n\r\n").framing,
        ResponseFraming::None
    );
    assert_eq!(
        head("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n").framing,
        ResponseFraming::None
    );
    let Ok(Parsed::Final(to_head)) = parse(
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
        &Method::HEAD,
    ) else {
        panic!("not parsed");
    };
    assert_eq!(to_head.framing, ResponseFraming::None);
    assert!(
        !head("HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n")
            .keep_alive
    );
    assert!(!head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
}

#[test]
fn interim_heads_are_skipped_but_a_switch_is_final() {
    assert!(matches!(
        parse("HTTP/1.1 100 Continue\r\n\r\n", &Method::POST),
        Ok(Parsed::Interim)
    ));
    let switch = head("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
    assert_eq!(switch.status, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(switch.framing, ResponseFraming::None);
}

#[test]
fn heads_that_could_be_read_two_ways_are_refused() {
    assert!(
        refused("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
            .contains("at the same time")
    );
    assert!(
        refused("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n")
            .contains("duplicate")
    );
    for length in ["+3", "-3", "3 3", "0x3", "", "3,3", "99999999999999999999"] {
        let text = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n");
        assert!(refused(&text).contains("Content-Length"), "{length:?}");
    }
    for coding in ["gzip", "gzip, chunked", "chunked, gzip", "identity"] {
        let text = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {coding}\r\n\r\n");
        assert!(refused(&text).contains("Transfer-Encoding"), "{coding:?}");
    }
    refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 0\r\n\r\n");
    refused("HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n");
    refused("HTTP/1.1 2000 OK\r\n\r\n");
}

#[test]
fn oversized_and_overlong_heads_are_refused() {
    let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
    assert!(refused(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")).contains("too many"));
    let big = format!("HTTP/1.1 200 OK\r\nX-Big: {}", "a".repeat(MAX_HEAD));
    assert!(refused(&big).contains("too big"));
    assert!(matches!(
        parse("HTTP/1.1 200 OK\r\nX-A: 1\r\n", &Method::GET),
        Ok(Parsed::Partial)
    ));
}

#[test]
fn the_request_head_is_written_in_one_pass() {
    let mut headers = crate::header_list::HeaderList::new();
    headers.insert(header::HOST, HeaderValue::from_static("app"));
    let x_a = http::HeaderName::from_static("x-a");
    headers.append(x_a.clone(), HeaderValue::from_static("1"));
    headers.append(x_a, HeaderValue::from_static("2"));
    let mut out = Vec::new();
    encode_request(
        &Method::POST,
        "/up?x=1",
        &headers,
        RequestFraming::Chunked,
        &mut out,
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "POST /up?x=1 HTTP/1.1\r\nhost: app\r\nx-a: 1\r\nx-a: 2\r\ntransfer-encoding: chunked\r\n\r\n"
    );
}

#[test]
fn lines_the_client_would_not_see_frame_the_body_but_stay_out_of_the_map() {
    let text = "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: x\r\nConnection: close\r\n\
                Transfer-Encoding: chunked\r\nX-Kept: 1\r\nUpgrade: h2c\r\n\r\n";
    let head = head_keeping(text, leaving_out());
    assert_eq!(head.framing, ResponseFraming::Chunked);
    assert!(
        !head.keep_alive,
        "its Connection: close was read all the same"
    );
    let names: Vec<&str> = head.headers.keys().map(|name| name.as_str()).collect();
    assert_eq!(names, ["x-kept", "upgrade"]);
    // Left out or not, the spellings of what is kept are found.
    let names = head.lines.spellings().unwrap().names().unwrap();
    assert_eq!(names.speller().spell("x-kept"), Some(&b"X-Kept"[..]));
}

#[test]
fn a_connection_line_naming_a_header_stays_for_that_header_to_be_removed_with_it() {
    let text = "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Trace\r\nX-Trace: 1\r\n\
                Content-Length: 0\r\n\r\n";
    let head = head_keeping(text, leaving_out());
    assert_eq!(head.headers["connection"], "keep-alive, X-Trace");
    assert!(head.keep_alive);
}

/// Relayed: the lines stay in the head for the writer, and no map is built.
fn relayed(text: &str) -> ResponseHead {
    let keeping = Keeping {
        relay: true,
        rewritten: Rewritable::LOCATION,
        ..leaving_out()
    };
    head_keeping(text, keeping)
}

/// The client's lines as the writer would write them from a relayed head.
fn written(head: &ResponseHead) -> Option<String> {
    let lines = head.lines.relayed()?;
    let mut buf = Vec::new();
    lines.write_to(&mut buf);
    Some(String::from_utf8(buf).unwrap())
}

#[test]
fn a_relayed_head_builds_no_map_and_frames_its_body_all_the_same() {
    let head = relayed(
        "HTTP/1.1 200 OK\r\nServer: nginx\r\nConnection: close\r\nContent-Type: text/event-stream\r\n\
         Transfer-Encoding: chunked\r\nUpgrade: h2c\r\nset-cookie: a=1\r\n\r\n",
    );
    assert!(head.headers.is_empty());
    assert_eq!(head.framing, ResponseFraming::Chunked);
    assert!(!head.keep_alive);
    assert!(head.sets_cookie && head.event_stream);
    let lines = written(&head).expect("relayed");
    // An Upgrade (a 426's) stays, as it does in the map: only HTTP/1 clients are relayed to.
    assert_eq!(
        lines,
        "Content-Type: text/event-stream\r\nUpgrade: h2c\r\nset-cookie: a=1\r\n"
    );
}

#[test]
fn a_switch_a_connection_naming_headers_or_a_rewritten_line_is_never_relayed() {
    // A 101 keeps its Upgrade for the tunnel; the headers a Connection names go with it.
    let switch = relayed(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    assert!(written(&switch).is_none());
    assert_eq!(switch.headers["upgrade"], "websocket");
    let named = relayed(
        "HTTP/1.1 200 OK\r\nConnection: X-Trace\r\nX-Trace: 1\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(written(&named).is_none());
    assert_eq!(named.headers["x-trace"], "1");
    // A line the location's rules rewrite (here a `proxy_redirect`'s Location) needs the map.
    let redirect =
        relayed("HTTP/1.1 302 Found\r\nLocation: http://app/x\r\nContent-Length: 0\r\n\r\n");
    assert!(written(&redirect).is_none());
    assert_eq!(redirect.headers["location"], "http://app/x");
    let cookie = relayed("HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nContent-Length: 0\r\n\r\n");
    assert!(written(&cookie).is_some(), "no cookie rule here");
}

#[test]
fn a_set_cookie_line_is_noted_as_the_map_is_built() {
    let with = head("HTTP/1.1 200 OK\r\nset-cookie: sid=1\r\nContent-Length: 0\r\n\r\n");
    assert!(with.sets_cookie);
    let without = head("HTTP/1.1 200 OK\r\nX-Set-Cookie: no\r\nContent-Length: 0\r\n\r\n");
    assert!(!without.sets_cookie);
}
