/* sqlite_profiles.c — the SQLite side of store/audience.h's profiles part (issue #4): linking
 * source records into profiles at ingest, profile reads and lookups, split, the suppression list
 * and GDPR erasure. See 0003_audiences.sql for the tables.
 *
 * Paths: linking, split, suppress and erase run on the `writer` connection inside the writer's
 * transaction (profiles and records change only there); reads use the pool, each inside one
 * read transaction so a profile and its members come from one snapshot; the link rule is
 * control plane (`cp`, control.db). Statements live in extra slots 0..31 of each connection.
 *
 * Invariants kept here:
 *  - a record's profile_id, once set, changes only by an explicit split (or disappears with the
 *    record at erasure) — never because of what a source sends;
 *  - profiles.opt_out / suppressed are recomputed from all members whenever one changes, so a
 *    `false` from one source never clears another source's `true`;
 *  - the suppression list holds SHA-256 hex of e-mail keys only; SQLite has no SHA-256, so
 *    hashes are computed here, and skipped entirely while a tenant's list is empty (the usual
 *    case, which keeps ingest fast);
 *  - an erasure deletes rows that may carry the store's highest seq; that number is written to
 *    meta('seq_floor') so write_begin never hands it out again (a change cursor that saw it
 *    would otherwise skip the next record). */
#include <errno.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "sqlite_internal.h"
#include "sqlite_profiles.h"
#include "store/audience.h"
#include "store/profile_rules.h"

#define SLOT_BASE 0u

enum {
    P_REC_GET,
    P_RULE_GET,
    P_SUP_ANY,
    P_SUP_HAS,
    P_BY_KEY,
    P_PROFILE_INSERT,
    P_REC_SET_PROFILE,
    P_MEMBER_FLAGS,
    P_PROFILE_FLAGS,
    P_SUP_INSERT,
    P_SUP_MARK,
    P_REC_FIND,
    P_MEMBERS,
    P_SALES_OF,
    P_SALE_ANON,
    P_REC_DELETE,
    P_PROFILE_DELETE,
    P_IDEM_PURGE_TEXT,
    P_ERASURE_INSERT,
    P_PROFILE_GET,
    P_PROFILE_MEMBERS,
    P_FIND_EMAIL,
    P_FIND_SOURCE,
    P_RULE_GET_CLIENT,
    P_RULE_SET,
    P_SEQ_FLOOR_SET,
    P_SEQ_FLOOR_GET,
    P_COUNT
};
_Static_assert(P_COUNT <= 32, "the profiles part owns extra slots 0..31");

