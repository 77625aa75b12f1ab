/* pg_inbound.c — the PostgreSQL side of store/inbound.h: webhook doors, raw payloads (bytea),
 * their quarantine and the subjects index. The SQLite backend (sqlite_inbound.c) is the
 * reference: same statements, same outcomes.
 *
 * Paths: doors are written in their own sd_pg_tx_run transaction on a pool connection (control
 * plane, durable on return, no settings bump, as SQLite's); payloads, quarantine, subjects and
 * scans only by the writer (sd_pg_writer: inside the group transaction, so they commit with the
 * records they led to; -EINVAL outside it); lists and door lookups use the pool and see
 * committed rows only. Inserts that may meet an existing row say ON CONFLICT, so no statement
 * of the writer's fails on a duplicate (a failed statement would abort its whole transaction).
 *
 * Statement slots 800..895 (pg_internal.h) belong to this file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "pg_internal.h"
#include "pg_outbox.h"
#include "store/inbound.h"
#include "store/store.h"

enum {
    I_BEFORE_ = 799, /* the first statement is slot 800 */
    SD_INBOUND_STATEMENTS(I_),
    I_LAST_
};
#define I_FIRST_ I_DOOR_SET
_Static_assert(I_LAST_ <= 896, "inbound statement slots are 800..895");

static const char *const sql[I_LAST_ - I_FIRST_] = {
#define Q(slot) [(slot)-I_FIRST_]
    Q(I_DOOR_SET) = "INSERT INTO inbound_doors (connector_id, token_hash, created_usec) VALUES "
                    "($1, $2, $3) ON CONFLICT (connector_id) DO UPDATE SET token_hash = "
                    "excluded.token_hash, created_usec = excluded.created_usec",
    Q(I_DOOR_GET) = "SELECT token_hash FROM inbound_doors WHERE connector_id = $1",
    Q(I_DOOR_DELETE) = "DELETE FROM inbound_doors WHERE connector_id = $1",
    Q(I_RAW_PUT) = "INSERT INTO inbound_raw (connector_id, tenant_id, env, content_hash, "
                   "received_usec, expires_usec, headers, body) VALUES ($1, $2, $3, $4, $5, $6, "
                   "$7, $8) RETURNING id",
    Q(I_RAW_BY_HASH) = "SELECT id, received_usec FROM inbound_raw WHERE connector_id = $1 AND "
                       "content_hash = $2",
    Q(I_RAW_RENEW) = "UPDATE inbound_raw SET received_usec = $2, expires_usec = $3, headers = $4, "
                     "body = $5, purged_usec = 0, objects = 0, applied = 0, quarantined = 0 WHERE "
                     "id = $1",
    Q(I_RAW_COUNTS) = "UPDATE inbound_raw SET objects = $2, applied = $3, quarantined = $4 WHERE "
                      "id = $1",
    Q(I_Q_PUT) = "INSERT INTO inbound_quarantine (raw_id, connector_id, tenant_id, env, idx, "
                 "reason, created_usec, updated_usec) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) "
                 "ON CONFLICT (raw_id, idx) DO UPDATE SET reason = excluded.reason, "
                 "updated_usec = excluded.updated_usec",
    Q(I_Q_DELETE) = "DELETE FROM inbound_quarantine WHERE raw_id = $1 AND idx = $2",
    Q(I_SCAN_SALE) = "SELECT 1 FROM sales WHERE tenant_id = $1 AND env = $2 AND "
                     "invoice_number = $3",
    Q(I_SCAN_PUT) = "INSERT INTO sale_scans (tenant_id, env, invoice_number, scan_id, "
                    "scanned_at, gate, created_usec) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                    "ON CONFLICT DO NOTHING",
    Q(I_SCAN_ATTEND) = "UPDATE sales SET attended_quantity = least(quantity, (SELECT count(*) "
                       "FROM sale_scans WHERE tenant_id = $1 AND env = $2 AND "
                       "invoice_number = $3)) WHERE tenant_id = $1 AND env = $2 AND "
                       "invoice_number = $3 AND order_type = 'sale'",
    Q(I_SUBJ_PUT) = "INSERT INTO inbound_subjects (tenant_id, env, subject, raw_id) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    Q(I_SUBJ_RAWS) = "SELECT raw_id FROM inbound_subjects WHERE tenant_id = $1 AND env = $2 AND "
                     "subject = $3",
    Q(I_RAW_PURGE) = "UPDATE inbound_raw SET body = ''::bytea, headers = '{}', purged_usec = $2 "
                     "WHERE id = $1 AND purged_usec = 0",
    Q(I_Q_DELETE_RAW) = "DELETE FROM inbound_quarantine WHERE raw_id = $1",
    Q(I_SUBJ_DELETE_RAW) = "DELETE FROM inbound_subjects WHERE raw_id = $1",
    /* The record itself, and every record of its profile. */
    Q(I_PERSON) = "SELECT customer_id, email_key FROM customers WHERE tenant_id = $1 AND "
                  "env = $2 AND ((customer_id = $4 AND ($3::text IS NULL OR source = $3::text)) "
                  "OR profile_id IN (SELECT profile_id FROM customers WHERE tenant_id = $1 AND "
                  "env = $2 AND customer_id = $4 AND ($3::text IS NULL OR source = $3::text) AND "
                  "profile_id IS NOT NULL))",
    Q(I_EXPIRED) = "SELECT id FROM inbound_raw WHERE expires_usec < $1 ORDER BY expires_usec "
                   "LIMIT $2",
    Q(I_RAW_DELETE) = "DELETE FROM inbound_raw WHERE id = $1",
    Q(I_ERASED) = "SELECT 1 FROM suppression WHERE tenant_id = $1 AND env = $2 AND "
                  "email_hash = $3 AND reason = 'erased'",
    Q(I_RAW_GET) = "SELECT id, connector_id, tenant_id, env, content_hash, received_usec, "
                   "expires_usec, purged_usec, headers, body, objects, applied, quarantined FROM "
                   "inbound_raw WHERE id = $1",
    Q(I_LIST_Q) = "SELECT DISTINCT q.raw_id FROM inbound_quarantine q WHERE q.connector_id = $1 "
                  "AND q.raw_id > $2 ORDER BY q.raw_id LIMIT $3",
    Q(I_LIST_RANGE) = "SELECT id FROM inbound_raw WHERE connector_id = $1 AND "
                      "received_usec >= $4 AND received_usec < $5 AND id > $2 ORDER BY id "
                      "LIMIT $3",
    Q(I_Q_LIST) = "SELECT q.id, q.raw_id, q.connector_id, q.idx, q.reason, r.received_usec, "
                  "q.created_usec, q.updated_usec FROM inbound_quarantine q JOIN inbound_raw r ON "
                  "r.id = q.raw_id WHERE q.tenant_id = $1 AND ($2::int < 0 OR q.env = $2::int) "
                  "AND ($3::text IS NULL OR q.connector_id = $3::text) AND q.id > $4 "
                  "ORDER BY q.id LIMIT $5",
    Q(I_COUNTS) = "SELECT (SELECT count(*) FROM inbound_raw WHERE connector_id = $1), "
                  "(SELECT count(*) FROM inbound_quarantine WHERE connector_id = $1)",
    Q(I_Q_INDEXES) = "SELECT idx FROM inbound_quarantine WHERE raw_id = $1 ORDER BY idx",
#undef Q
};

