/* pg_control.c — the control plane of the PostgreSQL backend: tenants, API keys, the settings
 * version and the auth snapshot. Any thread; each call borrows a pool connection. Writes run
 * in sd_pg_tx_run transactions (retried on serialization failures) and bump
 * meta('settings_version') in the same transaction when they changed something, which is how
 * running servers on every node notice within a second. They take no lock the write path
 * holds (the writer's advisory lock and its row locks are on other rows), so revoking a key
 * never waits behind a long import. Reads that need more than one statement (the key list
 * and its tenant check, the auth snapshot) run in one REPEATABLE READ transaction: one
 * snapshot. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "pg_internal.h"
#include "store/store.h"

#define SNAPSHOT_READ "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"

enum {
    S_TENANT_INSERT = 64,
    S_TENANT_GET,
    S_TENANT_LIST,
    S_TENANT_ID,
    S_TENANT_SET_LIMITS,
    S_KEY_INSERT,
    S_KEY_LIST,
    S_KEY_LIST_ALL,
    S_KEY_REVOKE,
    S_KEY_EXISTS,
    S_SETTINGS_GET,
};

#define TENANT_COLS "SELECT id, client_id, name, per_minute, burst, created_usec FROM tenants"

static void read_tenant(const PGresult *res, int i, struct sd_tenant *t)
{
    t->id = sd_pg_int64(res, i, 0);
    t->client_id = sd_pg_strdup(res, i, 1);
    t->name = sd_pg_strdup(res, i, 2);
    t->per_minute = sd_pg_int64(res, i, 3);
    t->burst = sd_pg_int64(res, i, 4);
    t->created_usec = sd_pg_int64(res, i, 5);
}

static void read_key(const PGresult *res, int i, struct sd_key_info *k)
{
    k->key_id = sd_pg_strdup(res, i, 0);
    k->client_id = sd_pg_strdup(res, i, 1);
    k->tenant_id = sd_pg_int64(res, i, 2);
    k->env = sd_pg_int64(res, i, 3) == 1 ? SD_ENV_PROD : SD_ENV_TEST;
    k->hash_hex = sd_pg_strdup(res, i, 4);
    k->created_usec = sd_pg_int64(res, i, 5);
    k->revoked_usec = sd_pg_int64(res, i, 6);
    k->last_used_usec = sd_pg_int64(res, i, 7);
}

static int collect_tenants(struct pgconn *c, struct sd_tenant **ret, size_t *ret_n)
{
    PGresult *res = NULL;
    int n = sd_pg_exec(c, S_TENANT_LIST, TENANT_COLS " ORDER BY id", NULL, &res);
    if (n < 0) {
        return n;
    }
    struct sd_tenant *v = n ? sd_calloc((size_t)n, sizeof(*v)) : NULL;
    for (int i = 0; i < n; i++) {
        read_tenant(res, i, &v[i]);
    }
    PQclear(res);
    *ret = v;
    *ret_n = (size_t)n;
    return 0;
}

static int collect_keys(struct pgconn *c, const char *client_id, struct sd_key_info **ret,
                        size_t *ret_n)
{
    struct sd_pg_params p = {0};
    PGresult *res = NULL;
    int n;
    if (client_id) {
        sd_pg_p_text(&p, client_id);
        n = sd_pg_exec(c, S_KEY_LIST,
                       "SELECT k.key_id, t.client_id, k.tenant_id, k.env, NULL, k.created_usec,"
                       " k.revoked_usec, k.last_used_usec"
                       " FROM api_keys k JOIN tenants t ON t.id = k.tenant_id"
                       " WHERE t.client_id = $1 ORDER BY k.created_usec, k.key_id",
                       &p, &res);
    } else {
        n = sd_pg_exec(c, S_KEY_LIST_ALL,
                       "SELECT k.key_id, t.client_id, k.tenant_id, k.env, k.hash_hex,"
                       " k.created_usec, k.revoked_usec, k.last_used_usec FROM api_keys k"
                       " JOIN tenants t ON t.id = k.tenant_id ORDER BY k.created_usec, k.key_id",
                       NULL, &res);
    }
    if (n < 0) {
        return n;
    }
    struct sd_key_info *v = n ? sd_calloc((size_t)n, sizeof(*v)) : NULL;
    for (int i = 0; i < n; i++) {
        read_key(res, i, &v[i]);
    }
    PQclear(res);
    *ret = v;
    *ret_n = (size_t)n;
    return 0;
}

/* The tenant id of client_id: 1 (found), 0 (none) or a negative errno. */
static int tenant_id(struct pgconn *c, const char *client_id, int64_t *ret)
{
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, client_id);
    PGresult *res = NULL;
    int n = sd_pg_exec(c, S_TENANT_ID, "SELECT id FROM tenants WHERE client_id = $1", &p, &res);
    if (n == 1) {
        *ret = sd_pg_int64(res, 0, 0);
    }
    PQclear(res);
    return n;
}

