/* pg_leases.c — connector run leases with fencing tokens (store.h: run_lease_*,
 * connector_state_put_fenced), on PostgreSQL. See 0005_connector_leases.sql.
 *
 * Take, renew and release are one statement each, in a transaction of their own on a pool
 * connection (sd_pg_tx_run, no settings version bump). A take is one
 * INSERT … ON CONFLICT DO UPDATE … WHERE (expired, released, the same owner or the gone owner
 * the caller names) RETURNING fence: the conflicting row is locked and the WHERE evaluated on its
 * latest committed version, so of two nodes taking at once exactly one gets a row back and the
 * other waits the few microseconds of the winner's commit, then sees the new lease and gets none
 * (-EBUSY). Rows are locked, not skipped (SKIP LOCKED would answer "busy" for a lease whose holder
 * is only releasing it); no statement holds a lease row longer than its own transaction, except the
 * fenced put below, which holds it to the writer's COMMIT.
 *
 * Time is the server's (clock_timestamp() in µs), not the node's: nodes with skewed clocks
 * agree on when a lease expires. SQLite uses the host's clock, which all its processes share;
 * through the interface the outcomes are the same.
 *
 * The fenced state put (writer, inside its transaction) reads the lease row FOR SHARE: a take
 * that committed before it makes the check fail (-ESTALE); one that comes after waits for the
 * writer's COMMIT, so no takeover can slip between the check and the commit of what the run
 * wrote. Slots 960..964 (pg_internal.h leaves 896..1023 unassigned). */
#include "pg_leases.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "pg_internal.h"
#include "store/store.h"

enum {
    S_LEASE_TAKE = 960,
    S_LEASE_RENEW,
    S_LEASE_RELEASE,
    S_LEASE_CHECK,
    S_LEASE_HOLDER,
    S_LEASE_LIVE,
};

#define NOW_USEC "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"

struct take_args {
    const char *id;
    const char *owner;
    const char *gone_owner;
    int64_t lease_usec;
    bool want_holder;
    int64_t fence;
    char *holder; /* -EBUSY: who holds it */
};

static int tx_take(struct pgconn *k, void *arg)
{
    struct take_args *a = arg;
    free(a->holder); /* a retried transaction starts over */
    a->holder = NULL;
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, a->id);
    sd_pg_p_text(&p, a->owner);
    sd_pg_p_int(&p, a->lease_usec);
    sd_pg_p_text(&p, a->gone_owner);
    PGresult *res = NULL;
    int r = sd_pg_exec(k, S_LEASE_TAKE,
                       "INSERT INTO connector_leases AS l (connector_id, owner, fence, until_usec)"
                       " VALUES ($1, $2, 1, " NOW_USEC " + $3::bigint)"
                       " ON CONFLICT (connector_id) DO UPDATE SET owner = excluded.owner,"
                       " fence = l.fence + 1, until_usec = excluded.until_usec"
                       " WHERE l.until_usec <= " NOW_USEC " OR l.owner = excluded.owner"
                       " OR l.owner = $4"
                       " RETURNING fence",
                       &p, &res);
    if (r == 1) {
        a->fence = sd_pg_int64(res, 0, 0);
    }
    PQclear(res);
    res = NULL;
    if (r != 0) {
        return r < 0 ? r : 0;
    }
    if (a->want_holder) {
        struct sd_pg_params q = {0};
        sd_pg_p_text(&q, a->id);
        r = sd_pg_exec(k, S_LEASE_HOLDER,
                       "SELECT owner FROM connector_leases WHERE connector_id = $1", &q, &res);
        if (r == 1) {
            a->holder = sd_pg_strdup(res, 0, 0);
        }
        PQclear(res);
        if (r < 0) {
            return r;
        }
    }
    return -EBUSY;
}

