/* pg_runs.c — the connector run history of the PostgreSQL backend (store/runs.h), table
 * connector_runs (0008_runs_alerts.sql).
 *
 * A record is one transaction on a pool connection (sd_pg_tx_run, no settings version bump):
 * for a fenced run it first reads the lease row FOR SHARE, so a take that committed before
 * makes it fail (-ESTALE) and one that comes after waits for this COMMIT; then the insert and
 * the prune of the connector's rows beyond SD_RUNS_KEEP. Two runs of one connector never record
 * at once (one lease), so the prune needs no lock of its own. Slots 900..903 (pg_internal.h
 * leaves 896..1023 unassigned; pg_leases.c has 960..964). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "pg_internal.h"
#include "store/runs.h"

enum {
    S_RUN_CHECK = 900,
    S_RUN_INSERT,
    S_RUN_PRUNE,
    S_RUN_LIST,
};

struct record_args {
    const struct sd_run *run;
    int64_t fence;
};

static int tx_record(struct pgconn *k, void *arg)
{
    const struct record_args *a = arg;
    const struct sd_run *run = a->run;
    int r;
    if (a->fence) {
        struct sd_pg_params p = {0};
        sd_pg_p_text(&p, run->connector_id);
        sd_pg_p_int(&p, a->fence);
        r = sd_pg_exec(k, S_RUN_CHECK,
                       "SELECT 1 FROM connector_leases"
                       " WHERE connector_id = $1 AND fence = $2 AND until_usec > 0 FOR SHARE",
                       &p, NULL);
        if (r < 0) {
            return r;
        }
        if (r == 0) {
            return -ESTALE;
        }
    }
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, run->run_id);
    sd_pg_p_int(&p, run->tenant_id);
    sd_pg_p_int(&p, (int64_t)run->env);
    sd_pg_p_text(&p, run->connector_id);
    sd_pg_p_text(&p, run->trigger);
    sd_pg_p_int(&p, run->started_usec);
    sd_pg_p_int(&p, run->finished_usec);
    sd_pg_p_int(&p, (int64_t)run->status);
    sd_pg_p_int(&p, run->records_in);
    sd_pg_p_int(&p, run->records_rejected);
    sd_pg_p_int(&p, run->records_unchanged);
    sd_pg_p_text(&p, run->error);
    sd_pg_p_bool(&p, run->dry_run);
    r = sd_pg_exec(k, S_RUN_INSERT,
                   "INSERT INTO connector_runs (run_id, tenant_id, env, connector_id, trigger,"
                   " started_usec, finished_usec, status, records_in, records_rejected,"
                   " records_unchanged, error, dry_run)"
                   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                   &p, NULL);
    if (r < 0) {
        return r;
    }
    struct sd_pg_params q = {0};
    sd_pg_p_text(&q, run->connector_id);
    sd_pg_p_int(&q, SD_RUNS_KEEP - 1);
    /* "Keep at most the last 1,000 runs per connector": everything older than the 1,000th. */
    r = sd_pg_exec(k, S_RUN_PRUNE,
                   "DELETE FROM connector_runs WHERE connector_id = $1 AND seq <"
                   " (SELECT seq FROM connector_runs WHERE connector_id = $1 ORDER BY seq DESC"
                   " LIMIT 1 OFFSET $2)",
                   &q, NULL);
    return r < 0 ? r : 0;
}

static int runs_record(struct sd_store *s, const struct sd_run *run, int64_t fence)
{
    if (!sd_run_valid(run)) {
        return -EINVAL;
    }
    struct record_args a = {.run = run, .fence = fence};
    return sd_pg_tx_run(s, NULL, false, tx_record, &a);
}

static int runs_list(struct sd_store *s, int64_t tenant_id, const char *connector_id,
                     int64_t before_seq, size_t limit, struct sd_run **ret, size_t *ret_n)
{
    if (!connector_id || limit == 0 || limit > SD_RUNS_PAGE_MAX || before_seq < 0) {
        return -EINVAL;
    }
    struct pgconn *c = NULL;
    int r = sd_pg_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, connector_id);
    sd_pg_p_int(&p, tenant_id);
    sd_pg_p_int(&p, before_seq > 0 ? before_seq : INT64_MAX);
    sd_pg_p_int(&p, (int64_t)limit);
    PGresult *res = NULL;
    r = sd_pg_exec(c, S_RUN_LIST,
                   "SELECT seq, run_id, tenant_id, env, connector_id, trigger, started_usec,"
                   " finished_usec, status, records_in, records_rejected, records_unchanged,"
                   " error, dry_run FROM connector_runs"
                   " WHERE connector_id = $1 AND tenant_id = $2 AND seq < $3"
                   " ORDER BY seq DESC LIMIT $4",
                   &p, &res);
    sd_pg_pool_put(s, c);
    if (r < 0) {
        return r;
    }
    size_t n = (size_t)r;
    struct sd_run *v = n ? sd_calloc(n, sizeof(*v)) : NULL;
    for (size_t i = 0; i < n; i++) {
        int row = (int)i;
        struct sd_run *x = &v[i];
        x->seq = sd_pg_int64(res, row, 0);
        x->run_id = sd_pg_strdup(res, row, 1);
        x->tenant_id = sd_pg_int64(res, row, 2);
        x->env = sd_pg_int64(res, row, 3) == 1 ? SD_ENV_PROD : SD_ENV_TEST;
        x->connector_id = sd_pg_strdup(res, row, 4);
        x->trigger = sd_pg_strdup(res, row, 5);
        x->started_usec = sd_pg_int64(res, row, 6);
        x->finished_usec = sd_pg_int64(res, row, 7);
        x->status = (enum sd_run_status)sd_pg_int64(res, row, 8);
        x->records_in = sd_pg_int64(res, row, 9);
        x->records_rejected = sd_pg_int64(res, row, 10);
        x->records_unchanged = sd_pg_int64(res, row, 11);
        x->error = sd_pg_strdup(res, row, 12);
        x->dry_run = sd_pg_int64(res, row, 13) != 0;
    }
    PQclear(res);
    *ret = v;
    *ret_n = n;
    return 0;
}

const struct sd_store_runs_ops sd_pg_runs_ops = {
    .record = runs_record,
    .list = runs_list,
};
