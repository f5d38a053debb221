//! The Double Ratchet with the parameters of XEP-0384 §Double Ratchet, as the
//! reference implementation (python-doubleratchet + twomemo) realizes them:
//!
//! * `KDF_RK`: HKDF-SHA-256(salt = root key, ikm = DH output, info = "OMEMO Root
//!   Chain"), 64 bytes: new root key || new chain key.
//! * `KDF_CK`: message key = HMAC-SHA-256(ck, 0x01), next chain key = HMAC(ck, 0x02).
//! * `ENCRYPT`: HKDF-SHA-256(salt = 32 zero bytes, ikm = mk, info = "OMEMO Message Key
//!   Material") split 32/32/16 into AES key, HMAC key and IV; AES-256-CBC/PKCS#7;
//!   tag = HMAC-SHA-256(auth key, ad || serialized OMEMOMessage)[..16].
//! * `ad` is `IK_A || IK_B` (Ed25519 encodings; A initiated the key exchange).
//! * At most [`MAX_SKIP`] message keys are skipped per message and at most
//!   [`MAX_STORED_SKIPPED_KEYS`] are kept per session, the oldest dropped first.
//!
//! `DoubleRatchet::decrypt` never changes `self`: it returns the advanced state,
//! which the caller commits only after the tag verified and the plaintext unpadded.

use std::collections::VecDeque;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::error::{DecryptError, KeyExchangeError};
use super::keys::X25519KeyPair;
use super::primitives::{
    hkdf_sha256, hmac_sha256, hmac_sha256_truncated, tags_equal, x25519, CipherKeys,
};
use super::proto::{OmemoAuthenticatedMessage, OmemoMessage};
use super::random::SecureRandom;

/// Maximum number of message keys one message may make us skip (XEP-0384: ~1000).
pub const MAX_SKIP: u32 = 1000;
/// Maximum number of skipped message keys kept per session (XEP-0384: 1000), FIFO.
pub const MAX_STORED_SKIPPED_KEYS: usize = 1000;

/// Length of the associated data `IK_A || IK_B`.
pub const ASSOCIATED_DATA_LENGTH: usize = 64;

const ROOT_INFO: &[u8] = b"OMEMO Root Chain";
const MESSAGE_KEY_INFO: &[u8] = b"OMEMO Message Key Material";

/// A symmetric chain: its key and how many message keys it produced.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct Chain {
    pub(crate) key: [u8; 32],
    #[zeroize(skip)]
    pub(crate) length: u32,
}

impl Chain {
    fn new(key: &[u8]) -> Self {
        let mut array = [0u8; 32];
        array.copy_from_slice(&key[..32]);
        Self {
            key: array,
            length: 0,
        }
    }

    /// KDF_CK: returns the next message key and advances the chain.
    fn step(&mut self) -> Zeroizing<[u8; 32]> {
        let message_key = hmac_sha256(&self.key, &[&[0x01]]);
        let next_key = hmac_sha256(&self.key, &[&[0x02]]);
        self.key.copy_from_slice(next_key.as_slice());
        self.length = self.length.wrapping_add(1);
        message_key
    }
}

/// A message key kept for a message that has not arrived yet.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct SkippedKey {
    #[zeroize(skip)]
    pub(crate) ratchet_pub: [u8; 32],
    #[zeroize(skip)]
    pub(crate) n: u32,
    pub(crate) message_key: [u8; 32],
}

/// The state of one Double Ratchet. Secrets are zeroized on drop; `Debug` is redacted.
#[derive(Clone)]
pub struct DoubleRatchet {
    pub(crate) root_key: Zeroizing<[u8; 32]>,
    pub(crate) own_ratchet: X25519KeyPair,
    pub(crate) other_ratchet_pub: [u8; 32],
    pub(crate) sending: Chain,
    pub(crate) receiving: Option<Chain>,
    pub(crate) previous_sending_length: u32,
    pub(crate) skipped: VecDeque<SkippedKey>,
}

impl std::fmt::Debug for DoubleRatchet {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DoubleRatchet")
            .field("sending_length", &self.sending.length)
            .field(
                "receiving_length",
                &self.receiving.as_ref().map(|c| c.length),
            )
            .field("skipped_keys", &self.skipped.len())
            .finish_non_exhaustive()
    }
}