struct tenant_args {
    const char *client_id;
    const char *name;
    int64_t per_minute, burst;
};

static int tx_tenant_create(struct pgconn *c, void *arg)
{
    const struct tenant_args *a = arg;
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, a->client_id);
    sd_pg_p_text(&p, a->name);
    sd_pg_p_int(&p, sd_now_usec());
    int r = sd_pg_exec(c, S_TENANT_INSERT,
                       "INSERT INTO tenants (client_id, name, created_usec) VALUES ($1, $2, $3)",
                       &p, NULL);
    return r < 0 ? r : 0;
}

int sd_pg_tenant_create(struct sd_store *s, const char *client_id, const char *name)
{
    if (!client_id || !name) {
        return -EINVAL;
    }
    struct tenant_args a = {.client_id = client_id, .name = name};
    return sd_pg_tx_run(s, NULL, true, tx_tenant_create, &a);
}

int sd_pg_tenant_get(struct sd_store *s, const char *client_id, struct sd_tenant *ret)
{
    if (!client_id) {
        return -EINVAL;
    }
    struct pgconn *c = NULL;
    int r = sd_pg_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, client_id);
    PGresult *res = NULL;
    r = sd_pg_exec(c, S_TENANT_GET, TENANT_COLS " WHERE client_id = $1", &p, &res);
    if (r == 1) {
        read_tenant(res, 0, ret);
        r = 0;
    } else if (r == 0) {
        r = -ENOENT;
    }
    PQclear(res);
    sd_pg_pool_put(s, c);
    return r;
}

int sd_pg_tenant_list(struct sd_store *s, struct sd_tenant **ret, size_t *ret_n)
{
    struct pgconn *c = NULL;
    int r = sd_pg_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    r = collect_tenants(c, ret, ret_n);
    sd_pg_pool_put(s, c);
    return r;
}

static int tx_tenant_set_limits(struct pgconn *c, void *arg)
{
    const struct tenant_args *a = arg;
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, a->client_id);
    sd_pg_p_int(&p, a->per_minute);
    sd_pg_p_int(&p, a->burst);
    int r = sd_pg_exec(c, S_TENANT_SET_LIMITS,
                       "UPDATE tenants SET per_minute = $2, burst = $3 WHERE client_id = $1", &p,
                       NULL);
    return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

int sd_pg_tenant_set_limits(struct sd_store *s, const char *client_id, int64_t per_minute,
                            int64_t burst)
{
    if (!client_id || per_minute < 0 || burst < 0) {
        return -EINVAL;
    }
    struct tenant_args a = {.client_id = client_id, .per_minute = per_minute, .burst = burst};
    return sd_pg_tx_run(s, NULL, true, tx_tenant_set_limits, &a);
}

struct key_args {
    const char *key_id, *client_id, *hash_hex;
    enum sd_env env;
    bool changed;
};

static int tx_key_insert(struct pgconn *c, void *arg)
{
    const struct key_args *a = arg;
    int64_t tid = 0;
    int r = tenant_id(c, a->client_id, &tid);
    if (r <= 0) {
        return r < 0 ? r : -ENOENT;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, a->key_id);
    sd_pg_p_int(&p, tid);
    sd_pg_p_int(&p, (int64_t)a->env);
    sd_pg_p_text(&p, a->hash_hex);
    sd_pg_p_int(&p, sd_now_usec());
    r = sd_pg_exec(c, S_KEY_INSERT,
                   "INSERT INTO api_keys (key_id, tenant_id, env, hash_hex, created_usec)"
                   " VALUES ($1, $2, $3, $4, $5)",
                   &p, NULL);
    return r < 0 ? r : 0;
}

int sd_pg_key_insert(struct sd_store *s, const char *key_id, const char *client_id,
                     enum sd_env env, const char *hash_hex)
{
    if (!key_id || !client_id || !hash_hex || !sd_pg_env_ok(env)) {
        return -EINVAL;
    }
    struct key_args a = {.key_id = key_id, .client_id = client_id, .hash_hex = hash_hex,
                         .env = env};
    return sd_pg_tx_run(s, NULL, true, tx_key_insert, &a);
}

struct key_list_args {
    const char *client_id;
    struct sd_key_info *v;
    size_t n;
};

