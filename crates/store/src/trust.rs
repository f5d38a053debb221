//! [`SqliteTrustStore`]: the ATM engine's state in SQLite (tables `trust_*`,
//! migrations `0002_trust.sql`, `0003_trust_statements.sql` and
//! `0005_trust_refs.sql`).
//!
//! One store is one scope: an own account and an encryption namespace; several
//! scopes may share a file (and share it with a [`crate::SqliteSessionStore`]).
//! [`TrustStore::commit`] applies a whole [`Changeset`] in one transaction: all
//! of an engine input's effects are stored, or none.
//!
//! Key rows and statements are also kept in memory (loaded when the store
//! opens, updated only after a commit succeeded), so that the engine's many
//! small reads cost no query: applying a trust message of 3,000 keys is one
//! transaction of 3,000 key and 3,000 statement upserts. Key rows and
//! statements name their keys by integer ids (table `trust_ref`, also kept in
//! memory), so that those rows are a few dozen bytes each. A store assumes it
//! is the only writer of its scope.

use std::collections::BTreeMap;
use std::path::Path;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use atm_engine::{
    BareJid, Changeset, Confirmation, Decision, DecisionKind, KeyId, KeyRecord, KeyRef, Pending,
    Policy, Postponed, Revocation, Statement, StatementIndex, TrustLevel, TrustStore, Word,
};
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use crate::db::{Database, Durability};
use crate::error::StoreError;

/// The trust state of one (account, encryption) scope in a SQLite file.
#[derive(Debug)]
pub struct SqliteTrustStore {
    database: Database,
    scope: i64,
    keys: HashMap<BareJid, BTreeMap<KeyId, KeyRecord>>,
    /// Senders with postponed decisions: most keys have none, and asking is
    /// then free.
    postponed_senders: HashSet<KeyRef>,
    /// Senders with pending decisions (as `postponed_senders`).
    pending_senders: HashSet<KeyRef>,
    /// Every statement.
    statements: StatementIndex,
    /// Owners that have had an authenticated key.
    authenticated_owners: HashSet<BareJid>,
    /// Keys whose word was dropped.
    missed: HashSet<KeyRef>,
    /// The last revocation of each key.
    revocations: HashMap<KeyRef, Revocation>,
    /// The id of every key in `trust_ref` (of this scope).
    refs: HashMap<KeyRef, i64>,
}

/// A row of a waiting-decision table: sender, decision, stamp.
type WaitingRow = (Option<KeyRef>, Decision, DateTime<Utc>);

fn kind_text(kind: DecisionKind) -> &'static str {
    match kind {
        DecisionKind::Trust => "trust",
        DecisionKind::Distrust => "distrust",
    }
}

/// A time as stored: seconds since 1970 and nanoseconds (leap seconds above 10^9).
fn time_parts(time: DateTime<Utc>) -> (i64, i64) {
    (time.timestamp(), i64::from(time.timestamp_subsec_nanos()))
}

impl SqliteTrustStore {
    /// Opens (or creates) the file at `path` and the scope of `account` and
    /// `encryption` in it.
    ///
    /// # Errors
    /// See [`Database::open`]; [`StoreError::InvalidRecord`] if a stored row
    /// cannot be read.
    pub fn open(
        path: impl AsRef<Path>,
        account: &BareJid,
        encryption: &str,
    ) -> Result<Self, StoreError> {
        Self::open_with(path, account, encryption, Durability::Full)
    }

    /// Opens with the given durability.
    ///
    /// # Errors
    /// See [`SqliteTrustStore::open`].
    pub fn open_with(
        path: impl AsRef<Path>,
        account: &BareJid,
        encryption: &str,
        durability: Durability,
    ) -> Result<Self, StoreError> {
        Self::from_database(Database::open(path, durability)?, account, encryption)
    }

    /// A private in-memory store (tests).
    ///
    /// # Errors
    /// A SQLite failure.
    pub fn open_in_memory(account: &BareJid, encryption: &str) -> Result<Self, StoreError> {
        Self::from_database(Database::open_in_memory()?, account, encryption)
    }

    /// The scope of `account` and `encryption` in an open database.
    ///
    /// # Errors
    /// A SQLite failure or an unreadable row.
    pub fn from_database(
        database: Database,
        account: &BareJid,
        encryption: &str,
    ) -> Result<Self, StoreError> {
        let fail = |error| database.error(error);
        database
            .connection
            .execute(
                "INSERT INTO trust_scope (account, encryption) VALUES (?1, ?2) \
                 ON CONFLICT (account, encryption) DO NOTHING",
                params![account.as_str(), encryption],
            )
            .map_err(fail)?;
        let scope: i64 = database
            .connection
            .query_row(
                "SELECT id FROM trust_scope WHERE account = ?1 AND encryption = ?2",
                params![account.as_str(), encryption],
                |row| row.get(0),
            )
            .map_err(fail)?;
        let mut store = SqliteTrustStore {
            database,
            scope,
            keys: HashMap::default(),
            postponed_senders: HashSet::default(),
            pending_senders: HashSet::default(),
            statements: StatementIndex::default(),
            authenticated_owners: HashSet::default(),
            missed: HashSet::default(),
            revocations: HashMap::default(),
            refs: HashMap::default(),
        };
        store.load()?;
        Ok(store)
    }

