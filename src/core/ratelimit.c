/* ratelimit.c — token buckets in an open-addressing hash table keyed by (tenant, env).
 * Tokens are kept as a double: the bucket is a rate, not money, and a double is exact enough
 * for any burst below 2^50. A change of limits takes effect at the next request (the bucket
 * is clamped to the new burst). */
#include "core/ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "base/base.h"

struct bucket {
    uint64_t key; /* 0 = empty slot; stored as key + 1 */
    double tokens;
    int64_t last_usec;
};

struct sd_ratelimiter {
    pthread_mutex_t mu;
    struct bucket *slots;
    size_t cap, used;
};

struct sd_ratelimiter *sd_ratelimiter_new(void)
{
    struct sd_ratelimiter *rl = sd_calloc(1, sizeof(*rl));
    pthread_mutex_init(&rl->mu, NULL);
    rl->cap = 64;
    rl->slots = sd_calloc(rl->cap, sizeof(*rl->slots));
    return rl;
}

void sd_ratelimiter_free(struct sd_ratelimiter *rl)
{
    if (!rl) {
        return;
    }
    pthread_mutex_destroy(&rl->mu);
    free(rl->slots);
    free(rl);
}

static size_t slot_of(uint64_t k, size_t cap)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)(k & (cap - 1));
}

static struct bucket *find_or_add(struct sd_ratelimiter *rl, uint64_t key, bool *ret_new)
{
    uint64_t k = key + 1;
    if ((rl->used + 1) * 2 > rl->cap) {
        size_t ncap = rl->cap * 2;
        struct bucket *ns = sd_calloc(ncap, sizeof(*ns));
        for (size_t i = 0; i < rl->cap; i++) {
            if (rl->slots[i].key) {
                size_t j = slot_of(rl->slots[i].key, ncap);
                while (ns[j].key) {
                    j = (j + 1) & (ncap - 1);
                }
                ns[j] = rl->slots[i];
            }
        }
        free(rl->slots);
        rl->slots = ns;
        rl->cap = ncap;
    }
    size_t i = slot_of(k, rl->cap);
    while (rl->slots[i].key && rl->slots[i].key != k) {
        i = (i + 1) & (rl->cap - 1);
    }
    *ret_new = rl->slots[i].key == 0;
    if (*ret_new) {
        rl->slots[i].key = k;
        rl->used++;
    }
    return &rl->slots[i];
}

/* Whole seconds until `tokens` more have been added at `rate` tokens per µs, rounded up; a
 * microsecond of tolerance keeps floating-point noise (6.000000000000002) from adding a second. */
static int64_t secs_until(double tokens, double rate)
{
    return (int64_t)ceil(tokens / (rate * 1e6) - 1e-6);
}

static void bucket_op(struct sd_ratelimiter *rl, uint64_t key, int64_t per_minute, int64_t burst,
                      int64_t now_usec, bool take, struct sd_ratelimit_result *ret)
{
    if (burst < 1) {
        burst = 1;
    }
    if (per_minute < 1) {
        per_minute = 1;
    }
    double rate = (double)per_minute / 60e6; /* tokens per µs */
    pthread_mutex_lock(&rl->mu);
    bool fresh;
    struct bucket *b = find_or_add(rl, key, &fresh);
    if (fresh) {
        b->tokens = (double)burst;
        b->last_usec = now_usec;
    }
    if (now_usec > b->last_usec) {
        b->tokens += (double)(now_usec - b->last_usec) * rate;
        b->last_usec = now_usec;
    }
    if (b->tokens > (double)burst) {
        b->tokens = (double)burst;
    }
    ret->allowed = b->tokens >= 1.0;
    if (ret->allowed && take) {
        b->tokens -= 1.0;
    }
    double tokens = b->tokens;
    pthread_mutex_unlock(&rl->mu);

    ret->limit = per_minute;
    ret->remaining = (int64_t)floor(tokens);
    /* Seconds until one whole token is back, at least 1 (an answer never says "retry now"). */
    int64_t next = tokens >= 1.0 ? 0 : secs_until(1.0 - tokens, rate);
    if (tokens < 1.0 && next < 1) {
        next = 1;
    }
    ret->retry_after = ret->allowed ? 0 : next;
    /* With tokens left, Reset says when the bucket is full again; with none, when the next
     * request is allowed — so on a 429 it is the same figure as Retry-After. */
    ret->reset_sec = ret->remaining > 0 ? secs_until((double)burst - tokens, rate) : next;
}

void sd_ratelimit_take(struct sd_ratelimiter *rl, uint64_t key, int64_t per_minute, int64_t burst,
                       int64_t now_usec, struct sd_ratelimit_result *ret)
{
    bucket_op(rl, key, per_minute, burst, now_usec, true, ret);
}

void sd_ratelimit_peek(struct sd_ratelimiter *rl, uint64_t key, int64_t per_minute, int64_t burst,
                       int64_t now_usec, struct sd_ratelimit_result *ret)
{
    bucket_op(rl, key, per_minute, burst, now_usec, false, ret);
}
