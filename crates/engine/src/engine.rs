//! The engine: one [`Engine::handle`] call per input, one store commit per call.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::rc::Rc;

use atm_tm::{BareJid, KeyId, Usage};
use chrono::{DateTime, Utc};

use crate::io::{Cause, Config, Effect, EngineError, IgnoreReason, Input, Received};
use crate::level::{DecisionKind, KeyMode, Policy, TrustLevel};
use crate::store::{
    Changeset, Confirmation, Decision, KeyRecord, KeyRef, Pending, Postponed, Revocation,
    Statement, TrustStore, Word,
};

type Result<T, S> = std::result::Result<T, EngineError<<S as TrustStore>::Error>>;

/// At most this many decisions of one sender wait for its key to be
/// authenticated; more are dropped (and reported as ignored). The default of
/// [`Limits::postponed_per_sender`](crate::Limits).
pub const MAX_POSTPONED_PER_SENDER: usize = 10_000;

/// At most this many decisions of the senders of one account wait; the
/// default of [`Limits::postponed_per_account`](crate::Limits).
pub const MAX_POSTPONED_PER_ACCOUNT: usize = 10_000;

/// At most this many postponed decisions, all senders together; the default
/// of [`Limits::postponed_total`](crate::Limits).
pub const MAX_POSTPONED_TOTAL: usize = 100_000;

/// At most this many decisions about unknown keys, carried by the trust
/// messages of one account's senders, wait for their keys; the default of
/// [`Limits::pending_per_account`](crate::Limits).
pub const MAX_PENDING_PER_ACCOUNT: usize = 10_000;

/// How far a trust message's SCE `<time>` may lie from the sending time the
/// receiver knows ([`Received::stamp`]) before the message is rejected
/// (XEP-0420 §Affix Elements: "within a reasonable margin"; XEP-0434 makes
/// `<time>` mandatory for trust messages): 10 minutes, the same margin as
/// `atm_omemo::sce::SCE_TIME_MARGIN` (the two crates do not depend on each
/// other; a test of `atm-sim`, which uses both, keeps them equal).
///
/// Two things separate the two times of an honest message: clock error
/// (5 minutes is the customary tolerance for unsynchronised clocks, as in
/// Kerberos) and the time a stanza waits after encryption before its server
/// stamps it (a client that lost its connection resends its queue). More
/// than that is a wrong clock or a replayed or forged stanza. The margin only
/// decides what is rejected: whatever is accepted counts as decided no later
/// than its stamp, so a future-dated message gains nothing within the margin
/// either, and a smaller margin would only reject honest devices.
pub const MAX_CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// The ATM engine of one endpoint, for one encryption namespace. Sans-IO: it
/// reads and writes only through its [`TrustStore`], takes the time as an
/// argument and returns [`Effect`]s.
///
/// Call [`handle`](Engine::handle) for every input; perform the returned
/// effects in order (send each [`Effect::Send`] encrypted for exactly its
/// recipients). The effects are already stored when `handle` returns.
#[derive(Debug)]
pub struct Engine<S> {
    config: Config,
    store: S,
}

impl<S: TrustStore> Engine<S> {
    /// An engine over a store (new or reopened).
    pub fn new(config: Config, store: S) -> Self {
        Engine { config, store }
    }

    /// Its configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Its store.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Gives the store back.
    pub fn into_store(self) -> S {
        self.store
    }

    /// The policy in force (stored, or the configured default).
    pub fn policy(&mut self) -> Result<Policy, S> {
        Ok(self
            .store
            .policy()
            .map_err(EngineError::Store)?
            .unwrap_or(self.config.policy))
    }

    /// The trust held in a key; the own key counts as authenticated.
    pub fn level(&mut self, key: &KeyRef) -> Result<Option<TrustLevel>, S> {
        if *key == self.config.own {
            return Ok(Some(TrustLevel::Authenticated));
        }
        Ok(self
            .store
            .key(key)
            .map_err(EngineError::Store)?
            .map(|r| r.level))
    }

    /// Every known key with its trust.
    pub fn known_keys(&mut self) -> Result<Vec<(KeyRef, KeyRecord)>, S> {
        self.store
            .keys_at(&TrustLevel::ALL)
            .map_err(EngineError::Store)
    }

    /// Decisions stored and not yet applied (postponed and pending).
    pub fn stored_decision_count(&mut self) -> Result<u64, S> {
        self.store
            .stored_decision_count()
            .map_err(EngineError::Store)
    }

    /// Confirmations waiting for the user.
    pub fn confirmations(&mut self) -> Result<Vec<Confirmation>, S> {
        self.store.confirmations().map_err(EngineError::Store)
    }

    /// Handles one input at time `now`: computes its effects, stores them in
    /// one commit, and returns them. On error nothing is stored.
    pub fn handle(&mut self, input: Input, now: DateTime<Utc>) -> Result<Vec<Effect>, S> {
        let policy = self.policy()?;
        let mut txn = Txn::new(&self.config, &mut self.store, policy, now);
        match input {
            Input::Manual {
                owner,
                authenticate,
                distrust,
            } => {
                for (kind, keys) in [
                    (DecisionKind::Trust, authenticate),
                    (DecisionKind::Distrust, distrust),
                ] {
                    for key in keys {
                        txn.manual(KeyRef::new(owner.clone(), key), kind)?;
                    }
                }
            }
            Input::Received(received) => txn.receive(received)?,
            Input::KeysLearned { owner, keys } => {
                for key in keys {
                    txn.learn(KeyRef::new(owner.clone(), key))?;
                }
            }
            Input::SetPolicy(policy) => txn.set_policy(policy)?,
            Input::Confirm { target, accept } => txn.confirm(target, accept)?,
        }
        txn.finish()
    }
}

/// Where a change came from, for "never send it back".
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub sender: KeyRef,
    pub co_recipients: HashSet<KeyRef>,
}

/// A level or time change to pass on (complete propagation).
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub target: KeyRef,
    pub source: Option<Rc<Source>>,
}

