/* sqlite_write.c — the write path of the SQLite backend: the group-commit transaction and its
 * per-request savepoints, applying an ingest batch (events, then customers, then sales),
 * replacing a sale, and idempotency put/purge. Only the single writer thread calls these, and
 * only on the `writer` connection, whose transactions are BEGIN IMMEDIATE.
 *
 * seq lives in memory on the writer side: write_begin loads it, each insert/update takes the
 * next value, savepoint remembers it, savepoint_rollback / write_rollback restore it. A value
 * is only kept (s->seq advanced) once its row was written.
 *
 * The caller's records outlive each step, so their text is bound SQLITE_STATIC (no copy per
 * column). */
#include <errno.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "sqlite_internal.h"
#include "sqlite_profiles.h"
#include "store/lifecycle_plan.h"
#include "store/store.h"
#include "store/write_plan.h"

/* ---- write path: transactions ---------------------------------------------------------------- */

int sd_sqlite_write_begin(struct sd_store *s)
{
    struct conn *c = s->writer;
    sd_sqlite_fault_max_pages(s);
    c->full = false;
    sd_sqlite_turn_writer_take(s);
    int r = sd_sqlite_run(c, ST_BEGIN_IMMEDIATE);
    if (r < 0) {
        sd_sqlite_turn_writer_give(s);
        return r;
    }
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_MAX_SEQ);
    if (!st) {
        r = -EIO;
    } else {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            s->seq = sqlite3_column_int64(st, 0);
        } else {
            r = sd_sqlite_fail(c, rc, "max seq");
        }
        sqlite3_reset(st);
    }
    if (r == 0) {
        /* An erasure may have deleted the rows that carried the highest numbers. */
        r = sd_sqlite_profile_seq_floor(s, &s->seq);
    }
    if (r < 0) {
        (void)sd_sqlite_run(c, ST_ROLLBACK);
        sd_sqlite_turn_writer_give(s);
        return r;
    }
    s->seq_at_begin = s->seq;
    s->seq_at_sp = s->seq;
    return 0;
}

int sd_sqlite_write_commit(struct sd_store *s)
{
    struct conn *c = s->writer;
    /* A statement of this transaction ran out of space: SQLite may have rolled back all of
     * it, so none of the group is committed and the caller is told -ENOSPC. */
    int r = c->full ? -ENOSPC : sd_sqlite_run(c, ST_COMMIT);
    if (r < 0) {
        /* The group is lost; leave the connection usable and the counter consistent. */
        if (!sqlite3_get_autocommit(c->db)) {
            (void)sd_sqlite_run(c, ST_ROLLBACK);
        }
        s->seq = s->seq_at_begin;
        sd_sqlite_turn_writer_give(s);
        return r == -ENOSPC ? r : -EIO;
    }
    sd_sqlite_turn_writer_give(s);
    return 0;
}

int sd_sqlite_write_rollback(struct sd_store *s)
{
    struct conn *c = s->writer;
    s->seq = s->seq_at_begin;
    int r = 0; /* 0: SQLite already rolled back (e.g. after an I/O error) */
    if (!sqlite3_get_autocommit(c->db)) {
        r = sd_sqlite_run(c, ST_ROLLBACK);
    }
    sd_sqlite_turn_writer_give(s);
    return r;
}

int sd_sqlite_savepoint(struct sd_store *s)
{
    if (sqlite3_get_autocommit(s->writer->db)) {
        /* SQLite ended the group's transaction (SQLITE_FULL and I/O errors may roll all of it
         * back): a SAVEPOINT now would start and then commit a transaction of its own. */
        return s->writer->full ? -ENOSPC : -EIO;
    }
    int r = sd_sqlite_run(s->writer, ST_SAVEPOINT);
    if (r == 0) {
        s->seq_at_sp = s->seq;
    }
    return r;
}

int sd_sqlite_savepoint_release(struct sd_store *s)
{
    return sd_sqlite_run(s->writer, ST_RELEASE);
}

