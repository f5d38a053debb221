//! An attacker's stanzas: forged carbons and archive results, a contact
//! claiming to be our account, SCE address mismatches, replays. Each is
//! refused and changes nothing, while the genuine stanza next to it is
//! accepted (so the check, not something else, refused it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use atm_client::{ns, Channel, Event, Handled, Rejection};
use atm_engine::TrustLevel;
use common::{bare, nc, set_attr, Router};
use minidom::Element;

fn wrap(kind: &str, ns_wrapper: &str, outer_from: &str, to: &str, inner: Element) -> Element {
    let mut wrapper = Element::builder(kind, ns_wrapper);
    if kind == "result" {
        wrapper = wrapper
            .attr(nc("id"), "fake-1")
            .attr(nc("queryid"), "q-unknown");
    }
    Element::builder("message", ns::NS_CLIENT)
        .attr(nc("from"), outer_from)
        .attr(nc("to"), to)
        .append(
            wrapper
                .append(
                    Element::builder("forwarded", ns::NS_FORWARD)
                        .append(inner)
                        .build(),
                )
                .build(),
        )
        .build()
}

/// A1, A2 (alice) and B1 (bob), all learned; A2 sends a chat to its own
/// account; returns the genuine stanza as the server stamps it (from A2).
fn setup() -> (Router, usize, usize, usize, Element) {
    let mut router = Router::new();
    let a1 = router.add("A1", "alice@example.org");
    let a2 = router.add("A2", "alice@example.org");
    let b1 = router.add("B1", "bob@example.com");
    router.all_contacts();
    router.start_all();
    let now = router.tick();
    router.nodes[a2]
        .core()
        .send_chat("alice@example.org", "from A2", now)
        .unwrap();
    let mut stanzas = router.take_transmits(a2);
    assert_eq!(stanzas.len(), 1);
    let mut genuine = stanzas.remove(0);
    set_attr(&mut genuine, "from", "alice@example.org/A2");
    (router, a1, a2, b1, genuine)
}

fn chats(router: &Router, node: usize) -> usize {
    router.nodes[node]
        .events
        .iter()
        .filter(|e| matches!(e, Event::Chat { .. }))
        .count()
}

#[test]
fn carbons_from_anyone_but_the_own_bare_jid_are_refused() {
    let (mut router, a1, _, _, genuine) = setup();
    for (kind, from) in [
        ("received", "bob@example.com"),
        ("sent", "bob@example.com"),
        ("received", "bob@example.com/B1"),
        ("received", "alice@example.org/A2"), // a resource, not the server
        ("sent", "example.org"),
    ] {
        let forged = wrap(
            kind,
            ns::NS_CARBONS,
            from,
            "alice@example.org/A1",
            genuine.clone(),
        );
        let handled = router.deliver(a1, &forged);
        assert!(
            matches!(
                handled,
                Handled::Rejected(Rejection::ForgedWrapper {
                    wrapper: "carbon",
                    ..
                })
            ),
            "{kind} from {from}: {handled:?}"
        );
    }
    assert_eq!(chats(&router, a1), 0);
    // The same message genuinely delivered is accepted, once.
    assert_eq!(router.deliver(a1, &genuine), Handled::Chat);
    assert_eq!(router.deliver(a1, &genuine), Handled::Duplicate);
    assert_eq!(chats(&router, a1), 1);
}

#[test]
fn a_sent_carbon_must_carry_a_message_of_the_own_account() {
    let (mut router, a1, _, b1, _) = setup();
    // Bob's genuine chat to alice, re-wrapped by the (genuine) own server as
    // if an own device had sent it: refused, the inner sender is not us.
    let now = router.tick();
    router.nodes[b1]
        .core()
        .send_chat("alice@example.org", "hi", now)
        .unwrap();
    let mut from_bob = router.take_transmits(b1).remove(0);
    set_attr(&mut from_bob, "from", "bob@example.com/B1");
    let carbon = wrap(
        "sent",
        ns::NS_CARBONS,
        "alice@example.org",
        "alice@example.org/A1",
        from_bob.clone(),
    );
    assert!(matches!(
        router.deliver(a1, &carbon),
        Handled::Rejected(Rejection::ForgedWrapper {
            wrapper: "sent carbon",
            ..
        })
    ));
    assert_eq!(router.deliver(a1, &from_bob), Handled::Chat);
}

