/* pg_read.c — the record reads of the PostgreSQL backend: idempotency lookups, the change feed
 * (records and tombstones in seq order), fetching and counting records, a customer by id, and
 * the import check (check_sale_refs). Any thread; each call borrows a pool connection. A call
 * that is one statement sees one snapshot by itself; the import check runs its lookups in one
 * REPEATABLE READ, READ ONLY transaction, so a whole file is checked against one snapshot.
 *
 * Documents come back byte for byte as the SQLite backend returns them: a customer's document
 * shows its source as json_set would put it, and a tombstone is written as SQLite's
 * json_object/json_patch writes it (pg_json.c), never through PostgreSQL's JSON functions,
 * which format differently. Text ordering is by bytes (COLLATE "C"), as SQLite orders text.
 * Statements live in slots 256..319; the import check uses the writer's own lookups
 * (pg_records.h), so it and apply_ingest agree on what exists. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "base/utf8.h"
#include "pg_internal.h"
#include "pg_json.h"
#include "pg_records.h"
#include "store/store.h"

#define PAGE_MAX 10000 /* list_records clamps its limit to this, as SQLite does */

enum {
    SLOT_IDEM_GET = 256,
    SLOT_LIST_EVENTS,
    SLOT_LIST_CUSTOMERS,
    SLOT_LIST_SALES,
    SLOT_GET_EVENT,
    SLOT_GET_CUSTOMER,
    SLOT_GET_SALE,
    SLOT_COUNT_EVENTS,
    SLOT_COUNT_CUSTOMERS,
    SLOT_COUNT_SALES,
    SLOT_CUSTOMER_SOURCES,
    SLOT_CUSTOMER_OF_SOURCE,
};

static const char SQL_IDEM_GET[] = "SELECT body_hash, status, response, created_usec"
                                   " FROM idempotency WHERE tenant_id = $1 AND env = $2"
                                   " AND idem_key = $3";
/* The change feed: live rows and tombstones of one kind, merged in seq order (each side is
 * read in seq order from its index, so the merge stops after LIMIT rows). Columns: seq, the
 * document (tombstones: the record's id), source, reason, merged_into, 1 for a tombstone. */
#define TOMBSTONES                                                                                 \
    " UNION ALL SELECT seq, record_id, source, reason, merged_into, 1 FROM tombstones"             \
    " WHERE tenant_id = $1 AND env = $2 AND seq > $3 AND kind = "
static const char SQL_LIST_EVENTS[] =
    "SELECT seq, doc, NULL::text, NULL::text, NULL::text, 0 FROM events WHERE tenant_id = $1"
    " AND env = $2 AND seq > $3" TOMBSTONES "0 ORDER BY 1 LIMIT $4";
static const char SQL_LIST_CUSTOMERS[] =
    "SELECT seq, doc, source, NULL::text, NULL::text, 0 FROM customers WHERE tenant_id = $1"
    " AND env = $2 AND seq > $3" TOMBSTONES "1 ORDER BY 1 LIMIT $4";
static const char SQL_LIST_SALES[] =
    "SELECT seq, doc, NULL::text, NULL::text, NULL::text, 0 FROM sales WHERE tenant_id = $1"
    " AND env = $2 AND seq > $3" TOMBSTONES "2 ORDER BY 1 LIMIT $4";
static const char SQL_GET_EVENT[] =
    "(SELECT doc FROM events WHERE tenant_id = $1 AND env = $2 AND event_id = $3)"
    " UNION ALL (SELECT e.doc FROM event_aliases a JOIN events e ON e.tenant_id = a.tenant_id"
    " AND e.env = a.env AND e.event_id = a.event_id WHERE a.tenant_id = $1 AND a.env = $2"
    " AND a.alias_id = $3) LIMIT 1";
/* One id may exist in several sources: the webhook's record first, then the oldest. */
static const char SQL_GET_CUSTOMER[] =
    "SELECT doc, source FROM customers WHERE tenant_id = $1 AND env = $2 AND customer_id = $3"
    " ORDER BY source <> 'webhook', seq LIMIT 1";
static const char SQL_GET_SALE[] = "SELECT doc FROM sales WHERE tenant_id = $1 AND env = $2"
                                   " AND invoice_number = $3";
static const char SQL_COUNT_EVENTS[] =
    "SELECT count(*) FROM events WHERE tenant_id = $1 AND env = $2";
static const char SQL_COUNT_CUSTOMERS[] =
    "SELECT count(*) FROM customers WHERE tenant_id = $1 AND env = $2";
static const char SQL_COUNT_SALES[] =
    "SELECT count(*) FROM sales WHERE tenant_id = $1 AND env = $2";
