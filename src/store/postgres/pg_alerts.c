/* pg_alerts.c — alert settings and history of the PostgreSQL backend (store/alerts.h), tables
 * alert_settings and alerts (0008_runs_alerts.sql).
 *
 * Each call is one transaction on a pool connection (sd_pg_tx_run). settings_put bumps the
 * settings version; nothing else does. An open runs SERIALIZABLE: its check for an open alert
 * of the same (tenant, rule, subject) and its insert commit together or not at all — two opens
 * at once conflict, the loser is run again by sd_pg_tx_run and then sees the winner's alert
 * (-EEXIST). A claim is one UPDATE … WHERE seq IN (SELECT … FOR UPDATE SKIP LOCKED)
 * RETURNING, so two nodes never claim one alert. Slots 910..919. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "pg_internal.h"
#include "store/alerts.h"

enum {
    S_SET_PUT = 910,
    S_SET_PUT_KEEP,
    S_SET_GET,
    S_OPEN_CHECK,
    S_INSERT,
    S_PRUNE,
    S_RESOLVE,
    S_HISTORY,
    S_CLAIM,
    S_DELIVERY,
};

#define ALERT_COLS                                                                                 \
    "seq, id, tenant_id, env, rule, subject, doc, created_usec, resolved_usec, delivery,"          \
    " attempts, next_attempt_usec, delivered_usec, last_error"

struct set_args {
    int64_t tenant_id;
    const char *doc, *secret;
};

static int tx_set_put(struct pgconn *k, void *arg)
{
    const struct set_args *a = arg;
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, a->tenant_id);
    sd_pg_p_text(&p, a->doc);
    sd_pg_p_int(&p, sd_now_usec());
    int r;
    if (a->secret) {
        sd_pg_p_text(&p, a->secret);
        r = sd_pg_exec(k, S_SET_PUT,
                       "INSERT INTO alert_settings (tenant_id, doc, secret, updated_usec)"
                       " VALUES ($1, $2, NULLIF($4, ''), $3) ON CONFLICT (tenant_id) DO UPDATE"
                       " SET doc = excluded.doc, secret = excluded.secret,"
                       " updated_usec = excluded.updated_usec",
                       &p, NULL);
    } else {
        r = sd_pg_exec(k, S_SET_PUT_KEEP,
                       "INSERT INTO alert_settings (tenant_id, doc, secret, updated_usec)"
                       " VALUES ($1, $2, NULL, $3) ON CONFLICT (tenant_id) DO UPDATE"
                       " SET doc = excluded.doc, updated_usec = excluded.updated_usec",
                       &p, NULL);
    }
    return r < 0 ? r : 0;
}

static int settings_put(struct sd_store *s, int64_t tenant_id, const char *doc, const char *secret)
{
    if (!doc || strnlen(doc, SD_ALERT_DOC_MAX + 1) > SD_ALERT_DOC_MAX ||
        (secret && strnlen(secret, SD_ALERT_SECRET_MAX + 1) > SD_ALERT_SECRET_MAX)) {
        return -EINVAL;
    }
    struct set_args a = {.tenant_id = tenant_id, .doc = doc, .secret = secret};
    return sd_pg_tx_run(s, NULL, true, tx_set_put, &a);
}

static int settings_get(struct sd_store *s, int64_t tenant_id, char **ret_doc, char **ret_secret)
{
    struct pgconn *c = NULL;
    int r = sd_pg_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, tenant_id);
    PGresult *res = NULL;
    r = sd_pg_exec(c, S_SET_GET, "SELECT doc, secret FROM alert_settings WHERE tenant_id = $1", &p,
                   &res);
    sd_pg_pool_put(s, c);
    if (r < 0) {
        return r;
    }
    if (r == 0) {
        PQclear(res);
        return -ENOENT;
    }
    *ret_doc = sd_pg_strdup(res, 0, 0);
    if (ret_secret) {
        *ret_secret = sd_pg_strdup(res, 0, 1);
    }
    PQclear(res);
    return 0;
}

struct open_args {
    const struct sd_alert *a;
    int64_t dedupe_usec;
};

static int tx_open(struct pgconn *k, void *arg)
{
    const struct open_args *o = arg;
    const struct sd_alert *a = o->a;
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, a->tenant_id);
    sd_pg_p_text(&p, a->rule);
    sd_pg_p_text(&p, a->subject);
    sd_pg_p_int(&p, a->created_usec - o->dedupe_usec);
    int r = sd_pg_exec(k, S_OPEN_CHECK,
                       "SELECT 1 FROM alerts WHERE tenant_id = $1 AND rule = $2 AND subject = $3"
                       " AND resolved_usec = 0 AND created_usec > $4 LIMIT 1",
                       &p, NULL);
    if (r != 0) {
        return r < 0 ? r : -EEXIST;
    }
    struct sd_pg_params q = {0};
    sd_pg_p_text(&q, a->id);
    sd_pg_p_int(&q, a->tenant_id);
    sd_pg_p_int(&q, (int64_t)a->env);
    sd_pg_p_text(&q, a->rule);
    sd_pg_p_text(&q, a->subject);
    sd_pg_p_text(&q, a->doc);
    sd_pg_p_int(&q, a->created_usec);
    sd_pg_p_int(&q, (int64_t)a->delivery);
    sd_pg_p_int(&q, a->attempts);
    sd_pg_p_int(&q, a->next_attempt_usec);
    sd_pg_p_int(&q, a->delivered_usec);
    r = sd_pg_exec(k, S_INSERT,
                   "INSERT INTO alerts (id, tenant_id, env, rule, subject, doc, created_usec,"
                   " delivery, attempts, next_attempt_usec, delivered_usec)"
                   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                   &q, NULL);
    if (r < 0) {
        return r;
    }
    struct sd_pg_params d = {0};
    sd_pg_p_int(&d, a->tenant_id);
    sd_pg_p_int(&d, SD_ALERTS_KEEP - 1);
    /* "at most 1,000 alerts per tenant": everything older than the 1,000th newest */
    r = sd_pg_exec(k, S_PRUNE,
                   "DELETE FROM alerts WHERE tenant_id = $1 AND seq < (SELECT seq FROM alerts"
                   " WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2)",
                   &d, NULL);
    return r < 0 ? r : 0;
}

