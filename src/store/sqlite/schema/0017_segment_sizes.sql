-- 0017_segment_sizes.sql — a segment's member count over time: one point per computation, at
-- most one per segment per 10 minutes, kept 400 days (the store enforces both on insert:
-- store/observe.h segment_size_record). Written on the ctl connection, as the segment's own
-- count is. Points of a removed segment are not read any more (the history answers 404) and
-- go with age.

CREATE TABLE segment_sizes (
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL CHECK (env IN (0, 1)),
    segment_id TEXT NOT NULL,
    at_usec INTEGER NOT NULL,
    member_count INTEGER NOT NULL CHECK (member_count >= 0),
    PRIMARY KEY (tenant_id, env, segment_id, at_usec)
) WITHOUT ROWID;
