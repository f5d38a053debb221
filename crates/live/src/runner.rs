//! The live scenario runner.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use atm_client::{DeviceLearning, Endpoint, Event, Options, OsRandom, SecureRandom, Traffic};
use atm_endpoint::{Driver, Settings};
use atm_engine::{Cause, DecisionTimes, KeyId, KeyMode, Policy, TrustLevel, TrustMessage};
use atm_sim::scenario::{ExpectedLevel, Implementation, Order, Scenario, Step, COUNTERS};
use atm_sim::Counts;
use atm_store::Durability;
use atm_tm::{BareJid, Encryption, KeyOwner, TrustUri, Usage};
use atm_xmpp_server::client_tls::{register_in_band, TestCaConnector};
use atm_xmpp_server::{Kind, Server};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::qxmpp::Peer;

/// Which server the scenario is played on.
#[derive(Debug, Clone)]
pub enum ServerChoice {
    /// A private server of this kind, started on loopback for the run (its
    /// virtual hosts are the scenario's domains) and stopped at the end.
    Private(Kind),
    /// A running server: c2s at `addr`, its certificate signed by the CA
    /// in `ca` (PEM). The accounts are created by in-band registration
    /// (XEP-0077), each local part with a random suffix of this run
    /// (`alice` becomes `alice-3f9a1c`), so that runs never collide.
    Remote {
        /// Where clients connect (STARTTLS).
        addr: SocketAddr,
        /// The CA certificate that signed the server's certificate.
        ca: PathBuf,
    },
}

impl ServerChoice {
    /// Reads `--server`: `prosody`, `ejabberd`, or `HOST:PORT` (which needs
    /// `ca`).
    ///
    /// # Errors
    /// An unknown kind, an address that does not resolve, a missing `--ca`.
    pub fn parse(text: &str, ca: Option<&Path>) -> Result<Self, String> {
        match text {
            "prosody" => return Ok(ServerChoice::Private(Kind::Prosody)),
            "ejabberd" => return Ok(ServerChoice::Private(Kind::Ejabberd)),
            _ => {}
        }
        if !text.contains(':') {
            return Err(format!(
                "--server {text:?}: expected prosody, ejabberd or HOST:PORT"
            ));
        }
        let addr = text
            .to_socket_addrs()
            .map_err(|e| format!("--server {text:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("--server {text:?}: resolves to no address"))?;
        let ca = ca.ok_or_else(|| {
            format!("--server {text}: give --ca FILE, the CA certificate (PEM) that signed the server's certificate")
        })?;
        Ok(ServerChoice::Remote {
            addr,
            ca: ca.to_path_buf(),
        })
    }
}

/// How to play.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// The server.
    pub server: ServerChoice,
    /// Keep every endpoint's state directory in `DIR/NAME` (default: a
    /// temporary folder, removed afterwards). `DIR/NAME` must not hold a
    /// state already.
    pub store: Option<PathBuf>,
    /// How long the network may take to settle after a step.
    pub settle_limit: Duration,
    /// The quiet period of the settling rule.
    pub quiet: Duration,
    /// Fault injection: restart the (private) server right after these
    /// steps (indexes into `steps`) were played, before the network settles
    /// (their trust messages may be in flight), then wait until every
    /// online endpoint has reconnected.
    pub restart_server_after: Vec<usize>,
    /// The QXmpp peer binary (`interop/qxmpp-peer`) that plays the
    /// endpoints with `"implementation": "qxmpp"`; without it such a
    /// scenario is refused.
    pub qxmpp_peer: Option<PathBuf>,
    /// The quiet period when QXmpp endpoints take part (QXmpp works
    /// through asynchronous tasks; default 1 s).
    pub qxmpp_quiet: Duration,
    /// How long the network may stay quiet while a trust message sent to
    /// a QXmpp endpoint has not produced its `trust_message` event (QXmpp
    /// may be unable to read it) before the step counts as settled
    /// anyway, with a timeline line naming it (default 5 s).
    pub qxmpp_grace: Duration,
}

impl LiveOptions {
    /// The defaults for `server`: 90 s to settle, 300 ms quiet.
    pub fn new(server: ServerChoice) -> Self {
        LiveOptions {
            server,
            store: None,
            settle_limit: Duration::from_secs(90),
            quiet: Duration::from_millis(300),
            restart_server_after: Vec::new(),
            qxmpp_peer: None,
            qxmpp_quiet: Duration::from_secs(1),
            qxmpp_grace: Duration::from_secs(5),
        }
    }
}

/// Why a run did not happen.
#[derive(Debug)]
pub enum LiveError {
    /// The scenario cannot be played on a real network (exit 2); nothing ran.
    Refused(String),
    /// The live network could not be set up (server, registration, login).
    Setup(String),
}

impl std::fmt::Display for LiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LiveError::Refused(m) => write!(f, "{m}"),
            LiveError::Setup(m) => write!(f, "setting up the live network: {m}"),
        }
    }
}

impl std::error::Error for LiveError {}

/// The outcome of a run: the scenario format's JSON object and timeline.
#[derive(Debug, Clone)]
pub struct LiveOutcome {
    /// `true` if every expectation held.
    pub ok: bool,
    /// The JSON object of the scenario format.
    pub json: Value,
    /// The readable timeline and summary.
    pub text: String,
    /// Wall time of the run (server start included).
    pub elapsed: Duration,
}

/// Why `scenario` cannot be played over XMPP (`None`: it can): the first
/// `replay` or `inject` step, `"keys": "per-account"`, an encryption other
/// than OMEMO 2. Named by JSON path.
pub fn refusal(scenario: &Scenario) -> Option<String> {
    if scenario.keys == KeyMode::PerAccount {
        return Some(
            "keys: \"per-account\" cannot be played over --transport xmpp: every OMEMO 2 device has its own key".into(),
        );
    }
    if scenario.encryption != Encryption::OMEMO2 {
        return Some(format!(
            "encryption: {:?} cannot be played over --transport xmpp, which speaks {}",
            scenario.encryption.as_str(),
            Encryption::OMEMO2.as_str()
        ));
    }
    for (index, step) in scenario.steps.iter().enumerate() {
        let kind = match step {
            Step::Replay { .. } => "replay",
            Step::Inject { .. } => "inject",
            _ => continue,
        };
        return Some(format!(
            "steps[{index}].{kind}: cannot happen on a real network (--transport xmpp plays no {kind} steps)"
        ));
    }
    qxmpp_refusal(scenario)
}

/// What a scenario with QXmpp endpoints asks that the QXmpp peer cannot do
/// (`docs/live-scenarios.md`, "Mixed scenarios").
fn qxmpp_refusal(scenario: &Scenario) -> Option<String> {
    let qxmpp: HashSet<&str> = scenario
        .endpoints
        .iter()
        .filter(|e| e.implementation == Implementation::Qxmpp)
        .map(|e| e.name.as_str())
        .collect();
    if qxmpp.is_empty() {
        return None;
    }
    for (index, e) in scenario.endpoints.iter().enumerate() {
        if e.implementation == Implementation::Qxmpp && e.joins_later {
            return Some(format!(
                "endpoints[{index}].joins_later: {} is a QXmpp endpoint, and a scenario with QXmpp endpoints has no join steps (QXmpp learns every device a followed device list names at once)",
                e.name
            ));
        }
    }
    for (index, step) in scenario.steps.iter().enumerate() {
        let reason = match step {
            Step::Join(e) => format!(
                "steps[{index}].join: not in a scenario with QXmpp endpoints: QXmpp learns every device that a followed device list names at once, so the QXmpp endpoints would know {e:?} before any fetch"
            ),
            Step::Restart(e) if qxmpp.contains(e.as_str()) => format!(
                "steps[{index}].restart: {e:?} is a QXmpp endpoint, and the QXmpp peer keeps its state in memory only: a restart would lose it"
            ),
            Step::Offline(e) | Step::Online { endpoint: e, .. } if qxmpp.contains(e.as_str()) => {
                let kind = if matches!(step, Step::Offline(_)) { "offline" } else { "online" };
                format!(
                    "steps[{index}].{kind}: {e:?} is a QXmpp endpoint, and the QXmpp peer cannot disconnect and come back with what was kept for it (it does no archive catch-up)"
                )
            }
            _ => continue,
        };
        return Some(reason);
    }
    None
}