#[test]
fn archive_results_must_come_from_the_own_account_and_answer_our_query() {
    let (mut router, a1, _, _, genuine) = setup();
    let forged = wrap(
        "result",
        ns::NS_MAM,
        "bob@example.com",
        "alice@example.org/A1",
        genuine.clone(),
    );
    assert!(matches!(
        router.deliver(a1, &forged),
        Handled::Rejected(Rejection::ForgedWrapper {
            wrapper: "archive result",
            ..
        })
    ));
    let unsolicited = wrap(
        "result",
        ns::NS_MAM,
        "alice@example.org",
        "alice@example.org/A1",
        genuine,
    );
    assert!(matches!(
        router.deliver(a1, &unsolicited),
        Handled::Rejected(Rejection::UnknownQuery(_))
    ));
    assert_eq!(chats(&router, a1), 0);
    assert!(router.nodes[a1]
        .core()
        .archive_position()
        .unwrap()
        .is_none());
    assert!(router.nodes[a1].events.iter().any(|e| matches!(
        e,
        Event::Rejected {
            channel: Channel::Live,
            rejection: Rejection::ForgedWrapper { .. }
        }
    )));
}

#[test]
fn a_contact_claiming_to_be_our_account_is_refused_by_the_sce_check() {
    let mut router = Router::new();
    let a1 = router.add("A1", "alice@example.org");
    // Mallory's device believes (and writes in its SCE envelopes) that it is
    // alice, but the server knows it as mallory.
    let m = router.add_as("M", "alice@example.org", "mallory@example.net");
    let b1 = router.add("B1", "bob@example.com");
    router.all_contacts();
    router.start_all();
    // Mallory first authenticates Bob's device: a decision to pass on.
    router.scan(m, b1);
    let a1_key = router.nodes[a1].core().own_key().clone();
    let before = router.nodes[a1].core().keys().unwrap();
    let events_before = router.nodes[a1].events.len();
    // A chat "from alice".
    let now = router.tick();
    router.nodes[m]
        .core()
        .send_chat("alice@example.org", "I am alice", now)
        .unwrap();
    // A trust message "from alice": Mallory authenticates A1 as its own
    // device, which sends A1 all of Mallory's decisions.
    let uri = router.nodes[a1].core().uri();
    let now = router.tick();
    let decided = router.nodes[m].core().scan(&uri, now).unwrap();
    assert!(decided.trust_messages >= 1);
    // The engine batches it into the message to Bob (A1 riding along);
    // Mallory sends every stanza it has to alice instead.
    for mut stanza in router.take_transmits(m) {
        if stanza.name() == "message" {
            set_attr(&mut stanza, "to", "alice@example.org");
        }
        router.route(m, stanza);
    }
    router.pump();
    let mismatches = router.nodes[a1]
        .handled
        .iter()
        .filter(|h| {
            matches!(h, Handled::Rejected(Rejection::SceMismatch { field: "from", envelope, stanza })
                if envelope == "alice@example.org" && stanza == "mallory@example.net")
        })
        .count();
    assert!(mismatches >= 2, "{:?}", router.nodes[a1].handled);
    assert_eq!(chats(&router, a1), 0);
    assert!(!router.nodes[a1].events[events_before..]
        .iter()
        .any(|e| matches!(
            e,
            Event::TrustChanged {
                to: TrustLevel::Authenticated,
                ..
            }
        )));
    assert_eq!(router.level(a1, b1), Some(TrustLevel::AutomaticallyTrusted));
    assert_eq!(router.nodes[a1].core().keys().unwrap(), before);
    assert!(!before.iter().any(|k| k.key == a1_key));
}

