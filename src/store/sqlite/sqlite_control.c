/* sqlite_control.c — the control plane of the SQLite backend: tenants, API keys, the settings
 * version and the snapshot the auth cache is built from, all in DIR/control.db. Any thread may
 * call these; they all use the one `cp` connection under cp_lock. The data writer never locks
 * control.db (data connections attach it read-only), so none of these waits behind a data
 * transaction, however long. Other processes (the CLI) write the same file, so every write is
 * BEGIN IMMEDIATE (waiting on busy_timeout, which only another control-plane write can make
 * it do, for milliseconds) and bumps meta.settings_version in the same transaction when it
 * changed something, which is how running servers notice. Reads that need more than one
 * statement (a key list and its tenant check, the auth snapshot) run inside one BEGIN…COMMIT
 * so they see a single snapshot.
 *
 * Also here: the write transaction helpers of the data file's `ctl` connection (connectors,
 * segments, targets, deliveries), whose settings version bump lands in control.db, and the
 * one-time copy of the control tables out of a data file created before control.db existed. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "sqlite_internal.h"
#include "store/store.h"

static void read_tenant(sqlite3_stmt *st, struct sd_tenant *t)
{
    t->id = sqlite3_column_int64(st, 0);
    t->client_id = sd_sqlite_column_strdup(st, 1);
    t->name = sd_sqlite_column_strdup(st, 2);
    t->per_minute = sqlite3_column_int64(st, 3);
    t->burst = sqlite3_column_int64(st, 4);
    t->created_usec = sqlite3_column_int64(st, 5);
}

static void read_key(sqlite3_stmt *st, struct sd_key_info *k)
{
    k->key_id = sd_sqlite_column_strdup(st, 0);
    k->client_id = sd_sqlite_column_strdup(st, 1);
    k->tenant_id = sqlite3_column_int64(st, 2);
    k->env = sqlite3_column_int(st, 3) == 1 ? SD_ENV_PROD : SD_ENV_TEST;
    k->hash_hex = sd_sqlite_column_strdup(st, 4);
    k->created_usec = sqlite3_column_int64(st, 5);
    k->revoked_usec = sqlite3_column_int64(st, 6);
    k->last_used_usec = sqlite3_column_int64(st, 7);
}

static int collect_tenants(struct conn *c, struct sd_tenant **ret, size_t *ret_n)
{
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_TENANT_LIST);
    if (!st) {
        return -EIO;
    }
    struct sd_tenant *v = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            v = sd_realloc(v, cap * sizeof(*v));
        }
        read_tenant(st, &v[n++]);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        sd_tenants_free(v, n);
        return sd_sqlite_fail(c, rc, "tenant list");
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

static int collect_keys(struct conn *c, enum stmt_id id, const char *client_id,
                        struct sd_key_info **ret, size_t *ret_n)
{
    sqlite3_stmt *st = sd_sqlite_stmt(c, id);
    if (!st) {
        return -EIO;
    }
    if (client_id && sqlite3_bind_text(st, 1, client_id, -1, SQLITE_STATIC) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    struct sd_key_info *v = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            v = sd_realloc(v, cap * sizeof(*v));
        }
        read_key(st, &v[n++]);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        sd_keys_free(v, n);
        return sd_sqlite_fail(c, rc, "key list");
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

/* ---- control plane --------------------------------------------------------------------------- */

int sd_sqlite_cp_begin_write(struct sd_store *s)
{
    pthread_mutex_lock(&s->cp_lock);
    int r = sd_sqlite_run(s->cp, ST_BEGIN_IMMEDIATE);
    if (r < 0) {
        pthread_mutex_unlock(&s->cp_lock);
    }
    return r;
}

/* Bump the settings version if r >= 0 and something changed, commit or roll back, unlock. */
int sd_sqlite_cp_end_write(struct sd_store *s, int r, bool changed)
{
    if (r >= 0 && changed) {
        r = sd_sqlite_run(s->cp, ST_SETTINGS_BUMP);
    }
    r = sd_sqlite_tx_finish(s->cp, r);
    pthread_mutex_unlock(&s->cp_lock);
    return r;
}

