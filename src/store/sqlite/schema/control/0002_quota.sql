-- control/0002_quota.sql — the quota ledger: calls made per credential and fixed window.
--
-- Why control.db: a pull run and the outbox of every instance that uses one vendor credential
-- share one budget, and a take must never wait behind the data writer (a long import holds the
-- data file's write lock). Ledger writes do not bump meta.settings_version: they are traffic,
-- not settings, and a bump would make every server reload its auth cache once per call.
--
-- One row per (credential, quota, window). Windows are fixed and aligned to the Unix epoch by
-- the caller (start_usec is a multiple of the window length): a minute window is a wall-clock
-- minute, a day window a UTC day. Rows whose window has ended carry nothing anyone needs any
-- more; every take deletes them (end_usec is indexed for that).
--
-- cred_key is the connector type, ":" and the hex SHA-256 of the credential's setting values
-- (core/quota.c), never a secret itself.

CREATE TABLE quota_windows (
    cred_key TEXT NOT NULL,
    name TEXT NOT NULL,
    start_usec INTEGER NOT NULL,
    end_usec INTEGER NOT NULL,
    used INTEGER NOT NULL CHECK (used >= 0),
    PRIMARY KEY (cred_key, name, start_usec)
) WITHOUT ROWID;
CREATE INDEX quota_windows_end ON quota_windows (end_usec);