/* Every source holding the id; 101 rows tell "more than 100". */
static const char SQL_CUSTOMER_SOURCES[] =
    "SELECT source, doc FROM customers WHERE tenant_id = $1 AND env = $2 AND customer_id = $3"
    " ORDER BY source COLLATE \"C\" LIMIT 101";
static const char SQL_CUSTOMER_OF_SOURCE[] =
    "SELECT source, doc FROM customers WHERE tenant_id = $1 AND env = $2 AND customer_id = $3"
    " AND source = $4";

static const struct {
    unsigned slot;
    const char *sql;
} by_kind[3][3] = {
    /* list, get, count — in enum sd_kind order */
    {{SLOT_LIST_EVENTS, SQL_LIST_EVENTS},
     {SLOT_GET_EVENT, SQL_GET_EVENT},
     {SLOT_COUNT_EVENTS, SQL_COUNT_EVENTS}},
    {{SLOT_LIST_CUSTOMERS, SQL_LIST_CUSTOMERS},
     {SLOT_GET_CUSTOMER, SQL_GET_CUSTOMER},
     {SLOT_COUNT_CUSTOMERS, SQL_COUNT_CUSTOMERS}},
    {{SLOT_LIST_SALES, SQL_LIST_SALES},
     {SLOT_GET_SALE, SQL_GET_SALE},
     {SLOT_COUNT_SALES, SQL_COUNT_SALES}},
};

int sd_pg_pool_exec(struct sd_store *s, unsigned slot, const char *sql,
                    const struct sd_pg_params *p, PGresult **ret)
{
    struct pgconn *c = NULL;
    int r = sd_pg_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    r = sd_pg_exec(c, slot, sql, p, ret);
    sd_pg_pool_put(s, c);
    return r;
}

static bool kind_ok(enum sd_kind kind)
{
    return kind == SD_KIND_EVENT || kind == SD_KIND_CUSTOMER || kind == SD_KIND_SALE;
}

/* A customer's document with its source, as json_set(doc, '$.source', source) returns it. */
static int with_source(const char *doc, const char *source, char **ret)
{
    int r = sd_pg_json_set(doc, "source", source ? source : "", ret);
    if (r < 0) {
        sd_log(SD_LOG_ERROR, "stored customer document is not JSON", NULL);
        return -EIO;
    }
    return 0;
}

/* A tombstone as a feed entry: {"deleted":true,"id":…,"reason":…} with "source" and
 * "merged_into" appended when set, in SQLite's text. */
static char *tombstone_doc(const char *id, const char *reason, const char *source,
                           const char *merged_into)
{
    struct sd_buf b;
    sd_buf_init(&b);
    sd_buf_puts(&b, "{\"deleted\":true,\"id\":");
    sd_pg_json_string(&b, id ? id : "");
    sd_buf_puts(&b, ",\"reason\":");
    sd_pg_json_string(&b, reason ? reason : "");
    if (source) {
        sd_buf_puts(&b, ",\"source\":");
        sd_pg_json_string(&b, source);
    }
    if (merged_into) {
        sd_buf_puts(&b, ",\"merged_into\":");
        sd_pg_json_string(&b, merged_into);
    }
    sd_buf_puts(&b, "}");
    return sd_buf_steal(&b);
}

int sd_pg_idem_get(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *key,
                   struct sd_idem_entry *ret)
{
    if (!key || !ret || !sd_pg_env_ok(env)) {
        return -EINVAL;
    }
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, key);
    PGresult *res = NULL;
    int r = sd_pg_pool_exec(s, SLOT_IDEM_GET, SQL_IDEM_GET, &p, &res);
    if (r > 0) {
        const char *h = sd_pg_text(res, 0, 0);
        memset(ret->body_hash, 0, sizeof(ret->body_hash));
        if (h) {
            size_t hl = strlen(h);
            memcpy(ret->body_hash, h, hl < 64 ? hl : 64);
        }
        ret->status = (int)sd_pg_int64(res, 0, 1);
        ret->response = sd_pg_strdup(res, 0, 2);
        ret->created_usec = sd_pg_int64(res, 0, 3);
        r = 0;
    } else if (r == 0) {
        r = -ENOENT;
    }
    PQclear(res);
    return r;
}

