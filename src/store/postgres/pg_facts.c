/* pg_facts.c — keeps the per-profile purchase facts (profile_facts) equal to their definition,
 * inside the writer's transaction, on every path that changes what they are computed from: a
 * sale's key, currency, purchase time or net figures, and which profile a customer record
 * belongs to. The rules are the SQLite backend's (sqlite_facts.c) and a batch's sums are
 * store/facts_plan.c's for both, so the two backends hold the same rows: a batch's new sales are
 * summed in memory per profile and currency and written with one UPSERT; a sale about to change or
 * go is taken out first (sale_out) and put back as it is after the change (sale_in); a customer
 * record that changes profile or goes has the profiles concerned recomputed from their sales.
 *
 * Taking a sale out subtracts what it added; the row goes when it sums no sale. Only when the
 * sale was its row's first or last live purchase are the row's bounds read again from the
 * profile's other sales (the sale is still stored then, so it is left out by invoice number).
 * Purchase times are compared as bytes (COLLATE "C"), as SQLite compares text. Statements
 * live in slots 320..335. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "pg_facts.h"
#include "pg_internal.h"
#include "pg_records.h"

enum { FIRST_SLOT = 320, SLOT_ADD_MANY = FIRST_SLOT + SD_FACTS_N_STMT };
#define SLOT(name) (FIRST_SLOT + SD_FACTS_##name)

/* What makes a sale count: not ANON, something net left. */
#define COUNTS(s)                                                                                  \
    "(" s ".customer_id <> 'ANON' AND (" s ".net_quantity <> 0 OR " s ".net_minor <> 0))"

/* A record's profile, and whether its key has sales (if not, its moves change no facts). */
static const char SQL_PROFILE_OF[] =
    "SELECT c.profile_id, (EXISTS (SELECT 1 FROM sales s WHERE s.tenant_id = $1 AND s.env = $2"
    " AND s.source = c.source AND s.customer_id = c.customer_id))::int"
    " FROM customers c WHERE c.tenant_id = $1 AND c.env = $2 AND c.seq = $3";
/* A sale as the facts see it, with its customer record's profile (NULL: none). */
static const char SQL_SALE_ROW[] =
    "SELECT s.source, s.customer_id, s.currency, s.purchase_datetime, s.net_quantity,"
    " s.net_minor, c.profile_id FROM sales s LEFT JOIN customers c ON c.tenant_id = s.tenant_id"
    " AND c.env = s.env AND c.source = s.source AND c.customer_id = s.customer_id"
    " WHERE s.tenant_id = $1 AND s.env = $2 AND s.invoice_number = $3 AND " COUNTS("s");
#define COLUMNS                                                                                    \
    "INSERT INTO profile_facts AS f (tenant_id, env, profile_id, currency, purchases, tickets,"    \
    " spend_minor, sales, first_purchase, last_purchase)"
#define ADD_TO_ROW                                                                                 \
    " ON CONFLICT (tenant_id, env, profile_id, currency) DO UPDATE SET"                            \
    " purchases = f.purchases + excluded.purchases, tickets = f.tickets + excluded.tickets,"       \
    " spend_minor = f.spend_minor + excluded.spend_minor, sales = f.sales + excluded.sales,"       \
    " first_purchase = CASE WHEN excluded.first_purchase IS NULL THEN f.first_purchase"            \
    " WHEN f.first_purchase IS NULL OR excluded.first_purchase < f.first_purchase COLLATE \"C\""   \
    " THEN excluded.first_purchase ELSE f.first_purchase END,"                                     \
    " last_purchase = CASE WHEN excluded.last_purchase IS NULL THEN f.last_purchase"               \
    " WHEN f.last_purchase IS NULL OR excluded.last_purchase > f.last_purchase COLLATE \"C\""      \
    " THEN excluded.last_purchase ELSE f.last_purchase END"
/* $1 tenant $2 env $3 profile $4 currency $5 purchases $6 tickets $7 spend $8 sales $9 first
 * $10 last live purchase (NULL: none) */
static const char SQL_ADD[] =
    COLUMNS " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)" ADD_TO_ROW;
/* A batch's sums, one row per (profile, currency), in one statement. */
static const char SQL_ADD_MANY[] =
    COLUMNS " SELECT $1::bigint, $2::smallint, u.p, u.c, u.pu, u.t, u.sp, u.sa, u.fi, u.la"
            " FROM unnest($3::bigint[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[],"
            " $8::bigint[], $9::text[], $10::text[]) AS u(p, c, pu, t, sp, sa, fi, la)" ADD_TO_ROW;
