//! Versioned binary serialization of [`Account`] and [`Session`] for persistence
//! (protobuf via `prost`, format version [`STATE_FORMAT_VERSION`]). The bytes
//! contain secrets: they are returned in `Zeroizing` buffers and must be stored
//! as carefully as the keys themselves.

use std::collections::{BTreeMap, VecDeque};

use chrono::DateTime;
use prost::Message;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::account::{Account, RETAINED_USED_PREKEYS};
use super::error::{ProtoError, StateError};
use super::keys::{IdentityKeyPair, IdentityPublicKey, PreKey, SignedPreKey, X25519KeyPair};
use super::ratchet::{Chain, DoubleRatchet, SkippedKey};
use super::session::{Initiation, Session};
use super::x3dh::KeyExchangeHeader;

/// The format version written by this crate and the only one it reads.
pub const STATE_FORMAT_VERSION: u32 = 1;

macro_rules! redacted_debug {
    ($($name:ident),*) => {$(
        impl std::fmt::Debug for $name {
            fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    )*};
}

#[derive(Clone, PartialEq, Message, Zeroize, ZeroizeOnDrop)]
#[prost(skip_debug)]
struct SignedPreKeyWire {
    #[prost(uint32, tag = "1")]
    id: u32,
    #[prost(bytes = "vec", tag = "2")]
    private: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    signature: Vec<u8>,
    #[prost(int64, tag = "4")]
    created_unix_seconds: i64,
}

#[derive(Clone, PartialEq, Message, Zeroize, ZeroizeOnDrop)]
#[prost(skip_debug)]
struct PreKeyWire {
    #[prost(uint32, tag = "1")]
    id: u32,
    #[prost(bytes = "vec", tag = "2")]
    private: Vec<u8>,
}

#[derive(Clone, PartialEq, Message, Zeroize, ZeroizeOnDrop)]
#[prost(skip_debug)]
struct AccountWire {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(bytes = "vec", tag = "2")]
    identity_seed: Vec<u8>,
    #[prost(message, optional, tag = "3")]
    signed_prekey: Option<SignedPreKeyWire>,
    #[prost(message, optional, tag = "4")]
    old_signed_prekey: Option<SignedPreKeyWire>,
    #[prost(message, repeated, tag = "5")]
    prekeys: Vec<PreKeyWire>,
    #[prost(uint32, tag = "6")]
    next_prekey_id: u32,
    /// Used prekeys still accepted, oldest first (absent in accounts
    /// written before they were kept: none then).
    #[prost(message, repeated, tag = "7")]
    used_prekeys: Vec<PreKeyWire>,
}

#[derive(Clone, PartialEq, Message, Zeroize, ZeroizeOnDrop)]
#[prost(skip_debug)]
struct ChainWire {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(uint32, tag = "2")]
    length: u32,
}

#[derive(Clone, PartialEq, Message, Zeroize, ZeroizeOnDrop)]
#[prost(skip_debug)]
struct SkippedKeyWire {
    #[prost(bytes = "vec", tag = "1")]
    ratchet_pub: Vec<u8>,
    #[prost(uint32, tag = "2")]
    n: u32,
    #[prost(bytes = "vec", tag = "3")]
    message_key: Vec<u8>,
}

#[derive(Clone, PartialEq, Message, Zeroize, ZeroizeOnDrop)]
#[prost(skip_debug)]
struct SessionWire {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(bytes = "vec", tag = "2")]
    root_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    own_ratchet_private: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    other_ratchet_pub: Vec<u8>,
    #[prost(message, optional, tag = "5")]
    sending: Option<ChainWire>,
    #[prost(message, optional, tag = "6")]
    receiving: Option<ChainWire>,
    #[prost(uint32, tag = "7")]
    previous_sending_length: u32,
    #[prost(message, repeated, tag = "8")]
    skipped: Vec<SkippedKeyWire>,
    #[prost(bytes = "vec", tag = "9")]
    associated_data: Vec<u8>,
    #[prost(bool, tag = "10")]
    passive: bool,
    #[prost(uint32, tag = "11")]
    kex_prekey_id: u32,
    #[prost(uint32, tag = "12")]
    kex_signed_prekey_id: u32,
    #[prost(bytes = "vec", tag = "13")]
    kex_identity_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "14")]
    kex_ephemeral_key: Vec<u8>,
    #[prost(bool, tag = "15")]
    confirmed: bool,
    #[prost(bytes = "vec", tag = "16")]
    remote_identity: Vec<u8>,
}

