//! Reading a Prometheus text exposition with a real parser: the Prometheus client library's
//! own (`prometheus_client.parser`, Debian's `python3-prometheus-client`), run by the system
//! Python. Skipped with a line on the terminal when it is not installed; with
//! `TETHER_REQUIRE_PROMETHEUS_PARSER` set (CI sets it, after installing it) a failure instead.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

/// Prints every sample as `name{k="v",...} value`, labels sorted by name; fails (non-zero
/// exit, the parser's message on stderr) on anything the parser refuses.
const SCRIPT: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        labels = ",".join('%s="%s"' % (k, sample.labels[k]) for k in sorted(sample.labels))
        print("%s%s %r" % (sample.name, "{%s}" % labels if labels else "", sample.value))
"#;

/// The Pythons tried: Debian's (where `python3-prometheus-client` installs), then `PATH`'s.
const PYTHONS: [&str; 2] = ["/usr/bin/python3", "python3"];

/// Every sample of `text` by `name{labels}` (labels sorted by name), or None when no parser
/// is installed (after saying so).
pub fn parse(text: &str) -> Option<HashMap<String, f64>> {
    let Some(python) = PYTHONS.into_iter().find(|python| has_parser(python)) else {
        let test = std::thread::current()
            .name()
            .unwrap_or("a test")
            .to_string();
        let why = "no Python with prometheus_client (apt-get install python3-prometheus-client)";
        assert!(
            std::env::var_os("TETHER_REQUIRE_PROMETHEUS_PARSER").is_none(),
            "{test}: {why}, and TETHER_REQUIRE_PROMETHEUS_PARSER is set"
        );
        let line = format!("SKIPPED the Prometheus parser in {test}: {why}\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
        return None;
    };
    let mut child = Command::new(python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the parser");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed the parser");
    let output = child.wait_with_output().expect("the parser's output");
    assert!(
        output.status.success(),
        "the Prometheus parser refused the page: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let samples = String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').expect("name value");
            (name.to_string(), value.parse().expect("a number"))
        })
        .collect();
    Some(samples)
}

fn has_parser(python: &str) -> bool {
    Command::new(python)
        .args(["-c", "import prometheus_client.parser"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `name{labels}` as [`parse`] keys it: labels sorted by name.
pub fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels = labels.to_vec();
    labels.sort();
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    if inner.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", inner.join(","))
    }
}
