//! Fuzz target: any bytes as a client's HTTP/1 stream through tether's head scanner, head
//! parser and body decoder (`server::http1::replay`), fed whole and in pieces of a size the
//! first byte picks. Nothing may panic, and the verdict — each request read, or the refusal
//! and where — must be the same however the bytes arrive.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::config::HeadRules;
use tether::server::http1::replay::replay;

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    // Small limits, so that the fuzzer reaches them with short inputs.
    let rules = HeadRules {
        max_line: 48 + usize::from(first & 0x3f),
        max_head: 256,
        max_headers: 1 + usize::from(first >> 6) * 3,
        underscores: first & 1 == 0,
        ignore_invalid: first & 2 == 0,
    };
    let step = 1 + usize::from(first % 9);
    let whole = replay(input, input.len(), &rules);
    let pieces = replay(input, step, &rules);
    assert_eq!(whole, pieces, "fed whole vs in pieces of {step}");
});
