//! A tiny in-memory network of engines for the engine's own tests (the full
//! scenario network lives in `atm-sim`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;

use atm_engine::{
    Config, DecisionKind, DecisionTimes, Effect, Engine, Input, KeyId, KeyRef, MemoryStore,
    Outgoing, Policy, Propagation, Received, TrustLevel, TrustMessage,
};
use chrono::{DateTime, Duration, Utc};

pub struct Endpoint {
    pub name: String,
    pub key: KeyRef,
    pub engine: Engine<MemoryStore>,
    pub online: bool,
    pub inbox: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct Sent {
    pub from: usize,
    pub time: DateTime<Utc>,
    pub out: Outgoing,
}

pub struct Net {
    pub endpoints: Vec<Endpoint>,
    pub clock: DateTime<Utc>,
    pub sent: Vec<Sent>,
    queue: VecDeque<(usize, usize)>,
    pub effects: Vec<(usize, Effect)>,
}

pub fn key_of(name: &str) -> KeyId {
    let mut bytes = [0u8; 32];
    for (i, b) in name.bytes().enumerate() {
        bytes[i % 32] ^= b;
    }
    bytes[31] = 0xA7;
    KeyId::from_bytes(bytes).unwrap()
}

impl Net {
    /// Endpoints as (name, jid); every one knows every other's key.
    pub fn new(endpoints: &[(&str, &str)], propagation: Propagation) -> Net {
        Self::with(endpoints, |c| c.propagation = propagation)
    }

    pub fn with(endpoints: &[(&str, &str)], configure: impl Fn(&mut Config)) -> Net {
        let keys: Vec<KeyRef> = endpoints
            .iter()
            .map(|(n, j)| KeyRef::new(j.parse().unwrap(), key_of(n)))
            .collect();
        let mut net = Net {
            endpoints: Vec::new(),
            clock: "2020-01-01T00:00:00Z".parse().unwrap(),
            sent: Vec::new(),
            queue: VecDeque::new(),
            effects: Vec::new(),
        };
        for ((name, _), key) in endpoints.iter().zip(&keys) {
            let mut config = Config::new(key.owner.clone(), key.key.clone());
            configure(&mut config);
            let engine = Engine::new(config, MemoryStore::new());
            net.endpoints.push(Endpoint {
                name: name.to_string(),
                key: key.clone(),
                engine,
                online: true,
                inbox: Vec::new(),
            });
        }
        for i in 0..keys.len() {
            for k in &keys {
                if *k != keys[i] {
                    net.input(
                        i,
                        Input::KeysLearned {
                            owner: k.owner.clone(),
                            keys: vec![k.key.clone()],
                        },
                    );
                }
            }
        }
        net
    }

    pub fn idx(&self, name: &str) -> usize {
        self.endpoints.iter().position(|e| e.name == name).unwrap()
    }

    pub fn key(&self, name: &str) -> KeyRef {
        self.endpoints[self.idx(name)].key.clone()
    }

    fn tick(&mut self) -> DateTime<Utc> {
        self.clock += Duration::seconds(1);
        self.clock
    }

    pub fn input(&mut self, at: usize, input: Input) -> Vec<Effect> {
        let now = self.clock;
        let effects = self.endpoints[at].engine.handle(input, now).unwrap();
        for effect in &effects {
            if let Effect::Send(out) = effect {
                // Security rule: only keys the sender holds as authenticated.
                for r in &out.recipients {
                    let level = self.endpoints[at].engine.level(r).unwrap();
                    assert_eq!(
                        level,
                        Some(TrustLevel::Authenticated),
                        "{} sent to {r:?}",
                        self.endpoints[at].name
                    );
                }
                let time = self.tick();
                self.sent.push(Sent {
                    from: at,
                    time,
                    out: out.clone(),
                });
                let seq = self.sent.len() - 1;
                for (i, e) in self.endpoints.iter().enumerate() {
                    if i != at && out.recipients.contains(&e.key) {
                        self.queue.push_back((seq, i));
                    }
                }
            }
            self.effects.push((at, effect.clone()));
        }
        effects
    }

    pub fn manual(&mut self, by: &str, of: &[&str], authenticate: bool) -> Vec<Effect> {
        let at = self.idx(by);
        let mut all = Vec::new();
        for name in of {
            let key = self.key(name);
            self.tick();
            let kind = if authenticate {
                DecisionKind::Trust
            } else {
                DecisionKind::Distrust
            };
            let input = Input::manual(key, kind);
            all.extend(self.input(at, input));
            self.run();
        }
        all
    }

    pub fn auth(&mut self, by: &str, of: &[&str]) -> Vec<Effect> {
        self.manual(by, of, true)
    }

    pub fn distrust(&mut self, by: &str, of: &[&str]) -> Vec<Effect> {
        self.manual(by, of, false)
    }

    pub fn received(&self, seq: usize, to: usize) -> Received {
        let s = &self.sent[seq];
        let sender = &self.endpoints[s.from].key;
        let to_key = &self.endpoints[to].key;
        // Through XML text and back, as on the wire.
        let message = TrustMessage::parse(&s.out.message.to_xml()).unwrap();
        let times = match s.out.decision_times.to_element(s.time) {
            Some(el) => DecisionTimes::from_element(&el).unwrap(),
            None => DecisionTimes::default(),
        };
        Received {
            sender: sender.owner.clone(),
            sender_key: Some(sender.key.clone()),
            time: s.time,
            stamp: s.time,
            message,
            decision_times: times,
            co_recipients: s
                .out
                .recipients
                .iter()
                .filter(|k| *k != to_key)
                .cloned()
                .collect(),
        }
    }

    pub fn deliver(&mut self, seq: usize, to: usize) -> Vec<Effect> {
        let received = self.received(seq, to);
        self.input(to, Input::Received(received))
    }

    pub fn run(&mut self) {
        while let Some((seq, to)) = self.queue.pop_front() {
            if self.endpoints[to].online {
                self.deliver(seq, to);
            } else {
                self.endpoints[to].inbox.push(seq);
            }
        }
    }

    pub fn offline(&mut self, name: &str) {
        let i = self.idx(name);
        self.endpoints[i].online = false;
    }

    pub fn online(&mut self, name: &str, reverse: bool) {
        let i = self.idx(name);
        self.endpoints[i].online = true;
        let mut inbox = std::mem::take(&mut self.endpoints[i].inbox);
        if reverse {
            inbox.reverse();
        }
        for seq in inbox {
            self.deliver(seq, i);
            self.run();
        }
        self.run();
    }

    pub fn level(&mut self, at: &str, of: &str) -> Option<TrustLevel> {
        let key = self.key(of);
        let i = self.idx(at);
        self.endpoints[i].engine.level(&key).unwrap()
    }

    /// Directed pairs (at, of) with `at` != `of` holding `authenticated`.
    pub fn authenticated_pairs(&mut self) -> usize {
        let names: Vec<String> = self.endpoints.iter().map(|e| e.name.clone()).collect();
        let mut n = 0;
        for a in &names {
            for b in &names {
                if a != b && self.level(a, b) == Some(TrustLevel::Authenticated) {
                    n += 1;
                }
            }
        }
        n
    }

    pub fn automatic_authentications(&self) -> usize {
        self.effects
            .iter()
            .filter(|(_, e)| matches!(e, Effect::TrustChanged { to: TrustLevel::Authenticated, cause, .. } if cause.is_trust_message()))
            .count()
    }

    pub fn policy(&mut self, policy: Policy) {
        for i in 0..self.endpoints.len() {
            self.input(i, Input::SetPolicy(policy));
        }
    }
}