static const char *const sql[P_COUNT] = {
    [P_REC_GET] = "SELECT seq, profile_id, ad_opt_out FROM customers WHERE tenant_id = ?1"
                  " AND env = ?2 AND customer_id = ?3 AND source = ?4",
    [P_RULE_GET] = "SELECT link_rule FROM tenants WHERE id = ?1",
    [P_SUP_ANY] = "SELECT EXISTS (SELECT 1 FROM suppression WHERE tenant_id = ?1 AND env = ?2)",
    [P_SUP_HAS] = "SELECT 1 FROM suppression WHERE tenant_id = ?1 AND env = ?2"
                  " AND email_hash = ?3",
    /* Several profiles may share a key (created under an older rule): the oldest wins. */
    [P_BY_KEY] = "SELECT id FROM profiles WHERE tenant_id = ?1 AND env = ?2 AND link_key = ?3"
                 " ORDER BY id LIMIT 1",
    [P_PROFILE_INSERT] = "INSERT INTO profiles (tenant_id, env, link_key, opt_out, suppressed,"
                         " created_usec, updated_usec) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    [P_REC_SET_PROFILE] = "UPDATE customers SET profile_id = ?4, pinned = ?5"
                          " WHERE tenant_id = ?1 AND env = ?2 AND seq = ?3",
    /* "+tenant_id": without it SQLite reads every customer of the tenant through
     * customers_seq (tenant_id, env) instead of the profile's few through customers_profile. */
    [P_MEMBER_FLAGS] = "SELECT email_key, ad_opt_out FROM customers WHERE profile_id = ?3"
                       " AND +tenant_id = ?1 AND +env = ?2",
    [P_PROFILE_FLAGS] = "UPDATE profiles SET opt_out = ?4, suppressed = ?5, updated_usec = ?6"
                        " WHERE tenant_id = ?1 AND env = ?2 AND id = ?3",
    /* An operator suppression never downgrades an erasure; an erasure marks an existing
     * suppression as erased. changes() = 0 therefore means "already on the list". */
    [P_SUP_INSERT] = "INSERT INTO suppression (tenant_id, env, email_hash, reason, created_usec)"
                     " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (tenant_id, env, email_hash)"
                     " DO UPDATE SET reason = excluded.reason"
                     " WHERE excluded.reason = 'erased' AND suppression.reason <> 'erased'",
    /* The profiles by id (rowid), found through customers_email_key: "+tenant_id" keeps SQLite
     * from walking every profile of the tenant through profiles_link per address instead
     * (10,000 suppressions held the writer for 14.8 s that way). */
    [P_SUP_MARK] = "UPDATE profiles SET suppressed = 1, updated_usec = ?4 WHERE id IN"
                   " (SELECT profile_id FROM customers WHERE tenant_id = ?1 AND env = ?2"
                   " AND email_key = ?3) AND +tenant_id = ?1 AND +env = ?2 AND suppressed = 0",
    [P_REC_FIND] = "SELECT seq, source, profile_id, email_key FROM customers WHERE tenant_id = ?1"
                   " AND env = ?2 AND customer_id = ?3 ORDER BY seq",
    [P_MEMBERS] = "SELECT seq, source, customer_id, email_key FROM customers WHERE profile_id = ?3"
                  " AND +tenant_id = ?1 AND +env = ?2 ORDER BY seq",
    [P_SALES_OF] = "SELECT invoice_number FROM sales WHERE tenant_id = ?1 AND env = ?2"
                   " AND source = ?3 AND customer_id = ?4",
    /* The sale stays (revenue, attendance), its buyer becomes anonymous — in the column the
     * segments query and in the document the read API returns. */
    [P_SALE_ANON] = "UPDATE sales SET customer_id = 'ANON',"
                    " doc = json_set(doc, '$.customer_id', 'ANON'), seq = ?4, updated_usec = ?5"
                    " WHERE tenant_id = ?1 AND env = ?2 AND invoice_number = ?3",
    [P_REC_DELETE] = "DELETE FROM customers WHERE tenant_id = ?1 AND env = ?2 AND seq = ?3",
    [P_PROFILE_DELETE] = "DELETE FROM profiles WHERE tenant_id = ?1 AND env = ?2 AND id = ?3",
    /* Stored ingest answers quote ids in messages ("customer 'C1' does not exist"). */
    [P_IDEM_PURGE_TEXT] = "DELETE FROM idempotency WHERE tenant_id = ?1 AND env = ?2"
                          " AND instr(response, ?3) > 0",
    [P_ERASURE_INSERT] = "INSERT INTO erasures (tenant_id, env, profile_id, records_erased,"
                         " sales_anonymized, created_usec) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [P_PROFILE_GET] = "SELECT id, opt_out, suppressed, created_usec, updated_usec FROM profiles"
                      " WHERE tenant_id = ?1 AND env = ?2 AND id = ?3",
    [P_PROFILE_MEMBERS] =
        "SELECT source, customer_id, email_key, json_extract(doc, '$.first_name'),"
        " json_extract(doc, '$.last_name'), ad_opt_out, pinned, doc FROM customers"
        " WHERE profile_id = ?3 AND +tenant_id = ?1 AND +env = ?2 ORDER BY seq",
    [P_FIND_EMAIL] = "SELECT DISTINCT profile_id FROM customers WHERE tenant_id = ?1 AND env = ?2"
                     " AND email_key = ?3 AND profile_id IS NOT NULL ORDER BY profile_id"
                     " LIMIT ?4",
    /* Left alone, SQLite prefers the covering seg_customers_key on (tenant_id, env) only. */
    [P_FIND_SOURCE] = "SELECT DISTINCT profile_id FROM customers INDEXED BY customers_id"
                      " WHERE tenant_id = ?1"
                      " AND env = ?2 AND customer_id = ?3 AND (?4 IS NULL OR source = ?4)"
                      " AND profile_id IS NOT NULL ORDER BY profile_id LIMIT ?5",
    [P_RULE_GET_CLIENT] = "SELECT link_rule FROM tenants WHERE client_id = ?1",
    [P_RULE_SET] = "UPDATE tenants SET link_rule = ?2 WHERE client_id = ?1",
    [P_SEQ_FLOOR_SET] = "INSERT INTO meta (k, v) VALUES ('seq_floor', ?1)"
                        " ON CONFLICT (k) DO UPDATE SET v = max(v, excluded.v)",
    [P_SEQ_FLOOR_GET] = "SELECT v FROM meta WHERE k = 'seq_floor'",
};

/* Statements that read a whole tenant's rows by design: an EXISTS that stops at its first row,
 * and erasure's text search through the tenant's stored answers (a day's worth at most). Every
 * other statement reaches its rows through an index on what it is given; test_profiles_plan.c
 * checks both with EXPLAIN QUERY PLAN. */
static const bool tenant_wide[P_COUNT] = {[P_SUP_ANY] = true, [P_IDEM_PURGE_TEXT] = true};

const char *sd_sqlite_profiles_stmt_text(unsigned i, bool *ret_tenant_wide)
{
    if (i >= P_COUNT) {
        return NULL;
    }
    if (ret_tenant_wide) {
        *ret_tenant_wide = tenant_wide[i];
    }
    return sql[i];
}

