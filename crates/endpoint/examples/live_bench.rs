//! Live benchmark: ATM endpoints (the `atm-client` core behind the
//! `atm-endpoint` driver) on a private Prosody on loopback, counted from the
//! server's side.
//!
//! ```text
//! cargo run --release -p atm-endpoint --example live_bench -- seed [--runs 5] [--durability full|normal]
//! cargo run --release -p atm-endpoint --example live_bench -- mesh [--runs 1] [--accounts 10] [--devices 5] [--limit SECONDS] [--durability full|normal]
//! ```
//!
//! `--limit`: how long the mesh may take to converge after its first scan
//! (default 1800 s; on failure the missing authentications are listed).
//!
//! Each run starts its own Prosody (atm-xmpp-server) with a small module of
//! this example (`count_deliveries.lua`) that logs every stanza Prosody
//! hands to a client session and every message a client hands to Prosody;
//! the figures of a run are read from that log afterwards. Every device
//! runs in its own task (one thread, a `LocalSet`), stepping its driver as
//! soon as something arrives, as `atm run` does.
//!
//! `seed`: the seed walkthrough (examples/scenarios/seed-walkthrough.json)
//! with five devices, A1–A3 of alice@example.org and B1–B2 of
//! bob@example.com, the same 8 scans as the live test, each followed by a
//! quiet period; latency is from the last scan (A3 scans B2, taken when the
//! core's `scan` is called) to the last authentication through a trust
//! message (taken when the driver reports it).
//!
//! `mesh`: ACCOUNTS accounts of DEVICES devices, every account a contact of
//! every other; each account's first device and each of its others scan
//! each other (2 × (DEVICES − 1) scans), then, for every pair of accounts,
//! their first devices scan each other (2 scans per pair); all scans are
//! issued without waiting in between. Converged: every device holds every
//! other device's key as authenticated.
//!
//! Memory: growth of the process's VmRSS over the devices added (seed:
//! after the walkthrough; mesh: once all are online and know each other),
//! per device; meaningful in the first run of a process only.
//! `LIVE_BENCH_VERBOSE=1` prints every trust-message delivery (with the
//! server's time), every scan and authentication (with the bench's), and
//! how long each step that processed something took.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use atm_client::{Endpoint, Event, Options, OsRandom};
use atm_endpoint::{Driver, Settings, Tally};
use atm_engine::{KeyId, TrustLevel};
use atm_store::Durability;
use atm_xmpp_server::{Kind, Server};
use tokio_xmpp::jid::BareJid;

const PASSWORD: &str = "correct horse battery staple";
const MODULE: &str = include_str!("count_deliveries.lua");
/// Generous bounds: the machine is shared.
const LIMIT: Duration = Duration::from_secs(60);
const QUIET: Duration = Duration::from_millis(300);

/// What one device's task reports.
struct Shared {
    levels: HashMap<(BareJid, KeyId), TrustLevel>,
    /// When each authentication through a trust message was reported.
    automatic: Vec<Instant>,
    manual: usize,
    chats: usize,
    last_activity: Instant,
    unacked: usize,
    tally: Tally,
    failed: Option<String>,
    /// Refusals and unknown recipients, for the report.
    notes: Vec<String>,
}

struct Device {
    name: String,
    jid: BareJid,
    key: KeyId,
    uri: String,
    driver: tokio::sync::Mutex<Driver>,
    shared: RefCell<Shared>,
    stop: Cell<bool>,
}

fn record(shared: &mut Shared, event: Event, at: Instant) {
    match event {
        Event::TrustChanged { key, to, cause, .. } => {
            if to == TrustLevel::Authenticated {
                if std::env::var_os("LIVE_BENCH_VERBOSE").is_some() {
                    eprintln!("{} {} {:?}", unix_now(), key.owner, cause);
                }
                if cause.is_trust_message() {
                    shared.automatic.push(at);
                } else {
                    shared.manual += 1;
                }
            }
            shared.levels.insert((key.owner, key.key), to);
        }
        Event::DeviceAppeared {
            jid, key, level, ..
        } => {
            shared.levels.entry((jid, key)).or_insert(level);
        }
        Event::Chat { .. } => shared.chats += 1,
        event @ (Event::Rejected { .. } | Event::RecipientUnknown { .. }) => {
            if std::env::var_os("LIVE_BENCH_VERBOSE").is_some() {
                eprintln!("{event:?}");
            }
            shared.notes.push(format!("{event:?}"));
        }
        _ => {}
    }
}

