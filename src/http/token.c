/* token.c — a short-lived Bearer token shared by every request of a connector instance (see
 * client.h, "tokens"). One mutex guards the token, its expiry and its generation; the refresh
 * callback runs under it, so a burst of requests that find the token missing or stale causes
 * one refresh, and the others wait for its result. Generations make a 401 seen by several
 * threads drop the token once: only the thread whose token is still current drops it.
 *
 * Expiry is on the monotonic clock: a wall-clock step must neither keep a dead token nor throw
 * away a good one. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "http/client_parts.h"

struct sd_http_token {
    pthread_mutex_t mu;
    sd_http_token_refresh_fn refresh;
    void *arg;
    int64_t margin_usec;
    char *token;          /* NULL: none (never fetched, or dropped after a 401) */
    int64_t expires_usec; /* sd_mono_usec() deadline; 0 = unknown lifetime */
    uint64_t gen;         /* bumped by every refresh */
    uint64_t refreshes;
};

struct sd_http_token *sd_http_token_new(sd_http_token_refresh_fn refresh, void *arg,
                                        int64_t margin_s)
{
    struct sd_http_token *t = sd_calloc(1, sizeof(*t));
    pthread_mutex_init(&t->mu, NULL);
    t->refresh = refresh;
    t->arg = arg;
    t->margin_usec = (margin_s > 0 ? margin_s : 0) * 1000000;
    return t;
}

static void drop(struct sd_http_token *t)
{
    if (t->token) {
        explicit_bzero(t->token, strlen(t->token));
        free(t->token);
        t->token = NULL;
    }
    t->expires_usec = 0;
}

void sd_http_token_free(struct sd_http_token *t)
{
    if (!t) {
        return;
    }
    drop(t);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static bool stale(const struct sd_http_token *t)
{
    return !t->token || (t->expires_usec > 0 && sd_mono_usec() + t->margin_usec >= t->expires_usec);
}

int sd_http_token_header(struct sd_http_token *t, char **ret_line, uint64_t *ret_generation,
                         char *error, size_t error_size)
{
    pthread_mutex_lock(&t->mu);
    int r = 0;
    if (stale(t)) {
        char *fresh = NULL;
        int64_t ttl = 0;
        error[0] = '\0';
        r = t->refresh(t->arg, &fresh, &ttl, error, error_size);
        if (r == 0 &&
            (!fresh || !*fresh || strchr(fresh, ' ') || !sd_http_header_value_ok(fresh))) {
            snprintf(error, error_size, "the token refresh returned no usable token");
            r = -EPROTO;
        }
        if (r < 0) {
            if (fresh) {
                explicit_bzero(fresh, strlen(fresh));
                free(fresh);
            }
            if (!error[0]) {
                snprintf(error, error_size, "the token refresh failed (%s)", strerror(-r));
            }
            goto out;
        }
        if (ttl > 366LL * 24 * 3600) {
            ttl = 366LL * 24 * 3600; /* keeps the arithmetic below in range */
        }
        drop(t);
        t->token = fresh;
        t->expires_usec = ttl > 0 ? sd_mono_usec() + ttl * 1000000 : 0;
        t->gen++;
        t->refreshes++;
    }
    r = sd_http_header_bearer(t->token, ret_line);
    if (r == 0 && ret_generation) {
        *ret_generation = t->gen;
    }
out:
    pthread_mutex_unlock(&t->mu);
    return r;
}

void sd_http_token_invalidate(struct sd_http_token *t, uint64_t gen)
{
    pthread_mutex_lock(&t->mu);
    if (t->gen == gen) {
        drop(t);
    }
    pthread_mutex_unlock(&t->mu);
}

uint64_t sd_http_token_refreshes(struct sd_http_token *t)
{
    pthread_mutex_lock(&t->mu);
    uint64_t n = t->refreshes;
    pthread_mutex_unlock(&t->mu);
    return n;
}
