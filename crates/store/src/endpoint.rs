//! [`EndpointStore`]: everything one XMPP endpoint keeps, in ONE database file
//! and behind ONE connection (tables `omemo_*`, `trust_*` and `endpoint_*`,
//! migration `0004_endpoint.sql`), so that the effects of one stanza commit
//! together.
//!
//! # Units of work
//!
//! [`EndpointStore::begin`] opens a transaction; everything done until
//! [`EndpointStore::commit`] is one atomic commit: the OMEMO session advance
//! and the pending message of [`SessionStore::commit_received`], the engine's
//! [`TrustStore::commit`], the stanza's deduplication keys, the archive
//! position and the stanzas to send. Inside a unit those inner commits are
//! savepoints. [`EndpointStore::rollback`] (or dropping the store, as a crash
//! does) discards all of it; after a rollback the trust store's rows in memory
//! are reloaded from the file.
//!
//! The OMEMO [`Device`](atm_omemo::device::Device) and the ATM
//! [`Engine`](atm_engine::Engine) each want to own their store: give them the
//! borrowed views [`EndpointStore::sessions`] and [`EndpointStore::trust`],
//! one after the other.

use std::path::Path;

use atm_engine::{
    BareJid, Changeset, Confirmation, KeyId, KeyRecord, KeyRef, Pending, Policy, Postponed,
    Statement, TrustLevel, TrustStore,
};
use atm_omemo::crypto::{Account, DeviceAddress, PendingMessage, Session, SessionStore};
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use zeroize::Zeroizing;

use crate::db::{Database, Durability};
use crate::error::StoreError;
use crate::omemo;
use crate::trust::SqliteTrustStore;

/// A device of an account as the endpoint knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// The account.
    pub jid: BareJid,
    /// The OMEMO device id.
    pub device_id: u32,
    /// Whether it is in the account's current device list.
    pub active: bool,
    /// Its identity key, once its bundle was fetched and verified.
    pub identity: Option<[u8; 32]>,
    /// Its bundle as XML text (the `<bundle/>` element), with the identity.
    pub bundle: Option<String>,
}

/// The whole state of one endpoint in one SQLite file.
#[derive(Debug)]
pub struct EndpointStore {
    trust: SqliteTrustStore,
}

/// [`SessionStore`] over an [`EndpointStore`]'s connection.
#[derive(Debug)]
pub struct SessionView<'a> {
    database: &'a mut Database,
}

/// [`TrustStore`] over an [`EndpointStore`]'s connection.
#[derive(Debug)]
pub struct TrustView<'a> {
    trust: &'a mut SqliteTrustStore,
}

