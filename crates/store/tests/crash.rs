//! Killing the process at any point loses no decision that was reported as
//! made, and never leaves an input half-stored: a child process applies a
//! stream of engine inputs to a SQLite trust store and reports each one after
//! `handle` returned; the parent kills it (SIGKILL) at random points, reopens
//! the file, and finds exactly the state after some prefix of the stream that
//! includes every reported input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use atm_engine::{
    Config, DecisionKind, DecisionTimes, Engine, Input, KeyId, KeyRecord, KeyRef, MemoryStore,
    Received, TrustMessage, TrustStore,
};
use atm_store::SqliteTrustStore;
use chrono::{DateTime, Duration, Utc};

const INPUTS: usize = 400;
const CHILD: &str = "ATM_CRASH_TEST_DB";

fn own() -> KeyRef {
    KeyRef::new(
        "alice@example.org".parse().unwrap(),
        KeyId::from_bytes([1; 32]).unwrap(),
    )
}

fn key(owner: u64, k: u64) -> KeyRef {
    KeyRef::new(
        format!("user{owner}@example.net").parse().unwrap(),
        KeyId::from_bytes(vec![owner as u8, k as u8, 7, 7]).unwrap(),
    )
}

fn now(i: usize) -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + Duration::seconds(1000 + 2 * i as i64)
}

/// The deterministic stream of inputs.
fn stream() -> Vec<Input> {
    let mut x: u64 = 0x5eed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..INPUTS)
        .map(|i| {
            let r = next();
            let target = key(r % 6, (r >> 8) % 4);
            match r % 4 {
                0 => Input::KeysLearned { owner: target.owner, keys: vec![target.key] },
                1 => Input::manual(target, DecisionKind::Trust),
                2 => Input::manual(target, DecisionKind::Distrust),
                _ => {
                    let sender = key(target.owner.as_str().as_bytes()[4] as u64 - b'0' as u64, (r >> 16) % 4);
                    let tag = if (r >> 20) % 3 == 0 { "distrust" } else { "trust" };
                    let xml = format!(
                        "<trust-message xmlns='urn:xmpp:tm:1' usage='urn:xmpp:atm:1' encryption='urn:xmpp:omemo:2'>\
                         <key-owner jid='{}'><{tag}>{}</{tag}></key-owner></trust-message>",
                        target.owner,
                        target.key.to_base64()
                    );
                    Input::Received(Received {
                        sender: sender.owner,
                        sender_key: Some(sender.key),
                        time: now(i) - Duration::seconds(1),
                        stamp: now(i) - Duration::seconds(1),
                        message: TrustMessage::parse(&xml).unwrap(),
                        decision_times: DecisionTimes::default(),
                        co_recipients: vec![],
                    })
                }
            }
        })
        .collect()
}

fn config() -> Config {
    Config::new(own().owner, own().key)
}

type State = (Vec<(KeyRef, KeyRecord)>, u64);

fn state<S: TrustStore>(engine: &mut Engine<S>) -> State {
    (
        engine.known_keys().unwrap(),
        engine.stored_decision_count().unwrap(),
    )
}

/// The child: applies the stream, reporting each input once it is stored.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD) else {
        return; // run only as the child of `kill_at_random_points`
    };
    let store = SqliteTrustStore::open(&path, &own().owner, "urn:xmpp:omemo:2").unwrap();
    let mut engine = Engine::new(config(), store);
    let mut out = std::io::stdout().lock();
    for (i, input) in stream().into_iter().enumerate() {
        engine.handle(input, now(i)).unwrap();
        writeln!(out, "stored {i}").unwrap();
        out.flush().unwrap();
    }
    writeln!(out, "finished").unwrap();
}

#[test]
fn kill_at_random_points() {
    // The state after each prefix of the stream, computed in memory.
    let mut reference = Engine::new(config(), MemoryStore::new());
    let mut prefixes: Vec<State> = vec![state(&mut reference)];
    for (i, input) in stream().into_iter().enumerate() {
        reference.handle(input, now(i)).unwrap();
        prefixes.push(state(&mut reference));
    }
    let mut seed: u64 = 0xC0FFEE;
    let mut kills = 0;
    for round in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.sqlite");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let kill_after = 1 + (seed >> 33) as usize % (INPUTS - 20);
        let mut reported = 0usize;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        while let Some(Ok(line)) = lines.next() {
            if let Some(n) = line.strip_prefix("stored ") {
                reported = n.parse::<usize>().unwrap() + 1;
                if reported >= kill_after {
                    break;
                }
            }
        }
        // Somewhere inside the next inputs: before, during or after a commit.
        std::thread::sleep(std::time::Duration::from_micros((seed >> 7) % 4000));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        let store = SqliteTrustStore::open(&path, &own().owner, "urn:xmpp:omemo:2").unwrap();
        store.database().check_integrity().unwrap();
        let mut reopened = Engine::new(config(), store);
        let found = state(&mut reopened);
        let prefix = (reported..prefixes.len()).find(|&m| prefixes[m] == found);
        eprintln!("round {round}: killed after {reported} reported inputs; the file holds the state after {prefix:?}");
        assert!(
            prefix.is_some(),
            "round {round}: after {reported} reported inputs the file holds no state of a prefix >= {reported}"
        );
    }
    assert_eq!(kills, 8);
}
