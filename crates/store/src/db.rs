//! Opening a database file: checks, pragmas and numbered migrations.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::error::StoreError;
use crate::omemo::AccountCache;

/// `PRAGMA application_id` of our files: "ATM1".
pub const APPLICATION_ID: i64 = 0x4154_4D31;

/// One numbered schema migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The schema version after this migration (1, 2, ...).
    pub version: i64,
    /// The file name under `crates/store/migrations/`.
    pub name: &'static str,
    /// The SQL text.
    pub sql: &'static str,
}

/// Every migration, in order. Append only: a released migration never changes
/// (the tests pin their text and the resulting schema).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_omemo_sessions.sql",
        sql: include_str!("../migrations/0001_omemo_sessions.sql"),
    },
    Migration {
        version: 2,
        name: "0002_trust.sql",
        sql: include_str!("../migrations/0002_trust.sql"),
    },
    Migration {
        version: 3,
        name: "0003_trust_statements.sql",
        sql: include_str!("../migrations/0003_trust_statements.sql"),
    },
    Migration {
        version: 4,
        name: "0004_endpoint.sql",
        sql: include_str!("../migrations/0004_endpoint.sql"),
    },
    Migration {
        version: 5,
        name: "0005_trust_refs.sql",
        sql: include_str!("../migrations/0005_trust_refs.sql"),
    },
];

/// The schema version this program writes and reads.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous = FULL`: a commit survives a process kill and a power loss.
    #[default]
    Full,
    /// `synchronous = NORMAL` (WAL): a commit survives a process kill; a power
    /// loss may lose the last commits (never corrupts the file).
    Normal,
}

/// An open, migrated database connection and the path it came from.
#[derive(Debug)]
pub struct Database {
    pub(crate) connection: Connection,
    pub(crate) path: PathBuf,
    /// The OMEMO account last read or written through this connection, used
    /// only while the stored bytes are the same ([`crate::omemo`]).
    pub(crate) account_cache: AccountCache,
}