static int run(struct pgconn *c, unsigned slot, const struct sd_pg_params *p, PGresult **ret)
{
    return sd_pg_exec(c, slot, sql[slot - I_FIRST_], p, ret);
}

/* The same on a pool connection (committed rows). */
static int run_pooled(struct sd_store *s, unsigned slot, const struct sd_pg_params *p,
                      PGresult **ret)
{
    return sd_pg_exec_pooled(s, slot, sql[slot - I_FIRST_], p, ret);
}

static size_t clamp(size_t limit)
{
    return limit == 0 || limit > SD_INBOUND_LIST_MAX ? SD_INBOUND_LIST_MAX : limit;
}

/* Run `slot` with the one integer parameter v (or v and w: two). Rows affected, or an error. */
static int run_ids(struct pgconn *c, unsigned slot, int64_t v, const int64_t *w, PGresult **ret)
{
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, v);
    if (w) {
        sd_pg_p_int(&p, *w);
    }
    return run(c, slot, &p, ret);
}

/* The first integer column of every row of res into a heap array (NULL when none). */
static void collect_ids(PGresult *res, int n, int64_t **ret, size_t *ret_n)
{
    int64_t *v = n > 0 ? sd_calloc((size_t)n, sizeof(*v)) : NULL;
    for (int i = 0; i < n; i++) {
        v[i] = sd_pg_int64(res, i, 0);
    }
    *ret = v;
    *ret_n = n > 0 ? (size_t)n : 0;
}