int sd_sqlite_ctl_begin_write(struct sd_store *s)
{
    pthread_mutex_lock(&s->ctl_lock);
    int r = sd_sqlite_turn_ctl_take(s);
    if (r == 0) {
        r = sd_sqlite_run(s->ctl, ST_BEGIN_IMMEDIATE);
        if (r < 0) {
            sd_sqlite_turn_ctl_give(s);
        }
    }
    if (r < 0) {
        pthread_mutex_unlock(&s->ctl_lock);
    }
    return r;
}

int sd_sqlite_ctl_end_write(struct sd_store *s, int r, bool changed)
{
    r = sd_sqlite_tx_finish(s->ctl, r);
    sd_sqlite_turn_ctl_give(s);
    pthread_mutex_unlock(&s->ctl_lock);
    if (r >= 0 && changed) {
        /* The change is committed; only the notice can fail here. Report the change as made
         * (it is), and say that running servers may not see it until the next bump. */
        int br = sd_sqlite_cp_begin_write(s);
        br = br < 0 ? br : sd_sqlite_cp_end_write(s, 0, true);
        if (br < 0) {
            sd_log(SD_LOG_WARN, "cannot bump the settings version; servers see it later", "err=%d",
                   br);
        }
    }
    return r;
}

/* ---- the copy out of an old data file ------------------------------------------------------- */

int sd_sqlite_control_adopt(struct sd_store *s, const char *data_uri, int64_t data_version)
{
    /* Statements of a one-time step: prepared and finalized here, not cached. link_rule came
     * with data migration 0003. */
    static const char *const copy[] = {
        "INSERT OR IGNORE INTO main.tenants (id, client_id, name, per_minute, burst, "
        "created_usec) SELECT id, client_id, name, per_minute, burst, created_usec "
        "FROM adopt.tenants",
        "UPDATE main.tenants SET link_rule = (SELECT a.link_rule FROM adopt.tenants a "
        "WHERE a.id = tenants.id) WHERE id IN (SELECT id FROM adopt.tenants)",
        "INSERT OR IGNORE INTO main.api_keys (key_id, tenant_id, env, hash_hex, created_usec, "
        "revoked_usec) SELECT key_id, tenant_id, env, hash_hex, created_usec, revoked_usec "
        "FROM adopt.api_keys",
        /* Past both files' versions: every running server reloads. */
        "UPDATE main.meta SET v = max(v, coalesce((SELECT v FROM adopt.meta "
        "WHERE k = 'settings_version'), 0)) + 1 WHERE k = 'settings_version'",
    };
    pthread_mutex_lock(&s->cp_lock);
    struct conn *c = s->cp;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, "ATTACH ?1 AS adopt", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_bind_text(st, 1, data_uri, -1, SQLITE_STATIC);
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        int r = sd_sqlite_fail(c, rc, "attach data file");
        pthread_mutex_unlock(&s->cp_lock);
        return r;
    }
    int r = sd_sqlite_run(c, ST_BEGIN_IMMEDIATE);
    for (size_t i = 0; r >= 0 && i < sizeof(copy) / sizeof(copy[0]); i++) {
        if (i == 1 && data_version < 3) {
            continue;
        }
        st = NULL;
        rc = sqlite3_prepare_v2(c->db, copy[i], -1, &st, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) {
            r = sd_sqlite_fail(c, rc, "control plane copy");
        }
    }
    if (r >= 0) {
        sd_log(SD_LOG_INFO, "control plane copied to control.db", NULL);
    }
    r = sd_sqlite_tx_finish(c, r);
    if (sqlite3_exec(c->db, "DETACH adopt", NULL, NULL, NULL) != SQLITE_OK && r >= 0) {
        r = sd_sqlite_fail(c, SQLITE_ERROR, "detach data file");
    }
    pthread_mutex_unlock(&s->cp_lock);
    return r;
}

