//! A world of honest engines and an attacker, with the invariants of issue 9
//! checked after every input. Shared by the property tests
//! (`tests/attack_property.rs`), the model check (`tests/model_check.rs`),
//! the fuzz target (`fuzz_targets/engine_inputs.rs`) and its corpus replay
//! (`tests/fuzz_corpus.rs`).
//!
//! Keys are numbered: honest endpoints (each with an [`Engine`] over a
//! [`MemoryStore`]) and attacker-controlled keys (no engine: the attacker
//! crafts whatever trust message it likes, encrypted for whom it likes). Every
//! message carries the server's stamp (the sending time the receiver knows);
//! the harness knows every stamp it gave and checks stored times against them.
//!
//! The invariants (issue 9, "Properties, each a test"):
//! - (a) manual wins where it is made: at an endpoint, the stored time of a key
//!   is never older than the last manual decision made there about it, and at
//!   equal times the level is the manual one's;
//! - (b) time is bounded: no stored decision time (key record, statement,
//!   postponed, pending) exceeds the stamp of the message that carried it;
//! - (c) authority: a contact's message changes nothing about another account's
//!   keys and nothing a contact sent is kept about another account's keys; a
//!   trust message goes only to keys its sender holds as authenticated after
//!   the input; no key's level is changed by its own statement;
//! - (d) revocation sticks ([`World::check_revocation`], at quiescence);
//! - (e) complete despite revocations ([`World::check_complete`], at
//!   quiescence, attacker silent).
#![allow(
    dead_code,
    clippy::needless_range_loop,
    clippy::collapsible_match,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs
)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use atm_engine::{
    BareJid, Config, DecisionKind, DecisionTimes, Effect, Encryption, Engine, Input, KeyId,
    KeyRecord, KeyRef, MemoryStore, Received, TrustLevel, TrustMessage, TrustStore, MAX_CLOCK_SKEW,
};
use atm_tm::{KeyOwner, Usage};
use chrono::{DateTime, TimeDelta, Utc};

/// Times are microseconds after 2020-01-01T00:00:00Z.
pub type Time = i64;
pub const SECOND: Time = 1_000_000;
const T0_SECONDS: i64 = 1_577_836_800;

pub fn to_dt(t: Time) -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + TimeDelta::seconds(T0_SECONDS) + TimeDelta::microseconds(t)
}

pub fn from_dt(d: DateTime<Utc>) -> Time {
    (d - DateTime::UNIX_EPOCH - TimeDelta::seconds(T0_SECONDS))
        .num_microseconds()
        .unwrap_or(i64::MAX)
}

fn skew() -> Time {
    MAX_CLOCK_SKEW.num_microseconds().unwrap()
}

/// One key of the world.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub name: String,
    pub account: usize,
    /// Controlled by the attacker (no engine).
    pub attacker: bool,
    /// Learned by every endpoint at the start; otherwise only by
    /// [`World::learn`].
    pub known: bool,
}

/// Everything that does not change while the world runs.
#[derive(Debug)]
pub struct Universe {
    pub accounts: Vec<BareJid>,
    pub keys: Vec<KeySpec>,
    pub refs: Vec<KeyRef>,
    /// The endpoint (node) of each honest key.
    pub node_of: Vec<Option<usize>>,
    /// The key of each node.
    pub key_of_node: Vec<usize>,
}

impl Universe {
    pub fn new(accounts: &[&str], keys: Vec<KeySpec>) -> Universe {
        let accounts: Vec<BareJid> = accounts.iter().map(|a| a.parse().unwrap()).collect();
        let refs = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let mut bytes = [0u8; 32];
                bytes[0] = i as u8;
                bytes[1] = k.account as u8;
                bytes[31] = 0x5A;
                KeyRef::new(
                    accounts[k.account].clone(),
                    KeyId::from_bytes(bytes).unwrap(),
                )
            })
            .collect();
        let mut node_of = Vec::new();
        let mut key_of_node = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            if k.attacker {
                node_of.push(None);
            } else {
                node_of.push(Some(key_of_node.len()));
                key_of_node.push(i);
            }
        }
        Universe {
            accounts,
            keys,
            refs,
            node_of,
            key_of_node,
        }
    }

    pub fn index(&self, key: &KeyRef) -> Option<usize> {
        self.refs.iter().position(|k| k == key)
    }

    pub fn account_of(&self, key: usize) -> usize {
        self.keys[key].account
    }

    pub fn name(&self, key: usize) -> &str {
        &self.keys[key].name
    }

    /// `accounts` honest accounts with `devices[a]` devices each, named A1,
    /// A2, B1, … on `userA@example.org`, …
    pub fn honest(devices: &[usize]) -> (Vec<String>, Vec<KeySpec>) {
        let mut accounts = Vec::new();
        let mut keys = Vec::new();
        for (a, n) in devices.iter().enumerate() {
            let letter = (b'A' + a as u8) as char;
            accounts.push(format!("user{letter}@example.org"));
            for d in 0..*n {
                keys.push(KeySpec {
                    name: format!("{letter}{}", d + 1),
                    account: a,
                    attacker: false,
                    known: true,
                });
            }
        }
        (accounts, keys)
    }
}

