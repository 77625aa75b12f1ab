/* pg_profiles.c — the profiles part of store/audience.h on PostgreSQL: the link rule (control
 * plane), profile reads and lookups, is_suppressed, and the operator's write-path operations
 * split, suppress and erase, with the SQLite backend's rules and results (sqlite_profiles.c).
 * Linking at ingest and a record leaving its profile are pg_link.c's; split reuses its
 * building blocks, so the purchase facts (pg_facts.c) follow every move.
 *
 * Paths: the link rule runs on a pool connection (a change in an sd_pg_tx_run transaction that
 * bumps the settings version); reads borrow a pool connection, a profile and its members read
 * in one REPEATABLE READ transaction (one snapshot); split, suppress and erase run on the
 * writer's connection inside write_begin … commit, so the seq numbers an erasure hands out (its
 * anonymised sales, its tombstones) come from the write path's counter under its lock.
 * Statements live in slots 360..383.
 *
 * Where PostgreSQL differs from SQLite, and why:
 *  - SQLite writes the highest seq an erasure handed out to meta('seq_floor'), because it
 *    derives the next seq from the rows left; here meta('seq') is a counter that never goes
 *    back, so there is nothing to write.
 *  - An anonymised sale's document is json_set(doc, '$.customer_id', 'ANON') as SQLite renders
 *    it, made in C (pg_json.c): jsonb would reorder members and re-print numbers.
 *  - A member's first_name and last_name are json_extract's text of the stored document's
 *    members; the validator lets only strings (or null) through, so they are read with jansson.
 *  - A suppression request is applied in two statements over arrays (the hashes, the e-mail
 *    keys) rather than two per address: the same entries, flags and counts (a profile is
 *    counted once, the first time its flag goes from 0 to 1; a key twice in one request is
 *    added once), in a fraction of the round trips. An empty key fails the request before
 *    anything is written (SQLite fails at that key; the writer rolls back either way). */
#include <errno.h>
#include <jansson.h>
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
#include "store/profile_rules.h"
#include "pg_profiles.h"
#include "pg_records.h"
#include "store/audience.h"

#define SNAPSHOT_READ "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"

enum {
    S_RULE_GET = 360,
    S_RULE_SET,
    S_SUP_HAS,
    S_PROFILE_GET,
    S_PROFILE_MEMBERS,
    S_FIND_EMAIL,
    S_FIND_SOURCE,
    S_SUP_INSERT_MANY,
    S_SUP_MARK_MANY,
    S_SUP_INSERT,
    S_SUP_MARK,
    S_REC_FIND,
    S_MEMBERS,
    S_SALES_OF,
    S_SALE_ANON,
    S_REC_DELETE,
    S_PROFILE_DELETE,
    S_IDEM_PURGE_TEXT,
    S_ERASURE_INSERT,
    S_END
};
_Static_assert(S_END <= 384, "the profiles part owns slots 360..383");

static const char SQL_RULE_GET[] = "SELECT link_rule FROM tenants WHERE client_id = $1";
static const char SQL_RULE_SET[] = "UPDATE tenants SET link_rule = $2 WHERE client_id = $1";
static const char SQL_SUP_HAS[] = "SELECT 1 FROM suppression WHERE tenant_id = $1 AND env = $2"
                                  " AND email_hash = $3";
static const char SQL_PROFILE_GET[] =
    "SELECT id, opt_out, suppressed, created_usec, updated_usec FROM profiles"
    " WHERE tenant_id = $1 AND env = $2 AND id = $3";
static const char SQL_PROFILE_MEMBERS[] =
    "SELECT source, customer_id, email_key, ad_opt_out, pinned, doc FROM customers"
    " WHERE profile_id = $3 AND tenant_id = $1 AND env = $2 ORDER BY seq";
static const char SQL_FIND_EMAIL[] =
    "SELECT DISTINCT profile_id FROM customers WHERE tenant_id = $1 AND env = $2"
    " AND email_key = $3 AND profile_id IS NOT NULL ORDER BY profile_id LIMIT $4";
