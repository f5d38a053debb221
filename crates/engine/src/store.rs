//! Persistence behind a trait: [`TrustStore`], and [`MemoryStore`] for tests
//! and simulations.
//!
//! The engine reads through the trait while it works on one input and writes
//! nothing until the input is done; then it hands the store one [`Changeset`]
//! to [`commit`](TrustStore::commit). An implementation must apply a changeset
//! atomically (one SQLite transaction): every effect the engine reports is
//! stored, or none is.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use atm_tm::{BareJid, KeyId};
use chrono::{DateTime, Utc};

use crate::level::{DecisionKind, Policy, TrustLevel};

/// The stored trust in one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRecord {
    /// The current level.
    pub level: TrustLevel,
    /// The time of the decision that set this level (manual or through a trust
    /// message); `None` for levels set by the policy, which any decision
    /// overrides.
    pub time: Option<DateTime<Utc>>,
}

/// A key of a key owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyRef {
    /// The key owner's bare JID.
    pub owner: BareJid,
    /// The key identifier.
    pub key: KeyId,
}

impl KeyRef {
    /// A key of `owner`.
    pub fn new(owner: BareJid, key: KeyId) -> Self {
        KeyRef { owner, key }
    }
}

/// A trust decision about one key, with the time it was originally made.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decision {
    /// The key decided on.
    pub target: KeyRef,
    /// Authenticate or distrust.
    pub kind: DecisionKind,
    /// When the decision was originally made (it keeps this time as it travels).
    pub time: DateTime<Utc>,
}

/// A decision stored until its sender's key is authenticated (XEP-0450
/// §Implementation Notes, first case).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Postponed {
    /// The endpoint whose trust message carried the decision.
    pub sender: KeyRef,
    /// The decision.
    pub decision: Decision,
    /// When the message that carried it was sent, as the receiver knew it
    /// (see [`Received::stamp`](crate::Received::stamp)).
    pub stamp: DateTime<Utc>,
}

/// The last revocation of a key: since when it was distrusted and, once it
/// was authenticated again, until when. What it sent in between stays void.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Revocation {
    /// The time of the distrust.
    pub since: DateTime<Utc>,
    /// The time of the authentication that ended it, if any.
    pub until: Option<DateTime<Utc>>,
}

/// What one source said about one key: the newest such statement of every
/// source is kept, and a key's level is the newest decision among them.
///
/// When a source is distrusted, its statements sent at or after the time of
/// that distrust are void: they are deleted and the key falls back to what
/// the others said (see `docs/propagation.md`, Revocation).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Statement {
    /// Who said it: the sender of the trust message, or this endpoint's own
    /// key for the user's decisions and the engine's own corrections.
    pub source: KeyRef,
    /// The decision.
    pub decision: Decision,
    /// When it was said: the receiver's sending time of the message that
    /// carried it (for the own key: the time of the decision).
    pub stamp: DateTime<Utc>,
}

/// What one source said about one key, without the two keys: enough to
/// order it against another decision (see [`TrustStore::word_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Word {
    /// Authenticate or distrust.
    pub kind: DecisionKind,
    /// When the decision was originally made.
    pub time: DateTime<Utc>,
    /// When it was said (see [`Statement::stamp`]).
    pub stamp: DateTime<Utc>,
}

impl Word {
    /// The word of a statement.
    pub fn of(statement: &Statement) -> Self {
        Word {
            kind: statement.decision.kind,
            time: statement.decision.time,
            stamp: statement.stamp,
        }
    }
}

/// A decision about a key not known yet, stored until the key is learned
/// (XEP-0450 §Implementation Notes, second case). Its sender was authenticated
/// when it arrived.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pending {
    /// The endpoint whose trust message carried the decision (`None` if it was
    /// the user's own).
    pub sender: Option<KeyRef>,
    /// The decision.
    pub decision: Decision,
    /// When the message that carried it was sent, as the receiver knew it.
    pub stamp: DateTime<Utc>,
}

