//! Live devices on a private server: each device is an [`Endpoint`] in its
//! own temporary state directory behind a [`Driver`] logged in over the
//! harness's test-CA connector. All drivers are stepped round-robin from
//! the test's task; waits poll a condition until a bounded deadline.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    dead_code
)]

use std::time::{Duration, Instant};

use atm_client::{Endpoint, Event, Options, OsRandom};
use atm_endpoint::{Driver, Settings};
use atm_engine::TrustLevel;
use atm_store::Durability;
use atm_xmpp_server::client_tls::TestCaConnector;
use tokio_xmpp::jid::BareJid;

pub const PASSWORD: &str = "correct horse battery staple";

pub struct Device {
    pub name: String,
    pub driver: Driver,
    /// Every event the core reported.
    pub events: Vec<Event>,
}

pub struct Net {
    pub devices: Vec<Device>,
    pub directory: tempfile::TempDir,
}

pub fn bare(text: &str) -> BareJid {
    text.parse().unwrap()
}

impl Net {
    pub fn new() -> Self {
        Net {
            devices: Vec::new(),
            directory: tempfile::tempdir().unwrap(),
        }
    }

    /// Opens a device's core and logs it in; returns its index.
    pub async fn add(&mut self, name: &str, jid: &str, connector: TestCaConnector) -> usize {
        let core = Endpoint::open_with(
            self.directory.path().join(name),
            &bare(jid),
            chrono::Utc::now(),
            Box::new(OsRandom),
            Options {
                durability: Durability::Normal,
                ..Options::default()
            },
        )
        .unwrap();
        let started = Instant::now();
        let driver = Driver::connect(core, connector, PASSWORD, Settings::default())
            .await
            .unwrap_or_else(|e| panic!("{name} ({jid}) could not log in: {e}"));
        eprintln!(
            "{name} online as {} after {:?}",
            driver.bound_jid(),
            started.elapsed()
        );
        self.devices.push(Device {
            name: name.to_owned(),
            driver,
            events: Vec::new(),
        });
        self.devices.len() - 1
    }

    /// One round: every driver waits briefly and processes what arrived.
    /// Returns whether anything arrived or is still unacknowledged.
    pub async fn round(&mut self) -> bool {
        let mut busy = false;
        for device in &mut self.devices {
            let arrived = device
                .driver
                .step(Duration::from_millis(5))
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", device.name));
            busy |= arrived || device.driver.unacknowledged() > 0;
            while let Some(event) = device.driver.poll_event() {
                device.events.push(event);
            }
        }
        busy
    }

    /// Steps every driver until `done` holds, at most `limit`.
    pub async fn until(
        &mut self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut(&mut Net) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        let started = Instant::now();
        loop {
            if done(self) {
                eprintln!("{what}: after {:?}", started.elapsed());
                return;
            }
            if Instant::now() >= deadline {
                panic!("{what}: not reached within {limit:?}\n{}", self.describe());
            }
            self.round().await;
        }
    }

