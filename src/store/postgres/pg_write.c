/* pg_write.c — the write path of the PostgreSQL backend: applying an ingest batch (events,
 * then customers, then sales, with the order lifecycle), replacing a sale, deleting a record
 * with its tombstone, and idempotency put/purge. Only the single writer thread calls these, on
 * the writer connection (sd_pg_writer), inside the transaction write_begin opened under the
 * write path's advisory lock; every record is numbered with sd_pg_seq_next, so commit order
 * equals seq order on any number of nodes. The outcomes, errors, warnings and order are
 * decided once for both backends (store/write_plan.c, store/lifecycle_plan.c); this file gives
 * its statements as steps, with the SQLite backend's seq numbering and documents.
 *
 * Documents. An event or customer update merges into the stored document as an RFC 7396
 * merge patch; the merge is made in C over the document text (pg_json.c) so the result is
 * byte for byte what SQLite's json_patch returns — jsonb would reorder members and re-print
 * numbers. The stored row is read first (the writer holds the write path's lock, so nobody
 * changes it in between), the merged document and the "unchanged" and staleness rules are
 * decided here, and one UPDATE writes the outcome. As in SQLite, a record left unchanged
 * still uses up a seq number (the numbering is the same on both backends).
 *
 * Constraint violations on the write path are backend failures (-EIO), as in SQLite: every key
 * the write path inserts was looked up first. Statements live in slots 128..191. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "pg_facts.h"
#include "pg_internal.h"
#include "pg_json.h"
#include "pg_link.h"
#include "pg_records.h"
#include "store/lifecycle_plan.h"
#include "store/store.h"
#include "store/write_plan.h"

enum {
    SLOT_EVENT_GET = 128,
    SLOT_EVENT_SET,
    SLOT_EVENT_INSERT,
    SLOT_EVENT_BY_DUP,
    SLOT_ALIAS_GET,
    SLOT_ALIAS_INSERT,
    SLOT_EVENT_RESOLVE,
    SLOT_CUSTOMER_GET,
    SLOT_CUSTOMER_INSERT,
    SLOT_CUSTOMER_SET,
    SLOT_CUSTOMER_EXISTS,
    SLOT_SALE_INSERT,
    SLOT_SALE_EXISTS,
    SLOT_SALE_UPDATE,
    SLOT_IDEM_PUT,
    SLOT_IDEM_PURGE,
    SLOT_SALE_DOC,
    SLOT_TOMBSTONE_INSERT,
    SLOT_EVENT_DELETE,
    SLOT_ALIASES_DELETE,
    SLOT_CUSTOMER_FIND,
    SLOT_CUSTOMER_DELETE,
    SLOT_SALE_DELETE,
    SLOT_ALIASES_REPOINT,
    SLOT_SALES_REPOINT_EVENT,
    SLOT_SALES_OF_CUSTOMER,
    SLOT_SALE_RECUSTOMER,
    SLOT_SALE_STATE,
    SLOT_SALE_REFUNDS,
    SLOT_CUSTOMER_OF_SOURCE,
    SLOT_SALES_INSERT_MANY,
    SLOT_NEEDS_STATS,
    SLOT_WRITE_END_
};
_Static_assert(SLOT_WRITE_END_ <= 192, "pg_write.c owns slots 128..191");

static const char SQL_EVENT_GET[] = "SELECT seq, doc, dup_key, remote_version, updated_usec,"
                                    " origin FROM events WHERE tenant_id = $1 AND env = $2"
                                    " AND event_id = $3";
/* $3 the row's seq; the values as the caller decided them. */
static const char SQL_EVENT_SET[] = "UPDATE events SET seq = $4, updated_usec = $5, origin = $6,"
                                    " dup_key = $7, doc = $8, remote_version = $9"
                                    " WHERE tenant_id = $1 AND env = $2 AND seq = $3";
static const char SQL_EVENT_INSERT[] =
    "INSERT INTO events (tenant_id, env, event_id, seq, dup_key, doc, updated_usec, origin,"
    " remote_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
/* The oldest event of that performance (SQLite's index walk finds the lowest rowid first). */
static const char SQL_EVENT_BY_DUP[] = "SELECT event_id FROM events WHERE tenant_id = $1"
                                       " AND env = $2 AND dup_key = $3 ORDER BY seq LIMIT 1";
static const char SQL_ALIAS_GET[] = "SELECT event_id FROM event_aliases WHERE tenant_id = $1"
                                    " AND env = $2 AND alias_id = $3";
static const char SQL_ALIAS_INSERT[] = "INSERT INTO event_aliases (tenant_id, env, alias_id,"
                                       " event_id) VALUES ($1, $2, $3, $4)";
static const char SQL_EVENT_RESOLVE[] =
    "(SELECT event_id FROM events WHERE tenant_id = $1 AND env = $2 AND event_id = $3)"
    " UNION ALL (SELECT event_id FROM event_aliases WHERE tenant_id = $1 AND env = $2"
    " AND alias_id = $3) LIMIT 1";
static const char SQL_CUSTOMER_GET[] =
    "SELECT seq, doc, email_key, ad_opt_out, remote_version, seg_post_code, seg_city,"
    " updated_usec, origin FROM customers WHERE tenant_id = $1 AND env = $2"
    " AND customer_id = $3 AND source = $4";
static const char SQL_CUSTOMER_INSERT[] =
    "INSERT INTO customers (tenant_id, env, customer_id, seq, email_key, ad_opt_out, doc,"
    " updated_usec, source, origin, remote_version, seg_post_code, seg_city)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
static const char SQL_CUSTOMER_SET[] =
    "UPDATE customers SET seq = $4, updated_usec = $5, origin = $6, email_key = $7,"
    " ad_opt_out = $8, doc = $9, remote_version = $10, seg_post_code = $11, seg_city = $12"
    " WHERE tenant_id = $1 AND env = $2 AND seq = $3";
/* A sale's customer is a customer of the same source. */
static const char SQL_CUSTOMER_EXISTS[] = "SELECT 1 FROM customers WHERE tenant_id = $1"
                                          " AND env = $2 AND customer_id = $3 AND source = $4";
static const char SQL_SALE_INSERT[] =
    "INSERT INTO sales (tenant_id, env, invoice_number, seq, event_id, event_ref,"
    " customer_id, purchase_datetime, sales_price_minor, currency, doc, updated_usec, source,"
    " order_type, status, quantity, refunded_quantity, refunded_minor, net_quantity,"
    " net_minor, status_changed, expires, attended_quantity, refund_of, rr_quantity,"
    " rr_minor, origin, remote_version)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,"
    " $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)"
    " ON CONFLICT (tenant_id, env, invoice_number) DO NOTHING";
static const char SQL_SALE_EXISTS[] = "SELECT 1 FROM sales WHERE tenant_id = $1 AND env = $2"
                                      " AND invoice_number = $3";
/* A sale is replaced whole, unless its remote version ($28) is older than the stored one: then
 * no row changes. The attended quantity keeps what the scans counted. */
static const char SQL_SALE_UPDATE[] =
    "UPDATE sales SET seq = $4, event_id = $5, event_ref = $6,"
    " customer_id = $7, purchase_datetime = $8, sales_price_minor = $9,"
    " currency = $10, doc = $11, updated_usec = $12, source = $13,"
    " order_type = $14, status = $15, quantity = $16,"
    " refunded_quantity = $17, refunded_minor = $18, net_quantity = $19,"
    " net_minor = $20, status_changed = $21, expires = $22,"
    " attended_quantity = (SELECT CASE WHEN $14::text <> 'sale' THEN $23::bigint"
    " WHEN $23::bigint IS NULL THEN nullif(LEAST($16::bigint, count(*)), 0)"
    " ELSE GREATEST($23::bigint, LEAST($16::bigint, count(*))) END FROM sale_scans"
    " WHERE tenant_id = $1 AND env = $2 AND invoice_number = $3),"
    " refund_of = $24, rr_quantity = $25, rr_minor = $26, origin = $27,"
    " remote_version = GREATEST(remote_version, $28::bigint)"
    " WHERE tenant_id = $1 AND env = $2 AND invoice_number = $3"
    " AND NOT ($28::bigint <> 0 AND remote_version > $28::bigint)";
