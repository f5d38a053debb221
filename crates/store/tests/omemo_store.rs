//! The SQLite OMEMO session store: round trips, atomic "decrypt, persist, act",
//! restarts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use atm_omemo::crypto::{
    receive_and_commit, Account, DecryptError, DeterministicRandom, DeviceAddress, ReceiveError,
    Session, SessionStore, PREKEY_TARGET,
};
use atm_store::{SqliteSessionStore, StoreError};
use chrono::DateTime;
use common::break_pending_inserts;

fn address(jid: &str, device_id: u32) -> DeviceAddress {
    DeviceAddress {
        jid: jid::BareJid::new(jid).unwrap(),
        device_id,
    }
}

#[test]
fn round_trip_of_every_record_across_reopen() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("omemo.sqlite");
    let mut rng = DeterministicRandom::new([1; 32]);
    let ours = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let theirs = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let session = Session::initiate(ours.identity(), &theirs.bundle(), &mut rng).unwrap();
    let peer = address("bob@example.org", 4_294_967_295);
    let other = address("carol@example.org", 0);
    let pending_id;
    {
        let mut store = SqliteSessionStore::open(&path).unwrap();
        assert!(store.load_account().unwrap().is_none());
        assert!(store.load_session(&peer).unwrap().is_none());
        store.store_account(&ours).unwrap();
        store.store_session(&peer, &session).unwrap();
        store.store_session(&other, &session).unwrap();
        store.delete_session(&other).unwrap();
        pending_id = store
            .commit_received(&peer, &session, None, b"\x00plain\xff")
            .unwrap();
    }
    let mut store = SqliteSessionStore::open(&path).unwrap();
    assert_eq!(
        store.load_account().unwrap().unwrap().to_bytes(),
        ours.to_bytes()
    );
    assert_eq!(
        store.load_session(&peer).unwrap().unwrap().to_bytes(),
        session.to_bytes()
    );
    assert!(store.load_session(&other).unwrap().is_none());
    let pending = store.pending_messages().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, pending_id);
    assert_eq!(pending[0].sender, peer);
    assert_eq!(pending[0].sender_identity, theirs.identity().public());
    assert_eq!(pending[0].data.as_slice(), b"\x00plain\xff");
    store.acknowledge(pending_id).unwrap();
    store.acknowledge(pending_id).unwrap();
    store.acknowledge(u64::MAX).unwrap();
    assert!(store.pending_messages().unwrap().is_empty());
    // An acknowledged id is never handed out again.
    let next = store.commit_received(&peer, &session, None, b"x").unwrap();
    assert!(next > pending_id);
    store.database().check_integrity().unwrap();
}

#[test]
fn decrypt_persist_act_survives_crashes_and_never_accepts_twice() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("bob.sqlite");
    let mut rng = DeterministicRandom::new([30; 32]);
    let alice_account = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let bob_account = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let alice = address("alice@example.org", 1);
    SqliteSessionStore::open(&path)
        .unwrap()
        .store_account(&bob_account)
        .unwrap();
    let mut session =
        Session::initiate(alice_account.identity(), &bob_account.bundle(), &mut rng).unwrap();
    let message = session.encrypt(b"key material one");
    let used_prekey = session.key_exchange().prekey_id;

    // Step 2 fails half way (after the session and account rows were written):
    // the transaction leaves nothing.
    break_pending_inserts(&path, true);
    {
        let mut store = SqliteSessionStore::open(&path).unwrap();
        let error = receive_and_commit(&mut store, &alice, None, &message.bytes, true, &mut rng)
            .unwrap_err();
        assert!(
            matches!(error, ReceiveError::Store(StoreError::Sqlite { .. })),
            "{error:?}"
        );
        assert!(store.load_session(&alice).unwrap().is_none());
        assert!(store.pending_messages().unwrap().is_empty());
        assert_eq!(
            store.load_account().unwrap().unwrap().to_bytes(),
            bob_account.to_bytes()
        );
    }
    break_pending_inserts(&path, false);

    // Redelivered after the restart: decrypts and commits.
    {
        let mut store = SqliteSessionStore::open(&path).unwrap();
        let committed =
            receive_and_commit(&mut store, &alice, None, &message.bytes, true, &mut rng).unwrap();
        assert!(committed.new_session && committed.bundle_changed);
        assert_eq!(committed.pending.data.as_slice(), b"key material one");
        // Crash before acting: the store is dropped without acknowledging.
    }

    let mut store = SqliteSessionStore::open(&path).unwrap();
    let account = store.load_account().unwrap().unwrap();
    assert_eq!(account.prekey_count(), PREKEY_TARGET);
    assert!(!account.bundle().prekeys.contains_key(&used_prekey));
    let pending = store.pending_messages().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].data.as_slice(), b"key material one");
    assert_eq!(
        pending[0].sender_identity,
        alice_account.identity().public()
    );

    // The same stanza redelivered is refused by the persisted ratchet.
    let replay =
        receive_and_commit(&mut store, &alice, None, &message.bytes, true, &mut rng).unwrap_err();
    assert!(
        matches!(
            replay,
            ReceiveError::Decrypt(DecryptError::Duplicate { .. })
        ),
        "{replay:?}"
    );
    assert_eq!(store.pending_messages().unwrap().len(), 1);

    // Act, acknowledge; the conversation continues from the persisted state.
    store.acknowledge(pending[0].id).unwrap();
    drop(store);
    let mut store = SqliteSessionStore::open(&path).unwrap();
    assert!(store.pending_messages().unwrap().is_empty());
    let second = session.encrypt(b"key material two");
    let committed =
        receive_and_commit(&mut store, &alice, None, &second.bytes, true, &mut rng).unwrap();
    assert!(!committed.new_session && !committed.bundle_changed);
    assert_eq!(committed.pending.data.as_slice(), b"key material two");
}

#[test]
fn unreadable_state_is_an_error_not_a_reset() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("omemo.sqlite");
    let peer = address("bob@example.org", 7);
    drop(SqliteSessionStore::open(&path).unwrap());
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute_batch(
            "INSERT INTO omemo_account (id, state) VALUES (1, x'ff00');
             INSERT INTO omemo_session (jid, device_id, state) VALUES ('bob@example.org', 7, x'01');
             INSERT INTO omemo_pending_message (jid, device_id, sender_identity, data)
                 VALUES ('not a jid@@', 1, zeroblob(32), x'');",
        )
        .unwrap();
    drop(connection);
    let store = SqliteSessionStore::open(&path).unwrap();
    assert!(matches!(
        store.load_account(),
        Err(StoreError::OmemoState { .. })
    ));
    assert!(matches!(
        store.load_session(&peer),
        Err(StoreError::OmemoState { .. })
    ));
    let error = store.pending_messages().unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::InvalidRecord {
                table: "omemo_pending_message",
                ..
            }
        ),
        "{error}"
    );
}
