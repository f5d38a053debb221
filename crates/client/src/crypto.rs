//! Everything the core asks of `atm-omemo`, in one place: the device over the
//! endpoint store, bundles and device lists as elements, encryption for an
//! exact set of devices, decryption with the SCE checks, and the content hash
//! used for deduplication.

use atm_omemo::crypto::{Bundle, DecryptError, DeviceAddress, SecureRandom, Session, SessionStore};
use atm_omemo::device::{Device, DeviceError, Incoming, Recipient};
use atm_omemo::elements::{
    bundle_from_element, bundle_to_element, DeviceList, Encrypted, NS_OMEMO,
};
use atm_omemo::sce::{SceError, StanzaKind};
use atm_omemo::xml::parse_bounded;
use atm_store::{EndpointStore, StoreError};
use chrono::{DateTime, Utc};
use jid::BareJid;
use minidom::Element;
use sha2::{Digest, Sha256};

use crate::error::{CoreError, Rejection};

pub use atm_omemo::elements::{NS_BUNDLES, NS_DEVICES};

/// Largest bundle text read back from the store.
const MAX_BUNDLE_BYTES: usize = 1024 * 1024;

fn device_error(error: DeviceError<StoreError>) -> CoreError {
    match error {
        DeviceError::Store(store) => CoreError::Store(store),
        other => CoreError::Omemo(other.to_string()),
    }
}

fn open<'a>(
    store: &'a mut EndpointStore,
    jid: &BareJid,
    device_id: u32,
    now: DateTime<Utc>,
    rng: &mut dyn SecureRandom,
) -> Result<Device<atm_store::SessionView<'a>>, CoreError> {
    Device::open(jid.clone(), device_id, store.sessions(), now, rng).map_err(device_error)
}

/// Creates the account if there is none; returns the identity key.
pub(crate) fn ensure_account(
    store: &mut EndpointStore,
    jid: &BareJid,
    device_id: u32,
    now: DateTime<Utc>,
    rng: &mut dyn SecureRandom,
) -> Result<[u8; 32], CoreError> {
    let device = open(store, jid, device_id, now, rng)?;
    Ok(device.identity().map_err(device_error)?.to_bytes())
}

/// The own bundle element and the ids of its prekeys.
pub(crate) fn own_bundle(store: &mut EndpointStore) -> Result<(Element, Vec<u32>), CoreError> {
    let account = store
        .sessions()
        .load_account()?
        .ok_or_else(|| CoreError::Omemo("no OMEMO account in the store".into()))?;
    let bundle = account.bundle();
    Ok((
        bundle_to_element(&bundle),
        bundle.prekeys.keys().copied().collect(),
    ))
}

/// A `<devices/>` element listing `ids`.
pub(crate) fn device_list_element(ids: &[u32]) -> Element {
    let list = DeviceList {
        devices: ids
            .iter()
            .map(|id| atm_omemo::elements::Device::new(*id))
            .collect(),
    };
    Element::from(&list)
}

/// The device ids of a `<devices/>` element.
pub(crate) fn parse_device_list(element: &Element, jid: &BareJid) -> Result<Vec<u32>, Rejection> {
    let bad = |reason: String| Rejection::BadPubsubItem {
        what: "device list".into(),
        jid: jid.to_string(),
        reason,
    };
    let (list, skipped) = DeviceList::read(element).map_err(|e| bad(e.to_string()))?;
    // Invalid entries are skipped (old clients published duplicates); a list
    // of nothing but invalid entries is refused rather than read as "no
    // devices".
    if list.devices.is_empty() {
        if let Some(first) = skipped.first() {
            return Err(bad(first.to_string()));
        }
    }
    Ok(list.devices.iter().map(|d| d.id).collect())
}

/// Reads and verifies a `<bundle/>`: its identity key and its text.
pub(crate) fn verify_bundle(
    element: &Element,
    jid: &BareJid,
    device_id: u32,
) -> Result<([u8; 32], String), Rejection> {
    let bad = |reason: String| Rejection::BadPubsubItem {
        what: format!("bundle {device_id}"),
        jid: jid.to_string(),
        reason,
    };
    let bundle = bundle_from_element(element).map_err(|e| bad(e.to_string()))?;
    bundle.verify().map_err(|e| bad(e.to_string()))?;
    Ok((
        bundle.identity_key.to_bytes(),
        String::from(&bundle_to_element(&bundle)),
    ))
}

