//! The engine's trust rules against an attacker: a stolen but still trusted
//! device, a rogue contact, an outsider, a lying clock, a reordering server
//! (issue 9). Each test is one attack.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use atm_engine::{
    Cause, Config, DecisionKind, DecisionTimes, Effect, Engine, IgnoreReason, Input, KeyId, KeyRef,
    Limits, MemoryStore, Propagation, Received, TrustLevel, TrustMessage, TrustStore,
    MAX_CLOCK_SKEW,
};
use chrono::{DateTime, Duration, Utc};
use common::{key_of, Net};

const ENDPOINTS: [(&str, &str); 5] = [
    ("A1", "alice@example.org"),
    ("A2", "alice@example.org"),
    ("A3", "alice@example.org"),
    ("B1", "bob@example.com"),
    ("M1", "bob@example.com"),
];

/// Alice's three devices and Bob's B1 all authenticated; M1 (a key on Bob's
/// account that nobody authenticated) is known everywhere.
fn meshed() -> Net {
    let mut net = Net::new(&ENDPOINTS, Propagation::Complete);
    net.auth("A1", &["A2", "A3", "B1"]);
    net.auth("A2", &["A1"]);
    net.auth("A3", &["A1"]);
    net.auth("B1", &["A1"]);
    for (at, of) in [("A2", "A3"), ("A3", "A2"), ("A2", "B1"), ("B1", "A3")] {
        assert_eq!(
            net.level(at, of),
            Some(TrustLevel::Authenticated),
            "{at} {of}"
        );
    }
    assert_eq!(
        net.level("A2", "M1"),
        Some(TrustLevel::AutomaticallyDistrusted)
    );
    net
}

fn message(owners: &[(&str, &[KeyId], &[KeyId])]) -> TrustMessage {
    let mut xml = String::from(
        "<trust-message xmlns='urn:xmpp:tm:1' usage='urn:xmpp:atm:1' encryption='urn:xmpp:omemo:2'>",
    );
    for (jid, trust, distrust) in owners {
        xml.push_str(&format!("<key-owner jid='{jid}'>"));
        for k in *trust {
            xml.push_str(&format!("<trust>{}</trust>", k.to_base64()));
        }
        for k in *distrust {
            xml.push_str(&format!("<distrust>{}</distrust>", k.to_base64()));
        }
        xml.push_str("</key-owner>");
    }
    xml.push_str("</trust-message>");
    TrustMessage::parse(&xml).unwrap()
}

/// A crafted trust message from `from`, with SCE time `time`, that the
/// receiver's server stamped `stamp`.
fn craft(
    net: &Net,
    from: &str,
    time: DateTime<Utc>,
    stamp: DateTime<Utc>,
    message: TrustMessage,
) -> Received {
    let sender = net.key(from);
    Received {
        sender: sender.owner,
        sender_key: Some(sender.key),
        time,
        stamp,
        message,
        decision_times: DecisionTimes::default(),
        co_recipients: vec![],
    }
}

/// A1's user distrusts the stolen A3 while A2 is offline; A3 then sends A2
/// `message`, stamped after the revocation, which A2 reads before the
/// revocation (A2 stays offline). Returns A2's index.
fn stolen_a3_speaks_to_offline_a2_after_its_revocation(
    net: &mut Net,
    message: TrustMessage,
) -> usize {
    net.offline("A2");
    net.distrust("A1", &["A3"]);
    let stamp = net.clock + Duration::seconds(1);
    let a2 = net.idx("A2");
    let received = craft(net, "A3", stamp, stamp, message);
    net.input(a2, Input::Received(received));
    a2
}

fn k(name: &str) -> KeyId {
    key_of(name)
}

fn record(net: &mut Net, at: &str, of: &str) -> atm_engine::KeyRecord {
    let key = net.key(of);
    let i = net.idx(at);
    net.endpoints[i]
        .engine
        .store_mut()
        .key(&key)
        .unwrap()
        .unwrap()
}

// ---- 1. time ----

