/* alerts.h — the store's alert settings and alert history. Part of the one store interface
 * (store.h): sd_store_ops.alerts points to a backend's `struct sd_store_alert_ops`; callers use
 * the sd_store_alert_* wrappers (store/alerts.c), which answer -ENOTSUP for a backend without
 * them.
 *
 * The store keeps settings as opaque JSON text (store.h obligation 7) and a signing secret it
 * must be able to give back (it signs; it cannot be hashed). Which rules exist, what an alert
 * says and how it is delivered are core's business (core/alerts.c).
 *
 * Obligations of every backend:
 *  - Path: control plane. Any thread, any number of processes; never waits behind the data
 *    writer (SQLite: the tables live in control.db). settings_put bumps the settings version;
 *    nothing else does (alerts are traffic, not settings).
 *  - open is atomic against every other open: of two opens of one (tenant, rule, subject) at
 *    once, at most one stores an alert while the other's window holds.
 *  - At most SD_ALERTS_KEEP alerts per tenant: open deletes the oldest beyond that.
 *  - claim is a lease: an alert claimed by one worker is not handed to another before
 *    lease_usec has passed (its next_attempt_usec is moved to now + lease_usec in the claim's
 *    own atomic statement or transaction).
 *
 * Errors: -EINVAL (bad arguments), -ENOENT, -EEXIST (see open), -EIO (logged by the backend
 * without values). */
#ifndef SD_STORE_ALERTS_H
#define SD_STORE_ALERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define SD_ALERTS_KEEP 1000     /* alerts kept per tenant */
#define SD_ALERTS_PAGE_MAX 1000 /* most alerts one history call returns */
#define SD_ALERT_WORD_MAX 64    /* bytes of an id, a rule, a subject */
#define SD_ALERT_DOC_MAX 16384  /* bytes of an alert's or the settings' document */
#define SD_ALERT_SECRET_MAX 256 /* bytes of a signing secret */

/* Where an alert's webhook delivery stands. */
enum sd_alert_delivery {
    SD_ALERT_NOT_SENT = 0, /* the tenant has no webhook URL: stored and shown only */
    SD_ALERT_PENDING = 1,  /* waiting for (another) attempt */
    SD_ALERT_DELIVERED = 2,
    SD_ALERT_FAILED = 3, /* given up */
};
const char *sd_alert_delivery_name(enum sd_alert_delivery d); /* "not_sent", "pending" … */

struct sd_alert {
    int64_t seq; /* assigned by open: history order */
    char *id;    /* "alr_" + 16 hex, unique */
    int64_t tenant_id;
    enum sd_env env;
    char *rule;    /* a rule name of core/alerts.h */
    char *subject; /* what it is about: a connector id, a target id … */
    char *doc;     /* JSON text owned by core: message and facts */
    int64_t created_usec;
    int64_t resolved_usec; /* 0: open */
    enum sd_alert_delivery delivery;
    int64_t attempts;
    int64_t next_attempt_usec;
    int64_t delivered_usec;
    char *last_error; /* of the last failed attempt, or NULL */
};
void sd_alerts_free(struct sd_alert *v, size_t n);

struct sd_store_alert_ops {
    /* Store tenant_id's settings document; secret NULL keeps the stored secret (none if there
     * is none), "" removes it. -EINVAL: doc NULL or longer than SD_ALERT_DOC_MAX, secret
     * longer than SD_ALERT_SECRET_MAX. */
    int (*settings_put)(struct sd_store *s, int64_t tenant_id, const char *doc, const char *secret);
    /* The settings of tenant_id: *ret_doc and *ret_secret (NULL when none; ret_secret may be
     * NULL: not wanted). -ENOENT if never set. */
    int (*settings_get)(struct sd_store *s, int64_t tenant_id, char **ret_doc, char **ret_secret);
    /* Store alert a (seq, resolved_usec and last_error ignored) unless an alert of the same
     * (tenant_id, rule, subject) is open (resolved_usec 0) and younger than dedupe_usec at
     * a->created_usec: then -EEXIST and nothing is stored. Prunes the tenant's alerts to the
     * newest SD_ALERTS_KEEP. */
    int (*open)(struct sd_store *s, const struct sd_alert *a, int64_t dedupe_usec);
    /* Mark the open alerts of (tenant_id, rule, subject) resolved at now_usec: the count. */
    int (*resolve)(struct sd_store *s, int64_t tenant_id, const char *rule, const char *subject,
                   int64_t now_usec);
    /* tenant_id's alerts, newest first, at most limit (1..SD_ALERTS_PAGE_MAX). */
    int (*history)(struct sd_store *s, int64_t tenant_id, size_t limit, struct sd_alert **ret,
                   size_t *ret_n);
    /* At most limit alerts (any tenant) whose delivery is pending and next_attempt_usec <=
     * now_usec, oldest first, each now leased until now_usec + lease_usec. */
    int (*claim)(struct sd_store *s, int64_t now_usec, int64_t lease_usec, size_t limit,
                 struct sd_alert **ret, size_t *ret_n);
    /* Record an attempt's outcome on alert id: delivery, attempts, next_attempt_usec,
     * delivered_usec and last_error (NULL: none) as given. -ENOENT if there is no such alert. */
    int (*delivery_set)(struct sd_store *s, const char *id, enum sd_alert_delivery delivery,
                        int64_t attempts, int64_t next_attempt_usec, int64_t delivered_usec,
                        const char *last_error);
};

int sd_store_alert_settings_put(struct sd_store_handle *h, int64_t tenant_id, const char *doc,
                                const char *secret);
int sd_store_alert_settings_get(struct sd_store_handle *h, int64_t tenant_id, char **ret_doc,
                                char **ret_secret);
int sd_store_alert_open(struct sd_store_handle *h, const struct sd_alert *a, int64_t dedupe_usec);
int sd_store_alert_resolve(struct sd_store_handle *h, int64_t tenant_id, const char *rule,
                           const char *subject, int64_t now_usec);
int sd_store_alert_history(struct sd_store_handle *h, int64_t tenant_id, size_t limit,
                           struct sd_alert **ret, size_t *ret_n);
int sd_store_alert_claim(struct sd_store_handle *h, int64_t now_usec, int64_t lease_usec,
                         size_t limit, struct sd_alert **ret, size_t *ret_n);
int sd_store_alert_delivery_set(struct sd_store_handle *h, const char *id,
                                enum sd_alert_delivery delivery, int64_t attempts,
                                int64_t next_attempt_usec, int64_t delivered_usec,
                                const char *last_error);
/* The shape checks of open, shared by the backends. */
bool sd_alert_valid(const struct sd_alert *a);

extern const struct sd_store_alert_ops sd_sqlite_alert_ops;
extern const struct sd_store_alert_ops sd_pg_alert_ops;

#endif
