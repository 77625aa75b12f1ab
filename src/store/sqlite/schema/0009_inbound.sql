-- 0009_inbound.sql — vendor webhooks received raw first (POST /in/{connector_id}/{token}).
--
-- inbound_doors: the SHA-256 (hex) of each door's token; the token itself is shown once and
-- never stored. Written through the ctl connection like the connector it belongs to.
--
-- inbound_raw: every payload as received, committed by the single writer in the transaction
-- that also applies what could be mapped, before the vendor gets its 200. (connector_id,
-- content_hash) is unique: the same payload received twice is stored once and applied once.
-- An erasure empties body and headers (purged_usec) but keeps the hash, so a resend of the
-- purged payload is still recognised and not applied again; expires_usec (receipt time plus
-- the connector's raw_retention_days) is when the periodic purge deletes the row.
--
-- inbound_quarantine: the objects of a payload that could not be mapped or validated, by
-- index (-1: the payload as a whole, e.g. not JSON). A row is deleted once a replay applies it.
--
-- inbound_subjects: who a payload mentions ('cid:' customer id, 'em:' SHA-256 of an e-mail
-- key), written when it is mapped, so an erasure finds the raw payloads to purge. A subject is
-- kept as the first 16 bytes of its SHA-256: one row per subject and payload is written with
-- every payload, so the key's size is the door's write volume.

CREATE TABLE inbound_doors (
    connector_id TEXT PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL,
    created_usec INTEGER NOT NULL
) WITHOUT ROWID;

-- A removed connector's door goes with it (its payloads stay until their retention ends).
CREATE TRIGGER inbound_doors_connector_gone AFTER DELETE ON connectors
BEGIN
    DELETE FROM inbound_doors WHERE connector_id = old.id;
END;

CREATE TABLE inbound_raw (
    id INTEGER PRIMARY KEY,
    connector_id TEXT NOT NULL,
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL CHECK (env IN (0, 1)),
    content_hash TEXT NOT NULL,
    received_usec INTEGER NOT NULL,
    expires_usec INTEGER NOT NULL,
    purged_usec INTEGER NOT NULL DEFAULT 0,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    objects INTEGER NOT NULL DEFAULT 0,
    applied INTEGER NOT NULL DEFAULT 0,
    quarantined INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX inbound_raw_hash ON inbound_raw (connector_id, content_hash);
CREATE INDEX inbound_raw_time ON inbound_raw (connector_id, received_usec);
CREATE INDEX inbound_raw_expiry ON inbound_raw (expires_usec);

CREATE TABLE inbound_quarantine (
    id INTEGER PRIMARY KEY,
    raw_id INTEGER NOT NULL,
    connector_id TEXT NOT NULL,
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    reason TEXT NOT NULL,
    created_usec INTEGER NOT NULL,
    updated_usec INTEGER NOT NULL,
    UNIQUE (raw_id, idx)
);
CREATE INDEX inbound_quarantine_list ON inbound_quarantine (tenant_id, env, connector_id, id);

CREATE TABLE inbound_subjects (
    tenant_id INTEGER NOT NULL,
    env INTEGER NOT NULL,
    subject BLOB NOT NULL,
    raw_id INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, env, subject, raw_id)
) WITHOUT ROWID;
CREATE INDEX inbound_subjects_raw ON inbound_subjects (raw_id);
