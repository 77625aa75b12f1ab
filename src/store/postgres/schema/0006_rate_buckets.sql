-- 0006_rate_buckets.sql — token buckets shared by every node (store.h rate_take): the
-- per-tenant request limits hold across nodes. A node takes tokens in small chunks
-- (core/ratelimit.c), so this row is touched once per chunk, not once per request.
CREATE TABLE rate_buckets (
    bucket_key BIGINT PRIMARY KEY,      -- the limiter's key (tenant, environment, kind)
    tokens DOUBLE PRECISION NOT NULL,   -- after the last take
    updated_usec BIGINT NOT NULL,       -- when tokens was last refilled
    last_grant BIGINT NOT NULL DEFAULT 0 -- what the last take got (read back by RETURNING)
);
