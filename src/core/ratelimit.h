/* ratelimit.h — token buckets per key (the server uses one per tenant, environment and kind of
 * request: the webhook and other writes share one, reads have their own so a reader cannot spend
 * the webhook's budget). Default 500 requests per minute, burst 1000, changeable per tenant. A
 * bucket starts full, refills continuously at per_minute/60 tokens per second up to `burst`; a
 * request takes one token or is refused with the time until one is back. Thread-safe (one
 * mutex; the critical section is a few loads). */
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

struct sd_ratelimiter *sd_ratelimiter_new(void);
void sd_ratelimiter_free(struct sd_ratelimiter *rl);
/* Take one token from bucket `key` (e.g. tenant_id * 2 + env) at time now_usec. */
void sd_ratelimit_take(struct sd_ratelimiter *rl, uint64_t key, int64_t per_minute, int64_t burst,
                       int64_t now_usec, struct sd_ratelimit_result *ret);
/* The bucket's state without taking a token (for answers that do not count, e.g. a 403). */
void sd_ratelimit_peek(struct sd_ratelimiter *rl, uint64_t key, int64_t per_minute, int64_t burst,
                       int64_t now_usec, struct sd_ratelimit_result *ret);

#endif