/* ---- doors (control plane) ------------------------------------------------------------------- */

struct door_arg {
    const char *connector_id;
    const char *token_hash; /* NULL: delete */
};

static int door_tx(struct pgconn *c, void *arg)
{
    const struct door_arg *a = arg;
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, a->connector_id);
    if (a->token_hash) {
        sd_pg_p_text(&p, a->token_hash);
        sd_pg_p_int(&p, sd_now_usec());
    }
    int r = run(c, a->token_hash ? I_DOOR_SET : I_DOOR_DELETE, &p, NULL);
    return r < 0 ? r : 0;
}

static int door_set(struct sd_store *s, const char *connector_id, const char *token_hash)
{
    if (!connector_id || !token_hash) {
        return -EINVAL;
    }
    struct door_arg a = {.connector_id = connector_id, .token_hash = token_hash};
    return sd_pg_tx_run(s, NULL, false, door_tx, &a);
}

static int door_delete(struct sd_store *s, const char *connector_id)
{
    if (!connector_id) {
        return -EINVAL;
    }
    struct door_arg a = {.connector_id = connector_id};
    return sd_pg_tx_run(s, NULL, false, door_tx, &a);
}

static int door_get(struct sd_store *s, const char *connector_id, char ret_hash[65])
{
    if (!connector_id) {
        return -EINVAL;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, connector_id);
    PGresult *res = NULL;
    int r = run_pooled(s, I_DOOR_GET, &p, &res);
    if (r > 0) {
        const char *h = sd_pg_text(res, 0, 0);
        if (h && strlen(h) == 64) {
            memcpy(ret_hash, h, 65);
            r = 0;
        } else {
            r = -EIO;
        }
    } else if (r == 0) {
        r = -ENOENT;
    }
    PQclear(res);
    return r;
}

/* ---- writer ---------------------------------------------------------------------------------- */

static int raw_put(struct sd_store *s, const struct sd_inbound_raw *raw, int64_t dedupe_after_usec,
                   int64_t *ret_id, bool *ret_renewed)
{
    *ret_renewed = false;
    struct pgconn *c = sd_pg_writer(s);
    if (!c || !raw || !raw->connector_id || !raw->headers || !sd_pg_env_ok(raw->env)) {
        return -EINVAL;
    }
    const void *body = raw->body ? (const void *)raw->body : "";
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, raw->connector_id);
    sd_pg_p_text(&p, raw->content_hash);
    PGresult *res = NULL;
    int r = run(c, I_RAW_BY_HASH, &p, &res);
    if (r > 0) {
        int64_t id = sd_pg_int64(res, 0, 0);
        int64_t received = sd_pg_int64(res, 0, 1);
        PQclear(res);
        *ret_id = id;
        if (received >= dedupe_after_usec) {
            return -EEXIST;
        }
        struct sd_pg_params q = {0};
        sd_pg_p_int(&q, id);
        sd_pg_p_int(&q, raw->received_usec);
        sd_pg_p_int(&q, raw->expires_usec);
        sd_pg_p_text(&q, raw->headers);
        sd_pg_p_bytes(&q, body, raw->body_len);
        r = run(c, I_RAW_RENEW, &q, NULL);
        *ret_renewed = r >= 0;
        return r < 0 ? r : 0;
    }
    PQclear(res);
    res = NULL;
    if (r < 0) {
        return r;
    }
    struct sd_pg_params q = {0};
    sd_pg_p_text(&q, raw->connector_id);
    sd_pg_p_int(&q, raw->tenant_id);
    sd_pg_p_int(&q, (int64_t)raw->env);
    sd_pg_p_text(&q, raw->content_hash);
    sd_pg_p_int(&q, raw->received_usec);
    sd_pg_p_int(&q, raw->expires_usec);
    sd_pg_p_text(&q, raw->headers);
    sd_pg_p_bytes(&q, body, raw->body_len);
    r = run(c, I_RAW_PUT, &q, &res);
    if (r > 0) {
        *ret_id = sd_pg_int64(res, 0, 0);
        r = 0;
    } else if (r == 0) {
        r = -EIO; /* RETURNING answers the row it inserted */
    }
    PQclear(res);
    return r;
}

