//! The on-disk format: files written by earlier versions keep opening, the
//! schema text is pinned, and unusable files give clear errors and stay untouched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};

use atm_omemo::crypto::{Account, DeterministicRandom, DeviceAddress, Session, SessionStore};
use atm_store::{Database, Durability, SqliteSessionStore, StoreError, MIGRATIONS, SCHEMA_VERSION};
use chrono::DateTime;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A copy of a committed fixture in a temporary directory (opening migrates it).
fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join(name);
    std::fs::copy(data(name), &path).unwrap();
    (directory, path)
}

/// The OMEMO records of the fixtures, regenerated from fixed randomness.
struct OmemoFixture {
    account: Account,
    session: Session,
    peer: DeviceAddress,
    pending: &'static [u8],
}

fn omemo_fixture() -> OmemoFixture {
    let mut rng = DeterministicRandom::new([7; 32]);
    let account = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let remote = Account::generate(DateTime::UNIX_EPOCH, &mut rng).unwrap();
    let session = Session::initiate(account.identity(), &remote.bundle(), &mut rng).unwrap();
    OmemoFixture {
        account,
        session,
        peer: DeviceAddress {
            jid: jid::BareJid::new("bob@example.org").unwrap(),
            device_id: 31337,
        },
        pending: b"pending plaintext",
    }
}

fn write_omemo_fixture(path: &Path) {
    let fixture = omemo_fixture();
    let mut store = SqliteSessionStore::open(path).unwrap();
    store.store_account(&fixture.account).unwrap();
    store
        .store_session(&fixture.peer, &fixture.session)
        .unwrap();
    store
        .commit_received(&fixture.peer, &fixture.session, None, fixture.pending)
        .unwrap();
}

/// The trust records of the fixtures (schema 2 and later).
fn trust_fixture() -> atm_engine::Changeset {
    use atm_engine::{
        Changeset, Decision, DecisionKind, KeyId, KeyRecord, KeyRef, Pending, Policy, Postponed,
        TrustLevel,
    };
    let key = |owner: &str, b: u8| {
        KeyRef::new(owner.parse().unwrap(), KeyId::from_bytes([b; 32]).unwrap())
    };
    let time = |s: i64| {
        DateTime::UNIX_EPOCH + chrono::Duration::seconds(s) + chrono::Duration::nanoseconds(5)
    };
    Changeset {
        keys: vec![
            (
                key("bob@example.org", 1),
                KeyRecord {
                    level: TrustLevel::Authenticated,
                    time: Some(time(10)),
                },
            ),
            (
                key("bob@example.org", 2),
                KeyRecord {
                    level: TrustLevel::AutomaticallyDistrusted,
                    time: None,
                },
            ),
            (
                key("carol@example.org", 3),
                KeyRecord {
                    level: TrustLevel::ManuallyDistrusted,
                    time: Some(time(11)),
                },
            ),
        ],
        postpone: vec![Postponed {
            sender: key("carol@example.org", 4),
            decision: Decision {
                target: key("carol@example.org", 5),
                kind: DecisionKind::Trust,
                time: time(12),
            },
            // Schema 2 kept no stamp: the decision time stands in for it.
            stamp: time(12),
        }],
        pending: vec![Pending {
            sender: Some(key("bob@example.org", 1)),
            decision: Decision {
                target: key("bob@example.org", 6),
                kind: DecisionKind::Distrust,
                time: time(13),
            },
            stamp: time(13),
        }],
        policy: Some(Policy::Manual),
        ..Changeset::default()
    }
}

