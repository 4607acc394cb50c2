//! Tests of how a compiled format renders a line: the request's headers found in one pass
//! (repeated, escaped, absent, more than fit), and holes inside joined literal text.

use crate::header_list::HeaderList;
use http::{HeaderName, HeaderValue};

use super::*;
use crate::config::Span;
use crate::vars::empty_request;

fn compile(text: &str) -> Format {
    let vars = Vars::build(&[]).unwrap();
    let format = config::LogFormat {
        name: "t".into(),
        escape: LogEscape::Default,
        text: text.into(),
        span: Span::builtin(),
    };
    Format::compile(&format, &vars).unwrap()
}

fn begin(format: &Format, headers: &HeaderList) -> (String, Holes) {
    let vars = Vars::build(&[]).unwrap();
    let req = RequestInfo {
        headers,
        ..empty_request()
    };
    let (mut line, mut holes) = (String::new(), Holes::default());
    format.begin(&vars, &req, &mut line, &mut holes);
    (line, holes)
}

fn headers(pairs: &[(&str, &[u8])]) -> HeaderList {
    let mut map = HeaderList::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    map
}

#[test]
fn headers_found_in_one_pass_read_as_lookups_do() {
    let format = compile("$http_a|$http_b|$http_a|$remote_user|$http_missing");
    let map = headers(&[
        ("a", b"1"),
        ("b", b"x\"y\xff"),
        ("a", b"2"),
        ("authorization", b"Basic YWxpY2U6c2VjcmV0"),
    ]);
    let (line, _) = begin(&format, &map);
    assert_eq!(line, "1, 2|x\\x22y\\xFF|1, 2|alice|-");
}

#[test]
fn headers_past_the_ones_found_in_one_pass_are_looked_up() {
    let names: Vec<String> = (0..FOUND_HEADERS + 3).map(|i| format!("h{i}")).collect();
    let text: Vec<String> = names.iter().map(|name| format!("$http_{name}")).collect();
    let format = compile(&text.join(" "));
    let values: Vec<String> = names.iter().map(|name| format!("v-{name}")).collect();
    let pairs: Vec<(&str, &[u8])> = names
        .iter()
        .zip(&values)
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    let (line, _) = begin(&format, &headers(&pairs));
    assert_eq!(line, values.join(" "));
}

/// Response facts for a test: a status and a body size.
struct Answered;

impl ResponseFacts for Answered {
    fn render(&self, late: &Late, out: &mut String) {
        match late {
            Late::Status => out.push_str("200"),
            Late::BodyBytesSent => out.push('5'),
            _ => {}
        }
    }
}

#[test]
fn holes_in_joined_text_are_filled_in_place() {
    let format = compile("[$status$body_bytes_sent] $http_a ($upstream_addr)");
    let (line, holes) = begin(&format, &headers(&[("a", b"x")]));
    assert_eq!(line, "[] x ()");
    let mut out = String::new();
    format.finish(None, &Answered, &line, &holes, &mut out);
    assert_eq!(out, "[2005] x (-)");
}
