-- 0005_connector_leases.sql — which node runs a connector instance now (pg_leases.c); the same
-- table as SQLite's 0015_connector_leases.sql.
--
-- One row per connector id that was ever leased. until_usec is when the lease ends on the
-- server's clock (0: released, takeable at once); fence is the fencing token, bumped by every
-- take, so a run that lost its lease is refused when it commits. Rows outlive their connector:
-- a token never goes back.
CREATE TABLE connector_leases (
    connector_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    fence BIGINT NOT NULL,
    until_usec BIGINT NOT NULL
);
