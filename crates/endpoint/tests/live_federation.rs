//! Alice on one private Prosody (example.org), Bob on another
//! (example.com), federated over s2s on loopback: the seed walkthrough
//! crosses servers. The servers must start; this is never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::Instant;

use atm_xmpp_server::Federation;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_walkthrough_across_two_federated_prosody_servers() {
    let started = Instant::now();
    let federation = tokio::task::spawn_blocking(Federation::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the two federated Prosody servers did not start: {e}"));
    let org = federation.server("example.org").unwrap();
    let com = federation.server("example.com").unwrap();
    org.register("alice", "example.org", common::PASSWORD)
        .await
        .unwrap();
    com.register("bob", "example.com", common::PASSWORD)
        .await
        .unwrap();
    let (alice, bob) = (org.connector().unwrap(), com.connector().unwrap());
    common::seed_walkthrough(&alice, &bob).await;
    tokio::task::spawn_blocking(move || drop(federation))
        .await
        .unwrap();
    eprintln!("wall time {:?}", started.elapsed());
}