/* Keeps the first entry: one younger than 24 h is never replaced (no row changes). */
static const char SQL_IDEM_PUT[] =
    "INSERT INTO idempotency AS i (tenant_id, env, idem_key, body_hash, status, response,"
    " created_usec) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    " ON CONFLICT (tenant_id, env, idem_key) DO UPDATE SET"
    " body_hash = excluded.body_hash, status = excluded.status,"
    " response = excluded.response, created_usec = excluded.created_usec"
    " WHERE i.created_usec < excluded.created_usec - 86400000000";
static const char SQL_IDEM_PURGE[] = "DELETE FROM idempotency WHERE created_usec < $1";
static const char SQL_SALE_DOC[] = "SELECT doc FROM sales WHERE tenant_id = $1 AND env = $2"
                                   " AND invoice_number = $3";
static const char SQL_TOMBSTONE_INSERT[] =
    "INSERT INTO tombstones (tenant_id, env, record_id, seq, kind, source, reason, merged_into,"
    " origin, created_usec) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
static const char SQL_EVENT_DELETE[] = "DELETE FROM events WHERE tenant_id = $1 AND env = $2"
                                       " AND event_id = $3";
static const char SQL_ALIASES_DELETE[] = "DELETE FROM event_aliases WHERE tenant_id = $1"
                                         " AND env = $2 AND event_id = $3";
/* LIMIT 2: one is the record, a second means the id is ambiguous without a source. */
static const char SQL_CUSTOMER_FIND[] =
    "SELECT seq, source, profile_id FROM customers WHERE tenant_id = $1 AND env = $2"
    " AND customer_id = $3 AND ($4::text IS NULL OR source = $4::text)"
    " ORDER BY source COLLATE \"C\" LIMIT 2";
static const char SQL_CUSTOMER_DELETE[] = "DELETE FROM customers WHERE tenant_id = $1"
                                          " AND env = $2 AND seq = $3";
static const char SQL_SALE_DELETE[] = "DELETE FROM sales WHERE tenant_id = $1 AND env = $2"
                                      " AND invoice_number = $3";
/* An event merged into another: its aliases and its sales follow it (a sale's document keeps
 * the event id it was sent with, which now resolves through the alias). */
static const char SQL_ALIASES_REPOINT[] = "UPDATE event_aliases SET event_id = $4"
                                          " WHERE tenant_id = $1 AND env = $2 AND event_id = $3";
static const char SQL_SALES_REPOINT_EVENT[] = "UPDATE sales SET event_ref = $4 WHERE"
                                              " tenant_id = $1 AND env = $2 AND event_ref = $3";
/* A customer merged into another of its source: its sales name the survivor. In the order
 * SQLite walks them (its sales_customer index). */
static const char SQL_SALES_OF_CUSTOMER[] =
    "SELECT invoice_number, doc FROM sales WHERE tenant_id = $1 AND env = $2 AND source = $4"
    " AND customer_id = $3 ORDER BY net_quantity, purchase_datetime COLLATE \"C\", seq";
static const char SQL_SALE_RECUSTOMER[] =
    "UPDATE sales SET customer_id = $4, doc = $5, seq = $6, updated_usec = $7"
    " WHERE tenant_id = $1 AND env = $2 AND invoice_number = $3";
static const char SQL_SALE_STATE[] =
    "SELECT order_type, status, quantity, sales_price_minor, refunded_quantity,"
    " refunded_minor, currency, rr_quantity, rr_minor, status_changed, doc, customer_id"
    " FROM sales WHERE tenant_id = $1 AND env = $2 AND invoice_number = $3";
static const char SQL_SALE_REFUNDS[] =
    "UPDATE sales SET status = $4, refunded_quantity = $5, refunded_minor = $6,"
    " rr_quantity = $7, rr_minor = $8, net_quantity = $9, net_minor = $10,"
    " status_changed = $11 WHERE tenant_id = $1 AND env = $2 AND invoice_number = $3";
static const char SQL_CUSTOMER_OF_SOURCE[] =
    "SELECT source, doc FROM customers WHERE tenant_id = $1 AND env = $2"
    " AND customer_id = $3 AND source = $4";

/* A batch of new sales (apply_new_sales): what its records name, looked up in one statement
 * each, and its rows written in one statement, which names the invoices it stored (the others
 * are duplicates). An event resolves to itself first, else to the event its alias names, as
 * SQL_EVENT_RESOLVE does (a subquery per id: a batch names a few events). The lookups are
 * planned for each batch (exec_planned). */
static const char SQL_EVENTS_RESOLVE_MANY[] =
    "SELECT x.id, coalesce((SELECT e.event_id FROM events e WHERE e.tenant_id = $1"
    " AND e.env = $2 AND e.event_id = x.id LIMIT 1), (SELECT a.event_id FROM event_aliases a"
    " WHERE a.tenant_id = $1 AND a.env = $2 AND a.alias_id = x.id LIMIT 1))"
    " FROM unnest($3::text[]) AS x(id)";
/* "= ANY": at worst (no statistics yet) one scan of the scope per batch, never one per id. */
static const char SQL_CUSTOMERS_MANY[] =
    "SELECT customer_id, profile_id FROM customers WHERE tenant_id = $1 AND env = $2"
    " AND source = $3 AND customer_id = ANY ($4::text[])";
static const char SQL_SALES_INSERT_MANY[] =
    "INSERT INTO sales (tenant_id, env, invoice_number, seq, event_id, event_ref,"
    " customer_id, purchase_datetime, sales_price_minor, currency, doc, updated_usec, source,"
    " order_type, status, quantity, refunded_quantity, refunded_minor, net_quantity,"
    " net_minor, status_changed, expires, attended_quantity, refund_of, rr_quantity,"
    " rr_minor, origin, remote_version)"
    " SELECT $1::bigint, $2::smallint, u.inv, u.seq, u.ev, u.ref, u.cid, u.pdt, u.price, u.cur,"
    " u.doc, $3::bigint, $4::text, u.ot, u.st, u.q, u.rq, u.rm, u.nq, u.nm, u.sc, u.ex, u.att,"
    " u.rof, u.rrq, u.rrm, $5::text, u.rv"
    " FROM unnest($6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[],"
    " $12::bigint[], $13::text[], $14::text[], $15::text[], $16::text[], $17::bigint[],"
    " $18::bigint[], $19::bigint[], $20::bigint[], $21::bigint[], $22::text[], $23::text[],"
    " $24::bigint[], $25::text[], $26::bigint[], $27::bigint[], $28::bigint[])"
    " AS u(inv, seq, ev, ref, cid, pdt, price, cur, doc, ot, st, q, rq, rm, nq, nm, sc, ex,"
    " att, rof, rrq, rrm, rv)"
    " ON CONFLICT (tenant_id, env, invoice_number) DO NOTHING RETURNING invoice_number";

int sd_pg_exec_strict(struct pgconn *c, const char *msg, unsigned slot, const char *sql,
                      const struct sd_pg_params *p, PGresult **ret)
{
    int r = sd_pg_exec(c, slot, sql, p, ret);
    if (r == -EEXIST || r == -EINVAL) {
        sd_log(SD_LOG_ERROR, msg, "slot=%u", slot);
        r = -EIO;
    }
    return r;
}

int sd_pg_write_exec(struct pgconn *c, unsigned slot, const char *sql, const struct sd_pg_params *p,
                     PGresult **ret)
{
    return sd_pg_exec_strict(c, "constraint violated on the write path", slot, sql, p, ret);
}

void sd_pg_p_scope_id(struct sd_pg_params *p, int64_t tenant_id, enum sd_env env, int64_t id)
{
    sd_pg_params_init(p);
    sd_pg_p_scope(p, tenant_id, env, NULL);
    sd_pg_p_int(p, id);
}

static int exec_scoped(struct pgconn *c, unsigned slot, const char *sql, int64_t tenant_id,
                       enum sd_env env, const char *key)
{
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, key);
    return sd_pg_write_exec(c, slot, sql, &p, NULL);
}

/* A scoped lookup whose first column is text: 1 and the text in *out (reset first; out NULL:
 * existence only), 0 if no row, negative errno. */
static int lookup_text(struct pgconn *c, unsigned slot, const char *sql,
                       const struct sd_pg_params *p, struct sd_buf *out)
{
    PGresult *res = NULL;
    int r = sd_pg_write_exec(c, slot, sql, p, &res);
    if (r > 0) {
        if (out) {
            sd_buf_reset(out);
            const char *t = sd_pg_text(res, 0, 0);
            sd_buf_puts(out, t ? t : "");
        }
        r = 1;
    }
    PQclear(res);
    return r;
}

