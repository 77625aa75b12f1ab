/* ratelimit.h — token buckets per key (the server uses one per tenant, environment and kind of
 * request: the webhook and other writes share one, reads have their own so a reader cannot spend
 * the webhook's budget). Default 500 requests per minute, burst 1000, changeable per tenant. A
 * bucket starts full, refills continuously at per_minute/60 tokens per second up to `burst`; a
 * request takes one token or is refused with the time until one is back. Thread-safe (one
 * mutex; the critical section is a few loads).
 *
 * Shared buckets (several nodes on one PostgreSQL store): after sd_ratelimiter_share() a bucket
 * lives in the store (store.h rate_take) and each node takes tokens from it in chunks of
 * SD_RATELIMIT_CHUNK(burst) = burst/20, at least 1, at most 50, spending them locally. The
 * limit then holds across nodes: the tenant never gets more than its rate; a node may hold up
 * to one chunk less one token unspent, so with N nodes a tenant may be refused up to
 * N × (chunk − 1) tokens early (the documented tolerance). RateLimit-Remaining is the node's
 * estimate (its chunk plus what the store said was left, refilled since). If the store cannot
 * be reached, the node falls back to its own in-memory bucket (per-node limit) and logs it. */
#ifndef SD_CORE_RATELIMIT_H
#define SD_CORE_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct sd_ratelimit_result {
    bool allowed;
    int64_t limit;       /* RateLimit-Limit: the documented limit, requests per minute */
    int64_t remaining;   /* RateLimit-Remaining: whole tokens left after this request */
    int64_t reset_sec;   /* RateLimit-Reset: with tokens left, seconds until the bucket is full
                          * again; with none left, seconds until one is back (= Retry-After) */
    int64_t retry_after; /* Retry-After when refused: seconds until one token is back (>= 1) */
};

struct sd_ratelimiter;

struct sd_store_handle;

#define SD_RATELIMIT_CHUNK(burst) ((burst) / 20 < 1 ? 1 : (burst) / 20 > 50 ? 50 : (burst) / 20)

struct sd_ratelimiter *sd_ratelimiter_new(void);
/* Keep the buckets in store h from now on (when its backend shares them; otherwise nothing
 * changes). h must outlive rl. */
void sd_ratelimiter_share(struct sd_ratelimiter *rl, struct sd_store_handle *h);
void sd_ratelimiter_free(struct sd_ratelimiter *rl);
/* Take one token from bucket `key` (e.g. tenant_id * 2 + env) at time now_usec. */
void sd_ratelimit_take(struct sd_ratelimiter *rl, uint64_t key, int64_t per_minute, int64_t burst,
                       int64_t now_usec, struct sd_ratelimit_result *ret);
/* The bucket's state without taking a token (for answers that do not count, e.g. a 403). */
void sd_ratelimit_peek(struct sd_ratelimiter *rl, uint64_t key, int64_t per_minute, int64_t burst,
                       int64_t now_usec, struct sd_ratelimit_result *ret);

#endif
