/* sqlite_facts.c — keeps the per-profile purchase facts (profile_facts,
 * 0013_profile_facts.sql) equal to their definition, inside the writer's transaction, on every
 * path that changes what they are computed from: a sale's key, currency, purchase time or net
 * figures, and which profile a customer record belongs to. sqlite_segments.c reads them for
 * counts of purchases / tickets / spend and first / last purchase without a `where`.
 *
 * The rules callers follow (sqlite_internal.h): a batch's new sales are summed in memory per
 * profile and currency (batch_add; each customer key's profile looked up once) and written with
 * one UPSERT per sum (batch_flush) at the end of the batch or before any other facts change in
 * it; a sale about to change or go is taken out first (sale_out) and put back as it is after
 * the change (sale_in); a customer record that changes profile or goes has the profiles
 * concerned recomputed from their sales (record_get before, profile after).
 *
 * Why not triggers: a trigger on `sales` makes SQLite open a statement journal for every sale
 * statement (a trigger may fail after the row was written), which cost 13 µs a sale for an
 * empty trigger and 30 µs for the UPSERT on this machine. Why sums per batch: one UPSERT per
 * inserted sale cost 1 s more server CPU in a 200,000-row CSV import, the sums 0.5 s; a
 * set-based INSERT … SELECT over the batch wrote three times as much (its statement journal
 * and sorter spill). bench/README.md "Per-profile facts" has the figures.
 *
 * Taking a sale out subtracts what it added; the row goes when it sums no sale. Only when the
 * sale was its row's first or last live purchase are the row's bounds read again from the
 * profile's other sales (the sale itself is still stored then, so it is left out by invoice
 * number). Recomputing a profile reads its few source records (customers_profile) and their
 * sales (sales_customer, named: without statistics SQLite prefers walking the covering
 * seg_sales_event over the whole tenant). Statements live in extra slots 144..152. */
#include <errno.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "sqlite_internal.h"

enum { FIRST_SLOT = 144 };
#define SLOT(name) (FIRST_SLOT + SD_FACTS_##name)

/* What makes a sale count (0013_profile_facts.sql): not ANON, something net left. */
#define COUNTS(s)                                                                                  \
    "(" s ".customer_id <> 'ANON' AND (" s ".net_quantity <> 0 OR " s ".net_minor <> 0))"

/* A record's profile, and whether its key has sales (if not, its moves change no facts). */
static const char SQL_PROFILE_OF[] =
    "SELECT profile_id, EXISTS (SELECT 1 FROM sales INDEXED BY sales_customer"
    " WHERE tenant_id = ?1 AND env = ?2 AND source = c.source AND customer_id = c.customer_id)"
    " FROM customers c WHERE tenant_id = ?1 AND env = ?2 AND seq = ?3";
/* A sale as the facts see it, with its customer record's profile (NULL: none). */
static const char SQL_SALE_ROW[] =
    "SELECT s.source, s.customer_id, s.currency, s.purchase_datetime, s.net_quantity,"
    " s.net_minor, c.profile_id FROM sales s LEFT JOIN customers c ON c.tenant_id = s.tenant_id"
    " AND c.env = s.env AND c.source = s.source AND c.customer_id = s.customer_id"
    " WHERE s.tenant_id = ?1 AND s.env = ?2 AND s.invoice_number = ?3 AND " COUNTS("s");
#define COLUMNS                                                                                    \
    "INSERT INTO profile_facts (tenant_id, env, profile_id, currency, purchases, tickets,"         \
    " spend_minor, sales, first_purchase, last_purchase)"
#define ADD_TO_ROW                                                                                 \
    " ON CONFLICT (tenant_id, env, profile_id, currency) DO UPDATE SET"                            \
    " purchases = purchases + excluded.purchases, tickets = tickets + excluded.tickets,"           \
    " spend_minor = spend_minor + excluded.spend_minor, sales = sales + excluded.sales,"           \
    " first_purchase = CASE WHEN excluded.first_purchase IS NULL THEN first_purchase"              \
    " WHEN first_purchase IS NULL OR excluded.first_purchase < first_purchase"                     \
    " THEN excluded.first_purchase ELSE first_purchase END,"                                       \
    " last_purchase = CASE WHEN excluded.last_purchase IS NULL THEN last_purchase"                 \
    " WHEN last_purchase IS NULL OR excluded.last_purchase > last_purchase"                        \
    " THEN excluded.last_purchase ELSE last_purchase END"
