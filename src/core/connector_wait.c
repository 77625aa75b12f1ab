/* connector_wait.c — the waits a running connector makes: a plain wait that honours the hub's
 * stop (a polling loop's sleep), and the wait for room in its type's quotas before it calls
 * the vendor (see connector.h).
 *
 * ctx->stop is a bare atomic flag, not something one can block on, so a wait sleeps in slices
 * of at most STOP_CHECK_USEC and looks at the flag after each: a stop is seen within one slice
 * (50 ms), and a waiting connector costs 20 wake-ups a second, not a busy loop. The duration is
 * measured on the monotonic clock, so a wall clock that jumps neither shortens nor stretches
 * it; quota windows are wall-clock, so sd_connector_quota_take re-reads the wall clock and asks
 * the ledger again after every wait instead of trusting the wait to have ended on time. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "base/base.h"
#include "base/log.h"
#include "core/alerts.h"
#include "core/connector.h"
#include "core/connector_config.h"
#include "core/quota.h"

#define STOP_CHECK_USEC 50000
#define MIN_QUOTA_WAIT_USEC 1000 /* never spin on a retry time that is already due */

static bool stopping(const struct sd_connector_ctx *ctx)
{
    return ctx && ctx->stop && atomic_load(ctx->stop);
}

int sd_connector_wait(struct sd_connector_ctx *ctx, int64_t usec)
{
    if (stopping(ctx)) {
        return -ECANCELED;
    }
    if (usec <= 0) {
        return 0;
    }
    int64_t start = sd_mono_usec();
    bool can_stop = ctx && ctx->stop;
    for (;;) {
        int64_t left = usec - (sd_mono_usec() - start);
        if (left <= 0) {
            return 0;
        }
        int64_t slice = can_stop && left > STOP_CHECK_USEC ? STOP_CHECK_USEC : left;
        struct timespec ts = {.tv_sec = (time_t)(slice / 1000000),
                              .tv_nsec = (long)(slice % 1000000) * 1000};
        (void)nanosleep(&ts, NULL); /* EINTR: the loop sleeps what is left */
        if (stopping(ctx)) {
            return -ECANCELED;
        }
    }
}

int sd_connector_quota_take(struct sd_connector_ctx *ctx, int64_t n)
{
    return sd_connector_quota_take_within(ctx, n, INT64_MAX, NULL);
}

int sd_connector_quota_take_within(struct sd_connector_ctx *ctx, int64_t n, int64_t max_wait_usec,
                                   int64_t *ret_retry_at_usec)
{
    if (!ctx || !ctx->connector || !ctx->hub) {
        return -EINVAL;
    }
    const struct sd_connector *c = ctx->connector;
    if (!c->quotas || !c->quotas[0].name) {
        return n < 0 ? -EINVAL : 0;
    }
    /* a delivery: the call core took before deliver is spent first, and every further call
     * of the attempt is a write (the write reserve is the outbox's) */
    if (n > 0 && ctx->prepaid_calls >= n) {
        ctx->prepaid_calls -= n;
        return 0;
    }
    enum sd_quota_use use = ctx->lease ? SD_QUOTA_WRITE : SD_QUOTA_READ;
    char *key = sd_quota_cred_key(c, ctx->settings, ctx->id);
    struct sd_quota eff[SD_QUOTAS_MAX + 1];
    const struct sd_quota *q = sd_quota_effective(c, ctx->settings, eff);
    int r;
    for (;;) {
        if (stopping(ctx)) {
            r = -ECANCELED;
            break;
        }
        int64_t now = sd_now_usec();
        int64_t retry_at = 0;
        r = sd_quota_take(ctx->hub->store, key, q, use, n, now, &retry_at);
        sd_alerts_quota_taken(ctx->hub, ctx->tenant_id, ctx->env, ctx->id);
        if (r != -EAGAIN) {
            break;
        }
        int64_t wait = retry_at - now < MIN_QUOTA_WAIT_USEC ? MIN_QUOTA_WAIT_USEC : retry_at - now;
        if (wait > max_wait_usec) {
            if (ret_retry_at_usec) {
                *ret_retry_at_usec = retry_at;
            }
            break; /* r is -EAGAIN: nothing taken */
        }
        json_t *until = sd_json_time(retry_at);
        sd_log(SD_LOG_INFO, "quota exhausted, waiting for the next window",
               "connector=\"[%s/%s]\" calls=%lld until=%s wait_ms=%lld", c->name,
               ctx->id ? ctx->id : "", (long long)n,
               json_is_string(until) ? json_string_value(until) : "-", (long long)(wait / 1000));
        json_decref(until);
        r = sd_connector_wait(ctx, wait);
        if (r < 0) {
            break;
        }
    }
    free(key);
    return r;
}