/// An automatic decision waiting for the user's yes or no (confirmation mode,
/// XEP-0450 §Notification and Confirmation). At most one per key: a newer one
/// replaces an older.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Confirmation {
    /// The endpoint whose trust message carried the decision.
    pub sender: KeyRef,
    /// The decision to confirm.
    pub decision: Decision,
}

/// Everything one engine input writes. Applied atomically by
/// [`TrustStore::commit`]: upserts replace rows with the same key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changeset {
    /// Key rows to insert or replace.
    pub keys: Vec<(KeyRef, KeyRecord)>,
    /// Postponed decisions to insert or replace (one row per sender and target).
    pub postpone: Vec<Postponed>,
    /// Senders whose postponed decisions are all deleted (applied or dropped).
    /// Applied before `postpone`.
    pub release: Vec<KeyRef>,
    /// Single postponed decisions deleted, as (sender, target): evicted to
    /// keep the store bounded. Applied before `postpone`.
    pub evict: Vec<(KeyRef, KeyRef)>,
    /// Pending decisions for unknown keys to insert or replace (one per target).
    pub pending: Vec<Pending>,
    /// Targets whose pending decision is deleted. Applied before `pending`.
    pub unpend: Vec<KeyRef>,
    /// Keys whose word this endpoint dropped (a message ignored because the
    /// key was distrusted, its postponed, pending or void decisions): when
    /// they are authenticated again, they are asked to say it again.
    pub missed: Vec<KeyRef>,
    /// Keys asked to say again what was dropped. Applied before `missed`.
    pub unmissed: Vec<KeyRef>,
    /// The last revocation of a key, to insert or replace, written when the
    /// key is authenticated again: since when it was distrusted, until when.
    /// What it sent in between stays void.
    pub revocations: Vec<(KeyRef, Revocation)>,
    /// Statements to insert or replace (one per target and source).
    pub statements: Vec<Statement>,
    /// Statements deleted, as (target, source). Applied before `statements`.
    pub unstate: Vec<(KeyRef, KeyRef)>,
    /// Confirmations to insert or replace (one per target).
    pub confirm: Vec<Confirmation>,
    /// Targets whose confirmation is deleted. Applied before `confirm`.
    pub unconfirm: Vec<KeyRef>,
    /// A new security policy.
    pub policy: Option<Policy>,
}

impl Changeset {
    /// `true` if committing it would change nothing.
    pub fn is_empty(&self) -> bool {
        self == &Changeset::default()
    }
}

/// Persistence of the engine's state for one account and one encryption
/// namespace. Reads see everything committed before; the engine overlays its
/// own uncommitted writes.
pub trait TrustStore {
    /// The store's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The stored trust in one key, `None` if the key is not known.
    fn key(&mut self, key: &KeyRef) -> Result<Option<KeyRecord>, Self::Error>;

    /// Every known key of one owner.
    fn keys_of(&mut self, owner: &BareJid) -> Result<Vec<(KeyId, KeyRecord)>, Self::Error>;

    /// Every known key at one of the given levels, all owners.
    fn keys_at(&mut self, levels: &[TrustLevel]) -> Result<Vec<(KeyRef, KeyRecord)>, Self::Error>;

    /// The postponed decisions of one sender.
    fn postponed_from(&mut self, sender: &KeyRef) -> Result<Vec<Postponed>, Self::Error>;

    /// How many postponed decisions the senders of one account have.
    fn postponed_count_of(&mut self, account: &BareJid) -> Result<u64, Self::Error>;

    /// How many postponed decisions there are, all senders.
    fn postponed_total(&mut self) -> Result<u64, Self::Error>;

    /// The account, other than `except`, whose senders have the most postponed
    /// decisions, with that number (ties: the smallest JID).
    fn postponed_largest(
        &mut self,
        except: &BareJid,
    ) -> Result<Option<(BareJid, u64)>, Self::Error>;

    /// Up to `limit` postponed decisions of one account's senders, oldest
    /// decision time first (ties: by sender, then target).
    fn postponed_oldest(
        &mut self,
        account: &BareJid,
        limit: usize,
    ) -> Result<Vec<Postponed>, Self::Error>;

