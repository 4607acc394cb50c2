//! Hostile configs: deep nesting, huge tokens, many tokens. Each is loaded the way a reload
//! loads it, on a thread with the 2 MiB stack of tokio's blocking pool, and must come back as a
//! clean error at the right place, never a stack overflow (which aborts the whole process).
//! Time is not asserted here: `benches/config.rs` measures these inputs.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::thread;

use super::*;

/// The stack tokio gives a `spawn_blocking` thread, where a reload parses the config.
const BLOCKING_THREAD_STACK: usize = 2 << 20;

/// `load_str` of `text` (named `t.conf`) on a thread with a blocking-pool-sized stack.
fn load_on_small_stack(path: &Path, text: String) -> Result<Config, ConfigErrors> {
    let path = path.to_path_buf();
    thread::Builder::new()
        .stack_size(BLOCKING_THREAD_STACK)
        .spawn(move || load_str(&path, &text, Path::new(".")))
        .expect("spawn a loader thread")
        .join()
        .expect("the loader thread does not panic")
}

/// The one error loading `text` gives, with its place.
fn only_error(text: String) -> String {
    let errors = load_on_small_stack(Path::new("t.conf"), text).expect_err("an error");
    assert_eq!(errors.0.len(), 1, "{errors}");
    errors.0[0].to_string()
}

/// `add_header X ${${${...;` in a location: a bare word ends at `${`'s `{`, which opens a block,
/// so every `${` is one level deeper.
fn dollar_braces(count: usize) -> String {
    format!(
        "http {{ server {{ location / {{ add_header X {};\n}} }} }}\n",
        "${".repeat(count)
    )
}

#[test]
fn thousands_of_dollar_braces_are_refused_at_the_nesting_limit() {
    // http, server and location are levels 1-3, so the 48th `${` opens level 51: its `{` is
    // at column 43 + 47 * 2 + 1.
    let want = "blocks nested deeper than 50 levels in t.conf:1:138";
    assert_eq!(only_error(dollar_braces(3_000)), want);
    assert_eq!(only_error(dollar_braces(20_000)), want);
}

#[test]
fn deeply_nested_blocks_are_refused_at_the_nesting_limit() {
    // The 51st `a {`: its `{` is at column 50 * 3 + 3.
    let text = "a {".repeat(20_000);
    assert_eq!(
        only_error(text),
        "blocks nested deeper than 50 levels in t.conf:1:153"
    );
}

#[test]
fn nesting_up_to_the_limit_loads_on_a_blocking_thread() {
    // 50 levels of blocks, each an unknown directive: lowering reports the outermost only.
    let text = "a {".repeat(50) + &"}".repeat(50);
    assert_eq!(only_error(text), "unknown directive \"a\" in t.conf:1:1");
}

#[test]
fn a_chain_of_includes_is_refused_past_the_nesting_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    // main -> 1.conf -> 2.conf -> ... -> 60.conf: 60 levels of include.
    for i in 1..60 {
        let next = format!("include {}.conf;\n", i + 1);
        fs::write(dir.path().join(format!("{i}.conf")), next).expect("write");
    }
    fs::write(dir.path().join("60.conf"), "events { }\n").expect("write");
    let main = dir.path().join("main.conf");
    let errors = load_on_small_stack(&main, "include 1.conf;\n".to_string()).expect_err("too deep");
    let messages: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    // main.conf includes 1.conf at level 1, so 50.conf's include would be level 51.
    let d = dir.path().display();
    assert_eq!(
        messages,
        [format!(
            "includes nested deeper than 50 levels in {d}/50.conf:1:1"
        )]
    );
}

#[test]
fn includes_up_to_the_limit_with_blocks_up_to_the_limit_load_on_a_blocking_thread() {
    let dir = tempfile::tempdir().expect("temp dir");
    // 50 levels of include, the last file holding 50 levels of blocks minus the one open
    // around the first include.
    for i in 1..50 {
        let next = format!("include {}.conf;\n", i + 1);
        fs::write(dir.path().join(format!("{i}.conf")), next).expect("write");
    }
    let blocks = "a {".repeat(49) + &"}".repeat(49);
    fs::write(dir.path().join("50.conf"), blocks).expect("write");
    let main = dir.path().join("main.conf");
    let errors =
        load_on_small_stack(&main, "b { include 1.conf; }\n".to_string()).expect_err("unknown b");
    let d = dir.path().display();
    assert_eq!(
        errors.to_string(),
        format!("unknown directive \"b\" in {d}/main.conf:1:1")
    );
}

#[test]
fn a_megabyte_name_is_reported_shortened_and_without_a_suggestion() {
    let text = "x".repeat(1 << 20) + ";\n";
    let shown = "x".repeat(60);
    assert_eq!(
        only_error(text),
        format!("unknown directive \"{shown}...\" in t.conf:1:1")
    );
}

#[test]
fn a_megabyte_value_is_reported_shortened() {
    let value = "9".repeat(1 << 20) + "q";
    let text = format!("events {{ worker_connections {value}; }}\n");
    let shown = "9".repeat(60);
    assert_eq!(
        only_error(text),
        format!("invalid number \"{shown}...\" in \"worker_connections\" directive in t.conf:1:29")
    );
}

#[test]
fn a_megabyte_of_dollar_braces_on_one_line_is_refused_at_the_nesting_limit() {
    let text = "a ".to_string() + &"${".repeat(1 << 19) + ";\n";
    // `a` is the directive, its first `$` an argument, then levels 1-50, the 51st `{` at
    // column 3 + 50 * 2 + 1.
    assert_eq!(
        only_error(text),
        "blocks nested deeper than 50 levels in t.conf:1:104"
    );
}

/// The regex crate refuses patterns nested past 250 levels or compiling past 10 MiB; lowering
/// checks every regex with the same limits as the snapshot that compiles it, so either is a
/// config error with its place, not a failure at reload.
#[test]
fn regexes_past_the_regex_crate_limits_are_config_errors() {
    let nested = "(".repeat(300) + &")".repeat(300);
    let huge = r"\w{1000}{1000}";
    let text =
        format!("http {{ server {{ location ~ {nested} {{ }} location ~ \"{huge}\" {{ }} }} }}\n");
    let errors = load_on_small_stack(Path::new("t.conf"), text).expect_err("two errors");
    let messages: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    let shown = "(".repeat(60);
    assert_eq!(
        messages,
        [
            format!(
                "invalid regex \"{shown}...\": exceed the maximum number of nested parentheses/brackets (250) in t.conf:1:28"
            ),
            format!(
                "invalid regex \"{huge}\": Compiled regex exceeds size limit of 10485760 bytes. in t.conf:1:644"
            ),
        ]
    );
}

#[test]
fn inherited_header_lists_are_shared_not_copied_per_location() {
    // N headers inherited by N locations would be N * N copies: a 120 KB config of 3,000 of
    // each made 9 million.
    let text = "http { add_header X x; proxy_set_header Y y; server { listen 127.0.0.1:1; \
                location /a { } location /b { } } }\n";
    let config = load_on_small_stack(Path::new("t.conf"), text.to_string()).expect("valid");
    let [a, b] = &config.http.servers[0].locations[..] else {
        panic!("two locations");
    };
    assert!(Arc::ptr_eq(&a.proxy.add_headers, &b.proxy.add_headers));
    assert!(Arc::ptr_eq(&a.proxy.set_headers, &b.proxy.set_headers));
    assert_eq!(a.proxy.add_headers[0].name, "X");
}