#[test]
fn a_future_dated_message_is_rejected_and_the_users_later_correction_wins() {
    let mut net = meshed();
    let now = net.clock;
    let years_ahead = now + Duration::days(3650);
    let forged = craft(
        &net,
        "A3",
        years_ahead,
        now,
        message(&[
            ("bob@example.com", &[k("M1")], &[]),
            ("alice@example.org", &[k("A3")], &[k("A1")]),
        ]),
    );
    let a2 = net.idx("A2");
    let effects = net.input(a2, Input::Received(forged));
    assert_eq!(
        effects,
        vec![Effect::Ignored(IgnoreReason::ClockSkew {
            time: years_ahead,
            stamp: now
        })]
    );
    assert_eq!(
        net.level("A2", "M1"),
        Some(TrustLevel::AutomaticallyDistrusted)
    );
    assert_eq!(net.level("A2", "A1"), Some(TrustLevel::Authenticated));
    net.distrust("A1", &["A3", "M1"]);
    assert_eq!(net.level("A2", "A3"), Some(TrustLevel::ManuallyDistrusted));
    assert_eq!(net.level("A2", "M1"), Some(TrustLevel::ManuallyDistrusted));
}

#[test]
fn a_message_dated_too_far_in_the_past_is_rejected() {
    let mut net = meshed();
    let now = net.clock;
    let old = now - MAX_CLOCK_SKEW - Duration::seconds(1);
    let replayed = craft(
        &net,
        "A3",
        old,
        now,
        message(&[("bob@example.com", &[k("M1")], &[])]),
    );
    let a2 = net.idx("A2");
    let effects = net.input(a2, Input::Received(replayed));
    assert!(matches!(
        effects[..],
        [Effect::Ignored(IgnoreReason::ClockSkew { .. })]
    ));
    assert_eq!(
        net.level("A2", "M1"),
        Some(TrustLevel::AutomaticallyDistrusted)
    );
}

#[test]
fn a_time_within_the_margin_counts_no_later_than_the_stamp() {
    let mut net = meshed();
    let stamp = net.clock;
    let ahead = stamp + MAX_CLOCK_SKEW;
    let mut times = DecisionTimes::default();
    // A per-decision time that claims to be even later is clamped too.
    times.0.insert(net.key("M1"), stamp + Duration::days(1000));
    let mut forged = craft(
        &net,
        "A3",
        ahead,
        stamp,
        message(&[("bob@example.com", &[k("M1")], &[])]),
    );
    forged.decision_times = times;
    let a2 = net.idx("A2");
    net.input(a2, Input::Received(forged));
    net.run();
    let r = record(&mut net, "A2", "M1");
    assert_eq!(r.level, TrustLevel::Authenticated);
    assert_eq!(r.time, Some(stamp));
    // Every relay carries the clamped time.
    let r = record(&mut net, "A1", "M1");
    assert_eq!(r.time, Some(stamp));
    // The user's correction, one second later, wins everywhere.
    net.distrust("A1", &["M1"]);
    assert_eq!(net.level("A2", "M1"), Some(TrustLevel::ManuallyDistrusted));
    assert_eq!(net.level("A3", "M1"), Some(TrustLevel::ManuallyDistrusted));
}

#[test]
fn a_manual_decision_beats_a_stored_time_from_a_clock_that_ran_ahead() {
    let mut net = meshed();
    let stamp = net.clock + Duration::seconds(100);
    // A server whose clock runs ahead stamped it.
    let ahead = craft(
        &net,
        "A1",
        stamp,
        stamp,
        message(&[("bob@example.com", &[k("M1")], &[])]),
    );
    let a2 = net.idx("A2");
    net.input(a2, Input::Received(ahead));
    assert_eq!(net.level("A2", "M1"), Some(TrustLevel::Authenticated));
    net.distrust("A2", &["M1"]);
    let r = record(&mut net, "A2", "M1");
    assert_eq!(r.level, TrustLevel::ManuallyDistrusted);
    assert!(r.time.unwrap() > stamp);
}

// ---- 2. self-vouching ----

#[test]
fn a_keys_word_about_itself_changes_and_refreshes_nothing() {
    let mut net = meshed();
    let before = record(&mut net, "A2", "A3");
    let stamp = net.clock + Duration::seconds(5);
    let a2 = net.idx("A2");
    let effects = net.input(
        a2,
        Input::Received(craft(
            &net,
            "A3",
            stamp,
            stamp,
            message(&[("alice@example.org", &[k("A3")], &[])]),
        )),
    );
    assert_eq!(effects, vec![Effect::Ignored(IgnoreReason::SelfVouching)]);
    assert_eq!(record(&mut net, "A2", "A3"), before);
    // Nor a distrust of itself: no information either.
    let effects = net.input(
        a2,
        Input::Received(craft(
            &net,
            "A3",
            stamp,
            stamp,
            message(&[("alice@example.org", &[], &[k("A3")])]),
        )),
    );
    assert_eq!(effects, vec![Effect::Ignored(IgnoreReason::SelfVouching)]);
    assert_eq!(record(&mut net, "A2", "A3"), before);
}

