//! Identity keys, prekeys and bundles (XEP-0384 §Key Exchange).
//!
//! The identity key is an Ed25519 key pair kept as its 32-byte seed, exactly as
//! python-xeddsa's `IdentityKeyPairSeed`. For X25519 it is converted as the XEP
//! requires: the private scalar is the first half of `SHA-512(seed)` (libsodium's
//! `crypto_sign_ed25519_sk_to_curve25519`; X25519 clamps it), the public key goes
//! through the RFC 7748 birational map `u = (1 + y) / (1 - y)`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::error::{KeyError, RandomError};
use super::primitives::x25519_public;
use super::random::{random_32, SecureRandom};

/// An Ed25519 identity public key in its RFC 8032 encoding (32 bytes).
///
/// This is the key identifier trust messages carry for an OMEMO 2 device.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityPublicKey([u8; 32]);

impl IdentityPublicKey {
    /// Accepts 32 bytes that decode to an Ed25519 point of large order.
    ///
    /// # Errors
    /// [`KeyError::BadLength`] or [`KeyError::InvalidIdentityKey`].
    pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| KeyError::BadLength {
            what: "identity key",
            expected: 32,
            actual: bytes.len(),
        })?;
        Self::from_bytes(array)
    }

    /// Accepts an encoded Ed25519 point of large order.
    ///
    /// # Errors
    /// [`KeyError::InvalidIdentityKey`] if the bytes are no curve point or a small-order one.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        let point = CompressedEdwardsY(bytes)
            .decompress()
            .ok_or(KeyError::InvalidIdentityKey)?;
        if point.is_small_order() {
            return Err(KeyError::InvalidIdentityKey);
        }
        Ok(Self(bytes))
    }

    /// The 32-byte Ed25519 encoding.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 32-byte Ed25519 encoding, by value.
    #[must_use]
    pub fn to_bytes(self) -> [u8; 32] {
        self.0
    }

    /// The Curve25519 (Montgomery u-coordinate) form, RFC 7748 birational map.
    #[must_use]
    pub fn to_x25519(&self) -> [u8; 32] {
        // Validated at construction, so decompression succeeds.
        CompressedEdwardsY(self.0)
            .decompress()
            .map_or([0u8; 32], |point| point.to_montgomery().to_bytes())
    }

    /// Verifies an Ed25519 signature (RFC 8032, strict: canonical encodings only).
    ///
    /// # Errors
    /// [`KeyError::BadSignature`] naming `what`.
    pub fn verify(
        &self,
        message: &[u8],
        signature: &[u8; 64],
        what: &'static str,
    ) -> Result<(), KeyError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| KeyError::InvalidIdentityKey)?;
        key.verify_strict(message, &Signature::from_bytes(signature))
            .map_err(|_| KeyError::BadSignature { what })
    }
}

impl std::fmt::Debug for IdentityPublicKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "IdentityPublicKey(")?;
        for byte in self.0 {
            write!(formatter, "{byte:02x}")?;
        }
        write!(formatter, ")")
    }
}

/// The device's Ed25519 identity key pair, stored as its seed; zeroized on drop.
#[derive(Clone)]
pub struct IdentityKeyPair {
    signing_key: SigningKey,
    public: IdentityPublicKey,
}

impl IdentityKeyPair {
    /// Generates a fresh identity key from 32 random bytes (the Ed25519 seed).
    ///
    /// # Errors
    /// [`RandomError`] when the generator fails.
    pub fn generate(rng: &mut dyn SecureRandom) -> Result<Self, RandomError> {
        let seed = Zeroizing::new(random_32(rng)?);
        Ok(Self::from_seed(&seed))
    }

    /// The key pair of an Ed25519 seed (RFC 8032 "private key").
    #[must_use]
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let signing_key = SigningKey::from_bytes(seed);
        let public = IdentityPublicKey(signing_key.verifying_key().to_bytes());
        Self {
            signing_key,
            public,
        }
    }

    /// The seed, for persistence only. Handle it as a secret.
    #[must_use]
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing_key.to_bytes())
    }

    /// The public key: the 32-byte key identifier of this device.
    #[must_use]
    pub fn public(&self) -> IdentityPublicKey {
        self.public
    }

    /// An Ed25519 signature (RFC 8032, deterministic) of `message`.
    #[must_use]
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing_key.sign(message).to_bytes()
    }

    /// The X25519 private scalar: first half of SHA-512(seed) (clamped by X25519).
    pub(crate) fn x25519_private(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing_key.to_scalar_bytes())
    }
}