int sd_sqlite_savepoint_rollback(struct sd_store *s)
{
    int r = sd_sqlite_run(s->writer, ST_ROLLBACK_TO);
    if (r == 0) {
        r = sd_sqlite_run(s->writer, ST_RELEASE);
    }
    if (r == 0) {
        s->seq = s->seq_at_sp;
    }
    return r;
}

/* ---- write path: ingest ---------------------------------------------------------------------- */

static int bind_origin(sqlite3_stmt *st, int col, const char *origin)
{
    return origin ? sqlite3_bind_text(st, col, origin, -1, SQLITE_STATIC)
                  : sqlite3_bind_null(st, col);
}

/* Step a statement that ends in RETURNING seq, remote_version (one row at most): 1 and
 * *ret_seq, *ret_rv, 0 if it touched no row, -EEXIST (constraint) or -EIO. */
static int step_returning_seq(struct conn *c, sqlite3_stmt *st, const char *op, int64_t *ret_seq,
                              int64_t *ret_rv)
{
    int found = 0;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *ret_seq = sqlite3_column_int64(st, 0);
        *ret_rv = sqlite3_column_int64(st, 1);
        found = 1;
        rc = sqlite3_step(st);
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) {
        return found;
    }
    if ((rc & 0xff) == SQLITE_CONSTRAINT) {
        return -EEXIST;
    }
    return sd_sqlite_fail(c, rc, op);
}

/* Merge e's content into event `event_id` with a new seq: 1 updated, 2 stored already with
 * identical content (it keeps its seq: unchanged), 3 not applied because e's remote version is
 * older than the stored one (stale, kept as it was), 0 no such event, -EIO. */
static int event_update(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                        const char *event_id, const struct sd_event_rec *e, int64_t now,
                        const char *origin)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_EVENT_UPDATE);
    if (!st) {
        return -EIO;
    }
    int64_t seq = s->seq + 1;
    if ((sd_sqlite_bind_scope(st, tenant_id, env, event_id) | sqlite3_bind_int64(st, 4, seq) |
         sqlite3_bind_text(st, 5, e->dup_key, -1, SQLITE_STATIC) |
         sqlite3_bind_text(st, 6, e->doc, -1, SQLITE_STATIC) | sqlite3_bind_int64(st, 7, now) |
         bind_origin(st, 8, origin) | sqlite3_bind_int64(st, 9, e->remote_version)) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int64_t kept = 0, rv = 0;
    int r = step_returning_seq(c, st, "event update", &kept, &rv);
    if (r <= 0) {
        return r == -EEXIST ? sd_sqlite_fail(c, SQLITE_CONSTRAINT, "event update") : r;
    }
    s->seq = seq; /* taken even when kept: seq numbering is as it always was */
    if (kept == seq) {
        return 1;
    }
    return e->remote_version != 0 && rv > e->remote_version ? 3 : 2;
}

static int event_insert(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                        const struct sd_event_rec *e, int64_t now, const char *origin)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_EVENT_INSERT);
    if (!st) {
        return -EIO;
    }
    int64_t seq = s->seq + 1;
    if ((sd_sqlite_bind_scope(st, tenant_id, env, e->event_id) | sqlite3_bind_int64(st, 4, seq) |
         sqlite3_bind_text(st, 5, e->dup_key, -1, SQLITE_STATIC) |
         sqlite3_bind_text(st, 6, e->doc, -1, SQLITE_STATIC) | sqlite3_bind_int64(st, 7, now) |
         bind_origin(st, 8, origin) | sqlite3_bind_int64(st, 9, e->remote_version)) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int r = sd_sqlite_step_done(c, st, "event insert");
    if (r < 0) {
        return r == -EEXIST ? sd_sqlite_fail(c, SQLITE_CONSTRAINT, "event insert") : r;
    }
    s->seq = seq;
    return 0;
}

static int alias_insert(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                        const char *alias_id, const char *event_id)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_ALIAS_INSERT);
    if (!st) {
        return -EIO;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, alias_id) |
         sqlite3_bind_text(st, 4, event_id, -1, SQLITE_STATIC)) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int r = sd_sqlite_step_done(c, st, "alias insert");
    return r == -EEXIST ? sd_sqlite_fail(c, SQLITE_CONSTRAINT, "alias insert") : r;
}