#[test]
fn a_revoked_device_that_vouches_for_itself_first_cannot_undo_its_revocation() {
    let mut net = meshed();
    // The self-trust arrives before the (older) revocation.
    stolen_a3_speaks_to_offline_a2_after_its_revocation(
        &mut net,
        message(&[("alice@example.org", &[k("A3")], &[])]),
    );
    net.online("A2", false);
    for at in ["A1", "A2", "B1"] {
        assert_eq!(
            net.level(at, "A3"),
            Some(TrustLevel::ManuallyDistrusted),
            "{at}"
        );
    }
}

// ---- 3. pending decisions of a revoked sender ----

#[test]
fn a_revoked_devices_decision_about_an_unknown_key_is_dropped() {
    let mut net = meshed();
    let thiefs_next = KeyId::from_bytes([0xEE; 32]).unwrap();
    let stamp = net.clock;
    let a2 = net.idx("A2");
    let effects = net.input(
        a2,
        Input::Received(craft(
            &net,
            "A3",
            stamp,
            stamp,
            message(&[("alice@example.org", std::slice::from_ref(&thiefs_next), &[])]),
        )),
    );
    assert!(matches!(effects[..], [Effect::Pending { .. }]));
    let effects = net.distrust("A1", &["A3"]);
    assert!(!effects.is_empty());
    assert!(net
        .effects
        .iter()
        .any(|(at, e)| *at == a2 && matches!(e, Effect::PendingDropped { count: 1, .. })));
    assert_eq!(net.endpoints[a2].engine.stored_decision_count().unwrap(), 0);
    let alice: atm_tm::BareJid = "alice@example.org".parse().unwrap();
    net.input(
        a2,
        Input::KeysLearned {
            owner: alice.clone(),
            keys: vec![thiefs_next.clone()],
        },
    );
    assert_eq!(
        net.endpoints[a2]
            .engine
            .level(&KeyRef::new(alice, thiefs_next))
            .unwrap(),
        Some(TrustLevel::AutomaticallyDistrusted)
    );
}

#[test]
fn a_pending_decision_applies_only_while_its_sender_is_authenticated() {
    // The sender is distrusted through a store the engine did not see drop
    // the pending row (a store written by an older version): the check when
    // the key appears still refuses it.
    let alice: atm_tm::BareJid = "alice@example.org".parse().unwrap();
    let own = KeyRef::new(alice.clone(), k("A1"));
    let sender = KeyRef::new(alice.clone(), k("A3"));
    let target = KeyRef::new(alice.clone(), k("A4"));
    let t = DateTime::UNIX_EPOCH + Duration::days(1);
    let mut store = MemoryStore::new();
    store
        .commit(&atm_engine::Changeset {
            keys: vec![(
                sender.clone(),
                atm_engine::KeyRecord {
                    level: TrustLevel::ManuallyDistrusted,
                    time: Some(t),
                },
            )],
            pending: vec![atm_engine::Pending {
                sender: Some(sender.clone()),
                decision: atm_engine::Decision {
                    target: target.clone(),
                    kind: DecisionKind::Trust,
                    time: t - Duration::seconds(1),
                },
                stamp: t - Duration::seconds(1),
            }],
            ..Default::default()
        })
        .unwrap();
    let mut engine = Engine::new(Config::new(own.owner, own.key), store);
    let effects = engine
        .handle(
            Input::KeysLearned {
                owner: alice,
                keys: vec![target.key.clone()],
            },
            t + Duration::seconds(1),
        )
        .unwrap();
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::PendingDropped { count: 1, .. })));
    assert_ne!(
        engine.level(&target).unwrap(),
        Some(TrustLevel::Authenticated)
    );
}

// ---- 4. TOAKAFA remembers ----

