/* sqlite_read.c — the read path of the SQLite backend: idempotency lookups and listing,
 * fetching and counting records. Any thread may call these; each borrows a read-only
 * connection from the pool for the duration of the call. Every operation is a single
 * statement, so it sees one committed snapshot, and the statement is reset before the
 * connection goes back to the pool (an open read transaction would pin the WAL and stall
 * checkpoints). */
#include <errno.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "sqlite_internal.h"
#include "store/store.h"

#define PAGE_MAX 10000 /* list_records clamps its limit to this */

/* ---- read path ------------------------------------------------------------------------------- */

int sd_sqlite_idem_get(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *key,
                       struct sd_idem_entry *ret)
{
    if (!key || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_IDEM_GET);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if (sd_sqlite_bind_scope(st, tenant_id, env, key) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *h = sqlite3_column_text(st, 0);
        memset(ret->body_hash, 0, sizeof(ret->body_hash));
        if (h) {
            size_t hl = (size_t)sqlite3_column_bytes(st, 0);
            memcpy(ret->body_hash, h, hl < 64 ? hl : 64);
        }
        ret->status = sqlite3_column_int(st, 1);
        ret->response = sd_sqlite_column_strdup(st, 2);
        ret->created_usec = sqlite3_column_int64(st, 3);
        r = 0;
    } else if (rc == SQLITE_DONE) {
        r = -ENOENT;
    } else {
        r = sd_sqlite_fail(c, rc, "idempotency get");
    }
    sqlite3_reset(st);
out:
    sd_sqlite_pool_put(s, c);
    return r;
}

static int kind_stmt(enum sd_kind kind, enum stmt_id base_events, enum stmt_id *ret)
{
    if (kind != SD_KIND_EVENT && kind != SD_KIND_CUSTOMER && kind != SD_KIND_SALE) {
        return -EINVAL;
    }
    /* The per-kind statements are declared in kind order: events, customers, sales. */
    *ret = (enum stmt_id)(base_events + (int)kind);
    return 0;
}

int sd_sqlite_list_records(struct sd_store *s, enum sd_kind kind, int64_t tenant_id,
                           enum sd_env env, int64_t after_seq, size_t limit,
                           struct sd_record_page *ret)
{
    enum stmt_id id;
    if (kind_stmt(kind, ST_LIST_EVENTS, &id) < 0 || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    if (limit > PAGE_MAX) {
        limit = PAGE_MAX;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_record_page page = {0};
    size_t cap = 0;
    sqlite3_stmt *st = sd_sqlite_stmt(c, id);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, NULL) | sqlite3_bind_int64(st, 3, after_seq) |
         sqlite3_bind_int64(st, 4, (int64_t)limit + 1)) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (page.n == limit) {
            page.has_more = true;
            break;
        }
        if (page.n == cap) {
            cap = cap ? cap * 2 : (limit < 64 ? limit : 64);
            page.docs = sd_realloc(page.docs, cap * sizeof(*page.docs));
            page.seqs = sd_realloc(page.seqs, cap * sizeof(*page.seqs));
        }
        page.seqs[page.n] = sqlite3_column_int64(st, 0);
        page.docs[page.n] = sd_sqlite_column_strdup(st, 1);
        page.n++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        r = sd_sqlite_fail(c, rc, "list records");
        goto out;
    }
    *ret = page;
    page = (struct sd_record_page){0};
out:
    sd_record_page_release(&page);
    sd_sqlite_pool_put(s, c);
    return r;
}

int sd_sqlite_get_record(struct sd_store *s, enum sd_kind kind, int64_t tenant_id, enum sd_env env,
                         const char *rid, char **ret_doc)
{
    enum stmt_id id;
    if (kind_stmt(kind, ST_GET_EVENT, &id) < 0 || !sd_sqlite_env_ok(env) || !rid) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_buf doc;
    sd_buf_init(&doc);
    r = sd_sqlite_lookup_text(c, id, tenant_id, env, rid, &doc);
    sd_sqlite_pool_put(s, c);
    if (r == 1) {
        *ret_doc = sd_buf_steal(&doc);
        r = 0;
    } else if (r == 0) {
        r = -ENOENT;
    }
    sd_buf_release(&doc);
    return r;
}

int sd_sqlite_count_records(struct sd_store *s, enum sd_kind kind, int64_t tenant_id,
                            enum sd_env env, int64_t *ret)
{
    enum stmt_id id;
    if (kind_stmt(kind, ST_COUNT_EVENTS, &id) < 0 || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = sd_sqlite_stmt(c, id);
    if (!st) {
        r = -EIO;
    } else if (sd_sqlite_bind_scope(st, tenant_id, env, NULL) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    } else {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *ret = sqlite3_column_int64(st, 0);
        } else {
            r = sd_sqlite_fail(c, rc, "count records");
        }
        sqlite3_reset(st);
    }
    sd_sqlite_pool_put(s, c);
    return r;
}

int sd_sqlite_get_customer(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                           const char *source, char **ret_doc, char ***ret_sources, size_t *ret_n)
{
    if (!id || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    char **sources = NULL, *doc = NULL;
    size_t n = 0;
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_GET_CUSTOMER_SOURCE);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, id) |
         (source ? sqlite3_bind_text(st, 4, source, -1, SQLITE_STATIC)
                 : sqlite3_bind_null(st, 4))) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < 100) {
        sources = sd_realloc(sources, (n + 1) * sizeof(*sources));
        sources[n++] = sd_sqlite_column_strdup(st, 0);
        if (n == 1) {
            doc = sd_sqlite_column_strdup(st, 1);
        }
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        r = sd_sqlite_fail(c, rc, "customer get");
    } else if (n == 0) {
        r = -ENOENT;
    } else if (n == 1) {
        *ret_doc = doc;
        doc = NULL;
    } else {
        *ret_sources = sources;
        *ret_n = n;
        sources = NULL;
        n = 0;
        r = -ENOTUNIQ;
    }
out:
    for (size_t i = 0; i < n; i++) {
        free(sources[i]);
    }
    free(sources);
    free(doc);
    sd_sqlite_pool_put(s, c);
    return r;
}

/* On the writer's connection, inside its transaction: (source, id) is unique, so one row. */
int sd_sqlite_get_customer_in_write(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                                    const char *id, const char *source, char **ret_doc)
{
    if (!id || !source || !sd_sqlite_env_ok(env) || !s->writer) {
        return -EINVAL;
    }
    struct conn *c = s->writer;
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_GET_CUSTOMER_OF_SOURCE);
    if (!st) {
        return -EIO;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, id) |
         sqlite3_bind_text(st, 4, source, -1, SQLITE_STATIC)) != SQLITE_OK) {
        sqlite3_reset(st);
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int r = -ENOENT;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *ret_doc = sd_sqlite_column_strdup(st, 1);
        r = 0;
    } else if (rc != SQLITE_DONE) {
        r = sd_sqlite_fail(c, rc, "customer get in write");
    }
    sqlite3_reset(st);
    return r;
}
