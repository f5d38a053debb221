//! The user's commands on the core (what `atm keys`, `authenticate`,
//! `distrust`, `uri`, `scan`, `send` and `status` call). Each is one unit of
//! work: it happens completely or not at all.

use std::collections::BTreeMap;

use atm_engine::{Input, KeyId, KeyRef, Policy, TrustLevel, TrustStore as _};
use atm_tm::{Encryption, TrustUri};
use chrono::{DateTime, Utc};
use jid::BareJid;
use minidom::Element;

use crate::endpoint::{Abort, Endpoint};
use crate::error::{CommandError, CoreError};
use crate::event::Event;
use crate::stanza::{builder, NS_CLIENT};

/// A known key, for `atm keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The owner.
    pub owner: BareJid,
    /// The key.
    pub key: KeyId,
    /// Its fingerprint (lower-case hex, as in Trust Message URIs).
    pub fingerprint: String,
    /// The trust in it.
    pub level: TrustLevel,
    /// The time of the decision that set the level (none for policy levels).
    pub since: Option<DateTime<Utc>>,
    /// The OMEMO device ids that use it (usually one).
    pub device_ids: Vec<u32>,
    /// Whose word set the level: this device's own key for the user's
    /// decisions, a sender's key for a decision that came in a trust
    /// message; `None` for levels the policy set.
    pub decided_by: Option<KeyRef>,
}

/// What a decision (`authenticate`, `distrust`, `scan`) changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decided {
    /// Trust changes, in order (also reported as events).
    pub changes: Vec<Event>,
    /// Trust messages queued for sending.
    pub trust_messages: usize,
}

/// A chat message queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSent {
    /// How many devices it was encrypted for.
    pub devices: usize,
}

/// `atm status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The account.
    pub jid: BareJid,
    /// The device id.
    pub device_id: u32,
    /// The own fingerprint.
    pub fingerprint: String,
    /// The policy in force.
    pub policy: Policy,
    /// Known keys by level.
    pub keys_by_level: BTreeMap<TrustLevel, usize>,
    /// Decisions postponed or pending.
    pub stored_decisions: u64,
    /// Stanzas waiting to be sent.
    pub outbox: usize,
    /// The archive position.
    pub archive_position: Option<String>,
    /// Accounts followed.
    pub contacts: Vec<BareJid>,
}

fn parse_jid(text: &str) -> Result<BareJid, CommandError> {
    BareJid::new(text).map_err(|e| CommandError::InvalidJid {
        text: text.to_owned(),
        reason: e.to_string(),
    })
}

fn parse_fingerprint(text: &str) -> Result<KeyId, CommandError> {
    let compact: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    KeyId::from_hex(&compact).map_err(|e| CommandError::MalformedFingerprint {
        text: text.to_owned(),
        reason: e.to_string(),
    })
}

fn abort_to_command(abort: Abort) -> CommandError {
    match abort {
        Abort::Core(error) => CommandError::Core(error),
        other => CommandError::Core(CoreError::Omemo(format!("{other:?}"))),
    }
}

impl Endpoint {
    /// The own fingerprint (hex of the own key).
    pub fn fingerprint(&self) -> String {
        self.own_key.to_hex()
    }

    /// This device's Trust Message URI: scanning it authenticates this key.
    pub fn uri(&self) -> String {
        TrustUri {
            jid: self.jid.clone(),
            encryption: Encryption::OMEMO2,
            trust: vec![self.own_key.clone()],
            distrust: Vec::new(),
        }
        .to_uri()
    }

    /// Follows an account's devices (fetches its device list now, and at
    /// every [`Endpoint::start`]).
    ///
    /// # Errors
    /// A store failure.
    pub fn add_contact(&mut self, jid: &BareJid) -> Result<(), CommandError> {
        if *jid == self.jid {
            return Ok(());
        }
        self.store.add_contact(jid)?;
        self.fetch_device_list_now(jid);
        Ok(())
    }