    /// The underlying database (schema version, integrity check).
    #[must_use]
    pub fn database(&self) -> &Database {
        &self.database
    }

    pub(crate) fn database_mut(&mut self) -> &mut Database {
        &mut self.database
    }

    /// Reloads the rows kept in memory from the file: needed after an outer
    /// transaction that contained a [`TrustStore::commit`] was rolled back.
    ///
    /// # Errors
    /// A SQLite failure or an unreadable row; the memory rows are then empty
    /// and the store must not be used further.
    pub fn reload(&mut self) -> Result<(), StoreError> {
        self.keys.clear();
        self.postponed_senders.clear();
        self.pending_senders.clear();
        self.statements = StatementIndex::default();
        self.authenticated_owners.clear();
        self.missed.clear();
        self.revocations.clear();
        self.refs.clear();
        self.load()
    }

    /// Loads the rows kept in memory into empty maps.
    fn load(&mut self) -> Result<(), StoreError> {
        let by_id = self.load_refs()?;
        self.load_keys(&by_id)?;
        self.load_postponed_senders()?;
        self.load_statements(&by_id)?;
        self.load_authenticated_owners()
    }

    /// The keys of this scope's `trust_ref` rows, by id (also kept by key).
    fn load_refs(&mut self) -> Result<HashMap<i64, KeyRef>, StoreError> {
        let table = "trust_ref";
        let rows: Vec<(i64, String, Vec<u8>)> = self.scope_rows(
            "SELECT id, owner, key FROM trust_ref WHERE scope = ?1",
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
        let mut by_id = HashMap::default();
        by_id.reserve(rows.len());
        self.refs.reserve(rows.len());
        for (id, owner, key) in rows {
            let key = self.key_ref(table, &owner, key)?;
            self.refs.insert(key.clone(), id);
            by_id.insert(id, key);
        }
        Ok(by_id)
    }

    /// The key of a ref id read from `table`.
    fn referenced<'m>(
        &self,
        by_id: &'m HashMap<i64, KeyRef>,
        table: &'static str,
        id: i64,
    ) -> Result<&'m KeyRef, StoreError> {
        by_id
            .get(&id)
            .ok_or_else(|| self.invalid(table, format!("ref {id} is not a key of this scope")))
    }

    fn invalid(&self, table: &'static str, detail: String) -> StoreError {
        StoreError::InvalidRecord {
            path: self.database.path.clone(),
            table,
            detail,
        }
    }

    fn jid(&self, table: &'static str, text: &str) -> Result<BareJid, StoreError> {
        text.parse()
            .map_err(|e| self.invalid(table, format!("JID {text:?}: {e}")))
    }

    fn key_id(&self, table: &'static str, bytes: Vec<u8>) -> Result<KeyId, StoreError> {
        KeyId::from_bytes(bytes).map_err(|e| self.invalid(table, e.to_string()))
    }

    fn time(
        &self,
        table: &'static str,
        seconds: i64,
        nanos: i64,
    ) -> Result<DateTime<Utc>, StoreError> {
        u32::try_from(nanos)
            .ok()
            .and_then(|n| DateTime::from_timestamp(seconds, n))
            .ok_or_else(|| self.invalid(table, format!("time {seconds}.{nanos:09} out of range")))
    }

    fn kind(&self, table: &'static str, text: &str) -> Result<DecisionKind, StoreError> {
        match text {
            "trust" => Ok(DecisionKind::Trust),
            "distrust" => Ok(DecisionKind::Distrust),
            other => Err(self.invalid(table, format!("decision kind {other:?}"))),
        }
    }

    fn load_keys(&mut self, by_id: &HashMap<i64, KeyRef>) -> Result<(), StoreError> {
        type Row = (i64, String, Option<i64>, Option<i64>);
        let rows: Vec<Row> = self.scope_rows(
            "SELECT k.ref, k.level, k.time_s, k.time_ns FROM trust_key AS k \
             JOIN trust_ref AS r ON r.id = k.ref WHERE r.scope = ?1",
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )?;
        for (id, level, seconds, nanos) in rows {
            let KeyRef { owner, key } = self.referenced(by_id, "trust_key", id)?.clone();
            let level: TrustLevel = level
                .parse()
                .map_err(|e: atm_engine::UnknownLevel| self.invalid("trust_key", e.to_string()))?;
            let time = match (seconds, nanos) {
                (Some(s), Some(n)) => Some(self.time("trust_key", s, n)?),
                _ => None,
            };
            self.keys
                .entry(owner)
                .or_default()
                .insert(key, KeyRecord { level, time });
        }
        Ok(())
    }

    /// Every row `sql` selects for this scope (`?1`), mapped by `map`.
    fn scope_rows<T>(
        &self,
        sql: &str,
        map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        self.database
            .connection
            .prepare(sql)
            .and_then(|mut statement| {
                statement
                    .query_map(params![self.scope], map)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(|e| self.database.error(e))
    }

    /// Every (owner, key) pair `sql` selects for this scope, as keys.
    fn scope_keys(&self, table: &'static str, sql: &str) -> Result<Vec<KeyRef>, StoreError> {
        self.scope_rows(sql, |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
        })?
        .into_iter()
        .map(|(owner, key)| self.key_ref(table, &owner, key))
        .collect()
    }

    fn key_ref(
        &self,
        table: &'static str,
        owner: &str,
        key: Vec<u8>,
    ) -> Result<KeyRef, StoreError> {
        Ok(KeyRef::new(
            self.jid(table, owner)?,
            self.key_id(table, key)?,
        ))
    }

    fn load_postponed_senders(&mut self) -> Result<(), StoreError> {
        self.postponed_senders = self
            .scope_keys(
                "trust_postponed",
                "SELECT DISTINCT sender_owner, sender_key FROM trust_postponed WHERE scope = ?1",
            )?
            .into_iter()
            .collect();
        self.pending_senders = self
            .scope_keys(
                "trust_pending",
                "SELECT DISTINCT sender_owner, sender_key FROM trust_pending \
                 WHERE scope = ?1 AND sender_owner IS NOT NULL",
            )?
            .into_iter()
            .collect();
        Ok(())
    }

    fn load_statements(&mut self, by_id: &HashMap<i64, KeyRef>) -> Result<(), StoreError> {
        type Row = (i64, i64, String, [i64; 4]);
        let table = "trust_statement";
        let rows: Vec<Row> = self.scope_rows(
            "SELECT s.target, s.source, s.kind, s.time_s, s.time_ns, s.stamp_s, s.stamp_ns \
             FROM trust_statement AS s JOIN trust_ref AS r ON r.id = s.target WHERE r.scope = ?1",
            |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    [row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?],
                ))
            },
        )?;
        for (target, source, kind, [ts, tn, ss, sn]) in rows {
            let statement = Statement {
                source: self.referenced(by_id, table, source)?.clone(),
                decision: Decision {
                    target: self.referenced(by_id, table, target)?.clone(),
                    kind: self.kind(table, &kind)?,
                    time: self.time(table, ts, tn)?,
                },
                stamp: self.time(table, ss, sn)?,
            };
            self.statements.insert(&statement);
        }
        Ok(())
    }

    /// Owners with a first authentication, keys whose word was dropped, and
    /// the last revocation of each key.
    fn load_authenticated_owners(&mut self) -> Result<(), StoreError> {
        let owners: Vec<String> = self.scope_rows(
            "SELECT owner FROM trust_owner_authenticated WHERE scope = ?1",
            |row| row.get(0),
        )?;
        for owner in owners {
            let owner = self.jid("trust_owner_authenticated", &owner)?;
            self.authenticated_owners.insert(owner);
        }
        self.missed = self
            .scope_keys(
                "trust_missed",
                "SELECT owner, key FROM trust_missed WHERE scope = ?1",
            )?
            .into_iter()
            .collect();
        type Row = (String, Vec<u8>, i64, i64, Option<i64>, Option<i64>);
        let table = "trust_revocation";
        let rows: Vec<Row> = self.scope_rows(
            "SELECT owner, key, since_s, since_ns, until_s, until_ns FROM trust_revocation WHERE scope = ?1",
            |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ))
            },
        )?;
        for (owner, key, ss, sn, us, un) in rows {
            let key = self.key_ref(table, &owner, key)?;
            let since = self.time(table, ss, sn)?;
            let until = match (us, un) {
                (Some(s), Some(n)) => Some(self.time(table, s, n)?),
                _ => None,
            };
            self.revocations.insert(key, Revocation { since, until });
        }
        Ok(())
    }

    fn count(&self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Result<u64, StoreError> {
        let count: i64 = self
            .database
            .connection
            .prepare_cached(sql)
            .and_then(|mut s| s.query_row(args, |row| row.get(0)))
            .map_err(|e| self.database.error(e))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Rows of the waiting-decision tables: `sql` selects sender_owner,
    /// sender_key, owner, key, kind, time_s, time_ns, stamp_s, stamp_ns (the
    /// stamp is the decision time for rows written before schema 3).
    fn decision_rows(
        &self,
        sql: &str,
        table: &'static str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<WaitingRow>, StoreError> {
        type Row = (
            Option<String>,
            Option<Vec<u8>>,
            String,
            Vec<u8>,
            String,
            i64,
            i64,
            Option<i64>,
            Option<i64>,
        );
        let rows: Vec<Row> = self
            .database
            .connection
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
                            row.get(5)?,
                            row.get(6)?,
                            row.get(7)?,
                            row.get(8)?,
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(|e| self.database.error(e))?;
        rows.into_iter()
            .map(
                |(sender_owner, sender_key, owner, key, kind, seconds, nanos, ss, sn)| {
                    let sender = match (sender_owner, sender_key) {
                        (Some(o), Some(k)) => {
                            Some(KeyRef::new(self.jid(table, &o)?, self.key_id(table, k)?))
                        }
                        _ => None,
                    };
                    let decision = Decision {
                        target: KeyRef::new(self.jid(table, &owner)?, self.key_id(table, key)?),
                        kind: self.kind(table, &kind)?,
                        time: self.time(table, seconds, nanos)?,
                    };
                    let stamp = match (ss, sn) {
                        (Some(s), Some(n)) => self.time(table, s, n)?,
                        _ => decision.time,
                    };
                    Ok((sender, decision, stamp))
                },
            )
            .collect()
    }

    /// The id of `key` in `trust_ref`: known, added in this commit (`added`),
    /// or inserted now (and then recorded in `added`).
    fn ref_id(&self, key: &KeyRef, added: &mut HashMap<KeyRef, i64>) -> rusqlite::Result<i64> {
        if let Some(id) = self.refs.get(key).or_else(|| added.get(key)) {
            return Ok(*id);
        }
        // DO UPDATE (to the same value) so that RETURNING also gives the id
        // of a row this store did not know of.
        let id: i64 = self
            .database
            .connection
            .prepare_cached(
                "INSERT INTO trust_ref (scope, owner, key) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (scope, owner, key) DO UPDATE SET owner = excluded.owner RETURNING id",
            )?
            .query_row(
                params![self.scope, key.owner.as_str(), key.key.as_bytes()],
                |row| row.get(0),
            )?;
        added.insert(key.clone(), id);
        Ok(id)
    }

    /// The id of `key` if it has one (a key without one is named by no key
    /// row and no statement).
    fn known_ref(&self, key: &KeyRef, added: &HashMap<KeyRef, i64>) -> Option<i64> {
        self.refs.get(key).or_else(|| added.get(key)).copied()
    }

    /// Writes a changeset; the keys it gave an id are added to `added`.
    fn write(&self, changes: &Changeset, added: &mut HashMap<KeyRef, i64>) -> rusqlite::Result<()> {
        use rusqlite::types::ValueRef::{Blob, Integer, Null, Text};
        let connection = &self.database.connection;
        let scope = self.scope;
        let keys = changes
            .keys
            .iter()
            .map(|(key, record)| Ok((self.ref_id(key, added)?, record)))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        upsert_batched(
            connection,
            "trust_key (ref, level, time_s, time_ns)",
            &keys,
            |(id, record), values| {
                let time = record.time.map(time_parts);
                values.push(Integer(*id));
                values.push(Text(record.level.as_str().as_bytes()));
                values.push(time.map_or(Null, |t| Integer(t.0)));
                values.push(time.map_or(Null, |t| Integer(t.1)));
            },
        )?;
        for sender in &changes.release {
            execute_keys(
                connection,
                "DELETE FROM trust_postponed WHERE scope = ?1 AND sender_owner = ?2 AND sender_key = ?3",
                scope,
                &[sender],
            )?;
        }
        for (sender, target) in &changes.evict {
            execute_keys(
                connection,
                "DELETE FROM trust_postponed WHERE scope = ?1 AND sender_owner = ?2 AND sender_key = ?3 \
                 AND owner = ?4 AND key = ?5",
                scope,
                &[sender, target],
            )?;
        }
        for p in &changes.postpone {
            let (seconds, nanos) = time_parts(p.decision.time);
            let (stamp_s, stamp_ns) = time_parts(p.stamp);
            connection
                .prepare_cached(
                    "INSERT INTO trust_postponed (scope, sender_owner, sender_key, owner, key, kind, time_s, time_ns, stamp_s, stamp_ns) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                     ON CONFLICT (scope, sender_owner, sender_key, owner, key) \
                     DO UPDATE SET kind = excluded.kind, time_s = excluded.time_s, time_ns = excluded.time_ns, \
                     stamp_s = excluded.stamp_s, stamp_ns = excluded.stamp_ns",
                )?
                .execute(params![
                    scope,
                    p.sender.owner.as_str(),
                    p.sender.key.as_bytes(),
                    p.decision.target.owner.as_str(),
                    p.decision.target.key.as_bytes(),
                    kind_text(p.decision.kind),
                    seconds,
                    nanos,
                    stamp_s,
                    stamp_ns
                ])?;
        }
        for target in &changes.unpend {
            delete_decision(connection, Waiting::Pending, scope, target)?;
        }
        for p in &changes.pending {
            upsert_decision(
                connection,
                Waiting::Pending,
                scope,
                p.sender.as_ref(),
                &p.decision,
                Some(p.stamp),
            )?;
        }
        for (target, source) in &changes.unstate {
            // Keys without an id have no statement.
            if let (Some(target), Some(source)) =
                (self.known_ref(target, added), self.known_ref(source, added))
            {
                connection
                    .prepare_cached(
                        "DELETE FROM trust_statement WHERE target = ?1 AND source = ?2",
                    )?
                    .execute(params![target, source])?;
            }
        }
        let statements = changes
            .statements
            .iter()
            .map(|s| {
                Ok((
                    self.ref_id(&s.decision.target, added)?,
                    self.ref_id(&s.source, added)?,
                    s,
                ))
            })
            .collect::<rusqlite::Result<Vec<_>>>()?;
        upsert_batched(
            connection,
            "trust_statement (target, source, kind, time_s, time_ns, stamp_s, stamp_ns)",
            &statements,
            |(target, source, statement), values| {
                let (ts, tn) = time_parts(statement.decision.time);
                let (ss, sn) = time_parts(statement.stamp);
                values.push(Integer(*target));
                values.push(Integer(*source));
                values.push(Text(kind_text(statement.decision.kind).as_bytes()));
                for v in [ts, tn, ss, sn] {
                    values.push(Integer(v));
                }
            },
        )?;
        for key in &changes.unmissed {
            execute_keys(
                connection,
                "DELETE FROM trust_missed WHERE scope = ?1 AND owner = ?2 AND key = ?3",
                scope,
                &[key],
            )?;
        }
        for key in &changes.missed {
            execute_keys(
                connection,
                "INSERT INTO trust_missed (scope, owner, key) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (scope, owner, key) DO NOTHING",
                scope,
                &[key],
            )?;
        }
        upsert_batched(
            connection,
            "trust_revocation (scope, owner, key, since_s, since_ns, until_s, until_ns)",
            &changes.revocations,
            |(key, revocation), values| {
                let (ss, sn) = time_parts(revocation.since);
                let until = revocation.until.map(time_parts);
                values.push(Integer(scope));
                values.push(Text(key.owner.as_str().as_bytes()));
                values.push(Blob(key.key.as_bytes()));
                values.push(Integer(ss));
                values.push(Integer(sn));
                values.push(until.map_or(Null, |u| Integer(u.0)));
                values.push(until.map_or(Null, |u| Integer(u.1)));
            },
        )?;
        let mut flagged: HashSet<&BareJid> = HashSet::default();
        for (key, record) in &changes.keys {
            if record.level == TrustLevel::Authenticated
                && !self.authenticated_owners.contains(&key.owner)
                && flagged.insert(&key.owner)
            {
                connection
                    .prepare_cached(
                        "INSERT INTO trust_owner_authenticated (scope, owner) VALUES (?1, ?2) \
                         ON CONFLICT (scope, owner) DO NOTHING",
                    )?
                    .execute(params![scope, key.owner.as_str()])?;
            }
        }
        for target in &changes.unconfirm {
            delete_decision(connection, Waiting::Confirmation, scope, target)?;
        }
        for c in &changes.confirm {
            upsert_decision(
                connection,
                Waiting::Confirmation,
                scope,
                Some(&c.sender),
                &c.decision,
                None,
            )?;
        }
        if let Some(policy) = changes.policy {
            connection
                .prepare_cached("UPDATE trust_scope SET policy = ?2 WHERE id = ?1")?
                .execute(params![scope, policy.as_str()])?;
        }
        Ok(())
    }
}

/// Runs `sql` with the scope as `?1` and each key's owner and bytes as the
/// following pairs of parameters.
fn execute_keys(
    connection: &rusqlite::Connection,
    sql: &str,
    scope: i64,
    keys: &[&KeyRef],
) -> rusqlite::Result<()> {
    use rusqlite::types::ValueRef::{Blob, Integer, Text};
    let mut values = vec![Integer(scope)];
    for key in keys {
        values.push(Text(key.owner.as_str().as_bytes()));
        values.push(Blob(key.key.as_bytes()));
    }
    connection
        .prepare_cached(sql)?
        .execute(rusqlite::params_from_iter(
            values
                .into_iter()
                .map(rusqlite::types::ToSqlOutput::Borrowed),
        ))?;
    Ok(())
}

/// `INSERT OR REPLACE INTO {table_columns} VALUES (...), (...)`, 64 rows per
/// statement (statement overhead dominates single-row upserts); `row` pushes
/// one row's values, as many as the columns. Every column is written: a
/// replaced row is the same as an updated one, and REPLACE is the cheaper of
/// the two in SQLite.
fn upsert_batched<'a, T>(
    connection: &rusqlite::Connection,
    table_columns: &str,
    rows: &'a [T],
    mut row: impl FnMut(&'a T, &mut Vec<rusqlite::types::ValueRef<'a>>),
) -> rusqlite::Result<()> {
    const BATCH: usize = 64;
    let columns = table_columns.matches(',').count() + 1;
    let one = format!("({})", vec!["?"; columns].join(", "));
    let mut values = Vec::with_capacity(BATCH.min(rows.len()) * columns);
    for chunk in rows.chunks(BATCH) {
        values.clear();
        for r in chunk {
            row(r, &mut values);
        }
        let sql = format!(
            "INSERT OR REPLACE INTO {table_columns} VALUES {}",
            vec![one.as_str(); chunk.len()].join(", ")
        );
        let params = rusqlite::params_from_iter(
            values
                .iter()
                .map(|v| rusqlite::types::ToSqlOutput::Borrowed(*v)),
        );
        connection.prepare_cached(&sql)?.execute(params)?;
    }
    Ok(())
}

