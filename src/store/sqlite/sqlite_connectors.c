/* sqlite_connectors.c — connectors configured at run time and their committed state.
 *
 * Configuration is control plane (the `ctl` connection under ctl_lock, BEGIN IMMEDIATE, the
 * settings version bumped on every change so running schedulers reload within a second). The
 * state document is written by the writer only, inside the transaction of the job that stored
 * the records it describes, and read through the pool. See 0002_connectors.sql. */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "sqlite_internal.h"
#include "store/store.h"

static void read_conf(sqlite3_stmt *st, struct sd_connector_conf *c)
{
    c->id = sd_sqlite_column_strdup(st, 0);
    c->tenant_id = sqlite3_column_int64(st, 1);
    c->client_id = sd_sqlite_column_strdup(st, 2);
    c->env = sqlite3_column_int(st, 3) == 1 ? SD_ENV_PROD : SD_ENV_TEST;
    c->type = sd_sqlite_column_strdup(st, 4);
    c->schedule = sd_sqlite_column_strdup(st, 5);
    c->settings = sd_sqlite_column_strdup(st, 6);
    c->mapping = sd_sqlite_column_strdup(st, 7);
    c->run_requested_usec = sqlite3_column_int64(st, 8);
    c->created_usec = sqlite3_column_int64(st, 9);
    c->updated_usec = sqlite3_column_int64(st, 10);
}

int sd_sqlite_connector_put(struct sd_store *s, const struct sd_connector_conf *c, bool create)
{
    if (!c || !c->id || !c->schedule || !c->settings || !c->mapping ||
        (create && (!c->type || !sd_sqlite_env_ok(c->env)))) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    sqlite3_stmt *st = sd_sqlite_stmt(k, create ? ST_CONNECTOR_INSERT : ST_CONNECTOR_UPDATE);
    bool changed = false;
    if (!st) {
        r = -EIO;
        goto out;
    }
    int rc = sqlite3_bind_text(st, 1, c->id, -1, SQLITE_STATIC);
    if (create) {
        rc |= sqlite3_bind_int64(st, 2, c->tenant_id);
        rc |= sqlite3_bind_int(st, 3, (int)c->env);
        rc |= sqlite3_bind_text(st, 4, c->type, -1, SQLITE_STATIC);
    }
    rc |= sqlite3_bind_text(st, 5, c->schedule, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 6, c->settings, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 7, c->mapping, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_int64(st, 8, sd_now_usec());
    if (rc != SQLITE_OK) {
        r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
        goto out;
    }
    r = sd_sqlite_step_done(k, st, create ? "connector insert" : "connector update");
    if (r == 0 && !create && sqlite3_changes(k->db) == 0) {
        r = -ENOENT;
    }
    changed = r == 0;
out:
    return sd_sqlite_ctl_end_write(s, r, changed);
}

int sd_sqlite_connector_get(struct sd_store *s, const char *id, struct sd_connector_conf *ret)
{
    if (!id) {
        return -EINVAL;
    }
    pthread_mutex_lock(&s->ctl_lock);
    struct conn *k = s->ctl;
    int r = -EIO;
    sqlite3_stmt *st = sd_sqlite_stmt(k, ST_CONNECTOR_GET);
    if (st) {
        if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK) {
            r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
        } else {
            int rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                read_conf(st, ret);
                r = 0;
            } else if (rc == SQLITE_DONE) {
                r = -ENOENT;
            } else {
                r = sd_sqlite_fail(k, rc, "connector get");
            }
            sqlite3_reset(st);
        }
    }
    pthread_mutex_unlock(&s->ctl_lock);
    return r;
}

