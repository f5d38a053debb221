//! Persistence of OMEMO state behind a synchronous, versioned trait, and the
//! crash-safe order for incoming messages.
//!
//! # Decrypt, persist, act
//!
//! 1. **Decrypt** with [`receive`]: it computes the new session (and names the
//!    prekey to remove) without changing anything.
//! 2. **Persist** in ONE transaction ([`SessionStore::commit_received`]): the new
//!    session, the account without the used prekey, and the decrypted data as a
//!    *pending* message.
//! 3. **Act** on the pending message, then [`SessionStore::acknowledge`] it (the
//!    application's own effects and the acknowledgement should share a transaction).
//!
//! A crash before 2 changes nothing: the message can be decrypted again when it is
//! redelivered. A crash after 2 loses nothing: the message key is spent, but the
//! plaintext waits in [`SessionStore::pending_messages`] and is acted on after the
//! restart. A message is never accepted twice: once 2 happened the ratchet refuses
//! the same message ([`DecryptError::Duplicate`]), and a pending message is
//! acknowledged once. [`receive_and_commit`] performs steps 1 and 2.
//!
//! Outgoing: encrypt, persist the session, then send (a message key is never
//! reused for different content).

use std::collections::BTreeMap;

use jid::BareJid;
use zeroize::Zeroizing;

use super::account::Account;
use super::error::{DecryptError, RandomError, StateError};
use super::keys::IdentityPublicKey;
use super::random::SecureRandom;
use super::session::{receive, Received, Session};

/// A remote device: bare JID and OMEMO device id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeviceAddress {
    /// The owner's bare JID.
    pub jid: BareJid,
    /// The device id.
    pub device_id: u32,
}

impl DeviceAddress {
    fn key(&self) -> (String, u32) {
        (self.jid.to_string(), self.device_id)
    }
}

/// Decrypted data persisted but not yet acted upon.
#[derive(Clone, Debug)]
pub struct PendingMessage {
    /// Identifier for [`SessionStore::acknowledge`].
    pub id: u64,
    /// The sending device.
    pub sender: DeviceAddress,
    /// The sender's identity key (its key identifier).
    pub sender_identity: IdentityPublicKey,
    /// The decrypted data (key material or the application's plaintext).
    pub data: Zeroizing<Vec<u8>>,
}

/// Storage of the account, the sessions and the pending messages.
///
/// Implementations persist [`Account::to_bytes`] / [`Session::to_bytes`] (format
/// [`super::STATE_FORMAT_VERSION`]) and must make each method atomic.
pub trait SessionStore {
    /// The storage error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The device's own account, if created.
    ///
    /// # Errors
    /// A storage failure or unreadable state.
    fn load_account(&self) -> Result<Option<Account>, Self::Error>;

    /// Replaces the account.
    ///
    /// # Errors
    /// A storage failure; nothing was written then.
    fn store_account(&mut self, account: &Account) -> Result<(), Self::Error>;

    /// The session with a device, if any.
    ///
    /// # Errors
    /// A storage failure or unreadable state.
    fn load_session(&self, peer: &DeviceAddress) -> Result<Option<Session>, Self::Error>;

    /// Replaces the session with a device (after encrypting, before sending).
    ///
    /// # Errors
    /// A storage failure; nothing was written then.
    fn store_session(&mut self, peer: &DeviceAddress, session: &Session)
        -> Result<(), Self::Error>;

    /// Forgets the session with a device.
    ///
    /// # Errors
    /// A storage failure.
    fn delete_session(&mut self, peer: &DeviceAddress) -> Result<(), Self::Error>;

    /// One transaction: the session, the account if it changed, and `data` as a
    /// pending message. Returns the pending message's id.
    ///
    /// # Errors
    /// A storage failure; nothing was written then.
    fn commit_received(
        &mut self,
        peer: &DeviceAddress,
        session: &Session,
        account: Option<&Account>,
        data: &[u8],
    ) -> Result<u64, Self::Error>;

    /// Messages persisted but not yet acknowledged, oldest first.
    ///
    /// # Errors
    /// A storage failure.
    fn pending_messages(&self) -> Result<Vec<PendingMessage>, Self::Error>;

    /// Marks a pending message as acted upon (idempotent).
    ///
    /// # Errors
    /// A storage failure.
    fn acknowledge(&mut self, id: u64) -> Result<(), Self::Error>;
}

/// The outcome of [`receive_and_commit`].
#[derive(Debug)]
pub struct Committed {
    /// The pending message now stored (act on it, then acknowledge it).
    pub pending: PendingMessage,
    /// Whether the bundle changed (prekey used and replenished): republish it.
    pub bundle_changed: bool,
    /// Whether a new session was built.
    pub new_session: bool,
}

