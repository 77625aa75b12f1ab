-- 0009_observe.sql — when each API key was last used and the hourly traffic counters (the
-- same columns as SQLite's control/0004_observe.sql, which explains them; neither is a settings
-- change: writing them never bumps meta's settings_version), and segment sizes over time.

ALTER TABLE api_keys ADD COLUMN last_used_usec BIGINT NOT NULL DEFAULT 0;

CREATE TABLE traffic_counts (
    tenant_id BIGINT NOT NULL,
    env SMALLINT NOT NULL CHECK (env IN (0, 1)),
    hour_usec BIGINT NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    field TEXT NOT NULL,
    code TEXT NOT NULL,
    n BIGINT NOT NULL CHECK (n >= 0),
    PRIMARY KEY (tenant_id, hour_usec, kind, env, source, field, code)
);
CREATE INDEX traffic_counts_hour ON traffic_counts (hour_usec);

-- A segment's member count over time; the same columns as SQLite's 0017_segment_sizes.sql
-- (which explains them).
CREATE TABLE segment_sizes (
    tenant_id BIGINT NOT NULL,
    env SMALLINT NOT NULL CHECK (env IN (0, 1)),
    segment_id TEXT NOT NULL,
    at_usec BIGINT NOT NULL,
    member_count BIGINT NOT NULL CHECK (member_count >= 0),
    PRIMARY KEY (tenant_id, env, segment_id, at_usec)
);
