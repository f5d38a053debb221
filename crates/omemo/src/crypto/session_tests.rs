//! Session round trips in memory, out-of-order delivery, refusals without state change.

use chrono::DateTime;

use super::*;

struct Device {
    account: Account,
    rng: DeterministicRandom,
}

fn device(seed: u8) -> Device {
    let mut rng = DeterministicRandom::new([seed; 32]);
    let account = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    Device { account, rng }
}

/// Alice initiates to Bob; Bob accepts the first message. Returns both sessions.
fn establish(alice: &mut Device, bob: &mut Device) -> (Session, Session) {
    let mut alice_session = Session::initiate(
        alice.account.identity(),
        &bob.account.bundle(),
        &mut alice.rng,
    )
    .unwrap();
    let first = alice_session.encrypt(b"first key material");
    assert!(first.key_exchange);
    let received = receive(
        &bob.account,
        None,
        Some(&alice.account.identity().public()),
        &first.bytes,
        true,
        &mut bob.rng,
    )
    .unwrap();
    assert_eq!(received.plaintext.as_slice(), b"first key material");
    assert!(received.new_session);
    let prekey = received.consumed_prekey.unwrap();
    assert!(bob.account.remove_prekey(prekey));
    assert_eq!(
        received.session.remote_identity(),
        alice.account.identity().public()
    );
    (alice_session, received.session)
}

#[test]
fn round_trip_both_directions_with_ratchet_steps() {
    let (mut alice, mut bob) = (device(1), device(2));
    let (mut alice_session, mut bob_session) = establish(&mut alice, &mut bob);
    // Until Bob answers, Alice keeps sending key exchanges.
    let second = alice_session.encrypt(b"second");
    assert!(second.key_exchange);
    let received = receive(
        &bob.account,
        Some(&bob_session),
        None,
        &second.bytes,
        true,
        &mut bob.rng,
    )
    .unwrap();
    assert!(!received.new_session);
    assert_eq!(received.plaintext.as_slice(), b"second");
    bob_session = received.session;
    for round in 0..5u8 {
        let reply = bob_session.encrypt(&[round; 48]);
        assert!(!reply.key_exchange);
        assert_eq!(
            alice_session
                .decrypt(&reply.bytes, &mut alice.rng)
                .unwrap()
                .as_slice(),
            &[round; 48]
        );
        assert!(alice_session.is_confirmed());
        let message = alice_session.encrypt(&[round + 100; 48]);
        assert!(!message.key_exchange);
        assert_eq!(
            bob_session
                .decrypt(&message.bytes, &mut bob.rng)
                .unwrap()
                .as_slice(),
            &[round + 100; 48]
        );
    }
}

#[test]
fn out_of_order_within_max_skip() {
    let (mut alice, mut bob) = (device(3), device(4));
    let (mut alice_session, mut bob_session) = establish(&mut alice, &mut bob);
    let reply = bob_session.encrypt(b"ack");
    alice_session.decrypt(&reply.bytes, &mut alice.rng).unwrap();
    let messages: Vec<_> = (0..10u8).map(|i| alice_session.encrypt(&[i; 40])).collect();
    for index in [9usize, 3, 0, 7, 1, 2, 8, 4, 6, 5] {
        let plaintext = bob_session
            .decrypt(&messages[index].bytes, &mut bob.rng)
            .unwrap();
        assert_eq!(plaintext.as_slice(), &[u8::try_from(index).unwrap(); 40]);
    }
    assert_eq!(bob_session.ratchet().skipped_key_count(), 0);
    // Messages of an old chain arriving after a ratchet step.
    let old: Vec<_> = (0..3u8).map(|i| bob_session.encrypt(&[i; 8])).collect();
    alice_session
        .decrypt(&old[2].bytes, &mut alice.rng)
        .unwrap();
    let next = alice_session.encrypt(b"new chain");
    bob_session.decrypt(&next.bytes, &mut bob.rng).unwrap();
    let newer = bob_session.encrypt(b"newer");
    alice_session.decrypt(&newer.bytes, &mut alice.rng).unwrap();
    assert_eq!(
        alice_session
            .decrypt(&old[0].bytes, &mut alice.rng)
            .unwrap()
            .as_slice(),
        &[0; 8]
    );
    assert_eq!(
        alice_session
            .decrypt(&old[1].bytes, &mut alice.rng)
            .unwrap()
            .as_slice(),
        &[1; 8]
    );
}

