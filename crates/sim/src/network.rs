//! The scenario network: endpoints running the real engine, a clock, message
//! queues, offline storage — deterministic, in process.

use std::collections::{BTreeMap, HashMap, VecDeque};

use atm_engine::{
    Cause, Config, DecisionKind, DecisionTimes, Effect, Engine, IgnoreReason, Input, KeyMode,
    KeyRef, MemoryStore, Outgoing, Received, TrustLevel, TrustMessage, TrustStore,
};
use atm_tm::TrustUri;
use chrono::{DateTime, Duration, Utc};
use minidom::Element;

use crate::crypto::{self, Crypto, SimDevice};
use crate::keys;
use crate::scenario::{EndpointSpec, Scenario};

/// Opens the persistent store of each endpoint, and reopens it on a restart.
pub trait StoreFactory {
    /// The store type.
    type Store: TrustStore;
    /// The store of a new endpoint.
    fn open(&mut self, endpoint: &EndpointSpec) -> Result<Self::Store, String>;
    /// The store after a restart: everything held in memory is gone, only what
    /// was committed remains.
    fn reopen(&mut self, endpoint: &EndpointSpec, old: Self::Store) -> Result<Self::Store, String>;
}

/// Memory stores: a restart keeps exactly what was committed (the engine holds
/// nothing else), but nothing survives the process.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStores;

impl StoreFactory for MemoryStores {
    type Store = MemoryStore;
    fn open(&mut self, _: &EndpointSpec) -> Result<MemoryStore, String> {
        Ok(MemoryStore::new())
    }
    fn reopen(&mut self, _: &EndpointSpec, old: MemoryStore) -> Result<MemoryStore, String> {
        Ok(old)
    }
}

/// The counters of the scenario format.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// User actions.
    pub manual_actions: u64,
    /// Keys that became authenticated by a user action.
    pub manual_authentications: u64,
    /// Keys that became distrusted by a user action.
    pub manual_distrusts: u64,
    /// (endpoint, key) pairs that became authenticated through a trust message.
    pub automatic_authentications: u64,
    /// (endpoint, key) pairs that became distrusted through a trust message.
    pub automatic_distrusts: u64,
    /// Trust messages sent.
    pub trust_messages_sent: u64,
    /// Trust messages received by an endpoint that could read them.
    pub deliveries: u64,
    /// Decisions stored and not yet applied, now.
    pub postponed: u64,
}

impl Counts {
    /// A counter by its name in the format.
    pub fn get(&self, name: &str) -> Option<u64> {
        Some(match name {
            "manual_actions" => self.manual_actions,
            "manual_authentications" => self.manual_authentications,
            "manual_distrusts" => self.manual_distrusts,
            "automatic_authentications" => self.automatic_authentications,
            "automatic_distrusts" => self.automatic_distrusts,
            "trust_messages_sent" => self.trust_messages_sent,
            "deliveries" => self.deliveries,
            "postponed" => self.postponed,
            _ => return None,
        })
    }
}

/// A trust message the network carried.
#[derive(Debug, Clone)]
pub struct SentMessage {
    /// Its sequence number, from 1.
    pub seq: u64,
    /// The sending endpoint (index into the scenario's endpoints).
    pub from: usize,
    /// The endpoints it reaches.
    pub to: Vec<usize>,
    /// Its SCE time (send time).
    pub time: DateTime<Utc>,
    /// The server's stamp: when the network received it (the same clock as
    /// `time` for the scenario's own endpoints). Receivers check the SCE time
    /// against it, also when it was kept for them while they were offline.
    pub stamp: DateTime<Utc>,
    /// What the engine asked to send.
    pub out: Outgoing,
    /// The trust-message XML as sent.
    pub xml: String,
    /// The decision-times element as sent, if any decision's time differs from `time`.
    pub times_xml: Option<String>,
    /// With `--crypto omemo`: the `<encrypted>` element that carried it.
    pub encrypted: Option<atm_omemo::elements::Encrypted>,
}