/// [`refusal`], and what `options` cannot do for `scenario`: QXmpp
/// endpoints without a peer binary (`--qxmpp-peer`), a peer path that is
/// no file, server restarts with QXmpp endpoints.
pub fn refusal_with(scenario: &Scenario, options: &LiveOptions) -> Option<String> {
    if let Some(reason) = refusal(scenario) {
        return Some(reason);
    }
    let (index, endpoint) = scenario.first_foreign_endpoint()?;
    let Some(peer) = &options.qxmpp_peer else {
        return Some(format!(
            "endpoints[{index}].implementation: {:?} ({}) needs the QXmpp peer of interop/qxmpp-peer: give --qxmpp-peer PATH or set ATM_QXMPP_PEER",
            endpoint.implementation.as_str(),
            endpoint.name
        ));
    };
    if !peer.is_file() {
        return Some(format!(
            "--qxmpp-peer {}: no such file (the QXmpp peer binary, see docs/interop.md)",
            peer.display()
        ));
    }
    if !options.restart_server_after.is_empty() {
        return Some(
            "restarting the server is not played with QXmpp endpoints (the QXmpp peer does not reconnect)".into(),
        );
    }
    None
}

enum Link {
    /// Not joined yet.
    Absent,
    Online(Box<Driver>),
    Offline(Box<Endpoint>),
    /// A QXmpp endpoint (always online).
    Qxmpp(Box<Qx>),
    /// Transient, while being connected or restarted.
    Moving,
}

struct Node {
    name: String,
    /// The account on the server.
    jid: BareJid,
    dir: PathBuf,
    link: Link,
    key: Option<KeyId>,
    device_id: u32,
    /// `learn_device` requests made while offline.
    deferred: Vec<(BareJid, u32)>,
    /// (sender account, stanza id) of every OMEMO message that arrived.
    arrived: HashSet<(BareJid, String)>,
    /// Trust messages without a stanza id (QXmpp writes none) read, by
    /// sender account.
    arrived_without_id: HashMap<BareJid, usize>,
}

/// A QXmpp endpoint's peer process and what the runner learned from it.
struct Qx {
    peer: Peer,
    /// (owner, key) -> level, from its `trust_changed` events.
    levels: HashMap<(BareJid, KeyId), TrustLevel>,
    /// Keys of a manual decision whose new level has not been reported
    /// yet: `true` to authenticate, `false` to distrust.
    manual: HashMap<(BareJid, KeyId), bool>,
    /// `trust_message` events (decrypted trust messages), by sender node.
    received: HashMap<usize, usize>,
    /// When it last asked for the device lists of the keys it misses.
    asked: Option<Instant>,
}

impl Node {
    fn core(&mut self) -> Result<&mut Endpoint, String> {
        match &mut self.link {
            Link::Online(driver) => Ok(driver.core()),
            Link::Offline(core) => Ok(core),
            Link::Qxmpp(_) => Err(format!("{:?} is a QXmpp endpoint", self.name)),
            Link::Absent | Link::Moving => Err(format!("endpoint {:?} has not joined", self.name)),
        }
    }
    fn online(&self) -> bool {
        matches!(self.link, Link::Online(_) | Link::Qxmpp(_))
    }
    fn exists(&self) -> bool {
        matches!(
            self.link,
            Link::Online(_) | Link::Offline(_) | Link::Qxmpp(_)
        )
    }
    fn qx(&mut self) -> Option<&mut Qx> {
        match &mut self.link {
            Link::Qxmpp(qx) => Some(qx),
            _ => None,
        }
    }
    fn is_qxmpp(&self) -> bool {
        matches!(self.link, Link::Qxmpp(_))
    }
}

struct Sent {
    seq: u64,
    from: usize,
    sender: BareJid,
    id: String,
    to: Vec<usize>,
    time: DateTime<Utc>,
    xml: String,
    /// Sent by a QXmpp endpoint: no stanza id; `time` and `xml` are what a
    /// QXmpp recipient read (until one did: when the runner saw it go out,
    /// and empty).
    qxmpp: bool,
}

struct Live<'a> {
    scenario: &'a Scenario,
    options: &'a LiveOptions,
    nodes: Vec<Node>,
    /// Account on the server -> account in the scenario.
    accounts: HashMap<BareJid, BareJid>,
    connector: TestCaConnector,
    password: String,
    server: Option<Server>,
    counts: Counts,
    messages: Vec<Sent>,
    by_id: HashMap<(BareJid, String), usize>,
    /// Lines of the current step.
    lines: Vec<String>,
    /// Where QXmpp peers connect: the c2s address and the CA (PEM).
    target: (SocketAddr, PathBuf),
    /// Whether QXmpp endpoints take part.
    mixed: bool,
    /// (QXmpp recipient, sender) -> trust messages the settling stopped
    /// waiting for (no `trust_message` event within the grace period).
    excused: HashMap<(usize, usize), usize>,
}