static sqlite3_stmt *stmt(struct conn *c, unsigned id)
{
    return sd_sqlite_stmt_extra(c, SLOT_BASE + id, sql[id]);
}

static int bind_fail(struct conn *c)
{
    return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
}

/* Step a statement that returns no row; a constraint failure is a backend failure here. */
static int run_done(struct conn *c, sqlite3_stmt *st, const char *op)
{
    int r = sd_sqlite_step_done(c, st, op);
    return r == -EEXIST ? sd_sqlite_fail(c, SQLITE_CONSTRAINT, op) : r;
}

static void email_hash(const char *email_key, char out[65])
{
    sd_sha256_hex(email_key, strlen(email_key), out);
}

/* 1 if the e-mail key is on the suppression list of tenant/env, 0 if not, -EIO. */
static int sup_has(struct conn *c, int64_t tenant_id, enum sd_env env, const char *email_key)
{
    sqlite3_stmt *st = stmt(c, P_SUP_HAS);
    if (!st) {
        return -EIO;
    }
    char hex[65];
    email_hash(email_key, hex);
    if (sd_sqlite_bind_scope(st, tenant_id, env, hex) != SQLITE_OK) {
        return bind_fail(c);
    }
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW) {
        return 1;
    }
    return rc == SQLITE_DONE ? 0 : sd_sqlite_fail(c, rc, "suppression lookup");
}

static int rule_from_text(const unsigned char *t, enum sd_link_rule *ret)
{
    if (sd_link_rule_parse((const char *)t, ret) < 0) {
        /* Only this file writes the column, through sd_link_rule_parse'd values. */
        sd_log(SD_LOG_WARN, "unknown link rule stored; using 'email'", NULL);
        *ret = SD_LINK_EMAIL;
    }
    return 0;
}

static int ctx_load(struct sd_store *s, int64_t tenant_id, enum sd_env env, struct sd_link_ctx *ctx)
{
    if (ctx->loaded) {
        return 0;
    }
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, P_RULE_GET);
    if (!st) {
        return -EIO;
    }
    if (sqlite3_bind_int64(st, 1, tenant_id) != SQLITE_OK) {
        return bind_fail(c);
    }
    int rc = sqlite3_step(st);
    ctx->rule = SD_LINK_EMAIL;
    if (rc == SQLITE_ROW) {
        rule_from_text(sqlite3_column_text(st, 0), &ctx->rule);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        return sd_sqlite_fail(c, rc, "link rule");
    }
    st = stmt(c, P_SUP_ANY);
    if (!st) {
        return -EIO;
    }
    if (sd_sqlite_bind_scope(st, tenant_id, env, NULL) != SQLITE_OK) {
        return bind_fail(c);
    }
    rc = sqlite3_step(st);
    ctx->any_suppression = rc == SQLITE_ROW && sqlite3_column_int(st, 0) != 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW) {
        return sd_sqlite_fail(c, rc, "suppression any");
    }
    ctx->loaded = true;
    return 0;
}

/* The stored record (source, customer_id): 1 found (seq, profile id or 0, ad_opt_out -1/0/1),
 * 0 not found, -EIO. */
static int rec_get(struct conn *c, int64_t tenant_id, enum sd_env env, const char *source,
                   const char *customer_id, int64_t *ret_seq, int64_t *ret_profile,
                   int *ret_opt_out)
{
    sqlite3_stmt *st = stmt(c, P_REC_GET);
    if (!st) {
        return -EIO;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, customer_id) |
         sqlite3_bind_text(st, 4, source, -1, SQLITE_STATIC)) != SQLITE_OK) {
        return bind_fail(c);
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *ret_seq = sqlite3_column_int64(st, 0);
        *ret_profile = sqlite3_column_int64(st, 1); /* NULL reads as 0 */
        *ret_opt_out =
            sqlite3_column_type(st, 2) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 2) != 0;
    }
    sqlite3_reset(st);
    if (rc == SQLITE_ROW) {
        return 1;
    }
    return rc == SQLITE_DONE ? 0 : sd_sqlite_fail(c, rc, "customer lookup");
}

static int profile_insert(struct conn *c, int64_t tenant_id, enum sd_env env, const char *link_key,
                          bool opt_out, bool suppressed, int64_t now, int64_t *ret_id)
{
    sqlite3_stmt *st = stmt(c, P_PROFILE_INSERT);
    if (!st) {
        return -EIO;
    }
    int rc = sd_sqlite_bind_scope(st, tenant_id, env, link_key);
    if (!link_key) {
        rc |= sqlite3_bind_null(st, 3);
    }
    rc |= sqlite3_bind_int(st, 4, opt_out ? 1 : 0);
    rc |= sqlite3_bind_int(st, 5, suppressed ? 1 : 0);
    rc |= sqlite3_bind_int64(st, 6, now);
    if (rc != SQLITE_OK) {
        return bind_fail(c);
    }
    int r = run_done(c, st, "profile insert");
    if (r == 0) {
        *ret_id = sqlite3_last_insert_rowid(c->db);
    }
    return r;
}

