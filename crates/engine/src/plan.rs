//! Which trust messages an input sends: the `complete` and `xep` rule sets
//! (see `docs/propagation.md`).

use std::collections::{BTreeMap, BTreeSet};

use atm_tm::{BareJid, KeyOwner, TrustMessage, Usage};

use crate::engine::Txn;
use crate::io::{EngineError, Outgoing};
use crate::level::{DecisionKind, KeyMode, Propagation, TrustLevel};
use crate::store::{KeyRecord, KeyRef, TrustStore};
use crate::times::DecisionTimes;

type Result<T, S> = std::result::Result<T, EngineError<<S as TrustStore>::Error>>;

/// The keys this endpoint may send to: authenticated own endpoints and
/// authenticated contact endpoints, at the end of the input.
struct Recipients {
    own: Vec<KeyRef>,
    contacts: Option<Vec<KeyRef>>,
}

impl Recipients {
    fn own<S: TrustStore>(txn: &mut Txn<'_, S>) -> Result<Self, S> {
        let own_jid = txn.config.own.owner.clone();
        let mut own: Vec<KeyRef> = txn
            .keys_of(&own_jid)?
            .into_iter()
            .filter(|(_, r)| r.level == TrustLevel::Authenticated)
            .map(|(k, _)| KeyRef::new(own_jid.clone(), k))
            .filter(|k| *k != txn.config.own)
            .collect();
        if txn.config.key_mode == KeyMode::PerAccount {
            // Every own endpoint holds the own key: it is always a recipient.
            own.push(txn.config.own.clone());
        }
        Ok(Recipients {
            own,
            contacts: None,
        })
    }

    fn contacts<S: TrustStore>(&mut self, txn: &mut Txn<'_, S>) -> Result<&[KeyRef], S> {
        if self.contacts.is_none() {
            let own_jid = txn.config.own.owner.clone();
            let contacts = txn
                .keys_at(&[TrustLevel::Authenticated])?
                .into_iter()
                .map(|(k, _)| k)
                .filter(|k| k.owner != own_jid)
                .collect();
            self.contacts = Some(contacts);
        }
        Ok(self.contacts.as_deref().unwrap_or_default())
    }
}

/// The trust messages of this input.
pub(crate) fn plan<S: TrustStore>(txn: &mut Txn<'_, S>) -> Result<Vec<Outgoing>, S> {
    match txn.config.propagation {
        Propagation::Complete => complete(txn),
        Propagation::Xep => xep(txn),
    }
}

