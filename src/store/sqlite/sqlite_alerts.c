/* sqlite_alerts.c — alert settings and history of the SQLite backend (store/alerts.h), in
 * control.db (control migration 0003_alerts.sql), on the `cp` connection under cp_lock.
 *
 * Every write is one BEGIN IMMEDIATE transaction on control.db: cp_lock serializes this
 * process's threads, the file's write lock other processes, so an open's check for an alert
 * already open and its insert are one atomic step, and so is a claim. Only settings_put bumps
 * the settings version. Reads take cp_lock too (one connection), in one read transaction.
 *
 * Statements keep their SQL here, in the `cp` connection's extra slots 108..117. */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "sqlite_internal.h"
#include "store/alerts.h"

enum {
    SLOT_SET_PUT = 108,
    SLOT_SET_PUT_KEEP,
    SLOT_SET_GET,
    SLOT_OPEN_CHECK,
    SLOT_INSERT,
    SLOT_PRUNE,
    SLOT_RESOLVE,
    SLOT_HISTORY,
    SLOT_CLAIM,
    SLOT_DELIVERY,
};

static const char SQL_SET_PUT[] =
    "INSERT INTO main.alert_settings (tenant_id, doc, secret, updated_usec) VALUES (?1, ?2,"
    " NULLIF(?3, ''), ?4) ON CONFLICT (tenant_id) DO UPDATE SET doc = excluded.doc,"
    " secret = excluded.secret, updated_usec = excluded.updated_usec";
static const char SQL_SET_PUT_KEEP[] =
    "INSERT INTO main.alert_settings (tenant_id, doc, secret, updated_usec) VALUES (?1, ?2,"
    " NULL, ?3) ON CONFLICT (tenant_id) DO UPDATE SET doc = excluded.doc,"
    " updated_usec = excluded.updated_usec";
static const char SQL_SET_GET[] =
    "SELECT doc, secret FROM main.alert_settings WHERE tenant_id = ?1";
static const char SQL_OPEN_CHECK[] =
    "SELECT 1 FROM main.alerts WHERE tenant_id = ?1 AND rule = ?2 AND subject = ?3"
    " AND resolved_usec = 0 AND created_usec > ?4 LIMIT 1";
static const char SQL_INSERT[] =
    "INSERT INTO main.alerts (id, tenant_id, env, rule, subject, doc, created_usec, delivery,"
    " attempts, next_attempt_usec, delivered_usec) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,"
    " ?10, ?11)";
/* "at most 1,000 alerts per tenant": everything older than the 1,000th newest */
static const char SQL_PRUNE[] =
    "DELETE FROM main.alerts WHERE tenant_id = ?1 AND seq < (SELECT seq FROM main.alerts"
    " WHERE tenant_id = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)";
static const char SQL_RESOLVE[] =
    "UPDATE main.alerts SET resolved_usec = ?4 WHERE tenant_id = ?1 AND rule = ?2"
    " AND subject = ?3 AND resolved_usec = 0";
#define ALERT_COLS                                                                                 \
    "seq, id, tenant_id, env, rule, subject, doc, created_usec, resolved_usec, delivery,"          \
    " attempts, next_attempt_usec, delivered_usec, last_error"
static const char SQL_HISTORY[] = "SELECT " ALERT_COLS " FROM main.alerts WHERE tenant_id = ?1"
                                  " ORDER BY seq DESC LIMIT ?2";
static const char SQL_CLAIM[] =
    "UPDATE main.alerts SET next_attempt_usec = ?2 WHERE seq IN (SELECT seq FROM main.alerts"
    " WHERE delivery = 1 AND next_attempt_usec <= ?1 ORDER BY next_attempt_usec, seq LIMIT ?3)"
    " RETURNING " ALERT_COLS;
static const char SQL_DELIVERY[] =
    "UPDATE main.alerts SET delivery = ?2, attempts = ?3, next_attempt_usec = ?4,"
    " delivered_usec = ?5, last_error = ?6 WHERE id = ?1";