static int lookup_scoped(struct pgconn *c, unsigned slot, const char *sql, int64_t tenant_id,
                         enum sd_env env, const char *key, struct sd_buf *out)
{
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, key);
    return lookup_text(c, slot, sql, &p, out);
}

int sd_pg_event_resolve(struct pgconn *c, int64_t tenant_id, enum sd_env env, const char *id,
                        struct sd_buf *out)
{
    return lookup_scoped(c, SLOT_EVENT_RESOLVE, SQL_EVENT_RESOLVE, tenant_id, env, id, out);
}

int sd_pg_customer_exists(struct pgconn *c, int64_t tenant_id, enum sd_env env, const char *source,
                          const char *cid)
{
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, cid);
    sd_pg_p_text(&p, source);
    return lookup_text(c, SLOT_CUSTOMER_EXISTS, SQL_CUSTOMER_EXISTS, &p, NULL);
}

int sd_pg_sale_doc(struct pgconn *c, int64_t tenant_id, enum sd_env env, const char *invoice,
                   struct sd_buf *out)
{
    return lookup_scoped(c, SLOT_SALE_DOC, SQL_SALE_DOC, tenant_id, env, invoice, out);
}

static bool same_text(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* A new record's document without its null members (only parsed when it may have one). */
static int doc_new(const char *doc, char **ret)
{
    if (!strstr(doc, "null")) {
        *ret = sd_strdup(doc);
        return 0;
    }
    return sd_pg_json_patch(NULL, doc, NULL, NULL, ret);
}

static int doc_fail(int r)
{
    if (r < 0) {
        sd_log(SD_LOG_ERROR, "stored or sent document is not JSON", NULL);
    }
    return -EIO;
}

/* ---- array parameters ------------------------------------------------------------------------
 * A column of a batch as one PostgreSQL array literal ({"a","b",NULL} / {1,2}), passed as one
 * text parameter: every element quoted, '"' and '\\' escaped, so no value is ever SQL. */
struct pg_array {
    struct sd_buf b;
    size_t n;
};

static void arr_init(struct pg_array *a)
{
    sd_buf_init(&a->b);
    sd_buf_append(&a->b, "{", 1);
    a->n = 0;
}

static void arr_sep(struct pg_array *a)
{
    if (a->n++) {
        sd_buf_append(&a->b, ",", 1);
    }
}

static void arr_text(struct pg_array *a, const char *v)
{
    arr_sep(a);
    if (!v) {
        sd_buf_puts(&a->b, "NULL");
        return;
    }
    sd_buf_append(&a->b, "\"", 1);
    for (const char *p = v; *p; p++) {
        size_t run = strcspn(p, "\"\\");
        sd_buf_append(&a->b, p, run);
        p += run;
        if (!*p) {
            break;
        }
        char e[2] = {'\\', *p};
        sd_buf_append(&a->b, e, 2);
    }
    sd_buf_append(&a->b, "\"", 1);
}

static void arr_int(struct pg_array *a, int64_t v)
{
    arr_sep(a);
    sd_buf_printf(&a->b, "%lld", (long long)v);
}

static void arr_null(struct pg_array *a)
{
    arr_sep(a);
    sd_buf_puts(&a->b, "NULL");
}

/* The literal, valid until arr_release. */
static const char *arr_end(struct pg_array *a)
{
    sd_buf_append(&a->b, "}", 1);
    return a->b.data;
}

static void arr_release(struct pg_array *a)
{
    sd_buf_release(&a->b);
}

/* ---- statistics for tables filled within one transaction -------------------------------------
 * Every lookup of the write path names a whole unique key, (tenant_id, env, …). Until a table
 * has statistics, the planner takes (tenant_id, env) for as selective as the rest, so an index
 * on (tenant_id, env, <other columns>) ties with the unique one and may win: each lookup then
 * reads the whole scope, and a first import into a new database (one transaction, which no
 * autovacuum can analyze before it commits) grows quadratic — 15,000 customers took 132 s here
 * instead of 0.5 s. So the writer analyzes the record tables itself, inside its transaction
 * (ANALYZE counts the transaction's own rows), once a table that never had statistics holds
 * some rows; ANALYZE's catalog update makes this connection's cached plans be made again. It
 * is checked every STATS_CHECK_ROWS records written (one request may hold 10,000);
 * SKIP_LOCKED: a table someone else is analyzing is left to them. */
#define STATS_CHECK_ROWS 512
#define STATS_MIN_BYTES (8 * 8192) /* a few hundred rows */

static const char *const STATS_TABLES[] = {"events",   "event_aliases", "customers", "sales",
                                           "profiles", "profile_facts", "tombstones"};
static const char *const STATS_ANALYZE[] = {
    "ANALYZE (SKIP_LOCKED) events",    "ANALYZE (SKIP_LOCKED) event_aliases",
    "ANALYZE (SKIP_LOCKED) customers", "ANALYZE (SKIP_LOCKED) sales",
    "ANALYZE (SKIP_LOCKED) profiles",  "ANALYZE (SKIP_LOCKED) profile_facts",
    "ANALYZE (SKIP_LOCKED) tombstones"};
static const char SQL_NEEDS_STATS[] =
    "SELECT c.relname::text FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace"
    " AND c.relname = ANY ($1::text[]) AND c.reltuples < 0 AND pg_relation_size(c.oid) >= $2";

/* Count `rows` records written; every STATS_CHECK_ROWS, analyze what needs it. */
/* Count `rows` records written: true every STATS_CHECK_ROWS (then run the check). */
static bool stats_due(size_t rows)
{
    static _Thread_local size_t written; /* the writer thread's, since its last check */
    written += rows;
    if (written < STATS_CHECK_ROWS) {
        return false;
    }
    written = 0;
    return true;
}

/* The check's statement; names holds its array (release it after the run). */
static struct sd_pg_stmt stats_stmt(struct pg_array *names, struct sd_pg_params *p, PGresult **res)
{
    arr_init(names);
    for (size_t i = 0; i < sizeof(STATS_TABLES) / sizeof(*STATS_TABLES); i++) {
        arr_text(names, STATS_TABLES[i]);
    }
    sd_pg_params_init(p);
    sd_pg_p_text(p, arr_end(names));
    sd_pg_p_int(p, STATS_MIN_BYTES);
    return (struct sd_pg_stmt){
        .slot = SLOT_NEEDS_STATS, .sql = SQL_NEEDS_STATS, .p = p, .ret = res};
}

/* Analyze the tables the check (r rows in res) named. */
static int stats_analyze(struct pgconn *c, int r, const PGresult *res)
{
    for (int k = 0; k < r; k++) {
        const char *name = sd_pg_text(res, k, 0);
        for (size_t i = 0; i < sizeof(STATS_TABLES) / sizeof(*STATS_TABLES); i++) {
            if (name && strcmp(name, STATS_TABLES[i]) == 0) {
                int e = sd_pg_run(c, STATS_ANALYZE[i]);
                if (e < 0) {
                    r = e;
                }
            }
        }
        if (r < 0) {
            break;
        }
    }
    return r < 0 ? r : 0;
}

static int stats_tick(struct pgconn *c, size_t rows)
{
    if (!stats_due(rows)) {
        return 0;
    }
    struct pg_array names;
    struct sd_pg_params p;
    PGresult *res = NULL;
    struct sd_pg_stmt st = stats_stmt(&names, &p, &res);
    int r = sd_pg_write_exec(c, (unsigned)st.slot, st.sql, st.p, st.ret);
    r = stats_analyze(c, r, res);
    PQclear(res);
    arr_release(&names);
    return r;
}

/* ---- write path: ingest ---------------------------------------------------------------------- */

/* Merge e's content into event `event_id` with a new seq: 1 updated, 2 stored already with
 * identical content (it keeps its seq: unchanged), 3 not applied because e's remote version is
 * older than the stored one (stale, kept as it was), 0 no such event, negative errno.
 * An update sent under an alias id keeps the event's own id in the document; content
 * unchanged → seq, updated_usec and origin stay; an older remote version never overwrites a
 * newer one (only the kept maximum changes). */
static int event_update(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                        const char *event_id, const struct sd_event_rec *e, int64_t now,
                        const char *origin)
{
    struct pgconn *c = sd_pg_writer(s);
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, event_id);
    PGresult *res = NULL;
    int r = sd_pg_write_exec(c, SLOT_EVENT_GET, SQL_EVENT_GET, &p, &res);
    if (r <= 0) {
        PQclear(res);
        return r;
    }
    int64_t old_seq = sd_pg_int64(res, 0, 0);
    const char *old_doc = sd_pg_text(res, 0, 1);
    const char *old_dup = sd_pg_text(res, 0, 2);
    int64_t old_rv = sd_pg_int64(res, 0, 3);
    bool stale = e->remote_version != 0 && old_rv > e->remote_version;
    char *merged = NULL;
    r = sd_pg_json_patch(old_doc, e->doc, "event_id", event_id, &merged);
    if (r < 0) {
        r = doc_fail(r);
        goto out;
    }
    bool keep = stale || ((same_text(old_doc, e->doc) || same_text(old_doc, merged)) &&
                          same_text(old_dup, e->dup_key));
    int64_t seq = sd_pg_seq_next(s); /* taken even when kept: numbered as SQLite numbers */
    int64_t rv = old_rv > e->remote_version ? old_rv : e->remote_version;
    char updated[24];
    snprintf(updated, sizeof(updated), "%lld", (long long)(keep ? sd_pg_int64(res, 0, 4) : now));
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, NULL);
    sd_pg_p_int(&p, old_seq);
    sd_pg_p_int(&p, keep ? old_seq : seq);
    sd_pg_p_text(&p, updated);
    sd_pg_p_text(&p, keep ? sd_pg_text(res, 0, 5) : origin);
    sd_pg_p_text(&p, stale ? old_dup : e->dup_key);
    sd_pg_p_text(&p, stale ? old_doc : merged);
    sd_pg_p_int(&p, rv);
    r = sd_pg_write_exec(c, SLOT_EVENT_SET, SQL_EVENT_SET, &p, NULL);
    if (r < 0) {
        goto out;
    }
    r = !keep ? 1 : e->remote_version != 0 && rv > e->remote_version ? 3 : 2;
