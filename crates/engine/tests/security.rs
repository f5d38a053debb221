//! The security rules, each a test: who may be sent a trust message, whose
//! word counts for which keys, which messages decide nothing.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use atm_engine::{
    DecisionTimes, Effect, IgnoreReason, Input, KeyId, KeyRef, Propagation, Received, TrustLevel,
    TrustMessage,
};
use common::{key_of, Net};

const ENDPOINTS: [(&str, &str); 5] = [
    ("A1", "alice@example.org"),
    ("A2", "alice@example.org"),
    ("B1", "bob@example.com"),
    ("B2", "bob@example.com"),
    ("C1", "carol@example.net"),
];

fn meshed() -> Net {
    let mut net = Net::new(&ENDPOINTS, Propagation::Complete);
    for (a, b) in [("A1", "A2"), ("B1", "B2"), ("A1", "B1"), ("A1", "C1")] {
        net.auth(a, &[b]);
        net.auth(b, &[a]);
    }
    net
}

fn message(owners: &[(&str, &[KeyId], &[KeyId])], usage: &str) -> TrustMessage {
    let mut xml = format!(
        "<trust-message xmlns='urn:xmpp:tm:1' usage='{usage}' encryption='urn:xmpp:omemo:2'>"
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

fn inject(
    net: &mut Net,
    to: &str,
    from: &str,
    encrypted: bool,
    message: TrustMessage,
) -> Vec<Effect> {
    let sender = net.key(from);
    let received = Received {
        sender: sender.owner,
        sender_key: encrypted.then_some(sender.key),
        time: net.clock + chrono::Duration::seconds(1),
        stamp: net.clock + chrono::Duration::seconds(1),
        message,
        decision_times: DecisionTimes::default(),
        co_recipients: vec![],
    };
    let at = net.idx(to);
    net.input(at, Input::Received(received))
}

#[test]
fn trust_messages_go_only_to_authenticated_keys() {
    // The harness asserts it for every message; here, the full walkthrough
    // plus distrusts, with an endpoint nobody authenticated (C1 in a fresh net).
    let mut net = Net::new(&ENDPOINTS, Propagation::Complete);
    net.auth("A1", &["A2", "B1"]);
    for s in &net.sent {
        for r in &s.out.recipients {
            assert!(*r == net.key("A2") || *r == net.key("B1"), "{r:?}");
        }
    }
}

#[test]
fn a_distrusted_key_is_not_a_recipient_of_its_own_distrust() {
    let mut net = meshed();
    let effects = net.distrust("A1", &["A2"]);
    let a2 = net.key("A2");
    for e in &effects {
        if let Effect::Send(s) = e {
            assert!(!s.recipients.contains(&a2));
        }
    }
    assert!(effects.iter().any(|e| matches!(e, Effect::Send(_))));
}

#[test]
fn a_contact_decides_only_on_its_own_accounts_keys() {
    let mut net = meshed();
    let evil = KeyId::from_bytes([9; 32]).unwrap();
    let a2 = net.key("A2").key;
    let b2 = net.key("B2").key;
    // B1 (authenticated by A1) claims to distrust A2 and to trust a key of
    // Carol's; only its word about Bob's own keys counts.
    let effects = inject(
        &mut net,
        "A1",
        "B1",
        true,
        message(
            &[
                ("alice@example.org", &[], &[a2]),
                ("carol@example.net", &[evil], &[]),
                ("bob@example.com", &[], &[b2]),
            ],
            "urn:xmpp:atm:1",
        ),
    );
    assert_eq!(net.level("A1", "A2"), Some(TrustLevel::Authenticated));
    assert_eq!(net.level("A1", "B2"), Some(TrustLevel::ManuallyDistrusted));
    let ignored: Vec<_> = effects
        .iter()
        .filter(|e| matches!(e, Effect::Ignored(IgnoreReason::ForeignOwner(_))))
        .collect();
    assert_eq!(ignored.len(), 2);
    let mut a1 = net.endpoints.remove(0);
    assert_eq!(
        a1.engine
            .level(&KeyRef::new(
                "carol@example.net".parse().unwrap(),
                KeyId::from_bytes([9; 32]).unwrap()
            ))
            .unwrap(),
        None
    );
}

#[test]
fn an_unencrypted_trust_message_decides_nothing() {
    let mut net = meshed();
    let b2 = net.key("B2").key;
    let effects = inject(
        &mut net,
        "A1",
        "B1",
        false,
        message(&[("bob@example.com", &[], &[b2])], "urn:xmpp:atm:1"),
    );
    assert_eq!(effects, vec![Effect::Ignored(IgnoreReason::Unencrypted)]);
    assert_eq!(net.level("A1", "B2"), Some(TrustLevel::Authenticated));
}

#[test]
fn a_trust_message_of_another_usage_decides_nothing() {
    let mut net = meshed();
    let b2 = net.key("B2").key;
    let effects = inject(
        &mut net,
        "A1",
        "B1",
        true,
        message(&[("bob@example.com", &[], &[b2])], "urn:example:other"),
    );
    assert!(matches!(
        effects[..],
        [Effect::Ignored(IgnoreReason::Usage(_))]
    ));
    assert_eq!(net.level("A1", "B2"), Some(TrustLevel::Authenticated));
}

#[test]
fn a_reflected_trust_message_decides_nothing() {
    let mut net = meshed();
    let b2 = net.key("B2").key;
    let effects = inject(
        &mut net,
        "A1",
        "A1",
        true,
        message(&[("bob@example.com", &[], &[b2])], "urn:xmpp:atm:1"),
    );
    assert_eq!(effects, vec![Effect::Ignored(IgnoreReason::Reflected)]);
    assert_eq!(net.level("A1", "B2"), Some(TrustLevel::Authenticated));
}

#[test]
fn postponed_decisions_of_a_sender_that_becomes_distrusted_are_dropped() {
    let mut net = Net::new(&ENDPOINTS, Propagation::Complete);
    let b2 = net.key("B2").key;
    // A1 has not authenticated B1: B1's word is postponed.
    let effects = inject(
        &mut net,
        "A1",
        "B1",
        true,
        message(&[("bob@example.com", &[b2], &[])], "urn:xmpp:atm:1"),
    );
    assert!(matches!(effects[..], [Effect::Postponed { .. }]));
    let a1 = net.idx("A1");
    assert_eq!(net.endpoints[a1].engine.stored_decision_count().unwrap(), 1);
    let effects = net.distrust("A1", &["B1"]);
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::PostponedDropped { count: 1, .. })));
    assert_eq!(net.endpoints[a1].engine.stored_decision_count().unwrap(), 0);
    // Authenticating B1 later brings nothing back.
    net.auth("A1", &["B1"]);
    assert_ne!(net.level("A1", "B2"), Some(TrustLevel::Authenticated));
}

