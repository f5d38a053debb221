//! Payload encryption (XEP-0384 §Message Encryption): a random 32-byte key,
//! HKDF-SHA-256(salt = 32 zero bytes, info = "OMEMO Payload") split 32/32/16,
//! AES-256-CBC/PKCS#7, HMAC-SHA-256 over the ciphertext truncated to 16 bytes.
//! The key and the tag (48 bytes) are what each Double Ratchet session encrypts.

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::error::PayloadError;
use super::primitives::{hmac_sha256_truncated, tags_equal, CipherKeys, MAC_LENGTH};
use super::random::{random_32, SecureRandom};

const PAYLOAD_INFO: &[u8] = b"OMEMO Payload";

/// Length of the key material a session encrypts: 32-byte key || 16-byte tag.
pub const KEY_MATERIAL_LENGTH: usize = 32 + MAC_LENGTH;

/// What the reference stack encrypts for an empty (key-material-only) OMEMO
/// message: 32 zero bytes and no tag (twomemo `PlainKeyMaterialImpl.make_empty`).
pub const EMPTY_KEY_MATERIAL: [u8; 32] = [0; 32];

/// The per-message payload key and the payload's authentication tag.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PayloadKeyMaterial {
    key: [u8; 32],
    mac: [u8; MAC_LENGTH],
}

impl std::fmt::Debug for PayloadKeyMaterial {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("PayloadKeyMaterial(<redacted>)")
    }
}

impl PayloadKeyMaterial {
    /// The 48 bytes to encrypt with each recipient's session.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(KEY_MATERIAL_LENGTH));
        bytes.extend_from_slice(&self.key);
        bytes.extend_from_slice(&self.mac);
        bytes
    }

    /// Parses decrypted key material.
    ///
    /// # Errors
    /// [`PayloadError::BadKeyMaterialLength`] unless exactly 48 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PayloadError> {
        if bytes.len() != KEY_MATERIAL_LENGTH {
            return Err(PayloadError::BadKeyMaterialLength {
                actual: bytes.len(),
            });
        }
        let mut material = Self {
            key: [0; 32],
            mac: [0; MAC_LENGTH],
        };
        material.key.copy_from_slice(&bytes[..32]);
        material.mac.copy_from_slice(&bytes[32..]);
        Ok(material)
    }
}

/// Key material decrypted from a session, classified by length.
///
/// Whether a message is empty is decided by the absence of `<payload>`; this
/// only checks that the key material has a length some sender produces.
#[derive(Debug)]
pub enum KeyMaterial {
    /// 48 bytes: the payload key and tag.
    Payload(PayloadKeyMaterial),
    /// 32 bytes: the reference stack's empty message (32 zero bytes, no tag).
    Empty,
}

impl KeyMaterial {
    /// Classifies decrypted key material.
    ///
    /// # Errors
    /// [`PayloadError::BadKeyMaterialLength`] unless 48 or 32 bytes long.
    pub fn parse(bytes: &[u8]) -> Result<Self, PayloadError> {
        if bytes.len() == EMPTY_KEY_MATERIAL.len() {
            return Ok(Self::Empty);
        }
        PayloadKeyMaterial::from_bytes(bytes).map(Self::Payload)
    }
}

/// Encrypts a payload; returns the ciphertext (the `<payload>`) and the key material.
///
/// # Errors
/// [`PayloadError::Random`] when the generator fails.
pub fn encrypt_payload(
    plaintext: &[u8],
    rng: &mut dyn SecureRandom,
) -> Result<(Vec<u8>, PayloadKeyMaterial), PayloadError> {
    let key = Zeroizing::new(random_32(rng)?);
    let keys = CipherKeys::derive(key.as_slice(), PAYLOAD_INFO);
    let ciphertext = keys.encrypt(plaintext);
    let mac = hmac_sha256_truncated(keys.authentication_key(), &[&ciphertext]);
    Ok((ciphertext, PayloadKeyMaterial { key: *key, mac }))
}

/// Verifies and decrypts a payload with the key material from a session.
///
/// # Errors
/// [`PayloadError::MacMismatch`] or [`PayloadError::BadPadding`].
pub fn decrypt_payload(
    ciphertext: &[u8],
    key_material: &PayloadKeyMaterial,
) -> Result<Zeroizing<Vec<u8>>, PayloadError> {
    let keys = CipherKeys::derive(&key_material.key, PAYLOAD_INFO);
    let expected = hmac_sha256_truncated(keys.authentication_key(), &[ciphertext]);
    if !tags_equal(&key_material.mac, &expected) {
        return Err(PayloadError::MacMismatch);
    }
    keys.decrypt(ciphertext).ok_or(PayloadError::BadPadding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::random::DeterministicRandom;

    #[test]
    fn payload_round_trip_and_tamper() {
        let mut rng = DeterministicRandom::new([8; 32]);
        let (mut ciphertext, material) = encrypt_payload(b"hello trust", &mut rng).unwrap();
        let parsed = PayloadKeyMaterial::from_bytes(&material.to_bytes()).unwrap();
        assert_eq!(
            decrypt_payload(&ciphertext, &parsed).unwrap().as_slice(),
            b"hello trust"
        );
        ciphertext[0] ^= 1;
        assert_eq!(
            decrypt_payload(&ciphertext, &parsed),
            Err(PayloadError::MacMismatch)
        );
        assert_eq!(
            PayloadKeyMaterial::from_bytes(&EMPTY_KEY_MATERIAL).map(|_| ()),
            Err(PayloadError::BadKeyMaterialLength { actual: 32 })
        );
        assert_eq!(format!("{material:?}"), "PayloadKeyMaterial(<redacted>)");
        assert!(matches!(
            KeyMaterial::parse(&EMPTY_KEY_MATERIAL),
            Ok(KeyMaterial::Empty)
        ));
        assert!(matches!(
            KeyMaterial::parse(&material.to_bytes()),
            Ok(KeyMaterial::Payload(_))
        ));
        assert_eq!(
            KeyMaterial::parse(&[0; 47]).map(|_| ()),
            Err(PayloadError::BadKeyMaterialLength { actual: 47 })
        );
    }
}
