/* sqlite_observe.c — key use and the hourly traffic counters of the SQLite backend
 * (store/observe.h), in control.db (control migration 0004_observe.sql); segment sizes over
 * time in the data file (migration 0017_segment_sizes.sql), written on the ctl connection like
 * the segment's own count and read from the pool.
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
    SLOT_SIZE_INSERT,
    SLOT_SIZE_PURGE,
    SLOT_SIZE_LIST,
    SLOT_PUSHES,
    SLOT_OUTBOX_STATS,
    SLOT_LAST_,
};
_Static_assert(SLOT_LAST_ <= 240, "observe statement slots are 224..239");

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

static const char SQL_SIZE_INSERT[] =
    "INSERT INTO segment_sizes (tenant_id, env, segment_id, at_usec, member_count)"
    " SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS (SELECT 1 FROM segment_sizes"
    " WHERE tenant_id = ?1 AND env = ?2 AND segment_id = ?3 AND at_usec > ?4 - ?6"
    " AND at_usec < ?4 + ?6)";
static const char SQL_SIZE_PURGE[] = "DELETE FROM segment_sizes WHERE tenant_id = ?1 AND env = ?2"
                                     " AND segment_id = ?3 AND at_usec < ?4";
static const char SQL_SIZE_LIST[] =
    "SELECT at_usec, member_count FROM (SELECT at_usec, member_count FROM segment_sizes"
    " WHERE tenant_id = ?1 AND env = ?2 AND segment_id = ?3 AND at_usec >= ?4"
    " ORDER BY at_usec DESC LIMIT ?5) ORDER BY at_usec";

static const char SQL_PUSHES[] =
    "SELECT c.id, o.id, o.state, o.updated_usec FROM connectors c JOIN outbox_items o"
    " ON o.seq = (SELECT max(i.seq) FROM outbox_items i WHERE i.connector_id = c.id"
    " AND i.subject_kind = 'segment' AND i.subject_id = ?3)"
    " WHERE c.tenant_id = ?1 AND c.env = ?2 ORDER BY c.id";

static const char SQL_OUTBOX_STATS[] =
    "SELECT c.tenant_id, c.id,"
    " sum(CASE WHEN o.state IN ('queued', 'retrying', 'sending') THEN 1 ELSE 0 END),"
    " min(CASE WHEN o.state IN ('queued', 'retrying', 'sending') THEN o.created_usec END),"
    " sum(CASE WHEN o.state IN ('queued', 'retrying', 'sending') THEN o.attempts ELSE 0 END),"
    " sum(CASE WHEN o.state = 'dead' THEN 1 ELSE 0 END)"
    " FROM connectors c LEFT JOIN outbox_items o ON o.connector_id = c.id"
    " AND o.state IN ('queued', 'retrying', 'sending', 'dead')"
    " WHERE EXISTS (SELECT 1 FROM outbox_items i WHERE i.connector_id = c.id)"
    " GROUP BY c.tenant_id, c.id ORDER BY c.tenant_id, c.id";

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

static int bind_segment(sqlite3_stmt *st, int64_t tenant_id, enum sd_env env, const char *id)
{
    return sqlite3_bind_int64(st, 1, tenant_id) | sqlite3_bind_int(st, 2, (int)env) |
           sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
}

static int size_record(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       const char *segment_id, int64_t at_usec, int64_t member_count)
{
    if (!segment_id || !segment_id[0] || member_count < 0 || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    bool added = false;
    sqlite3_stmt *st = sd_sqlite_stmt_extra(k, SLOT_SIZE_INSERT, SQL_SIZE_INSERT);
    if (!st) {
        r = -EIO;
    } else if ((bind_segment(st, tenant_id, env, segment_id) | sqlite3_bind_int64(st, 4, at_usec) |
                sqlite3_bind_int64(st, 5, member_count) |
                sqlite3_bind_int64(st, 6, SD_SEGMENT_SIZE_GAP_USEC)) != SQLITE_OK) {
        sqlite3_reset(st);
        r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
    } else {
        r = sd_sqlite_step_done(k, st, "segment size insert");
        added = r == 0 && sqlite3_changes(k->db) > 0;
    }
    if (r == 0) {
        st = sd_sqlite_stmt_extra(k, SLOT_SIZE_PURGE, SQL_SIZE_PURGE);
        if (!st) {
            r = -EIO;
        } else if ((bind_segment(st, tenant_id, env, segment_id) |
                    sqlite3_bind_int64(st, 4, at_usec - SD_SEGMENT_SIZE_KEEP_USEC)) != SQLITE_OK) {
            sqlite3_reset(st);
            r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
        } else {
            r = sd_sqlite_step_done(k, st, "segment size purge");
        }
    }
    r = sd_sqlite_ctl_end_write(s, r, false);
    return r < 0 ? r : added ? 1 : 0;
}

static int size_history(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                        const char *segment_id, int64_t since_usec,
                        struct sd_segment_size_point **ret, size_t *ret_n)
{
    if (!segment_id || !ret || !ret_n || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_segment_size_point *v = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *st = sd_sqlite_stmt_extra(c, SLOT_SIZE_LIST, SQL_SIZE_LIST);
    if (!st) {
        r = -EIO;
    } else if ((bind_segment(st, tenant_id, env, segment_id) |
                sqlite3_bind_int64(st, 4, since_usec) |
                sqlite3_bind_int64(st, 5, SD_SEGMENT_SIZE_POINTS_MAX)) != SQLITE_OK) {
        sqlite3_reset(st);
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    } else {
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                v = sd_realloc(v, cap * sizeof(*v));
            }
            v[n].at_usec = sqlite3_column_int64(st, 0);
            v[n++].member_count = sqlite3_column_int64(st, 1);
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            r = sd_sqlite_fail(c, rc, "segment size list");
        }
    }
    sd_sqlite_pool_put(s, c);
    if (r < 0) {
        free(v);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

static int segment_pushes(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                          const char *segment_id, struct sd_segment_push **ret, size_t *ret_n)
{
    if (!segment_id || !ret || !ret_n || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_segment_push *v = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *st = sd_sqlite_stmt_extra(c, SLOT_PUSHES, SQL_PUSHES);
    if (!st) {
        r = -EIO;
    } else if (bind_segment(st, tenant_id, env, segment_id) != SQLITE_OK) {
        sqlite3_reset(st);
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    } else {
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (n == cap) {
                cap = cap ? cap * 2 : 8;
                v = sd_realloc(v, cap * sizeof(*v));
            }
            struct sd_segment_push *p = &v[n++];
            memset(p, 0, sizeof(*p));
            copy_label(p->connector_id, sizeof(p->connector_id), sqlite3_column_text(st, 0));
            copy_label(p->delivery_id, sizeof(p->delivery_id), sqlite3_column_text(st, 1));
            copy_label(p->state, sizeof(p->state), sqlite3_column_text(st, 2));
            p->updated_usec = sqlite3_column_int64(st, 3);
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            r = sd_sqlite_fail(c, rc, "segment pushes");
        }
    }
    sd_sqlite_pool_put(s, c);
    if (r < 0) {
        free(v);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

static int outbox_stats(struct sd_store *s, struct sd_outbox_stat **ret, size_t *ret_n)
{
    if (!ret || !ret_n) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_outbox_stat *v = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *st = sd_sqlite_stmt_extra(c, SLOT_OUTBOX_STATS, SQL_OUTBOX_STATS);
    if (!st) {
        r = -EIO;
    } else {
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                v = sd_realloc(v, cap * sizeof(*v));
            }
            struct sd_outbox_stat *o = &v[n++];
            memset(o, 0, sizeof(*o));
            o->tenant_id = sqlite3_column_int64(st, 0);
            copy_label(o->connector_id, sizeof(o->connector_id), sqlite3_column_text(st, 1));
            o->depth = sqlite3_column_int64(st, 2);
            o->oldest_usec = sqlite3_column_int64(st, 3); /* NULL reads as 0: none waits */
            o->attempts = sqlite3_column_int64(st, 4);
            o->dead = sqlite3_column_int64(st, 5);
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            r = sd_sqlite_fail(c, rc, "outbox stats");
        }
    }
    sd_sqlite_pool_put(s, c);
    if (r < 0) {
        free(v);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

const struct sd_store_observe_ops sd_sqlite_observe_ops = {
    .key_touch = key_touch,
    .traffic_add = traffic_add,
    .traffic_list = traffic_list,
    .segment_size_record = size_record,
    .segment_size_history = size_history,
    .segment_pushes = segment_pushes,
    .outbox_stats = outbox_stats,
};