static const char SQL_FIND_SOURCE[] =
    "SELECT DISTINCT profile_id FROM customers WHERE tenant_id = $1 AND env = $2"
    " AND customer_id = $3 AND ($4::text IS NULL OR source = $4) AND profile_id IS NOT NULL"
    " ORDER BY profile_id LIMIT $5";
/* An operator's suppression: reason "suppressed", which never downgrades an erasure, so an
 * address already on the list (for either reason) is left as it is; the rows inserted are the
 * addresses added. */
static const char SQL_SUP_INSERT_MANY[] =
    "INSERT INTO suppression (tenant_id, env, email_hash, reason, created_usec)"
    " SELECT $1::bigint, $2::smallint, h, 'suppressed', $4::bigint"
    " FROM (SELECT DISTINCT h FROM unnest($3::text[]) AS x(h)) d"
    " ON CONFLICT (tenant_id, env, email_hash) DO NOTHING";
static const char SQL_SUP_MARK_MANY[] =
    "UPDATE profiles SET suppressed = 1, updated_usec = $4 WHERE tenant_id = $1 AND env = $2"
    " AND suppressed = 0 AND id IN (SELECT profile_id FROM customers WHERE tenant_id = $1"
    " AND env = $2 AND email_key = ANY ($3::text[]))";
/* An erasure marks an existing suppression as erased. */
static const char SQL_SUP_INSERT[] =
    "INSERT INTO suppression (tenant_id, env, email_hash, reason, created_usec)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, env, email_hash)"
    " DO UPDATE SET reason = excluded.reason"
    " WHERE excluded.reason = 'erased' AND suppression.reason <> 'erased'";
static const char SQL_SUP_MARK[] =
    "UPDATE profiles SET suppressed = 1, updated_usec = $4 WHERE tenant_id = $1 AND env = $2"
    " AND suppressed = 0 AND id IN (SELECT profile_id FROM customers WHERE tenant_id = $1"
    " AND env = $2 AND email_key = $3)";
static const char SQL_REC_FIND[] =
    "SELECT seq, source, profile_id, email_key FROM customers WHERE tenant_id = $1 AND env = $2"
    " AND customer_id = $3 ORDER BY seq";
static const char SQL_MEMBERS[] =
    "SELECT seq, source, customer_id, email_key FROM customers WHERE profile_id = $3"
    " AND tenant_id = $1 AND env = $2 ORDER BY seq";
/* In the order SQLite reads them (through sales_customer, then by rowid), so the new seqs of
 * the anonymised sales follow the same order on both backends. */
static const char SQL_SALES_OF[] =
    "SELECT invoice_number, doc FROM sales WHERE tenant_id = $1 AND env = $2 AND source = $3"
    " AND customer_id = $4 ORDER BY net_quantity, purchase_datetime COLLATE \"C\", seq";
/* The sale stays (revenue, attendance), its buyer becomes anonymous — in the column the
 * segments query and in the document the read API returns. */
static const char SQL_SALE_ANON[] =
    "UPDATE sales SET customer_id = 'ANON', doc = $4, seq = $5, updated_usec = $6"
    " WHERE tenant_id = $1 AND env = $2 AND invoice_number = $3";
static const char SQL_REC_DELETE[] =
    "DELETE FROM customers WHERE tenant_id = $1 AND env = $2 AND seq = $3";
static const char SQL_PROFILE_DELETE[] =
    "DELETE FROM profiles WHERE tenant_id = $1 AND env = $2 AND id = $3";
/* Stored ingest answers quote ids in messages ("customer 'C1' does not exist"). */
static const char SQL_IDEM_PURGE_TEXT[] =
    "DELETE FROM idempotency WHERE tenant_id = $1 AND env = $2 AND strpos(response, $3) > 0";
static const char SQL_ERASURE_INSERT[] =
    "INSERT INTO erasures (tenant_id, env, profile_id, records_erased, sales_anonymized,"
    " created_usec) VALUES ($1, $2, $3, $4, $5, $6)";