#[test]
fn beyond_max_skip_refused_without_state_change() {
    let (mut alice, mut bob) = (device(5), device(6));
    let (mut alice_session, mut bob_session) = establish(&mut alice, &mut bob);
    let reply = bob_session.encrypt(b"ack");
    alice_session.decrypt(&reply.bytes, &mut alice.rng).unwrap();
    // Alice ratcheted on Bob's reply: a new chain, n = 0..=1001.
    let messages: Vec<_> = (0..=MAX_SKIP + 1)
        .map(|_| alice_session.encrypt(b"x"))
        .collect();
    let before = bob_session.to_bytes();
    let error = bob_session
        .decrypt(&messages.last().unwrap().bytes, &mut bob.rng)
        .unwrap_err();
    assert!(
        matches!(
            error,
            DecryptError::TooManySkipped {
                requested: 1001,
                max: MAX_SKIP
            }
        ),
        "{error:?}"
    );
    assert_eq!(bob_session.to_bytes(), before);
    assert_eq!(bob_session.ratchet().skipped_key_count(), 0);
    // Skipping exactly MAX_SKIP keys (n = 0..=999) is accepted.
    let within = &messages[usize::try_from(MAX_SKIP).unwrap()];
    bob_session.decrypt(&within.bytes, &mut bob.rng).unwrap();
    assert_eq!(
        bob_session.ratchet().skipped_key_count(),
        MAX_STORED_SKIPPED_KEYS
    );
    // Two more skipped keys (n = 1001, 1002) push out the two oldest (FIFO): n = 0, 1.
    let _n1003 = alice_session.encrypt(b"skipped");
    let n1004 = alice_session.encrypt(b"y");
    bob_session.decrypt(&n1004.bytes, &mut bob.rng).unwrap();
    assert_eq!(
        bob_session.ratchet().skipped_key_count(),
        MAX_STORED_SKIPPED_KEYS
    );
    assert_eq!(
        bob_session
            .decrypt(&messages[0].bytes, &mut bob.rng)
            .unwrap_err(),
        DecryptError::Duplicate { n: 0 }
    );
    assert_eq!(
        bob_session
            .decrypt(&messages[2].bytes, &mut bob.rng)
            .unwrap()
            .as_slice(),
        b"x"
    );
    assert_eq!(
        bob_session
            .decrypt(&messages[1001].bytes, &mut bob.rng)
            .unwrap()
            .as_slice(),
        b"x"
    );
}

#[test]
fn replay_and_tampering_refused_without_state_change() {
    let (mut alice, mut bob) = (device(7), device(8));
    let (mut alice_session, mut bob_session) = establish(&mut alice, &mut bob);
    let reply = bob_session.encrypt(b"ack");
    alice_session.decrypt(&reply.bytes, &mut alice.rng).unwrap();
    let message = alice_session.encrypt(b"once");
    bob_session.decrypt(&message.bytes, &mut bob.rng).unwrap();
    let state_before = bob_session.to_bytes();
    assert_eq!(
        bob_session
            .decrypt(&message.bytes, &mut bob.rng)
            .unwrap_err(),
        DecryptError::Duplicate { n: 0 }
    );
    let fresh = alice_session.encrypt(b"fresh");
    for position in 0..fresh.bytes.len() {
        let mut forged = fresh.bytes.clone();
        forged[position] ^= 0x40;
        assert!(
            bob_session.decrypt(&forged, &mut bob.rng).is_err(),
            "byte {position}"
        );
    }
    for length in 0..fresh.bytes.len() {
        assert!(bob_session
            .decrypt(&fresh.bytes[..length], &mut bob.rng)
            .is_err());
    }
    // Byte for byte the same state after the replay, every forgery and truncation.
    assert_eq!(bob_session.to_bytes(), state_before);
    assert_eq!(bob_session.ratchet().skipped_key_count(), 0);
    assert_eq!(
        bob_session
            .decrypt(&fresh.bytes, &mut bob.rng)
            .unwrap()
            .as_slice(),
        b"fresh"
    );
}

#[test]
fn key_exchange_refusals() {
    let (mut alice, mut bob) = (device(9), device(10));
    let mut session = Session::initiate(
        alice.account.identity(),
        &bob.account.bundle(),
        &mut alice.rng,
    )
    .unwrap();
    let first = session.encrypt(b"k");
    // Wrong expected identity.
    let stranger = device(11);
    assert_eq!(
        receive(
            &bob.account,
            None,
            Some(&stranger.account.identity().public()),
            &first.bytes,
            true,
            &mut bob.rng
        )
        .unwrap_err(),
        DecryptError::IdentityMismatch
    );
    // Plain message without session.
    assert_eq!(
        receive(&bob.account, None, None, &first.bytes, false, &mut bob.rng).unwrap_err(),
        DecryptError::NoSession
    );
    // Prekey used and removed: still accepted while it is among the
    // RETAINED_USED_PREKEYS most recently used (a contact's stale copy of the
    // bundle), refused once that many others were used after it.
    let received = receive(&bob.account, None, None, &first.bytes, true, &mut bob.rng).unwrap();
    let prekey = received.consumed_prekey.unwrap();
    assert!(bob.account.remove_prekey(prekey));
    assert!(!bob.account.remove_prekey(prekey));
    let again = receive(&bob.account, None, None, &first.bytes, true, &mut bob.rng).unwrap();
    assert_eq!(again.consumed_prekey, Some(prekey));
    let restored = Account::from_bytes(&bob.account.to_bytes()).unwrap();
    assert!(receive(&restored, None, None, &first.bytes, true, &mut bob.rng).is_ok());
    let others: Vec<u32> = bob.account.bundle().prekeys.keys().copied().collect();
    for other in others.iter().take(crate::crypto::RETAINED_USED_PREKEYS - 1) {
        assert!(bob.account.remove_prekey(*other));
    }
    assert!(receive(&bob.account, None, None, &first.bytes, true, &mut bob.rng).is_ok());
    assert!(bob
        .account
        .remove_prekey(others[crate::crypto::RETAINED_USED_PREKEYS - 1]));
    assert_eq!(
        receive(&bob.account, None, None, &first.bytes, true, &mut bob.rng).unwrap_err(),
        DecryptError::KeyExchange(KeyExchangeError::UnknownPreKey { id: prekey })
    );
    let restored = Account::from_bytes(&bob.account.to_bytes()).unwrap();
    assert!(receive(&restored, None, None, &first.bytes, true, &mut bob.rng).is_err());
    // Replayed key exchange against the session it built: duplicate.
    assert_eq!(
        receive(
            &bob.account,
            Some(&received.session),
            None,
            &first.bytes,
            true,
            &mut bob.rng
        )
        .unwrap_err(),
        DecryptError::Duplicate { n: 0 }
    );
    // A bundle with a forged signature or without prekeys is refused.
    let mut bundle = bob.account.bundle();
    bundle.signed_prekey_signature[5] ^= 1;
    assert_eq!(
        Session::initiate(alice.account.identity(), &bundle, &mut alice.rng).unwrap_err(),
        KeyExchangeError::BadBundleSignature
    );
    let mut bundle = bob.account.bundle();
    bundle.prekeys.clear();
    assert_eq!(
        Session::initiate(alice.account.identity(), &bundle, &mut alice.rng).unwrap_err(),
        KeyExchangeError::NoPreKey
    );
}