static int open_alert(struct sd_store *s, const struct sd_alert *a, int64_t dedupe_usec)
{
    if (!sd_alert_valid(a) || dedupe_usec < 0) {
        return -EINVAL;
    }
    struct open_args o = {.a = a, .dedupe_usec = dedupe_usec};
    return sd_pg_tx_run(s, "BEGIN ISOLATION LEVEL SERIALIZABLE", false, tx_open, &o);
}

struct resolve_args {
    int64_t tenant_id;
    const char *rule, *subject;
    int64_t now_usec;
    int n;
};

static int tx_resolve(struct pgconn *k, void *arg)
{
    struct resolve_args *a = arg;
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, a->tenant_id);
    sd_pg_p_text(&p, a->rule);
    sd_pg_p_text(&p, a->subject);
    sd_pg_p_int(&p, a->now_usec);
    int r = sd_pg_exec(k, S_RESOLVE,
                       "UPDATE alerts SET resolved_usec = $4 WHERE tenant_id = $1 AND rule = $2"
                       " AND subject = $3 AND resolved_usec = 0",
                       &p, NULL);
    a->n = r > 0 ? r : 0;
    return r < 0 ? r : 0;
}

static int resolve(struct sd_store *s, int64_t tenant_id, const char *rule, const char *subject,
                   int64_t now_usec)
{
    if (!rule || !subject) {
        return -EINVAL;
    }
    struct resolve_args a = {
        .tenant_id = tenant_id, .rule = rule, .subject = subject, .now_usec = now_usec};
    int r = sd_pg_tx_run(s, NULL, false, tx_resolve, &a);
    return r < 0 ? r : a.n;
}

static void read_alerts(PGresult *res, int rows, struct sd_alert **ret, size_t *ret_n)
{
    struct sd_alert *v = rows > 0 ? sd_calloc((size_t)rows, sizeof(*v)) : NULL;
    for (int i = 0; i < rows; i++) {
        struct sd_alert *a = &v[i];
        a->seq = sd_pg_int64(res, i, 0);
        a->id = sd_pg_strdup(res, i, 1);
        a->tenant_id = sd_pg_int64(res, i, 2);
        a->env = sd_pg_int64(res, i, 3) == 1 ? SD_ENV_PROD : SD_ENV_TEST;
        a->rule = sd_pg_strdup(res, i, 4);
        a->subject = sd_pg_strdup(res, i, 5);
        a->doc = sd_pg_strdup(res, i, 6);
        a->created_usec = sd_pg_int64(res, i, 7);
        a->resolved_usec = sd_pg_int64(res, i, 8);
        a->delivery = (enum sd_alert_delivery)sd_pg_int64(res, i, 9);
        a->attempts = sd_pg_int64(res, i, 10);
        a->next_attempt_usec = sd_pg_int64(res, i, 11);
        a->delivered_usec = sd_pg_int64(res, i, 12);
        a->last_error = sd_pg_strdup(res, i, 13);
    }
    *ret = v;
    *ret_n = rows > 0 ? (size_t)rows : 0;
}