impl EndpointStore {
    /// Opens (or creates) the file at `path`, with the trust scope of
    /// `account` and `encryption`.
    ///
    /// # Errors
    /// See [`Database::open`]: a file of a newer program gives
    /// [`StoreError::NewerSchema`] and is left untouched.
    pub fn open(
        path: impl AsRef<Path>,
        account: &BareJid,
        encryption: &str,
        durability: Durability,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            trust: SqliteTrustStore::open_with(path, account, encryption, durability)?,
        })
    }

    fn database(&self) -> &Database {
        self.trust.database()
    }

    fn connection(&self) -> &rusqlite::Connection {
        &self.trust.database().connection
    }

    fn fail(&self, error: rusqlite::Error) -> StoreError {
        self.database().error(error)
    }

    fn invalid(&self, table: &'static str, detail: String) -> StoreError {
        StoreError::InvalidRecord {
            path: self.database().path.clone(),
            table,
            detail,
        }
    }

    /// The OMEMO state, as a [`SessionStore`].
    pub fn sessions(&mut self) -> SessionView<'_> {
        SessionView {
            database: self.trust.database_mut(),
        }
    }

    /// The trust state, as a [`TrustStore`].
    pub fn trust(&mut self) -> TrustView<'_> {
        TrustView {
            trust: &mut self.trust,
        }
    }

    /// Starts a unit of work (`BEGIN IMMEDIATE`).
    ///
    /// # Errors
    /// A SQLite failure, or a unit already open.
    pub fn begin(&mut self) -> Result<(), StoreError> {
        self.connection()
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.fail(e))
    }

    /// Whether a unit of work is open.
    #[must_use]
    pub fn in_unit(&self) -> bool {
        !self.connection().is_autocommit()
    }

    /// Commits the unit of work. On failure it is rolled back.
    ///
    /// # Errors
    /// A SQLite failure; nothing of the unit was stored then.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        if let Err(error) = self.connection().execute_batch("COMMIT") {
            let error = self.fail(error);
            self.rollback()?;
            return Err(error);
        }
        Ok(())
    }

    /// Discards the unit of work and reloads the trust rows kept in memory.
    ///
    /// # Errors
    /// A SQLite failure.
    pub fn rollback(&mut self) -> Result<(), StoreError> {
        if self.in_unit() {
            self.connection()
                .execute_batch("ROLLBACK")
                .map_err(|e| self.fail(e))?;
        }
        self.trust.reload()
    }

    /// This directory's own device: account and device id.
    ///
    /// # Errors
    /// A SQLite failure or an unreadable row.
    pub fn own_device(&self) -> Result<Option<(BareJid, u32)>, StoreError> {
        let row: Option<(String, i64)> = self
            .connection()
            .query_row(
                "SELECT jid, device_id FROM endpoint_self WHERE id = 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|e| self.fail(e))?;
        row.map(|(jid, device_id)| {
            Ok((
                self.jid("endpoint_self", &jid)?,
                self.device_id("endpoint_self", device_id)?,
            ))
        })
        .transpose()
    }

    /// Records this directory's own device (once).
    ///
    /// # Errors
    /// A SQLite failure, or a device already recorded.
    pub fn set_own_device(&mut self, jid: &BareJid, device_id: u32) -> Result<(), StoreError> {
        self.connection()
            .execute(
                "INSERT INTO endpoint_self (id, jid, device_id) VALUES (1, ?1, ?2)",
                params![jid.as_str(), i64::from(device_id)],
            )
            .map(|_| ())
            .map_err(|e| self.fail(e))
    }

    fn jid(&self, table: &'static str, text: &str) -> Result<BareJid, StoreError> {
        BareJid::new(text).map_err(|e| self.invalid(table, format!("JID {text:?}: {e}")))
    }

    fn device_id(&self, table: &'static str, id: i64) -> Result<u32, StoreError> {
        u32::try_from(id).map_err(|_| self.invalid(table, format!("device id {id}")))
    }

    /// Every known device of `jid`, by device id.
    ///
    /// # Errors
    /// A SQLite failure or an unreadable row.
    pub fn devices_of(&self, jid: &BareJid) -> Result<Vec<DeviceRecord>, StoreError> {
        self.device_rows(
            "SELECT jid, device_id, active, identity, bundle FROM endpoint_device \
             WHERE jid = ?1 ORDER BY device_id",
            params![jid.as_str()],
        )
    }

    /// The device of `jid` whose identity key is `identity`.
    ///
    /// # Errors
    /// A SQLite failure or an unreadable row.
    pub fn device_with_identity(
        &self,
        jid: &BareJid,
        identity: &[u8],
    ) -> Result<Option<DeviceRecord>, StoreError> {
        Ok(self
            .device_rows(
                "SELECT jid, device_id, active, identity, bundle FROM endpoint_device \
                 WHERE jid = ?1 AND identity = ?2 ORDER BY active DESC, device_id LIMIT 1",
                params![jid.as_str(), identity],
            )?
            .pop())
    }

    fn device_rows(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        type Row = (String, i64, i64, Option<Vec<u8>>, Option<String>);
        let rows: Vec<Row> = self
            .connection()
            .prepare_cached(sql)
            .and_then(|mut statement| {
                statement
                    .query_map(args, |row| {
                        Ok((
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                        ))
                    })?
                    .collect()
            })
            .map_err(|e| self.fail(e))?;
        const TABLE: &str = "endpoint_device";
        rows.into_iter()
            .map(|(jid, device_id, active, identity, bundle)| {
                let identity = identity
                    .map(|bytes| {
                        <[u8; 32]>::try_from(bytes.as_slice())
                            .map_err(|_| self.invalid(TABLE, format!("identity of {jid}")))
                    })
                    .transpose()?;
                Ok(DeviceRecord {
                    jid: self.jid(TABLE, &jid)?,
                    device_id: self.device_id(TABLE, device_id)?,
                    active: active == 1,
                    identity,
                    bundle,
                })
            })
            .collect()
    }

    /// Replaces the device list of `jid`: listed devices become active (new
    /// ones are added), others inactive. Returns the listed devices whose
    /// bundle is not known yet.
    ///
    /// # Errors
    /// A SQLite failure.
    pub fn set_device_list(&mut self, jid: &BareJid, ids: &[u32]) -> Result<Vec<u32>, StoreError> {
        let connection = self.connection();
        let fail = |e| self.fail(e);
        connection
            .prepare_cached("UPDATE endpoint_device SET active = 0 WHERE jid = ?1")
            .and_then(|mut s| s.execute(params![jid.as_str()]))
            .map_err(fail)?;
        for id in ids {
            connection
                .prepare_cached(
                    "INSERT INTO endpoint_device (jid, device_id, active) VALUES (?1, ?2, 1) \
                     ON CONFLICT (jid, device_id) DO UPDATE SET active = 1",
                )
                .and_then(|mut s| s.execute(params![jid.as_str(), i64::from(*id)]))
                .map_err(fail)?;
        }
        Ok(self
            .devices_of(jid)?
            .into_iter()
            .filter(|d| d.active && d.identity.is_none())
            .map(|d| d.device_id)
            .collect())
    }

    /// Stores the verified bundle of a device (added to the list if unknown).
    ///
    /// # Errors
    /// A SQLite failure.
    pub fn set_bundle(
        &mut self,
        jid: &BareJid,
        device_id: u32,
        identity: &[u8; 32],
        bundle: &str,
    ) -> Result<(), StoreError> {
        self.connection()
            .prepare_cached(
                "INSERT INTO endpoint_device (jid, device_id, active, identity, bundle) \
                 VALUES (?1, ?2, 1, ?3, ?4) ON CONFLICT (jid, device_id) \
                 DO UPDATE SET identity = excluded.identity, bundle = excluded.bundle",
            )
            .and_then(|mut s| {
                s.execute(params![
                    jid.as_str(),
                    i64::from(device_id),
                    identity.as_slice(),
                    bundle
                ])
            })
            .map(|_| ())
            .map_err(|e| self.fail(e))
    }

    /// Accounts whose devices are followed.
    ///
    /// # Errors
    /// A SQLite failure or an unreadable row.
    pub fn contacts(&self) -> Result<Vec<BareJid>, StoreError> {
        let rows: Vec<String> = self
            .connection()
            .prepare_cached("SELECT jid FROM endpoint_contact ORDER BY jid")
            .and_then(|mut s| s.query_map([], |row| row.get(0))?.collect())
            .map_err(|e| self.fail(e))?;
        rows.iter()
            .map(|jid| self.jid("endpoint_contact", jid))
            .collect()
    }

    /// Follows an account's devices; returns `false` if it already was.
    ///
    /// # Errors
    /// A SQLite failure.
    pub fn add_contact(&mut self, jid: &BareJid) -> Result<bool, StoreError> {
        self.connection()
            .prepare_cached("INSERT INTO endpoint_contact (jid) VALUES (?1) ON CONFLICT DO NOTHING")
            .and_then(|mut s| s.execute(params![jid.as_str()]))
            .map(|n| n == 1)
            .map_err(|e| self.fail(e))
    }

    /// Whether any of `keys` was recorded as processed.
    ///
    /// # Errors
    /// A SQLite failure.
    pub fn any_processed(&self, keys: &[String]) -> Result<bool, StoreError> {
        for key in keys {
            let found: Option<i64> = self
                .connection()
                .prepare_cached("SELECT 1 FROM endpoint_processed WHERE key = ?1")
                .and_then(|mut s| s.query_row(params![key], |row| row.get(0)).optional())
                .map_err(|e| self.fail(e))?;
            if found.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Records `keys` as processed at `now`.
    ///
    /// # Errors
    /// A SQLite failure.
    pub fn mark_processed(
        &mut self,
        keys: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for key in keys {
            self.connection()
                .prepare_cached(
                    "INSERT INTO endpoint_processed (key, time_s) VALUES (?1, ?2) \
                     ON CONFLICT DO NOTHING",
                )
                .and_then(|mut s| s.execute(params![key, now.timestamp()]))
                .map_err(|e| self.fail(e))?;
        }
        Ok(())
    }

    /// Forgets deduplication keys recorded before `before`; returns how many.
    ///
    /// # Errors
    /// A SQLite failure.
    pub fn prune_processed(&mut self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.connection()
            .prepare_cached("DELETE FROM endpoint_processed WHERE time_s < ?1")
            .and_then(|mut s| s.execute(params![before.timestamp()]))
            .map_err(|e| self.fail(e))
    }

    /// How many deduplication keys are recorded.
    ///
    /// # Errors
    /// A SQLite failure.
    pub fn processed_count(&self) -> Result<u64, StoreError> {
        self.connection()
            .query_row("SELECT count(*) FROM endpoint_processed", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(|e| self.fail(e))
    }

    /// A named value.
    ///
    /// # Errors
    /// A SQLite failure.
    pub fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.connection()
            .prepare_cached("SELECT value FROM endpoint_setting WHERE name = ?1")
            .and_then(|mut s| s.query_row(params![name], |row| row.get(0)).optional())
            .map_err(|e| self.fail(e))
    }

    /// Sets a named value.
    ///
    /// # Errors
    /// A SQLite failure.
    pub fn set_setting(&mut self, name: &str, value: &str) -> Result<(), StoreError> {
        self.connection()
            .prepare_cached(
                "INSERT INTO endpoint_setting (name, value) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut s| s.execute(params![name, value]))
            .map(|_| ())
            .map_err(|e| self.fail(e))
    }

    /// Queues a stanza to send; returns its outbox id.
    ///
    /// # Errors
    /// A SQLite failure.
    pub fn push_outbox(&mut self, stanza: &str) -> Result<i64, StoreError> {
        self.connection()
            .prepare_cached("INSERT INTO endpoint_outbox (stanza) VALUES (?1)")
            .and_then(|mut s| s.execute(params![stanza]))
            .map_err(|e| self.fail(e))?;
        Ok(self.connection().last_insert_rowid())
    }

    /// Stanzas waiting to be sent with an id above `after`, oldest first.
    ///
    /// # Errors
    /// A SQLite failure.
    pub fn outbox_after(&self, after: i64) -> Result<Vec<(i64, String)>, StoreError> {
        self.connection()
            .prepare_cached("SELECT id, stanza FROM endpoint_outbox WHERE id > ?1 ORDER BY id")
            .and_then(|mut s| {
                s.query_map(params![after], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            })
            .map_err(|e| self.fail(e))
    }

    /// Removes a sent stanza from the outbox (idempotent).
    ///
    /// # Errors
    /// A SQLite failure.
    pub fn remove_outbox(&mut self, id: i64) -> Result<(), StoreError> {
        self.connection()
            .prepare_cached("DELETE FROM endpoint_outbox WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id]))
            .map(|_| ())
            .map_err(|e| self.fail(e))
    }

    /// The alternate OMEMO session with a device (atm-omemo state bytes).
    ///
    /// # Errors
    /// A SQLite failure.
    pub fn alternate_session(
        &self,
        jid: &BareJid,
        device_id: u32,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        self.connection()
            .prepare_cached(
                "SELECT state FROM endpoint_alternate_session WHERE jid = ?1 AND device_id = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![jid.as_str(), i64::from(device_id)], |row| {
                    row.get::<_, Vec<u8>>(0).map(Zeroizing::new)
                })
                .optional()
            })
            .map_err(|e| self.fail(e))
    }

    /// Replaces (or with `None` removes) the alternate session with a device.
    ///
    /// # Errors
    /// A SQLite failure.
    pub fn set_alternate_session(
        &mut self,
        jid: &BareJid,
        device_id: u32,
        state: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let connection = self.connection();
        let result = match state {
            Some(state) => connection
                .prepare_cached(
                    "INSERT INTO endpoint_alternate_session (jid, device_id, state) \
                     VALUES (?1, ?2, ?3) ON CONFLICT (jid, device_id) \
                     DO UPDATE SET state = excluded.state",
                )
                .and_then(|mut s| s.execute(params![jid.as_str(), i64::from(device_id), state])),
            None => connection
                .prepare_cached(
                    "DELETE FROM endpoint_alternate_session WHERE jid = ?1 AND device_id = ?2",
                )
                .and_then(|mut s| s.execute(params![jid.as_str(), i64::from(device_id)])),
        };
        result.map(|_| ()).map_err(|e| self.fail(e))
    }

    /// Runs SQLite's integrity check.
    ///
    /// # Errors
    /// See [`Database::check_integrity`].
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        self.database().check_integrity()
    }
}

impl SessionStore for SessionView<'_> {
    type Error = StoreError;

    fn load_account(&self) -> Result<Option<Account>, StoreError> {
        omemo::load_account(self.database)
    }

    fn store_account(&mut self, account: &Account) -> Result<(), StoreError> {
        omemo::store_account(self.database, account)
    }

    fn load_session(&self, peer: &DeviceAddress) -> Result<Option<Session>, StoreError> {
        omemo::load_session(self.database, peer)
    }

    fn store_session(&mut self, peer: &DeviceAddress, session: &Session) -> Result<(), StoreError> {
        omemo::store_session(self.database, peer, session)
    }

    fn delete_session(&mut self, peer: &DeviceAddress) -> Result<(), StoreError> {
        omemo::delete_session(self.database, peer)
    }

    fn commit_received(
        &mut self,
        peer: &DeviceAddress,
        session: &Session,
        account: Option<&Account>,
        data: &[u8],
    ) -> Result<u64, StoreError> {
        omemo::commit_received(self.database, peer, session, account, data)
    }

    fn pending_messages(&self) -> Result<Vec<PendingMessage>, StoreError> {
        omemo::pending_messages(self.database)
    }

    fn acknowledge(&mut self, id: u64) -> Result<(), StoreError> {
        omemo::acknowledge(self.database, id)
    }
}

