//! The hostile-response corpus (issue 15): a raw recording backend answers tether's first
//! request with bytes built to be read two ways — or merely odd but well-formed — and the
//! test checks what the client got and what became of that upstream connection.
//!
//! An ambiguous or malformed head is a 502 (nginx's "upstream sent invalid header" and
//! "... duplicate header line"), never forwarded, and its connection is never used again; a
//! body that breaks its framing after the head went out cuts the client's response short
//! (never a complete-looking one); a well-formed answer passes unchanged. After each case a
//! second request must reach the backend on a fresh connection wherever the first left the
//! old one unusable (junk after the body, HTTP/1.0 without keep-alive, a close).
//!
//! Real nginx gets the same answers where it is installed; its statuses are the reference and
//! each deliberate difference is written in the case.

use std::time::Duration;

use crate::harness::Proxy;
use crate::harness::framing::{self, Read};
use crate::harness::nginx::Nginx;
use crate::harness::raw::{exchange_bytes, parse_responses};
use crate::harness::recorder::{Answer, Recorder};

const LIMIT: Duration = Duration::from_secs(3);

/// What the client must get for the first request.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// A 502 error page from tether.
    BadGateway,
    /// `status` and `body`, with the answer's `X-Kept` header, whole.
    Passed(u16, &'static [u8]),
    /// A head with `status`, then a body that never completes.
    Cut(u16),
}

/// May tether send the second request on the first one's connection?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reuse {
    Never,
    Allowed,
}

/// What nginx's client gets (its statuses, 1xx included).
enum NginxSays {
    Agrees,
    Differs(&'static [u16], &'static str),
}

struct Case {
    name: &'static str,
    head_request: bool,
    answer: Answer,
    want: Want,
    reuse: Reuse,
    nginx: NginxSays,
}

fn case(name: &'static str, answer: Answer, want: Want) -> Case {
    let reuse = match want {
        Want::Passed(..) => Reuse::Allowed,
        Want::BadGateway | Want::Cut(_) => Reuse::Never,
    };
    Case {
        name,
        head_request: false,
        answer,
        want,
        reuse,
        nginx: NginxSays::Agrees,
    }
}

impl Case {
    fn not_reused(mut self) -> Case {
        self.reuse = Reuse::Never;
        self
    }

    fn asked_with_head(mut self) -> Case {
        self.head_request = true;
        self
    }

    fn unlike_nginx(mut self, statuses: &'static [u16], why: &'static str) -> Case {
        self.nginx = NginxSays::Differs(statuses, why);
        self
    }

    /// The statuses nginx's client must get, and why where they differ from tether's.
    fn nginx_statuses(&self) -> (Vec<u16>, &'static str) {
        match (&self.nginx, self.want) {
            (NginxSays::Differs(statuses, why), _) => (statuses.to_vec(), why),
            (NginxSays::Agrees, Want::BadGateway) => (vec![502], "as tether"),
            (NginxSays::Agrees, Want::Passed(status, _) | Want::Cut(status)) => {
                (vec![status], "as tether")
            }
        }
    }
}

/// `HTTP/1.1 200 OK`, `X-Kept: yes` and `rest` (more header lines, the blank line, a body).
fn ok_with(rest: &str) -> Answer {
    Answer::raw(format!("HTTP/1.1 200 OK\r\nX-Kept: yes\r\n{rest}").as_bytes())
}