out:
    free(merged);
    PQclear(res);
    return r;
}

static int event_insert(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                        const struct sd_event_rec *e, int64_t now, const char *origin)
{
    char *doc = NULL;
    int r = doc_new(e->doc, &doc);
    if (r < 0) {
        return doc_fail(r);
    }
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, e->event_id);
    sd_pg_p_int(&p, s->seq + 1);
    sd_pg_p_text(&p, e->dup_key);
    sd_pg_p_text(&p, doc);
    sd_pg_p_int(&p, now);
    sd_pg_p_text(&p, origin);
    sd_pg_p_int(&p, e->remote_version);
    r = sd_pg_write_exec(sd_pg_writer(s), SLOT_EVENT_INSERT, SQL_EVENT_INSERT, &p, NULL);
    free(doc);
    if (r < 0) {
        return r;
    }
    (void)sd_pg_seq_next(s);
    return stats_tick(sd_pg_writer(s), 1);
}

static int alias_insert(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                        const char *alias_id, const char *event_id)
{
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, alias_id);
    sd_pg_p_text(&p, event_id);
    int r = sd_pg_write_exec(sd_pg_writer(s), SLOT_ALIAS_INSERT, SQL_ALIAS_INSERT, &p, NULL);
    return r < 0 ? r : 0;
}

static int alias_get(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *alias_id,
                     struct sd_buf *out)
{
    return lookup_scoped(sd_pg_writer(s), SLOT_ALIAS_GET, SQL_ALIAS_GET, tenant_id, env, alias_id,
                         out);
}

static int event_by_dup(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *dup_key,
                        struct sd_buf *out)
{
    return lookup_scoped(sd_pg_writer(s), SLOT_EVENT_BY_DUP, SQL_EVENT_BY_DUP, tenant_id, env,
                         dup_key, out);
}

/* What applying a batch's events (store/write_plan.c) does on the writer. */
static const struct sd_event_steps event_steps = {
    .update = event_update,
    .alias_get = alias_get,
    .by_dup = event_by_dup,
    .alias_insert = alias_insert,
    .insert = event_insert,
};

static void p_opt_out(struct sd_pg_params *p, int v)
{
    if (v < 0) {
        sd_pg_p_text(p, NULL);
    } else {
        sd_pg_p_bool(p, v != 0);
    }
}

/* A folded document field (seg_post_code, seg_city) as SQLite's sd_fold(json_extract(…)). */
static int fold_field(const char *doc, const char *key, bool *ret_present, char **ret)
{
    int r = sd_pg_json_fold_member(doc, key, ret_present, ret);
    return r < 0 ? doc_fail(r) : 0;
}

/* Upsert one customer record (merged as events are): 1 written with a new seq, 2 unchanged,
 * 3 stale, negative errno. The seq is taken either way, as SQLite takes it. An omitted opt-out
 * flag never clears a known one (losing an opt-out is the costly mistake); the e-mail key after
 * an update is the record's own, else the stored one when the record leaves "email" out, none
 * when it sends null. */
static int customer_upsert(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const char *source, const char *origin, const struct sd_customer_rec *cu,
                           int64_t now)
{
    struct pgconn *c = sd_pg_writer(s);
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, cu->customer_id);
    sd_pg_p_text(&p, source);
    PGresult *res = NULL;
    char *doc = NULL, *post = NULL, *city = NULL;
    bool has_post = false, has_city = false;
    int r = sd_pg_write_exec(c, SLOT_CUSTOMER_GET, SQL_CUSTOMER_GET, &p, &res);
    if (r < 0) {
        return r;
    }
    if ((r = fold_field(cu->doc, "post_code", &has_post, &post)) < 0 ||
        (r = fold_field(cu->doc, "city", &has_city, &city)) < 0) {
        goto out;
    }
    if (PQntuples(res) == 0) {
        if ((r = doc_new(cu->doc, &doc)) < 0) {
            r = doc_fail(r);
            goto out;
        }
        sd_pg_params_init(&p);
        sd_pg_p_scope(&p, tenant_id, env, cu->customer_id);
        sd_pg_p_int(&p, s->seq + 1);
        sd_pg_p_text(&p, cu->email_key);
        p_opt_out(&p, cu->ad_opt_out);
        sd_pg_p_text(&p, doc);
        sd_pg_p_int(&p, now);
        sd_pg_p_text(&p, source);
        sd_pg_p_text(&p, origin);
        sd_pg_p_int(&p, cu->remote_version);
        sd_pg_p_text(&p, post);
        sd_pg_p_text(&p, city);
        r = sd_pg_write_exec(c, SLOT_CUSTOMER_INSERT, SQL_CUSTOMER_INSERT, &p, NULL);
        if (r >= 0) {
            (void)sd_pg_seq_next(s);
            r = 1;
        }
        goto out;
    }
    int64_t old_seq = sd_pg_int64(res, 0, 0);
    const char *old_doc = sd_pg_text(res, 0, 1);
    const char *old_email = sd_pg_text(res, 0, 2);
    int old_opt = sd_pg_isnull(res, 0, 3) ? -1 : sd_pg_int64(res, 0, 3) != 0;
    int64_t old_rv = sd_pg_int64(res, 0, 4);
    bool stale = cu->remote_version != 0 && old_rv > cu->remote_version;
    const char *email = cu->email_key;
    if (!email) {
        bool present = false;
        char *v = NULL;
        if ((r = fold_field(cu->doc, "email", &present, &v)) < 0) {
            goto out;
        }
        email = present && !v ? NULL : old_email;
        free(v);
    }
    int opt = cu->ad_opt_out >= 0 ? cu->ad_opt_out != 0 : old_opt;
    if ((r = sd_pg_json_patch(old_doc, cu->doc, NULL, NULL, &doc)) < 0) {
        r = doc_fail(r);
        goto out;
    }
    bool keep = stale || ((same_text(old_doc, cu->doc) || same_text(old_doc, doc)) &&
                          same_text(old_email, email) && old_opt == opt);
    int64_t seq = sd_pg_seq_next(s);
    int64_t rv = old_rv > cu->remote_version ? old_rv : cu->remote_version;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, NULL);
    sd_pg_p_int(&p, old_seq);
    sd_pg_p_int(&p, keep ? old_seq : seq);
    if (keep) {
        sd_pg_p_text(&p, sd_pg_text(res, 0, 7));
        sd_pg_p_text(&p, sd_pg_text(res, 0, 8));
    } else {
        sd_pg_p_int(&p, now);
        sd_pg_p_text(&p, origin);
    }
    sd_pg_p_text(&p, stale ? old_email : email);
    p_opt_out(&p, stale ? old_opt : opt);
    sd_pg_p_text(&p, stale ? old_doc : doc);
    sd_pg_p_int(&p, rv);
    sd_pg_p_text(&p, stale || !has_post ? sd_pg_text(res, 0, 5) : post);
    sd_pg_p_text(&p, stale || !has_city ? sd_pg_text(res, 0, 6) : city);
    r = sd_pg_write_exec(c, SLOT_CUSTOMER_SET, SQL_CUSTOMER_SET, &p, NULL);
    if (r >= 0) {
        r = !keep ? 1 : cu->remote_version != 0 && rv > cu->remote_version ? 3 : 2;
    }
