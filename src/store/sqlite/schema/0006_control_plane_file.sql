-- 0006_control_plane_file.sql — tenants, API keys and the settings version leave this file for
-- DATA/control.db (schema/control/0001_control.sql says why).
--
-- Before this runs, the opener has copied every tenant and key (and a settings version past
-- this file's) into control.db and committed there, while holding this file's write lock; so a
-- crash between the two commits leaves both copies, and the next open copies again
-- (INSERT OR IGNORE: the same rows) and then runs this. Nothing is lost in either order.
--
-- connectors.tenant_id referenced tenants (id); a foreign key cannot point into another file,
-- so the table is rebuilt without it (tenants are never deleted, and every caller resolves the
-- tenant before it stores a connector).

CREATE TABLE connectors_v6 (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL CHECK (env IN (0, 1)),
    type TEXT NOT NULL,
    schedule TEXT NOT NULL,
    settings TEXT NOT NULL,
    mapping TEXT NOT NULL,
    run_requested_usec INTEGER NOT NULL DEFAULT 0,
    created_usec INTEGER NOT NULL,
    updated_usec INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO connectors_v6 (id, tenant_id, env, type, schedule, settings, mapping,
                           run_requested_usec, created_usec, updated_usec)
    SELECT id, tenant_id, env, type, schedule, settings, mapping, run_requested_usec,
           created_usec, updated_usec
    FROM connectors;
DROP TABLE connectors;
ALTER TABLE connectors_v6 RENAME TO connectors;
CREATE INDEX connectors_tenant ON connectors (tenant_id, env);

DROP TABLE main.api_keys;
DROP TABLE main.tenants;
DELETE FROM main.meta WHERE k = 'settings_version';