static int alias_get(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *alias_id,
                     struct sd_buf *out)
{
    return sd_sqlite_lookup_text(s->writer, ST_ALIAS_GET, tenant_id, env, alias_id, out);
}

static int event_by_dup(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *dup_key,
                        struct sd_buf *out)
{
    return sd_sqlite_lookup_text(s->writer, ST_EVENT_BY_DUP, tenant_id, env, dup_key, out);
}

/* What applying a batch's events (store/write_plan.c) does on the writer. */
static const struct sd_event_steps event_steps = {
    .update = event_update,
    .alias_get = alias_get,
    .by_dup = event_by_dup,
    .alias_insert = alias_insert,
    .insert = event_insert,
};

/* Upsert each customer record, then link it to its profile (sqlite_profiles.c) in the same
 * transaction, so a committed record always has a profile with up-to-date flags. A customer
 * stored already as sent keeps its seq and counts in res->n_unchanged. */
static int apply_customers(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const struct sd_batch *b, int64_t now, struct sd_apply_result *res)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_CUSTOMER_UPSERT);
    if (!st) {
        return -EIO;
    }
    struct sd_link_ctx link = {0};
    for (size_t i = 0; i < b->n_customers; i++) {
        const struct sd_customer_rec *cu = &b->customers[i];
        int64_t seq = s->seq + 1;
        int rc = sd_sqlite_bind_scope(st, tenant_id, env, cu->customer_id);
        rc |= sqlite3_bind_int64(st, 4, seq);
        rc |= cu->email_key ? sqlite3_bind_text(st, 5, cu->email_key, -1, SQLITE_STATIC)
                            : sqlite3_bind_null(st, 5);
        rc |= cu->ad_opt_out < 0 ? sqlite3_bind_null(st, 6)
                                 : sqlite3_bind_int(st, 6, cu->ad_opt_out ? 1 : 0);
        rc |= sqlite3_bind_text(st, 7, cu->doc, -1, SQLITE_STATIC);
        rc |= sqlite3_bind_int64(st, 8, now);
        rc |= sqlite3_bind_text(st, 9, sd_write_batch_source(b), -1, SQLITE_STATIC);
        rc |= bind_origin(st, 10, b->origin);
        rc |= sqlite3_bind_int64(st, 11, cu->remote_version);
        if (rc != SQLITE_OK) {
            return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        }
        int64_t kept = seq, rv = 0;
        int r = step_returning_seq(c, st, "customer upsert", &kept, &rv);
        if (r < 0) {
            return r == -EEXIST ? sd_sqlite_fail(c, SQLITE_CONSTRAINT, "customer upsert") : r;
        }
        s->seq = seq;
        if (kept != seq) {
            sd_write_count_kept(res, cu->remote_version != 0 && rv > cu->remote_version ? 3 : 2);
        }
        r = sd_sqlite_profile_link(s, tenant_id, env, &link, sd_write_batch_source(b), cu, now);
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

/* ---- order lifecycle ---------------------------------------------------------------------------
 * The planning pass (store/lifecycle_plan.c) reads the stored state of each invoice through
 * sale_state_get below; after the batch's rows are written, the sales that refund records
 * changed get their new figures (write_refund_targets). */

/* 1 and *ret when invoice is stored, 0 when not, -EIO. */
static int sale_state_get(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                          const char *invoice, struct sd_stored_sale *ret)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_SALE_STATE);
    if (!st) {
        return -EIO;
    }
    if (sd_sqlite_bind_scope(st, tenant_id, env, invoice) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        struct sd_stored_sale x = {0};
        if (sd_order_type_parse((const char *)sqlite3_column_text(st, 0), &x.st.order_type) < 0) {
            x.st.order_type = SD_ORDER_SALE;
        }
        if (sd_sale_status_parse((const char *)sqlite3_column_text(st, 1), &x.st.status) < 0) {
            x.st.status = SD_STATUS_SOLD;
        }
        x.st.quantity = sqlite3_column_int64(st, 2);
        int64_t price = sqlite3_column_int64(st, 3);
        if (__builtin_mul_overflow(x.st.quantity, price, &x.st.total_minor)) {
            x.st.total_minor = INT64_MAX; /* stored before amounts were checked for this */
        }
        x.st.refunded_quantity = sqlite3_column_int64(st, 4);
        x.st.refunded_minor = sqlite3_column_int64(st, 5);
        const unsigned char *cur = sqlite3_column_text(st, 6);
        snprintf(x.st.currency, sizeof(x.st.currency), "%s", cur ? (const char *)cur : "");
        x.rr_quantity = sqlite3_column_int64(st, 7);
        x.rr_minor = sqlite3_column_int64(st, 8);
        x.changed = sd_sqlite_column_strdup(st, 9);
        x.doc = sd_sqlite_column_strdup(st, 10);
        x.customer_id = sd_sqlite_column_strdup(st, 11);
        *ret = x;
    }
    sqlite3_reset(st);
    if (rc == SQLITE_ROW) {
        return 1;
    }
    return rc == SQLITE_DONE ? 0 : sd_sqlite_fail(c, rc, "sale state");
}

