//! The engine over SQLite and in memory:
//! - one trust message of 3,000 keys (1,000 contacts × 3 devices) from an own
//!   endpoint, applied to a store on disk (target ≤ 10 ms) and in memory
//!   (target ≥ 200,000 key decisions per second);
//! - one small trust message (3 keys) as the store grows to 100,000 keys
//!   (target: flat).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use atm_engine::{
    Changeset, Config, DecisionTimes, Engine, Input, KeyId, KeyRecord, KeyRef, MemoryStore,
    Received, TrustLevel, TrustMessage, TrustStore,
};
use atm_store::{Durability, SqliteTrustStore};
use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn own() -> KeyRef {
    KeyRef::new(
        "alice@example.org".parse().unwrap(),
        KeyId::from_bytes([1; 32]).unwrap(),
    )
}

fn own_device() -> KeyRef {
    KeyRef::new(
        "alice@example.org".parse().unwrap(),
        KeyId::from_bytes([2; 32]).unwrap(),
    )
}

fn contact_key(c: usize, d: usize) -> KeyRef {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&(c as u64).to_le_bytes());
    bytes[8] = d as u8;
    bytes[9] = 0xC0;
    KeyRef::new(
        format!("contact{c}@example.net").parse().unwrap(),
        KeyId::from_bytes(bytes).unwrap(),
    )
}

/// The store: the own device authenticated, `contacts` × 3 keys known.
fn fill<S: TrustStore>(store: &mut S, contacts: usize) {
    let mut changes = Changeset::default();
    changes.keys.push((
        own_device(),
        KeyRecord {
            level: TrustLevel::Authenticated,
            time: Some(DateTime::UNIX_EPOCH),
        },
    ));
    for c in 0..contacts {
        for d in 0..3 {
            changes.keys.push((
                contact_key(c, d),
                KeyRecord {
                    level: TrustLevel::AutomaticallyTrusted,
                    time: None,
                },
            ));
        }
    }
    store.commit(&changes).unwrap();
}

/// A trust message from the own device deciding on the keys of `contacts`.
fn message(contacts: std::ops::Range<usize>, trust: bool, time: DateTime<Utc>) -> Input {
    let tag = if trust { "trust" } else { "distrust" };
    let mut xml = String::from("<trust-message xmlns='urn:xmpp:tm:1' usage='urn:xmpp:atm:1' encryption='urn:xmpp:omemo:2'>");
    for c in contacts {
        xml.push_str(&format!("<key-owner jid='contact{c}@example.net'>"));
        for d in 0..3 {
            xml.push_str(&format!(
                "<{tag}>{}</{tag}>",
                contact_key(c, d).key.to_base64()
            ));
        }
        xml.push_str("</key-owner>");
    }
    xml.push_str("</trust-message>");
    let device = own_device();
    Input::Received(Received {
        sender: device.owner,
        sender_key: Some(device.key),
        time,
        stamp: time,
        message: TrustMessage::parse(&xml).unwrap(),
        decision_times: DecisionTimes::default(),
        co_recipients: vec![],
    })
}

static CLOCK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn config() -> Config {
    Config::new(own().owner, own().key)
}

/// Applies alternately a trust and a distrust message with newer and newer
/// times, so that every iteration changes every key.
fn bench_alternating<S: TrustStore>(
    engine: &mut Engine<S>,
    contacts: std::ops::Range<usize>,
    b: &mut criterion::Bencher<'_>,
) {
    let expected = contacts.len() * 3;
    let inputs = [
        message(contacts.clone(), true, DateTime::UNIX_EPOCH),
        message(contacts, false, DateTime::UNIX_EPOCH),
    ];
    b.iter(|| {
        // Criterion may call this routine several times: time only grows.
        let i = CLOCK.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as i64 + 1;
        let mut input = inputs[(i % 2) as usize].clone();
        let time = DateTime::UNIX_EPOCH + chrono::Duration::seconds(i);
        if let Input::Received(r) = &mut input {
            r.time = time;
            r.stamp = time;
        }
        let effects = engine.handle(input, time).unwrap();
        assert!(effects.len() >= expected, "{} effects", effects.len());
        effects
    });
}

fn three_thousand_keys(c: &mut Criterion) {
    let mut group = c.benchmark_group("trust message of 3000 keys");
    group.throughput(Throughput::Elements(3000));
    group.measurement_time(Duration::from_secs(8));
    let dir = tempfile::tempdir().unwrap();
    for durability in [Durability::Full, Durability::Normal] {
        let path = dir.path().join(format!("{durability:?}.sqlite"));
        let mut store =
            SqliteTrustStore::open_with(&path, &own().owner, "urn:xmpp:omemo:2", durability)
                .unwrap();
        fill(&mut store, 1000);
        let mut engine = Engine::new(config(), store);
        group.bench_function(format!("sqlite on disk, synchronous={durability:?}"), |b| {
            bench_alternating(&mut engine, 0..1000, b)
        });
    }
    let mut store = MemoryStore::new();
    fill(&mut store, 1000);
    let mut engine = Engine::new(config(), store);
    group.bench_function("memory", |b| bench_alternating(&mut engine, 0..1000, b));
    group.finish();
}

fn store_growth(c: &mut Criterion) {
    let mut group = c.benchmark_group("trust message of 3 keys, store of N keys");
    group.measurement_time(Duration::from_secs(5));
    let dir = tempfile::tempdir().unwrap();
    for contacts in [333, 3_333, 33_333] {
        let keys = contacts * 3 + 1;
        let path = dir.path().join(format!("{keys}.sqlite"));
        let mut store = SqliteTrustStore::open(&path, &own().owner, "urn:xmpp:omemo:2").unwrap();
        fill(&mut store, contacts);
        let mut engine = Engine::new(config(), store);
        let middle = contacts / 2;
        group.bench_with_input(BenchmarkId::new("sqlite on disk", keys), &keys, |b, _| {
            bench_alternating(&mut engine, middle..middle + 1, b)
        });
    }
    group.finish();
}

criterion_group!(benches, three_thousand_keys, store_growth);
criterion_main!(benches);
