/* token.c — a short-lived Bearer token shared by every request of a connector instance (see
 * client.h, "tokens"). One mutex guards the token, its expiry and its generation; the refresh
 * callback runs under it, so a burst of requests that find the token missing or stale causes
 * one refresh, and the others wait for its result. Generations make a 401 seen by several
 * threads drop the token once: only the thread whose token is still current drops it.
 *
 * Expiry is on the monotonic clock: a wall-clock step must neither keep a dead token nor throw
 * away a good one. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "http/client_parts.h"
#include "http/verdict.h"

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

int sd_http_token_refresh_json(void *arg, char **ret_token, int64_t *ret_ttl_s, char *error,
                               size_t error_size)
{
    const struct sd_http_token_json *cfg = arg;
    size_t n = 0;
    while (cfg->headers && cfg->headers[n]) {
        n++;
    }
    const char **headers = sd_calloc(n + 2, sizeof(*headers));
    for (size_t i = 0; i < n; i++) {
        headers[i] = cfg->headers[i];
    }
    headers[n] = "Content-Type: application/json";
    struct sd_http_request rq = {.method = "POST",
                                 .url = cfg->url,
                                 .headers = headers,
                                 .body = cfg->body,
                                 .body_len = cfg->body ? strlen(cfg->body) : 0,
                                 .timeout_ms = cfg->timeout_ms,
                                 .max_body = 64 * 1024};
    struct sd_http_response resp;
    struct sd_http_retry once = {.max_attempts = 1, .stop = cfg->stop};
    int r = sd_http_fetch_retry(&rq, &once, &resp, NULL);
    free(headers);
    json_t *doc = NULL;
    enum sd_verdict v = sd_http_classify(r, resp.status);
    if (r < 0) {
        snprintf(error, error_size, "the token exchange failed: %s", resp.error);
        goto out;
    }
    if (v != SD_VERDICT_OK) {
        snprintf(error, error_size, "the token exchange was %s (HTTP %ld)",
                 v == SD_VERDICT_REJECT ? "refused" : "not answered", resp.status);
        r = v == SD_VERDICT_REJECT ? -EACCES : -EAGAIN;
        goto out;
    }
    doc = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
    const char *member = cfg->token_member ? cfg->token_member : "token";
    const json_t *tok = json_object_get(doc, member);
    if (!json_is_string(tok) || json_string_length(tok) == 0) {
        snprintf(error, error_size, "the token exchange answered without a \"%s\" string", member);
        r = -EPROTO;
        goto out;
    }
    const json_t *ttl = cfg->ttl_member ? json_object_get(doc, cfg->ttl_member) : NULL;
    double secs = json_is_number(ttl) ? json_number_value(ttl) : 0;
    *ret_ttl_s = secs >= 1 ? (secs < 1e8 ? (int64_t)secs : 100000000) : 0;
    *ret_token = sd_strdup(json_string_value(tok));
out:
    json_decref(doc);
    if (resp.body.data) { /* the answer held the token */
        explicit_bzero(resp.body.data, resp.body.len);
    }
    sd_http_response_release(&resp);
    return r;
}