fn random_hex(bytes: usize) -> Result<String, String> {
    let mut buffer = vec![0u8; bytes];
    OsRandom
        .try_fill(&mut buffer)
        .map_err(|e| format!("no randomness: {e}"))?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

/// Plays `scenario` live (see the crate docs). Every step runs even after a
/// failure; a step that could not be played is a failure of that step.
///
/// # Errors
/// [`LiveError::Refused`] (see [`refusal`]) before anything runs;
/// [`LiveError::Setup`] when the server, the registration or a login failed.
pub async fn run(scenario: &Scenario, options: &LiveOptions) -> Result<LiveOutcome, LiveError> {
    let started = Instant::now();
    if let Some(reason) = refusal_with(scenario, options) {
        return Err(LiveError::Refused(reason));
    }
    let temporary = tempfile::Builder::new()
        .prefix("atm-live-")
        .tempdir()
        .map_err(|e| LiveError::Setup(format!("temporary folder: {e}")))?;
    let root = options
        .store
        .clone()
        .unwrap_or_else(|| temporary.path().to_path_buf());
    let mut live = Live::set_up(scenario, options, &root).await?;
    let outcome = live.play().await;
    live.close().await;
    let (ok, json, text) = outcome.map_err(LiveError::Setup)?;
    Ok(LiveOutcome {
        ok,
        json,
        text,
        elapsed: started.elapsed(),
    })
}

impl<'a> Live<'a> {
    async fn set_up(
        scenario: &'a Scenario,
        options: &'a LiveOptions,
        root: &Path,
    ) -> Result<Live<'a>, LiveError> {
        let setup = LiveError::Setup;
        let password = random_hex(16).map_err(setup)?;
        let (server, connector, suffix, target) = match &options.server {
            ServerChoice::Private(kind) => {
                let domains: BTreeSet<String> = scenario
                    .endpoints
                    .iter()
                    .map(|e| e.jid.domain().as_str().to_owned())
                    .collect();
                let mut server_options = atm_xmpp_server::Options::new(*kind);
                server_options.domains = domains.into_iter().collect();
                let server =
                    tokio::task::spawn_blocking(move || Server::start_with(server_options))
                        .await
                        .map_err(|e| setup(e.to_string()))?
                        .map_err(|e| {
                            setup(format!("the private {kind:?} server did not start: {e}"))
                        })?;
                let connector = server.connector().map_err(|e| setup(e.to_string()))?;
                let target = (server.c2s_addr(), server.ca_pem_path().to_path_buf());
                (Some(server), connector, String::new(), target)
            }
            ServerChoice::Remote { addr, ca } => {
                let connector = TestCaConnector::from_ca_file(*addr, ca)
                    .map_err(|e| setup(format!("--ca {}: {e}", ca.display())))?;
                (
                    None,
                    connector,
                    format!("-{}", random_hex(3).map_err(setup)?),
                    (*addr, ca.clone()),
                )
            }
        };
        let mut accounts = HashMap::new();
        let mut nodes = Vec::new();
        for spec in &scenario.endpoints {
            let local = spec.jid.node().map(|n| n.as_str()).unwrap_or_default();
            let domain = spec.jid.domain().as_str();
            let real: BareJid = format!("{local}{suffix}@{domain}")
                .parse()
                .map_err(|e| setup(format!("account of {}: {e}", spec.name)))?;
            if !accounts.contains_key(&real) {
                register_in_band(
                    &connector,
                    &format!("{local}{suffix}"),
                    domain,
                    &password,
                    Duration::from_secs(30),
                )
                .await
                .map_err(|e| setup(format!("registering {real}: {e}")))?;
                accounts.insert(real.clone(), spec.jid.clone());
            }
            let dir = root.join(&spec.name);
            if dir.join(atm_client::DATABASE_FILE).exists() {
                return Err(setup(format!(
                    "{} already holds an endpoint's state; give an empty --store folder",
                    dir.display()
                )));
            }
            nodes.push(Node {
                name: spec.name.clone(),
                jid: real,
                dir,
                link: Link::Absent,
                key: None,
                device_id: 0,
                deferred: Vec::new(),
                arrived: HashSet::new(),
                arrived_without_id: HashMap::new(),
            });
        }
        let mut live = Live {
            scenario,
            options,
            nodes,
            accounts,
            connector,
            password,
            server,
            counts: Counts::default(),
            messages: Vec::new(),
            by_id: HashMap::new(),
            lines: Vec::new(),
            target,
            mixed: scenario.first_foreign_endpoint().is_some(),
            excused: HashMap::new(),
        };
        // Every endpoint that exists at the start knows every other's key.
        let starting: Vec<usize> = (0..scenario.endpoints.len())
            .filter(|&i| !scenario.endpoints[i].joins_later)
            .collect();
        // Ours first: a QXmpp peer accepts a presence subscription for
        // its whole account, after which that account's PEP notifications
        // reach ours, which refuse them until they follow it.
        let mut order = starting.clone();
        order.sort_by_key(|&i| scenario.endpoints[i].implementation == Implementation::Qxmpp);
        for i in order {
            live.create(i).await.map_err(setup)?;
        }
        live.settle().await.map_err(setup)?;
        for &i in &starting {
            live.learn_all(i).await.map_err(setup)?;
        }
        live.until_known(&starting, &starting)
            .await
            .map_err(setup)?;
        live.settle().await.map_err(setup)?;
        live.lines.clear();
        Ok(live)
    }

    fn open_options(&self) -> Options {
        Options {
            durability: Durability::Normal,
            propagation: self.scenario.propagation,
            device_learning: DeviceLearning::OnRequest,
            record_traffic: true,
        }
    }

    fn open_core(&self, i: usize) -> Result<Endpoint, String> {
        let node = &self.nodes[i];
        Endpoint::open_with(
            &node.dir,
            &node.jid,
            Utc::now(),
            Box::new(OsRandom),
            self.open_options(),
        )
        .map_err(|e| format!("{}: {e}", node.name))
    }

    async fn connect(&mut self, i: usize, core: Endpoint, hold: bool) -> Result<(), String> {
        let name = self.nodes[i].name.clone();
        let connector = self.connector.clone();
        let driver = if hold {
            Driver::connect_holding(core, connector, &self.password, Settings::default()).await
        } else {
            Driver::connect(core, connector, &self.password, Settings::default()).await
        }
        .map_err(|e| format!("{name}: {e}"))?;
        let mut driver = Box::new(driver);
        for (jid, device) in std::mem::take(&mut self.nodes[i].deferred) {
            driver.core().learn_device(&jid, device);
        }
        driver.flush().await.map_err(|e| format!("{name}: {e}"))?;
        self.nodes[i].link = Link::Online(driver);
        Ok(())
    }

    /// A new endpoint: its state directory, its policy, online, following
    /// every account of the scenario.
    async fn create(&mut self, i: usize) -> Result<(), String> {
        if self.scenario.endpoints[i].implementation == Implementation::Qxmpp {
            return self.create_qxmpp(i).await;
        }
        let mut core = self.open_core(i)?;
        if self.scenario.policy == Policy::Manual {
            core.set_policy(Policy::Manual, Utc::now())
                .map_err(|e| format!("{}: {e}", self.nodes[i].name))?;
        }
        self.nodes[i].key = Some(core.own_key().clone());
        self.nodes[i].device_id = core.device_id();
        self.connect(i, core, false).await?;
        let own = self.nodes[i].jid.clone();
        let others: BTreeSet<BareJid> = self
            .nodes
            .iter()
            .map(|n| n.jid.clone())
            .filter(|j| *j != own)
            .collect();
        let name = self.nodes[i].name.clone();
        if let Link::Online(driver) = &mut self.nodes[i].link {
            for jid in others {
                driver
                    .add_contact(&jid)
                    .await
                    .map_err(|e| format!("{name}: {e}"))?;
            }
        }
        self.drain(i);
        Ok(())
    }

    /// `by` asks for the bundle of `of`'s device (now, or when it is online).
    fn learn(&mut self, by: usize, of: usize) -> Result<(), String> {
        if self.nodes[of].key.is_none() {
            return Err(format!("{} has not joined", self.nodes[of].name));
        }
        if by == of || self.nodes[by].key == self.nodes[of].key || self.nodes[by].is_qxmpp() {
            // QXmpp learns devices through device-list subscriptions
            // (`until_known` asks for the lists it misses).
            return Ok(());
        }
        let (jid, device) = (self.nodes[of].jid.clone(), self.nodes[of].device_id);
        match &mut self.nodes[by].link {
            Link::Online(driver) => driver.core().learn_device(&jid, device),
            _ => self.nodes[by].deferred.push((jid, device)),
        }
        Ok(())
    }

    async fn learn_all(&mut self, i: usize) -> Result<(), String> {
        for of in 0..self.nodes.len() {
            if of != i && self.nodes[of].exists() {
                self.learn(i, of)?;
            }
        }
        self.flush(i).await
    }

    async fn flush(&mut self, i: usize) -> Result<(), String> {
        let name = self.nodes[i].name.clone();
        if let Link::Online(driver) = &mut self.nodes[i].link {
            driver.flush().await.map_err(|e| format!("{name}: {e}"))?;
        }
        self.drain(i);
        Ok(())
    }

    /// The level `at` holds for the key of `of`.
    fn level(&mut self, at: usize, of: usize) -> Result<Option<TrustLevel>, String> {
        let key = self.nodes[of]
            .key
            .clone()
            .ok_or_else(|| format!("{} has not joined", self.nodes[of].name))?;
        let owner = self.nodes[of].jid.clone();
        if let Some(qx) = self.nodes[at].qx() {
            return Ok(qx.levels.get(&(owner, key)).copied());
        }
        let keys = self.nodes[at].core()?.keys().map_err(|e| e.to_string())?;
        Ok(keys
            .into_iter()
            .find(|k| k.owner == owner && k.key == key)
            .map(|k| k.level))
    }

    /// Steps until every online one of `by` knows the key of every one of
    /// `of`, within the settling limit.
    async fn until_known(&mut self, by: &[usize], of: &[usize]) -> Result<(), String> {
        let deadline = Instant::now() + self.options.settle_limit;
        loop {
            let mut missing = Vec::new();
            for &b in by {
                if !self.nodes[b].online() {
                    continue;
                }
                for &o in of {
                    if b != o
                        && self.nodes[b].key != self.nodes[o].key
                        && self.level(b, o)?.is_none()
                    {
                        missing.push(format!(
                            "{} does not know {}",
                            self.nodes[b].name, self.nodes[o].name
                        ));
                    }
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            self.ask_device_lists(by, of).await?;
            if Instant::now() >= deadline {
                return Err(format!(
                    "keys not learned within {:?}: {}",
                    self.options.settle_limit,
                    missing.join("; ")
                ));
            }
            self.round().await?;
        }
    }

    /// One round: every online driver processes what arrived (waiting a
    /// little); events and traffic are collected. Returns whether anything
    /// arrived.
    async fn round(&mut self) -> Result<bool, String> {
        let mut arrived = false;
        let mut stepped = false;
        // The peers first: what a QXmpp device sent is then usually known
        // before one of ours reports it arrived (the timeline names it).
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_qxmpp() {
                arrived |= self.poll_qxmpp(i)?;
            }
        }
        for i in 0..self.nodes.len() {
            let name = self.nodes[i].name.clone();
            if let Link::Online(driver) = &mut self.nodes[i].link {
                stepped = true;
                arrived |= driver
                    .step(Duration::from_millis(5))
                    .await
                    .map_err(|e| format!("{name}: {e}"))?;
            }
            if self.nodes[i].is_qxmpp() {
                arrived |= self.poll_qxmpp(i)?;
            }
            self.drain(i);
        }
        if !stepped {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(arrived)
    }

    /// Collects the events and traffic of endpoint `i`.
    fn drain(&mut self, i: usize) {
        let mut events = Vec::new();
        let mut traffic = Vec::new();
        if self.nodes[i].is_qxmpp() {
            // A peer that is gone is reported by the next round.
            let _ = self.poll_qxmpp(i);
            return;
        }
        match &mut self.nodes[i].link {
            Link::Online(driver) => {
                while let Some(event) = driver.poll_event() {
                    events.push(event);
                }
                traffic = driver.core().take_traffic();
            }
            Link::Offline(core) => {
                while let Some(event) = core.poll_event() {
                    events.push(event);
                }
                traffic = core.take_traffic();
            }
            Link::Absent | Link::Moving | Link::Qxmpp(_) => {}
        }
        for t in traffic {
            self.traffic(i, t);
        }
        for event in events {
            self.event(i, event);
        }
    }

    fn traffic(&mut self, i: usize, traffic: Traffic) {
        match traffic {
            Traffic::Sent {
                id,
                recipients,
                time,
                xml,
                ..
            } => {
                let to: Vec<usize> = (0..self.nodes.len())
                    .filter(|&j| {
                        j != i
                            && self.nodes[j].key.as_ref().is_some_and(|k| {
                                recipients
                                    .iter()
                                    .any(|r| r.owner == self.nodes[j].jid && r.key == *k)
                            })
                    })
                    .collect();
                let seq = self.messages.len() as u64 + 1;
                let sender = self.nodes[i].jid.clone();
                self.by_id
                    .insert((sender.clone(), id.clone()), self.messages.len());
                self.counts.trust_messages_sent += 1;
                let sent = Sent {
                    seq,
                    from: i,
                    sender,
                    id,
                    to,
                    time,
                    xml,
                    qxmpp: false,
                };
                let line = format!(
                    "  message #{seq} {} -> {} at {}: {}",
                    self.nodes[i].name,
                    sent.to
                        .iter()
                        .map(|&j| self.nodes[j].name.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                    DecisionTimes::format_time(time),
                    self.owners_text(&sent.xml)
                );
                self.lines.push(line);
                self.messages.push(sent);
            }
            Traffic::Arrived {
                from,
                id,
                trust_message,
            } => {
                let Some(id) = id else {
                    // Only QXmpp's messages have no id.
                    if trust_message {
                        self.counts.deliveries += 1;
                        let count = self.nodes[i]
                            .arrived_without_id
                            .entry(from.clone())
                            .or_default();
                        *count += 1;
                        let nth = *count - 1;
                        if self
                            .nth_message_to(i, nth, |m| m.qxmpp && m.sender == from)
                            .is_none()
                        {
                            // The peer wrote its line before the stanza
                            // left; it may not have been read yet.
                            for q in 0..self.nodes.len() {
                                if self.nodes[q].jid == from {
                                    let _ = self.poll_qxmpp(q);
                                }
                            }
                        }
                        let what = self
                            .nth_message_to(i, nth, |m| m.qxmpp && m.sender == from)
                            .map_or_else(
                                || format!("a trust message from {}", self.scenario_jid(&from)),
                                |m| format!("message #{}", self.messages[m].seq),
                            );
                        let line = format!("  {} receives {what}", self.nodes[i].name);
                        self.lines.push(line);
                    }
                    return;
                };
                self.nodes[i].arrived.insert((from.clone(), id.clone()));
                if trust_message {
                    self.counts.deliveries += 1;
                    let what = match self.by_id.get(&(from.clone(), id)) {
                        Some(&m) => format!("message #{}", self.messages[m].seq),
                        None => format!("a trust message from {}", self.scenario_jid(&from)),
                    };
                    let line = format!("  {} receives {what}", self.nodes[i].name);
                    self.lines.push(line);
                }
            }
        }
    }

    fn event(&mut self, at: usize, event: Event) {
        let name = self.nodes[at].name.clone();
        let line = match event {
            Event::TrustChanged {
                key,
                from,
                to,
                cause,
            } => {
                let automatic = cause.is_trust_message();
                let manual = cause == Cause::Manual;
                match to {
                    TrustLevel::Authenticated if manual => self.counts.manual_authentications += 1,
                    TrustLevel::Authenticated if automatic => {
                        self.counts.automatic_authentications += 1
                    }
                    l if l.is_distrusted() && manual => self.counts.manual_distrusts += 1,
                    l if l.is_distrusted() && automatic => self.counts.automatic_distrusts += 1,
                    _ => {}
                }
                if matches!(cause, Cause::KeyLearned) {
                    return;
                }
                format!(
                    "  {name}: {} {} -> {} ({})",
                    self.key_name(&key.owner, &key.key),
                    from.map_or("unknown", TrustLevel::as_str),
                    to,
                    self.cause_text(&cause)
                )
            }
            Event::DecisionPostponed { target, .. } => format!(
                "  {name}: decision about {} stored (sender not authenticated yet)",
                self.key_name(&target.owner, &target.key)
            ),
            Event::TrustMessageIgnored { reason } => format!("  {name}: ignored: {reason:?}"),
            Event::Rejected { rejection, .. } => format!("  {name}: refused: {rejection}"),
            Event::PublishFailed { node, reason } => {
                format!("  {name}: the server refused a publication to {node}: {reason}")
            }
            Event::RecipientUnknown { key } => format!(
                "  {name}: cannot encrypt for {} (no bundle)",
                self.key_name(&key.owner, &key.key)
            ),
            Event::DeviceAppeared { .. } | Event::Chat { .. } => return,
        };
        self.lines.push(line);
    }

    fn scenario_jid(&self, real: &BareJid) -> String {
        self.accounts
            .get(real)
            .map_or_else(|| real.to_string(), ToString::to_string)
    }

    /// The endpoint name of a key, or its Base64 identifier.
    fn key_name(&self, owner: &BareJid, key: &KeyId) -> String {
        self.nodes
            .iter()
            .find(|n| n.jid == *owner && n.key.as_ref() == Some(key))
            .map_or_else(|| key.to_base64(), |n| n.name.clone())
    }

    fn cause_text(&self, cause: &Cause) -> String {
        let name = |k: &atm_engine::KeyRef| self.key_name(&k.owner, &k.key);
        match cause {
            Cause::Manual => "by the user".into(),
            Cause::TrustMessage(s) => format!("trust message from {}", name(s)),
            Cause::Postponed(s) => format!("stored word of {}, now authenticated", name(s)),
            Cause::Pending(Some(s)) => format!("stored word of {}, key now known", name(s)),
            Cause::Pending(None) => "stored decision, key now known".into(),
            Cause::Confirmed(s) => format!("confirmed word of {}", name(s)),
            Cause::Policy => "TOAKAFA policy".into(),
            Cause::KeyLearned => "key learned".into(),
            Cause::Revoked(s) => format!("void word of {}, said after it was distrusted", name(s)),
        }
    }

    fn key_owners(&self, xml: &str) -> Vec<(String, Vec<String>, Vec<String>)> {
        let Ok(message) = TrustMessage::parse(xml) else {
            return Vec::new();
        };
        message
            .key_owners
            .iter()
            .map(|o| {
                let names = |keys: &[KeyId]| {
                    keys.iter()
                        .map(|k| self.key_name(&o.jid, k))
                        .collect::<Vec<_>>()
                };
                (
                    self.scenario_jid(&o.jid),
                    names(&o.trust),
                    names(&o.distrust),
                )
            })
            .collect()
    }

    fn owners_text(&self, xml: &str) -> String {
        self.key_owners(xml)
            .into_iter()
            .map(|(jid, trust, distrust)| {
                let mut s = jid;
                if !trust.is_empty() {
                    let _ = write!(s, " trust [{}]", trust.join(" "));
                }
                if !distrust.is_empty() {
                    let _ = write!(s, " distrust [{}]", distrust.join(" "));
                }
                s
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Messages sent by an online endpoint that an online recipient has not
    /// received yet: those our endpoints miss (matched by stanza id, or
    /// for QXmpp's messages, which have none, by their number per sender
    /// account), and those QXmpp endpoints have not reported as
    /// `trust_message` events (by their number per sender).
    fn undelivered(&self) -> (Vec<String>, Vec<String>) {
        let mut missing = Vec::new();
        let mut from_qxmpp: HashMap<(usize, &BareJid), Vec<u64>> = HashMap::new();
        let mut to_qxmpp: HashMap<(usize, usize), Vec<u64>> = HashMap::new();
        for m in &self.messages {
            if !self.nodes[m.from].online() {
                continue; // still in its outbox: it goes out when it is back
            }
            for &r in &m.to {
                if !self.nodes[r].online() {
                    continue;
                }
                if self.nodes[r].is_qxmpp() {
                    to_qxmpp.entry((r, m.from)).or_default().push(m.seq);
                } else if m.qxmpp {
                    from_qxmpp.entry((r, &m.sender)).or_default().push(m.seq);
                } else if !self.nodes[r]
                    .arrived
                    .contains(&(m.sender.clone(), m.id.clone()))
                {
                    missing.push(format!(
                        "message #{} not yet at {}",
                        m.seq, self.nodes[r].name
                    ));
                }
            }
        }
        for ((r, sender), seqs) in from_qxmpp {
            let have = self.nodes[r]
                .arrived_without_id
                .get(sender)
                .copied()
                .unwrap_or(0);
            for seq in seqs.into_iter().skip(have) {
                missing.push(format!("message #{seq} not yet at {}", self.nodes[r].name));
            }
        }
        let mut unreported = Vec::new();
        for ((r, sender), seqs) in to_qxmpp {
            let Link::Qxmpp(qx) = &self.nodes[r].link else {
                continue;
            };
            let have = qx.received.get(&sender).copied().unwrap_or(0)
                + self.excused.get(&(r, sender)).copied().unwrap_or(0);
            for seq in seqs.into_iter().skip(have) {
                unreported.push((r, sender, seq));
            }
        }
        missing.sort();
        unreported.sort();
        let unreported = unreported
            .into_iter()
            .map(|(r, _, seq)| {
                format!(
                    "message #{seq}: no trust_message event yet at {} (QXmpp)",
                    self.nodes[r].name
                )
            })
            .collect();
        (missing, unreported)
    }

    /// Steps until the network has settled: every online driver has
    /// nothing unacknowledged, no request without its answer and nothing
    /// held; every QXmpp peer has answered every command; every trust
    /// message sent by an online endpoint has reached every online
    /// recipient of ours, and every QXmpp recipient has reported it, or
    /// nothing arrived anywhere for the grace period since; and nothing
    /// arrived anywhere for the quiet period. Bounded by the settling limit.
    async fn settle(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + self.options.settle_limit;
        let quiet = if self.mixed {
            self.options.quiet.max(self.options.qxmpp_quiet)
        } else {
            self.options.quiet
        };
        let mut quiet_since = Instant::now();
        loop {
            if self.round().await? {
                quiet_since = Instant::now();
            }
            let mut busy = Vec::new();
            for node in &mut self.nodes {
                match &mut node.link {
                    Link::Online(driver) => {
                        let (unacked, held) = (driver.unacknowledged(), driver.held());
                        let pending = driver.core().pending_requests();
                        if unacked + held + pending > 0 {
                            busy.push(format!(
                                "{}: {unacked} unacknowledged, {pending} requests unanswered, {held} held",
                                node.name
                            ));
                        }
                    }
                    Link::Qxmpp(qx) if qx.peer.outstanding() > 0 => busy.push(format!(
                        "{} (QXmpp): {} commands unanswered",
                        node.name,
                        qx.peer.outstanding()
                    )),
                    _ => {}
                }
            }
            let (missing, unreported) = self.undelivered();
            busy.extend(missing);
            if busy.is_empty() && quiet_since.elapsed() >= quiet {
                if unreported.is_empty() {
                    return Ok(());
                }
                if quiet_since.elapsed() >= self.options.qxmpp_grace {
                    self.excuse_unreported();
                    self.lines.push(format!(
                        "  settled after {:?} of quiet without: {}",
                        self.options.qxmpp_grace,
                        unreported.join("; ")
                    ));
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                busy.extend(unreported);
                return Err(format!(
                    "the network did not settle within {:?}: {}",
                    self.options.settle_limit,
                    busy.join("; ")
                ));
            }
        }
    }

    fn index(&self, name: &str) -> Result<usize, String> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| format!("unknown endpoint {name:?}"))
    }

    async fn play(&mut self) -> Result<(bool, Value, String), String> {
        let steps = self.scenario.steps.clone();
        let mut failures: Vec<(usize, String)> = Vec::new();
        let mut step_lines: Vec<Vec<String>> = Vec::new();
        for (index, step) in steps.iter().enumerate() {
            let played = self.step(step).await;
            let mut found = Vec::new();
            if self.options.restart_server_after.contains(&index) {
                // Before settling: what the step sent may be in flight.
                if let Err(e) = self.restart_server().await {
                    found.push(e);
                }
            }
            match played {
                Ok(()) => found.extend(self.settle().await.err()),
                Err(message) => {
                    // Whatever the step started still settles.
                    let _ = self.settle().await;
                    found.push(message);
                }
            }
            match self.check(step).await {
                Ok(messages) => found.extend(messages),
                Err(message) => found.push(message),
            }
            failures.extend(found.into_iter().map(|m| (index, m)));
            step_lines.push(std::mem::take(&mut self.lines));
        }
        let counts = self.counts_now()?;
        let json = self.json_object(&failures, &counts).await?;
        let text = self.timeline(&steps, &step_lines, &failures, &counts);
        Ok((failures.is_empty(), json, text))
    }

    async fn restart_server(&mut self) -> Result<(), String> {
        let before: Vec<Option<u32>> = self
            .nodes
            .iter()
            .map(|n| match &n.link {
                Link::Online(d) => Some(d.resets()),
                _ => None,
            })
            .collect();
        let Some(mut server) = self.server.take() else {
            return Err("restart_server_after needs a private server".into());
        };
        let (server, result) = tokio::task::spawn_blocking(move || {
            let result = server.restart();
            (server, result)
        })
        .await
        .map_err(|e| e.to_string())?;
        self.server = Some(server);
        result.map_err(|e| format!("restarting the server: {e}"))?;
        self.lines.push("  the server restarts".into());
        let deadline = Instant::now() + self.options.settle_limit;
        loop {
            let waiting: Vec<String> = self
                .nodes
                .iter()
                .zip(&before)
                .filter_map(|(n, b)| match (&n.link, b) {
                    (Link::Online(d), Some(b)) if d.resets() <= *b => Some(n.name.clone()),
                    _ => None,
                })
                .collect();
            if waiting.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not reconnected after the server restart within {:?}: {}",
                    self.options.settle_limit,
                    waiting.join(", ")
                ));
            }
            self.round().await?;
        }
        self.settle().await
    }

    async fn step(&mut self, step: &Step) -> Result<(), String> {
        match step {
            Step::Authenticate { by, keys_of } | Step::Distrust { by, keys_of } => {
                let authenticate = matches!(step, Step::Authenticate { .. });
                let by = self.index(by)?;
                for of in keys_of {
                    let of = self.index(of)?;
                    self.decide(by, of, authenticate).await?;
                }
            }
            Step::Scan { by, uri_of } => {
                let (by, of) = (self.index(by)?, self.index(uri_of)?);
                self.scan(by, of).await?;
            }
            Step::Offline(e) => {
                let i = self.index(e)?;
                self.drain(i);
                match std::mem::replace(&mut self.nodes[i].link, Link::Moving) {
                    Link::Online(driver) => {
                        let core = driver.close().await;
                        self.nodes[i].link = Link::Offline(Box::new(core));
                    }
                    other => self.nodes[i].link = other,
                }
            }
            Step::Online { endpoint, order } => {
                let i = self.index(endpoint)?;
                let reverse = *order == Order::Reverse;
                match std::mem::replace(&mut self.nodes[i].link, Link::Moving) {
                    Link::Offline(core) => {
                        if let Err(e) = self.connect(i, *core, reverse).await {
                            // The core is gone with the failed driver: reopen.
                            let core = self.open_core(i)?;
                            self.nodes[i].link = Link::Offline(Box::new(core));
                            return Err(e);
                        }
                        if reverse {
                            self.release_reversed(i).await?;
                        }
                    }
                    other => self.nodes[i].link = other,
                }
            }
            Step::Join(e) => {
                let i = self.index(e)?;
                if self.nodes[i].exists() {
                    return Err(format!("endpoint {e:?} already exists"));
                }
                self.create(i).await?;
                self.settle().await?;
                self.learn_all(i).await?;
                let existing: Vec<usize> = (0..self.nodes.len())
                    .filter(|&j| self.nodes[j].exists())
                    .collect();
                self.until_known(&[i], &existing).await?;
            }
            Step::Fetch { by, keys_of } => {
                let by: Vec<usize> = match by {
                    None => (0..self.nodes.len())
                        .filter(|&i| self.nodes[i].exists())
                        .collect(),
                    Some(list) => list
                        .iter()
                        .map(|n| self.index(n))
                        .collect::<Result<_, _>>()?,
                };
                let of: Vec<usize> = keys_of
                    .iter()
                    .map(|n| self.index(n))
                    .collect::<Result<_, _>>()?;
                for &b in &by {
                    for &o in &of {
                        self.learn(b, o)?;
                    }
                    self.flush(b).await?;
                }
                self.until_known(&by, &of).await?;
            }
            Step::Restart(e) => {
                let i = self.index(e)?;
                self.drain(i);
                match std::mem::replace(&mut self.nodes[i].link, Link::Moving) {
                    Link::Online(driver) => {
                        drop(driver.close().await);
                        let core = self.open_core(i)?;
                        self.connect(i, core, false).await?;
                    }
                    Link::Offline(core) => {
                        drop(core);
                        let core = self.open_core(i)?;
                        self.nodes[i].link = Link::Offline(Box::new(core));
                    }
                    other => {
                        self.nodes[i].link = other;
                        return Err(format!("endpoint {e:?} has not joined"));
                    }
                }
            }
            Step::Replay { .. } | Step::Inject { .. } => {
                return Err("cannot happen on a real network".into())
            }
            Step::Expect { .. } | Step::ExpectMesh { .. } | Step::ExpectCounts(_) => {}
        }
        Ok(())
    }

    /// After a holding connect: waits until the archive's answer is held
    /// (what the server kept came before it), then hands everything over,
    /// newest first.
    async fn release_reversed(&mut self, i: usize) -> Result<(), String> {
        let deadline = Instant::now() + self.options.settle_limit;
        let name = self.nodes[i].name.clone();
        loop {
            let Link::Online(driver) = &mut self.nodes[i].link else {
                return Ok(());
            };
            if driver.holds_archive_end() {
                driver
                    .release_held(true)
                    .await
                    .map_err(|e| format!("{name}: {e}"))?;
                self.drain(i);
                return Ok(());
            }
            if Instant::now() >= deadline {
                driver
                    .release_held(true)
                    .await
                    .map_err(|e| format!("{name}: {e}"))?;
                return Err(format!(
                    "{name}: the archive did not answer within {:?}",
                    self.options.settle_limit
                ));
            }
            self.round().await?;
        }
    }

    /// The user of `by` authenticates (or distrusts) the key of `of`: one
    /// action, through the core's command (a key `by` does not know yet is
    /// decided through a URI naming just that key, as the engine keeps the
    /// decision until the key appears).
    async fn decide(&mut self, by: usize, of: usize, authenticate: bool) -> Result<(), String> {
        self.counts.manual_actions += 1;
        let verb = if authenticate {
            "authenticates"
        } else {
            "distrusts"
        };
        self.lines.push(format!(
            "  {} {verb} the key of {}",
            self.nodes[by].name, self.nodes[of].name
        ));
        let key = self.nodes[of]
            .key
            .clone()
            .ok_or_else(|| format!("{} has not joined", self.nodes[of].name))?;
        let jid = self.nodes[of].jid.clone();
        if self.nodes[by].is_qxmpp() {
            let (trust, distrust) = if authenticate {
                (vec![key], Vec::new())
            } else {
                (Vec::new(), vec![key])
            };
            return self.qx_decide(by, &jid, trust, distrust).await;
        }
        let known = self.level(by, of)?.is_some();
        let name = self.nodes[by].name.clone();
        let core = self.nodes[by].core()?;
        let now = Utc::now();
        let result = if known {
            if authenticate {
                core.authenticate(jid.as_str(), &key.to_hex(), now)
            } else {
                core.distrust(jid.as_str(), &key.to_hex(), now)
            }
        } else {
            let (trust, distrust) = if authenticate {
                (vec![key], Vec::new())
            } else {
                (Vec::new(), vec![key])
            };
            let uri = TrustUri {
                jid,
                encryption: Encryption::OMEMO2,
                trust,
                distrust,
            };
            core.scan(&uri.to_uri(), now)
        };
        result.map_err(|e| format!("{name}: {e}"))?;
        self.flush(by).await
    }

    /// The Trust Message URI endpoint `i` shows: its own key, and the keys
    /// of its own account it authenticated (trust) or distrusted (distrust).
    async fn uri_of(&mut self, i: usize) -> Result<String, String> {
        let own_jid = self.nodes[i].jid.clone();
        let own_key = self.nodes[i]
            .key
            .clone()
            .ok_or_else(|| format!("{} has not joined", self.nodes[i].name))?;
        let keys = self.keys_at(i).await?;
        let mut trust = vec![own_key.clone()];
        let mut distrust = Vec::new();
        for (owner, key, level) in keys {
            if owner != own_jid || key == own_key {
                continue;
            }
            match level {
                TrustLevel::Authenticated => trust.push(key),
                TrustLevel::ManuallyDistrusted => distrust.push(key),
                _ => {}
            }
        }
        Ok(TrustUri {
            jid: own_jid,
            encryption: Encryption::OMEMO2,
            trust,
            distrust,
        }
        .to_uri())
    }

    async fn scan(&mut self, by: usize, of: usize) -> Result<(), String> {
        self.counts.manual_actions += 1;
        self.lines.push(format!(
            "  {} scans the QR code of {}",
            self.nodes[by].name, self.nodes[of].name
        ));
        let text = self.uri_of(of).await?;
        let name = self.nodes[by].name.clone();
        if self.nodes[by].is_qxmpp() {
            // As Kaidan after scanning a QR code: the URI through our
            // parser, then one makeTrustDecisions() with its keys (the
            // scanner's own key left out: no device decides about itself).
            let uri = TrustUri::parse(&text).map_err(|e| format!("{name}: {text}: {e}"))?;
            let own = (self.nodes[by].jid.clone(), self.nodes[by].key.clone());
            let not_own = |k: &KeyId| (uri.jid.clone(), Some(k.clone())) != own;
            let trust: Vec<KeyId> = uri.trust.iter().filter(|k| not_own(k)).cloned().collect();
            let distrust: Vec<KeyId> = uri
                .distrust
                .iter()
                .filter(|k| not_own(k))
                .cloned()
                .collect();
            if trust.is_empty() && distrust.is_empty() {
                return Ok(());
            }
            return self.qx_decide(by, &uri.jid, trust, distrust).await;
        }
        self.nodes[by]
            .core()?
            .scan(&text, Utc::now())
            .map_err(|e| format!("{name}: {e}"))?;
        self.flush(by).await
    }

    /// Every key endpoint `at` knows, with its level: from the core, or
    /// from the QXmpp peer's trust storage (`keys`).
    async fn keys_at(&mut self, at: usize) -> Result<Vec<(BareJid, KeyId, TrustLevel)>, String> {
        if self.nodes[at].is_qxmpp() {
            return self.qx_keys(at).await;
        }
        Ok(self.nodes[at]
            .core()?
            .keys()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|k| (k.owner, k.key, k.level))
            .collect())
    }

    async fn level_failure(
        &mut self,
        at: usize,
        of: usize,
        expected: ExpectedLevel,
    ) -> Result<Option<String>, String> {
        let level = if self.nodes[at].key == self.nodes[of].key {
            Some(TrustLevel::Authenticated)
        } else {
            let key = self.nodes[of]
                .key
                .clone()
                .ok_or_else(|| format!("{} has not joined", self.nodes[of].name))?;
            let owner = self.nodes[of].jid.clone();
            self.keys_at(at)
                .await?
                .into_iter()
                .find(|(o, k, _)| *o == owner && *k == key)
                .map(|(_, _, level)| level)
        };
        let (at, of) = (&self.nodes[at].name, &self.nodes[of].name);
        Ok(match level {
            Some(l) if expected.matches(l) => None,
            Some(l) => Some(format!(
                "{at} holds {l} for {of}, expected {}",
                expected.as_str()
            )),
            None => Some(format!(
                "{at} does not know the key of {of}, expected {}",
                expected.as_str()
            )),
        })
    }

    async fn check(&mut self, step: &Step) -> Result<Vec<String>, String> {
        let mut failures = Vec::new();
        match step {
            Step::Expect { at, key_of, level } => {
                let (at, of) = (self.index(at)?, self.index(key_of)?);
                failures.extend(self.level_failure(at, of, *level).await?);
            }
            Step::ExpectMesh { among, level } => {
                let among: Vec<usize> = among
                    .iter()
                    .map(|n| self.index(n))
                    .collect::<Result<_, _>>()?;
                for &at in &among {
                    for &of in &among {
                        if at != of {
                            failures.extend(self.level_failure(at, of, *level).await?);
                        }
                    }
                }
            }
            Step::ExpectCounts(expected) => {
                let counts = self.counts_now()?;
                for (name, &want) in expected {
                    let have = counts
                        .get(name)
                        .ok_or_else(|| format!("unknown counter {name:?}"))?;
                    if have != want {
                        failures.push(format!("counter {name} is {have}, expected {want}"));
                    }
                }
            }
            _ => {}
        }
        Ok(failures)
    }

    fn counts_now(&mut self) -> Result<Counts, String> {
        let mut counts = self.counts.clone();
        counts.postponed = 0;
        for node in &mut self.nodes {
            // QXmpp's public API does not show its stored decisions.
            if node.exists() && !node.is_qxmpp() {
                counts.postponed += node
                    .core()?
                    .status()
                    .map_err(|e| e.to_string())?
                    .stored_decisions;
            }
        }
        Ok(counts)
    }

    async fn json_object(
        &mut self,
        failures: &[(usize, String)],
        counts: &Counts,
    ) -> Result<Value, String> {
        let mut endpoints = serde_json::Map::new();
        for i in 0..self.nodes.len() {
            if !self.nodes[i].exists() {
                continue;
            }
            let own = (self.nodes[i].jid.clone(), self.nodes[i].key.clone());
            let keys = self.keys_at(i).await?;
            let mut trust = serde_json::Map::new();
            for (owner, key, level) in keys {
                if (owner.clone(), Some(key.clone())) == own {
                    continue;
                }
                trust.insert(self.key_name(&owner, &key), json!(level.as_str()));
            }
            let node = &self.nodes[i];
            let mut object = json!({
                "jid": self.scenario_jid(&node.jid),
                "key": node.key.as_ref().map(KeyId::to_base64),
                "online": node.online(),
                "trust": trust,
            });
            if node.is_qxmpp() {
                object["implementation"] = json!(Implementation::Qxmpp.as_str());
            }
            endpoints.insert(node.name.clone(), object);
        }
        let mut counters = serde_json::Map::new();
        for name in COUNTERS {
            counters.insert(name.to_owned(), json!(counts.get(name).unwrap_or(0)));
        }
        let messages: Vec<Value> = self
            .messages
            .iter()
            .map(|m| {
                json!({
                    "seq": m.seq,
                    "from": self.nodes[m.from].name,
                    "to": m.to.iter().map(|&j| self.nodes[j].name.clone()).collect::<Vec<_>>(),
                    "time": DecisionTimes::format_time(m.time),
                    "key_owners": self.key_owners(&m.xml).into_iter().map(|(jid, trust, distrust)| json!({
                        "jid": jid, "trust": trust, "distrust": distrust,
                    })).collect::<Vec<_>>(),
                    "xml": m.xml,
                })
            })
            .collect();
        Ok(json!({
            "name": self.scenario.name,
            "ok": failures.is_empty(),
            "failures": failures.iter().map(|(step, message)| json!({"step": step, "message": message})).collect::<Vec<_>>(),
            "counts": Value::Object(counters),
            "endpoints": endpoints,
            "messages": messages,
        }))
    }

    fn timeline(
        &self,
        steps: &[Step],
        lines: &[Vec<String>],
        failures: &[(usize, String)],
        counts: &Counts,
    ) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "scenario: {} (over XMPP)", self.scenario.name);
        for (index, step) in steps.iter().enumerate() {
            let _ = writeln!(out, "[{index}] {}", atm_sim::runner::step_text(step));
            for line in lines.get(index).into_iter().flatten() {
                let _ = writeln!(out, "    {line}");
            }
            for (_, message) in failures.iter().filter(|(s, _)| *s == index) {
                let _ = writeln!(out, "    FAILED: {message}");
            }
        }
        let _ = writeln!(out, "\ncounts:");
        for name in COUNTERS {
            let _ = writeln!(out, "  {name:<26} {}", counts.get(name).unwrap_or(0));
        }
        if failures.is_empty() {
            let _ = writeln!(out, "\nok: every expectation held");
        } else {
            let _ = writeln!(out, "\n{} failure(s):", failures.len());
            for (step, message) in failures {
                let _ = writeln!(out, "  steps[{step}]: {message}");
            }
        }
        out
    }

    /// Closes every stream and stops the private server.
    async fn close(&mut self) {
        for node in &mut self.nodes {
            match std::mem::replace(&mut node.link, Link::Moving) {
                Link::Online(driver) => {
                    node.link = Link::Offline(Box::new(driver.close().await));
                }
                Link::Qxmpp(mut qx) => qx.peer.quit(),
                other => node.link = other,
            }
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::task::spawn_blocking(move || drop(server)).await;
        }
    }
}

