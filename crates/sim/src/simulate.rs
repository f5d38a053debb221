//! `atm simulate`: many accounts and endpoints, a random minimal set of
//! initial mutual authentications in a random order, with endpoints going
//! offline at random — played through the real engine on an in-memory network
//! tuned for scale (memory stores, no scenario bookkeeping).
//!
//! A minimal set is one random spanning tree of mutual authentications per
//! account plus one random mutual authentication per pair of accounts: with
//! complete propagation that is enough for every endpoint to end up
//! authenticating every other endpoint's key.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use atm_engine::{
    Config, DecisionKind, DecisionTimes, Effect, Engine, EngineError, Infallible, Input, KeyId,
    KeyRef, MemoryStore, Outgoing, Propagation, Received, TrustLevel,
};
use atm_tm::BareJid;
use chrono::{DateTime, Utc};

/// One configuration to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// Devices of each account (its length is the number of accounts).
    pub devices: Vec<usize>,
    /// Which rule set the engines follow.
    pub propagation: Propagation,
    /// Chance, from 0 to 1, that an endpoint is offline at a step.
    pub offline: f64,
}

impl Setup {
    /// `accounts` accounts with the same number of devices.
    pub fn uniform(accounts: usize, devices: usize, propagation: Propagation) -> Self {
        Setup {
            devices: vec![devices; accounts],
            propagation,
            offline: 0.0,
        }
    }

    /// Total number of endpoints.
    pub fn endpoints(&self) -> usize {
        self.devices.iter().sum()
    }

    /// Directed authentications of the complete mesh: every endpoint
    /// authenticates every other endpoint's key, n(n-1).
    pub fn mesh(&self) -> u64 {
        let n = self.endpoints() as u64;
        n * n.saturating_sub(1)
    }

    /// Manual authentications of a minimal initial set: two per mutual
    /// authentication, (n - k) + k(k-1)/2 of them for n endpoints in k accounts.
    pub fn minimal_manual(&self) -> u64 {
        let n = self.endpoints() as u64;
        let k = self.devices.iter().filter(|d| **d > 0).count() as u64;
        2 * ((n - k) + k * k.saturating_sub(1) / 2)
    }
}

/// What one run measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStats {
    /// Manual authentications made (one user action each).
    pub manual_authentications: u64,
    /// Authentications made through trust messages.
    pub automatic_authentications: u64,
    /// Directed (endpoint, key) pairs authenticated at the end.
    pub authenticated_pairs: u64,
    /// Directed pairs of the complete mesh.
    pub mesh: u64,
    /// Trust messages sent.
    pub trust_messages: u64,
    /// Trust messages received (one per recipient endpoint).
    pub deliveries: u64,
    /// Bytes of trust-message XML sent (once per message).
    pub xml_bytes: u64,
    /// The most decisions stored and not yet applied at once, all endpoints.
    pub postponed_peak: u64,
    /// Wall time of the run.
    pub wall: Duration,
}

impl RunStats {
    /// Share of the complete mesh reached, 0 to 1.
    pub fn mesh_share(&self) -> f64 {
        if self.mesh == 0 {
            1.0
        } else {
            self.authenticated_pairs as f64 / self.mesh as f64
        }
    }

    /// `true` if every endpoint authenticates every other.
    pub fn converged(&self) -> bool {
        self.authenticated_pairs == self.mesh
    }
}

/// A simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The setup is unusable.
    #[error("invalid setup: {0}")]
    Setup(String),
    /// The engine refused an input (a bug: the simulator only makes valid ones).
    #[error("engine: {0}")]
    Engine(#[from] EngineError<Infallible>),
}

/// A small, seedable generator (SplitMix64): runs are reproducible from their seed.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

struct Node {
    key: KeyRef,
    account: usize,
    engine: Engine<MemoryStore>,
    online: bool,
    inbox: Vec<usize>,
    stored: u64,
}

struct Message {
    from: usize,
    time: DateTime<Utc>,
    out: Outgoing,
}

struct Network {
    nodes: Vec<Node>,
    by_key: HashMap<KeyRef, usize>,
    messages: Vec<Rc<Message>>,
    queue: VecDeque<(usize, usize)>,
    clock: DateTime<Utc>,
    stats: RunStats,
    stored_total: u64,
}

/// The key of device `d` of account `a`: 32 bytes, distinct for every pair.
fn simulated_key(a: usize, d: usize) -> KeyId {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&(a as u64).to_le_bytes());
    bytes[8..16].copy_from_slice(&(d as u64).to_le_bytes());
    bytes[16..].copy_from_slice(b"atm-rs simulate.");
    KeyId::from_bytes(bytes.to_vec()).unwrap_or_else(|_| unreachable!("32 bytes are never empty"))
}

fn account_jid(a: usize) -> Result<BareJid, SimulateError> {
    format!("user{a}@example.org")
        .parse()
        .map_err(|e| SimulateError::Setup(format!("account {a}: {e}")))
}

