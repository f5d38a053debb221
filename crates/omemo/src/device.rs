//! One OMEMO 2 device: SCE content in, `<encrypted>` out, and back.
//!
//! Order on receipt ("decrypt, persist, act"): [`Device::decrypt`] verifies the
//! message and opens its envelope, then stores the advanced session (and the
//! account without its used prekey) together with the decrypted key material
//! as a pending message, and returns what it read with the pending id; the
//! caller acts (for example the ATM engine commits its trust changes) and then
//! calls [`Device::acknowledge`]. A crash between the two leaves the message
//! pending, never lost and never accepted twice (the ratchet refuses a second
//! delivery).
//!
//! What [`Device::decrypt`] reports in [`Opened`]:
//!
//! * the envelope, or `None` for an *empty* message (no `<payload>`, 32 zero
//!   bytes as key material: XEP-0384 uses them to complete a key exchange,
//!   as heartbeats and to announce a new session). An empty message advances
//!   and confirms the session like any other, and is stored and acknowledged
//!   the same way.
//! * [`Opened::reply`]: whether XEP-0384 §Business Rules ask for an empty
//!   message back ([`EmptyReply::KeyExchangeCompleted`] after a key exchange
//!   built a session, [`EmptyReply::Heartbeat`] for the first message of a
//!   ratchet key with a counter of [`HEARTBEAT_COUNTER`] or more). Send it
//!   with [`Device::encrypt_empty`].
//! * [`Opened::session`]: whether a session was built, rebuilt, or replaced
//!   by one with a *different identity key* ([`SessionChange::IdentityChanged`]:
//!   a new key, for the application to trust or not).
//! * [`Opened::time`]: the envelope's `<time>` against the sending time the
//!   caller derived from the stanza ([`Incoming::sent_at`]), with
//!   [`crate::sce::SCE_TIME_MARGIN`]. A chat message outside the margin is
//!   still returned: the caller decides (the ATM engine refuses a trust
//!   message outside it).
//! * [`Opened::discarded`]: server-processed elements dropped from the content.
//!
//! A message may carry several `<key>` elements for this device (QXmpp writes
//! two, two ratchet steps apart, for its own account's devices); each is
//! tried in document order until one decrypts, and the ones after it are
//! then decrypted with the advanced session and spent too, so that a second
//! delivery of the same message is refused as a replay.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use jid::{BareJid, Jid};
use minidom::Element;

use crate::crypto::{
    commit_receipt, decrypt_payload, encrypt_payload, receive, Account, Bundle, DecryptError,
    DeviceAddress, IdentityPublicKey, KeyMaterial, PayloadError, RandomError, ReceiveError,
    SecureRandom, Session, SessionStore, EMPTY_KEY_MATERIAL,
};
use crate::elements::{Encrypted, KeyElement, MAX_DEVICE_ID};
use crate::sce::{DiscardedElement, Envelope, SceError, StanzaKind, TimeCheck};

pub use crate::crypto::session::HEARTBEAT_COUNTER;

/// Why a device operation failed. Nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError<E: std::error::Error + 'static> {
    /// The session store failed.
    #[error("session store: {0}")]
    Store(#[source] E),
    /// No account in the store.
    #[error("no OMEMO account in the store")]
    NoAccount,
    /// The device id is not in 1..=2^31−1.
    #[error("{0} is not a device id (1..={MAX_DEVICE_ID})")]
    InvalidDeviceId(u32),
    /// The generator failed.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// A recipient has no session and no bundle was given.
    #[error("no session with {0}/{1} and no bundle to build one")]
    NoSession(BareJid, u32),
    /// Building a session failed (bad bundle).
    #[error("session with {0}/{1}: {2}")]
    KeyExchange(BareJid, u32, String),
    /// The message has no key element for this device.
    #[error("the message is not encrypted for this device")]
    NotForUs,
    /// The key element was refused (forged, replayed, truncated...).
    #[error(transparent)]
    Decrypt(#[from] DecryptError),
    /// The payload was refused (or the key material does not fit it).
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The envelope was refused.
    #[error(transparent)]
    Envelope(#[from] SceError),
}

/// The stanza an `<encrypted>` element arrived in, as the caller read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The sender's bare JID (the stanza's `from`).
    pub sender: BareJid,
    /// The recipient's bare JID (the stanza's `to`; the room in a group chat).
    pub recipient: BareJid,
    /// The sending time derived from the stanza: the receipt time for a live
    /// stanza, the server's delay (XEP-0203) or archive (XEP-0313) stamp
    /// for an offline or archived one.
    pub sent_at: DateTime<Utc>,
    /// One-to-one or group chat (a group chat envelope must have `<to>`).
    pub kind: StanzaKind,
}

/// What happened to the session with the sending device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionChange {
    /// The existing session decrypted the message.
    Continued,
    /// A key exchange built the first session with this device.
    Built,
    /// A key exchange with the same identity key replaced the session.
    Rebuilt,
    /// A key exchange with a different identity key replaced the session:
    /// the device now speaks with a new key, to trust or not.
    IdentityChanged {
        /// The identity key of the replaced session.
        previous: IdentityPublicKey,
    },
}