/// The trust records added by schema 3: statements, remembered first
/// authentications, waiting decisions with a stamp of their own.
fn statements_fixture() -> atm_engine::Changeset {
    use atm_engine::{Changeset, Decision, DecisionKind, KeyId, KeyRef, Postponed, Statement};
    let key = |owner: &str, b: u8| {
        KeyRef::new(owner.parse().unwrap(), KeyId::from_bytes([b; 32]).unwrap())
    };
    let time = |s: i64| {
        DateTime::UNIX_EPOCH + chrono::Duration::seconds(s) + chrono::Duration::nanoseconds(7)
    };
    Changeset {
        statements: vec![
            Statement {
                source: key("alice@example.org", 9),
                decision: Decision {
                    target: key("bob@example.org", 1),
                    kind: DecisionKind::Trust,
                    time: time(10),
                },
                stamp: time(10),
            },
            Statement {
                source: key("dave@example.org", 8),
                decision: Decision {
                    target: key("bob@example.org", 1),
                    kind: DecisionKind::Distrust,
                    time: time(8),
                },
                stamp: time(20),
            },
        ],
        postpone: vec![Postponed {
            sender: key("erin@example.org", 10),
            decision: Decision {
                target: key("erin@example.org", 11),
                kind: DecisionKind::Trust,
                time: time(14),
            },
            stamp: time(15),
        }],
        keys: vec![(
            key("frank@example.org", 12),
            atm_engine::KeyRecord {
                level: atm_engine::TrustLevel::Authenticated,
                time: Some(time(16)),
            },
        )],
        missed: vec![key("erin@example.org", 10)],
        revocations: vec![
            (
                key("erin@example.org", 10),
                atm_engine::Revocation {
                    since: time(17),
                    until: None,
                },
            ),
            (
                key("dave@example.org", 8),
                atm_engine::Revocation {
                    since: time(18),
                    until: Some(time(19)),
                },
            ),
        ],
        ..Changeset::default()
    }
}

fn check_statements_fixture(path: &Path) {
    use atm_engine::{MemoryStore, TrustStore as _};
    let mut expected = MemoryStore::new();
    expected.commit(&statements_fixture()).unwrap();
    let mut store = trust_scope(path);
    let fixture = statements_fixture();
    let target = &fixture.statements[0].decision.target;
    assert_eq!(
        store.statements_about(target).unwrap(),
        expected.statements_about(target).unwrap()
    );
    let source = &fixture.statements[1].source;
    assert_eq!(
        store.statements_from(source).unwrap(),
        expected.statements_from(source).unwrap()
    );
    let sender = &fixture.postpone[0].sender;
    assert_eq!(
        store.postponed_from(sender).unwrap(),
        expected.postponed_from(sender).unwrap()
    );
    assert!(store
        .had_authenticated(&"frank@example.org".parse().unwrap())
        .unwrap());
    assert!(store.missed_word_of(&fixture.missed[0]).unwrap());
    for (key, revocation) in &fixture.revocations {
        assert_eq!(store.revocation(key).unwrap(), Some(*revocation));
    }
    assert!(!store.missed_word_of(source).unwrap());
}

fn trust_scope(path: &Path) -> atm_store::SqliteTrustStore {
    atm_store::SqliteTrustStore::open(
        path,
        &"alice@example.org".parse().unwrap(),
        "urn:xmpp:omemo:2",
    )
    .unwrap()
}

fn write_trust_fixture(path: &Path) {
    use atm_engine::TrustStore as _;
    trust_scope(path).commit(&trust_fixture()).unwrap();
}

fn check_trust_fixture(path: &Path) {
    use atm_engine::{MemoryStore, TrustLevel, TrustStore as _};
    let mut expected = MemoryStore::new();
    expected.commit(&trust_fixture()).unwrap();
    let mut store = trust_scope(path);
    let fixture = trust_fixture();
    // The schema 2 rows (schema 3 fixtures have more).
    let stored: Vec<_> = store
        .keys_at(&TrustLevel::ALL)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| fixture.keys.iter().any(|(f, _)| f == k))
        .collect();
    assert_eq!(stored, expected.keys_at(&TrustLevel::ALL).unwrap());
    let sender = &fixture.postpone[0].sender;
    assert_eq!(
        store.postponed_from(sender).unwrap(),
        expected.postponed_from(sender).unwrap()
    );
    let target = &fixture.pending[0].decision.target;
    assert_eq!(
        store.pending_for(target).unwrap(),
        expected.pending_for(target).unwrap()
    );
    assert!(store.stored_decision_count().unwrap() >= 2);
    assert_eq!(store.policy().unwrap(), Some(atm_engine::Policy::Manual));
    // Schema 3 remembers the owners with an authenticated key (migrated from
    // the key rows of older files).
    assert!(store
        .had_authenticated(&"bob@example.org".parse().unwrap())
        .unwrap());
    assert!(!store
        .had_authenticated(&"carol@example.org".parse().unwrap())
        .unwrap());
}