#[test]
fn toakafa_distrusts_new_keys_of_an_owner_that_had_an_authenticated_key_even_after_a_restart() {
    let alice: atm_tm::BareJid = "alice@example.org".parse().unwrap();
    let bob: atm_tm::BareJid = "bob@example.com".parse().unwrap();
    let config = Config::new(alice, k("A1"));
    let mut engine = Engine::new(config.clone(), MemoryStore::new());
    let t = DateTime::UNIX_EPOCH + Duration::days(1);
    let learn = |key: &str| Input::KeysLearned {
        owner: bob.clone(),
        keys: vec![k(key)],
    };
    engine.handle(learn("B1"), t).unwrap();
    let b1 = KeyRef::new(bob.clone(), k("B1"));
    engine
        .handle(Input::manual(b1.clone(), DecisionKind::Trust), t)
        .unwrap();
    engine
        .handle(
            Input::manual(b1, DecisionKind::Distrust),
            t + Duration::seconds(1),
        )
        .unwrap();
    let mut engine = Engine::new(config, engine.into_store());
    engine
        .handle(learn("B2"), t + Duration::seconds(2))
        .unwrap();
    assert_eq!(
        engine.level(&KeyRef::new(bob, k("B2"))).unwrap(),
        Some(TrustLevel::AutomaticallyDistrusted)
    );
}

// ---- 5. re-authentication ----

#[test]
fn reauthentication_asks_the_key_for_what_it_said_meanwhile() {
    let endpoints = [
        ("A1", "alice@example.org"),
        ("A2", "alice@example.org"),
        ("A3", "alice@example.org"),
        ("B1", "bob@example.com"),
        ("B2", "bob@example.com"),
    ];
    let mut net = Net::new(&endpoints, Propagation::Complete);
    net.auth("A1", &["A3"]);
    net.auth("A2", &["A3"]);
    net.auth("A3", &["A1", "A2"]);
    net.auth("B1", &["B2"]);
    net.auth("B2", &["B1"]);
    net.distrust("A3", &["A1"]);
    assert_eq!(net.level("A2", "A1"), Some(TrustLevel::ManuallyDistrusted));
    net.auth("A1", &["B1"]);
    net.auth("B1", &["A1"]);
    // A1's word about B1 was dropped where A1 is distrusted.
    assert_eq!(
        net.level("A3", "B1"),
        Some(TrustLevel::AutomaticallyTrusted)
    );
    let sent_before = net.sent.len();
    net.auth("A3", &["A1"]);
    // A3 asks A1 in a message for A1 alone that carries "trust A1".
    let a1 = net.key("A1");
    let ask = net.sent[sent_before..]
        .iter()
        .find(|s| s.out.recipients == vec![a1.clone()])
        .expect("a message for A1 alone");
    assert!(ask
        .out
        .message
        .key_owners
        .iter()
        .any(|o| o.jid == a1.owner && o.trust.contains(&a1.key)));
    for at in ["A1", "A2", "A3", "B1", "B2"] {
        for of in ["A1", "A2", "A3", "B1", "B2"] {
            if at != of {
                assert_eq!(
                    net.level(at, of),
                    Some(TrustLevel::Authenticated),
                    "{at} {of}"
                );
            }
        }
    }
}

#[test]
fn a_trust_in_the_own_key_among_other_recipients_asks_for_nothing() {
    let mut net = meshed();
    let stamp = net.clock;
    let mut batched = craft(
        &net,
        "A1",
        stamp,
        stamp,
        message(&[("alice@example.org", &[k("A2")], &[])]),
    );
    batched.co_recipients = vec![net.key("A3")];
    let a2 = net.idx("A2");
    let effects = net.input(a2, Input::Received(batched.clone()));
    assert!(!effects.iter().any(|e| matches!(e, Effect::Send(_))));
    // Alone, it is the request to sync back.
    batched.co_recipients.clear();
    let effects = net.input(a2, Input::Received(batched));
    let a1 = net.key("A1");
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Send(s) if s.recipients == vec![a1.clone()])));
}

// ---- revocation: a revoked key's later word is void ----

#[test]
fn a_revoked_devices_later_trust_falls_back_and_is_corrected_where_it_was_passed_on() {
    let mut net = meshed();
    let a2 = stolen_a3_speaks_to_offline_a2_after_its_revocation(
        &mut net,
        message(&[("bob@example.com", &[k("M1")], &[])]),
    );
    net.run(); // A2 passes "trust M1" on to A1 before it learns of the revocation
    assert_eq!(net.level("A1", "M1"), Some(TrustLevel::Authenticated));
    net.online("A2", false);
    for at in ["A1", "A2"] {
        assert_eq!(
            net.level(at, "M1"),
            Some(TrustLevel::ManuallyDistrusted),
            "{at}"
        );
    }
    assert!(net.effects.iter().any(|(at, e)| *at == a2
        && matches!(
            e,
            Effect::TrustChanged {
                cause: Cause::Revoked(_),
                ..
            }
        )));
}

