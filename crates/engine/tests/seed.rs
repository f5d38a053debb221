//! The seed walkthrough (Alice: A1 notebook, A2 tablet, A3 smartphone; Bob: B1
//! notebook, B2 smartphone): 8 manual authentications, 20 in all.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use atm_engine::Propagation;
use common::Net;

const ENDPOINTS: [(&str, &str); 5] = [
    ("A1", "alice@example.org"),
    ("A2", "alice@example.org"),
    ("A3", "alice@example.org"),
    ("B1", "bob@example.com"),
    ("B2", "bob@example.com"),
];

fn walkthrough(propagation: Propagation) -> Net {
    let mut net = Net::new(&ENDPOINTS, propagation);
    net.auth("A1", &["A3"]);
    net.auth("A2", &["A3"]);
    net.auth("A3", &["A1"]);
    net.auth("A3", &["A2"]);
    net.auth("B1", &["B2"]);
    net.auth("B2", &["B1"]);
    net.auth("B2", &["A3"]);
    net.auth("A3", &["B2"]);
    net
}

#[test]
fn complete_propagation_reaches_all_20_with_3_messages() {
    let mut net = walkthrough(Propagation::Complete);
    assert_eq!(net.authenticated_pairs(), 20);
    assert_eq!(net.automatic_authentications(), 12);
    assert_eq!(net.sent.len(), 3, "{:#?}", net.sent);
}

#[test]
fn literal_xep_rules_reach_8_automatic_with_6_messages() {
    let mut net = walkthrough(Propagation::Xep);
    assert_eq!(net.automatic_authentications(), 8);
    assert_eq!(net.authenticated_pairs(), 16);
    assert_eq!(net.sent.len(), 6);
    // What nothing tells: Alice's notebook and tablet about Bob's notebook, and back.
    for (at, of) in [("A1", "B1"), ("A2", "B1"), ("B1", "A1"), ("B1", "A2")] {
        assert_ne!(
            net.level(at, of),
            Some(atm_engine::TrustLevel::Authenticated),
            "{at} {of}"
        );
    }
}