/// A trust message on the wire, with every key as its index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Wire {
    pub from: usize,
    /// The keys it is encrypted for.
    pub recipients: Vec<usize>,
    /// The OMEMO header's keys as the receiver reads them (the attacker may
    /// write what it likes).
    pub header: Vec<usize>,
    /// (target, trust?, decision time or `None` for the SCE time).
    pub decisions: Vec<(usize, bool, Option<Time>)>,
    /// The SCE time.
    pub sce: Time,
    /// The server's stamp.
    pub stamp: Time,
    pub attacker: bool,
}

/// A user's manual decision.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ManualRec {
    pub node: usize,
    pub account: usize,
    pub target: usize,
    pub trust: bool,
    pub time: Time,
}

/// An attacker's decision as delivered to an honest endpoint and accepted by
/// the clock check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttackRec {
    pub from: usize,
    pub target: usize,
    pub trust: bool,
    /// min(decision time, SCE time, stamp): the time the engine may use.
    pub effective: Time,
    pub stamp: Time,
}

/// One honest endpoint.
#[derive(Debug, Clone)]
pub struct Node {
    pub key: usize,
    pub config: Config,
    pub store: MemoryStore,
    pub clock: Time,
    pub online: bool,
    /// Stamps of every message it was given, by sender key.
    pub stamps_from: BTreeMap<usize, BTreeSet<Time>>,
    /// The latest stamp or manual time it was given.
    pub max_seen: Time,
    /// Accounts of which it ever held a key authenticated (TOAKAFA).
    pub ever_auth: BTreeSet<usize>,
    /// Its user's last manual decision per target: (trust?, time).
    pub manual: BTreeMap<usize, (bool, Time)>,
    /// Since when it holds each other node's key authenticated without a
    /// break (by node).
    pub auth_since: BTreeMap<usize, Time>,
}

/// How the world keeps time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// One clock, one second per input.
    Global,
    /// A clock per endpoint (Lamport: a message's receipt is after its
    /// stamp), so that independent deliveries commute (model check).
    PerNode,
}

/// Which endpoints a user's decision must reach (see
/// [`World::check_revocation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Connected through mutually authenticated honest keys at quiescence.
    Now,
    /// Connected through pairs that held each other authenticated without a
    /// break from the decision on.
    Throughout,
    /// Held authenticated by the deciding endpoint, and holding it
    /// authenticated, without a break from the decision on (the decision is
    /// sent to it directly and never dropped).
    Direct,
}

/// The world: honest endpoints, the messages in flight, the logs that the
/// checks read.
#[derive(Debug, Clone)]
pub struct World {
    pub u: Rc<Universe>,
    pub nodes: Vec<Node>,
    pub clock_mode: Clock,
    pub clock: Time,
    pub in_flight: Vec<(Wire, usize)>,
    /// Every message sent so far (for replays), when `keep_sent`.
    pub sent: Vec<Wire>,
    pub keep_sent: bool,
    pub manual_log: Vec<ManualRec>,
    pub attack_log: Vec<AttackRec>,
    /// What happened, for failure reports.
    pub trace: Vec<String>,
    pub keep_trace: bool,
    /// Inputs handled.
    pub inputs: u64,
}

pub type Check = Result<(), String>;

/// Appends a line to the world's trace (when it keeps one).
macro_rules! note {
    ($w:expr, $($arg:tt)*) => {
        if $w.keep_trace {
            let line = format!($($arg)*);
            $w.trace.push(line);
        }
    };
}

fn level_of(store: &mut MemoryStore, key: &KeyRef) -> Option<KeyRecord> {
    store.key(key).unwrap()
}

impl World {
    /// Every honest endpoint learns every known key.
    pub fn new(u: Universe, clock_mode: Clock) -> Result<World, String> {
        let u = Rc::new(u);
        let nodes = u
            .key_of_node
            .iter()
            .map(|&k| {
                let r = &u.refs[k];
                Node {
                    key: k,
                    config: Config::new(r.owner.clone(), r.key.clone()),
                    store: MemoryStore::new(),
                    clock: 0,
                    online: true,
                    stamps_from: BTreeMap::new(),
                    max_seen: 0,
                    ever_auth: BTreeSet::new(),
                    manual: BTreeMap::new(),
                    auth_since: BTreeMap::new(),
                }
            })
            .collect();
        let mut world = World {
            u: u.clone(),
            nodes,
            clock_mode,
            clock: 0,
            in_flight: Vec::new(),
            sent: Vec::new(),
            keep_sent: false,
            manual_log: Vec::new(),
            attack_log: Vec::new(),
            trace: Vec::new(),
            keep_trace: true,
            inputs: 0,
        };
        for n in 0..world.nodes.len() {
            for k in 0..u.keys.len() {
                if u.keys[k].known && k != world.nodes[n].key {
                    world.learn(n, k)?;
                }
            }
        }
        Ok(world)
    }

