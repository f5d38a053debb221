//! `atm scenario run --transport xmpp` through the real binary: the exit
//! statuses and refusals of the scenario format, and a live run on a
//! private Prosody that ends as the sim transport does. The server must
//! start: a missing Prosody fails the test, it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn atm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_atm"))
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/scenarios")
        .join(name)
}

fn run(args: &[&str], file: &Path) -> Output {
    atm()
        .args(["scenario", "run"])
        .args(args)
        .arg(file)
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn trust_maps(json: &serde_json::Value) -> serde_json::Value {
    let mut maps = serde_json::Map::new();
    for (name, e) in json["endpoints"].as_object().unwrap() {
        maps.insert(name.clone(), e["trust"].clone());
    }
    serde_json::Value::Object(maps)
}

fn owners(list: &serde_json::Value) -> Vec<(String, Vec<String>, Vec<String>)> {
    let sorted = |v: &serde_json::Value| {
        let mut names: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    list.as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["jid"].as_str().unwrap().to_owned(),
                sorted(&o["trust"]),
                sorted(&o["distrust"]),
            )
        })
        .collect()
}

#[test]
fn replay_inject_and_per_account_keys_are_refused_with_exit_2_before_anything_runs() {
    let cases = [
        (
            "replay-after-distrust.json",
            "].replay: cannot happen on a real network",
        ),
        (
            "restart-keeps-everything.json",
            "].replay: cannot happen on a real network",
        ),
        (
            "injection-while-offline.json",
            "].inject: cannot happen on a real network",
        ),
        ("one-key-per-account.json", "keys: \"per-account\""),
    ];
    for (file, needle) in cases {
        let started = std::time::Instant::now();
        let out = run(&["--transport", "xmpp", "--json"], &example(file));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {stderr}");
        assert!(stderr.contains(needle), "{file}: {stderr}");
        assert!(out.stdout.is_empty(), "{file}: nothing runs");
        // Refused before a server is started.
        assert!(started.elapsed().as_secs() < 10, "{file}");
    }
}

#[test]
fn wrong_transport_options_exit_2() {
    let file = example("seed-walkthrough.json");
    let cases: [(&[&str], &str); 5] = [
        (
            &["--transport", "xmpp", "--crypto", "omemo"],
            "--crypto applies only",
        ),
        (&["--server", "prosody"], "apply only to --transport xmpp"),
        (
            &["--transport", "xmpp", "--server", "openfire"],
            "expected prosody, ejabberd or HOST:PORT",
        ),
        (
            &["--transport", "xmpp", "--server", "127.0.0.1:5222"],
            "give --ca FILE",
        ),
        (
            &[
                "--transport",
                "xmpp",
                "--server",
                "no.such.host.invalid:5222",
                "--ca",
                "x.pem",
            ],
            "no.such.host.invalid",
        ),
    ];
    for (args, needle) in cases {
        let out = run(args, &file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn a_live_run_ends_as_the_sim_and_a_failed_expectation_exits_1() {
    let file = example("seed-walkthrough.json");
    let sim = run(&["--json"], &file);
    assert_eq!(sim.status.code(), Some(0));
    let live = run(&["--json", "--transport", "xmpp"], &file);
    assert_eq!(
        live.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&live.stderr)
    );
    let (sim, live) = (json(&sim), json(&live));
    assert_eq!(trust_maps(&live), trust_maps(&sim));
    assert_eq!(live["counts"], sim["counts"]);
    // The messages list: the same senders and recipients, SCE times in order.
    let messages = live["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    let times: Vec<&str> = messages
        .iter()
        .map(|m| m["time"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    for (l, s) in messages.iter().zip(sim["messages"].as_array().unwrap()) {
        assert_eq!(l["from"], s["from"]);
        assert_eq!(l["to"], s["to"]);
        // Keys are listed in key order: real keys sort differently.
        assert_eq!(owners(&l["key_owners"]), owners(&s["key_owners"]));
    }
    // A failed expectation over XMPP: exit 1, every step still runs.
    let dir = tempfile::tempdir().unwrap();
    let failing = dir.path().join("failing.json");
    std::fs::write(
        &failing,
        r#"{"endpoints": [{"name": "A1", "jid": "alice@example.org"}, {"name": "B1", "jid": "bob@example.com"}],
            "steps": [
              {"expect": {"at": "A1", "key_of": "B1", "level": "authenticated"}},
              {"authenticate": {"by": "A1", "keys_of": ["B1"]}},
              {"expect": {"at": "A1", "key_of": "B1", "level": "authenticated"}},
              {"expect": {"at": "B1", "key_of": "A1", "level": "automatically_trusted"}},
              {"expect_counts": {"manual_actions": 2}}
            ]}"#,
    )
    .unwrap();
    let store = dir.path().join("store");
    let out = run(
        &[
            "--json",
            "--transport",
            "xmpp",
            "--store",
            store.to_str().unwrap(),
        ],
        &failing,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = json(&out);
    let failures = json["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 2, "{json:#}");
    assert_eq!(failures[0]["step"], 0);
    assert_eq!(
        failures[0]["message"],
        "A1 holds automatically_trusted for B1, expected authenticated"
    );
    assert_eq!(failures[1]["step"], 4);
    // --store keeps one state directory (one SQLite file) per endpoint.
    for name in ["A1", "B1"] {
        assert!(store.join(name).join("atm.sqlite").is_file(), "{name}");
    }
    // ... and refuses to play into a folder that already holds their state.
    let again = run(
        &[
            "--json",
            "--transport",
            "xmpp",
            "--store",
            store.to_str().unwrap(),
        ],
        &failing,
    );
    assert_eq!(again.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds an endpoint's state"));
}

#[test]
fn a_running_server_at_host_port_with_its_ca_gets_the_accounts_by_in_band_registration() {
    let server = atm_xmpp_server::Server::start(atm_xmpp_server::Kind::Prosody)
        .unwrap_or_else(|e| panic!("the private Prosody did not start: {e}"));
    let address = server.c2s_addr().to_string();
    let ca = server.ca_pem_path().to_str().unwrap().to_owned();
    let file = example("distrust-contact-device.json");
    let args = [
        "--json",
        "--transport",
        "xmpp",
        "--server",
        &address,
        "--ca",
        &ca,
    ];
    // Twice on the same server: each run registers its own accounts.
    for _ in 0..2 {
        let out = run(&args, &file);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let live = json(&out);
        let sim = json(&run(&["--json"], &file));
        assert_eq!(trust_maps(&live), trust_maps(&sim));
        // The output names the scenario's accounts, not the registered ones.
        assert_eq!(live["endpoints"]["A1"]["jid"], "alice@example.org");
    }
    // A CA that did not sign the server's certificate: the login fails (exit 3).
    let other = atm_xmpp_server::Server::start(atm_xmpp_server::Kind::Prosody).unwrap();
    let wrong_ca = other.ca_pem_path().to_str().unwrap().to_owned();
    let out = run(
        &[
            "--transport",
            "xmpp",
            "--server",
            &address,
            "--ca",
            &wrong_ca,
        ],
        &file,
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
