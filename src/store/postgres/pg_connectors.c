/* pg_connectors.c — connectors configured at run time and their committed state, on
 * PostgreSQL. Configuration is control plane (sd_pg_tx_run on a pool connection, the settings
 * version bumped on every change so every node's scheduler reloads within a second). The state
 * document is written by the writer only, inside the transaction of the job that stored the
 * records it describes, and read through the pool. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "pg_internal.h"
#include "store/store.h"

enum {
    S_CONNECTOR_INSERT = 96,
    S_CONNECTOR_UPDATE,
    S_CONNECTOR_GET,
    S_CONNECTOR_LIST,
    S_CONNECTOR_LIST_ALL,
    S_CONNECTOR_DELETE,
    S_CONNECTOR_STATE_DELETE,
    S_CONNECTOR_REQUEST_RUN,
    S_CONNECTOR_STATE_GET,
    S_CONNECTOR_STATE_PUT,
    S_BUMP,
};

#define CONF_COLS                                                                                  \
    "SELECT c.id, c.tenant_id, t.client_id, c.env, c.type, c.schedule, c.settings, c.mapping,"     \
    " c.run_requested_usec, c.created_usec, c.updated_usec FROM connectors c"                      \
    " JOIN tenants t ON t.id = c.tenant_id"

static void read_conf(const PGresult *res, int i, struct sd_connector_conf *c)
{
    c->id = sd_pg_strdup(res, i, 0);
    c->tenant_id = sd_pg_int64(res, i, 1);
    c->client_id = sd_pg_strdup(res, i, 2);
    c->env = sd_pg_int64(res, i, 3) == 1 ? SD_ENV_PROD : SD_ENV_TEST;
    c->type = sd_pg_strdup(res, i, 4);
    c->schedule = sd_pg_strdup(res, i, 5);
    c->settings = sd_pg_strdup(res, i, 6);
    c->mapping = sd_pg_strdup(res, i, 7);
    c->run_requested_usec = sd_pg_int64(res, i, 8);
    c->created_usec = sd_pg_int64(res, i, 9);
    c->updated_usec = sd_pg_int64(res, i, 10);
}

struct put_args {
    const struct sd_connector_conf *c;
    bool create;
};

static int tx_put(struct pgconn *k, void *arg)
{
    const struct put_args *a = arg;
    const struct sd_connector_conf *c = a->c;
    struct sd_pg_params p = {0};
    int r;
    if (a->create) {
        sd_pg_p_text(&p, c->id);
        sd_pg_p_int(&p, c->tenant_id);
        sd_pg_p_int(&p, (int64_t)c->env);
        sd_pg_p_text(&p, c->type);
        sd_pg_p_text(&p, c->schedule);
        sd_pg_p_text(&p, c->settings);
        sd_pg_p_text(&p, c->mapping);
        sd_pg_p_int(&p, sd_now_usec());
        r = sd_pg_exec(k, S_CONNECTOR_INSERT,
                       "INSERT INTO connectors (id, tenant_id, env, type, schedule, settings,"
                       " mapping, created_usec, updated_usec)"
                       " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
                       &p, NULL);
        return r < 0 ? r : 0;
    }
    sd_pg_p_text(&p, c->id);
    sd_pg_p_text(&p, c->schedule);
    sd_pg_p_text(&p, c->settings);
    sd_pg_p_text(&p, c->mapping);
    sd_pg_p_int(&p, sd_now_usec());
    r = sd_pg_exec(k, S_CONNECTOR_UPDATE,
                   "UPDATE connectors SET schedule = $2, settings = $3, mapping = $4,"
                   " updated_usec = $5 WHERE id = $1",
                   &p, NULL);
    return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

int sd_pg_connector_put(struct sd_store *s, const struct sd_connector_conf *c, bool create)
{
    if (!c || !c->id || !c->schedule || !c->settings || !c->mapping ||
        (create && (!c->type || !sd_pg_env_ok(c->env)))) {
        return -EINVAL;
    }
    struct put_args a = {.c = c, .create = create};
    return sd_pg_tx_run(s, NULL, true, tx_put, &a);
}

int sd_pg_connector_get(struct sd_store *s, const char *id, struct sd_connector_conf *ret)
{
    if (!id) {
        return -EINVAL;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, id);
    PGresult *res = NULL;
    int r = sd_pg_exec_pooled(s, S_CONNECTOR_GET, CONF_COLS " WHERE c.id = $1", &p, &res);
    if (r == 1) {
        read_conf(res, 0, ret);
        r = 0;
    } else if (r == 0) {
        r = -ENOENT;
    }
    PQclear(res);
    return r;
}

int sd_pg_connector_list(struct sd_store *s, int64_t tenant_id, struct sd_connector_conf **ret,
                         size_t *ret_n)
{
    PGresult *res = NULL;
    int n;
    if (tenant_id) {
        struct sd_pg_params p = {0};
        sd_pg_p_int(&p, tenant_id);
        n = sd_pg_exec_pooled(s, S_CONNECTOR_LIST,
                              CONF_COLS " WHERE c.tenant_id = $1 ORDER BY c.created_usec, c.id", &p,
                              &res);
    } else {
        n = sd_pg_exec_pooled(s, S_CONNECTOR_LIST_ALL, CONF_COLS " ORDER BY c.created_usec, c.id",
                              NULL, &res);
    }
    if (n < 0) {
        return n;
    }
    struct sd_connector_conf *v = n ? sd_calloc((size_t)n, sizeof(*v)) : NULL;
    for (int i = 0; i < n; i++) {
        read_conf(res, i, &v[i]);
    }
    PQclear(res);
    *ret = v;
    *ret_n = (size_t)n;
    return 0;
}

/* sd_pg_outbox_settle_connector: pg_outbox.c. */

