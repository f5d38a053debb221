//! One OMEMO 2 device: SCE content in, `<encrypted>` out, and back.
//!
//! Order on receipt ("decrypt, persist, act"): [`Device::decrypt`] verifies the
//! message, stores the advanced session (and the account without its used
//! prekey) together with the decrypted key material as a pending message, and
//! only then opens the payload and returns it with the pending id; the caller
//! acts (for example the ATM engine commits its trust changes) and then calls
//! [`Device::acknowledge`]. A crash between the two leaves the message pending,
//! never lost and never accepted twice (the ratchet refuses a second delivery).

use chrono::{DateTime, Utc};
use jid::{BareJid, Jid};
use minidom::Element;

use crate::crypto::{
    decrypt_payload, encrypt_payload, receive_and_commit, Account, Bundle, DecryptError,
    DeviceAddress, IdentityPublicKey, KeyMaterial, PayloadError, RandomError, ReceiveError,
    SecureRandom, Session, SessionStore,
};
use crate::elements::{Encrypted, KeyElement};
use crate::sce::{Envelope, SceError};

/// Why a device operation failed. Nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError<E: std::error::Error + 'static> {
    /// The session store failed.
    #[error("session store: {0}")]
    Store(#[source] E),
    /// No account in the store.
    #[error("no OMEMO account in the store")]
    NoAccount,
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
    /// The payload was refused.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The message carries no payload (an empty, key-material-only message).
    #[error("the message has no payload")]
    NoPayload,
    /// The envelope was refused.
    #[error(transparent)]
    Envelope(#[from] SceError),
}

/// A decrypted message, stored as pending until acknowledged.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The pending message to acknowledge once acted upon.
    pub pending_id: u64,
    /// The sender device's identity key (its key identifier for trust messages).
    pub sender_identity: IdentityPublicKey,
    /// The envelope: content, time, from, to.
    pub envelope: Envelope,
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
    /// [`DeviceError`].
    pub fn open(
        jid: BareJid,
        device_id: u32,
        mut store: S,
        now: DateTime<Utc>,
        rng: &mut dyn SecureRandom,
    ) -> Result<Self, DeviceError<S::Error>> {
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
    /// exactly `recipients`. Sessions are stored before this returns.
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
            time,
            from: Jid::from(self.jid.clone()),
            to: Jid::from(to.clone()),
        };
        let sealed = envelope.seal(rng)?;
        let (payload, key_material) = encrypt_payload(sealed.as_bytes(), rng)?;
        let account = self.account()?;
        let mut encrypted = Encrypted {
            sid: self.device_id,
            keys: Default::default(),
            payload: Some(payload),
        };
        for recipient in recipients {
            let address = &recipient.address;
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
            let out = session.encrypt(&key_material.to_bytes());
            self.store
                .store_session(address, &session)
                .map_err(DeviceError::Store)?;
            encrypted
                .keys
                .entry(address.jid.clone())
                .or_default()
                .push(KeyElement {
                    rid: address.device_id,
                    kex: out.key_exchange,
                    data: out.bytes,
                });
        }
        Ok(encrypted)
    }

    /// Decrypts a message sent by device `sid` of `sender` in a stanza to
    /// `stanza_to`: verifies, persists, then opens the envelope and checks its
    /// addresses. `expected_identity` (from the sender's bundle), if given,
    /// must match the identity of a key exchange.
    ///
    /// # Errors
    /// [`DeviceError`]; on any error no session changed.
    pub fn decrypt(
        &mut self,
        encrypted: &Encrypted,
        sender: &BareJid,
        stanza_to: &BareJid,
        expected_identity: Option<&IdentityPublicKey>,
        rng: &mut dyn SecureRandom,
    ) -> Result<Opened, DeviceError<S::Error>> {
        let key = encrypted
            .key_for(&self.jid, self.device_id)
            .ok_or(DeviceError::NotForUs)?;
        let payload = encrypted.payload.as_ref().ok_or(DeviceError::NoPayload)?;
        let peer = DeviceAddress {
            jid: sender.clone(),
            device_id: encrypted.sid,
        };
        // Check as much as possible before anything is stored: decrypt the
        // payload with a dry run of the session first.
        let account = self.account()?;
        let existing = self.store.load_session(&peer).map_err(DeviceError::Store)?;
        let dry = crate::crypto::receive(
            &account,
            existing.as_ref(),
            expected_identity,
            &key.data,
            key.kex,
            rng,
        )?;
        let KeyMaterial::Payload(material) = KeyMaterial::parse(&dry.plaintext)? else {
            return Err(DeviceError::NoPayload);
        };
        let plaintext = decrypt_payload(payload, &material)?;
        let envelope = Envelope::open(&plaintext, sender, stanza_to)?;
        // Everything verified: persist (session, account, pending message).
        let committed = receive_and_commit(
            &mut self.store,
            &peer,
            expected_identity,
            &key.data,
            key.kex,
            rng,
        )
        .map_err(|e| match e {
            ReceiveError::Decrypt(d) => DeviceError::Decrypt(d),
            ReceiveError::NoAccount => DeviceError::NoAccount,
            ReceiveError::Random(r) => DeviceError::Random(r),
            ReceiveError::Store(s) => DeviceError::Store(s),
        })?;
        Ok(Opened {
            pending_id: committed.pending.id,
            sender_identity: committed.pending.sender_identity,
            envelope,
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
