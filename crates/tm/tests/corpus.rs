#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Replays every fuzz corpus file through the parsers: none may panic, and
//! what parses must round-trip.

use std::path::Path;

use atm_tm::{TrustMessage, TrustUri};

fn files(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        out.push(std::fs::read(e.unwrap().path()).unwrap());
    }
    assert!(!out.is_empty(), "empty corpus {}", dir.display());
    out
}

#[test]
fn element_corpus() {
    let mut ok = 0;
    for data in files("element") {
        if let Ok(s) = std::str::from_utf8(&data) {
            if let Ok(tm) = TrustMessage::parse(s) {
                ok += 1;
                assert_eq!(TrustMessage::parse(&tm.to_xml()).unwrap(), tm);
            }
            if let Ok(e) = s.parse::<minidom::Element>() {
                let _ = TrustMessage::try_from(e);
            }
        }
    }
    assert!(ok > 0, "no valid seed in the element corpus");
}

#[test]
fn uri_corpus() {
    let mut ok = 0;
    for data in files("uri") {
        if let Ok(s) = std::str::from_utf8(&data) {
            if let Ok(u) = TrustUri::parse(s) {
                ok += 1;
                assert_eq!(TrustUri::parse(&u.to_uri()).unwrap(), u);
            }
        }
    }
    assert!(ok > 0, "no valid seed in the URI corpus");
}