out:
    free(doc);
    free(post);
    free(city);
    PQclear(res);
    return r;
}

/* Upsert each customer record, then link it to its profile (pg_link.c) in the same
 * transaction, so a committed record always has a profile with up-to-date flags. A customer
 * stored already as sent keeps its seq and counts in res->n_unchanged. */
static int apply_customers(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const struct sd_batch *b, int64_t now, struct sd_apply_result *res)
{
    struct sd_link_ctx link = {0};
    for (size_t i = 0; i < b->n_customers; i++) {
        const struct sd_customer_rec *cu = &b->customers[i];
        int r = customer_upsert(s, tenant_id, env, sd_write_batch_source(b), b->origin, cu, now);
        if (r < 0) {
            return r;
        }
        if (r > 1) {
            sd_write_count_kept(res, r);
        }
        r = sd_pg_profile_link(s, tenant_id, env, &link, sd_write_batch_source(b), cu, now);
        if (r < 0 || (r = stats_tick(sd_pg_writer(s), 1)) < 0) {
            return r;
        }
    }
    return 0;
}

/* ---- order lifecycle ---------------------------------------------------------------------------
 * The planning pass (store/lifecycle_plan.c) reads the stored state of each invoice through
 * sale_state_get below; after the batch's rows are written, the sales that refund records
 * changed get their new figures (write_refund_targets). */

/* 1 and *ret when invoice is stored, 0 when not, negative errno. */
static int sale_state_get(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                          const char *invoice, struct sd_stored_sale *ret)
{
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, invoice);
    PGresult *res = NULL;
    int r = sd_pg_write_exec(sd_pg_writer(s), SLOT_SALE_STATE, SQL_SALE_STATE, &p, &res);
    if (r <= 0) {
        PQclear(res);
        return r;
    }
    struct sd_stored_sale x = {0};
    if (sd_order_type_parse(sd_pg_text(res, 0, 0), &x.st.order_type) < 0) {
        x.st.order_type = SD_ORDER_SALE;
    }
    if (sd_sale_status_parse(sd_pg_text(res, 0, 1), &x.st.status) < 0) {
        x.st.status = SD_STATUS_SOLD;
    }
    x.st.quantity = sd_pg_int64(res, 0, 2);
    int64_t price = sd_pg_int64(res, 0, 3);
    if (__builtin_mul_overflow(x.st.quantity, price, &x.st.total_minor)) {
        x.st.total_minor = INT64_MAX; /* stored before amounts were checked for this */
    }
    x.st.refunded_quantity = sd_pg_int64(res, 0, 4);
    x.st.refunded_minor = sd_pg_int64(res, 0, 5);
    const char *cur = sd_pg_text(res, 0, 6);
    snprintf(x.st.currency, sizeof(x.st.currency), "%s", cur ? cur : "");
    x.rr_quantity = sd_pg_int64(res, 0, 7);
    x.rr_minor = sd_pg_int64(res, 0, 8);
    x.changed = sd_pg_strdup(res, 0, 9);
    x.doc = sd_pg_strdup(res, 0, 10);
    x.customer_id = sd_pg_strdup(res, 0, 11);
    PQclear(res);
    *ret = x;
    return 1;
}

static int event_resolve(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                         const char *event_id, struct sd_buf *out)
{
    return sd_pg_event_resolve(sd_pg_writer(s), tenant_id, env, event_id, out);
}