/// Complete propagation: every change goes on to every authenticated own
/// endpoint (own-account changes also to authenticated contact endpoints),
/// never back to where it came from; a key newly authenticated by the user or
/// by a released postponed decision is sent everything it needs. Everything is
/// batched into one message per recipient account.
fn complete<S: TrustStore>(txn: &mut Txn<'_, S>) -> Result<Vec<Outgoing>, S> {
    if txn.changed.is_empty() && txn.syncs.is_empty() && txn.distrust_syncs.is_empty() {
        return Ok(Vec::new());
    }
    let own_jid = txn.config.own.owner.clone();
    let mut recipients = Recipients::own(txn)?;
    let mut needs: BTreeMap<KeyRef, BTreeSet<KeyRef>> = BTreeMap::new();
    let changed = std::mem::take(&mut txn.changed);
    for change in &changed {
        let contacts: &[KeyRef] = if change.target.owner == own_jid {
            recipients.contacts(txn)?;
            recipients.contacts.as_deref().unwrap_or_default()
        } else {
            &[]
        };
        // A distrust also goes to the sender's co-recipients: one of them
        // may hold the sender distrusted (a thief can arrange that) and so
        // have dropped it, and a missed distrust keeps a revoked key trusted.
        // Distrusts are rare, so the extra messages cost little; a missed
        // trust only delays an authentication (see docs/propagation.md).
        let distrust =
            txn.get(&change.target)?.map(|r| r.level) == Some(TrustLevel::ManuallyDistrusted);
        for recipient in recipients.own.iter().chain(contacts) {
            let from_there = change.source.as_ref().is_some_and(|s| {
                s.sender == *recipient || (!distrust && s.co_recipients.contains(recipient))
            });
            if !from_there && *recipient != change.target {
                needs
                    .entry(recipient.clone())
                    .or_default()
                    .insert(change.target.clone());
            }
        }
    }
    let syncs = std::mem::take(&mut txn.syncs);
    // Keys authenticated again whose word was dropped meanwhile: their sync
    // also carries the decision about themselves, in a message of its own,
    // which asks them to say again what they said (see `receive`).
    let mut requests = BTreeSet::new();
    for key in std::mem::take(&mut txn.reauthenticated) {
        let still = txn.get(&key)?.map(|r| r.level) == Some(TrustLevel::Authenticated);
        if still && txn.was_missed(&key)? {
            txn.changes.unmissed.push(key.clone());
            requests.insert(key);
        }
    }
    sync(
        txn,
        &mut needs,
        syncs,
        &[TrustLevel::Authenticated, TrustLevel::ManuallyDistrusted],
    )?;
    // Keys authenticated by a trust message get this endpoint's distrusts
    // (finding 1 of the attack property tests: the sender that synced them
    // may be distrusted before they hear of a revocation).
    let distrust_syncs = std::mem::take(&mut txn.distrust_syncs);
    sync(
        txn,
        &mut needs,
        distrust_syncs,
        &[TrustLevel::ManuallyDistrusted],
    )?;
    for recipient in &requests {
        needs
            .entry(recipient.clone())
            .or_default()
            .insert(recipient.clone());
    }
    // A contact's endpoint only hears about its own account and ours.
    needs.retain(|recipient, keys| {
        if recipient.owner != own_jid {
            keys.retain(|k| k.owner == own_jid || k.owner == recipient.owner);
        }
        !keys.is_empty()
    });
    let mut out = Vec::new();
    for recipient in requests {
        if let Some(keys) = needs.remove(&recipient) {
            let keys: Vec<KeyRef> = keys.into_iter().collect();
            if let Some(m) = message(txn, recipient.owner.clone(), vec![recipient], &keys)? {
                out.push(m);
            }
        }
    }
    // Group by account: own endpoints, then one group per contact account.
    let mut groups: BTreeMap<BareJid, (Vec<KeyRef>, BTreeSet<KeyRef>)> = BTreeMap::new();
    for (recipient, keys) in needs {
        let group = groups.entry(recipient.owner.clone()).or_default();
        group.0.push(recipient);
        group.1.extend(keys);
    }
    if let Some((own_recipients, own_keys)) = groups.remove(&own_jid) {
        // Own endpoints ride along with a contact's message when all they need
        // may be shown to that contact; otherwise they get their own.
        let host = groups.iter().find_map(|(account, (_, _))| {
            own_keys
                .iter()
                .all(|k| k.owner == own_jid || k.owner == *account)
                .then(|| account.clone())
        });
        match host.and_then(|account| groups.get_mut(&account)) {
            Some(group) => {
                group.0.extend(own_recipients);
                group.1.extend(own_keys);
            }
            None => {
                groups.insert(own_jid.clone(), (own_recipients, own_keys));
            }
        }
    }
    for (to, (recipients, keys)) in groups {
        let keys: Vec<KeyRef> = keys.into_iter().collect();
        if let Some(message) = message(txn, to, recipients, &keys)? {
            out.push(message);
        }
    }
    Ok(out)
}

/// Literal XEP-0450 §Use Cases: only manual decisions send, each use case its
/// own message per recipient account.
fn xep<S: TrustStore>(txn: &mut Txn<'_, S>) -> Result<Vec<Outgoing>, S> {
    let manual = std::mem::take(&mut txn.manual);
    if manual.is_empty() {
        return Ok(Vec::new());
    }
    let own_jid = txn.config.own.owner.clone();
    let mut recipients = Recipients::own(txn)?;
    let mut out = Vec::new();
    for (target, kind) in manual {
        let record = txn.get(&target)?;
        if record.map(|r| r.level) != Some(TrustLevel::of_decision(kind)) {
            continue; // undone later in the same input
        }
        let own_target = target.owner == own_jid;
        let others: Vec<KeyRef> = if own_target {
            let mut all = recipients.own.clone();
            all.extend_from_slice(recipients.contacts(txn)?);
            all
        } else {
            recipients.own.clone()
        };
        let others: Vec<KeyRef> = others.into_iter().filter(|k| *k != target).collect();
        // "... the key, to each (other) endpoint with an already authenticated key."
        out.extend(per_account(txn, &others, std::slice::from_ref(&target))?);
        if kind == DecisionKind::Trust {
            // "... each already authenticated key of all (own) endpoints, to the
            // endpoint whose key has been authenticated."
            let keys: Vec<KeyRef> = others
                .iter()
                .filter(|k| k.owner == own_jid || own_target)
                .filter(|k| **k != txn.config.own)
                .cloned()
                .collect();
            if let Some(m) = message(txn, target.owner.clone(), vec![target.clone()], &keys)? {
                out.push(m);
            }
        }
    }
    Ok(out)
}

