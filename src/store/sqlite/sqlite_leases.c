/* sqlite_leases.c — connector run leases with fencing tokens (store.h: run_lease_*,
 * connector_state_put_fenced), on SQLite. See 0015_connector_leases.sql.
 *
 * Take, renew and release are one statement each in a `ctl` write transaction on the data file
 * (BEGIN IMMEDIATE under ctl_lock, in turns with the writer): the file's write lock makes each
 * decision atomic across threads and processes, and no settings version is bumped (a lease is
 * not a setting: schedulers must not reload for it). A take is one UPSERT whose DO UPDATE only
 * fires when the stored lease is expired, released, the same owner's or the gone owner's the
 * caller names, RETURNING the new token; no row back means another owner holds it (-EBUSY),
 * whose name is then read in the same transaction.
 *
 * The fenced state put runs on the writer inside its BEGIN IMMEDIATE transaction: the lease
 * check and the put see the same file under the same write lock, so no take can come between
 * the check and the COMMIT. The clock is the host's (sd_now_usec): every process that opens
 * one SQLite file runs on the same host. */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "sqlite_internal.h"
#include "store/store.h"

enum {
    SLOT_TAKE = 120,
    SLOT_RENEW,
    SLOT_RELEASE,
    SLOT_CHECK,
    SLOT_HOLDER,
    SLOT_LIVE,
};

static const char SQL_TAKE[] =
    "INSERT INTO connector_leases (connector_id, owner, fence, until_usec)"
    " VALUES (?1, ?2, 1, ?3 + ?4)"
    " ON CONFLICT (connector_id) DO UPDATE SET owner = excluded.owner, fence = fence + 1,"
    " until_usec = excluded.until_usec"
    " WHERE until_usec <= ?3 OR owner = excluded.owner OR owner = ?5"
    " RETURNING fence";
static const char SQL_HOLDER[] = "SELECT owner FROM connector_leases WHERE connector_id = ?1";
static const char SQL_LIVE[] = "SELECT owner, until_usec FROM connector_leases"
                               " WHERE connector_id = ?1 AND until_usec > ?2";
static const char SQL_RENEW[] = "UPDATE connector_leases SET until_usec = ?3 + ?4"
                                " WHERE connector_id = ?1 AND fence = ?2 AND until_usec > 0";
static const char SQL_RELEASE[] = "UPDATE connector_leases SET until_usec = 0"
                                  " WHERE connector_id = ?1 AND fence = ?2 AND until_usec > 0";
static const char SQL_CHECK[] = "SELECT 1 FROM connector_leases"
                                " WHERE connector_id = ?1 AND fence = ?2 AND until_usec > 0";

/* The holder of lease id, for a take that found it busy (inside the take's transaction). */
static int holder(struct conn *k, const char *id, char **ret)
{
    sqlite3_stmt *st = sd_sqlite_stmt_extra(k, SLOT_HOLDER, SQL_HOLDER);
    if (!st) {
        return -EIO;
    }
    if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK) {
        sqlite3_reset(st);
        return sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
    }
    int rc = sqlite3_step(st);
    int r = 0;
    if (rc == SQLITE_ROW) {
        *ret = sd_sqlite_column_strdup(st, 0);
    } else if (rc != SQLITE_DONE) {
        r = sd_sqlite_fail(k, rc, "run lease holder");
    }
    sqlite3_reset(st);
    return r;
}

int sd_sqlite_run_lease_take(struct sd_store *s, const char *id, const char *owner,
                             const char *gone_owner, int64_t lease_usec, int64_t *ret_fence,
                             char **ret_holder)
{
    if (!id || !owner || lease_usec <= 0) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    int64_t fence = 0;
    char *held_by = NULL;
    sqlite3_stmt *st = sd_sqlite_stmt_extra(k, SLOT_TAKE, SQL_TAKE);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if ((sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) |
         sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 3, sd_now_usec()) | sqlite3_bind_int64(st, 4, lease_usec) |
         (gone_owner ? sqlite3_bind_text(st, 5, gone_owner, -1, SQLITE_STATIC)
                     : sqlite3_bind_null(st, 5))) != SQLITE_OK) {
        r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
        sqlite3_reset(st);
        goto out;
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        fence = sqlite3_column_int64(st, 0);
        rc = sqlite3_step(st);
    }
    if (rc != SQLITE_DONE) {
        r = sd_sqlite_fail(k, rc, "run lease take");
    } else if (fence == 0) {
        r = -EBUSY;
    }
    sqlite3_reset(st);
    if (r == -EBUSY && ret_holder) {
        int hr = holder(k, id, &held_by);
        r = hr < 0 ? hr : r;
    }