static int event_resolve(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                         const char *event_id, struct sd_buf *out)
{
    return sd_sqlite_lookup_text(s->writer, ST_EVENT_RESOLVE, tenant_id, env, event_id, out);
}

static int customer_exists(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const char *source, const char *cid)
{
    return sd_sqlite_customer_exists(s->writer, tenant_id, env, source, cid);
}

/* What the backend-neutral planning and checks (store/write_plan.h) read, on the writer. */
static const struct sd_write_lookup lookup = {
    .sale_state = sale_state_get,
    .event_resolve = event_resolve,
    .customer_exists = customer_exists,
};

/* Write the new figures of the sales refund records changed. */
static int write_refund_targets(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                                const struct sd_refund_targets *t)
{
    struct conn *c = s->writer;
    for (size_t k = 0; k < t->n; k++) {
        const struct sd_refund_target *tg = &t->v[k];
        int r = sd_sqlite_facts_sale_out(c, tenant_id, env, tg->invoice);
        if (r < 0) {
            return r;
        }
        sqlite3_stmt *st = sd_sqlite_stmt(c, ST_SALE_REFUNDS);
        if (!st) {
            return -EIO;
        }
        int rc = sd_sqlite_bind_scope(st, tenant_id, env, tg->invoice);
        rc |= sqlite3_bind_text(st, 4, sd_sale_status_name(tg->st.status), -1, SQLITE_STATIC);
        rc |= sqlite3_bind_int64(st, 5, tg->st.refunded_quantity);
        rc |= sqlite3_bind_int64(st, 6, tg->st.refunded_minor);
        rc |= sqlite3_bind_int64(st, 7, tg->rr_quantity);
        rc |= sqlite3_bind_int64(st, 8, tg->rr_minor);
        rc |= sqlite3_bind_int64(st, 9, sd_sale_net_quantity(&tg->st));
        rc |= sqlite3_bind_int64(st, 10, sd_sale_net_minor(&tg->st));
        rc |= tg->changed ? sqlite3_bind_text(st, 11, tg->changed, -1, SQLITE_STATIC)
                          : sqlite3_bind_null(st, 11);
        if (rc != SQLITE_OK) {
            return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        }
        r = sd_sqlite_step_done(c, st, "sale refunds");
        if (r < 0) {
            return r == -EEXIST ? sd_sqlite_fail(c, SQLITE_CONSTRAINT, "sale refunds") : r;
        }
        r = sd_sqlite_facts_sale_in(c, tenant_id, env, tg->invoice);
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

/* Bind a sale's columns ?1..?28 (the insert and the update share the numbering): the record,
 * the lifecycle figures its plan decided, its origin (?27) and remote version (?28). */
static int bind_sale(sqlite3_stmt *st, int64_t tenant_id, enum sd_env env,
                     const struct sd_sale_rec *sale, const struct sd_sale_plan *p, int64_t seq,
                     const char *event_ref, int64_t now, const char *source, const char *origin)
{
    int rc = sd_sqlite_bind_scope(st, tenant_id, env, sale->invoice_number);
    rc |= sqlite3_bind_int64(st, 4, seq);
    rc |= sqlite3_bind_text(st, 5, sale->event_id, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 6, event_ref, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 7, sale->customer_id, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 8, sale->purchase_datetime, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_int64(st, 9, sale->sales_price_minor);
    rc |= sqlite3_bind_text(st, 10, sale->currency, (int)strnlen(sale->currency, 3), SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 11, sale->doc, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_int64(st, 12, now);
    rc |= sqlite3_bind_text(st, 13, source, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 14, sd_order_type_name(p->st.order_type), -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 15, sd_sale_status_name(p->st.status), -1, SQLITE_STATIC);
    rc |= sqlite3_bind_int64(st, 16, p->st.quantity);
    rc |= sqlite3_bind_int64(st, 17, p->st.refunded_quantity);
    rc |= sqlite3_bind_int64(st, 18, p->st.refunded_minor);
    rc |= sqlite3_bind_int64(st, 19, sd_sale_net_quantity(&p->st));
    rc |= sqlite3_bind_int64(st, 20, sd_sale_net_minor(&p->st));
    rc |= p->changed ? sqlite3_bind_text(st, 21, p->changed, -1, SQLITE_STATIC)
                     : sqlite3_bind_null(st, 21);
    rc |= sale->expires_at ? sqlite3_bind_text(st, 22, sale->expires_at, -1, SQLITE_STATIC)
                           : sqlite3_bind_null(st, 22);
    rc |= sale->attended_quantity >= 0 ? sqlite3_bind_int64(st, 23, sale->attended_quantity)
                                       : sqlite3_bind_null(st, 23);
    rc |= sale->refund_of ? sqlite3_bind_text(st, 24, sale->refund_of, -1, SQLITE_STATIC)
                          : sqlite3_bind_null(st, 24);
    rc |= sqlite3_bind_int64(st, 25, p->rr_quantity);
    rc |= sqlite3_bind_int64(st, 26, p->rr_minor);
    rc |= bind_origin(st, 27, origin);
    rc |= sqlite3_bind_int64(st, 28, sale->remote_version);
    return rc;
}

static int sale_exists(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *invoice)
{
    return sd_sqlite_lookup_text(s->writer, ST_SALE_EXISTS, tenant_id, env, invoice, NULL);
}

/* Insert a new sale as planned: 1 inserted, 0 its invoice is stored already, -EIO. */
static int sale_insert(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       const struct sd_batch *b, const struct sd_sale_rec *sale,
                       const struct sd_sale_plan *p, const char *event_ref, int64_t now,
                       struct sd_facts_batch *facts)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_SALE_INSERT);
    if (!st) {
        return -EIO;
    }
    int64_t seq = s->seq + 1;
    if (bind_sale(st, tenant_id, env, sale, p, seq, event_ref, now, sd_write_batch_source(b),
                  b->origin) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int r = sd_sqlite_step_done(c, st, "sale insert");
    if (r < 0) {
        return r == -EEXIST ? sd_sqlite_fail(c, SQLITE_CONSTRAINT, "sale insert") : r;
    }
    if (sqlite3_changes(c->db) == 0) {
        return 0;
    }
    s->seq = seq;
    r = sd_facts_batch_add(facts, s, sd_sqlite_facts_profile_of, tenant_id, env,
                           sd_write_batch_source(b), sale->customer_id, sale->currency,
                           sale->purchase_datetime, sd_sale_net_quantity(&p->st),
                           sd_sale_net_minor(&p->st));
    return r < 0 ? r : 1;
}

/* Replace a stored sale with this record (new seq) as its plan says: 1 replaced, 0 not (an
 * older remote version: the stored sale stays; number_kept: its seq is taken all the same),
 * -EIO. The facts follow. */
static int sale_update(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       const struct sd_sale_rec *sale, const struct sd_sale_plan *p,
                       const char *event_ref, int64_t now, const char *source, const char *origin,
                       bool number_kept)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_SALE_UPDATE);
    if (!st) {
        return -EIO;
    }
    int64_t seq = s->seq + 1;
    int r = sd_sqlite_facts_sale_out(c, tenant_id, env, sale->invoice_number);
    if (r < 0) {
        return r;
    }
    if (bind_sale(st, tenant_id, env, sale, p, seq, event_ref, now, source, origin) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    r = sd_sqlite_step_done(c, st, "sale update");
    if (r < 0) {
        return r == -EEXIST ? sd_sqlite_fail(c, SQLITE_CONSTRAINT, "sale update") : r;
    }
    bool changed = sqlite3_changes(c->db) > 0;
    r = sd_sqlite_facts_sale_in(c, tenant_id, env, sale->invoice_number);
    if (r < 0) {
        return r;
    }
    if (changed || number_kept) {
        s->seq = seq;
    }
    return changed;
}

static int facts_flush(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       struct sd_facts_batch *facts)
{
    return sd_sqlite_facts_batch_flush(s->writer, facts, tenant_id, env);
}

/* What writing a batch's sales and replacing a sale (store/write_plan.c) do on the writer. */
static const struct sd_sale_steps sale_steps = {
    .exists = sale_exists,
    .insert = sale_insert,
    .update = sale_update,
    .facts_flush = facts_flush,
    .refunds = write_refund_targets,
};

static int apply_sales(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       const struct sd_batch *b, int64_t now, struct sd_apply_result *res)
{
    return sd_write_apply_sales(s, &lookup, &sale_steps, tenant_id, env, b, now, res);
}

static const struct sd_ingest_steps ingest_steps = {
    .events = &event_steps,
    .customers = apply_customers,
    .sales = apply_sales,
};

int sd_sqlite_apply_ingest(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const struct sd_batch *b, struct sd_apply_result *res)
{
    if (!sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    return sd_write_apply_ingest(s, &ingest_steps, tenant_id, env, b, res);
}

int sd_sqlite_replace_sale(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const struct sd_sale_rec *sale, struct sd_apply_result *res)
{
    if (!sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    return sd_write_replace_sale(s, &lookup, &sale_steps, tenant_id, env, sale, res);
}

int sd_sqlite_idem_put(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *key,
                       const struct sd_idem_entry *e)
{
    if (!key || !e || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    struct conn *c = s->writer;
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_IDEM_PUT);
    if (!st) {
        return -EIO;
    }
    int rc = sd_sqlite_bind_scope(st, tenant_id, env, key);
    rc |= sqlite3_bind_text(st, 4, e->body_hash, (int)strnlen(e->body_hash, 64), SQLITE_STATIC);
    rc |= sqlite3_bind_int(st, 5, e->status);
    rc |= sqlite3_bind_text(st, 6, e->response ? e->response : "", -1, SQLITE_STATIC);
    rc |= sqlite3_bind_int64(st, 7, e->created_usec);
    if (rc != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int r = sd_sqlite_step_done(c, st, "idempotency put");
    if (r < 0) {
        return r == -EEXIST ? sd_sqlite_fail(c, SQLITE_CONSTRAINT, "idempotency put") : r;
    }
    return sqlite3_changes(c->db) == 0 ? -EEXIST : 0;
}

int sd_sqlite_idem_purge(struct sd_store *s, int64_t before_usec)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_IDEM_PURGE);
    if (!st) {
        return -EIO;
    }
    if (sqlite3_bind_int64(st, 1, before_usec) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    return sd_sqlite_step_done(c, st, "idempotency purge");
}

/* ---- write path: deletions and their tombstones -------------------------------------------- */

int sd_sqlite_tombstone_put(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                            enum sd_kind kind, const char *id, const char *source,
                            enum sd_tombstone_reason reason, const char *merged_into,
                            const char *origin, int64_t now)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_TOMBSTONE_INSERT);
    if (!st) {
        return -EIO;
    }
    int64_t seq = s->seq + 1;
    int rc = sd_sqlite_bind_scope(st, tenant_id, env, id);
    rc |= sqlite3_bind_int64(st, 4, seq);
    rc |= sqlite3_bind_int(st, 5, (int)kind);
    rc |= bind_origin(st, 6, kind == SD_KIND_CUSTOMER ? source : NULL);
    rc |= sqlite3_bind_text(st, 7, sd_tombstone_reason_name(reason), -1, SQLITE_STATIC);
    rc |= bind_origin(st, 8, reason == SD_TOMBSTONE_MERGED ? merged_into : NULL);
    rc |= bind_origin(st, 9, origin);
    rc |= sqlite3_bind_int64(st, 10, now);
    if (rc != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int r = sd_sqlite_step_done(c, st, "tombstone insert");
    if (r < 0) {
        return r == -EEXIST ? sd_sqlite_fail(c, SQLITE_CONSTRAINT, "tombstone insert") : r;
    }
    s->seq = seq;
    return 0;
}

/* Run a scoped DELETE (?1..?3); returns the number of rows deleted or -EIO. */
static int delete_scoped(struct conn *c, enum stmt_id id, int64_t tenant_id, enum sd_env env,
                         const char *key, const char *op)
{
    sqlite3_stmt *st = sd_sqlite_stmt(c, id);
    if (!st) {
        return -EIO;
    }
    if (sd_sqlite_bind_scope(st, tenant_id, env, key) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int r = sd_sqlite_step_done(c, st, op);
    if (r < 0) {
        return r == -EEXIST ? sd_sqlite_fail(c, SQLITE_CONSTRAINT, op) : r;
    }
    return sqlite3_changes(c->db);
}

/* The customer record (source NULL: any one source) to delete: 1 and its seq, source (heap)
 * and profile id (0 none), 0 none, -ENOTUNIQ, -EIO. */
static int customer_find(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                         const char *source, int64_t *ret_seq, char **ret_source,
                         int64_t *ret_profile)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_CUSTOMER_FIND);
    if (!st) {
        return -EIO;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, id) | bind_origin(st, 4, source)) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int found = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (found) {
            found = -ENOTUNIQ;
            break;
        }
        found = 1;
        *ret_seq = sqlite3_column_int64(st, 0);
        *ret_source = sd_sqlite_column_strdup(st, 1);
        *ret_profile = sqlite3_column_int64(st, 2);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        found = sd_sqlite_fail(c, rc, "customer find");
    }
    if (found < 0) {
        free(*ret_source);
        *ret_source = NULL;
    }
    return found;
}