impl Database {
    /// Opens (or creates) the database file at `path` and brings its schema to
    /// [`SCHEMA_VERSION`].
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if the file is not a database,
    /// [`StoreError::NewerSchema`] if a newer program wrote it,
    /// [`StoreError::ForeignDatabase`] if another application's database is
    /// there; in each case the file is left untouched.
    pub fn open(path: impl AsRef<Path>, durability: Durability) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(&path, flags)
            .map_err(|error| StoreError::sqlite(&path, error))?;
        Self::prepare(connection, path, durability, true)
    }

    /// A private in-memory database (tests, short-lived tools).
    ///
    /// # Errors
    /// A SQLite failure.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let path = PathBuf::from(":memory:");
        let connection =
            Connection::open_in_memory().map_err(|error| StoreError::sqlite(&path, error))?;
        Self::prepare(connection, path, Durability::Full, false)
    }

    fn prepare(
        connection: Connection,
        path: PathBuf,
        durability: Durability,
        wal: bool,
    ) -> Result<Self, StoreError> {
        // Batched upserts prepare one statement per batch size and table:
        // keep them all (the default cache holds 16).
        connection.set_prepared_statement_cache_capacity(256);
        let mut database = Self {
            connection,
            path,
            account_cache: AccountCache::default(),
        };
        let fail = |error| StoreError::sqlite(&database.path, error);
        database
            .connection
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(fail)?;
        // Read-only checks first: a file we must not touch stays untouched.
        database.check_identity()?;
        if wal {
            let mode: String = database
                .connection
                .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
                .map_err(fail)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Sqlite {
                    path: database.path.clone(),
                    source: rusqlite::Error::InvalidQuery,
                });
            }
        }
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        // temp_store = MEMORY: a statement that writes several rows (the
        // batched upserts) keeps the old pages it may have to restore in a
        // statement journal; past 64 KiB SQLite spills that journal into a
        // temporary file, a third of a 3,000-key commit's writes. In memory
        // it costs no system call, and no old page lands in a temporary file.
        database
            .connection
            .execute_batch(&format!(
                "PRAGMA foreign_keys = ON; PRAGMA synchronous = {synchronous}; \
                 PRAGMA secure_delete = ON; PRAGMA temp_store = MEMORY;"
            ))
            .map_err(fail)?;
        database.migrate()?;
        Ok(database)
    }

    /// The file this database lives in (`:memory:` for in-memory ones).
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version stored in the file.
    ///
    /// # Errors
    /// A SQLite failure.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|error| self.error(error))
    }

    /// Runs SQLite's full `PRAGMA integrity_check` (reads the whole file).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] with SQLite's findings if the file is damaged.
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        let mut statement = self
            .connection
            .prepare("PRAGMA integrity_check")
            .map_err(|error| self.error(error))?;
        let findings = statement
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(|error| self.error(error))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| self.error(error))?;
        if findings.len() == 1 && findings[0] == "ok" {
            return Ok(());
        }
        let fk_violations: i64 = self
            .connection
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| {
                row.get(0)
            })
            .map_err(|error| self.error(error))?;
        Err(StoreError::Corrupt {
            path: self.path.clone(),
            detail: format!(
                "integrity check: {}; foreign key violations: {fk_violations}",
                findings.join("; ")
            ),
        })
    }

    pub(crate) fn error(&self, error: rusqlite::Error) -> StoreError {
        StoreError::sqlite(&self.path, error)
    }

    fn check_identity(&self) -> Result<(), StoreError> {
        let fail = |error| StoreError::sqlite(&self.path, error);
        let (application_id, version, objects): (i64, i64, i64) = self
            .connection
            .query_row(
                "SELECT (SELECT application_id FROM pragma_application_id), \
                        (SELECT user_version FROM pragma_user_version), \
                        (SELECT count(*) FROM sqlite_schema)",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .map_err(fail)?;
        let fresh = application_id == 0 && version == 0 && objects == 0;
        if !fresh && application_id != APPLICATION_ID {
            return Err(StoreError::ForeignDatabase {
                path: self.path.clone(),
                found: application_id,
            });
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: self.path.clone(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(())
    }

    /// Applies the missing migrations, each in its own transaction together
    /// with the new `user_version` (a crash leaves the previous version).
    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let fail = |error| StoreError::sqlite(&path, error);
        if self.schema_version()? == SCHEMA_VERSION {
            return Ok(());
        }
        for migration in MIGRATIONS {
            let transaction = self
                .connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(fail)?;
            // Re-read inside the write lock: another connection may have migrated.
            let version: i64 = transaction
                .query_row("PRAGMA user_version", [], |row| row.get(0))
                .map_err(fail)?;
            if version > SCHEMA_VERSION {
                return Err(StoreError::NewerSchema {
                    path,
                    found: version,
                    supported: SCHEMA_VERSION,
                });
            }
            if version >= migration.version {
                continue;
            }
            transaction.execute_batch(migration.sql).map_err(fail)?;
            transaction
                .execute_batch(&format!(
                    "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {};",
                    migration.version
                ))
                .map_err(fail)?;
            transaction.commit().map_err(fail)?;
        }
        Ok(())
    }

    /// The schema as SQLite stores it (`sqlite_schema`, sorted by name): used
    /// by the format-stability test.
    ///
    /// # Errors
    /// A SQLite failure.
    pub fn schema_sql(&self) -> Result<String, StoreError> {
        let mut statement = self
            .connection
            .prepare(
                "SELECT type, name, sql FROM sqlite_schema \
                 WHERE sql IS NOT NULL ORDER BY type, name",
            )
            .map_err(|error| self.error(error))?;
        let rows = statement
            .query_map([], |row| {
                Ok(format!(
                    "-- {} {}\n{};\n",
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?
                ))
            })
            .map_err(|error| self.error(error))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| self.error(error))?;
        Ok(rows.concat())
    }
}
