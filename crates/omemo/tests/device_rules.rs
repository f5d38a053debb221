//! Issue 10 through `Device`: empty messages (key exchange completion and
//! heartbeats), several `<key>` elements for one device as QXmpp sends them,
//! a recipient given twice, bad entries for other devices, a session
//! replaced by another identity, the SCE profiles and the time check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use atm_omemo::crypto::{
    encrypt_payload, Account, DecryptError, DeterministicRandom, DeviceAddress, MemoryStore,
    Session, SessionStore, HEARTBEAT_COUNTER,
};
use atm_omemo::device::{Device, DeviceError, EmptyReply, Incoming, Recipient, SessionChange};
use atm_omemo::elements::{Encrypted, KeyElement};
use atm_omemo::sce::{Envelope, SceError, StanzaKind, TimeCheck, SCE_TIME_MARGIN};
use chrono::{DateTime, TimeDelta, Utc};
use jid::{BareJid, Jid};
use minidom::Element;

fn jid(s: &str) -> BareJid {
    BareJid::new(s).unwrap()
}

fn t0() -> DateTime<Utc> {
    "2026-01-01T12:00:00Z".parse().unwrap()
}

fn device(name: &str, id: u32, rng: &mut DeterministicRandom) -> Device<MemoryStore> {
    Device::open(jid(name), id, MemoryStore::default(), t0(), rng).unwrap()
}

fn to(device: &Device<MemoryStore>, name: &str, with_bundle: bool) -> Recipient {
    Recipient {
        address: DeviceAddress {
            jid: jid(name),
            device_id: device.device_id(),
        },
        bundle: with_bundle.then(|| device.bundle().unwrap()),
    }
}

fn incoming(from: &str, to: &str, sent_at: DateTime<Utc>) -> Incoming {
    Incoming {
        sender: jid(from),
        recipient: jid(to),
        sent_at,
        kind: StanzaKind::Chat,
    }
}

fn body(text: &str) -> Vec<Element> {
    vec![Element::builder("body", "jabber:client")
        .append(text.to_owned())
        .build()]
}

/// As on the wire: written to XML and read back.
fn wire(encrypted: &Encrypted) -> Encrypted {
    let text = String::from(&Element::from(encrypted));
    Encrypted::try_from(&text.parse::<Element>().unwrap()).unwrap()
}

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.com";

/// Issue 10, item 1: an empty message completes the key exchange.
#[test]
fn an_empty_message_completes_the_key_exchange() {
    let mut rng = DeterministicRandom::new([21; 32]);
    let mut alice = device(ALICE, 1, &mut rng);
    let mut bob = device(BOB, 2, &mut rng);
    let first = alice
        .encrypt(
            body("hi"),
            t0(),
            &jid(BOB),
            &[to(&bob, BOB, true)],
            &mut rng,
        )
        .unwrap();
    assert!(first.keys[&jid(BOB)][0].kex);
    let opened = bob
        .decrypt(&wire(&first), &incoming(ALICE, BOB, t0()), None, &mut rng)
        .unwrap();
    assert_eq!(opened.session, SessionChange::Built);
    assert_eq!(opened.reply, Some(EmptyReply::KeyExchangeCompleted));
    bob.acknowledge(opened.pending_id).unwrap();
    // Bob answers with an empty message: no payload.
    let empty = bob
        .encrypt_empty(&[to(&alice, ALICE, false)], &mut rng)
        .unwrap();
    assert_eq!(empty.payload, None);
    let xml = String::from(&Element::from(&empty));
    assert!(!xml.contains("payload"), "{xml}");
    let opened = alice
        .decrypt(&wire(&empty), &incoming(BOB, ALICE, t0()), None, &mut rng)
        .unwrap();
    assert!(
        opened.envelope.is_none(),
        "an empty message has no envelope"
    );
    assert_eq!(opened.time, TimeCheck::Absent);
    assert_eq!(opened.session, SessionChange::Continued);
    assert_eq!(opened.reply, None);
    alice.acknowledge(opened.pending_id).unwrap();
    // Alice's session is confirmed: no key exchange any more.
    let next = alice
        .encrypt(
            body("again"),
            t0(),
            &jid(BOB),
            &[to(&bob, BOB, false)],
            &mut rng,
        )
        .unwrap();
    assert!(!next.keys[&jid(BOB)][0].kex, "still a key exchange");
    let opened = bob
        .decrypt(&wire(&next), &incoming(ALICE, BOB, t0()), None, &mut rng)
        .unwrap();
    assert_eq!(opened.envelope.unwrap().content, body("again"));
    // A replayed empty message is refused like any other.
    assert!(matches!(
        alice.decrypt(&wire(&empty), &incoming(BOB, ALICE, t0()), None, &mut rng),
        Err(DeviceError::Decrypt(DecryptError::Duplicate { .. }))
    ));
}

