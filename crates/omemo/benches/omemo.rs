//! OMEMO 2 costs, next to the primitives they are made of (compare with
//! tests/python/bench_omemo.py, the Python stack on the same machine):
//! - encrypt and decrypt a 1 KiB payload for one device in an established session;
//! - a key exchange (active and passive side);
//! - one message encrypted for 10 devices;
//! - X25519, Ed25519 verify, HKDF-SHA-256, AES-256-CBC (1 KiB), HMAC-SHA-256 (1 KiB).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use atm_omemo::crypto::{
    decrypt_payload, encrypt_payload, receive, Account, DeterministicRandom, KeyMaterial, Session,
};
use chrono::DateTime;
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn established(rng: &mut DeterministicRandom) -> (Session, Session) {
    let alice = Account::generate(DateTime::UNIX_EPOCH, rng).unwrap();
    let bob = Account::generate(DateTime::UNIX_EPOCH, rng).unwrap();
    let mut to_bob = Session::initiate(alice.identity(), &bob.bundle(), rng).unwrap();
    let (_, material) = encrypt_payload(b"hello", rng).unwrap();
    let first = to_bob.encrypt(&material.to_bytes());
    let received = receive(&bob, None, None, &first.bytes, first.key_exchange, rng).unwrap();
    let mut from_alice = received.session;
    let answer = from_alice.encrypt(&[0; 32]);
    to_bob.decrypt(&answer.bytes, rng).unwrap();
    (to_bob, from_alice)
}

fn sessions(c: &mut Criterion) {
    let mut rng = DeterministicRandom::new([1; 32]);
    let payload = vec![0x5a_u8; 1024];
    let (mut to_bob, mut from_alice) = established(&mut rng);
    c.bench_function(
        "omemo/1 KiB payload, encrypt + decrypt, established session",
        |b| {
            b.iter(|| {
                let (ciphertext, material) = encrypt_payload(&payload, &mut rng).unwrap();
                let out = to_bob.encrypt(&material.to_bytes());
                let (key, next) = from_alice.decrypt_advance(&out.bytes, &mut rng).unwrap();
                from_alice = next;
                let KeyMaterial::Payload(material) = KeyMaterial::parse(&key).unwrap() else {
                    unreachable!()
                };
                black_box(decrypt_payload(&ciphertext, &material).unwrap())
            })
        },
    );
    let alice = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let bob = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let bundle = bob.bundle();
    c.bench_function("omemo/key exchange (initiate + receive)", |b| {
        b.iter(|| {
            let mut session = Session::initiate(alice.identity(), &bundle, &mut rng).unwrap();
            let out = session.encrypt(&[7; 48]);
            black_box(receive(&bob, None, None, &out.bytes, true, &mut rng).unwrap())
        })
    });
    let mut ten: Vec<Session> = (0..10).map(|_| established(&mut rng).0).collect();
    c.bench_function("omemo/1 KiB message for 10 devices", |b| {
        b.iter(|| {
            let (ciphertext, material) = encrypt_payload(&payload, &mut rng).unwrap();
            let bytes = material.to_bytes();
            let keys: Vec<_> = ten.iter_mut().map(|s| s.encrypt(&bytes)).collect();
            black_box((ciphertext, keys))
        })
    });
}

fn primitives(c: &mut Criterion) {
    use aes::cipher::{BlockModeEncrypt, KeyIvInit};
    use hmac::{KeyInit, Mac};
    let data = vec![0x33_u8; 1024];
    let secret = x25519_dalek::StaticSecret::from([9; 32]);
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([8; 32]));
    c.bench_function("primitive/X25519", |b| {
        b.iter(|| black_box(secret.diffie_hellman(black_box(&public))))
    });
    let signing = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
    use ed25519_dalek::Signer;
    let signature = signing.sign(&data[..32]);
    let verifying = signing.verifying_key();
    c.bench_function("primitive/Ed25519 verify", |b| {
        b.iter(|| {
            black_box(
                verifying
                    .verify_strict(black_box(&data[..32]), &signature)
                    .is_ok(),
            )
        })
    });
    c.bench_function("primitive/HKDF-SHA-256 (80 bytes out)", |b| {
        b.iter(|| {
            let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&[0; 32]), black_box(&data[..32]));
            let mut out = [0u8; 80];
            hk.expand(b"OMEMO Payload", &mut out).unwrap();
            black_box(out)
        })
    });
    c.bench_function("primitive/AES-256-CBC encrypt 1 KiB", |b| {
        b.iter(|| {
            let cipher =
                cbc::Encryptor::<aes::Aes256>::new_from_slices(&[1u8; 32], &[2u8; 16]).unwrap();
            black_box(
                cipher.encrypt_padded_vec::<aes::cipher::block_padding::Pkcs7>(black_box(&data)),
            )
        })
    });
    c.bench_function("primitive/HMAC-SHA-256 1 KiB", |b| {
        b.iter(|| {
            let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&[3; 32]).unwrap();
            mac.update(black_box(&data));
            black_box(mac.finalize().into_bytes())
        })
    });
}

criterion_group!(benches, sessions, primitives);
criterion_main!(benches);