    pub fn name(&self, key: usize) -> &str {
        self.u.name(key)
    }

    /// The time of the next input at `node`, after `at_least`.
    fn now_for(&mut self, node: usize, at_least: Time) -> Time {
        match self.clock_mode {
            Clock::Global => {
                self.clock += SECOND;
                self.clock
            }
            Clock::PerNode => {
                // Whole seconds plus (node + 1) ms: two endpoints never
                // decide at the same instant (a tie is an artefact of the
                // model, not of real clocks).
                let n = &mut self.nodes[node];
                let second = n.clock.max(at_least) / SECOND + 1;
                n.clock = second * SECOND + (node as Time + 1) * 1000;
                n.clock
            }
        }
    }

    /// The server's stamp for a message the attacker sends now.
    fn attacker_now(&mut self) -> Time {
        match self.clock_mode {
            Clock::Global => {
                self.clock += SECOND;
                self.clock
            }
            Clock::PerNode => {
                // After every user decision so far (the attacker may wait
                // for them), independent of how far deliveries have gone.
                let decided = self.manual_log.iter().map(|m| m.time).max().unwrap_or(0);
                let t = (self.clock.max(decided) / SECOND + 1) * SECOND;
                self.clock = t;
                t
            }
        }
    }

    pub fn level(&mut self, node: usize, key: usize) -> Option<TrustLevel> {
        if self.nodes[node].key == key {
            return Some(TrustLevel::Authenticated);
        }
        let r = self.u.refs[key].clone();
        level_of(&mut self.nodes[node].store, &r).map(|r| r.level)
    }

    pub fn record(&mut self, node: usize, key: usize) -> Option<KeyRecord> {
        let r = self.u.refs[key].clone();
        level_of(&mut self.nodes[node].store, &r)
    }

    // ---- inputs ----

    /// The user of `node` authenticates (`trust`) or distrusts `target`.
    pub fn manual(&mut self, node: usize, target: usize, trust: bool) -> Check {
        let now = self.now_for(node, 0);
        let kind = if trust {
            DecisionKind::Trust
        } else {
            DecisionKind::Distrust
        };
        let own = self.nodes[node].key;
        note!(
            self,
            "t={} {}: user {} {}",
            now / SECOND,
            self.name(own),
            if trust { "authenticates" } else { "distrusts" },
            self.name(target)
        );
        if target != own {
            self.nodes[node].manual.insert(target, (trust, now));
            self.manual_log.push(ManualRec {
                node,
                account: self.u.account_of(own),
                target,
                trust,
                time: now,
            });
        }
        self.nodes[node].max_seen = self.nodes[node].max_seen.max(now);
        let input = Input::manual(self.u.refs[target].clone(), kind);
        self.input(node, input, now, None)
    }

    /// `node` learns `key` (device list fetched).
    pub fn learn(&mut self, node: usize, key: usize) -> Check {
        let now = self.now_for(node, 0);
        let r = self.u.refs[key].clone();
        self.input(
            node,
            Input::KeysLearned {
                owner: r.owner,
                keys: vec![r.key],
            },
            now,
            None,
        )
    }

    /// `node` restarts: a new engine over a copy of its store.
    pub fn restart(&mut self, node: usize) {
        let store = self.nodes[node].store.clone();
        self.nodes[node].store = store;
        note!(self, "{} restarts", node);
    }

    /// Delivers `in_flight[i]` (the receiver must be online).
    pub fn deliver(&mut self, i: usize) -> Check {
        let (wire, to) = self.in_flight.swap_remove(i);
        let stamp = wire.stamp;
        self.receive(&wire, to, stamp)
    }

    /// Delivers a copy of `wire` to `to` again: with its stamp (an archive
    /// duplicate) or stamped now (a live replay).
    pub fn replay(&mut self, wire: &Wire, to: usize, live: bool) -> Check {
        let stamp = if live {
            self.nodes[to].clock.max(self.clock) + SECOND
        } else {
            wire.stamp
        };
        self.receive(wire, to, stamp)
    }

