/* pg_link.c — linking source records into profiles at ingest, and a record leaving its
 * profile when it is deleted: the statements of the profiles the write path needs, run by the
 * rules of store/profile_rules.c (shared with sqlite_profiles.c):
 *  - a record's profile_id, once set, changes only by an explicit split (or disappears with the
 *    record at erasure) — never because of what a source sends;
 *  - profiles.opt_out / suppressed are recomputed from all members whenever one changes, so a
 *    `false` from one source never clears another source's `true`;
 *  - the suppression list holds SHA-256 hex of e-mail keys only, computed here (as in SQLite),
 *    and skipped entirely while a tenant's list is empty (the usual case).
 * Writer connection only; statements live in slots 192..207. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "pg_facts.h"
#include "pg_internal.h"
#include "pg_records.h"
#include "pg_link.h"
#include "store/profile_rules.h"

enum {
    SLOT_REC_GET = 192,
    SLOT_RULE_GET,
    SLOT_SUP_ANY,
    SLOT_SUP_HAS,
    SLOT_BY_KEY,
    SLOT_PROFILE_INSERT,
    SLOT_REC_SET_PROFILE,
    SLOT_MEMBER_FLAGS,
    SLOT_PROFILE_FLAGS,
    SLOT_PROFILE_DELETE,
};

static const char SQL_REC_GET[] = "SELECT seq, profile_id, ad_opt_out FROM customers"
                                  " WHERE tenant_id = $1 AND env = $2 AND customer_id = $3"
                                  " AND source = $4";
static const char SQL_RULE_GET[] = "SELECT link_rule FROM tenants WHERE id = $1";
static const char SQL_SUP_ANY[] =
    "SELECT (EXISTS (SELECT 1 FROM suppression WHERE tenant_id = $1 AND env = $2))::int";
static const char SQL_SUP_HAS[] = "SELECT 1 FROM suppression WHERE tenant_id = $1 AND env = $2"
                                  " AND email_hash = $3";
/* Several profiles may share a key (created under an older rule): the oldest wins. */
static const char SQL_BY_KEY[] = "SELECT id FROM profiles WHERE tenant_id = $1 AND env = $2"
                                 " AND link_key = $3 ORDER BY id LIMIT 1";
static const char SQL_PROFILE_INSERT[] =
    "INSERT INTO profiles (tenant_id, env, link_key, opt_out, suppressed, created_usec,"
    " updated_usec) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id";
static const char SQL_REC_SET_PROFILE[] = "UPDATE customers SET profile_id = $4, pinned = $5"
                                          " WHERE tenant_id = $1 AND env = $2 AND seq = $3";
static const char SQL_MEMBER_FLAGS[] = "SELECT email_key, ad_opt_out FROM customers"
                                       " WHERE profile_id = $3 AND tenant_id = $1 AND env = $2";
static const char SQL_PROFILE_FLAGS[] = "UPDATE profiles SET opt_out = $4, suppressed = $5,"
                                        " updated_usec = $6 WHERE tenant_id = $1 AND env = $2"
                                        " AND id = $3";
static const char SQL_PROFILE_DELETE[] =
    "DELETE FROM profiles WHERE tenant_id = $1 AND env = $2 AND id = $3";

/* 1 if the e-mail key is on the suppression list of tenant/env, 0 if not, negative errno. */
static int sup_has(struct pgconn *c, int64_t tenant_id, enum sd_env env, const char *email_key)
{
    char hex[65];
    sd_sha256_hex(email_key, strlen(email_key), hex);
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, hex);
    int r = sd_pg_write_exec(c, SLOT_SUP_HAS, SQL_SUP_HAS, &p, NULL);
    return r < 0 ? r : r > 0;
}

