-- OMEMO 2 state of one device (atm_omemo::crypto::SessionStore).
-- Blobs are atm_omemo's versioned state format (STATE_FORMAT_VERSION).

CREATE TABLE omemo_account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state BLOB NOT NULL
) STRICT;

CREATE TABLE omemo_session (
    jid TEXT NOT NULL,
    device_id INTEGER NOT NULL CHECK (device_id BETWEEN 0 AND 4294967295),
    state BLOB NOT NULL,
    PRIMARY KEY (jid, device_id)
) STRICT, WITHOUT ROWID;

-- Decrypted but not yet acted upon ("decrypt, persist, act").
-- AUTOINCREMENT: an acknowledged id is never handed out again.
CREATE TABLE omemo_pending_message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    jid TEXT NOT NULL,
    device_id INTEGER NOT NULL CHECK (device_id BETWEEN 0 AND 4294967295),
    sender_identity BLOB NOT NULL CHECK (length(sender_identity) = 32),
    data BLOB NOT NULL
) STRICT;