fn stored_bundle(text: &str) -> Result<Bundle, CoreError> {
    let element = parse_bounded(text, MAX_BUNDLE_BYTES)
        .map_err(|e| CoreError::Omemo(format!("stored bundle: {e}")))?;
    bundle_from_element(&element).map_err(|e| CoreError::Omemo(format!("stored bundle: {e}")))
}

/// A recipient device for [`encrypt`].
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub jid: BareJid,
    pub device_id: u32,
    /// Its bundle's text (for a first message).
    pub bundle: String,
}

/// Wraps `content` in SCE (from the own account, to `to`, time `now`) and
/// encrypts it for exactly `targets`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn encrypt(
    store: &mut EndpointStore,
    rng: &mut dyn SecureRandom,
    jid: &BareJid,
    device_id: u32,
    content: Vec<Element>,
    now: DateTime<Utc>,
    to: &BareJid,
    targets: &[Target],
) -> Result<Element, CoreError> {
    let recipients = targets
        .iter()
        .map(|t| {
            Ok(Recipient {
                address: DeviceAddress {
                    jid: t.jid.clone(),
                    device_id: t.device_id,
                },
                bundle: Some(stored_bundle(&t.bundle)?),
            })
        })
        .collect::<Result<Vec<_>, CoreError>>()?;
    let mut device = open(store, jid, device_id, now, rng)?;
    let encrypted = device
        .encrypt(content, now, to, &recipients, rng)
        .map_err(device_error)?;
    Ok(Element::from(&encrypted))
}

/// An empty OMEMO message (no payload) for one device with which a
/// session exists: the reply XEP-0384 §Business Rules ask for after a key
/// exchange (the sender stops sending key exchanges) or as a heartbeat.
pub(crate) fn encrypt_empty(
    store: &mut EndpointStore,
    rng: &mut dyn SecureRandom,
    jid: &BareJid,
    device_id: u32,
    now: DateTime<Utc>,
    to: DeviceAddress,
) -> Result<Element, CoreError> {
    let mut device = open(store, jid, device_id, now, rng)?;
    let recipient = Recipient {
        address: to,
        bundle: None,
    };
    let encrypted = device
        .encrypt_empty(&[recipient], rng)
        .map_err(device_error)?;
    Ok(Element::from(&encrypted))
}

/// A parsed `<encrypted/>` element.
#[derive(Debug, Clone)]
pub(crate) struct OmemoMessage(Encrypted);

impl OmemoMessage {
    /// The `<encrypted xmlns='urn:xmpp:omemo:2'/>` child of a message.
    pub(crate) fn find(message: &Element) -> Result<Option<Self>, Rejection> {
        message
            .get_child("encrypted", NS_OMEMO)
            .map(|e| {
                Encrypted::try_from(e)
                    .map(OmemoMessage)
                    .map_err(|e| Rejection::MalformedOmemo(e.to_string()))
            })
            .transpose()
    }

    /// The sending device id.
    pub(crate) fn sender_device(&self) -> u32 {
        self.0.sid
    }

    /// Whether it carries key material for this device.
    pub(crate) fn is_for(&self, jid: &BareJid, device_id: u32) -> bool {
        self.0.key_for(jid, device_id).is_some()
    }

    /// Every recipient device in the header.
    pub(crate) fn recipients(&self) -> Vec<(BareJid, u32)> {
        self.0
            .keys
            .iter()
            .flat_map(|(jid, keys)| keys.iter().map(move |k| (jid.clone(), k.rid)))
            .collect()
    }

