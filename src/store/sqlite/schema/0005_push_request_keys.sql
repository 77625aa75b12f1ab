-- 0005_push_request_keys.sql — the Idempotency-Key a push request came with (issue #4 §3).
--
-- POST /v1/{client_id}/segments/{id}/push creates a delivery. A client that retries the request
-- (its answer was lost on the way) with the same Idempotency-Key gets the delivery the first
-- request created instead of a second one: the key is unique per tenant and environment, for as
-- long as the delivery is kept. Deliveries created without a key have none.
ALTER TABLE deliveries ADD COLUMN request_key TEXT;
CREATE UNIQUE INDEX deliveries_request_key ON deliveries (tenant_id, env, request_key)
    WHERE request_key IS NOT NULL;
