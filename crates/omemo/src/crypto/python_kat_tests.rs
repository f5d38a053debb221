//! Known answers from the reference stack (python twomemo/x3dh/doubleratchet/xeddsa),
//! produced by `crates/omemo/kat/make_python_vectors.py`.
//!
//! * `python_kex.txt`: Python Alice -> Bob; the test plays Bob with Bob's exported keys.
//! * `python_verified_rust.txt`: Rust Alice (deterministic randomness) -> the same
//!   Bob; Python decrypted these exact bytes (`verify` mode) and answered with
//!   `reply` (a DH ratchet step), which the test decrypts; Python then decrypted
//!   the three `after` messages Rust sends on its new chain (`pn` = 4).

use std::collections::BTreeMap;

use chrono::DateTime;

use super::proto::OmemoKeyExchange;
use super::*;

fn parse(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some((name, value)) = line.split_once('=') {
            values
                .entry(name.to_owned())
                .or_default()
                .push(value.to_owned());
        }
    }
    values
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn hex32(text: &str) -> [u8; 32] {
    hex(text).try_into().unwrap()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn python_bob(vectors: &BTreeMap<String, Vec<String>>) -> Account {
    let identity = IdentityKeyPair::from_seed(&hex32(&vectors["bob_identity_seed"][0]));
    let signed_prekey = SignedPreKey {
        id: 1,
        key_pair: X25519KeyPair::from_private(hex32(&vectors["bob_signed_prekey_private"][0])),
        signature: hex(&vectors["bob_signed_prekey_signature"][0])
            .try_into()
            .unwrap(),
        created: DateTime::UNIX_EPOCH,
    };
    let prekeys = vectors["bob_prekey"]
        .iter()
        .map(|line| {
            let (id, private) = line.split_once(':').unwrap();
            PreKey {
                id: id.parse().unwrap(),
                key_pair: X25519KeyPair::from_private(hex32(private)),
            }
        })
        .collect();
    Account::from_parts(identity, signed_prekey, None, prekeys)
}

#[test]
fn python_keys_and_bundle_agree() {
    let vectors = parse(include_str!("testdata/python_kex.txt"));
    let bob = python_bob(&vectors);
    let bundle = bob.bundle();
    // Seed -> Ed25519 public key and X25519 signed prekey public key as xeddsa derives them.
    assert_eq!(
        to_hex(bundle.identity_key.as_bytes()),
        vectors["bob_identity_public"][0]
    );
    assert_eq!(
        to_hex(&bundle.signed_prekey),
        vectors["bob_signed_prekey_public"][0]
    );
    // xeddsa's Ed25519 signature (made with the private scalar) verifies strictly here.
    bundle.verify().unwrap();
}

#[test]
fn python_alice_to_rust_bob() {
    let vectors = parse(include_str!("testdata/python_kex.txt"));
    let bob = python_bob(&vectors);
    let alice_identity =
        IdentityPublicKey::from_bytes(hex32(&vectors["alice_identity_public"][0])).unwrap();
    let mut rng = DeterministicRandom::new([40; 32]);
    let received = receive(
        &bob,
        None,
        Some(&alice_identity),
        &hex(&vectors["kex"][0]),
        true,
        &mut rng,
    )
    .unwrap();
    assert_eq!(to_hex(&received.plaintext), vectors["plaintext0"][0]);
    assert_eq!(
        to_hex(&received.session.associated_data),
        vectors["associated_data"][0]
    );
    let mut session = received.session;
    for index in [3usize, 1, 4, 2] {
        let plaintext = session
            .decrypt(&hex(&vectors[&format!("message{index}")][0]), &mut rng)
            .unwrap();
        assert_eq!(to_hex(&plaintext), vectors[&format!("plaintext{index}")][0]);
    }
}

/// Rust Alice's messages towards the Python Bob of `python_kex.txt`.
fn rust_alice_lines() -> (String, Session) {
    let vectors = parse(include_str!("testdata/python_kex.txt"));
    let bob_bundle = python_bob(&vectors).bundle();
    let mut rng = DeterministicRandom::new([41; 32]);
    let alice = IdentityKeyPair::generate(&mut rng).unwrap();
    let mut session = Session::initiate(&alice, &bob_bundle, &mut rng).unwrap();
    let mut lines = String::new();
    let first = b"first message from rust".to_vec();
    let kex = session.encrypt(&first);
    lines += &format!(
        "kex={}\nplaintext0={}\n",
        to_hex(&kex.bytes),
        to_hex(&first)
    );
    for index in 1..4u8 {
        let plaintext: Vec<u8> = (0..index * 20).collect();
        let message = session.encrypt(&plaintext);
        // Not confirmed yet: every message repeats the key exchange. Python's
        // verify mode reads the inner authenticated message.
        let exchange = OmemoKeyExchange::decode(&message.bytes).unwrap();
        lines += &format!(
            "message={}\nplaintext={}\n",
            to_hex(&exchange.message.encode()),
            to_hex(&plaintext)
        );
    }
    (lines, session)
}

/// After reading Python's reply (a DH ratchet step), Rust sends on a new chain.
fn rust_after_reply_lines(session: &mut Session, reply: &str) -> String {
    let mut rng = DeterministicRandom::new([42; 32]);
    let plaintext = session.decrypt(&hex(reply), &mut rng).unwrap();
    assert_eq!(plaintext.as_slice(), b"reply from python bob");
    assert!(session.is_confirmed());
    let mut lines = String::new();
    for index in 0..3u8 {
        let plaintext = format!("after reply {index}").into_bytes();
        let message = session.encrypt(&plaintext);
        assert!(!message.key_exchange);
        lines += &format!(
            "after={}\nafter_plaintext={}\n",
            to_hex(&message.bytes),
            to_hex(&plaintext)
        );
    }
    lines
}

#[test]
fn rust_alice_to_python_bob_and_back() {
    let recorded = include_str!("testdata/python_verified_rust.txt");
    let (lines, mut session) = rust_alice_lines();
    let reply = parse(recorded)["reply"][0].clone();
    let after = rust_after_reply_lines(&mut session, &reply);
    let ours: Vec<&str> = lines.lines().chain(after.lines()).collect();
    let theirs: Vec<&str> = recorded
        .lines()
        .filter(|line| !line.starts_with("reply=") && !line.starts_with("python"))
        .collect();
    assert_eq!(
        ours, theirs,
        "deterministic output changed; re-verify with python"
    );
    assert!(
        recorded.contains("python verified 4 messages and 3 after its reply"),
        "python did not verify the after-reply messages"
    );
}
