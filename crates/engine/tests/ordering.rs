//! Ordering by original decision time: a late, replayed or relayed older
//! decision never undoes a newer one, and conflicting decisions settle on the
//! newest everywhere without chasing each other.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use atm_engine::{DecisionTimes, Input, KeyRef, Propagation, Received, TrustLevel};
use common::Net;

const ENDPOINTS: [(&str, &str); 5] = [
    ("A1", "alice@example.org"),
    ("A2", "alice@example.org"),
    ("A3", "alice@example.org"),
    ("A4", "alice@example.org"),
    ("B1", "bob@example.com"),
];

fn meshed() -> Net {
    let mut net = Net::new(&ENDPOINTS, Propagation::Complete);
    for (a, b) in [("A1", "A2"), ("A2", "A3"), ("A3", "A4"), ("A1", "B1")] {
        net.auth(a, &[b]);
        net.auth(b, &[a]);
    }
    assert_eq!(net.authenticated_pairs(), 20);
    net
}

/// A2's trust message about B1 alone — `tag` is `trust` or `distrust` —
/// with SCE time `sent`, stamped `stamp`, without decision times.
fn a2_about_b1(
    net: &Net,
    tag: &str,
    sent: chrono::DateTime<chrono::Utc>,
    stamp: chrono::DateTime<chrono::Utc>,
) -> Received {
    let a2 = net.key("A2");
    let b1 = net.key("B1");
    let message = atm_engine::TrustMessage::parse(&format!(
        "<trust-message xmlns='urn:xmpp:tm:1' usage='urn:xmpp:atm:1' encryption='urn:xmpp:omemo:2'>\
         <key-owner jid='bob@example.com'><{tag}>{}</{tag}></key-owner></trust-message>",
        b1.key.to_base64()
    ))
    .unwrap();
    Received {
        sender: a2.owner,
        sender_key: Some(a2.key),
        time: sent,
        stamp,
        message,
        decision_times: DecisionTimes::default(),
        co_recipients: vec![],
    }
}

#[test]
fn a_replayed_older_trust_does_not_undo_a_newer_distrust() {
    let mut net = meshed();
    // The message that first told A2 about B1, kept by an attacker.
    let b1 = net.key("B1");
    let old = (0..net.sent.len())
        .find(|&s| {
            net.sent[s].out.recipients.contains(&net.key("A2"))
                && net.sent[s]
                    .out
                    .message
                    .key_owners
                    .iter()
                    .any(|o| o.trust.contains(&b1.key))
        })
        .unwrap();
    net.distrust("A1", &["B1"]);
    assert_eq!(net.level("A2", "B1"), Some(TrustLevel::ManuallyDistrusted));
    let a2 = net.idx("A2");
    net.deliver(old, a2);
    net.run();
    assert_eq!(net.level("A2", "B1"), Some(TrustLevel::ManuallyDistrusted));
}

#[test]
fn a_relayed_decision_keeps_its_original_time() {
    let mut net = meshed();
    net.distrust("A1", &["B1"]);
    let distrust_time = net.clock;
    // A2 relays an old trust in B1, sent now: the SCE time is new, the
    // decision time says when it was made.
    let b1 = net.key("B1");
    let mut times = DecisionTimes::default();
    times
        .0
        .insert(b1, distrust_time - chrono::Duration::seconds(30));
    let sent = distrust_time + chrono::Duration::seconds(60);
    let plain = a2_about_b1(&net, "trust", sent, sent);
    let relayed = Received {
        decision_times: times,
        ..plain.clone()
    };
    let a3 = net.idx("A3");
    net.input(a3, Input::Received(relayed));
    assert_eq!(net.level("A3", "B1"), Some(TrustLevel::ManuallyDistrusted));
    // Without the original time, the SCE time counts: a newer re-authentication.
    net.input(a3, Input::Received(plain));
    assert_eq!(net.level("A3", "B1"), Some(TrustLevel::Authenticated));
}

#[test]
fn at_equal_times_a_distrust_wins() {
    let mut net = meshed();
    let t = net.clock + chrono::Duration::seconds(100);
    let a3 = net.idx("A3");
    for tag in ["distrust", "trust"] {
        let received = a2_about_b1(&net, tag, t, t);
        net.input(a3, Input::Received(received));
    }
    assert_eq!(net.level("A3", "B1"), Some(TrustLevel::ManuallyDistrusted));
}

#[test]
fn conflicting_decisions_in_a_partition_settle_on_the_newest_everywhere() {
    for reverse in [false, true] {
        let mut net = meshed();
        // A4 distrusts B1 while A1 and A2 are away; later A2, still away and
        // unaware, authenticates B1 again: the newer decision must win everywhere.
        net.offline("A1");
        net.offline("A2");
        net.distrust("A4", &["B1"]);
        net.online("A1", reverse);
        net.offline("A3");
        net.offline("A4");
        net.auth("A2", &["B1"]); // newest decision, made while A3 and A4 are away
        net.online("A2", reverse);
        net.online("A3", reverse);
        net.online("A4", reverse);
        net.run();
        for at in ["A1", "A2", "A3", "A4"] {
            assert_eq!(
                net.level(at, "B1"),
                Some(TrustLevel::Authenticated),
                "{at}, reverse {reverse}"
            );
        }
        // Messages stopped by themselves (the harness runs to quiescence); bounded.
        assert!(net.sent.len() < 40, "{}", net.sent.len());
    }
}

#[test]
fn a_newer_decision_at_the_same_level_updates_its_time() {
    let mut net = meshed();
    let b1 = net.key("B1");
    let i = net.idx("A2");
    let before = net.endpoints[i].engine.store_mut().clone();
    net.auth("A2", &["B1"]);
    let after = net.endpoints[i].engine.known_keys().unwrap();
    let record = after.iter().find(|(k, _)| *k == b1).unwrap().1;
    assert_eq!(record.level, TrustLevel::Authenticated);
    let mut before = before;
    use atm_engine::TrustStore;
    let old = before
        .key(&KeyRef::new(b1.owner.clone(), b1.key.clone()))
        .unwrap()
        .unwrap();
    assert!(record.time > old.time);
}

#[test]
fn a_word_stamped_late_does_not_shadow_the_speakers_newer_decision() {
    // A2 trusts B1 (decided at t), later distrusts it (decided at t + 8 s).
    // The server holds the first message and stamps it 20 s late (within
    // the clock-skew margin), delivers it first, then the distrust with
    // its honest, earlier stamp. The distrust is A2's newer decision and
    // must apply: ordering a speaker's words by the server's stamp let the
    // held message shadow it (attack property tests, seed 2).
    let mut net = meshed();
    let t = net.clock + chrono::Duration::seconds(100);
    let later = t + chrono::Duration::seconds(8);
    let held = a2_about_b1(&net, "trust", t, t + chrono::Duration::seconds(20));
    let newer = a2_about_b1(&net, "distrust", later, later);
    let a3 = net.idx("A3");
    net.input(a3, Input::Received(held.clone()));
    assert_eq!(net.level("A3", "B1"), Some(TrustLevel::Authenticated));
    net.input(a3, Input::Received(newer.clone()));
    assert_eq!(net.level("A3", "B1"), Some(TrustLevel::ManuallyDistrusted));
    // And the other way round: the older word delivered late changes nothing.
    let a4 = net.idx("A4");
    net.input(a4, Input::Received(newer));
    net.input(a4, Input::Received(held));
    assert_eq!(net.level("A4", "B1"), Some(TrustLevel::ManuallyDistrusted));
}