#[test]
fn an_envelope_addressed_to_someone_else_is_refused() {
    use atm_omemo::crypto::{DeviceAddress, MemoryStore, OsRandom};
    use atm_omemo::device::{Device, Recipient};
    use atm_omemo::elements::{bundle_from_element, Encrypted};

    let (mut router, a1, _, b1, _) = setup();
    // Bob (a raw OMEMO device of bob's account) encrypts for A1 an envelope
    // addressed to carol, and sends it to alice.
    let a1_id = router.nodes[a1].core().device_id();
    let bundle_element = router.pep[&(bare("alice@example.org"), ns::NS_BUNDLES.to_owned())]
        .iter()
        .find(|(id, _)| *id == a1_id.to_string())
        .unwrap()
        .1
        .clone();
    let bundle = bundle_from_element(&bundle_element).unwrap();
    let mut bob = Device::open(
        bare("bob@example.com"),
        4242,
        MemoryStore::new(),
        router.now,
        &mut OsRandom,
    )
    .unwrap();
    let body = Element::builder("body", ns::NS_CLIENT)
        .append("to carol")
        .build();
    let encrypted = bob
        .encrypt(
            vec![body],
            router.now,
            &bare("carol@example.net"),
            &[Recipient {
                address: DeviceAddress {
                    jid: bare("alice@example.org"),
                    device_id: a1_id,
                },
                bundle: Some(bundle),
            }],
            &mut OsRandom,
        )
        .unwrap();
    let stanza = Element::builder("message", ns::NS_CLIENT)
        .attr(nc("to"), "alice@example.org")
        .attr(nc("type"), "chat")
        .attr(nc("id"), "x1")
        .append(Element::from(&encrypted))
        .build();
    router.route(b1, stanza);
    router.pump();
    assert!(router.nodes[a1].handled.iter().any(|h| matches!(
        h,
        Handled::Rejected(Rejection::SceMismatch { field: "to", envelope, .. }) if envelope == "carol@example.net"
    )), "{:?}", router.nodes[a1].handled);
    assert_eq!(chats(&router, a1), 0);
    let _ = Encrypted::try_from(&Element::from(&encrypted)).unwrap();
}

#[test]
fn replays_are_recognised_by_id_by_content_and_by_the_ratchet() {
    let (mut router, a1, _, _, genuine) = setup();
    assert_eq!(router.deliver(a1, &genuine), Handled::Chat);
    // Same stanza again: duplicate.
    assert_eq!(router.deliver(a1, &genuine), Handled::Duplicate);
    // Re-sent with another id and a fresh stanza id from the server: the
    // content hash differs (it covers the id), the ratchet still refuses it.
    let mut resent = genuine.clone();
    set_attr(&mut resent, "id", "another-id");
    resent.append_child(
        Element::builder("stanza-id", ns::NS_SID)
            .attr(nc("by"), "alice@example.org")
            .attr(nc("id"), "srv-new")
            .build(),
    );
    assert_eq!(router.deliver(a1, &resent), Handled::Duplicate);
    assert_eq!(chats(&router, a1), 1);
}

#[test]
fn replaying_the_whole_archive_changes_nothing() {
    let mut router = Router::new();
    let a1 = router.add("A1", "alice@example.org");
    let a2 = router.add("A2", "alice@example.org");
    let b1 = router.add("B1", "bob@example.com");
    router.all_contacts();
    router.start_all();
    router.scan(a1, a2);
    router.scan(a2, a1);
    router.scan(a1, b1);
    router.scan(b1, a1);
    assert_eq!(router.level(a2, b1), Some(TrustLevel::Authenticated));
    let keys_before: Vec<_> = (0..3)
        .map(|n| router.nodes[n].core().keys().unwrap())
        .collect();
    let events_before: Vec<usize> = router.nodes.iter().map(|n| n.events.len()).collect();
    for node in 0..3 {
        router.nodes[node].core().catch_up().unwrap();
    }
    router.pump();
    for node in 0..3 {
        assert_eq!(router.nodes[node].core().keys().unwrap(), keys_before[node]);
        let new_events = &router.nodes[node].events[events_before[node]..];
        assert!(new_events.is_empty(), "{new_events:?}");
        let position = router.nodes[node].core().archive_position().unwrap();
        let jid = router.nodes[node].jid.clone();
        assert_eq!(
            position.as_deref(),
            router.archive[&jid].last().map(|(id, _)| id.as_str())
        );
    }
}