/// KDF_RK: (new root key, new chain key).
fn root_step(
    root_key: &[u8; 32],
    own: &X25519KeyPair,
    other_pub: &[u8; 32],
) -> Result<(Zeroizing<[u8; 32]>, Chain), KeyExchangeError> {
    let shared = x25519(own.private(), other_pub);
    if shared.iter().all(|byte| *byte == 0) {
        return Err(KeyExchangeError::NonContributory);
    }
    let output = hkdf_sha256::<64>(root_key, shared.as_slice(), ROOT_INFO);
    let mut new_root = Zeroizing::new([0u8; 32]);
    new_root.copy_from_slice(&output[..32]);
    Ok((new_root, Chain::new(&output[32..])))
}

impl DoubleRatchet {
    /// The initiator's ratchet after X3DH: a fresh ratchet key against the
    /// recipient's signed prekey; only a sending chain exists.
    pub(crate) fn new_active(
        shared_secret: &[u8; 32],
        recipient_signed_prekey: &[u8; 32],
        rng: &mut dyn SecureRandom,
    ) -> Result<Self, KeyExchangeError> {
        let own_ratchet = X25519KeyPair::generate(rng)?;
        let (root_key, sending) = root_step(shared_secret, &own_ratchet, recipient_signed_prekey)?;
        Ok(Self {
            root_key,
            own_ratchet,
            other_ratchet_pub: *recipient_signed_prekey,
            sending,
            receiving: None,
            previous_sending_length: 0,
            skipped: VecDeque::new(),
        })
    }

    /// The responder's ratchet after X3DH: receiving chain from the signed prekey
    /// and the initiator's ratchet key, then a fresh ratchet key for sending.
    pub(crate) fn new_passive(
        shared_secret: &[u8; 32],
        signed_prekey: &X25519KeyPair,
        initiator_ratchet_pub: &[u8; 32],
        rng: &mut dyn SecureRandom,
    ) -> Result<Self, KeyExchangeError> {
        let (root_key, receiving) = root_step(shared_secret, signed_prekey, initiator_ratchet_pub)?;
        let own_ratchet = X25519KeyPair::generate(rng)?;
        let (root_key, sending) = root_step(&root_key, &own_ratchet, initiator_ratchet_pub)?;
        Ok(Self {
            root_key,
            own_ratchet,
            other_ratchet_pub: *initiator_ratchet_pub,
            sending,
            receiving: Some(receiving),
            previous_sending_length: 0,
            skipped: VecDeque::new(),
        })
    }

    /// Number of messages sent in the current sending chain.
    #[must_use]
    pub fn sending_chain_length(&self) -> u32 {
        self.sending.length
    }

    /// Number of messages received in the current receiving chain, if any.
    #[must_use]
    pub fn receiving_chain_length(&self) -> Option<u32> {
        self.receiving.as_ref().map(|chain| chain.length)
    }

    /// Number of skipped message keys currently stored.
    #[must_use]
    pub fn skipped_key_count(&self) -> usize {
        self.skipped.len()
    }

    /// Encrypts `plaintext`, advancing the sending chain; returns the
    /// `OMEMOAuthenticatedMessage`.
    pub(crate) fn encrypt(
        &mut self,
        plaintext: &[u8],
        associated_data: &[u8],
    ) -> OmemoAuthenticatedMessage {
        let n = self.sending.length;
        let message_key = self.sending.step();
        let keys = CipherKeys::derive(message_key.as_slice(), MESSAGE_KEY_INFO);
        let message = OmemoMessage {
            n,
            pn: self.previous_sending_length,
            dh_pub: self.own_ratchet.public(),
            ciphertext: Some(keys.encrypt(plaintext)),
        }
        .encode();
        let mac = hmac_sha256_truncated(keys.authentication_key(), &[associated_data, &message]);
        OmemoAuthenticatedMessage { mac, message }
    }

