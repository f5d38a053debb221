//! The engine: one [`Engine::handle`] call per input, one store commit per call.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::rc::Rc;

use atm_tm::{BareJid, KeyId, Usage};
use chrono::{DateTime, Utc};

use crate::io::{Cause, Config, Effect, EngineError, IgnoreReason, Input, Received};
use crate::level::{DecisionKind, KeyMode, Policy, TrustLevel};
use crate::store::{
    Changeset, Confirmation, Decision, KeyRecord, KeyRef, Pending, Postponed, TrustStore,
};

type Result<T, S> = std::result::Result<T, EngineError<<S as TrustStore>::Error>>;

/// At most this many decisions of one sender wait for its key to be
/// authenticated; more are dropped (and reported as ignored).
pub const MAX_POSTPONED_PER_SENDER: usize = 10_000;

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
        let mut txn = Txn::new(&self.config, &mut self.store, policy);
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
                        txn.manual(KeyRef::new(owner.clone(), key), kind, now)?;
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
    /// Keys read or written in this input (`None`: known not to exist).
    overlay: HashMap<KeyRef, Option<KeyRecord>>,
    /// Written keys, by owner, in write order.
    written: BTreeMap<BareJid, BTreeSet<KeyId>>,
    pub changes: Changeset,
    pub effects: Vec<Effect>,
    /// Changes to pass on, in order.
    pub changed: Vec<Change>,
    /// Keys newly authenticated by the user or by a released postponed
    /// decision: they are sent what they need (complete propagation).
    pub syncs: Vec<KeyRef>,
    /// Manual decisions, in order (literal XEP propagation).
    pub manual: Vec<(KeyRef, DecisionKind)>,
    release_queue: VecDeque<KeyRef>,
    released: HashSet<KeyRef>,
    toakafa_owners: BTreeSet<BareJid>,
    pending_overlay: HashMap<KeyRef, Option<Pending>>,
    confirm_overlay: HashMap<KeyRef, Option<Confirmation>>,
}