/* A record moved to profile_id: the purchase facts of the profile it left and of the one it
 * joined follow when its key has sales (sqlite_facts.c). */
static int rec_set_profile(struct conn *c, int64_t tenant_id, enum sd_env env, int64_t seq,
                           int64_t profile_id, bool pinned)
{
    int64_t was = 0;
    bool has_sales = false;
    int r = sd_sqlite_facts_record_get(c, tenant_id, env, seq, &was, &has_sales);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = stmt(c, P_REC_SET_PROFILE);
    if (!st) {
        return -EIO;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, NULL) | sqlite3_bind_int64(st, 3, seq) |
         sqlite3_bind_int64(st, 4, profile_id) | sqlite3_bind_int(st, 5, pinned ? 1 : 0)) !=
        SQLITE_OK) {
        return bind_fail(c);
    }
    r = run_done(c, st, "customer link");
    if (r == 0 && has_sales && was != profile_id) {
        r = sd_sqlite_facts_profile(c, tenant_id, env, was);
        r = r < 0 ? r : sd_sqlite_facts_profile(c, tenant_id, env, profile_id);
    }
    return r;
}

/* Recompute opt_out and suppressed of a profile from all its members; *ret_members (optional)
 * receives the member count. */
static const struct sd_profile_steps steps;
static const struct sd_erase_steps erase_steps;

static int recompute(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                     const struct sd_link_ctx *ctx, int64_t profile_id, int64_t now,
                     size_t *ret_members)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, P_MEMBER_FLAGS);
    if (!st) {
        return -EIO;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, NULL) | sqlite3_bind_int64(st, 3, profile_id)) !=
        SQLITE_OK) {
        return bind_fail(c);
    }
    struct sd_profile_flags f = {0};
    size_t n = 0;
    int rc, r = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        n++;
        int opt_out =
            sqlite3_column_type(st, 1) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 1) != 0;
        /* P_SUP_HAS is another statement: stepping it while this one is open is fine. */
        r = sd_profile_flags_add(&f, s, &steps, tenant_id, env, ctx, opt_out,
                                 (const char *)sqlite3_column_text(st, 0));
        if (r < 0) {
            break;
        }
    }
    sqlite3_reset(st);
    if (r < 0) {
        return r;
    }
    if (rc != SQLITE_DONE) {
        return sd_sqlite_fail(c, rc, "profile members");
    }
    st = stmt(c, P_PROFILE_FLAGS);
    if (!st) {
        return -EIO;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, NULL) | sqlite3_bind_int64(st, 3, profile_id) |
         sqlite3_bind_int(st, 4, f.opt_out ? 1 : 0) |
         sqlite3_bind_int(st, 5, f.suppressed ? 1 : 0) | sqlite3_bind_int64(st, 6, now)) !=
        SQLITE_OK) {
        return bind_fail(c);
    }
    r = run_done(c, st, "profile flags");
    if (r == 0 && ret_members) {
        *ret_members = n;
    }
    return r;
}