/* Constraint failures here are backend failures (nothing is keyed by input). */
static int exec(struct pgconn *c, unsigned slot, const char *sql, const struct sd_pg_params *p,
                PGresult **ret)
{
    return sd_pg_exec_strict(c, "constraint violated in the profiles", slot, sql, p, ret);
}

static void email_hash(const char *email_key, char out[65])
{
    sd_sha256_hex(email_key, strlen(email_key), out);
}

/* ---- control plane: the link rule ------------------------------------------------------------ */

static int link_rule_get(struct sd_store *s, const char *client_id, enum sd_link_rule *ret)
{
    if (!client_id || !ret) {
        return -EINVAL;
    }
    struct pgconn *c = NULL;
    int r = sd_pg_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_text(&p, client_id);
    PGresult *res = NULL;
    r = exec(c, S_RULE_GET, SQL_RULE_GET, &p, &res);
    if (r == 0) {
        r = -ENOENT;
    } else if (r > 0) {
        r = 0;
        if (sd_link_rule_parse(sd_pg_text(res, 0, 0), ret) < 0) {
            /* Only this file writes the column, through sd_link_rule_parse'd values. */
            sd_log(SD_LOG_WARN, "unknown link rule stored; using 'email'", NULL);
            *ret = SD_LINK_EMAIL;
        }
    }
    PQclear(res);
    sd_pg_pool_put(s, c);
    return r;
}

struct rule_args {
    const char *client_id;
    enum sd_link_rule rule;
};

