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
//! through a [`SessionStore`] transaction, then [`decrypt_payload`] and act
//! ([`receive_and_commit`] does the first two; see [`store`] for why this order).
//!
//! ```
//! use atm_omemo::crypto::{
//!     decrypt_payload, encrypt_payload, receive, Account, KeyMaterial, OsRandom, Session,
//! };
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut rng = OsRandom;
//! let now = chrono::DateTime::UNIX_EPOCH;
//! let alice = Account::generate(now, &mut rng)?;
//! let mut bob = Account::generate(now, &mut rng)?;
//!
//! // Alice: payload, then the key material for Bob's device (a key exchange).
//! let (payload, key_material) = encrypt_payload(b"<trust-message/>", &mut rng)?;
//! let mut to_bob = Session::initiate(alice.identity(), &bob.bundle(), &mut rng)?;
//! let key_element = to_bob.encrypt(&key_material.to_bytes());
//! assert!(key_element.key_exchange);
//!
//! // Bob: decrypt (nothing changes yet), persist, then act.
//! let received = receive(&bob, None, None, &key_element.bytes, key_element.key_exchange, &mut rng)?;
//! if let Some(prekey) = received.consumed_prekey {
//!     bob.remove_prekey(prekey);
//!     bob.replenish_prekeys(&mut rng)?;
//! }
//! let mut from_alice = received.session; // persist `from_alice` and `bob` here
//! let KeyMaterial::Payload(key) = KeyMaterial::parse(&received.plaintext)? else {
//!     panic!("not an empty message");
//! };
//! assert_eq!(decrypt_payload(&payload, &key)?.as_slice(), b"<trust-message/>");
//! assert_eq!(from_alice.remote_identity(), alice.identity().public());
//!
//! // Bob answers; Alice's session is confirmed and stops sending key exchanges.
//! let answer = from_alice.encrypt(&[0; 32]);
//! to_bob.decrypt(&answer.bytes, &mut rng)?;
//! assert!(!to_bob.encrypt(&[1; 48]).key_exchange);
//! # Ok(())
//! # }
//! ```

pub mod account;
pub mod error;
#[cfg(any(test, feature = "insecure-deterministic-random-for-tests"))]
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

pub use account::{Account, PREKEY_MINIMUM, PREKEY_TARGET, RETAINED_USED_PREKEYS};
pub use error::{
    DecryptError, KeyError, KeyExchangeError, PayloadError, ProtoError, RandomError, StateError,
};
pub use keys::{Bundle, IdentityKeyPair, IdentityPublicKey, PreKey, SignedPreKey, X25519KeyPair};
pub use payload::{
    decrypt_payload, encrypt_payload, KeyMaterial, PayloadKeyMaterial, EMPTY_KEY_MATERIAL,
    KEY_MATERIAL_LENGTH,
};
pub use primitives::MAC_LENGTH;
#[cfg(any(test, feature = "insecure-deterministic-random-for-tests"))]
pub use random::DeterministicRandom;
pub use random::{OsRandom, SecureRandom};
pub use ratchet::{DoubleRatchet, MAX_SKIP, MAX_STORED_SKIPPED_KEYS};
pub use session::{receive, Initiation, OutgoingMessage, Received, Session, HEARTBEAT_COUNTER};
pub use state::STATE_FORMAT_VERSION;
pub use store::{
    commit_receipt, receive_and_commit, Committed, DeviceAddress, MemoryStore, PendingMessage,
    ReceiveError, SessionStore,
};
pub use x3dh::KeyExchangeHeader;
#[cfg(test)]
mod python_kat_tests;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod store_tests;
