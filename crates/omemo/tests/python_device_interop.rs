//! Interop through `Device` with python-omemo's OMEMO 2 backend (twomemo),
//! end to end (issue 10): the empty message that completes a key exchange
//! both ways, the heartbeat at counter 53, and a message with two `<key>`
//! elements for one device as QXmpp sends them to its own account. Rust side:
//! `Device` with SCE envelopes through XML; Python side: tests/python/omemo_driver.py
//! (`scripts/test.sh` sets `ATM_PYTHON`; without it these tests fail).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use atm_omemo::crypto::{
    DecryptError, DeterministicRandom, DeviceAddress, MemoryStore, SessionStore, HEARTBEAT_COUNTER,
};
use atm_omemo::device::{Device, DeviceError, EmptyReply, Incoming, Recipient, SessionChange};
use atm_omemo::elements::{Encrypted, KeyElement};
use atm_omemo::sce::{Envelope, StanzaKind, TimeCheck};
use chrono::{DateTime, Utc};
use common::{FromPython, Python};
use jid::{BareJid, Jid};
use minidom::Element;

const RUST: &str = "rust@example.org";
const PYTHON: &str = "python@example.org";
/// The Python device's id (the driver's sessions are keyed by the Rust
/// device, `rust@example.org`/7; this is the `sid` its messages carry).
const PYTHON_DEVICE: u32 = 1;

fn jid(s: &str) -> BareJid {
    BareJid::new(s).unwrap()
}

fn t0() -> DateTime<Utc> {
    "2026-01-01T12:00:00Z".parse().unwrap()
}

fn rust_device(rng: &mut DeterministicRandom) -> Device<MemoryStore> {
    Device::open(jid(RUST), 7, MemoryStore::default(), t0(), rng).unwrap()
}

fn body(text: &str) -> Vec<Element> {
    vec![Element::builder("body", "jabber:client")
        .append(text.to_owned())
        .build()]
}

fn python_recipient(python: Option<&mut Python>, account: &str) -> Recipient {
    Recipient {
        address: DeviceAddress {
            jid: jid(account),
            device_id: PYTHON_DEVICE,
        },
        bundle: python.map(|p| p.bundle()),
    }
}

/// An envelope as another client writes it (`from` and `to` given).
fn envelope_bytes(text: &str, from: &str, to: &str, rng: &mut DeterministicRandom) -> Vec<u8> {
    Envelope {
        content: body(text),
        time: Some(t0()),
        from: Some(Jid::new(from).unwrap()),
        to: Some(Jid::new(to).unwrap()),
    }
    .seal(rng)
    .unwrap()
    .into_bytes()
}

/// Python's message as the `<encrypted>` element a server would deliver,
/// read back from XML.
fn from_python(sent: FromPython) -> Encrypted {
    let encrypted = Encrypted {
        sid: PYTHON_DEVICE,
        keys: [(
            jid(RUST),
            sent.keys
                .into_iter()
                .map(|data| KeyElement {
                    rid: 7,
                    kex: sent.kex,
                    data,
                })
                .collect(),
        )]
        .into_iter()
        .collect(),
        payload: sent.payload,
    };
    let xml = String::from(&Element::from(&encrypted));
    Encrypted::try_from(&xml.parse::<Element>().unwrap()).unwrap()
}

/// Python reads the Rust device's message for it: the envelope text, or
/// `None` for an empty message.
fn python_reads(python: &mut Python, encrypted: &Encrypted, account: &str) -> Option<String> {
    let xml = String::from(&Element::from(encrypted));
    let encrypted = Encrypted::try_from(&xml.parse::<Element>().unwrap()).unwrap();
    let key = encrypted.key_for(&jid(account), PYTHON_DEVICE).unwrap();
    python
        .decrypt(key.kex, &key.data, encrypted.payload.as_deref())
        .map(|plaintext| String::from_utf8(plaintext).unwrap())
}

fn from_python_stanza(sender: &str) -> Incoming {
    Incoming {
        sender: jid(sender),
        recipient: jid(RUST),
        sent_at: t0(),
        kind: StanzaKind::Chat,
    }
}

