//! [`SqliteSessionStore`]: the OMEMO 2 state of one device in SQLite (tables
//! `omemo_*`, migration `0001_omemo_sessions.sql`).
//!
//! Every method is one transaction. [`SessionStore::commit_received`] writes the
//! advanced session, the account without its used prekey and the decrypted data
//! as a pending message together, which is step 2 of atm-omemo's
//! "decrypt, persist, act" ([`atm_omemo::crypto::store`]).
//!
//! # The account cache
//!
//! Parsing the account derives the public half of every prekey (about 120
//! X25519 scalar multiplications, ≈ 7 ms on the development VM), and a device
//! reads its account several times per message. The connection therefore
//! keeps the account it last read or wrote ([`AccountCache`]) together with
//! the exact state bytes, and [`load_account`] still reads the stored bytes
//! at every call: the cached account is returned only if they are identical.
//! The file stays the only truth: a rolled-back unit of work, a failed
//! savepoint, another connection's write or a crash can make the cache
//! differ from the file, and then it is simply not used.

use std::cell::RefCell;
use std::path::Path;

use atm_omemo::crypto::{
    Account, DeviceAddress, IdentityPublicKey, PendingMessage, Session, SessionStore,
};
use jid::BareJid;
use rusqlite::{params, OptionalExtension};
use zeroize::Zeroizing;

use crate::db::{Database, Durability};
use crate::error::StoreError;

/// OMEMO sessions, account and pending messages in a SQLite file. The file may
/// be shared with a [`crate::SqliteTrustStore`] (separate tables).
#[derive(Debug)]
pub struct SqliteSessionStore {
    database: Database,
}

impl SqliteSessionStore {
    /// Opens or creates the store in the database file at `path`.
    ///
    /// # Errors
    /// See [`Database::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, Durability::Full)
    }

    /// Opens or creates the store with the given durability.
    ///
    /// # Errors
    /// See [`Database::open`].
    pub fn open_with(path: impl AsRef<Path>, durability: Durability) -> Result<Self, StoreError> {
        Ok(Self {
            database: Database::open(path, durability)?,
        })
    }

    /// A private in-memory store.
    ///
    /// # Errors
    /// A SQLite failure.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Ok(Self {
            database: Database::open_in_memory()?,
        })
    }

    /// The underlying database (schema version, integrity check).
    #[must_use]
    pub fn database(&self) -> &Database {
        &self.database
    }
}

fn state_error(database: &Database, source: atm_omemo::crypto::StateError) -> StoreError {
    StoreError::OmemoState {
        path: database.path.clone(),
        source,
    }
}

fn invalid(database: &Database, table: &'static str, detail: String) -> StoreError {
    StoreError::InvalidRecord {
        path: database.path.clone(),
        table,
        detail,
    }
}

fn write_session(
    connection: &rusqlite::Connection,
    peer: &DeviceAddress,
    session: &Session,
) -> rusqlite::Result<()> {
    let state = session.to_bytes();
    connection
        .prepare_cached(
            "INSERT INTO omemo_session (jid, device_id, state) VALUES (?1, ?2, ?3) \
             ON CONFLICT (jid, device_id) DO UPDATE SET state = excluded.state",
        )?
        .execute(params![
            peer.jid.as_str(),
            i64::from(peer.device_id),
            state.as_slice()
        ])?;
    Ok(())
}

fn write_account(connection: &rusqlite::Connection, state: &[u8]) -> rusqlite::Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO omemo_account (id, state) VALUES (1, ?1) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state",
        )?
        .execute(params![state])?;
    Ok(())
}

/// The account last read or written through one connection, with the state
/// bytes it was parsed from or serialized to (see the module documentation).
/// Its secrets are zeroized when it is replaced or dropped.
#[derive(Default)]
pub(crate) struct AccountCache(RefCell<Option<CachedAccount>>);

struct CachedAccount {
    state: Zeroizing<Vec<u8>>,
    account: Account,
}