/// Issue 10, item 1: the heartbeat rule (counter 53) is reported once per
/// ratchet key, and the empty reply moves the ratchet on.
#[test]
fn a_heartbeat_is_asked_for_at_counter_53_and_moves_the_ratchet_on() {
    let mut rng = DeterministicRandom::new([22; 32]);
    let mut alice = device(ALICE, 1, &mut rng);
    let mut bob = device(BOB, 2, &mut rng);
    let first = alice
        .encrypt(body("0"), t0(), &jid(BOB), &[to(&bob, BOB, true)], &mut rng)
        .unwrap();
    bob.decrypt(&first, &incoming(ALICE, BOB, t0()), None, &mut rng)
        .unwrap();
    let reply = bob
        .encrypt_empty(&[to(&alice, ALICE, false)], &mut rng)
        .unwrap();
    alice
        .decrypt(&reply, &incoming(BOB, ALICE, t0()), None, &mut rng)
        .unwrap();
    // Alice's new sending chain after Bob's message starts at counter 0.
    let messages: Vec<Encrypted> = (0..=HEARTBEAT_COUNTER + 2)
        .map(|i| {
            alice
                .encrypt(
                    body(&i.to_string()),
                    t0(),
                    &jid(BOB),
                    &[to(&bob, BOB, false)],
                    &mut rng,
                )
                .unwrap()
        })
        .collect();
    let mut replies = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let opened = bob
            .decrypt(message, &incoming(ALICE, BOB, t0()), None, &mut rng)
            .unwrap();
        replies.push((i, opened.reply));
    }
    let due: Vec<usize> = replies
        .iter()
        .filter(|(_, reply)| *reply == Some(EmptyReply::Heartbeat))
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(due, [HEARTBEAT_COUNTER as usize], "{replies:?}");
    // The heartbeat: Alice reads it and steps her ratchet.
    let heartbeat = bob
        .encrypt_empty(&[to(&alice, ALICE, false)], &mut rng)
        .unwrap();
    let opened = alice
        .decrypt(
            &wire(&heartbeat),
            &incoming(BOB, ALICE, t0()),
            None,
            &mut rng,
        )
        .unwrap();
    assert!(opened.envelope.is_none());
    let next = alice
        .encrypt(
            body("after"),
            t0(),
            &jid(BOB),
            &[to(&bob, BOB, false)],
            &mut rng,
        )
        .unwrap();
    let opened = bob
        .decrypt(&next, &incoming(ALICE, BOB, t0()), None, &mut rng)
        .unwrap();
    assert_eq!(opened.reply, None);
    let session = bob
        .store_mut()
        .load_session(&DeviceAddress {
            jid: jid(ALICE),
            device_id: 1,
        })
        .unwrap()
        .unwrap();
    assert_eq!(
        session.ratchet().receiving_chain_length(),
        Some(1),
        "the counter restarted from 0"
    );
}

/// A message built by hand, as another client would: `envelope` sealed
/// as given, its key material encrypted `copies` times with one session.
fn foreign_message(
    session: &mut Session,
    sid: u32,
    recipient: &str,
    rid: u32,
    envelope: &str,
    copies: usize,
    rng: &mut DeterministicRandom,
) -> Encrypted {
    let (payload, material) = encrypt_payload(envelope.as_bytes(), rng).unwrap();
    let keys = (0..copies)
        .map(|_| {
            let out = session.encrypt(&material.to_bytes());
            KeyElement {
                rid,
                kex: out.key_exchange,
                data: out.bytes,
            }
        })
        .collect();
    Encrypted {
        sid,
        keys: [(jid(recipient), keys)].into_iter().collect(),
        payload: Some(payload),
    }
}

