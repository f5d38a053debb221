//! The python-omemo driver (tests/python/omemo_driver.py) for the interop
//! tests. `ATM_PYTHON` names the interpreter of the virtual environment that
//! `scripts/test.sh` creates; without it the tests fail (they never skip).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use atm_omemo::crypto::{Bundle, IdentityPublicKey};

/// One python-omemo device (twomemo), driven through tests/python/omemo_driver.py.
pub struct Python {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

impl Python {
    pub fn start() -> Python {
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

    pub fn call(&mut self, request: serde_json::Value) -> serde_json::Value {
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

    pub fn bundle(&mut self) -> Bundle {
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
    pub fn decrypt(&mut self, kex: bool, key: &[u8], payload: Option<&[u8]>) -> Option<Vec<u8>> {
        let answer = self.call(serde_json::json!({
            "op": "decrypt", "jid": "rust@example.org", "device": 7, "kex": kex,
            "key": hex(key), "payload": payload.map(hex),
        }));
        answer["plaintext"].as_str().map(unhex)
    }

    /// Python encrypts for the Rust device: (kex, key, payload).
    pub fn encrypt(
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

/// What Python sent: whether a key exchange, the `<key>` data (one per
/// copy) and the payload (`None`: an empty message).
pub struct FromPython {
    pub kex: bool,
    pub keys: Vec<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

impl Python {
    /// Python encrypts `plaintext` (or an empty message) for the Rust
    /// device, its key material `copies` times with the same session.
    pub fn encrypt_copies(
        &mut self,
        bundle: Option<&Bundle>,
        plaintext: Option<&[u8]>,
        copies: usize,
    ) -> FromPython {
        let bundle = bundle.map(bundle_json);
        let answer = self.call(serde_json::json!({
            "op": "encrypt", "jid": "rust@example.org", "device": 7, "bundle": bundle,
            "plaintext": plaintext.map(hex), "copies": copies,
        }));
        FromPython {
            kex: answer["kex"].as_bool().unwrap(),
            keys: answer["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| unhex(k.as_str().unwrap()))
                .collect(),
            payload: answer["payload"].as_str().map(unhex),
        }
    }
}

/// A bundle as the driver reads it.
pub fn bundle_json(b: &Bundle) -> serde_json::Value {
    serde_json::json!({
        "ik": hex(b.identity_key.as_bytes()), "spk": hex(&b.signed_prekey), "spk_id": b.signed_prekey_id,
        "spks": hex(&b.signed_prekey_signature),
        "prekeys": b.prekeys.iter().map(|(id, pk)| (id.to_string(), serde_json::Value::String(hex(pk)))).collect::<serde_json::Map<_, _>>(),
    })
}