    /// The attacker sends a trust message from its key `from`, encrypted for
    /// `to` (honest keys), the header naming `header`, with these decisions
    /// (target, trust?, decision-time offset from the SCE time) and an SCE
    /// time `sce_offset` from the server's stamp. Queued for delivery.
    pub fn attack(
        &mut self,
        from: usize,
        to: &[usize],
        header: &[usize],
        decisions: &[(usize, bool, Option<Time>)],
        sce_offset: Time,
    ) -> Wire {
        let stamp = self.attacker_now();
        let sce = stamp.saturating_add(sce_offset);
        let mut seen = BTreeSet::new();
        let decisions: Vec<(usize, bool, Option<Time>)> = decisions
            .iter()
            .filter(|(t, _, _)| seen.insert(*t))
            .map(|&(t, k, off)| (t, k, off.map(|o| sce.saturating_add(o))))
            .collect();
        let mut recipients: Vec<usize> = to.to_vec();
        recipients.sort();
        recipients.dedup();
        let wire = Wire {
            from,
            recipients,
            header: header.to_vec(),
            decisions,
            sce,
            stamp,
            attacker: true,
        };
        note!(self, "t={} attacker: {}", stamp / SECOND, self.show(&wire));
        self.enqueue(&wire);
        wire
    }

    fn enqueue(&mut self, wire: &Wire) {
        for &r in &wire.recipients {
            if let Some(n) = self.u.node_of[r] {
                if r != wire.from {
                    self.in_flight.push((wire.clone(), n));
                }
            }
        }
        if self.keep_sent {
            self.sent.push(wire.clone());
        }
    }

    pub fn show(&self, wire: &Wire) -> String {
        let d: Vec<String> = wire
            .decisions
            .iter()
            .map(|(t, k, time)| {
                format!(
                    "{} {}{}",
                    if *k { "trust" } else { "distrust" },
                    self.name(*t),
                    time.map(|x| format!("@{}s", x as f64 / SECOND as f64))
                        .unwrap_or_default()
                )
            })
            .collect();
        let to: Vec<&str> = wire.recipients.iter().map(|k| self.name(*k)).collect();
        format!(
            "{} -> {:?}: [{}] sce={}s stamp={}s",
            self.name(wire.from),
            to,
            d.join(", "),
            wire.sce as f64 / SECOND as f64,
            wire.stamp as f64 / SECOND as f64
        )
    }

    fn to_received(&self, wire: &Wire, to: usize, stamp: Time) -> Received {
        let from = &self.u.refs[wire.from];
        let mut owners: BTreeMap<BareJid, KeyOwner> = BTreeMap::new();
        let mut times = DecisionTimes::default();
        for &(t, trust, time) in &wire.decisions {
            let r = &self.u.refs[t];
            let owner = owners
                .entry(r.owner.clone())
                .or_insert_with(|| KeyOwner::new(r.owner.clone()));
            if trust {
                owner.trust.push(r.key.clone());
            } else {
                owner.distrust.push(r.key.clone());
            }
            if let Some(time) = time {
                times.0.insert(r.clone(), to_dt(time));
            }
        }
        let me = self.nodes[to].key;
        Received {
            sender: from.owner.clone(),
            sender_key: Some(from.key.clone()),
            time: to_dt(wire.sce),
            stamp: to_dt(stamp),
            message: TrustMessage {
                usage: Usage::ATM,
                encryption: Encryption::OMEMO2,
                key_owners: owners.into_values().collect(),
            },
            decision_times: times,
            co_recipients: wire
                .header
                .iter()
                .filter(|&&k| k != me)
                .map(|&k| self.u.refs[k].clone())
                .collect(),
        }
    }

    fn receive(&mut self, wire: &Wire, to: usize, stamp: Time) -> Check {
        let now = self.now_for(to, stamp);
        let received = self.to_received(wire, to, stamp);
        if wire.attacker && (wire.sce - stamp).abs() <= skew() {
            for &(target, trust, time) in &wire.decisions {
                let effective = time.unwrap_or(wire.sce).min(wire.sce).min(stamp);
                self.attack_log.push(AttackRec {
                    from: wire.from,
                    target,
                    trust,
                    effective,
                    stamp,
                });
            }
        }
        let node = &mut self.nodes[to];
        node.stamps_from.entry(wire.from).or_default().insert(stamp);
        node.max_seen = node.max_seen.max(stamp);
        let key = self.nodes[to].key;
        note!(
            self,
            "t={} {} receives (stamp {}s) {}",
            now / SECOND,
            self.name(key),
            stamp as f64 / SECOND as f64,
            self.show(wire)
        );
        let sender_account = self.u.account_of(wire.from);
        self.input(to, Input::Received(received), now, Some(sender_account))
    }