/// The two tables of decisions kept one per target key: pending (waiting for
/// the key) and confirmation (waiting for the user). Same columns.
#[derive(Clone, Copy)]
enum Waiting {
    Pending,
    Confirmation,
}

impl Waiting {
    fn upsert_sql(self) -> &'static str {
        match self {
            Waiting::Pending => {
                "INSERT INTO trust_pending (scope, owner, key, sender_owner, sender_key, kind, time_s, time_ns, stamp_s, stamp_ns) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT (scope, owner, key) DO UPDATE SET sender_owner = excluded.sender_owner, \
                 sender_key = excluded.sender_key, kind = excluded.kind, time_s = excluded.time_s, \
                 time_ns = excluded.time_ns, stamp_s = excluded.stamp_s, stamp_ns = excluded.stamp_ns"
            }
            Waiting::Confirmation => {
                "INSERT INTO trust_confirmation (scope, owner, key, sender_owner, sender_key, kind, time_s, time_ns) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (scope, owner, key) DO UPDATE SET sender_owner = excluded.sender_owner, \
                 sender_key = excluded.sender_key, kind = excluded.kind, time_s = excluded.time_s, \
                 time_ns = excluded.time_ns"
            }
        }
    }

    fn delete_sql(self) -> &'static str {
        match self {
            Waiting::Pending => {
                "DELETE FROM trust_pending WHERE scope = ?1 AND owner = ?2 AND key = ?3"
            }
            Waiting::Confirmation => {
                "DELETE FROM trust_confirmation WHERE scope = ?1 AND owner = ?2 AND key = ?3"
            }
        }
    }
}

