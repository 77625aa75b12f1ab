/* sqlite_observe.c — key use and the hourly traffic counters of the SQLite backend
 * (store/observe.h), in control.db (control migration 0004_observe.sql).
 *
 * Why control.db and the `cp` connection: these writes come from every server's memory several
 * times an hour and must never wait behind the data writer, whose transaction never locks
 * control.db. Each write is one BEGIN IMMEDIATE transaction under cp_lock that ends without
 * the settings version bump: traffic is not a change of settings.
 *
 * The statements keep their SQL here, in the `cp` connection's extra slots 224..239. */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "sqlite_internal.h"
#include "store/observe.h"

enum {
    SLOT_KEY_TOUCH = 224,
    SLOT_TRAFFIC_ADD,
    SLOT_TRAFFIC_PURGE,
    SLOT_TRAFFIC_LIST,
    SLOT_LAST_,
};
_Static_assert(SLOT_LAST_ <= SD_SQLITE_EXTRA_SLOTS, "observe statement slots are 224..239");

static const char SQL_KEY_TOUCH[] =
    "UPDATE main.api_keys SET last_used_usec = ?2 WHERE key_id = ?1 AND last_used_usec < ?2";
static const char SQL_TRAFFIC_ADD[] =
    "INSERT INTO main.traffic_counts (tenant_id, env, hour_usec, kind, source, field, code, n)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    " ON CONFLICT (tenant_id, hour_usec, kind, env, source, field, code)"
    " DO UPDATE SET n = n + excluded.n";
static const char SQL_TRAFFIC_PURGE[] = "DELETE FROM main.traffic_counts WHERE hour_usec < ?1";
static const char SQL_TRAFFIC_LIST[] =
    "SELECT env, hour_usec, kind, source, field, code, n FROM main.traffic_counts"
    " WHERE tenant_id = ?1 AND hour_usec >= ?2"
    " ORDER BY hour_usec, kind, env, source, field, code LIMIT ?3";

#define TRAFFIC_LIST_MAX 10000

static int key_touch(struct sd_store *s, const char *const *key_ids, const int64_t *used_usec,
                     size_t n)
{
    if (n > 0 && (!key_ids || !used_usec)) {
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!key_ids[i]) {
            return -EINVAL;
        }
    }
    if (n == 0) {
        return 0;
    }
    int r = sd_sqlite_cp_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *c = s->cp;
    sqlite3_stmt *st = sd_sqlite_stmt_extra(c, SLOT_KEY_TOUCH, SQL_KEY_TOUCH);
    if (!st) {
        r = -EIO;
    }
    for (size_t i = 0; r >= 0 && i < n; i++) {
        if ((sqlite3_bind_text(st, 1, key_ids[i], -1, SQLITE_STATIC) |
             sqlite3_bind_int64(st, 2, used_usec[i])) != SQLITE_OK) {
            sqlite3_reset(st);
            r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        } else {
            r = sd_sqlite_step_done(c, st, "key touch");
        }
    }
    return sd_sqlite_cp_end_write(s, r, false);
}

