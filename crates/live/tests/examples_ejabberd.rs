//! Every example scenario without replay/inject/per-account keys, played
//! over XMPP on a private ejabberd, ends with the sim transport's trust
//! levels and counters. The server must start: it fails, never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

#[test]
fn every_playable_example_matches_the_sim_transport_on_ejabberd() {
    common::every_example_matches_sim(atm_xmpp_server::Kind::Ejabberd);
}
