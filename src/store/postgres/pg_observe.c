/* pg_observe.c — key use and the hourly traffic counters of the PostgreSQL backend
 * (store/observe.h); the SQLite backend (sqlite_observe.c) is the reference.
 *
 * Several nodes flush their own counts into the same rows: each row is added to by one atomic
 * INSERT … ON CONFLICT DO UPDATE SET n = n + excluded.n, and a key's last use only moves
 * forward (WHERE last_used_usec < $2), so no node's count or time is lost whatever the order.
 * A flush is one transaction (sd_pg_tx_run, read committed; a deadlock between two flushes
 * touching the same rows in another order is retried by it). Nothing here bumps the settings
 * version.
 *
 * Statement slots 928..959 (pg_internal.h) belong to this file. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "pg_internal.h"
#include "store/observe.h"

enum {
    SLOT_KEY_TOUCH = 928,
    SLOT_TRAFFIC_ADD,
    SLOT_TRAFFIC_PURGE,
    SLOT_TRAFFIC_LIST,
};

static const char SQL_KEY_TOUCH[] =
    "UPDATE api_keys SET last_used_usec = $2 WHERE key_id = $1 AND last_used_usec < $2";
static const char SQL_TRAFFIC_ADD[] =
    "INSERT INTO traffic_counts (tenant_id, env, hour_usec, kind, source, field, code, n)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    " ON CONFLICT (tenant_id, hour_usec, kind, env, source, field, code)"
    " DO UPDATE SET n = traffic_counts.n + excluded.n";
static const char SQL_TRAFFIC_PURGE[] = "DELETE FROM traffic_counts WHERE hour_usec < $1";
static const char SQL_TRAFFIC_LIST[] =
    "SELECT env, hour_usec, kind, source, field, code, n FROM traffic_counts"
    " WHERE tenant_id = $1 AND hour_usec >= $2"
    " ORDER BY hour_usec, kind COLLATE \"C\", env, source COLLATE \"C\", field COLLATE \"C\","
    " code COLLATE \"C\" LIMIT $3";

#define TRAFFIC_LIST_MAX 10000

struct touch_args {
    const char *const *key_ids;
    const int64_t *used_usec;
    size_t n;
};

static int tx_key_touch(struct pgconn *c, void *arg)
{
    const struct touch_args *a = arg;
    for (size_t i = 0; i < a->n; i++) {
        struct sd_pg_params p = {0};
        sd_pg_p_text(&p, a->key_ids[i]);
        sd_pg_p_int(&p, a->used_usec[i]);
        int r = sd_pg_exec(c, SLOT_KEY_TOUCH, SQL_KEY_TOUCH, &p, NULL);
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

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
    struct touch_args a = {.key_ids = key_ids, .used_usec = used_usec, .n = n};
    return sd_pg_tx_run(s, NULL, false, tx_key_touch, &a);
}

struct add_args {
    const struct sd_traffic_count *v;
    size_t n;
    int64_t purge_before_usec;
};

static int tx_traffic_add(struct pgconn *c, void *arg)
{
    const struct add_args *a = arg;
    for (size_t i = 0; i < a->n; i++) {
        const struct sd_traffic_count *t = &a->v[i];
        struct sd_pg_params p = {0};
        sd_pg_p_int(&p, t->tenant_id);
        sd_pg_p_int(&p, (int64_t)t->env);
        sd_pg_p_int(&p, t->hour_usec);
        sd_pg_p_text(&p, t->kind);
        sd_pg_p_text(&p, t->source);
        sd_pg_p_text(&p, t->field);
        sd_pg_p_text(&p, t->code);
        sd_pg_p_int(&p, t->n);
        int r = sd_pg_exec(c, SLOT_TRAFFIC_ADD, SQL_TRAFFIC_ADD, &p, NULL);
        if (r < 0) {
            return r;
        }
    }
    struct sd_pg_params q = {0};
    sd_pg_p_int(&q, a->purge_before_usec);
    int r = sd_pg_exec(c, SLOT_TRAFFIC_PURGE, SQL_TRAFFIC_PURGE, &q, NULL);
    return r < 0 ? r : 0;
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
    struct add_args a = {.v = v, .n = n, .purge_before_usec = purge_before_usec};
    return sd_pg_tx_run(s, NULL, false, tx_traffic_add, &a);
}

static void copy_label(char *dst, size_t cap, const PGresult *res, int row, int col)
{
    const char *src = PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col);
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
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
    struct pgconn *c = NULL;
    int r = sd_pg_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, tenant_id);
    sd_pg_p_int(&p, since_usec);
    sd_pg_p_int(&p, (int64_t)limit + 1);
    PGresult *res = NULL;
    int rows = sd_pg_exec(c, SLOT_TRAFFIC_LIST, SQL_TRAFFIC_LIST, &p, &res);
    sd_pg_pool_put(s, c);
    if (rows < 0) {
        return rows;
    }
    bool more = (size_t)rows > limit;
    size_t n = more ? limit : (size_t)rows;
    struct sd_traffic_count *v = n ? sd_calloc(n, sizeof(*v)) : NULL;
    for (size_t i = 0; i < n; i++) {
        struct sd_traffic_count *t = &v[i];
        int row = (int)i;
        t->tenant_id = tenant_id;
        t->env = sd_pg_int64(res, row, 0) == 1 ? SD_ENV_PROD : SD_ENV_TEST;
        t->hour_usec = sd_pg_int64(res, row, 1);
        copy_label(t->kind, sizeof(t->kind), res, row, 2);
        copy_label(t->source, sizeof(t->source), res, row, 3);
        copy_label(t->field, sizeof(t->field), res, row, 4);
        copy_label(t->code, sizeof(t->code), res, row, 5);
        t->n = sd_pg_int64(res, row, 6);
    }
    PQclear(res);
    *ret = v;
    *ret_n = n;
    if (ret_more) {
        *ret_more = more;
    }
    return 0;
}

const struct sd_store_observe_ops sd_pg_observe_ops = {
    .key_touch = key_touch,
    .traffic_add = traffic_add,
    .traffic_list = traffic_list,
};