impl std::fmt::Debug for IdentityKeyPair {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("IdentityKeyPair")
            .field("public", &self.public)
            .field("seed", &"<redacted>")
            .finish()
    }
}

/// An X25519 key pair (prekeys, signed prekeys, ratchet keys); zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct X25519KeyPair {
    private: [u8; 32],
    #[zeroize(skip)]
    public: [u8; 32],
}

impl X25519KeyPair {
    /// Generates a key pair from 32 random bytes.
    ///
    /// # Errors
    /// [`RandomError`] when the generator fails.
    pub fn generate(rng: &mut dyn SecureRandom) -> Result<Self, RandomError> {
        Ok(Self::from_private(random_32(rng)?))
    }

    /// The key pair of a private scalar (clamped when used).
    #[must_use]
    pub fn from_private(private: [u8; 32]) -> Self {
        let public = x25519_public(&private);
        Self { private, public }
    }

    /// The public key (Montgomery u-coordinate, little endian).
    #[must_use]
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    pub(crate) fn private(&self) -> &[u8; 32] {
        &self.private
    }
}

impl std::fmt::Debug for X25519KeyPair {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("X25519KeyPair")
            .field("public", &Hex(&self.public))
            .field("private", &"<redacted>")
            .finish()
    }
}

/// Lower-case hex for `Debug` output of public values.
pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl std::fmt::Debug for Hex<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0 {
            write!(formatter, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A one-time prekey.
#[derive(Clone, Debug)]
pub struct PreKey {
    /// Its id in the bundle.
    pub id: u32,
    /// The key pair.
    pub key_pair: X25519KeyPair,
}

/// A signed prekey: X25519 key pair whose public key is signed by the identity key.
#[derive(Clone, Debug)]
pub struct SignedPreKey {
    /// Its id in the bundle.
    pub id: u32,
    /// The key pair.
    pub key_pair: X25519KeyPair,
    /// Ed25519 signature by the identity key over the 32-byte public key.
    pub signature: [u8; 64],
    /// When it was generated (drives rotation).
    pub created: DateTime<Utc>,
}

impl SignedPreKey {
    /// Generates a signed prekey: the signature covers the raw 32-byte X25519 public
    /// key (twomemo's `_encode_public_key` is the identity).
    ///
    /// # Errors
    /// [`RandomError`] when the generator fails.
    pub fn generate(
        identity: &IdentityKeyPair,
        id: u32,
        created: DateTime<Utc>,
        rng: &mut dyn SecureRandom,
    ) -> Result<Self, RandomError> {
        let key_pair = X25519KeyPair::generate(rng)?;
        let signature = identity.sign(&key_pair.public());
        Ok(Self {
            id,
            key_pair,
            signature,
            created,
        })
    }
}

/// The public bundle of a device (XEP-0384 §Bundles), typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The Ed25519 identity public key (`<ik>`).
    pub identity_key: IdentityPublicKey,
    /// The signed prekey id (`<spk id=…>`).
    pub signed_prekey_id: u32,
    /// The signed prekey, X25519 public (`<spk>`).
    pub signed_prekey: [u8; 32],
    /// Ed25519 signature over `signed_prekey` (`<spks>`).
    pub signed_prekey_signature: [u8; 64],
    /// Prekey id to X25519 public key (`<prekeys><pk id=…>`).
    pub prekeys: BTreeMap<u32, [u8; 32]>,
}

impl Bundle {
    /// Verifies the signed prekey signature with the identity key.
    ///
    /// # Errors
    /// [`KeyError::BadSignature`] if it does not verify.
    pub fn verify(&self) -> Result<(), KeyError> {
        self.identity_key.verify(
            &self.signed_prekey,
            &self.signed_prekey_signature,
            "signed prekey",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::random::DeterministicRandom;

    fn hex32(text: &str) -> [u8; 32] {
        let bytes: Vec<u8> = (0..64)
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    }

    /// RFC 8032 §7.1 TEST 1: seed -> public key, and the signature of the empty message.
    #[test]
    fn rfc8032_test_1() {
        let identity = IdentityKeyPair::from_seed(&hex32(
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        ));
        assert_eq!(
            identity.public().to_bytes(),
            hex32("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        let signature = identity.sign(b"");
        // The full RFC 8032 signature; python-xeddsa's ed25519_verify accepts it.
        assert_eq!(
            signature[..32],
            hex32("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155")
        );
        assert_eq!(
            signature[32..],
            hex32("5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
        );
        identity.public().verify(b"", &signature, "test").unwrap();
        assert!(identity.public().verify(b"x", &signature, "test").is_err());
    }

    /// RFC 7748 §6.1: Alice's X25519 key pair; its Ed25519 twin converts consistently.
    #[test]
    fn ed25519_to_x25519_conversion_agrees_with_scalar_and_libsodium() {
        // The converted public key equals the X25519 public key of the converted private scalar.
        for seed_byte in 0u8..8 {
            let identity = IdentityKeyPair::from_seed(&[seed_byte; 32]);
            assert_eq!(
                identity.public().to_x25519(),
                x25519_public(&identity.x25519_private())
            );
        }
        // python-xeddsa seed_to_priv of the RFC 8032 TEST 1 seed (clamped scalar).
        let identity = IdentityKeyPair::from_seed(&hex32(
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        ));
        let mut scalar = *identity.x25519_private();
        scalar[0] &= 248;
        scalar[31] &= 127;
        scalar[31] |= 64;
        assert_eq!(
            scalar,
            hex32("307c83864f2833cb427a2ef1c00a013cfdff2768d980c0a3a520f006904de94f")
        );
        // libsodium crypto_sign_ed25519_pk_to_curve25519 (and python-xeddsa
        // ed25519_pub_to_curve25519_pub) of the RFC 8032 TEST 1 public key.
        let public = IdentityPublicKey::from_bytes(hex32(
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        ))
        .unwrap();
        assert_eq!(
            public.to_x25519(),
            hex32("d85e07ec22b0ad881537c2f44d662d1a143cf830c57aca4305d85c7a90f6b62e")
        );
    }

    #[test]
    fn invalid_identity_keys_refused() {
        assert!(matches!(
            IdentityPublicKey::from_slice(&[0u8; 31]),
            Err(KeyError::BadLength { actual: 31, .. })
        ));
        // The identity point (y = 1) has small order.
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        assert_eq!(
            IdentityPublicKey::from_bytes(identity_point),
            Err(KeyError::InvalidIdentityKey)
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let mut rng = DeterministicRandom::new([3; 32]);
        let identity = IdentityKeyPair::generate(&mut rng).unwrap();
        let seed_hex: String = identity.seed().iter().map(|b| format!("{b:02x}")).collect();
        let printed = format!("{identity:?}");
        assert!(printed.contains("redacted"));
        assert!(!printed.contains(&seed_hex));
        let pair = X25519KeyPair::generate(&mut rng).unwrap();
        let private_hex: String = pair.private().iter().map(|b| format!("{b:02x}")).collect();
        assert!(!format!("{pair:?}").contains(&private_hex));
    }

    #[test]
    fn bundle_signature_verifies_and_detects_tampering() {
        let mut rng = DeterministicRandom::new([4; 32]);
        let identity = IdentityKeyPair::generate(&mut rng).unwrap();
        let signed = SignedPreKey::generate(&identity, 1, DateTime::UNIX_EPOCH, &mut rng).unwrap();
        let mut bundle = Bundle {
            identity_key: identity.public(),
            signed_prekey_id: 1,
            signed_prekey: signed.key_pair.public(),
            signed_prekey_signature: signed.signature,
            prekeys: BTreeMap::new(),
        };
        bundle.verify().unwrap();
        bundle.signed_prekey[0] ^= 1;
        assert!(matches!(
            bundle.verify(),
            Err(KeyError::BadSignature { .. })
        ));
    }
}