    /// Decrypts a serialized `OMEMOAuthenticatedMessage`. Returns the plaintext and
    /// the advanced state; `self` is untouched, whatever the outcome.
    ///
    /// # Errors
    /// [`DecryptError`]; the caller's state is then unchanged.
    pub(crate) fn decrypt(
        &self,
        authenticated_message: &[u8],
        associated_data: &[u8],
        rng: &mut dyn SecureRandom,
    ) -> Result<(Zeroizing<Vec<u8>>, Self), DecryptError> {
        let authenticated = OmemoAuthenticatedMessage::decode(authenticated_message)?;
        let header = OmemoMessage::decode(&authenticated.message)?;
        let mut next = self.clone();
        let stored = self
            .skipped
            .iter()
            .position(|key| key.ratchet_pub == header.dh_pub && key.n == header.n);
        let message_key = match stored {
            Some(index) => {
                let key = next
                    .skipped
                    .remove(index)
                    .map(|k| Zeroizing::new(k.message_key));
                key.ok_or(DecryptError::MacMismatch)?
            }
            None => next.advance_receiving(&header, rng)?,
        };
        let keys = CipherKeys::derive(message_key.as_slice(), MESSAGE_KEY_INFO);
        let expected = hmac_sha256_truncated(
            keys.authentication_key(),
            &[associated_data, &authenticated.message],
        );
        if !tags_equal(&authenticated.mac, &expected) {
            return Err(DecryptError::MacMismatch);
        }
        let ciphertext = header
            .ciphertext
            .as_deref()
            .ok_or(DecryptError::MissingCiphertext)?;
        let plaintext = keys.decrypt(ciphertext).ok_or(DecryptError::BadPadding)?;
        next.trim_skipped();
        Ok((plaintext, next))
    }

    /// Performs the DH ratchet step if the header carries a new ratchet key, skips
    /// to message `n` and returns its key (python-doubleratchet's `next_decryption_key`).
    fn advance_receiving(
        &mut self,
        header: &OmemoMessage,
        rng: &mut dyn SecureRandom,
    ) -> Result<Zeroizing<[u8; 32]>, DecryptError> {
        if header.dh_pub != self.other_ratchet_pub {
            if let Some(receiving) = self.receiving.as_ref() {
                let missing = header.pn.saturating_sub(receiving.length);
                // As the reference: too many keys of the previous chain are not an
                // error, they are simply not derived.
                if missing <= MAX_SKIP {
                    self.skip_to(header.pn);
                }
            }
            self.other_ratchet_pub = header.dh_pub;
            let (root_key, receiving) =
                root_step(&self.root_key, &self.own_ratchet, &self.other_ratchet_pub)?;
            self.root_key = root_key;
            self.receiving = Some(receiving);
            self.own_ratchet = X25519KeyPair::generate(rng).map_err(DecryptError::from)?;
            let (root_key, sending) =
                root_step(&self.root_key, &self.own_ratchet, &self.other_ratchet_pub)?;
            self.root_key = root_key;
            self.previous_sending_length = self.sending.length;
            self.sending = sending;
        }
        let received = self.receiving.as_ref().map_or(0, |chain| chain.length);
        let missing = header.n.saturating_sub(received);
        if missing > MAX_SKIP {
            return Err(DecryptError::TooManySkipped {
                requested: u64::from(missing),
                max: MAX_SKIP,
            });
        }
        self.skip_to(header.n);
        let receiving = self.receiving.as_mut().ok_or(DecryptError::NoSession)?;
        if header.n < receiving.length {
            return Err(DecryptError::Duplicate { n: header.n });
        }
        Ok(receiving.step())
    }

    /// Derives and stores the keys of the receiving chain up to (excluding) `until`.
    fn skip_to(&mut self, until: u32) {
        let ratchet_pub = self.other_ratchet_pub;
        if let Some(receiving) = self.receiving.as_mut() {
            while receiving.length < until {
                let n = receiving.length;
                let message_key = receiving.step();
                self.skipped.push_back(SkippedKey {
                    ratchet_pub,
                    n,
                    message_key: *message_key,
                });
            }
        }
    }

    /// Drops the oldest skipped keys beyond [`MAX_STORED_SKIPPED_KEYS`].
    fn trim_skipped(&mut self) {
        while self.skipped.len() > MAX_STORED_SKIPPED_KEYS {
            self.skipped.pop_front();
        }
    }
}