static int customer_exists(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const char *source, const char *cid)
{
    return sd_pg_customer_exists(sd_pg_writer(s), tenant_id, env, source, cid);
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
    struct pgconn *c = sd_pg_writer(s);
    for (size_t k = 0; k < t->n; k++) {
        const struct sd_refund_target *tg = &t->v[k];
        int r = sd_pg_facts_sale_out(c, tenant_id, env, tg->invoice);
        if (r < 0) {
            return r;
        }
        struct sd_pg_params p;
        sd_pg_params_init(&p);
        sd_pg_p_scope(&p, tenant_id, env, tg->invoice);
        sd_pg_p_text(&p, sd_sale_status_name(tg->st.status));
        sd_pg_p_int(&p, tg->st.refunded_quantity);
        sd_pg_p_int(&p, tg->st.refunded_minor);
        sd_pg_p_int(&p, tg->rr_quantity);
        sd_pg_p_int(&p, tg->rr_minor);
        sd_pg_p_int(&p, sd_sale_net_quantity(&tg->st));
        sd_pg_p_int(&p, sd_sale_net_minor(&tg->st));
        sd_pg_p_text(&p, tg->changed);
        r = sd_pg_write_exec(c, SLOT_SALE_REFUNDS, SQL_SALE_REFUNDS, &p, NULL);
        if (r < 0) {
            return r;
        }
        r = sd_pg_facts_sale_in(c, tenant_id, env, tg->invoice);
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

/* A sale's columns $1..$28 (the insert and the update share the numbering): the record, the
 * lifecycle figures its plan decided, its origin ($27) and remote version ($28). The texts
 * are the caller's and outlive the statement; cur holds the currency. */
static void sale_params(struct sd_pg_params *p, int64_t tenant_id, enum sd_env env,
                        const struct sd_sale_rec *sale, const struct sd_sale_plan *pl, int64_t seq,
                        const char *event_ref, int64_t now, const char *source, const char *origin,
                        char cur[4])
{
    snprintf(cur, 4, "%.3s", sale->currency);
    sd_pg_params_init(p);
    sd_pg_p_scope(p, tenant_id, env, sale->invoice_number);
    sd_pg_p_int(p, seq);
    sd_pg_p_text(p, sale->event_id);
    sd_pg_p_text(p, event_ref);
    sd_pg_p_text(p, sale->customer_id);
    sd_pg_p_text(p, sale->purchase_datetime);
    sd_pg_p_int(p, sale->sales_price_minor);
    sd_pg_p_text(p, cur);
    sd_pg_p_text(p, sale->doc);
    sd_pg_p_int(p, now);
    sd_pg_p_text(p, source);
    sd_pg_p_text(p, sd_order_type_name(pl->st.order_type));
    sd_pg_p_text(p, sd_sale_status_name(pl->st.status));
    sd_pg_p_int(p, pl->st.quantity);
    sd_pg_p_int(p, pl->st.refunded_quantity);
    sd_pg_p_int(p, pl->st.refunded_minor);
    sd_pg_p_int(p, sd_sale_net_quantity(&pl->st));
    sd_pg_p_int(p, sd_sale_net_minor(&pl->st));
    sd_pg_p_text(p, pl->changed);
    sd_pg_p_text(p, sale->expires_at);
    if (sale->attended_quantity >= 0) {
        sd_pg_p_int(p, sale->attended_quantity);
    } else {
        sd_pg_p_text(p, NULL);
    }
    sd_pg_p_text(p, sale->refund_of);
    sd_pg_p_int(p, pl->rr_quantity);
    sd_pg_p_int(p, pl->rr_minor);
    sd_pg_p_text(p, origin);
    sd_pg_p_int(p, sale->remote_version);
}

/* Replace a stored sale with this record (new seq) as its plan says: 1 replaced, 0 not (an
 * older remote version: the stored sale stays; number_kept: its seq is taken all the same),
 * negative errno. The facts follow. */
static int sale_update(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       const struct sd_sale_rec *sale, const struct sd_sale_plan *pl,
                       const char *event_ref, int64_t now, const char *source, const char *origin,
                       bool number_kept)
{
    struct pgconn *c = sd_pg_writer(s);
    int r = sd_pg_facts_sale_out(c, tenant_id, env, sale->invoice_number);
    if (r < 0) {
        return r;
    }
    struct sd_pg_params p;
    char cur[4];
    sale_params(&p, tenant_id, env, sale, pl, s->seq + 1, event_ref, now, source, origin, cur);
    r = sd_pg_write_exec(c, SLOT_SALE_UPDATE, SQL_SALE_UPDATE, &p, NULL);
    if (r < 0) {
        return r;
    }
    bool changed = r > 0;
    r = sd_pg_facts_sale_in(c, tenant_id, env, sale->invoice_number);
    if (r < 0) {
        return r;
    }
    if (changed || number_kept) {
        (void)sd_pg_seq_next(s);
    }
    return changed;
}

/* The columns of a batch's new sales, one array each (SQL_SALES_INSERT_MANY's $6..$28). */
enum { SALE_COLS = 23 };

static void sale_row_add(struct pg_array *col, const struct sd_sale_rec *sale,
                         const struct sd_sale_plan *pl, int64_t seq, const char *event_ref)
{
    char cur[4];
    snprintf(cur, sizeof(cur), "%.3s", sale->currency);
    int i = 0;
    arr_text(&col[i++], sale->invoice_number);
    arr_int(&col[i++], seq);
    arr_text(&col[i++], sale->event_id);
    arr_text(&col[i++], event_ref);
    arr_text(&col[i++], sale->customer_id);
    arr_text(&col[i++], sale->purchase_datetime);
    arr_int(&col[i++], sale->sales_price_minor);
    arr_text(&col[i++], cur);
    arr_text(&col[i++], sale->doc);
    arr_text(&col[i++], sd_order_type_name(pl->st.order_type));
    arr_text(&col[i++], sd_sale_status_name(pl->st.status));
    arr_int(&col[i++], pl->st.quantity);
    arr_int(&col[i++], pl->st.refunded_quantity);
    arr_int(&col[i++], pl->st.refunded_minor);
    arr_int(&col[i++], sd_sale_net_quantity(&pl->st));
    arr_int(&col[i++], sd_sale_net_minor(&pl->st));
    arr_text(&col[i++], pl->changed);
    arr_text(&col[i++], sale->expires_at);
    if (sale->attended_quantity >= 0) {
        arr_int(&col[i++], sale->attended_quantity);
    } else {
        arr_null(&col[i++]);
    }
    arr_text(&col[i++], sale->refund_of);
    arr_int(&col[i++], pl->rr_quantity);
    arr_int(&col[i++], pl->rr_minor);
    arr_int(&col[i++], sale->remote_version);
}

/* What a batch of new sales names, each looked up once for the whole batch: the events (into
 * events: id → canonical id or NULL) and the customers of the batch's source (into customers:
 * id → "1" or NULL, and their profiles into the facts' key cache). Nothing of it changes while
 * the batch's sales are applied: events and customers are applied before them. */
static int prefetch_refs(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                         const struct sd_batch *b, struct sd_refmap *events,
                         struct sd_refmap *customers, struct sd_facts_batch *facts)
{
    struct pgconn *c = sd_pg_writer(s);
    const char *source = sd_write_batch_source(b);
    struct pg_array ev, cu;
    arr_init(&ev);
    arr_init(&cu);
    struct sd_refmap seen_ev = {0}, seen_cu = {0};
    for (size_t i = 0; i < b->n_sales; i++) {
        const struct sd_sale_rec *sale = &b->sales[i];
        if (!sd_refmap_get(&seen_ev, sale->event_id)) {
            sd_refmap_put(&seen_ev, sale->event_id, NULL);
            arr_text(&ev, sale->event_id);
        }
        if (strcmp(sale->customer_id, SD_ANON_CUSTOMER) != 0 &&
            !sd_refmap_get(&seen_cu, sale->customer_id)) {
            sd_refmap_put(&seen_cu, sale->customer_id, NULL);
            arr_text(&cu, sale->customer_id);
        }
    }
    /* Both lookups in one round trip, each unnamed: planned for its values and the tables'
     * current size each time (a plan cached while a table was small scans it whole per element
     * once it has grown: a long import grows it within one transaction, before statistics). */
    PGresult *res = NULL, *res_cu = NULL;
    struct sd_pg_params p, pc;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, arr_end(&ev));
    sd_pg_params_init(&pc);
    sd_pg_p_scope(&pc, tenant_id, env, source);
    sd_pg_p_text(&pc, seen_cu.n > 0 ? arr_end(&cu) : NULL);
    struct sd_pg_stmt st[] = {
        {.slot = -1, .sql = SQL_EVENTS_RESOLVE_MANY, .p = &p, .ret = &res},
        {.slot = -1, .sql = SQL_CUSTOMERS_MANY, .p = &pc, .ret = &res_cu},
    };
    int r = sd_pg_exec_pipeline(c, st, seen_cu.n > 0 ? 2 : 1);
    for (int i = 0; r == 0 && i < st[0].result; i++) {
        sd_refmap_put(events, sd_pg_text(res, i, 0), sd_pg_text(res, i, 1));
    }
    PQclear(res);
    if (r == 0 && seen_cu.n > 0) {
        for (int i = 0; i < st[1].result; i++) {
            sd_refmap_put(customers, sd_pg_text(res_cu, i, 0), "1");
            sd_facts_batch_known(facts, source, sd_pg_text(res_cu, i, 0),
                                 sd_pg_int64(res_cu, i, 1));
        }
        /* the ones the store does not hold */
        for (size_t i = 0; i < seen_cu.cap; i++) {
            if (seen_cu.slot[i].key) {
                sd_refmap_put(customers, seen_cu.slot[i].key, NULL);
            }
        }
    }
    PQclear(res_cu);
    sd_refmap_release(&seen_ev);
    sd_refmap_release(&seen_cu);
    arr_release(&ev);
    arr_release(&cu);
    return r < 0 ? r : 0;
}

/* The sales of a batch that stores new invoices only (the webhook: a stored invoice is a
 * duplicate), with the outcome, errors, facts and (for an applied batch) seq numbers of the
 * one-by-one pass below, in a fixed number of statements: the references are looked up for
 * the whole batch first, every sale is checked in order (all errors reported), and the rows
 * are written with one INSERT, numbered in batch order, which names the invoices it stored.
 * A duplicate is an invoice stored before the batch (the INSERT skipped it) or earlier in it.
 * A batch with a duplicate is not applied (the caller rolls it back), so the gaps its skipped
 * rows leave in the numbering are never seen. */
static int apply_new_sales(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const struct sd_batch *b, int64_t now, struct sd_apply_result *res)
{
    struct pgconn *c = sd_pg_writer(s);
    const char *source = sd_write_batch_source(b);
    struct sd_refmap events = {0}, customers = {0}, fresh = {0}, stored = {0};
    const char *customer_cache = NULL;
    size_t ref_errors = 0, dup_cap = 0, n_new = 0;
    struct sd_sale_plan *plans = sd_calloc(b->n_sales + 1, sizeof(*plans));
    bool *in_batch_dup = sd_calloc(b->n_sales + 1, sizeof(*in_batch_dup));
    struct sd_refund_targets targets = {0};
    struct sd_facts_batch facts = {0};
    struct pg_array col[SALE_COLS];
    for (int k = 0; k < SALE_COLS; k++) {
        arr_init(&col[k]);
    }
    PGresult *ins = NULL, *stats_res = NULL;
    int r = sd_lifecycle_plan_sales(s, &lookup, tenant_id, env, b, now, plans, &targets, res);
    if (r < 0) {
        goto out;
    }
    ref_errors += (size_t)r;
    r = prefetch_refs(s, tenant_id, env, b, &events, &customers, &facts);
    if (r < 0) {
        goto out;
    }
    for (size_t i = 0; i < b->n_sales; i++) {
        const struct sd_sale_rec *sale = &b->sales[i];
        const char *ref = NULL;
        char prefix[40];
        snprintf(prefix, sizeof(prefix), "/sales/%zu", sale->index);
        r = sd_write_check_sale_refs(s, &lookup, tenant_id, env, source, sale, prefix, &events,
                                     &customers, &customer_cache, res, &ref);
        if (r < 0) {
            goto out;
        }
        ref_errors += (size_t)r;
        if (ref_errors > 0) {
            continue;
        }
        if (sd_refmap_get(&fresh, sale->invoice_number)) {
            in_batch_dup[i] = true;
            continue;
        }
        sd_refmap_put(&fresh, sale->invoice_number, "1");
        sale_row_add(col, sale, &plans[i], s->seq + 1 + (int64_t)n_new, ref);
        n_new++;
    }
    r = 0;
    if (ref_errors > 0 || n_new == 0) {
        goto tail;
    }
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, NULL);
    sd_pg_p_int(&p, now);
    sd_pg_p_text(&p, source);
    sd_pg_p_text(&p, b->origin);
    for (int k = 0; k < SALE_COLS; k++) {
        sd_pg_p_text(&p, arr_end(&col[k]));
    }
    /* The facts of every row the INSERT is to store go out with it, in one round trip: a row
     * it skips makes the batch a duplicate, which the caller rolls back whole, facts and all. */
    for (size_t i = 0; i < b->n_sales; i++) {
        const struct sd_sale_rec *sale = &b->sales[i];
        if (in_batch_dup[i]) {
            continue;
        }
        r = sd_facts_batch_add(&facts, s, sd_pg_facts_profile_of, tenant_id, env, source,
                               sale->customer_id, sale->currency, sale->purchase_datetime,
                               sd_sale_net_quantity(&plans[i].st), sd_sale_net_minor(&plans[i].st));
        if (r < 0) {
            goto out;
        }
    }
    /* and the statistics check when due (it sees the rows: same transaction) */
    struct pg_array stats_names;
    struct sd_pg_params stats_p;
    struct sd_pg_stmt lead[2] = {
        {.slot = SLOT_SALES_INSERT_MANY, .sql = SQL_SALES_INSERT_MANY, .p = &p, .ret = &ins},
        stats_due(n_new) ? stats_stmt(&stats_names, &stats_p, &stats_res)
                         : (struct sd_pg_stmt){.slot = -1}};
    r = sd_pg_facts_batch_flush_with(c, &facts, tenant_id, env, lead, lead[1].sql ? 2 : 1);
    if (lead[1].sql) {
        arr_release(&stats_names);
    }
    struct sd_pg_stmt insert = lead[0];
    if (insert.result == -EEXIST || insert.result == -EINVAL) {
        sd_log(SD_LOG_ERROR, "constraint violated on the write path", "slot=%d",
               SLOT_SALES_INSERT_MANY);
        r = -EIO;
    }
    if (r < 0) {
        goto out;
    }
    for (int k = 0; k < insert.result; k++) {
        sd_refmap_put(&stored, sd_pg_text(ins, k, 0), "1");
    }
    /* every number handed out stays taken (a skipped row's is a gap, see above) */
    for (size_t k = 0; k < n_new; k++) {
        (void)sd_pg_seq_next(s);
    }
    r = lead[1].sql ? stats_analyze(c, lead[1].result, stats_res) : 0;
    if (r < 0) {
        goto out;
    }
    for (size_t i = 0; i < b->n_sales; i++) {
        const struct sd_sale_rec *sale = &b->sales[i];
        if (in_batch_dup[i] || !sd_refmap_get(&stored, sale->invoice_number)) {
            sd_write_push_duplicate(res, sale->invoice_number, &dup_cap);
        }
    }
tail:
    /* the new sales join the purchase facts before refunds change any of them */
    r = sd_pg_facts_batch_flush(c, &facts, tenant_id, env);
    if (r >= 0 && ref_errors == 0 && res->n_duplicate_invoices == 0) {
        r = write_refund_targets(s, tenant_id, env, &targets);
    }
out:
    r = sd_write_sales_outcome(res, r, ref_errors);
    PQclear(ins);
    PQclear(stats_res);
    for (int k = 0; k < SALE_COLS; k++) {
        arr_release(&col[k]);
    }
    sd_facts_batch_release(&facts);
    sd_sale_plans_free(plans, b->n_sales);
    free(in_batch_dup);
    sd_refund_targets_release(&targets);
    sd_refmap_release(&events);
    sd_refmap_release(&customers);
    sd_refmap_release(&fresh);
    sd_refmap_release(&stored);
    return r;
}