/// QXmpp endpoints (`docs/live-scenarios.md`, "Mixed scenarios").
impl Live<'_> {
    /// Starts the QXmpp peer of endpoint `i`, connects it (the run's CA,
    /// the scenario's policy: TOAKAFA, or none for `manual`, under which
    /// QXmpp leaves new keys undecided) and subscribes it to the presence
    /// of every other account.
    async fn create_qxmpp(&mut self, i: usize) -> Result<(), String> {
        let name = self.nodes[i].name.clone();
        let binary = self
            .options
            .qxmpp_peer
            .clone()
            .ok_or_else(|| format!("{name}: no QXmpp peer binary (--qxmpp-peer)"))?;
        let mut peer = Peer::spawn(&binary, &name, &self.nodes[i].dir)?;
        let (addr, ca) = self.target.clone();
        let policy = match self.scenario.policy {
            Policy::Manual => "none",
            _ => "toakafa",
        };
        let id = peer.send(json!({
            "cmd": "connect",
            "jid": self.nodes[i].jid.as_str(),
            "password": self.password,
            "host": addr.ip().to_string(),
            "port": addr.port(),
            "ca_file": ca.to_string_lossy(),
            "resource": format!("atm-live-{name}"),
            "policy": policy,
            // Session building for new devices (as Kaidan) from the end of
            // setUp() on: a key exchange QXmpp sends its own account's other
            // devices during setUp() can leave them unable to read it for
            // good (docs/interop.md, report 2).
            "auto_session_building": "after_setup",
        }))?;
        self.nodes[i].link = Link::Qxmpp(Box::new(Qx {
            peer,
            levels: HashMap::new(),
            manual: HashMap::new(),
            received: HashMap::new(),
            asked: None,
        }));
        let reply = self.reply(i, id, "connect").await?;
        let key = reply["key_b64"]
            .as_str()
            .and_then(|k| KeyId::from_base64(k).ok())
            .ok_or_else(|| format!("{name} (QXmpp): no readable key_b64 in {reply}"))?;
        let device = reply["device_id"]
            .as_u64()
            .and_then(|d| u32::try_from(d).ok())
            .ok_or_else(|| {
                format!("{name} (QXmpp): the peer reported no device id (rebuild it from interop/qxmpp-peer)")
            })?;
        self.nodes[i].key = Some(key);
        self.nodes[i].device_id = device;
        let own = self.nodes[i].jid.clone();
        let others: BTreeSet<BareJid> = self
            .nodes
            .iter()
            .map(|n| n.jid.clone())
            .filter(|j| *j != own)
            .collect();
        for jid in others {
            self.command(
                i,
                json!({"cmd": "subscribe_presence", "jid": jid.as_str()}),
                "subscribe_presence",
            )
            .await?;
        }
        Ok(())
    }

    /// Takes what the peer of `i` printed; whether anything came.
    fn poll_qxmpp(&mut self, i: usize) -> Result<bool, String> {
        let Some(qx) = self.nodes[i].qx() else {
            return Ok(false);
        };
        let events = qx.peer.poll()?;
        let any = !events.is_empty();
        for event in events {
            self.qx_event(i, &event);
        }
        Ok(any)
    }

    /// Waits for the reply to command `id` of the peer of `i`.
    async fn reply(&mut self, i: usize, id: u64, what: &str) -> Result<Value, String> {
        let deadline = Instant::now() + self.options.settle_limit;
        let name = self.nodes[i].name.clone();
        loop {
            let Some(qx) = self.nodes[i].qx() else {
                return Err(format!("{name} is not a QXmpp endpoint"));
            };
            if let Some(reply) = qx.peer.take_reply(id) {
                if reply["ok"] == true {
                    return Ok(reply);
                }
                return Err(format!(
                    "{name} (QXmpp): {what} failed: {}",
                    reply["error"].as_str().unwrap_or("no reason given")
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{name} (QXmpp): no answer to {what} within {:?}",
                    self.options.settle_limit
                ));
            }
            self.round().await?;
        }
    }

    async fn command(&mut self, i: usize, command: Value, what: &str) -> Result<Value, String> {
        let name = self.nodes[i].name.clone();
        let qx = self.nodes[i]
            .qx()
            .ok_or_else(|| format!("{name} is not a QXmpp endpoint"))?;
        let id = qx.peer.send(command)?;
        self.reply(i, id, what).await
    }

    /// Every key the QXmpp trust storage of `i` holds, with its level.
    async fn qx_keys(&mut self, i: usize) -> Result<Vec<(BareJid, KeyId, TrustLevel)>, String> {
        let reply = self.command(i, json!({"cmd": "keys"}), "keys").await?;
        let name = &self.nodes[i].name;
        reply["keys"]
            .as_array()
            .ok_or_else(|| format!("{name} (QXmpp): keys: no list in {reply}"))?
            .iter()
            .map(|k| {
                key_level(k).ok_or_else(|| format!("{name} (QXmpp): keys: unreadable entry {k}"))
            })
            .collect()
    }

    /// The user of QXmpp endpoint `by` decides about keys of `jid`: one
    /// `makeTrustDecisions()` (the peer's `decide`).
    async fn qx_decide(
        &mut self,
        by: usize,
        jid: &BareJid,
        trust: Vec<KeyId>,
        distrust: Vec<KeyId>,
    ) -> Result<(), String> {
        let name = self.nodes[by].name.clone();
        let qx = self.nodes[by]
            .qx()
            .ok_or_else(|| format!("{name} is not a QXmpp endpoint"))?;
        for k in &trust {
            qx.manual.insert((jid.clone(), k.clone()), true);
        }
        for k in &distrust {
            qx.manual.insert((jid.clone(), k.clone()), false);
        }
        let hex = |keys: &[KeyId]| keys.iter().map(KeyId::to_hex).collect::<Vec<_>>();
        self.command(
            by,
            json!({
                "cmd": "decide",
                "jid": jid.as_str(),
                "trust_hex": hex(&trust),
                "distrust_hex": hex(&distrust),
            }),
            "decide (makeTrustDecisions)",
        )
        .await?;
        Ok(())
    }

    /// QXmpp learns devices only through device-list subscriptions, and a
    /// subscription made before the other account published fails for
    /// good: every 5 s, each QXmpp endpoint of `by` that misses a key of
    /// `of` subscribes to those accounts' device lists again, and its
    /// trust storage is read.
    async fn ask_device_lists(&mut self, by: &[usize], of: &[usize]) -> Result<(), String> {
        for &b in by {
            if !self.nodes[b].is_qxmpp() {
                continue;
            }
            let mut jids = BTreeSet::new();
            for &o in of {
                if b != o && self.nodes[b].key != self.nodes[o].key && self.level(b, o)?.is_none() {
                    jids.insert(self.nodes[o].jid.as_str().to_owned());
                }
            }
            let Some(qx) = self.nodes[b].qx() else {
                continue;
            };
            if jids.is_empty()
                || qx
                    .asked
                    .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
            {
                continue;
            }
            qx.asked = Some(Instant::now());
            qx.peer
                .send_unattended(json!({"cmd": "subscribe_devices", "jids": jids}))?;
            // Keys QXmpp learned without a `trust_changed` event (if its
            // policy stores them so) come from its trust storage.
            for (owner, key, level) in self.qx_keys(b).await? {
                if let Some(qx) = self.nodes[b].qx() {
                    qx.levels.entry((owner, key)).or_insert(level);
                }
            }
        }
        Ok(())
    }

    /// The index of the `nth` (from 0) message for recipient `r` among
    /// those `which` selects.
    fn nth_message_to(&self, r: usize, nth: usize, which: impl Fn(&Sent) -> bool) -> Option<usize> {
        self.messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.to.contains(&r) && which(m))
            .nth(nth)
            .map(|(index, _)| index)
    }

    /// The settling stops waiting for the `trust_message` events still
    /// missing at QXmpp recipients (after the grace period).
    fn excuse_unreported(&mut self) {
        let mut need: HashMap<(usize, usize), usize> = HashMap::new();
        for m in &self.messages {
            for &r in &m.to {
                if self.nodes[r].is_qxmpp() {
                    *need.entry((r, m.from)).or_default() += 1;
                }
            }
        }
        for ((r, sender), need) in need {
            let Link::Qxmpp(qx) = &self.nodes[r].link else {
                continue;
            };
            let have = qx.received.get(&sender).copied().unwrap_or(0);
            let excused = self.excused.entry((r, sender)).or_default();
            if need > have + *excused {
                *excused = need - have;
            }
        }
    }

    /// One event of the peer of `i`: trust levels (and the counters),
    /// trust messages received and sent, QXmpp's warnings.
    fn qx_event(&mut self, i: usize, event: &Value) {
        let name = self.nodes[i].name.clone();
        match event["event"].as_str().unwrap_or_default() {
            "trust_changed" => self.qx_trust_changed(i, event),
            "trust_message" => {
                self.counts.deliveries += 1;
                let sender_key = event["sender_key_hex"]
                    .as_str()
                    .and_then(|k| KeyId::from_hex(k).ok());
                let sender = sender_key
                    .as_ref()
                    .and_then(|k| self.nodes.iter().position(|n| n.key.as_ref() == Some(k)));
                let Some(sender) = sender else {
                    self.lines.push(format!(
                        "  {name} (QXmpp) receives a trust message from an unknown key: {event}"
                    ));
                    return;
                };
                let Some(qx) = self.nodes[i].qx() else { return };
                let count = qx.received.entry(sender).or_default();
                *count += 1;
                let nth = *count - 1;
                // A late one the settling had stopped waiting for.
                if let Some(excused) = self.excused.get_mut(&(i, sender)) {
                    *excused = excused.saturating_sub(1);
                }
                let Some(m) = self.nth_message_to(i, nth, |m| m.from == sender) else {
                    self.lines.push(format!(
                        "  {name} receives a trust message from {}",
                        self.nodes[sender].name
                    ));
                    return;
                };
                if self.messages[m].qxmpp && self.messages[m].xml.is_empty() {
                    if let Some(xml) = qxmpp_trust_message_xml(event) {
                        self.messages[m].xml = xml;
                    }
                    if let Some(time) = event["sce_time"]
                        .as_str()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    {
                        self.messages[m].time = time.with_timezone(&Utc);
                    }
                }
                self.lines.push(format!(
                    "  {name} receives message #{}",
                    self.messages[m].seq
                ));
            }
            "omemo_sent" => {
                if self.nodes[i].device_id == 0 {
                    if let Some(sid) = event["sid"].as_u64().and_then(|d| u32::try_from(d).ok()) {
                        self.nodes[i].device_id = sid;
                    }
                }
                if event["has_payload"] != true {
                    return;
                }
                let mut to = BTreeSet::new();
                for k in event["keys"].as_array().into_iter().flatten() {
                    let (Some(jid), Some(rid)) = (k["jid"].as_str(), k["rid"].as_u64()) else {
                        continue;
                    };
                    to.extend((0..self.nodes.len()).filter(|&j| {
                        j != i
                            && self.nodes[j].jid.as_str() == jid
                            && u64::from(self.nodes[j].device_id) == rid
                    }));
                }
                let seq = self.messages.len() as u64 + 1;
                self.counts.trust_messages_sent += 1;
                let to: Vec<usize> = to.into_iter().collect();
                self.lines.push(format!(
                    "  message #{seq} {name} (QXmpp) -> {} (a <message> to {})",
                    to.iter()
                        .map(|&j| self.nodes[j].name.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                    event["to"].as_str().map_or_else(
                        || "?".to_owned(),
                        |t| t
                            .parse::<BareJid>()
                            .map_or_else(|_| t.to_owned(), |j| self.scenario_jid(&j))
                    )
                ));
                self.messages.push(Sent {
                    seq,
                    from: i,
                    sender: self.nodes[i].jid.clone(),
                    id: String::new(),
                    to,
                    time: Utc::now(),
                    xml: String::new(),
                    qxmpp: true,
                });
            }
            "log" | "error" => self.lines.push(format!(
                "  {name} (QXmpp) logs: {}",
                event["text"].as_str().unwrap_or_default()
            )),
            "disconnected" => self
                .lines
                .push(format!("  {name} (QXmpp) was disconnected")),
            _ => {}
        }
    }

    /// A `trust_changed` event: the new level of one key at QXmpp endpoint
    /// `i`. A level reached by the user's decision counts as manual, an
    /// authentication or distrust reached otherwise as automatic (through
    /// a trust message, at once or from a stored decision); QXmpp's
    /// TOAKAFA levels and decisions about its own key are not counted.
    fn qx_trust_changed(&mut self, i: usize, event: &Value) {
        let name = self.nodes[i].name.clone();
        let Some((owner, key, level)) = key_level(event) else {
            self.lines.push(format!(
                "  {name} (QXmpp): unreadable trust_changed {event}"
            ));
            return;
        };
        let own = self.nodes[i].jid == owner && self.nodes[i].key.as_ref() == Some(&key);
        let Some(qx) = self.nodes[i].qx() else { return };
        let entry = (owner.clone(), key.clone());
        let before = qx.levels.insert(entry.clone(), level);
        if before == Some(level) {
            return;
        }
        let manual = match qx.manual.remove(&entry) {
            Some(true) => level == TrustLevel::Authenticated,
            Some(false) => level.is_distrusted(),
            None => false,
        };
        let cause = if own {
            "QXmpp stores what a trust message says about its own key; not counted"
        } else if manual {
            if level.is_distrusted() {
                self.counts.manual_distrusts += 1;
            } else {
                self.counts.manual_authentications += 1;
            }
            "by the user"
        } else if level == TrustLevel::Authenticated || level == TrustLevel::ManuallyDistrusted {
            if level.is_distrusted() {
                self.counts.automatic_distrusts += 1;
            } else {
                self.counts.automatic_authentications += 1;
            }
            "QXmpp: a trust message, or a stored one"
        } else if before.is_none() {
            return; // a key learned, at the policy's level
        } else {
            "QXmpp's security policy"
        };
        let line = format!(
            "  {name}: {} {} -> {level} ({cause})",
            self.key_name(&owner, &key),
            before.map_or("unknown", TrustLevel::as_str),
        );
        self.lines.push(line);
    }
}