/* 1 and the oldest profile with this link key, 0 if none, -EIO. */
static int by_key(struct conn *c, int64_t tenant_id, enum sd_env env, const char *key,
                  int64_t *ret_id)
{
    sqlite3_stmt *st = stmt(c, P_BY_KEY);
    if (!st) {
        return -EIO;
    }
    if (sd_sqlite_bind_scope(st, tenant_id, env, key) != SQLITE_OK) {
        return bind_fail(c);
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *ret_id = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    if (rc == SQLITE_ROW) {
        return 1;
    }
    return rc == SQLITE_DONE ? 0 : sd_sqlite_fail(c, rc, "profile by key");
}

/* ---- the steps store/profile_rules.c takes, on the writer ------------------------------------ */

static int step_record(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *source,
                       const char *customer_id, int64_t *ret_seq, int64_t *ret_profile,
                       int *ret_opt_out)
{
    return rec_get(s->writer, tenant_id, env, source, customer_id, ret_seq, ret_profile,
                   ret_opt_out);
}

static int step_by_key(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *key,
                       int64_t *ret_id)
{
    return by_key(s->writer, tenant_id, env, key, ret_id);
}

static int step_sup_has(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                        const char *email_key)
{
    return sup_has(s->writer, tenant_id, env, email_key);
}

static int step_create(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *link_key,
                       bool opt_out, bool suppressed, int64_t now, int64_t *ret_id)
{
    return profile_insert(s->writer, tenant_id, env, link_key, opt_out, suppressed, now, ret_id);
}

static int step_move(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t seq,
                     int64_t profile_id, bool pinned)
{
    return rec_set_profile(s->writer, tenant_id, env, seq, profile_id, pinned);
}

static int run_scoped_id(struct conn *c, unsigned id, int64_t tenant_id, enum sd_env env, int64_t v,
                         const char *op);

static int step_remove(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t profile_id)
{
    return run_scoped_id(s->writer, P_PROFILE_DELETE, tenant_id, env, profile_id, "profile delete");
}

int sd_sqlite_profile_link(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           struct sd_link_ctx *ctx, const char *source,
                           const struct sd_customer_rec *cu, int64_t now)
{
    return sd_profile_link(s, &steps, tenant_id, env, ctx, source, cu, now);
}

int sd_sqlite_profile_seq_floor(struct sd_store *s, int64_t *seq)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, P_SEQ_FLOOR_GET);
    if (!st) {
        return -EIO;
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        int64_t v = sqlite3_column_int64(st, 0);
        if (v > *seq) {
            *seq = v;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sd_sqlite_fail(c, rc, "seq floor");
}

/* ---- control plane: the link rule (control.db, `cp`) ----------------------------------------- */

static int link_rule_get(struct sd_store *s, const char *client_id, enum sd_link_rule *ret)
{
    if (!client_id || !ret) {
        return -EINVAL;
    }
    pthread_mutex_lock(&s->cp_lock);
    struct conn *k = s->cp;
    int r = -EIO;
    sqlite3_stmt *st = stmt(k, P_RULE_GET_CLIENT);
    if (st) {
        if (sqlite3_bind_text(st, 1, client_id, -1, SQLITE_STATIC) != SQLITE_OK) {
            r = bind_fail(k);
        } else {
            int rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                r = rule_from_text(sqlite3_column_text(st, 0), ret);
            } else {
                r = rc == SQLITE_DONE ? -ENOENT : sd_sqlite_fail(k, rc, "link rule get");
            }
            sqlite3_reset(st);
        }
    }
    pthread_mutex_unlock(&s->cp_lock);
    return r;
}

static int link_rule_set(struct sd_store *s, const char *client_id, enum sd_link_rule rule)
{
    if (!client_id || (unsigned)rule > SD_LINK_NONE) {
        return -EINVAL;
    }
    int r = sd_sqlite_cp_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->cp;
    bool changed = false;
    sqlite3_stmt *st = stmt(k, P_RULE_SET);
    if (!st) {
        r = -EIO;
    } else if ((sqlite3_bind_text(st, 1, client_id, -1, SQLITE_STATIC) |
                sqlite3_bind_text(st, 2, sd_link_rule_name(rule), -1, SQLITE_STATIC)) !=
               SQLITE_OK) {
        r = bind_fail(k);
    } else {
        r = run_done(k, st, "link rule set");
        if (r == 0 && sqlite3_changes(k->db) == 0) {
            r = -ENOENT;
        }
        changed = r == 0;
    }
    return sd_sqlite_cp_end_write(s, r, changed);
}

/* ---- read path --------------------------------------------------------------------------------
 */

static int read_members(struct conn *c, int64_t tenant_id, enum sd_env env, struct sd_profile *p)
{
    sqlite3_stmt *st = stmt(c, P_PROFILE_MEMBERS);
    if (!st) {
        return -EIO;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, NULL) | sqlite3_bind_int64(st, 3, p->id)) !=
        SQLITE_OK) {
        return bind_fail(c);
    }
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (p->n_members == cap) {
            cap = cap ? cap * 2 : 4;
            p->members = sd_realloc(p->members, cap * sizeof(*p->members));
        }
        p->members[p->n_members++] = (struct sd_profile_member){
            .source = sd_sqlite_column_strdup(st, 0),
            .customer_id = sd_sqlite_column_strdup(st, 1),
            .email = sd_sqlite_column_strdup(st, 2),
            .first_name = sd_sqlite_column_strdup(st, 3),
            .last_name = sd_sqlite_column_strdup(st, 4),
            .ad_opt_out = sqlite3_column_type(st, 5) == SQLITE_NULL
                              ? -1
                              : (sqlite3_column_int(st, 5) != 0 ? 1 : 0),
            .pinned = sqlite3_column_int(st, 6) != 0,
            .doc = sd_sqlite_column_strdup(st, 7),
        };
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : sd_sqlite_fail(c, rc, "profile members");
}

/* One profile and its members, on connection c (inside the caller's read transaction). */
static int read_profile(struct conn *c, int64_t tenant_id, enum sd_env env, int64_t id,
                        struct sd_profile *ret)
{
    sqlite3_stmt *st = stmt(c, P_PROFILE_GET);
    if (!st) {
        return -EIO;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, NULL) | sqlite3_bind_int64(st, 3, id)) !=
        SQLITE_OK) {
        return bind_fail(c);
    }
    struct sd_profile p = {0};
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        p.id = sqlite3_column_int64(st, 0);
        p.opt_out = sqlite3_column_int(st, 1) != 0;
        p.suppressed = sqlite3_column_int(st, 2) != 0;
        p.created_usec = sqlite3_column_int64(st, 3);
        p.updated_usec = sqlite3_column_int64(st, 4);
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) {
        return -ENOENT;
    }
    if (rc != SQLITE_ROW) {
        return sd_sqlite_fail(c, rc, "profile get");
    }
    int r = read_members(c, tenant_id, env, &p);
    if (r < 0) {
        sd_profile_release(&p);
        return r;
    }
    *ret = p;
    return 0;
}

