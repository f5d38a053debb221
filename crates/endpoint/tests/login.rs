//! Login failures are reported with their reason within the time limit,
//! never retried forever: wrong password, a certificate from another CA,
//! nothing listening. Against a private Prosody that must start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use atm_client::{Endpoint, OsRandom};
use atm_endpoint::{Driver, DriverError, LoginError, Settings};
use atm_xmpp_server::client_tls::TestCaConnector;
use atm_xmpp_server::{Kind, TestCa};

fn core(dir: &std::path::Path) -> Endpoint {
    Endpoint::open(
        dir,
        &common::bare("alice@example.org"),
        chrono::Utc::now(),
        Box::new(OsRandom),
    )
    .unwrap()
}

fn settings() -> Settings {
    Settings {
        login_timeout: Duration::from_secs(5),
        ..Settings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_failures_are_reported_with_their_reason_in_time() {
    let server = common::start(Kind::Prosody).await;
    let dir = tempfile::tempdir().unwrap();

    let started = Instant::now();
    let error = Driver::connect(
        core(dir.path()),
        server.connector().unwrap(),
        "wrong",
        settings(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, DriverError::Login(LoginError::Refused { .. })),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(6));

    // A server certificate that does not chain to the CA we trust.
    let other_ca = TestCa::generate().unwrap();
    let connector = TestCaConnector::new(server.c2s_addr(), other_ca.pem().as_bytes()).unwrap();
    let error = Driver::connect(core(dir.path()), connector, common::PASSWORD, settings())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DriverError::Login(LoginError::Connect { reason, .. }) if reason.contains("TLS")),
        "{error}"
    );

    // Nothing listens on the address.
    let addr = server.c2s_addr();
    let pem = std::fs::read(server.ca_pem_path()).unwrap();
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
    let connector = TestCaConnector::new(addr, &pem).unwrap();
    let error = Driver::connect(core(dir.path()), connector, common::PASSWORD, settings())
        .await
        .unwrap_err();
    assert!(
        matches!(error, DriverError::Login(LoginError::Connect { .. })),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_to_a_server_that_requires_tls_fails_with_a_reason_in_time() {
    let server = common::start(Kind::Prosody).await;
    let dir = tempfile::tempdir().unwrap();
    let connector = atm_endpoint::PlaintextLoopbackConnector::new(server.c2s_addr()).unwrap();
    let started = Instant::now();
    let error = Driver::connect(core(dir.path()), connector, common::PASSWORD, settings())
        .await
        .unwrap_err();
    eprintln!("plaintext login refused: {error}");
    assert!(
        matches!(error, DriverError::Login(LoginError::NoMechanism { .. })),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(6));
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_roots_do_not_trust_the_test_ca() {
    // Certificate verification is on: the private server's certificate is
    // issued by the per-run test CA, which no system root vouches for.
    let server = common::start(Kind::Prosody).await;
    let dir = tempfile::tempdir().unwrap();
    let addr = server.c2s_addr().to_string();
    let connector = atm_endpoint::system_roots_connector("example.org", Some(&addr));
    let started = Instant::now();
    let error = Driver::connect(core(dir.path()), connector, common::PASSWORD, settings())
        .await
        .unwrap_err();
    eprintln!("system roots: {error}");
    assert!(
        matches!(&error, DriverError::Login(LoginError::Connect { reason, .. }) if reason.to_lowercase().contains("certificate")),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(6));
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}
