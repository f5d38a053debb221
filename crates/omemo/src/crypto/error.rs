//! Error types of the OMEMO cryptography, one enum per concern.

use thiserror::Error;

/// The random number generator failed to produce bytes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("the random number generator failed: {reason}")]
pub struct RandomError {
    /// What the generator reported.
    pub reason: String,
}

/// A key given as bytes is not usable.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// A key or signature has the wrong number of bytes.
    #[error("{what} must be {expected} bytes long, got {actual}")]
    BadLength {
        /// Which key or signature.
        what: &'static str,
        /// The required length.
        expected: usize,
        /// The length received.
        actual: usize,
    },
    /// The Ed25519 identity key is not a valid curve point (or is of small order).
    #[error("the Ed25519 identity key is not a valid point of large order")]
    InvalidIdentityKey,
    /// An Ed25519 signature did not verify.
    #[error("the Ed25519 signature of {what} does not verify")]
    BadSignature {
        /// What was signed.
        what: &'static str,
    },
}

/// A protobuf structure of XEP-0384 §Protobuf Schema could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// The bytes are not a valid protobuf encoding.
    #[error("{message}: malformed protobuf: {reason}")]
    Malformed {
        /// Which structure (`OMEMOMessage`, ...).
        message: &'static str,
        /// What the decoder reported.
        reason: String,
    },
    /// A required field is absent.
    #[error("{message}: required field `{field}` is missing")]
    MissingField {
        /// Which structure.
        message: &'static str,
        /// Which field.
        field: &'static str,
    },
    /// A bytes field has the wrong length.
    #[error("{message}: field `{field}` must be {expected} bytes, got {actual}")]
    BadLength {
        /// Which structure.
        message: &'static str,
        /// Which field.
        field: &'static str,
        /// The required length.
        expected: usize,
        /// The length received.
        actual: usize,
    },
}

/// The X3DH key agreement failed; no state was changed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KeyExchangeError {
    /// The bundle's signed prekey signature does not verify with its identity key.
    #[error("the signed prekey signature of the bundle does not verify")]
    BadBundleSignature,
    /// The bundle offers no prekey (XEP-0384: key exchanges without one MUST be rejected).
    #[error("the bundle contains no prekey")]
    NoPreKey,
    /// The key exchange names a signed prekey this device does not have (any more).
    #[error("unknown signed prekey id {id}")]
    UnknownSignedPreKey {
        /// The id named by the key exchange.
        id: u32,
    },
    /// The key exchange names a prekey this device does not have (any more).
    #[error("unknown prekey id {id}")]
    UnknownPreKey {
        /// The id named by the key exchange.
        id: u32,
    },
    /// A public key is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A Diffie-Hellman output was all zeros (low-order public key).
    #[error("a Diffie-Hellman exchange produced the all-zero output (low-order public key)")]
    NonContributory,
    /// Randomness was unavailable.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// Decrypting an OMEMO message failed; the session is exactly as it was before.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecryptError {
    /// The message bytes are not a valid protobuf structure.
    #[error(transparent)]
    Proto(#[from] ProtoError),
    /// The key exchange in the message could not be completed.
    #[error(transparent)]
    KeyExchange(#[from] KeyExchangeError),
    /// The authentication tag does not match: forged, corrupted or not for this session.
    #[error("authentication tag mismatch")]
    MacMismatch,
    /// The message key was already used: this message was decrypted before.
    #[error("message {n} of this chain was already decrypted (replay)")]
    Duplicate {
        /// The message number in its chain.
        n: u32,
    },
    /// The message would require skipping more message keys than allowed.
    #[error("message skips {requested} message keys, at most {max} are allowed")]
    TooManySkipped {
        /// How many keys the message would skip.
        requested: u64,
        /// The limit (MAX_SKIP).
        max: u32,
    },
    /// The `OMEMOMessage` carries no ciphertext.
    #[error("OMEMOMessage without ciphertext")]
    MissingCiphertext,
    /// The ciphertext is not a valid AES-256-CBC/PKCS#7 ciphertext.
    #[error("bad AES-256-CBC ciphertext or padding")]
    BadPadding,
    /// A plain message arrived but no session exists with the sender.
    #[error("no session with the sender and the message is not a key exchange")]
    NoSession,
    /// The message's identity key is not the one of the existing session.
    #[error("the key exchange's identity key differs from the expected one")]
    IdentityMismatch,
    /// Randomness was unavailable for the ratchet step.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// Encrypting or decrypting the payload (XEP-0384 §Message Encryption) failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PayloadError {
    /// The decrypted key material does not have 48 bytes (32 key + 16 tag).
    #[error("key material must be 48 bytes, got {actual}")]
    BadKeyMaterialLength {
        /// The length received.
        actual: usize,
    },
    /// The payload authentication tag does not match.
    #[error("payload authentication tag mismatch")]
    MacMismatch,
    /// The payload is not a valid AES-256-CBC/PKCS#7 ciphertext.
    #[error("bad payload ciphertext or padding")]
    BadPadding,
    /// Randomness was unavailable.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// A persisted account or session state could not be read back.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The state was written by an unknown format version.
    #[error("{what}: unsupported state format version {version}")]
    UnsupportedVersion {
        /// Which state.
        what: &'static str,
        /// The version found.
        version: u32,
    },
    /// The state bytes are malformed.
    #[error(transparent)]
    Proto(#[from] ProtoError),
    /// A key inside the state is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
}
