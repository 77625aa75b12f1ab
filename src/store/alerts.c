/* alerts.c — the alert settings and history wrappers (store/alerts.h) and the checks both
 * backends share. Like store.c's wrappers they add nothing but a check that the backend has
 * the ops. */
#include "store/alerts.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define OPS(h) (sd_store_handle_ops(h)->alerts)
#define CALL(op, ...)                                                                              \
    (OPS(h) && OPS(h)->op ? OPS(h)->op(sd_store_handle_backend(h), __VA_ARGS__) : -ENOTSUP)

const char *sd_alert_delivery_name(enum sd_alert_delivery d)
{
    switch (d) {
    case SD_ALERT_NOT_SENT: return "not_sent";
    case SD_ALERT_PENDING: return "pending";
    case SD_ALERT_DELIVERED: return "delivered";
    case SD_ALERT_FAILED: return "failed";
    }
    return "failed";
}

void sd_alerts_free(struct sd_alert *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].id);
        free(v[i].rule);
        free(v[i].subject);
        free(v[i].doc);
        free(v[i].last_error);
    }
    free(v);
}

static bool word_ok(const char *s)
{
    return s && s[0] && strnlen(s, SD_ALERT_WORD_MAX + 1) <= SD_ALERT_WORD_MAX;
}

bool sd_alert_valid(const struct sd_alert *a)
{
    return a && word_ok(a->id) && word_ok(a->rule) && word_ok(a->subject) && a->doc &&
           strnlen(a->doc, SD_ALERT_DOC_MAX + 1) <= SD_ALERT_DOC_MAX &&
           (a->env == SD_ENV_TEST || a->env == SD_ENV_PROD) && a->created_usec > 0 &&
           (unsigned)a->delivery <= SD_ALERT_FAILED && a->attempts >= 0;
}

int sd_store_alert_settings_put(struct sd_store_handle *h, int64_t tenant_id, const char *doc,
                                const char *secret)
{
    return CALL(settings_put, tenant_id, doc, secret);
}

int sd_store_alert_settings_get(struct sd_store_handle *h, int64_t tenant_id, char **ret_doc,
                                char **ret_secret)
{
    return CALL(settings_get, tenant_id, ret_doc, ret_secret);
}

int sd_store_alert_open(struct sd_store_handle *h, const struct sd_alert *a, int64_t dedupe_usec)
{
    return CALL(open, a, dedupe_usec);
}

int sd_store_alert_resolve(struct sd_store_handle *h, int64_t tenant_id, const char *rule,
                           const char *subject, int64_t now_usec)
{
    return CALL(resolve, tenant_id, rule, subject, now_usec);
}

int sd_store_alert_history(struct sd_store_handle *h, int64_t tenant_id, size_t limit,
                           struct sd_alert **ret, size_t *ret_n)
{
    return CALL(history, tenant_id, limit, ret, ret_n);
}

int sd_store_alert_claim(struct sd_store_handle *h, int64_t now_usec, int64_t lease_usec,
                         size_t limit, struct sd_alert **ret, size_t *ret_n)
{
    return CALL(claim, now_usec, lease_usec, limit, ret, ret_n);
}

int sd_store_alert_delivery_set(struct sd_store_handle *h, const char *id,
                                enum sd_alert_delivery delivery, int64_t attempts,
                                int64_t next_attempt_usec, int64_t delivered_usec,
                                const char *last_error)
{
    return CALL(delivery_set, id, delivery, attempts, next_attempt_usec, delivered_usec,
                last_error);
}
