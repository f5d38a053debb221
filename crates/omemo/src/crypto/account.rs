//! The device's own key material: identity key, signed prekey (with the previous
//! one kept for one rotation period) and the pool of one-time prekeys.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};

use super::error::RandomError;
use super::keys::{Bundle, IdentityKeyPair, PreKey, SignedPreKey, X25519KeyPair};
use super::random::SecureRandom;

/// Number of prekeys published (XEP-0384: "around 100").
pub const PREKEY_TARGET: usize = 100;

/// How many used prekeys stay usable for incoming key exchanges after their
/// first use (newest kept). A contact's copy of the bundle can be older than
/// the prekeys' use: a server that does not notify contacts of bundle
/// changes (ejabberd 23.01 in our tests), a message written offline, two
/// devices that picked the same prekey at once (XEP-0384 §Business Rules:
/// postpone deletion, then move away with an empty message). Without this,
/// such a first message is undecryptable and lost. A second key exchange on
/// a used prekey only builds a session (the sender still needs the key
/// exchange's secrets), and a replayed stanza is refused before decryption
/// by the endpoint's exactly-once check.
pub const RETAINED_USED_PREKEYS: usize = 20;
/// Minimum number of prekeys in the bundle (XEP-0384: "at least 25").
pub const PREKEY_MINIMUM: usize = 25;

/// The id after `id`, wrapping from 2^31 − 1 to 1 (XEP-0384: key ids are
/// positive numbers of a signed 32-bit integer).
fn next_key_id(id: u32) -> u32 {
    if id >= crate::elements::MAX_DEVICE_ID {
        1
    } else {
        id + 1
    }
}

/// The device's own keys. Secrets are zeroized on drop; `Debug` shows only ids.
#[derive(Clone)]
pub struct Account {
    pub(crate) identity: IdentityKeyPair,
    pub(crate) signed_prekey: SignedPreKey,
    pub(crate) old_signed_prekey: Option<SignedPreKey>,
    pub(crate) prekeys: BTreeMap<u32, PreKey>,
    /// Used prekeys still accepted, oldest first (at most
    /// [`RETAINED_USED_PREKEYS`]); never published.
    pub(crate) used_prekeys: std::collections::VecDeque<PreKey>,
    pub(crate) next_prekey_id: u32,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Account")
            .field("identity", &self.identity.public())
            .field("signed_prekey_id", &self.signed_prekey.id)
            .field(
                "old_signed_prekey_id",
                &self.old_signed_prekey.as_ref().map(|k| k.id),
            )
            .field("prekeys", &self.prekeys.len())
            .finish()
    }
}

impl Account {
    /// A new device: fresh identity key, signed prekey id 1 and
    /// [`PREKEY_TARGET`] prekeys (ids 1..=100).
    ///
    /// # Errors
    /// [`RandomError`] when the generator fails.
    pub fn generate(now: DateTime<Utc>, rng: &mut dyn SecureRandom) -> Result<Self, RandomError> {
        let identity = IdentityKeyPair::generate(rng)?;
        Self::from_identity(identity, now, rng)
    }

    /// A device around an existing identity key.
    ///
    /// # Errors
    /// [`RandomError`] when the generator fails.
    pub fn from_identity(
        identity: IdentityKeyPair,
        now: DateTime<Utc>,
        rng: &mut dyn SecureRandom,
    ) -> Result<Self, RandomError> {
        let signed_prekey = SignedPreKey::generate(&identity, 1, now, rng)?;
        let mut account = Self {
            identity,
            signed_prekey,
            old_signed_prekey: None,
            prekeys: BTreeMap::new(),
            used_prekeys: std::collections::VecDeque::new(),
            next_prekey_id: 1,
        };
        account.replenish_prekeys(rng)?;
        Ok(account)
    }

    /// Rebuilds an account from existing keys, e.g. imported from another
    /// implementation. New prekey ids continue after the highest one given.
    #[must_use]
    pub fn from_parts(
        identity: IdentityKeyPair,
        signed_prekey: SignedPreKey,
        old_signed_prekey: Option<SignedPreKey>,
        prekeys: Vec<PreKey>,
    ) -> Self {
        let next_prekey_id = prekeys
            .iter()
            .map(|prekey| prekey.id)
            .max()
            .map_or(1, next_key_id);
        Self {
            identity,
            signed_prekey,
            old_signed_prekey,
            prekeys: prekeys
                .into_iter()
                .map(|prekey| (prekey.id, prekey))
                .collect(),
            used_prekeys: std::collections::VecDeque::new(),
            next_prekey_id,
        }
    }

    /// The identity key pair.
    #[must_use]
    pub fn identity(&self) -> &IdentityKeyPair {
        &self.identity
    }

    /// The current signed prekey.
    #[must_use]
    pub fn signed_prekey(&self) -> &SignedPreKey {
        &self.signed_prekey
    }

    /// Number of unused prekeys.
    #[must_use]
    pub fn prekey_count(&self) -> usize {
        self.prekeys.len()
    }

    /// The public bundle to publish.
    #[must_use]
    pub fn bundle(&self) -> Bundle {
        Bundle {
            identity_key: self.identity.public(),
            signed_prekey_id: self.signed_prekey.id,
            signed_prekey: self.signed_prekey.key_pair.public(),
            signed_prekey_signature: self.signed_prekey.signature,
            prekeys: self
                .prekeys
                .iter()
                .map(|(id, prekey)| (*id, prekey.key_pair.public()))
                .collect(),
        }
    }

