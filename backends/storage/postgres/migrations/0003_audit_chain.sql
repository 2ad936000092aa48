-- 0003_audit_chain: the tamper-evident audit chain, per-sink delivery
-- cursors, leases (storage.Leaser) and the key-id token index.
-- prev_hash and hash of events stored before this step are filled in, in
-- seq order, by Go code in the same transaction (migrate.go, fillChain);
-- ALTER TABLE holds audit_events exclusively until the step commits, so no
-- node appends meanwhile. Every later event gets both when it is stored.

ALTER TABLE audit_events ADD COLUMN prev_hash bytea, ADD COLUMN hash bytea;

-- The Seq of the last event each sink has accepted.
CREATE TABLE sink_cursors (
    sink text   NOT NULL PRIMARY KEY,
    seq  bigint NOT NULL CHECK (seq >= 0)
);

-- expires_at follows the database clock (now()), never a node's.
CREATE TABLE leases (
    name       text        NOT NULL PRIMARY KEY,
    holder     text        NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Emergency rotation lists the tokens of one key (TokenFilter.KID).
CREATE INDEX tokens_kid ON tokens (kid, issued_at);
