-- control/0004_observe.sql — when each API key was last used, and the hourly traffic counters
-- (records rejected by source, field and error code; records accepted; answers by status).
--
-- Why control.db: both are written by every server from memory (a key's time at most once a
-- minute, counters once a minute and on shutdown) and must never wait behind the data writer.
-- Neither bumps meta.settings_version: they are traffic, not settings.
--
-- traffic_counts: kind 'rejected' (source = 'ingest' | 'sale_put' | a connector id, field = a
-- bounded field label, code = a bounded error code), 'accepted' (field = the record kind) or
-- 'answer' (source = the route name, code = '2xx' | '4xx' | '5xx'). hour_usec is the UTC hour
-- the counts fell in. Rows older than the retention are deleted by each flush.

ALTER TABLE api_keys ADD COLUMN last_used_usec INTEGER NOT NULL DEFAULT 0;

CREATE TABLE traffic_counts (
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL CHECK (env IN (0, 1)),
    hour_usec INTEGER NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    field TEXT NOT NULL,
    code TEXT NOT NULL,
    n INTEGER NOT NULL CHECK (n >= 0),
    PRIMARY KEY (tenant_id, hour_usec, kind, env, source, field, code)
) WITHOUT ROWID;
CREATE INDEX traffic_counts_hour ON traffic_counts (hour_usec);
