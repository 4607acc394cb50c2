//! Fuzz target: any UTF-8 text through `config::load_str`, on a thread with the 2 MiB stack of
//! tokio's blocking pool (where a reload parses). Loading must not panic or overflow, and every
//! error must point inside the text. Must not read files: the main file's folder does not
//! exist, so an `include` the fuzzer writes finds nothing.

#![no_main]

use std::path::Path;
use std::thread;

use libfuzzer_sys::fuzz_target;
use tether::config::load_str;

const MAIN: &str = "/nonexistent-tether-fuzz/t.conf";

fn check(text: &str) {
    let path = Path::new(MAIN);
    let Err(errors) = load_str(path, text, Path::new(".")) else {
        return;
    };
    assert!(!errors.0.is_empty());
    let lines: Vec<&str> = text.split('\n').collect();
    for error in &errors.0 {
        let message = error.to_string();
        let span = error.span.as_ref().unwrap_or_else(|| panic!("no place: {message}"));
        assert_eq!(&*span.file, path, "{message}");
        let line = span.line as usize;
        assert!((1..=lines.len()).contains(&line), "{message}");
        let last_col = lines[line - 1].chars().count() + 1;
        assert!((1..=last_col).contains(&(span.col as usize)), "{message}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = text.to_string();
    let loader = thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || check(&text))
        .expect("spawn a loader thread");
    if let Err(panic) = loader.join() {
        // Re-raised on the fuzzer's thread so libFuzzer records the input.
        std::panic::resume_unwind(panic);
    }
});