static int profile_get(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t profile_id,
                       struct sd_profile *ret)
{
    if (!ret || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    r = sd_sqlite_run(c, ST_BEGIN);
    if (r == 0) {
        r = read_profile(c, tenant_id, env, profile_id, ret);
        int fr = sd_sqlite_tx_finish(c, r < 0 ? 0 : r);
        if (r == 0 && fr < 0) {
            sd_profile_release(ret);
            r = fr;
        }
    }
    sd_sqlite_pool_put(s, c);
    return r;
}

/* Run a lookup whose rows are profile ids (st bound by the caller) and read each profile. */
static int find_profiles(struct conn *c, sqlite3_stmt *st, int64_t tenant_id, enum sd_env env,
                         struct sd_profile **ret, size_t *ret_n)
{
    int64_t ids[SD_PROFILES_FIND_MAX];
    size_t n_ids = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && n_ids < SD_PROFILES_FIND_MAX) {
        ids[n_ids++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        return sd_sqlite_fail(c, rc, "profile lookup");
    }
    struct sd_profile *v = n_ids ? sd_calloc(n_ids, sizeof(*v)) : NULL;
    size_t n = 0;
    for (size_t i = 0; i < n_ids; i++) {
        int r = read_profile(c, tenant_id, env, ids[i], &v[n]);
        if (r == -ENOENT) {
            continue; /* a member pointing nowhere; not expected inside one snapshot */
        }
        if (r < 0) {
            sd_profiles_free(v, n);
            return r;
        }
        n++;
    }
    if (n == 0) {
        free(v);
        v = NULL;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

static int find_common(struct sd_store *s, int64_t tenant_id, enum sd_env env, unsigned id,
                       const char *key, const char *source, struct sd_profile **ret, size_t *ret_n)
{
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    r = sd_sqlite_run(c, ST_BEGIN);
    if (r == 0) {
        sqlite3_stmt *st = stmt(c, id);
        if (!st) {
            r = -EIO;
        } else {
            int rc = sd_sqlite_bind_scope(st, tenant_id, env, key);
            if (id == P_FIND_EMAIL) {
                rc |= sqlite3_bind_int(st, 4, SD_PROFILES_FIND_MAX);
            } else {
                rc |= source ? sqlite3_bind_text(st, 4, source, -1, SQLITE_STATIC)
                             : sqlite3_bind_null(st, 4);
                rc |= sqlite3_bind_int(st, 5, SD_PROFILES_FIND_MAX);
            }
            r = rc != SQLITE_OK ? bind_fail(c) : find_profiles(c, st, tenant_id, env, ret, ret_n);
        }
        int fr = sd_sqlite_tx_finish(c, r);
        if (r == 0 && fr < 0) {
            sd_profiles_free(*ret, *ret_n);
            r = fr;
        }
    }
    sd_sqlite_pool_put(s, c);
    return r;
}

static int find_by_email(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                         const char *email_key, struct sd_profile **ret, size_t *ret_n)
{
    if (!email_key || !ret || !ret_n || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    return find_common(s, tenant_id, env, P_FIND_EMAIL, email_key, NULL, ret, ret_n);
}

static int find_by_source(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                          const char *source, const char *customer_id, struct sd_profile **ret,
                          size_t *ret_n)
{
    if (!customer_id || !ret || !ret_n || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    return find_common(s, tenant_id, env, P_FIND_SOURCE, customer_id, source, ret, ret_n);
}

static int is_suppressed(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                         const char *email_key, bool *ret)
{
    if (!email_key || !ret || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    r = sup_has(c, tenant_id, env, email_key);
    sd_sqlite_pool_put(s, c);
    if (r < 0) {
        return r;
    }
    *ret = r == 1;
    return 0;
}

/* ---- write path: split, suppress, erase ------------------------------------------------------ */

static int split(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t profile_id,
                 const char *source, const char *customer_id, int64_t *ret_new_id)
{
    if (!source || !customer_id || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    return sd_profile_split(s, &steps, tenant_id, env, profile_id, source, customer_id, ret_new_id);
}

/* Put one e-mail key's hash on the list: 1 added, 0 already there, -EIO. */
static int sup_insert(struct conn *c, int64_t tenant_id, enum sd_env env, const char *email_key,
                      const char *reason, int64_t now)
{
    sqlite3_stmt *st = stmt(c, P_SUP_INSERT);
    if (!st) {
        return -EIO;
    }
    char hex[65];
    email_hash(email_key, hex);
    if ((sd_sqlite_bind_scope(st, tenant_id, env, hex) |
         sqlite3_bind_text(st, 4, reason, -1, SQLITE_STATIC) | sqlite3_bind_int64(st, 5, now)) !=
        SQLITE_OK) {
        return bind_fail(c);
    }
    int r = run_done(c, st, "suppression insert");
    return r < 0 ? r : sqlite3_changes(c->db) > 0;
}

/* Set suppressed on every profile with a member using this e-mail key; returns how many. */
static int sup_mark(struct conn *c, int64_t tenant_id, enum sd_env env, const char *email_key,
                    int64_t now)
{
    sqlite3_stmt *st = stmt(c, P_SUP_MARK);
    if (!st) {
        return -EIO;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, email_key) | sqlite3_bind_int64(st, 4, now)) !=
        SQLITE_OK) {
        return bind_fail(c);
    }
    int r = run_done(c, st, "suppression mark");
    return r < 0 ? r : sqlite3_changes(c->db);
}

static int suppress(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                    const char *const *email_keys, size_t n, struct sd_suppress_result *ret)
{
    if ((n && !email_keys) || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    struct conn *c = s->writer;
    struct sd_suppress_result res = {0};
    int64_t now = sd_now_usec();
    for (size_t i = 0; i < n; i++) {
        if (!email_keys[i] || !*email_keys[i]) {
            return -EINVAL;
        }
        int r = sup_insert(c, tenant_id, env, email_keys[i], "suppressed", now);
        if (r < 0) {
            return r;
        }
        res.added += (size_t)r;
        r = sup_mark(c, tenant_id, env, email_keys[i], now);
        if (r < 0) {
            return r;
        }
        res.profiles_suppressed += (size_t)r;
    }
    if (ret) {
        *ret = res;
    }
    return 0;
}

static void members_push(struct sd_erase_member **v, size_t *n, size_t *cap,
                         struct sd_erase_member m)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        *v = sd_realloc(*v, *cap * sizeof(**v));
    }
    (*v)[(*n)++] = m;
}

/* The record to erase: 1 found (its member row and profile id), 0 none, -ENOTUNIQ, -EIO. */
static int erase_find(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *source,
                      const char *customer_id, struct sd_erase_member *ret, int64_t *ret_profile)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, P_REC_FIND);
    if (!st) {
        return -EIO;
    }
    if (sd_sqlite_bind_scope(st, tenant_id, env, customer_id) != SQLITE_OK) {
        return bind_fail(c);
    }
    int found = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *src = (const char *)sqlite3_column_text(st, 1);
        if (source && (!src || strcmp(src, source) != 0)) {
            continue;
        }
        if (found) {
            found = -ENOTUNIQ; /* only reachable with source == NULL */
            break;
        }
        found = 1;
        *ret = (struct sd_erase_member){
            .seq = sqlite3_column_int64(st, 0),
            .source = sd_sqlite_column_strdup(st, 1),
            .customer_id = sd_strdup(customer_id),
            .email_key = sd_sqlite_column_strdup(st, 3),
        };
        *ret_profile = sqlite3_column_int64(st, 2);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        found = sd_sqlite_fail(c, rc, "customer find");
    }
    if (found < 0) {
        sd_erase_member_release(ret);
    }
    return found;
}

static int load_members(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t profile_id,
                        struct sd_erase_member **ret, size_t *ret_n)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, P_MEMBERS);
    if (!st) {
        return -EIO;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, NULL) | sqlite3_bind_int64(st, 3, profile_id)) !=
        SQLITE_OK) {
        return bind_fail(c);
    }
    struct sd_erase_member *v = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        members_push(&v, &n, &cap,
                     (struct sd_erase_member){
                         .seq = sqlite3_column_int64(st, 0),
                         .source = sd_sqlite_column_strdup(st, 1),
                         .customer_id = sd_sqlite_column_strdup(st, 2),
                         .email_key = sd_sqlite_column_strdup(st, 3),
                     });
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        sd_erase_members_free(v, n);
        return sd_sqlite_fail(c, rc, "profile members");
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

