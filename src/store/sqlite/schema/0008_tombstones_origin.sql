-- 0008_tombstones_origin.sql — deletions in the change feed, and where each record came from.
--
-- tombstones: a record deleted, erased or merged away leaves one row here, written in the same
-- transaction as the deletion and numbered with the next change sequence number, so the change
-- feed (seq > cursor, tombstones and live rows merged in seq order) shows it exactly once, after
-- the record's last change, and a follower at any cursor before it never misses it. A row holds
-- no personal data: the record's id, for customers its source, and the reason. Tombstones are
-- kept (a follower may come back after months); a record stored again later under the same id
-- is a new row with a higher seq, so the feed reads "deleted, then created".
--
-- origin: the connector instance ("con_…") whose batch last changed the row, NULL for the hub's
-- own API; remote_version: the highest version the source gave for the record (0 = none). An
-- update carrying an older remote version than the stored one is not applied.
CREATE TABLE tombstones (
    seq INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL,
    kind INTEGER NOT NULL CHECK (kind IN (0, 1, 2)), -- 0 events, 1 customers, 2 sales
    record_id TEXT NOT NULL,
    source TEXT,                                      -- customers only
    reason TEXT NOT NULL CHECK (reason IN ('deleted', 'erased', 'merged')),
    merged_into TEXT,                                 -- reason 'merged': the surviving record
    origin TEXT,
    created_usec INTEGER NOT NULL
);
CREATE INDEX tombstones_feed ON tombstones (tenant_id, env, kind);

ALTER TABLE events ADD COLUMN origin TEXT;
ALTER TABLE events ADD COLUMN remote_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE customers ADD COLUMN origin TEXT;
ALTER TABLE customers ADD COLUMN remote_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sales ADD COLUMN origin TEXT;
ALTER TABLE sales ADD COLUMN remote_version INTEGER NOT NULL DEFAULT 0;