/// One message per recipient account, all with the same decisions.
fn per_account<S: TrustStore>(
    txn: &mut Txn<'_, S>,
    recipients: &[KeyRef],
    keys: &[KeyRef],
) -> Result<Vec<Outgoing>, S> {
    let mut by_account: BTreeMap<BareJid, Vec<KeyRef>> = BTreeMap::new();
    for r in recipients {
        by_account
            .entry(r.owner.clone())
            .or_default()
            .push(r.clone());
    }
    let mut out = Vec::new();
    for (to, recipients) in by_account {
        if let Some(m) = message(txn, to, recipients, keys)? {
            out.push(m);
        }
    }
    Ok(out)
}

/// Adds to `needs` what each still authenticated key of `recipients` may use
/// of the decided keys at `levels`: every one but itself for an own
/// endpoint, those of our own account for a contact's.
fn sync<S: TrustStore>(
    txn: &mut Txn<'_, S>,
    needs: &mut BTreeMap<KeyRef, BTreeSet<KeyRef>>,
    recipients: Vec<KeyRef>,
    levels: &[TrustLevel],
) -> Result<(), S> {
    if recipients.is_empty() {
        return Ok(());
    }
    let own_jid = txn.config.own.owner.clone();
    let decided = txn.keys_at(levels)?;
    for recipient in recipients {
        if txn.get(&recipient)?.map(|r| r.level) != Some(TrustLevel::Authenticated) {
            continue;
        }
        let own = recipient.owner == own_jid;
        let keys = decided
            .iter()
            .map(|(k, _)| k)
            .filter(|k| **k != recipient && (own || k.owner == own_jid))
            .cloned()
            .collect::<Vec<_>>();
        needs.entry(recipient).or_default().extend(keys);
    }
    Ok(())
}

/// A trust message carrying the current decision about each key in `keys`
/// (keys not decided are left out), or `None` if nothing is left.
fn message<S: TrustStore>(
    txn: &mut Txn<'_, S>,
    to: BareJid,
    mut recipients: Vec<KeyRef>,
    keys: &[KeyRef],
) -> Result<Option<Outgoing>, S> {
    recipients.sort();
    recipients.dedup();
    // Only keys held as authenticated at the end of the input (a key may
    // have been authenticated and distrusted again within it).
    let own = txn.config.own.clone();
    let mut kept = Vec::with_capacity(recipients.len());
    for r in recipients {
        if r == own || txn.get(&r)?.map(|k| k.level) == Some(TrustLevel::Authenticated) {
            kept.push(r);
        }
    }
    let recipients = kept;
    if recipients.is_empty() {
        return Ok(None);
    }
    let mut owners: BTreeMap<BareJid, KeyOwner> = BTreeMap::new();
    let mut times = DecisionTimes::default();
    for key in keys {
        let Some(KeyRecord {
            level,
            time: Some(time),
        }) = txn.get(key)?
        else {
            continue;
        };
        let Some(kind) = level.decision() else {
            continue;
        };
        let owner = owners
            .entry(key.owner.clone())
            .or_insert_with(|| KeyOwner::new(key.owner.clone()));
        match kind {
            DecisionKind::Trust => owner.trust.push(key.key.clone()),
            DecisionKind::Distrust => owner.distrust.push(key.key.clone()),
        }
        times.0.insert(key.clone(), time);
    }
    if owners.is_empty() {
        return Ok(None);
    }
    Ok(Some(Outgoing {
        to,
        recipients,
        message: TrustMessage {
            usage: Usage::ATM,
            encryption: txn.config.encryption.clone(),
            key_owners: owners.into_values().collect(),
        },
        decision_times: times,
    }))
}