/// Why XEP-0384 §Business Rules ask for an empty message back to the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyReply {
    /// A key exchange built a session: tell the sender it can stop sending
    /// key exchanges.
    KeyExchangeCompleted,
    /// The first message of the sender's current ratchet key with a counter
    /// of [`HEARTBEAT_COUNTER`] or more: a heartbeat moves the ratchet on.
    Heartbeat,
}

/// A decrypted message, stored as pending until acknowledged.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The pending message to acknowledge once acted upon.
    pub pending_id: u64,
    /// The sender device's identity key (its key identifier for trust messages).
    pub sender_identity: IdentityPublicKey,
    /// The envelope (content, time, from, to); `None` for an empty message.
    pub envelope: Option<Envelope>,
    /// The envelope's `<time>` against [`Incoming::sent_at`]
    /// ([`TimeCheck::Absent`] for an empty message).
    pub time: TimeCheck,
    /// Server-processed elements found in the content and dropped.
    pub discarded: Vec<DiscardedElement>,
    /// What happened to the session.
    pub session: SessionChange,
    /// An empty message to send back to the sender, if the rules ask for one.
    pub reply: Option<EmptyReply>,
}

/// A recipient device: address, and its bundle if no session may exist yet.
#[derive(Debug, Clone)]
pub struct Recipient {
    /// The device.
    pub address: DeviceAddress,
    /// Its bundle (used only when there is no session).
    pub bundle: Option<Bundle>,
}

/// One OMEMO 2 device over a [`SessionStore`].
pub struct Device<S> {
    jid: BareJid,
    device_id: u32,
    store: S,
}

impl<S: SessionStore> Device<S> {
    /// Opens the device, generating and storing an account if the store has none.
    ///
    /// # Errors
    /// [`DeviceError`]; [`DeviceError::InvalidDeviceId`] unless
    /// `device_id` is in 1..=2^31−1.
    pub fn open(
        jid: BareJid,
        device_id: u32,
        mut store: S,
        now: DateTime<Utc>,
        rng: &mut dyn SecureRandom,
    ) -> Result<Self, DeviceError<S::Error>> {
        if device_id == 0 || device_id > MAX_DEVICE_ID {
            return Err(DeviceError::InvalidDeviceId(device_id));
        }
        if store.load_account().map_err(DeviceError::Store)?.is_none() {
            let account = Account::generate(now, rng)?;
            store.store_account(&account).map_err(DeviceError::Store)?;
        }
        Ok(Device {
            jid,
            device_id,
            store,
        })
    }

    fn account(&self) -> Result<Account, DeviceError<S::Error>> {
        self.store
            .load_account()
            .map_err(DeviceError::Store)?
            .ok_or(DeviceError::NoAccount)
    }

    /// The device's identity key.
    ///
    /// # Errors
    /// [`DeviceError`].
    pub fn identity(&self) -> Result<IdentityPublicKey, DeviceError<S::Error>> {
        Ok(self.account()?.identity().public())
    }

    /// This device's entry for the device list, with `label` signed by its
    /// identity key (`labelsig`), or without a label.
    ///
    /// # Errors
    /// [`DeviceError`].
    pub fn list_entry(
        &self,
        label: Option<&str>,
    ) -> Result<crate::elements::Device, DeviceError<S::Error>> {
        Ok(match label {
            Some(label) => crate::elements::Device::with_label(
                self.device_id,
                label,
                self.account()?.identity(),
            ),
            None => crate::elements::Device::new(self.device_id),
        })
    }

