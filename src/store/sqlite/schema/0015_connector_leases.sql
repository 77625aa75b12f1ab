-- 0015_connector_leases.sql — which node runs a connector instance now (sqlite_leases.c).
--
-- One row per connector id that was ever leased. until_usec is when the lease ends (0: released,
-- takeable at once); fence is the fencing token, bumped by every take, so a run that lost its
-- lease is refused when it commits (connector_state_put_fenced checks it in the writer's
-- transaction). Rows outlive their connector: a token never goes back.
CREATE TABLE connector_leases (
    connector_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    fence INTEGER NOT NULL,
    until_usec INTEGER NOT NULL
);