/// Cases tether meets today.
fn cases() -> Vec<Case> {
    use Want::{BadGateway, Cut, Passed};
    const BOTH_SEEN: &str = "nginx 1.22, the reference installed here, lets the last line win and passes it; an ambiguous framing is never forwarded (issue 15)";
    vec![
        case("a plain answer, for reference", ok_with("Content-Length: 5\r\n\r\nhello"), Passed(200, b"hello")),
        case("chunked, with an extension and trailers", ok_with("Transfer-Encoding: chunked\r\n\r\n5;x=\"y\"\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"), Passed(200, b"hello")),
        case("two different Content-Lengths", ok_with("Content-Length: 5\r\nContent-Length: 2\r\n\r\nhello"), BadGateway)
            .unlike_nginx(&[200], BOTH_SEEN),
        case("Content-Length -1", ok_with("Content-Length: -1\r\n\r\nhello"), BadGateway)
            .unlike_nginx(&[200], UNREAD_LENGTH),
        case("Content-Length +5", ok_with("Content-Length: +5\r\n\r\nhello"), BadGateway)
            .unlike_nginx(&[200], UNREAD_LENGTH),
        case("Content-Length 0x5", ok_with("Content-Length: 0x5\r\n\r\nhello"), BadGateway)
            .unlike_nginx(&[200], UNREAD_LENGTH),
        case("a chunk size that is not hex", ok_with("Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"), Cut(200))
            .unlike_nginx(&[], BUFFERED),
        case("a chunk size past u64", ok_with("Transfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nhello\r\n0\r\n\r\n"), Cut(200))
            .unlike_nginx(&[], BUFFERED),
        case("a chunk size with 0x", ok_with("Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"), Cut(200))
            .unlike_nginx(&[], BUFFERED),
        case("a chunk longer than its size", ok_with("Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"), Cut(200))
            .unlike_nginx(&[], BUFFERED),
        case("an obs-folded header", ok_with("X-Folded: a\r\n b\r\nContent-Length: 5\r\n\r\nhello"), BadGateway),
        case("an obs-folded Content-Length", ok_with("Content-Length:\r\n 5\r\n\r\nhello"), BadGateway),
        case("bare LF line ends", Answer::raw(b"HTTP/1.1 200 OK\nX-Kept: yes\nContent-Length: 5\n\nhello"), Passed(200, b"hello")),
        case("a NUL in a value", ok_with("X-Nul: a\0b\r\nContent-Length: 5\r\n\r\nhello"), BadGateway),
        case("a control byte in a value", ok_with("X-Ctl: a\x01b\r\nContent-Length: 5\r\n\r\nhello"), BadGateway)
            .unlike_nginx(&[], "nginx relays controls other than NUL, CR and LF to its client, whose httparse cannot read the head; tether does not forward them"),
        case("a space before the colon", ok_with("Content-Length : 5\r\n\r\nhello"), BadGateway),
        case("a garbage status line", Answer::raw(b"HTTX/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), BadGateway)
            .unlike_nginx(&[], HTTP_09),
        case("a four-digit status", Answer::raw(b"HTTP/1.1 2000 OK\r\nContent-Length: 5\r\n\r\nhello"), BadGateway)
            .unlike_nginx(&[], HTTP_09),
        case("100 Continue before the answer", Answer::raw(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-Kept: yes\r\nContent-Length: 5\r\n\r\nhello"), Passed(200, b"hello"))
            .unlike_nginx(&[100, 200], INTERIM),
        case("103 Early Hints before the answer", Answer::raw(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nX-Kept: yes\r\nContent-Length: 5\r\n\r\nhello"), Passed(200, b"hello"))
            .unlike_nginx(&[103, 200], INTERIM),
        case("101 to a request that asked for no upgrade", Answer::raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nhello"), BadGateway)
            .unlike_nginx(&[101], "nginx 1.22 turns any 101 into a tunnel; tether only one the client asked for"),

        case("a body past its Content-Length", ok_with("Content-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nforged!"), Passed(200, b"hello")).not_reused(),
        case("a close-delimited body", Answer::closing(b"HTTP/1.1 200 OK\r\nX-Kept: yes\r\n\r\nhello, until the end"), Passed(200, b"hello, until the end")).not_reused(),
        case("HTTP/1.0 without keep-alive", Answer::raw(b"HTTP/1.0 200 OK\r\nX-Kept: yes\r\nContent-Length: 5\r\n\r\nhello"), Passed(200, b"hello")).not_reused(),
        case("Connection: close", ok_with("Connection: close\r\nContent-Length: 5\r\n\r\nhello"), Passed(200, b"hello")).not_reused(),
        case("a body to HEAD", ok_with("Content-Length: 5\r\n\r\nhello"), Passed(200, b"")).asked_with_head().not_reused(),
        case("204 with a body", Answer::raw(b"HTTP/1.1 204 No Content\r\nX-Kept: yes\r\n\r\nhello"), Passed(204, b"")).not_reused(),
        case("304 with a body", Answer::raw(b"HTTP/1.1 304 Not Modified\r\nX-Kept: yes\r\nContent-Length: 5\r\n\r\nhello"), Passed(304, b"")).not_reused(),
    ]
}

/// Cases hyper's upstream client gets wrong: it reads both framings, or a list of lengths, or
/// an unknown coding, its own way and forwards the result; it takes any head under ~400 KiB
/// and refuses more than 100 header lines. tether's own client must pass these.
fn cases_for_tethers_own_client() -> Vec<Case> {
    use Want::{BadGateway, Passed};
    const BOTH_SEEN: &str = "nginx 1.22, the reference installed here, picks one reading and passes it; an ambiguous framing is never forwarded (issue 15)";
    let big_head = format!(
        "X-Big: {}\r\nContent-Length: 2\r\n\r\nok",
        "b".repeat(128 * 1024)
    );
    let many: String = (0..150).map(|i| format!("X-H{i}: 1\r\n")).collect();
    vec![
        case("CL and TE at once", ok_with("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), BadGateway)
            .unlike_nginx(&[200], BOTH_SEEN),
        case("TE and CL at once", ok_with("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"), BadGateway)
            .unlike_nginx(&[200], BOTH_SEEN),
        case("two equal Content-Lengths", ok_with("Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"), BadGateway)
            .unlike_nginx(&[200], BOTH_SEEN),
        case("a Content-Length list", ok_with("Content-Length: 5, 5\r\n\r\nhello"), BadGateway)
            .unlike_nginx(&[200], UNREAD_LENGTH),
        case("Transfer-Encoding gzip", Answer::closing(b"HTTP/1.1 200 OK\r\nX-Kept: yes\r\nTransfer-Encoding: gzip\r\n\r\nhello"), BadGateway)
            .unlike_nginx(&[200], "nginx 1.22 reads a coding it does not know until the connection closes"),
        case("Transfer-Encoding chunked twice", ok_with("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), BadGateway)
            .unlike_nginx(&[200], BOTH_SEEN),
        case("a head past 128 KiB", ok_with(&big_head), BadGateway),
        case("150 header lines", ok_with(&format!("{many}Content-Length: 5\r\n\r\nhello")), Passed(200, b"hello"))
    ]
}

/// nginx 1.22 ignores a `Content-Length` it cannot read and takes the body until the
/// connection closes (its backend here closes after each answer).
const UNREAD_LENGTH: &str = "nginx 1.22 ignores a Content-Length it cannot read and takes the body until close; tether refuses it";
/// nginx buffers the answer (proxy_buffering) and finds the broken chunk before it sends the
/// head: its client gets the connection closed with nothing; tether streams, so its client
/// gets the head and a body that never completes. Neither passes a whole response.
const BUFFERED: &str = "nginx buffers and finds the broken chunk before its head goes out, then closes with nothing sent; tether streams the head and cuts the body";
/// nginx 1.22 relays a 1xx as if it were the final answer, then the upstream's remaining
/// bytes raw (the client reads a second response nginx never framed); tether drops the
/// interim answer and passes the final one.
const INTERIM: &str = "nginx 1.22 relays the 1xx as final, then the rest of the upstream's bytes raw; tether drops the interim answer";
/// nginx takes an answer without a valid status line for HTTP/0.9 and sends it on raw.
const HTTP_09: &str =
    "nginx takes it for an HTTP/0.9 answer and relays the bytes raw; tether refuses it";

/// What tether did with `case` that it must not have, one line per fault.
fn judge(case: &Case, client: &[u8], closed: bool, recorder: &Recorder) -> Vec<String> {
    let mut faults = Vec::new();
    if !closed {
        faults.push(format!(
            "the client's connection still open after {LIMIT:?}"
        ));
    }
    let answers = parse_responses(client);
    let finals: Vec<_> = answers.iter().filter(|r| r.status >= 200).collect();
    let strict = match framing::response(client, case.head_request, closed) {
        Ok(Read::Whole(message, _)) => Ok(format!("whole {} {:?}", message.line, message.framing)),
        Ok(Read::Partial) => Ok("partial".to_string()),
        Err(error) => Err(error),
    };
    let whole = matches!(&strict, Ok(s) if s.starts_with("whole"));
    match case.want {
        Want::BadGateway => {
            let page = finals
                .first()
                .is_some_and(|r| r.status == 502 && !r.body.is_empty());
            if finals.len() != 1 || !page || answers.len() != 1 {
                faults.push(format!("got {:?}, want one 502 page", statuses(client)));
            }
        }
        Want::Passed(status, body) => match finals.first() {
            Some(r)
                if r.status == status
                    && r.body == body
                    && r.header("x-kept") == Some("yes")
                    && whole => {}
            _ => faults.push(format!(
                "got {:?} {:?} ({strict:?}), want {status} {:?} with X-Kept, whole",
                statuses(client),
                finals
                    .first()
                    .map(|r| String::from_utf8_lossy(&r.body).into_owned()),
                String::from_utf8_lossy(body)
            )),
        },
        Want::Cut(status) => {
            let head_ok = finals.first().is_some_and(|r| r.status == status);
            if !head_ok || whole {
                faults.push(format!(
                    "got {:?} ({strict:?}), want {status} cut short",
                    statuses(client)
                ));
            }
        }
    }
    // Where did the two requests go? Never twice the first (no retry of a broken answer),
    // and the second on a fresh connection when the first's is unusable.
    let mut first_on = Vec::new();
    let mut second_on = Vec::new();
    for (n, connection) in recorder.requests().into_iter().enumerate() {
        let Ok(requests) = connection else {
            faults.push(format!("upstream connection {n} does not read strictly"));
            continue;
        };
        for request in requests {
            if request.line.contains(" /first") {
                first_on.push(n);
            } else if request.line.ends_with(" /second") {
                second_on.push(n);
            }
        }
    }
    if first_on.len() != 1 || second_on.len() != 1 {
        faults.push(format!(
            "the backend got /first on {first_on:?}, /second on {second_on:?}"
        ));
    } else if case.reuse == Reuse::Never && first_on == second_on {
        faults.push("the second request went on the first one's connection".into());
    }
    faults
}

fn statuses(client: &[u8]) -> Vec<u16> {
    parse_responses(client).iter().map(|r| r.status).collect()
}

/// `GET /first` (HEAD for a HEAD case), with `/N` after it for nginx's shared backend.
fn first_request(case: &Case, number: Option<usize>) -> Vec<u8> {
    let method = if case.head_request { "HEAD" } else { "GET" };
    let suffix = number.map(|n| format!("/{n}")).unwrap_or_default();
    format!("{method} /first{suffix} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").into_bytes()
}

const SECOND: &[u8] = b"GET /second HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

#[tokio::test]
async fn hostile_responses_are_refused_cut_or_passed_whole_and_never_reused() {
    run(cases()).await;
}

#[tokio::test]

async fn ambiguous_framings_and_limits_as_tethers_own_client_must_read_them() {
    run(cases_for_tethers_own_client()).await;
}

/// Runs `cases` through tether (a backend and a proxy each) and, where installed, through one
/// nginx whose backend answers `GET /first/N` with case N's bytes and then closes.
async fn run(cases: Vec<Case>) {
    let conf = "http { server { listen {listen}; location / { proxy_pass http://{b}; } } }";
    let mut failures = Vec::new();
    for case in &cases {
        let answer = case.answer.clone();
        let script = move |n, _: &_| if n == 0 { answer.clone() } else { Answer::ok() };
        let recorder = Recorder::scripted(Box::new(script)).await;
        let proxy = Proxy::start(conf, &[("b", recorder.addr)]).await;
        let (client, closed) = exchange_bytes(proxy.addr, &first_request(case, None), LIMIT).await;
        let (second, _) = exchange_bytes(proxy.addr, SECOND, LIMIT).await;
        let mut faults = judge(case, &client, closed, &recorder);
        if statuses(&second) != [200] {
            faults.push(format!("the second request got {:?}", statuses(&second)));
        }
        failures.extend(
            faults
                .into_iter()
                .map(|fault| format!("{}: {fault}", case.name)),
        );
    }
    let answers: Vec<Answer> = cases
        .iter()
        .map(|case| Answer::closing(&case.answer.bytes))
        .collect();
    let script = move |_, request: &framing::Message| {
        let number = request
            .line
            .rsplit('/')
            .next()
            .and_then(|n| n.parse::<usize>().ok());
        number
            .and_then(|n| answers.get(n).cloned())
            .unwrap_or_else(Answer::ok)
    };
    let backend = Recorder::scripted(Box::new(script)).await;
    if let Some(nginx) = Nginx::start("server {b};", &[("b", backend.addr)]).await {
        for (n, case) in cases.iter().enumerate() {
            let (bytes, _) = exchange_bytes(nginx.addr, &first_request(case, Some(n)), LIMIT).await;
            let (want, why) = case.nginx_statuses();
            if statuses(&bytes) != want {
                failures.push(format!(
                    "{}: nginx answered {:?}, the case says {want:?} ({why})",
                    case.name,
                    statuses(&bytes),
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
