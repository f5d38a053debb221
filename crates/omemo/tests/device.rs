//! Devices end to end: SCE content encrypted for exact recipients, decrypted
//! with "decrypt, persist, act"; forged, replayed and misaddressed messages
//! are refused and change nothing. Elements round-trip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use atm_omemo::crypto::{DeterministicRandom, DeviceAddress, MemoryStore, SessionStore};
use atm_omemo::device::{Device, DeviceError, Incoming, Recipient};
use atm_omemo::elements::{
    bundle_from_element, bundle_to_element, Device as ListedDevice, DeviceList, Encrypted,
};
use atm_omemo::sce::StanzaKind;
use chrono::{DateTime, Utc};
use jid::BareJid;
use minidom::Element;

fn jid(s: &str) -> BareJid {
    BareJid::new(s).unwrap()
}

fn device(name: &str, id: u32, rng: &mut DeterministicRandom) -> Device<MemoryStore> {
    Device::open(
        jid(name),
        id,
        MemoryStore::default(),
        DateTime::UNIX_EPOCH,
        rng,
    )
    .unwrap()
}

fn incoming(from: &str, to: &str, sent_at: DateTime<Utc>) -> Incoming {
    Incoming {
        sender: jid(from),
        recipient: jid(to),
        sent_at,
        kind: StanzaKind::Chat,
    }
}

fn content(text: &str) -> Vec<Element> {
    vec![Element::builder("trust-message", "urn:xmpp:tm:1")
        .append(text.to_owned())
        .build()]
}

#[test]
fn encrypt_for_two_devices_then_a_conversation() {
    let mut rng = DeterministicRandom::new([1; 32]);
    let mut alice = device("alice@example.org", 1, &mut rng);
    let mut bob1 = device("bob@example.com", 11, &mut rng);
    let mut bob2 = device("bob@example.com", 12, &mut rng);
    let recipients = vec![
        Recipient {
            address: DeviceAddress {
                jid: jid("bob@example.com"),
                device_id: 11,
            },
            bundle: Some(bob1.bundle().unwrap()),
        },
        Recipient {
            address: DeviceAddress {
                jid: jid("bob@example.com"),
                device_id: 12,
            },
            bundle: Some(bob2.bundle().unwrap()),
        },
    ];
    let time = "2020-01-01T00:00:07Z".parse().unwrap();
    let encrypted = alice
        .encrypt(
            content("first"),
            time,
            &jid("bob@example.com"),
            &recipients,
            &mut rng,
        )
        .unwrap();
    // Through XML and back, as on the wire.
    let element = Element::from(&encrypted);
    let encrypted = Encrypted::try_from(&element).unwrap();
    for bob in [&mut bob1, &mut bob2] {
        let opened = bob
            .decrypt(
                &encrypted,
                &incoming("alice@example.org", "bob@example.com", time),
                None,
                &mut rng,
            )
            .unwrap();
        assert_eq!(opened.envelope.as_ref().unwrap().content, content("first"));
        assert_eq!(opened.envelope.as_ref().unwrap().time, Some(time));
        assert_eq!(opened.sender_identity, alice.identity().unwrap());
        bob.acknowledge(opened.pending_id).unwrap();
        assert!(bob.store_mut().pending_messages().unwrap().is_empty());
        // A replay meets the ratchet's refusal, and changes nothing.
        let before = bob
            .store_mut()
            .load_session(&DeviceAddress {
                jid: jid("alice@example.org"),
                device_id: 1,
            })
            .unwrap()
            .unwrap()
            .to_bytes();
        let again = bob.decrypt(
            &encrypted,
            &incoming("alice@example.org", "bob@example.com", time),
            None,
            &mut rng,
        );
        assert!(again.is_err(), "a replay was accepted");
        let after = bob
            .store_mut()
            .load_session(&DeviceAddress {
                jid: jid("alice@example.org"),
                device_id: 1,
            })
            .unwrap()
            .unwrap()
            .to_bytes();
        assert_eq!(before, after);
    }
    // Bob answers; Alice reads it; then more messages both ways.
    let to_alice = vec![Recipient {
        address: DeviceAddress {
            jid: jid("alice@example.org"),
            device_id: 1,
        },
        bundle: None,
    }];
    for round in 0..3 {
        let e = bob1
            .encrypt(
                content(&format!("reply {round}")),
                time,
                &jid("alice@example.org"),
                &to_alice,
                &mut rng,
            )
            .unwrap();
        let opened = alice
            .decrypt(
                &e,
                &incoming("bob@example.com", "alice@example.org", time),
                None,
                &mut rng,
            )
            .unwrap();
        assert_eq!(
            opened.envelope.as_ref().unwrap().content,
            content(&format!("reply {round}"))
        );
        let e = alice
            .encrypt(
                content(&format!("again {round}")),
                time,
                &jid("bob@example.com"),
                &recipients[..1],
                &mut rng,
            )
            .unwrap();
        assert!(
            !e.keys[&jid("bob@example.com")][0].kex,
            "the session is confirmed"
        );
        let opened = bob1
            .decrypt(
                &e,
                &incoming("alice@example.org", "bob@example.com", time),
                None,
                &mut rng,
            )
            .unwrap();
        assert_eq!(
            opened.envelope.as_ref().unwrap().content,
            content(&format!("again {round}"))
        );
    }
}

