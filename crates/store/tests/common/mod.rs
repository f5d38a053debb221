//! Helpers shared by the store's test binaries.
#![allow(clippy::unwrap_used)]

/// Makes every insert of a pending message fail (`broken`), through another
/// connection, as a full disk would in the middle of `commit_received` (after
/// the session and account were written); `false` repairs it.
pub fn break_pending_inserts(path: &std::path::Path, broken: bool) {
    let connection = rusqlite::Connection::open(path).unwrap();
    if broken {
        connection
            .execute_batch(
                "CREATE TRIGGER fail_pending BEFORE INSERT ON omemo_pending_message \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .unwrap();
    } else {
        connection
            .execute_batch("DROP TRIGGER fail_pending")
            .unwrap();
    }
}