#[test]
fn pep_notifications_only_from_followed_bare_jids() {
    let (mut router, a1, _, _, _) = setup();
    let list = Element::builder("devices", ns::NS_OMEMO)
        .append(
            Element::builder("device", ns::NS_OMEMO)
                .attr(nc("id"), "777")
                .build(),
        )
        .build();
    let event = |from: &str| {
        Element::builder("message", ns::NS_CLIENT)
            .attr(nc("from"), from)
            .attr(nc("to"), "alice@example.org/A1")
            .append(
                Element::builder("event", ns::NS_PUBSUB_EVENT)
                    .append(
                        Element::builder("items", ns::NS_PUBSUB_EVENT)
                            .attr(nc("node"), ns::NS_DEVICES)
                            .append(
                                Element::builder("item", ns::NS_PUBSUB_EVENT)
                                    .attr(nc("id"), "current")
                                    .append(list.clone())
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .build()
    };
    for from in ["bob@example.com/B1", "stranger@example.net"] {
        assert!(
            matches!(
                router.deliver(a1, &event(from)),
                Handled::Rejected(Rejection::ForgedNotification(_))
            ),
            "{from}"
        );
    }
    // From the contact's bare JID it is taken, and its new device's bundle
    // is asked for.
    assert_eq!(
        router.deliver(a1, &event("bob@example.com")),
        Handled::DeviceList
    );
    let asks = router.take_transmits(a1);
    assert!(
        asks.iter().any(|iq| String::from(iq).contains("id='777'")),
        "{asks:?}"
    );
}

#[test]
fn unsolicited_iq_responses_are_refused() {
    let (mut router, a1, _, _, _) = setup();
    let response = Element::builder("iq", ns::NS_CLIENT)
        .attr(nc("type"), "result")
        .attr(nc("id"), "atm-iq-guess-1")
        .attr(nc("from"), "bob@example.com")
        .build();
    assert!(matches!(
        router.deliver(a1, &response),
        Handled::Rejected(Rejection::UnexpectedResponse { .. })
    ));
}

#[test]
fn a_message_without_to_is_taken_as_addressed_to_us_only_from_the_own_account() {
    let (mut router, a1, _, b1, genuine) = setup();
    // From Bob, `to` removed: refused (only the own server drops `to`, and
    // only from the own account's messages to itself).
    let now = router.tick();
    router.nodes[b1]
        .core()
        .send_chat("alice@example.org", "hi", now)
        .unwrap();
    let mut from_bob = router.take_transmits(b1).remove(0);
    set_attr(&mut from_bob, "from", "bob@example.com/B1");
    let mut without_to = from_bob.clone();
    without_to
        .attrs_mut()
        .remove(&rxml::Namespace::NONE, &nc("to"));
    assert!(matches!(
        router.deliver(a1, &without_to),
        Handled::Rejected(Rejection::MissingAttribute {
            element: "message",
            attribute: "to"
        })
    ));
    assert_eq!(chats(&router, a1), 0);
    assert_eq!(router.deliver(a1, &from_bob), Handled::Chat);
    // From A2 to its own account, without `to` (as Prosody delivers it):
    // accepted, and the copy with `to` is the same message.
    let mut own_without_to = genuine.clone();
    own_without_to
        .attrs_mut()
        .remove(&rxml::Namespace::NONE, &nc("to"));
    assert_eq!(router.deliver(a1, &own_without_to), Handled::Chat);
    assert_eq!(router.deliver(a1, &genuine), Handled::Duplicate);
    assert_eq!(chats(&router, a1), 2);
}
