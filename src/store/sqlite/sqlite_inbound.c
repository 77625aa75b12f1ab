/* sqlite_inbound.c — the SQLite side of store/inbound.h: webhook doors, raw payloads, their
 * quarantine and the subjects index (schema/0009_inbound.sql says what each table keeps).
 *
 * Paths: doors are written through the `ctl` connection (control plane, durable on return);
 * payloads, quarantine and subjects only by the writer (`writer` connection, inside the group
 * transaction, so they commit with the records they led to); lists and door lookups use the
 * read pool and see committed rows only.
 *
 * Statement slots 160..191 of struct conn's `extra` array belong to this file. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "sqlite_internal.h"
#include "store/inbound.h"
#include "store/store.h"

enum {
    I_BEFORE_ = 159, /* the first statement is slot 160 */
    SD_INBOUND_STATEMENTS(I_),
    I_LAST_ /* must stay <= 192 */
};
_Static_assert(I_LAST_ <= 192, "inbound statement slots are 160..191");

static const char *const sql[] = {
    [I_DOOR_SET] = "INSERT INTO inbound_doors (connector_id, token_hash, created_usec) VALUES "
                   "(?1, ?2, ?3) ON CONFLICT (connector_id) DO UPDATE SET token_hash = "
                   "excluded.token_hash, created_usec = excluded.created_usec",
    [I_DOOR_GET] = "SELECT token_hash FROM inbound_doors WHERE connector_id = ?1",
    [I_DOOR_DELETE] = "DELETE FROM inbound_doors WHERE connector_id = ?1",
    [I_RAW_PUT] = "INSERT INTO inbound_raw (connector_id, tenant_id, env, content_hash, "
                  "received_usec, expires_usec, headers, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
                  "?7, ?8)",
    [I_RAW_BY_HASH] = "SELECT id, received_usec FROM inbound_raw WHERE connector_id = ?1 AND "
                      "content_hash = ?2",
    [I_RAW_RENEW] = "UPDATE inbound_raw SET received_usec = ?2, expires_usec = ?3, headers = ?4, "
                    "body = ?5, purged_usec = 0, objects = 0, applied = 0, quarantined = 0 WHERE "
                    "id = ?1",
    [I_RAW_COUNTS] = "UPDATE inbound_raw SET objects = ?2, applied = ?3, quarantined = ?4 WHERE "
                     "id = ?1",
    [I_Q_PUT] = "INSERT INTO inbound_quarantine (raw_id, connector_id, tenant_id, env, idx, "
                "reason, created_usec, updated_usec) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) "
                "ON CONFLICT (raw_id, idx) DO UPDATE SET reason = excluded.reason, "
                "updated_usec = excluded.updated_usec",
    [I_Q_DELETE] = "DELETE FROM inbound_quarantine WHERE raw_id = ?1 AND idx = ?2",
    [I_SCAN_SALE] = "SELECT 1 FROM sales WHERE tenant_id = ?1 AND env = ?2 AND invoice_number = ?3",
    [I_SCAN_PUT] = "INSERT OR IGNORE INTO sale_scans (tenant_id, env, invoice_number, scan_id, "
                   "scanned_at, gate, created_usec) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [I_SCAN_ATTEND] = "UPDATE sales SET attended_quantity = min(quantity, (SELECT count(*) FROM "
                      "sale_scans WHERE tenant_id = ?1 AND env = ?2 AND invoice_number = ?3)) "
                      "WHERE tenant_id = ?1 AND env = ?2 AND invoice_number = ?3 "
                      "AND order_type = 'sale'",
    [I_SUBJ_PUT] = "INSERT OR IGNORE INTO inbound_subjects (tenant_id, env, subject, raw_id) "
                   "VALUES (?1, ?2, ?3, ?4)",
    [I_SUBJ_RAWS] = "SELECT raw_id FROM inbound_subjects WHERE tenant_id = ?1 AND env = ?2 AND "
                    "subject = ?3",
    [I_RAW_PURGE] = "UPDATE inbound_raw SET body = x'', headers = '{}', purged_usec = ?2 WHERE "
                    "id = ?1 AND purged_usec = 0",
    [I_Q_DELETE_RAW] = "DELETE FROM inbound_quarantine WHERE raw_id = ?1",
    [I_SUBJ_DELETE_RAW] = "DELETE FROM inbound_subjects WHERE raw_id = ?1",
    /* The record itself, and every record of its profile. */
    [I_PERSON] = "SELECT customer_id, email_key FROM customers WHERE tenant_id = ?1 AND env = ?2 "
                 "AND ((customer_id = ?4 AND (?3 IS NULL OR source = ?3)) OR profile_id IN "
                 "(SELECT profile_id FROM customers WHERE tenant_id = ?1 AND env = ?2 AND "
                 "customer_id = ?4 AND (?3 IS NULL OR source = ?3) AND profile_id IS NOT NULL))",
    [I_EXPIRED] = "SELECT id FROM inbound_raw WHERE expires_usec < ?1 ORDER BY expires_usec "
                  "LIMIT ?2",
    [I_RAW_DELETE] = "DELETE FROM inbound_raw WHERE id = ?1",
    [I_ERASED] = "SELECT 1 FROM suppression WHERE tenant_id = ?1 AND env = ?2 AND email_hash = ?3 "
                 "AND reason = 'erased'",
    [I_RAW_GET] = "SELECT id, connector_id, tenant_id, env, content_hash, received_usec, "
                  "expires_usec, purged_usec, headers, body, objects, applied, quarantined FROM "
                  "inbound_raw WHERE id = ?1",
    [I_LIST_Q] = "SELECT DISTINCT q.raw_id FROM inbound_quarantine q WHERE q.connector_id = ?1 AND "
                 "q.raw_id > ?2 ORDER BY q.raw_id LIMIT ?3",
    [I_LIST_RANGE] = "SELECT id FROM inbound_raw WHERE connector_id = ?1 AND received_usec >= ?4 "
                     "AND received_usec < ?5 AND id > ?2 ORDER BY id LIMIT ?3",
    [I_Q_LIST] =
        "SELECT q.id, q.raw_id, q.connector_id, q.idx, q.reason, r.received_usec, "
        "q.created_usec, q.updated_usec FROM inbound_quarantine q JOIN inbound_raw r ON "
        "r.id = q.raw_id WHERE q.tenant_id = ?1 AND (?2 < 0 OR q.env = ?2) AND (?3 IS NULL OR "
        "q.connector_id = ?3) AND q.id > ?4 ORDER BY q.id LIMIT ?5",
    [I_COUNTS] = "SELECT (SELECT count(*) FROM inbound_raw WHERE connector_id = ?1), "
                 "(SELECT count(*) FROM inbound_quarantine WHERE connector_id = ?1)",
    [I_Q_INDEXES] = "SELECT idx FROM inbound_quarantine WHERE raw_id = ?1 ORDER BY idx",
};

static sqlite3_stmt *stmt(struct conn *c, unsigned slot)
{
    return sd_sqlite_stmt_extra(c, slot, sql[slot]);
}

static size_t clamp(size_t limit)
{
    return limit == 0 || limit > SD_INBOUND_LIST_MAX ? SD_INBOUND_LIST_MAX : limit;
}

/* ---- doors (control plane) ------------------------------------------------------------------- */

static int door_set(struct sd_store *s, const char *connector_id, const char *token_hash)
{
    if (!connector_id || !token_hash) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    sqlite3_stmt *st = stmt(k, I_DOOR_SET);
    r = sd_sqlite_bind_params(k, st,
                              SD_SQLITE_PARAMS(SD_SQLITE_TEXT(connector_id),
                                               SD_SQLITE_TEXT(token_hash),
                                               SD_SQLITE_NUM(sd_now_usec())));
    if (r == 0) {
        r = sd_sqlite_step_done(k, st, "inbound door set");
    }
    return sd_sqlite_ctl_end_write(s, r, false);
}

static int door_delete(struct sd_store *s, const char *connector_id)
{
    if (!connector_id) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    sqlite3_stmt *st = stmt(k, I_DOOR_DELETE);
    r = sd_sqlite_bind_params(k, st, SD_SQLITE_PARAMS(SD_SQLITE_TEXT(connector_id)));
    if (r == 0) {
        r = sd_sqlite_step_done(k, st, "inbound door delete");
    }
    return sd_sqlite_ctl_end_write(s, r, false);
}

static int door_get(struct sd_store *s, const char *connector_id, char ret_hash[65])
{
    if (!connector_id) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = stmt(c, I_DOOR_GET);
    r = sd_sqlite_bind_params(c, st, SD_SQLITE_PARAMS(SD_SQLITE_TEXT(connector_id)));
    if (r == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const char *h = (const char *)sqlite3_column_text(st, 0);
            if (h && strlen(h) == 64) {
                memcpy(ret_hash, h, 65);
                r = 0;
            } else {
                r = -EIO;
            }
        } else {
            r = rc == SQLITE_DONE ? -ENOENT : sd_sqlite_fail(c, rc, "inbound door get");
        }
        sqlite3_reset(st);
    }
    sd_sqlite_pool_put(s, c);
    return r;
}

/* ---- writer ---------------------------------------------------------------------------------- */

static int raw_put(struct sd_store *s, const struct sd_inbound_raw *raw, int64_t dedupe_after_usec,
                   int64_t *ret_id, bool *ret_renewed)
{
    *ret_renewed = false;
    if (!raw || !raw->connector_id || !raw->headers || !sd_sqlite_env_ok(raw->env)) {
        return -EINVAL;
    }
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, I_RAW_BY_HASH);
    if (!st) {
        return -EIO;
    }
    if ((sqlite3_bind_text(st, 1, raw->connector_id, -1, SQLITE_STATIC) |
         sqlite3_bind_text(st, 2, raw->content_hash, -1, SQLITE_STATIC)) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        int64_t received = sqlite3_column_int64(st, 1);
        sqlite3_reset(st);
        *ret_id = id;
        if (received >= dedupe_after_usec) {
            return -EEXIST;
        }
        st = stmt(c, I_RAW_RENEW);
        if (!st) {
            return -EIO;
        }
        if ((sqlite3_bind_int64(st, 1, id) | sqlite3_bind_int64(st, 2, raw->received_usec) |
             sqlite3_bind_int64(st, 3, raw->expires_usec) |
             sqlite3_bind_text(st, 4, raw->headers, -1, SQLITE_STATIC) |
             sqlite3_bind_blob64(st, 5, raw->body ? (const void *)raw->body : "",
                                 (sqlite3_uint64)raw->body_len, SQLITE_STATIC)) != SQLITE_OK) {
            return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        }
        int r = sd_sqlite_step_done(c, st, "inbound raw renew");
        *ret_renewed = r == 0;
        return r;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        return sd_sqlite_fail(c, rc, "inbound raw lookup");
    }
    st = stmt(c, I_RAW_PUT);
    if (!st) {
        return -EIO;
    }
    if ((sqlite3_bind_text(st, 1, raw->connector_id, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 2, raw->tenant_id) | sqlite3_bind_int(st, 3, (int)raw->env) |
         sqlite3_bind_text(st, 4, raw->content_hash, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 5, raw->received_usec) |
         sqlite3_bind_int64(st, 6, raw->expires_usec) |
         sqlite3_bind_text(st, 7, raw->headers, -1, SQLITE_STATIC) |
         sqlite3_bind_blob64(st, 8, raw->body ? (const void *)raw->body : "",
                             (sqlite3_uint64)raw->body_len, SQLITE_STATIC)) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int r = sd_sqlite_step_done(c, st, "inbound raw put");
    if (r == 0) {
        *ret_id = sqlite3_last_insert_rowid(c->db);
    }
    return r;
}

static int raw_counts(struct sd_store *s, int64_t raw_id, int64_t objects, int64_t applied,
                      int64_t quarantined)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, I_RAW_COUNTS);
    if (!st) {
        return -EIO;
    }
    if ((sqlite3_bind_int64(st, 1, raw_id) | sqlite3_bind_int64(st, 2, objects) |
         sqlite3_bind_int64(st, 3, applied) | sqlite3_bind_int64(st, 4, quarantined)) !=
        SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    return sd_sqlite_step_done(c, st, "inbound raw counts");
}