    /// The device's bundle, to publish.
    ///
    /// # Errors
    /// [`DeviceError`].
    pub fn bundle(&self) -> Result<Bundle, DeviceError<S::Error>> {
        Ok(self.account()?.bundle())
    }

    /// Its device id.
    pub fn device_id(&self) -> u32 {
        self.device_id
    }

    /// The store.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Gives the store back.
    pub fn into_store(self) -> S {
        self.store
    }

    /// Wraps `content` in an SCE envelope (time, from this device's account,
    /// to `to`, random padding), encrypts it, and encrypts the key material for
    /// exactly `recipients` (a recipient given twice is encrypted for once).
    /// Sessions are stored before this returns.
    ///
    /// # Errors
    /// [`DeviceError`]; sessions already advanced for earlier recipients stay
    /// stored (a message key is never reused).
    pub fn encrypt(
        &mut self,
        content: Vec<Element>,
        time: DateTime<Utc>,
        to: &BareJid,
        recipients: &[Recipient],
        rng: &mut dyn SecureRandom,
    ) -> Result<Encrypted, DeviceError<S::Error>> {
        let envelope = Envelope {
            content,
            time: Some(time),
            from: Some(Jid::from(self.jid.clone())),
            to: Some(Jid::from(to.clone())),
        };
        let sealed = envelope.seal(rng)?;
        let (payload, key_material) = encrypt_payload(sealed.as_bytes(), rng)?;
        let keys = self.encrypt_key_material(&key_material.to_bytes(), recipients, rng)?;
        Ok(Encrypted {
            sid: self.device_id,
            keys,
            payload: Some(payload),
        })
    }

    /// An empty OMEMO message (no `<payload>`; 32 zero bytes encrypted with
    /// each session) for `recipients`: to complete a key exchange, as a
    /// heartbeat ([`Opened::reply`]), or to announce a new session.
    /// Sessions are stored before this returns.
    ///
    /// # Errors
    /// As [`Device::encrypt`].
    pub fn encrypt_empty(
        &mut self,
        recipients: &[Recipient],
        rng: &mut dyn SecureRandom,
    ) -> Result<Encrypted, DeviceError<S::Error>> {
        let keys = self.encrypt_key_material(&EMPTY_KEY_MATERIAL, recipients, rng)?;
        Ok(Encrypted {
            sid: self.device_id,
            keys,
            payload: None,
        })
    }

    fn encrypt_key_material(
        &mut self,
        key_material: &[u8],
        recipients: &[Recipient],
        rng: &mut dyn SecureRandom,
    ) -> Result<std::collections::BTreeMap<BareJid, Vec<KeyElement>>, DeviceError<S::Error>> {
        let account = self.account()?;
        let mut keys: std::collections::BTreeMap<BareJid, Vec<KeyElement>> = Default::default();
        let mut done = HashSet::new();
        for recipient in recipients {
            let address = &recipient.address;
            if !done.insert(address) {
                continue;
            }
            let mut session = match self
                .store
                .load_session(address)
                .map_err(DeviceError::Store)?
            {
                Some(session) => session,
                None => {
                    let bundle = recipient.bundle.as_ref().ok_or_else(|| {
                        DeviceError::NoSession(address.jid.clone(), address.device_id)
                    })?;
                    Session::initiate(account.identity(), bundle, rng).map_err(|e| {
                        DeviceError::KeyExchange(
                            address.jid.clone(),
                            address.device_id,
                            e.to_string(),
                        )
                    })?
                }
            };
            let out = session.encrypt(key_material);
            self.store
                .store_session(address, &session)
                .map_err(DeviceError::Store)?;
            keys.entry(address.jid.clone())
                .or_default()
                .push(KeyElement {
                    rid: address.device_id,
                    kex: out.key_exchange,
                    data: out.bytes,
                });
        }
        Ok(keys)
    }

