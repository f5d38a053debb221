//! Two Prosody processes on 127.0.0.2 and 127.0.0.3 federate over s2s
//! (static routes, certificate authentication with the test CA): a
//! message alice@example.org -> bob@example.com, and the reply; again
//! after example.com restarted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use atm_xmpp_server::{Error, Federation};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_crosses_two_servers_and_back() {
    let mut federation = blocking(Federation::start).await.unwrap();
    let org = federation.server("example.org").unwrap();
    let com = federation.server("example.com").unwrap();
    assert_ne!(org.c2s_addr().ip(), com.c2s_addr().ip(), "two addresses");
    assert_ne!(org.pid(), com.pid(), "two processes");
    assert!(matches!(
        org.register("mallory", "example.com", PASSWORD).await,
        Err(Error::UnknownDomain { .. })
    ));

    let (alice, bob) = (jid("alice", "example.org"), jid("bob", "example.com"));
    org.register("alice", "example.org", PASSWORD)
        .await
        .unwrap();
    com.register("bob", "example.com", PASSWORD).await.unwrap();
    let mut alice1 = online_at(org, &alice).await;
    let mut bob1 = online_at(com, &bob).await;

    alice1.send_chat(&bob, "hello from example.org").await;
    bob1.expect_chat(&alice, "hello from example.org").await;
    bob1.send_chat(&alice, "hello back from example.com").await;
    alice1
        .expect_chat(&bob, "hello back from example.com")
        .await;

    // Each side accepted the other by certificate (SASL EXTERNAL with the
    // test CA), not by dialback.
    for (server, peer) in [(org, "example.com"), (com, "example.org")] {
        let line = format!("Accepting SASL EXTERNAL identity from {peer}");
        let log = server.log_tail(1000);
        assert!(
            log.contains(&line),
            "{line:?} missing from {}:\n{log}",
            server.log_path().display()
        );
    }

    // example.com restarts (a fault test's building block): org's s2s link
    // breaks, and the next message opens a new one.
    bob1.end().await;
    let mut federation = blocking(move || {
        federation.server_mut("example.com")?.restart()?;
        Ok::<_, Error>(federation)
    })
    .await
    .unwrap();
    let com = federation.server("example.com").unwrap();
    let mut bob2 = online_at(com, &bob).await;
    alice1
        .send_chat(&bob, "still there after the restart?")
        .await;
    bob2.expect_chat(&alice, "still there after the restart?")
        .await;
    bob2.send_chat(&alice, "yes").await;
    alice1.expect_chat(&bob, "yes").await;

    alice1.end().await;
    bob2.end().await;
    federation.servers_mut()[0].stop().unwrap();
}