static int tx_rule_set(struct pgconn *c, void *arg)
{
    const struct rule_args *a = arg;
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_text(&p, a->client_id);
    sd_pg_p_text(&p, sd_link_rule_name(a->rule));
    int r = exec(c, S_RULE_SET, SQL_RULE_SET, &p, NULL);
    return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

static int link_rule_set(struct sd_store *s, const char *client_id, enum sd_link_rule rule)
{
    if (!client_id || (unsigned)rule > SD_LINK_NONE) {
        return -EINVAL;
    }
    struct rule_args a = {.client_id = client_id, .rule = rule};
    return sd_pg_tx_run(s, NULL, true, tx_rule_set, &a);
}

/* ---- read path ------------------------------------------------------------------------------- */

/* json_extract(doc, '$.<key>') for a member the validator lets through only as a string or
 * null: its text (heap), or NULL. */
static char *doc_string(const json_t *doc, const char *key)
{
    const char *v = json_string_value(json_object_get(doc, key));
    return v ? sd_strdup(v) : NULL;
}

static int read_members(struct pgconn *c, int64_t tenant_id, enum sd_env env, struct sd_profile *p)
{
    struct sd_pg_params prm;
    sd_pg_p_scope_id(&prm, tenant_id, env, p->id);
    PGresult *res = NULL;
    int n = exec(c, S_PROFILE_MEMBERS, SQL_PROFILE_MEMBERS, &prm, &res);
    if (n < 0) {
        return n;
    }
    p->members = n ? sd_calloc((size_t)n, sizeof(*p->members)) : NULL;
    for (int i = 0; i < n; i++) {
        const char *doc = sd_pg_text(res, i, 5);
        json_t *j = doc ? json_loads(doc, 0, NULL) : NULL;
        p->members[i] = (struct sd_profile_member){
            .source = sd_pg_strdup(res, i, 0),
            .customer_id = sd_pg_strdup(res, i, 1),
            .email = sd_pg_strdup(res, i, 2),
            .first_name = doc_string(j, "first_name"),
            .last_name = doc_string(j, "last_name"),
            .ad_opt_out = sd_pg_isnull(res, i, 3) ? -1 : (sd_pg_int64(res, i, 3) != 0 ? 1 : 0),
            .pinned = sd_pg_int64(res, i, 4) != 0,
            .doc = sd_pg_strdup(res, i, 5),
        };
        json_decref(j);
    }
    p->n_members = (size_t)n;
    PQclear(res);
    return 0;
}

/* One profile and its members, on connection c (inside the caller's read transaction). */
static int read_profile(struct pgconn *c, int64_t tenant_id, enum sd_env env, int64_t id,
                        struct sd_profile *ret)
{
    struct sd_pg_params prm;
    sd_pg_p_scope_id(&prm, tenant_id, env, id);
    PGresult *res = NULL;
    int r = exec(c, S_PROFILE_GET, SQL_PROFILE_GET, &prm, &res);
    if (r <= 0) {
        PQclear(res);
        return r == 0 ? -ENOENT : r;
    }
    struct sd_profile p = {
        .id = sd_pg_int64(res, 0, 0),
        .opt_out = sd_pg_int64(res, 0, 1) != 0,
        .suppressed = sd_pg_int64(res, 0, 2) != 0,
        .created_usec = sd_pg_int64(res, 0, 3),
        .updated_usec = sd_pg_int64(res, 0, 4),
    };
    PQclear(res);
    r = read_members(c, tenant_id, env, &p);
    if (r < 0) {
        sd_profile_release(&p);
        return r;
    }
    *ret = p;
    return 0;
}

struct get_args {
    int64_t tenant_id;
    enum sd_env env;
    int64_t id;
    struct sd_profile p;
    bool have;
};

static int tx_get(struct pgconn *c, void *arg)
{
    struct get_args *a = arg;
    if (a->have) { /* a retry: the first run's answer is not the one committed */
        sd_profile_release(&a->p);
        a->have = false;
    }
    a->p = (struct sd_profile){0};
    int r = read_profile(c, a->tenant_id, a->env, a->id, &a->p);
    a->have = r == 0;
    return r;
}

static int profile_get(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t profile_id,
                       struct sd_profile *ret)
{
    if (!ret || !sd_pg_env_ok(env)) {
        return -EINVAL;
    }
    struct get_args a = {.tenant_id = tenant_id, .env = env, .id = profile_id};
    int r = sd_pg_tx_run(s, SNAPSHOT_READ, false, tx_get, &a);
    if (r < 0) {
        if (a.have) {
            sd_profile_release(&a.p);
        }
        return r;
    }
    *ret = a.p;
    return 0;
}

struct find_args {
    int64_t tenant_id;
    enum sd_env env;
    bool by_email;
    const char *key;
    const char *source;
    struct sd_profile *v;
    size_t n;
};

/* The profiles whose ids a lookup returns, each read whole, inside one snapshot. */
static int tx_find(struct pgconn *c, void *arg)
{
    struct find_args *a = arg;
    sd_profiles_free(a->v, a->n); /* a retry: start again */
    a->v = NULL;
    a->n = 0;
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, a->tenant_id, a->env, a->key);
    PGresult *res = NULL;
    int n;
    if (a->by_email) {
        sd_pg_p_int(&p, SD_PROFILES_FIND_MAX);
        n = exec(c, S_FIND_EMAIL, SQL_FIND_EMAIL, &p, &res);
    } else {
        sd_pg_p_text(&p, a->source);
        sd_pg_p_int(&p, SD_PROFILES_FIND_MAX);
        n = exec(c, S_FIND_SOURCE, SQL_FIND_SOURCE, &p, &res);
    }
    if (n < 0) {
        return n;
    }
    int64_t ids[SD_PROFILES_FIND_MAX];
    size_t n_ids = 0;
    for (int i = 0; i < n && n_ids < SD_PROFILES_FIND_MAX; i++) {
        ids[n_ids++] = sd_pg_int64(res, i, 0);
    }
    PQclear(res);
    struct sd_profile *v = n_ids ? sd_calloc(n_ids, sizeof(*v)) : NULL;
    size_t got = 0;
    for (size_t i = 0; i < n_ids; i++) {
        int r = read_profile(c, a->tenant_id, a->env, ids[i], &v[got]);
        if (r == -ENOENT) {
            continue; /* a member pointing nowhere; not expected inside one snapshot */
        }
        if (r < 0) {
            sd_profiles_free(v, got);
            return r;
        }
        got++;
    }
    if (got == 0) {
        free(v);
        v = NULL;
    }
    a->v = v;
    a->n = got;
    return 0;
}