    /// Every known key with its trust.
    ///
    /// # Errors
    /// A store failure.
    pub fn keys(&mut self) -> Result<Vec<KeyInfo>, CommandError> {
        let known = self.engine().known_keys()?;
        let mut keys = Vec::with_capacity(known.len());
        for (key, record) in known {
            let device_ids = self
                .store
                .devices_of(&key.owner)?
                .into_iter()
                .filter(|d| d.identity.as_ref().map(|i| i.as_slice()) == Some(key.key.as_bytes()))
                .map(|d| d.device_id)
                .collect();
            let decided_by = match (record.level.decision(), record.time) {
                (Some(kind), Some(time)) => {
                    let mut engine = self.engine();
                    engine
                        .store_mut()
                        .statements_about(&key)
                        .map_err(CoreError::Store)?
                        .into_iter()
                        .filter(|s| s.decision.kind == kind && s.decision.time == time)
                        .min_by_key(|s| s.stamp)
                        .map(|s| s.source)
                }
                _ => None,
            };
            keys.push(KeyInfo {
                decided_by,
                fingerprint: key.key.to_hex(),
                owner: key.owner,
                key: key.key,
                level: record.level,
                since: record.time,
                device_ids,
            });
        }
        keys.sort_by(|a, b| (&a.owner, &a.fingerprint).cmp(&(&b.owner, &b.fingerprint)));
        Ok(keys)
    }

    fn known_key(&mut self, jid: &str, fingerprint: &str) -> Result<KeyRef, CommandError> {
        let owner = parse_jid(jid)?;
        let key = parse_fingerprint(fingerprint)?;
        if owner == self.jid && key == self.own_key {
            return Err(CommandError::OwnKey(fingerprint.to_owned()));
        }
        let key = KeyRef::new(owner, key);
        if self.engine().level(&key)?.is_none() {
            return Err(CommandError::UnknownKey {
                jid: key.owner.to_string(),
                fingerprint: key.key.to_hex(),
            });
        }
        Ok(key)
    }

