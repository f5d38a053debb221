//! Faults on a live network (issue 11, item 8): the server restarted in the
//! middle of a scenario, and a device offline across several trust
//! messages. Each ends converged with the sim transport's trust levels and
//! counters: nothing lost, nothing applied twice. The servers must start:
//! a test fails, it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use atm_live::{LiveOptions, ServerChoice};
use atm_xmpp_server::Kind;
use common::{decision_counts, examples_dir, load, play, sim_json, trust_maps};

fn assert_like_sim(file: &str, options: &LiveOptions) -> atm_live::LiveOutcome {
    let scenario = load(&examples_dir().join(file));
    let live = play(&scenario, options);
    let sim = sim_json(&scenario);
    assert!(live.ok, "{file}: {}\n{}", live.json["failures"], live.text);
    assert_eq!(
        trust_maps(&live.json),
        trust_maps(&sim),
        "{file}\n{}",
        live.text
    );
    // Every decision applied once: the simulator's decision counters.
    assert_eq!(
        decision_counts(&live.json),
        decision_counts(&sim),
        "{file}\n{}",
        live.text
    );
    eprintln!("{file}: {:?}", live.elapsed);
    live
}

#[test]
fn the_server_restarts_twice_in_the_seed_walkthrough_with_messages_in_flight() {
    let mut options = LiveOptions::new(ServerChoice::Private(Kind::Prosody));
    // After A3 scans A1 (A3's trust messages to A1 and A2) and after B2
    // scans A3 (B2's trust messages about A3 to B1): restarted before they
    // settle.
    options.restart_server_after = vec![2, 7];
    let live = assert_like_sim("seed-walkthrough-scans.json", &options);
    assert_eq!(
        live.text.matches("the server restarts").count(),
        2,
        "{}",
        live.text
    );
}

#[test]
fn the_server_restarts_while_a_device_is_offline() {
    // Step 5 (B2 authenticates B1) is played while A3 is offline; the
    // server's offline storage and archive must survive the restart.
    let mut options = LiveOptions::new(ServerChoice::Private(Kind::Prosody));
    options.restart_server_after = vec![5];
    assert_like_sim("offline-across-trust-messages.json", &options);
}

#[test]
fn a_device_offline_across_several_trust_messages_converges_once_on_prosody() {
    let options = LiveOptions::new(ServerChoice::Private(Kind::Prosody));
    let live = assert_like_sim("offline-across-trust-messages.json", &options);
    // Three trust messages waited for A3 (#4, #5, #6), each read exactly
    // once when it came back (step 11). A relay of A2's distrust by A1 may
    // wait too, or be sent after A3's return: the network's interleaving
    // decides, so more messages may be listed, but none twice.
    let back = live.text.split("\n[11] ").nth(1).unwrap();
    let back = back.split("\n[12] ").next().unwrap();
    let received: Vec<&str> = back
        .lines()
        .filter(|l| l.trim_start().starts_with("A3 receives message"))
        .map(str::trim)
        .collect();
    for waited in ["#4", "#5", "#6"] {
        let line = format!("A3 receives message {waited}");
        assert_eq!(
            received.iter().filter(|l| **l == line).count(),
            1,
            "{line}, once:\n{}",
            live.text
        );
    }
    let mut once = received.clone();
    once.sort_unstable();
    once.dedup();
    assert_eq!(once.len(), received.len(), "{}", live.text);
}

#[test]
fn a_device_offline_across_several_trust_messages_converges_once_on_ejabberd() {
    let options = LiveOptions::new(ServerChoice::Private(Kind::Ejabberd));
    assert_like_sim("offline-across-trust-messages.json", &options);
}
