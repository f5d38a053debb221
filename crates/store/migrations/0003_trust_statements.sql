-- Trust rules that hold under attack (issue 9): statements per source, the
-- stamp of the message that carried a waiting decision, and TOAKAFA's memory
-- of first authentications.

-- What each source said about each key: its newest statement. A key's level
-- is the newest decision among them; when a source is distrusted, its
-- statements stamped at or after that distrust are deleted and the key falls
-- back to the others.
CREATE TABLE trust_statement (
    scope INTEGER NOT NULL,
    owner TEXT NOT NULL,
    key BLOB NOT NULL,
    source_owner TEXT NOT NULL,
    source_key BLOB NOT NULL,
    kind TEXT NOT NULL CHECK (kind = 'trust' OR kind = 'distrust'),
    time_s INTEGER NOT NULL,
    time_ns INTEGER NOT NULL CHECK (time_ns BETWEEN 0 AND 1999999999),
    stamp_s INTEGER NOT NULL,
    stamp_ns INTEGER NOT NULL CHECK (stamp_ns BETWEEN 0 AND 1999999999),
    PRIMARY KEY (scope, owner, key, source_owner, source_key)
) STRICT, WITHOUT ROWID;

-- Owners that have had an authenticated key (TOAKAFA: new keys of theirs
-- start distrusted, for good).
CREATE TABLE trust_owner_authenticated (
    scope INTEGER NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (scope, owner)
) STRICT, WITHOUT ROWID;

INSERT INTO trust_owner_authenticated (scope, owner)
    SELECT DISTINCT scope, owner FROM trust_key WHERE level = 'authenticated';

-- When the message that carried a waiting decision was sent, as the receiver
-- knew it. Rows written before this migration have none: their decision time
-- stands in for it.
ALTER TABLE trust_postponed ADD COLUMN stamp_s INTEGER;
ALTER TABLE trust_postponed ADD COLUMN stamp_ns INTEGER CHECK (stamp_ns BETWEEN 0 AND 1999999999);
ALTER TABLE trust_pending ADD COLUMN stamp_s INTEGER;
ALTER TABLE trust_pending ADD COLUMN stamp_ns INTEGER CHECK (stamp_ns BETWEEN 0 AND 1999999999);

-- Pending decisions by sender (dropped when the sender is distrusted;
-- counted per sender account).
CREATE INDEX trust_pending_sender ON trust_pending (scope, sender_owner, sender_key);

-- Keys whose word was dropped (ignored while they were distrusted, or their
-- waiting or void decisions): asked to say it again when authenticated again.
CREATE TABLE trust_missed (
    scope INTEGER NOT NULL,
    owner TEXT NOT NULL,
    key BLOB NOT NULL,
    PRIMARY KEY (scope, owner, key)
) STRICT, WITHOUT ROWID;