/// The work of one input: reads through the store, writes into an overlay,
/// commits once.
pub(crate) struct Txn<'a, S: TrustStore> {
    pub config: &'a Config,
    pub store: &'a mut S,
    pub policy: Policy,
    now: DateTime<Utc>,
    /// Keys read or written in this input (`None`: known not to exist).
    overlay: HashMap<KeyRef, Option<KeyRecord>>,
    /// Written keys, by owner, with their records (as in `overlay`).
    written: HashMap<BareJid, BTreeMap<KeyId, KeyRecord>>,
    pub changes: Changeset,
    pub effects: Vec<Effect>,
    /// Changes to pass on, in order.
    pub changed: Vec<Change>,
    /// Keys newly authenticated by the user or by a released postponed
    /// decision, and senders that asked for a sync: they are sent what they
    /// need (complete propagation).
    pub syncs: Vec<KeyRef>,
    /// Keys newly authenticated by a trust message: the message's sender
    /// synced them, but if it is distrusted meanwhile they would miss this
    /// endpoint's distrusts, so they are sent those (no message when there
    /// are none).
    pub distrust_syncs: Vec<KeyRef>,
    /// Keys authenticated again after a distrust: if their word was dropped
    /// meanwhile, they are asked to say it again.
    pub reauthenticated: Vec<KeyRef>,
    /// Manual decisions, in order (literal XEP propagation).
    pub manual: Vec<(KeyRef, DecisionKind)>,
    release_queue: VecDeque<KeyRef>,
    /// Keys distrusted in this input, with the time of the distrust: their
    /// later statements are void.
    revoke_queue: VecDeque<(KeyRef, DateTime<Utc>)>,
    released: HashSet<KeyRef>,
    toakafa_owners: BTreeSet<BareJid>,
    authenticated_owners: HashSet<BareJid>,
    pending_overlay: HashMap<KeyRef, Option<Pending>>,
    confirm_overlay: HashMap<KeyRef, Option<Confirmation>>,
    /// Statements written in this input, by target then source (`None`:
    /// deleted).
    /// (Hash maps and short vectors, no ordered maps: comparing JIDs in
    /// order costs more than hashing them.)
    statement_overlay: HashMap<KeyRef, Vec<Written>>,
    /// How many statements of `statement_overlay` each source has.
    statement_sources: HashMap<KeyRef, usize>,
    /// Revocations ended in this input: since when a key was distrusted,
    /// until its authentication again (recorded then: while a key is
    /// distrusted, its messages are dropped anyway).
    revocations: HashMap<KeyRef, Revocation>,
}

/// A statement written in this input, or the deletion of one (by its source).
#[derive(Debug, Clone)]
enum Written {
    Said(Statement),
    Unsaid(KeyRef),
}

impl Written {
    fn source(&self) -> &KeyRef {
        match self {
            Written::Said(statement) => &statement.source,
            Written::Unsaid(source) => source,
        }
    }
}

/// The newest of two decisions: the later time, and at equal times a
/// distrust.
fn newer(a: &Decision, b: &Decision) -> bool {
    newer_than(a.kind, a.time, b.kind, b.time)
}

/// [`newer`] on the kinds and times of two decisions.
fn newer_than(
    kind: DecisionKind,
    time: DateTime<Utc>,
    than_kind: DecisionKind,
    than_time: DateTime<Utc>,
) -> bool {
    time > than_time
        || (time == than_time && kind == DecisionKind::Distrust && than_kind == DecisionKind::Trust)
}

impl<'a, S: TrustStore> Txn<'a, S> {
    fn new(config: &'a Config, store: &'a mut S, policy: Policy, now: DateTime<Utc>) -> Self {
        Txn {
            config,
            store,
            policy,
            now,
            overlay: HashMap::default(),
            written: HashMap::default(),
            changes: Changeset::default(),
            effects: Vec::new(),
            changed: Vec::new(),
            syncs: Vec::new(),
            distrust_syncs: Vec::new(),
            reauthenticated: Vec::new(),
            manual: Vec::new(),
            release_queue: VecDeque::new(),
            revoke_queue: VecDeque::new(),
            released: HashSet::default(),
            toakafa_owners: BTreeSet::new(),
            authenticated_owners: HashSet::default(),
            pending_overlay: HashMap::default(),
            confirm_overlay: HashMap::default(),
            statement_overlay: HashMap::default(),
            statement_sources: HashMap::default(),
            revocations: HashMap::default(),
        }
    }

    // ---- reads and writes through the overlay ----

    pub fn get(&mut self, key: &KeyRef) -> Result<Option<KeyRecord>, S> {
        if let Some(record) = self.overlay.get(key) {
            return Ok(*record);
        }
        let record = self.store.key(key).map_err(EngineError::Store)?;
        self.overlay.insert(key.clone(), record);
        Ok(record)
    }

    /// Writes a key's record; returns the record it had in this input's
    /// overlay (`None` if unknown or not read yet).
    fn set(&mut self, key: &KeyRef, record: KeyRecord) -> Option<KeyRecord> {
        let before = match self.overlay.get_mut(key) {
            Some(slot) => slot.replace(record),
            None => {
                self.overlay.insert(key.clone(), Some(record));
                None
            }
        };
        match self.written.get_mut(&key.owner) {
            Some(keys) => {
                keys.insert(key.key.clone(), record);
            }
            None => {
                self.written
                    .entry(key.owner.clone())
                    .or_default()
                    .insert(key.key.clone(), record);
            }
        }
        before
    }