/* Bind (tenant, env, a, b) to ?1..?4 and step; rows changed or -EIO. */
static int run_pair(struct conn *c, enum stmt_id id, int64_t tenant_id, enum sd_env env,
                    const char *a, const char *b, const char *op)
{
    sqlite3_stmt *st = sd_sqlite_stmt(c, id);
    if (!st) {
        return -EIO;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, a) |
         sqlite3_bind_text(st, 4, b, -1, SQLITE_STATIC)) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int r = sd_sqlite_step_done(c, st, op);
    if (r < 0) {
        return r == -EEXIST ? sd_sqlite_fail(c, SQLITE_CONSTRAINT, op) : r;
    }
    return sqlite3_changes(c->db);
}

/* Event `id` (its row deleted a moment ago) merged into `into`: id and its aliases become
 * aliases of into's event, its sales count for that event. If into names no event, the
 * aliases go as for a plain delete. */
static int merge_event(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                       const char *into)
{
    struct conn *c = s->writer;
    struct sd_buf ref = {0};
    int r = sd_sqlite_lookup_text(c, ST_EVENT_RESOLVE, tenant_id, env, into, &ref);
    if (r == 0) {
        r = delete_scoped(c, ST_ALIASES_DELETE, tenant_id, env, id, "aliases delete");
    } else if (r == 1) {
        r = run_pair(c, ST_ALIASES_REPOINT, tenant_id, env, id, ref.data, "aliases merge");
        if (r >= 0) {
            r = alias_insert(s, tenant_id, env, id, ref.data);
        }
        if (r >= 0) {
            r = run_pair(c, ST_SALES_REPOINT_EVENT, tenant_id, env, id, ref.data, "sales merge");
        }
    }
    sd_buf_release(&ref);
    return r < 0 ? r : 0;
}

