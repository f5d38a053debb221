//! The live seed walkthrough against a private ejabberd on loopback: the
//! driver must not depend on one server's quirks. The server must start:
//! a missing or broken ejabberd fails the test, it is never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::Instant;

use atm_xmpp_server::Kind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_walkthrough_five_live_devices_on_ejabberd() {
    let started = Instant::now();
    let server = common::start(Kind::Ejabberd).await;
    let connector = server.connector().unwrap();
    common::seed_walkthrough(&connector, &connector).await;
    let server = tokio::task::spawn_blocking(move || drop(server));
    server.await.unwrap();
    eprintln!("wall time {:?}", started.elapsed());
}
