//! Mixed live devices: our endpoints ([`Net`]) and QXmpp peer processes
//! (`interop/qxmpp-peer`, one OMEMO 2 device each, driven by JSON lines)
//! on one private Prosody. The peer binary comes from `ATM_QXMPP_PEER`; the
//! tests that use it are `#[ignore]`d (CI cannot build QXmpp) and fail
//! loudly when they are run without it.
//!
//! Every device has a name (A1…B2); [`World`] maps names to either side and
//! offers the same operations on both: authenticate, distrust, levels.
//! A [`Recorder`] taps our devices: what QXmpp devices sent them (with the
//! receipt time, what the core did, and a snapshot of the device's SQLite
//! file just before), and what our devices sent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    dead_code
)]

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use atm_client::{Endpoint, Event, Handled, Transmit};
use atm_endpoint::Tap;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio_xmpp::parsers::minidom::Element;

use crate::common::{bare, Net, PASSWORD};

#[path = "../../../client/tests/qxmpp_fixture/summary.rs"]
pub mod summary;

pub const NS_OMEMO: &str = "urn:xmpp:omemo:2";

/// The peer binary, or a failure that says how to run these tests.
pub fn peer_binary() -> PathBuf {
    let Some(path) = std::env::var_os("ATM_QXMPP_PEER") else {
        panic!(
            "ATM_QXMPP_PEER is not set. These tests need the QXmpp peer of interop/qxmpp-peer, \
             built against an installed QXmpp 1.10 with OMEMO (see docs/interop.md), e.g.\n  \
             ATM_QXMPP_PEER=/tmp/qxmpp-peer-build/qxmpp-peer LD_LIBRARY_PATH=<QXmpp prefix>/lib \
             cargo test -p atm-endpoint --test live_qxmpp -- --ignored --test-threads 1"
        )
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "ATM_QXMPP_PEER={} is not a file",
        path.display()
    );
    path
}

/// One QXmpp device: a peer process.
pub struct Peer {
    pub name: String,
    pub jid: String,
    pub key_hex: String,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
    /// Every event line, in order (raw stream logs left out).
    pub events: Vec<Value>,
    replies: HashMap<u64, Value>,
    next_id: u64,
    /// (owner, key hex) -> level, from `trust_changed` events.
    pub levels: HashMap<(String, String), String>,
    /// Everything the peer printed (stdout, all events).
    pub log_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl Peer {
    pub fn spawn(name: &str, binary: &Path, directory: &Path) -> Peer {
        let log_path = directory.join(format!("{name}.qxmpp.jsonl"));
        let stderr_path = directory.join(format!("{name}.qxmpp.stderr"));
        let mut child = Command::new(binary)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the QXmpp peer {}: {e}", binary.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let mut log = std::fs::File::create(&log_path).unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({"event": "unparsed", "text": line}));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Peer {
            name: name.to_owned(),
            jid: String::new(),
            key_hex: String::new(),
            child,
            stdin,
            lines: rx,
            events: Vec::new(),
            replies: HashMap::new(),
            next_id: 1,
            levels: HashMap::new(),
            log_path,
            stderr_path,
        }
    }

    /// Sends a command; returns its id.
    pub fn send(&mut self, mut command: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        command["id"] = json!(id);
        writeln!(self.stdin, "{command}")
            .unwrap_or_else(|e| panic!("{}: the peer's stdin: {e}", self.name));
        self.stdin.flush().unwrap();
        id
    }

