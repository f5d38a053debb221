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
                panic!("{what}: not reached within {limit:?}");
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