fn check_omemo_fixture(path: &Path) {
    let fixture = omemo_fixture();
    let store = SqliteSessionStore::open(path).unwrap();
    assert_eq!(
        store.load_account().unwrap().unwrap().to_bytes(),
        fixture.account.to_bytes()
    );
    assert_eq!(
        store
            .load_session(&fixture.peer)
            .unwrap()
            .unwrap()
            .to_bytes(),
        fixture.session.to_bytes()
    );
    let pending = store.pending_messages().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, 1);
    assert_eq!(pending[0].sender, fixture.peer);
    assert_eq!(pending[0].data.as_slice(), fixture.pending);
    assert_eq!(store.database().schema_version().unwrap(), SCHEMA_VERSION);
    store.database().check_integrity().unwrap();
}

/// Folds the WAL into the main file so the fixture is one self-contained file.
fn checkpoint(path: &Path) {
    let connection = rusqlite::Connection::open(path).unwrap();
    connection
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")
        .unwrap();
}

/// Writes the fixtures of the CURRENT schema version. Run once when a migration
/// is added (`cargo test -p atm-store --test format -- --ignored`), commit the
/// new file, and never regenerate an old one.
#[test]
#[ignore = "writes tests/data; run by hand when a schema version is added"]
fn generate_current_fixture() {
    let path = data(&format!("schema_v{SCHEMA_VERSION}.sqlite"));
    assert!(
        !path.exists(),
        "{} exists: fixtures are never rewritten",
        path.display()
    );
    write_omemo_fixture(&path);
    write_trust_fixture(&path);
    {
        use atm_engine::TrustStore as _;
        trust_scope(&path).commit(&statements_fixture()).unwrap();
    }
    checkpoint(&path);
    std::fs::write(
        data(&format!("schema_v{SCHEMA_VERSION}.sql")),
        Database::open(&path, Durability::Full)
            .unwrap()
            .schema_sql()
            .unwrap(),
    )
    .unwrap();
    checkpoint(&path);
}

#[test]
fn schema_v1_file_still_opens_and_reads() {
    let (_directory, path) = copy_fixture("schema_v1.sqlite");
    check_omemo_fixture(&path);
}

#[test]
fn schema_v2_file_still_opens_and_reads() {
    let (_directory, path) = copy_fixture("schema_v2.sqlite");
    check_omemo_fixture(&path);
    check_trust_fixture(&path);
}

#[test]
fn schema_v3_file_still_opens_and_reads() {
    let (_directory, path) = copy_fixture("schema_v3.sqlite");
    check_omemo_fixture(&path);
    check_trust_fixture(&path);
    check_statements_fixture(&path);
}

#[test]
fn schema_v4_file_still_opens_and_reads() {
    let (_directory, path) = copy_fixture("schema_v4.sqlite");
    check_omemo_fixture(&path);
    check_trust_fixture(&path);
    check_statements_fixture(&path);
}

