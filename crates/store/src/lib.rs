//! SQLite persistence for the ATM engine and OMEMO sessions.
//!
//! - [`SqliteSessionStore`] implements atm-omemo's
//!   [`SessionStore`](atm_omemo::crypto::SessionStore) (tables `omemo_*`).
//! - [`SqliteTrustStore`] implements atm-engine's
//!   [`TrustStore`](atm_engine::TrustStore) (tables `trust_*`), one scope per
//!   own account and encryption namespace.
//!
//! - [`EndpointStore`] holds all of one XMPP endpoint's state (OMEMO, trust,
//!   device lists and bundles, processed stanzas, archive position, outbox)
//!   behind one connection, with units of work that commit the effects of one
//!   stanza together.
//!
//! Both live in one database file if you like (separate tables). Opening a file:
//! - a fresh file is created and migrated to [`SCHEMA_VERSION`] by the numbered
//!   migrations in `crates/store/migrations/` (`PRAGMA user_version`, one
//!   transaction per migration);
//! - WAL journal, foreign keys on, `synchronous = FULL` by default
//!   ([`Durability`]), `secure_delete` on (deleted sessions and acknowledged
//!   plaintexts are overwritten in the file), temporary data (statement
//!   journals) in memory only;
//! - a file that is not a database, from a newer schema or of another application
//!   gives a [`StoreError`] and is never reset.
//!
//! ```
//! use atm_omemo::crypto::{Account, OsRandom, SessionStore};
//! use atm_store::SqliteSessionStore;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let directory = tempfile::tempdir()?;
//! let path = directory.path().join("device.sqlite");
//! let account = Account::generate(chrono::DateTime::UNIX_EPOCH, &mut OsRandom)?;
//! {
//!     let mut store = SqliteSessionStore::open(&path)?;
//!     store.store_account(&account)?;
//! }
//! let store = SqliteSessionStore::open(&path)?; // after a restart
//! let loaded = store.load_account()?.ok_or("account lost")?;
//! assert_eq!(loaded.identity().public(), account.identity().public());
//! # Ok(())
//! # }
//! ```

mod db;
mod endpoint;
mod error;
mod omemo;
mod trust;

pub use db::{Database, Durability, Migration, APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION};
pub use endpoint::{DeviceRecord, EndpointStore, SessionView, TrustView};
pub use error::StoreError;
pub use omemo::SqliteSessionStore;
pub use trust::SqliteTrustStore;