int sd_sqlite_tenant_create(struct sd_store *s, const char *client_id, const char *name)
{
    if (!client_id || !name) {
        return -EINVAL;
    }
    int r = sd_sqlite_cp_begin_write(s);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = sd_sqlite_stmt(s->cp, ST_TENANT_INSERT);
    if (!st) {
        r = -EIO;
    } else if ((sqlite3_bind_text(st, 1, client_id, -1, SQLITE_STATIC) |
                sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC) |
                sqlite3_bind_int64(st, 3, sd_now_usec())) != SQLITE_OK) {
        r = sd_sqlite_fail(s->cp, SQLITE_MISUSE, "bind");
    } else {
        r = sd_sqlite_step_done(s->cp, st, "tenant insert");
    }
    return sd_sqlite_cp_end_write(s, r, true);
}

int sd_sqlite_tenant_get(struct sd_store *s, const char *client_id, struct sd_tenant *ret)
{
    if (!client_id) {
        return -EINVAL;
    }
    pthread_mutex_lock(&s->cp_lock);
    struct conn *c = s->cp;
    int r = -EIO;
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_TENANT_GET);
    if (st) {
        if (sqlite3_bind_text(st, 1, client_id, -1, SQLITE_STATIC) != SQLITE_OK) {
            r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        } else {
            int rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                read_tenant(st, ret);
                r = 0;
            } else if (rc == SQLITE_DONE) {
                r = -ENOENT;
            } else {
                r = sd_sqlite_fail(c, rc, "tenant get");
            }
            sqlite3_reset(st);
        }
    }
    pthread_mutex_unlock(&s->cp_lock);
    return r;
}

int sd_sqlite_tenant_list(struct sd_store *s, struct sd_tenant **ret, size_t *ret_n)
{
    pthread_mutex_lock(&s->cp_lock);
    int r = collect_tenants(s->cp, ret, ret_n);
    pthread_mutex_unlock(&s->cp_lock);
    return r;
}

int sd_sqlite_tenant_set_limits(struct sd_store *s, const char *client_id, int64_t per_minute,
                                int64_t burst)
{
    if (!client_id || per_minute < 0 || burst < 0) {
        return -EINVAL;
    }
    int r = sd_sqlite_cp_begin_write(s);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = sd_sqlite_stmt(s->cp, ST_TENANT_SET_LIMITS);
    if (!st) {
        r = -EIO;
    } else if ((sqlite3_bind_text(st, 1, client_id, -1, SQLITE_STATIC) |
                sqlite3_bind_int64(st, 2, per_minute) | sqlite3_bind_int64(st, 3, burst)) !=
               SQLITE_OK) {
        r = sd_sqlite_fail(s->cp, SQLITE_MISUSE, "bind");
    } else {
        r = sd_sqlite_step_done(s->cp, st, "tenant set limits");
        if (r == 0 && sqlite3_changes(s->cp->db) == 0) {
            r = -ENOENT;
        }
    }
    return sd_sqlite_cp_end_write(s, r, true);
}

int sd_sqlite_key_insert(struct sd_store *s, const char *key_id, const char *client_id,
                         enum sd_env env, const char *hash_hex)
{
    if (!key_id || !client_id || !hash_hex || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    int r = sd_sqlite_cp_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *c = s->cp;
    int64_t tenant_id = 0;
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_TENANT_ID);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if (sqlite3_bind_text(st, 1, client_id, -1, SQLITE_STATIC) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        tenant_id = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) {
        r = -ENOENT;
        goto out;
    } else if (rc != SQLITE_ROW) {
        r = sd_sqlite_fail(c, rc, "tenant id");
        goto out;
    }
    st = sd_sqlite_stmt(c, ST_KEY_INSERT);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if ((sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 2, tenant_id) | sqlite3_bind_int(st, 3, (int)env) |
         sqlite3_bind_text(st, 4, hash_hex, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 5, sd_now_usec())) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    r = sd_sqlite_step_done(c, st, "key insert");
out:
    return sd_sqlite_cp_end_write(s, r, true);
}

