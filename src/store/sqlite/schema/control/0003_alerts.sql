-- control/0003_alerts.sql — alert settings per tenant and the alert history (sqlite_alerts.c).
--
-- Why control.db: alerts are evaluated where their facts appear — a quota take, an inbound
-- answer, the outbox, a run's end — and none of those may wait behind the data writer.
--
-- alert_settings.doc is core's JSON ({webhook_url, rules}); secret is the Standard Webhooks
-- signing secret ("whsec_…"), kept as given because the hub signs with it (never returned by
-- the API, never logged). alerts holds at most 1,000 rows per tenant (pruned by every insert);
-- delivery: 0 not sent (no webhook), 1 pending, 2 delivered, 3 given up.
CREATE TABLE alert_settings (
    tenant_id INTEGER PRIMARY KEY,
    doc TEXT NOT NULL,
    secret TEXT,
    updated_usec INTEGER NOT NULL
);

CREATE TABLE alerts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL CHECK (env IN (0, 1)),
    rule TEXT NOT NULL,
    subject TEXT NOT NULL,
    doc TEXT NOT NULL,
    created_usec INTEGER NOT NULL,
    resolved_usec INTEGER NOT NULL DEFAULT 0,
    delivery INTEGER NOT NULL CHECK (delivery IN (0, 1, 2, 3)),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_usec INTEGER NOT NULL DEFAULT 0,
    delivered_usec INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX alerts_tenant ON alerts (tenant_id, seq);
CREATE INDEX alerts_open ON alerts (tenant_id, rule, subject, resolved_usec);
CREATE INDEX alerts_due ON alerts (delivery, next_attempt_usec);