static const char SQL_CUSTOMER[] = "SELECT profile_id FROM customers WHERE tenant_id = $1"
                                   " AND env = $2 AND source = $4 AND customer_id = $3";
static const char SQL_SUB[] =
    "UPDATE profile_facts SET purchases = purchases - $5, tickets = tickets - $6,"
    " spend_minor = spend_minor - $7, sales = sales - 1"
    " WHERE tenant_id = $1 AND env = $2 AND profile_id = $3 AND currency = $4";
static const char SQL_DROP_EMPTY[] =
    "DELETE FROM profile_facts WHERE tenant_id = $1 AND env = $2 AND profile_id = $3"
    " AND currency = $4 AND sales <= 0";
/* The live purchases of profile $3 in currency $4 but invoice $6. */
#define LIVE_OTHERS                                                                                \
    " FROM customers m JOIN sales s"                                                               \
    " ON s.tenant_id = $1 AND s.env = $2 AND s.source = m.source"                                  \
    " AND s.customer_id = m.customer_id WHERE m.profile_id = $3 AND m.tenant_id = $1"              \
    " AND m.env = $2 AND s.currency = $4 AND s.net_quantity > 0 AND s.customer_id <> 'ANON'"       \
    " AND s.invoice_number <> $6::text"
static const char SQL_BOUNDS[] =
    "UPDATE profile_facts SET first_purchase = (SELECT min(s.purchase_datetime COLLATE "
    "\"C\")" LIVE_OTHERS
    "), last_purchase = (SELECT max(s.purchase_datetime COLLATE \"C\")" LIVE_OTHERS ")"
    " WHERE tenant_id = $1 AND env = $2 AND profile_id = $3 AND currency = $4"
    " AND (first_purchase = $5::text OR last_purchase = $5::text)";
static const char SQL_CLEAR[] =
    "DELETE FROM profile_facts WHERE tenant_id = $1 AND env = $2 AND profile_id = $3";
static const char SQL_RECOMPUTE[] =
    COLUMNS " SELECT $1::bigint, $2::smallint, $3::bigint, s.currency,"
            " sum((s.net_quantity > 0)::int)::bigint, sum(s.net_quantity)::bigint,"
            " sum(s.net_minor)::bigint, count(*),"
            " min(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END COLLATE \"C\"),"
            " max(CASE WHEN s.net_quantity > 0 THEN s.purchase_datetime END COLLATE \"C\")"
            " FROM customers m JOIN sales s"
            " ON s.tenant_id = $1 AND s.env = $2 AND s.source = m.source"
            " AND s.customer_id = m.customer_id WHERE m.profile_id = $3 AND m.tenant_id = $1"
            " AND m.env = $2 AND " COUNTS("s") " GROUP BY s.currency";

static void key_params(struct sd_pg_params *p, int64_t tenant_id, enum sd_env env,
                       int64_t profile_id, const char *currency)
{
    sd_pg_params_init(p);
    sd_pg_p_scope(p, tenant_id, env, NULL);
    sd_pg_p_int(p, profile_id);
    if (currency) {
        sd_pg_p_text(p, currency);
    }
}

static int add(struct pgconn *c, int64_t tenant_id, enum sd_env env, int64_t profile_id,
               const char *currency, int64_t purchases, int64_t tickets, int64_t spend,
               int64_t sales, const char *first, const char *last)
{
    struct sd_pg_params p;
    key_params(&p, tenant_id, env, profile_id, currency);
    sd_pg_p_int(&p, purchases);
    sd_pg_p_int(&p, tickets);
    sd_pg_p_int(&p, spend);
    sd_pg_p_int(&p, sales);
    sd_pg_p_text(&p, first);
    sd_pg_p_text(&p, last);
    int r = sd_pg_write_exec(c, SLOT(ADD), SQL_ADD, &p, NULL);
    return r < 0 ? r : 0;
}

/* ---- a batch's new sales, summed in memory ------------------------------------------------ */

int sd_pg_facts_profile_of(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const char *source, const char *customer_id, int64_t *ret)
{
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, customer_id);
    sd_pg_p_text(&p, source);
    PGresult *res = NULL;
    int r = sd_pg_write_exec(sd_pg_writer(s), SLOT(CUSTOMER), SQL_CUSTOMER, &p, &res);
    if (r < 0) {
        return r;
    }
    *ret = r > 0 ? sd_pg_int64(res, 0, 0) : 0;
    PQclear(res);
    return 0;
}

