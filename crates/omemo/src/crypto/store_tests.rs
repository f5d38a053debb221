//! "Decrypt, persist, act" under crashes, with the memory store.

use chrono::DateTime;

use super::*;

fn address(jid: &str, device_id: u32) -> DeviceAddress {
    DeviceAddress {
        jid: jid::BareJid::new(jid).unwrap(),
        device_id,
    }
}

/// A store whose commits fail on demand (a full disk, a lost connection).
struct FailingStore {
    inner: MemoryStore,
    fail_commits: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("injected failure")]
struct Injected;

impl SessionStore for FailingStore {
    type Error = Injected;
    fn load_account(&self) -> Result<Option<Account>, Injected> {
        self.inner.load_account().map_err(|_| Injected)
    }
    fn store_account(&mut self, account: &Account) -> Result<(), Injected> {
        self.inner.store_account(account).map_err(|_| Injected)
    }
    fn load_session(&self, peer: &DeviceAddress) -> Result<Option<Session>, Injected> {
        self.inner.load_session(peer).map_err(|_| Injected)
    }
    fn store_session(&mut self, peer: &DeviceAddress, session: &Session) -> Result<(), Injected> {
        self.inner
            .store_session(peer, session)
            .map_err(|_| Injected)
    }
    fn delete_session(&mut self, peer: &DeviceAddress) -> Result<(), Injected> {
        self.inner.delete_session(peer).map_err(|_| Injected)
    }
    fn commit_received(
        &mut self,
        peer: &DeviceAddress,
        session: &Session,
        account: Option<&Account>,
        data: &[u8],
    ) -> Result<u64, Injected> {
        if self.fail_commits {
            return Err(Injected);
        }
        self.inner
            .commit_received(peer, session, account, data)
            .map_err(|_| Injected)
    }
    fn pending_messages(&self) -> Result<Vec<PendingMessage>, Injected> {
        self.inner.pending_messages().map_err(|_| Injected)
    }
    fn acknowledge(&mut self, id: u64) -> Result<(), Injected> {
        self.inner.acknowledge(id).map_err(|_| Injected)
    }
}

#[test]
fn crash_can_neither_lose_nor_duplicate_a_message() {
    let mut rng = DeterministicRandom::new([30; 32]);
    let alice_account = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let bob_account = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let alice = address("alice@example.org", 1);
    let mut bob_store = MemoryStore::new();
    bob_store.store_account(&bob_account).unwrap();
    let mut session =
        Session::initiate(alice_account.identity(), &bob_account.bundle(), &mut rng).unwrap();
    let message = session.encrypt(b"key material one");
    let used_prekey = session.key_exchange().prekey_id;

    // Crash during step 2: the commit fails, nothing is stored.
    let mut failing = FailingStore {
        inner: bob_store.clone(),
        fail_commits: true,
    };
    let error =
        receive_and_commit(&mut failing, &alice, None, &message.bytes, true, &mut rng).unwrap_err();
    assert!(matches!(error, ReceiveError::Store(Injected)));
    assert!(failing.inner.load_session(&alice).unwrap().is_none());
    assert!(failing.inner.pending_messages().unwrap().is_empty());
    assert_eq!(
        failing.inner.load_account().unwrap().unwrap().to_bytes(),
        bob_account.to_bytes()
    );

    // Redelivered after the restart: decrypts now.
    let committed =
        receive_and_commit(&mut bob_store, &alice, None, &message.bytes, true, &mut rng).unwrap();
    assert!(committed.new_session && committed.bundle_changed);
    assert_eq!(committed.pending.data.as_slice(), b"key material one");
    let account = bob_store.load_account().unwrap().unwrap();
    assert_eq!(account.prekey_count(), PREKEY_TARGET);
    assert!(!account.bundle().prekeys.contains_key(&used_prekey));

    // Crash after step 2, before acting: the durable copy still holds the message.
    let mut after_restart = bob_store.clone();
    let pending = after_restart.pending_messages().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].data.as_slice(), b"key material one");
    assert_eq!(pending[0].sender, alice);
    assert_eq!(
        pending[0].sender_identity,
        alice_account.identity().public()
    );

    // The same stanza redelivered is refused: never accepted twice.
    let replay = receive_and_commit(
        &mut after_restart,
        &alice,
        None,
        &message.bytes,
        true,
        &mut rng,
    )
    .unwrap_err();
    assert!(
        matches!(
            replay,
            ReceiveError::Decrypt(DecryptError::Duplicate { n: 0 })
        ),
        "{replay:?}"
    );
    assert_eq!(after_restart.pending_messages().unwrap().len(), 1);

    // Act, then acknowledge (idempotent).
    after_restart.acknowledge(pending[0].id).unwrap();
    after_restart.acknowledge(pending[0].id).unwrap();
    assert!(after_restart.pending_messages().unwrap().is_empty());

    // The conversation continues from the persisted state.
    let second = session.encrypt(b"key material two");
    let committed = receive_and_commit(
        &mut after_restart,
        &alice,
        None,
        &second.bytes,
        true,
        &mut rng,
    )
    .unwrap();
    assert!(!committed.new_session && !committed.bundle_changed);
    assert_eq!(committed.pending.data.as_slice(), b"key material two");
}

#[test]
fn store_without_account_refuses() {
    let mut rng = DeterministicRandom::new([31; 32]);
    let mut store = MemoryStore::new();
    let error = receive_and_commit(
        &mut store,
        &address("a@b.c", 2),
        None,
        &[1, 2],
        false,
        &mut rng,
    )
    .unwrap_err();
    assert!(matches!(error, ReceiveError::NoAccount));
}