static int sale_exists(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *invoice)
{
    return lookup_scoped(sd_pg_writer(s), SLOT_SALE_EXISTS, SQL_SALE_EXISTS, tenant_id, env,
                         invoice, NULL);
}

/* Insert a new sale as planned: 1 inserted, 0 its invoice is stored already, negative errno. */
static int sale_insert(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       const struct sd_batch *b, const struct sd_sale_rec *sale,
                       const struct sd_sale_plan *pl, const char *event_ref, int64_t now,
                       struct sd_facts_batch *facts)
{
    struct pgconn *c = sd_pg_writer(s);
    struct sd_pg_params p;
    char cur[4];
    sale_params(&p, tenant_id, env, sale, pl, s->seq + 1, event_ref, now, sd_write_batch_source(b),
                b->origin, cur);
    int r = sd_pg_write_exec(c, SLOT_SALE_INSERT, SQL_SALE_INSERT, &p, NULL);
    if (r <= 0) {
        return r;
    }
    (void)sd_pg_seq_next(s);
    r = stats_tick(c, 1);
    r = r < 0 ? r
              : sd_facts_batch_add(facts, s, sd_pg_facts_profile_of, tenant_id, env,
                                   sd_write_batch_source(b), sale->customer_id, sale->currency,
                                   sale->purchase_datetime, sd_sale_net_quantity(&pl->st),
                                   sd_sale_net_minor(&pl->st));
    return r < 0 ? r : 1;
}

static int facts_flush(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       struct sd_facts_batch *facts)
{
    return sd_pg_facts_batch_flush(sd_pg_writer(s), facts, tenant_id, env);
}

/* What writing a batch's sales and replacing a sale (store/write_plan.c) do on the writer. */
static const struct sd_sale_steps sale_steps = {
    .prefetch = prefetch_refs,
    .exists = sale_exists,
    .insert = sale_insert,
    .update = sale_update,
    .facts_flush = facts_flush,
    .refunds = write_refund_targets,
};

/* A batch that stores new invoices only has a path of its own (apply_new_sales); an upsert
 * batch goes one by one (store/write_plan.c). */
static int apply_sales(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       const struct sd_batch *b, int64_t now, struct sd_apply_result *res)
{
    if (!b->upsert_sales) {
        return b->n_sales ? apply_new_sales(s, tenant_id, env, b, now, res) : 0;
    }
    return sd_write_apply_sales(s, &lookup, &sale_steps, tenant_id, env, b, now, res);
}

static const struct sd_ingest_steps ingest_steps = {
    .events = &event_steps,
    .customers = apply_customers,
    .sales = apply_sales,
};

int sd_pg_apply_ingest(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       const struct sd_batch *b, struct sd_apply_result *res)
{
    if (!sd_pg_env_ok(env) || !b || !res) {
        return -EINVAL;
    }
    if (!sd_pg_writer(s)) {
        return -EINVAL;
    }
    return sd_write_apply_ingest(s, &ingest_steps, tenant_id, env, b, res);
}

int sd_pg_replace_sale(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       const struct sd_sale_rec *sale, struct sd_apply_result *res)
{
    if (!sd_pg_env_ok(env) || !sale || !res || !sd_pg_writer(s)) {
        return -EINVAL;
    }
    return sd_write_replace_sale(s, &lookup, &sale_steps, tenant_id, env, sale, res);
}

int sd_pg_idem_put(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *key,
                   const struct sd_idem_entry *e)
{
    if (!key || !e || !sd_pg_env_ok(env)) {
        return -EINVAL;
    }
    struct pgconn *c = sd_pg_writer(s);
    if (!c) {
        return -EINVAL;
    }
    char hash[65];
    snprintf(hash, sizeof(hash), "%.64s", e->body_hash);
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, key);
    sd_pg_p_text(&p, hash);
    sd_pg_p_int(&p, e->status);
    sd_pg_p_text(&p, e->response ? e->response : "");
    sd_pg_p_int(&p, e->created_usec);
    int r = sd_pg_write_exec(c, SLOT_IDEM_PUT, SQL_IDEM_PUT, &p, NULL);
    if (r < 0) {
        return r;
    }
    return r == 0 ? -EEXIST : 0;
}

int sd_pg_idem_purge(struct sd_store *s, int64_t before_usec)
{
    struct pgconn *c = sd_pg_writer(s);
    if (!c) {
        return -EINVAL;
    }
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_int(&p, before_usec);
    int r = sd_pg_write_exec(c, SLOT_IDEM_PURGE, SQL_IDEM_PURGE, &p, NULL);
    return r < 0 ? r : 0;
}