#[test]
fn a_revoked_devices_later_distrust_stays_until_the_user_authenticates_again() {
    // The thief's distrust of B1, read by A2 before it learns of A3's
    // revocation and passed on to A1, stays distrusted at both: neither can
    // tell it from a genuine distrust relayed by A3, and undoing it would
    // also undo the genuine one (docs/propagation.md, "A void distrust
    // stays"). Safe-failing: B1 is back with one authentication.
    let mut net = meshed();
    stolen_a3_speaks_to_offline_a2_after_its_revocation(
        &mut net,
        message(&[("bob@example.com", &[], &[k("B1")])]),
    );
    net.run();
    assert_eq!(net.level("A1", "B1"), Some(TrustLevel::ManuallyDistrusted));
    net.online("A2", false);
    for at in ["A1", "A2"] {
        assert_eq!(
            net.level(at, "B1"),
            Some(TrustLevel::ManuallyDistrusted),
            "{at}"
        );
    }
    net.auth("A1", &["B1"]);
    net.run();
    for at in ["A1", "A2"] {
        assert_eq!(net.level(at, "B1"), Some(TrustLevel::Authenticated), "{at}");
    }
}

#[test]
fn a_genuine_distrust_stands_when_a_void_relay_of_it_came_first() {
    // A1's user authenticates M1 (A2 takes it from A1), then, while A2 is
    // offline, distrusts A3 and then M1. A3 relays "distrust M1" to A2 with
    // A1's decision time, stamped after its own revocation; A2 reads it
    // first, then A1's two messages. The relay is void once A2 learns of
    // the revocation, but A1's genuine distrust must still hold there:
    // falling back to the trust behind the void distrust, stated 1 µs
    // after it, beat the genuine distrust of the same instant (attack
    // property seeds 3, 6, 7, 9, 10).
    let mut net = meshed();
    net.auth("A1", &["M1"]);
    net.run();
    assert_eq!(net.level("A2", "M1"), Some(TrustLevel::Authenticated));
    net.offline("A2");
    net.distrust("A1", &["A3"]);
    net.distrust("A1", &["M1"]);
    let decided = net.clock;
    let stamp = decided + Duration::seconds(1);
    let mut relay = craft(
        &net,
        "A3",
        stamp,
        stamp,
        message(&[("bob@example.com", &[], &[k("M1")])]),
    );
    relay.decision_times.0.insert(net.key("M1"), decided);
    let a2 = net.idx("A2");
    net.input(a2, Input::Received(relay));
    assert_eq!(net.level("A2", "M1"), Some(TrustLevel::ManuallyDistrusted));
    net.online("A2", false);
    net.run();
    for at in ["A1", "A2"] {
        assert_eq!(
            net.level(at, "M1"),
            Some(TrustLevel::ManuallyDistrusted),
            "{at}"
        );
    }
}

#[test]
fn a_revoked_devices_earlier_word_stands() {
    let mut net = meshed();
    // A3 decides while it is trusted: that stands after its revocation.
    net.distrust("A3", &["M1"]);
    assert_eq!(net.level("A2", "M1"), Some(TrustLevel::ManuallyDistrusted));
    net.distrust("A1", &["A3"]);
    assert_eq!(net.level("A2", "M1"), Some(TrustLevel::ManuallyDistrusted));
    assert_eq!(net.level("A1", "M1"), Some(TrustLevel::ManuallyDistrusted));
}

// ---- 6. bounds on what others can make an endpoint store ----

fn outsider_message(account: &str, first: u32, n: u32) -> TrustMessage {
    let keys: Vec<KeyId> = (first..first + n)
        .map(|i| {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&i.to_le_bytes());
            b[31] = 0x55;
            KeyId::from_bytes(b).unwrap()
        })
        .collect();
    message(&[(account, &keys, &[])])
}