/// A schema 4 file (as the migrations before 0005 leave it) with two scopes
/// naming the same keys, and a statement whose source is not a key row.
fn schema_v4_two_scopes(path: &Path) {
    let connection = rusqlite::Connection::open(path).unwrap();
    for migration in &MIGRATIONS[..4] {
        connection.execute_batch(migration.sql).unwrap();
    }
    connection
        .execute_batch(&format!(
            "PRAGMA application_id = {}; PRAGMA user_version = 4;
             INSERT INTO trust_scope (id, account, encryption) VALUES
                 (1, 'alice@example.org', 'urn:xmpp:omemo:2'),
                 (2, 'alice@example.org', 'eu.siacs.conversations.axolotl');
             INSERT INTO trust_key (scope, owner, key, level, time_s, time_ns) VALUES
                 (1, 'bob@example.org', x'0101', 'authenticated', 10, 5),
                 (1, 'bob@example.org', x'0202', 'automatically_trusted', NULL, NULL),
                 (2, 'bob@example.org', x'0101', 'manually_distrusted', 11, 6);
             INSERT INTO trust_statement (scope, owner, key, source_owner, source_key, kind,
                     time_s, time_ns, stamp_s, stamp_ns) VALUES
                 (1, 'bob@example.org', x'0101', 'alice@example.org', x'0909', 'trust', 10, 5, 12, 0),
                 (1, 'bob@example.org', x'0101', 'bob@example.org', x'0202', 'distrust', 9, 0, 9, 1),
                 (2, 'bob@example.org', x'0101', 'alice@example.org', x'0909', 'distrust', 11, 6, 13, 0);",
            atm_store::APPLICATION_ID
        ))
        .unwrap();
}

#[test]
fn the_v5_migration_carries_keys_and_statements_of_every_scope_over() {
    use atm_engine::{
        Decision, DecisionKind, KeyId, KeyRecord, KeyRef, Statement, TrustLevel, TrustStore as _,
    };
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("v4.sqlite");
    schema_v4_two_scopes(&path);
    let key = |owner: &str, b: u8| {
        KeyRef::new(owner.parse().unwrap(), KeyId::from_bytes([b; 2]).unwrap())
    };
    let time = |s: i64, n: i64| {
        DateTime::UNIX_EPOCH + chrono::Duration::seconds(s) + chrono::Duration::nanoseconds(n)
    };
    let (bob1, bob2, alice9) = (
        key("bob@example.org", 1),
        key("bob@example.org", 2),
        key("alice@example.org", 9),
    );
    let account = "alice@example.org".parse().unwrap();
    let mut omemo2 =
        atm_store::SqliteTrustStore::open(&path, &account, "urn:xmpp:omemo:2").unwrap();
    assert_eq!(omemo2.database().schema_version().unwrap(), SCHEMA_VERSION);
    omemo2.database().check_integrity().unwrap();
    assert_eq!(
        omemo2.keys_at(&TrustLevel::ALL).unwrap(),
        vec![
            (
                bob1.clone(),
                KeyRecord {
                    level: TrustLevel::Authenticated,
                    time: Some(time(10, 5))
                }
            ),
            (
                bob2.clone(),
                KeyRecord {
                    level: TrustLevel::AutomaticallyTrusted,
                    time: None
                }
            ),
        ]
    );
    let statement = |source: &KeyRef, kind, t, stamp| Statement {
        source: source.clone(),
        decision: Decision {
            target: bob1.clone(),
            kind,
            time: t,
        },
        stamp,
    };
    assert_eq!(
        omemo2.statements_about(&bob1).unwrap(),
        vec![
            statement(&alice9, DecisionKind::Trust, time(10, 5), time(12, 0)),
            statement(&bob2, DecisionKind::Distrust, time(9, 0), time(9, 1)),
        ]
    );
    assert_eq!(omemo2.statements_from(&bob2).unwrap().len(), 1);
    drop(omemo2);
    let mut legacy =
        atm_store::SqliteTrustStore::open(&path, &account, "eu.siacs.conversations.axolotl")
            .unwrap();
    assert_eq!(
        legacy.keys_at(&TrustLevel::ALL).unwrap(),
        vec![(
            bob1.clone(),
            KeyRecord {
                level: TrustLevel::ManuallyDistrusted,
                time: Some(time(11, 6))
            }
        )]
    );
    assert_eq!(
        legacy.statements_about(&bob1).unwrap(),
        vec![statement(
            &alice9,
            DecisionKind::Distrust,
            time(11, 6),
            time(13, 0)
        )]
    );
    assert!(legacy.statements_from(&bob2).unwrap().is_empty());
    // Each scope has its own ids: three keys in the first, two in the second.
    let connection = rusqlite::Connection::open(&path).unwrap();
    let refs: Vec<(i64, i64)> = connection
        .prepare("SELECT scope, count(*) FROM trust_ref GROUP BY scope ORDER BY scope")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(refs, vec![(1, 3), (2, 2)]);
}

