//! The user's commands and the state directory: typed errors for every wrong
//! input, nothing changed by a refused command; PEP publication quirks;
//! devices appearing; prekeys refilled.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use atm_client::{ns, CommandError, Endpoint, Event, OpenError, OsRandom};
use atm_engine::TrustLevel;
use atm_store::StoreError;
use common::{bare, Router};

#[test]
fn wrong_inputs_give_typed_errors_and_change_nothing() {
    let mut router = Router::new();
    let a1 = router.add("A1", "alice@example.org");
    let b1 = router.add("B1", "bob@example.com");
    router.all_contacts();
    router.start_all();
    let b1_fingerprint = router.nodes[b1].core().fingerprint();
    let own_fingerprint = router.nodes[a1].core().fingerprint();
    let now = router.tick();
    let core = router.nodes[a1].core();
    let keys = core.keys().unwrap();
    let status = core.status().unwrap();
    let unknown = "ab".repeat(32);
    type Check = fn(&CommandError) -> bool;
    let cases: Vec<(Result<_, CommandError>, Check)> = vec![
        (core.authenticate("bob@example.com", "not hex", now), |e| {
            matches!(e, CommandError::MalformedFingerprint { .. })
        }),
        (core.authenticate("bob@example.com", &unknown, now), |e| {
            matches!(e, CommandError::UnknownKey { .. })
        }),
        // Bob's key under another owner is not a known key.
        (
            core.distrust("carol@example.net", &b1_fingerprint, now),
            |e| matches!(e, CommandError::UnknownKey { .. }),
        ),
        (
            core.distrust("alice@example.org", &own_fingerprint, now),
            |e| matches!(e, CommandError::OwnKey(_)),
        ),
        (core.authenticate("not a jid@", &b1_fingerprint, now), |e| {
            matches!(e, CommandError::InvalidJid { .. })
        }),
        (core.scan("https://example.com/?trust", now), |e| {
            matches!(e, CommandError::MalformedUri(_))
        }),
        (
            core.scan(
                &format!(
                    "xmpp:bob@example.com?trust-message;encryption=urn:xmpp:otr:0;trust={unknown}"
                ),
                now,
            ),
            |e| matches!(e, CommandError::OtherEncryption { .. }),
        ),
        (
            core.scan(
                "xmpp:bob@example.com?trust-message;encryption=urn:xmpp:omemo:2",
                now,
            ),
            |e| matches!(e, CommandError::MalformedUri(_)),
        ),
    ];
    for (index, (result, check)) in cases.into_iter().enumerate() {
        let error = result.unwrap_err();
        assert!(check(&error), "case {index}: {error}");
        assert!(!error.to_string().is_empty());
    }
    let error = core.send_chat("carol@example.net", "hi", now).unwrap_err();
    assert!(matches!(error, CommandError::NoTrustedDevice(_)), "{error}");
    assert_eq!(core.keys().unwrap(), keys);
    assert_eq!(core.status().unwrap(), status);
    assert!(core.poll_transmit().unwrap().is_none(), "nothing queued");
}

#[test]
fn keys_status_uri_and_manual_decisions() {
    let mut router = Router::new();
    let a1 = router.add("A1", "alice@example.org");
    let b1 = router.add("B1", "bob@example.com");
    router.all_contacts();
    router.start_all();
    let b1_key = router.nodes[b1].core().own_key().clone();
    let b1_device = router.nodes[b1].core().device_id();
    let uri = router.nodes[a1].core().uri();
    assert_eq!(
        uri,
        format!(
            "xmpp:alice@example.org?trust-message;encryption=urn:xmpp:omemo:2;trust={}",
            router.nodes[a1].core().fingerprint()
        )
    );
    let keys = router.nodes[a1].core().keys().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].key, b1_key);
    assert_eq!(keys[0].device_ids, vec![b1_device]);
    assert_eq!(keys[0].level, TrustLevel::AutomaticallyTrusted);
    assert_eq!(keys[0].since, None);
    // Fingerprints may be written in upper case with separators.
    let fingerprint = keys[0].fingerprint.to_uppercase();
    let spaced: String = fingerprint
        .as_bytes()
        .chunks(8)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    let now = router.tick();
    let decided = router.nodes[a1]
        .core()
        .authenticate("bob@example.com", &spaced, now)
        .unwrap();
    assert_eq!(decided.changes.len(), 1);
    let keys = router.nodes[a1].core().keys().unwrap();
    assert_eq!(keys[0].level, TrustLevel::Authenticated);
    assert_eq!(keys[0].since, Some(now));
    let status = router.nodes[a1].core().status().unwrap();
    assert_eq!(
        status.keys_by_level.get(&TrustLevel::Authenticated),
        Some(&1)
    );
    assert_eq!(status.contacts, vec![bare("bob@example.com")]);
    let now = router.tick();
    router.nodes[a1]
        .core()
        .distrust("bob@example.com", &keys[0].fingerprint, now)
        .unwrap();
    assert_eq!(router.level(a1, b1), Some(TrustLevel::ManuallyDistrusted));
    let now = router.tick();
    router.nodes[a1]
        .core()
        .set_policy(atm_engine::Policy::Manual, now)
        .unwrap();
    assert_eq!(
        router.nodes[a1].core().status().unwrap().policy,
        atm_engine::Policy::Manual
    );
}