/// `{jid, key_b64, level}` of the peer's key lists and `trust_changed`.
fn key_level(value: &Value) -> Option<(BareJid, KeyId, TrustLevel)> {
    let jid = value["jid"].as_str()?.parse().ok()?;
    let key = KeyId::from_base64(value["key_b64"].as_str()?).ok()?;
    let level = value["level"].as_str()?.parse().ok()?;
    Some((jid, key, level))
}

/// The trust message a QXmpp peer reported receiving (`trust_message`:
/// usage, encryption, key owners with hex keys), as XML.
fn qxmpp_trust_message_xml(event: &Value) -> Option<String> {
    let hex_keys = |list: &Value| -> Option<Vec<KeyId>> {
        list.as_array()?
            .iter()
            .map(|k| KeyId::from_hex(k.as_str()?).ok())
            .collect()
    };
    let key_owners = event["key_owners"]
        .as_array()?
        .iter()
        .map(|o| {
            Some(KeyOwner {
                jid: o["jid"].as_str()?.parse().ok()?,
                trust: hex_keys(&o["trust"])?,
                distrust: hex_keys(&o["distrust"])?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(
        TrustMessage {
            usage: event["usage"].as_str()?.parse::<Usage>().ok()?,
            encryption: event["tm_encryption"]
                .as_str()?
                .parse::<Encryption>()
                .ok()?,
            key_owners,
        }
        .to_xml(),
    )
}