/// Who a crafted (injected) trust message claims to come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// An endpoint of the scenario.
    Endpoint(usize),
    /// An outside sender: its account and the name of its key.
    Outside(atm_tm::BareJid, String),
}

/// Something that happened, for timelines and the demo.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A user action.
    Action {
        /// Who.
        by: usize,
        /// What, in words.
        text: String,
    },
    /// A level changed at an endpoint.
    Changed {
        /// Where.
        at: usize,
        /// Which key.
        key: KeyRef,
        /// From.
        from: Option<TrustLevel>,
        /// To.
        to: TrustLevel,
        /// Why.
        cause: Cause,
    },
    /// A trust message was sent (index into [`Network::messages`]).
    Sent(usize),
    /// A trust message was received.
    Delivered {
        /// Index into [`Network::messages`], `None` for an injected one.
        message: Option<usize>,
        /// The receiver.
        to: usize,
        /// `true` for a replay.
        replay: bool,
    },
    /// A decision waits for its sender's key to be authenticated, or for its key.
    Stored {
        /// Where.
        at: usize,
        /// The key decided on.
        key: KeyRef,
        /// `true`: waiting for the sender's authentication; `false`: for the key.
        postponed: bool,
    },
    /// A received trust message, or part of it, decided nothing.
    Ignored {
        /// Where.
        at: usize,
        /// Why.
        reason: IgnoreReason,
    },
    /// An injected message could not be read.
    Refused {
        /// Where.
        at: usize,
        /// Why.
        reason: String,
    },
}

/// What an offline endpoint's server keeps for it.
#[derive(Debug, Clone)]
enum Held {
    /// A trust message of the network (index into `messages`).
    Message(usize),
    /// A crafted trust message.
    Injection(Box<Injection>),
}

#[derive(Debug, Clone)]
struct Injection {
    sender: Sender,
    time: DateTime<Utc>,
    stamp: DateTime<Utc>,
    encrypted: bool,
    xml: String,
    co_recipients: Vec<KeyRef>,
}

struct Node<S> {
    spec: EndpointSpec,
    key: KeyRef,
    engine: Option<Engine<S>>,
    online: bool,
    inbox: Vec<Held>,
}

/// The network of one scenario.
pub struct Network<F: StoreFactory> {
    scenario: Scenario,
    factory: F,
    nodes: Vec<Node<F::Store>>,
    names: HashMap<KeyRef, usize>,
    clock: DateTime<Utc>,
    /// Every trust message sent, in order (`seq` = index + 1).
    pub messages: Vec<SentMessage>,
    queue: VecDeque<(usize, usize)>,
    /// The counters (all but `postponed`, which [`Network::counts`] computes).
    counts: Counts,
    /// What happened, in order.
    pub events: Vec<Event>,
    /// With `--crypto omemo`: the devices of the endpoints (same indexes).
    omemo: Option<(Crypto, Vec<Option<SimDevice>>)>,
}

/// The start of the network clock: 2020-01-01T00:00:00Z.
pub fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_577_836_800, 0).unwrap_or(DateTime::UNIX_EPOCH)
}

impl<F: StoreFactory> Network<F> {
    /// Builds the network: every endpoint that exists at the start knows the
    /// keys of every other.
    pub fn new(scenario: Scenario, factory: F) -> Result<Self, String> {
        Self::with_crypto(scenario, factory, false)
    }