int sd_pg_list_records(struct sd_store *s, enum sd_kind kind, int64_t tenant_id, enum sd_env env,
                       int64_t after_seq, size_t limit, struct sd_record_page *ret)
{
    if (!kind_ok(kind) || !sd_pg_env_ok(env) || !ret) {
        return -EINVAL;
    }
    if (limit > PAGE_MAX) {
        limit = PAGE_MAX;
    }
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, NULL);
    sd_pg_p_int(&p, after_seq);
    sd_pg_p_int(&p, (int64_t)limit + 1);
    PGresult *res = NULL;
    int r = sd_pg_pool_exec(s, by_kind[kind][0].slot, by_kind[kind][0].sql, &p, &res);
    if (r < 0) {
        return r;
    }
    struct sd_record_page page = {0};
    size_t rows = (size_t)r;
    if (rows > limit) {
        page.has_more = true;
        rows = limit;
    }
    r = 0;
    if (rows > 0) {
        page.docs = sd_calloc(rows, sizeof(*page.docs));
        page.seqs = sd_calloc(rows, sizeof(*page.seqs));
    }
    for (size_t i = 0; i < rows && r == 0; i++) {
        int row = (int)i;
        const char *text = sd_pg_text(res, row, 1);
        page.seqs[i] = sd_pg_int64(res, row, 0);
        if (sd_pg_int64(res, row, 5) != 0) {
            page.docs[i] = tombstone_doc(text, sd_pg_text(res, row, 3), sd_pg_text(res, row, 2),
                                         sd_pg_text(res, row, 4));
        } else if (kind == SD_KIND_CUSTOMER) {
            r = with_source(text, sd_pg_text(res, row, 2), &page.docs[i]);
        } else {
            page.docs[i] = sd_strdup(text ? text : "");
        }
        page.n = i + 1;
    }
    PQclear(res);
    if (r < 0) {
        sd_record_page_release(&page);
        return r;
    }
    *ret = page;
    return 0;
}

int sd_pg_get_record(struct sd_store *s, enum sd_kind kind, int64_t tenant_id, enum sd_env env,
                     const char *id, char **ret_doc)
{
    if (!kind_ok(kind) || !sd_pg_env_ok(env) || !id || !ret_doc) {
        return -EINVAL;
    }
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, id);
    PGresult *res = NULL;
    int r = sd_pg_pool_exec(s, by_kind[kind][1].slot, by_kind[kind][1].sql, &p, &res);
    if (r > 0) {
        const char *doc = sd_pg_text(res, 0, 0);
        if (kind == SD_KIND_CUSTOMER) {
            r = with_source(doc, sd_pg_text(res, 0, 1), ret_doc);
        } else {
            *ret_doc = sd_strdup(doc ? doc : "");
            r = 0;
        }
    } else if (r == 0) {
        r = -ENOENT;
    }
    PQclear(res);
    return r;
}

int sd_pg_count_records(struct sd_store *s, enum sd_kind kind, int64_t tenant_id, enum sd_env env,
                        int64_t *ret)
{
    if (!kind_ok(kind) || !sd_pg_env_ok(env) || !ret) {
        return -EINVAL;
    }
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, NULL);
    PGresult *res = NULL;
    int r = sd_pg_pool_exec(s, by_kind[kind][2].slot, by_kind[kind][2].sql, &p, &res);
    if (r > 0) {
        *ret = sd_pg_int64(res, 0, 0);
        r = 0;
    } else if (r == 0) {
        sd_log(SD_LOG_ERROR, "count returned no row", NULL);
        r = -EIO;
    }
    PQclear(res);
    return r;
}

int sd_pg_get_customer(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                       const char *source, char **ret_doc, char ***ret_sources, size_t *ret_n)
{
    if (!id || !sd_pg_env_ok(env) || !ret_doc) {
        return -EINVAL;
    }
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, id);
    PGresult *res = NULL;
    int r;
    if (source) {
        /* One source: the whole unique key, one index probe. */
        sd_pg_p_text(&p, source);
        r = sd_pg_pool_exec(s, SLOT_CUSTOMER_OF_SOURCE, SQL_CUSTOMER_OF_SOURCE, &p, &res);
    } else {
        r = sd_pg_pool_exec(s, SLOT_CUSTOMER_SOURCES, SQL_CUSTOMER_SOURCES, &p, &res);
    }
    if (r < 0) {
        return r;
    }
    size_t n = (size_t)r < 100 ? (size_t)r : 100;
    if (n == 0) {
        r = -ENOENT;
    } else if (n == 1) {
        r = with_source(sd_pg_text(res, 0, 1), sd_pg_text(res, 0, 0), ret_doc);
    } else if (!ret_sources || !ret_n) {
        r = -ENOTUNIQ;
    } else {
        char **sources = sd_calloc(n, sizeof(*sources));
        for (size_t i = 0; i < n; i++) {
            sources[i] = sd_pg_strdup(res, (int)i, 0);
        }
        *ret_sources = sources;
        *ret_n = n;
        r = -ENOTUNIQ;
    }
    PQclear(res);
    return r;
}

/* ---- the import check ----------------------------------------------------------------------- */