static int quarantine_put(struct sd_store *s, int64_t raw_id, const char *connector_id,
                          int64_t tenant_id, enum sd_env env, int64_t idx, const char *reason)
{
    if (!connector_id || !reason || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, I_Q_PUT);
    if (!st) {
        return -EIO;
    }
    if ((sqlite3_bind_int64(st, 1, raw_id) |
         sqlite3_bind_text(st, 2, connector_id, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 3, tenant_id) | sqlite3_bind_int(st, 4, (int)env) |
         sqlite3_bind_int64(st, 5, idx) | sqlite3_bind_text(st, 6, reason, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 7, sd_now_usec())) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    return sd_sqlite_step_done(c, st, "inbound quarantine put");
}

static int by_raw_idx(struct conn *c, unsigned slot, int64_t raw_id, int64_t idx, bool with_idx,
                      const char *what)
{
    sqlite3_stmt *st = stmt(c, slot);
    if (!st) {
        return -EIO;
    }
    int rc = sqlite3_bind_int64(st, 1, raw_id);
    if (with_idx) {
        rc |= sqlite3_bind_int64(st, 2, idx);
    }
    if (rc != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    return sd_sqlite_step_done(c, st, what);
}

static int quarantine_delete(struct sd_store *s, int64_t raw_id, int64_t idx)
{
    return by_raw_idx(s->writer, I_Q_DELETE, raw_id, idx, true, "inbound quarantine delete");
}

static int collect_ids(struct conn *c, sqlite3_stmt *st, int64_t **ret, size_t *ret_n,
                       const char *what);

static int quarantine_indexes(struct sd_store *s, int64_t raw_id, int64_t **ret, size_t *ret_n)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, I_Q_INDEXES);
    if (!st) {
        return -EIO;
    }
    if (sqlite3_bind_int64(st, 1, raw_id) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    return collect_ids(c, st, ret, ret_n, "inbound quarantine indexes");
}

static int subjects_put(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t raw_id,
                        char *const *subjects, size_t n)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, I_SUBJ_PUT);
    if (!st) {
        return -EIO;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t key[SD_INBOUND_SUBJECT_KEY_BYTES];
        sd_inbound_subject_key(subjects[i], key);
        if ((sqlite3_bind_int64(st, 1, tenant_id) | sqlite3_bind_int(st, 2, (int)env) |
             sqlite3_bind_blob(st, 3, key, sizeof(key), SQLITE_TRANSIENT) |
             sqlite3_bind_int64(st, 4, raw_id)) != SQLITE_OK) {
            return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        }
        int r = sd_sqlite_step_done(c, st, "inbound subject put");
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

/* Collect the first integer column of every row of st (bound by the caller) into a heap array. */
static int collect_ids(struct conn *c, sqlite3_stmt *st, int64_t **ret, size_t *ret_n,
                       const char *what)
{
    int64_t *v = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            v = sd_realloc(v, cap * sizeof(*v));
        }
        v[n++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        free(v);
        return sd_sqlite_fail(c, rc, what);
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

struct forget_ctx {
    struct conn *c;
    int64_t tenant_id;
    enum sd_env env;
    int64_t now_usec;
};

static int forget_raws(void *ctx, const uint8_t key[SD_INBOUND_SUBJECT_KEY_BYTES], int64_t **ret,
                       size_t *ret_n)
{
    const struct forget_ctx *x = ctx;
    sqlite3_stmt *st = stmt(x->c, I_SUBJ_RAWS);
    if (!st) {
        return -EIO;
    }
    if ((sqlite3_bind_int64(st, 1, x->tenant_id) | sqlite3_bind_int(st, 2, (int)x->env) |
         sqlite3_bind_blob(st, 3, key, SD_INBOUND_SUBJECT_KEY_BYTES, SQLITE_TRANSIENT)) !=
        SQLITE_OK) {
        return sd_sqlite_fail(x->c, SQLITE_MISUSE, "bind");
    }
    return collect_ids(x->c, st, ret, ret_n, "inbound subjects lookup");
}

static int forget_purge(void *ctx, int64_t raw_id)
{
    const struct forget_ctx *x = ctx;
    struct conn *c = x->c;
    sqlite3_stmt *p = stmt(c, I_RAW_PURGE);
    if (!p) {
        return -EIO;
    }
    if ((sqlite3_bind_int64(p, 1, raw_id) | sqlite3_bind_int64(p, 2, x->now_usec)) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int r = sd_sqlite_step_done(c, p, "inbound raw purge");
    int purged = r == 0 ? sqlite3_changes(c->db) : 0;
    if (r == 0) {
        r = by_raw_idx(c, I_Q_DELETE_RAW, raw_id, 0, false, "inbound quarantine purge");
    }
    if (r == 0) {
        r = by_raw_idx(c, I_SUBJ_DELETE_RAW, raw_id, 0, false, "inbound subjects purge");
    }
    return r < 0 ? r : purged;
}

static const struct sd_inbound_forget_io forget_io = {.raws = forget_raws, .purge = forget_purge};

static int forget(struct sd_store *s, int64_t tenant_id, enum sd_env env, char *const *subjects,
                  size_t n, int64_t *ret_n)
{
    struct forget_ctx x = {
        .c = s->writer, .tenant_id = tenant_id, .env = env, .now_usec = sd_now_usec()};
    return sd_inbound_forget_run(subjects, n, &forget_io, &x, ret_n);
}

static int person_subjects(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const char *source, const char *customer_id, char ***ret, size_t *ret_n)
{
    if (!customer_id) {
        return -EINVAL;
    }
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, I_PERSON);
    if (!st) {
        return -EIO;
    }
    int rc = sqlite3_bind_int64(st, 1, tenant_id) | sqlite3_bind_int(st, 2, (int)env) |
             sqlite3_bind_text(st, 4, customer_id, -1, SQLITE_STATIC);
    rc |= source ? sqlite3_bind_text(st, 3, source, -1, SQLITE_STATIC) : sqlite3_bind_null(st, 3);
    if (rc != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    struct sd_inbound_subjects b;
    sd_inbound_subjects_init(&b, customer_id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        const char *email = (const char *)sqlite3_column_text(st, 1);
        sd_inbound_subjects_add(&b, customer_id, id, email);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        sd_inbound_subjects_release(&b);
        return sd_sqlite_fail(c, rc, "inbound person subjects");
    }
    *ret = b.v;
    *ret_n = b.n;
    return 0;
}

static int purge_expired(struct sd_store *s, int64_t now_usec, size_t limit, int64_t *ret_n)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, I_EXPIRED);
    if (!st) {
        return -EIO;
    }
    if ((sqlite3_bind_int64(st, 1, now_usec) | sqlite3_bind_int64(st, 2, (int64_t)limit)) !=
        SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int64_t *ids = NULL;
    size_t n = 0;
    int r = collect_ids(c, st, &ids, &n, "inbound expired lookup");
    for (size_t i = 0; r == 0 && i < n; i++) {
        r = by_raw_idx(c, I_RAW_DELETE, ids[i], 0, false, "inbound raw delete");
        if (r == 0) {
            r = by_raw_idx(c, I_Q_DELETE_RAW, ids[i], 0, false, "inbound quarantine purge");
        }
        if (r == 0) {
            r = by_raw_idx(c, I_SUBJ_DELETE_RAW, ids[i], 0, false, "inbound subjects purge");
        }
    }
    free(ids);
    if (r == 0 && ret_n) {
        *ret_n = (int64_t)n;
    }
    return r;
}

static int email_erased(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                        const char *email_hash)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, I_ERASED);
    if (!st) {
        return -EIO;
    }
    if ((sqlite3_bind_int64(st, 1, tenant_id) | sqlite3_bind_int(st, 2, (int)env) |
         sqlite3_bind_text(st, 3, email_hash, -1, SQLITE_STATIC)) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW) {
        return 1;
    }
    return rc == SQLITE_DONE ? 0 : sd_sqlite_fail(c, rc, "inbound erased lookup");
}

