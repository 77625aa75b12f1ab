-- 0003_audiences.sql — unified customers, segments and the audience push (issue #4).
--
-- Customers become source records: the same customer_id may come from several systems
-- (webhook, a CSV export, a CRM), so a record is keyed by (tenant, env, source, customer_id)
-- and remembers the profile it is linked to. SQLite cannot change a UNIQUE constraint in
-- place, so the table is rebuilt (rows keep their seq, so change cursors stay valid). Sales
-- remember their source too: a sale's customer_id refers to a customer of the same source.

CREATE TABLE customers_v3 (
    seq INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL,
    source TEXT NOT NULL DEFAULT 'webhook',
    customer_id TEXT NOT NULL,
    email_key TEXT,
    ad_opt_out INTEGER, -- NULL unknown, 0, 1
    profile_id INTEGER, -- the profile this source record is linked to
    pinned INTEGER NOT NULL DEFAULT 0, -- 1: an operator split it out; it never moves by itself
    doc TEXT NOT NULL,
    updated_usec INTEGER NOT NULL,
    UNIQUE (tenant_id, env, source, customer_id)
);
INSERT INTO customers_v3 (seq, tenant_id, env, customer_id, email_key, ad_opt_out, doc,
                          updated_usec)
    SELECT seq, tenant_id, env, customer_id, email_key, ad_opt_out, doc, updated_usec
    FROM customers;
DROP TABLE customers;
ALTER TABLE customers_v3 RENAME TO customers;
CREATE INDEX customers_seq ON customers (tenant_id, env);
CREATE INDEX customers_email_key ON customers (tenant_id, env, email_key);
CREATE INDEX customers_id ON customers (tenant_id, env, customer_id);
CREATE INDEX customers_profile ON customers (profile_id);

ALTER TABLE sales ADD COLUMN source TEXT NOT NULL DEFAULT 'webhook';
CREATE INDEX sales_customer ON sales (tenant_id, env, source, customer_id);
CREATE INDEX sales_event ON sales (tenant_id, env, event_ref);

-- How records of different sources are linked into one profile (per tenant): 'email',
-- 'email_and_last_name' or 'none'.
ALTER TABLE tenants ADD COLUMN link_rule TEXT NOT NULL DEFAULT 'email';

-- A person, as the hub sees it: the source records linked to it point here.
CREATE TABLE profiles (
    id INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL,
    link_key TEXT,                         -- what other records link on; NULL: nothing does
    opt_out INTEGER NOT NULL DEFAULT 0,    -- most restrictive of its source records
    suppressed INTEGER NOT NULL DEFAULT 0, -- an e-mail of it is on the suppression list
    created_usec INTEGER NOT NULL,
    updated_usec INTEGER NOT NULL
);
CREATE INDEX profiles_link ON profiles (tenant_id, env, link_key);

-- Customers stored before this migration get their profiles now, by the default rule (same
-- e-mail; every tenant's link_rule is 'email' and the suppression list is empty at this point),
-- so segments see them too.
INSERT INTO profiles (tenant_id, env, link_key, opt_out, suppressed, created_usec, updated_usec)
    SELECT tenant_id, env, email_key, max(coalesce(ad_opt_out, 0)), 0, min(updated_usec),
           max(updated_usec)
    FROM customers WHERE profile_id IS NULL AND email_key IS NOT NULL
    GROUP BY tenant_id, env, email_key ORDER BY min(seq);
UPDATE customers SET profile_id = (SELECT min(p.id) FROM profiles p
                                   WHERE p.tenant_id = customers.tenant_id
                                     AND p.env = customers.env
                                     AND p.link_key = customers.email_key)
    WHERE profile_id IS NULL;

-- E-mail addresses never to push to (by SHA-256 of the trimmed, lowercased address):
-- operator suppressions and erased persons.
CREATE TABLE suppression (
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL,
    email_hash TEXT NOT NULL,
    reason TEXT NOT NULL, -- 'suppressed' | 'erased'
    created_usec INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, env, email_hash)
) WITHOUT ROWID;

-- That an erasure happened (GDPR Art. 17), without the erased data.
CREATE TABLE erasures (
    id INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL,
    profile_id INTEGER NOT NULL,
    records_erased INTEGER NOT NULL,
    sales_anonymized INTEGER NOT NULL,
    created_usec INTEGER NOT NULL
);

CREATE TABLE segments (
    id TEXT PRIMARY KEY NOT NULL, -- "seg_" + 16 hex
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    rules TEXT NOT NULL,
    member_count INTEGER,
    computed_usec INTEGER,
    created_usec INTEGER NOT NULL,
    updated_usec INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX segments_tenant ON segments (tenant_id, env);

CREATE TABLE targets (
    id TEXT PRIMARY KEY NOT NULL, -- "tgt_" + 16 hex
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL,
    type TEXT NOT NULL,
    doc TEXT NOT NULL, -- settings JSON, secrets included (never returned)
    created_usec INTEGER NOT NULL,
    updated_usec INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX targets_tenant ON targets (tenant_id, env);

-- The outbox: one row per push, stored before the 202.
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY NOT NULL, -- "dlv_" + 16 hex
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL,
    segment_id TEXT NOT NULL,
    target_id TEXT NOT NULL,
    state TEXT NOT NULL,            -- queued | sending | retrying | delivered | dead
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_usec INTEGER NOT NULL,
    lease_until_usec INTEGER NOT NULL DEFAULT 0,
    idem_key TEXT NOT NULL,
    doc TEXT NOT NULL,              -- everything else (remote answer, remote_segment_id, …)
    created_usec INTEGER NOT NULL,
    updated_usec INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_usec);
CREATE INDEX deliveries_target ON deliveries (target_id, created_usec);

-- The remote segment a (target, segment) pair created, so a second push is an update.
CREATE TABLE remote_segments (
    target_id TEXT NOT NULL,
    segment_id TEXT NOT NULL,
    remote_segment_id TEXT NOT NULL,
    updated_usec INTEGER NOT NULL,
    PRIMARY KEY (target_id, segment_id)
) WITHOUT ROWID;
