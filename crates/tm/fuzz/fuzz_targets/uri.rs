#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Fuzzes the Trust Message URI parser; whatever parses must round-trip.

use atm_tm::TrustUri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(u) = TrustUri::parse(s) {
            assert_eq!(TrustUri::parse(&u.to_uri()).unwrap(), u);
        }
    }
});
