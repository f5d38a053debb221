-- The state of one XMPP endpoint (crate atm-client) next to its OMEMO and
-- trust tables: which device this directory is, what it knows of the
-- network's device lists and bundles, what it has processed, and what it
-- still has to send. One endpoint per file.

-- This directory's own device: its account and OMEMO device id.
CREATE TABLE endpoint_self (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    jid TEXT NOT NULL,
    device_id INTEGER NOT NULL CHECK (device_id BETWEEN 1 AND 4294967295)
) STRICT;

-- Devices of own and contact accounts, from their published device lists;
-- identity and bundle once the bundle was fetched and verified. A device
-- that left the list stays (active = 0): its key keeps its trust.
CREATE TABLE endpoint_device (
    jid TEXT NOT NULL,
    device_id INTEGER NOT NULL CHECK (device_id BETWEEN 1 AND 4294967295),
    active INTEGER NOT NULL CHECK (active = 0 OR active = 1),
    identity BLOB CHECK (identity IS NULL OR length(identity) = 32),
    bundle TEXT,
    CHECK ((identity IS NULL) = (bundle IS NULL)),
    PRIMARY KEY (jid, device_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX endpoint_device_identity ON endpoint_device (jid, identity);

-- Accounts whose device lists are followed.
CREATE TABLE endpoint_contact (
    jid TEXT PRIMARY KEY
) STRICT, WITHOUT ROWID;

-- Stanzas already processed, by their deduplication keys (stanza id and
-- content hash, see atm-client), committed with the stanza's effects.
CREATE TABLE endpoint_processed (
    key TEXT PRIMARY KEY,
    time_s INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Named values: the archive (MAM) position, server quirks learned.
CREATE TABLE endpoint_setting (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT, WITHOUT ROWID;

-- Stanzas to send, committed with the input that caused them and removed
-- once the network driver reports them sent.
CREATE TABLE endpoint_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stanza TEXT NOT NULL
) STRICT;

-- The session a crossing key exchange replaced (both devices sent a first
-- message before either arrived): messages on it are still decrypted.
CREATE TABLE endpoint_alternate_session (
    jid TEXT NOT NULL,
    device_id INTEGER NOT NULL CHECK (device_id BETWEEN 0 AND 4294967295),
    state BLOB NOT NULL,
    PRIMARY KEY (jid, device_id)
) STRICT, WITHOUT ROWID;