int sd_sqlite_connector_list(struct sd_store *s, int64_t tenant_id, struct sd_connector_conf **ret,
                             size_t *ret_n)
{
    pthread_mutex_lock(&s->ctl_lock);
    struct conn *k = s->ctl;
    struct sd_connector_conf *v = NULL;
    size_t n = 0, cap = 0;
    int r = -EIO;
    sqlite3_stmt *st = sd_sqlite_stmt(k, tenant_id ? ST_CONNECTOR_LIST : ST_CONNECTOR_LIST_ALL);
    if (!st) {
        goto out;
    }
    if (tenant_id && sqlite3_bind_int64(st, 1, tenant_id) != SQLITE_OK) {
        r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
        goto out;
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            v = sd_realloc(v, cap * sizeof(*v));
        }
        read_conf(st, &v[n++]);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        r = sd_sqlite_fail(k, rc, "connector list");
        goto out;
    }
    *ret = v;
    *ret_n = n;
    v = NULL;
    n = 0;
    r = 0;
out:
    pthread_mutex_unlock(&s->ctl_lock);
    sd_connector_confs_free(v, n);
    return r;
}

/* Run one statement binding (?1 text id [, ?2 int64]) on ctl inside a control-plane write.
 * Returns 0, -ENOENT if it changed no row (when must_change), or -EIO. */
static int ctl_by_id(struct sd_store *s, enum stmt_id id, const char *key, const int64_t *arg,
                     bool must_change, bool *changed)
{
    struct conn *k = s->ctl;
    sqlite3_stmt *st = sd_sqlite_stmt(k, id);
    if (!st) {
        return -EIO;
    }
    int rc = sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (arg) {
        rc |= sqlite3_bind_int64(st, 2, *arg);
    }
    if (rc != SQLITE_OK) {
        return sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
    }
    int r = sd_sqlite_step_done(k, st, "connector change");
    if (r < 0) {
        return r;
    }
    int n = sqlite3_changes(k->db);
    if (n > 0) {
        *changed = true;
    }
    return must_change && n == 0 ? -ENOENT : 0;
}

int sd_sqlite_connector_delete(struct sd_store *s, const char *id)
{
    if (!id) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    bool changed = false;
    r = ctl_by_id(s, ST_CONNECTOR_DELETE, id, NULL, true, &changed);
    if (r == 0) {
        r = ctl_by_id(s, ST_CONNECTOR_STATE_DELETE, id, NULL, false, &changed);
    }
    if (r == 0) {
        /* Its waiting outbox items are settled at once, and its remote references go. */
        r = sd_sqlite_outbox_settle_connector(s, id, "the connector was deleted");
        r = r < 0 ? r : 0;
    }
    return sd_sqlite_ctl_end_write(s, r, changed);
}

int sd_sqlite_connector_request_run(struct sd_store *s, const char *id, int64_t usec)
{
    if (!id) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    bool changed = false;
    r = ctl_by_id(s, ST_CONNECTOR_REQUEST_RUN, id, &usec, true, &changed);
    return sd_sqlite_ctl_end_write(s, r, changed);
}

int sd_sqlite_connector_state_put(struct sd_store *s, const char *id, const char *doc)
{
    if (!id || !doc) {
        return -EINVAL;
    }
    struct conn *c = s->writer;
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_CONNECTOR_STATE_PUT);
    if (!st) {
        return -EIO;
    }
    if ((sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) |
         sqlite3_bind_text(st, 2, doc, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 3, sd_now_usec())) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    return sd_sqlite_step_done(c, st, "connector state put");
}

int sd_sqlite_connector_state_get(struct sd_store *s, const char *id, char **ret_doc)
{
    if (!id) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_CONNECTOR_STATE_GET);
    if (!st) {
        r = -EIO;
    } else if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    } else {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *ret_doc = sd_sqlite_column_strdup(st, 0);
            r = 0;
        } else if (rc == SQLITE_DONE) {
            r = -ENOENT;
        } else {
            r = sd_sqlite_fail(c, rc, "connector state get");
        }
        sqlite3_reset(st);
    }
    sd_sqlite_pool_put(s, c);
    return r;
}