impl<'a, S: TrustStore> Txn<'a, S> {
    fn new(config: &'a Config, store: &'a mut S, policy: Policy) -> Self {
        Txn {
            config,
            store,
            policy,
            overlay: HashMap::default(),
            written: BTreeMap::new(),
            changes: Changeset::default(),
            effects: Vec::new(),
            changed: Vec::new(),
            syncs: Vec::new(),
            manual: Vec::new(),
            release_queue: VecDeque::new(),
            released: HashSet::default(),
            toakafa_owners: BTreeSet::new(),
            pending_overlay: HashMap::default(),
            confirm_overlay: HashMap::default(),
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

    fn set(&mut self, key: &KeyRef, record: KeyRecord) {
        self.overlay.insert(key.clone(), Some(record));
        self.written
            .entry(key.owner.clone())
            .or_default()
            .insert(key.key.clone());
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
            for key in written {
                if let Some(Some(record)) =
                    self.overlay.get(&KeyRef::new(owner.clone(), key.clone()))
                {
                    keys.insert(key.clone(), *record);
                }
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
            for key in written {
                let key = KeyRef::new(owner.clone(), key.clone());
                if let Some(Some(record)) = self.overlay.get(&key) {
                    if levels.contains(&record.level) {
                        keys.insert(key, *record);
                    } else {
                        keys.remove(&key);
                    }
                }
            }
        }
        Ok(keys.into_iter().collect())
    }

    fn is_own(&self, key: &KeyRef) -> bool {
        *key == self.config.own
    }

    /// The level of a new key of `owner` under the policy.
    fn initial_level(&mut self, owner: &BareJid) -> Result<TrustLevel, S> {
        Ok(match self.policy {
            Policy::Manual => TrustLevel::Undecided,
            Policy::Toakafa => {
                let authenticated = self
                    .keys_of(owner)?
                    .iter()
                    .any(|(_, r)| r.level == TrustLevel::Authenticated);
                if authenticated {
                    TrustLevel::AutomaticallyDistrusted
                } else {
                    TrustLevel::AutomaticallyTrusted
                }
            }
        })
    }

    // ---- inputs ----

    fn manual(&mut self, target: KeyRef, kind: DecisionKind, now: DateTime<Utc>) -> Result<(), S> {
        if self.is_own(&target) {
            self.effects.push(Effect::Ignored(IgnoreReason::OwnKey));
            return Ok(());
        }
        if self.get(&target)?.is_none() {
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
        self.manual.push((target.clone(), kind));
        let decision = Decision {
            target,
            kind,
            time: now,
        };
        self.apply(decision, Cause::Manual, None)?;
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
        let sender_level = if self.is_own(&sender) {
            Some(TrustLevel::Authenticated)
        } else {
            self.get(&sender)?.map(|r| r.level)
        };
        if sender_level == Some(TrustLevel::ManuallyDistrusted) {
            self.effects
                .push(Effect::Ignored(IgnoreReason::SenderDistrusted));
            return Ok(());
        }
        let authenticated = sender_level == Some(TrustLevel::Authenticated);
        let from_own_account = received.sender == self.config.own.owner;
        let source = Rc::new(Source {
            sender: sender.clone(),
            co_recipients: received.co_recipients.iter().cloned().collect(),
        });
        let mut postponed: Option<HashMap<KeyRef, Postponed>> = None;
        let mut postponed_full = false;
        for owner in &message.key_owners {
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
                    continue;
                }
                let time = received.decision_times.time_of(&target, received.time);
                let decision = Decision { target, kind, time };
                if authenticated {
                    self.apply(
                        decision,
                        Cause::TrustMessage(sender.clone()),
                        Some(source.clone()),
                    )?;
                } else {
                    let stored = match &mut postponed {
                        Some(map) => map,
                        None => postponed.insert(
                            self.store
                                .postponed_from(&sender)
                                .map_err(EngineError::Store)?
                                .into_iter()
                                .map(|p| (p.decision.target.clone(), p))
                                .collect(),
                        ),
                    };
                    let known = stored.get(&decision.target);
                    if known.is_none() && stored.len() >= MAX_POSTPONED_PER_SENDER {
                        // An unauthenticated sender cannot fill the store.
                        if !postponed_full {
                            postponed_full = true;
                            self.effects
                                .push(Effect::Ignored(IgnoreReason::TooManyPostponed));
                        }
                        continue;
                    }
                    let newer = known.is_none_or(|p| p.decision.time <= decision.time);
                    if newer {
                        let p = Postponed {
                            sender: sender.clone(),
                            decision: decision.clone(),
                        };
                        stored.insert(decision.target.clone(), p.clone());
                        self.changes.postpone.push(p);
                        self.effects.push(Effect::Postponed {
                            sender: sender.clone(),
                            decision,
                        });
                    }
                }
            }
        }
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
            let source = pending.sender.clone().map(|sender| {
                Rc::new(Source {
                    sender,
                    co_recipients: HashSet::default(),
                })
            });
            self.apply(pending.decision, Cause::Pending(pending.sender), source)?;
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
            self.apply(
                confirmation.decision,
                Cause::Confirmed(sender),
                Some(source),
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

    /// Sets a level, recording the change as an effect when the level differs.
    fn change_level(
        &mut self,
        key: &KeyRef,
        level: TrustLevel,
        time: Option<DateTime<Utc>>,
        cause: Cause,
    ) {
        let before = self.overlay.get(key).copied().flatten();
        self.set(key, KeyRecord { level, time });
        if before.map(|r| r.level) != Some(level) {
            self.effects.push(Effect::TrustChanged {
                key: key.clone(),
                from: before.map(|r| r.level),
                to: level,
                cause,
            });
        }
    }

    /// Applies one decision under the ordering rule: a decision applies only if
    /// it is newer than the one that set the key's level (at equal times a
    /// distrust beats a trust); a user's own decision always applies.
    fn apply(
        &mut self,
        decision: Decision,
        cause: Cause,
        source: Option<Rc<Source>>,
    ) -> Result<(), S> {
        let target = decision.target.clone();
        if self.is_own(&target) {
            return Ok(());
        }
        let Some(current) = self.get(&target)? else {
            return self.store_pending(decision, cause);
        };
        let manual = cause == Cause::Manual;
        let confirmed = matches!(cause, Cause::Confirmed(_));
        if self.config.confirm && !manual && !confirmed {
            if let Some(sender) = cause.sender().cloned() {
                return self.request_confirmation(sender, decision);
            }
        }
        let level = TrustLevel::of_decision(decision.kind);
        if !manual {
            if let Some(time) = current.time {
                let newer = decision.time > time;
                let distrust_wins = decision.time == time
                    && decision.kind == DecisionKind::Distrust
                    && current.level != TrustLevel::ManuallyDistrusted;
                if !newer && !distrust_wins {
                    return Ok(());
                }
            }
        }
        if current.level == level && current.time == Some(decision.time) {
            return Ok(());
        }
        self.change_level(&target, level, Some(decision.time), cause.clone());
        self.changed.push(Change {
            target: target.clone(),
            source,
        });
        match decision.kind {
            DecisionKind::Trust => {
                if current.level != TrustLevel::Authenticated {
                    if !self.toakafa_owners.contains(&target.owner) {
                        self.toakafa_owners.insert(target.owner.clone());
                    }
                    self.release_queue.push_back(target.clone());
                    if matches!(cause, Cause::Postponed(_)) {
                        self.syncs.push(target.clone());
                    }
                }
                if manual {
                    self.syncs.push(target);
                }
            }
            DecisionKind::Distrust => self.drop_postponed(&target)?,
        }
        Ok(())
    }

    fn store_pending(&mut self, decision: Decision, cause: Cause) -> Result<(), S> {
        let target = decision.target.clone();
        let newer = self
            .pending(&target)?
            .is_none_or(|p| p.decision.time <= decision.time);
        if newer {
            let pending = Pending {
                sender: cause.sender().cloned(),
                decision: decision.clone(),
            };
            self.pending_overlay
                .insert(target.clone(), Some(pending.clone()));
            self.changes.pending.push(pending);
            self.effects.push(Effect::Pending {
                sender: cause.sender().cloned(),
                decision,
            });
        }
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

    /// Postponed decisions of a sender whose key is now distrusted are dropped.
    fn drop_postponed(&mut self, sender: &KeyRef) -> Result<(), S> {
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
        Ok(())
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

    /// Applies postponed decisions of newly authenticated senders, to a fixed
    /// point, then the TOAKAFA consequences.
    fn settle(&mut self) -> Result<(), S> {
        while let Some(sender) = self.release_queue.pop_front() {
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
        for (owner, keys) in std::mem::take(&mut self.written) {
            for key in keys {
                let key = KeyRef::new(owner.clone(), key);
                if let Some(Some(record)) = self.overlay.get(&key) {
                    self.changes.keys.push((key, *record));
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