/* ---- read path ------------------------------------------------------------------------------- */

static int raw_get(struct sd_store *s, int64_t raw_id, struct sd_inbound_raw *ret)
{
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = stmt(c, I_RAW_GET);
    if (!st) {
        r = -EIO;
    } else if (sqlite3_bind_int64(st, 1, raw_id) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    } else {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            struct sd_inbound_raw v = {0};
            v.id = sqlite3_column_int64(st, 0);
            v.connector_id = sd_sqlite_column_strdup(st, 1);
            v.tenant_id = sqlite3_column_int64(st, 2);
            v.env = (enum sd_env)sqlite3_column_int(st, 3);
            const char *h = (const char *)sqlite3_column_text(st, 4);
            snprintf(v.content_hash, sizeof(v.content_hash), "%s", h ? h : "");
            v.received_usec = sqlite3_column_int64(st, 5);
            v.expires_usec = sqlite3_column_int64(st, 6);
            v.purged_usec = sqlite3_column_int64(st, 7);
            v.headers = sd_sqlite_column_strdup(st, 8);
            const void *b = sqlite3_column_blob(st, 9);
            v.body_len = (size_t)sqlite3_column_bytes(st, 9);
            v.body = sd_malloc(v.body_len + 1);
            if (v.body_len) {
                memcpy(v.body, b, v.body_len);
            }
            v.body[v.body_len] = 0;
            v.objects = sqlite3_column_int64(st, 10);
            v.applied = sqlite3_column_int64(st, 11);
            v.quarantined = sqlite3_column_int64(st, 12);
            *ret = v;
            r = 0;
        } else {
            r = rc == SQLITE_DONE ? -ENOENT : sd_sqlite_fail(c, rc, "inbound raw get");
        }
        sqlite3_reset(st);
    }
    sd_sqlite_pool_put(s, c);
    return r;
}