#[test]
fn state_directories_of_newer_format_or_other_accounts_are_refused() {
    let directory = tempfile::tempdir().unwrap();
    let now = "2026-12-01T10:00:00Z".parse().unwrap();
    let alice = bare("alice@example.org");
    let device_id;
    let key;
    {
        let core = Endpoint::open(directory.path(), &alice, now, Box::new(OsRandom)).unwrap();
        device_id = core.device_id();
        key = core.own_key().clone();
    }
    // Reopening keeps the device.
    let core = Endpoint::open(directory.path(), &alice, now, Box::new(OsRandom)).unwrap();
    assert_eq!((core.device_id(), core.own_key()), (device_id, &key));
    drop(core);
    let error = Endpoint::open(
        directory.path(),
        &bare("bob@example.com"),
        now,
        Box::new(OsRandom),
    )
    .unwrap_err();
    assert!(matches!(error, OpenError::OtherAccount { .. }), "{error}");
    let database = directory.path().join(atm_client::DATABASE_FILE);
    rusqlite::Connection::open(&database)
        .unwrap()
        .execute_batch("PRAGMA user_version = 1000")
        .unwrap();
    let before = std::fs::read(&database).unwrap();
    let error = Endpoint::open(directory.path(), &alice, now, Box::new(OsRandom)).unwrap_err();
    assert!(
        matches!(
            error,
            OpenError::Store(StoreError::NewerSchema { found: 1000, .. })
        ),
        "{error}"
    );
    assert!(error.to_string().contains("newer"), "{error}");
    assert_eq!(std::fs::read(&database).unwrap(), before, "left untouched");
}

fn publishes_with_max_items(router: &mut Router, node: usize) -> Vec<bool> {
    router
        .take_transmits(node)
        .iter()
        .filter(|s| {
            s.get_child("pubsub", ns::NS_PUBSUB)
                .is_some_and(|p| p.get_child("publish", ns::NS_PUBSUB).is_some())
        })
        .map(|s| String::from(s).contains("pubsub#max_items"))
        .collect()
}

#[test]
fn a_server_refusing_max_items_gets_publications_without_it() {
    let mut router = Router::new();
    router.refuse_max_items = true;
    let a1 = router.add("A1", "alice@example.org");
    let b1 = router.add("B1", "bob@example.com");
    router.all_contacts();
    router.start_all();
    // Despite the refusal, bundles and device lists are published and the
    // devices learned each other.
    assert_eq!(router.level(a1, b1), Some(TrustLevel::AutomaticallyTrusted));
    assert_eq!(router.level(b1, a1), Some(TrustLevel::AutomaticallyTrusted));
    assert!(!router.nodes[a1]
        .events
        .iter()
        .any(|e| matches!(e, Event::PublishFailed { .. })));
    // After a restart the quirk is remembered: no max_items any more.
    router.kill(a1);
    router.restart(a1);
    assert_eq!(publishes_with_max_items(&mut router, a1), vec![false]);
    // A server that accepts it (Prosody) gets it.
    let mut prosody = Router::new();
    let p1 = prosody.add("P1", "alice@example.org");
    prosody.connect(p1);
    assert_eq!(publishes_with_max_items(&mut prosody, p1), vec![true]);
}