/// Inserts or replaces the waiting decision about `decision.target` (with
/// the stamp of the message that carried it, for pending decisions).
fn upsert_decision(
    connection: &rusqlite::Connection,
    table: Waiting,
    scope: i64,
    sender: Option<&KeyRef>,
    decision: &Decision,
    stamp: Option<DateTime<Utc>>,
) -> rusqlite::Result<()> {
    let (seconds, nanos) = time_parts(decision.time);
    let mut statement = connection.prepare_cached(table.upsert_sql())?;
    let owner = decision.target.owner.as_str();
    let key = decision.target.key.as_bytes();
    let sender_owner = sender.map(|s| s.owner.as_str());
    let sender_key = sender.map(|s| s.key.as_bytes());
    let kind = kind_text(decision.kind);
    match stamp.map(time_parts) {
        Some((stamp_s, stamp_ns)) => statement.execute(params![
            scope,
            owner,
            key,
            sender_owner,
            sender_key,
            kind,
            seconds,
            nanos,
            stamp_s,
            stamp_ns
        ])?,
        None => statement.execute(params![
            scope,
            owner,
            key,
            sender_owner,
            sender_key,
            kind,
            seconds,
            nanos
        ])?,
    };
    Ok(())
}

/// Deletes the waiting decision about `target`.
fn delete_decision(
    connection: &rusqlite::Connection,
    table: Waiting,
    scope: i64,
    target: &KeyRef,
) -> rusqlite::Result<()> {
    connection
        .prepare_cached(table.delete_sql())?
        .execute(params![scope, target.owner.as_str(), target.key.as_bytes()])?;
    Ok(())
}