static int traffic_add(struct sd_store *s, const struct sd_traffic_count *v, size_t n,
                       int64_t purge_before_usec)
{
    if (n > SD_TRAFFIC_ADD_MAX || (n > 0 && !v)) {
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!sd_traffic_count_valid(&v[i])) {
            return -EINVAL;
        }
    }
    int r = sd_sqlite_cp_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *c = s->cp;
    sqlite3_stmt *st = n ? sd_sqlite_stmt_extra(c, SLOT_TRAFFIC_ADD, SQL_TRAFFIC_ADD) : NULL;
    if (n && !st) {
        r = -EIO;
    }
    for (size_t i = 0; r >= 0 && i < n; i++) {
        const struct sd_traffic_count *t = &v[i];
        if ((sqlite3_bind_int64(st, 1, t->tenant_id) | sqlite3_bind_int(st, 2, (int)t->env) |
             sqlite3_bind_int64(st, 3, t->hour_usec) |
             sqlite3_bind_text(st, 4, t->kind, -1, SQLITE_STATIC) |
             sqlite3_bind_text(st, 5, t->source, -1, SQLITE_STATIC) |
             sqlite3_bind_text(st, 6, t->field, -1, SQLITE_STATIC) |
             sqlite3_bind_text(st, 7, t->code, -1, SQLITE_STATIC) |
             sqlite3_bind_int64(st, 8, t->n)) != SQLITE_OK) {
            sqlite3_reset(st);
            r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        } else {
            r = sd_sqlite_step_done(c, st, "traffic add");
        }
    }
    if (r >= 0) {
        st = sd_sqlite_stmt_extra(c, SLOT_TRAFFIC_PURGE, SQL_TRAFFIC_PURGE);
        if (!st) {
            r = -EIO;
        } else if (sqlite3_bind_int64(st, 1, purge_before_usec) != SQLITE_OK) {
            r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        } else {
            r = sd_sqlite_step_done(c, st, "traffic purge");
        }
    }
    return sd_sqlite_cp_end_write(s, r, false);
}

static void copy_label(char *dst, size_t cap, const unsigned char *src)
{
    size_t n = src ? strnlen((const char *)src, cap - 1) : 0;
    memcpy(dst, src ? (const char *)src : "", n);
    dst[n] = '\0';
}

static int traffic_list(struct sd_store *s, int64_t tenant_id, int64_t since_usec, size_t limit,
                        struct sd_traffic_count **ret, size_t *ret_n, bool *ret_more)
{
    if (!ret || !ret_n) {
        return -EINVAL;
    }
    if (limit == 0 || limit > TRAFFIC_LIST_MAX) {
        limit = TRAFFIC_LIST_MAX;
    }
    pthread_mutex_lock(&s->cp_lock);
    struct conn *c = s->cp;
    struct sd_traffic_count *v = NULL;
    size_t n = 0, cap = 0;
    bool more = false;
    int r = 0;
    sqlite3_stmt *st = sd_sqlite_stmt_extra(c, SLOT_TRAFFIC_LIST, SQL_TRAFFIC_LIST);
    if (!st) {
        r = -EIO;
    } else if ((sqlite3_bind_int64(st, 1, tenant_id) | sqlite3_bind_int64(st, 2, since_usec) |
                sqlite3_bind_int64(st, 3, (int64_t)limit + 1)) != SQLITE_OK) {
        sqlite3_reset(st);
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    } else {
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (n == limit) {
                more = true;
                break;
            }
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                v = sd_realloc(v, cap * sizeof(*v));
            }
            struct sd_traffic_count *t = &v[n++];
            memset(t, 0, sizeof(*t));
            t->tenant_id = tenant_id;
            t->env = sqlite3_column_int(st, 0) == 1 ? SD_ENV_PROD : SD_ENV_TEST;
            t->hour_usec = sqlite3_column_int64(st, 1);
            copy_label(t->kind, sizeof(t->kind), sqlite3_column_text(st, 2));
            copy_label(t->source, sizeof(t->source), sqlite3_column_text(st, 3));
            copy_label(t->field, sizeof(t->field), sqlite3_column_text(st, 4));
            copy_label(t->code, sizeof(t->code), sqlite3_column_text(st, 5));
            t->n = sqlite3_column_int64(st, 6);
        }
        sqlite3_reset(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            r = sd_sqlite_fail(c, rc, "traffic list");
        }
    }
    pthread_mutex_unlock(&s->cp_lock);
    if (r < 0) {
        free(v);
        return r;
    }
    *ret = v;
    *ret_n = n;
    if (ret_more) {
        *ret_more = more;
    }
    return 0;
}

const struct sd_store_observe_ops sd_sqlite_observe_ops = {
    .key_touch = key_touch,
    .traffic_add = traffic_add,
    .traffic_list = traffic_list,
};
