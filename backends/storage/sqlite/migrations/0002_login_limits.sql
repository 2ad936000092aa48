-- 0002_login_limits: the token buckets that limit password attempts per
-- client, shared by every process on this file (storage.LoginLimiter).
-- updated_ns is the caller's clock in unix nanoseconds at the last take.

CREATE TABLE login_limits (
    key        TEXT    NOT NULL PRIMARY KEY,
    tokens     REAL    NOT NULL,
    updated_ns INTEGER NOT NULL,
    granted    INTEGER NOT NULL CHECK (granted IN (0, 1))
) STRICT;

-- Pruning finds the buckets idle long enough to be full again.
CREATE INDEX login_limits_updated ON login_limits (updated_ns);