    /// Takes what the peer printed; returns whether anything came.
    pub fn drain(&mut self) -> bool {
        let mut any = false;
        while let Ok(value) = self.lines.try_recv() {
            any = true;
            if let Some(id) = value.get("id").and_then(Value::as_u64) {
                if value.get("ok").is_some() {
                    self.replies.insert(id, value);
                    continue;
                }
            }
            let kind = value["event"].as_str().unwrap_or_default().to_owned();
            if kind == "trust_changed" {
                self.levels.insert(
                    (
                        value["jid"].as_str().unwrap_or_default().to_owned(),
                        value["key_hex"].as_str().unwrap_or_default().to_owned(),
                    ),
                    value["level"].as_str().unwrap_or_default().to_owned(),
                );
            }
            if kind != "stanza" {
                self.events.push(value);
            }
        }
        if !any {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the QXmpp peer {} exited ({status}); stderr:\n{}",
                    self.name,
                    std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
                );
            }
        }
        any
    }

    pub fn take_reply(&mut self, id: u64) -> Option<Value> {
        self.replies.remove(&id)
    }

    pub fn events_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.events.iter().filter(move |e| e["event"] == name)
    }

    /// Warnings and errors QXmpp logged.
    pub fn warnings(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["event"] == "log" || e["event"] == "error")
            .map(|e| e["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Messages with an OMEMO payload this peer wrote (trust messages and chat).
    pub fn payload_messages_sent(&self) -> usize {
        self.events_named("omemo_sent")
            .filter(|e| e["has_payload"] == true)
            .count()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{{\"cmd\":\"quit\"}}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a QXmpp device sent one of ours, as our device got it.
#[derive(Debug, Clone)]
pub struct Record {
    pub run: String,
    pub device: String,
    pub jid: String,
    /// The device's SQLite file just before (VACUUM INTO copy).
    pub snapshot: Vec<u8>,
    pub stanza: String,
    pub received: DateTime<Utc>,
    pub handled: String,
    pub events: Vec<String>,
}

#[derive(Default)]
pub struct Shared {
    /// Device ids of our devices (any other OMEMO sender is QXmpp).
    pub ours: HashSet<u32>,
    pub records: Vec<Record>,
    /// Whether to take snapshots (only when recording fixtures).
    pub snapshots: bool,
    pub run: String,
    /// Payload messages our devices sent, by device name.
    pub sent: BTreeMap<String, usize>,
    /// Every event our devices reported for a QXmpp device's message.
    pub from_qxmpp: Vec<(String, String, Vec<String>)>,
}

/// The [`Tap`] of one of our devices.
pub struct Recorder {
    pub device: String,
    pub shared: Rc<RefCell<Shared>>,
    pending: Option<(Vec<u8>, DateTime<Utc>)>,
}

impl Recorder {
    pub fn new(device: &str, shared: Rc<RefCell<Shared>>) -> Self {
        Recorder {
            device: device.to_owned(),
            shared,
            pending: None,
        }
    }
}

/// The first `<encrypted xmlns='urn:xmpp:omemo:2'>` inside `element`
/// (directly, or in a carbon or archive wrapper).
pub fn find_encrypted(element: &Element) -> Option<&Element> {
    if element.is("encrypted", NS_OMEMO) {
        return Some(element);
    }
    element.children().find_map(find_encrypted)
}

/// Sender device id and whether there is a payload.
pub fn omemo_sender(element: &Element) -> Option<(u32, bool)> {
    let encrypted = find_encrypted(element)?;
    let sid = encrypted
        .get_child("header", NS_OMEMO)?
        .attr("sid")?
        .parse()
        .ok()?;
    Some((sid, encrypted.get_child("payload", NS_OMEMO).is_some()))
}

pub fn snapshot(core: &Endpoint) -> Vec<u8> {
    let source = core.directory().join(atm_client::DATABASE_FILE);
    let target = tempfile::tempdir().unwrap();
    let copy = target.path().join("snapshot.sqlite");
    let connection = rusqlite::Connection::open(&source).unwrap();
    connection
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    std::fs::read(&copy).unwrap()
}

impl Tap for Recorder {
    fn before(&mut self, core: &Endpoint, stanza: &Element, now: DateTime<Utc>) {
        self.pending = None;
        let Some((sid, _)) = omemo_sender(stanza) else {
            return;
        };
        let shared = self.shared.borrow();
        if !shared.ours.contains(&sid) {
            let bytes = if shared.snapshots {
                snapshot(core)
            } else {
                Vec::new()
            };
            self.pending = Some((bytes, now));
        }
    }

    fn after(
        &mut self,
        core: &Endpoint,
        stanza: &Element,
        handled: Option<&Handled>,
        events: &[Event],
    ) {
        if let Some(Handled::Rejected(reason)) = handled {
            eprintln!(
                "{} refused ({reason}): {}",
                self.device,
                String::from(stanza)
            );
        }
        let Some((bytes, received)) = self.pending.take() else {
            return;
        };
        let events: Vec<String> = events.iter().map(summary::event).collect();
        let handled = handled.map_or("core failed".to_owned(), summary::handled);
        let mut shared = self.shared.borrow_mut();
        shared
            .from_qxmpp
            .push((self.device.clone(), handled.clone(), events.clone()));
        let run = shared.run.clone();
        shared.records.push(Record {
            run,
            device: self.device.clone(),
            jid: core.jid().to_string(),
            snapshot: bytes,
            stanza: String::from(stanza),
            received,
            handled,
            events,
        });
    }

    fn sending(&mut self, _core: &Endpoint, transmit: &Transmit) {
        if transmit.outbox.is_some() && omemo_sender(&transmit.stanza).is_some_and(|(_, p)| p) {
            *self
                .shared
                .borrow_mut()
                .sent
                .entry(self.device.clone())
                .or_default() += 1;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Ours(usize),
    Qxmpp(usize),
}

pub struct World {
    pub net: Net,
    pub peers: Vec<Peer>,
    pub names: Vec<(String, Side)>,
    pub shared: Rc<RefCell<Shared>>,
    binary: PathBuf,
    addr: std::net::SocketAddr,
    ca_file: PathBuf,
    connector: atm_xmpp_server::client_tls::TestCaConnector,
    /// The peers' `auto_session_building` (docs/interop.md): `true`, as
    /// Kaidan sets it, unless a test asks for `"after_setup"`.
    pub session_building: serde_json::Value,
}

/// How long any one convergence may take (the machine is shared).
pub const LIMIT: Duration = Duration::from_secs(60);

impl World {
    pub fn new(server: &atm_xmpp_server::Server, run: &str) -> World {
        let binary = peer_binary();
        let shared = Rc::new(RefCell::new(Shared {
            snapshots: std::env::var_os("ATM_QXMPP_RECORD").is_some(),
            run: run.to_owned(),
            ..Shared::default()
        }));
        World {
            net: Net::new(),
            peers: Vec::new(),
            names: Vec::new(),
            shared,
            binary,
            addr: server.c2s_addr(),
            ca_file: server.ca_pem_path().to_owned(),
            connector: server.connector().unwrap(),
            session_building: json!(true),
        }
    }

    pub fn index(&self, name: &str) -> usize {
        self.names
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no device {name}"))
    }

    pub fn side(&self, name: &str) -> Side {
        self.names[self.index(name)].1
    }

    pub async fn add_ours(&mut self, name: &str, jid: &str) {
        let at = self.net.add(name, jid, self.connector.clone()).await;
        let id = self.net.devices[at].driver.core().device_id();
        self.shared.borrow_mut().ours.insert(id);
        self.net.devices[at]
            .driver
            .set_tap(Some(Box::new(Recorder::new(name, self.shared.clone()))));
        self.names.push((name.to_owned(), Side::Ours(at)));
    }

    pub async fn add_qxmpp(&mut self, name: &str, jid: &str) {
        // The peers' logs (every line they print, raw stream included) go
        // to ATM_QXMPP_LOGS if set (kept), else to the run's temporary
        // directory.
        let logs = std::env::var_os("ATM_QXMPP_LOGS")
            .map(|d| PathBuf::from(d).join(&self.shared.borrow().run))
            .unwrap_or_else(|| self.net.directory.path().to_owned());
        std::fs::create_dir_all(&logs).unwrap();
        let mut peer = Peer::spawn(name, &self.binary, &logs);
        let id = peer.send(json!({
            "cmd": "connect",
            "jid": jid,
            "password": PASSWORD,
            "host": self.addr.ip().to_string(),
            "port": self.addr.port(),
            "ca_file": self.ca_file.to_str().unwrap(),
            "resource": format!("qxmpp-{name}"),
            "log_stanzas": true,
            "auto_session_building": self.session_building,
        }));
        self.peers.push(peer);
        let at = self.peers.len() - 1;
        let reply = self.wait_reply(at, id, &format!("{name} connects")).await;
        let peer = &mut self.peers[at];
        peer.jid = reply["jid"].as_str().unwrap().to_owned();
        peer.key_hex = reply["key_hex"].as_str().unwrap().to_owned();
        eprintln!("{name} (QXmpp) online as {jid}, key {}", peer.key_hex);
        self.names.push((name.to_owned(), Side::Qxmpp(at)));
    }

    /// Steps our drivers once and takes what the peers printed.
    pub async fn round(&mut self) -> bool {
        let mut busy = self.net.round().await;
        for peer in &mut self.peers {
            busy |= peer.drain();
        }
        busy
    }

    pub async fn wait_reply(&mut self, peer: usize, id: u64, what: &str) -> Value {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(reply) = self.peers[peer].take_reply(id) {
                assert!(
                    reply["ok"] == true,
                    "{what}: QXmpp peer {} refused: {reply}",
                    self.peers[peer].name
                );
                return reply;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no reply within {LIMIT:?}"
            );
            self.round().await;
        }
    }

    /// Sends a command to the peer named `name` and waits for its reply.
    pub async fn command(&mut self, name: &str, command: Value) -> Value {
        let Side::Qxmpp(at) = self.side(name) else {
            panic!("{name} is not a QXmpp device")
        };
        let what = format!("{name}: {command}");
        let id = self.peers[at].send(command);
        self.wait_reply(at, id, &what).await
    }

    pub async fn until(
        &mut self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut(&mut World) -> bool,
    ) {
        let started = Instant::now();
        loop {
            if done(self) {
                eprintln!("{what}: after {:?}", started.elapsed());
                return;
            }
            if started.elapsed() >= limit {
                panic!("{what}: not reached within {limit:?}\n{}", self.describe());
            }
            self.round().await;
        }
    }

    /// Steps until nothing arrived anywhere for `quiet` in a row.
    pub async fn settle(&mut self, quiet: Duration) {
        let started = Instant::now();
        let mut quiet_since = Instant::now();
        loop {
            if self.round().await {
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= quiet {
                return;
            }
            assert!(started.elapsed() < LIMIT, "no quiet within {LIMIT:?}");
        }
    }

    pub fn jid(&mut self, name: &str) -> String {
        match self.side(name) {
            Side::Ours(at) => self.net.devices[at].driver.core().jid().to_string(),
            Side::Qxmpp(at) => self.peers[at].jid.clone(),
        }
    }

    pub fn key_hex(&mut self, name: &str) -> String {
        match self.side(name) {
            Side::Ours(at) => self.net.devices[at].driver.core().fingerprint(),
            Side::Qxmpp(at) => self.peers[at].key_hex.clone(),
        }
    }

    /// The level that `at` holds for the key of `of` (level names as in
    /// the XEP and in QXmpp's enum, snake case).
    pub fn level(&mut self, at: &str, of: &str) -> Option<String> {
        let (jid, key) = (self.jid(of), self.key_hex(of));
        match self.side(at) {
            Side::Ours(i) => {
                let keys = self.net.devices[i].driver.core().keys().unwrap();
                keys.into_iter()
                    .find(|k| k.owner.to_string() == jid && k.fingerprint == key)
                    .map(|k| k.level.as_str().to_owned())
            }
            Side::Qxmpp(i) => self.peers[i].levels.get(&(jid, key)).cloned(),
        }
    }

    pub fn authenticated(&mut self, at: &str, of: &str) -> bool {
        self.level(at, of).as_deref() == Some("authenticated")
    }

    pub fn all_names(&self) -> Vec<String> {
        self.names.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Every ordered pair (at, of) with `at` holding `of` authenticated.
    pub fn authenticated_pairs(&mut self) -> Vec<(String, String)> {
        let names = self.all_names();
        let mut pairs = Vec::new();
        for at in &names {
            for of in &names {
                if at != of && self.authenticated(at, of) {
                    pairs.push((at.clone(), of.clone()));
                }
            }
        }
        pairs
    }

    /// `at` authenticates the key of `of` by hand (ours: scanning its URI,
    /// or by fingerprint for a QXmpp key; QXmpp: `makeTrustDecisions`).
    pub async fn authenticate(&mut self, at: &str, of: &str) {
        self.decide(at, of, true).await;
    }

    pub async fn distrust(&mut self, at: &str, of: &str) {
        self.decide(at, of, false).await;
    }

    async fn decide(&mut self, at: &str, of: &str, trust: bool) {
        let (jid, key) = (self.jid(of), self.key_hex(of));
        eprintln!(
            "{at} {} {of}",
            if trust { "authenticates" } else { "distrusts" }
        );
        match self.side(at) {
            Side::Ours(i) => {
                let now = Utc::now();
                let target = self.side(of);
                let driver = &mut self.net.devices[i].driver;
                match (trust, target) {
                    (true, Side::Ours(o)) => {
                        let uri = self.net.devices[o].driver.core().uri();
                        self.net.devices[i].driver.core().scan(&uri, now).unwrap();
                    }
                    (true, Side::Qxmpp(_)) => {
                        driver.core().authenticate(&jid, &key, now).unwrap();
                    }
                    (false, _) => {
                        driver.core().distrust(&jid, &key, now).unwrap();
                    }
                }
                self.net.devices[i].driver.flush().await.unwrap();
            }
            Side::Qxmpp(_) => {
                let cmd = if trust { "authenticate" } else { "distrust" };
                self.command(at, json!({"cmd": cmd, "jid": jid, "key_hex": key}))
                    .await;
            }
        }
    }

    /// Each device follows the other account (ours: roster + device list;
    /// QXmpp: presence subscription, then an explicit device-list
    /// subscription).
    pub async fn all_contacts(&mut self) {
        let jids: Vec<String> = {
            let names = self.all_names();
            let mut jids: Vec<String> = names.iter().map(|n| self.jid(n)).collect();
            jids.sort();
            jids.dedup();
            jids
        };
        // Ours first: a QXmpp peer accepts a subscription for the whole
        // account, after which the other account's PEP notifications reach
        // our devices too, which refuse them until they follow it.
        let mut order = self.names.clone();
        order.sort_by_key(|(_, side)| matches!(side, Side::Qxmpp(_)));
        for (name, side) in order {
            let own = self.jid(&name);
            for jid in jids.iter().filter(|j| **j != own) {
                match side {
                    Side::Ours(i) => self.net.devices[i]
                        .driver
                        .add_contact(&bare(jid))
                        .await
                        .unwrap(),
                    Side::Qxmpp(_) => {
                        self.command(&name, json!({"cmd": "subscribe_presence", "jid": jid}))
                            .await;
                    }
                }
            }
        }
    }

    /// Every device knows every other device's key (QXmpp learns keys
    /// through device-list notifications; asked again every few seconds).
    pub async fn everyone_known(&mut self) {
        let names = self.all_names();
        let started = Instant::now();
        let mut asked = Instant::now() - Duration::from_secs(60);
        loop {
            let missing: Vec<(String, String)> = names
                .iter()
                .flat_map(|at| names.iter().map(move |of| (at.clone(), of.clone())))
                .filter(|(at, of)| at != of)
                .filter(|(at, of)| self.level(at, of).is_none())
                .collect();
            if missing.is_empty() {
                eprintln!(
                    "every device knows every other: after {:?}",
                    started.elapsed()
                );
                return;
            }
            assert!(
                started.elapsed() < LIMIT,
                "not every device learned every other within {LIMIT:?}: missing {missing:?}\n{}",
                self.describe()
            );
            if asked.elapsed() > Duration::from_secs(5) {
                asked = Instant::now();
                for (name, side) in self.names.clone() {
                    if let Side::Qxmpp(_) = side {
                        let others: Vec<String> = missing
                            .iter()
                            .filter(|(at, _)| *at == name)
                            .map(|(_, of)| self.jid(of))
                            .collect::<HashSet<_>>()
                            .into_iter()
                            .collect();
                        if !others.is_empty() {
                            // Its answer may list errors (a node not yet
                            // published); the loop asks again.
                            let at = self.index(&name);
                            let Side::Qxmpp(p) = self.names[at].1 else {
                                unreachable!()
                            };
                            self.peers[p].send(json!({"cmd": "subscribe_devices", "jids": others}));
                        }
                    }
                }
            }
            self.round().await;
        }
    }

    pub fn describe(&mut self) -> String {
        let names = self.all_names();
        let mut out = String::new();
        for at in &names {
            let levels: Vec<String> = names
                .iter()
                .filter(|of| *of != at)
                .map(|of| format!("{of}:{}", self.level(at, of).unwrap_or("-".into())))
                .collect();
            out += &format!("{at} knows {}\n", levels.join(" "));
        }
        for peer in &self.peers {
            for w in peer.warnings() {
                out += &format!("  {} (QXmpp) logged: {w}\n", peer.name);
            }
        }
        for device in &self.net.devices {
            for event in &device.events {
                if matches!(
                    event,
                    Event::Rejected { .. } | Event::TrustMessageIgnored { .. }
                ) {
                    out += &format!("  {}: {event:?}\n", device.name);
                }
            }
        }
        out
    }

    /// Messages with a payload sent so far: (ours, QXmpp's).
    pub fn messages_sent(&self) -> (usize, usize) {
        let ours = self.shared.borrow().sent.values().sum();
        let theirs = self.peers.iter().map(Peer::payload_messages_sent).sum();
        (ours, theirs)
    }

    /// Closes our streams and stops the peers.
    pub async fn close(self) {
        let World { net, peers, .. } = self;
        drop(peers);
        net.close().await;
    }
}