#[test]
fn a_v4_file_keeps_working_after_the_migration() {
    use atm_engine::{MemoryStore, TrustLevel, TrustStore as _};
    let (_directory, path) = copy_fixture("schema_v4.sqlite");
    // New keys and statements next to the migrated ones, and the same
    // changes again (every row replaced), survive a reopening.
    let mut changes = statements_fixture();
    for statement in &mut changes.statements {
        statement.stamp += chrono::Duration::seconds(100);
    }
    changes.keys.push((
        "grace@example.org"
            .parse::<jid::BareJid>()
            .map(|owner| {
                atm_engine::KeyRef::new(owner, atm_engine::KeyId::from_bytes([13; 32]).unwrap())
            })
            .unwrap(),
        atm_engine::KeyRecord {
            level: TrustLevel::ManuallyDistrusted,
            time: None,
        },
    ));
    let mut expected = MemoryStore::new();
    expected.commit(&statements_fixture()).unwrap();
    expected.commit(&trust_fixture()).unwrap();
    expected.commit(&changes).unwrap();
    trust_scope(&path).commit(&changes).unwrap();
    let mut store = trust_scope(&path);
    assert_eq!(
        store.keys_at(&TrustLevel::ALL).unwrap(),
        expected.keys_at(&TrustLevel::ALL).unwrap()
    );
    for statement in &changes.statements {
        let target = &statement.decision.target;
        assert_eq!(
            store.statements_about(target).unwrap(),
            expected.statements_about(target).unwrap()
        );
        let source = &statement.source;
        assert_eq!(
            store.statements_from(source).unwrap(),
            expected.statements_from(source).unwrap()
        );
    }
    store.database().check_integrity().unwrap();
}

#[test]
fn a_v2_file_gains_statements() {
    let (_directory, path) = copy_fixture("schema_v2.sqlite");
    {
        use atm_engine::TrustStore as _;
        trust_scope(&path).commit(&statements_fixture()).unwrap();
    }
    check_trust_fixture(&path);
    check_statements_fixture(&path);
}

#[test]
fn a_v1_file_gains_the_trust_tables_and_keeps_its_sessions() {
    let (_directory, path) = copy_fixture("schema_v1.sqlite");
    write_trust_fixture(&path);
    check_omemo_fixture(&path);
    check_trust_fixture(&path);
}

#[test]
fn every_committed_fixture_migrates_to_the_current_schema() {
    let fresh = Database::open_in_memory().unwrap().schema_sql().unwrap();
    for version in 1..=SCHEMA_VERSION {
        let name = format!("schema_v{version}.sqlite");
        let (_directory, path) = copy_fixture(&name);
        let database = Database::open(&path, Durability::Full).unwrap();
        assert_eq!(database.schema_version().unwrap(), SCHEMA_VERSION, "{name}");
        assert_eq!(database.schema_sql().unwrap(), fresh, "{name} migrated");
    }
}

