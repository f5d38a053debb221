//! XEP-0450 §Use Cases, with the spec's endpoints: Alice's A1, A2, A3 and
//! Bob's B1. Each test is named after its section; `xep_chronology` plays the
//! spec's consecutive examples in order. The literal rules (`xep`) are used
//! where the test checks exactly which messages the XEP names.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use atm_engine::{Effect, KeyRef, Propagation, TrustLevel};
use common::Net;

const SPEC: [(&str, &str); 4] = [
    ("A1", "alice@example.org"),
    ("A2", "alice@example.org"),
    ("A3", "alice@example.org"),
    ("B1", "bob@example.com"),
];

/// "A1 has already authenticated A2's key."
fn spec_start(propagation: Propagation) -> Net {
    let mut net = Net::new(&SPEC, propagation);
    net.auth("A1", &["A2"]);
    assert!(net.sent.is_empty());
    net
}

/// (jid, trusted keys, distrusted keys), Base64.
type Owner = (String, Vec<String>, Vec<String>);

fn sends(effects: &[Effect]) -> Vec<(Vec<KeyRef>, Vec<Owner>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send(s) => Some((
                s.recipients.clone(),
                s.message
                    .key_owners
                    .iter()
                    .map(|o| {
                        (
                            o.jid.to_string(),
                            o.trust.iter().map(|k| k.to_base64()).collect(),
                            o.distrust.iter().map(|k| k.to_base64()).collect(),
                        )
                    })
                    .collect(),
            )),
            _ => None,
        })
        .collect()
}

fn b64(net: &Net, name: &str) -> String {
    net.key(name).key.to_base64()
}

#[test]
fn use_case_authentication_contact_endpoint_sending() {
    let mut net = spec_start(Propagation::Xep);
    let effects = net.auth("A1", &["B1"]);
    let sends = sends(&effects);
    assert_eq!(sends.len(), 2);
    // ... the key that has been authenticated, to each own endpoint with an already authenticated key.
    assert_eq!(sends[0].0, vec![net.key("A2")]);
    assert_eq!(
        sends[0].1,
        vec![("bob@example.com".into(), vec![b64(&net, "B1")], vec![])]
    );
    // ... each already authenticated key of all own endpoints, to the endpoint whose key has been authenticated.
    assert_eq!(sends[1].0, vec![net.key("B1")]);
    assert_eq!(
        sends[1].1,
        vec![("alice@example.org".into(), vec![b64(&net, "A2")], vec![])]
    );
}

#[test]
fn use_case_authentication_contact_endpoint_receiving() {
    for propagation in [Propagation::Xep, Propagation::Complete] {
        let mut net = spec_start(propagation);
        net.auth("A1", &["B1"]);
        // Not yet: A2 has not authenticated A1, B1 has not authenticated A1.
        assert_eq!(
            net.level("A2", "B1"),
            Some(TrustLevel::AutomaticallyTrusted)
        );
        assert_eq!(
            net.level("B1", "A2"),
            Some(TrustLevel::AutomaticallyTrusted)
        );
        // "... as soon as the receiving endpoint authenticated the key of the endpoint that sent it."
        net.auth("A2", &["A1"]);
        assert_eq!(net.level("A2", "B1"), Some(TrustLevel::Authenticated));
        net.auth("B1", &["A1"]);
        assert_eq!(net.level("B1", "A2"), Some(TrustLevel::Authenticated));
    }
}

#[test]
fn use_case_authentication_own_endpoint_sending() {
    let mut net = spec_start(Propagation::Xep);
    net.auth("A1", &["B1"]);
    net.auth("A2", &["A1"]);
    net.sent.clear();
    // "Remember that A2 has already authenticated A1's and B1's key. A2 authenticates A3's key."
    let effects = net.auth("A2", &["A3"]);
    let sends = sends(&effects);
    let trust_a3 = vec![(
        "alice@example.org".to_string(),
        vec![b64(&net, "A3")],
        vec![],
    )];
    // Examples 3 and 4: to A1, and to B1.
    assert_eq!(sends[0].0, vec![net.key("A1")]);
    assert_eq!(sends[0].1, trust_a3);
    assert_eq!(sends[1].0, vec![net.key("B1")]);
    assert_eq!(sends[1].1, trust_a3);
    // Example 5: A1's and B1's keys to A3.
    assert_eq!(sends[2].0, vec![net.key("A3")]);
    assert_eq!(
        sends[2].1,
        vec![
            (
                "alice@example.org".to_string(),
                vec![b64(&net, "A1")],
                vec![]
            ),
            ("bob@example.com".to_string(), vec![b64(&net, "B1")], vec![]),
        ]
    );
    assert_eq!(sends.len(), 3);
}