redacted_debug!(
    SignedPreKeyWire,
    PreKeyWire,
    AccountWire,
    ChainWire,
    SkippedKeyWire,
    SessionWire
);

fn array<const N: usize>(
    bytes: &[u8],
    message: &'static str,
    field: &'static str,
) -> Result<[u8; N], StateError> {
    bytes.try_into().map_err(|_| {
        StateError::Proto(ProtoError::BadLength {
            message,
            field,
            expected: N,
            actual: bytes.len(),
        })
    })
}

fn missing(message: &'static str, field: &'static str) -> StateError {
    StateError::Proto(ProtoError::MissingField { message, field })
}

fn decode<T: Message + Default>(bytes: &[u8], message: &'static str) -> Result<T, StateError> {
    T::decode(bytes).map_err(|error| {
        StateError::Proto(ProtoError::Malformed {
            message,
            reason: error.to_string(),
        })
    })
}

fn check_version(version: u32, what: &'static str) -> Result<(), StateError> {
    if version == STATE_FORMAT_VERSION {
        Ok(())
    } else {
        Err(StateError::UnsupportedVersion { what, version })
    }
}

fn signed_prekey_to_wire(key: &SignedPreKey) -> SignedPreKeyWire {
    SignedPreKeyWire {
        id: key.id,
        private: key.key_pair.private().to_vec(),
        signature: key.signature.to_vec(),
        created_unix_seconds: key.created.timestamp(),
    }
}

fn signed_prekey_from_wire(wire: &SignedPreKeyWire) -> Result<SignedPreKey, StateError> {
    const NAME: &str = "account signed prekey";
    Ok(SignedPreKey {
        id: wire.id,
        key_pair: X25519KeyPair::from_private(array(&wire.private, NAME, "private")?),
        signature: array(&wire.signature, NAME, "signature")?,
        created: DateTime::from_timestamp(wire.created_unix_seconds, 0)
            .ok_or_else(|| missing(NAME, "created_unix_seconds"))?,
    })
}

fn chain_to_wire(chain: &Chain) -> ChainWire {
    ChainWire {
        key: chain.key.to_vec(),
        length: chain.length,
    }
}

fn chain_from_wire(wire: &ChainWire) -> Result<Chain, StateError> {
    Ok(Chain {
        key: array(&wire.key, "session chain", "key")?,
        length: wire.length,
    })
}

impl Account {
    /// Serializes the whole account (secrets included), versioned.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let wire = AccountWire {
            version: STATE_FORMAT_VERSION,
            identity_seed: self.identity.seed().to_vec(),
            signed_prekey: Some(signed_prekey_to_wire(&self.signed_prekey)),
            old_signed_prekey: self.old_signed_prekey.as_ref().map(signed_prekey_to_wire),
            prekeys: self
                .prekeys
                .values()
                .map(|prekey| PreKeyWire {
                    id: prekey.id,
                    private: prekey.key_pair.private().to_vec(),
                })
                .collect(),
            next_prekey_id: self.next_prekey_id,
            used_prekeys: self
                .used_prekeys
                .iter()
                .map(|prekey| PreKeyWire {
                    id: prekey.id,
                    private: prekey.key_pair.private().to_vec(),
                })
                .collect(),
        };
        Zeroizing::new(wire.encode_to_vec())
    }

    /// Reads an account written by [`Account::to_bytes`].
    ///
    /// # Errors
    /// [`StateError`] for another format version or malformed bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        const NAME: &str = "account";
        let wire: AccountWire = decode(bytes, NAME)?;
        check_version(wire.version, NAME)?;
        let seed = Zeroizing::new(array::<32>(&wire.identity_seed, NAME, "identity_seed")?);
        let signed = wire
            .signed_prekey
            .as_ref()
            .ok_or_else(|| missing(NAME, "signed_prekey"))?;
        let mut prekeys = BTreeMap::new();
        for prekey in &wire.prekeys {
            let key_pair =
                X25519KeyPair::from_private(array(&prekey.private, NAME, "prekey private")?);
            prekeys.insert(
                prekey.id,
                PreKey {
                    id: prekey.id,
                    key_pair,
                },
            );
        }
        let mut used_prekeys = VecDeque::new();
        for prekey in wire
            .used_prekeys
            .iter()
            .rev()
            .take(RETAINED_USED_PREKEYS)
            .rev()
        {
            let key_pair =
                X25519KeyPair::from_private(array(&prekey.private, NAME, "used prekey private")?);
            used_prekeys.push_back(PreKey {
                id: prekey.id,
                key_pair,
            });
        }
        Ok(Self {
            identity: IdentityKeyPair::from_seed(&seed),
            signed_prekey: signed_prekey_from_wire(signed)?,
            old_signed_prekey: wire
                .old_signed_prekey
                .as_ref()
                .map(signed_prekey_from_wire)
                .transpose()?,
            prekeys,
            used_prekeys,
            next_prekey_id: wire.next_prekey_id,
        })
    }
}