    /// The pending decisions that one sender's trust messages carried.
    fn pending_from(&mut self, sender: &KeyRef) -> Result<Vec<Pending>, Self::Error>;

    /// How many pending decisions the senders of one account's trust
    /// messages carried.
    fn pending_count_of(&mut self, account: &BareJid) -> Result<u64, Self::Error>;

    /// Every source's statement about one key.
    fn statements_about(&mut self, target: &KeyRef) -> Result<Vec<Statement>, Self::Error>;

    /// Every statement one source made.
    fn statements_from(&mut self, source: &KeyRef) -> Result<Vec<Statement>, Self::Error>;

    /// One source's statement about one key.
    fn statement_of(
        &mut self,
        target: &KeyRef,
        source: &KeyRef,
    ) -> Result<Option<Statement>, Self::Error> {
        Ok(self
            .statements_about(target)?
            .into_iter()
            .find(|s| s.source == *source))
    }

    /// One source's statement about one key, without the keys (what the
    /// engine asks for every decision it applies; a store answers it without
    /// copying the keys).
    fn word_of(&mut self, target: &KeyRef, source: &KeyRef) -> Result<Option<Word>, Self::Error> {
        Ok(self.statement_of(target, source)?.as_ref().map(Word::of))
    }

    /// The last revocation of `key` (see [`Changeset::revocations`]).
    fn revocation(&mut self, key: &KeyRef) -> Result<Option<Revocation>, Self::Error>;

    /// `true` if this endpoint dropped some word of `key` since it last
    /// asked it to say it again (see [`Changeset::missed`]).
    fn missed_word_of(&mut self, key: &KeyRef) -> Result<bool, Self::Error>;

    /// `true` if a key of `owner` was ever stored as authenticated (TOAKAFA's
    /// "after first authentication"). A store remembers every owner of a key
    /// row it committed at [`TrustLevel::Authenticated`], for good.
    fn had_authenticated(&mut self, owner: &BareJid) -> Result<bool, Self::Error>;

    /// The pending decision about a key not known yet.
    fn pending_for(&mut self, target: &KeyRef) -> Result<Option<Pending>, Self::Error>;

    /// The confirmation waiting for a key.
    fn confirmation_for(&mut self, target: &KeyRef) -> Result<Option<Confirmation>, Self::Error>;

    /// Every confirmation waiting for the user.
    fn confirmations(&mut self) -> Result<Vec<Confirmation>, Self::Error>;

    /// How many decisions are stored and not applied (postponed plus pending).
    fn stored_decision_count(&mut self) -> Result<u64, Self::Error>;

    /// The stored policy, `None` if never set.
    fn policy(&mut self) -> Result<Option<Policy>, Self::Error>;

    /// Applies a changeset atomically.
    fn commit(&mut self, changes: &Changeset) -> Result<(), Self::Error>;
}

/// A [`TrustStore`] in memory, for tests, simulations and clients that persist
/// elsewhere.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    keys: HashMap<BareJid, BTreeMap<KeyId, KeyRecord>>,
    postponed: HashMap<KeyRef, BTreeMap<KeyRef, Postponed>>,
    pending: HashMap<KeyRef, Pending>,
    statements: StatementIndex,
    authenticated_owners: HashSet<BareJid>,
    missed: HashSet<KeyRef>,
    revocations: HashMap<KeyRef, Revocation>,
    confirmations: BTreeMap<KeyRef, Confirmation>,
    policy: Option<Policy>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

/// [`MemoryStore`] never fails.
#[derive(Debug, thiserror::Error)]
#[error("the memory store cannot fail")]
pub enum Infallible {}

impl TrustStore for MemoryStore {
    type Error = Infallible;

    fn key(&mut self, key: &KeyRef) -> Result<Option<KeyRecord>, Infallible> {
        Ok(self
            .keys
            .get(&key.owner)
            .and_then(|keys| keys.get(&key.key))
            .copied())
    }

