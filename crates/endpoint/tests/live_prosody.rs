//! Live endpoints on a private Prosody on loopback: PEP device lists,
//! authentication by scanning, trust messages over OMEMO 2, the seed
//! walkthrough. The server must start: a missing or broken Prosody fails
//! the test, it is never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use atm_engine::TrustLevel;
use atm_xmpp_server::Kind;
use common::{start, Net, LIMIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_learn_authenticate_and_a_trust_message_is_applied() {
    let started = Instant::now();
    let server = start(Kind::Prosody).await;
    let mut net = Net::new();
    let a1 = net
        .add("A1", "alice@example.org", server.connector().unwrap())
        .await;
    let b1 = net
        .add("B1", "bob@example.com", server.connector().unwrap())
        .await;
    net.all_contacts().await;
    // Each learns the other's device from PEP, TOAKAFA: automatically trusted.
    net.until("A1 and B1 learn each other", LIMIT, |net| {
        net.level(a1, b1) == Some(TrustLevel::AutomaticallyTrusted)
            && net.level(b1, a1) == Some(TrustLevel::AutomaticallyTrusted)
    })
    .await;
    net.scan(a1, b1).await;
    net.scan(b1, a1).await;
    assert!(net.authenticated(a1, b1) && net.authenticated(b1, a1));
    // A third device: Alice's A2 logs in and publishes itself.
    let a2 = net
        .add("A2", "alice@example.org", server.connector().unwrap())
        .await;
    net.devices[a2]
        .driver
        .add_contact(&common::bare("bob@example.com"))
        .await
        .unwrap();
    net.until(
        "A1 and B1 learn A2 from the device-list notification",
        LIMIT,
        |net| net.level(a1, a2).is_some() && net.level(b1, a2).is_some(),
    )
    .await;
    // A1 and A2 authenticate each other; A1's trust messages tell B1 about
    // A2 and A2 about B1.
    net.scan(a1, a2).await;
    net.scan(a2, a1).await;
    net.until(
        "B1 authenticates A2 and A2 authenticates B1 by trust messages",
        LIMIT,
        |net| net.authenticated(b1, a2) && net.authenticated(a2, b1),
    )
    .await;
    let (manual, automatic) = net.authentication_causes();
    assert_eq!(manual, 4, "A1<->B1 and A1<->A2 by scanning");
    assert!(
        automatic >= 2,
        "at least B1->A2 and A2->B1 by trust messages: {automatic}"
    );
    // Nothing is left unacknowledged and no trust message was shown as chat.
    net.settle(LIMIT, Duration::from_millis(300)).await;
    for device in &net.devices {
        assert_eq!(device.driver.unacknowledged(), 0, "{}", device.name);
        assert!(
            !device
                .events
                .iter()
                .any(|e| matches!(e, atm_client::Event::Chat { .. })),
            "{}",
            device.name
        );
    }
    net.close().await;
    drop(server);
    eprintln!("wall time {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_walkthrough_five_live_devices_twenty_authentications() {
    let started = Instant::now();
    let server = start(Kind::Prosody).await;
    let connector = server.connector().unwrap();
    common::seed_walkthrough(&connector, &connector).await;
    drop(server);
    eprintln!("wall time {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_server_restart_the_devices_come_back_online_and_trust_messages_flow() {
    let started = Instant::now();
    let mut server = start(Kind::Prosody).await;
    let mut net = Net::new();
    let a1 = net
        .add("A1", "alice@example.org", server.connector().unwrap())
        .await;
    let b1 = net
        .add("B1", "bob@example.com", server.connector().unwrap())
        .await;
    net.all_contacts().await;
    net.until("A1 and B1 learn each other", LIMIT, |net| {
        net.level(a1, b1).is_some() && net.level(b1, a1).is_some()
    })
    .await;
    net.scan(a1, b1).await;
    net.scan(b1, a1).await;
    net.settle(LIMIT, Duration::from_millis(300)).await;
    // The server restarts: the streams break and cannot be resumed.
    server = tokio::task::spawn_blocking(move || {
        server.restart().unwrap();
        server
    })
    .await
    .unwrap();
    // A new device of Alice's: A1, reconnected, learns it (from the
    // device-list notification, or from the own list its restart fetches:
    // this test does not tell which) and tells B1 about it by a trust
    // message once A1 and A2 authenticated each other.
    let a2 = net
        .add("A2", "alice@example.org", server.connector().unwrap())
        .await;
    net.devices[a2]
        .driver
        .add_contact(&common::bare("bob@example.com"))
        .await
        .unwrap();
    net.until(
        "A1 learns A2 after the restart",
        Duration::from_secs(40),
        |net| net.level(a1, a2).is_some(),
    )
    .await;
    net.scan(a1, a2).await;
    net.scan(a2, a1).await;
    net.until("B1 authenticates A2 by A1's trust message", LIMIT, |net| {
        net.authenticated(b1, a2)
    })
    .await;
    for device in [a1, b1] {
        assert!(
            net.devices[device].driver.resets() >= 1,
            "{} did not reconnect",
            net.devices[device].name
        );
    }
    drop(net);
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
    eprintln!("wall time {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_command_connects_sends_waits_for_the_acknowledgement_and_leaves() {
    let started = Instant::now();
    let server = start(Kind::Prosody).await;
    let mut net = Net::new();
    let a1 = net
        .add("A1", "alice@example.org", server.connector().unwrap())
        .await;
    let a2 = net
        .add("A2", "alice@example.org", server.connector().unwrap())
        .await;
    let b1 = net
        .add("B1", "bob@example.com", server.connector().unwrap())
        .await;
    net.all_contacts().await;
    net.until("everyone knows everyone", LIMIT, |net| {
        (0..3).all(|at| (0..3).all(|of| at == of || net.level(at, of).is_some()))
    })
    .await;
    net.scan(a1, a2).await;
    net.scan(a2, a1).await;
    net.settle(LIMIT, Duration::from_millis(300)).await;
    let b1_uri = net.devices[b1].driver.core().uri();
    // A1 goes offline; later `atm scan` runs for its directory while no
    // `run` is active: connect, decide, send, wait for the server, leave.
    let device = net.devices.remove(a1);
    let core = device.driver.close().await;
    let (a2, b1) = (a2 - 1, b1 - 1);
    let mut once = atm_endpoint::Driver::connect(
        core,
        server.connector().unwrap(),
        common::PASSWORD,
        atm_endpoint::Settings::default(),
    )
    .await
    .unwrap();
    let decided = once.core().scan(&b1_uri, chrono::Utc::now()).unwrap();
    assert!(decided.trust_messages >= 1, "{decided:?}");
    once.wait_acknowledged(LIMIT).await.unwrap();
    let mut core = once.close().await;
    assert_eq!(core.status().unwrap().outbox, 0, "everything acknowledged");
    // A2, online, applies A1's trust message about B1.
    net.until("A2 authenticates B1 by A1's trust message", LIMIT, |net| {
        net.authenticated(a2, b1)
    })
    .await;
    net.close().await;
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
    eprintln!("wall time {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_endpoint_reports_a_chat_message_as_it_arrives() {
    let started = Instant::now();
    let server = start(Kind::Prosody).await;
    let mut net = Net::new();
    let a1 = net
        .add("A1", "alice@example.org", server.connector().unwrap())
        .await;
    let b1 = net
        .add("B1", "bob@example.com", server.connector().unwrap())
        .await;
    net.all_contacts().await;
    net.until("A1 and B1 learn each other", LIMIT, |net| {
        net.level(a1, b1).is_some() && net.level(b1, a1).is_some()
    })
    .await;
    // B1 runs as `atm run` would, until told to stop, concurrently with
    // Alice's side in this task (the core is not `Send`: a runtime runs a
    // driver on one thread, as `atm run` will).
    let mut bob = net.devices.remove(b1).driver;
    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = bob.run_until(
        async {
            let _ = stop_rx.await;
        },
        Duration::from_millis(50),
        |event| {
            let _ = events_tx.send(event);
        },
    );
    let alice = async {
        let now = chrono::Utc::now();
        let sent = net.devices[a1]
            .driver
            .core()
            .send_chat("bob@example.com", "hello Bob", now)
            .unwrap();
        assert_eq!(sent.devices, 1);
        net.devices[a1]
            .driver
            .wait_acknowledged(LIMIT)
            .await
            .unwrap();
        let text = tokio::time::timeout(LIMIT, async {
            loop {
                match events_rx.recv().await {
                    Some(atm_client::Event::Chat { text, .. }) => return text,
                    Some(_) => {}
                    None => panic!("B1 stopped running"),
                }
            }
        })
        .await
        .expect("B1 reported no chat message in time");
        stop_tx.send(()).unwrap();
        text
    };
    let (result, text) = tokio::time::timeout(LIMIT * 2, async { tokio::join!(running, alice) })
        .await
        .expect("B1 did not stop in time");
    result.unwrap();
    assert_eq!(text, "hello Bob");
    bob.close().await;
    net.close().await;
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
    eprintln!("wall time {:?}", started.elapsed());
}