    /// Runs one input and checks (a), (b), (c) at that endpoint.
    fn input(&mut self, n: usize, input: Input, now: Time, from_account: Option<usize>) -> Check {
        self.inputs += 1;
        let own_account = self.u.account_of(self.nodes[n].key);
        let contact = from_account.filter(|a| *a != own_account);
        let before: Vec<(usize, Option<KeyRecord>)> = match contact {
            Some(c) => {
                let u = self.u.clone();
                (0..u.keys.len())
                    .filter(|&k| u.account_of(k) != c)
                    .map(|k| (k, self.record(n, k)))
                    .collect()
            }
            None => Vec::new(),
        };
        let node = &mut self.nodes[n];
        let mut engine = Engine::new(node.config.clone(), std::mem::take(&mut node.store));
        let effects = engine
            .handle(input, to_dt(now))
            .map_err(|e| format!("engine error: {e}"))?;
        node.store = engine.into_store();
        let me = node.key;
        // ATM_ATTACK_EFFECTS=1: every input's effects in the trace.
        if std::env::var_os("ATM_ATTACK_EFFECTS").is_some() {
            self.trace
                .push(format!("   effects at {}: {effects:?}", self.u.name(me)));
        }
        let mut sends = Vec::new();
        for effect in &effects {
            match effect {
                Effect::Send(out) => {
                    let mut recipients = Vec::new();
                    for r in &out.recipients {
                        let Some(k) = self.u.index(r) else {
                            return Err(format!("{} sent to an unknown key {r:?}", self.name(me)));
                        };
                        // (c) only to keys held as authenticated after the input.
                        let level = self.level(n, k);
                        if level != Some(TrustLevel::Authenticated) {
                            return Err(format!(
                                "(c) {} sent a trust message to {} which it holds as {level:?}",
                                self.name(me),
                                self.name(k),
                            ));
                        }
                        recipients.push(k);
                    }
                    let mut decisions = Vec::new();
                    for owner in &out.message.key_owners {
                        for (trust, keys) in [(true, &owner.trust), (false, &owner.distrust)] {
                            for key in keys {
                                let r = KeyRef::new(owner.jid.clone(), key.clone());
                                let Some(t) = self.u.index(&r) else {
                                    return Err(format!("{} sent an unknown key", self.name(me)));
                                };
                                let time = out.decision_times.0.get(&r).map(|d| from_dt(*d));
                                decisions.push((t, trust, time));
                            }
                        }
                    }
                    recipients.sort();
                    sends.push(Wire {
                        from: me,
                        header: recipients.clone(),
                        recipients,
                        decisions,
                        sce: now,
                        stamp: now,
                        attacker: false,
                    });
                }
                Effect::TrustChanged { key, cause, .. } => {
                    // (c) no key's level is changed by its own word.
                    if cause.sender() == Some(key) {
                        return Err(format!(
                            "(c) {}: the level of {key:?} was changed by its own statement ({cause:?})",
                            self.name(me)
                        ));
                    }
                }
                _ => {}
            }
        }
        for wire in &sends {
            note!(
                self,
                "t={} {} sends {}",
                now / SECOND,
                self.name(me),
                self.show(wire)
            );
            self.enqueue(wire);
        }
        if let Some(c) = contact {
            for (k, record) in before {
                let after = self.record(n, k);
                if after != record {
                    return Err(format!(
                        "(c) a message from account {} changed {} at {}: {record:?} -> {after:?}",
                        self.u.accounts[c],
                        self.name(k),
                        self.name(me)
                    ));
                }
            }
        }
        self.check_node(n, now)?;
        for k in 0..self.u.keys.len() {
            let authenticated = self.level(n, k) == Some(TrustLevel::Authenticated);
            if authenticated && k != me {
                let a = self.u.account_of(k);
                self.nodes[n].ever_auth.insert(a);
            }
            if let Some(m) = self.u.node_of[k] {
                let since = &mut self.nodes[n].auth_since;
                if !authenticated {
                    since.remove(&m);
                } else {
                    since.entry(m).or_insert(now);
                }
            }
        }
        Ok(())
    }

