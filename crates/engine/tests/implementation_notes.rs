//! XEP-0450 §Implementation Notes: decisions from a sender not yet
//! authenticated, and decisions about keys not yet known, are stored and
//! applied later — to a fixed point, and across a restart.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use atm_engine::{Config, Effect, Engine, Input, KeyMode, Policy, Propagation, TrustLevel};
use common::Net;

#[test]
fn implementation_notes_storing_trust_message_information_unauthenticated_keys() {
    // The spec's example: A1 authenticates B1, sends A2's key to B1; B1 has not
    // authenticated A1 yet, stores it; authenticates A1, then A2 automatically.
    let mut net = Net::new(
        &[
            ("A1", "alice@example.org"),
            ("A2", "alice@example.org"),
            ("B1", "bob@example.com"),
        ],
        Propagation::Xep,
    );
    net.auth("A1", &["A2"]);
    net.auth("A1", &["B1"]);
    let b1 = net.idx("B1");
    assert_eq!(net.endpoints[b1].engine.stored_decision_count().unwrap(), 1);
    assert_ne!(net.level("B1", "A2"), Some(TrustLevel::Authenticated));
    net.auth("B1", &["A1"]);
    assert_eq!(net.level("B1", "A2"), Some(TrustLevel::Authenticated));
    assert_eq!(net.endpoints[b1].engine.stored_decision_count().unwrap(), 0);
}

#[test]
fn postponed_decisions_apply_to_a_fixed_point() {
    // A chain of own endpoints where each one's word arrives before its key is
    // authenticated: one manual authentication releases them all.
    let endpoints = [
        ("A1", "alice@example.org"),
        ("A2", "alice@example.org"),
        ("A3", "alice@example.org"),
        ("A4", "alice@example.org"),
    ];
    let mut net = Net::new(&endpoints, Propagation::Complete);
    // A2 vouches for A3, A3 for A4, A4 for... each sends only to keys it authenticated.
    net.auth("A2", &["A1"]);
    net.auth("A3", &["A2"]);
    net.auth("A4", &["A3"]);
    net.auth("A2", &["A3"]);
    net.auth("A3", &["A4"]);
    let a1 = net.idx("A1");
    assert!(net.endpoints[a1].engine.stored_decision_count().unwrap() >= 1);
    let effects = net.auth("A1", &["A2"]);
    let released = effects
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::TrustChanged {
                    to: TrustLevel::Authenticated,
                    cause: atm_engine::Cause::Postponed(_),
                    ..
                }
            )
        })
        .count();
    assert!(released >= 1);
    net.run();
    for of in ["A2", "A3", "A4"] {
        assert_eq!(net.level("A1", of), Some(TrustLevel::Authenticated), "{of}");
    }
}

#[test]
fn implementation_notes_storing_trust_message_information_unknown_keys() {
    let alice = "alice@example.org".parse::<atm_engine::BareJid>().unwrap();
    let bob = "bob@example.com".parse::<atm_engine::BareJid>().unwrap();
    let key = |b: u8| atm_engine::KeyId::from_bytes([b; 32]).unwrap();
    let now = chrono::DateTime::UNIX_EPOCH;
    let mut a1 = Engine::new(
        Config::new(alice.clone(), key(1)),
        atm_engine::MemoryStore::new(),
    );
    a1.handle(
        Input::KeysLearned {
            owner: bob.clone(),
            keys: vec![key(3)],
        },
        now,
    )
    .unwrap();
    a1.handle(
        Input::Manual {
            owner: bob.clone(),
            authenticate: vec![key(3)],
            distrust: vec![],
        },
        now,
    )
    .unwrap();
    // B1 vouches for B2, whose key A1 has not fetched.
    let message = atm_engine::TrustMessage::parse(&format!(
        "<trust-message xmlns='urn:xmpp:tm:1' usage='urn:xmpp:atm:1' encryption='urn:xmpp:omemo:2'>\
         <key-owner jid='bob@example.com'><trust>{}</trust></key-owner></trust-message>",
        key(4).to_base64()
    ))
    .unwrap();
    let effects = a1
        .handle(
            Input::Received(atm_engine::Received {
                sender: bob.clone(),
                sender_key: Some(key(3)),
                time: now + chrono::Duration::seconds(5),
                stamp: now + chrono::Duration::seconds(5),
                message,
                decision_times: Default::default(),
                co_recipients: vec![],
            }),
            now + chrono::Duration::seconds(6),
        )
        .unwrap();
    assert!(matches!(effects[..], [Effect::Pending { .. }]));
    assert_eq!(a1.stored_decision_count().unwrap(), 1);
    // A restart: only the store survives.
    let store = a1.into_store();
    let mut a1 = Engine::new(Config::new(alice, key(1)), store);
    a1.handle(
        Input::KeysLearned {
            owner: bob.clone(),
            keys: vec![key(4)],
        },
        now,
    )
    .unwrap();
    let b2 = atm_engine::KeyRef::new(bob, key(4));
    assert_eq!(a1.level(&b2).unwrap(), Some(TrustLevel::Authenticated));
    assert_eq!(a1.stored_decision_count().unwrap(), 0);
}