static int raw_list(struct sd_store *s, const char *connector_id, bool quarantined_only,
                    int64_t from_usec, int64_t to_usec, int64_t after_id, size_t limit,
                    int64_t **ret_ids, size_t *ret_n)
{
    if (!connector_id) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = stmt(c, quarantined_only ? I_LIST_Q : I_LIST_RANGE);
    if (!st) {
        r = -EIO;
    } else {
        int rc = sqlite3_bind_text(st, 1, connector_id, -1, SQLITE_STATIC) |
                 sqlite3_bind_int64(st, 2, after_id) |
                 sqlite3_bind_int64(st, 3, (int64_t)clamp(limit));
        if (!quarantined_only) {
            rc |= sqlite3_bind_int64(st, 4, from_usec) | sqlite3_bind_int64(st, 5, to_usec);
        }
        r = rc != SQLITE_OK ? sd_sqlite_fail(c, SQLITE_MISUSE, "bind")
                            : collect_ids(c, st, ret_ids, ret_n, "inbound raw list");
    }
    sd_sqlite_pool_put(s, c);
    return r;
}

static int quarantine_list(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const char *connector_id, int64_t after_id, size_t limit,
                           struct sd_inbound_quarantined **ret, size_t *ret_n)
{
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_inbound_quarantined *v = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *st = stmt(c, I_Q_LIST);
    if (!st) {
        r = -EIO;
        goto out;
    }
    int rc = sqlite3_bind_int64(st, 1, tenant_id) |
             sqlite3_bind_int(st, 2, sd_sqlite_env_ok(env) ? (int)env : -1) |
             sqlite3_bind_int64(st, 4, after_id) | sqlite3_bind_int64(st, 5, (int64_t)clamp(limit));
    rc |= connector_id ? sqlite3_bind_text(st, 3, connector_id, -1, SQLITE_STATIC)
                       : sqlite3_bind_null(st, 3);
    if (rc != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            v = sd_realloc(v, cap * sizeof(*v));
        }
        v[n++] = (struct sd_inbound_quarantined){
            .id = sqlite3_column_int64(st, 0),
            .raw_id = sqlite3_column_int64(st, 1),
            .connector_id = sd_sqlite_column_strdup(st, 2),
            .idx = sqlite3_column_int64(st, 3),
            .reason = sd_sqlite_column_strdup(st, 4),
            .received_usec = sqlite3_column_int64(st, 5),
            .created_usec = sqlite3_column_int64(st, 6),
            .updated_usec = sqlite3_column_int64(st, 7),
        };
    }
    sqlite3_reset(st);
    r = rc == SQLITE_DONE ? 0 : sd_sqlite_fail(c, rc, "inbound quarantine list");