impl Session {
    /// Serializes the session (secrets included), versioned.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let ratchet = &self.ratchet;
        let wire = SessionWire {
            version: STATE_FORMAT_VERSION,
            root_key: ratchet.root_key.to_vec(),
            own_ratchet_private: ratchet.own_ratchet.private().to_vec(),
            other_ratchet_pub: ratchet.other_ratchet_pub.to_vec(),
            sending: Some(chain_to_wire(&ratchet.sending)),
            receiving: ratchet.receiving.as_ref().map(chain_to_wire),
            previous_sending_length: ratchet.previous_sending_length,
            skipped: ratchet
                .skipped
                .iter()
                .map(|key| SkippedKeyWire {
                    ratchet_pub: key.ratchet_pub.to_vec(),
                    n: key.n,
                    message_key: key.message_key.to_vec(),
                })
                .collect(),
            associated_data: self.associated_data.to_vec(),
            passive: self.initiation == Initiation::Passive,
            kex_prekey_id: self.key_exchange.prekey_id,
            kex_signed_prekey_id: self.key_exchange.signed_prekey_id,
            kex_identity_key: self.key_exchange.identity_key.to_bytes().to_vec(),
            kex_ephemeral_key: self.key_exchange.ephemeral_key.to_vec(),
            confirmed: self.confirmed,
            remote_identity: self.remote_identity.to_bytes().to_vec(),
        };
        Zeroizing::new(wire.encode_to_vec())
    }

    /// Reads a session written by [`Session::to_bytes`].
    ///
    /// # Errors
    /// [`StateError`] for another format version or malformed bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        const NAME: &str = "session";
        let wire: SessionWire = decode(bytes, NAME)?;
        check_version(wire.version, NAME)?;
        let mut skipped = VecDeque::with_capacity(wire.skipped.len());
        for key in &wire.skipped {
            skipped.push_back(SkippedKey {
                ratchet_pub: array(&key.ratchet_pub, NAME, "skipped ratchet_pub")?,
                n: key.n,
                message_key: array(&key.message_key, NAME, "skipped message_key")?,
            });
        }
        let ratchet = DoubleRatchet {
            root_key: Zeroizing::new(array(&wire.root_key, NAME, "root_key")?),
            own_ratchet: X25519KeyPair::from_private(array(
                &wire.own_ratchet_private,
                NAME,
                "own_ratchet_private",
            )?),
            other_ratchet_pub: array(&wire.other_ratchet_pub, NAME, "other_ratchet_pub")?,
            sending: chain_from_wire(
                wire.sending
                    .as_ref()
                    .ok_or_else(|| missing(NAME, "sending"))?,
            )?,
            receiving: wire.receiving.as_ref().map(chain_from_wire).transpose()?,
            previous_sending_length: wire.previous_sending_length,
            skipped,
        };
        Ok(Self {
            ratchet,
            associated_data: array(&wire.associated_data, NAME, "associated_data")?,
            initiation: if wire.passive {
                Initiation::Passive
            } else {
                Initiation::Active
            },
            key_exchange: KeyExchangeHeader {
                prekey_id: wire.kex_prekey_id,
                signed_prekey_id: wire.kex_signed_prekey_id,
                identity_key: IdentityPublicKey::from_slice(&wire.kex_identity_key)?,
                ephemeral_key: array(&wire.kex_ephemeral_key, NAME, "kex_ephemeral_key")?,
            },
            confirmed: wire.confirmed,
            remote_identity: IdentityPublicKey::from_slice(&wire.remote_identity)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::random::DeterministicRandom;

    #[test]
    fn account_round_trip_and_version_check() {
        let mut rng = DeterministicRandom::new([20; 32]);
        let mut account = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
        account
            .rotate_signed_prekey(DateTime::UNIX_EPOCH, &mut rng)
            .unwrap();
        let bytes = account.to_bytes();
        let restored = Account::from_bytes(&bytes).unwrap();
        assert_eq!(restored.to_bytes(), bytes);
        assert_eq!(restored.bundle(), account.bundle());
        let mut wire = AccountWire::decode(bytes.as_slice()).unwrap();
        wire.version = 2;
        assert_eq!(
            Account::from_bytes(&wire.encode_to_vec()).unwrap_err(),
            StateError::UnsupportedVersion {
                what: "account",
                version: 2
            }
        );
        assert!(Account::from_bytes(&bytes[..bytes.len() - 3]).is_err());
    }
}

/// Pins the on-disk format (version 1): bytes written by an earlier build must
/// still read back, and today's encoding of the same state must not drift.
#[cfg(test)]
mod format_stability {
    use super::*;
    use crate::crypto::random::DeterministicRandom;
    use crate::crypto::session::receive;

    fn deterministic_states() -> (Account, Session) {
        let mut rng = DeterministicRandom::new([50; 32]);
        let alice = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
        let mut bob = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
        bob.rotate_signed_prekey(DateTime::UNIX_EPOCH, &mut rng)
            .unwrap();
        let mut session = Session::initiate(alice.identity(), &bob.bundle(), &mut rng).unwrap();
        let _skipped = session.encrypt(b"skipped");
        let second = session.encrypt(b"second");
        let received = receive(&bob, None, None, &second.bytes, true, &mut rng).unwrap();
        bob.remove_prekey(received.consumed_prekey.unwrap());
        (bob, received.session)
    }

    #[test]
    fn version_1_state_reads_back_and_does_not_drift() {
        let (mut account, session) = deterministic_states();
        // Used prekeys kept for late key exchanges are an additive field
        // (tag 7): a state with them reads back whole, and without them
        // encodes exactly as version 1 always did (earlier builds skip the
        // field, so going back a version loses only them).
        assert_eq!(account.used_prekeys.len(), 1);
        let with_used = Account::from_bytes(&account.to_bytes()).unwrap();
        assert_eq!(with_used.used_prekeys.len(), 1);
        assert_eq!(with_used.used_prekeys[0].id, account.used_prekeys[0].id);
        account.used_prekeys.clear();
        if let Ok(directory) = std::env::var("ATM_WRITE_STATE_VECTORS") {
            let directory = std::path::Path::new(&directory);
            std::fs::write(directory.join("state_v1_account.bin"), account.to_bytes()).unwrap();
            std::fs::write(directory.join("state_v1_session.bin"), session.to_bytes()).unwrap();
        }
        let account_v1 = include_bytes!("testdata/state_v1_account.bin");
        let session_v1 = include_bytes!("testdata/state_v1_session.bin");
        assert_eq!(account.to_bytes().as_slice(), account_v1);
        assert_eq!(session.to_bytes().as_slice(), session_v1);
        let restored = Session::from_bytes(session_v1).unwrap();
        assert_eq!(restored.ratchet().skipped_key_count(), 1);
        assert_eq!(Account::from_bytes(account_v1).unwrap().prekey_count(), 99);
        assert!(Account::from_bytes(account_v1)
            .unwrap()
            .used_prekeys
            .is_empty());
    }
}