/// The schema text is pinned: changing a released migration (instead of adding
/// a new one) fails here.
#[test]
fn schema_text_is_pinned() {
    let pinned = std::fs::read_to_string(data(&format!("schema_v{SCHEMA_VERSION}.sql"))).unwrap();
    let fresh = Database::open_in_memory().unwrap().schema_sql().unwrap();
    assert_eq!(
        fresh, pinned,
        "schema differs from tests/data/schema_v{SCHEMA_VERSION}.sql"
    );
    for (index, migration) in MIGRATIONS.iter().enumerate() {
        assert_eq!(migration.version, index as i64 + 1);
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(migration.name);
        assert_eq!(std::fs::read_to_string(file).unwrap(), migration.sql);
        assert!(migration
            .name
            .starts_with(&format!("{:04}_", migration.version)));
    }
    // Each fixture's own schema is the pinned text of its version.
    for version in 1..=SCHEMA_VERSION {
        let name = format!("schema_v{version}.sqlite");
        let connection = rusqlite::Connection::open_with_flags(
            data(&name),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let stored: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(stored, version, "{name}");
        let pinned = std::fs::read_to_string(data(&format!("schema_v{version}.sql"))).unwrap();
        let mut statement = connection
            .prepare(
                "SELECT type, name, sql FROM sqlite_schema \
                 WHERE sql IS NOT NULL ORDER BY type, name",
            )
            .unwrap();
        let schema: String = statement
            .query_map([], |row| {
                Ok(format!(
                    "-- {} {}\n{};\n",
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(schema, pinned, "{name}");
    }
}

fn assert_untouched(path: &Path, before: &[u8]) {
    assert_eq!(
        std::fs::read(path).unwrap(),
        before,
        "the file was modified"
    );
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    assert!(!Path::new(&wal).exists() || std::fs::metadata(&wal).unwrap().len() == 0);
}

#[test]
fn garbage_file_is_reported_corrupt_and_left_untouched() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("garbage.sqlite");
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &garbage).unwrap();
    let error = SqliteSessionStore::open(&path).unwrap_err();
    assert!(error.is_corrupt(), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("file is not a database"), "{message}");
    assert!(message.contains("garbage.sqlite"), "{message}");
    assert_untouched(&path, &garbage);
}

#[test]
fn damaged_pages_are_reported_corrupt() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("damaged.sqlite");
    {
        let mut store = SqliteSessionStore::open(&path).unwrap();
        let fixture = omemo_fixture();
        for device_id in 0..200 {
            let peer = DeviceAddress {
                jid: fixture.peer.jid.clone(),
                device_id,
            };
            store.store_session(&peer, &fixture.session).unwrap();
        }
    }
    checkpoint(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 16 * 4096);
    for byte in &mut bytes[4096 + 8..12 * 4096] {
        *byte = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let outcome = SqliteSessionStore::open(&path).and_then(|store| {
        store.database().check_integrity()?;
        store.load_session(&omemo_fixture().peer).map(|_| ())
    });
    let error = outcome.unwrap_err();
    assert!(error.is_corrupt(), "{error:?}");
}

#[test]
fn newer_schema_is_refused_and_left_untouched() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("newer.sqlite");
    write_omemo_fixture(&path);
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute_batch(&format!(
                "PRAGMA user_version = {}; PRAGMA journal_mode = DELETE;",
                SCHEMA_VERSION + 1
            ))
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let error = SqliteSessionStore::open(&path).unwrap_err();
    match &error {
        StoreError::NewerSchema {
            found, supported, ..
        } => {
            assert_eq!(*found, SCHEMA_VERSION + 1);
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        other => panic!("{other:?}"),
    }
    assert!(error
        .to_string()
        .contains("newer than this program supports"));
    assert_untouched(&path, &before);
}

#[test]
fn another_applications_database_is_refused_and_left_untouched() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("other.sqlite");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE contacts (name TEXT); INSERT INTO contacts VALUES ('x');")
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    let error = SqliteSessionStore::open(&path).unwrap_err();
    assert!(
        matches!(error, StoreError::ForeignDatabase { found: 0, .. }),
        "{error:?}"
    );
    assert_untouched(&path, &before);
}

#[test]
fn fresh_file_uses_wal_and_foreign_keys() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("fresh.sqlite");
    let database = Database::open(&path, Durability::Normal).unwrap();
    assert_eq!(database.schema_version().unwrap(), SCHEMA_VERSION);
    let connection = rusqlite::Connection::open(&path).unwrap();
    let mode: String = connection
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let id: i64 = connection
        .query_row("PRAGMA application_id", [], |row| row.get(0))
        .unwrap();
    assert_eq!(id, atm_store::APPLICATION_ID);
    // Reopening an up-to-date file is a no-op.
    drop(database);
    let again = Database::open(&path, Durability::Full).unwrap();
    assert_eq!(again.schema_version().unwrap(), SCHEMA_VERSION);
}