    /// Steps until nothing arrived and nothing is unacknowledged for
    /// `quiet` in a row, at most `limit`.
    pub async fn settle(&mut self, limit: Duration, quiet: Duration) {
        let deadline = Instant::now() + limit;
        let mut quiet_since = Instant::now();
        loop {
            if self.round().await {
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= quiet {
                return;
            }
            if Instant::now() >= deadline {
                panic!("the devices did not settle within {limit:?}");
            }
        }
    }

    /// What each device knows and what it refused, for failure messages.
    pub fn describe(&mut self) -> String {
        let mut out = String::new();
        for at in 0..self.devices.len() {
            let levels: Vec<String> = (0..self.devices.len())
                .filter(|of| *of != at)
                .map(|of| {
                    let level = self.level(at, of);
                    format!("{}:{level:?}", self.devices[of].name)
                })
                .collect();
            let device = &self.devices[at];
            out += &format!("{} knows {}\n", device.name, levels.join(" "));
            for event in &device.events {
                if matches!(
                    event,
                    Event::Rejected { .. } | Event::TrustMessageIgnored { .. }
                ) {
                    out += &format!("  {event:?}\n");
                }
            }
        }
        out
    }

    /// Every device follows every other account.
    pub async fn all_contacts(&mut self) {
        let jids: Vec<BareJid> = self
            .devices
            .iter_mut()
            .map(|d| d.driver.core().jid().clone())
            .collect();
        for device in &mut self.devices {
            for jid in &jids {
                if jid != device.driver.core().jid() {
                    device.driver.add_contact(jid).await.unwrap();
                }
            }
        }
    }

    /// The level that `at` holds for the key of `of`.
    pub fn level(&mut self, at: usize, of: usize) -> Option<TrustLevel> {
        let key = self.devices[of].driver.core().own_key().clone();
        let owner = self.devices[of].driver.core().jid().clone();
        let keys = self.devices[at].driver.core().keys().unwrap();
        keys.into_iter()
            .find(|k| k.owner == owner && k.key == key)
            .map(|k| k.level)
    }

    pub fn authenticated(&mut self, at: usize, of: usize) -> bool {
        self.level(at, of) == Some(TrustLevel::Authenticated)
    }

    /// `at` scans the URI of `of` (the decision is sent by the driver).
    pub async fn scan(&mut self, at: usize, of: usize) {
        let uri = self.devices[of].driver.core().uri();
        let device = &mut self.devices[at];
        device.driver.core().scan(&uri, chrono::Utc::now()).unwrap();
        device.driver.flush().await.unwrap();
    }

    pub fn count_authenticated_pairs(&mut self) -> usize {
        let n = self.devices.len();
        let mut count = 0;
        for at in 0..n {
            for of in 0..n {
                if at != of && self.authenticated(at, of) {
                    count += 1;
                }
            }
        }
        count
    }

    /// (manual, through trust messages) authentications reported as events.
    pub fn authentication_causes(&self) -> (usize, usize) {
        let (mut manual, mut automatic) = (0, 0);
        for device in &self.devices {
            for event in &device.events {
                if let Event::TrustChanged {
                    to: TrustLevel::Authenticated,
                    cause,
                    ..
                } = event
                {
                    if cause.is_trust_message() {
                        automatic += 1;
                    } else {
                        manual += 1;
                    }
                }
            }
        }
        (manual, automatic)
    }

    /// Closes every stream.
    pub async fn close(self) {
        for device in self.devices {
            device.driver.close().await;
        }
    }
}

/// Starts a private server of `kind` and registers alice@example.org and
/// bob@example.com. Panics (fails the test) if the server cannot start.
pub async fn start(kind: atm_xmpp_server::Kind) -> atm_xmpp_server::Server {
    let started = Instant::now();
    let server = tokio::task::spawn_blocking(move || atm_xmpp_server::Server::start(kind))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the private {kind:?} server did not start: {e}"));
    for (local, domain) in [("alice", "example.org"), ("bob", "example.com")] {
        server
            .register(local, domain, PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("registering {local}@{domain}: {e}"));
    }
    eprintln!("{kind:?} up after {:?}", started.elapsed());
    server
}

/// How long any one convergence may take.
pub const LIMIT: Duration = Duration::from_secs(20);

/// The seed walkthrough (examples/scenarios/seed-walkthrough.json) with
/// five live devices: Alice's A1–A3 through `alice`, Bob's B1–B2 through
/// `bob`. 8 scans, 20 authentications, 12 of them by trust messages.
pub async fn seed_walkthrough(alice: &TestCaConnector, bob: &TestCaConnector) {
    let mut net = Net::new();
    let a1 = net.add("A1", "alice@example.org", alice.clone()).await;
    let a2 = net.add("A2", "alice@example.org", alice.clone()).await;
    let a3 = net.add("A3", "alice@example.org", alice.clone()).await;
    let b1 = net.add("B1", "bob@example.com", bob.clone()).await;
    let b2 = net.add("B2", "bob@example.com", bob.clone()).await;
    net.until("each account's devices know each other", LIMIT, |net| {
        (0..5).all(|at| {
            (0..5).all(|of| at == of || (at < 3) != (of < 3) || net.level(at, of).is_some())
        })
    })
    .await;
    net.all_contacts().await;
    net.until("every device knows the 4 others", LIMIT, |net| {
        (0..5).all(|at| (0..5).all(|of| at == of || net.level(at, of).is_some()))
    })
    .await;
    let quiet = Duration::from_millis(300);
    for (at, of) in [(a1, a3), (a2, a3), (a3, a1), (a3, a2)] {
        net.scan(at, of).await;
        net.settle(LIMIT, quiet).await;
    }
    net.until("Alice's devices authenticate each other", LIMIT, |net| {
        [a1, a2, a3].iter().all(|&at| {
            [a1, a2, a3]
                .iter()
                .all(|&of| at == of || net.authenticated(at, of))
        })
    })
    .await;
    for (at, of) in [(b1, b2), (b2, b1), (b2, a3)] {
        net.scan(at, of).await;
        net.settle(LIMIT, quiet).await;
    }
    net.until("B1 authenticates A3 through B2", LIMIT, |net| {
        net.authenticated(b1, a3)
    })
    .await;
    net.scan(a3, b2).await;
    net.until("all 20 authentications", LIMIT, |net| {
        net.count_authenticated_pairs() == 20
    })
    .await;
    net.settle(LIMIT, quiet).await;
    assert_eq!(net.count_authenticated_pairs(), 20);
    assert_eq!(
        net.authentication_causes(),
        (8, 12),
        "8 manual, 12 by trust messages"
    );
    for device in &net.devices {
        assert_eq!(device.driver.unacknowledged(), 0, "{}", device.name);
        assert!(
            !device
                .events
                .iter()
                .any(|e| matches!(e, Event::Chat { .. })),
            "{}: a trust message shown as chat",
            device.name
        );
    }
    net.close().await;
}
