//! The endpoint store: one unit of work commits OMEMO, trust and endpoint
//! rows together, or none of them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use atm_engine::{BareJid, Changeset, KeyId, KeyRecord, KeyRef, TrustLevel, TrustStore};
use atm_omemo::crypto::{Account, DeterministicRandom, DeviceAddress, Session, SessionStore};
use atm_store::{Durability, EndpointStore, StoreError};
use chrono::DateTime;
use common::break_pending_inserts;

fn alice() -> BareJid {
    "alice@example.org".parse().unwrap()
}

fn open(path: &std::path::Path) -> EndpointStore {
    EndpointStore::open(path, &alice(), "urn:xmpp:omemo:2", Durability::Normal).unwrap()
}

fn changes() -> Changeset {
    Changeset {
        keys: vec![(
            KeyRef::new(
                "bob@example.com".parse().unwrap(),
                KeyId::from_bytes([9; 32]).unwrap(),
            ),
            KeyRecord {
                level: TrustLevel::Authenticated,
                time: None,
            },
        )],
        ..Changeset::default()
    }
}

/// Writes a session, a pending message, a trust change and endpoint rows in
/// one unit; returns the peer.
fn unit(store: &mut EndpointStore) -> DeviceAddress {
    let mut rng = DeterministicRandom::new([1; 32]);
    let own = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let remote = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let session = Session::initiate(own.identity(), &remote.bundle(), &mut rng).unwrap();
    let peer = DeviceAddress {
        jid: "bob@example.com".parse().unwrap(),
        device_id: 7,
    };
    store.begin().unwrap();
    assert!(store.in_unit());
    store.sessions().store_account(&own).unwrap();
    let pending = store
        .sessions()
        .commit_received(&peer, &session, None, b"x")
        .unwrap();
    store.trust().commit(&changes()).unwrap();
    store.sessions().acknowledge(pending).unwrap();
    store
        .mark_processed(&["sid:1".to_owned()], DateTime::UNIX_EPOCH)
        .unwrap();
    store.set_setting("archive", "42").unwrap();
    store.push_outbox("<message/>").unwrap();
    peer
}

#[test]
fn a_rolled_back_unit_leaves_nothing_in_the_file_nor_in_memory() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("endpoint.sqlite");
    let mut store = open(&path);
    let peer = unit(&mut store);
    let key = changes().keys[0].0.clone();
    assert!(store.trust().key(&key).unwrap().is_some());
    store.rollback().unwrap();
    assert!(!store.in_unit());
    assert_eq!(
        store.trust().key(&key).unwrap(),
        None,
        "memory rows reloaded"
    );
    assert!(store.sessions().load_session(&peer).unwrap().is_none());
    assert!(store.sessions().load_account().unwrap().is_none());
    assert!(!store.any_processed(&["sid:1".to_owned()]).unwrap());
    assert_eq!(store.setting("archive").unwrap(), None);
    assert!(store.outbox_after(0).unwrap().is_empty());
}

#[test]
fn a_dropped_unit_is_a_crash_and_a_committed_one_survives() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("endpoint.sqlite");
    let key = changes().keys[0].0.clone();
    {
        let mut store = open(&path);
        unit(&mut store);
        // dropped without commit
    }
    let mut store = open(&path);
    assert_eq!(store.trust().key(&key).unwrap(), None);
    let peer = unit(&mut store);
    store.commit().unwrap();
    drop(store);
    let mut store = open(&path);
    assert!(store.trust().key(&key).unwrap().is_some());
    assert!(store.sessions().load_session(&peer).unwrap().is_some());
    assert!(store.sessions().pending_messages().unwrap().is_empty());
    assert!(store.any_processed(&["sid:1".to_owned()]).unwrap());
    assert_eq!(store.setting("archive").unwrap().as_deref(), Some("42"));
    assert_eq!(store.outbox_after(0).unwrap().len(), 1);
    store.check_integrity().unwrap();
}