int sd_pg_get_customer_in_write(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                                const char *id, const char *source, char **ret_doc)
{
    struct pgconn *c = sd_pg_writer(s);
    if (!id || !source || !sd_pg_env_ok(env) || !c) {
        return -EINVAL;
    }
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, id);
    sd_pg_p_text(&p, source);
    PGresult *res = NULL;
    int r = sd_pg_write_exec(c, SLOT_CUSTOMER_OF_SOURCE, SQL_CUSTOMER_OF_SOURCE, &p, &res);
    if (r > 0) {
        char *doc = NULL;
        r = sd_pg_json_set(sd_pg_text(res, 0, 1), "source", sd_pg_text(res, 0, 0), &doc);
        if (r == 0) {
            *ret_doc = doc;
        } else {
            r = doc_fail(r);
        }
    } else if (r == 0) {
        r = -ENOENT;
    }
    PQclear(res);
    return r;
}

/* ---- write path: deletions and their tombstones -------------------------------------------- */

int sd_pg_tombstone_put(struct sd_store *s, int64_t tenant_id, enum sd_env env, enum sd_kind kind,
                        const char *id, const char *source, enum sd_tombstone_reason reason,
                        const char *merged_into, const char *origin, int64_t now)
{
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, id);
    sd_pg_p_int(&p, s->seq + 1);
    sd_pg_p_int(&p, (int64_t)kind);
    sd_pg_p_text(&p, kind == SD_KIND_CUSTOMER ? source : NULL);
    sd_pg_p_text(&p, sd_tombstone_reason_name(reason));
    sd_pg_p_text(&p, reason == SD_TOMBSTONE_MERGED ? merged_into : NULL);
    sd_pg_p_text(&p, origin);
    sd_pg_p_int(&p, now);
    int r =
        sd_pg_write_exec(sd_pg_writer(s), SLOT_TOMBSTONE_INSERT, SQL_TOMBSTONE_INSERT, &p, NULL);
    if (r < 0) {
        return r;
    }
    (void)sd_pg_seq_next(s);
    return 0;
}

/* Run a scoped statement with a fourth text parameter; rows changed or negative errno. */
static int exec_pair(struct pgconn *c, unsigned slot, const char *sql, int64_t tenant_id,
                     enum sd_env env, const char *a, const char *b)
{
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, a);
    sd_pg_p_text(&p, b);
    return sd_pg_write_exec(c, slot, sql, &p, NULL);
}

/* The customer record (source NULL: any one source) to delete: 1 and its seq, source (heap)
 * and profile id (0 none), 0 none, -ENOTUNIQ, negative errno. */
static int customer_find(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                         const char *source, int64_t *ret_seq, char **ret_source,
                         int64_t *ret_profile)
{
    struct pgconn *c = sd_pg_writer(s);
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, id);
    sd_pg_p_text(&p, source);
    PGresult *res = NULL;
    int r = sd_pg_write_exec(c, SLOT_CUSTOMER_FIND, SQL_CUSTOMER_FIND, &p, &res);
    if (r == 1) {
        *ret_seq = sd_pg_int64(res, 0, 0);
        *ret_source = sd_pg_strdup(res, 0, 1);
        *ret_profile = sd_pg_int64(res, 0, 2);
    } else if (r > 1) {
        r = -ENOTUNIQ;
    }
    PQclear(res);
    return r;
}

/* Event `id` (its row deleted a moment ago) merged into `into`: id and its aliases become
 * aliases of into's event, its sales count for that event. If into names no event, the
 * aliases go as for a plain delete. */
static int merge_event(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                       const char *into)
{
    struct pgconn *c = sd_pg_writer(s);
    struct sd_buf ref;
    sd_buf_init(&ref);
    int r = sd_pg_event_resolve(c, tenant_id, env, into, &ref);
    if (r == 0) {
        r = exec_scoped(c, SLOT_ALIASES_DELETE, SQL_ALIASES_DELETE, tenant_id, env, id);
    } else if (r == 1) {
        r = exec_pair(c, SLOT_ALIASES_REPOINT, SQL_ALIASES_REPOINT, tenant_id, env, id, ref.data);
        if (r >= 0) {
            r = alias_insert(s, tenant_id, env, id, ref.data);
        }
        if (r >= 0) {
            r = exec_pair(c, SLOT_SALES_REPOINT_EVENT, SQL_SALES_REPOINT_EVENT, tenant_id, env, id,
                          ref.data);
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
    struct pgconn *c = sd_pg_writer(s);
    int r = sd_pg_customer_exists(c, tenant_id, env, source, into);
    if (r <= 0) {
        return r;
    }
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, id);
    sd_pg_p_text(&p, source);
    PGresult *res = NULL;
    r = sd_pg_write_exec(c, SLOT_SALES_OF_CUSTOMER, SQL_SALES_OF_CUSTOMER, &p, &res);
    int n = r;
    r = r < 0 ? r : 0;
    for (int i = 0; i < n && r == 0; i++) {
        const char *inv = sd_pg_text(res, i, 0);
        char *doc = NULL;
        r = sd_pg_json_set(sd_pg_text(res, i, 1), "customer_id", into, &doc);
        if (r < 0) {
            r = doc_fail(r);
            break;
        }
        /* Nothing to take out of the facts: the merged record is deleted already, so its sales
         * count for nobody until they name the survivor. */
        sd_pg_params_init(&p);
        sd_pg_p_scope(&p, tenant_id, env, inv);
        sd_pg_p_text(&p, into);
        sd_pg_p_text(&p, doc);
        sd_pg_p_int(&p, s->seq + 1);
        sd_pg_p_int(&p, now);
        r = sd_pg_write_exec(c, SLOT_SALE_RECUSTOMER, SQL_SALE_RECUSTOMER, &p, NULL);
        free(doc);
        if (r >= 0) {
            (void)sd_pg_seq_next(s);
            r = sd_pg_facts_sale_in(c, tenant_id, env, inv);
        }
    }
    PQclear(res);
    return r;
}

static int event_delete(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id)
{
    return exec_scoped(sd_pg_writer(s), SLOT_EVENT_DELETE, SQL_EVENT_DELETE, tenant_id, env, id);
}

static int aliases_delete(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id)
{
    return exec_scoped(sd_pg_writer(s), SLOT_ALIASES_DELETE, SQL_ALIASES_DELETE, tenant_id, env,
                       id);
}

static int customer_delete(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t seq)
{
    struct pgconn *c = sd_pg_writer(s);
    int64_t facts_profile = 0;
    bool has_sales = false;
    int r = sd_pg_facts_record_get(c, tenant_id, env, seq, &facts_profile, &has_sales);
    if (r < 0) {
        return r;
    }
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, NULL);
    sd_pg_p_int(&p, seq);
    r = sd_pg_write_exec(c, SLOT_CUSTOMER_DELETE, SQL_CUSTOMER_DELETE, &p, NULL);
    if (r < 0) {
        return r;
    }
    return has_sales ? sd_pg_facts_profile(c, tenant_id, env, facts_profile) : 0;
}

static int sale_delete(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id)
{
    struct pgconn *c = sd_pg_writer(s);
    int r = sd_pg_facts_sale_out(c, tenant_id, env, id);
    return r < 0 ? r : exec_scoped(c, SLOT_SALE_DELETE, SQL_SALE_DELETE, tenant_id, env, id);
}

/* What deleting a record (store/write_plan.c) does on the writer. */
static const struct sd_delete_steps delete_steps = {
    .event_delete = event_delete,
    .aliases_delete = aliases_delete,
    .merge_event = merge_event,
    .customer_find = customer_find,
    .customer_delete = customer_delete,
    .member_gone = sd_pg_profile_member_gone,
    .merge_customer_sales = merge_customer_sales,
    .sale_delete = sale_delete,
    .tombstone_put = sd_pg_tombstone_put,
};

int sd_pg_delete_record(struct sd_store *s, int64_t tenant_id, enum sd_env env, enum sd_kind kind,
                        const char *id, const char *source, enum sd_tombstone_reason reason,
                        const char *merged_into, const char *origin)
{
    if (!sd_pg_env_ok(env) || !sd_pg_writer(s)) {
        return -EINVAL;
    }
    return sd_write_delete_record(s, &delete_steps, tenant_id, env, kind, id, source, reason,
                                  merged_into, origin);
}
