-- 0002_login_limits: the token buckets that limit password attempts per
-- client, shared by every node on this database (storage.LoginLimiter).
-- updated_ns is the caller's clock in unix nanoseconds at the last take.

CREATE TABLE login_limits (
    key        text             NOT NULL PRIMARY KEY,
    tokens     double precision NOT NULL,
    updated_ns bigint           NOT NULL,
    granted    boolean          NOT NULL
);

-- Pruning finds the buckets idle long enough to be full again.
CREATE INDEX login_limits_updated ON login_limits (updated_ns);
