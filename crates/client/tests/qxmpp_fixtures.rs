//! What QXmpp 1.10.2 sent our devices in the live mixed runs
//! (`crates/endpoint/tests/live_qxmpp.rs`, recorded with
//! `ATM_QXMPP_RECORD`), replayed through the core without QXmpp or a
//! server: each recorded stanza is fed, with its recorded receipt time, to
//! the receiving device's SQLite file as it was just before, and what the
//! core did and reported must be what it did live. The reverse direction
//! (what our devices sent QXmpp and what QXmpp decided) is checked for its
//! shape.
//!
//! The snapshots are opened by the current store, so a schema migration
//! that cannot open them, or loses the OMEMO sessions or trust state they
//! hold, fails here (opening is not allowed to fail, and decryption and
//! decisions must match).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "qxmpp_fixture/summary.rs"]
mod summary;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use atm_client::{Endpoint, Options, OsRandom};
use chrono::{DateTime, Utc};
use serde_json::Value;

const RUNS: [&str; 3] = ["hub-a3", "bob-qxmpp", "one-each"];

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/qxmpp")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the OMEMO 2 fallback body says (QXmpp puts it on every message).
const FALLBACK_BODY: &str = "This message is encrypted with OMEMO 2";

/// Feeds one run's recorded stanzas; returns how many were trust
/// messages and chat messages.
fn replay(run: &str) -> (usize, usize) {
    let dir = data().join(run);
    let manifest = read_json(&dir.join("received-from-qxmpp.json"));
    assert_eq!(manifest["qxmpp"], "1.10.2");
    let records = manifest["records"].as_array().unwrap();
    assert!(!records.is_empty(), "{run}: no records");
    let (mut trust, mut chat) = (0, 0);
    for (index, record) in records.iter().enumerate() {
        let what = format!("{run} record {index} ({})", record["device"]);
        let state = tempfile::tempdir().unwrap();
        let mut compressed = std::fs::File::open(dir.join(record["snapshot"].as_str().unwrap()))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(&mut compressed)
            .read_to_end(&mut bytes)
            .unwrap_or_else(|e| panic!("{what}: snapshot: {e}"));
        std::fs::write(state.path().join(atm_client::DATABASE_FILE), &bytes).unwrap();
        let received: DateTime<Utc> = record["received"].as_str().unwrap().parse().unwrap();
        let jid: jid::BareJid = record["jid"].as_str().unwrap().parse().unwrap();
        let mut core = Endpoint::open_with(
            state.path(),
            &jid,
            received,
            Box::new(OsRandom),
            Options::default(),
        )
        .unwrap_or_else(|e| panic!("{what}: the snapshot does not open: {e}"));
        assert_eq!(core.jid(), &jid, "{what}");
        while core.poll_event().is_some() {}
        let stanza: minidom::Element = record["stanza"].as_str().unwrap().parse().unwrap();
        let handled = core
            .handle_stanza(&stanza, received)
            .unwrap_or_else(|e| panic!("{what}: the core failed: {e}"));
        let mut events = Vec::new();
        while let Some(event) = core.poll_event() {
            events.push(summary::event(&event));
        }
        assert_eq!(
            summary::handled(&handled),
            record["handled"].as_str().unwrap(),
            "{what}: handled differently than live"
        );
        let live: Vec<String> = record["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(events, live, "{what}: events differ from the live run");
        assert!(
            !matches!(handled, atm_client::Handled::Rejected(_)),
            "{what}: {handled:?}"
        );
        for event in &events {
            assert!(
                !event.contains(FALLBACK_BODY),
                "{what}: the fallback body shown as chat: {event}"
            );
        }
        match handled {
            atm_client::Handled::TrustMessage => trust += 1,
            atm_client::Handled::Chat => chat += 1,
            _ => {}
        }
    }
    (trust, chat)
}

#[test]
fn qxmpp_as_the_hub_a3_trust_messages_replay_as_live() {
    let (trust, chat) = replay("hub-a3");
    // A3 (QXmpp) sent 4 trust messages: 2 to its own JID after A3→A2
    // (A1; then A1 and A2), 2 after A3→B2 (A1 and A2; B1 and B2 and, by
    // carbons, A1 and A2): every copy that reached one of ours.
    assert!(trust >= 6, "{trust}");
    assert_eq!(chat, 0);
}

#[test]
fn qxmpp_only_on_bobs_side_trust_messages_replay_as_live() {
    let (trust, chat) = replay("bob-qxmpp");
    // B2 (QXmpp) sent {bob:[B1]} to alice, postponed at A3.
    assert!(trust >= 1, "{trust}");
    assert_eq!(chat, 0);
}

#[test]
fn one_qxmpp_device_per_account_chat_and_distrusts_replay_as_live() {
    let (trust, chat) = replay("one-each");
    // B1's chat on A1, A3, B2; A2's two distrusts on A1 and A3.
    assert_eq!(chat, 3);
    assert!(trust >= 4, "{trust}");
}

/// Known QXmpp warnings about its own doing (see docs/interop.md).
fn known_warning(text: &str) -> bool {
    [
        "OMEMO element could not be created because no recipient devices with keys having accepted trust levels could be found",
        "OMEMO envelope data is already received",
        "Data for decrypting OMEMO payload could not be extracted",
        "SCE envelope could not be extracted",
        "for key exchange is already received",
        "could not be subscribed",
    ]
    .iter()
    .any(|k| text.contains(k))
}

/// Our trust messages as QXmpp received them: XEP-0434 as QXmpp reads it
/// (usage, encryption, key owners), applied: every key a trust message of
/// ours may decide for that device ends up at the level it said.
#[test]
fn what_qxmpp_received_from_us_has_the_right_shape_and_was_applied() {
    let mut from_us = 0;
    for run in RUNS {
        let dir = data().join(run);
        let devices = read_json(&dir.join("devices.json"));
        let ours: HashMap<String, String> = devices
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["implementation"] == "atm-rs")
            .map(|d| {
                (
                    d["key_hex"].as_str().unwrap().to_owned(),
                    d["jid"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let own_key: HashMap<String, (String, String)> = devices
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["name"].as_str().unwrap().to_owned(),
                    (
                        d["jid"].as_str().unwrap().to_owned(),
                        d["key_hex"].as_str().unwrap().to_owned(),
                    ),
                )
            })
            .collect();
        let text = std::fs::read_to_string(dir.join("qxmpp-transcript.jsonl")).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let mut by_device: HashMap<String, Vec<&Value>> = HashMap::new();
        for line in &lines {
            by_device
                .entry(line["device"].as_str().unwrap().to_owned())
                .or_default()
                .push(line);
        }
        for (device, events) in &by_device {
            let (own_jid, own_hex) = own_key[device].clone();
            let warnings: Vec<&str> = events
                .iter()
                .filter(|e| e["event"] == "log" || e["event"] == "error")
                .map(|e| e["text"].as_str().unwrap())
                .collect();
            for (i, w) in warnings.iter().enumerate() {
                let copy = *w == "Empty OMEMO message could not be successfully processed"
                    && i > 0
                    && warnings[i - 1].contains("is already received");
                assert!(known_warning(w) || copy, "{run} {device}: {w}");
            }
            // Final level of each key at this device.
            let mut last: HashMap<(String, String), String> = HashMap::new();
            let mut decided: HashSet<(String, String)> = HashSet::new();
            let mut distrusted: HashSet<(String, String)> = HashSet::new();
            for event in events {
                match event["event"].as_str().unwrap() {
                    "trust_changed" => {
                        last.insert(
                            (
                                event["jid"].as_str().unwrap().to_owned(),
                                event["key_hex"].as_str().unwrap().to_owned(),
                            ),
                            event["level"].as_str().unwrap().to_owned(),
                        );
                    }
                    "trust_message" => {
                        let sender = event["sender_key_hex"].as_str().unwrap();
                        let Some(sender_jid) = ours.get(sender) else {
                            continue;
                        };
                        from_us += 1;
                        assert_eq!(event["usage"], "urn:xmpp:atm:1", "{run} {device}");
                        assert_eq!(event["tm_encryption"], "urn:xmpp:omemo:2", "{run} {device}");
                        assert!(event["sce_time"].as_str().is_some_and(|t| !t.is_empty()));
                        let owners = event["key_owners"].as_array().unwrap();
                        assert!(!owners.is_empty(), "{run} {device}: no key owner");
                        for owner in owners {
                            let jid = owner["jid"].as_str().unwrap();
                            // QXmpp's rule (and ours): a contact decides only
                            // on its own account's keys.
                            if *sender_jid != own_jid && jid != sender_jid {
                                continue;
                            }
                            for key in owner["trust"].as_array().unwrap() {
                                let key = key.as_str().unwrap().to_owned();
                                assert_eq!(key.len(), 64, "{run}: key ids are 32 bytes");
                                if key != own_hex {
                                    decided.insert((jid.to_owned(), key));
                                }
                            }
                            for key in owner["distrust"].as_array().unwrap() {
                                let key = key.as_str().unwrap().to_owned();
                                assert_eq!(key.len(), 64);
                                if key != own_hex {
                                    distrusted.insert((jid.to_owned(), key));
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            for key in distrusted {
                assert_eq!(
                    last.get(&key).map(String::as_str),
                    Some("manually_distrusted"),
                    "{run} {device}: our distrust of {key:?} not applied"
                );
            }
            for key in decided {
                let level = last.get(&key).map(String::as_str);
                assert!(
                    matches!(level, Some("authenticated" | "manually_distrusted")),
                    "{run} {device}: {key:?} trusted by one of our messages ends {level:?}"
                );
            }
        }
    }
    assert!(
        from_us >= 3,
        "trust messages from us received by QXmpp: {from_us}"
    );
}