/* Customer (source, id) merged into (source, into): each of its sales names into, with a new
 * seq (its document changed). Nothing moves if into is not a customer of that source. */
static int merge_customer_sales(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                                const char *id, const char *source, const char *into, int64_t now)
{
    struct conn *c = s->writer;
    int r = sd_sqlite_customer_exists(s->writer, tenant_id, env, source, into);
    if (r <= 0) {
        return r;
    }
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_SALES_OF_CUSTOMER);
    if (!st) {
        return -EIO;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, id) |
         sqlite3_bind_text(st, 4, source, -1, SQLITE_STATIC)) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    /* Collect first: updating a row moves it (seq is the rowid) under the running scan. */
    char **inv = NULL;
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        inv = sd_realloc(inv, (n + 1) * sizeof(*inv));
        inv[n++] = sd_sqlite_column_strdup(st, 0);
    }
    sqlite3_reset(st);
    r = rc == SQLITE_DONE ? 0 : sd_sqlite_fail(c, rc, "sales of customer");
    st = r == 0 ? sd_sqlite_stmt(c, ST_SALE_RECUSTOMER) : NULL;
    if (r == 0 && !st) {
        r = -EIO;
    }
    for (size_t i = 0; i < n && r == 0; i++) {
        int64_t seq = s->seq + 1;
        /* Nothing to take out of the facts: the merged record is deleted already, so its sales
         * count for nobody until they name the survivor. */
        if ((sd_sqlite_bind_scope(st, tenant_id, env, inv[i]) |
             sqlite3_bind_text(st, 4, into, -1, SQLITE_STATIC) | sqlite3_bind_int64(st, 5, seq) |
             sqlite3_bind_int64(st, 6, now)) != SQLITE_OK) {
            r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
            break;
        }
        r = sd_sqlite_step_done(c, st, "sale merge");
        r = r == -EEXIST ? sd_sqlite_fail(c, SQLITE_CONSTRAINT, "sale merge") : r;
        if (r == 0) {
            s->seq = seq;
            r = sd_sqlite_facts_sale_in(c, tenant_id, env, inv[i]);
        }
    }
    for (size_t i = 0; i < n; i++) {
        free(inv[i]);
    }
    free(inv);
    return r;
}