/* ?1 tenant ?2 env ?3 profile ?4 currency ?5 purchases ?6 tickets ?7 spend ?8 sales ?9 first
 * ?10 last live purchase (NULL: none) */
static const char SQL_ADD[] =
    COLUMNS " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)" ADD_TO_ROW;
static const char SQL_CUSTOMER[] = "SELECT profile_id FROM customers INDEXED BY seg_customers_key"
                                   " WHERE tenant_id = ?1 AND env = ?2 AND source = ?4"
                                   " AND customer_id = ?3";
static const char SQL_SUB[] =
    "UPDATE profile_facts SET purchases = purchases - ?5, tickets = tickets - ?6,"
    " spend_minor = spend_minor - ?7, sales = sales - 1"
    " WHERE tenant_id = ?1 AND env = ?2 AND profile_id = ?3 AND currency = ?4";
static const char SQL_DROP_EMPTY[] =
    "DELETE FROM profile_facts WHERE tenant_id = ?1 AND env = ?2 AND profile_id = ?3"
    " AND currency = ?4 AND sales <= 0";
/* The live purchases of profile ?3 in currency ?4 but invoice ?6. */
#define LIVE_OTHERS                                                                                \
    " FROM customers m INDEXED BY customers_profile JOIN sales s INDEXED BY sales_customer"        \
    " ON s.tenant_id = ?1 AND s.env = ?2 AND s.source = m.source"                                  \
    " AND s.customer_id = m.customer_id WHERE m.profile_id = ?3 AND m.tenant_id = ?1"              \
    " AND m.env = ?2 AND s.currency = ?4 AND s.net_quantity > 0 AND s.customer_id <> 'ANON'"       \
    " AND s.invoice_number <> ?6"
static const char SQL_BOUNDS[] =
    "UPDATE profile_facts SET first_purchase = (SELECT min(s.purchase_datetime)" LIVE_OTHERS "),"
    " last_purchase = (SELECT max(s.purchase_datetime)" LIVE_OTHERS ")"
    " WHERE tenant_id = ?1 AND env = ?2 AND profile_id = ?3 AND currency = ?4"
    " AND (first_purchase = ?5 OR last_purchase = ?5)";
static const char SQL_CLEAR[] =
    "DELETE FROM profile_facts WHERE tenant_id = ?1 AND env = ?2 AND profile_id = ?3";
static const char SQL_RECOMPUTE[] = COLUMNS
    " SELECT ?1, ?2, ?3, s.currency, sum(s.net_quantity > 0), sum(s.net_quantity),"
    " sum(s.net_minor), count(*), min(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END),"
    " max(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END)"
    " FROM customers m INDEXED BY customers_profile JOIN sales s INDEXED BY sales_customer"
    " ON s.tenant_id = ?1 AND s.env = ?2 AND s.source = m.source"
    " AND s.customer_id = m.customer_id WHERE m.profile_id = ?3 AND m.tenant_id = ?1"
    " AND m.env = ?2 AND " COUNTS("s") " GROUP BY s.currency";

static int bind_key(sqlite3_stmt *st, int64_t tenant_id, enum sd_env env, int64_t profile_id,
                    const char *currency)
{
    int rc = sd_sqlite_bind_scope(st, tenant_id, env, NULL);
    rc |= sqlite3_bind_int64(st, 3, profile_id);
    if (currency) {
        rc |= sqlite3_bind_text(st, 4, currency, -1, SQLITE_STATIC);
    }
    return rc;
}

static int run(struct conn *c, unsigned slot, const char *sql, sqlite3_stmt **ret)
{
    *ret = sd_sqlite_stmt_extra(c, slot, sql);
    return *ret ? 0 : -EIO;
}