#[test]
fn devices_contacts_and_own_device() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(&directory.path().join("endpoint.sqlite"));
    assert_eq!(store.own_device().unwrap(), None);
    store.set_own_device(&alice(), 1234).unwrap();
    assert_eq!(store.own_device().unwrap(), Some((alice(), 1234)));
    assert!(
        store.set_own_device(&alice(), 99).is_err(),
        "one device per file"
    );
    let bob: BareJid = "bob@example.com".parse().unwrap();
    assert_eq!(store.set_device_list(&bob, &[5, 6]).unwrap(), vec![5, 6]);
    store.set_bundle(&bob, 5, &[3; 32], "<bundle/>").unwrap();
    assert_eq!(store.set_device_list(&bob, &[5, 7]).unwrap(), vec![7]);
    let devices = store.devices_of(&bob).unwrap();
    assert_eq!(devices.len(), 3);
    assert!(!devices[1].active, "device 6 left the list");
    let found = store.device_with_identity(&bob, &[3; 32]).unwrap().unwrap();
    assert_eq!(found.device_id, 5);
    assert!(store
        .device_with_identity(&alice(), &[3; 32])
        .unwrap()
        .is_none());
    assert!(store.add_contact(&bob).unwrap());
    assert!(!store.add_contact(&bob).unwrap());
    assert_eq!(store.contacts().unwrap(), vec![bob]);
}

#[test]
fn a_newer_file_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("endpoint.sqlite");
    drop(open(&path));
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let error =
        EndpointStore::open(&path, &alice(), "urn:xmpp:omemo:2", Durability::Full).unwrap_err();
    assert!(
        matches!(error, StoreError::NewerSchema { found: 99, .. }),
        "{error}"
    );
}

#[test]
fn old_deduplication_keys_are_pruned() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(&directory.path().join("endpoint.sqlite"));
    let day = chrono::Duration::days(1);
    let start = DateTime::UNIX_EPOCH + day * 1000;
    store.mark_processed(&["old".to_owned()], start).unwrap();
    store
        .mark_processed(&["new".to_owned()], start + day * 40)
        .unwrap();
    assert_eq!(store.prune_processed(start + day * 10).unwrap(), 1);
    assert!(!store.any_processed(&["old".to_owned()]).unwrap());
    assert!(store.any_processed(&["new".to_owned()]).unwrap());
    assert_eq!(store.processed_count().unwrap(), 1);
}

/// The account the store reads now, as bytes.
fn account_bytes(store: &mut EndpointStore) -> zeroize::Zeroizing<Vec<u8>> {
    store.sessions().load_account().unwrap().unwrap().to_bytes()
}

#[test]
fn the_account_after_a_rollback_or_a_failed_savepoint_is_the_stored_one() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("endpoint.sqlite");
    let mut rng = DeterministicRandom::new([2; 32]);
    let stored = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let mut store = open(&path);
    store.sessions().store_account(&stored).unwrap();

    // A unit reads the account, writes a changed one, reads that back, and
    // is rolled back: the next read gives the stored account again.
    store.begin().unwrap();
    let mut changed = store.sessions().load_account().unwrap().unwrap();
    assert_eq!(changed.to_bytes(), stored.to_bytes());
    assert!(changed.remove_prekey(1));
    changed.replenish_prekeys(&mut rng).unwrap();
    store.sessions().store_account(&changed).unwrap();
    assert_eq!(account_bytes(&mut store), changed.to_bytes());
    store.rollback().unwrap();
    assert_eq!(account_bytes(&mut store), stored.to_bytes());

    // `commit_received` writes the changed account, then fails: its
    // savepoint is rolled back inside the unit, and so is the account.
    let remote = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let session = Session::initiate(remote.identity(), &stored.bundle(), &mut rng).unwrap();
    let peer = DeviceAddress {
        jid: "bob@example.com".parse().unwrap(),
        device_id: 7,
    };
    break_pending_inserts(&path, true);
    store.begin().unwrap();
    assert!(store
        .sessions()
        .commit_received(&peer, &session, Some(&changed), b"x")
        .is_err());
    assert_eq!(account_bytes(&mut store), stored.to_bytes());
    store.commit().unwrap();
    drop(store);
    let mut store = open(&path);
    assert_eq!(account_bytes(&mut store), stored.to_bytes());
}

#[test]
fn an_account_written_through_another_connection_is_read_from_the_file() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("endpoint.sqlite");
    let mut rng = DeterministicRandom::new([3; 32]);
    let first = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let second = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let mut store = open(&path);
    store.sessions().store_account(&first).unwrap();
    assert_eq!(account_bytes(&mut store), first.to_bytes());
    open(&path).sessions().store_account(&second).unwrap();
    assert_eq!(account_bytes(&mut store), second.to_bytes());
}
