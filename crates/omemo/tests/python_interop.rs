//! Live interop with the independent Python OMEMO 2 stack (python-omemo's
//! `twomemo.Twomemo` backend, pinned in tests/python/requirements.txt), driven
//! through tests/python/omemo_driver.py: key exchanges both ways, a
//! conversation with ratchet steps, out-of-order delivery, the empty messages
//! Python sends after a key exchange, and a second device. Both sides must read
//! each other byte for byte.
//!
//! `scripts/test.sh` creates the virtual environment and sets `ATM_PYTHON`;
//! without it these tests fail (they never skip).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use atm_omemo::crypto::{
    decrypt_payload, encrypt_payload, receive, Account, DeterministicRandom, KeyMaterial, Session,
};
use chrono::DateTime;
use common::Python;

fn plaintext(i: usize) -> Vec<u8> {
    format!("<trust-message n='{i}'/> ")
        .repeat(i % 7 + 1)
        .into_bytes()
}

/// Rust encrypts `data` for an existing session: (kex, key, payload).
fn rust_encrypt(
    session: &mut Session,
    data: &[u8],
    rng: &mut DeterministicRandom,
) -> (bool, Vec<u8>, Vec<u8>) {
    let (payload, material) = encrypt_payload(data, rng).unwrap();
    let out = session.encrypt(&material.to_bytes());
    (out.key_exchange, out.bytes, payload)
}

/// Rust decrypts a message from Python; `None` for an empty message.
fn rust_decrypt(
    account: &mut Account,
    session: &mut Option<Session>,
    kex: bool,
    key: &[u8],
    payload: Option<&[u8]>,
    rng: &mut DeterministicRandom,
) -> Option<Vec<u8>> {
    let received = receive(account, session.as_ref(), None, key, kex, rng).unwrap();
    if let Some(prekey) = received.consumed_prekey {
        account.remove_prekey(prekey);
    }
    *session = Some(received.session);
    match KeyMaterial::parse(&received.plaintext).unwrap() {
        KeyMaterial::Empty => None,
        KeyMaterial::Payload(material) => Some(
            decrypt_payload(payload.unwrap(), &material)
                .unwrap()
                .to_vec(),
        ),
    }
}

#[test]
fn rust_builds_the_session_python_answers_with_an_empty_message_then_a_conversation() {
    let mut python = Python::start();
    let mut rng = DeterministicRandom::new([11; 32]);
    let mut account = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let bundle = python.bundle();
    let mut to_python = Session::initiate(account.identity(), &bundle, &mut rng).unwrap();
    // Key exchange and first message; repeated as key exchanges until answered.
    for i in 0..2 {
        let (kex, key, payload) = rust_encrypt(&mut to_python, &plaintext(i), &mut rng);
        assert!(kex);
        assert_eq!(
            python.decrypt(kex, &key, Some(&payload)),
            Some(plaintext(i))
        );
    }
    // Python confirms the session with an empty message.
    let mut session = Some(to_python);
    let (kex, key, payload) = python.encrypt(None, None);
    assert!(!kex);
    assert_eq!(payload, None);
    assert_eq!(
        rust_decrypt(&mut account, &mut session, kex, &key, None, &mut rng),
        None
    );
    // A conversation: ratchet steps both ways.
    for round in 0..4 {
        for i in 0..3 {
            let data = plaintext(10 * round + i);
            let (kex, key, payload) = rust_encrypt(session.as_mut().unwrap(), &data, &mut rng);
            assert!(!kex, "confirmed sessions send no key exchange");
            assert_eq!(python.decrypt(kex, &key, Some(&payload)), Some(data));
        }
        let data = plaintext(100 + round);
        let (kex, key, payload) = python.encrypt(None, Some(&data));
        assert_eq!(
            rust_decrypt(
                &mut account,
                &mut session,
                kex,
                &key,
                payload.as_deref(),
                &mut rng
            ),
            Some(data)
        );
    }
    // Out of order within MAX_SKIP: Rust sends five, Python reads them backwards.
    let messages: Vec<_> = (0..5)
        .map(|i| {
            (
                i,
                rust_encrypt(session.as_mut().unwrap(), &plaintext(200 + i), &mut rng),
            )
        })
        .collect();
    for (i, (kex, key, payload)) in messages.into_iter().rev() {
        assert_eq!(
            python.decrypt(kex, &key, Some(&payload)),
            Some(plaintext(200 + i))
        );
    }
    // And Python's, out of order, to Rust.
    let from_python: Vec<_> = (0..4)
        .map(|i| python.encrypt(None, Some(&plaintext(300 + i))))
        .collect();
    for (i, (kex, key, payload)) in from_python.into_iter().enumerate().rev() {
        assert_eq!(
            rust_decrypt(
                &mut account,
                &mut session,
                kex,
                &key,
                payload.as_deref(),
                &mut rng
            ),
            Some(plaintext(300 + i))
        );
    }
}

#[test]
fn python_builds_the_session_from_the_rust_bundle() {
    let mut python = Python::start();
    let mut rng = DeterministicRandom::new([12; 32]);
    let mut account = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let bundle = account.bundle();
    let mut session = None;
    let (kex, key, payload) = python.encrypt(Some(&bundle), Some(&plaintext(1)));
    assert!(kex);
    assert_eq!(
        rust_decrypt(
            &mut account,
            &mut session,
            kex,
            &key,
            payload.as_deref(),
            &mut rng
        ),
        Some(plaintext(1))
    );
    assert_eq!(
        session.as_ref().unwrap().remote_identity(),
        python.bundle().identity_key
    );
    // A second key exchange message (Python has not heard back yet) reuses the session.
    let (kex, key, payload) = python.encrypt(None, Some(&plaintext(2)));
    assert!(kex);
    assert_eq!(
        rust_decrypt(
            &mut account,
            &mut session,
            kex,
            &key,
            payload.as_deref(),
            &mut rng
        ),
        Some(plaintext(2))
    );
    // Rust answers; Python's session is confirmed and stops sending key exchanges.
    let (kex, key, payload) = rust_encrypt(session.as_mut().unwrap(), &plaintext(3), &mut rng);
    assert!(!kex);
    assert_eq!(
        python.decrypt(kex, &key, Some(&payload)),
        Some(plaintext(3))
    );
    let (kex, key, payload) = python.encrypt(None, Some(&plaintext(4)));
    assert!(!kex);
    assert_eq!(
        rust_decrypt(
            &mut account,
            &mut session,
            kex,
            &key,
            payload.as_deref(),
            &mut rng
        ),
        Some(plaintext(4))
    );
}

#[test]
fn one_payload_for_two_python_devices() {
    let mut first = Python::start();
    let mut second = Python::start();
    let mut rng = DeterministicRandom::new([13; 32]);
    let account = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let data = plaintext(42);
    let (payload, material) = encrypt_payload(&data, &mut rng).unwrap();
    for python in [&mut first, &mut second] {
        let bundle = python.bundle();
        let mut session = Session::initiate(account.identity(), &bundle, &mut rng).unwrap();
        let out = session.encrypt(&material.to_bytes());
        assert_eq!(
            python.decrypt(out.key_exchange, &out.bytes, Some(&payload)),
            Some(data.clone())
        );
    }
}