static int find_common(struct sd_store *s, struct find_args *a, struct sd_profile **ret,
                       size_t *ret_n)
{
    int r = sd_pg_tx_run(s, SNAPSHOT_READ, false, tx_find, a);
    if (r < 0) {
        sd_profiles_free(a->v, a->n);
        return r;
    }
    *ret = a->v;
    *ret_n = a->n;
    return 0;
}

static int find_by_email(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                         const char *email_key, struct sd_profile **ret, size_t *ret_n)
{
    if (!email_key || !ret || !ret_n || !sd_pg_env_ok(env)) {
        return -EINVAL;
    }
    struct find_args a = {.tenant_id = tenant_id, .env = env, .by_email = true, .key = email_key};
    return find_common(s, &a, ret, ret_n);
}

static int find_by_source(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                          const char *source, const char *customer_id, struct sd_profile **ret,
                          size_t *ret_n)
{
    if (!customer_id || !ret || !ret_n || !sd_pg_env_ok(env)) {
        return -EINVAL;
    }
    struct find_args a = {.tenant_id = tenant_id, .env = env, .key = customer_id, .source = source};
    return find_common(s, &a, ret, ret_n);
}

static int is_suppressed(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                         const char *email_key, bool *ret)
{
    if (!email_key || !ret || !sd_pg_env_ok(env)) {
        return -EINVAL;
    }
    struct pgconn *c = NULL;
    int r = sd_pg_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    char hex[65];
    email_hash(email_key, hex);
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, hex);
    r = exec(c, S_SUP_HAS, SQL_SUP_HAS, &p, NULL);
    sd_pg_pool_put(s, c);
    if (r < 0) {
        return r;
    }
    *ret = r > 0;
    return 0;
}

/* ---- write path: split ----------------------------------------------------------------------- */

static int split(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t profile_id,
                 const char *source, const char *customer_id, int64_t *ret_new_id)
{
    if (!source || !customer_id || !sd_pg_env_ok(env) || !sd_pg_writer(s)) {
        return -EINVAL;
    }
    return sd_pg_profile_split(s, tenant_id, env, profile_id, source, customer_id, ret_new_id);
}

/* ---- write path: suppress -------------------------------------------------------------------- */

/* A PostgreSQL text array literal ({"a","b"}) of n texts, every element quoted. */
static char *text_array(const char *const *v, size_t n)
{
    struct sd_buf b;
    sd_buf_init(&b);
    sd_buf_puts(&b, "{");
    for (size_t i = 0; i < n; i++) {
        sd_buf_puts(&b, i ? ",\"" : "\"");
        for (const char *p = v[i]; *p; p++) {
            if (*p == '"' || *p == '\\') {
                sd_buf_append(&b, "\\", 1);
            }
            sd_buf_append(&b, p, 1);
        }
        sd_buf_puts(&b, "\"");
    }
    sd_buf_puts(&b, "}");
    return sd_buf_steal(&b);
}

static int suppress(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                    const char *const *email_keys, size_t n, struct sd_suppress_result *ret)
{
    struct pgconn *c = sd_pg_writer(s);
    if ((n && !email_keys) || !sd_pg_env_ok(env) || !c) {
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!email_keys[i] || !*email_keys[i]) {
            return -EINVAL;
        }
    }
    struct sd_suppress_result res = {0};
    if (n == 0) {
        if (ret) {
            *ret = res;
        }
        return 0;
    }
    int64_t now = sd_now_usec();
    char(*hex)[65] = sd_calloc(n, sizeof(*hex));
    const char **hp = sd_calloc(n, sizeof(*hp));
    for (size_t i = 0; i < n; i++) {
        email_hash(email_keys[i], hex[i]);
        hp[i] = hex[i];
    }
    char *hashes = text_array(hp, n);
    char *keys = text_array(email_keys, n);
    free(hp);
    free(hex);
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, hashes);
    sd_pg_p_int(&p, now);
    int r = exec(c, S_SUP_INSERT_MANY, SQL_SUP_INSERT_MANY, &p, NULL);
    if (r >= 0) {
        res.added = (size_t)r;
        sd_pg_params_init(&p);
        sd_pg_p_scope(&p, tenant_id, env, keys);
        sd_pg_p_int(&p, now);
        r = exec(c, S_SUP_MARK_MANY, SQL_SUP_MARK_MANY, &p, NULL);
    }
    free(hashes);
    free(keys);
    if (r < 0) {
        return r;
    }
    res.profiles_suppressed = (size_t)r;
    if (ret) {
        *ret = res;
    }
    return 0;
}

