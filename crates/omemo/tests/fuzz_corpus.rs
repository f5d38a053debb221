//! Replays the fuzz corpora (`crates/omemo/fuzz/corpus/<target>`) through the
//! same entry points as the fuzz targets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;

use atm_omemo::crypto::fuzzing;

fn replay(target: &str, check: fn(&[u8]) -> Result<(), String>) {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("corpus {} missing: {error}", directory.display()));
    let mut count = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_file() {
            let data = std::fs::read(&path).unwrap();
            if let Err(violation) = check(&data) {
                panic!("{}: {violation}", path.display());
            }
            count += 1;
        }
    }
    assert!(count >= 3, "corpus {target} has only {count} inputs");
}

#[test]
fn proto_corpus() {
    replay("proto", fuzzing::proto);
}

#[test]
fn receive_corpus() {
    replay("receive", fuzzing::receive_message);
}

#[test]
fn state_corpus() {
    replay("state", fuzzing::state);
}

#[test]
fn elements_corpus() {
    replay("elements", atm_omemo::fuzzing::elements);
}

#[test]
fn envelope_corpus() {
    replay("envelope", atm_omemo::fuzzing::envelope);
}