/* Re-point every sale of (source, customer_id) to ANON, one new seq each. */
static int anonymize_sales(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const struct sd_erase_member *m, int64_t now, int64_t *count)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, P_SALES_OF);
    if (!st) {
        return -EIO;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, NULL) |
         sqlite3_bind_text(st, 3, m->source, -1, SQLITE_STATIC) |
         sqlite3_bind_text(st, 4, m->customer_id, -1, SQLITE_STATIC)) != SQLITE_OK) {
        return bind_fail(c);
    }
    /* Collect first: updating a row moves it (seq is the rowid) under the running scan. */
    char **inv = NULL;
    size_t n = 0, cap = 0;
    int rc, r = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            inv = sd_realloc(inv, cap * sizeof(*inv));
        }
        inv[n++] = sd_sqlite_column_strdup(st, 0);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        r = sd_sqlite_fail(c, rc, "sales of customer");
        goto out;
    }
    st = stmt(c, P_SALE_ANON);
    if (!st) {
        r = -EIO;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t seq = s->seq + 1;
        /* an ANON sale counts for nobody: only taking it out of the facts is left */
        r = sd_sqlite_facts_sale_out(c, tenant_id, env, inv[i]);
        if (r < 0) {
            goto out;
        }
        if ((sd_sqlite_bind_scope(st, tenant_id, env, inv[i]) | sqlite3_bind_int64(st, 4, seq) |
             sqlite3_bind_int64(st, 5, now)) != SQLITE_OK) {
            r = bind_fail(c);
            goto out;
        }
        r = run_done(c, st, "sale anonymize");
        if (r < 0) {
            goto out;
        }
        s->seq = seq;
        (*count)++;
    }