struct id_args {
    const char *id;
    int64_t usec;
};

static int tx_delete(struct pgconn *k, void *arg)
{
    const struct id_args *a = arg;
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, a->id);
    int r = sd_pg_exec(k, S_CONNECTOR_DELETE, "DELETE FROM connectors WHERE id = $1", &p, NULL);
    if (r <= 0) {
        return r < 0 ? r : -ENOENT;
    }
    r = sd_pg_exec(k, S_CONNECTOR_STATE_DELETE,
                   "DELETE FROM connector_state WHERE connector_id = $1", &p, NULL);
    if (r < 0) {
        return r;
    }
    /* Its waiting outbox items are settled at once, and its remote references go. */
    return sd_pg_outbox_settle_connector(k, a->id, "the connector was deleted");
}

int sd_pg_connector_delete(struct sd_store *s, const char *id)
{
    if (!id) {
        return -EINVAL;
    }
    struct id_args a = {.id = id};
    return sd_pg_tx_run(s, NULL, true, tx_delete, &a);
}

static int tx_request_run(struct pgconn *k, void *arg)
{
    const struct id_args *a = arg;
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, a->id);
    sd_pg_p_int(&p, a->usec);
    int r = sd_pg_exec(k, S_CONNECTOR_REQUEST_RUN,
                       "UPDATE connectors SET run_requested_usec = $2 WHERE id = $1", &p, NULL);
    return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

int sd_pg_connector_request_run(struct sd_store *s, const char *id, int64_t usec)
{
    if (!id) {
        return -EINVAL;
    }
    struct id_args a = {.id = id, .usec = usec};
    return sd_pg_tx_run(s, NULL, true, tx_request_run, &a);
}

int sd_pg_connector_state_put(struct sd_store *s, const char *id, const char *doc)
{
    if (!id || !doc) {
        return -EINVAL;
    }
    struct pgconn *c = sd_pg_writer(s);
    if (!c) {
        return -EINVAL;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, id);
    sd_pg_p_text(&p, doc);
    sd_pg_p_int(&p, sd_now_usec());
    int r = sd_pg_exec(c, S_CONNECTOR_STATE_PUT,
                       "INSERT INTO connector_state (connector_id, doc, updated_usec)"
                       " VALUES ($1, $2, $3) ON CONFLICT (connector_id) DO UPDATE SET"
                       " doc = excluded.doc, updated_usec = excluded.updated_usec",
                       &p, NULL);
    return r < 0 ? r : 0;
}

int sd_pg_connector_state_get(struct sd_store *s, const char *id, char **ret_doc)
{
    if (!id) {
        return -EINVAL;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, id);
    PGresult *res = NULL;
    int r = sd_pg_exec_pooled(s, S_CONNECTOR_STATE_GET,
                              "SELECT doc FROM connector_state WHERE connector_id = $1", &p, &res);
    if (r == 1) {
        *ret_doc = sd_pg_strdup(res, 0, 0);
        r = 0;
    } else if (r == 0) {
        r = -ENOENT;
    }
    PQclear(res);
    return r;
}
