//! The cryptography of OMEMO 2 (XEP-0384 §Protocol Definition): keys and
//! bundles, X3DH, the Double Ratchet, payload encryption, the protobuf
//! structures and session persistence. Byte-compatible with python-omemo /
//! twomemo (the reference stack).
//!
//! Call order for a message to one device:
//! 1. [`encrypt_payload`] the plaintext: `<payload>` ciphertext + key material;
//! 2. for each recipient device, [`Session::initiate`] from its [`Bundle`] if
//!    there is no session, then [`Session::encrypt`] the key material;
//! 3. persist the sessions, then send.
//!
//! On receipt: [`receive`] (computes, changes nothing), persist its result
//! through a [`SessionStore`] transaction, then [`decrypt_payload`] and act.

pub mod account;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod keys;
pub mod payload;
pub(crate) mod primitives;
pub mod proto;
pub mod random;
pub mod ratchet;
pub mod session;
pub mod state;
pub mod store;
pub mod x3dh;

pub use account::{Account, PREKEY_MINIMUM, PREKEY_TARGET};
pub use error::{
    DecryptError, KeyError, KeyExchangeError, PayloadError, ProtoError, RandomError, StateError,
};
pub use keys::{Bundle, IdentityKeyPair, IdentityPublicKey, PreKey, SignedPreKey, X25519KeyPair};
pub use payload::{
    decrypt_payload, encrypt_payload, PayloadKeyMaterial, EMPTY_KEY_MATERIAL, KEY_MATERIAL_LENGTH,
};
pub use primitives::MAC_LENGTH;
pub use random::{DeterministicRandom, OsRandom, SecureRandom};
pub use ratchet::{DoubleRatchet, MAX_SKIP, MAX_STORED_SKIPPED_KEYS};
pub use session::{receive, Initiation, OutgoingMessage, Received, Session};
pub use state::STATE_FORMAT_VERSION;
pub use store::{
    receive_and_commit, Committed, DeviceAddress, MemoryStore, PendingMessage, ReceiveError,
    SessionStore,
};
pub use x3dh::KeyExchangeHeader;
#[cfg(test)]
mod python_kat_tests;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod store_tests;
