/* pg_observe.c — key use, the hourly traffic counters and segment sizes over time of the
 * PostgreSQL backend (store/observe.h); the SQLite backend (sqlite_observe.c) is the reference.
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
    SLOT_SIZE_LOCK,
    SLOT_SIZE_INSERT,
    SLOT_SIZE_PURGE,
    SLOT_SIZE_LIST,
    SLOT_PUSHES,
    SLOT_OUTBOX_STATS,
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

/* Two nodes recording the same segment at once must not both see "no recent point": the
 * record takes a transaction-level advisory lock on the segment first (released at COMMIT). */
static const char SQL_SIZE_LOCK[] =
    "SELECT pg_advisory_xact_lock(hashtextextended('segment_sizes:' || $1::text || ':' ||"
    " $2::text || ':' || $3::text, 0))";
static const char SQL_SIZE_INSERT[] =
    "INSERT INTO segment_sizes (tenant_id, env, segment_id, at_usec, member_count)"
    " SELECT $1::bigint, $2::smallint, $3::text, $4::bigint, $5::bigint WHERE NOT EXISTS"
    " (SELECT 1 FROM segment_sizes WHERE tenant_id = $1 AND env = $2 AND segment_id = $3"
    " AND at_usec > $4::bigint - $6::bigint AND at_usec < $4::bigint + $6::bigint)";
static const char SQL_SIZE_PURGE[] = "DELETE FROM segment_sizes WHERE tenant_id = $1 AND env = $2"
                                     " AND segment_id = $3 AND at_usec < $4";
static const char SQL_SIZE_LIST[] =
    "SELECT at_usec, member_count FROM (SELECT at_usec, member_count FROM segment_sizes"
    " WHERE tenant_id = $1 AND env = $2 AND segment_id = $3 AND at_usec >= $4"
    " ORDER BY at_usec DESC LIMIT $5) AS newest ORDER BY at_usec";

static const char SQL_PUSHES[] =
    "SELECT c.id, o.id, o.state, o.updated_usec FROM connectors c JOIN outbox_items o"
    " ON o.seq = (SELECT max(i.seq) FROM outbox_items i WHERE i.connector_id = c.id"
    " AND i.subject_kind = 'segment' AND i.subject_id = $3)"
    " WHERE c.tenant_id = $1 AND c.env = $2 ORDER BY c.id COLLATE \"C\"";

static const char SQL_OUTBOX_STATS[] =
    "SELECT c.tenant_id, c.id,"
    " sum(CASE WHEN o.state IN ('queued', 'retrying', 'sending') THEN 1 ELSE 0 END),"
    " min(CASE WHEN o.state IN ('queued', 'retrying', 'sending') THEN o.created_usec END),"
    " sum(CASE WHEN o.state IN ('queued', 'retrying', 'sending') THEN o.attempts ELSE 0 END),"
    " sum(CASE WHEN o.state = 'dead' THEN 1 ELSE 0 END)"
    " FROM connectors c LEFT JOIN outbox_items o ON o.connector_id = c.id"
    " AND o.state IN ('queued', 'retrying', 'sending', 'dead')"
    " WHERE EXISTS (SELECT 1 FROM outbox_items i WHERE i.connector_id = c.id)"
    " GROUP BY c.tenant_id, c.id ORDER BY c.tenant_id, c.id COLLATE \"C\"";

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

struct size_args {
    int64_t tenant_id;
    enum sd_env env;
    const char *id;
    int64_t at_usec, member_count;
    bool added;
};

static void p_segment(struct sd_pg_params *p, const struct size_args *a)
{
    sd_pg_p_int(p, a->tenant_id);
    sd_pg_p_int(p, (int64_t)a->env);
    sd_pg_p_text(p, a->id);
}

static int tx_size_record(struct pgconn *c, void *arg)
{
    struct size_args *a = arg;
    struct sd_pg_params l = {0};
    p_segment(&l, a);
    int r = sd_pg_exec(c, SLOT_SIZE_LOCK, SQL_SIZE_LOCK, &l, NULL);
    if (r < 0) {
        return r;
    }
    struct sd_pg_params p = {0};
    p_segment(&p, a);
    sd_pg_p_int(&p, a->at_usec);
    sd_pg_p_int(&p, a->member_count);
    sd_pg_p_int(&p, SD_SEGMENT_SIZE_GAP_USEC);
    r = sd_pg_exec(c, SLOT_SIZE_INSERT, SQL_SIZE_INSERT, &p, NULL);
    if (r < 0) {
        return r;
    }
    a->added = r > 0;
    struct sd_pg_params q = {0};
    p_segment(&q, a);
    sd_pg_p_int(&q, a->at_usec - SD_SEGMENT_SIZE_KEEP_USEC);
    r = sd_pg_exec(c, SLOT_SIZE_PURGE, SQL_SIZE_PURGE, &q, NULL);
    return r < 0 ? r : 0;
}

