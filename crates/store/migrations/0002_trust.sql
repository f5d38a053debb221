-- ATM trust state (atm_engine::TrustStore). One scope per (own account,
-- encryption namespace); several scopes may share a file.
-- Times are RFC 3339 text in UTC, exactly as the engine holds them.

CREATE TABLE trust_scope (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    encryption TEXT NOT NULL,
    policy TEXT CHECK (policy IN ('toakafa', 'manual')),
    UNIQUE (account, encryption)
) STRICT;

CREATE TABLE trust_key (
    scope INTEGER NOT NULL REFERENCES trust_scope (id),
    owner TEXT NOT NULL,
    key BLOB NOT NULL CHECK (length(key) > 0),
    level TEXT NOT NULL CHECK (level IN ('undecided', 'automatically_trusted',
        'manually_trusted', 'authenticated', 'automatically_distrusted',
        'manually_distrusted')),
    time TEXT,
    PRIMARY KEY (scope, owner, key)
) STRICT, WITHOUT ROWID;

-- Decisions waiting for their sender's key to be authenticated.
CREATE TABLE trust_postponed (
    scope INTEGER NOT NULL REFERENCES trust_scope (id),
    sender_owner TEXT NOT NULL,
    sender_key BLOB NOT NULL,
    owner TEXT NOT NULL,
    key BLOB NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('trust', 'distrust')),
    time TEXT NOT NULL,
    PRIMARY KEY (scope, sender_owner, sender_key, owner, key)
) STRICT, WITHOUT ROWID;

-- Decisions waiting for their key to be learned.
CREATE TABLE trust_pending (
    scope INTEGER NOT NULL REFERENCES trust_scope (id),
    owner TEXT NOT NULL,
    key BLOB NOT NULL,
    sender_owner TEXT,
    sender_key BLOB,
    kind TEXT NOT NULL CHECK (kind IN ('trust', 'distrust')),
    time TEXT NOT NULL,
    PRIMARY KEY (scope, owner, key)
) STRICT, WITHOUT ROWID;

-- Automatic decisions waiting for the user's answer (confirmation mode).
CREATE TABLE trust_confirmation (
    scope INTEGER NOT NULL REFERENCES trust_scope (id),
    owner TEXT NOT NULL,
    key BLOB NOT NULL,
    sender_owner TEXT NOT NULL,
    sender_key BLOB NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('trust', 'distrust')),
    time TEXT NOT NULL,
    PRIMARY KEY (scope, owner, key)
) STRICT, WITHOUT ROWID;