static int settings_put(struct sd_store *s, int64_t tenant_id, const char *doc, const char *secret)
{
    if (!doc || strnlen(doc, SD_ALERT_DOC_MAX + 1) > SD_ALERT_DOC_MAX ||
        (secret && strnlen(secret, SD_ALERT_SECRET_MAX + 1) > SD_ALERT_SECRET_MAX)) {
        return -EINVAL;
    }
    int r = sd_sqlite_cp_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *c = s->cp;
    sqlite3_stmt *st = secret ? sd_sqlite_stmt_extra(c, SLOT_SET_PUT, SQL_SET_PUT)
                              : sd_sqlite_stmt_extra(c, SLOT_SET_PUT_KEEP, SQL_SET_PUT_KEEP);
    if (!st) {
        r = -EIO;
        goto out;
    }
    int rc =
        sqlite3_bind_int64(st, 1, tenant_id) | sqlite3_bind_text(st, 2, doc, -1, SQLITE_STATIC);
    if (secret) {
        rc |= sqlite3_bind_text(st, 3, secret, -1, SQLITE_STATIC) |
              sqlite3_bind_int64(st, 4, sd_now_usec());
    } else {
        rc |= sqlite3_bind_int64(st, 3, sd_now_usec());
    }
    if (rc != SQLITE_OK) {
        sqlite3_reset(st);
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    r = sd_sqlite_step_done(c, st, "alert settings put");
out:
    return sd_sqlite_cp_end_write(s, r, true);
}

static int settings_get(struct sd_store *s, int64_t tenant_id, char **ret_doc, char **ret_secret)
{
    pthread_mutex_lock(&s->cp_lock);
    struct conn *c = s->cp;
    char *doc = NULL, *secret = NULL;
    int r = 0;
    sqlite3_stmt *st = sd_sqlite_stmt_extra(c, SLOT_SET_GET, SQL_SET_GET);
    if (!st) {
        r = -EIO;
    } else if (sqlite3_bind_int64(st, 1, tenant_id) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    } else {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            doc = sd_sqlite_column_strdup(st, 0);
            secret = sd_sqlite_column_strdup(st, 1);
        } else if (rc == SQLITE_DONE) {
            r = -ENOENT;
        } else {
            r = sd_sqlite_fail(c, rc, "alert settings get");
        }
    }
    if (st) {
        sqlite3_reset(st);
    }
    pthread_mutex_unlock(&s->cp_lock);
    if (r == 0) {
        *ret_doc = doc;
        doc = NULL;
        if (ret_secret) {
            *ret_secret = secret;
            secret = NULL;
        }
    }
    free(doc);
    if (secret) {
        explicit_bzero(secret, strlen(secret));
        free(secret);
    }
    return r;
}

