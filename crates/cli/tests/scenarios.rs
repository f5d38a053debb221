//! Every example scenario passes through the real `atm` binary, and the exit
//! statuses of the scenario format hold (0 ok, 1 failed expectation, 2 invalid file).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn atm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_atm"))
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn run_json(file: &Path) -> (i32, serde_json::Value) {
    let out = atm()
        .args(["scenario", "run", "--json"])
        .arg(file)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap(), value)
}

#[test]
fn every_example_scenario_passes() {
    let files = examples();
    assert!(files.len() >= 12, "{} examples", files.len());
    for file in files {
        let (code, json) = run_json(&file);
        assert_eq!(code, 0, "{}: {json:#}", file.display());
        assert_eq!(json["ok"], true, "{}", file.display());
        assert!(json["failures"].as_array().unwrap().is_empty());
        // The text form plays too.
        let text = atm().args(["scenario", "run"]).arg(&file).output().unwrap();
        assert_eq!(text.status.code(), Some(0), "{}", file.display());
    }
}

#[test]
fn the_seed_walkthrough_reaches_all_20_with_8_manual() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/scenarios/seed-walkthrough.json");
    let (code, json) = run_json(&file);
    assert_eq!(code, 0);
    let counts = &json["counts"];
    assert_eq!(counts["manual_authentications"], 8);
    assert_eq!(counts["automatic_authentications"], 12);
    let endpoints = json["endpoints"].as_object().unwrap();
    let mut authenticated = 0;
    for (name, e) in endpoints {
        for (other, level) in e["trust"].as_object().unwrap() {
            assert_ne!(name, other);
            if level == "authenticated" {
                authenticated += 1;
            }
        }
        assert_eq!(e["online"], true);
        assert_eq!(e["key"].as_str().unwrap().len(), 44);
    }
    assert_eq!(authenticated, 20);
    // Messages: sequence numbers from 1, names for known keys, XML that parses.
    for (i, m) in json["messages"].as_array().unwrap().iter().enumerate() {
        assert_eq!(m["seq"], i as u64 + 1);
        assert!(m["time"].as_str().unwrap().starts_with("2020-01-01T00:00:"));
        atm_tm::TrustMessage::parse(m["xml"].as_str().unwrap()).unwrap();
        for owner in m["key_owners"].as_array().unwrap() {
            for k in owner["trust"].as_array().unwrap() {
                assert!(["A1", "A2", "A3", "B1", "B2"].contains(&k.as_str().unwrap()));
            }
        }
    }
}