static int event_delete(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id)
{
    return delete_scoped(s->writer, ST_EVENT_DELETE, tenant_id, env, id, "event delete");
}

static int aliases_delete(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id)
{
    return delete_scoped(s->writer, ST_ALIASES_DELETE, tenant_id, env, id, "aliases delete");
}

static int customer_delete(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t seq)
{
    struct conn *c = s->writer;
    int64_t facts_profile = 0;
    bool has_sales = false;
    int r = sd_sqlite_facts_record_get(c, tenant_id, env, seq, &facts_profile, &has_sales);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_CUSTOMER_DELETE);
    if (!st) {
        return -EIO;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, NULL) | sqlite3_bind_int64(st, 3, seq)) !=
        SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    r = sd_sqlite_step_done(c, st, "customer delete");
    if (r < 0) {
        return r == -EEXIST ? sd_sqlite_fail(c, SQLITE_CONSTRAINT, "customer delete") : r;
    }
    return has_sales ? sd_sqlite_facts_profile(c, tenant_id, env, facts_profile) : 0;
}

static int sale_delete(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id)
{
    int r = sd_sqlite_facts_sale_out(s->writer, tenant_id, env, id);
    return r < 0 ? r : delete_scoped(s->writer, ST_SALE_DELETE, tenant_id, env, id, "sale delete");
}

/* What deleting a record (store/write_plan.c) does on the writer. */
static const struct sd_delete_steps delete_steps = {
    .event_delete = event_delete,
    .aliases_delete = aliases_delete,
    .merge_event = merge_event,
    .customer_find = customer_find,
    .customer_delete = customer_delete,
    .member_gone = sd_sqlite_profile_member_gone,
    .merge_customer_sales = merge_customer_sales,
    .sale_delete = sale_delete,
    .tombstone_put = sd_sqlite_tombstone_put,
};

int sd_sqlite_delete_record(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                            enum sd_kind kind, const char *id, const char *source,
                            enum sd_tombstone_reason reason, const char *merged_into,
                            const char *origin)
{
    if (!sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    return sd_write_delete_record(s, &delete_steps, tenant_id, env, kind, id, source, reason,
                                  merged_into, origin);
}