#[test]
fn use_case_authentication_own_endpoint_receiving() {
    for propagation in [Propagation::Xep, Propagation::Complete] {
        let mut net = spec_start(propagation);
        net.auth("A2", &["A3"]);
        assert_ne!(net.level("A1", "A3"), Some(TrustLevel::Authenticated));
        net.auth("A1", &["A2"]); // already; no change
        net.auth("A2", &["A1"]);
        // A1 authenticates A3's key by A2's message as soon as it authenticated A2 (it had).
        net.auth("A3", &["A2"]);
        assert_eq!(net.level("A1", "A3"), Some(TrustLevel::Authenticated));
        assert_eq!(net.level("A3", "A1"), Some(TrustLevel::Authenticated));
    }
}

fn chronology(propagation: Propagation) -> Net {
    let mut net = spec_start(propagation);
    net.auth("A1", &["B1"]);
    net.auth("A2", &["A1"]);
    net.auth("A2", &["A3"]);
    net.auth("B1", &["A1"]);
    net.auth("A3", &["A2"]);
    net
}

#[test]
fn use_case_distrusting_own_endpoint_sending() {
    let mut net = chronology(Propagation::Xep);
    // "Remember that A1 has already authenticated A2's, A3's and B1's key. A1 distrusts A3's key."
    assert_eq!(net.level("A1", "A3"), Some(TrustLevel::Authenticated));
    let effects = net.distrust("A1", &["A3"]);
    let sends = sends(&effects);
    let distrust_a3 = vec![(
        "alice@example.org".to_string(),
        vec![],
        vec![b64(&net, "A3")],
    )];
    // Examples 6 and 7: to A2 and to B1 — never to A3.
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].0, vec![net.key("A2")]);
    assert_eq!(sends[0].1, distrust_a3);
    assert_eq!(sends[1].0, vec![net.key("B1")]);
    assert_eq!(sends[1].1, distrust_a3);
}

#[test]
fn use_case_distrusting_own_endpoint_receiving() {
    for propagation in [Propagation::Xep, Propagation::Complete] {
        let mut net = chronology(propagation);
        net.distrust("A1", &["A3"]);
        assert_eq!(net.level("A2", "A3"), Some(TrustLevel::ManuallyDistrusted));
        assert_eq!(net.level("B1", "A3"), Some(TrustLevel::ManuallyDistrusted));
    }
}

#[test]
fn use_case_distrusting_contact_endpoint_sending() {
    let mut net = chronology(Propagation::Xep);
    net.distrust("A1", &["A3"]);
    // "A1 has already authenticated A2's and B1's key but distrusted A3's key. A1 distrusts B1's key."
    let effects = net.distrust("A1", &["B1"]);
    let sends = sends(&effects);
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].0, vec![net.key("A2")]);
    assert_eq!(
        sends[0].1,
        vec![("bob@example.com".to_string(), vec![], vec![b64(&net, "B1")])]
    );
}

#[test]
fn use_case_distrusting_contact_endpoint_receiving() {
    for propagation in [Propagation::Xep, Propagation::Complete] {
        let mut net = chronology(propagation);
        net.distrust("A1", &["A3"]);
        net.distrust("A1", &["B1"]);
        // "A2 distrusts B1's key by the distrust message from A1."
        assert_eq!(net.level("A2", "B1"), Some(TrustLevel::ManuallyDistrusted));
    }
}

#[test]
fn xep_chronology() {
    // The spec's consecutive examples, A1/A2/A3/B1, in order.
    let mut net = chronology(Propagation::Xep);
    for (at, of) in [
        ("A2", "B1"),
        ("A1", "A3"),
        ("B1", "A2"),
        ("B1", "A3"),
        ("A3", "A1"),
        ("A3", "B1"),
    ] {
        assert_eq!(
            net.level(at, of),
            Some(TrustLevel::Authenticated),
            "{at} -> {of}"
        );
    }
    net.distrust("A1", &["A3"]);
    net.distrust("A1", &["B1"]);
    assert_eq!(net.level("A2", "A3"), Some(TrustLevel::ManuallyDistrusted));
    assert_eq!(net.level("B1", "A3"), Some(TrustLevel::ManuallyDistrusted));
    assert_eq!(net.level("A2", "B1"), Some(TrustLevel::ManuallyDistrusted));
}