impl AccountCache {
    /// The cached account if it was parsed from (or serialized to) exactly
    /// `state`.
    fn get(&self, state: &[u8]) -> Option<Account> {
        self.0
            .borrow()
            .as_ref()
            .filter(|cached| cached.state.as_slice() == state)
            .map(|cached| cached.account.clone())
    }

    fn set(&self, state: Zeroizing<Vec<u8>>, account: &Account) {
        *self.0.borrow_mut() = Some(CachedAccount {
            state,
            account: account.clone(),
        });
    }

    fn clear(&self) {
        self.0.borrow_mut().take();
    }
}

impl std::fmt::Debug for AccountCache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cached = self.0.borrow();
        formatter
            .debug_tuple("AccountCache")
            .field(&cached.as_ref().map(|cached| &cached.account))
            .finish()
    }
}

impl SessionStore for SqliteSessionStore {
    type Error = StoreError;

    fn load_account(&self) -> Result<Option<Account>, StoreError> {
        load_account(&self.database)
    }

    fn store_account(&mut self, account: &Account) -> Result<(), StoreError> {
        store_account(&self.database, account)
    }

    fn load_session(&self, peer: &DeviceAddress) -> Result<Option<Session>, StoreError> {
        load_session(&self.database, peer)
    }

    fn store_session(&mut self, peer: &DeviceAddress, session: &Session) -> Result<(), StoreError> {
        store_session(&self.database, peer, session)
    }

    fn delete_session(&mut self, peer: &DeviceAddress) -> Result<(), StoreError> {
        delete_session(&self.database, peer)
    }

    fn commit_received(
        &mut self,
        peer: &DeviceAddress,
        session: &Session,
        account: Option<&Account>,
        data: &[u8],
    ) -> Result<u64, StoreError> {
        commit_received(&mut self.database, peer, session, account, data)
    }

    fn pending_messages(&self) -> Result<Vec<PendingMessage>, StoreError> {
        pending_messages(&self.database)
    }

    fn acknowledge(&mut self, id: u64) -> Result<(), StoreError> {
        acknowledge(&self.database, id)
    }
}

// The implementation, over a database that a `SqliteSessionStore` or an
// `EndpointStore` owns.

pub(crate) fn load_account(database: &Database) -> Result<Option<Account>, StoreError> {
    let state: Option<Zeroizing<Vec<u8>>> = database
        .connection
        .prepare_cached("SELECT state FROM omemo_account WHERE id = 1")
        .and_then(|mut statement| {
            statement
                .query_row([], |row| row.get::<_, Vec<u8>>(0).map(Zeroizing::new))
                .optional()
        })
        .map_err(|error| database.error(error))?;
    let Some(state) = state else {
        database.account_cache.clear();
        return Ok(None);
    };
    if let Some(account) = database.account_cache.get(&state) {
        return Ok(Some(account));
    }
    let account = Account::from_bytes(&state).map_err(|error| state_error(database, error))?;
    database.account_cache.set(state, &account);
    Ok(Some(account))
}

pub(crate) fn store_account(database: &Database, account: &Account) -> Result<(), StoreError> {
    let state = account.to_bytes();
    write_account(&database.connection, &state).map_err(|error| database.error(error))?;
    // Whether this write stays (the unit of work may still roll back) is
    // checked at the next load, against the stored bytes.
    database.account_cache.set(state, account);
    Ok(())
}

pub(crate) fn load_session(
    database: &Database,
    peer: &DeviceAddress,
) -> Result<Option<Session>, StoreError> {
    let state: Option<Zeroizing<Vec<u8>>> = database
        .connection
        .prepare_cached("SELECT state FROM omemo_session WHERE jid = ?1 AND device_id = ?2")
        .and_then(|mut statement| {
            statement
                .query_row(
                    params![peer.jid.as_str(), i64::from(peer.device_id)],
                    |row| row.get::<_, Vec<u8>>(0).map(Zeroizing::new),
                )
                .optional()
        })
        .map_err(|error| database.error(error))?;
    state
        .map(|bytes| Session::from_bytes(&bytes).map_err(|error| state_error(database, error)))
        .transpose()
}