    /// Decrypts a message sent by device `sid` of `stanza.sender`: verifies,
    /// opens and checks the envelope (or reads an empty message), persists,
    /// and reports (see the module docs). `expected_identity` (from the
    /// sender's bundle), if given, must match the identity of a key exchange.
    /// If several `<key>` elements address this device, each is tried in
    /// order; the error of the first is returned if none decrypts.
    ///
    /// # Errors
    /// [`DeviceError`]; on any error no session changed.
    pub fn decrypt(
        &mut self,
        encrypted: &Encrypted,
        stanza: &Incoming,
        expected_identity: Option<&IdentityPublicKey>,
        rng: &mut dyn SecureRandom,
    ) -> Result<Opened, DeviceError<S::Error>> {
        let keys: Vec<&KeyElement> = encrypted.keys_for(&self.jid, self.device_id).collect();
        let mut first_error = None;
        for (index, key) in keys.iter().enumerate() {
            match self.decrypt_key(
                encrypted,
                key,
                &keys[index + 1..],
                stanza,
                expected_identity,
                rng,
            ) {
                Ok(opened) => return Ok(opened),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        Err(first_error.unwrap_or(DeviceError::NotForUs))
    }

    fn decrypt_key(
        &mut self,
        encrypted: &Encrypted,
        key: &KeyElement,
        later_keys: &[&KeyElement],
        stanza: &Incoming,
        expected_identity: Option<&IdentityPublicKey>,
        rng: &mut dyn SecureRandom,
    ) -> Result<Opened, DeviceError<S::Error>> {
        let peer = DeviceAddress {
            jid: stanza.sender.clone(),
            device_id: encrypted.sid,
        };
        // Check everything before anything is stored.
        let account = self.account()?;
        let existing = self.store.load_session(&peer).map_err(DeviceError::Store)?;
        let mut received = receive(
            &account,
            existing.as_ref(),
            expected_identity,
            &key.data,
            key.kex,
            rng,
        )?;
        // Spend the later keys for this device in the same session too, so
        // that a second delivery of the message finds every one of them used.
        for later in later_keys {
            if let Ok(next) = receive(
                &account,
                Some(&received.session),
                expected_identity,
                &later.data,
                later.kex,
                rng,
            ) {
                if !next.new_session {
                    received.session = next.session;
                }
            }
        }
        let material = KeyMaterial::parse(&received.plaintext)?;
        let opened = match (&encrypted.payload, material) {
            (Some(payload), KeyMaterial::Payload(material)) => {
                let plaintext = decrypt_payload(payload, &material)?;
                Some(Envelope::open(
                    &plaintext,
                    &stanza.sender,
                    &stanza.recipient,
                    stanza.kind,
                )?)
            }
            (Some(_), KeyMaterial::Empty) => {
                return Err(DeviceError::Payload(PayloadError::BadKeyMaterialLength {
                    actual: EMPTY_KEY_MATERIAL.len(),
                }))
            }
            // No payload: an empty message, whatever the key material.
            (None, _) => None,
        };
        let session = match (&existing, received.new_session) {
            (_, false) => SessionChange::Continued,
            (None, true) => SessionChange::Built,
            (Some(previous), true)
                if previous.remote_identity() == received.session.remote_identity() =>
            {
                SessionChange::Rebuilt
            }
            (Some(previous), true) => SessionChange::IdentityChanged {
                previous: previous.remote_identity(),
            },
        };
        let reply = if key.kex && received.new_session {
            Some(EmptyReply::KeyExchangeCompleted)
        } else if crate::crypto::session::heartbeat_due(existing.as_ref(), &received.session) {
            Some(EmptyReply::Heartbeat)
        } else {
            None
        };
        // Everything verified: persist (session, account, pending message).
        let committed = commit_receipt(&mut self.store, &account, &peer, received, rng).map_err(
            |e| match e {
                ReceiveError::Decrypt(d) => DeviceError::Decrypt(d),
                ReceiveError::NoAccount => DeviceError::NoAccount,
                ReceiveError::Random(r) => DeviceError::Random(r),
                ReceiveError::Store(s) => DeviceError::Store(s),
            },
        )?;
        let (envelope, discarded) = match opened {
            Some(opened) => (Some(opened.envelope), opened.discarded),
            None => (None, Vec::new()),
        };
        Ok(Opened {
            pending_id: committed.pending.id,
            sender_identity: committed.pending.sender_identity,
            time: TimeCheck::new(envelope.as_ref().and_then(|e| e.time), stanza.sent_at),
            envelope,
            discarded,
            session,
            reply,
        })
    }

    /// Marks a decrypted message as acted upon.
    ///
    /// # Errors
    /// A store failure.
    pub fn acknowledge(&mut self, pending_id: u64) -> Result<(), DeviceError<S::Error>> {
        self.store
            .acknowledge(pending_id)
            .map_err(DeviceError::Store)
    }
}