fn sealed(
    content: Vec<Element>,
    time: Option<DateTime<Utc>>,
    from: &str,
    to: &str,
    rng: &mut DeterministicRandom,
) -> String {
    Envelope {
        content,
        time,
        from: Some(Jid::new(from).unwrap()),
        to: Some(Jid::new(to).unwrap()),
    }
    .seal(rng)
    .unwrap()
}

/// Issue 10, item 2: QXmpp writes two `<key>` elements for the same rid
/// (two ratchet steps apart) in a message to its own account; both are read,
/// the message decrypts, and a second delivery is refused.
#[test]
fn two_keys_for_this_device_as_qxmpp_sends_them_to_its_own_account() {
    let mut rng = DeterministicRandom::new([23; 32]);
    let phone = Account::generate(t0(), &mut rng).unwrap();
    let mut laptop = device(ALICE, 2, &mut rng);
    let mut session =
        Session::initiate(phone.identity(), &laptop.bundle().unwrap(), &mut rng).unwrap();
    let envelope = sealed(body("note to self"), Some(t0()), ALICE, ALICE, &mut rng);
    let message = foreign_message(&mut session, 1, ALICE, 2, &envelope, 2, &mut rng);
    let read = wire(&message);
    assert_eq!(read.keys_for(&jid(ALICE), 2).count(), 2);
    let opened = laptop
        .decrypt(&read, &incoming(ALICE, ALICE, t0()), None, &mut rng)
        .unwrap();
    assert_eq!(opened.envelope.unwrap().content, body("note to self"));
    laptop.acknowledge(opened.pending_id).unwrap();
    // Both keys were spent: the same stanza again (archive and live) is a replay.
    assert!(matches!(
        laptop.decrypt(&read, &incoming(ALICE, ALICE, t0()), None, &mut rng),
        Err(DeviceError::Decrypt(DecryptError::Duplicate { .. }))
    ));
    // The next message in that session still decrypts.
    let envelope = sealed(body("next"), Some(t0()), ALICE, ALICE, &mut rng);
    let next = foreign_message(&mut session, 1, ALICE, 2, &envelope, 2, &mut rng);
    let opened = laptop
        .decrypt(&wire(&next), &incoming(ALICE, ALICE, t0()), None, &mut rng)
        .unwrap();
    assert_eq!(opened.envelope.unwrap().content, body("next"));
    // A first key that does not decrypt is passed over for the second.
    let envelope = sealed(body("third"), Some(t0()), ALICE, ALICE, &mut rng);
    let mut third = foreign_message(&mut session, 1, ALICE, 2, &envelope, 2, &mut rng);
    third.keys.get_mut(&jid(ALICE)).unwrap()[0].data[12] ^= 1;
    let opened = laptop
        .decrypt(&wire(&third), &incoming(ALICE, ALICE, t0()), None, &mut rng)
        .unwrap();
    assert_eq!(opened.envelope.unwrap().content, body("third"));
}

/// Issue 10, item 2: malformed entries for other devices are skipped and
/// reported; this device's entry still decrypts.
#[test]
fn bad_entries_for_other_devices_do_not_stop_this_one() {
    let mut rng = DeterministicRandom::new([24; 32]);
    let mut alice = device(ALICE, 1, &mut rng);
    let mut bob = device(BOB, 2, &mut rng);
    let message = alice
        .encrypt(
            body("hi"),
            t0(),
            &jid(BOB),
            &[to(&bob, BOB, true)],
            &mut rng,
        )
        .unwrap();
    let xml = String::from(&Element::from(&message)).replacen(
        "</header>",
        "<keys jid='carol@example.net'>\
           <key rid='7'>AAAA</key><key rid='7'>AAAA</key>\
           <key rid='x'>AAAA</key><key rid='8' kex='maybe'>AAAA</key>\
           <key rid='9'>!!!</key><key>AAAA</key><key rid='2147483648'>AAAA</key>\
         </keys>\
         <keys jid='@@'><key rid='3'>AAAA</key></keys><keys><key rid='4'>AAAA</key></keys>\
         </header>",
        1,
    );
    let element: Element = xml.parse().unwrap();
    let (read, skipped) = Encrypted::read(&element).unwrap();
    assert_eq!(skipped.len(), 7, "{skipped:?}");
    assert_eq!(read.keys_for(&jid("carol@example.net"), 7).count(), 2);
    let opened = bob
        .decrypt(&read, &incoming(ALICE, BOB, t0()), None, &mut rng)
        .unwrap();
    assert_eq!(opened.envelope.unwrap().content, body("hi"));
}