    fn keys_of(&mut self, owner: &BareJid) -> Result<Vec<(KeyId, KeyRecord)>, Infallible> {
        Ok(self
            .keys
            .get(owner)
            .map(|keys| keys.iter().map(|(k, r)| (k.clone(), *r)).collect())
            .unwrap_or_default())
    }

    fn keys_at(&mut self, levels: &[TrustLevel]) -> Result<Vec<(KeyRef, KeyRecord)>, Infallible> {
        let mut out = Vec::new();
        for (owner, keys) in &self.keys {
            for (key, record) in keys {
                if levels.contains(&record.level) {
                    out.push((KeyRef::new(owner.clone(), key.clone()), *record));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn postponed_from(&mut self, sender: &KeyRef) -> Result<Vec<Postponed>, Infallible> {
        Ok(self
            .postponed
            .get(sender)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default())
    }

    fn postponed_count_of(&mut self, account: &BareJid) -> Result<u64, Infallible> {
        Ok(self
            .postponed
            .iter()
            .filter(|(sender, _)| sender.owner == *account)
            .map(|(_, m)| m.len() as u64)
            .sum())
    }

    fn postponed_total(&mut self) -> Result<u64, Infallible> {
        Ok(self.postponed.values().map(|m| m.len() as u64).sum())
    }

    fn postponed_largest(
        &mut self,
        except: &BareJid,
    ) -> Result<Option<(BareJid, u64)>, Infallible> {
        let mut counts: BTreeMap<&BareJid, u64> = BTreeMap::new();
        for (sender, m) in &self.postponed {
            if sender.owner != *except && !m.is_empty() {
                *counts.entry(&sender.owner).or_default() += m.len() as u64;
            }
        }
        let mut best: Option<(&BareJid, u64)> = None;
        for (account, count) in counts {
            if best.is_none_or(|(_, c)| count > c) {
                best = Some((account, count));
            }
        }
        Ok(best.map(|(a, c)| (a.clone(), c)))
    }

    fn postponed_oldest(
        &mut self,
        account: &BareJid,
        limit: usize,
    ) -> Result<Vec<Postponed>, Infallible> {
        let mut all: Vec<&Postponed> = self
            .postponed
            .iter()
            .filter(|(sender, _)| sender.owner == *account)
            .flat_map(|(_, m)| m.values())
            .collect();
        all.sort_by(|a, b| {
            (a.decision.time, &a.sender, &a.decision.target).cmp(&(
                b.decision.time,
                &b.sender,
                &b.decision.target,
            ))
        });
        Ok(all.into_iter().take(limit).cloned().collect())
    }

    fn pending_from(&mut self, sender: &KeyRef) -> Result<Vec<Pending>, Infallible> {
        let mut out: Vec<Pending> = self
            .pending
            .values()
            .filter(|p| p.sender.as_ref() == Some(sender))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.decision.target.cmp(&b.decision.target));
        Ok(out)
    }

    fn pending_count_of(&mut self, account: &BareJid) -> Result<u64, Infallible> {
        Ok(self
            .pending
            .values()
            .filter(|p| p.sender.as_ref().is_some_and(|s| s.owner == *account))
            .count() as u64)
    }

    fn statements_about(&mut self, target: &KeyRef) -> Result<Vec<Statement>, Infallible> {
        Ok(self.statements.about(target))
    }

    fn statements_from(&mut self, source: &KeyRef) -> Result<Vec<Statement>, Infallible> {
        Ok(self.statements.from(source))
    }

    fn statement_of(
        &mut self,
        target: &KeyRef,
        source: &KeyRef,
    ) -> Result<Option<Statement>, Infallible> {
        Ok(self.statements.of(target, source))
    }

    fn word_of(&mut self, target: &KeyRef, source: &KeyRef) -> Result<Option<Word>, Infallible> {
        Ok(self.statements.word_of(target, source))
    }

    fn revocation(&mut self, key: &KeyRef) -> Result<Option<Revocation>, Infallible> {
        Ok(self.revocations.get(key).copied())
    }

    fn missed_word_of(&mut self, key: &KeyRef) -> Result<bool, Infallible> {
        Ok(self.missed.contains(key))
    }

    fn had_authenticated(&mut self, owner: &BareJid) -> Result<bool, Infallible> {
        Ok(self.authenticated_owners.contains(owner))
    }

    fn pending_for(&mut self, target: &KeyRef) -> Result<Option<Pending>, Infallible> {
        Ok(self.pending.get(target).cloned())
    }

    fn confirmation_for(&mut self, target: &KeyRef) -> Result<Option<Confirmation>, Infallible> {
        Ok(self.confirmations.get(target).cloned())
    }

    fn confirmations(&mut self) -> Result<Vec<Confirmation>, Infallible> {
        Ok(self.confirmations.values().cloned().collect())
    }

    fn stored_decision_count(&mut self) -> Result<u64, Infallible> {
        let postponed: usize = self.postponed.values().map(BTreeMap::len).sum();
        Ok((postponed + self.pending.len()) as u64)
    }

    fn policy(&mut self) -> Result<Option<Policy>, Infallible> {
        Ok(self.policy)
    }

    fn commit(&mut self, changes: &Changeset) -> Result<(), Infallible> {
        for (key, record) in &changes.keys {
            match self.keys.get_mut(&key.owner) {
                Some(keys) => {
                    keys.insert(key.key.clone(), *record);
                }
                None => {
                    self.keys
                        .entry(key.owner.clone())
                        .or_default()
                        .insert(key.key.clone(), *record);
                }
            }
            if record.level == TrustLevel::Authenticated
                && !self.authenticated_owners.contains(&key.owner)
            {
                self.authenticated_owners.insert(key.owner.clone());
            }
        }
        for sender in &changes.release {
            self.postponed.remove(sender);
        }
        for (sender, target) in &changes.evict {
            if let Some(m) = self.postponed.get_mut(sender) {
                m.remove(target);
                if m.is_empty() {
                    self.postponed.remove(sender);
                }
            }
        }
        for p in &changes.postpone {
            self.postponed
                .entry(p.sender.clone())
                .or_default()
                .insert(p.decision.target.clone(), p.clone());
        }
        for target in &changes.unpend {
            self.pending.remove(target);
        }
        for p in &changes.pending {
            self.pending.insert(p.decision.target.clone(), p.clone());
        }
        for target in &changes.unconfirm {
            self.confirmations.remove(target);
        }
        for c in &changes.confirm {
            self.confirmations
                .insert(c.decision.target.clone(), c.clone());
        }
        self.statements.commit(changes);
        for key in &changes.unmissed {
            self.missed.remove(key);
        }
        self.missed.extend(changes.missed.iter().cloned());
        for (key, revocation) in &changes.revocations {
            self.revocations.insert(key.clone(), *revocation);
        }
        if let Some(policy) = changes.policy {
            self.policy = Some(policy);
        }
        Ok(())
    }
}

/// Statements kept in memory, compactly: by target, each source's newest
/// decision (the target is not repeated), the sources as small integers (one
/// copy of each source key, and finding a source among a key's statements
/// compares integers), and how many statements each source has, so that
/// asking a key that never spoke costs nothing. Both [`MemoryStore`] and the
/// SQLite store keep theirs in one.
#[derive(Debug, Clone, Default)]
pub struct StatementIndex {
    by_target: HashMap<KeyRef, Vec<Said>>,
    /// The id of every source with statements.
    source_ids: HashMap<KeyRef, u32>,
    /// By id: the source and how many statements it has (0: a free id).
    sources: Vec<(KeyRef, usize)>,
    /// Ids of sources whose statements were all deleted, to hand out again.
    free: Vec<u32>,
}

#[derive(Debug, Clone)]
struct Said {
    source: u32,
    kind: DecisionKind,
    time: DateTime<Utc>,
    stamp: DateTime<Utc>,
}

impl StatementIndex {
    fn source(&self, id: u32) -> &KeyRef {
        // Ids come from `sources` and stay while a statement holds them.
        &self.sources[id as usize].0
    }

    fn statement(&self, target: &KeyRef, said: &Said) -> Statement {
        Statement {
            source: self.source(said.source).clone(),
            decision: Decision {
                target: target.clone(),
                kind: said.kind,
                time: said.time,
            },
            stamp: said.stamp,
        }
    }

    /// Every source's statement about `target`, by source.
    pub fn about(&self, target: &KeyRef) -> Vec<Statement> {
        let mut out: Vec<Statement> = self
            .by_target
            .get(target)
            .map(|v| v.iter().map(|s| self.statement(target, s)).collect())
            .unwrap_or_default();
        out.sort_by(|a, b| a.source.cmp(&b.source));
        out
    }

    /// `source`'s statement about `target`.
    pub fn of(&self, target: &KeyRef, source: &KeyRef) -> Option<Statement> {
        let id = *self.source_ids.get(source)?;
        self.by_target
            .get(target)?
            .iter()
            .find(|s| s.source == id)
            .map(|s| self.statement(target, s))
    }

    /// `source`'s statement about `target`, without the keys.
    pub fn word_of(&self, target: &KeyRef, source: &KeyRef) -> Option<Word> {
        let id = *self.source_ids.get(source)?;
        self.by_target
            .get(target)?
            .iter()
            .find(|s| s.source == id)
            .map(|s| Word {
                kind: s.kind,
                time: s.time,
                stamp: s.stamp,
            })
    }

    /// Every statement of `source`, by target (a scan, only for a source
    /// that has statements: revocations are rare).
    pub fn from(&self, source: &KeyRef) -> Vec<Statement> {
        let Some(&id) = self.source_ids.get(source) else {
            return Vec::new();
        };
        let mut out: Vec<Statement> = self
            .by_target
            .iter()
            .filter_map(|(target, v)| {
                v.iter()
                    .find(|s| s.source == id)
                    .map(|s| self.statement(target, s))
            })
            .collect();
        out.sort_by(|a, b| a.decision.target.cmp(&b.decision.target));
        out
    }

    /// Deletes one statement.
    pub fn remove(&mut self, target: &KeyRef, source: &KeyRef) {
        let Some(&id) = self.source_ids.get(source) else {
            return;
        };
        let Some(v) = self.by_target.get_mut(target) else {
            return;
        };
        let before = v.len();
        v.retain(|s| s.source != id);
        if v.len() < before {
            let slot = &mut self.sources[id as usize];
            slot.1 -= 1;
            if slot.1 == 0 {
                self.source_ids.remove(source);
                self.free.push(id);
            }
        }
        if v.is_empty() {
            self.by_target.remove(target);
        }
    }

    /// The id of `source`, given one if it has none.
    fn source_id(&mut self, source: &KeyRef) -> u32 {
        if let Some(&id) = self.source_ids.get(source) {
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.sources[id as usize] = (source.clone(), 0);
                id
            }
            None => {
                // More than 4 billion sources would not fit in memory anyway.
                let id = self.sources.len() as u32;
                self.sources.push((source.clone(), 0));
                id
            }
        };
        self.source_ids.insert(source.clone(), id);
        id
    }

    /// Inserts or replaces a statement.
    pub fn insert(&mut self, statement: &Statement) {
        let id = self.source_id(&statement.source);
        let said = Said {
            source: id,
            kind: statement.decision.kind,
            time: statement.decision.time,
            stamp: statement.stamp,
        };
        let target = &statement.decision.target;
        let v = match self.by_target.get_mut(target) {
            Some(v) => v,
            None => self.by_target.entry(target.clone()).or_default(),
        };
        match v.iter_mut().find(|s| s.source == id) {
            Some(existing) => *existing = said,
            None => {
                v.push(said);
                self.sources[id as usize].1 += 1;
            }
        }
    }

    /// Applies a changeset's statement deletions, then its insertions.
    pub fn commit(&mut self, changes: &Changeset) {
        for (target, source) in &changes.unstate {
            self.remove(target, source);
        }
        for statement in &changes.statements {
            self.insert(statement);
        }
    }
}