#[test]
fn forged_and_misaddressed_messages_change_nothing() {
    let mut rng = DeterministicRandom::new([2; 32]);
    let mut alice = device("alice@example.org", 1, &mut rng);
    let mut bob = device("bob@example.com", 2, &mut rng);
    let recipients = vec![Recipient {
        address: DeviceAddress {
            jid: jid("bob@example.com"),
            device_id: 2,
        },
        bundle: Some(bob.bundle().unwrap()),
    }];
    let time = DateTime::UNIX_EPOCH;
    let good = alice
        .encrypt(
            content("x"),
            time,
            &jid("bob@example.com"),
            &recipients,
            &mut rng,
        )
        .unwrap();
    let account_before = bob.store_mut().load_account().unwrap().unwrap().to_bytes();
    // The payload tampered with.
    let mut forged = good.clone();
    if let Some(p) = forged.payload.as_mut() {
        p[0] ^= 1;
    }
    assert!(matches!(
        bob.decrypt(
            &forged,
            &incoming("alice@example.org", "bob@example.com", time),
            None,
            &mut rng
        ),
        Err(DeviceError::Payload(_))
    ));
    // The key element tampered with.
    let mut forged = good.clone();
    forged.keys.get_mut(&jid("bob@example.com")).unwrap()[0].data[20] ^= 1;
    assert!(bob
        .decrypt(
            &forged,
            &incoming("alice@example.org", "bob@example.com", time),
            None,
            &mut rng
        )
        .is_err());
    // Claimed by another sender (the envelope says alice).
    assert!(matches!(
        bob.decrypt(
            &good,
            &incoming("mallory@example.org", "bob@example.com", time),
            None,
            &mut rng
        ),
        Err(DeviceError::Envelope(_))
    ));
    // Not for this device.
    let mut other = device("bob@example.com", 3, &mut rng);
    assert!(matches!(
        other.decrypt(
            &good,
            &incoming("alice@example.org", "bob@example.com", time),
            None,
            &mut rng
        ),
        Err(DeviceError::NotForUs)
    ));
    // Nothing was stored by any refusal.
    assert_eq!(
        bob.store_mut().load_account().unwrap().unwrap().to_bytes(),
        account_before
    );
    assert!(bob
        .store_mut()
        .load_session(&DeviceAddress {
            jid: jid("alice@example.org"),
            device_id: 1
        })
        .unwrap()
        .is_none());
    assert!(bob.store_mut().pending_messages().unwrap().is_empty());
    // The genuine message still decrypts.
    bob.decrypt(
        &good,
        &incoming("alice@example.org", "bob@example.com", time),
        None,
        &mut rng,
    )
    .unwrap();
}

#[test]
fn elements_round_trip_and_refuse_bad_input() {
    let mut rng = DeterministicRandom::new([3; 32]);
    let bob = device("bob@example.com", 2, &mut rng);
    let bundle = bob.bundle().unwrap();
    let element = bundle_to_element(&bundle);
    assert_eq!(bundle_from_element(&element).unwrap(), bundle);
    let text = String::from(&element);
    let reparsed: Element = text.parse().unwrap();
    assert_eq!(bundle_from_element(&reparsed).unwrap(), bundle);
    // A bundle with a bad signature is refused.
    let mut bad = bundle.clone();
    bad.signed_prekey_signature[0] ^= 1;
    assert!(bundle_from_element(&bundle_to_element(&bad)).is_err());
    let list = DeviceList {
        devices: vec![bob.list_entry(Some("phone")).unwrap(), ListedDevice::new(9)],
    };
    assert_eq!(DeviceList::try_from(&Element::from(&list)).unwrap(), list);
    for (xml, needle) in [
        ("<devices xmlns='urn:xmpp:omemo:1'/>", "expected <devices"),
        ("<encrypted xmlns='urn:xmpp:omemo:2'/>", "no <header>"),
        ("<encrypted xmlns='urn:xmpp:omemo:2'><header sid='2147483648'/></encrypted>", "invalid sid"),
        ("<encrypted xmlns='urn:xmpp:omemo:2'><header sid='1'/><payload>!!</payload></encrypted>", "invalid text"),
        ("<encrypted xmlns='urn:xmpp:omemo:1'/>", "expected <encrypted"),
    ] {
        let element: Element = xml.parse().unwrap();
        let error = if xml.starts_with("<devices") {
            DeviceList::try_from(&element).unwrap_err().to_string()
        } else {
            Encrypted::try_from(&element).unwrap_err().to_string()
        };
        assert!(error.contains(needle), "{xml}: {error}");
    }
}
