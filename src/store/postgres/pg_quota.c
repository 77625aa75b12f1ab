/* pg_quota.c — the quota ledger of the PostgreSQL backend (store/quota.h), table quota_windows.
 * The SQLite ledger (sqlite_quota.c) is the reference; this one must stay exact when several
 * processes take from one credential's windows at once (a vendor's daily quota is per
 * credential, not per node).
 *
 * A take is one transaction on a pool connection (sd_pg_tx_run, read committed):
 *  1. Ended windows are deleted, skipping rows another take is deleting right now
 *     (FOR UPDATE SKIP LOCKED): the purge never waits and never deadlocks; what it skips, the
 *     other take deletes.
 *  2. Each slot is counted by ONE atomic statement: INSERT … ON CONFLICT … DO UPDATE SET
 *     used = used + n WHERE used + n <= limit RETURNING used. PostgreSQL locks the window's row
 *     and evaluates the WHERE on its newest committed version, so two takes can never both
 *     spend the last room (a new window's first take inserts; n <= limit is checked before).
 *     Slots are taken in name order, so two takes of the same windows lock them in the same
 *     order and cannot deadlock.
 *  3. All or nothing: the slots are counted after a savepoint; when one has no room the
 *     savepoint is rolled back (the other slots' counts and their row locks with it) and the
 *     counts the call leaves are read, while the purge still commits, as in SQLite.
 * The ledger never bumps the settings version. A read is one REPEATABLE READ snapshot.
 *
 * Statement slots 768..799 (pg_internal.h) belong to this file. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "pg_internal.h"
#include "pg_outbox.h"
#include "store/quota.h"

enum {
    SLOT_PURGE = 768,
    SLOT_GET,
    SLOT_ADD,
};

static const char SQL_PURGE[] =
    "DELETE FROM quota_windows WHERE (cred_key, name, start_usec) IN (SELECT cred_key, name, "
    "start_usec FROM quota_windows WHERE end_usec <= $1 FOR UPDATE SKIP LOCKED)";
static const char SQL_GET[] = "SELECT used FROM quota_windows "
                              "WHERE cred_key = $1 AND name = $2 AND start_usec = $3";
/* $5 = n, $6 = limit; no row returned: no room (nothing written). */
static const char SQL_ADD[] =
    "INSERT INTO quota_windows AS q (cred_key, name, start_usec, end_usec, used) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (cred_key, name, start_usec) "
    "DO UPDATE SET used = q.used + excluded.used WHERE q.used + excluded.used <= $6::bigint "
    "RETURNING used";

/* The count of one window into *ret (0 without a row). */
static int get_used(struct pgconn *c, const char *cred_key, const struct sd_quota_slot *slot,
                    int64_t *ret)
{
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, cred_key);
    sd_pg_p_text(&p, slot->name);
    sd_pg_p_int(&p, slot->start_usec);
    PGresult *res = NULL;
    int r = sd_pg_exec(c, SLOT_GET, SQL_GET, &p, &res);
    if (r >= 0) {
        *ret = r > 0 ? sd_pg_int64(res, 0, 0) : 0;
        r = 0;
    }
    PQclear(res);
    return r;
}

struct take_arg {
    const char *cred_key;
    int64_t now_usec;
    int64_t n;
    const struct sd_quota_slot *slots;
    size_t n_slots;
    size_t order[SD_QUOTA_SLOTS_MAX]; /* slot indexes in name order */
    int64_t used[SD_QUOTA_SLOTS_MAX];
    bool room;
};

static int read_all(struct pgconn *c, struct take_arg *a)
{
    int r = 0;
    for (size_t i = 0; r >= 0 && i < a->n_slots; i++) {
        r = get_used(c, a->cred_key, &a->slots[i], &a->used[i]);
    }
    return r;
}

static int take_tx(struct pgconn *c, void *arg)
{
    struct take_arg *a = arg;
    a->room = true;
    memset(a->used, 0, sizeof(a->used));
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, a->now_usec);
    int r = sd_pg_exec(c, SLOT_PURGE, SQL_PURGE, &p, NULL);
    if (r < 0) {
        return r;
    }
    for (size_t i = 0; i < a->n_slots; i++) {
        if (a->n > a->slots[i].limit) {
            a->room = false;
        }
    }
    if (!a->room || a->n == 0) {
        /* Nothing to count: read what the windows hold (room with n = 0 means used <= limit). */
        r = read_all(c, a);
        for (size_t i = 0; r >= 0 && a->room && i < a->n_slots; i++) {
            a->room = a->used[i] <= a->slots[i].limit;
        }
        return r < 0 ? r : 0;
    }
    r = sd_pg_run(c, "SAVEPOINT quota_take");
    for (size_t k = 0; r >= 0 && a->room && k < a->n_slots; k++) {
        size_t i = a->order[k];
        const struct sd_quota_slot *sl = &a->slots[i];
        struct sd_pg_params q = {0};
        sd_pg_p_text(&q, a->cred_key);
        sd_pg_p_text(&q, sl->name);
        sd_pg_p_int(&q, sl->start_usec);
        sd_pg_p_int(&q, sl->end_usec);
        sd_pg_p_int(&q, a->n);
        sd_pg_p_int(&q, sl->limit);
        PGresult *res = NULL;
        r = sd_pg_exec(c, SLOT_ADD, SQL_ADD, &q, &res);
        if (r == 0) {
            a->room = false;
        } else if (r > 0) {
            a->used[i] = sd_pg_int64(res, 0, 0);
        }
        PQclear(res);
    }
    if (r >= 0 && !a->room) {
        r = sd_pg_run(c, "ROLLBACK TO SAVEPOINT quota_take");
        if (r >= 0) {
            r = read_all(c, a);
        }
    }
    return r < 0 ? r : 0;
}

static int quota_take(struct sd_store *s, const char *cred_key, int64_t now_usec, int64_t n,
                      struct sd_quota_slot *slots, size_t n_slots)
{
    if (!sd_quota_take_args_ok(cred_key, n, slots, n_slots)) {
        return -EINVAL;
    }
    struct take_arg a = {
        .cred_key = cred_key, .now_usec = now_usec, .n = n, .slots = slots, .n_slots = n_slots};
    for (size_t i = 0; i < n_slots; i++) {
        size_t k = i;
        while (k > 0 && strcmp(slots[a.order[k - 1]].name, slots[i].name) > 0) {
            a.order[k] = a.order[k - 1];
            k--;
        }
        a.order[k] = i;
    }
    int r = sd_pg_tx_run(s, NULL, false, take_tx, &a);
    if (r < 0) {
        return r;
    }
    for (size_t i = 0; i < n_slots; i++) {
        slots[i].used = a.used[i];
    }
    return a.room ? 0 : -EAGAIN;
}

static int read_tx(struct pgconn *c, void *arg)
{
    return read_all(c, arg);
}

static int quota_read(struct sd_store *s, const char *cred_key, struct sd_quota_slot *slots,
                      size_t n_slots)
{
    if (!sd_quota_args_ok(cred_key, slots, n_slots)) {
        return -EINVAL;
    }
    struct take_arg a = {.cred_key = cred_key, .slots = slots, .n_slots = n_slots};
    /* One snapshot: every window as of the same moment. */
    int r = sd_pg_tx_run(s, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", false, read_tx, &a);
    if (r < 0) {
        return r;
    }
    for (size_t i = 0; i < n_slots; i++) {
        slots[i].used = a.used[i];
    }
    return 0;
}

const struct sd_store_quota_ops sd_pg_quota_ops = {
    .take = quota_take,
    .read = quota_read,
};