    /// Every known key of `owner`, with this input's writes.
    pub fn keys_of(&mut self, owner: &BareJid) -> Result<Vec<(KeyId, KeyRecord)>, S> {
        let mut keys: BTreeMap<KeyId, KeyRecord> = self
            .store
            .keys_of(owner)
            .map_err(EngineError::Store)?
            .into_iter()
            .collect();
        if let Some(written) = self.written.get(owner) {
            for (key, record) in written {
                keys.insert(key.clone(), *record);
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// Every known key at one of `levels`, with this input's writes.
    pub fn keys_at(&mut self, levels: &[TrustLevel]) -> Result<Vec<(KeyRef, KeyRecord)>, S> {
        let mut keys: BTreeMap<KeyRef, KeyRecord> = self
            .store
            .keys_at(levels)
            .map_err(EngineError::Store)?
            .into_iter()
            .collect();
        for (owner, written) in &self.written {
            for (key, record) in written {
                let key = KeyRef::new(owner.clone(), key.clone());
                if levels.contains(&record.level) {
                    keys.insert(key, *record);
                } else {
                    keys.remove(&key);
                }
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// Every statement about `target`, with this input's writes.
    fn statements_about(&mut self, target: &KeyRef) -> Result<Vec<Statement>, S> {
        let mut all: BTreeMap<KeyRef, Statement> = self
            .store
            .statements_about(target)
            .map_err(EngineError::Store)?
            .into_iter()
            .map(|s| (s.source.clone(), s))
            .collect();
        if let Some(written) = self.statement_overlay.get(target) {
            for w in written {
                match w {
                    Written::Said(s) => {
                        all.insert(s.source.clone(), s.clone());
                    }
                    Written::Unsaid(source) => {
                        all.remove(source);
                    }
                }
            }
        }
        Ok(all.into_values().collect())
    }

    /// The word of `source` about `target`, with this input's writes.
    fn word(&mut self, target: &KeyRef, source: &KeyRef) -> Result<Option<Word>, S> {
        if let Some(written) = self
            .statement_overlay
            .get(target)
            .and_then(|v| v.iter().find(|w| w.source() == source))
        {
            return Ok(match written {
                Written::Said(s) => Some(Word::of(s)),
                Written::Unsaid(_) => None,
            });
        }
        self.store
            .word_of(target, source)
            .map_err(EngineError::Store)
    }

    /// Every statement of `source`, with this input's writes.
    fn statements_from(&mut self, source: &KeyRef) -> Result<Vec<Statement>, S> {
        let mut all: BTreeMap<KeyRef, Statement> = self
            .store
            .statements_from(source)
            .map_err(EngineError::Store)?
            .into_iter()
            .map(|s| (s.decision.target.clone(), s))
            .collect();
        if self.statement_sources.get(source).copied().unwrap_or(0) > 0 {
            for (target, written) in &self.statement_overlay {
                match written.iter().find(|w| w.source() == source) {
                    Some(Written::Said(s)) => {
                        all.insert(target.clone(), s.clone());
                    }
                    Some(Written::Unsaid(_)) => {
                        all.remove(target);
                    }
                    None => {}
                }
            }
        }
        Ok(all.into_values().collect())
    }

    /// Writes (or deletes) the statement of a source about `target`.
    fn write_statement(&mut self, target: &KeyRef, statement: Written) {
        let written = match self.statement_overlay.get_mut(target) {
            Some(written) => written,
            None => self.statement_overlay.entry(target.clone()).or_default(),
        };
        match written
            .iter_mut()
            .find(|w| w.source() == statement.source())
        {
            Some(slot) => *slot = statement,
            None => {
                match self.statement_sources.get_mut(statement.source()) {
                    Some(n) => *n += 1,
                    None => {
                        self.statement_sources.insert(statement.source().clone(), 1);
                    }
                }
                written.push(statement);
            }
        }
    }

    fn is_own(&self, key: &KeyRef) -> bool {
        *key == self.config.own
    }

    /// `true` if `owner` has, or ever had, an authenticated key.
    fn had_authenticated(&mut self, owner: &BareJid) -> Result<bool, S> {
        if self.authenticated_owners.contains(owner)
            || self
                .store
                .had_authenticated(owner)
                .map_err(EngineError::Store)?
        {
            return Ok(true);
        }
        Ok(self
            .keys_of(owner)?
            .iter()
            .any(|(_, r)| r.level == TrustLevel::Authenticated))
    }

    /// The level of a new key of `owner` under the policy: TOAKAFA trusts it
    /// only until the first authentication of one of the owner's keys, for
    /// good (XEP-0450 §Security Considerations).
    fn initial_level(&mut self, owner: &BareJid) -> Result<TrustLevel, S> {
        Ok(match self.policy {
            Policy::Manual => TrustLevel::Undecided,
            Policy::Toakafa => {
                if self.had_authenticated(owner)? {
                    TrustLevel::AutomaticallyDistrusted
                } else {
                    TrustLevel::AutomaticallyTrusted
                }
            }
        })
    }

    // ---- inputs ----

    fn manual(&mut self, target: KeyRef, kind: DecisionKind) -> Result<(), S> {
        if self.is_own(&target) {
            self.effects.push(Effect::Ignored(IgnoreReason::OwnKey));
            return Ok(());
        }
        let mut time = self.now;
        match self.get(&target)? {
            None => {
                // The user holds the key itself (fingerprint, URI): it is known now.
                let level = self.initial_level(&target.owner)?;
                self.set(&target, KeyRecord { level, time: None });
                self.effects.push(Effect::TrustChanged {
                    key: target.clone(),
                    from: None,
                    to: level,
                    cause: Cause::KeyLearned,
                });
            }
            // The user's decision is the newest this endpoint knows, even if
            // a clock elsewhere ran ahead.
            Some(KeyRecord {
                time: Some(stored), ..
            }) if stored >= time => time = stored + chrono::TimeDelta::microseconds(1),
            Some(_) => {}
        }
        self.manual.push((target.clone(), kind));
        let decision = Decision { target, kind, time };
        self.apply(decision, Cause::Manual, None, time)?;
        self.settle()
    }

    fn receive(&mut self, received: Received) -> Result<(), S> {
        let Some(sender_key) = received.sender_key.clone() else {
            self.effects
                .push(Effect::Ignored(IgnoreReason::Unencrypted));
            return Ok(());
        };
        let message = &received.message;
        if message.usage != Usage::ATM {
            self.effects.push(Effect::Ignored(IgnoreReason::Usage(
                message.usage.as_str().to_owned(),
            )));
            return Ok(());
        }
        if message.encryption != self.config.encryption {
            self.effects.push(Effect::Ignored(IgnoreReason::Encryption(
                message.encryption.as_str().to_owned(),
            )));
            return Ok(());
        }
        let sender = KeyRef::new(received.sender.clone(), sender_key);
        let own_key_shared = self.config.key_mode == KeyMode::PerAccount;
        if self.is_own(&sender) && !own_key_shared {
            self.effects.push(Effect::Ignored(IgnoreReason::Reflected));
            return Ok(());
        }
        // XEP-0420: the SCE time must lie within a margin of the sending time
        // the receiver knows; nothing counts as decided after that time.
        let stamp = received.stamp;
        if (received.time - stamp).abs() > MAX_CLOCK_SKEW {
            self.effects.push(Effect::Ignored(IgnoreReason::ClockSkew {
                time: received.time,
                stamp,
            }));
            return Ok(());
        }
        let sent = received.time.min(stamp);
        let sender_level = if self.is_own(&sender) {
            Some(TrustLevel::Authenticated)
        } else {
            self.get(&sender)?.map(|r| r.level)
        };
        if sender_level == Some(TrustLevel::ManuallyDistrusted) {
            self.effects
                .push(Effect::Ignored(IgnoreReason::SenderDistrusted));
            self.missed(&sender)?;
            return Ok(());
        }
        let authenticated = sender_level == Some(TrustLevel::Authenticated);
        // Sent while its sender was distrusted, delivered after the sender
        // was authenticated again: still void.
        if let Some(Revocation {
            since,
            until: Some(until),
        }) = self.revocation(&sender)?
        {
            if since <= stamp && stamp < until {
                self.effects
                    .push(Effect::Ignored(IgnoreReason::SenderDistrusted));
                self.missed(&sender)?;
                return Ok(());
            }
        }
        let from_own_account = received.sender == self.config.own.owner;
        let source = Rc::new(Source {
            sender: sender.clone(),
            co_recipients: received.co_recipients.iter().cloned().collect(),
        });
        let mut postponer = Postponer::default();
        let mut self_vouching = false;
        for owner in &message.key_owners {
            // A contact that authenticated this endpoint again asks for what
            // it missed with a decision about this endpoint's key, which the
            // authority rule below would otherwise drop.
            let own_key = &self.config.own;
            if !from_own_account
                && owner.jid == own_key.owner
                && authenticated
                && received.co_recipients.is_empty()
                && owner.trust.contains(&own_key.key)
                && !self.syncs.contains(&sender)
            {
                self.syncs.push(sender.clone());
            }
            if !from_own_account && owner.jid != received.sender {
                self.effects
                    .push(Effect::Ignored(IgnoreReason::ForeignOwner(
                        owner.jid.clone(),
                    )));
                continue;
            }
            let decisions = owner
                .trust
                .iter()
                .map(|k| (DecisionKind::Trust, k))
                .chain(owner.distrust.iter().map(|k| (DecisionKind::Distrust, k)));
            for (kind, key) in decisions {
                let target = KeyRef::new(owner.jid.clone(), key.clone());
                if self.is_own(&target) {
                    // A peer that authenticated this endpoint again after a
                    // distrust tells it so in a message for it alone, and
                    // thereby asks for everything it missed.
                    let request = authenticated
                        && kind == DecisionKind::Trust
                        && received.co_recipients.is_empty();
                    if request && !self.syncs.contains(&sender) {
                        self.syncs.push(sender.clone());
                    }
                    continue;
                }
                if target == sender {
                    // A key's word about itself carries no information.
                    self_vouching = true;
                    continue;
                }
                let time = received.decision_times.time_of(&target, sent);
                let decision = Decision { target, kind, time };
                if authenticated {
                    self.apply(
                        decision,
                        Cause::TrustMessage(sender.clone()),
                        Some(source.clone()),
                        stamp,
                    )?;
                } else {
                    postponer.postpone(self, &sender, decision, stamp)?;
                }
            }
        }
        if self_vouching {
            self.effects
                .push(Effect::Ignored(IgnoreReason::SelfVouching));
        }
        postponer.finish(self);
        self.settle()
    }

    fn learn(&mut self, target: KeyRef) -> Result<(), S> {
        if self.is_own(&target) || self.get(&target)?.is_some() {
            return Ok(());
        }
        let level = self.initial_level(&target.owner)?;
        self.set(&target, KeyRecord { level, time: None });
        self.effects.push(Effect::TrustChanged {
            key: target.clone(),
            from: None,
            to: level,
            cause: Cause::KeyLearned,
        });
        if let Some(pending) = self.pending(&target)? {
            self.pending_overlay.insert(target.clone(), None);
            self.changes.unpend.push(target.clone());
            // Only the word of a sender that is still authenticated counts: a
            // device distrusted before the key appeared cannot have
            // pre-authorised it.
            let sender_ok = match &pending.sender {
                None => true,
                Some(sender) => {
                    self.is_own(sender)
                        || self.get(sender)?.map(|r| r.level) == Some(TrustLevel::Authenticated)
                }
            };
            if sender_ok {
                let source = pending.sender.clone().map(|sender| {
                    Rc::new(Source {
                        sender,
                        co_recipients: HashSet::default(),
                    })
                });
                self.apply(
                    pending.decision,
                    Cause::Pending(pending.sender),
                    source,
                    pending.stamp,
                )?;
            } else if let Some(sender) = pending.sender {
                self.effects
                    .push(Effect::PendingDropped { sender, count: 1 });
            }
        }
        self.settle()
    }

    fn set_policy(&mut self, policy: Policy) -> Result<(), S> {
        self.changes.policy = Some(policy);
        self.effects.push(Effect::PolicyChanged(policy));
        let old = self.policy;
        self.policy = policy;
        if old == Policy::Manual && policy == Policy::Toakafa {
            for (key, record) in self.keys_at(&[TrustLevel::Undecided])? {
                self.overlay.entry(key.clone()).or_insert(Some(record));
                let level = self.initial_level(&key.owner)?;
                self.change_level(&key, level, None, Cause::Policy);
            }
        }
        Ok(())
    }

    fn confirm(&mut self, target: KeyRef, accept: bool) -> Result<(), S> {
        let Some(confirmation) = self.confirmation(&target)? else {
            return Err(EngineError::NoConfirmation {
                owner: target.owner,
                key: target.key.to_base64(),
            });
        };
        self.confirm_overlay.insert(target.clone(), None);
        self.changes.unconfirm.push(target);
        if accept {
            let sender = confirmation.sender.clone();
            let source = Rc::new(Source {
                sender: sender.clone(),
                co_recipients: HashSet::default(),
            });
            let stamp = confirmation.decision.time;
            self.apply(
                confirmation.decision,
                Cause::Confirmed(sender),
                Some(source),
                stamp,
            )?;
            self.settle()
        } else {
            self.effects
                .push(Effect::ConfirmationDeclined(confirmation));
            Ok(())
        }
    }

    fn pending(&mut self, target: &KeyRef) -> Result<Option<Pending>, S> {
        if let Some(p) = self.pending_overlay.get(target) {
            return Ok(p.clone());
        }
        let p = self.store.pending_for(target).map_err(EngineError::Store)?;
        self.pending_overlay.insert(target.clone(), p.clone());
        Ok(p)
    }

    fn confirmation(&mut self, target: &KeyRef) -> Result<Option<Confirmation>, S> {
        if let Some(c) = self.confirm_overlay.get(target) {
            return Ok(c.clone());
        }
        let c = self
            .store
            .confirmation_for(target)
            .map_err(EngineError::Store)?;
        self.confirm_overlay.insert(target.clone(), c.clone());
        Ok(c)
    }

    // ---- the rules ----

    /// Sets a level, recording the change as an effect when the level
    /// differs; returns the record before.
    fn change_level(
        &mut self,
        key: &KeyRef,
        level: TrustLevel,
        time: Option<DateTime<Utc>>,
        cause: Cause,
    ) -> Option<KeyRecord> {
        let before = self.set(key, KeyRecord { level, time });
        if level == TrustLevel::Authenticated && !self.authenticated_owners.contains(&key.owner) {
            self.authenticated_owners.insert(key.owner.clone());
        }
        if before.map(|r| r.level) != Some(level) {
            self.effects.push(Effect::TrustChanged {
                key: key.clone(),
                from: before.map(|r| r.level),
                to: level,
                cause,
            });
        }
        before
    }

    /// The key that a decision with this cause is the word of: the sender,
    /// or this endpoint for the user's own decisions.
    fn speaker(&self, cause: &Cause) -> KeyRef {
        cause
            .sender()
            .cloned()
            .unwrap_or_else(|| self.config.own.clone())
    }

    /// Applies one decision under the ordering rule: a decision applies only if
    /// it is newer than the one that set the key's level (at equal times a
    /// distrust beats a trust); a user's own decision always applies. Every
    /// accepted decision is kept as its speaker's statement.
    fn apply(
        &mut self,
        decision: Decision,
        cause: Cause,
        source: Option<Rc<Source>>,
        stamp: DateTime<Utc>,
    ) -> Result<(), S> {
        if self.is_own(&decision.target) {
            return Ok(());
        }
        let Some(current) = self.get(&decision.target)? else {
            return self.store_pending(decision, cause, stamp);
        };
        let manual = cause == Cause::Manual;
        let confirmed = matches!(cause, Cause::Confirmed(_));
        if self.config.confirm && !manual && !confirmed {
            if let Some(sender) = cause.sender().cloned() {
                return self.request_confirmation(sender, decision);
            }
        }
        // One statement per speaker: an older decision of the same speaker,
        // delivered late, changes nothing. Older by the speaker's decision
        // time, not by the server's stamp: a server may hold a message and
        // stamp it later (within the clock-skew margin), and a word stamped
        // late must not shadow the speaker's newer decision delivered after
        // it (found by the attack property tests, seed 2). Equal times keep
        // the later stamp.
        let speaker = self.speaker(&cause);
        let previous = self.word(&decision.target, &speaker)?;
        if previous.is_some_and(|p| (p.time, p.stamp) > (decision.time, stamp)) {
            return Ok(());
        }
        // The same word said again keeps the stamp of its first saying (it
        // was said then, whatever happens to the speaker later).
        let repeated = previous.is_some_and(|p| p.kind == decision.kind && p.time == decision.time);
        if !repeated {
            let statement = Statement {
                source: speaker,
                decision: decision.clone(),
                stamp,
            };
            self.write_statement(&decision.target, Written::Said(statement));
        }
        if let (false, Some(time), Some(kind)) = (manual, current.time, current.level.decision()) {
            if !newer_than(decision.kind, decision.time, kind, time) {
                return Ok(());
            }
            // At equal times this endpoint's own word (the user's decision,
            // or its own correction) stands: another endpoint's decision of
            // the same instant is a copy of it or a correction derived from
            // it, never newer news.
            if decision.time == time {
                let own = self.config.own.clone();
                let own_word = self.word(&decision.target, &own)?;
                if own_word.is_some_and(|w| w.time == time && w.kind == kind) {
                    return Ok(());
                }
            }
        }
        let level = TrustLevel::of_decision(decision.kind);
        if current.level == level && current.time == Some(decision.time) {
            return Ok(());
        }
        self.decide(
            &decision.target,
            current.level,
            decision.kind,
            decision.time,
            cause,
            source,
        );
        Ok(())
    }

    /// Records a decided level and its consequences: pass it on, release the
    /// postponed decisions of a newly authenticated key, sync it, void the
    /// later word of a newly distrusted one.
    fn decide(
        &mut self,
        target: &KeyRef,
        before: TrustLevel,
        kind: DecisionKind,
        time: DateTime<Utc>,
        cause: Cause,
        source: Option<Rc<Source>>,
    ) {
        let level = TrustLevel::of_decision(kind);
        let manual = cause == Cause::Manual;
        let released = matches!(cause, Cause::Postponed(_));
        let corrected = matches!(cause, Cause::Revoked(_));
        let since = self
            .change_level(target, level, Some(time), cause)
            .and_then(|r| r.time);
        self.changed.push(Change {
            target: target.clone(),
            source,
        });
        match kind {
            DecisionKind::Trust => {
                if before != TrustLevel::Authenticated {
                    if !self.toakafa_owners.contains(&target.owner) {
                        self.toakafa_owners.insert(target.owner.clone());
                    }
                    self.release_queue.push_back(target.clone());
                    if before == TrustLevel::ManuallyDistrusted {
                        // Authenticated again: if this endpoint dropped some
                        // of its word meanwhile, it is asked to say it again
                        // (docs/propagation.md, Re-authentication); what it
                        // sent while distrusted stays void.
                        self.reauthenticated.push(target.clone());
                        if let Some(since) = since {
                            self.revocations.insert(
                                target.clone(),
                                Revocation {
                                    since,
                                    until: Some(time),
                                },
                            );
                        }
                    }
                    if released {
                        self.syncs.push(target.clone());
                    } else if !manual && !corrected {
                        self.distrust_syncs.push(target.clone());
                    }
                }
                if manual {
                    self.syncs.push(target.clone());
                }
            }
            DecisionKind::Distrust => {
                if before != TrustLevel::ManuallyDistrusted && !corrected {
                    self.revoke_queue.push_back((target.clone(), time));
                }
            }
        }
    }

    fn store_pending(
        &mut self,
        decision: Decision,
        cause: Cause,
        stamp: DateTime<Utc>,
    ) -> Result<(), S> {
        let target = decision.target.clone();
        let previous = self.pending(&target)?;
        let newer = previous
            .as_ref()
            .is_none_or(|p| p.decision.time <= decision.time);
        if !newer {
            return Ok(());
        }
        let sender = cause.sender().cloned();
        if let Some(sender) = sender.as_ref().filter(|s| !self.is_own(s)) {
            let replaces_own = previous
                .as_ref()
                .is_some_and(|p| p.sender.as_ref().is_some_and(|s| s.owner == sender.owner));
            let limit = self.config.limits.pending_per_account as u64;
            if !replaces_own {
                let stored = self
                    .store
                    .pending_count_of(&sender.owner)
                    .map_err(EngineError::Store)?;
                let added = self
                    .changes
                    .pending
                    .iter()
                    .filter(|p| p.sender.as_ref().is_some_and(|s| s.owner == sender.owner))
                    .count() as u64;
                if stored + added >= limit {
                    if !self
                        .effects
                        .contains(&Effect::Ignored(IgnoreReason::TooManyPending))
                    {
                        self.effects
                            .push(Effect::Ignored(IgnoreReason::TooManyPending));
                    }
                    return Ok(());
                }
            }
        }
        let pending = Pending {
            sender: sender.clone(),
            decision: decision.clone(),
            stamp,
        };
        self.pending_overlay
            .insert(target.clone(), Some(pending.clone()));
        self.changes.pending.retain(|p| p.decision.target != target);
        self.changes.pending.push(pending);
        self.effects.push(Effect::Pending { sender, decision });
        Ok(())
    }

    fn request_confirmation(&mut self, sender: KeyRef, decision: Decision) -> Result<(), S> {
        let target = decision.target.clone();
        let newer = self
            .confirmation(&target)?
            .is_none_or(|c| c.decision.time <= decision.time);
        if newer {
            let confirmation = Confirmation { sender, decision };
            self.confirm_overlay
                .insert(target, Some(confirmation.clone()));
            self.changes.confirm.push(confirmation.clone());
            self.effects
                .push(Effect::ConfirmationRequested(confirmation));
        }
        Ok(())
    }

    /// A key is distrusted from `since` on: its postponed and pending
    /// decisions are dropped, and what it said from `since` on is void (each
    /// key it decided then falls back to what the others said).
    fn revoke(&mut self, key: &KeyRef, since: DateTime<Utc>) -> Result<(), S> {
        let mut dropped = self.drop_postponed(key)? + self.drop_pending(key)?;
        for statement in self.statements_from(key)? {
            if statement.stamp < since {
                continue;
            }
            dropped += 1;
            let target = statement.decision.target.clone();
            self.write_statement(&target, Written::Unsaid(key.clone()));
            self.fall_back(&target, &statement, key)?;
        }
        if dropped > 0 {
            self.missed(key)?;
        }
        Ok(())
    }

    /// The last revocation of `key`: since when it was distrusted, and until
    /// when, if it was authenticated again.
    fn revocation(&mut self, key: &KeyRef) -> Result<Option<Revocation>, S> {
        if let Some(r) = self.revocations.get(key) {
            return Ok(Some(*r));
        }
        self.store.revocation(key).map_err(EngineError::Store)
    }

    /// Notes that some word of `key` was dropped.
    fn missed(&mut self, key: &KeyRef) -> Result<(), S> {
        if !self.changes.missed.contains(key)
            && !self.store.missed_word_of(key).map_err(EngineError::Store)?
        {
            self.changes.missed.push(key.clone());
        }
        Ok(())
    }

    /// `true` if some word of `key` was dropped and not asked for again.
    pub fn was_missed(&mut self, key: &KeyRef) -> Result<bool, S> {
        if self.changes.unmissed.contains(key) {
            return Ok(false);
        }
        Ok(self.changes.missed.contains(key)
            || self.store.missed_word_of(key).map_err(EngineError::Store)?)
    }

    /// `voided` (a statement of the distrusted `speaker`) is void. If it had
    /// set the level of its key, the level falls back to the newest remaining
    /// statement; where that changes the level, this endpoint states the
    /// correction itself, at a time that beats the void decision everywhere
    /// it was passed on (a trust voided with nothing else trusting the key
    /// becomes a distrust: only the distrusted key had vouched for it).
    fn fall_back(
        &mut self,
        target: &KeyRef,
        voided: &Statement,
        speaker: &KeyRef,
    ) -> Result<(), S> {
        let Some(current) = self.get(target)? else {
            return Ok(());
        };
        let set_by_voided = current.level.decision() == Some(voided.decision.kind)
            && current.time == Some(voided.decision.time);
        // A void distrust stays: a receiver cannot tell a distrust relayed
        // by a key revoked before it relayed it from a forged one, and
        // undoing it (the trust behind it, stated 1 µs after it so that it
        // also won where it was passed on) beat every genuine copy of it
        // that came later, the user's own included (attack property seeds
        // 3, 6, 7, 9, 10). A wrong distrust costs a re-authentication; a
        // wrong trust, a revoked key kept (docs/propagation.md).
        if !set_by_voided || voided.decision.kind == DecisionKind::Distrust {
            return Ok(());
        }
        let mut best: Option<Decision> = None;
        for s in self.statements_about(target)? {
            if best.as_ref().is_none_or(|b| newer(&s.decision, b)) {
                best = Some(s.decision);
            }
        }
        let cause = Cause::Revoked(speaker.clone());
        match best {
            Some(b) if b.kind == DecisionKind::Trust => {
                // Same level, older time: nothing to pass on.
                self.change_level(target, TrustLevel::Authenticated, Some(b.time), cause);
            }
            _ => {
                // Only the revoked key vouched for it, after its revocation:
                // distrusted, at the void decision's time so that the
                // correction wins wherever the void trust was passed on. The
                // correction revokes nothing in turn (it is no one's word
                // about that key's own statements).
                let own = self.config.own.clone();
                let time = voided.decision.time;
                self.write_statement(
                    target,
                    Written::Said(Statement {
                        source: own,
                        decision: Decision {
                            target: target.clone(),
                            kind: DecisionKind::Distrust,
                            time,
                        },
                        stamp: self.now,
                    }),
                );
                self.decide(
                    target,
                    current.level,
                    DecisionKind::Distrust,
                    time,
                    cause,
                    None,
                );
            }
        }
        Ok(())
    }

    /// Postponed decisions of a sender whose key is now distrusted are
    /// dropped; returns how many.
    fn drop_postponed(&mut self, sender: &KeyRef) -> Result<usize, S> {
        let mut count = self.take_postponed(sender)?.len();
        let before = self.changes.postpone.len();
        self.changes.postpone.retain(|p| p.sender != *sender);
        count += before - self.changes.postpone.len();
        if count > 0 {
            self.effects.push(Effect::PostponedDropped {
                sender: sender.clone(),
                count,
            });
        }
        Ok(count)
    }

    /// Pending decisions of a sender whose key is now distrusted are dropped:
    /// a stolen device cannot pre-authorise keys that appear after its
    /// revocation. Returns how many.
    fn drop_pending(&mut self, sender: &KeyRef) -> Result<usize, S> {
        let mut targets: BTreeSet<KeyRef> = self
            .store
            .pending_from(sender)
            .map_err(EngineError::Store)?
            .into_iter()
            .map(|p| p.decision.target)
            .filter(|t| {
                // Replaced in this input by another sender's decision?
                self.pending_overlay.get(t).is_none_or(|p| {
                    p.as_ref()
                        .is_some_and(|p| p.sender.as_ref() == Some(sender))
                })
            })
            .collect();
        for p in &self.changes.pending {
            if p.sender.as_ref() == Some(sender) {
                targets.insert(p.decision.target.clone());
            }
        }
        if targets.is_empty() {
            return Ok(0);
        }
        self.changes
            .pending
            .retain(|p| p.sender.as_ref() != Some(sender));
        let count = targets.len();
        for target in targets {
            self.pending_overlay.insert(target.clone(), None);
            self.changes.unpend.push(target);
        }
        self.effects.push(Effect::PendingDropped {
            sender: sender.clone(),
            count,
        });
        Ok(count)
    }

    /// The stored postponed decisions of `sender`, deleted in this input.
    fn take_postponed(&mut self, sender: &KeyRef) -> Result<Vec<Postponed>, S> {
        if self.released.contains(sender) {
            return Ok(Vec::new());
        }
        let stored = self
            .store
            .postponed_from(sender)
            .map_err(EngineError::Store)?;
        if !stored.is_empty() {
            self.released.insert(sender.clone());
            self.changes.release.push(sender.clone());
        }
        Ok(stored)
    }

    /// Applies postponed decisions of newly authenticated senders and voids
    /// the later word of newly distrusted ones, to a fixed point, then the
    /// TOAKAFA consequences.
    fn settle(&mut self) -> Result<(), S> {
        loop {
            if let Some((key, since)) = self.revoke_queue.pop_front() {
                if self.get(&key)?.map(|r| r.level) == Some(TrustLevel::ManuallyDistrusted) {
                    self.revoke(&key, since)?;
                }
                continue;
            }
            let Some(sender) = self.release_queue.pop_front() else {
                break;
            };
            if self.get(&sender)?.map(|r| r.level) != Some(TrustLevel::Authenticated) {
                continue;
            }
            let mut decisions = self.take_postponed(&sender)?;
            decisions.extend(
                self.changes
                    .postpone
                    .iter()
                    .filter(|p| p.sender == sender)
                    .cloned(),
            );
            self.changes.postpone.retain(|p| p.sender != sender);
            decisions.sort_by_key(|p| p.decision.time);
            let source = Rc::new(Source {
                sender: sender.clone(),
                co_recipients: HashSet::default(),
            });
            for p in decisions {
                self.apply(
                    p.decision,
                    Cause::Postponed(sender.clone()),
                    Some(source.clone()),
                    p.stamp,
                )?;
            }
        }
        if self.policy == Policy::Toakafa {
            for owner in std::mem::take(&mut self.toakafa_owners) {
                for (key, record) in self.keys_of(&owner)? {
                    if record.level == TrustLevel::AutomaticallyTrusted {
                        let key = KeyRef::new(owner.clone(), key);
                        self.overlay.entry(key.clone()).or_insert(Some(record));
                        self.change_level(
                            &key,
                            TrustLevel::AutomaticallyDistrusted,
                            None,
                            Cause::Policy,
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Plans the trust messages, commits, returns the effects.
    fn finish(mut self) -> Result<Vec<Effect>, S> {
        let sends = crate::plan::plan(&mut self)?;
        // By owner, then key.
        let mut written: Vec<_> = std::mem::take(&mut self.written).into_iter().collect();
        written.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.changes
            .keys
            .reserve(written.iter().map(|(_, keys)| keys.len()).sum());
        for (owner, keys) in written {
            for (key, record) in keys {
                self.changes
                    .keys
                    .push((KeyRef::new(owner.clone(), key), record));
            }
        }
        for (key, revocation) in std::mem::take(&mut self.revocations) {
            self.changes.revocations.push((key, revocation));
        }
        for (target, written) in std::mem::take(&mut self.statement_overlay) {
            for w in written {
                match w {
                    Written::Said(s) => self.changes.statements.push(s),
                    Written::Unsaid(source) => self.changes.unstate.push((target.clone(), source)),
                }
            }
        }
        if !self.changes.is_empty() {
            self.store
                .commit(&self.changes)
                .map_err(EngineError::Store)?;
        }
        let mut effects = self.effects;
        effects.extend(sends.into_iter().map(Effect::Send));
        Ok(effects)
    }
}

/// Postponing the decisions of one received message from an unauthenticated
/// sender, within [`Limits`](crate::Limits).
#[derive(Default)]
struct Postponer {
    /// The sender's stored decisions, by target (read once).
    stored: Option<HashMap<KeyRef, Postponed>>,
    /// Decisions of the sender's account, and of all senders, stored now.
    account_count: u64,
    total: u64,
    /// Oldest decisions of the largest other account, to evict.
    evictable: VecDeque<Postponed>,
    evicted: BTreeMap<BareJid, usize>,
    refused: bool,
}

impl Postponer {
    fn postpone<S: TrustStore>(
        &mut self,
        txn: &mut Txn<'_, S>,
        sender: &KeyRef,
        decision: Decision,
        stamp: DateTime<Utc>,
    ) -> Result<(), S> {
        let limits = txn.config.limits;
        if self.stored.is_none() {
            let stored: HashMap<KeyRef, Postponed> = txn
                .store
                .postponed_from(sender)
                .map_err(EngineError::Store)?
                .into_iter()
                .map(|p| (p.decision.target.clone(), p))
                .collect();
            self.account_count = txn
                .store
                .postponed_count_of(&sender.owner)
                .map_err(EngineError::Store)?;
            self.total = txn.store.postponed_total().map_err(EngineError::Store)?;
            self.stored = Some(stored);
        }
        let Some(stored) = self.stored.as_mut() else {
            return Ok(());
        };
        let known = stored.get(&decision.target);
        // An older decision changes nothing; the same word said again keeps
        // the stamp of its first saying.
        if known.is_some_and(|p| {
            p.decision.time > decision.time
                || (p.decision.time == decision.time && p.decision.kind == decision.kind)
        }) {
            return Ok(());
        }
        if known.is_none() {
            let full = stored.len() >= limits.postponed_per_sender
                || self.account_count >= limits.postponed_per_account as u64;
            if full || !self.make_room(txn, &sender.owner, limits.postponed_total as u64)? {
                self.refused = true;
                return Ok(());
            }
            self.account_count += 1;
            self.total += 1;
        }
        let p = Postponed {
            sender: sender.clone(),
            decision: decision.clone(),
            stamp,
        };
        if let Some(stored) = self.stored.as_mut() {
            stored.insert(decision.target.clone(), p.clone());
        }
        txn.changes.postpone.push(p);
        txn.effects.push(Effect::Postponed {
            sender: sender.clone(),
            decision,
        });
        Ok(())
    }

    /// Below the total bound, or evicts the oldest decision of the account
    /// holding the most (never the own account, never `account` itself).
    fn make_room<S: TrustStore>(
        &mut self,
        txn: &mut Txn<'_, S>,
        account: &BareJid,
        limit: u64,
    ) -> Result<bool, S> {
        if self.total < limit {
            return Ok(true);
        }
        if self.evictable.is_empty() {
            let own = txn.config.own.owner.clone();
            let Some((largest, count)) = txn
                .store
                .postponed_largest(&own)
                .map_err(EngineError::Store)?
            else {
                return Ok(false);
            };
            if largest == *account || count <= self.account_count + 1 {
                return Ok(false);
            }
            self.evictable = txn
                .store
                .postponed_oldest(&largest, 256)
                .map_err(EngineError::Store)?
                .into_iter()
                .filter(|p| {
                    !txn.changes
                        .evict
                        .contains(&(p.sender.clone(), p.decision.target.clone()))
                })
                .collect();
        }
        let Some(victim) = self.evictable.pop_front() else {
            return Ok(false);
        };
        *self.evicted.entry(victim.sender.owner.clone()).or_default() += 1;
        txn.changes
            .evict
            .push((victim.sender, victim.decision.target));
        self.total -= 1;
        Ok(true)
    }

    fn finish<S: TrustStore>(self, txn: &mut Txn<'_, S>) {
        for (account, count) in self.evicted {
            txn.effects
                .push(Effect::PostponedEvicted { account, count });
        }
        if self.refused {
            txn.effects
                .push(Effect::Ignored(IgnoreReason::TooManyPostponed));
        }
    }
}