static int raw_counts(struct sd_store *s, int64_t raw_id, int64_t objects, int64_t applied,
                      int64_t quarantined)
{
    struct pgconn *c = sd_pg_writer(s);
    if (!c) {
        return -EINVAL;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, raw_id);
    sd_pg_p_int(&p, objects);
    sd_pg_p_int(&p, applied);
    sd_pg_p_int(&p, quarantined);
    int r = run(c, I_RAW_COUNTS, &p, NULL);
    return r < 0 ? r : 0;
}

static int quarantine_put(struct sd_store *s, int64_t raw_id, const char *connector_id,
                          int64_t tenant_id, enum sd_env env, int64_t idx, const char *reason)
{
    struct pgconn *c = sd_pg_writer(s);
    if (!c || !connector_id || !reason || !sd_pg_env_ok(env)) {
        return -EINVAL;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, raw_id);
    sd_pg_p_text(&p, connector_id);
    sd_pg_p_int(&p, tenant_id);
    sd_pg_p_int(&p, (int64_t)env);
    sd_pg_p_int(&p, idx);
    sd_pg_p_text(&p, reason);
    sd_pg_p_int(&p, sd_now_usec());
    int r = run(c, I_Q_PUT, &p, NULL);
    return r < 0 ? r : 0;
}

static int quarantine_delete(struct sd_store *s, int64_t raw_id, int64_t idx)
{
    struct pgconn *c = sd_pg_writer(s);
    if (!c) {
        return -EINVAL;
    }
    int r = run_ids(c, I_Q_DELETE, raw_id, &idx, NULL);
    return r < 0 ? r : 0;
}

static int quarantine_indexes(struct sd_store *s, int64_t raw_id, int64_t **ret, size_t *ret_n)
{
    struct pgconn *c = sd_pg_writer(s);
    if (!c) {
        return -EINVAL;
    }
    PGresult *res = NULL;
    int r = run_ids(c, I_Q_INDEXES, raw_id, NULL, &res);
    if (r >= 0) {
        collect_ids(res, r, ret, ret_n);
        r = 0;
    }
    PQclear(res);
    return r;
}