static int done(struct conn *c, sqlite3_stmt *st, const char *op)
{
    int r = sd_sqlite_step_done(c, st, op);
    return r == -EEXIST ? sd_sqlite_fail(c, SQLITE_CONSTRAINT, op) : r;
}

static int add(struct conn *c, int64_t tenant_id, enum sd_env env, int64_t profile_id,
               const char *currency, const char *purchased, int64_t net_quantity, int64_t net_minor)
{
    sqlite3_stmt *st;
    int r = run(c, SLOT(ADD), SQL_ADD, &st);
    if (r < 0) {
        return r;
    }
    bool live = net_quantity > 0;
    int rc = bind_key(st, tenant_id, env, profile_id, currency);
    rc |= sqlite3_bind_int(st, 5, live ? 1 : 0) | sqlite3_bind_int64(st, 6, net_quantity) |
          sqlite3_bind_int64(st, 7, net_minor) | sqlite3_bind_int(st, 8, 1);
    rc |= live ? sqlite3_bind_text(st, 9, purchased, -1, SQLITE_STATIC) : sqlite3_bind_null(st, 9);
    rc |=
        live ? sqlite3_bind_text(st, 10, purchased, -1, SQLITE_STATIC) : sqlite3_bind_null(st, 10);
    if (rc != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    return done(c, st, "facts add");
}

/* ---- a batch's new sales, summed in memory (store/facts_plan.c) --------------------------- */

int sd_sqlite_facts_profile_of(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                               const char *source, const char *customer_id, int64_t *ret)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st;
    int r = run(c, SLOT(CUSTOMER), SQL_CUSTOMER, &st);
    if (r < 0) {
        return r;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, customer_id) |
         sqlite3_bind_text(st, 4, source, -1, SQLITE_STATIC)) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int rc = sqlite3_step(st);
    int64_t profile_id = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        return sd_sqlite_fail(c, rc, "facts profile");
    }
    *ret = profile_id;
    return 0;
}

int sd_sqlite_facts_batch_flush(struct conn *c, struct sd_facts_batch *fb, int64_t tenant_id,
                                enum sd_env env)
{
    int r = 0;
    for (size_t i = 0; i < fb->sums_cap && r == 0; i++) {
        struct sd_facts_sum *f = &fb->sums[i];
        if (!f->currency) {
            continue;
        }
        sqlite3_stmt *st;
        if ((r = run(c, SLOT(ADD), SQL_ADD, &st)) < 0) {
            break;
        }
        if ((bind_key(st, tenant_id, env, f->profile_id, f->currency) |
             sqlite3_bind_int64(st, 5, f->purchases) | sqlite3_bind_int64(st, 6, f->tickets) |
             sqlite3_bind_int64(st, 7, f->spend_minor) | sqlite3_bind_int64(st, 8, f->sales) |
             (f->first ? sqlite3_bind_text(st, 9, f->first, -1, SQLITE_STATIC)
                       : sqlite3_bind_null(st, 9)) |
             (f->last ? sqlite3_bind_text(st, 10, f->last, -1, SQLITE_STATIC)
                      : sqlite3_bind_null(st, 10))) != SQLITE_OK) {
            r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
            break;
        }
        r = done(c, st, "facts add");
    }
    sd_facts_batch_sums_free(fb);
    return r;
}

/* The stored sale `invoice` if it counts and its customer record has a profile: 1 and its
 * figures (currency and purchase time copied: release them with sale_row_release), 0 if it
 * adds nothing, or -EIO. */
static int sale_row(struct conn *c, int64_t tenant_id, enum sd_env env, const char *invoice,
                    struct sd_facts_sale_row *ret)
{
    sqlite3_stmt *st;
    int r = run(c, SLOT(SALE_ROW), SQL_SALE_ROW, &st);
    if (r < 0) {
        return r;
    }
    if (sd_sqlite_bind_scope(st, tenant_id, env, invoice) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int rc = sqlite3_step(st);
    r = 0;
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 6) != SQLITE_NULL) {
        ret->currency = sd_sqlite_column_strdup(st, 2);
        ret->purchased = sd_sqlite_column_strdup(st, 3);
        ret->net_quantity = sqlite3_column_int64(st, 4);
        ret->net_minor = sqlite3_column_int64(st, 5);
        ret->profile_id = sqlite3_column_int64(st, 6);
        r = 1;
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        r = sd_sqlite_fail(c, rc, "facts sale");
    }
    sqlite3_reset(st);
    return r;
}