out:
    for (size_t i = 0; i < n; i++) {
        free(inv[i]);
    }
    free(inv);
    return r;
}

/* Delete the stored idempotent answers of tenant/env that contain needle. */
static int purge_answers(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *needle,
                         int64_t *count)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, P_IDEM_PURGE_TEXT);
    if (!st) {
        return -EIO;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, NULL) |
         sqlite3_bind_text(st, 3, needle, -1, SQLITE_STATIC)) != SQLITE_OK) {
        return bind_fail(c);
    }
    int r = run_done(c, st, "idempotency purge");
    if (r == 0) {
        *count += sqlite3_changes(c->db);
    }
    return r;
}

static int run_scoped_id(struct conn *c, unsigned id, int64_t tenant_id, enum sd_env env, int64_t v,
                         const char *op)
{
    sqlite3_stmt *st = stmt(c, id);
    if (!st) {
        return -EIO;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, NULL) | sqlite3_bind_int64(st, 3, v)) !=
        SQLITE_OK) {
        return bind_fail(c);
    }
    return run_done(c, st, op);
}

static int record_delete(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t seq)
{
    return run_scoped_id(s->writer, P_REC_DELETE, tenant_id, env, seq, "customer delete");
}

static int address_erased(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                          const char *email_key, int64_t now)
{
    int r = sup_insert(s->writer, tenant_id, env, email_key, "erased", now);
    if (r >= 0) {
        /* Others sharing the address (a family, under email_and_last_name) are kept out of
         * pushes too: the address itself is now on the list. */
        r = sup_mark(s->writer, tenant_id, env, email_key, now);
    }
    return r < 0 ? r : 0;
}

/* The erasure's record, and the sequence floor: the rows deleted may have carried the highest
 * seq, which write_begin must never hand out again. */
static int erasure_log(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t profile_id,
                       int64_t records, int64_t sales, int64_t now)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, P_ERASURE_INSERT);
    if (!st) {
        return -EIO;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, NULL) | sqlite3_bind_int64(st, 3, profile_id) |
         sqlite3_bind_int64(st, 4, records) | sqlite3_bind_int64(st, 5, sales) |
         sqlite3_bind_int64(st, 6, now)) != SQLITE_OK) {
        return bind_fail(c);
    }
    int r = run_done(c, st, "erasure insert");
    if (r < 0) {
        return r;
    }
    st = stmt(c, P_SEQ_FLOOR_SET);
    if (!st) {
        return -EIO;
    }
    if (sqlite3_bind_int64(st, 1, s->seq) != SQLITE_OK) {
        return bind_fail(c);
    }
    return run_done(c, st, "seq floor");
}

static int erase(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *source,
                 const char *customer_id, struct sd_erasure_result *ret)
{
    if (!customer_id || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    return sd_profile_erase(s, &erase_steps, tenant_id, env, source, customer_id, ret);
}

/* What store/profile_rules.c does on the writer. */
static const struct sd_profile_steps steps = {
    .ctx_load = ctx_load,
    .record = step_record,
    .recompute = recompute,
    .by_key = step_by_key,
    .sup_has = step_sup_has,
    .create = step_create,
    .move = step_move,
    .remove = step_remove,
};

/* What erasure (store/profile_rules.c) does on the writer. */
static const struct sd_erase_steps erase_steps = {
    .find = erase_find,
    .members = load_members,
    .anonymize_sales = anonymize_sales,
    .record_delete = record_delete,
    .tombstone_put = sd_sqlite_tombstone_put,
    .purge_answers = purge_answers,
    .address_erased = address_erased,
    .erasure_log = erasure_log,
    .remove = step_remove,
};

/* A record deleted on its own (not erased) leaves its profile. */
int sd_sqlite_profile_member_gone(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                                  int64_t profile_id, int64_t now)
{
    return sd_profile_member_gone(s, &steps, tenant_id, env, profile_id, now);
}

const struct sd_store_profile_ops sd_sqlite_profile_ops = {
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
