//! Cores against each other through the in-test router: the seed
//! walkthrough with two and five devices, chat under the trust state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use atm_client::{ns, CommandError, Event, Handled};
use atm_engine::TrustLevel;
use common::Router;
use minidom::Element;

fn authenticated(router: &mut Router, at: usize, of: usize) -> bool {
    router.level(at, of) == Some(TrustLevel::Authenticated)
}

fn count_pairs(router: &mut Router) -> usize {
    let n = router.nodes.len();
    let mut count = 0;
    for at in 0..n {
        for of in 0..n {
            if at != of && authenticated(router, at, of) {
                count += 1;
            }
        }
    }
    count
}

#[test]
fn two_devices_learn_each_other_then_authenticate_by_scanning() {
    let mut router = Router::new();
    let a1 = router.add("A1", "alice@example.org");
    let b1 = router.add("B1", "bob@example.com");
    router.all_contacts();
    router.start_all();
    // Both devices were learned from the device lists and bundles, TOAKAFA:
    // automatically trusted, and reported as appeared, not authenticated.
    assert_eq!(router.level(a1, b1), Some(TrustLevel::AutomaticallyTrusted));
    assert_eq!(router.level(b1, a1), Some(TrustLevel::AutomaticallyTrusted));
    assert!(router.nodes[a1].events.iter().any(|e| matches!(
        e,
        Event::DeviceAppeared { jid, authenticated: false, .. } if jid.as_str() == "bob@example.com"
    )));
    router.scan(a1, b1);
    router.scan(b1, a1);
    assert_eq!(count_pairs(&mut router), 2);
}

#[test]
fn seed_walkthrough_five_devices_eight_scans_twenty_authentications() {
    let mut router = Router::new();
    let a1 = router.add("A1", "alice@example.org");
    let a2 = router.add("A2", "alice@example.org");
    let a3 = router.add("A3", "alice@example.org");
    let b1 = router.add("B1", "bob@example.com");
    let b2 = router.add("B2", "bob@example.com");
    router.all_contacts();
    router.start_all();
    // Every device knows every other one before any scan.
    for at in 0..5 {
        assert_eq!(router.nodes[at].core().keys().unwrap().len(), 4, "{at}");
    }
    router.scan(a1, a3);
    router.scan(a2, a3);
    router.scan(a3, a1);
    router.scan(a3, a2);
    for (at, of) in [(a1, a2), (a2, a1), (a1, a3), (a3, a2)] {
        assert!(authenticated(&mut router, at, of), "{at} -> {of}");
    }
    router.scan(b1, b2);
    router.scan(b2, b1);
    router.scan(b2, a3);
    assert!(
        authenticated(&mut router, b1, a3),
        "B1 authenticates A3 through B2"
    );
    router.scan(a3, b2);
    assert_eq!(count_pairs(&mut router), 20, "all 20 authentications");
    // 8 manual ones, the other 12 through trust messages.
    let mut manual = 0;
    let mut automatic = 0;
    for node in &router.nodes {
        for event in &node.events {
            if let Event::TrustChanged {
                to: TrustLevel::Authenticated,
                cause,
                ..
            } = event
            {
                if cause.is_trust_message() {
                    automatic += 1;
                } else {
                    manual += 1;
                }
            }
        }
    }
    assert_eq!((manual, automatic), (8, 12));
    // As on the simulator (complete propagation): 3 trust messages.
    assert_eq!(router.encrypted_sent, 3);
    // Carbons only where they reach a recipient: a message to the own
    // account, or to a contact and encrypted for no own device, is private.
    let mut private = 0;
    let mut trust_private = 0;
    for (sender, message) in &router.encrypted_messages {
        let encrypted = message.get_child("encrypted", ns::NS_OMEMO).unwrap();
        if encrypted.get_child("payload", ns::NS_OMEMO).is_none() {
            // An empty OMEMO message (key-exchange reply): always private.
            assert!(message.get_child("private", ns::NS_CARBONS).is_some());
            private += 1;
            continue;
        }
        let own_recipient = message
            .get_child("encrypted", ns::NS_OMEMO)
            .and_then(|e| e.get_child("header", ns::NS_OMEMO))
            .unwrap()
            .children()
            .any(|keys| keys.attr("jid") == Some(sender.as_str()));
        let to_own = message.attr("to") == Some(sender.as_str());
        let expected = to_own || !own_recipient;
        assert_eq!(
            message.get_child("private", ns::NS_CARBONS).is_some(),
            expected,
            "{}",
            String::from(message)
        );
        assert_eq!(
            message.get_child("no-copy", ns::NS_HINTS).is_some(),
            expected
        );
        assert!(message.get_child("store", ns::NS_HINTS).is_some());
        private += usize::from(expected);
        trust_private += usize::from(expected);
    }
    assert_eq!(private, router.private_sent);
    assert!(trust_private >= 1, "no trust message went without carbons");
    eprintln!(
        "seed walkthrough: {} trust-message stanzas sent ({} empty OMEMO replies), \
         {} copies delivered ({} bytes), {:.1} delivered per automatic authentication",
        router.encrypted_sent,
        router.empty_sent,
        router.encrypted_delivered,
        router.encrypted_delivered_bytes,
        router.encrypted_delivered as f64 / 12.0
    );
    // No trust message was ever shown as chat.
    assert!(router
        .nodes
        .iter()
        .all(|n| !n.events.iter().any(|e| matches!(e, Event::Chat { .. }))));
}

