#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Fuzzes the text and element readers of trust messages (`checks::element`).

use libfuzzer_sys::fuzz_target;

// Each target uses one of the shared checks.
#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::element(data);
});