int sd_sqlite_facts_sale_in(struct conn *c, int64_t tenant_id, enum sd_env env, const char *invoice)
{
    struct sd_facts_sale_row s = {0};
    int r = sale_row(c, tenant_id, env, invoice, &s);
    if (r > 0) {
        r = add(c, tenant_id, env, s.profile_id, s.currency, s.purchased, s.net_quantity,
                s.net_minor);
    }
    sd_facts_sale_row_release(&s);
    return r;
}

int sd_sqlite_facts_sale_out(struct conn *c, int64_t tenant_id, enum sd_env env,
                             const char *invoice)
{
    struct sd_facts_sale_row s = {0};
    int r = sale_row(c, tenant_id, env, invoice, &s);
    if (r <= 0) {
        goto out;
    }
    bool live = s.net_quantity > 0;
    sqlite3_stmt *st;
    if ((r = run(c, SLOT(SUB), SQL_SUB, &st)) < 0) {
        goto out;
    }
    if ((bind_key(st, tenant_id, env, s.profile_id, s.currency) |
         sqlite3_bind_int(st, 5, live ? 1 : 0) | sqlite3_bind_int64(st, 6, s.net_quantity) |
         sqlite3_bind_int64(st, 7, s.net_minor)) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    if ((r = done(c, st, "facts subtract")) < 0 ||
        (r = run(c, SLOT(DROP_EMPTY), SQL_DROP_EMPTY, &st)) < 0) {
        goto out;
    }
    if (bind_key(st, tenant_id, env, s.profile_id, s.currency) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    if ((r = done(c, st, "facts drop")) < 0 || !live) {
        goto out;
    }
    /* It was live: if it was its row's first or last purchase, the others decide now. */
    if ((r = run(c, SLOT(BOUNDS), SQL_BOUNDS, &st)) < 0) {
        goto out;
    }
    if ((bind_key(st, tenant_id, env, s.profile_id, s.currency) |
         sqlite3_bind_text(st, 5, s.purchased, -1, SQLITE_STATIC) |
         sqlite3_bind_text(st, 6, invoice, -1, SQLITE_STATIC)) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    r = done(c, st, "facts bounds");
out:
    sd_facts_sale_row_release(&s);
    return r < 0 ? r : 0;
}

int sd_sqlite_facts_record_get(struct conn *c, int64_t tenant_id, enum sd_env env, int64_t seq,
                               int64_t *ret_profile_id, bool *ret_has_sales)
{
    sqlite3_stmt *st;
    int r = run(c, SLOT(PROFILE_OF), SQL_PROFILE_OF, &st);
    if (r < 0) {
        return r;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, NULL) | sqlite3_bind_int64(st, 3, seq)) !=
        SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int rc = sqlite3_step(st);
    *ret_profile_id = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    *ret_has_sales = rc == SQLITE_ROW && sqlite3_column_int(st, 1) != 0;
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sd_sqlite_fail(c, rc, "facts record");
}

int sd_sqlite_facts_profile(struct conn *c, int64_t tenant_id, enum sd_env env, int64_t profile_id)
{
    if (profile_id <= 0) {
        return 0;
    }
    sqlite3_stmt *st;
    int r = run(c, SLOT(CLEAR), SQL_CLEAR, &st);
    if (r < 0) {
        return r;
    }
    if (bind_key(st, tenant_id, env, profile_id, NULL) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    if ((r = done(c, st, "facts clear")) < 0 ||
        (r = run(c, SLOT(RECOMPUTE), SQL_RECOMPUTE, &st)) < 0) {
        return r;
    }
    if (bind_key(st, tenant_id, env, profile_id, NULL) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    return done(c, st, "facts recompute");
}