impl Network {
    fn new(setup: &Setup) -> Result<Self, SimulateError> {
        let mut nodes = Vec::new();
        let mut by_key = HashMap::new();
        let mut accounts: Vec<(BareJid, Vec<KeyId>)> = Vec::new();
        for (a, devices) in setup.devices.iter().enumerate() {
            let jid = account_jid(a)?;
            let keys: Vec<KeyId> = (0..*devices).map(|d| simulated_key(a, d)).collect();
            for key in &keys {
                let key = KeyRef::new(jid.clone(), key.clone());
                let mut config = Config::new(key.owner.clone(), key.key.clone());
                config.propagation = setup.propagation;
                by_key.insert(key.clone(), nodes.len());
                nodes.push(Node {
                    key,
                    account: a,
                    engine: Engine::new(config, MemoryStore::new()),
                    online: true,
                    inbox: Vec::new(),
                    stored: 0,
                });
            }
            accounts.push((jid, keys));
        }
        let mut net = Network {
            nodes,
            by_key,
            messages: Vec::new(),
            queue: VecDeque::new(),
            clock: DateTime::UNIX_EPOCH,
            stats: RunStats {
                mesh: setup.mesh(),
                ..RunStats::default()
            },
            stored_total: 0,
        };
        for i in 0..net.nodes.len() {
            for (jid, keys) in &accounts {
                let input = Input::KeysLearned {
                    owner: jid.clone(),
                    keys: keys.clone(),
                };
                net.input(i, input)?;
            }
        }
        Ok(net)
    }

    fn tick(&mut self) -> DateTime<Utc> {
        self.clock += chrono::Duration::seconds(1);
        self.clock
    }

    fn input(&mut self, at: usize, input: Input) -> Result<(), SimulateError> {
        let now = self.clock;
        let effects = self.nodes[at].engine.handle(input, now)?;
        let mut stored_changed = false;
        for effect in effects {
            match effect {
                Effect::Send(out) => {
                    let time = self.tick();
                    self.stats.trust_messages += 1;
                    self.stats.xml_bytes += out.message.to_xml().len() as u64;
                    let seq = self.messages.len();
                    for r in &out.recipients {
                        if let Some(&to) = self.by_key.get(r) {
                            if to != at {
                                self.queue.push_back((seq, to));
                            }
                        }
                    }
                    self.messages.push(Rc::new(Message {
                        from: at,
                        time,
                        out,
                    }));
                }
                Effect::TrustChanged {
                    to: TrustLevel::Authenticated,
                    cause,
                    ..
                } => {
                    if cause.is_trust_message() {
                        self.stats.automatic_authentications += 1;
                    } else if cause == atm_engine::Cause::Manual {
                        self.stats.manual_authentications += 1;
                    }
                    stored_changed |= matches!(
                        cause,
                        atm_engine::Cause::Postponed(_) | atm_engine::Cause::Pending(_)
                    );
                }
                Effect::Postponed { .. }
                | Effect::Pending { .. }
                | Effect::PostponedDropped { .. } => {
                    stored_changed = true;
                }
                _ => {}
            }
        }
        if stored_changed {
            let node = &mut self.nodes[at];
            let now_stored = node.engine.stored_decision_count()?;
            self.stored_total = self.stored_total - node.stored + now_stored;
            node.stored = now_stored;
            self.stats.postponed_peak = self.stats.postponed_peak.max(self.stored_total);
        }
        Ok(())
    }

    fn deliver(&mut self, seq: usize, to: usize) -> Result<(), SimulateError> {
        let message = Rc::clone(&self.messages[seq]);
        let sender = &self.nodes[message.from].key;
        let own = &self.nodes[to].key;
        let received = Received {
            sender: sender.owner.clone(),
            sender_key: Some(sender.key.clone()),
            time: message.time,
            stamp: message.time,
            message: message.out.message.clone(),
            decision_times: DecisionTimes(message.out.decision_times.0.clone()),
            co_recipients: message
                .out
                .recipients
                .iter()
                .filter(|k| *k != own)
                .cloned()
                .collect(),
        };
        self.stats.deliveries += 1;
        self.input(to, Input::Received(received))
    }

    fn run(&mut self) -> Result<(), SimulateError> {
        while let Some((seq, to)) = self.queue.pop_front() {
            if self.nodes[to].online {
                self.deliver(seq, to)?;
            } else {
                self.nodes[to].inbox.push(seq);
            }
        }
        Ok(())
    }

    fn set_online(&mut self, i: usize, online: bool) -> Result<(), SimulateError> {
        if self.nodes[i].online == online {
            return Ok(());
        }
        self.nodes[i].online = online;
        if online {
            for seq in std::mem::take(&mut self.nodes[i].inbox) {
                self.deliver(seq, i)?;
                self.run()?;
            }
        }
        Ok(())
    }

    fn authenticate(&mut self, by: usize, of: usize) -> Result<(), SimulateError> {
        self.tick();
        let key = self.nodes[of].key.clone();
        self.input(by, Input::manual(key, DecisionKind::Trust))?;
        self.run()
    }

    fn authenticated_pairs(&mut self) -> Result<u64, SimulateError> {
        let mut pairs = 0;
        for node in &mut self.nodes {
            let keys = node.engine.known_keys()?;
            pairs += keys
                .iter()
                .filter(|(k, r)| r.level == TrustLevel::Authenticated && *k != node.key)
                .count() as u64;
        }
        Ok(pairs)
    }
}