#[test]
fn chat_goes_only_to_keys_the_trust_state_allows() {
    let mut router = Router::new();
    let a1 = router.add("A1", "alice@example.org");
    let b1 = router.add("B1", "bob@example.com");
    let b2 = router.add("B2", "bob@example.com");
    router.all_contacts();
    router.start_all();
    // TOAKAFA, nothing authenticated: both of Bob's devices are automatically
    // trusted and get the message.
    let now = router.tick();
    let sent = router.nodes[a1]
        .core()
        .send_chat("bob@example.com", "hi", now)
        .unwrap();
    assert_eq!(sent.devices, 2);
    router.pump();
    for b in [b1, b2] {
        assert!(router.nodes[b].events.iter().any(
            |e| matches!(e, Event::Chat { text, from, .. } if text == "hi" && from.as_str() == "alice@example.org")
        ));
    }
    // Alice authenticates B1: B2 becomes automatically distrusted and no
    // longer gets chat.
    router.scan(a1, b1);
    assert_eq!(
        router.level(a1, b2),
        Some(TrustLevel::AutomaticallyDistrusted)
    );
    let now = router.tick();
    let sent = router.nodes[a1]
        .core()
        .send_chat("bob@example.com", "only B1", now)
        .unwrap();
    assert_eq!(sent.devices, 1);
    router.pump();
    let got = |router: &Router, b: usize| {
        router.nodes[b]
            .events
            .iter()
            .any(|e| matches!(e, Event::Chat { text, .. } if text == "only B1"))
    };
    assert!(got(&router, b1));
    assert!(!got(&router, b2));
    // Distrusting B1 leaves nobody to write to.
    let fingerprint = router.nodes[b1].core().fingerprint();
    let now = router.tick();
    router.nodes[a1]
        .core()
        .distrust("bob@example.com", &fingerprint, now)
        .unwrap();
    let now = router.tick();
    let error = router.nodes[a1]
        .core()
        .send_chat("bob@example.com", "nobody", now)
        .unwrap_err();
    assert!(matches!(error, CommandError::NoTrustedDevice(_)), "{error}");
}

