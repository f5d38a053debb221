-- index endpoint_device_identity
CREATE INDEX endpoint_device_identity ON endpoint_device (jid, identity);
-- index trust_pending_sender
CREATE INDEX trust_pending_sender ON trust_pending (scope, sender_owner, sender_key);
-- table endpoint_alternate_session
CREATE TABLE endpoint_alternate_session (
    jid TEXT NOT NULL,
    device_id INTEGER NOT NULL CHECK (device_id BETWEEN 0 AND 4294967295),
    state BLOB NOT NULL,
    PRIMARY KEY (jid, device_id)
) STRICT, WITHOUT ROWID;
-- table endpoint_contact
CREATE TABLE endpoint_contact (
    jid TEXT PRIMARY KEY
) STRICT, WITHOUT ROWID;
-- table endpoint_device
CREATE TABLE endpoint_device (
    jid TEXT NOT NULL,
    device_id INTEGER NOT NULL CHECK (device_id BETWEEN 1 AND 4294967295),
    active INTEGER NOT NULL CHECK (active = 0 OR active = 1),
    identity BLOB CHECK (identity IS NULL OR length(identity) = 32),
    bundle TEXT,
    CHECK ((identity IS NULL) = (bundle IS NULL)),
    PRIMARY KEY (jid, device_id)
) STRICT, WITHOUT ROWID;
-- table endpoint_outbox
CREATE TABLE endpoint_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stanza TEXT NOT NULL
) STRICT;
-- table endpoint_processed
CREATE TABLE endpoint_processed (
    key TEXT PRIMARY KEY,
    time_s INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
-- table endpoint_self
CREATE TABLE endpoint_self (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    jid TEXT NOT NULL,
    device_id INTEGER NOT NULL CHECK (device_id BETWEEN 1 AND 4294967295)
) STRICT;
-- table endpoint_setting
CREATE TABLE endpoint_setting (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT, WITHOUT ROWID;
-- table omemo_account
CREATE TABLE omemo_account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state BLOB NOT NULL
) STRICT;
-- table omemo_pending_message
CREATE TABLE omemo_pending_message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    jid TEXT NOT NULL,
    device_id INTEGER NOT NULL CHECK (device_id BETWEEN 0 AND 4294967295),
    sender_identity BLOB NOT NULL CHECK (length(sender_identity) = 32),
    data BLOB NOT NULL
) STRICT;
-- table omemo_session
CREATE TABLE omemo_session (
    jid TEXT NOT NULL,
    device_id INTEGER NOT NULL CHECK (device_id BETWEEN 0 AND 4294967295),
    state BLOB NOT NULL,
    PRIMARY KEY (jid, device_id)
) STRICT, WITHOUT ROWID;
-- table sqlite_sequence
CREATE TABLE sqlite_sequence(name,seq);
-- table trust_confirmation
CREATE TABLE trust_confirmation (
    scope INTEGER NOT NULL REFERENCES trust_scope (id),
    owner TEXT NOT NULL,
    key BLOB NOT NULL,
    sender_owner TEXT NOT NULL,
    sender_key BLOB NOT NULL,
    kind TEXT NOT NULL CHECK (kind = 'trust' OR kind = 'distrust'),
    time_s INTEGER NOT NULL,
    time_ns INTEGER NOT NULL CHECK (time_ns BETWEEN 0 AND 1999999999),
    PRIMARY KEY (scope, owner, key)
) STRICT, WITHOUT ROWID;
-- table trust_key
CREATE TABLE trust_key (
    ref INTEGER PRIMARY KEY,
    level TEXT NOT NULL CHECK (level = 'undecided' OR level = 'automatically_trusted' OR level = 'manually_trusted' OR level = 'authenticated' OR level = 'automatically_distrusted' OR level = 'manually_distrusted'),
    time_s INTEGER,
    time_ns INTEGER CHECK (time_ns BETWEEN 0 AND 1999999999),
    CHECK ((time_s IS NULL) = (time_ns IS NULL))
) STRICT;
-- table trust_missed
CREATE TABLE trust_missed (
    scope INTEGER NOT NULL,
    owner TEXT NOT NULL,
    key BLOB NOT NULL,
    PRIMARY KEY (scope, owner, key)
) STRICT, WITHOUT ROWID;
-- table trust_owner_authenticated
CREATE TABLE trust_owner_authenticated (
    scope INTEGER NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (scope, owner)
) STRICT, WITHOUT ROWID;
-- table trust_pending
CREATE TABLE trust_pending (
    scope INTEGER NOT NULL REFERENCES trust_scope (id),
    owner TEXT NOT NULL,
    key BLOB NOT NULL,
    sender_owner TEXT,
    sender_key BLOB,
    kind TEXT NOT NULL CHECK (kind = 'trust' OR kind = 'distrust'),
    time_s INTEGER NOT NULL,
    time_ns INTEGER NOT NULL CHECK (time_ns BETWEEN 0 AND 1999999999), stamp_s INTEGER, stamp_ns INTEGER CHECK (stamp_ns BETWEEN 0 AND 1999999999),
    PRIMARY KEY (scope, owner, key)
) STRICT, WITHOUT ROWID;
-- table trust_postponed
CREATE TABLE trust_postponed (
    scope INTEGER NOT NULL REFERENCES trust_scope (id),
    sender_owner TEXT NOT NULL,
    sender_key BLOB NOT NULL,
    owner TEXT NOT NULL,
    key BLOB NOT NULL,
    kind TEXT NOT NULL CHECK (kind = 'trust' OR kind = 'distrust'),
    time_s INTEGER NOT NULL,
    time_ns INTEGER NOT NULL CHECK (time_ns BETWEEN 0 AND 1999999999), stamp_s INTEGER, stamp_ns INTEGER CHECK (stamp_ns BETWEEN 0 AND 1999999999),
    PRIMARY KEY (scope, sender_owner, sender_key, owner, key)
) STRICT, WITHOUT ROWID;
-- table trust_ref
CREATE TABLE trust_ref (
    id INTEGER PRIMARY KEY,
    scope INTEGER NOT NULL,
    owner TEXT NOT NULL,
    key BLOB NOT NULL CHECK (length(key) > 0),
    UNIQUE (scope, owner, key)
) STRICT;
-- table trust_revocation
CREATE TABLE trust_revocation (
    scope INTEGER NOT NULL,
    owner TEXT NOT NULL,
    key BLOB NOT NULL,
    since_s INTEGER NOT NULL,
    since_ns INTEGER NOT NULL CHECK (since_ns BETWEEN 0 AND 1999999999),
    until_s INTEGER,
    until_ns INTEGER CHECK (until_ns BETWEEN 0 AND 1999999999),
    CHECK ((until_s IS NULL) = (until_ns IS NULL)),
    PRIMARY KEY (scope, owner, key)
) STRICT, WITHOUT ROWID;
-- table trust_scope
CREATE TABLE trust_scope (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    encryption TEXT NOT NULL,
    policy TEXT CHECK (policy = 'toakafa' OR policy = 'manual'),
    UNIQUE (account, encryption)
) STRICT;
-- table trust_statement
CREATE TABLE trust_statement (
    target INTEGER NOT NULL,
    source INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind = 'trust' OR kind = 'distrust'),
    time_s INTEGER NOT NULL,
    time_ns INTEGER NOT NULL CHECK (time_ns BETWEEN 0 AND 1999999999),
    stamp_s INTEGER NOT NULL,
    stamp_ns INTEGER NOT NULL CHECK (stamp_ns BETWEEN 0 AND 1999999999),
    PRIMARY KEY (target, source)
) STRICT, WITHOUT ROWID;
