#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Fuzzes sequences of engine inputs for a handful of engines and an
//! attacker (`checks::engine_inputs`): no panic, and the invariants (a), (b),
//! (c) of issue 9 after every input.

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::engine_inputs(data);
});