fn chat_texts(router: &Router, node: usize) -> Vec<String> {
    router.nodes[node]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Chat { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn crossing_first_messages_keep_both_sessions_working() {
    let mut router = Router::new();
    let a1 = router.add("A1", "alice@example.org");
    let b1 = router.add("B1", "bob@example.com");
    router.all_contacts();
    router.start_all();
    // Both send a first message (a key exchange) before either arrives.
    for round in 1..=3 {
        let now = router.tick();
        router.nodes[a1]
            .core()
            .send_chat("bob@example.com", &format!("a->b {round}"), now)
            .unwrap();
        router.nodes[b1]
            .core()
            .send_chat("alice@example.org", &format!("b->a {round}"), now)
            .unwrap();
        router.pump();
    }
    assert_eq!(chat_texts(&router, b1), ["a->b 1", "a->b 2", "a->b 3"]);
    assert_eq!(chat_texts(&router, a1), ["b->a 1", "b->a 2", "b->a 3"]);
    for node in [a1, b1] {
        assert!(!router.nodes[node]
            .events
            .iter()
            .any(|e| matches!(e, Event::Rejected { .. })));
    }
}

#[test]
fn seed_walkthrough_with_every_scan_before_any_delivery() {
    let mut router = Router::new();
    let a1 = router.add("A1", "alice@example.org");
    let a2 = router.add("A2", "alice@example.org");
    let a3 = router.add("A3", "alice@example.org");
    let b1 = router.add("B1", "bob@example.com");
    let b2 = router.add("B2", "bob@example.com");
    router.all_contacts();
    router.start_all();
    // The 8 scans happen at once: trust messages cross everywhere.
    for (at, of) in [
        (a1, a3),
        (a2, a3),
        (a3, a1),
        (a3, a2),
        (b1, b2),
        (b2, b1),
        (b2, a3),
        (a3, b2),
    ] {
        let uri = router.nodes[of].core().uri();
        let now = router.tick();
        router.nodes[at].core().scan(&uri, now).unwrap();
    }
    router.pump();
    assert_eq!(count_pairs(&mut router), 20);
    for node in &router.nodes {
        assert!(
            !node
                .events
                .iter()
                .any(|e| matches!(e, Event::Rejected { .. })),
            "{}: {:?}",
            node.name,
            node.events
        );
    }
}

/// XEP-0384 §Business Rules: a key exchange is answered with an empty OMEMO
/// message, private (no carbons: it is for one device), after which the
/// other side sends no more key exchanges. QXmpp 1.10 depends on it: it
/// keeps sending key exchanges until it hears back, unmarked after the
/// first (docs/interop.md).
#[test]
fn a_key_exchange_is_answered_with_one_private_empty_message() {
    let mut router = Router::new();
    let a1 = router.add("A1", "alice@example.org");
    let b1 = router.add("B1", "bob@example.com");
    router.all_contacts();
    router.start_all();
    router.scan(a1, b1);
    router.scan(b1, a1);
    let b1_id = router.nodes[b1].core().device_id();
    let a1_id = router.nodes[a1].core().device_id();
    let chat_from_a1 = |router: &mut Router| {
        let now = router.tick();
        router.nodes[a1]
            .core()
            .send_chat("bob@example.com", "hello", now)
            .unwrap();
        let mut chat = router
            .take_transmits(a1)
            .into_iter()
            .find(|s| s.name() == "message")
            .unwrap();
        common::set_attr(&mut chat, "from", "alice@example.org/A1");
        chat
    };
    let first = chat_from_a1(&mut router);
    assert!(String::from(&first).contains(&format!("kex='true' rid='{b1_id}'")));
    assert_eq!(router.deliver(b1, &first), Handled::Chat);
    let replies: Vec<Element> = router
        .take_transmits(b1)
        .into_iter()
        .filter(|s| s.name() == "message")
        .collect();
    assert_eq!(replies.len(), 1, "{replies:?}");
    let reply = &replies[0];
    assert_eq!(reply.attr("to"), Some("alice@example.org"));
    let encrypted = reply.get_child("encrypted", ns::NS_OMEMO).unwrap();
    assert!(encrypted.get_child("payload", ns::NS_OMEMO).is_none());
    assert!(
        reply.get_child("private", ns::NS_CARBONS).is_some(),
        "{}",
        String::from(reply)
    );
    assert!(reply.get_child("no-copy", ns::NS_HINTS).is_some());
    let text = String::from(reply);
    assert_eq!(text.matches("<key ").count(), 1, "{text}");
    assert!(text.contains(&format!("rid='{a1_id}'")) && !text.contains("kex='true'"));
    // A1 takes it; its next message is no key exchange any more.
    let mut reply = reply.clone();
    common::set_attr(&mut reply, "from", "bob@example.com/B1");
    let handled = router.deliver(a1, &reply);
    assert!(
        matches!(handled, Handled::Ignored | Handled::NotForThisDevice),
        "{handled:?}"
    );
    let second = chat_from_a1(&mut router);
    assert!(!String::from(&second).contains("kex='true'"), "{second:?}");
    assert_eq!(router.deliver(b1, &second), Handled::Chat);
    // Nothing answers an ordinary message.
    assert!(router
        .take_transmits(b1)
        .iter()
        .all(|s| s.name() != "message"));
}
