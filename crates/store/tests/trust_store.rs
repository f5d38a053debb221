//! `SqliteTrustStore` behaves exactly like the engine's `MemoryStore`: the same
//! engine inputs give the same effects and the same stored state, across
//! reopenings of the file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use atm_engine::{
    Changeset, Config, Decision, DecisionKind, DecisionTimes, Engine, Input, KeyId, KeyRecord,
    KeyRef, MemoryStore, Pending, Policy, Postponed, Received, TrustLevel, TrustMessage,
    TrustStore,
};
use atm_store::SqliteTrustStore;
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;

const OWNERS: [&str; 3] = ["alice@example.org", "bob@example.com", "carol@example.net"];

fn key(owner: usize, k: u8) -> KeyRef {
    KeyRef::new(
        OWNERS[owner].parse().unwrap(),
        KeyId::from_bytes(vec![owner as u8, k, 0xEE]).unwrap(),
    )
}

fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + Duration::seconds(seconds) + Duration::nanoseconds(123_456_789)
}

fn own() -> KeyRef {
    key(0, 0)
}

fn open(path: &std::path::Path) -> SqliteTrustStore {
    SqliteTrustStore::open(path, &own().owner, "urn:xmpp:omemo:2").unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    Learn(usize, u8),
    Manual(usize, u8, bool),
    Receive {
        sender: (usize, u8),
        encrypted: bool,
        decisions: Vec<(usize, u8, bool, i64)>,
    },
    Policy(bool),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 0..4u8).prop_map(|(o, k)| Op::Learn(o, k)),
        (0..3usize, 0..4u8, any::<bool>()).prop_map(|(o, k, a)| Op::Manual(o, k, a)),
        (
            (0..3usize, 0..4u8),
            any::<bool>(),
            proptest::collection::vec((0..3usize, 0..4u8, any::<bool>(), -5..5i64), 1..5)
        )
            .prop_map(|(sender, encrypted, decisions)| Op::Receive {
                sender,
                encrypted,
                decisions
            }),
        any::<bool>().prop_map(Op::Policy),
        Just(Op::Reopen),
    ]
}

fn input(op: &Op, clock: i64) -> Option<Input> {
    Some(match op {
        Op::Learn(o, k) => {
            let k = key(*o, *k);
            Input::KeysLearned {
                owner: k.owner,
                keys: vec![k.key],
            }
        }
        Op::Manual(o, k, authenticate) => {
            let kind = if *authenticate {
                DecisionKind::Trust
            } else {
                DecisionKind::Distrust
            };
            Input::manual(key(*o, *k), kind)
        }
        Op::Receive {
            sender,
            encrypted,
            decisions,
        } => {
            let sender = key(sender.0, sender.1);
            let mut xml = String::from("<trust-message xmlns='urn:xmpp:tm:1' usage='urn:xmpp:atm:1' encryption='urn:xmpp:omemo:2'>");
            let mut times = DecisionTimes::default();
            let mut seen = std::collections::HashSet::new();
            for (o, k, trust, dt) in decisions {
                if !seen.insert((*o, *k)) {
                    continue;
                }
                let target = key(*o, *k);
                let tag = if *trust { "trust" } else { "distrust" };
                xml.push_str(&format!(
                    "<key-owner jid='{}'><{tag}>{}</{tag}></key-owner>",
                    target.owner,
                    target.key.to_base64()
                ));
                times.0.insert(target, t(clock + dt));
            }
            xml.push_str("</trust-message>");
            Input::Received(Received {
                sender: sender.owner.clone(),
                sender_key: encrypted.then_some(sender.key),
                time: t(clock),
                stamp: t(clock),
                message: TrustMessage::parse(&xml).unwrap(),
                decision_times: times,
                co_recipients: vec![],
            })
        }
        Op::Policy(toakafa) => Input::SetPolicy(if *toakafa {
            Policy::Toakafa
        } else {
            Policy::Manual
        }),
        Op::Reopen => return None,
    })
}

type State = (
    Vec<(KeyRef, KeyRecord)>,
    u64,
    Vec<atm_engine::Confirmation>,
    Vec<atm_engine::Statement>,
    u64,
    Vec<(KeyRef, Option<atm_engine::Revocation>)>,
);

