//! The live scenario runner.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use atm_client::{DeviceLearning, Endpoint, Event, Options, OsRandom, SecureRandom, Traffic};
use atm_endpoint::{Driver, Settings};
use atm_engine::{Cause, DecisionTimes, KeyId, KeyMode, Policy, TrustLevel, TrustMessage};
use atm_sim::scenario::{ExpectedLevel, Order, Scenario, Step, COUNTERS};
use atm_sim::Counts;
use atm_store::Durability;
use atm_tm::{BareJid, Encryption, TrustUri};
use atm_xmpp_server::client_tls::{register_in_band, TestCaConnector};
use atm_xmpp_server::{Kind, Server};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

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
    None
}

enum Link {
    /// Not joined yet.
    Absent,
    Online(Box<Driver>),
    Offline(Box<Endpoint>),
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
}

impl Node {
    fn core(&mut self) -> Result<&mut Endpoint, String> {
        match &mut self.link {
            Link::Online(driver) => Ok(driver.core()),
            Link::Offline(core) => Ok(core),
            Link::Absent | Link::Moving => Err(format!("endpoint {:?} has not joined", self.name)),
        }
    }
    fn online(&self) -> bool {
        matches!(self.link, Link::Online(_))
    }
    fn exists(&self) -> bool {
        matches!(self.link, Link::Online(_) | Link::Offline(_))
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
    if let Some(reason) = refusal(scenario) {
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
        let (server, connector, suffix) = match &options.server {
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
                (Some(server), connector, String::new())
            }
            ServerChoice::Remote { addr, ca } => {
                let connector = TestCaConnector::from_ca_file(*addr, ca)
                    .map_err(|e| setup(format!("--ca {}: {e}", ca.display())))?;
                (
                    None,
                    connector,
                    format!("-{}", random_hex(3).map_err(setup)?),
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
        };
        // Every endpoint that exists at the start knows every other's key.
        let starting: Vec<usize> = (0..scenario.endpoints.len())
            .filter(|&i| !scenario.endpoints[i].joins_later)
            .collect();
        for &i in &starting {
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
        if by == of || self.nodes[by].key == self.nodes[of].key {
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
        for i in 0..self.nodes.len() {
            let name = self.nodes[i].name.clone();
            if let Link::Online(driver) = &mut self.nodes[i].link {
                arrived |= driver
                    .step(Duration::from_millis(5))
                    .await
                    .map_err(|e| format!("{name}: {e}"))?;
            }
            self.drain(i);
        }
        Ok(arrived)
    }

    /// Collects the events and traffic of endpoint `i`.
    fn drain(&mut self, i: usize) {
        let mut events = Vec::new();
        let mut traffic = Vec::new();
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
            Link::Absent | Link::Moving => {}
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
                let Some(id) = id else { return };
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
    /// received yet.
    fn undelivered(&self) -> Vec<String> {
        let mut missing = Vec::new();
        for m in &self.messages {
            if !self.nodes[m.from].online() {
                continue; // still in its outbox: it goes out when it is back
            }
            for &r in &m.to {
                if self.nodes[r].online()
                    && !self.nodes[r]
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
        missing
    }

    /// Steps until the network has settled: every online driver has
    /// nothing unacknowledged, no request without its answer and nothing
    /// held; every trust message sent by an online endpoint has reached
    /// every online recipient; and nothing arrived anywhere for the quiet
    /// period. Bounded by the settling limit.
    async fn settle(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + self.options.settle_limit;
        let mut quiet_since = Instant::now();
        loop {
            if self.round().await? {
                quiet_since = Instant::now();
            }
            let mut busy = Vec::new();
            for node in &mut self.nodes {
                if let Link::Online(driver) = &mut node.link {
                    let (unacked, held) = (driver.unacknowledged(), driver.held());
                    let pending = driver.core().pending_requests();
                    if unacked + held + pending > 0 {
                        busy.push(format!(
                            "{}: {unacked} unacknowledged, {pending} requests unanswered, {held} held",
                            node.name
                        ));
                    }
                }
            }
            busy.extend(self.undelivered());
            if busy.is_empty() && quiet_since.elapsed() >= self.options.quiet {
                return Ok(());
            }
            if Instant::now() >= deadline {
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
            match self.check(step) {
                Ok(messages) => found.extend(messages),
                Err(message) => found.push(message),
            }
            failures.extend(found.into_iter().map(|m| (index, m)));
            step_lines.push(std::mem::take(&mut self.lines));
        }
        let counts = self.counts_now()?;
        let json = self.json_object(&failures, &counts)?;
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
    fn uri_of(&mut self, i: usize) -> Result<String, String> {
        let own_jid = self.nodes[i].jid.clone();
        let own_key = self.nodes[i]
            .key
            .clone()
            .ok_or_else(|| format!("{} has not joined", self.nodes[i].name))?;
        let keys = self.nodes[i].core()?.keys().map_err(|e| e.to_string())?;
        let mut trust = vec![own_key.clone()];
        let mut distrust = Vec::new();
        for k in keys {
            if k.owner != own_jid || k.key == own_key {
                continue;
            }
            match k.level {
                TrustLevel::Authenticated => trust.push(k.key),
                TrustLevel::ManuallyDistrusted => distrust.push(k.key),
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
        let text = self.uri_of(of)?;
        let name = self.nodes[by].name.clone();
        self.nodes[by]
            .core()?
            .scan(&text, Utc::now())
            .map_err(|e| format!("{name}: {e}"))?;
        self.flush(by).await
    }

    fn level_failure(
        &mut self,
        at: usize,
        of: usize,
        expected: ExpectedLevel,
    ) -> Result<Option<String>, String> {
        let level = if self.nodes[at].key == self.nodes[of].key {
            Some(TrustLevel::Authenticated)
        } else {
            self.level(at, of)?
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

    fn check(&mut self, step: &Step) -> Result<Vec<String>, String> {
        let mut failures = Vec::new();
        match step {
            Step::Expect { at, key_of, level } => {
                let (at, of) = (self.index(at)?, self.index(key_of)?);
                failures.extend(self.level_failure(at, of, *level)?);
            }
            Step::ExpectMesh { among, level } => {
                let among: Vec<usize> = among
                    .iter()
                    .map(|n| self.index(n))
                    .collect::<Result<_, _>>()?;
                for &at in &among {
                    for &of in &among {
                        if at != of {
                            failures.extend(self.level_failure(at, of, *level)?);
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
            if node.exists() {
                counts.postponed += node
                    .core()?
                    .status()
                    .map_err(|e| e.to_string())?
                    .stored_decisions;
            }
        }
        Ok(counts)
    }

    fn json_object(
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
            let keys = self.nodes[i].core()?.keys().map_err(|e| e.to_string())?;
            let mut trust = serde_json::Map::new();
            for k in keys {
                if (k.owner.clone(), Some(k.key.clone())) == own {
                    continue;
                }
                trust.insert(self.key_name(&k.owner, &k.key), json!(k.level.as_str()));
            }
            let node = &self.nodes[i];
            endpoints.insert(
                node.name.clone(),
                json!({
                    "jid": self.scenario_jid(&node.jid),
                    "key": node.key.as_ref().map(KeyId::to_base64),
                    "online": node.online(),
                    "trust": trust,
                }),
            );
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
            if let Link::Online(driver) = std::mem::replace(&mut node.link, Link::Moving) {
                node.link = Link::Offline(Box::new(driver.close().await));
            }
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::task::spawn_blocking(move || drop(server)).await;
        }
    }
}