impl TrustStore for TrustView<'_> {
    type Error = StoreError;

    fn key(&mut self, key: &KeyRef) -> Result<Option<KeyRecord>, StoreError> {
        self.trust.key(key)
    }

    fn keys_of(&mut self, owner: &BareJid) -> Result<Vec<(KeyId, KeyRecord)>, StoreError> {
        self.trust.keys_of(owner)
    }

    fn keys_at(&mut self, levels: &[TrustLevel]) -> Result<Vec<(KeyRef, KeyRecord)>, StoreError> {
        self.trust.keys_at(levels)
    }

    fn postponed_from(&mut self, sender: &KeyRef) -> Result<Vec<Postponed>, StoreError> {
        self.trust.postponed_from(sender)
    }

    fn postponed_count_of(&mut self, account: &BareJid) -> Result<u64, StoreError> {
        self.trust.postponed_count_of(account)
    }

    fn postponed_total(&mut self) -> Result<u64, StoreError> {
        self.trust.postponed_total()
    }

    fn postponed_largest(
        &mut self,
        except: &BareJid,
    ) -> Result<Option<(BareJid, u64)>, StoreError> {
        self.trust.postponed_largest(except)
    }

    fn postponed_oldest(
        &mut self,
        account: &BareJid,
        limit: usize,
    ) -> Result<Vec<Postponed>, StoreError> {
        self.trust.postponed_oldest(account, limit)
    }

    fn pending_from(&mut self, sender: &KeyRef) -> Result<Vec<Pending>, StoreError> {
        self.trust.pending_from(sender)
    }

    fn pending_count_of(&mut self, account: &BareJid) -> Result<u64, StoreError> {
        self.trust.pending_count_of(account)
    }

    fn statements_about(&mut self, target: &KeyRef) -> Result<Vec<Statement>, StoreError> {
        self.trust.statements_about(target)
    }

    fn statements_from(&mut self, source: &KeyRef) -> Result<Vec<Statement>, StoreError> {
        self.trust.statements_from(source)
    }

    fn missed_word_of(&mut self, key: &KeyRef) -> Result<bool, StoreError> {
        self.trust.missed_word_of(key)
    }

    fn revocation(&mut self, key: &KeyRef) -> Result<Option<atm_engine::Revocation>, StoreError> {
        self.trust.revocation(key)
    }

    fn statement_of(
        &mut self,
        target: &KeyRef,
        source: &KeyRef,
    ) -> Result<Option<atm_engine::Statement>, StoreError> {
        self.trust.statement_of(target, source)
    }

    fn had_authenticated(&mut self, owner: &BareJid) -> Result<bool, StoreError> {
        self.trust.had_authenticated(owner)
    }

    fn pending_for(&mut self, target: &KeyRef) -> Result<Option<Pending>, StoreError> {
        self.trust.pending_for(target)
    }

    fn confirmation_for(&mut self, target: &KeyRef) -> Result<Option<Confirmation>, StoreError> {
        self.trust.confirmation_for(target)
    }

    fn confirmations(&mut self) -> Result<Vec<Confirmation>, StoreError> {
        self.trust.confirmations()
    }

    fn stored_decision_count(&mut self) -> Result<u64, StoreError> {
        self.trust.stored_decision_count()
    }

    fn policy(&mut self) -> Result<Option<Policy>, StoreError> {
        self.trust.policy()
    }

    fn commit(&mut self, changes: &Changeset) -> Result<(), StoreError> {
        self.trust.commit(changes)
    }
}