#[test]
fn a_device_decided_on_before_it_appears_is_authenticated_when_it_does() {
    let mut router = Router::new();
    let a1 = router.add("A1", "alice@example.org");
    let a2 = router.add("A2", "alice@example.org");
    router.connect(a1);
    router.pump();
    // A1 scans the URI of a device the network has not seen yet.
    let uri = router.nodes[a2].core().uri();
    let now = router.tick();
    router.nodes[a1].core().scan(&uri, now).unwrap();
    router.connect(a2);
    router.pump();
    let a2_id = router.nodes[a2].core().device_id();
    assert!(router.nodes[a1].events.iter().any(|e| matches!(
        e,
        Event::DeviceAppeared { device_id, level: TrustLevel::Authenticated, authenticated: true, .. }
            if *device_id == a2_id
    )), "{:?}", router.nodes[a1].events);
    // A2, on the other hand, learned A1 without a decision.
    assert!(router.nodes[a2].events.iter().any(|e| matches!(
        e,
        Event::DeviceAppeared {
            authenticated: false,
            level: TrustLevel::AutomaticallyTrusted,
            ..
        }
    )));
}

#[test]
fn a_used_prekey_is_replaced_and_the_bundle_republished() {
    let mut router = Router::new();
    let a1 = router.add("A1", "alice@example.org");
    let b1 = router.add("B1", "bob@example.com");
    router.all_contacts();
    router.start_all();
    let bundle_of = |router: &Router| {
        let a1_id = router.nodes[a1]
            .core
            .as_ref()
            .unwrap()
            .device_id()
            .to_string();
        router.pep[&(bare("alice@example.org"), ns::NS_BUNDLES.to_owned())]
            .iter()
            .find(|(id, _)| *id == a1_id)
            .map(|(_, b)| String::from(b))
            .unwrap()
    };
    let before = bundle_of(&router);
    let now = router.tick();
    router.nodes[b1]
        .core()
        .send_chat("alice@example.org", "first contact", now)
        .unwrap();
    router.pump();
    let after = bundle_of(&router);
    assert_ne!(
        before, after,
        "the bundle was republished with a fresh prekey"
    );
    assert_eq!(
        before.matches("<pk ").count(),
        after.matches("<pk ").count()
    );
    // Bob's device followed the republication (bundle notification): its
    // stored copy is the new bundle, so a later session never picks the
    // used prekey.
    let a1_id = router.nodes[a1].core().device_id();
    let database = router.nodes[b1].dir.join(atm_client::DATABASE_FILE);
    let stored: String = rusqlite::Connection::open(database)
        .unwrap()
        .query_row(
            "SELECT bundle FROM endpoint_device WHERE jid = 'alice@example.org' AND device_id = ?1",
            [i64::from(a1_id)],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(stored, after);
}

#[test]
fn the_signed_prekey_is_rotated_weekly_and_sessions_still_start() {
    let mut router = Router::new();
    let a1 = router.add("A1", "alice@example.org");
    let b1 = router.add("B1", "bob@example.com");
    router.all_contacts();
    router.start_all();
    let now = router.tick();
    assert!(!router.nodes[a1].core().maintain(now).unwrap());
    assert!(router.take_transmits(a1).is_empty());
    router.now += atm_client::SIGNED_PREKEY_PERIOD;
    let now = router.tick();
    assert!(router.nodes[a1].core().maintain(now).unwrap());
    router.pump();
    let a1_id = router.nodes[a1].core().device_id().to_string();
    let bundle = router.pep[&(bare("alice@example.org"), ns::NS_BUNDLES.to_owned())]
        .iter()
        .find(|(id, _)| *id == a1_id)
        .map(|(_, b)| String::from(b))
        .unwrap();
    assert!(bundle.contains("<spk id='2'"), "{bundle}");
    // Bob builds a session from the new bundle (he followed it).
    let now = router.tick();
    router.nodes[b1]
        .core()
        .send_chat("alice@example.org", "after rotation", now)
        .unwrap();
    router.pump();
    assert!(router.nodes[a1]
        .events
        .iter()
        .any(|e| matches!(e, Event::Chat { text, .. } if text == "after rotation")));
}
