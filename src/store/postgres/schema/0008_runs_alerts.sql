-- 0008_runs_alerts.sql — the run history of connector instances (pg_runs.c), the same table
-- as SQLite's 0016_connector_runs.sql, and alert settings and history (pg_alerts.c), the same
-- tables as SQLite's control/0003_alerts.sql. seq is an identity column (never reused after the oldest
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

-- Alerts: settings per tenant (doc: core's JSON; secret: the signing secret, kept as given
-- because the hub signs with it) and the history, at most 1,000 rows per tenant.
CREATE TABLE alert_settings (
    tenant_id BIGINT PRIMARY KEY,
    doc TEXT NOT NULL,
    secret TEXT,
    updated_usec BIGINT NOT NULL
);

CREATE TABLE alerts (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant_id BIGINT NOT NULL,
    env SMALLINT NOT NULL CHECK (env IN (0, 1)),
    rule TEXT NOT NULL,
    subject TEXT NOT NULL,
    doc TEXT NOT NULL,
    created_usec BIGINT NOT NULL,
    resolved_usec BIGINT NOT NULL DEFAULT 0,
    delivery SMALLINT NOT NULL CHECK (delivery IN (0, 1, 2, 3)),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_usec BIGINT NOT NULL DEFAULT 0,
    delivered_usec BIGINT NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX alerts_tenant ON alerts (tenant_id, seq);
CREATE INDEX alerts_open ON alerts (tenant_id, rule, subject, resolved_usec);
CREATE INDEX alerts_due ON alerts (delivery, next_attempt_usec);
