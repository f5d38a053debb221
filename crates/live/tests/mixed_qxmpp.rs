//! Mixed scenarios live (issue 12): every file of
//! `examples/scenarios/mixed/`, whose `"implementation": "qxmpp"` endpoints
//! are QXmpp peer processes (`interop/qxmpp-peer`), each on its own private
//! Prosody, must meet every expectation it states.
//!
//! Ignored by default: CI cannot build QXmpp. Run with the peer binary:
//!
//! ```sh
//! ATM_QXMPP_PEER=/tmp/qxmpp-peer-build/qxmpp-peer LD_LIBRARY_PATH=<QXmpp prefix>/lib \
//!   cargo test -p atm-live --test mixed_qxmpp -- --ignored --test-threads 1
//! ```
//!
//! Without `ATM_QXMPP_PEER`, or with a peer that cannot start, the tests
//! fail; they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::PathBuf;

use atm_live::{LiveOptions, ServerChoice};
use atm_xmpp_server::Kind;
use common::{examples_dir, load, play};

fn peer() -> PathBuf {
    let Some(path) = std::env::var_os("ATM_QXMPP_PEER").filter(|p| !p.is_empty()) else {
        panic!(
            "ATM_QXMPP_PEER is not set. These tests need the QXmpp peer of interop/qxmpp-peer, \
             built against an installed QXmpp 1.10 with OMEMO (see docs/interop.md), e.g.\n  \
             ATM_QXMPP_PEER=/tmp/qxmpp-peer-build/qxmpp-peer LD_LIBRARY_PATH=<QXmpp prefix>/lib \
             cargo test -p atm-live --test mixed_qxmpp -- --ignored --test-threads 1"
        )
    };
    PathBuf::from(path)
}

/// Plays `examples/scenarios/mixed/FILE` and requires every expectation.
fn mixed(file: &str) {
    let scenario = load(&examples_dir().join("mixed").join(file));
    let mut options = LiveOptions::new(ServerChoice::Private(Kind::Prosody));
    options.qxmpp_peer = Some(peer());
    // A peer that cannot start is a setup error: `play` fails the test.
    let outcome = play(&scenario, &options);
    assert!(
        outcome.ok,
        "{file}: {}\n{}",
        outcome.json["failures"], outcome.text
    );
    // The QXmpp endpoints are marked in the output.
    for spec in &scenario.endpoints {
        let marked = outcome.json["endpoints"][&spec.name]["implementation"] == "qxmpp";
        assert_eq!(
            marked,
            spec.implementation.as_str() == "qxmpp",
            "{file}: {}",
            spec.name
        );
    }
    eprintln!("{file}: ok in {:?}\n{}", outcome.elapsed, outcome.text);
}

#[test]
#[ignore = "needs the QXmpp peer (ATM_QXMPP_PEER), which CI cannot build; see docs/interop.md"]
fn seed_walkthrough_with_qxmpp_as_the_hub_a3() {
    mixed("seed-walkthrough-qxmpp-hub-a3.json");
}

#[test]
#[ignore = "needs the QXmpp peer (ATM_QXMPP_PEER), which CI cannot build; see docs/interop.md"]
fn seed_walkthrough_with_one_qxmpp_device_per_account() {
    mixed("seed-walkthrough-qxmpp-one-per-account.json");
}

#[test]
#[ignore = "needs the QXmpp peer (ATM_QXMPP_PEER), which CI cannot build; see docs/interop.md"]
fn a_contact_device_distrusted_by_ours_is_applied_by_qxmpp() {
    mixed("distrust-contact-device-qxmpp-applies.json");
}

#[test]
#[ignore = "needs the QXmpp peer (ATM_QXMPP_PEER), which CI cannot build; see docs/interop.md"]
fn seed_walkthrough_with_scans_and_one_qxmpp_device_per_account() {
    mixed("seed-walkthrough-scans-qxmpp-one-per-account.json");
}

#[test]
#[ignore = "needs the QXmpp peer (ATM_QXMPP_PEER), which CI cannot build; see docs/interop.md"]
fn seed_walkthrough_with_qxmpp_only_on_bobs_side() {
    mixed("seed-walkthrough-qxmpp-bob.json");
}

/// Not ignored: needs no QXmpp.
#[test]
fn every_mixed_example_has_its_test() {
    // A new file in examples/scenarios/mixed/ needs a test above.
    let mut files: Vec<String> = std::fs::read_dir(examples_dir().join("mixed"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    let source = include_str!("mixed_qxmpp.rs");
    for file in files {
        assert!(
            source.contains(&format!("mixed(\"{file}\")")),
            "{file} has no test in mixed_qxmpp.rs"
        );
    }
}