    /// The content hash: SHA-256 over the sender's and the recipient's bare
    /// JIDs, the stanza's `id`, the sending device id, the payload and every
    /// key element (recipient, rid, kex, bytes) in header order, each
    /// length-prefixed. It covers everything the checks of a message read,
    /// so a refused copy never shares it with an acceptable one.
    /// The payload and key bytes are fresh randomness per message, so two
    /// different messages never share it, while every copy of one message
    /// (direct, carbon, offline, archive) has the same.
    pub(crate) fn content_hash(
        &self,
        sender: &BareJid,
        recipient: &BareJid,
        stanza_id: Option<&str>,
    ) -> String {
        let mut hash = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_be_bytes());
            hash.update(bytes);
        };
        field(b"atm-rs stanza v1");
        field(sender.as_str().as_bytes());
        field(recipient.as_str().as_bytes());
        field(stanza_id.unwrap_or("").as_bytes());
        field(&self.0.sid.to_be_bytes());
        field(self.0.payload.as_deref().unwrap_or(&[]));
        for (jid, keys) in &self.0.keys {
            for key in keys {
                field(jid.as_str().as_bytes());
                field(&key.rid.to_be_bytes());
                field(&[u8::from(key.kex)]);
                field(&key.data);
            }
        }
        let digest = hash.finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A decrypted and verified message, persisted as pending (inside the
/// caller's unit of work).
#[derive(Debug)]
pub(crate) struct Opened {
    pub pending_id: u64,
    pub sender_identity: [u8; 32],
    /// The SCE `<time>`, if the envelope has one.
    pub time: Option<DateTime<Utc>>,
    /// Empty for an empty OMEMO message (key material only, XEP-0384
    /// §Business Rules: completes a key exchange, a heartbeat).
    pub content: Vec<Element>,
    /// Whether XEP-0384 §Business Rules ask for an empty message back to
    /// the sender device (a key exchange built a session; a heartbeat).
    pub reply: bool,
}

/// Why a message could not be decrypted.
#[derive(Debug)]
pub(crate) enum DecryptFailure {
    /// This message was decrypted before (the ratchet refuses it).
    Replay,
    /// The message was refused.
    Refused(Rejection),
    /// The core failed.
    Core(CoreError),
}

/// Decrypts, checks the SCE envelope against the stanza's `sender` and
/// `stanza_to`, and persists the session advance and the pending message.
///
/// Crossing key exchanges: when both devices sent a first message before
/// either arrived, each replaces its own (initiated) session with the one
/// the other's key exchange builds, and every later message of either fails
/// to decrypt. So the replaced session is kept as an alternate, and a
/// message the current session refuses is tried with the alternate (which
/// then becomes current). The first message on either side settles both
/// devices on the same session.
#[allow(clippy::too_many_arguments)]
pub(crate) fn decrypt(
    store: &mut EndpointStore,
    rng: &mut dyn SecureRandom,
    jid: &BareJid,
    device_id: u32,
    message: &OmemoMessage,
    sender: &BareJid,
    stanza_to: &BareJid,
    expected_identity: Option<[u8; 32]>,
    now: DateTime<Utc>,
) -> Result<Opened, DecryptFailure> {
    let core = |e: StoreError| DecryptFailure::Core(CoreError::Store(e));
    let peer = DeviceAddress {
        jid: sender.clone(),
        device_id: message.0.sid,
    };
    let previous = store.sessions().load_session(&peer).map_err(core)?;
    let once = |store: &mut EndpointStore, rng: &mut dyn SecureRandom| {
        decrypt_once(
            store,
            rng,
            jid,
            device_id,
            message,
            sender,
            stanza_to,
            expected_identity,
            now,
        )
    };
    match once(store, rng) {
        Ok(opened) => {
            let current = store.sessions().load_session(&peer).map_err(core)?;
            if let (Some(previous), Some(current)) = (&previous, &current) {
                if previous.key_exchange() != current.key_exchange() {
                    store
                        .set_alternate_session(sender, peer.device_id, Some(&previous.to_bytes()))
                        .map_err(core)?;
                }
            }
            Ok(opened)
        }
        Err(DecryptFailure::Refused(refusal @ Rejection::Decrypt(_))) => {
            let (Some(previous), Some(alternate)) = (
                previous,
                store
                    .alternate_session(sender, peer.device_id)
                    .map_err(core)?,
            ) else {
                return Err(DecryptFailure::Refused(refusal));
            };
            let alternate = Session::from_bytes(&alternate)
                .map_err(|e| DecryptFailure::Core(CoreError::Omemo(e.to_string())))?;
            store
                .sessions()
                .store_session(&peer, &alternate)
                .map_err(core)?;
            match once(store, rng) {
                Ok(opened) => {
                    store
                        .set_alternate_session(sender, peer.device_id, Some(&previous.to_bytes()))
                        .map_err(core)?;
                    Ok(opened)
                }
                Err(second) => {
                    store
                        .sessions()
                        .store_session(&peer, &previous)
                        .map_err(core)?;
                    match second {
                        DecryptFailure::Replay => Err(DecryptFailure::Replay),
                        _ => Err(DecryptFailure::Refused(refusal)),
                    }
                }
            }
        }
        Err(other) => Err(other),
    }
}

#[allow(clippy::too_many_arguments)]
fn decrypt_once(
    store: &mut EndpointStore,
    rng: &mut dyn SecureRandom,
    jid: &BareJid,
    device_id: u32,
    message: &OmemoMessage,
    sender: &BareJid,
    stanza_to: &BareJid,
    expected_identity: Option<[u8; 32]>,
    now: DateTime<Utc>,
) -> Result<Opened, DecryptFailure> {
    let expected = expected_identity
        .map(|bytes| {
            atm_omemo::crypto::IdentityPublicKey::from_bytes(bytes)
                .map_err(|e| DecryptFailure::Core(CoreError::Omemo(e.to_string())))
        })
        .transpose()?;
    let mut device = open(store, jid, device_id, now, rng).map_err(DecryptFailure::Core)?;
    let incoming = Incoming {
        sender: sender.clone(),
        recipient: stanza_to.clone(),
        sent_at: now,
        kind: StanzaKind::Chat,
    };
    match device.decrypt(&message.0, &incoming, expected.as_ref(), rng) {
        Ok(opened) => {
            let (time, content) = match opened.envelope {
                Some(envelope) => (envelope.time, envelope.content),
                None => (None, Vec::new()),
            };
            Ok(Opened {
                pending_id: opened.pending_id,
                sender_identity: opened.sender_identity.to_bytes(),
                time,
                content,
                reply: opened.reply.is_some(),
            })
        }
        Err(DeviceError::Decrypt(DecryptError::Duplicate { .. })) => Err(DecryptFailure::Replay),
        Err(DeviceError::Envelope(SceError::WrongSender { envelope, stanza })) => {
            Err(DecryptFailure::Refused(Rejection::SceMismatch {
                field: "from",
                envelope,
                stanza,
            }))
        }
        Err(DeviceError::Envelope(SceError::WrongRecipient { envelope, stanza })) => {
            Err(DecryptFailure::Refused(Rejection::SceMismatch {
                field: "to",
                envelope,
                stanza,
            }))
        }
        Err(DeviceError::Envelope(other)) => {
            Err(DecryptFailure::Refused(Rejection::Sce(other.to_string())))
        }
        Err(DeviceError::Store(error)) => Err(DecryptFailure::Core(CoreError::Store(error))),
        Err(
            error @ (DeviceError::NoAccount | DeviceError::Random(_) | DeviceError::NoSession(..)),
        ) => Err(DecryptFailure::Core(CoreError::Omemo(error.to_string()))),
        Err(other) => Err(DecryptFailure::Refused(Rejection::Decrypt(
            other.to_string(),
        ))),
    }
}

/// Replaces the signed prekey if it is at least `period` old (the previous
/// one stays usable for one more period); returns whether it did.
pub(crate) fn rotate_signed_prekey(
    store: &mut EndpointStore,
    rng: &mut dyn SecureRandom,
    now: DateTime<Utc>,
    period: chrono::TimeDelta,
) -> Result<bool, CoreError> {
    let mut account = store
        .sessions()
        .load_account()?
        .ok_or_else(|| CoreError::Omemo("no OMEMO account in the store".into()))?;
    let rotated = account
        .rotate_signed_prekey_if_due(now, period, rng)
        .map_err(|e| CoreError::Omemo(e.to_string()))?;
    if rotated {
        store.sessions().store_account(&account)?;
    }
    Ok(rotated)
}

/// Marks a pending message as acted upon (inside the caller's unit of work).
pub(crate) fn acknowledge(store: &mut EndpointStore, pending_id: u64) -> Result<(), CoreError> {
    store.sessions().acknowledge(pending_id)?;
    Ok(())
}
