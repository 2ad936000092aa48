-- 0001_init: accounts (roles inline), tokens, Postgres credentials and the audit log.

CREATE TABLE accounts (
    id             text        NOT NULL PRIMARY KEY,
    username       text        NOT NULL,
    skeleton       text        NOT NULL,
    account_type   text        NOT NULL CHECK (account_type IN ('human', 'system')),
    status         text        NOT NULL CHECK (status IN ('active', 'inactive', 'deleted')),
    password_hash  text        NOT NULL DEFAULT '',
    roles          text[]      NOT NULL DEFAULT '{}' CHECK (array_position(roles, '') IS NULL),
    totp_secret    bytea,
    totp_enabled   boolean     NOT NULL DEFAULT false,
    totp_last_step bigint      NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    version        bigint      NOT NULL CHECK (version >= 1)
);

-- A deleted account frees its username and skeleton: uniqueness holds only
-- among accounts that are not deleted.
CREATE UNIQUE INDEX accounts_username_live ON accounts (username) WHERE status <> 'deleted';
CREATE UNIQUE INDEX accounts_skeleton_live ON accounts (skeleton) WHERE status <> 'deleted';
-- ListAccounts pages by (created_at, id).
CREATE INDEX accounts_created ON accounts (created_at, id);
-- The role filter and the KeepActiveAdmin guard look accounts up by role.
CREATE INDEX accounts_roles ON accounts USING gin (roles);

CREATE TABLE tokens (
    jti           text        NOT NULL PRIMARY KEY,
    account_id    text        NOT NULL REFERENCES accounts (id),
    kind          text        NOT NULL CHECK (kind IN ('session', 'service')),
    audience      text        NOT NULL DEFAULT '',
    kid           text        NOT NULL DEFAULT '',
    issued_at     timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz, -- NULL while the token is not revoked
    revoke_reason text        NOT NULL DEFAULT ''
);

CREATE INDEX tokens_account ON tokens (account_id, issued_at);
CREATE INDEX tokens_issued ON tokens (issued_at, jti);
CREATE INDEX tokens_expires ON tokens (expires_at);
-- The revocation change feed (RevokedAfter) reads only revoked tokens.
CREATE INDEX tokens_revoked ON tokens (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE pg_creds (
    account_id text        NOT NULL PRIMARY KEY REFERENCES accounts (id),
    host       text        NOT NULL,
    port       integer     NOT NULL,
    dbname     text        NOT NULL,
    username   text        NOT NULL,
    password   bytea       NOT NULL, -- sealed by custody
    updated_at timestamptz NOT NULL,
    version    bigint      NOT NULL CHECK (version >= 1)
);

-- seq comes from a sequence, which never hands out a number twice; every
-- write transaction holds the store's write lock until it commits, so seq
-- order is commit order and a feed reader never skips a later event.
CREATE TABLE audit_events (
    seq        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         text        NOT NULL UNIQUE,
    time       timestamptz NOT NULL,
    type       text        NOT NULL,
    actor_id   text        NOT NULL DEFAULT '',
    account_id text        NOT NULL DEFAULT '',
    ip         text        NOT NULL DEFAULT '',
    request_id text        NOT NULL DEFAULT '',
    outcome    text        NOT NULL DEFAULT '',
    details    jsonb       NOT NULL DEFAULT '{}' -- JSON object of strings
);

CREATE INDEX audit_events_type ON audit_events (type, seq);
CREATE INDEX audit_events_actor ON audit_events (actor_id, seq);
CREATE INDEX audit_events_account ON audit_events (account_id, seq);
CREATE INDEX audit_events_time ON audit_events (time);
