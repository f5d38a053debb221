//! Deterministic key identifiers for endpoints and fresh keys (plain mode).

use atm_tm::KeyId;
use sha2::{Digest, Sha256};

/// 32 bytes derived from a purpose (`domain`), a label and a name: every
/// deterministic key and seed of the simulated network comes from here.
pub(crate) fn seed(domain: &[u8], label: &str, name: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(domain);
    hash.update(label.as_bytes());
    hash.update([0]);
    hash.update(name.as_bytes());
    hash.finalize().into()
}

fn derive(label: &str, name: &str) -> KeyId {
    let bytes = seed(b"atm-rs sim key\0", label, name);
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