int sd_pg_run_lease_take(struct sd_store *s, const char *id, const char *owner,
                         const char *gone_owner, int64_t lease_usec, int64_t *ret_fence,
                         char **ret_holder)
{
    if (!id || !owner || lease_usec <= 0) {
        return -EINVAL;
    }
    struct take_args a = {.id = id,
                          .owner = owner,
                          .gone_owner = gone_owner,
                          .lease_usec = lease_usec,
                          .want_holder = ret_holder != NULL};
    int r = sd_pg_tx_run(s, NULL, false, tx_take, &a);
    if (r == 0) {
        *ret_fence = a.fence;
    } else if (r == -EBUSY && ret_holder) {
        *ret_holder = a.holder;
        a.holder = NULL;
    }
    free(a.holder);
    return r;
}

struct update_args {
    const char *id;
    int64_t fence;
    int64_t lease_usec; /* 0: release */
};

static int tx_update(struct pgconn *k, void *arg)
{
    const struct update_args *a = arg;
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, a->id);
    sd_pg_p_int(&p, a->fence);
    int r;
    if (a->lease_usec > 0) {
        sd_pg_p_int(&p, a->lease_usec);
        r = sd_pg_exec(k, S_LEASE_RENEW,
                       "UPDATE connector_leases SET until_usec = " NOW_USEC " + $3::bigint"
                       " WHERE connector_id = $1 AND fence = $2 AND until_usec > 0",
                       &p, NULL);
    } else {
        r = sd_pg_exec(k, S_LEASE_RELEASE,
                       "UPDATE connector_leases SET until_usec = 0"
                       " WHERE connector_id = $1 AND fence = $2 AND until_usec > 0",
                       &p, NULL);
    }
    return r < 0 ? r : r == 0 ? -ESTALE : 0;
}

int sd_pg_run_lease_renew(struct sd_store *s, const char *id, int64_t fence, int64_t lease_usec)
{
    if (!id || lease_usec <= 0) {
        return -EINVAL;
    }
    struct update_args a = {.id = id, .fence = fence, .lease_usec = lease_usec};
    return sd_pg_tx_run(s, NULL, false, tx_update, &a);
}

int sd_pg_run_lease_release(struct sd_store *s, const char *id, int64_t fence)
{
    if (!id) {
        return -EINVAL;
    }
    struct update_args a = {.id = id, .fence = fence};
    return sd_pg_tx_run(s, NULL, false, tx_update, &a);
}

int sd_pg_connector_state_put_fenced(struct sd_store *s, const char *id, const char *doc,
                                     int64_t fence)
{
    if (!id || !doc) {
        return -EINVAL;
    }
    int r = sd_pg_run_lease_check(s, id, fence);
    return r < 0 ? r : sd_pg_connector_state_put(s, id, doc);
}

int sd_pg_run_lease_check(struct sd_store *s, const char *id, int64_t fence)
{
    struct pgconn *c = sd_pg_writer(s);
    if (!c) {
        return -EINVAL;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, id);
    sd_pg_p_int(&p, fence);
    int r = sd_pg_exec(c, S_LEASE_CHECK,
                       "SELECT 1 FROM connector_leases"
                       " WHERE connector_id = $1 AND fence = $2 AND until_usec > 0 FOR SHARE",
                       &p, NULL);
    if (r < 0) {
        return r;
    }
    return r == 0 ? -ESTALE : 0;
}

int sd_pg_run_lease_holder(struct sd_store *s, const char *id, char **ret_owner,
                           int64_t *ret_until_usec)
{
    struct pgconn *c = NULL;
    int r = sd_pg_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, id);
    PGresult *res = NULL;
    r = sd_pg_exec(c, S_LEASE_LIVE,
                   "SELECT owner, until_usec FROM connector_leases"
                   " WHERE connector_id = $1 AND until_usec > " NOW_USEC,
                   &p, &res);
    if (r == 1) {
        *ret_owner = sd_pg_strdup(res, 0, 0);
        *ret_until_usec = sd_pg_int64(res, 0, 1);
        r = 0;
    } else if (r == 0) {
        r = -ENOENT;
    }
    PQclear(res);
    sd_pg_pool_put(s, c);
    return r;
}
