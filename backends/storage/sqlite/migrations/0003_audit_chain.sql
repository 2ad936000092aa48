-- 0003_audit_chain: the tamper-evident audit chain, per-sink delivery
-- cursors, leases (storage.Leaser) and the key-id token index.
-- prev_hash and hash of events stored before this step are filled in, in
-- seq order, by Go code in the same transaction (migrate.go, fillChain);
-- every later event gets both when it is stored.

ALTER TABLE audit_events ADD COLUMN prev_hash BLOB;
ALTER TABLE audit_events ADD COLUMN hash BLOB;

-- The Seq of the last event each sink has accepted.
CREATE TABLE sink_cursors (
    sink TEXT    NOT NULL PRIMARY KEY,
    seq  INTEGER NOT NULL CHECK (seq >= 0)
) STRICT, WITHOUT ROWID;

-- expires_ns is unix nanoseconds of this host's clock.
CREATE TABLE leases (
    name       TEXT    NOT NULL PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_ns INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Emergency rotation lists the tokens of one key (TokenFilter.KID).
CREATE INDEX tokens_kid ON tokens (kid, issued_at);