static int size_record(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       const char *segment_id, int64_t at_usec, int64_t member_count)
{
    if (!segment_id || !segment_id[0] || member_count < 0 || !sd_pg_env_ok(env)) {
        return -EINVAL;
    }
    struct size_args a = {.tenant_id = tenant_id,
                          .env = env,
                          .id = segment_id,
                          .at_usec = at_usec,
                          .member_count = member_count};
    int r = sd_pg_tx_run(s, NULL, false, tx_size_record, &a);
    return r < 0 ? r : a.added ? 1 : 0;
}

static int size_history(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                        const char *segment_id, int64_t since_usec,
                        struct sd_segment_size_point **ret, size_t *ret_n)
{
    if (!segment_id || !ret || !ret_n || !sd_pg_env_ok(env)) {
        return -EINVAL;
    }
    struct pgconn *c = NULL;
    int r = sd_pg_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct size_args a = {.tenant_id = tenant_id, .env = env, .id = segment_id};
    struct sd_pg_params p = {0};
    p_segment(&p, &a);
    sd_pg_p_int(&p, since_usec);
    sd_pg_p_int(&p, SD_SEGMENT_SIZE_POINTS_MAX);
    PGresult *res = NULL;
    int rows = sd_pg_exec(c, SLOT_SIZE_LIST, SQL_SIZE_LIST, &p, &res);
    sd_pg_pool_put(s, c);
    if (rows < 0) {
        return rows;
    }
    struct sd_segment_size_point *v = rows ? sd_calloc((size_t)rows, sizeof(*v)) : NULL;
    for (int i = 0; i < rows; i++) {
        v[i].at_usec = sd_pg_int64(res, i, 0);
        v[i].member_count = sd_pg_int64(res, i, 1);
    }
    PQclear(res);
    *ret = v;
    *ret_n = (size_t)rows;
    return 0;
}

static int segment_pushes(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                          const char *segment_id, struct sd_segment_push **ret, size_t *ret_n)
{
    if (!segment_id || !ret || !ret_n || !sd_pg_env_ok(env)) {
        return -EINVAL;
    }
    struct pgconn *c = NULL;
    int r = sd_pg_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct size_args a = {.tenant_id = tenant_id, .env = env, .id = segment_id};
    struct sd_pg_params p = {0};
    p_segment(&p, &a);
    PGresult *res = NULL;
    int rows = sd_pg_exec(c, SLOT_PUSHES, SQL_PUSHES, &p, &res);
    sd_pg_pool_put(s, c);
    if (rows < 0) {
        return rows;
    }
    struct sd_segment_push *v = rows ? sd_calloc((size_t)rows, sizeof(*v)) : NULL;
    for (int i = 0; i < rows; i++) {
        copy_label(v[i].connector_id, sizeof(v[i].connector_id), res, i, 0);
        copy_label(v[i].delivery_id, sizeof(v[i].delivery_id), res, i, 1);
        copy_label(v[i].state, sizeof(v[i].state), res, i, 2);
        v[i].updated_usec = sd_pg_int64(res, i, 3);
    }
    PQclear(res);
    *ret = v;
    *ret_n = (size_t)rows;
    return 0;
}

static int outbox_stats(struct sd_store *s, struct sd_outbox_stat **ret, size_t *ret_n)
{
    if (!ret || !ret_n) {
        return -EINVAL;
    }
    struct pgconn *c = NULL;
    int r = sd_pg_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    PGresult *res = NULL;
    int rows = sd_pg_exec(c, SLOT_OUTBOX_STATS, SQL_OUTBOX_STATS, NULL, &res);
    sd_pg_pool_put(s, c);
    if (rows < 0) {
        return rows;
    }
    struct sd_outbox_stat *v = rows ? sd_calloc((size_t)rows, sizeof(*v)) : NULL;
    for (int i = 0; i < rows; i++) {
        v[i].tenant_id = sd_pg_int64(res, i, 0);
        copy_label(v[i].connector_id, sizeof(v[i].connector_id), res, i, 1);
        v[i].depth = sd_pg_int64(res, i, 2);
        v[i].oldest_usec = PQgetisnull(res, i, 3) ? 0 : sd_pg_int64(res, i, 3);
        v[i].attempts = sd_pg_int64(res, i, 4);
        v[i].dead = sd_pg_int64(res, i, 5);
    }
    PQclear(res);
    *ret = v;
    *ret_n = (size_t)rows;
    return 0;
}

const struct sd_store_observe_ops sd_pg_observe_ops = {
    .key_touch = key_touch,
    .traffic_add = traffic_add,
    .traffic_list = traffic_list,
    .segment_size_record = size_record,
    .segment_size_history = size_history,
    .segment_pushes = segment_pushes,
    .outbox_stats = outbox_stats,
};