static int tx_key_list(struct pgconn *c, void *arg)
{
    struct key_list_args *a = arg;
    sd_keys_free(a->v, a->n); /* a retried transaction starts over */
    a->v = NULL;
    a->n = 0;
    int r = collect_keys(c, a->client_id, &a->v, &a->n);
    if (r == 0 && a->n == 0) {
        int64_t tid = 0;
        r = tenant_id(c, a->client_id, &tid);
        r = r < 0 ? r : r == 0 ? -ENOENT : 0;
    }
    return r;
}

int sd_pg_key_list(struct sd_store *s, const char *client_id, struct sd_key_info **ret,
                   size_t *ret_n)
{
    if (!client_id) {
        return -EINVAL;
    }
    struct key_list_args a = {.client_id = client_id};
    int r = sd_pg_tx_run(s, SNAPSHOT_READ, false, tx_key_list, &a);
    if (r < 0) {
        sd_keys_free(a.v, a.n);
        return r;
    }
    *ret = a.v;
    *ret_n = a.n;
    return 0;
}

static int tx_key_revoke(struct pgconn *c, void *arg)
{
    struct key_args *a = arg;
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, a->key_id);
    sd_pg_p_int(&p, sd_now_usec());
    int r = sd_pg_exec(c, S_KEY_REVOKE,
                       "UPDATE api_keys SET revoked_usec = $2 WHERE key_id = $1"
                       " AND revoked_usec = 0",
                       &p, NULL);
    if (r < 0) {
        return r;
    }
    a->changed = r > 0;
    if (r > 0) {
        return 0;
    }
    /* Unknown, or revoked before: the first revocation time stays. */
    struct sd_pg_params q = {0};
    sd_pg_p_text(&q, a->key_id);
    r = sd_pg_exec(c, S_KEY_EXISTS, "SELECT 1 FROM api_keys WHERE key_id = $1", &q, NULL);
    return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

/* Bumps the settings version only when a key changed (sd_pg_tx_run's bump is all or nothing,
 * so the bump is done here). */
static int tx_key_revoke_bump(struct pgconn *c, void *arg)
{
    struct key_args *a = arg;
    int r = tx_key_revoke(c, arg);
    if (r == 0 && a->changed) {
        r = sd_pg_exec(c, S_SETTINGS_GET + 1,
                       "UPDATE meta SET v = v + 1 WHERE k = 'settings_version'", NULL, NULL);
        r = r < 0 ? r : 0;
    }
    return r;
}

int sd_pg_key_revoke(struct sd_store *s, const char *key_id)
{
    if (!key_id) {
        return -EINVAL;
    }
    struct key_args a = {.key_id = key_id};
    return sd_pg_tx_run(s, NULL, false, tx_key_revoke_bump, &a);
}

int sd_pg_settings_version(struct sd_store *s, int64_t *ret)
{
    struct pgconn *c = NULL;
    int r = sd_pg_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    PGresult *res = NULL;
    r = sd_pg_exec(c, S_SETTINGS_GET, "SELECT v FROM meta WHERE k = 'settings_version'", NULL,
                   &res);
    if (r == 1) {
        *ret = sd_pg_int64(res, 0, 0);
        r = 0;
    } else if (r >= 0) {
        r = -EIO;
    }
    PQclear(res);
    sd_pg_pool_put(s, c);
    return r;
}

struct snapshot_args {
    struct sd_tenant *t;
    size_t nt;
    struct sd_key_info *k;
    size_t nk;
};

static int tx_snapshot(struct pgconn *c, void *arg)
{
    struct snapshot_args *a = arg;
    sd_tenants_free(a->t, a->nt);
    sd_keys_free(a->k, a->nk);
    memset(a, 0, sizeof(*a));
    int r = collect_tenants(c, &a->t, &a->nt);
    if (r == 0) {
        r = collect_keys(c, NULL, &a->k, &a->nk);
    }
    return r;
}

int sd_pg_auth_snapshot(struct sd_store *s, struct sd_tenant **ret_t, size_t *ret_nt,
                        struct sd_key_info **ret_k, size_t *ret_nk)
{
    struct snapshot_args a = {0};
    int r = sd_pg_tx_run(s, SNAPSHOT_READ, false, tx_snapshot, &a);
    if (r < 0) {
        sd_tenants_free(a.t, a.nt);
        sd_keys_free(a.k, a.nk);
        return r;
    }
    *ret_t = a.t;
    *ret_nt = a.nt;
    *ret_k = a.k;
    *ret_nk = a.nk;
    return 0;
}