fn state<S: TrustStore>(engine: &mut Engine<S>) -> State {
    let keys = engine.known_keys().unwrap();
    let mut statements = Vec::new();
    for (key, _) in &keys {
        let mut about = engine.store_mut().statements_about(key).unwrap();
        about.sort_by(|a, b| a.source.cmp(&b.source));
        statements.extend(about);
    }
    let mut missed = Vec::new();
    for (k, _) in &keys {
        let store = engine.store_mut();
        if store.missed_word_of(k).unwrap() {
            missed.push((k.clone(), store.revocation(k).unwrap()));
        }
    }
    (
        keys,
        engine.stored_decision_count().unwrap(),
        engine.confirmations().unwrap(),
        statements,
        engine.store_mut().postponed_total().unwrap(),
        missed,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn sqlite_store_matches_memory_store(ops in proptest::collection::vec(op(), 1..40), confirm in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.sqlite");
        let mut config = Config::new(own().owner, own().key);
        config.confirm = confirm;
        let mut memory = Engine::new(config.clone(), MemoryStore::new());
        let mut sqlite = Engine::new(config.clone(), open(&path));
        for (i, op) in ops.iter().enumerate() {
            let clock = 10 * i as i64 + 100;
            match input(op, clock) {
                None => {
                    drop(sqlite);
                    sqlite = Engine::new(config.clone(), open(&path));
                }
                Some(input) => {
                    let a = memory.handle(input.clone(), t(clock)).unwrap();
                    let b = sqlite.handle(input, t(clock)).unwrap();
                    prop_assert_eq!(a, b);
                }
            }
            prop_assert_eq!(state(&mut memory), state(&mut sqlite));
            prop_assert_eq!(memory.policy().unwrap(), sqlite.policy().unwrap());
        }
        drop(sqlite);
        let mut reopened = Engine::new(config, open(&path));
        prop_assert_eq!(state(&mut memory), state(&mut reopened));
        reopened.store_mut().database().check_integrity().unwrap();
    }
}

#[test]
fn every_table_round_trips_through_a_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trust.sqlite");
    let decision = |k: KeyRef, kind, s| Decision {
        target: k,
        kind,
        time: t(s),
    };
    let changes = Changeset {
        keys: vec![
            (
                key(1, 1),
                KeyRecord {
                    level: TrustLevel::Authenticated,
                    time: Some(t(5)),
                },
            ),
            (
                key(1, 2),
                KeyRecord {
                    level: TrustLevel::AutomaticallyDistrusted,
                    time: None,
                },
            ),
        ],
        postpone: vec![Postponed {
            sender: key(2, 1),
            decision: decision(key(2, 2), DecisionKind::Distrust, 7),
            stamp: t(7),
        }],
        pending: vec![
            Pending {
                sender: Some(key(1, 1)),
                decision: decision(key(1, 3), DecisionKind::Trust, 8),
                stamp: t(8),
            },
            Pending {
                sender: None,
                decision: decision(key(2, 3), DecisionKind::Trust, 9),
                stamp: t(9),
            },
        ],
        confirm: vec![atm_engine::Confirmation {
            sender: key(1, 1),
            decision: decision(key(1, 2), DecisionKind::Trust, 6),
        }],
        policy: Some(Policy::Manual),
        ..Changeset::default()
    };
    let mut memory = MemoryStore::new();
    memory.commit(&changes).unwrap();
    open(&path).commit(&changes).unwrap();
    let mut sqlite = open(&path);
    for k in [key(1, 1), key(1, 2), key(1, 3), key(2, 3)] {
        assert_eq!(sqlite.key(&k).unwrap(), memory.key(&k).unwrap());
        assert_eq!(
            sqlite.pending_for(&k).unwrap(),
            memory.pending_for(&k).unwrap()
        );
        assert_eq!(
            sqlite.confirmation_for(&k).unwrap(),
            memory.confirmation_for(&k).unwrap()
        );
    }
    assert_eq!(
        sqlite.keys_of(&key(1, 0).owner).unwrap(),
        memory.keys_of(&key(1, 0).owner).unwrap()
    );
    assert_eq!(
        sqlite.keys_at(&TrustLevel::ALL).unwrap(),
        memory.keys_at(&TrustLevel::ALL).unwrap()
    );
    assert_eq!(
        sqlite.postponed_from(&key(2, 1)).unwrap(),
        memory.postponed_from(&key(2, 1)).unwrap()
    );
    assert_eq!(sqlite.stored_decision_count().unwrap(), 3);
    assert_eq!(sqlite.policy().unwrap(), Some(Policy::Manual));
    // Another scope in the same file sees nothing of it.
    let mut other = SqliteTrustStore::open(&path, &own().owner, "urn:example:pgp").unwrap();
    assert!(other.keys_at(&TrustLevel::ALL).unwrap().is_empty());
    assert_eq!(other.stored_decision_count().unwrap(), 0);
    assert_eq!(other.policy().unwrap(), None);
    // Deletions.
    let delete = Changeset {
        release: vec![key(2, 1)],
        unpend: vec![key(1, 3)],
        unconfirm: vec![key(1, 2)],
        ..Changeset::default()
    };
    memory.commit(&delete).unwrap();
    sqlite.commit(&delete).unwrap();
    let mut sqlite = open(&path);
    assert_eq!(
        sqlite.stored_decision_count().unwrap(),
        memory.stored_decision_count().unwrap()
    );
    assert!(sqlite.confirmations().unwrap().is_empty());
}

#[test]
fn a_failed_commit_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trust.sqlite");
    let mut store = open(&path);
    let good = Changeset {
        keys: vec![(
            key(1, 1),
            KeyRecord {
                level: TrustLevel::Authenticated,
                time: Some(t(1)),
            },
        )],
        ..Changeset::default()
    };
    store.commit(&good).unwrap();
    // Make the last statement of the next commit fail (a disk error, say).
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER fail AFTER INSERT ON trust_pending \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    let bad = Changeset {
        keys: vec![
            (
                key(1, 1),
                KeyRecord {
                    level: TrustLevel::ManuallyDistrusted,
                    time: Some(t(2)),
                },
            ),
            (
                key(1, 2),
                KeyRecord {
                    level: TrustLevel::Authenticated,
                    time: Some(t(2)),
                },
            ),
        ],
        pending: vec![Pending {
            sender: None,
            decision: Decision {
                target: key(2, 2),
                kind: DecisionKind::Trust,
                time: t(2),
            },
            stamp: t(2),
        }],
        ..Changeset::default()
    };
    let error = store.commit(&bad).unwrap_err();
    assert!(error.to_string().contains("injected failure"), "{error}");
    // Neither the file nor the store's memory changed.
    assert_eq!(
        store.key(&key(1, 1)).unwrap().unwrap().level,
        TrustLevel::Authenticated
    );
    assert_eq!(store.key(&key(1, 2)).unwrap(), None);
    let mut again = open(&path);
    assert_eq!(
        again.key(&key(1, 1)).unwrap().unwrap().level,
        TrustLevel::Authenticated
    );
    assert_eq!(again.key(&key(1, 2)).unwrap(), None);
    assert_eq!(again.stored_decision_count().unwrap(), 0);
    // And the store still works afterwards.
    store.commit(&good).unwrap();
}
