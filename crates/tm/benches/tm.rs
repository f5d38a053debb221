#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Parse and serialize a trust message of 1,000 key owners with 3 keys each.

use atm_tm::{BareJid, Encryption, KeyId, KeyOwner, TrustMessage, Usage};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn message() -> TrustMessage {
    let key_owners = (0..1000u32)
        .map(|i| {
            let key = |j: u32| {
                let mut b = [0u8; 32];
                b[..4].copy_from_slice(&i.to_be_bytes());
                b[4..8].copy_from_slice(&j.to_be_bytes());
                b[8..].fill(0xa5);
                KeyId::from(b)
            };
            KeyOwner {
                jid: BareJid::new(&format!("user{i}@example.org")).unwrap(),
                trust: vec![key(0), key(1)],
                distrust: vec![key(2)],
            }
        })
        .collect();
    TrustMessage {
        usage: Usage::ATM,
        encryption: Encryption::OMEMO2,
        key_owners,
    }
}

fn bench(c: &mut Criterion) {
    let tm = message();
    let xml = tm.to_xml();
    assert_eq!(TrustMessage::parse(&xml).unwrap(), tm);
    c.bench_function("parse 1000 owners x 3 keys", |b| {
        b.iter(|| TrustMessage::parse(black_box(&xml)).unwrap())
    });
    c.bench_function("serialize 1000 owners x 3 keys", |b| {
        b.iter(|| black_box(&tm).to_xml())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