static int ctx_load(struct sd_store *s, int64_t tenant_id, enum sd_env env, struct sd_link_ctx *ctx)
{
    if (ctx->loaded) {
        return 0;
    }
    struct pgconn *c = sd_pg_writer(s);
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_int(&p, tenant_id);
    PGresult *res = NULL;
    int r = sd_pg_write_exec(c, SLOT_RULE_GET, SQL_RULE_GET, &p, &res);
    if (r < 0) {
        return r;
    }
    ctx->rule = SD_LINK_EMAIL;
    if (r > 0 && sd_link_rule_parse(sd_pg_text(res, 0, 0), &ctx->rule) < 0) {
        /* Only the profiles write the column, through sd_link_rule_parse'd values. */
        sd_log(SD_LOG_WARN, "unknown link rule stored; using 'email'", NULL);
        ctx->rule = SD_LINK_EMAIL;
    }
    PQclear(res);
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, NULL);
    r = sd_pg_write_exec(c, SLOT_SUP_ANY, SQL_SUP_ANY, &p, &res);
    if (r < 0) {
        return r;
    }
    ctx->any_suppression = r > 0 && sd_pg_int64(res, 0, 0) != 0;
    PQclear(res);
    ctx->loaded = true;
    return 0;
}

/* The stored record (source, customer_id): 1 found (seq, profile id or 0, ad_opt_out -1/0/1),
 * 0 not found, negative errno. */
static int rec_get(struct pgconn *c, int64_t tenant_id, enum sd_env env, const char *source,
                   const char *customer_id, int64_t *ret_seq, int64_t *ret_profile,
                   int *ret_opt_out)
{
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, customer_id);
    sd_pg_p_text(&p, source);
    PGresult *res = NULL;
    int r = sd_pg_write_exec(c, SLOT_REC_GET, SQL_REC_GET, &p, &res);
    if (r > 0) {
        *ret_seq = sd_pg_int64(res, 0, 0);
        *ret_profile = sd_pg_int64(res, 0, 1); /* NULL reads as 0 */
        *ret_opt_out = sd_pg_isnull(res, 0, 2) ? -1 : sd_pg_int64(res, 0, 2) != 0;
        r = 1;
    }
    PQclear(res);
    return r;
}

static int profile_insert(struct pgconn *c, int64_t tenant_id, enum sd_env env,
                          const char *link_key, bool opt_out, bool suppressed, int64_t now,
                          int64_t *ret_id)
{
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, NULL);
    sd_pg_p_text(&p, link_key);
    sd_pg_p_bool(&p, opt_out);
    sd_pg_p_bool(&p, suppressed);
    sd_pg_p_int(&p, now);
    PGresult *res = NULL;
    int r = sd_pg_write_exec(c, SLOT_PROFILE_INSERT, SQL_PROFILE_INSERT, &p, &res);
    if (r > 0) {
        *ret_id = sd_pg_int64(res, 0, 0);
    }
    PQclear(res);
    return r < 0 ? r : r > 0 ? 0 : -EIO;
}

/* A record moved to profile_id: the purchase facts of the profile it left and of the one it
 * joined follow when its key has sales (pg_facts.c). */
static int rec_set_profile(struct pgconn *c, int64_t tenant_id, enum sd_env env, int64_t seq,
                           int64_t profile_id, bool pinned)
{
    int64_t was = 0;
    bool has_sales = false;
    int r = sd_pg_facts_record_get(c, tenant_id, env, seq, &was, &has_sales);
    if (r < 0) {
        return r;
    }
    struct sd_pg_params p;
    sd_pg_p_scope_id(&p, tenant_id, env, seq);
    sd_pg_p_int(&p, profile_id);
    sd_pg_p_bool(&p, pinned);
    r = sd_pg_write_exec(c, SLOT_REC_SET_PROFILE, SQL_REC_SET_PROFILE, &p, NULL);
    if (r < 0) {
        return r;
    }
    r = 0;
    if (has_sales && was != profile_id) {
        r = sd_pg_facts_profile(c, tenant_id, env, was);
        r = r < 0 ? r : sd_pg_facts_profile(c, tenant_id, env, profile_id);
    }
    return r;
}

/* Recompute opt_out and suppressed of a profile from all its members; *ret_members (optional)
 * receives the member count. */
static const struct sd_profile_steps steps;

