-- 0016_connector_runs.sql — the run history of connector instances (sqlite_runs.c).
--
-- One row per finished run, written through the `ctl` connection in a transaction of its own
-- (never the writer's), with the lease check of a fenced run in the same transaction. seq
-- orders the history and is the list cursor; AUTOINCREMENT so a seq is never reused after the
-- oldest rows are pruned (at most 1,000 rows per connector, pruned by every insert).
-- error is the connector's message about the run, never record values.
CREATE TABLE connector_runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL UNIQUE,
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL CHECK (env IN (0, 1)),
    connector_id TEXT NOT NULL,
    trigger TEXT NOT NULL,
    started_usec INTEGER NOT NULL,
    finished_usec INTEGER NOT NULL,
    status INTEGER NOT NULL CHECK (status IN (0, 1, 2)),
    records_in INTEGER NOT NULL,
    records_rejected INTEGER NOT NULL,
    records_unchanged INTEGER NOT NULL,
    error TEXT,
    dry_run INTEGER NOT NULL CHECK (dry_run IN (0, 1))
);
CREATE INDEX connector_runs_connector ON connector_runs (connector_id, seq);
