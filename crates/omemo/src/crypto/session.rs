//! Sessions: X3DH + Double Ratchet + the key exchange bookkeeping of XEP-0384.
//!
//! * An active (initiating) session wraps every outgoing message in an
//!   `OMEMOKeyExchange` until the peer has answered once (`confirmed`).
//! * A key exchange arriving for an existing passive session built from the same
//!   exchange (same identity key, ephemeral key, signed prekey id and prekey id) only
//!   decrypts the inner message; any other key exchange builds a new session.
//! * [`receive`] never mutates anything: it returns the new session state and the
//!   prekey to remove. Order: decrypt, persist (session, prekey removal, pending
//!   plaintext in one transaction), then act. See [`crate::crypto::store`].

use zeroize::Zeroizing;

use super::account::Account;
use super::error::{DecryptError, KeyExchangeError};
use super::keys::{Bundle, IdentityKeyPair, IdentityPublicKey};
use super::proto::{OmemoKeyExchange, OmemoMessage};
use super::random::SecureRandom;
use super::ratchet::{DoubleRatchet, ASSOCIATED_DATA_LENGTH};
use super::x3dh::{self, KeyExchangeHeader};

/// XEP-0384 §Business Rules: the first message received for a ratchet key
/// with a counter of this or higher asks for a heartbeat (an empty message).
pub const HEARTBEAT_COUNTER: u32 = 53;

/// Whether decrypting a message turned `before` into `after` with the first
/// message of the peer's current ratchet key whose counter is at least
/// [`HEARTBEAT_COUNTER`].
pub(crate) fn heartbeat_due(before: Option<&Session>, after: &Session) -> bool {
    let reached = |session: &Session| {
        session
            .ratchet
            .receiving
            .as_ref()
            .is_some_and(|chain| chain.length > HEARTBEAT_COUNTER)
    };
    if !reached(after) {
        return false;
    }
    match before {
        Some(before)
            if before.key_exchange == after.key_exchange
                && before.ratchet.other_ratchet_pub == after.ratchet.other_ratchet_pub =>
        {
            !reached(before)
        }
        _ => true,
    }
}

/// Which side started the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Initiation {
    /// This device performed the key exchange.
    Active,
    /// The peer performed the key exchange.
    Passive,
}

/// One Double Ratchet session with one remote device.
#[derive(Clone, Debug)]
pub struct Session {
    pub(crate) ratchet: DoubleRatchet,
    pub(crate) associated_data: [u8; ASSOCIATED_DATA_LENGTH],
    pub(crate) initiation: Initiation,
    pub(crate) key_exchange: KeyExchangeHeader,
    pub(crate) confirmed: bool,
    pub(crate) remote_identity: IdentityPublicKey,
}

/// An encrypted key material for one recipient device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Serialized `OMEMOKeyExchange` (if `key_exchange`) or `OMEMOAuthenticatedMessage`.
    pub bytes: Vec<u8>,
    /// Whether `bytes` is a key exchange (`<key kex='true'>`).
    pub key_exchange: bool,
}

/// The outcome of [`receive`]: nothing is committed yet.
#[derive(Debug)]
pub struct Received {
    /// The decrypted key material (48 bytes, or 32 zero bytes for an empty message).
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The session state to persist (replaces the previous one).
    pub session: Session,
    /// The prekey the key exchange used, to remove from the account once persisted.
    pub consumed_prekey: Option<u32>,
    /// Whether a new session was built (a previous one, if any, is replaced).
    pub new_session: bool,
}

impl Session {
    /// Builds an active session from the recipient's bundle (X3DH as initiator).
    ///
    /// # Errors
    /// [`KeyExchangeError`] if the bundle does not verify, has no prekey, or a key is bad.
    pub fn initiate(
        identity: &IdentityKeyPair,
        bundle: &Bundle,
        rng: &mut dyn SecureRandom,
    ) -> Result<Self, KeyExchangeError> {
        let (agreement, header) = x3dh::initiate(identity, bundle, rng)?;
        let ratchet =
            DoubleRatchet::new_active(&agreement.shared_secret, &bundle.signed_prekey, rng)?;
        Ok(Self {
            ratchet,
            associated_data: agreement.associated_data,
            initiation: Initiation::Active,
            key_exchange: header,
            confirmed: false,
            remote_identity: bundle.identity_key,
        })
    }

    /// Encrypts key material for the peer. Persist the session before sending
    /// the result: a message key must never be used twice.
    pub fn encrypt(&mut self, key_material: &[u8]) -> OutgoingMessage {
        let message = self.ratchet.encrypt(key_material, &self.associated_data);
        if self.initiation == Initiation::Active && !self.confirmed {
            let exchange = OmemoKeyExchange {
                pk_id: self.key_exchange.prekey_id,
                spk_id: self.key_exchange.signed_prekey_id,
                ik: self.key_exchange.identity_key.to_bytes(),
                ek: self.key_exchange.ephemeral_key,
                message,
            };
            return OutgoingMessage {
                bytes: exchange.encode(),
                key_exchange: true,
            };
        }
        OutgoingMessage {
            bytes: message.encode(),
            key_exchange: false,
        }
    }