out:
    sd_sqlite_pool_put(s, c);
    if (r < 0) {
        sd_inbound_quarantined_free(v, n);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

static int counts(struct sd_store *s, const char *connector_id, int64_t *ret_payloads,
                  int64_t *ret_quarantined)
{
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = stmt(c, I_COUNTS);
    r = sd_sqlite_bind_params(c, st, SD_SQLITE_PARAMS(SD_SQLITE_TEXT(connector_id)));
    if (r == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *ret_payloads = sqlite3_column_int64(st, 0);
            *ret_quarantined = sqlite3_column_int64(st, 1);
            r = 0;
        } else {
            r = sd_sqlite_fail(c, rc, "inbound counts");
        }
        sqlite3_reset(st);
    }
    sd_sqlite_pool_put(s, c);
    return r;
}

static int scan_put(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *invoice,
                    const char *scan_id, const char *scanned_at, const char *gate)
{
    if (!invoice || !scan_id || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    struct conn *c = s->writer;
    static const unsigned slots[] = {I_SCAN_SALE, I_SCAN_PUT, I_SCAN_ATTEND};
    for (size_t i = 0; i < 3; i++) {
        sqlite3_stmt *st = stmt(c, slots[i]);
        if (!st) {
            return -EIO;
        }
        int rc = sqlite3_bind_int64(st, 1, tenant_id) | sqlite3_bind_int(st, 2, (int)env) |
                 sqlite3_bind_text(st, 3, invoice, -1, SQLITE_STATIC);
        if (slots[i] == I_SCAN_PUT) {
            rc |= sqlite3_bind_text(st, 4, scan_id, -1, SQLITE_STATIC) |
                  (scanned_at ? sqlite3_bind_text(st, 5, scanned_at, -1, SQLITE_STATIC)
                              : sqlite3_bind_null(st, 5)) |
                  (gate ? sqlite3_bind_text(st, 6, gate, -1, SQLITE_STATIC)
                        : sqlite3_bind_null(st, 6)) |
                  sqlite3_bind_int64(st, 7, sd_now_usec());
        }
        if (rc != SQLITE_OK) {
            sqlite3_reset(st);
            return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        }
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (slots[i] == I_SCAN_SALE && rc == SQLITE_DONE) {
            return -ENOENT;
        }
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            return sd_sqlite_fail(c, rc, "sale scan");
        }
        if (slots[i] == I_SCAN_PUT && sqlite3_changes(c->db) == 0) {
            return 0; /* this scan was kept before */
        }
    }
    return 1;
}

const struct sd_store_inbound_ops sd_sqlite_inbound_ops = SD_INBOUND_OPS_INIT;