/// Issue 10, item 3: a recipient given twice is encrypted for once, so our
/// own reader (and the recipient) can read the message.
#[test]
fn a_recipient_given_twice_is_encrypted_for_once() {
    let mut rng = DeterministicRandom::new([25; 32]);
    let mut alice = device(ALICE, 1, &mut rng);
    let mut bob = device(BOB, 2, &mut rng);
    let bob_twice = [to(&bob, BOB, true), to(&bob, BOB, true)];
    let message = alice
        .encrypt(body("once"), t0(), &jid(BOB), &bob_twice, &mut rng)
        .unwrap();
    assert_eq!(message.keys[&jid(BOB)].len(), 1);
    let opened = bob
        .decrypt(&wire(&message), &incoming(ALICE, BOB, t0()), None, &mut rng)
        .unwrap();
    assert_eq!(opened.envelope.unwrap().content, body("once"));
    let empty = alice.encrypt_empty(&bob_twice, &mut rng).unwrap();
    assert_eq!(empty.keys[&jid(BOB)].len(), 1);
}

/// Issue 10, smaller point: a key exchange from another identity under the
/// same address replaces the session, and `Opened` says so.
#[test]
fn a_session_replaced_by_another_identity_is_reported() {
    let mut rng = DeterministicRandom::new([26; 32]);
    let mut alice = device(ALICE, 1, &mut rng);
    let mut bob = device(BOB, 2, &mut rng);
    let first = alice
        .encrypt(body("1"), t0(), &jid(BOB), &[to(&bob, BOB, true)], &mut rng)
        .unwrap();
    let opened = bob
        .decrypt(&first, &incoming(ALICE, BOB, t0()), None, &mut rng)
        .unwrap();
    let old_identity = opened.sender_identity;
    // Alice's device forgets its session and starts again: same identity.
    alice
        .store_mut()
        .delete_session(&DeviceAddress {
            jid: jid(BOB),
            device_id: 2,
        })
        .unwrap();
    let again = alice
        .encrypt(body("2"), t0(), &jid(BOB), &[to(&bob, BOB, true)], &mut rng)
        .unwrap();
    let opened = bob
        .decrypt(&again, &incoming(ALICE, BOB, t0()), None, &mut rng)
        .unwrap();
    assert_eq!(opened.session, SessionChange::Rebuilt);
    // A new account claims device 1 of Alice: a different identity key.
    let mut impostor = device(ALICE, 1, &mut rng);
    let third = impostor
        .encrypt(body("3"), t0(), &jid(BOB), &[to(&bob, BOB, true)], &mut rng)
        .unwrap();
    let opened = bob
        .decrypt(&third, &incoming(ALICE, BOB, t0()), None, &mut rng)
        .unwrap();
    assert_eq!(
        opened.session,
        SessionChange::IdentityChanged {
            previous: old_identity
        }
    );
    assert_ne!(opened.sender_identity, old_identity);
    assert_eq!(opened.reply, Some(EmptyReply::KeyExchangeCompleted));
}

/// Issue 10, item 6: the SCE time is reported against the sending time of
/// the stanza; a chat message outside the margin is still returned.
#[test]
fn the_sce_time_is_checked_against_the_sending_time() {
    let mut rng = DeterministicRandom::new([27; 32]);
    let mut alice = device(ALICE, 1, &mut rng);
    let mut bob = device(BOB, 2, &mut rng);
    let sent = t0();
    let message = alice
        .encrypt(
            body("late"),
            sent,
            &jid(BOB),
            &[to(&bob, BOB, true)],
            &mut rng,
        )
        .unwrap();
    // Delivered from the archive a day later: the server's stamp says when it was sent.
    let opened = bob
        .decrypt(
            &message,
            &incoming(ALICE, BOB, sent + TimeDelta::seconds(3)),
            None,
            &mut rng,
        )
        .unwrap();
    assert_eq!(
        opened.time,
        TimeCheck::Within {
            stamp: sent,
            skew: TimeDelta::seconds(-3)
        }
    );
    // The same kind of message claiming a stanza sent an hour later.
    let message = alice
        .encrypt(
            body("replayed?"),
            sent,
            &jid(BOB),
            &[to(&bob, BOB, false)],
            &mut rng,
        )
        .unwrap();
    let stamp = sent + SCE_TIME_MARGIN + TimeDelta::hours(1);
    let opened = bob
        .decrypt(&message, &incoming(ALICE, BOB, stamp), None, &mut rng)
        .unwrap();
    assert!(matches!(opened.time, TimeCheck::Outside { skew, .. } if skew == sent - stamp));
    assert_eq!(opened.envelope.unwrap().content, body("replayed?"));
}