async fn device_task(device: Rc<Device>) {
    while !device.stop.get() {
        let mut driver = device.driver.lock().await;
        let began = Instant::now();
        let stepped = driver.step(Duration::from_millis(50)).await;
        let now = Instant::now();
        if std::env::var_os("LIVE_BENCH_VERBOSE").is_some() && matches!(stepped, Ok(true)) {
            eprintln!("{} {} step {:?}", unix_now(), device.name, now - began);
        }
        {
            let mut shared = device.shared.borrow_mut();
            while let Some(event) = driver.poll_event() {
                record(&mut shared, event, now);
            }
            match stepped {
                Ok(arrived) => {
                    if arrived {
                        shared.last_activity = now;
                    }
                }
                Err(error) => {
                    shared.failed = Some(error.to_string());
                    return;
                }
            }
            shared.unacked = driver.unacknowledged();
            shared.tally = driver.tally();
        }
        drop(driver);
        tokio::task::yield_now().await;
    }
}

struct Net {
    devices: Vec<Rc<Device>>,
    directory: tempfile::TempDir,
    durability: Durability,
}

impl Net {
    async fn add(&mut self, server: &Server, name: &str, jid: &BareJid) -> usize {
        let core = Endpoint::open_with(
            self.directory.path().join(name),
            jid,
            chrono::Utc::now(),
            Box::new(OsRandom),
            Options {
                durability: self.durability,
                ..Options::default()
            },
        )
        .unwrap();
        let key = core.own_key().clone();
        let uri = core.uri();
        let driver = Driver::connect(
            core,
            server.connector().unwrap(),
            PASSWORD,
            Settings::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{name} ({jid}) could not log in: {e}"));
        let device = Rc::new(Device {
            name: name.to_owned(),
            jid: jid.clone(),
            key,
            uri,
            driver: tokio::sync::Mutex::new(driver),
            shared: RefCell::new(Shared {
                levels: HashMap::new(),
                automatic: Vec::new(),
                manual: 0,
                chats: 0,
                last_activity: Instant::now(),
                unacked: 0,
                tally: Tally::default(),
                failed: None,
                notes: Vec::new(),
            }),
            stop: Cell::new(false),
        });
        tokio::task::spawn_local(device_task(device.clone()));
        self.devices.push(device);
        self.devices.len() - 1
    }

    fn check_failures(&self) {
        for device in &self.devices {
            if let Some(error) = &device.shared.borrow().failed {
                panic!("{} failed: {error}", device.name);
            }
        }
    }

    fn level(&self, at: usize, of: usize) -> Option<TrustLevel> {
        let of = &self.devices[of];
        self.devices[at]
            .shared
            .borrow()
            .levels
            .get(&(of.jid.clone(), of.key.clone()))
            .copied()
    }

    fn authenticated(&self, at: usize, of: usize) -> bool {
        self.level(at, of) == Some(TrustLevel::Authenticated)
    }

    fn authenticated_pairs(&self) -> usize {
        let n = self.devices.len();
        (0..n)
            .flat_map(|at| (0..n).map(move |of| (at, of)))
            .filter(|&(at, of)| at != of && self.authenticated(at, of))
            .count()
    }

    async fn until(&self, what: &str, limit: Duration, done: impl Fn(&Net) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            self.check_failures();
            if done(self) {
                return;
            }
            if Instant::now() >= deadline {
                panic!("{what}: not reached within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Until no device received anything for `QUIET` and nothing waits for
    /// the server's acknowledgement.
    async fn settle(&self) {
        self.until("the devices settle", LIMIT, |net| {
            net.devices.iter().all(|d| {
                let shared = d.shared.borrow();
                shared.unacked == 0 && shared.last_activity.elapsed() >= QUIET
            })
        })
        .await;
    }

    /// `at` scans the URI of `of`; returns when the core decided.
    async fn scan(&self, at: usize, of: usize) -> Instant {
        let uri = self.devices[of].uri.clone();
        let device = &self.devices[at];
        let mut driver = device.driver.lock().await;
        let when = Instant::now();
        if std::env::var_os("LIVE_BENCH_VERBOSE").is_some() {
            eprintln!(
                "{} {} scans {}",
                unix_now(),
                device.name,
                self.devices[of].name
            );
        }
        driver.core().scan(&uri, chrono::Utc::now()).unwrap();
        driver.flush().await.unwrap();
        let now = Instant::now();
        let mut shared = device.shared.borrow_mut();
        while let Some(event) = driver.poll_event() {
            record(&mut shared, event, now);
        }
        // What it sent is in flight: `settle` waits for it.
        shared.unacked = driver.unacknowledged();
        shared.last_activity = now;
        when
    }

    async fn add_contacts(&self, pairs: &[(usize, BareJid)]) {
        for (at, contact) in pairs {
            let mut driver = self.devices[*at].driver.lock().await;
            driver.add_contact(contact).await.unwrap();
        }
    }

    async fn close(self) {
        for device in &self.devices {
            device.stop.set(true);
        }
        for device in &self.devices {
            let mut driver = device.driver.lock().await;
            let _ = driver.wait_acknowledged(Duration::from_secs(5)).await;
        }
        // The tasks end at their next step.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for device in self.devices {
            match Rc::try_unwrap(device) {
                Ok(device) => {
                    device.driver.into_inner().close().await;
                }
                Err(_) => eprintln!("a device task is still running"),
            }
        }
    }
}

fn unix_now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:06}", t.as_secs(), t.subsec_micros())
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Starts a private Prosody with the counting module and registers
/// `accounts`. Fails loudly if it cannot.
async fn start_server(accounts: &[BareJid]) -> Server {
    let mut server = tokio::task::spawn_blocking(|| Server::start(Kind::Prosody))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the private Prosody did not start: {e}"));
    std::fs::write(
        server.dir().join("plugins").join("mod_atm_count.lua"),
        MODULE,
    )
    .unwrap();
    let config_path = server.dir().join("prosody.cfg.lua");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let marker = "modules_enabled = { ";
    assert!(
        config.contains(marker),
        "{}: no `{marker}` line to add the counting module to",
        config_path.display()
    );
    std::fs::write(
        &config_path,
        config.replacen(marker, "modules_enabled = { \"atm_count\"; ", 1),
    )
    .unwrap();
    server = tokio::task::spawn_blocking(move || {
        server.restart().unwrap();
        server
    })
    .await
    .unwrap();
    for jid in accounts {
        server
            .register(
                jid.node().unwrap().as_str(),
                jid.domain().as_str(),
                PASSWORD,
            )
            .await
            .unwrap_or_else(|e| panic!("registering {jid}: {e}"));
    }
    server
}

/// One `ATMCOUNT` line of the server's log.
#[derive(Debug, Clone)]
struct Line {
    time: String,
    out: bool,
    stanza: String,
    kind: String,
    omemo: String,
    bytes: u64,
    to: String,
    from: String,
}

fn read_counts(server: &Server) -> Vec<Line> {
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    let mut lines = Vec::new();
    for text in log.lines() {
        let Some((_, rest)) = text.split_once("ATMCOUNT ") else {
            continue;
        };
        let fields: HashMap<&str, &str> =
            rest.split(' ').filter_map(|f| f.split_once('=')).collect();
        let field = |name: &str| fields.get(name).copied().unwrap_or("-").to_owned();
        lines.push(Line {
            time: field("t"),
            out: field("dir") == "out",
            stanza: field("stanza"),
            kind: field("kind"),
            omemo: field("omemo"),
            bytes: field("bytes").parse().unwrap_or(0),
            to: field("to"),
            from: field("from"),
        });
    }
    assert!(
        !lines.is_empty(),
        "no ATMCOUNT line in {}: the counting module did not load",
        server.log_path().display()
    );
    lines
}

fn bare_of(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

/// The figures of one run.
#[derive(Debug, Clone, Default)]
struct Figures {
    /// Last manual action to last automatic authentication (seed), or
    /// first manual action to convergence (mesh), ms.
    latency_ms: f64,
    /// Last manual action to convergence (mesh), ms.
    tail_ms: f64,
    manual: usize,
    automatic: usize,
    authenticated_pairs: usize,
    /// Trust messages clients handed to the server.
    sent: u64,
    sent_bytes: u64,
    /// Trust-message copies the server handed to clients, by kind.
    delivered: BTreeMap<String, u64>,
    delivered_total: u64,
    delivered_bytes: u64,
    /// Direct copies of a message to one's own bare JID back to its sender.
    reflections: u64,
    /// Every stanza / byte the server handed to clients.
    all_out: u64,
    all_out_bytes: u64,
    /// What the clients did with what they got.
    tally: Tally,
    rss_per_device_kib: f64,
}

fn summarize(net: &Net, server: &Server, figures: &mut Figures) {
    let lines = read_counts(server);
    // Everything the server handed to clients, by stanza and kind (PEP
    // notifications split at 2,000 bytes: bundles are larger, device lists
    // smaller), printed after the run.
    let mut out_by_kind: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for line in &lines {
        if line.out {
            figures.all_out += 1;
            figures.all_out_bytes += line.bytes;
            let kind = match line.kind.as_str() {
                "pep" if line.bytes >= 2000 => "pep>=2000B",
                "pep" => "pep<2000B",
                other => other,
            };
            let entry = out_by_kind
                .entry(format!("{} {kind} {}", line.stanza, line.omemo))
                .or_default();
            entry.0 += 1;
            entry.1 += line.bytes;
        }
        if line.stanza != "message" || line.omemo != "payload" {
            continue;
        }
        if std::env::var_os("LIVE_BENCH_VERBOSE").is_some() {
            eprintln!("{} {line:?}", line.time);
        }
        if line.out {
            figures.delivered_total += 1;
            figures.delivered_bytes += line.bytes;
            let kind = if line.kind == "direct" && line.from == line.to {
                figures.reflections += 1;
                "reflection".to_owned()
            } else if line.kind == "direct" && bare_of(&line.from) == bare_of(&line.to) {
                "direct-own".to_owned()
            } else {
                line.kind.clone()
            };
            *figures.delivered.entry(kind).or_default() += 1;
        } else {
            figures.sent += 1;
            figures.sent_bytes += line.bytes;
        }
    }
    let mut tally = Tally::default();
    for device in &net.devices {
        let shared = device.shared.borrow();
        figures.manual += shared.manual;
        figures.automatic += shared.automatic.len();
        assert_eq!(
            shared.chats, 0,
            "{}: a trust message shown as chat",
            device.name
        );
        let t = shared.tally;
        tally.trust_messages += t.trust_messages;
        tally.changed_trust += t.changed_trust;
        tally.chats += t.chats;
        tally.duplicates += t.duplicates;
        tally.not_for_this_device += t.not_for_this_device;
        tally.rejected += t.rejected;
        tally.other += t.other;
    }
    figures.tally = tally;
    figures.authenticated_pairs = net.authenticated_pairs();
    for (kind, (count, bytes)) in &out_by_kind {
        eprintln!("to clients: {kind}: {count} stanzas, {bytes} B");
    }
}

fn jid(text: &str) -> BareJid {
    text.parse().unwrap()
}

async fn seed_run(durability: Durability) -> Figures {
    let alice = jid("alice@example.org");
    let bob = jid("bob@example.com");
    let server = start_server(&[alice.clone(), bob.clone()]).await;
    let rss_before = rss_kib();
    let mut net = Net {
        devices: Vec::new(),
        directory: tempfile::tempdir().unwrap(),
        durability,
    };
    for (name, account) in [
        ("A1", &alice),
        ("A2", &alice),
        ("A3", &alice),
        ("B1", &bob),
        ("B2", &bob),
    ] {
        net.add(&server, name, account).await;
    }
    let (a1, a2, a3, b1, b2) = (0, 1, 2, 3, 4);
    let mut pairs = Vec::new();
    for at in [a1, a2, a3] {
        pairs.push((at, bob.clone()));
    }
    for at in [b1, b2] {
        pairs.push((at, alice.clone()));
    }
    net.add_contacts(&pairs).await;
    net.until("every device knows the 4 others", LIMIT, |net| {
        (0..5).all(|at| (0..5).all(|of| at == of || net.level(at, of).is_some()))
    })
    .await;
    net.settle().await;
    for (at, of) in [
        (a1, a3),
        (a2, a3),
        (a3, a1),
        (a3, a2),
        (b1, b2),
        (b2, b1),
        (b2, a3),
    ] {
        net.scan(at, of).await;
        net.settle().await;
    }
    net.until("B1 authenticates A3 through B2", LIMIT, |net| {
        net.authenticated(b1, a3)
    })
    .await;
    let last = net.scan(a3, b2).await;
    net.until("all 20 authentications", LIMIT, |net| {
        net.authenticated_pairs() == 20
    })
    .await;
    net.settle().await;
    let rss_after = rss_kib();
    let mut figures = Figures::default();
    let last_auto = net
        .devices
        .iter()
        .flat_map(|d| d.shared.borrow().automatic.clone())
        .max()
        .unwrap();
    figures.latency_ms = last_auto.saturating_duration_since(last).as_secs_f64() * 1000.0;
    figures.rss_per_device_kib = rss_after.saturating_sub(rss_before) as f64 / 5.0;
    summarize(&net, &server, &mut figures);
    net.close().await;
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
    figures
}

async fn mesh_run(
    accounts: usize,
    devices: usize,
    durability: Durability,
    limit: Duration,
) -> Figures {
    let jids: Vec<BareJid> = (0..accounts)
        .map(|a| jid(&format!("user{a}@example.org")))
        .collect();
    let server = start_server(&jids).await;
    let rss_before = rss_kib();
    let mut net = Net {
        devices: Vec::new(),
        directory: tempfile::tempdir().unwrap(),
        durability,
    };
    let started = Instant::now();
    for (a, account) in jids.iter().enumerate() {
        for d in 0..devices {
            net.add(&server, &format!("U{a}D{d}"), account).await;
        }
    }
    eprintln!(
        "{} devices online after {:?}",
        net.devices.len(),
        started.elapsed()
    );
    let index = |a: usize, d: usize| a * devices + d;
    let mut pairs = Vec::new();
    for a in 0..accounts {
        for (b, contact) in jids.iter().enumerate() {
            if a != b {
                for d in 0..devices {
                    pairs.push((index(a, d), contact.clone()));
                }
            }
        }
    }
    net.add_contacts(&pairs).await;
    let n = net.devices.len();
    net.until("every device knows every other", LIMIT * 20, |net| {
        (0..n).all(|at| (0..n).all(|of| at == of || net.level(at, of).is_some()))
    })
    .await;
    net.settle().await;
    eprintln!(
        "every device knows the {} others after {:?}",
        n - 1,
        started.elapsed()
    );
    let rss_online = rss_kib();
    let mut scans = Vec::new();
    for a in 0..accounts {
        for d in 1..devices {
            scans.push((index(a, 0), index(a, d)));
            scans.push((index(a, d), index(a, 0)));
        }
    }
    for a in 0..accounts {
        for b in a + 1..accounts {
            scans.push((index(a, 0), index(b, 0)));
            scans.push((index(b, 0), index(a, 0)));
        }
    }
    let first = Instant::now();
    let mut last = first;
    for (at, of) in &scans {
        last = net.scan(*at, *of).await;
    }
    let deadline = first + limit;
    let mut report = Instant::now();
    loop {
        net.check_failures();
        let pairs = net.authenticated_pairs();
        if pairs == n * (n - 1) {
            break;
        }
        if Instant::now() >= deadline {
            let mut missing = Vec::new();
            for at in 0..n {
                for of in 0..n {
                    if at != of && !net.authenticated(at, of) {
                        missing.push(format!(
                            "{}->{}:{:?}",
                            net.devices[at].name,
                            net.devices[of].name,
                            net.level(at, of)
                        ));
                    }
                }
            }
            for device in &net.devices {
                for note in &device.shared.borrow().notes {
                    eprintln!("{}: {note}", device.name);
                }
            }
            panic!(
                "not converged within {limit:?}: {pairs} of {} authentications; missing {}",
                n * (n - 1),
                missing.join(" ")
            );
        }
        if report.elapsed() >= Duration::from_secs(30) {
            report = Instant::now();
            eprintln!(
                "{pairs} of {} authentications after {:?}",
                n * (n - 1),
                first.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let converged = Instant::now();
    net.settle().await;
    let mut figures = Figures {
        latency_ms: converged.duration_since(first).as_secs_f64() * 1000.0,
        tail_ms: converged.duration_since(last).as_secs_f64() * 1000.0,
        rss_per_device_kib: rss_online.saturating_sub(rss_before) as f64 / n as f64,
        ..Figures::default()
    };
    eprintln!(
        "{} scans; converged {:.0} ms after the first, {:.0} ms after the last; RSS {} KiB before, {} online, {} converged",
        scans.len(),
        figures.latency_ms,
        figures.tail_ms,
        rss_before,
        rss_online,
        rss_kib()
    );
    summarize(&net, &server, &mut figures);
    net.close().await;
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
    figures
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn print_run(run: usize, f: &Figures) {
    println!(
        "run {run}: latency {:.1} ms{} | auth {} pairs ({} manual, {} automatic) | trust messages sent {} ({} B) | delivered {} ({} B) {:?}, reflections {} | clients: {} processed, {} changed trust, {} duplicates, {} not for the device, {} rejected | all stanzas to clients {} ({} B) | RSS/device {:.0} KiB",
        f.latency_ms,
        if f.tail_ms > 0.0 { format!(" (tail {:.1} ms)", f.tail_ms) } else { String::new() },
        f.authenticated_pairs,
        f.manual,
        f.automatic,
        f.sent,
        f.sent_bytes,
        f.delivered_total,
        f.delivered_bytes,
        f.delivered,
        f.reflections,
        f.tally.trust_messages,
        f.tally.changed_trust,
        f.tally.duplicates,
        f.tally.not_for_this_device,
        f.tally.rejected,
        f.all_out,
        f.all_out_bytes,
        f.rss_per_device_kib,
    );
}

fn print_medians(all: &[Figures]) {
    let med = |get: &dyn Fn(&Figures) -> f64| median(all.iter().map(get).collect());
    let automatic = med(&|f| f.automatic as f64);
    let delivered = med(&|f| f.delivered_total as f64);
    let bytes = med(&|f| f.delivered_bytes as f64);
    println!(
        "median of {} runs: latency {:.1} ms (min {:.1}, max {:.1}); tail {:.1} ms; {} authenticated pairs, {} automatic; sent {}; delivered {} stanzas, {:.1} KB; per automatic authentication {:.2} stanzas, {:.2} KB; processed {} , changed trust {}; RSS/device {:.0} KiB",
        all.len(),
        med(&|f| f.latency_ms),
        all.iter().map(|f| f.latency_ms).fold(f64::INFINITY, f64::min),
        all.iter().map(|f| f.latency_ms).fold(0.0, f64::max),
        med(&|f| f.tail_ms),
        med(&|f| f.authenticated_pairs as f64),
        automatic,
        med(&|f| f.sent as f64),
        delivered,
        bytes / 1000.0,
        med(&|f| f.delivered_total as f64 / f.automatic.max(1) as f64),
        med(&|f| f.delivered_bytes as f64 / 1000.0 / f.automatic.max(1) as f64),
        med(&|f| f.tally.trust_messages as f64),
        med(&|f| f.tally.changed_trust as f64),
        med(&|f| f.rss_per_device_kib),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().cloned().unwrap_or_default();
    let option = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} {v}: not a number"))
            })
            .unwrap_or(default)
    };
    let durability = match args
        .iter()
        .position(|a| a == "--durability")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
    {
        None | Some("full") => Durability::Full,
        Some("normal") => Durability::Normal,
        Some(other) => panic!("--durability {other}: full or normal"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let all: Vec<Figures> = match mode.as_str() {
        "seed" => {
            let runs = option("--runs", 5);
            (0..runs)
                .map(|run| {
                    let f = local.block_on(&runtime, seed_run(durability));
                    print_run(run + 1, &f);
                    assert_eq!(f.authenticated_pairs, 20, "all 20 authentications");
                    assert_eq!((f.manual, f.automatic), (8, 12), "8 manual, 12 automatic");
                    f
                })
                .collect()
        }
        "mesh" => {
            let runs = option("--runs", 1);
            let accounts = option("--accounts", 10);
            let devices = option("--devices", 5);
            let limit = Duration::from_secs(option("--limit", 1800) as u64);
            (0..runs)
                .map(|run| {
                    let f =
                        local.block_on(&runtime, mesh_run(accounts, devices, durability, limit));
                    print_run(run + 1, &f);
                    f
                })
                .collect()
        }
        _ => {
            eprintln!("usage: live_bench seed [--runs N] | mesh [--runs N] [--accounts A] [--devices D]; [--durability full|normal]");
            std::process::exit(2);
        }
    };
    print_medians(&all);
}
