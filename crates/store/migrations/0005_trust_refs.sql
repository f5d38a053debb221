-- Key rows and statements name their keys by small integers (the 3,000-key
-- trust message): each key that a key row or a statement names is stored once
-- in trust_ref, and those rows carry its id instead of repeating the owner's
-- JID and the key's bytes (up to 100 bytes a key, most of a commit's writes).

-- Every key a key row or a statement names, once per scope. Rows are never
-- deleted (as key rows are not).
CREATE TABLE trust_ref (
    id INTEGER PRIMARY KEY,
    scope INTEGER NOT NULL,
    owner TEXT NOT NULL,
    key BLOB NOT NULL CHECK (length(key) > 0),
    UNIQUE (scope, owner, key)
) STRICT;

INSERT INTO trust_ref (scope, owner, key)
    SELECT scope, owner, key FROM trust_key
    UNION SELECT scope, owner, key FROM trust_statement
    UNION SELECT scope, source_owner, source_key FROM trust_statement
    ORDER BY 1, 2, 3;

-- The trust in one key (its scope is its ref's).
ALTER TABLE trust_key RENAME TO trust_key_v4;

CREATE TABLE trust_key (
    ref INTEGER PRIMARY KEY,
    level TEXT NOT NULL CHECK (level = 'undecided' OR level = 'automatically_trusted' OR level = 'manually_trusted' OR level = 'authenticated' OR level = 'automatically_distrusted' OR level = 'manually_distrusted'),
    time_s INTEGER,
    time_ns INTEGER CHECK (time_ns BETWEEN 0 AND 1999999999),
    CHECK ((time_s IS NULL) = (time_ns IS NULL))
) STRICT;

INSERT INTO trust_key (ref, level, time_s, time_ns)
    SELECT r.id, k.level, k.time_s, k.time_ns
    FROM trust_key_v4 AS k
    JOIN trust_ref AS r ON r.scope = k.scope AND r.owner = k.owner AND r.key = k.key;

DROP TABLE trust_key_v4;

-- What each source said about each key: its newest statement (see
-- 0003_trust_statements.sql), target and source by their refs.
ALTER TABLE trust_statement RENAME TO trust_statement_v4;

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

INSERT INTO trust_statement (target, source, kind, time_s, time_ns, stamp_s, stamp_ns)
    SELECT t.id, s.id, st.kind, st.time_s, st.time_ns, st.stamp_s, st.stamp_ns
    FROM trust_statement_v4 AS st
    JOIN trust_ref AS t ON t.scope = st.scope AND t.owner = st.owner AND t.key = st.key
    JOIN trust_ref AS s ON s.scope = st.scope AND s.owner = st.source_owner AND s.key = st.source_key;

DROP TABLE trust_statement_v4;
