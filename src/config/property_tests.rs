//! A bounded property test of the whole loader: thousands of generated config-like texts
//! (words, real directive names, `${`, braces, quotes, comments, escapes, snippets of valid
//! config) through [`load_str`] on a thread with a blocking-pool-sized stack. Whatever the
//! text, loading must not panic or overflow, and every error must point inside the text.
//!
//! The seed is fixed so CI runs the same cases every time; `tests/fuzz/` has the open-ended
//! cargo-fuzz target for longer searches.

use std::path::Path;
use std::thread;

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner};

use super::*;

/// Cases per run: a few seconds in a debug build.
const CASES: u32 = 3_000;

/// The main file's path: in a folder that does not exist, so an `include` the generator
/// happens to write reads nothing from the machine.
const MAIN: &str = "/nonexistent-tether-property-test/t.conf";

/// One piece of config-like text; a case is up to 120 of them, concatenated.
fn piece() -> impl Strategy<Value = String> {
    let lexical = prop::sample::select(vec![
        "${",
        "{",
        "}",
        ";",
        "\"",
        "'",
        "#",
        "\\",
        "\n",
        " ",
        " ",
        "\t",
        "$",
        "$host",
        "${host}",
        "~",
        "~*",
        "=",
        "^~",
        ":",
        "80",
        "127.0.0.1:8080",
        "http://b",
        "http://$x",
        "on",
        "off",
        "1s",
        "4k",
        "/",
        "é",
        "\\\"",
        "weight=2",
        "route=a",
        "backup",
    ]);
    let names = prop::sample::select(vec![
        "http",
        "server",
        "location",
        "upstream",
        "map",
        "events",
        "listen",
        "server_name",
        "proxy_pass",
        "proxy_set_header",
        "add_header",
        "return",
        "sticky",
        "sticky_secret",
        "hash",
        "ip_hash",
        "keepalive",
        "health_check",
        "worker_processes",
        "default",
        "hostnames",
        "proxy_next_upstream",
        "proxy_read_timeout",
        "cookie",
        "gzip",
        "types",
    ]);
    let snippets = prop::sample::select(vec![
        "upstream b { server 127.0.0.1:1; server 127.0.0.1:2 backup; }\n",
        "server { listen 127.0.0.1:8080; location / { proxy_pass http://b; } }\n",
        "map $host $x { default 1; ~^a 2; hostnames; }\n",
        "location ~ \"^/a{2}$\" { return 200 ok; }\n",
        "sticky cookie s expires=1h; health_check interval=1s;\n",
    ]);
    prop_oneof![
        6 => lexical.prop_map(str::to_string),
        4 => names.prop_map(str::to_string),
        1 => snippets.prop_map(str::to_string),
        2 => "[a-z_]{1,8}",
        1 => "[ -~]{1,6}",
    ]
}

/// Loads `text`; fails if an error has no place or one outside the text.
fn loads_cleanly(text: &str) -> Result<(), TestCaseError> {
    let path = Path::new(MAIN);
    let Err(errors) = load_str(path, text, Path::new(".")) else {
        return Ok(());
    };
    prop_assert!(!errors.0.is_empty());
    let lines: Vec<&str> = text.split('\n').collect();
    for error in &errors.0 {
        // Rendering must not panic either (it slices user text to shorten it).
        let message = error.to_string();
        let Some(span) = &error.span else {
            return Err(TestCaseError::fail(format!("no place: {message}")));
        };
        prop_assert_eq!(&*span.file, path, "{}", message);
        let line = span.line as usize;
        prop_assert!((1..=lines.len()).contains(&line), "{}", message);
        let last_col = lines[line - 1].chars().count() + 1;
        prop_assert!((1..=last_col).contains(&(span.col as usize)), "{}", message);
    }
    Ok(())
}

#[test]
fn generated_configs_load_or_fail_cleanly_on_a_blocking_thread_stack() {
    let run = || {
        let config = RunnerConfig {
            cases: CASES,
            // Failures are printed (shrunk); nothing is written into the source tree.
            failure_persistence: None,
            ..RunnerConfig::default()
        };
        let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
        let mut runner = TestRunner::new_with_rng(config, rng);
        let texts = prop::collection::vec(piece(), 0..120).prop_map(|pieces| pieces.concat());
        runner.run(&texts, |text| loads_cleanly(&text))
    };
    let result = thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(run)
        .expect("spawn the property test thread")
        .join()
        .expect("the runner reports failures, it does not panic");
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