/// Why [`receive_and_commit`] failed; nothing was stored in any case.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError<E: std::error::Error + 'static> {
    /// The message was refused.
    #[error(transparent)]
    Decrypt(#[from] DecryptError),
    /// No account is stored yet.
    #[error("no OMEMO account in the store")]
    NoAccount,
    /// Replenishing prekeys needed randomness that was unavailable.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The store failed.
    #[error("session store: {0}")]
    Store(#[source] E),
}

/// Steps 1 and 2 of "decrypt, persist, act" for one `<key>` element addressed to
/// this device (`key_exchange` is its `kex` attribute).
///
/// # Errors
/// [`ReceiveError`]; the store is unchanged then.
pub fn receive_and_commit<S: SessionStore>(
    store: &mut S,
    peer: &DeviceAddress,
    expected_identity: Option<&IdentityPublicKey>,
    bytes: &[u8],
    key_exchange: bool,
    rng: &mut dyn SecureRandom,
) -> Result<Committed, ReceiveError<S::Error>> {
    let account = store
        .load_account()
        .map_err(ReceiveError::Store)?
        .ok_or(ReceiveError::NoAccount)?;
    let existing = store.load_session(peer).map_err(ReceiveError::Store)?;
    let received = receive(
        &account,
        existing.as_ref(),
        expected_identity,
        bytes,
        key_exchange,
        rng,
    )?;
    commit_receipt(store, &account, peer, received, rng)
}

/// Step 2 of "decrypt, persist, act" for the result of [`receive`] against
/// `account` (the stored account it was computed with): removes the used
/// prekey and replenishes, then stores session, account and pending data in
/// one transaction.
///
/// # Errors
/// [`ReceiveError`]; the store is unchanged then.
pub fn commit_receipt<S: SessionStore>(
    store: &mut S,
    account: &Account,
    peer: &DeviceAddress,
    received: Received,
    rng: &mut dyn SecureRandom,
) -> Result<Committed, ReceiveError<S::Error>> {
    let mut updated = None;
    if let Some(prekey) = received.consumed_prekey {
        let mut next = account.clone();
        if next.remove_prekey(prekey) {
            next.replenish_prekeys(rng)?;
            updated = Some(next);
        }
    }
    let id = store
        .commit_received(
            peer,
            &received.session,
            updated.as_ref(),
            &received.plaintext,
        )
        .map_err(ReceiveError::Store)?;
    Ok(Committed {
        pending: PendingMessage {
            id,
            sender: peer.clone(),
            sender_identity: received.session.remote_identity(),
            data: received.plaintext,
        },
        bundle_changed: updated.is_some(),
        new_session: received.new_session,
    })
}

/// A serialized session and the address it belongs to.
type StoredSession = (DeviceAddress, Zeroizing<Vec<u8>>);

/// An in-memory [`SessionStore`] holding the serialized state, as a durable
/// store would. Cloning it models a crash: the clone is what survived.
#[derive(Clone, Default)]
pub struct MemoryStore {
    account: Option<Zeroizing<Vec<u8>>>,
    sessions: BTreeMap<(String, u32), StoredSession>,
    pending: BTreeMap<u64, PendingMessage>,
    next_pending_id: u64,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MemoryStore")
            .field("has_account", &self.account.is_some())
            .field("sessions", &self.sessions.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl SessionStore for MemoryStore {
    type Error = StateError;

    fn load_account(&self) -> Result<Option<Account>, StateError> {
        self.account
            .as_ref()
            .map(|bytes| Account::from_bytes(bytes))
            .transpose()
    }

    fn store_account(&mut self, account: &Account) -> Result<(), StateError> {
        self.account = Some(account.to_bytes());
        Ok(())
    }

    fn load_session(&self, peer: &DeviceAddress) -> Result<Option<Session>, StateError> {
        self.sessions
            .get(&peer.key())
            .map(|(_, bytes)| Session::from_bytes(bytes))
            .transpose()
    }

    fn store_session(&mut self, peer: &DeviceAddress, session: &Session) -> Result<(), StateError> {
        self.sessions
            .insert(peer.key(), (peer.clone(), session.to_bytes()));
        Ok(())
    }

    fn delete_session(&mut self, peer: &DeviceAddress) -> Result<(), StateError> {
        self.sessions.remove(&peer.key());
        Ok(())
    }

    fn commit_received(
        &mut self,
        peer: &DeviceAddress,
        session: &Session,
        account: Option<&Account>,
        data: &[u8],
    ) -> Result<u64, StateError> {
        let id = self.next_pending_id;
        self.next_pending_id += 1;
        self.store_session(peer, session)?;
        if let Some(account) = account {
            self.store_account(account)?;
        }
        self.pending.insert(
            id,
            PendingMessage {
                id,
                sender: peer.clone(),
                sender_identity: session.remote_identity(),
                data: Zeroizing::new(data.to_vec()),
            },
        );
        Ok(id)
    }

    fn pending_messages(&self) -> Result<Vec<PendingMessage>, StateError> {
        Ok(self.pending.values().cloned().collect())
    }

    fn acknowledge(&mut self, id: u64) -> Result<(), StateError> {
        self.pending.remove(&id);
        Ok(())
    }
}
