-- 0001_init.sql — first SQLite schema of stagedoor: control plane (tenants, api_keys, meta) and
-- the record tables (events, event_aliases, customers, sales) plus idempotency entries.
--
-- Every record row is scoped by (tenant_id, env); env is 0 = test, 1 = prod.
--
-- Record tables use the change sequence number `seq` as their rowid (INTEGER PRIMARY KEY) and
-- carry the natural key (tenant_id, env, id) as a UNIQUE constraint. Why: seq is unique and
-- strictly increasing store-wide, so inserts append at the right edge of the table B-tree (the
-- fat JSON docs never cause mid-tree page splits), max(seq) at write_begin is one O(log n)
-- lookup, and an index on (tenant_id, env) is implicitly ordered by seq (the rowid is the last
-- key column of every index), which is exactly the "seq > cursor" paging order. An update
-- assigns a new seq, which moves the row to the right edge (delete + insert of the row).
-- The small lookup tables (aliases, keys, meta) are WITHOUT ROWID.
--
-- Applied inside one transaction by the migration runner, which then sets user_version.

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
    created_usec INTEGER NOT NULL
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

CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    dup_key TEXT NOT NULL,
    doc TEXT NOT NULL,
    updated_usec INTEGER NOT NULL,
    UNIQUE (tenant_id, env, event_id)
);
CREATE INDEX events_seq ON events (tenant_id, env);
CREATE INDEX events_dup_key ON events (tenant_id, env, dup_key);

CREATE TABLE event_aliases (
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL,
    alias_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, env, alias_id)
) WITHOUT ROWID;

CREATE TABLE customers (
    seq INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL,
    customer_id TEXT NOT NULL,
    email_key TEXT,
    ad_opt_out INTEGER, -- NULL unknown, 0, 1
    doc TEXT NOT NULL,
    updated_usec INTEGER NOT NULL,
    UNIQUE (tenant_id, env, customer_id)
);
CREATE INDEX customers_seq ON customers (tenant_id, env);
CREATE INDEX customers_email_key ON customers (tenant_id, env, email_key);

CREATE TABLE sales (
    seq INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL,
    invoice_number TEXT NOT NULL,
    event_id TEXT NOT NULL,  -- as sent (may be an alias)
    event_ref TEXT NOT NULL, -- canonical event id
    customer_id TEXT NOT NULL,
    purchase_datetime TEXT NOT NULL,
    sales_price_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    doc TEXT NOT NULL,
    updated_usec INTEGER NOT NULL,
    UNIQUE (tenant_id, env, invoice_number)
);
CREATE INDEX sales_seq ON sales (tenant_id, env);

CREATE TABLE idempotency (
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL,
    idem_key TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_usec INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, env, idem_key)
) WITHOUT ROWID;
CREATE INDEX idempotency_created ON idempotency (created_usec);