static int subjects_put(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t raw_id,
                        char *const *subjects, size_t n)
{
    struct pgconn *c = sd_pg_writer(s);
    if (!c) {
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t key[SD_INBOUND_SUBJECT_KEY_BYTES];
        sd_inbound_subject_key(subjects[i], key);
        struct sd_pg_params p = {0};
        sd_pg_p_int(&p, tenant_id);
        sd_pg_p_int(&p, (int64_t)env);
        sd_pg_p_bytes(&p, key, sizeof(key));
        sd_pg_p_int(&p, raw_id);
        int r = run(c, I_SUBJ_PUT, &p, NULL);
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

/* The payload's quarantine and subject rows go (a purge or a deletion of it). */
static int drop_rows_of(struct pgconn *c, int64_t raw_id)
{
    int r = run_ids(c, I_Q_DELETE_RAW, raw_id, NULL, NULL);
    if (r >= 0) {
        r = run_ids(c, I_SUBJ_DELETE_RAW, raw_id, NULL, NULL);
    }
    return r < 0 ? r : 0;
}

struct forget_ctx {
    struct pgconn *c;
    int64_t tenant_id;
    enum sd_env env;
    int64_t now_usec;
};

static int forget_raws(void *ctx, const uint8_t key[SD_INBOUND_SUBJECT_KEY_BYTES], int64_t **ret,
                       size_t *ret_n)
{
    const struct forget_ctx *x = ctx;
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, x->tenant_id);
    sd_pg_p_int(&p, (int64_t)x->env);
    sd_pg_p_bytes(&p, key, SD_INBOUND_SUBJECT_KEY_BYTES);
    PGresult *res = NULL;
    int r = run(x->c, I_SUBJ_RAWS, &p, &res);
    if (r >= 0) {
        collect_ids(res, r, ret, ret_n);
        r = 0;
    }
    PQclear(res);
    return r;
}

static int forget_purge(void *ctx, int64_t raw_id)
{
    struct forget_ctx *x = ctx;
    int r = run_ids(x->c, I_RAW_PURGE, raw_id, &x->now_usec, NULL);
    if (r >= 0) {
        int d = drop_rows_of(x->c, raw_id);
        r = d < 0 ? d : r;
    }
    return r;
}

static const struct sd_inbound_forget_io forget_io = {.raws = forget_raws, .purge = forget_purge};

static int forget(struct sd_store *s, int64_t tenant_id, enum sd_env env, char *const *subjects,
                  size_t n, int64_t *ret_n)
{
    struct pgconn *c = sd_pg_writer(s);
    if (!c) {
        return -EINVAL;
    }
    struct forget_ctx x = {.c = c, .tenant_id = tenant_id, .env = env, .now_usec = sd_now_usec()};
    return sd_inbound_forget_run(subjects, n, &forget_io, &x, ret_n);
}

static int person_subjects(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const char *source, const char *customer_id, char ***ret, size_t *ret_n)
{
    struct pgconn *c = sd_pg_writer(s);
    if (!c || !customer_id) {
        return -EINVAL;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, tenant_id);
    sd_pg_p_int(&p, (int64_t)env);
    sd_pg_p_text(&p, source);
    sd_pg_p_text(&p, customer_id);
    PGresult *res = NULL;
    int r = run(c, I_PERSON, &p, &res);
    if (r < 0) {
        PQclear(res);
        return r;
    }
    struct sd_inbound_subjects b;
    sd_inbound_subjects_init(&b, customer_id);
    for (int i = 0; i < r; i++) {
        const char *id = sd_pg_text(res, i, 0);
        const char *email = sd_pg_text(res, i, 1);
        sd_inbound_subjects_add(&b, customer_id, id, email);
    }
    PQclear(res);
    *ret = b.v;
    *ret_n = b.n;
    return 0;
}

static int purge_expired(struct sd_store *s, int64_t now_usec, size_t limit, int64_t *ret_n)
{
    struct pgconn *c = sd_pg_writer(s);
    if (!c) {
        return -EINVAL;
    }
    int64_t lim = (int64_t)limit;
    PGresult *res = NULL;
    int r = run_ids(c, I_EXPIRED, now_usec, &lim, &res);
    int64_t *ids = NULL;
    size_t n = 0;
    if (r >= 0) {
        collect_ids(res, r, &ids, &n);
        r = 0;
    }
    PQclear(res);
    for (size_t i = 0; r >= 0 && i < n; i++) {
        r = run_ids(c, I_RAW_DELETE, ids[i], NULL, NULL);
        if (r >= 0) {
            r = drop_rows_of(c, ids[i]);
        }
    }
    free(ids);
    if (r >= 0 && ret_n) {
        *ret_n = (int64_t)n;
    }
    return r < 0 ? r : 0;
}

static int email_erased(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                        const char *email_hash)
{
    struct pgconn *c = sd_pg_writer(s);
    if (!c || !email_hash) {
        return -EINVAL;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_scope(&p, tenant_id, env, email_hash);
    int r = run(c, I_ERASED, &p, NULL);
    return r < 0 ? r : r > 0;
}

static int scan_put(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *invoice,
                    const char *scan_id, const char *scanned_at, const char *gate)
{
    struct pgconn *c = sd_pg_writer(s);
    if (!c || !invoice || !scan_id || !sd_pg_env_ok(env)) {
        return -EINVAL;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_scope(&p, tenant_id, env, invoice);
    int r = run(c, I_SCAN_SALE, &p, NULL);
    if (r <= 0) {
        return r < 0 ? r : -ENOENT;
    }
    struct sd_pg_params q = {0};
    sd_pg_p_scope(&q, tenant_id, env, invoice);
    sd_pg_p_text(&q, scan_id);
    sd_pg_p_text(&q, scanned_at);
    sd_pg_p_text(&q, gate);
    sd_pg_p_int(&q, sd_now_usec());
    r = run(c, I_SCAN_PUT, &q, NULL);
    if (r <= 0) {
        return r; /* 0: this scan was kept before */
    }
    r = run(c, I_SCAN_ATTEND, &p, NULL);
    return r < 0 ? r : 1;
}

/* ---- read path ------------------------------------------------------------------------------- */

static int raw_get(struct sd_store *s, int64_t raw_id, struct sd_inbound_raw *ret)
{
    struct pgconn *c = NULL;
    int r = sd_pg_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    PGresult *res = NULL;
    r = run_ids(c, I_RAW_GET, raw_id, NULL, &res);
    sd_pg_pool_put(s, c);
    if (r == 0) {
        r = -ENOENT;
    } else if (r > 0) {
        struct sd_inbound_raw v = {0};
        uint8_t *body = NULL;
        size_t body_len = 0;
        r = sd_pg_bytes(res, 0, 9, &body, &body_len);
        if (r == 0) {
            v.id = sd_pg_int64(res, 0, 0);
            v.connector_id = sd_pg_strdup(res, 0, 1);
            v.tenant_id = sd_pg_int64(res, 0, 2);
            v.env = (enum sd_env)sd_pg_int64(res, 0, 3);
            const char *h = sd_pg_text(res, 0, 4);
            snprintf(v.content_hash, sizeof(v.content_hash), "%s", h ? h : "");
            v.received_usec = sd_pg_int64(res, 0, 5);
            v.expires_usec = sd_pg_int64(res, 0, 6);
            v.purged_usec = sd_pg_int64(res, 0, 7);
            v.headers = sd_pg_strdup(res, 0, 8);
            /* NUL-terminated beyond body_len, as the SQLite backend hands it out. */
            v.body = sd_malloc(body_len + 1);
            if (body_len) {
                memcpy(v.body, body, body_len);
            }
            v.body[body_len] = 0;
            v.body_len = body_len;
            v.objects = sd_pg_int64(res, 0, 10);
            v.applied = sd_pg_int64(res, 0, 11);
            v.quarantined = sd_pg_int64(res, 0, 12);
            *ret = v;
        }
        free(body);
    }
    PQclear(res);
    return r;
}

static int raw_list(struct sd_store *s, const char *connector_id, bool quarantined_only,
                    int64_t from_usec, int64_t to_usec, int64_t after_id, size_t limit,
                    int64_t **ret_ids, size_t *ret_n)
{
    if (!connector_id) {
        return -EINVAL;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, connector_id);
    sd_pg_p_int(&p, after_id);
    sd_pg_p_int(&p, (int64_t)clamp(limit));
    if (!quarantined_only) {
        sd_pg_p_int(&p, from_usec);
        sd_pg_p_int(&p, to_usec);
    }
    PGresult *res = NULL;
    int r = run_pooled(s, quarantined_only ? I_LIST_Q : I_LIST_RANGE, &p, &res);
    if (r >= 0) {
        collect_ids(res, r, ret_ids, ret_n);
        r = 0;
    }
    PQclear(res);
    return r;
}

static int quarantine_list(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const char *connector_id, int64_t after_id, size_t limit,
                           struct sd_inbound_quarantined **ret, size_t *ret_n)
{
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, tenant_id);
    sd_pg_p_int(&p, sd_pg_env_ok(env) ? (int64_t)env : -1);
    sd_pg_p_text(&p, connector_id);
    sd_pg_p_int(&p, after_id);
    sd_pg_p_int(&p, (int64_t)clamp(limit));
    PGresult *res = NULL;
    int r = run_pooled(s, I_Q_LIST, &p, &res);
    if (r < 0) {
        PQclear(res);
        return r;
    }
    struct sd_inbound_quarantined *v = r > 0 ? sd_calloc((size_t)r, sizeof(*v)) : NULL;
    for (int i = 0; i < r; i++) {
        v[i] = (struct sd_inbound_quarantined){
            .id = sd_pg_int64(res, i, 0),
            .raw_id = sd_pg_int64(res, i, 1),
            .connector_id = sd_pg_strdup(res, i, 2),
            .idx = sd_pg_int64(res, i, 3),
            .reason = sd_pg_strdup(res, i, 4),
            .received_usec = sd_pg_int64(res, i, 5),
            .created_usec = sd_pg_int64(res, i, 6),
            .updated_usec = sd_pg_int64(res, i, 7),
        };
    }
    PQclear(res);
    *ret = v;
    *ret_n = (size_t)r;
    return 0;
}

static int counts(struct sd_store *s, const char *connector_id, int64_t *ret_payloads,
                  int64_t *ret_quarantined)
{
    if (!connector_id) {
        return -EINVAL;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, connector_id);
    PGresult *res = NULL;
    int r = run_pooled(s, I_COUNTS, &p, &res);
    if (r > 0) {
        *ret_payloads = sd_pg_int64(res, 0, 0);
        *ret_quarantined = sd_pg_int64(res, 0, 1);
        r = 0;
    } else if (r == 0) {
        r = -EIO; /* one row always */
    }
    PQclear(res);
    return r;
}

const struct sd_store_inbound_ops sd_pg_inbound_ops = SD_INBOUND_OPS_INIT;