    /// Builds the network; with `omemo`, every trust message is SCE-wrapped
    /// and OMEMO 2 encrypted, and keys are the devices' identity keys.
    pub fn with_crypto(scenario: Scenario, factory: F, omemo: bool) -> Result<Self, String> {
        let mut nodes = Vec::new();
        let mut names = HashMap::new();
        let mut devices = Vec::new();
        for (index, spec) in scenario.endpoints.iter().enumerate() {
            let key = if omemo {
                let device_id = u32::try_from(index + 1).map_err(|e| e.to_string())?;
                // One key per account (OOK): the account's devices share one
                // identity, each with its own device id and sessions.
                let device = match scenario.keys {
                    KeyMode::PerEndpoint => {
                        SimDevice::new("endpoint", &spec.name, spec.jid.clone(), device_id)?
                    }
                    KeyMode::PerAccount => {
                        SimDevice::new("account", spec.jid.as_str(), spec.jid.clone(), device_id)?
                    }
                };
                let key = device.key.clone();
                devices.push(Some(device));
                key
            } else {
                match scenario.keys {
                    KeyMode::PerEndpoint => keys::endpoint_key(&spec.name),
                    KeyMode::PerAccount => keys::account_key(spec.jid.as_str()),
                }
            };
            let key = KeyRef::new(spec.jid.clone(), key);
            names.entry(key.clone()).or_insert(nodes.len());
            nodes.push(Node {
                spec: spec.clone(),
                key,
                engine: None,
                online: true,
                inbox: Vec::new(),
            });
        }
        let mut net = Network {
            scenario,
            factory,
            nodes,
            names,
            clock: epoch(),
            messages: Vec::new(),
            queue: VecDeque::new(),
            counts: Counts::default(),
            events: Vec::new(),
            omemo: omemo.then(|| (Crypto::default(), devices)),
        };
        let starting: Vec<usize> = (0..net.nodes.len())
            .filter(|&i| !net.nodes[i].spec.joins_later)
            .collect();
        for &i in &starting {
            net.create(i)?;
        }
        for &i in &starting {
            net.learn_all(i)?;
        }
        Ok(net)
    }

    /// The scenario being played.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The index of an endpoint by name.
    pub fn index(&self, name: &str) -> Result<usize, String> {
        self.nodes
            .iter()
            .position(|n| n.spec.name == name)
            .ok_or_else(|| format!("unknown endpoint {name:?}"))
    }