static int history(struct sd_store *s, int64_t tenant_id, size_t limit, struct sd_alert **ret,
                   size_t *ret_n)
{
    if (limit == 0 || limit > SD_ALERTS_PAGE_MAX) {
        return -EINVAL;
    }
    struct pgconn *c = NULL;
    int r = sd_pg_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, tenant_id);
    sd_pg_p_int(&p, (int64_t)limit);
    PGresult *res = NULL;
    r = sd_pg_exec(c, S_HISTORY,
                   "SELECT " ALERT_COLS " FROM alerts WHERE tenant_id = $1"
                   " ORDER BY seq DESC LIMIT $2",
                   &p, &res);
    sd_pg_pool_put(s, c);
    if (r < 0) {
        return r;
    }
    read_alerts(res, r, ret, ret_n);
    PQclear(res);
    return 0;
}

struct claim_args {
    int64_t now_usec, lease_usec;
    size_t limit;
    struct sd_alert *v;
    size_t n;
};

static int tx_claim(struct pgconn *k, void *arg)
{
    struct claim_args *a = arg;
    sd_alerts_free(a->v, a->n); /* a retried transaction starts over */
    a->v = NULL;
    a->n = 0;
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, a->now_usec);
    sd_pg_p_int(&p, a->now_usec + a->lease_usec);
    sd_pg_p_int(&p, (int64_t)a->limit);
    PGresult *res = NULL;
    int r = sd_pg_exec(k, S_CLAIM,
                       "UPDATE alerts SET next_attempt_usec = $2 WHERE seq IN (SELECT seq FROM"
                       " alerts WHERE delivery = 1 AND next_attempt_usec <= $1"
                       " ORDER BY next_attempt_usec, seq LIMIT $3 FOR UPDATE SKIP LOCKED)"
                       " RETURNING " ALERT_COLS,
                       &p, &res);
    if (r < 0) {
        return r;
    }
    read_alerts(res, r, &a->v, &a->n);
    PQclear(res);
    return 0;
}

static int claim(struct sd_store *s, int64_t now_usec, int64_t lease_usec, size_t limit,
                 struct sd_alert **ret, size_t *ret_n)
{
    if (limit == 0 || limit > SD_ALERTS_PAGE_MAX || lease_usec <= 0) {
        return -EINVAL;
    }
    struct claim_args a = {.now_usec = now_usec, .lease_usec = lease_usec, .limit = limit};
    int r = sd_pg_tx_run(s, NULL, false, tx_claim, &a);
    if (r < 0) {
        sd_alerts_free(a.v, a.n);
        return r;
    }
    *ret = a.v;
    *ret_n = a.n;
    return 0;
}

struct delivery_args {
    const char *id;
    enum sd_alert_delivery delivery;
    int64_t attempts, next_attempt_usec, delivered_usec;
    const char *last_error;
};

static int tx_delivery(struct pgconn *k, void *arg)
{
    const struct delivery_args *a = arg;
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, a->id);
    sd_pg_p_int(&p, (int64_t)a->delivery);
    sd_pg_p_int(&p, a->attempts);
    sd_pg_p_int(&p, a->next_attempt_usec);
    sd_pg_p_int(&p, a->delivered_usec);
    sd_pg_p_text(&p, a->last_error);
    int r = sd_pg_exec(k, S_DELIVERY,
                       "UPDATE alerts SET delivery = $2, attempts = $3, next_attempt_usec = $4,"
                       " delivered_usec = $5, last_error = $6 WHERE id = $1",
                       &p, NULL);
    return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

static int delivery_set(struct sd_store *s, const char *id, enum sd_alert_delivery delivery,
                        int64_t attempts, int64_t next_attempt_usec, int64_t delivered_usec,
                        const char *last_error)
{
    if (!id || (unsigned)delivery > SD_ALERT_FAILED || attempts < 0) {
        return -EINVAL;
    }
    struct delivery_args a = {.id = id,
                              .delivery = delivery,
                              .attempts = attempts,
                              .next_attempt_usec = next_attempt_usec,
                              .delivered_usec = delivered_usec,
                              .last_error = last_error};
    return sd_pg_tx_run(s, NULL, false, tx_delivery, &a);
}

const struct sd_store_alert_ops sd_pg_alert_ops = {
    .settings_put = settings_put,
    .settings_get = settings_get,
    .open = open_alert,
    .resolve = resolve,
    .history = history,
    .claim = claim,
    .delivery_set = delivery_set,
};