/* Events a batch names, looked up once each (a file names a few hundred). */
#define EVENT_MEMO 256

struct import_check {
    int64_t tenant_id;
    enum sd_env env;
    const struct sd_batch *b;
    /* (re)set by each attempt of the transaction */
    struct sd_issues errors;
    int n_err;
    bool needs_writer;
    bool caller_needs_writer;        /* already set: no need to look at stored documents */
    const char *memo_id[EVENT_MEMO]; /* borrowed from the batch */
    bool memo_exists[EVENT_MEMO];
    size_t n_memo;
};

/* 1 if the event (or an alias of it) exists, 0 if not, negative errno. */
static int event_exists(struct pgconn *c, struct import_check *x, const char *event_id)
{
    for (size_t i = 0; i < x->n_memo; i++) {
        if (strcmp(x->memo_id[i], event_id) == 0) {
            return x->memo_exists[i];
        }
    }
    int r = sd_pg_event_resolve(c, x->tenant_id, x->env, event_id, NULL);
    if (r >= 0 && x->n_memo < EVENT_MEMO) {
        x->memo_id[x->n_memo] = event_id;
        x->memo_exists[x->n_memo++] = r == 1;
    }
    return r;
}

static int import_check_tx(struct pgconn *c, void *arg)
{
    struct import_check *x = arg;
    size_t limit = x->errors.limit;
    sd_issues_release(&x->errors);
    sd_issues_init(&x->errors, limit);
    x->n_err = 0;
    x->needs_writer = x->caller_needs_writer;
    x->n_memo = 0;
    const struct sd_batch *b = x->b;
    const char *source = b->source ? b->source : SD_SOURCE_WEBHOOK;
    const char *envn = sd_env_name(x->env);
    const char *last_customer = NULL;
    struct sd_buf doc;
    sd_buf_init(&doc);
    int r = 0;
    for (size_t i = 0; i < b->n_sales && r >= 0; i++) {
        const struct sd_sale_rec *sale = &b->sales[i];
        char ptr[64];
        r = event_exists(c, x, sale->event_id);
        if (r == 0) {
            sd_utf8_snprintf(ptr, sizeof(ptr), "/sales/%zu/event_id", sale->index);
            sd_issues_add(&x->errors, ptr, "event '%s' does not exist in %s", sale->event_id, envn);
            x->n_err++;
        }
        const char *cid = sale->customer_id;
        if (r >= 0 && strcmp(cid, SD_ANON_CUSTOMER) != 0 &&
            !(last_customer && strcmp(last_customer, cid) == 0)) {
            r = sd_pg_customer_exists(c, x->tenant_id, x->env, source, cid);
            if (r == 0) {
                sd_utf8_snprintf(ptr, sizeof(ptr), "/sales/%zu/customer_id", sale->index);
                sd_issues_add(&x->errors, ptr, "customer '%s' does not exist in %s", cid, envn);
                x->n_err++;
            } else if (r == 1) {
                last_customer = cid;
            }
        }
        if (r >= 0 && !x->needs_writer) {
            if (sale->refund_of) {
                x->needs_writer = true;
            } else {
                /* Stored with another document: the lifecycle rules judge the change. */
                r = sd_pg_sale_doc(c, x->tenant_id, x->env, sale->invoice_number, &doc);
                if (r == 1 && !(doc.data && sale->doc && strcmp(doc.data, sale->doc) == 0)) {
                    x->needs_writer = true;
                }
            }
        }
    }
    sd_buf_release(&doc);
    return r < 0 ? r : 0;
}

int sd_pg_check_sale_refs(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                          const struct sd_batch *b, struct sd_issues *errors,
                          bool *ret_needs_writer)
{
    if (!b || !errors || !ret_needs_writer || !sd_pg_env_ok(env)) {
        return -EINVAL;
    }
    if (b->n_sales == 0) {
        return 0;
    }
    struct import_check *x = sd_calloc(1, sizeof(*x));
    x->tenant_id = tenant_id;
    x->env = env;
    x->b = b;
    x->caller_needs_writer = *ret_needs_writer;
    sd_issues_init(&x->errors, errors->limit);
    int r = sd_pg_tx_run(s, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", false,
                         import_check_tx, x);
    if (r >= 0) {
        for (size_t i = 0; i < x->errors.n; i++) {
            sd_issues_add(errors, x->errors.items[i].pointer, "%s", x->errors.items[i].message);
        }
        /* Issues past the list's limit still count, as if added directly. */
        errors->total += x->errors.total - x->errors.n;
        if (x->needs_writer) {
            *ret_needs_writer = true;
        }
        r = x->n_err;
    }
    sd_issues_release(&x->errors);
    free(x);
    return r;
}