/* Append sep and v as an element of an array literal (NULL: NULL). */
static void array_text(struct sd_buf *b, const char *sep, const char *v)
{
    sd_buf_puts(b, sep);
    if (!v) {
        sd_buf_puts(b, "NULL");
        return;
    }
    sd_buf_puts(b, "\"");
    for (; *v; v++) {
        if (*v == '"' || *v == '\\') {
            sd_buf_puts(b, "\\");
        }
        sd_buf_append(b, v, 1);
    }
    sd_buf_puts(b, "\"");
}

int sd_pg_facts_batch_flush(struct pgconn *c, struct sd_facts_batch *fb, int64_t tenant_id,
                            enum sd_env env)
{
    return sd_pg_facts_batch_flush_with(c, fb, tenant_id, env, NULL, 0);
}

int sd_pg_facts_batch_flush_with(struct pgconn *c, struct sd_facts_batch *fb, int64_t tenant_id,
                                 enum sd_env env, struct sd_pg_stmt *lead, size_t n_lead)
{
    struct sd_pg_stmt st[4];
    size_t n = 0;
    if (n_lead > 3) {
        sd_log(SD_LOG_ERROR, "too many statements ahead of the facts", "n=%zu", n_lead);
        abort();
    }
    for (; n < n_lead; n++) {
        st[n] = lead[n];
    }
    struct sd_pg_params p;
    struct sd_buf col[8];
    int ncol = 0;
    struct sd_facts_sum *one = NULL;
    for (size_t i = 0; fb->n_sums == 1 && i < fb->sums_cap; i++) {
        one = fb->sums[i].currency ? &fb->sums[i] : one;
    }
    if (one) {
        key_params(&p, tenant_id, env, one->profile_id, one->currency);
        sd_pg_p_int(&p, one->purchases);
        sd_pg_p_int(&p, one->tickets);
        sd_pg_p_int(&p, one->spend_minor);
        sd_pg_p_int(&p, one->sales);
        sd_pg_p_text(&p, one->first);
        sd_pg_p_text(&p, one->last);
        st[n++] = (struct sd_pg_stmt){.slot = SLOT(ADD), .sql = SQL_ADD, .p = &p};
    } else if (fb->n_sums > 1) {
        /* Array literals: {…} of numbers, and of texts quoted (currencies and ISO times hold no
         * '"' or '\\', which are escaped all the same). */
        ncol = 8;
        for (int k = 0; k < 8; k++) {
            sd_buf_init(&col[k]);
            sd_buf_puts(&col[k], "{");
        }
        bool first = true;
        for (size_t i = 0; i < fb->sums_cap; i++) {
            struct sd_facts_sum *f = &fb->sums[i];
            if (!f->currency) {
                continue;
            }
            const char *sep = first ? "" : ",";
            first = false;
            sd_buf_printf(&col[0], "%s%lld", sep, (long long)f->profile_id);
            array_text(&col[1], sep, f->currency);
            sd_buf_printf(&col[2], "%s%lld", sep, (long long)f->purchases);
            sd_buf_printf(&col[3], "%s%lld", sep, (long long)f->tickets);
            sd_buf_printf(&col[4], "%s%lld", sep, (long long)f->spend_minor);
            sd_buf_printf(&col[5], "%s%lld", sep, (long long)f->sales);
            array_text(&col[6], sep, f->first);
            array_text(&col[7], sep, f->last);
        }
        sd_pg_params_init(&p);
        sd_pg_p_scope(&p, tenant_id, env, NULL);
        for (int k = 0; k < 8; k++) {
            sd_buf_puts(&col[k], "}");
            sd_pg_p_text(&p, col[k].data);
        }
        st[n++] = (struct sd_pg_stmt){.slot = SLOT_ADD_MANY, .sql = SQL_ADD_MANY, .p = &p};
    }
    int r = n ? sd_pg_exec_pipeline(c, st, n) : 0;
    bool lead_failed = false;
    for (size_t k = 0; k < n_lead; k++) {
        lead[k] = st[k];
        lead_failed = lead_failed || lead[k].result < 0;
    }
    /* A constraint failure of the facts' own statement is a backend failure (derived rows). */
    if ((r == -EEXIST || r == -EINVAL) && !lead_failed) {
        sd_log(SD_LOG_ERROR, "constraint violated on the write path", "slot=%d", st[n - 1].slot);
        r = -EIO;
    }
    for (int k = 0; k < ncol; k++) {
        sd_buf_release(&col[k]);
    }
    sd_facts_batch_sums_free(fb);
    return r;
}

