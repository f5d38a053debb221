#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Replays every fuzz corpus file through the fuzz targets' own checks
//! (`fuzz/checks.rs`): no parser may panic, what parses must round-trip, and
//! the text and element readers agree.

use std::path::Path;

#[path = "../fuzz/checks.rs"]
mod checks;

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
    let ok = files("element")
        .iter()
        .filter(|d| checks::element(d))
        .count();
    assert!(ok > 0, "no valid seed in the element corpus");
}

#[test]
fn uri_corpus() {
    let ok = files("uri").iter().filter(|d| checks::uri(d)).count();
    assert!(ok > 0, "no valid seed in the URI corpus");
}
