//! X3DH as XEP-0384 §Key Exchange modifies it, byte-compatible with python-x3dh
//! configured by twomemo:
//!
//! * `SK = HKDF-SHA-256(salt = 32 zero bytes, ikm = 0xFF * 32 || DH1 || DH2 || DH3 || DH4,
//!   info = "OMEMO X3DH")`, 32 bytes, where for the initiator A and responder B
//!   `DH1 = DH(IK_A, SPK_B)`, `DH2 = DH(EK_A, IK_B)`, `DH3 = DH(EK_A, SPK_B)`,
//!   `DH4 = DH(EK_A, OPK_B)`; identity keys converted to X25519 (RFC 7748).
//! * A prekey is mandatory.
//! * `AD = IK_A || IK_B` (Ed25519 encodings, 32 bytes each).

use zeroize::Zeroizing;

use super::account::Account;
use super::error::KeyExchangeError;
use super::keys::{Bundle, IdentityKeyPair, IdentityPublicKey, X25519KeyPair};
use super::primitives::{hkdf_sha256, x25519};
use super::random::SecureRandom;
use super::ratchet::ASSOCIATED_DATA_LENGTH;

const X3DH_INFO: &[u8] = b"OMEMO X3DH";

/// The public header of a key exchange, as carried by `OMEMOKeyExchange`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyExchangeHeader {
    /// Id of the responder's prekey used.
    pub prekey_id: u32,
    /// Id of the responder's signed prekey used.
    pub signed_prekey_id: u32,
    /// The initiator's identity key.
    pub identity_key: IdentityPublicKey,
    /// The initiator's X25519 ephemeral public key.
    pub ephemeral_key: [u8; 32],
}

/// The result of X3DH on either side.
pub(crate) struct Agreement {
    pub(crate) shared_secret: Zeroizing<[u8; 32]>,
    pub(crate) associated_data: [u8; ASSOCIATED_DATA_LENGTH],
}

fn associated_data(initiator: &IdentityPublicKey, responder: &IdentityPublicKey) -> [u8; 64] {
    let mut data = [0u8; ASSOCIATED_DATA_LENGTH];
    data[..32].copy_from_slice(initiator.as_bytes());
    data[32..].copy_from_slice(responder.as_bytes());
    data
}

fn derive(dh_outputs: [&Zeroizing<[u8; 32]>; 4]) -> Result<Zeroizing<[u8; 32]>, KeyExchangeError> {
    let mut input = Zeroizing::new([0xFFu8; 32 * 5]);
    for (index, output) in dh_outputs.iter().enumerate() {
        if output.iter().all(|byte| *byte == 0) {
            return Err(KeyExchangeError::NonContributory);
        }
        input[32 * (index + 1)..32 * (index + 2)].copy_from_slice(output.as_slice());
    }
    Ok(hkdf_sha256::<32>(&[0u8; 32], input.as_slice(), X3DH_INFO))
}

/// The initiator's side: verifies the bundle, picks one prekey with `rng`, and
/// returns the agreement and the header to send.
pub(crate) fn initiate(
    identity: &IdentityKeyPair,
    bundle: &Bundle,
    rng: &mut dyn SecureRandom,
) -> Result<(Agreement, KeyExchangeHeader), KeyExchangeError> {
    bundle
        .verify()
        .map_err(|_| KeyExchangeError::BadBundleSignature)?;
    if bundle.prekeys.is_empty() {
        return Err(KeyExchangeError::NoPreKey);
    }
    let mut choice = [0u8; 4];
    rng.try_fill(&mut choice)?;
    let index = usize::try_from(u32::from_le_bytes(choice)).unwrap_or(0) % bundle.prekeys.len();
    let (prekey_id, prekey) = bundle
        .prekeys
        .iter()
        .nth(index)
        .ok_or(KeyExchangeError::NoPreKey)?;
    let ephemeral = X25519KeyPair::generate(rng)?;
    let own_private = identity.x25519_private();
    let other_identity = bundle.identity_key.to_x25519();
    let shared_secret = derive([
        &x25519(&own_private, &bundle.signed_prekey),
        &x25519(ephemeral.private(), &other_identity),
        &x25519(ephemeral.private(), &bundle.signed_prekey),
        &x25519(ephemeral.private(), prekey),
    ])?;
    let agreement = Agreement {
        shared_secret,
        associated_data: associated_data(&identity.public(), &bundle.identity_key),
    };
    let header = KeyExchangeHeader {
        prekey_id: *prekey_id,
        signed_prekey_id: bundle.signed_prekey_id,
        identity_key: identity.public(),
        ephemeral_key: ephemeral.public(),
    };
    Ok((agreement, header))
}

/// The responder's side: looks the signed prekey (current or previous) and the
/// prekey up by id. Does not remove the prekey: the caller does, after the first
/// message decrypted and the session was persisted.
pub(crate) fn respond(
    account: &Account,
    header: &KeyExchangeHeader,
) -> Result<(Agreement, X25519KeyPair), KeyExchangeError> {
    let signed_prekey = account.signed_prekey_by_id(header.signed_prekey_id).ok_or(
        KeyExchangeError::UnknownSignedPreKey {
            id: header.signed_prekey_id,
        },
    )?;
    let prekey = account
        .prekey_by_id(header.prekey_id)
        .ok_or(KeyExchangeError::UnknownPreKey {
            id: header.prekey_id,
        })?;
    let own_private = account.identity().x25519_private();
    let other_identity = header.identity_key.to_x25519();
    let shared_secret = derive([
        &x25519(signed_prekey.key_pair.private(), &other_identity),
        &x25519(&own_private, &header.ephemeral_key),
        &x25519(signed_prekey.key_pair.private(), &header.ephemeral_key),
        &x25519(prekey.key_pair.private(), &header.ephemeral_key),
    ])?;
    let agreement = Agreement {
        shared_secret,
        associated_data: associated_data(&header.identity_key, &account.identity().public()),
    };
    Ok((agreement, signed_prekey.key_pair.clone()))
}
