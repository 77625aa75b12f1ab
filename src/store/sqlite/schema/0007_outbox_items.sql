-- 0007_outbox_items.sql — targets are connectors; one generic outbox of items; remote references.
--
-- A push target becomes a connector instance of a target type (same id "tgt_…", so old URLs
-- keep working; type as it was, "audience_push"; schedule "manual": a target never runs on a
-- schedule; settings = the target's settings document; no mapping). Its rate limit of first
-- sends per rolling hour is a column (rate_per_hour, NULL: none) written by whoever stores the
-- settings, so the store never reads a settings document core owns.
--
-- A delivery becomes an outbox item: the connector instance, the operation it names
-- ("push_segment"), the subject (kind + local id: "segment", the segment id), a payload (NULL:
-- built at send time from the subject), a dedupe key, the queue state, the lease with its
-- fencing token (bumped at each claim), the first send of the run (for the rate limit), the
-- remote reference the delivery answered with and the document core owns (last remote answer,
-- history). `seq` is the queue order (FIFO per subject, rate plan per connector).
--
-- remote_segments become remote references: (connector, kind, local id) ↔ remote id.

ALTER TABLE connectors ADD COLUMN rate_per_hour INTEGER;

INSERT INTO connectors (id, tenant_id, env, type, schedule, settings, mapping, run_requested_usec,
                        created_usec, updated_usec, rate_per_hour)
    SELECT id, tenant_id, env, type, 'manual', doc, '{}', 0, created_usec, updated_usec,
           coalesce(json_extract(doc, '$.segments_per_hour'), 50)
    FROM targets;

CREATE TABLE outbox_items (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE, -- "dlv_" + 16 hex
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL,
    connector_id TEXT NOT NULL,
    operation TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    payload TEXT,
    dedupe_key TEXT,
    state TEXT NOT NULL, -- queued | sending | retrying | delivered | dead | cancelled
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_usec INTEGER NOT NULL,
    lease_until_usec INTEGER NOT NULL DEFAULT 0,
    fence INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    sent_usec INTEGER NOT NULL DEFAULT 0,
    idem_key TEXT NOT NULL,
    request_key TEXT,
    origin TEXT,
    remote_ref TEXT,
    doc TEXT NOT NULL,
    created_usec INTEGER NOT NULL,
    updated_usec INTEGER NOT NULL
);
INSERT INTO outbox_items (id, tenant_id, env, connector_id, operation, subject_kind, subject_id,
                          payload, dedupe_key, state, attempts, next_attempt_usec,
                          lease_until_usec, fence, lease_owner, sent_usec, idem_key, request_key,
                          origin, remote_ref, doc, created_usec, updated_usec)
    SELECT id, tenant_id, env, target_id, 'push_segment', 'segment', segment_id, NULL, NULL,
           state, attempts, next_attempt_usec, lease_until_usec, 0,
           json_extract(doc, '$.lease_owner'), coalesce(json_extract(doc, '$.sent_usec'), 0),
           idem_key, request_key, NULL, json_extract(doc, '$.remote_segment_id'),
           CASE WHEN json_extract(doc, '$.waits_429') IS NULL
                THEN json_remove(doc, '$.sent_usec', '$.lease_owner')
                ELSE json_set(json_remove(doc, '$.sent_usec', '$.lease_owner', '$.waits_429'),
                              '$.waits', json_extract(doc, '$.waits_429')) END,
           created_usec, updated_usec
    FROM deliveries ORDER BY created_usec, id;
CREATE INDEX outbox_items_due ON outbox_items (state, next_attempt_usec);
CREATE INDEX outbox_items_connector ON outbox_items (connector_id, state, seq);
CREATE INDEX outbox_items_subject ON outbox_items (connector_id, subject_kind, subject_id, seq);
CREATE INDEX outbox_items_tenant ON outbox_items (tenant_id, env, seq);
CREATE UNIQUE INDEX outbox_items_request_key ON outbox_items (tenant_id, env, request_key)
    WHERE request_key IS NOT NULL;
CREATE INDEX outbox_items_dedupe ON outbox_items (connector_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL;

CREATE TABLE remote_refs (
    connector_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    local_id TEXT NOT NULL,
    remote_id TEXT NOT NULL,
    updated_usec INTEGER NOT NULL,
    PRIMARY KEY (connector_id, kind, local_id)
) WITHOUT ROWID;
CREATE INDEX remote_refs_remote ON remote_refs (connector_id, kind, remote_id);
INSERT INTO remote_refs (connector_id, kind, local_id, remote_id, updated_usec)
    SELECT target_id, 'segment', segment_id, remote_segment_id, updated_usec FROM remote_segments;

DROP TABLE remote_segments;
DROP TABLE deliveries;
DROP TABLE targets;