    /// (a), (b) and the stored part of (c) at one endpoint.
    pub fn check_node(&mut self, n: usize, now: Time) -> Check {
        let me = self.nodes[n].key;
        let me_name = self.name(me).to_owned();
        let own_account = self.u.account_of(me);
        let u = self.u.clone();
        let node = &mut self.nodes[n];
        let bound = node.max_seen + 1;
        // (a) manual wins where it is made.
        for (&target, &(trust, time)) in &node.manual {
            let record = level_of(&mut node.store, &u.refs[target]);
            let ok = match record {
                Some(KeyRecord {
                    level,
                    time: Some(t),
                }) => {
                    t > to_dt(time)
                        || (t == to_dt(time)
                            && level.decision().map(|k| k == DecisionKind::Trust) == Some(trust))
                }
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "(a) at {me_name}: the user {} {} at {}s, now {record:?}",
                    if trust { "authenticated" } else { "distrusted" },
                    u.name(target),
                    time as f64 / SECOND as f64
                ));
            }
        }
        let stamped = |node: &Node, source: usize, stamp: Time| -> bool {
            node.stamps_from
                .get(&source)
                .is_some_and(|s| s.contains(&stamp))
        };
        for (t, target) in u.refs.iter().enumerate() {
            // (b) key records.
            if let Some(KeyRecord {
                time: Some(time), ..
            }) = level_of(&mut node.store, target)
            {
                let time = from_dt(time);
                if time > bound || time > now {
                    return Err(format!(
                        "(b) at {me_name}: {} stored at {}s, after everything this endpoint was given ({}s)",
                        u.name(t),
                        time as f64 / SECOND as f64,
                        node.max_seen as f64 / SECOND as f64
                    ));
                }
            }
            // (b), (c) statements.
            for s in node.store.statements_about(target).unwrap() {
                let Some(source) = u.index(&s.source) else {
                    return Err(format!("at {me_name}: a statement of an unknown key"));
                };
                if source == t {
                    return Err(format!(
                        "(c) at {me_name}: {} keeps a statement about itself",
                        u.name(t)
                    ));
                }
                let (time, stamp) = (from_dt(s.decision.time), from_dt(s.stamp));
                if time > stamp {
                    return Err(format!(
                        "(b) at {me_name}: {}'s statement about {} is dated {}s, after its stamp {}s",
                        u.name(source),
                        u.name(t),
                        time as f64 / SECOND as f64,
                        stamp as f64 / SECOND as f64
                    ));
                }
                if source == me {
                    if stamp > now {
                        return Err(format!(
                            "(b) at {me_name}: own statement stamped in the future"
                        ));
                    }
                } else {
                    if !stamped(node, source, stamp) {
                        return Err(format!(
                            "(b) at {me_name}: {}'s statement about {} has stamp {}s, which no message from it carried",
                            u.name(source),
                            u.name(t),
                            stamp as f64 / SECOND as f64
                        ));
                    }
                    if u.account_of(source) != own_account
                        && u.account_of(source) != u.account_of(t)
                    {
                        return Err(format!(
                            "(c) at {me_name}: contact key {} has a statement about {}",
                            u.name(source),
                            u.name(t)
                        ));
                    }
                }
            }
            // (b), (c) postponed decisions of `t` as a sender.
            for p in node.store.postponed_from(target).unwrap() {
                let (time, stamp) = (from_dt(p.decision.time), from_dt(p.stamp));
                let Some(about) = u.index(&p.decision.target) else {
                    return Err(format!(
                        "at {me_name}: postponed decision about an unknown key"
                    ));
                };
                if time > stamp || !stamped(node, t, stamp) {
                    return Err(format!(
                        "(b) at {me_name}: postponed decision of {} about {} at {}s, stamp {}s",
                        u.name(t),
                        u.name(about),
                        time as f64 / SECOND as f64,
                        stamp as f64 / SECOND as f64
                    ));
                }
                if u.account_of(t) != own_account && u.account_of(about) != u.account_of(t) {
                    return Err(format!(
                        "(c) at {me_name}: contact key {} has a postponed decision about {}",
                        u.name(t),
                        u.name(about)
                    ));
                }
                if about == t {
                    return Err(format!(
                        "(c) at {me_name}: {} has a postponed decision about itself",
                        u.name(t)
                    ));
                }
            }
            // (b), (c) pending decisions about `t`.
            if let Some(p) = node.store.pending_for(target).unwrap() {
                let (time, stamp) = (from_dt(p.decision.time), from_dt(p.stamp));
                let ok = match &p.sender {
                    None => stamp <= now,
                    Some(s) => u.index(s).is_some_and(|s| {
                        stamped(node, s, stamp)
                            && s != t
                            && (u.account_of(s) == own_account
                                || u.account_of(s) == u.account_of(t))
                    }),
                };
                if time > stamp || !ok {
                    return Err(format!(
                        "(b)/(c) at {me_name}: pending decision about {} from {:?} at {}s, stamp {}s",
                        u.name(t),
                        p.sender.as_ref().and_then(|s| u.index(s)).map(|s| u.name(s)),
                        time as f64 / SECOND as f64,
                        stamp as f64 / SECOND as f64
                    ));
                }
            }
        }
        Ok(())
    }

    /// Brings every endpoint online and delivers everything in flight, in the
    /// order `pick(len)` chooses, until nothing is in flight.
    pub fn quiesce(&mut self, mut pick: impl FnMut(usize) -> usize) -> Check {
        for node in &mut self.nodes {
            node.online = true;
        }
        let mut steps = 0u64;
        while !self.in_flight.is_empty() {
            steps += 1;
            if steps > 100_000 {
                return Err("messages never stop".into());
            }
            let i = pick(self.in_flight.len()) % self.in_flight.len();
            self.deliver(i)?;
        }
        Ok(())
    }

    /// Delivers a random deliverable message; `false` if there is none.
    pub fn deliver_some(&mut self, r: usize) -> Result<bool, String> {
        let ready: Vec<usize> = (0..self.in_flight.len())
            .filter(|&i| self.nodes[self.in_flight[i].1].online)
            .collect();
        if ready.is_empty() {
            return Ok(false);
        }
        self.deliver(ready[r % ready.len()])?;
        Ok(true)
    }

    // ---- quiescence properties ----

    /// Mutually authenticated honest endpoints, as adjacency; with `since`,
    /// only pairs that hold each other authenticated without a break since
    /// that time or before.
    fn mutual(&mut self, since: Option<Time>) -> Vec<Vec<bool>> {
        let n = self.nodes.len();
        let mut m = vec![vec![false; n]; n];
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    let (ki, kj) = (self.nodes[i].key, self.nodes[j].key);
                    m[i][j] = self.level(i, kj) == Some(TrustLevel::Authenticated)
                        && self.level(j, ki) == Some(TrustLevel::Authenticated);
                    if let Some(t) = since {
                        m[i][j] &= self.nodes[i].auth_since.get(&j).is_some_and(|s| *s <= t)
                            && self.nodes[j].auth_since.get(&i).is_some_and(|s| *s <= t);
                    }
                }
            }
        }
        m
    }

    /// Delivers the first message in flight from key `from` to node `to`.
    pub fn deliver_where(&mut self, from: usize, to: usize) -> Check {
        let i = self
            .in_flight
            .iter()
            .position(|(w, n)| w.from == from && *n == to)
            .ok_or_else(|| format!("nothing in flight from {} to node {to}", self.name(from)))?;
        self.deliver(i)
    }

    /// The endpoints that a decision of `account`'s user, made at `from`,
    /// about a key of `target_account` reaches along mutually authenticated
    /// honest keys, through endpoints that pass it on: within the deciding
    /// account; for a key of the deciding account, also to and within each
    /// contact account. `skip` (the key decided on) is no hop.
    fn reach(
        &self,
        mutual: &[Vec<bool>],
        from: usize,
        account: usize,
        target_account: usize,
        skip: usize,
        direct: bool,
    ) -> Vec<bool> {
        let n = self.nodes.len();
        let acc = |i: usize| self.u.account_of(self.nodes[i].key);
        let mut seen = vec![false; n];
        let mut queue = VecDeque::from([from]);
        seen[from] = true;
        let mut hops = 0;
        while let Some(x) = queue.pop_front() {
            if direct && hops == 1 {
                break;
            }
            hops = 1;
            for y in 0..n {
                if seen[y] || !mutual[x][y] || self.nodes[y].key == skip {
                    continue;
                }
                let allowed = (acc(x) == account && acc(y) == account)
                    || (target_account == account
                        && (acc(x) == account || acc(y) == account || acc(x) == acc(y)));
                if allowed {
                    seen[y] = true;
                    queue.push_back(y);
                }
            }
        }
        seen
    }

    fn last_manual(&self, target: usize, accounts: &[usize], until: Time) -> Option<&ManualRec> {
        self.manual_log
            .iter()
            .filter(|m| m.target == target && accounts.contains(&m.account) && m.time <= until)
            .max_by_key(|m| m.time)
    }

    /// (d) Revocation sticks, at quiescence: for each key K whose last
    /// decision by a user U is a distrust, every honest endpoint that may act
    /// on it (U's endpoints; for a key of U's account also the contacts') and
    /// that U's decision reaches along mutually authenticated honest keys
    /// holds K distrusted, unless a user later authenticated K by hand, or an
    /// attacker key with authority sent a later trust of K. An attacker key X
    /// has no authority for this once U distrusted it, when X is a key of U's
    /// own account (a stolen own device: U's distrust of X reaches everybody
    /// who takes X's word); a rogue key of another account keeps the
    /// authority that its own account gives it. K's word about itself never
    /// counts. Returns the number of (endpoint, key) pairs checked.
    ///
    /// `Reach::Now` is the literal condition: connected at
    /// quiescence. `Reach::Throughout` asks only of endpoints connected by
    /// pairs that held each other authenticated without a break from the
    /// decision on (what the engine's relaying alone guarantees; a pair that
    /// authenticated each other automatically later is never synced).
    pub fn check_revocation(&mut self, reach: Reach) -> Result<usize, String> {
        let now_mutual = self.mutual(None);
        let mut checked = 0;
        for a in 0..self.u.accounts.len() {
            for k in 0..self.u.keys.len() {
                let Some(last) = self.last_manual(k, &[a], Time::MAX).cloned() else {
                    continue;
                };
                if last.trust {
                    continue;
                }
                let t_d = last.time;
                let by_hand = self
                    .manual_log
                    .iter()
                    .any(|m| m.target == k && m.trust && m.time > t_d);
                let by_attacker = self.attack_log.iter().any(|r| {
                    r.target == k
                        && r.trust
                        && r.effective > t_d
                        && r.from != k
                        && !(self.u.account_of(r.from) == a
                            && self
                                .last_manual(r.from, &[a], r.stamp)
                                .is_some_and(|m| !m.trust))
                });
                if by_hand || by_attacker {
                    continue;
                }
                let mutual = match reach {
                    Reach::Now => now_mutual.clone(),
                    Reach::Throughout | Reach::Direct => self.mutual(Some(t_d)),
                };
                let direct = reach == Reach::Direct;
                let reached = self.reach(&mutual, last.node, a, self.u.account_of(k), k, direct);
                for e in 0..self.nodes.len() {
                    if !reached[e] || self.nodes[e].key == k {
                        continue;
                    }
                    checked += 1;
                    let level = self.level(e, k);
                    if level != Some(TrustLevel::ManuallyDistrusted) {
                        let record = self.record(e, k);
                        return Err(format!(
                            "(d) {} distrusted {} at {}s (last decision of {}), but {} holds it {level:?} at quiescence ({record:?})",
                            self.name(self.nodes[last.node].key),
                            self.name(k),
                            t_d as f64 / SECOND as f64,
                            self.u.accounts[a],
                            self.name(self.nodes[e].key)
                        ));
                    }
                }
            }
        }
        Ok(checked)
    }

    /// (e) Complete despite revocations, at quiescence with a silent
    /// attacker: every endpoint whose key no user distrusted last holds, for
    /// every key K, what the last decision about K of a user whose word it
    /// takes (its own user; K's owner) implies, when that decision reaches it;
    /// an honest key nobody it listens to decided is authenticated (the
    /// complete mesh); a key nobody decided and that has no endpoint is, under
    /// TOAKAFA, automatically distrusted once the endpoint ever authenticated
    /// a key of that owner, else automatically trusted. Returns the number of
    /// (endpoint, key) pairs checked and skipped (decision not reaching).
    pub fn check_complete(&mut self, reach: Reach) -> Result<(usize, usize), String> {
        let now_mutual = self.mutual(None);
        let (mut checked, mut skipped) = (0, 0);
        let accounts = self.u.accounts.len();
        for e in 0..self.nodes.len() {
            let me = self.nodes[e].key;
            let all: Vec<usize> = (0..accounts).collect();
            if self
                .last_manual(me, &all, Time::MAX)
                .is_some_and(|m| !m.trust)
            {
                continue;
            }
            let mine = self.u.account_of(me);
            for k in 0..self.u.keys.len() {
                if k == me {
                    continue;
                }
                let owner = self.u.account_of(k);
                let expected = match self.last_manual(k, &[mine, owner], Time::MAX).cloned() {
                    Some(last) => {
                        let mutual = match reach {
                            Reach::Now => now_mutual.clone(),
                            Reach::Throughout | Reach::Direct => self.mutual(Some(last.time)),
                        };
                        let direct = reach == Reach::Direct;
                        let reached =
                            self.reach(&mutual, last.node, last.account, owner, k, direct);
                        if !reached[e] {
                            skipped += 1;
                            continue;
                        }
                        if last.trust {
                            TrustLevel::Authenticated
                        } else {
                            TrustLevel::ManuallyDistrusted
                        }
                    }
                    None if self.u.node_of[k].is_some() => TrustLevel::Authenticated,
                    None if self.nodes[e].ever_auth.contains(&owner) => {
                        TrustLevel::AutomaticallyDistrusted
                    }
                    None => TrustLevel::AutomaticallyTrusted,
                };
                checked += 1;
                let level = self.level(e, k);
                if level != Some(expected) {
                    return Err(format!(
                        "(e) {} holds {} {level:?}, expected {expected:?}",
                        self.name(me),
                        self.name(k)
                    ));
                }
            }
        }
        Ok((checked, skipped))
    }

    // ---- the model check's state ----

    /// A hash of everything that decides the future: each engine's stored
    /// state (keys, statements, postponed, pending, TOAKAFA's memory), each
    /// endpoint's clock, online flag and its user's manual decisions, the
    /// multiset of messages in flight and the logs (d) reads.
    pub fn state_hash(&mut self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let u = self.u.clone();
        for node in &mut self.nodes {
            node.clock.hash(&mut h);
            node.online.hash(&mut h);
            node.manual.hash(&mut h);
            for r in &u.refs {
                if let Some(rec) = level_of(&mut node.store, r) {
                    (rec.level, rec.time).hash(&mut h);
                } else {
                    0u8.hash(&mut h);
                }
                let mut statements = node.store.statements_about(r).unwrap();
                statements.sort_by(|a, b| a.source.cmp(&b.source));
                statements.hash(&mut h);
                let mut postponed = node.store.postponed_from(r).unwrap();
                postponed.sort_by(|a, b| a.decision.target.cmp(&b.decision.target));
                postponed.hash(&mut h);
                node.store.pending_for(r).unwrap().hash(&mut h);
            }
            for a in &u.accounts {
                node.store.had_authenticated(a).unwrap().hash(&mut h);
            }
        }
        let mut flight = self.in_flight.clone();
        flight.sort();
        flight.hash(&mut h);
        self.clock.hash(&mut h);
        let mut log = self.attack_log.clone();
        log.sort_by_key(|r| (r.from, r.target, r.trust, r.effective, r.stamp));
        log.dedup();
        log.hash(&mut h);
        h.finish()
    }
}