    /// The user authenticates a known key (after comparing fingerprints).
    ///
    /// # Errors
    /// [`CommandError`]: invalid JID or fingerprint, unknown or own key, a
    /// store failure; nothing changed then.
    pub fn authenticate(
        &mut self,
        jid: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Decided, CommandError> {
        let key = self.known_key(jid, fingerprint)?;
        self.decide(key.owner, vec![key.key], Vec::new(), now)
    }

    /// The user distrusts a known key.
    ///
    /// # Errors
    /// See [`Endpoint::authenticate`].
    pub fn distrust(
        &mut self,
        jid: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Decided, CommandError> {
        let key = self.known_key(jid, fingerprint)?;
        self.decide(key.owner, Vec::new(), vec![key.key], now)
    }

    /// The user scanned a Trust Message URI (of an own device or a
    /// contact's): its keys are authenticated and distrusted. Keys not known
    /// yet are decided when their device appears; the account is followed.
    ///
    /// # Errors
    /// [`CommandError::MalformedUri`], [`CommandError::OtherEncryption`], a
    /// store failure; nothing changed then.
    pub fn scan(&mut self, uri: &str, now: DateTime<Utc>) -> Result<Decided, CommandError> {
        let uri = TrustUri::parse(uri.trim())?;
        if uri.encryption != Encryption::OMEMO2 {
            return Err(CommandError::OtherEncryption {
                found: uri.encryption.as_str().to_owned(),
                expected: Encryption::OMEMO2.as_str().to_owned(),
            });
        }
        let own = uri.jid == self.jid;
        let authenticate: Vec<KeyId> = uri
            .trust
            .into_iter()
            .filter(|k| !(own && *k == self.own_key))
            .collect();
        let distrust: Vec<KeyId> = uri
            .distrust
            .into_iter()
            .filter(|k| !(own && *k == self.own_key))
            .collect();
        let decided = self.decide(uri.jid.clone(), authenticate, distrust, now)?;
        if !own {
            self.add_contact(&uri.jid)?;
        }
        Ok(decided)
    }

    fn decide(
        &mut self,
        owner: BareJid,
        authenticate: Vec<KeyId>,
        distrust: Vec<KeyId>,
        now: DateTime<Utc>,
    ) -> Result<Decided, CommandError> {
        let mut events = Vec::new();
        let before = self.store.outbox_after(0)?.len();
        self.unit(|endpoint| {
            let effects = endpoint.engine_input(
                Input::Manual {
                    owner,
                    authenticate,
                    distrust,
                },
                now,
            )?;
            endpoint.apply_effects(effects, now, &mut events)?;
            Ok(())
        })
        .map_err(abort_to_command)?;
        let after = self.store.outbox_after(0)?.len();
        let changes = events
            .iter()
            .filter(|e| matches!(e, Event::TrustChanged { .. }))
            .cloned()
            .collect();
        self.events.extend(events);
        Ok(Decided {
            changes,
            trust_messages: after.saturating_sub(before),
        })
    }

    /// The keys of `owner` a chat message may be encrypted for: never a
    /// distrusted key; authenticated (and manually trusted) keys; and
    /// automatically trusted keys only while the owner has no authenticated
    /// key (XEP-0450 §Security Considerations).
    fn chat_keys(&mut self, owner: &BareJid) -> Result<Vec<KeyRef>, CommandError> {
        let keys: Vec<_> = self
            .engine()
            .known_keys()?
            .into_iter()
            .filter(|(key, _)| key.owner == *owner && key.key != self.own_key)
            .collect();
        let any_authenticated = keys
            .iter()
            .any(|(_, r)| r.level == TrustLevel::Authenticated);
        Ok(keys
            .into_iter()
            .filter(|(_, r)| match r.level {
                TrustLevel::Authenticated | TrustLevel::ManuallyTrusted => true,
                TrustLevel::AutomaticallyTrusted => !any_authenticated,
                TrustLevel::Undecided
                | TrustLevel::AutomaticallyDistrusted
                | TrustLevel::ManuallyDistrusted => false,
            })
            .map(|(key, _)| key)
            .collect())
    }

    /// Encrypts `text` for the trusted devices of `to` and the own other
    /// trusted devices, and queues it.
    ///
    /// # Errors
    /// [`CommandError::NoTrustedDevice`] if no device of `to` may be written
    /// to; a store failure. Nothing was queued then.
    pub fn send_chat(
        &mut self,
        to: &str,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<ChatSent, CommandError> {
        let to = parse_jid(to)?;
        let mut keys = self.chat_keys(&to)?;
        if keys.is_empty() {
            return Err(CommandError::NoTrustedDevice(to.to_string()));
        }
        if to != self.jid {
            keys.extend(self.chat_keys(&self.jid.clone())?);
        }
        let body: Element = builder("body", NS_CLIENT).append(text).build();
        let mut events = Vec::new();
        let devices = self
            .unit(|endpoint| {
                Ok(endpoint.send_encrypted(&to, &keys, vec![body], now, &mut events)?)
            })
            .map_err(abort_to_command)?;
        self.events.extend(events);
        if devices == 0 {
            return Err(CommandError::NoTrustedDevice(to.to_string()));
        }
        Ok(ChatSent { devices })
    }

    /// Changes the security policy (TOAKAFA or manual).
    ///
    /// # Errors
    /// A store failure; nothing changed then.
    pub fn set_policy(
        &mut self,
        policy: Policy,
        now: DateTime<Utc>,
    ) -> Result<Decided, CommandError> {
        let mut events = Vec::new();
        self.unit(|endpoint| {
            let effects = endpoint.engine_input(Input::SetPolicy(policy), now)?;
            endpoint.apply_effects(effects, now, &mut events)?;
            Ok(())
        })
        .map_err(abort_to_command)?;
        let changes = events
            .iter()
            .filter(|e| matches!(e, Event::TrustChanged { .. }))
            .cloned()
            .collect();
        self.events.extend(events);
        Ok(Decided {
            changes,
            trust_messages: 0,
        })
    }

    /// What `atm status` shows.
    ///
    /// # Errors
    /// A store failure.
    pub fn status(&mut self) -> Result<Status, CommandError> {
        let mut keys_by_level = BTreeMap::new();
        let mut engine = self.engine();
        for (_, record) in engine.known_keys()? {
            *keys_by_level.entry(record.level).or_insert(0) += 1;
        }
        let policy = engine.policy()?;
        let stored_decisions = engine.stored_decision_count()?;
        Ok(Status {
            jid: self.jid.clone(),
            device_id: self.device_id,
            fingerprint: self.fingerprint(),
            policy,
            keys_by_level,
            stored_decisions,
            outbox: self.store.outbox_after(0)?.len(),
            archive_position: self.archive_position()?,
            contacts: self.store.contacts()?,
        })
    }
}