static int recompute(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                     const struct sd_link_ctx *ctx, int64_t profile_id, int64_t now,
                     size_t *ret_members)
{
    struct pgconn *c = sd_pg_writer(s);
    struct sd_pg_params p;
    sd_pg_p_scope_id(&p, tenant_id, env, profile_id);
    PGresult *res = NULL;
    int r = sd_pg_write_exec(c, SLOT_MEMBER_FLAGS, SQL_MEMBER_FLAGS, &p, &res);
    if (r < 0) {
        return r;
    }
    struct sd_profile_flags f = {0};
    size_t n = (size_t)r;
    r = 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        int opt_out = sd_pg_isnull(res, (int)i, 1) ? -1 : sd_pg_int64(res, (int)i, 1) != 0;
        r = sd_profile_flags_add(&f, s, &steps, tenant_id, env, ctx, opt_out,
                                 sd_pg_text(res, (int)i, 0));
    }
    PQclear(res);
    if (r < 0) {
        return r;
    }
    sd_pg_p_scope_id(&p, tenant_id, env, profile_id);
    sd_pg_p_bool(&p, f.opt_out);
    sd_pg_p_bool(&p, f.suppressed);
    sd_pg_p_int(&p, now);
    r = sd_pg_write_exec(c, SLOT_PROFILE_FLAGS, SQL_PROFILE_FLAGS, &p, NULL);
    if (r < 0) {
        return r;
    }
    if (ret_members) {
        *ret_members = n;
    }
    return 0;
}

/* 1 and the oldest profile with this link key, 0 if none, negative errno. */
static int by_key(struct pgconn *c, int64_t tenant_id, enum sd_env env, const char *key,
                  int64_t *ret_id)
{
    struct sd_pg_params p;
    sd_pg_params_init(&p);
    sd_pg_p_scope(&p, tenant_id, env, key);
    PGresult *res = NULL;
    int r = sd_pg_write_exec(c, SLOT_BY_KEY, SQL_BY_KEY, &p, &res);
    if (r > 0) {
        *ret_id = sd_pg_int64(res, 0, 0);
        r = 1;
    }
    PQclear(res);
    return r;
}

/* ---- the steps store/profile_rules.c takes, on the writer ------------------------------------ */

static int step_record(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *source,
                       const char *customer_id, int64_t *ret_seq, int64_t *ret_profile,
                       int *ret_opt_out)
{
    return rec_get(sd_pg_writer(s), tenant_id, env, source, customer_id, ret_seq, ret_profile,
                   ret_opt_out);
}

static int step_by_key(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *key,
                       int64_t *ret_id)
{
    return by_key(sd_pg_writer(s), tenant_id, env, key, ret_id);
}

static int step_sup_has(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                        const char *email_key)
{
    return sup_has(sd_pg_writer(s), tenant_id, env, email_key);
}

static int step_create(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *link_key,
                       bool opt_out, bool suppressed, int64_t now, int64_t *ret_id)
{
    return profile_insert(sd_pg_writer(s), tenant_id, env, link_key, opt_out, suppressed, now,
                          ret_id);
}

static int step_move(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t seq,
                     int64_t profile_id, bool pinned)
{
    return rec_set_profile(sd_pg_writer(s), tenant_id, env, seq, profile_id, pinned);
}

static int step_remove(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t profile_id)
{
    struct sd_pg_params p;
    sd_pg_p_scope_id(&p, tenant_id, env, profile_id);
    int r = sd_pg_write_exec(sd_pg_writer(s), SLOT_PROFILE_DELETE, SQL_PROFILE_DELETE, &p, NULL);
    return r < 0 ? r : 0;
}

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

int sd_pg_profile_link(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       struct sd_link_ctx *ctx, const char *source,
                       const struct sd_customer_rec *cu, int64_t now)
{
    if (!sd_pg_writer(s)) {
        return -EINVAL;
    }
    return sd_profile_link(s, &steps, tenant_id, env, ctx, source, cu, now);
}

int sd_pg_profile_member_gone(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                              int64_t profile_id, int64_t now)
{
    if (!sd_pg_writer(s)) {
        return -EINVAL;
    }
    return sd_profile_member_gone(s, &steps, tenant_id, env, profile_id, now);
}

int sd_pg_profile_split(struct sd_store *s, int64_t tenant_id, enum sd_env env, int64_t profile_id,
                        const char *source, const char *customer_id, int64_t *ret_new_id)
{
    return sd_profile_split(s, &steps, tenant_id, env, profile_id, source, customer_id, ret_new_id);
}