out:
    r = sd_sqlite_ctl_end_write(s, r, false);
    if (r == 0) {
        *ret_fence = fence;
    } else if (r == -EBUSY && ret_holder) {
        *ret_holder = held_by;
        held_by = NULL;
    }
    free(held_by);
    return r;
}

/* renew (lease_usec > 0) or release (lease_usec 0) the lease with token fence. */
static int lease_update(struct sd_store *s, const char *id, int64_t fence, int64_t lease_usec)
{
    if (!id) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    bool renew = lease_usec > 0;
    sqlite3_stmt *st = renew ? sd_sqlite_stmt_extra(k, SLOT_RENEW, SQL_RENEW)
                             : sd_sqlite_stmt_extra(k, SLOT_RELEASE, SQL_RELEASE);
    if (!st) {
        r = -EIO;
        goto out;
    }
    int rc = sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) | sqlite3_bind_int64(st, 2, fence);
    if (renew) {
        rc |= sqlite3_bind_int64(st, 3, sd_now_usec()) | sqlite3_bind_int64(st, 4, lease_usec);
    }
    if (rc != SQLITE_OK) {
        r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
        sqlite3_reset(st);
        goto out;
    }
    r = sd_sqlite_step_done(k, st, renew ? "run lease renew" : "run lease release");
    if (r == 0 && sqlite3_changes(k->db) == 0) {
        r = -ESTALE;
    }
out:
    return sd_sqlite_ctl_end_write(s, r, false);
}

int sd_sqlite_run_lease_renew(struct sd_store *s, const char *id, int64_t fence, int64_t lease_usec)
{
    if (lease_usec <= 0) {
        return -EINVAL;
    }
    return lease_update(s, id, fence, lease_usec);
}

int sd_sqlite_run_lease_release(struct sd_store *s, const char *id, int64_t fence)
{
    return lease_update(s, id, fence, 0);
}

int sd_sqlite_connector_state_put_fenced(struct sd_store *s, const char *id, const char *doc,
                                         int64_t fence)
{
    if (!id || !doc) {
        return -EINVAL;
    }
    int r = sd_sqlite_run_lease_check(s, id, fence);
    return r < 0 ? r : sd_sqlite_connector_state_put(s, id, doc);
}

int sd_sqlite_run_lease_check(struct sd_store *s, const char *id, int64_t fence)
{
    struct conn *c = s->writer;
    sqlite3_stmt *st = sd_sqlite_stmt_extra(c, SLOT_CHECK, SQL_CHECK);
    if (!st) {
        return -EIO;
    }
    if ((sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) | sqlite3_bind_int64(st, 2, fence)) !=
        SQLITE_OK) {
        sqlite3_reset(st);
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) {
        return -ESTALE;
    }
    if (rc != SQLITE_ROW) {
        return sd_sqlite_fail(c, rc, "run lease check");
    }
    return 0;
}

int sd_sqlite_run_lease_holder(struct sd_store *s, const char *id, char **ret_owner,
                               int64_t *ret_until_usec)
{
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = sd_sqlite_stmt_extra(c, SLOT_LIVE, SQL_LIVE);
    if (!st) {
        r = -EIO;
    } else if ((sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) |
                sqlite3_bind_int64(st, 2, sd_now_usec())) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        sqlite3_reset(st);
    } else {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *ret_owner = sd_sqlite_column_strdup(st, 0);
            *ret_until_usec = sqlite3_column_int64(st, 1);
        } else {
            r = rc == SQLITE_DONE ? -ENOENT : sd_sqlite_fail(c, rc, "run lease holder");
        }
        sqlite3_reset(st);
    }
    sd_sqlite_pool_put(s, c);
    return r;
}