impl TrustStore for SqliteTrustStore {
    type Error = StoreError;

    fn key(&mut self, key: &KeyRef) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self
            .keys
            .get(&key.owner)
            .and_then(|keys| keys.get(&key.key))
            .copied())
    }

    fn keys_of(&mut self, owner: &BareJid) -> Result<Vec<(KeyId, KeyRecord)>, StoreError> {
        Ok(self
            .keys
            .get(owner)
            .map(|keys| keys.iter().map(|(k, r)| (k.clone(), *r)).collect())
            .unwrap_or_default())
    }

    fn keys_at(&mut self, levels: &[TrustLevel]) -> Result<Vec<(KeyRef, KeyRecord)>, StoreError> {
        let mut out: Vec<(KeyRef, KeyRecord)> = self
            .keys
            .iter()
            .flat_map(|(owner, keys)| {
                keys.iter()
                    .filter(|(_, r)| levels.contains(&r.level))
                    .map(move |(k, r)| (KeyRef::new(owner.clone(), k.clone()), *r))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn postponed_from(&mut self, sender: &KeyRef) -> Result<Vec<Postponed>, StoreError> {
        if !self.postponed_senders.contains(sender) {
            return Ok(Vec::new());
        }
        let rows = self.decision_rows(
            "SELECT sender_owner, sender_key, owner, key, kind, time_s, time_ns, stamp_s, stamp_ns \
             FROM trust_postponed WHERE scope = ?1 AND sender_owner = ?2 AND sender_key = ?3 ORDER BY owner, key",
            "trust_postponed",
            &[&self.scope, &sender.owner.as_str(), &sender.key.as_bytes()],
        )?;
        Ok(rows
            .into_iter()
            .map(|(_, decision, stamp)| Postponed {
                sender: sender.clone(),
                decision,
                stamp,
            })
            .collect())
    }

    fn postponed_count_of(&mut self, account: &BareJid) -> Result<u64, StoreError> {
        self.count(
            "SELECT count(*) FROM trust_postponed WHERE scope = ?1 AND sender_owner = ?2",
            &[&self.scope, &account.as_str()],
        )
    }

    fn postponed_total(&mut self) -> Result<u64, StoreError> {
        self.count(
            "SELECT count(*) FROM trust_postponed WHERE scope = ?1",
            &[&self.scope],
        )
    }

    fn postponed_largest(
        &mut self,
        except: &BareJid,
    ) -> Result<Option<(BareJid, u64)>, StoreError> {
        let row: Option<(String, i64)> = self
            .database
            .connection
            .prepare_cached(
                "SELECT sender_owner, count(*) AS n FROM trust_postponed WHERE scope = ?1 AND sender_owner != ?2 \
                 GROUP BY sender_owner ORDER BY n DESC, sender_owner LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![self.scope, except.as_str()], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
            })
            .optional()
            .map_err(|e| self.database.error(e))?;
        row.map(|(owner, n)| {
            Ok((
                self.jid("trust_postponed", &owner)?,
                u64::try_from(n).unwrap_or(0),
            ))
        })
        .transpose()
    }

    fn postponed_oldest(
        &mut self,
        account: &BareJid,
        limit: usize,
    ) -> Result<Vec<Postponed>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.decision_rows(
            "SELECT sender_owner, sender_key, owner, key, kind, time_s, time_ns, stamp_s, stamp_ns \
             FROM trust_postponed WHERE scope = ?1 AND sender_owner = ?2 \
             ORDER BY time_s, time_ns, sender_owner, sender_key, owner, key LIMIT ?3",
            "trust_postponed",
            &[&self.scope, &account.as_str(), &limit],
        )?;
        rows.into_iter()
            .map(|(sender, decision, stamp)| {
                let sender = sender.ok_or_else(|| {
                    self.invalid(
                        "trust_postponed",
                        "postponed decision without sender".into(),
                    )
                })?;
                Ok(Postponed {
                    sender,
                    decision,
                    stamp,
                })
            })
            .collect()
    }

    fn pending_from(&mut self, sender: &KeyRef) -> Result<Vec<Pending>, StoreError> {
        if !self.pending_senders.contains(sender) {
            return Ok(Vec::new());
        }
        let rows = self.decision_rows(
            "SELECT sender_owner, sender_key, owner, key, kind, time_s, time_ns, stamp_s, stamp_ns \
             FROM trust_pending WHERE scope = ?1 AND sender_owner = ?2 AND sender_key = ?3 ORDER BY owner, key",
            "trust_pending",
            &[&self.scope, &sender.owner.as_str(), &sender.key.as_bytes()],
        )?;
        Ok(rows
            .into_iter()
            .map(|(sender, decision, stamp)| Pending {
                sender,
                decision,
                stamp,
            })
            .collect())
    }

    fn pending_count_of(&mut self, account: &BareJid) -> Result<u64, StoreError> {
        self.count(
            "SELECT count(*) FROM trust_pending WHERE scope = ?1 AND sender_owner = ?2",
            &[&self.scope, &account.as_str()],
        )
    }

    fn statements_about(&mut self, target: &KeyRef) -> Result<Vec<Statement>, StoreError> {
        Ok(self.statements.about(target))
    }

    fn statements_from(&mut self, source: &KeyRef) -> Result<Vec<Statement>, StoreError> {
        Ok(self.statements.from(source))
    }

    fn statement_of(
        &mut self,
        target: &KeyRef,
        source: &KeyRef,
    ) -> Result<Option<Statement>, StoreError> {
        Ok(self.statements.of(target, source))
    }

    fn word_of(&mut self, target: &KeyRef, source: &KeyRef) -> Result<Option<Word>, StoreError> {
        Ok(self.statements.word_of(target, source))
    }

    fn revocation(&mut self, key: &KeyRef) -> Result<Option<Revocation>, StoreError> {
        Ok(self.revocations.get(key).copied())
    }

    fn missed_word_of(&mut self, key: &KeyRef) -> Result<bool, StoreError> {
        Ok(self.missed.contains(key))
    }

    fn had_authenticated(&mut self, owner: &BareJid) -> Result<bool, StoreError> {
        Ok(self.authenticated_owners.contains(owner))
    }

    fn pending_for(&mut self, target: &KeyRef) -> Result<Option<Pending>, StoreError> {
        let rows = self.decision_rows(
            "SELECT sender_owner, sender_key, owner, key, kind, time_s, time_ns, stamp_s, stamp_ns \
             FROM trust_pending WHERE scope = ?1 AND owner = ?2 AND key = ?3",
            "trust_pending",
            &[&self.scope, &target.owner.as_str(), &target.key.as_bytes()],
        )?;
        Ok(rows
            .into_iter()
            .next()
            .map(|(sender, decision, stamp)| Pending {
                sender,
                decision,
                stamp,
            }))
    }

    fn confirmation_for(&mut self, target: &KeyRef) -> Result<Option<Confirmation>, StoreError> {
        Ok(self
            .confirmations()?
            .into_iter()
            .find(|c| c.decision.target == *target))
    }

    fn confirmations(&mut self) -> Result<Vec<Confirmation>, StoreError> {
        let rows = self.decision_rows(
            "SELECT sender_owner, sender_key, owner, key, kind, time_s, time_ns, NULL, NULL \
             FROM trust_confirmation WHERE scope = ?1 ORDER BY owner, key",
            "trust_confirmation",
            &[&self.scope],
        )?;
        rows.into_iter()
            .map(|(sender, decision, _)| {
                let sender = sender.ok_or_else(|| {
                    self.invalid("trust_confirmation", "confirmation without sender".into())
                })?;
                Ok(Confirmation { sender, decision })
            })
            .collect()
    }

    fn stored_decision_count(&mut self) -> Result<u64, StoreError> {
        let count: i64 = self
            .database
            .connection
            .prepare_cached(
                "SELECT (SELECT count(*) FROM trust_postponed WHERE scope = ?1) \
                      + (SELECT count(*) FROM trust_pending WHERE scope = ?1)",
            )
            .and_then(|mut s| s.query_row(params![self.scope], |row| row.get(0)))
            .map_err(|e| self.database.error(e))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn policy(&mut self) -> Result<Option<Policy>, StoreError> {
        let text: Option<String> = self
            .database
            .connection
            .prepare_cached("SELECT policy FROM trust_scope WHERE id = ?1")
            .and_then(|mut s| s.query_row(params![self.scope], |row| row.get(0)))
            .optional()
            .map_err(|e| self.database.error(e))?
            .flatten();
        text.map(|t| {
            t.parse::<Policy>()
                .map_err(|e| self.invalid("trust_scope", e))
        })
        .transpose()
    }

    fn commit(&mut self, changes: &Changeset) -> Result<(), StoreError> {
        // One transaction; the in-memory rows change only once it committed.
        // Inside an outer transaction (a unit of work of
        // [`crate::EndpointStore`]) it is a savepoint of that transaction,
        // and the owner of the outer transaction reloads the rows with
        // [`SqliteTrustStore::reload`] if it rolls back.
        let connection = &self.database.connection;
        let (begin, commit, rollback) = if connection.is_autocommit() {
            ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")
        } else {
            (
                "SAVEPOINT trust_commit",
                "RELEASE trust_commit",
                "ROLLBACK TO trust_commit; RELEASE trust_commit",
            )
        };
        connection
            .execute_batch(begin)
            .map_err(|e| self.database.error(e))?;
        let mut added = HashMap::default();
        match self.write(changes, &mut added) {
            Ok(()) => {
                if let Err(error) = connection.execute_batch(commit) {
                    let _ = connection.execute_batch(rollback);
                    return Err(self.database.error(error));
                }
            }
            Err(error) => {
                let _ = connection.execute_batch(rollback);
                return Err(self.database.error(error));
            }
        }
        self.refs.extend(added);
        for (key, record) in &changes.keys {
            match self.keys.get_mut(&key.owner) {
                Some(keys) => match keys.get_mut(&key.key) {
                    Some(stored) => *stored = *record,
                    None => {
                        keys.insert(key.key.clone(), *record);
                    }
                },
                None => {
                    self.keys
                        .entry(key.owner.clone())
                        .or_default()
                        .insert(key.key.clone(), *record);
                }
            }
        }
        for sender in &changes.release {
            self.postponed_senders.remove(sender);
        }
        for p in &changes.postpone {
            self.postponed_senders.insert(p.sender.clone());
        }
        // A sender stays listed after its pending rows are deleted: the set
        // only saves queries for senders that never had any.
        for p in &changes.pending {
            if let Some(sender) = &p.sender {
                self.pending_senders.insert(sender.clone());
            }
        }
        self.statements.commit(changes);
        for (key, record) in &changes.keys {
            if record.level == TrustLevel::Authenticated
                && !self.authenticated_owners.contains(&key.owner)
            {
                self.authenticated_owners.insert(key.owner.clone());
            }
        }
        for key in &changes.unmissed {
            self.missed.remove(key);
        }
        self.missed.extend(changes.missed.iter().cloned());
        for (key, revocation) in &changes.revocations {
            self.revocations.insert(key.clone(), *revocation);
        }
        Ok(())
    }
}