/* ---- write path: erase ----------------------------------------------------------------------- */

/* The record to erase: 1 found (its member row and profile id), 0 none, -ENOTUNIQ, or a
 * negative errno. */
static int erase_find(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *source,
                      const char *customer_id, struct sd_erase_member *ret, int64_t *ret_profile)
{
    struct pgconn *c = sd_pg_writer(s);
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, customer_id);
    PGresult *res = NULL;
    int n = exec(c, S_REC_FIND, SQL_REC_FIND, &p, &res);
    if (n < 0) {
        return n;
    }
    int found = 0, at = -1;
    for (int i = 0; i < n; i++) {
        const char *src = sd_pg_text(res, i, 1);
        if (source && (!src || strcmp(src, source) != 0)) {
            continue;
        }
        if (found) {
            found = -ENOTUNIQ; /* only reachable with source == NULL */
            break;
        }
        found = 1;
        at = i;
    }
    if (found == 1) {
        *ret = (struct sd_erase_member){
            .seq = sd_pg_int64(res, at, 0),
            .source = sd_pg_strdup(res, at, 1),
            .customer_id = sd_strdup(customer_id),
            .email_key = sd_pg_strdup(res, at, 3),
        };
        *ret_profile = sd_pg_int64(res, at, 2);
    }
    PQclear(res);
    return found;
}

static int load_members(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t profile_id,
                        struct sd_erase_member **ret, size_t *ret_n)
{
    struct pgconn *c = sd_pg_writer(s);
    struct sd_pg_params p;
    sd_pg_p_scope_id(&p, tenant_id, env, profile_id);
    PGresult *res = NULL;
    int n = exec(c, S_MEMBERS, SQL_MEMBERS, &p, &res);
    if (n < 0) {
        return n;
    }
    struct sd_erase_member *v = n ? sd_calloc((size_t)n, sizeof(*v)) : NULL;
    for (int i = 0; i < n; i++) {
        v[i] = (struct sd_erase_member){
            .seq = sd_pg_int64(res, i, 0),
            .source = sd_pg_strdup(res, i, 1),
            .customer_id = sd_pg_strdup(res, i, 2),
            .email_key = sd_pg_strdup(res, i, 3),
        };
    }
    PQclear(res);
    *ret = v;
    *ret_n = (size_t)n;
    return 0;
}

/* Re-point every sale of (source, customer_id) to ANON, one new seq each. */
static int anonymize_sales(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const struct sd_erase_member *m, int64_t now, int64_t *count)
{
    struct pgconn *c = sd_pg_writer(s);
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, NULL);
    sd_pg_p_text(&p, m->source);
    sd_pg_p_text(&p, m->customer_id);
    PGresult *res = NULL;
    int n = exec(c, S_SALES_OF, SQL_SALES_OF, &p, &res);
    if (n < 0) {
        return n;
    }
    int r = 0;
    for (int i = 0; i < n && r == 0; i++) {
        const char *inv = sd_pg_text(res, i, 0);
        char *doc = NULL;
        if (sd_pg_json_set(sd_pg_text(res, i, 1), "customer_id", "ANON", &doc) < 0) {
            sd_log(SD_LOG_ERROR, "stored sale document is not JSON", NULL);
            r = -EIO;
            break;
        }
        /* an ANON sale counts for nobody: only taking it out of the facts is left */
        r = sd_pg_facts_sale_out(c, tenant_id, env, inv);
        if (r == 0) {
            sd_pg_params_init(&p);
            sd_pg_p_scope(&p, tenant_id, env, inv);
            sd_pg_p_text(&p, doc);
            sd_pg_p_int(&p, s->seq + 1);
            sd_pg_p_int(&p, now);
            r = exec(c, S_SALE_ANON, SQL_SALE_ANON, &p, NULL);
            if (r >= 0) {
                (void)sd_pg_seq_next(s);
                (*count)++;
                r = 0;
            }
        }
        free(doc);
    }
    PQclear(res);
    return r;
}