#[test]
fn postponed_decisions_survive_a_restart() {
    let mut net = Net::new(
        &[
            ("A1", "alice@example.org"),
            ("A2", "alice@example.org"),
            ("B1", "bob@example.com"),
        ],
        Propagation::Complete,
    );
    net.auth("A2", &["A1"]);
    net.auth("A2", &["B1"]);
    let a1 = net.idx("A1");
    // Restart A1 from its store alone.
    let config = net.endpoints[a1].engine.config().clone();
    let store = net.endpoints[a1].engine.store_mut().clone();
    net.endpoints[a1].engine = Engine::new(config, store);
    net.auth("A1", &["A2"]);
    assert_eq!(net.level("A1", "B1"), Some(TrustLevel::Authenticated));
}

#[test]
fn toakafa_distrusts_unauthenticated_keys_of_an_owner_once_one_is_authenticated() {
    let mut net = Net::new(
        &[
            ("A1", "alice@example.org"),
            ("B1", "bob@example.com"),
            ("B2", "bob@example.com"),
        ],
        Propagation::Complete,
    );
    assert_eq!(
        net.level("A1", "B2"),
        Some(TrustLevel::AutomaticallyTrusted)
    );
    net.auth("A1", &["B1"]);
    assert_eq!(
        net.level("A1", "B2"),
        Some(TrustLevel::AutomaticallyDistrusted)
    );
}

#[test]
fn manual_policy_starts_keys_undecided_and_toakafa_can_be_restored() {
    let mut net = Net::with(
        &[("A1", "alice@example.org"), ("B1", "bob@example.com")],
        |c| c.policy = Policy::Manual,
    );
    assert_eq!(net.level("A1", "B1"), Some(TrustLevel::Undecided));
    net.policy(Policy::Toakafa);
    assert_eq!(
        net.level("A1", "B1"),
        Some(TrustLevel::AutomaticallyTrusted)
    );
}

#[test]
fn confirmation_mode_waits_for_the_user() {
    let mut net = Net::with(
        &[
            ("A1", "alice@example.org"),
            ("A2", "alice@example.org"),
            ("B1", "bob@example.com"),
        ],
        |c| c.confirm = true,
    );
    net.auth("A1", &["A2"]);
    net.auth("A2", &["A1"]);
    net.auth("A1", &["B1"]);
    assert_eq!(
        net.level("A2", "B1"),
        Some(TrustLevel::AutomaticallyTrusted)
    );
    let a2 = net.idx("A2");
    let waiting = net.endpoints[a2].engine.confirmations().unwrap();
    assert_eq!(waiting.len(), 1);
    let target = waiting[0].decision.target.clone();
    net.input(
        a2,
        Input::Confirm {
            target: target.clone(),
            accept: true,
        },
    );
    assert_eq!(net.level("A2", "B1"), Some(TrustLevel::Authenticated));
    assert!(net.endpoints[a2].engine.confirmations().unwrap().is_empty());
    // Answering again is an error, and changes nothing.
    let err = net.endpoints[a2].engine.handle(
        Input::Confirm {
            target,
            accept: false,
        },
        net.clock,
    );
    assert!(err.is_err());
}

#[test]
fn one_key_per_account_works() {
    // OOK: Alice's two devices share one key, Bob's two another.
    let mut net = Net::with(
        &[
            ("A1", "alice@example.org"),
            ("B1", "bob@example.com"),
            ("C1", "carol@example.net"),
        ],
        |c| c.key_mode = KeyMode::PerAccount,
    );
    net.auth("A1", &["B1"]);
    // The message about B1 goes to the own key (every own device).
    let own = net.key("A1");
    assert!(net.sent.iter().any(|s| s.out.recipients.contains(&own)));
    assert_eq!(net.level("A1", "B1"), Some(TrustLevel::Authenticated));
}
