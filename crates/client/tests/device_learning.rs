//! `DeviceLearning::OnRequest` (the scenario runner's mode: a device named
//! in a device list is learned only when asked) and the trust-traffic log of
//! `Options::record_traffic`, on the in-memory router. The default
//! (`Automatic`) is unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use atm_client::{DeviceLearning, Endpoint, Options, OsRandom, Traffic};
use atm_engine::TrustLevel;
use atm_store::Durability;
use common::Router;

/// Reopens `name`'s core in on-request mode, logging trust traffic.
fn on_request(router: &mut Router, node: usize) {
    router.nodes[node].core = None;
    let (name, jid) = (
        router.nodes[node].name.clone(),
        router.nodes[node].core_jid.clone(),
    );
    let core = Endpoint::open_with(
        router.directory.path().join(name),
        &jid,
        router.now,
        Box::new(OsRandom),
        Options {
            durability: Durability::Normal,
            device_learning: DeviceLearning::OnRequest,
            record_traffic: true,
            ..Options::default()
        },
    )
    .unwrap();
    router.nodes[node].core = Some(core);
}

#[test]
fn on_request_learns_a_device_only_when_asked_and_the_default_at_once() {
    let mut router = Router::new();
    let a1 = router.add("A1", "alice@example.org");
    let b1 = router.add("B1", "bob@example.com");
    on_request(&mut router, b1);
    router.all_contacts();
    router.start_all();
    router.pump();
    // The default learns B1 from its device list; B1 learns nothing.
    assert_eq!(router.level(a1, b1), Some(TrustLevel::AutomaticallyTrusted));
    assert_eq!(router.level(b1, a1), None);
    // A new device of Alice's: its list is published and notified; B1
    // still learns nothing, A1 learns it.
    let a2 = router.add("A2", "alice@example.org");
    router.nodes[a2]
        .core()
        .add_contact(&common::bare("bob@example.com"))
        .unwrap();
    router.connect(a2);
    router.pump();
    assert_eq!(router.level(a1, a2), Some(TrustLevel::AutomaticallyTrusted));
    assert_eq!(router.level(b1, a2), None);
    assert_eq!(router.nodes[b1].core().pending_requests(), 0);
    // Asked for A1's device, B1 learns exactly that key.
    let (alice, a1_device) = (
        common::bare("alice@example.org"),
        router.nodes[a1].core().device_id(),
    );
    router.nodes[b1].core().learn_device(&alice, a1_device);
    assert_eq!(router.nodes[b1].core().pending_requests(), 1);
    router.pump();
    assert_eq!(router.nodes[b1].core().pending_requests(), 0);
    assert_eq!(router.level(b1, a1), Some(TrustLevel::AutomaticallyTrusted));
    assert_eq!(router.level(b1, a2), None);
    // A republished bundle of a device B1 never learned teaches nothing
    // either (A2 uses a prekey of its bundle when A1 writes to it first).
    router.scan(a1, a2);
    router.pump();
    assert_eq!(router.level(b1, a2), None);
}

#[test]
fn the_traffic_log_pairs_every_trust_message_sent_with_its_arrivals() {
    let mut router = Router::new();
    let a1 = router.add("A1", "alice@example.org");
    let a2 = router.add("A2", "alice@example.org");
    let b1 = router.add("B1", "bob@example.com");
    for node in [a1, a2, b1] {
        on_request(&mut router, node);
    }
    router.all_contacts();
    router.start_all();
    router.pump();
    for (at, of) in [(a1, a2), (a1, b1), (b1, a1), (a2, a1)] {
        let (jid, device) = (
            router.nodes[of].core_jid.clone(),
            router.nodes[of].core().device_id(),
        );
        router.nodes[at].core().learn_device(&jid, device);
    }
    router.pump();
    router.scan(a1, a2);
    router.scan(a2, a1);
    router.scan(a1, b1);
    router.scan(b1, a1);
    router.pump();
    let logs: Vec<Vec<Traffic>> = (0..3)
        .map(|n| router.nodes[n].core().take_traffic())
        .collect();
    let sent: Vec<(usize, &Traffic)> = logs
        .iter()
        .enumerate()
        .flat_map(|(n, log)| log.iter().map(move |t| (n, t)))
        .filter(|(_, t)| matches!(t, Traffic::Sent { .. }))
        .collect();
    assert!(!sent.is_empty(), "{logs:?}");
    let mut arrivals = 0;
    for (from, traffic) in &sent {
        let Traffic::Sent {
            id,
            recipients,
            xml,
            ..
        } = traffic
        else {
            unreachable!()
        };
        assert!(xml.contains("<trust-message"), "{xml}");
        for key in recipients {
            let to = (0..3)
                .find(|&n| router.nodes[n].core().own_key() == &key.key)
                .unwrap();
            let sender = router.nodes[*from].core_jid.clone();
            let found = logs[to].iter().filter(|t| {
                matches!(t, Traffic::Arrived { from, id: Some(i), trust_message: true }
                    if *from == sender && i == id)
            });
            assert_eq!(found.count(), 1, "message {id} at node {to}");
            arrivals += 1;
        }
    }
    assert!(arrivals >= sent.len());
    // Taken: the log is empty now.
    assert!(router.nodes[a1].core().take_traffic().is_empty());
}
