//! Mixed scenarios (`"implementation": "qxmpp"` endpoints) through the
//! real binary, without QXmpp: every mixed example reads, the simulator
//! refuses it, `--transport xmpp` refuses it without a peer, and steps the
//! QXmpp peer cannot play are refused naming the step — all with exit 2
//! before anything runs. A peer that cannot start is exit 3 (that case
//! starts a private Prosody: a missing Prosody fails it, it never skips).
//! The live runs with QXmpp are `crates/live/tests/mixed_qxmpp.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

fn mixed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios/mixed")
}

fn mixed_examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(mixed_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// `atm scenario run ARGS FILE`, with `ATM_QXMPP_PEER` removed.
fn run(args: &[&str], file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_atm"))
        .args(["scenario", "run"])
        .args(args)
        .arg(file)
        .env_remove("ATM_QXMPP_PEER")
        .output()
        .unwrap()
}

fn refused(args: &[&str], file: &Path, needle: &str) {
    let started = Instant::now();
    let out = run(args, file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?} {file:?}: {stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?} {file:?}: {stderr:?} lacks {needle:?}"
    );
    assert!(out.stdout.is_empty(), "{file:?}: nothing runs");
    assert!(
        started.elapsed().as_secs() < 10,
        "refused before a server starts"
    );
}

#[test]
fn every_mixed_example_reads_and_names_its_qxmpp_endpoints() {
    let files = mixed_examples();
    assert!(files.len() >= 3, "{files:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let scenario = atm_sim::Scenario::from_json(&text, "x.json")
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let (_, spec) = scenario
            .first_foreign_endpoint()
            .unwrap_or_else(|| panic!("{}: no qxmpp endpoint", file.display()));
        assert_eq!(spec.implementation.as_str(), "qxmpp");
        assert!(
            atm_live::refusal(&scenario).is_none(),
            "{}: {:?}",
            file.display(),
            atm_live::refusal(&scenario)
        );
    }
}

#[test]
fn the_sim_transport_refuses_a_qxmpp_endpoint_with_exit_2() {
    for file in mixed_examples() {
        refused(&[], &file, "].implementation: \"qxmpp\"");
        refused(&["--json"], &file, "only over --transport xmpp");
    }
    let file = &mixed_examples()[0];
    refused(
        &["--qxmpp-peer", "/bin/true"],
        file,
        "--qxmpp-peer apply only to --transport xmpp",
    );
}

#[test]
fn without_a_peer_binary_a_mixed_scenario_is_refused_with_exit_2() {
    for file in mixed_examples() {
        refused(
            &["--transport", "xmpp"],
            &file,
            "needs the QXmpp peer of interop/qxmpp-peer: give --qxmpp-peer PATH or set ATM_QXMPP_PEER",
        );
    }
    let file = &mixed_examples()[0];
    refused(
        &["--transport", "xmpp", "--qxmpp-peer", "/no/such/qxmpp-peer"],
        file,
        "--qxmpp-peer /no/such/qxmpp-peer: no such file",
    );
}

/// A scenario with B1 played by QXmpp and `step` as its third step.
fn with_step(dir: &Path, step: &str) -> PathBuf {
    let file = dir.join("case.json");
    std::fs::write(
        &file,
        format!(
            r#"{{"endpoints": [
                {{"name": "A1", "jid": "alice@example.org"}},
                {{"name": "A2", "jid": "alice@example.org", "joins_later": true}},
                {{"name": "B1", "jid": "bob@example.com", "implementation": "qxmpp"}}
              ],
              "steps": [
                {{"authenticate": {{"by": "A1", "keys_of": ["B1"]}}}},
                {{"expect": {{"at": "A1", "key_of": "B1", "level": "authenticated"}}}},
                {step}
              ]}}"#
        ),
    )
    .unwrap();
    file
}

#[test]
fn steps_the_qxmpp_peer_cannot_play_are_refused_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let peer = ["--transport", "xmpp", "--qxmpp-peer", "/bin/true"];
    let cases = [
        (
            r#"{"restart": "B1"}"#,
            "steps[2].restart: \"B1\" is a QXmpp endpoint, and the QXmpp peer keeps its state in memory only",
        ),
        (
            r#"{"offline": "B1"}"#,
            "steps[2].offline: \"B1\" is a QXmpp endpoint",
        ),
        (
            r#"{"online": {"endpoint": "B1", "order": "reverse"}}"#,
            "steps[2].online: \"B1\" is a QXmpp endpoint",
        ),
        (
            r#"{"join": "A2"}"#,
            "steps[2].join: not in a scenario with QXmpp endpoints",
        ),
    ];
    for (step, needle) in cases {
        let file = with_step(dir.path(), step);
        refused(&peer, &file, needle);
        // Refused whether or not the peer is given.
        refused(&["--transport", "xmpp"], &file, needle);
    }
    // Our endpoints may still go offline and restart.
    let file = with_step(dir.path(), r#"{"restart": "A1"}"#);
    let text = std::fs::read_to_string(&file).unwrap();
    let scenario = atm_sim::Scenario::from_json(&text, "case.json").unwrap();
    assert_eq!(atm_live::refusal(&scenario), None);
    // A QXmpp endpoint cannot join later.
    let file = dir.path().join("later.json");
    std::fs::write(
        &file,
        r#"{"endpoints": [{"name": "A1", "jid": "a@x.org"}, {"name": "B1", "jid": "b@x.org", "implementation": "qxmpp", "joins_later": true}],
            "steps": [{"expect_counts": {"manual_actions": 0}}]}"#,
    )
    .unwrap();
    refused(
        &peer,
        &file,
        "endpoints[1].joins_later: B1 is a QXmpp endpoint",
    );
    // Per-account keys stay refused first, as for every xmpp run.
    let file = dir.path().join("ook.json");
    std::fs::write(
        &file,
        r#"{"keys": "per-account", "endpoints": [{"name": "A1", "jid": "a@x.org"}, {"name": "B1", "jid": "b@x.org", "implementation": "qxmpp"}],
            "steps": [{"authenticate": {"by": "A1", "keys_of": ["B1"]}}]}"#,
    )
    .unwrap();
    refused(&peer, &file, "keys: \"per-account\"");
}

#[test]
fn a_peer_that_cannot_start_is_a_setup_failure_exit_3() {
    // `/bin/false` exits at once: the runner must say so, not hang or
    // play without it. Starts a private Prosody.
    let file = mixed_dir().join("distrust-contact-device-qxmpp-applies.json");
    let started = Instant::now();
    let out = run(
        &["--transport", "xmpp", "--qxmpp-peer", "/bin/false"],
        &file,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("setting up the live network") && stderr.contains("A2"),
        "{stderr}"
    );
    assert!(
        stderr.contains("QXmpp peer of A2 exited") || stderr.contains("writing to the peer"),
        "{stderr}"
    );
    assert!(started.elapsed().as_secs() < 120);
}