#[test]
fn python_completes_our_key_exchange_with_an_empty_message() {
    let mut python = Python::start();
    let mut rng = DeterministicRandom::new([41; 32]);
    let mut rust = rust_device(&mut rng);
    let to_python = [python_recipient(Some(&mut python), PYTHON)];
    for i in 0..2 {
        let message = rust
            .encrypt(
                body(&format!("hello {i}")),
                t0(),
                &jid(PYTHON),
                &to_python,
                &mut rng,
            )
            .unwrap();
        assert!(
            message.keys[&jid(PYTHON)][0].kex,
            "a key exchange until answered"
        );
        let envelope = python_reads(&mut python, &message, PYTHON).unwrap();
        assert!(envelope.contains(&format!("hello {i}")), "{envelope}");
    }
    // Python's empty message, through the Device.
    let empty = from_python(python.encrypt_copies(None, None, 1));
    assert_eq!(empty.payload, None);
    let opened = rust
        .decrypt(&empty, &from_python_stanza(PYTHON), None, &mut rng)
        .unwrap();
    assert!(opened.envelope.is_none());
    assert_eq!(opened.time, TimeCheck::Absent);
    assert_eq!(opened.session, SessionChange::Continued);
    assert_eq!(opened.reply, None);
    rust.acknowledge(opened.pending_id).unwrap();
    // Our session is confirmed: no key exchange any more, and Python reads it.
    let to_python = [python_recipient(None, PYTHON)];
    let message = rust
        .encrypt(body("confirmed"), t0(), &jid(PYTHON), &to_python, &mut rng)
        .unwrap();
    assert!(!message.keys[&jid(PYTHON)][0].kex);
    assert!(python_reads(&mut python, &message, PYTHON)
        .unwrap()
        .contains("confirmed"));
}

/// Builds a session from Python to the Rust device and completes it with
/// the Rust device's empty message; returns the device.
fn python_initiated_session(
    python: &mut Python,
    rng: &mut DeterministicRandom,
) -> Device<MemoryStore> {
    let mut rust = rust_device(rng);
    let bundle = rust.bundle().unwrap();
    let sent = python.encrypt_copies(
        Some(&bundle),
        Some(&envelope_bytes("from python", PYTHON, RUST, rng)),
        1,
    );
    assert!(sent.kex);
    let opened = rust
        .decrypt(&from_python(sent), &from_python_stanza(PYTHON), None, rng)
        .unwrap();
    assert_eq!(opened.envelope.unwrap().content, body("from python"));
    assert_eq!(opened.session, SessionChange::Built);
    assert_eq!(opened.reply, Some(EmptyReply::KeyExchangeCompleted));
    rust.acknowledge(opened.pending_id).unwrap();
    let empty = rust
        .encrypt_empty(&[python_recipient(None, PYTHON)], rng)
        .unwrap();
    assert_eq!(python_reads(python, &empty, PYTHON), None);
    rust
}

#[test]
fn we_complete_a_python_key_exchange_with_an_empty_message() {
    let mut python = Python::start();
    let mut rng = DeterministicRandom::new([42; 32]);
    let mut rust = python_initiated_session(&mut python, &mut rng);
    // Python read our empty message: it stops sending key exchanges.
    let sent = python.encrypt_copies(
        None,
        Some(&envelope_bytes("next", PYTHON, RUST, &mut rng)),
        1,
    );
    assert!(!sent.kex, "Python still sends key exchanges");
    let opened = rust
        .decrypt(
            &from_python(sent),
            &from_python_stanza(PYTHON),
            None,
            &mut rng,
        )
        .unwrap();
    assert_eq!(opened.envelope.unwrap().content, body("next"));
    assert_eq!(opened.reply, None);
}

#[test]
fn heartbeat_at_counter_53_with_python() {
    let mut python = Python::start();
    let mut rng = DeterministicRandom::new([43; 32]);
    let mut rust = python_initiated_session(&mut python, &mut rng);
    // Python's sending chain restarted at 0 after our empty message.
    let mut due = Vec::new();
    for i in 0..=HEARTBEAT_COUNTER + 2 {
        let sent = python.encrypt_copies(
            None,
            Some(&envelope_bytes(&format!("m{i}"), PYTHON, RUST, &mut rng)),
            1,
        );
        let opened = rust
            .decrypt(
                &from_python(sent),
                &from_python_stanza(PYTHON),
                None,
                &mut rng,
            )
            .unwrap();
        assert_eq!(opened.envelope.unwrap().content, body(&format!("m{i}")));
        if opened.reply == Some(EmptyReply::Heartbeat) {
            due.push(i);
        }
    }
    assert_eq!(due, [HEARTBEAT_COUNTER]);
    // Our heartbeat: Python reads it and steps its ratchet, so its next
    // message starts a new chain.
    let heartbeat = rust
        .encrypt_empty(&[python_recipient(None, PYTHON)], &mut rng)
        .unwrap();
    assert_eq!(python_reads(&mut python, &heartbeat, PYTHON), None);
    let sent = python.encrypt_copies(
        None,
        Some(&envelope_bytes("after", PYTHON, RUST, &mut rng)),
        1,
    );
    rust.decrypt(
        &from_python(sent),
        &from_python_stanza(PYTHON),
        None,
        &mut rng,
    )
    .unwrap();
    let session = rust
        .store_mut()
        .load_session(&DeviceAddress {
            jid: jid(PYTHON),
            device_id: PYTHON_DEVICE,
        })
        .unwrap()
        .unwrap();
    assert_eq!(session.ratchet().receiving_chain_length(), Some(1));
}

