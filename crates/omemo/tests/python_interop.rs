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

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use atm_omemo::crypto::{
    decrypt_payload, encrypt_payload, receive, Account, Bundle, DeterministicRandom,
    IdentityPublicKey, KeyMaterial, Session,
};
use chrono::DateTime;

struct Python {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

impl Python {
    fn start() -> Python {
        let python = std::env::var("ATM_PYTHON").expect(
            "ATM_PYTHON is not set: run the tests with `bash scripts/test.sh`, which installs the Python OMEMO stack",
        );
        let driver =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/omemo_driver.py");
        let mut child = Command::new(&python)
            .arg(&driver)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {python} {}: {e}", driver.display()));
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        Python {
            child,
            input,
            output,
        }
    }

    fn call(&mut self, request: serde_json::Value) -> serde_json::Value {
        writeln!(self.input, "{request}").unwrap();
        self.input.flush().unwrap();
        let mut line = String::new();
        self.output.read_line(&mut line).unwrap();
        let answer: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("driver said {line:?}: {e}"));
        assert!(
            answer.get("error").is_none(),
            "python: {answer} (request {request})"
        );
        answer
    }

    fn bundle(&mut self) -> Bundle {
        let b = self.call(serde_json::json!({"op": "bundle"}));
        Bundle {
            identity_key: IdentityPublicKey::from_slice(&unhex(b["ik"].as_str().unwrap())).unwrap(),
            signed_prekey_id: b["spk_id"].as_u64().unwrap() as u32,
            signed_prekey: unhex(b["spk"].as_str().unwrap()).try_into().unwrap(),
            signed_prekey_signature: unhex(b["spks"].as_str().unwrap()).try_into().unwrap(),
            prekeys: b["prekeys"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(id, pk)| {
                    (
                        id.parse().unwrap(),
                        unhex(pk.as_str().unwrap()).try_into().unwrap(),
                    )
                })
                .collect::<BTreeMap<u32, [u8; 32]>>(),
        }
    }

    /// Python decrypts a message from the Rust device; returns the plaintext.
    fn decrypt(&mut self, kex: bool, key: &[u8], payload: Option<&[u8]>) -> Option<Vec<u8>> {
        let answer = self.call(serde_json::json!({
            "op": "decrypt", "jid": "rust@example.org", "device": 7, "kex": kex,
            "key": hex(key), "payload": payload.map(hex),
        }));
        answer["plaintext"].as_str().map(unhex)
    }

    /// Python encrypts for the Rust device: (kex, key, payload).
    fn encrypt(
        &mut self,
        bundle: Option<&Bundle>,
        plaintext: Option<&[u8]>,
    ) -> (bool, Vec<u8>, Option<Vec<u8>>) {
        let bundle = bundle.map(|b| {
            serde_json::json!({
                "ik": hex(b.identity_key.as_bytes()), "spk": hex(&b.signed_prekey), "spk_id": b.signed_prekey_id,
                "spks": hex(&b.signed_prekey_signature),
                "prekeys": b.prekeys.iter().map(|(id, pk)| (id.to_string(), serde_json::Value::String(hex(pk)))).collect::<serde_json::Map<_, _>>(),
            })
        });
        let answer = self.call(serde_json::json!({
            "op": "encrypt", "jid": "rust@example.org", "device": 7, "bundle": bundle,
            "plaintext": plaintext.map(hex),
        }));
        (
            answer["kex"].as_bool().unwrap(),
            unhex(answer["key"].as_str().unwrap()),
            answer["payload"].as_str().map(unhex),
        )
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
