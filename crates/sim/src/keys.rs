//! Deterministic key identifiers for endpoints and fresh keys (plain mode).

use atm_tm::KeyId;
use sha2::{Digest, Sha256};

fn derive(label: &str, name: &str) -> KeyId {
    let mut hash = Sha256::new();
    hash.update(b"atm-rs sim key\0");
    hash.update(label.as_bytes());
    hash.update([0]);
    hash.update(name.as_bytes());
    let bytes: [u8; 32] = hash.finalize().into();
    KeyId::from_bytes(bytes.to_vec()).unwrap_or_else(|_| unreachable!("32 bytes"))
}

/// The key of an endpoint (one key per endpoint).
pub fn endpoint_key(name: &str) -> KeyId {
    derive("endpoint", name)
}

/// The key of an account (one key per account, OOK).
pub fn account_key(jid: &str) -> KeyId {
    derive("account", jid)
}

/// A fresh key that belongs to no endpoint, named in a scenario.
pub fn fresh_key(name: &str) -> KeyId {
    derive("fresh", name)
}