fn from_outsider(
    engine: &mut Engine<MemoryStore>,
    account: &str,
    device: u8,
    message: TrustMessage,
    now: DateTime<Utc>,
) -> Vec<Effect> {
    engine
        .handle(
            Input::Received(Received {
                sender: account.parse().unwrap(),
                sender_key: Some(KeyId::from_bytes([device; 32]).unwrap()),
                time: now,
                stamp: now,
                message,
                decision_times: DecisionTimes::default(),
                co_recipients: vec![],
            }),
            now,
        )
        .unwrap()
}

fn small_limits() -> Engine<MemoryStore> {
    let mut config = Config::new("alice@example.org".parse().unwrap(), k("A1"));
    config.limits = Limits {
        postponed_per_sender: 4,
        postponed_per_account: 6,
        postponed_total: 10,
        pending_per_account: 3,
    };
    Engine::new(config, MemoryStore::new())
}

#[test]
fn one_account_with_many_keys_stores_no_more_than_its_share() {
    let mut engine = small_limits();
    let now = DateTime::UNIX_EPOCH + Duration::days(1);
    for device in 1..=3 {
        let effects = from_outsider(
            &mut engine,
            "mallory@evil.example",
            device,
            outsider_message("mallory@evil.example", 0, 4),
            now,
        );
        if device == 2 {
            assert!(effects.contains(&Effect::Ignored(IgnoreReason::TooManyPostponed)));
        }
    }
    assert_eq!(engine.stored_decision_count().unwrap(), 6);
    // One sender alone: its own bound.
    let mut engine = small_limits();
    from_outsider(
        &mut engine,
        "mallory@evil.example",
        1,
        outsider_message("mallory@evil.example", 0, 9),
        now,
    );
    assert_eq!(engine.stored_decision_count().unwrap(), 4);
}

#[test]
fn a_flood_of_accounts_evicts_the_largest_first_and_never_the_own_account() {
    let mut engine = small_limits();
    let now = DateTime::UNIX_EPOCH + Duration::days(1);
    // The own account's new device (not yet authenticated) and a contact.
    from_outsider(
        &mut engine,
        "alice@example.org",
        7,
        outsider_message("alice@example.org", 100, 2),
        now,
    );
    from_outsider(
        &mut engine,
        "bob@example.com",
        8,
        outsider_message("bob@example.com", 200, 2),
        now,
    );
    // A flooder fills its share, then others try.
    from_outsider(
        &mut engine,
        "mallory@evil.example",
        1,
        outsider_message("mallory@evil.example", 0, 4),
        now,
    );
    from_outsider(
        &mut engine,
        "mallory@evil.example",
        2,
        outsider_message("mallory@evil.example", 0, 2),
        now,
    );
    assert_eq!(engine.stored_decision_count().unwrap(), 10);
    let effects = from_outsider(
        &mut engine,
        "trudy@evil.example",
        3,
        outsider_message("trudy@evil.example", 300, 3),
        now + Duration::seconds(1),
    );
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::PostponedEvicted { account, count: 3 } if account.as_str() == "mallory@evil.example"
    )));
    let store = engine.store_mut();
    assert_eq!(store.postponed_total().unwrap(), 10);
    assert_eq!(
        store
            .postponed_count_of(&"alice@example.org".parse().unwrap())
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .postponed_count_of(&"bob@example.com".parse().unwrap())
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .postponed_count_of(&"mallory@evil.example".parse().unwrap())
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .postponed_count_of(&"trudy@evil.example".parse().unwrap())
            .unwrap(),
        3
    );
}

#[test]
fn an_authenticated_contact_cannot_fill_the_store_with_unknown_keys() {
    let mut engine = small_limits();
    let now = DateTime::UNIX_EPOCH + Duration::days(1);
    let bob: atm_tm::BareJid = "bob@example.com".parse().unwrap();
    let b1 = KeyRef::new(bob.clone(), KeyId::from_bytes([8; 32]).unwrap());
    engine
        .handle(
            Input::KeysLearned {
                owner: bob.clone(),
                keys: vec![b1.key.clone()],
            },
            now,
        )
        .unwrap();
    engine
        .handle(Input::manual(b1, DecisionKind::Trust), now)
        .unwrap();
    let effects = from_outsider(
        &mut engine,
        "bob@example.com",
        8,
        outsider_message("bob@example.com", 0, 5),
        now + Duration::seconds(1),
    );
    assert!(effects.contains(&Effect::Ignored(IgnoreReason::TooManyPending)));
    assert_eq!(engine.stored_decision_count().unwrap(), 3);
}