    /// The name of endpoint `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].spec.name
    }

    /// The key of endpoint `i`.
    pub fn key(&self, i: usize) -> &KeyRef {
        &self.nodes[i].key
    }

    /// `true` if endpoint `i` is online.
    pub fn is_online(&self, i: usize) -> bool {
        self.nodes[i].online
    }

    /// `true` if endpoint `i` exists (has joined).
    pub fn exists(&self, i: usize) -> bool {
        self.nodes[i].engine.is_some()
    }

    /// Number of endpoints declared.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// `true` if no endpoint is declared.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The endpoint name for a key, or its Base64 identifier if it belongs to
    /// no endpoint.
    pub fn key_name(&self, key: &KeyRef) -> String {
        match self.names.get(key) {
            Some(&i) => self.nodes[i].spec.name.clone(),
            None => key.key.to_base64(),
        }
    }

    /// The key of a fresh name (one that is no endpoint's): a deterministic
    /// identifier, or with `--crypto omemo` the identity key of an outside device.
    pub fn fresh_key(
        &mut self,
        name: &str,
        jid: &atm_tm::BareJid,
    ) -> Result<atm_tm::KeyId, String> {
        match &mut self.omemo {
            None => Ok(keys::fresh_key(name)),
            Some((crypto, _)) => {
                if !crypto.outsiders.contains_key(name) {
                    let id = 100_000
                        + u32::try_from(crypto.outsiders.len()).map_err(|e| e.to_string())?;
                    crypto.outsiders.insert(
                        name.to_owned(),
                        SimDevice::new("fresh", name, jid.clone(), id)?,
                    );
                }
                Ok(crypto.outsiders[name].key.clone())
            }
        }
    }

    /// `true` with `--crypto omemo`.
    pub fn encrypted(&self) -> bool {
        self.omemo.is_some()
    }

    /// The current network time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock
    }

    fn tick(&mut self) -> DateTime<Utc> {
        self.clock += Duration::seconds(1);
        self.clock
    }

    fn create(&mut self, i: usize) -> Result<(), String> {
        let spec = self.nodes[i].spec.clone();
        let store = self.factory.open(&spec)?;
        let key = self.nodes[i].key.clone();
        let mut config = Config::new(key.owner, key.key);
        config.encryption = self.scenario.encryption.clone();
        config.policy = self.scenario.policy;
        config.propagation = self.scenario.propagation;
        config.key_mode = self.scenario.keys;
        self.nodes[i].engine = Some(Engine::new(config, store));
        Ok(())
    }

    /// Endpoint `i` learns the keys of every existing endpoint.
    fn learn_all(&mut self, i: usize) -> Result<(), String> {
        let mut by_owner: BTreeMap<atm_tm::BareJid, Vec<atm_tm::KeyId>> = BTreeMap::new();
        for (j, node) in self.nodes.iter().enumerate() {
            if j != i && node.engine.is_some() && node.key != self.nodes[i].key {
                let keys = by_owner.entry(node.key.owner.clone()).or_default();
                if !keys.contains(&node.key.key) {
                    keys.push(node.key.key.clone());
                }
            }
        }
        for (owner, keys) in by_owner {
            self.input(i, Input::KeysLearned { owner, keys })?;
        }
        Ok(())
    }

    fn engine(&mut self, i: usize) -> Result<&mut Engine<F::Store>, String> {
        let name = self.nodes[i].spec.name.clone();
        self.nodes[i]
            .engine
            .as_mut()
            .ok_or_else(|| format!("endpoint {name:?} has not joined"))
    }

    /// Hands one input to endpoint `i`'s engine and carries out its effects.
    pub fn input(&mut self, i: usize, input: Input) -> Result<(), String> {
        let now = self.clock;
        let name = self.nodes[i].spec.name.clone();
        let effects = self
            .engine(i)?
            .handle(input, now)
            .map_err(|e| format!("{name}: {e}"))?;
        for effect in effects {
            self.effect(i, effect);
        }
        Ok(())
    }

    fn effect(&mut self, at: usize, effect: Effect) {
        match effect {
            Effect::TrustChanged {
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
                self.events.push(Event::Changed {
                    at,
                    key,
                    from,
                    to,
                    cause,
                });
            }
            Effect::Send(out) => self.send(at, out),
            Effect::Postponed { decision, .. } => self.events.push(Event::Stored {
                at,
                key: decision.target,
                postponed: true,
            }),
            Effect::Pending { decision, .. } => self.events.push(Event::Stored {
                at,
                key: decision.target,
                postponed: false,
            }),
            Effect::Ignored(reason) => self.events.push(Event::Ignored { at, reason }),
            Effect::PostponedDropped { .. }
            | Effect::PendingDropped { .. }
            | Effect::PostponedEvicted { .. }
            | Effect::ConfirmationRequested(_)
            | Effect::ConfirmationDeclined(_)
            | Effect::PolicyChanged(_) => {}
        }
    }

    fn send(&mut self, from: usize, out: Outgoing) {
        let time = self.tick();
        let seq = self.messages.len() as u64 + 1;
        let to: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| {
                j != from
                    && self.nodes[j].engine.is_some()
                    && out.recipients.contains(&self.nodes[j].key)
            })
            .collect();
        let xml = out.message.to_xml();
        let times_xml = out
            .decision_times
            .to_element(time)
            .map(|e| String::from(&e));
        let encrypted = match self.encrypt_for(from, &to, &out, time) {
            Ok(e) => e,
            Err(reason) => {
                self.events.push(Event::Refused {
                    at: from,
                    reason: format!("cannot encrypt: {reason}"),
                });
                None
            }
        };
        let index = self.messages.len();
        for &j in &to {
            self.queue.push_back((index, j));
        }
        self.messages.push(SentMessage {
            seq,
            from,
            to,
            time,
            stamp: time,
            out,
            xml,
            times_xml,
            encrypted,
        });
        self.counts.trust_messages_sent += 1;
        self.events.push(Event::Sent(index));
    }

    /// With `--crypto omemo`: encrypts a message for the devices of `to`.
    fn encrypt_for(
        &mut self,
        from: usize,
        to: &[usize],
        out: &Outgoing,
        time: DateTime<Utc>,
    ) -> Result<Option<atm_omemo::elements::Encrypted>, String> {
        let Some((crypto, devices)) = &mut self.omemo else {
            return Ok(None);
        };
        let mut sender = devices[from].take().ok_or("sender device missing")?;
        let recipients: Vec<&SimDevice> = to.iter().filter_map(|&j| devices[j].as_ref()).collect();
        let result = crypto.encrypt(
            &mut sender,
            crypto::content(&out.message, &out.decision_times, time),
            time,
            &out.to,
            &recipients,
        );
        devices[from] = Some(sender);
        result.map(Some)
    }

    /// With `--crypto omemo`: decrypts at `to`, returning the `Received` for
    /// the engine and the pending id, or why it was refused.
    fn decrypt_at(
        &mut self,
        to: usize,
        encrypted: &atm_omemo::elements::Encrypted,
        sender_jid: &atm_tm::BareJid,
        stanza_to: &atm_tm::BareJid,
        stamp: DateTime<Utc>,
    ) -> Result<(Received, u64), String> {
        let Some((crypto, devices)) = &mut self.omemo else {
            return Err("not encrypted".into());
        };
        let mut device = devices[to].take().ok_or("receiver device missing")?;
        let result = crypto.decrypt(&mut device, encrypted, sender_jid, stanza_to);
        let own_address = device.address();
        devices[to] = Some(device);
        let (sender_key, time, content, pending) = result?;
        let (message, decision_times) = crypto::read_content(&content)?;
        let co_recipients = Crypto::header_recipients(encrypted, &own_address)
            .iter()
            .filter_map(|a| {
                devices
                    .iter()
                    .flatten()
                    .find(|d| d.address() == *a)
                    .map(|d| KeyRef::new(d.jid.clone(), d.key.clone()))
            })
            .collect();
        Ok((
            Received {
                sender: sender_jid.clone(),
                sender_key: Some(sender_key),
                time,
                stamp,
                message,
                decision_times,
                co_recipients,
            },
            pending,
        ))
    }

    fn acknowledge(&mut self, at: usize, pending: u64) -> Result<(), String> {
        if let Some((_, devices)) = &mut self.omemo {
            if let Some(device) = devices[at].as_mut() {
                device
                    .device
                    .acknowledge(pending)
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// Delivers message `index` to endpoint `to` (it must be online).
    fn deliver(&mut self, index: usize, to: usize, replay: bool) -> Result<(), String> {
        if let Some(encrypted) = self.messages[index].encrypted.clone() {
            let sender_jid = self.nodes[self.messages[index].from].key.owner.clone();
            let stanza_to = self.messages[index].out.to.clone();
            let stamp = self.messages[index].stamp;
            return match self.decrypt_at(to, &encrypted, &sender_jid, &stanza_to, stamp) {
                Err(reason) => {
                    self.events.push(Event::Refused {
                        at: to,
                        reason: format!("message {}: {reason}", self.messages[index].seq),
                    });
                    Ok(())
                }
                Ok((received, pending)) => {
                    self.counts.deliveries += 1;
                    self.events.push(Event::Delivered {
                        message: Some(index),
                        to,
                        replay,
                    });
                    self.input(to, Input::Received(received))?;
                    self.acknowledge(to, pending)
                }
            };
        }
        let message = &self.messages[index];
        let sender = self.nodes[message.from].key.clone();
        // As on the wire: the receiver reads the XML that was sent.
        let parsed = TrustMessage::parse(&message.xml)
            .map_err(|e| format!("message {}: {e}", message.seq))?;
        let times = match &message.times_xml {
            None => DecisionTimes::default(),
            Some(xml) => {
                let element: Element = xml
                    .parse()
                    .map_err(|e| format!("message {}: {e}", message.seq))?;
                DecisionTimes::from_element(&element)
                    .map_err(|e| format!("message {}: {e}", message.seq))?
            }
        };
        let own = &self.nodes[to].key;
        let received = Received {
            sender: sender.owner.clone(),
            sender_key: Some(sender.key.clone()),
            time: message.time,
            stamp: message.stamp,
            message: parsed,
            decision_times: times,
            co_recipients: message
                .out
                .recipients
                .iter()
                .filter(|k| *k != own)
                .cloned()
                .collect(),
        };
        self.counts.deliveries += 1;
        self.events.push(Event::Delivered {
            message: Some(index),
            to,
            replay,
        });
        self.input(to, Input::Received(received))
    }

    /// Delivers every pending message to every online recipient, in the order
    /// sent, until nothing is pending; offline recipients keep theirs.
    pub fn run(&mut self) -> Result<(), String> {
        while let Some((index, to)) = self.queue.pop_front() {
            if self.nodes[to].online && self.nodes[to].engine.is_some() {
                self.deliver(index, to, false)?;
            } else {
                self.nodes[to].inbox.push(Held::Message(index));
            }
        }
        Ok(())
    }

    /// The user of `by` authenticates (or distrusts) the key of `of`: one action.
    pub fn decide(&mut self, by: usize, of: usize, authenticate: bool) -> Result<(), String> {
        self.counts.manual_actions += 1;
        self.tick();
        let key = self.nodes[of].key.clone();
        let verb = if authenticate {
            "authenticates"
        } else {
            "distrusts"
        };
        let text = format!("{} {verb} the key of {}", self.name(by), self.name(of));
        self.events.push(Event::Action { by, text });
        let kind = if authenticate {
            DecisionKind::Trust
        } else {
            DecisionKind::Distrust
        };
        let input = Input::manual(key, kind);
        self.input(by, input)
    }

    /// The Trust Message URI endpoint `i` shows: its own key, and the keys of
    /// its own account it authenticated (trust) or distrusted (distrust).
    pub fn uri_of(&mut self, i: usize) -> Result<String, String> {
        let own = self.nodes[i].key.clone();
        let encryption = self.scenario.encryption.clone();
        let known = self.engine(i)?.known_keys().map_err(|e| e.to_string())?;
        let mut trust = vec![own.key.clone()];
        let mut distrust = Vec::new();
        for (key, record) in known {
            if key.owner != own.owner || key == own {
                continue;
            }
            match record.level {
                TrustLevel::Authenticated => trust.push(key.key),
                TrustLevel::ManuallyDistrusted => distrust.push(key.key),
                _ => {}
            }
        }
        Ok(TrustUri {
            jid: own.owner,
            encryption,
            trust,
            distrust,
        }
        .to_uri())
    }

    /// `by` scans the URI of `of`: one action, with every decision it carries.
    pub fn scan(&mut self, by: usize, of: usize) -> Result<String, String> {
        self.counts.manual_actions += 1;
        self.tick();
        let text = self.uri_of(of)?;
        let uri = TrustUri::parse(&text).map_err(|e| format!("URI of {}: {e}", self.name(of)))?;
        let action = format!("{} scans the QR code of {}", self.name(by), self.name(of));
        self.events.push(Event::Action { by, text: action });
        self.input(
            by,
            Input::Manual {
                owner: uri.jid,
                authenticate: uri.trust,
                distrust: uri.distrust,
            },
        )?;
        Ok(text)
    }

    /// Endpoint `i` goes offline or comes back; coming back, it receives what
    /// was kept (newest first if `reverse`).
    pub fn set_online(&mut self, i: usize, online: bool, reverse: bool) -> Result<(), String> {
        self.nodes[i].online = online;
        if online && self.nodes[i].engine.is_some() {
            let mut kept = std::mem::take(&mut self.nodes[i].inbox);
            if reverse {
                kept.reverse();
            }
            for held in kept {
                match held {
                    Held::Message(index) => self.deliver(index, i, false)?,
                    Held::Injection(injection) => self.inject_one(i, *injection)?,
                }
            }
        }
        Ok(())
    }

    /// A `joins_later` endpoint appears; it knows every existing key.
    pub fn join(&mut self, i: usize) -> Result<(), String> {
        if self.nodes[i].engine.is_some() {
            return Err(format!("endpoint {:?} already exists", self.name(i)));
        }
        self.create(i)?;
        self.learn_all(i)
    }

    /// `by` learns the key of `of`.
    pub fn fetch(&mut self, by: usize, of: usize) -> Result<(), String> {
        let key = self.nodes[of].key.clone();
        if key == self.nodes[by].key {
            return Ok(());
        }
        self.input(
            by,
            Input::KeysLearned {
                owner: key.owner,
                keys: vec![key.key],
            },
        )
    }

    /// Endpoint `i` restarts: rebuilt from its persistent store alone.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        let Some(engine) = self.nodes[i].engine.take() else {
            return Err(format!("endpoint {:?} has not joined", self.name(i)));
        };
        let config = engine.config().clone();
        let spec = self.nodes[i].spec.clone();
        let store = self.factory.reopen(&spec, engine.into_store())?;
        self.nodes[i].engine = Some(Engine::new(config, store));
        Ok(())
    }

    /// Message `seq` is delivered to `to` once more.
    pub fn replay(&mut self, seq: u64, to: usize) -> Result<(), String> {
        let index = usize::try_from(seq)
            .ok()
            .and_then(|s| s.checked_sub(1))
            .filter(|&i| i < self.messages.len());
        let Some(index) = index else {
            return Err(format!(
                "message {seq} was never sent ({} so far)",
                self.messages.len()
            ));
        };
        if !self.messages[index].to.contains(&to) {
            return Err(format!(
                "{} was not a recipient of message {seq}",
                self.name(to)
            ));
        }
        if self.nodes[to].online {
            self.deliver(index, to, true)
        } else {
            self.nodes[to].inbox.push(Held::Message(index));
            Ok(())
        }
    }

    /// A crafted trust message `xml` from `sender` reaches each of `to`, with
    /// SCE time `time` and the server's stamp `stamp`; `encrypted: false`
    /// makes it arrive in plaintext.
    pub fn inject_crafted(
        &mut self,
        to: &[usize],
        sender: &Sender,
        time: DateTime<Utc>,
        stamp: DateTime<Utc>,
        encrypted: bool,
        xml: &str,
    ) -> Result<(), String> {
        if let Sender::Outside(jid, name) = sender {
            self.fresh_key(name, jid)?; // the outside device exists from now on
        }
        for &r in to {
            let co_recipients: Vec<KeyRef> = to
                .iter()
                .filter(|&&o| o != r)
                .map(|&o| self.nodes[o].key.clone())
                .collect();
            let injection = Injection {
                sender: sender.clone(),
                time,
                stamp,
                encrypted,
                xml: xml.to_owned(),
                co_recipients,
            };
            if self.nodes[r].online {
                self.inject_one(r, injection)?;
            } else {
                self.nodes[r]
                    .inbox
                    .push(Held::Injection(Box::new(injection)));
            }
        }
        Ok(())
    }

    /// Delivers one crafted trust message to endpoint `r`.
    fn inject_one(&mut self, r: usize, injection: Injection) -> Result<(), String> {
        let Injection {
            sender,
            time,
            stamp,
            encrypted,
            xml,
            co_recipients: co,
        } = injection;
        let sender = &sender;
        let xml = xml.as_str();
        let sender_key = match sender {
            Sender::Endpoint(i) => self.nodes[*i].key.clone(),
            Sender::Outside(jid, name) => KeyRef::new(jid.clone(), self.fresh_key(name, jid)?),
        };
        {
            // A message of this very endpoint, reflected back to it (a
            // carbon of its own message): recognised by its device id, never
            // decrypted.
            let reflected = *sender == Sender::Endpoint(r);
            if self.omemo.is_none() || !encrypted || reflected {
                let received = TrustMessage::parse(xml)
                    .map_err(|e| format!("the injected trust message is invalid: {e}"))
                    .map(|message| Received {
                        sender: sender_key.owner.clone(),
                        sender_key: encrypted.then(|| sender_key.key.clone()),
                        time,
                        stamp,
                        message,
                        decision_times: DecisionTimes::default(),
                        co_recipients: co,
                    });
                return self.inject(r, received);
            }
            // Encrypted by the sender's device for this recipient.
            let element = match atm_omemo::xml::parse_bounded(xml, 16 * 1024 * 1024) {
                Ok(e) => e,
                Err(e) => {
                    self.events.push(Event::Refused {
                        at: r,
                        reason: format!("the injected trust message is invalid: {e}"),
                    });
                    return Ok(());
                }
            };
            let stanza_to = self.nodes[r].key.owner.clone();
            let encrypted_message = {
                let Some((crypto, devices)) = &mut self.omemo else {
                    return Err("not encrypted".into());
                };
                let recipient = devices[r].take().ok_or("receiver device missing")?;
                let result = match sender {
                    Sender::Endpoint(i) => {
                        let mut from = devices[*i].take().ok_or("sender device missing")?;
                        let result = crypto.encrypt(
                            &mut from,
                            vec![element],
                            time,
                            &stanza_to,
                            &[&recipient],
                        );
                        devices[*i] = Some(from);
                        result
                    }
                    Sender::Outside(_, name) => {
                        let mut from = crypto
                            .outsiders
                            .remove(name)
                            .ok_or("outside device missing")?;
                        let result = crypto.encrypt(
                            &mut from,
                            vec![element],
                            time,
                            &stanza_to,
                            &[&recipient],
                        );
                        crypto.outsiders.insert(name.clone(), from);
                        result
                    }
                };
                devices[r] = Some(recipient);
                result?
            };
            match self.decrypt_at(r, &encrypted_message, &sender_key.owner, &stanza_to, stamp) {
                Err(reason) => self.events.push(Event::Refused { at: r, reason }),
                Ok((mut received, pending)) => {
                    received.co_recipients = co;
                    self.counts.deliveries += 1;
                    self.events.push(Event::Delivered {
                        message: None,
                        to: r,
                        replay: false,
                    });
                    self.input(r, Input::Received(received))?;
                    self.acknowledge(r, pending)?;
                }
            }
        }
        Ok(())
    }

    /// A crafted trust message reaches endpoint `to`.
    fn inject(&mut self, to: usize, received: Result<Received, String>) -> Result<(), String> {
        match received {
            Err(reason) => {
                self.events.push(Event::Refused { at: to, reason });
                Ok(())
            }
            Ok(received) => {
                self.counts.deliveries += 1;
                self.events.push(Event::Delivered {
                    message: None,
                    to,
                    replay: false,
                });
                self.input(to, Input::Received(received))
            }
        }
    }

    /// Advances the clock for an event with no time of its own, and returns it.
    pub fn next_time(&mut self) -> DateTime<Utc> {
        self.tick()
    }

    /// The level endpoint `at` holds for `key` (the own key counts as authenticated).
    pub fn level(&mut self, at: usize, key: &KeyRef) -> Result<Option<TrustLevel>, String> {
        self.engine(at)?.level(key).map_err(|e| e.to_string())
    }

    /// Every key endpoint `at` knows, with its level.
    pub fn known(&mut self, at: usize) -> Result<Vec<(KeyRef, TrustLevel)>, String> {
        Ok(self
            .engine(at)?
            .known_keys()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(k, r)| (k, r.level))
            .collect())
    }

    /// The counters now (`postponed` summed over every endpoint's store).
    pub fn counts(&mut self) -> Result<Counts, String> {
        let mut counts = self.counts.clone();
        counts.postponed = 0;
        for node in &mut self.nodes {
            if let Some(engine) = node.engine.as_mut() {
                counts.postponed += engine.stored_decision_count().map_err(|e| e.to_string())?;
            }
        }
        Ok(counts)
    }
}