fn scenario_file(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("s.json");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_failed_expectation_exits_1_and_lists_every_failure() {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(
        &dir,
        r#"{"endpoints": [{"name": "A1", "jid": "alice@example.org"}, {"name": "B1", "jid": "bob@example.com"}],
            "steps": [
              {"expect": {"at": "A1", "key_of": "B1", "level": "authenticated"}},
              {"authenticate": {"by": "A1", "keys_of": ["B1"]}},
              {"expect": {"at": "A1", "key_of": "B1", "level": "authenticated"}},
              {"expect_counts": {"manual_actions": 2}}
            ]}"#,
    );
    let (code, json) = run_json(&file);
    assert_eq!(code, 1);
    assert_eq!(json["ok"], false);
    assert_eq!(json["name"], "s.json", "the file name, as the format says");
    let failures = json["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0]["step"], 0);
    assert_eq!(
        failures[0]["message"],
        "A1 holds automatically_trusted for B1, expected authenticated"
    );
    assert_eq!(failures[1]["step"], 3);
}

#[test]
fn an_invalid_file_exits_2_naming_the_json_path() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"{"endpoints": [{"name": "A1", "jid": "a@example.org"}], "steps": [{"authenticate": {"by": "A9", "keys_of": ["A1"]}}]}"#,
            r#"steps[0].authenticate.by: unknown endpoint "A9""#,
        ),
        (
            r#"{"endpoints": [{"name": "A1", "jid": "a@example.org"}], "steps": [], "colour": 1}"#,
            "unknown field `colour`",
        ),
        (
            r#"{"endpoints": [{"name": "A1", "jid": "a@example.org", "joins_later": true}], "steps": [{"offline": "A1"}]}"#,
            r#"steps[0].offline: endpoint "A1" has not joined yet"#,
        ),
        (
            r#"{"endpoints": [{"name": "A1", "jid": "a@example.org/phone"}], "steps": []}"#,
            "endpoints[0].jid",
        ),
        (
            r#"{"endpoints": [{"name": "A1", "jid": "a@example.org"}], "steps": [{"expect": {"at": "A1", "key_of": "A1", "level": "sure"}}]}"#,
            "steps[0].expect.level: unknown trust level",
        ),
        (
            r#"{"endpoints": [{"name": "A1", "jid": "a@example.org"}], "steps": [{"expect_counts": {"messages": 1}}]}"#,
            "steps[0].expect_counts.messages: unknown counter",
        ),
        (
            r#"{"endpoints": [{"name": "A1", "jid": "a@example.org"}], "steps": [{"offline": "A1", "online": "A1"}]}"#,
            "steps[0]: a step has exactly one key; found `offline` and `online`",
        ),
        (
            r#"{"endpoints": [{"name": "A1", "jid": "a@example.org"}], "steps": [{"offline": "A1"}, {}]}"#,
            "steps[1]: a step needs exactly one key",
        ),
        (
            r#"{"endpoints": [{"name": "A1", "jid": "a@example.org"}], "steps": [{"offline": "A1"}, {"teleport": "A1"}]}"#,
            "steps[1]: unknown step `teleport`",
        ),
        (
            r#"{"endpoints": [{"name": "A1", "jid": "a@example.org"}, {"name": "A1", "jid": "a@example.org"}], "steps": []}"#,
            r#"endpoints[1].name: duplicate endpoint name "A1""#,
        ),
        (r#"{"endpoints": [], "steps": []"#, "EOF"),
    ];
    for (text, expected) in cases {
        let file = scenario_file(&dir, text);
        let out = atm()
            .args(["scenario", "run", "--json"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(out.stdout.is_empty(), "nothing is run: {text}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(expected), "{text}\n=> {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn the_demo_counts_8_manual_12_automatic_and_what_xep_leaves_undone() {
    let out = atm().args(["demo", "--json"]).output().unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["authentications_needed"], 20);
    assert_eq!(json["complete"]["manual_authentications"], 8);
    assert_eq!(json["complete"]["automatic_authentications"], 12);
    assert_eq!(json["complete"]["authenticated"], 20);
    assert!(json["complete"]["trust_messages_sent"].as_u64().unwrap() <= 6);
    assert_eq!(json["xep"]["automatic_authentications"], 8);
    assert_eq!(json["xep"]["left_undone"].as_array().unwrap().len(), 4);
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("demo.svg");
    let out = atm().arg("demo").arg("--svg").arg(&svg).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("made automatically"));
    let picture = std::fs::read_to_string(svg).unwrap();
    assert!(picture.starts_with("<svg") && picture.trim_end().ends_with("</svg>"));
    assert_eq!(
        picture.matches("<line ").count(),
        20 + 2,
        "20 arrows and 2 legend lines"
    );
}

#[test]
fn simulate_reproduces_the_seed_numbers_and_draws_its_picture() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("sim.svg");
    let out = atm()
        .args([
            "simulate",
            "--accounts",
            "2",
            "--devices",
            "3,2",
            "--runs",
            "20",
            "--offline",
            "0.2",
            "--json",
            "--svg",
        ])
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let configurations = json["configurations"].as_array().unwrap();
    assert_eq!(configurations.len(), 2, "--svg runs both rule sets");
    let complete = &configurations[0];
    assert_eq!(complete["propagation"], "complete");
    assert_eq!(complete["manual_authentications"], 8.0);
    assert_eq!(complete["automatic_authentications"], 12.0);
    assert_eq!(complete["converged_runs"], 20);
    assert!(std::fs::read_to_string(svg).unwrap().contains("</svg>"));
    let bad = atm()
        .args(["simulate", "--accounts", "3", "--devices", "3,2"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

fn levels(json: &serde_json::Value) -> Vec<(String, Vec<String>)> {
    json["endpoints"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, e)| {
            let mut levels: Vec<String> = e["trust"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect();
            levels.sort();
            (name.clone(), levels)
        })
        .collect()
}

#[test]
fn every_example_gives_the_same_result_with_omemo_encryption() {
    for file in examples() {
        let (plain_code, plain) = run_json(&file);
        let out = atm()
            .args(["scenario", "run", "--json", "--crypto", "omemo"])
            .arg(&file)
            .output()
            .unwrap();
        let encrypted: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(plain_code), "{}", file.display());
        assert_eq!(encrypted["ok"], true, "{}: {encrypted:#}", file.display());
        assert_eq!(levels(&encrypted), levels(&plain), "{}", file.display());
        assert_eq!(
            encrypted["counts"]["trust_messages_sent"],
            plain["counts"]["trust_messages_sent"]
        );
        // Keys are the devices' 32-byte identity keys.
        for e in encrypted["endpoints"].as_object().unwrap().values() {
            assert_eq!(e["key"].as_str().unwrap().len(), 44);
        }
    }
}

#[test]
fn with_omemo_a_replay_meets_the_ratchets_refusal() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/scenarios/replay-after-distrust.json");
    let out = atm()
        .args(["scenario", "run", "--crypto", "omemo"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let replay = text.split("is replayed to A2").nth(1).unwrap();
    let replay_step = replay.split("\n[").next().unwrap();
    assert!(replay_step.contains("refused"), "{replay_step}");
}