int sd_sqlite_key_list(struct sd_store *s, const char *client_id, struct sd_key_info **ret,
                       size_t *ret_n)
{
    if (!client_id) {
        return -EINVAL;
    }
    pthread_mutex_lock(&s->cp_lock);
    struct conn *c = s->cp;
    /* One read transaction: the tenant check and the list see the same snapshot. */
    int r = sd_sqlite_run(c, ST_BEGIN);
    struct sd_key_info *v = NULL;
    size_t n = 0;
    if (r < 0) {
        goto out;
    }
    r = collect_keys(c, ST_KEY_LIST, client_id, &v, &n);
    if (r == 0 && n == 0) {
        sqlite3_stmt *st = sd_sqlite_stmt(c, ST_TENANT_ID);
        if (!st) {
            r = -EIO;
        } else if (sqlite3_bind_text(st, 1, client_id, -1, SQLITE_STATIC) != SQLITE_OK) {
            r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        } else {
            int rc = sqlite3_step(st);
            sqlite3_reset(st);
            r = rc == SQLITE_ROW    ? 0
                : rc == SQLITE_DONE ? -ENOENT
                                    : sd_sqlite_fail(c, rc, "tenant id");
        }
    }
    r = sd_sqlite_tx_finish(c, r);
    if (r == 0) {
        *ret = v;
        *ret_n = n;
        v = NULL;
        n = 0;
    }
out:
    sd_keys_free(v, n);
    pthread_mutex_unlock(&s->cp_lock);
    return r;
}

int sd_sqlite_key_revoke(struct sd_store *s, const char *key_id)
{
    if (!key_id) {
        return -EINVAL;
    }
    int r = sd_sqlite_cp_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *c = s->cp;
    bool changed = false;
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_KEY_REVOKE);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if ((sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 2, sd_now_usec())) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    r = sd_sqlite_step_done(c, st, "key revoke");
    if (r < 0) {
        goto out;
    }
    changed = sqlite3_changes(c->db) > 0;
    if (!changed) {
        /* Unknown, or revoked before: the first revocation time stays. */
        st = sd_sqlite_stmt(c, ST_KEY_EXISTS);
        if (!st) {
            r = -EIO;
            goto out;
        }
        if (sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC) != SQLITE_OK) {
            r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
            goto out;
        }
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        r = rc == SQLITE_ROW    ? 0
            : rc == SQLITE_DONE ? -ENOENT
                                : sd_sqlite_fail(c, rc, "key exists");
    }
out:
    return sd_sqlite_cp_end_write(s, r, changed);
}

int sd_sqlite_settings_version(struct sd_store *s, int64_t *ret)
{
    pthread_mutex_lock(&s->cp_lock);
    struct conn *c = s->cp;
    int r = -EIO;
    sqlite3_stmt *st = sd_sqlite_stmt(c, ST_SETTINGS_GET);
    if (st) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *ret = sqlite3_column_int64(st, 0);
            r = 0;
        } else {
            r = sd_sqlite_fail(c, rc, "settings version");
        }
        sqlite3_reset(st);
    }
    pthread_mutex_unlock(&s->cp_lock);
    return r;
}

int sd_sqlite_auth_snapshot(struct sd_store *s, struct sd_tenant **ret_t, size_t *ret_nt,
                            struct sd_key_info **ret_k, size_t *ret_nk)
{
    pthread_mutex_lock(&s->cp_lock);
    struct conn *c = s->cp;
    struct sd_tenant *t = NULL;
    size_t nt = 0;
    struct sd_key_info *k = NULL;
    size_t nk = 0;
    int r = sd_sqlite_run(c, ST_BEGIN);
    if (r < 0) {
        goto out;
    }
    r = collect_tenants(c, &t, &nt);
    if (r == 0) {
        r = collect_keys(c, ST_KEY_LIST_ALL, NULL, &k, &nk);
    }
    r = sd_sqlite_tx_finish(c, r);
    if (r == 0) {
        *ret_t = t;
        *ret_nt = nt;
        *ret_k = k;
        *ret_nk = nk;
        t = NULL;
        nt = 0;
        k = NULL;
        nk = 0;
    }
out:
    sd_tenants_free(t, nt);
    sd_keys_free(k, nk);
    pthread_mutex_unlock(&s->cp_lock);
    return r;
}
