-- control/0001_control.sql — the control plane's own file, DATA/control.db (WAL): tenants, API
-- keys and the settings version. Numbered separately from the data file's migrations (its own
-- user_version).
--
-- Why a second file: SQLite has one write lock per file, and the data writer may hold the data
-- file's lock for many seconds (a reject_file CSV import is one transaction). Revoking a leaked
-- key or creating a tenant must not wait behind that, so nothing the data writer locks holds
-- them. Data connections ATTACH this file read-only as `control`: their statements that join
-- `tenants` resolve to it, and a BEGIN IMMEDIATE on them takes no lock here. Data tables keep
-- tenant_id without a foreign key (a key cannot cross files); tenants are never deleted.
--
-- Stores created before this file existed get their rows copied in by the opener, then the
-- data file's migration 0006_control_plane_file.sql drops its copies (see store_sqlite.c).

CREATE TABLE meta (
    k TEXT PRIMARY KEY NOT NULL,
    v ANY
) WITHOUT ROWID;
INSERT INTO meta (k, v) VALUES ('settings_version', 0);

CREATE TABLE tenants (
    id INTEGER PRIMARY KEY,
    client_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    per_minute INTEGER NOT NULL DEFAULT 500,
    burst INTEGER NOT NULL DEFAULT 1000,
    created_usec INTEGER NOT NULL,
    -- 'email' | 'email_and_last_name' | 'none' (data migration 0003 added it there)
    link_rule TEXT NOT NULL DEFAULT 'email'
);

CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY NOT NULL,
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    env INTEGER NOT NULL CHECK (env IN (0, 1)),
    hash_hex TEXT NOT NULL UNIQUE,
    created_usec INTEGER NOT NULL,
    revoked_usec INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