/* The stored sale `invoice` if it counts and its customer record has a profile: 1 and its
 * figures (release with sale_row_release), 0 if it adds nothing, or a negative errno. */
static int sale_row(struct pgconn *c, int64_t tenant_id, enum sd_env env, const char *invoice,
                    struct sd_facts_sale_row *ret)
{
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, invoice);
    PGresult *res = NULL;
    int r = sd_pg_write_exec(c, SLOT(SALE_ROW), SQL_SALE_ROW, &p, &res);
    if (r < 0) {
        return r;
    }
    r = 0;
    if (PQntuples(res) > 0 && !sd_pg_isnull(res, 0, 6)) {
        ret->currency = sd_pg_strdup(res, 0, 2);
        ret->purchased = sd_pg_strdup(res, 0, 3);
        ret->net_quantity = sd_pg_int64(res, 0, 4);
        ret->net_minor = sd_pg_int64(res, 0, 5);
        ret->profile_id = sd_pg_int64(res, 0, 6);
        r = 1;
    }
    PQclear(res);
    return r;
}

int sd_pg_facts_sale_in(struct pgconn *c, int64_t tenant_id, enum sd_env env, const char *invoice)
{
    struct sd_facts_sale_row s = {0};
    int r = sale_row(c, tenant_id, env, invoice, &s);
    if (r > 0) {
        bool live = s.net_quantity > 0;
        r = add(c, tenant_id, env, s.profile_id, s.currency, live ? 1 : 0, s.net_quantity,
                s.net_minor, 1, live ? s.purchased : NULL, live ? s.purchased : NULL);
    }
    sd_facts_sale_row_release(&s);
    return r < 0 ? r : 0;
}

int sd_pg_facts_sale_out(struct pgconn *c, int64_t tenant_id, enum sd_env env, const char *invoice)
{
    struct sd_facts_sale_row s = {0};
    int r = sale_row(c, tenant_id, env, invoice, &s);
    if (r <= 0) {
        goto out;
    }
    bool live = s.net_quantity > 0;
    struct sd_pg_params p;
    key_params(&p, tenant_id, env, s.profile_id, s.currency);
    sd_pg_p_int(&p, live ? 1 : 0);
    sd_pg_p_int(&p, s.net_quantity);
    sd_pg_p_int(&p, s.net_minor);
    if ((r = sd_pg_write_exec(c, SLOT(SUB), SQL_SUB, &p, NULL)) < 0) {
        goto out;
    }
    key_params(&p, tenant_id, env, s.profile_id, s.currency);
    if ((r = sd_pg_write_exec(c, SLOT(DROP_EMPTY), SQL_DROP_EMPTY, &p, NULL)) < 0 || !live) {
        goto out;
    }
    /* It was live: if it was its row's first or last purchase, the others decide now. */
    key_params(&p, tenant_id, env, s.profile_id, s.currency);
    sd_pg_p_text(&p, s.purchased);
    sd_pg_p_text(&p, invoice);
    r = sd_pg_write_exec(c, SLOT(BOUNDS), SQL_BOUNDS, &p, NULL);
out:
    sd_facts_sale_row_release(&s);
    return r < 0 ? r : 0;
}

int sd_pg_facts_record_get(struct pgconn *c, int64_t tenant_id, enum sd_env env, int64_t seq,
                           int64_t *ret_profile_id, bool *ret_has_sales)
{
    struct sd_pg_params p;
    key_params(&p, tenant_id, env, seq, NULL);
    PGresult *res = NULL;
    int r = sd_pg_write_exec(c, SLOT(PROFILE_OF), SQL_PROFILE_OF, &p, &res);
    if (r < 0) {
        return r;
    }
    *ret_profile_id = r > 0 ? sd_pg_int64(res, 0, 0) : 0;
    *ret_has_sales = r > 0 && sd_pg_int64(res, 0, 1) != 0;
    PQclear(res);
    return 0;
}

int sd_pg_facts_profile(struct pgconn *c, int64_t tenant_id, enum sd_env env, int64_t profile_id)
{
    if (profile_id <= 0) {
        return 0;
    }
    struct sd_pg_params p;
    key_params(&p, tenant_id, env, profile_id, NULL);
    int r = sd_pg_write_exec(c, SLOT(CLEAR), SQL_CLEAR, &p, NULL);
    if (r >= 0) {
        r = sd_pg_write_exec(c, SLOT(RECOMPUTE), SQL_RECOMPUTE, &p, NULL);
    }
    return r < 0 ? r : 0;
}