pub(crate) fn store_session(
    database: &Database,
    peer: &DeviceAddress,
    session: &Session,
) -> Result<(), StoreError> {
    write_session(&database.connection, peer, session).map_err(|error| database.error(error))
}

pub(crate) fn delete_session(database: &Database, peer: &DeviceAddress) -> Result<(), StoreError> {
    database
        .connection
        .prepare_cached("DELETE FROM omemo_session WHERE jid = ?1 AND device_id = ?2")
        .and_then(|mut statement| {
            statement.execute(params![peer.jid.as_str(), i64::from(peer.device_id)])
        })
        .map(|_| ())
        .map_err(|error| database.error(error))
}

pub(crate) fn commit_received(
    database: &mut Database,
    peer: &DeviceAddress,
    session: &Session,
    account: Option<&Account>,
    data: &[u8],
) -> Result<u64, StoreError> {
    let path = database.path.clone();
    let fail = |error| StoreError::sqlite(&path, error);
    // A savepoint: its own transaction, or part of an outer one (a unit of
    // work of [`crate::EndpointStore`]).
    let transaction = database.connection.savepoint().map_err(fail)?;
    write_session(&transaction, peer, session).map_err(fail)?;
    let account_state = account.map(|account| (account.to_bytes(), account));
    if let Some((state, _)) = &account_state {
        write_account(&transaction, state).map_err(fail)?;
    }
    transaction
        .prepare_cached(
            "INSERT INTO omemo_pending_message (jid, device_id, sender_identity, data) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                peer.jid.as_str(),
                i64::from(peer.device_id),
                session.remote_identity().as_bytes().as_slice(),
                data
            ])
        })
        .map_err(fail)?;
    let id = transaction.last_insert_rowid();
    transaction.commit().map_err(fail)?;
    if let Some((state, account)) = account_state {
        database.account_cache.set(state, account);
    }
    u64::try_from(id).map_err(|_| StoreError::InvalidRecord {
        path,
        table: "omemo_pending_message",
        detail: format!("negative id {id}"),
    })
}

pub(crate) fn pending_messages(database: &Database) -> Result<Vec<PendingMessage>, StoreError> {
    type Row = (i64, String, i64, Vec<u8>, Zeroizing<Vec<u8>>);
    let rows: Vec<Row> = database
        .connection
        .prepare_cached(
            "SELECT id, jid, device_id, sender_identity, data \
             FROM omemo_pending_message ORDER BY id",
        )
        .and_then(|mut statement| {
            statement
                .query_map([], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        Zeroizing::new(row.get(4)?),
                    ))
                })?
                .collect()
        })
        .map_err(|error| database.error(error))?;
    rows.into_iter()
        .map(|(id, jid, device_id, identity, data)| {
            const TABLE: &str = "omemo_pending_message";
            let jid = BareJid::new(&jid).map_err(|error| {
                invalid(database, TABLE, format!("id {id}: JID {jid:?}: {error}"))
            })?;
            let device_id = u32::try_from(device_id)
                .map_err(|_| invalid(database, TABLE, format!("id {id}: device id {device_id}")))?;
            let sender_identity = IdentityPublicKey::from_slice(&identity)
                .map_err(|error| invalid(database, TABLE, format!("id {id}: identity: {error}")))?;
            let id = u64::try_from(id)
                .map_err(|_| invalid(database, TABLE, format!("negative id {id}")))?;
            Ok(PendingMessage {
                id,
                sender: DeviceAddress { jid, device_id },
                sender_identity,
                data,
            })
        })
        .collect()
}

pub(crate) fn acknowledge(database: &Database, id: u64) -> Result<(), StoreError> {
    let Ok(id) = i64::try_from(id) else {
        return Ok(()); // no such row can exist
    };
    database
        .connection
        .prepare_cached("DELETE FROM omemo_pending_message WHERE id = ?1")
        .and_then(|mut statement| statement.execute(params![id]))
        .map(|_| ())
        .map_err(|error| database.error(error))
}