/* Delete the stored idempotent answers of tenant/env that contain needle. */
static int purge_answers(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *needle,
                         int64_t *count)
{
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, needle);
    int r = exec(sd_pg_writer(s), S_IDEM_PURGE_TEXT, SQL_IDEM_PURGE_TEXT, &p, NULL);
    if (r < 0) {
        return r;
    }
    *count += r;
    return 0;
}

static int run_scoped_id(struct pgconn *c, unsigned slot, const char *sql, int64_t tenant_id,
                         enum sd_env env, int64_t v)
{
    struct sd_pg_params p;
    sd_pg_p_scope_id(&p, tenant_id, env, v);
    int r = exec(c, slot, sql, &p, NULL);
    return r < 0 ? r : 0;
}

/* Hash one address onto the list as erased and suppress the other profiles using it. */
static int erase_address(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *email,
                         int64_t now)
{
    struct pgconn *c = sd_pg_writer(s);
    char hex[65];
    email_hash(email, hex);
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, hex);
    sd_pg_p_text(&p, "erased");
    sd_pg_p_int(&p, now);
    int r = exec(c, S_SUP_INSERT, SQL_SUP_INSERT, &p, NULL);
    if (r < 0) {
        return r;
    }
    /* Others sharing the address (a family, under email_and_last_name) are kept out of pushes
     * too: the address itself is now on the list. */
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, email);
    sd_pg_p_int(&p, now);
    r = exec(c, S_SUP_MARK, SQL_SUP_MARK, &p, NULL);
    return r < 0 ? r : 0;
}

static int record_delete(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t seq)
{
    return run_scoped_id(sd_pg_writer(s), S_REC_DELETE, SQL_REC_DELETE, tenant_id, env, seq);
}

static int profile_delete(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                          int64_t profile_id)
{
    return run_scoped_id(sd_pg_writer(s), S_PROFILE_DELETE, SQL_PROFILE_DELETE, tenant_id, env,
                         profile_id);
}

static int erasure_log(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t profile_id,
                       int64_t records, int64_t sales, int64_t now)
{
    struct sd_pg_params p;
    sd_pg_p_scope_id(&p, tenant_id, env, profile_id);
    sd_pg_p_int(&p, records);
    sd_pg_p_int(&p, sales);
    sd_pg_p_int(&p, now);
    int r = exec(sd_pg_writer(s), S_ERASURE_INSERT, SQL_ERASURE_INSERT, &p, NULL);
    return r < 0 ? r : 0;
}

/* What erasure (store/profile_rules.c) does on the writer. */
static const struct sd_erase_steps erase_steps = {
    .find = erase_find,
    .members = load_members,
    .anonymize_sales = anonymize_sales,
    .record_delete = record_delete,
    .tombstone_put = sd_pg_tombstone_put,
    .purge_answers = purge_answers,
    .address_erased = erase_address,
    .erasure_log = erasure_log,
    .remove = profile_delete,
};

static int erase(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *source,
                 const char *customer_id, struct sd_erasure_result *ret)
{
    if (!customer_id || !sd_pg_env_ok(env) || !sd_pg_writer(s)) {
        return -EINVAL;
    }
    return sd_profile_erase(s, &erase_steps, tenant_id, env, source, customer_id, ret);
}

const struct sd_store_profile_ops sd_pg_profile_ops = {
    .link_rule_get = link_rule_get,
    .link_rule_set = link_rule_set,
    .get = profile_get,
    .find_by_email = find_by_email,
    .find_by_source = find_by_source,
    .is_suppressed = is_suppressed,
    .split = split,
    .suppress = suppress,
    .erase = erase,
};