    /// Decrypts a plain `OMEMOAuthenticatedMessage` and returns the advanced
    /// session without changing `self`.
    ///
    /// # Errors
    /// [`DecryptError`]; `self` is unchanged in every case.
    pub fn decrypt_advance(
        &self,
        authenticated_message: &[u8],
        rng: &mut dyn SecureRandom,
    ) -> Result<(Zeroizing<Vec<u8>>, Self), DecryptError> {
        let (plaintext, ratchet) =
            self.ratchet
                .decrypt(authenticated_message, &self.associated_data, rng)?;
        let mut next = self.clone();
        next.ratchet = ratchet;
        next.confirmed = true;
        Ok((plaintext, next))
    }

    /// Decrypts a plain `OMEMOAuthenticatedMessage`, committing the new state to
    /// `self` only on success.
    ///
    /// # Errors
    /// [`DecryptError`]; `self` is unchanged then.
    pub fn decrypt(
        &mut self,
        authenticated_message: &[u8],
        rng: &mut dyn SecureRandom,
    ) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        let (plaintext, next) = self.decrypt_advance(authenticated_message, rng)?;
        *self = next;
        Ok(plaintext)
    }

    /// The peer's identity key (its key identifier).
    #[must_use]
    pub fn remote_identity(&self) -> IdentityPublicKey {
        self.remote_identity
    }

    /// Which side initiated.
    #[must_use]
    pub fn initiation(&self) -> Initiation {
        self.initiation
    }

    /// Whether the peer answered (an active session stops sending key exchanges).
    #[must_use]
    pub fn is_confirmed(&self) -> bool {
        self.confirmed
    }

    /// The key exchange that built this session.
    #[must_use]
    pub fn key_exchange(&self) -> &KeyExchangeHeader {
        &self.key_exchange
    }

    /// The ratchet (chain lengths, skipped keys), read-only.
    #[must_use]
    pub fn ratchet(&self) -> &DoubleRatchet {
        &self.ratchet
    }
}

/// Decrypts one incoming key element (`key_exchange` is its `kex` attribute)
/// from the device whose current session is `existing`. Mutates nothing.
///
/// `expected_identity`, if known (from the sender's bundle), must match the
/// identity key of a key exchange.
///
/// # Errors
/// [`DecryptError`]; neither `account` nor `existing` is changed.
pub fn receive(
    account: &Account,
    existing: Option<&Session>,
    expected_identity: Option<&IdentityPublicKey>,
    bytes: &[u8],
    key_exchange: bool,
    rng: &mut dyn SecureRandom,
) -> Result<Received, DecryptError> {
    if !key_exchange {
        let session = existing.ok_or(DecryptError::NoSession)?;
        let (plaintext, session) = session.decrypt_advance(bytes, rng)?;
        return Ok(Received {
            plaintext,
            session,
            consumed_prekey: None,
            new_session: false,
        });
    }
    let exchange = OmemoKeyExchange::decode(bytes)?;
    let identity_key =
        IdentityPublicKey::from_bytes(exchange.ik).map_err(KeyExchangeError::from)?;
    if expected_identity.is_some_and(|expected| *expected != identity_key) {
        return Err(DecryptError::IdentityMismatch);
    }
    let header = KeyExchangeHeader {
        prekey_id: exchange.pk_id,
        signed_prekey_id: exchange.spk_id,
        identity_key,
        ephemeral_key: exchange.ek,
    };
    let inner = exchange.message.encode();
    if let Some(session) = existing {
        if session.initiation == Initiation::Passive && session.key_exchange == header {
            let (plaintext, session) = session.decrypt_advance(&inner, rng)?;
            return Ok(Received {
                plaintext,
                session,
                consumed_prekey: Some(header.prekey_id),
                new_session: false,
            });
        }
    }
    let (agreement, signed_prekey) = x3dh::respond(account, &header)?;
    let first = OmemoMessage::decode(&exchange.message.message)?;
    let ratchet =
        DoubleRatchet::new_passive(&agreement.shared_secret, &signed_prekey, &first.dh_pub, rng)?;
    let (plaintext, ratchet) = ratchet.decrypt(&inner, &agreement.associated_data, rng)?;
    Ok(Received {
        plaintext,
        session: Session {
            ratchet,
            associated_data: agreement.associated_data,
            initiation: Initiation::Passive,
            key_exchange: header,
            confirmed: true,
            remote_identity: identity_key,
        },
        consumed_prekey: Some(header.prekey_id),
        new_session: true,
    })
}
