/* sqlite_runs.c — the connector run history of the SQLite backend (store/runs.h), table
 * connector_runs of the data file (0016_connector_runs.sql).
 *
 * A record is one `ctl` write transaction on the data file (BEGIN IMMEDIATE under ctl_lock, in
 * turns with the writer), like the run leases it is checked against: the lease check of a
 * fenced run, the insert and the prune see the same file under the same write lock, so no take
 * of the lease can come between the check and the COMMIT. No settings version is bumped. Lists
 * borrow a read-pool connection.
 *
 * Statements keep their SQL here, in extra slots 104..107. */
#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "sqlite_internal.h"
#include "store/runs.h"

enum {
    SLOT_CHECK = 104,
    SLOT_INSERT,
    SLOT_PRUNE,
    SLOT_LIST,
};

static const char SQL_CHECK[] = "SELECT 1 FROM connector_leases"
                                " WHERE connector_id = ?1 AND fence = ?2 AND until_usec > 0";
static const char SQL_INSERT[] =
    "INSERT INTO connector_runs (run_id, tenant_id, env, connector_id, trigger, started_usec,"
    " finished_usec, status, records_in, records_rejected, records_unchanged, error, dry_run)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
/* "Keep at most the last 1,000 runs per connector": everything older than the 1,000th newest. */
static const char SQL_PRUNE[] =
    "DELETE FROM connector_runs WHERE connector_id = ?1 AND seq <"
    " (SELECT seq FROM connector_runs WHERE connector_id = ?1 ORDER BY seq DESC"
    " LIMIT 1 OFFSET ?2)";
static const char SQL_LIST[] =
    "SELECT seq, run_id, tenant_id, env, connector_id, trigger, started_usec, finished_usec,"
    " status, records_in, records_rejected, records_unchanged, error, dry_run"
    " FROM connector_runs WHERE connector_id = ?1 AND tenant_id = ?2 AND seq < ?3"
    " ORDER BY seq DESC LIMIT ?4";

static int lease_check(struct conn *k, const char *id, int64_t fence)
{
    sqlite3_stmt *st = sd_sqlite_stmt_extra(k, SLOT_CHECK, SQL_CHECK);
    if (!st) {
        return -EIO;
    }
    if ((sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) | sqlite3_bind_int64(st, 2, fence)) !=
        SQLITE_OK) {
        sqlite3_reset(st);
        return sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
    }
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) {
        return -ESTALE;
    }
    return rc == SQLITE_ROW ? 0 : sd_sqlite_fail(k, rc, "run lease check");
}

static int insert(struct conn *k, const struct sd_run *run)
{
    sqlite3_stmt *st = sd_sqlite_stmt_extra(k, SLOT_INSERT, SQL_INSERT);
    if (!st) {
        return -EIO;
    }
    if ((sqlite3_bind_text(st, 1, run->run_id, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 2, run->tenant_id) | sqlite3_bind_int(st, 3, (int)run->env) |
         sqlite3_bind_text(st, 4, run->connector_id, -1, SQLITE_STATIC) |
         sqlite3_bind_text(st, 5, run->trigger, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 6, run->started_usec) |
         sqlite3_bind_int64(st, 7, run->finished_usec) | sqlite3_bind_int(st, 8, (int)run->status) |
         sqlite3_bind_int64(st, 9, run->records_in) |
         sqlite3_bind_int64(st, 10, run->records_rejected) |
         sqlite3_bind_int64(st, 11, run->records_unchanged) |
         (run->error ? sqlite3_bind_text(st, 12, run->error, -1, SQLITE_STATIC)
                     : sqlite3_bind_null(st, 12)) |
         sqlite3_bind_int(st, 13, run->dry_run ? 1 : 0)) != SQLITE_OK) {
        sqlite3_reset(st);
        return sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
    }
    return sd_sqlite_step_done(k, st, "run record");
}

static int prune(struct conn *k, const char *id)
{
    sqlite3_stmt *st = sd_sqlite_stmt_extra(k, SLOT_PRUNE, SQL_PRUNE);
    if (!st) {
        return -EIO;
    }
    if ((sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 2, SD_RUNS_KEEP - 1)) != SQLITE_OK) {
        sqlite3_reset(st);
        return sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
    }
    return sd_sqlite_step_done(k, st, "run prune");
}

static int runs_record(struct sd_store *s, const struct sd_run *run, int64_t fence)
{
    if (!sd_run_valid(run)) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    r = fence ? lease_check(k, run->connector_id, fence) : 0;
    if (r == 0) {
        r = insert(k, run);
    }
    if (r == 0) {
        r = prune(k, run->connector_id);
    }
    return sd_sqlite_ctl_end_write(s, r, false);
}

static int runs_list(struct sd_store *s, int64_t tenant_id, const char *connector_id,
                     int64_t before_seq, size_t limit, struct sd_run **ret, size_t *ret_n)
{
    if (!connector_id || limit == 0 || limit > SD_RUNS_PAGE_MAX || before_seq < 0) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_run *v = NULL;
    size_t n = 0;
    sqlite3_stmt *st = sd_sqlite_stmt_extra(c, SLOT_LIST, SQL_LIST);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if ((sqlite3_bind_text(st, 1, connector_id, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 2, tenant_id) |
         sqlite3_bind_int64(st, 3, before_seq > 0 ? before_seq : INT64_MAX) |
         sqlite3_bind_int64(st, 4, (int64_t)limit)) != SQLITE_OK) {
        sqlite3_reset(st);
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    v = sd_calloc(limit, sizeof(*v));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < limit) {
        struct sd_run *x = &v[n++];
        x->seq = sqlite3_column_int64(st, 0);
        x->run_id = sd_sqlite_column_strdup(st, 1);
        x->tenant_id = sqlite3_column_int64(st, 2);
        x->env = sqlite3_column_int(st, 3) == 1 ? SD_ENV_PROD : SD_ENV_TEST;
        x->connector_id = sd_sqlite_column_strdup(st, 4);
        x->trigger = sd_sqlite_column_strdup(st, 5);
        x->started_usec = sqlite3_column_int64(st, 6);
        x->finished_usec = sqlite3_column_int64(st, 7);
        x->status = (enum sd_run_status)sqlite3_column_int(st, 8);
        x->records_in = sqlite3_column_int64(st, 9);
        x->records_rejected = sqlite3_column_int64(st, 10);
        x->records_unchanged = sqlite3_column_int64(st, 11);
        x->error = sd_sqlite_column_strdup(st, 12);
        x->dry_run = sqlite3_column_int(st, 13) != 0;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        r = sd_sqlite_fail(c, rc, "run list");
    }
    sqlite3_reset(st);
out:
    sd_sqlite_pool_put(s, c);
    if (r < 0) {
        sd_runs_free(v, n);
        return r;
    }
    if (n == 0) {
        free(v);
        v = NULL;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

const struct sd_store_runs_ops sd_sqlite_runs_ops = {
    .record = runs_record,
    .list = runs_list,
};
