/* ratelimit.c — token buckets in an open-addressing hash table keyed by (tenant, env).
 * Tokens are kept as a double: the bucket is a rate, not money, and a double is exact enough
 * for any burst below 2^50. A change of limits takes effect at the next request (the bucket
 * is clamped to the new burst). */
#include "core/ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "base/base.h"
#include "base/log.h"
#include "store/store.h"

struct bucket {
    uint64_t key; /* 0 = empty slot; stored as key + 1 */
    double tokens; /* the in-memory bucket (also the fallback while the store fails) */
    int64_t last_usec;
    bool mem_started;   /* shared mode: the fallback bucket was started (full) */
    double local;       /* shared: tokens taken from the store and not yet spent */
    double shared_left; /* shared: what the store had left at shared_usec */
    int64_t shared_usec;
};

struct sd_ratelimiter {
    pthread_mutex_t mu;
    struct bucket *slots;
    size_t cap, used;
    struct sd_store_handle *shared; /* NULL: buckets in memory */
    bool shared_failing;            /* the last take from the store failed (logged once) */
};

void sd_ratelimiter_share(struct sd_ratelimiter *rl, struct sd_store_handle *h)
{
    if (h && sd_store_has_shared_rate(h)) {
        rl->shared = h;
    }
}

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

/* Shared mode, under rl->mu: spend a local token, taking a chunk from the store when none is
 * left. Returns the tokens the answer reports (local + the store's estimate), or a negative
 * number when the store failed (the caller falls back to the in-memory bucket). */
static double shared_op(struct sd_ratelimiter *rl, struct bucket *b, uint64_t key,
                        int64_t per_minute, int64_t burst, int64_t now_usec, bool take,
                        double rate, bool *ret_allowed)
{
    if (take && b->local < 1.0) {
        int64_t granted = 0;
        double left = 0;
        int r = sd_store_rate_take(rl->shared, key, per_minute, burst, SD_RATELIMIT_CHUNK(burst),
                                   now_usec, &granted, &left);
        if (r < 0) {
            if (!rl->shared_failing) {
                sd_log(SD_LOG_WARN, "shared rate limit unavailable, limiting per node",
                       SD_LOG_ERR_FMT, SD_LOG_ERR_ARGS(r));
            }
            rl->shared_failing = true;
            return -1.0;
        }
        if (rl->shared_failing) {
            sd_log(SD_LOG_INFO, "shared rate limit available again", NULL);
            rl->shared_failing = false;
        }
        b->local += (double)granted;
        b->shared_left = left;
        b->shared_usec = now_usec;
    }
    *ret_allowed = b->local >= 1.0;
    if (*ret_allowed && take) {
        b->local -= 1.0;
    }
    double est = b->shared_left;
    if (now_usec > b->shared_usec) {
        est += (double)(now_usec - b->shared_usec) * rate;
    }
    est += b->local;
    return est > (double)burst ? (double)burst : est;
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
    if (rl->shared) {
        /* A node's local part of a shared bucket starts empty (the tokens are the store's). */
        if (fresh) {
            b->local = 0;
            b->shared_left = (double)burst;
            b->shared_usec = now_usec;
        }
        bool allowed = false;
        double est = shared_op(rl, b, key, per_minute, burst, now_usec, take, rate, &allowed);
        if (est >= 0) {
            double store_left = b->shared_left;
            pthread_mutex_unlock(&rl->mu);
            ret->allowed = allowed;
            ret->limit = per_minute;
            /* Refused: the next token is what the store lacks of one, at the refill rate, at
             * least 1 s; with tokens, Reset says when the bucket is full. */
            double missing = allowed ? 0 : 1.0 - (store_left > 0 ? store_left : 0);
            int64_t next = allowed ? 0 : secs_until(missing > 0 ? missing : 1.0, rate);
            if (!allowed && next < 1) {
                next = 1;
            }
            ret->remaining = (int64_t)floor(est);
            ret->retry_after = next;
            ret->reset_sec = ret->remaining > 0 ? secs_until((double)burst - est, rate) : next;
            return;
        }
        /* The store failed: this node's own bucket decides (started full the first time). */
        fresh = !b->mem_started;
        b->mem_started = true;
    }
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
