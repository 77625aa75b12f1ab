/* sqlite_import_check.c — check_sale_refs (store.h): a file transport checks a whole file's
 * sales against the committed data before it writes any of them, on a read connection, so
 * the check never takes the writer's lock.
 *
 * Invariants: one read transaction per call (every lookup of a batch sees the same snapshot),
 * ended before the connection goes back to the pool (an open read transaction would pin the
 * WAL); the lookups are the writer's own statements (ST_EVENT_RESOLVE, ST_CUSTOMER_EXISTS,
 * ST_SALE_DOC), so the check and apply_ingest agree on what exists. */
#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "sqlite_internal.h"
#include "store/store.h"

/* Events a batch names, looked up once each (a file names a few hundred). */
#define EVENT_MEMO 256

struct event_memo {
    const char *id[EVENT_MEMO]; /* borrowed from the batch */
    bool exists[EVENT_MEMO];
    size_t n;
};

/* 1 if the event (or an alias of it) exists, 0 if not, -EIO. */
static int event_exists(struct conn *c, struct event_memo *m, int64_t tenant_id, enum sd_env env,
                        const char *event_id)
{
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->id[i], event_id) == 0) {
            return m->exists[i];
        }
    }
    int r = sd_sqlite_lookup_text(c, ST_EVENT_RESOLVE, tenant_id, env, event_id, NULL);
    if (r >= 0 && m->n < EVENT_MEMO) {
        m->id[m->n] = event_id;
        m->exists[m->n++] = r == 1;
    }
    return r;
}

/* 1 if the customer exists in source, 0 if not, -EIO (the writer's reference check and the
 * import check both ask it, each on its own connection). */
int sd_sqlite_customer_exists(struct conn *c, int64_t tenant_id, enum sd_env env,
                              const char *source, const char *cid)
{
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_CUSTOMER_EXISTS);
    if (!st) {
        return -EIO;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, cid) |
         sqlite3_bind_text(st, 4, source, -1, SQLITE_STATIC)) != SQLITE_OK) {
        sqlite3_reset(st);
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW) {
        return 1;
    }
    return rc == SQLITE_DONE ? 0 : sd_sqlite_fail(c, rc, "customer exists");
}

/* 1 if the invoice is stored with another document than doc, 0 if not stored or stored as
 * is, -EIO. */
static int stored_otherwise(struct conn *c, int64_t tenant_id, enum sd_env env, const char *invoice,
                            const char *doc, struct sd_buf *buf)
{
    int r = sd_sqlite_lookup_text(c, ST_SALE_DOC, tenant_id, env, invoice, buf);
    if (r != 1) {
        return r;
    }
    return !(buf->data && doc && strcmp(buf->data, doc) == 0);
}

int sd_sqlite_check_sale_refs(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                              const struct sd_batch *b, struct sd_issues *errors,
                              bool *ret_needs_writer)
{
    if (!b || !errors || !ret_needs_writer || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    if (b->n_sales == 0) {
        return 0;
    }
    const char *source = b->source ? b->source : SD_SOURCE_WEBHOOK;
    const char *envn = sd_env_name(env);
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    r = sd_sqlite_run(c, ST_BEGIN);
    if (r < 0) {
        sd_sqlite_pool_put(s, c);
        return r;
    }
    struct event_memo events = {0};
    struct sd_buf doc = {0};
    const char *last_customer = NULL;
    int n_err = 0;
    for (size_t i = 0; i < b->n_sales && r >= 0; i++) {
        const struct sd_sale_rec *sale = &b->sales[i];
        char ptr[64];
        r = event_exists(c, &events, tenant_id, env, sale->event_id);
        if (r == 0) {
            sd_utf8_snprintf(ptr, sizeof(ptr), "/sales/%zu/event_id", sale->index);
            sd_issues_add(errors, ptr, "event '%s' does not exist in %s", sale->event_id, envn);
            n_err++;
        }
        const char *cid = sale->customer_id;
        if (r >= 0 && strcmp(cid, SD_ANON_CUSTOMER) != 0 &&
            !(last_customer && strcmp(last_customer, cid) == 0)) {
            r = sd_sqlite_customer_exists(c, tenant_id, env, source, cid);
            if (r == 0) {
                sd_utf8_snprintf(ptr, sizeof(ptr), "/sales/%zu/customer_id", sale->index);
                sd_issues_add(errors, ptr, "customer '%s' does not exist in %s", cid, envn);
                n_err++;
            } else if (r == 1) {
                last_customer = cid;
            }
        }
        if (r >= 0 && !*ret_needs_writer) {
            if (sale->refund_of) {
                *ret_needs_writer = true;
            } else {
                r = stored_otherwise(c, tenant_id, env, sale->invoice_number, sale->doc, &doc);
                if (r == 1) {
                    *ret_needs_writer = true;
                }
            }
        }
    }
    sd_buf_release(&doc);
    /* Read only: ending the transaction either way changes nothing. */
    int e = sd_sqlite_run(c, ST_COMMIT);
    sd_sqlite_pool_put(s, c);
    if (r < 0) {
        return r;
    }
    return e < 0 ? e : n_err;
}