    /// Removes a prekey used by a key exchange. Returns whether it existed.
    /// Call [`Account::replenish_prekeys`] afterwards and republish the bundle.
    ///
    /// The removed prekey stays usable for incoming key exchanges among the
    /// [`RETAINED_USED_PREKEYS`] most recently used ones.
    pub fn remove_prekey(&mut self, id: u32) -> bool {
        let Some(prekey) = self.prekeys.remove(&id) else {
            return false;
        };
        self.used_prekeys.retain(|used| used.id != id);
        self.used_prekeys.push_back(prekey);
        while self.used_prekeys.len() > RETAINED_USED_PREKEYS {
            self.used_prekeys.pop_front();
        }
        true
    }

    /// Tops the prekey pool up to [`PREKEY_TARGET`] with fresh ids; returns how
    /// many were added (0: the bundle did not change).
    ///
    /// # Errors
    /// [`RandomError`] when the generator fails; the keys generated so far stay.
    pub fn replenish_prekeys(&mut self, rng: &mut dyn SecureRandom) -> Result<usize, RandomError> {
        let mut added = 0;
        while self.prekeys.len() < PREKEY_TARGET {
            let id = self.next_prekey_id;
            self.next_prekey_id = next_key_id(self.next_prekey_id);
            if self.prekeys.contains_key(&id) {
                continue;
            }
            let key_pair = X25519KeyPair::generate(rng)?;
            self.prekeys.insert(id, PreKey { id, key_pair });
            added += 1;
        }
        Ok(added)
    }

    /// Replaces the signed prekey by a new one (next id); the previous one stays
    /// usable for incoming key exchanges until the next rotation.
    ///
    /// # Errors
    /// [`RandomError`] when the generator fails; nothing changed then.
    pub fn rotate_signed_prekey(
        &mut self,
        now: DateTime<Utc>,
        rng: &mut dyn SecureRandom,
    ) -> Result<(), RandomError> {
        let id = next_key_id(self.signed_prekey.id);
        let fresh = SignedPreKey::generate(&self.identity, id, now, rng)?;
        self.old_signed_prekey = Some(std::mem::replace(&mut self.signed_prekey, fresh));
        Ok(())
    }

    /// Rotates the signed prekey if it is at least `period` old; returns whether
    /// it did (then the bundle must be republished).
    ///
    /// # Errors
    /// [`RandomError`] when the generator fails; nothing changed then.
    pub fn rotate_signed_prekey_if_due(
        &mut self,
        now: DateTime<Utc>,
        period: TimeDelta,
        rng: &mut dyn SecureRandom,
    ) -> Result<bool, RandomError> {
        if now.signed_duration_since(self.signed_prekey.created) < period {
            return Ok(false);
        }
        self.rotate_signed_prekey(now, rng)?;
        Ok(true)
    }

    pub(crate) fn signed_prekey_by_id(&self, id: u32) -> Option<&SignedPreKey> {
        if self.signed_prekey.id == id {
            return Some(&self.signed_prekey);
        }
        self.old_signed_prekey.as_ref().filter(|key| key.id == id)
    }

    pub(crate) fn prekey_by_id(&self, id: u32) -> Option<&PreKey> {
        self.prekeys
            .get(&id)
            .or_else(|| self.used_prekeys.iter().find(|used| used.id == id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::random::DeterministicRandom;

    #[test]
    fn prekeys_are_kept_between_minimum_and_target() {
        let mut rng = DeterministicRandom::new([5; 32]);
        let mut account = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
        assert_eq!(account.prekey_count(), PREKEY_TARGET);
        assert!(account.bundle().prekeys.len() >= PREKEY_MINIMUM);
        account.bundle().verify().unwrap();
        assert!(account.remove_prekey(7));
        assert!(!account.remove_prekey(7));
        assert_eq!(account.prekey_count(), PREKEY_TARGET - 1);
        assert_eq!(account.replenish_prekeys(&mut rng).unwrap(), 1);
        assert!(!account.bundle().prekeys.contains_key(&7));
        assert!(account.bundle().prekeys.contains_key(&101));
        assert_eq!(account.replenish_prekeys(&mut rng).unwrap(), 0);
    }

    #[test]
    fn rotation_keeps_old_signed_prekey_one_period() {
        let mut rng = DeterministicRandom::new([6; 32]);
        let start = DateTime::UNIX_EPOCH;
        let week = TimeDelta::days(7);
        let mut account = Account::generate(start, &mut rng).unwrap();
        assert!(!account
            .rotate_signed_prekey_if_due(start + TimeDelta::days(6), week, &mut rng)
            .unwrap());
        assert!(account
            .rotate_signed_prekey_if_due(start + week, week, &mut rng)
            .unwrap());
        assert_eq!(account.bundle().signed_prekey_id, 2);
        account.bundle().verify().unwrap();
        assert!(account.signed_prekey_by_id(1).is_some());
        assert!(account.signed_prekey_by_id(2).is_some());
        assert!(account
            .rotate_signed_prekey_if_due(start + week * 2, week, &mut rng)
            .unwrap());
        assert!(account.signed_prekey_by_id(1).is_none());
        assert!(account.signed_prekey_by_id(2).is_some());
        assert!(account.signed_prekey_by_id(3).is_some());
    }
}
