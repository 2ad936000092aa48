-- 0001_init: accounts, roles, tokens, Postgres credentials and the audit log.
-- Times are unix nanoseconds (UTC) in INTEGER columns; 0 means "unset".

CREATE TABLE accounts (
    id             TEXT    NOT NULL PRIMARY KEY,
    username       TEXT    NOT NULL,
    skeleton       TEXT    NOT NULL,
    account_type   TEXT    NOT NULL CHECK (account_type IN ('human', 'system')),
    status         TEXT    NOT NULL CHECK (status IN ('active', 'inactive', 'deleted')),
    password_hash  TEXT    NOT NULL DEFAULT '',
    totp_secret    BLOB,
    totp_enabled   INTEGER NOT NULL DEFAULT 0 CHECK (totp_enabled IN (0, 1)),
    totp_last_step INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 1)
) STRICT;

-- A deleted account frees its username and skeleton: uniqueness holds only
-- among accounts that are not deleted.
CREATE UNIQUE INDEX accounts_username_live ON accounts (username) WHERE status != 'deleted';
CREATE UNIQUE INDEX accounts_skeleton_live ON accounts (skeleton) WHERE status != 'deleted';
-- ListAccounts pages by (created_at, id).
CREATE INDEX accounts_created ON accounts (created_at, id);

CREATE TABLE account_roles (
    account_id TEXT NOT NULL REFERENCES accounts (id),
    role       TEXT NOT NULL CHECK (role != ''),
    PRIMARY KEY (account_id, role)
) STRICT, WITHOUT ROWID;

-- The KeepActiveAdmin guard and the role filter look accounts up by role.
CREATE INDEX account_roles_role ON account_roles (role, account_id);

CREATE TABLE tokens (
    jti           TEXT    NOT NULL PRIMARY KEY,
    account_id    TEXT    NOT NULL REFERENCES accounts (id),
    kind          TEXT    NOT NULL CHECK (kind IN ('session', 'service')),
    audience      TEXT    NOT NULL DEFAULT '',
    kid           TEXT    NOT NULL DEFAULT '',
    issued_at     INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER, -- NULL while the token is not revoked
    revoke_reason TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX tokens_account ON tokens (account_id, issued_at);
CREATE INDEX tokens_issued ON tokens (issued_at, jti);
CREATE INDEX tokens_expires ON tokens (expires_at);
-- The revocation change feed (RevokedAfter) reads only revoked tokens.
CREATE INDEX tokens_revoked ON tokens (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE pg_creds (
    account_id TEXT    NOT NULL PRIMARY KEY REFERENCES accounts (id),
    host       TEXT    NOT NULL,
    port       INTEGER NOT NULL,
    dbname     TEXT    NOT NULL,
    username   TEXT    NOT NULL,
    password   BLOB    NOT NULL, -- sealed by custody
    updated_at INTEGER NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 1)
) STRICT;

-- AUTOINCREMENT: a seq is never reused, even after the newest event is
-- removed, so a sink cursor can never skip a later event.
CREATE TABLE audit_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE,
    time       INTEGER NOT NULL,
    type       TEXT    NOT NULL,
    actor_id   TEXT    NOT NULL DEFAULT '',
    account_id TEXT    NOT NULL DEFAULT '',
    ip         TEXT    NOT NULL DEFAULT '',
    request_id TEXT    NOT NULL DEFAULT '',
    outcome    TEXT    NOT NULL DEFAULT '',
    details    TEXT    NOT NULL DEFAULT '{}' -- JSON object of strings
) STRICT;

CREATE INDEX audit_events_type ON audit_events (type, seq);
CREATE INDEX audit_events_actor ON audit_events (actor_id, seq);
CREATE INDEX audit_events_account ON audit_events (account_id, seq);
CREATE INDEX audit_events_time ON audit_events (time);
