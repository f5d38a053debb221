//! The error of every store operation.

use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

/// Why opening or using a store failed. A file that cannot be used is always
/// left untouched: it is never reset, truncated or migrated in a way that loses
/// data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file is not a SQLite database, or its pages are damaged
    /// (SQLite's "file is not a database" or "database disk image is malformed").
    #[error("{}: file is not a database or is corrupt ({detail}); it was left untouched", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite reported.
        detail: String,
    },
    /// The file was written by a newer version of this program (its
    /// `PRAGMA user_version` is higher than the newest migration known here).
    #[error(
        "{}: schema version {found} is newer than this program supports (up to {supported}); \
         use a newer program — the file was left untouched",
        path.display()
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The schema version found in the file.
        found: i64,
        /// The newest schema version this program knows.
        supported: i64,
    },
    /// The file is a SQLite database of another application (its
    /// `PRAGMA application_id` is not ours, or it has tables but no id).
    #[error(
        "{}: a SQLite database of another application (application_id {found:#010x}); \
         it was left untouched",
        path.display()
    )]
    ForeignDatabase {
        /// The database file.
        path: PathBuf,
        /// The application id found.
        found: i64,
    },
    /// A row holds a value the schema allows but the program cannot read
    /// (for example a JID that no longer parses).
    #[error("{}: table {table}: {detail}", path.display())]
    InvalidRecord {
        /// The database file.
        path: PathBuf,
        /// The table holding the row.
        table: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// Stored OMEMO state could not be decoded.
    #[error("{}: stored OMEMO state: {source}", path.display())]
    OmemoState {
        /// The database file.
        path: PathBuf,
        /// The decoding error.
        #[source]
        source: atm_omemo::crypto::StateError,
    },
    /// Any other SQLite failure (I/O error, disk full, locked database...).
    #[error("{}: SQLite: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
}

impl StoreError {
    /// Classifies a SQLite error: damage becomes [`StoreError::Corrupt`].
    pub(crate) fn sqlite(path: &Path, source: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(failure, message) = &source {
            if matches!(
                failure.code,
                ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt
            ) {
                return Self::Corrupt {
                    path: path.to_path_buf(),
                    detail: message.clone().unwrap_or_else(|| failure.to_string()),
                };
            }
        }
        Self::Sqlite {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether this error says the file is damaged.
    #[must_use]
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Self::Corrupt { .. })
    }
}