static int open_alert(struct sd_store *s, const struct sd_alert *a, int64_t dedupe_usec)
{
    if (!sd_alert_valid(a) || dedupe_usec < 0) {
        return -EINVAL;
    }
    int r = sd_sqlite_cp_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *c = s->cp;
    sqlite3_stmt *st = sd_sqlite_stmt_extra(c, SLOT_OPEN_CHECK, SQL_OPEN_CHECK);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if ((sqlite3_bind_int64(st, 1, a->tenant_id) |
         sqlite3_bind_text(st, 2, a->rule, -1, SQLITE_STATIC) |
         sqlite3_bind_text(st, 3, a->subject, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 4, a->created_usec - dedupe_usec)) != SQLITE_OK) {
        sqlite3_reset(st);
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW) {
        r = -EEXIST;
        goto out;
    }
    if (rc != SQLITE_DONE) {
        r = sd_sqlite_fail(c, rc, "alert open check");
        goto out;
    }
    st = sd_sqlite_stmt_extra(c, SLOT_INSERT, SQL_INSERT);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if ((sqlite3_bind_text(st, 1, a->id, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 2, a->tenant_id) | sqlite3_bind_int(st, 3, (int)a->env) |
         sqlite3_bind_text(st, 4, a->rule, -1, SQLITE_STATIC) |
         sqlite3_bind_text(st, 5, a->subject, -1, SQLITE_STATIC) |
         sqlite3_bind_text(st, 6, a->doc, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 7, a->created_usec) | sqlite3_bind_int(st, 8, (int)a->delivery) |
         sqlite3_bind_int64(st, 9, a->attempts) | sqlite3_bind_int64(st, 10, a->next_attempt_usec) |
         sqlite3_bind_int64(st, 11, a->delivered_usec)) != SQLITE_OK) {
        sqlite3_reset(st);
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    r = sd_sqlite_step_done(c, st, "alert insert");
    if (r < 0) {
        goto out;
    }
    st = sd_sqlite_stmt_extra(c, SLOT_PRUNE, SQL_PRUNE);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if ((sqlite3_bind_int64(st, 1, a->tenant_id) | sqlite3_bind_int64(st, 2, SD_ALERTS_KEEP - 1)) !=
        SQLITE_OK) {
        sqlite3_reset(st);
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    r = sd_sqlite_step_done(c, st, "alert prune");
out:
    return sd_sqlite_cp_end_write(s, r, false);
}

static int resolve(struct sd_store *s, int64_t tenant_id, const char *rule, const char *subject,
                   int64_t now_usec)
{
    if (!rule || !subject) {
        return -EINVAL;
    }
    int r = sd_sqlite_cp_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *c = s->cp;
    int n = 0;
    sqlite3_stmt *st = sd_sqlite_stmt_extra(c, SLOT_RESOLVE, SQL_RESOLVE);
    if (!st) {
        r = -EIO;
    } else if ((sqlite3_bind_int64(st, 1, tenant_id) |
                sqlite3_bind_text(st, 2, rule, -1, SQLITE_STATIC) |
                sqlite3_bind_text(st, 3, subject, -1, SQLITE_STATIC) |
                sqlite3_bind_int64(st, 4, now_usec)) != SQLITE_OK) {
        sqlite3_reset(st);
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    } else {
        r = sd_sqlite_step_done(c, st, "alert resolve");
        n = r == 0 ? sqlite3_changes(c->db) : 0;
    }
    r = sd_sqlite_cp_end_write(s, r, false);
    return r < 0 ? r : n;
}

static void read_alert(sqlite3_stmt *st, struct sd_alert *a)
{
    a->seq = sqlite3_column_int64(st, 0);
    a->id = sd_sqlite_column_strdup(st, 1);
    a->tenant_id = sqlite3_column_int64(st, 2);
    a->env = sqlite3_column_int(st, 3) == 1 ? SD_ENV_PROD : SD_ENV_TEST;
    a->rule = sd_sqlite_column_strdup(st, 4);
    a->subject = sd_sqlite_column_strdup(st, 5);
    a->doc = sd_sqlite_column_strdup(st, 6);
    a->created_usec = sqlite3_column_int64(st, 7);
    a->resolved_usec = sqlite3_column_int64(st, 8);
    a->delivery = (enum sd_alert_delivery)sqlite3_column_int(st, 9);
    a->attempts = sqlite3_column_int64(st, 10);
    a->next_attempt_usec = sqlite3_column_int64(st, 11);
    a->delivered_usec = sqlite3_column_int64(st, 12);
    a->last_error = sd_sqlite_column_strdup(st, 13);
}

/* Step st (bound) to its end, reading at most limit alerts. */
static int read_alerts(struct conn *c, sqlite3_stmt *st, size_t limit, struct sd_alert **ret,
                       size_t *ret_n)
{
    struct sd_alert *v = sd_calloc(limit, sizeof(*v));
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n < limit) {
            read_alert(st, &v[n++]);
        }
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        sd_alerts_free(v, n);
        return sd_sqlite_fail(c, rc, "alert list");
    }
    if (n == 0) {
        free(v);
        v = NULL;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

static int history(struct sd_store *s, int64_t tenant_id, size_t limit, struct sd_alert **ret,
                   size_t *ret_n)
{
    if (limit == 0 || limit > SD_ALERTS_PAGE_MAX) {
        return -EINVAL;
    }
    pthread_mutex_lock(&s->cp_lock);
    struct conn *c = s->cp;
    int r;
    sqlite3_stmt *st = sd_sqlite_stmt_extra(c, SLOT_HISTORY, SQL_HISTORY);
    if (!st) {
        r = -EIO;
    } else if ((sqlite3_bind_int64(st, 1, tenant_id) | sqlite3_bind_int64(st, 2, (int64_t)limit)) !=
               SQLITE_OK) {
        sqlite3_reset(st);
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    } else {
        r = read_alerts(c, st, limit, ret, ret_n);
    }
    pthread_mutex_unlock(&s->cp_lock);
    return r;
}

static int claim(struct sd_store *s, int64_t now_usec, int64_t lease_usec, size_t limit,
                 struct sd_alert **ret, size_t *ret_n)
{
    if (limit == 0 || limit > SD_ALERTS_PAGE_MAX || lease_usec <= 0) {
        return -EINVAL;
    }
    struct sd_alert *v = NULL;
    size_t n = 0;
    int r = sd_sqlite_cp_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *c = s->cp;
    sqlite3_stmt *st = sd_sqlite_stmt_extra(c, SLOT_CLAIM, SQL_CLAIM);
    if (!st) {
        r = -EIO;
    } else if ((sqlite3_bind_int64(st, 1, now_usec) |
                sqlite3_bind_int64(st, 2, now_usec + lease_usec) |
                sqlite3_bind_int64(st, 3, (int64_t)limit)) != SQLITE_OK) {
        sqlite3_reset(st);
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    } else {
        r = read_alerts(c, st, limit, &v, &n);
    }
    r = sd_sqlite_cp_end_write(s, r, false);
    if (r < 0) {
        sd_alerts_free(v, n);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

static int delivery_set(struct sd_store *s, const char *id, enum sd_alert_delivery delivery,
                        int64_t attempts, int64_t next_attempt_usec, int64_t delivered_usec,
                        const char *last_error)
{
    if (!id || (unsigned)delivery > SD_ALERT_FAILED || attempts < 0) {
        return -EINVAL;
    }
    int r = sd_sqlite_cp_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *c = s->cp;
    sqlite3_stmt *st = sd_sqlite_stmt_extra(c, SLOT_DELIVERY, SQL_DELIVERY);
    if (!st) {
        r = -EIO;
    } else if ((sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) |
                sqlite3_bind_int(st, 2, (int)delivery) | sqlite3_bind_int64(st, 3, attempts) |
                sqlite3_bind_int64(st, 4, next_attempt_usec) |
                sqlite3_bind_int64(st, 5, delivered_usec) |
                (last_error ? sqlite3_bind_text(st, 6, last_error, -1, SQLITE_STATIC)
                            : sqlite3_bind_null(st, 6))) != SQLITE_OK) {
        sqlite3_reset(st);
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    } else {
        r = sd_sqlite_step_done(c, st, "alert delivery");
        if (r == 0 && sqlite3_changes(c->db) == 0) {
            r = -ENOENT;
        }
    }
    return sd_sqlite_cp_end_write(s, r, false);
}

const struct sd_store_alert_ops sd_sqlite_alert_ops = {
    .settings_put = settings_put,
    .settings_get = settings_get,
    .open = open_alert,
    .resolve = resolve,
    .history = history,
    .claim = claim,
    .delivery_set = delivery_set,
};
