#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Fuzzes the text reader (and the element reader when minidom accepts the
//! input); whatever parses must round-trip.

use atm_tm::TrustMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(tm) = TrustMessage::parse(s) {
            assert_eq!(TrustMessage::parse(&tm.to_xml()).unwrap(), tm);
            let elem: minidom::Element = tm.clone().into();
            assert_eq!(TrustMessage::try_from(elem).unwrap(), tm);
        }
    }
});