/// The directed manual authentications of a random minimal initial set, in a
/// random order: a random spanning tree per account and one random pair per
/// pair of accounts, each edge authenticated in both directions.
pub fn initial_authentications(devices: &[usize], rng: &mut SplitMix) -> Vec<(usize, usize)> {
    let mut first = Vec::new();
    let mut start = 0;
    for d in devices {
        first.push(start);
        start += d;
    }
    let mut edges = Vec::new();
    for (a, d) in devices.iter().enumerate() {
        let mut order: Vec<usize> = (0..*d).map(|i| first[a] + i).collect();
        shuffle(&mut order, rng);
        for i in 1..order.len() {
            edges.push((order[i], order[rng.below(i)]));
        }
    }
    for a in 0..devices.len() {
        for b in a + 1..devices.len() {
            if devices[a] > 0 && devices[b] > 0 {
                let x = first[a] + rng.below(devices[a]);
                let y = first[b] + rng.below(devices[b]);
                edges.push((x, y));
            }
        }
    }
    let mut actions: Vec<(usize, usize)> =
        edges.iter().flat_map(|&(x, y)| [(x, y), (y, x)]).collect();
    shuffle(&mut actions, rng);
    actions
}

fn shuffle<T>(items: &mut [T], rng: &mut SplitMix) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i + 1));
    }
}

/// Plays one run of `setup` with the randomness of `seed`.
pub fn run(setup: &Setup, seed: u64) -> Result<RunStats, SimulateError> {
    if setup.devices.is_empty() || setup.endpoints() == 0 {
        return Err(SimulateError::Setup("no endpoints".into()));
    }
    if !(0.0..1.0).contains(&setup.offline) {
        return Err(SimulateError::Setup(format!(
            "offline chance {} is not in [0, 1)",
            setup.offline
        )));
    }
    let started = Instant::now();
    let mut rng = SplitMix::new(seed);
    let mut net = Network::new(setup)?;
    let actions = initial_authentications(&setup.devices, &mut rng);
    for (by, of) in actions {
        if setup.offline > 0.0 {
            for i in 0..net.nodes.len() {
                let online = !rng.chance(setup.offline);
                net.set_online(i, online)?;
            }
        }
        // The user holds the device they act on.
        net.set_online(by, true)?;
        net.authenticate(by, of)?;
    }
    for i in 0..net.nodes.len() {
        net.set_online(i, true)?;
    }
    net.run()?;
    net.stats.authenticated_pairs = net.authenticated_pairs()?;
    net.stats.wall = started.elapsed();
    let _ = net.nodes.iter().map(|n| n.account).max();
    Ok(net.stats)
}

/// Trust messages caused by one new device joining an account of `setup`
/// after every endpoint already authenticates every other (complete
/// propagation): the device is fetched by everybody and mutually
/// authenticated with one own device. Returns (messages, endpoints that
/// trusted each other before).
pub fn new_device_cost(setup: &Setup, seed: u64) -> Result<(u64, u64), SimulateError> {
    let mut grown = setup.clone();
    grown.offline = 0.0;
    let first = grown
        .devices
        .first_mut()
        .ok_or_else(|| SimulateError::Setup("no account".into()))?;
    if *first == 0 {
        return Err(SimulateError::Setup(
            "the first account has no device".into(),
        ));
    }
    *first += 1;
    let mut rng = SplitMix::new(seed);
    let mut net = Network::new(&grown)?;
    // The newcomer is the last device of account 0; before it joins nobody
    // knows its key and it takes part in nothing.
    let newcomer = grown.devices[0] - 1;
    let mut before: Vec<usize> = grown.devices.clone();
    before[0] -= 1;
    let mut actions = initial_authentications(&before, &mut rng);
    // Indices of `before` shift by one after account 0 in `grown`.
    for (by, of) in actions.iter_mut() {
        for i in [by, of] {
            if *i >= newcomer {
                *i += 1;
            }
        }
    }
    for (by, of) in actions {
        net.authenticate(by, of)?;
    }
    let sent_before = net.stats.trust_messages;
    let buddy = rng.below(newcomer);
    net.authenticate(buddy, newcomer)?;
    net.authenticate(newcomer, buddy)?;
    let endpoints = before.iter().sum::<usize>() as u64;
    Ok((net.stats.trust_messages - sent_before, endpoints))
}

/// The slope of the least-squares line through (ln x, ln y): the exponent of
/// a power law y = c·x^e.
pub fn power_law_exponent(points: &[(f64, f64)]) -> Option<f64> {
    let logs: Vec<(f64, f64)> = points
        .iter()
        .filter(|(x, y)| *x > 0.0 && *y > 0.0)
        .map(|(x, y)| (x.ln(), y.ln()))
        .collect();
    if logs.len() < 2 {
        return None;
    }
    let n = logs.len() as f64;
    let mx = logs.iter().map(|p| p.0).sum::<f64>() / n;
    let my = logs.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = logs.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = logs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}
