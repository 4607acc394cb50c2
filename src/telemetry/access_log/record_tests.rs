//! Tests of a record kept through a long wait: a tunnel's line waits for the tunnel's end with
//! only what finishing it needs.

use std::time::Duration;

use http::HeaderMap;

use super::*;
use crate::config::{self, Span};
use crate::telemetry::access_log::{Formats, Logs};
use crate::vars::{Vars, empty_request};

/// A location logging nginx's `combined` format to a file of its own.
fn combined_log(dir: &tempfile::TempDir) -> (Logs, Arc<Vars>) {
    let vars = Arc::new(Vars::build(&[]).unwrap());
    let mut errors = Vec::new();
    let formats = Formats::build(&[], &vars, &mut errors);
    let log = config::AccessLog {
        path: dir.path().join("access.log"),
        format: "combined".into(),
        buffer: None,
        flush: None,
        condition: None,
        span: Span::builtin(),
    };
    let logs = Logs::build(&[log], &formats, &vars, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    (logs, vars)
}

/// A record as a proxied upgrade leaves it: begun, one try answered with a 101, the head sent.
fn upgraded(logs: &Logs, vars: &Vars) -> Box<Record> {
    let mut record = logs.begin(vars, &empty_request()).unwrap();
    record.try_started("127.0.0.1:9".parse().ok(), "-");
    record.try_answered(101);
    record.head(Phase::SentHead, 101, &HeaderMap::new());
    record
}

#[test]
fn a_settled_record_keeps_only_what_its_line_needs() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, vars) = combined_log(&dir);
    // Requests served before on this thread leave their buffers in the recycled records.
    for _ in 0..4 {
        let mut record = upgraded(&logs, &vars);
        record.body_sent(3);
        record.finish();
    }
    let mut record = upgraded(&logs, &vars);
    let before = record.held_bytes();
    record.settle();
    let line = record.lines[0].text.len();
    // The line's text, one line and one try: nothing spare for later requests.
    let needed = line + size_of::<Line>() + size_of::<Try>();
    assert!(
        record.held_bytes() <= needed,
        "a settled record holds {} bytes besides itself (was {before}); its line needs {needed}",
        record.held_bytes()
    );
}

#[test]
fn a_settled_record_finishes_the_same_line() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, vars) = combined_log(&dir);
    for settle in [false, true] {
        let mut record = upgraded(&logs, &vars);
        if settle {
            record.settle();
        }
        record.tunnel_ended(10, 20);
        record.finish();
    }
    crate::telemetry::access_log::flush_all(Duration::from_secs(2));
    let text = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    // The same but for the time of day, which may have ticked between them.
    let without_time = |line: &str| line.split_once(']').map(|(_, rest)| rest.to_string());
    assert_eq!(without_time(lines[0]), without_time(lines[1]));
    assert!(lines[1].contains("\" 101 20 "), "{}", lines[1]);
}
