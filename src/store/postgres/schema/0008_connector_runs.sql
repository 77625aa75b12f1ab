-- 0008_connector_runs.sql — the run history of connector instances (pg_runs.c); the same table
-- as SQLite's 0016_connector_runs.sql. seq is an identity column (never reused after the oldest
-- rows are pruned: at most 1,000 rows per connector, pruned by every insert).
CREATE TABLE connector_runs (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE,
    tenant_id BIGINT NOT NULL,
    env SMALLINT NOT NULL CHECK (env IN (0, 1)),
    connector_id TEXT NOT NULL,
    trigger TEXT NOT NULL,
    started_usec BIGINT NOT NULL,
    finished_usec BIGINT NOT NULL,
    status SMALLINT NOT NULL CHECK (status IN (0, 1, 2)),
    records_in BIGINT NOT NULL,
    records_rejected BIGINT NOT NULL,
    records_unchanged BIGINT NOT NULL,
    error TEXT,
    dry_run SMALLINT NOT NULL CHECK (dry_run IN (0, 1))
);
CREATE INDEX connector_runs_connector ON connector_runs (connector_id, seq);
