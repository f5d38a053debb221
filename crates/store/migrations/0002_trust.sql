-- ATM trust state (atm_engine::TrustStore). One scope per (own account,
-- encryption namespace); several scopes may share a file.
-- Times: decision times in UTC as seconds since 1970 and nanoseconds (exact).
-- CHECKs are written with OR, not IN: SQLite evaluates an IN list in a CHECK
-- through an ephemeral table on every row (3,000-row commits 3x slower).

CREATE TABLE trust_scope (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    encryption TEXT NOT NULL,
    policy TEXT CHECK (policy = 'toakafa' OR policy = 'manual'),
    UNIQUE (account, encryption)
) STRICT;

-- trust_key has no REFERENCES to trust_scope: a foreign key check on each of
-- thousands of rows per commit costs more than it protects (the store creates
-- the scope before any row, and never deletes scopes).
CREATE TABLE trust_key (
    scope INTEGER NOT NULL,
    owner TEXT NOT NULL,
    key BLOB NOT NULL CHECK (length(key) > 0),
    level TEXT NOT NULL CHECK (level = 'undecided' OR level = 'automatically_trusted' OR level = 'manually_trusted' OR level = 'authenticated' OR level = 'automatically_distrusted' OR level = 'manually_distrusted'),
    time_s INTEGER,
    time_ns INTEGER CHECK (time_ns BETWEEN 0 AND 1999999999),
    CHECK ((time_s IS NULL) = (time_ns IS NULL)),
    PRIMARY KEY (scope, owner, key)
) STRICT, WITHOUT ROWID;

-- Decisions waiting for their sender's key to be authenticated.
CREATE TABLE trust_postponed (
    scope INTEGER NOT NULL REFERENCES trust_scope (id),
    sender_owner TEXT NOT NULL,
    sender_key BLOB NOT NULL,
    owner TEXT NOT NULL,
    key BLOB NOT NULL,
    kind TEXT NOT NULL CHECK (kind = 'trust' OR kind = 'distrust'),
    time_s INTEGER NOT NULL,
    time_ns INTEGER NOT NULL CHECK (time_ns BETWEEN 0 AND 1999999999),
    PRIMARY KEY (scope, sender_owner, sender_key, owner, key)
) STRICT, WITHOUT ROWID;

-- Decisions waiting for their key to be learned.
CREATE TABLE trust_pending (
    scope INTEGER NOT NULL REFERENCES trust_scope (id),
    owner TEXT NOT NULL,
    key BLOB NOT NULL,
    sender_owner TEXT,
    sender_key BLOB,
    kind TEXT NOT NULL CHECK (kind = 'trust' OR kind = 'distrust'),
    time_s INTEGER NOT NULL,
    time_ns INTEGER NOT NULL CHECK (time_ns BETWEEN 0 AND 1999999999),
    PRIMARY KEY (scope, owner, key)
) STRICT, WITHOUT ROWID;

-- Automatic decisions waiting for the user's answer (confirmation mode).
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