#[test]
fn a_distrusted_sender_decides_nothing() {
    let mut net = meshed();
    net.distrust("A1", &["B1"]);
    let b2 = net.key("B2").key;
    let effects = inject(
        &mut net,
        "A1",
        "B1",
        true,
        message(&[("bob@example.com", &[], &[b2])], "urn:xmpp:atm:1"),
    );
    assert_eq!(
        effects,
        vec![Effect::Ignored(IgnoreReason::SenderDistrusted)]
    );
    assert_eq!(net.level("A1", "B2"), Some(TrustLevel::Authenticated));
}

#[test]
fn decisions_about_the_own_key_are_ignored() {
    let mut net = meshed();
    let a1 = net.key("A1").key;
    inject(
        &mut net,
        "A1",
        "A2",
        true,
        message(&[("alice@example.org", &[], &[a1])], "urn:xmpp:atm:1"),
    );
    let own = net.key("A1");
    let i = net.idx("A1");
    let known = net.endpoints[i].engine.known_keys().unwrap();
    assert!(known.iter().all(|(k, _)| *k != own));
    assert_eq!(own.key, key_of("A1"));
}

#[test]
fn an_unauthenticated_sender_cannot_fill_the_store() {
    let mut net = Net::new(&ENDPOINTS, Propagation::Complete);
    let a1 = net.idx("A1");
    let limit = atm_engine::MAX_POSTPONED_PER_SENDER;
    for batch in 0..3u32 {
        let keys: Vec<KeyId> = (0..limit as u32 / 2 + 100)
            .map(|i| {
                let mut b = vec![0u8; 32];
                b[..4].copy_from_slice(&(batch * 1_000_000 + i).to_le_bytes());
                KeyId::from_bytes(b).unwrap()
            })
            .collect();
        let effects = inject(
            &mut net,
            "A1",
            "B1",
            true,
            message(&[("bob@example.com", &keys, &[])], "urn:xmpp:atm:1"),
        );
        if batch == 2 {
            assert!(effects.contains(&Effect::Ignored(IgnoreReason::TooManyPostponed)));
        }
    }
    assert_eq!(
        net.endpoints[a1].engine.stored_decision_count().unwrap(),
        limit as u64
    );
}
