#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Replays every file of the fuzz corpus (`fuzz/corpus/engine_inputs`)
//! through the fuzz target's own checks (`fuzz/checks.rs`): no panic, and
//! the invariants (a), (b), (c) after every engine input.

use std::path::Path;

#[path = "../fuzz/checks.rs"]
mod checks;

#[test]
fn engine_inputs_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/engine_inputs");
    let mut files = 0;
    let mut ops = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        ops += checks::engine_inputs(&data);
        files += 1;
    }
    assert!(
        files >= 5,
        "corpus {} has only {files} files",
        dir.display()
    );
    assert!(ops > 40, "the corpus ran only {ops} operations");
}