/// Issue 10, items 5 and 6 through `Device`: another client's chat envelope
/// without `<time>` and `<to>` is read; a trust message without `<time>` is
/// refused and stores nothing; server-processed elements are dropped.
#[test]
fn sce_profiles_and_server_processed_elements_through_device() {
    let mut rng = DeterministicRandom::new([28; 32]);
    let other = Account::generate(t0(), &mut rng).unwrap();
    let mut bob = device(BOB, 2, &mut rng);
    let mut session =
        Session::initiate(other.identity(), &bob.bundle().unwrap(), &mut rng).unwrap();
    let chat = "<envelope xmlns='urn:xmpp:sce:1'><content>\
        <body xmlns='jabber:client'>hello</body>\
        <stanza-id xmlns='urn:xmpp:sid:0' id='forged' by='bob@example.com'/>\
        <no-store xmlns='urn:xmpp:hints'/>\
        </content><rpad>abc</rpad><from jid='alice@example.org'/></envelope>";
    let message = foreign_message(&mut session, 1, BOB, 2, chat, 1, &mut rng);
    let opened = bob
        .decrypt(&wire(&message), &incoming(ALICE, BOB, t0()), None, &mut rng)
        .unwrap();
    let envelope = opened.envelope.unwrap();
    assert_eq!(envelope.content, body("hello"));
    assert_eq!(envelope.to, None);
    assert_eq!(opened.time, TimeCheck::Absent);
    let dropped: Vec<_> = opened.discarded.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(dropped, ["stanza-id", "no-store"]);
    bob.acknowledge(opened.pending_id).unwrap();
    // A trust message needs <time>: refused, and nothing stored.
    let session_before = bob
        .store_mut()
        .load_session(&DeviceAddress {
            jid: jid(ALICE),
            device_id: 1,
        })
        .unwrap()
        .unwrap()
        .to_bytes();
    let tm = "<envelope xmlns='urn:xmpp:sce:1'><content>\
        <trust-message xmlns='urn:xmpp:tm:1' usage='urn:xmpp:atm:1' encryption='urn:xmpp:omemo:2'/>\
        </content><rpad>abc</rpad><from jid='alice@example.org'/></envelope>";
    let message = foreign_message(&mut session, 1, BOB, 2, tm, 1, &mut rng);
    assert!(matches!(
        bob.decrypt(&wire(&message), &incoming(ALICE, BOB, t0()), None, &mut rng),
        Err(DeviceError::Envelope(SceError::Missing("time")))
    ));
    let session_after = bob
        .store_mut()
        .load_session(&DeviceAddress {
            jid: jid(ALICE),
            device_id: 1,
        })
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(session_before, session_after);
    assert!(bob.store_mut().pending_messages().unwrap().is_empty());
}

/// Issue 10, smaller point: device ids are 1..=2^31−1.
#[test]
fn device_ids_above_2_pow_31_minus_1_are_refused() {
    let mut rng = DeterministicRandom::new([29; 32]);
    for id in [0, 1 << 31, u32::MAX] {
        assert!(matches!(
            Device::open(jid(ALICE), id, MemoryStore::default(), t0(), &mut rng),
            Err(DeviceError::InvalidDeviceId(i)) if i == id
        ));
    }
    assert!(Device::open(
        jid(ALICE),
        (1 << 31) - 1,
        MemoryStore::default(),
        t0(),
        &mut rng
    )
    .is_ok());
}
