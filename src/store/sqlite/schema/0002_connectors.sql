-- 0002_connectors.sql — connectors configured at run time (issue #3) and their state.
--
-- `connectors` is control plane: written by the admin API and the CLI through the `ctl`
-- connection, each change bumping meta.settings_version so every running scheduler reloads.
-- settings holds secrets (passwords, tokens) because the hub must use them; they are never
-- returned by the API or the CLI (the connector's settings table marks them).
--
-- `connector_state` is written ONLY by the single writer, inside the same transaction as the
-- records a run stores: its doc carries the connector's cursor (REST page token, file offset…)
-- plus the run status, so a crash never separates "records stored" from "cursor advanced".
-- The store does not interpret the doc.

CREATE TABLE connectors (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    env INTEGER NOT NULL CHECK (env IN (0, 1)),
    type TEXT NOT NULL,
    schedule TEXT NOT NULL,
    settings TEXT NOT NULL,
    mapping TEXT NOT NULL,
    run_requested_usec INTEGER NOT NULL DEFAULT 0,
    created_usec INTEGER NOT NULL,
    updated_usec INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX connectors_tenant ON connectors (tenant_id, env);

CREATE TABLE connector_state (
    connector_id TEXT PRIMARY KEY NOT NULL,
    doc TEXT NOT NULL,
    updated_usec INTEGER NOT NULL
) WITHOUT ROWID;