#[test]
fn old_signed_prekey_still_accepted_after_one_rotation() {
    let (mut alice, mut bob) = (device(12), device(13));
    let bundle = bob.account.bundle();
    bob.account
        .rotate_signed_prekey(DateTime::UNIX_EPOCH, &mut bob.rng)
        .unwrap();
    let mut session = Session::initiate(alice.account.identity(), &bundle, &mut alice.rng).unwrap();
    let first = session.encrypt(b"late");
    assert!(receive(&bob.account, None, None, &first.bytes, true, &mut bob.rng).is_ok());
    bob.account
        .rotate_signed_prekey(DateTime::UNIX_EPOCH, &mut bob.rng)
        .unwrap();
    assert_eq!(
        receive(&bob.account, None, None, &first.bytes, true, &mut bob.rng).unwrap_err(),
        DecryptError::KeyExchange(KeyExchangeError::UnknownSignedPreKey { id: 1 })
    );
}

#[test]
fn full_message_with_payload() {
    let (mut alice, mut bob) = (device(14), device(15));
    let (ciphertext, material) = encrypt_payload(b"<trust/>", &mut alice.rng).unwrap();
    let mut session = Session::initiate(
        alice.account.identity(),
        &bob.account.bundle(),
        &mut alice.rng,
    )
    .unwrap();
    let key = session.encrypt(&material.to_bytes());
    let received = receive(
        &bob.account,
        None,
        None,
        &key.bytes,
        key.key_exchange,
        &mut bob.rng,
    )
    .unwrap();
    let material = PayloadKeyMaterial::from_bytes(&received.plaintext).unwrap();
    assert_eq!(
        decrypt_payload(&ciphertext, &material).unwrap().as_slice(),
        b"<trust/>"
    );
}

#[test]
fn debug_output_never_contains_secrets() {
    let (mut alice, mut bob) = (device(16), device(17));
    let (alice_session, bob_session) = establish(&mut alice, &mut bob);
    let to_hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    for session in [&alice_session, &bob_session] {
        let printed = format!("{session:?}");
        assert!(!printed.contains(&to_hex(session.ratchet.root_key.as_slice())));
        assert!(!printed.contains(&to_hex(&session.ratchet.sending.key)));
        assert!(!printed.contains(&to_hex(session.ratchet.own_ratchet.private())));
        assert!(!printed.contains(&format!("{:?}", session.ratchet.sending.key)));
    }
    let printed = format!("{:?}", bob.account);
    assert!(!printed.contains(&to_hex(bob.account.identity().seed().as_slice())));
    assert!(!printed.contains(&to_hex(bob.account.signed_prekey().key_pair.private())));
}

#[test]
fn one_payload_for_two_devices_of_one_contact() {
    let (mut alice, mut phone, mut laptop) = (device(18), device(19), device(20));
    let (ciphertext, material) = encrypt_payload(b"to both", &mut alice.rng).unwrap();
    for bob in [&mut phone, &mut laptop] {
        let mut session = Session::initiate(
            alice.account.identity(),
            &bob.account.bundle(),
            &mut alice.rng,
        )
        .unwrap();
        let key = session.encrypt(&material.to_bytes());
        let received = receive(&bob.account, None, None, &key.bytes, true, &mut bob.rng).unwrap();
        let KeyMaterial::Payload(material) = KeyMaterial::parse(&received.plaintext).unwrap()
        else {
            panic!("expected payload key material");
        };
        assert_eq!(
            decrypt_payload(&ciphertext, &material).unwrap().as_slice(),
            b"to both"
        );
    }
}