/// QXmpp, sending to its own account, writes two `<key>` elements for each
/// of its other devices, two ratchet steps apart. Here Python is the other
/// device of the Rust device's own account.
#[test]
fn two_keys_for_one_device_in_a_message_to_the_own_account() {
    let mut python = Python::start();
    let mut rng = DeterministicRandom::new([44; 32]);
    let mut rust = rust_device(&mut rng);
    let bundle = rust.bundle().unwrap();
    let own = |text: &str, rng: &mut DeterministicRandom| envelope_bytes(text, RUST, RUST, rng);
    let sent = python.encrypt_copies(Some(&bundle), Some(&own("to self", &mut rng)), 2);
    assert!(sent.kex);
    assert_eq!(sent.keys.len(), 2);
    let message = from_python(sent);
    assert_eq!(message.keys_for(&jid(RUST), 7).count(), 2);
    let opened = rust
        .decrypt(&message, &from_python_stanza(RUST), None, &mut rng)
        .unwrap();
    assert_eq!(opened.envelope.unwrap().content, body("to self"));
    assert_eq!(opened.reply, Some(EmptyReply::KeyExchangeCompleted));
    rust.acknowledge(opened.pending_id).unwrap();
    // The same stanza again (live and from the archive): a replay.
    assert!(matches!(
        rust.decrypt(&message, &from_python_stanza(RUST), None, &mut rng),
        Err(DeviceError::Decrypt(DecryptError::Duplicate { .. }))
    ));
    // Confirmed by our empty message, Python's next pair is plain messages.
    let empty = rust
        .encrypt_empty(&[python_recipient(None, RUST)], &mut rng)
        .unwrap();
    assert_eq!(python_reads(&mut python, &empty, RUST), None);
    for round in 0..3 {
        let text = format!("again {round}");
        let sent = python.encrypt_copies(None, Some(&own(&text, &mut rng)), 2);
        assert!(!sent.kex);
        let opened = rust
            .decrypt(
                &from_python(sent),
                &from_python_stanza(RUST),
                None,
                &mut rng,
            )
            .unwrap();
        assert_eq!(opened.envelope.unwrap().content, body(&text));
        assert_eq!(opened.session, SessionChange::Continued);
    }
}

/// Issue 10, item 4: signed device labels, both ways through XML, checked by
/// python-omemo's own device-list reader and signature check.
#[test]
fn signed_device_labels_with_python() {
    use atm_omemo::elements::DeviceList;
    let mut python = Python::start();
    let mut rng = DeterministicRandom::new([45; 32]);
    let rust = rust_device(&mut rng);
    let python_identity = python.bundle().identity_key;
    // Python's list: its label verifies with its identity key, not with ours.
    let answer = python.call(serde_json::json!({"op": "device_list", "label": "Gajim on Linux ü"}));
    let xml = answer["xml"].as_str().unwrap();
    let (list, skipped) = DeviceList::read(&xml.parse::<Element>().unwrap()).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(
        list.devices[0].label(&python_identity),
        Some("Gajim on Linux ü")
    );
    assert_eq!(list.devices[0].label(&rust.identity().unwrap()), None);
    // Ours: Python validates the element and the signature.
    let list = DeviceList {
        devices: vec![rust.list_entry(Some("atm-rs on Linux ü")).unwrap()],
    };
    let xml = String::from(&Element::from(&list));
    let read = |python: &mut Python, xml: &str| {
        python.call(serde_json::json!({
            "op": "read_device_list", "xml": xml, "ik": common::hex(rust.identity().unwrap().as_bytes()),
        }))["devices"]["7"]
            .clone()
    };
    assert_eq!(
        read(&mut python, &xml),
        serde_json::json!({"label": "atm-rs on Linux ü", "valid": true})
    );
    // A label changed on the server fails Python's check as it fails ours.
    let forged = xml.replace("atm-rs on Linux ü", "atm-rs (verified)");
    assert_eq!(
        read(&mut python, &forged)["valid"],
        serde_json::json!(false)
    );
    let (list, _) = DeviceList::read(&forged.parse::<Element>().unwrap()).unwrap();
    assert_eq!(list.devices[0].label(&rust.identity().unwrap()), None);
}
