-- 0012_segment_snapshots.sql — a segment's members frozen when it is computed, so its count and
-- every page of its members come from the same computation and a page reads ids by keyset
-- instead of computing the rule again (sqlite_segment_snapshots.c). A snapshot holds profile
-- ids only; who of them is still a member (opt-out, suppression, erasure) is checked against
-- profiles at read time. Snapshots expire (expires_usec) and a tenant+env keeps a bounded
-- number of them; `complete` turns 1 once every id is written (readers see complete ones only).

CREATE TABLE segment_snapshots (
    id INTEGER PRIMARY KEY,          -- random, never reused while the row exists
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL,
    segment_id TEXT NOT NULL,
    member_count INTEGER NOT NULL,
    created_usec INTEGER NOT NULL,
    expires_usec INTEGER NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX segment_snapshots_scope ON segment_snapshots (tenant_id, env, created_usec);
CREATE INDEX segment_snapshots_expiry ON segment_snapshots (expires_usec);

CREATE TABLE segment_snapshot_members (
    snapshot_id INTEGER NOT NULL,
    profile_id INTEGER NOT NULL,
    PRIMARY KEY (snapshot_id, profile_id)
) WITHOUT ROWID;
