/* sqlite_quota.c — the quota ledger of the SQLite backend (store/quota.h), in control.db
 * (table quota_windows, control migration 0002_quota.sql).
 *
 * Why control.db and the `cp` connection: a take must never wait behind the data writer, and
 * control.db is the one file the data writer never locks. Every take is one BEGIN IMMEDIATE
 * transaction on it, under cp_lock: cp_lock serializes the threads of this process, the
 * file's write lock serializes processes (a CLI, a second server on the same directory), and
 * because the check (SELECT used) and the increment happen inside that one write transaction,
 * no two takes can both spend the last room. The transaction ends without the settings version
 * bump other control-plane writes make: counting calls is not a change of settings.
 *
 * The statements keep their SQL here, in the `cp` connection's extra slots 96..103. */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <string.h>

#include "sqlite_internal.h"
#include "store/quota.h"

enum {
    SLOT_PURGE = 96,
    SLOT_GET,
    SLOT_ADD,
};

static const char SQL_PURGE[] = "DELETE FROM main.quota_windows WHERE end_usec <= ?1";
static const char SQL_GET[] = "SELECT used FROM main.quota_windows "
                              "WHERE cred_key = ?1 AND name = ?2 AND start_usec = ?3";
static const char SQL_ADD[] =
    "INSERT INTO main.quota_windows (cred_key, name, start_usec, end_usec, used) "
    "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (cred_key, name, start_usec) "
    "DO UPDATE SET used = used + excluded.used";

/* The count of one window into *ret (0 without a row). */
static int get_used(struct conn *c, const char *cred_key, const struct sd_quota_slot *slot,
                    int64_t *ret)
{
    sqlite3_stmt *st = sd_sqlite_stmt_extra(c, SLOT_GET, SQL_GET);
    if (!st) {
        return -EIO;
    }
    if ((sqlite3_bind_text(st, 1, cred_key, -1, SQLITE_STATIC) |
         sqlite3_bind_text(st, 2, slot->name, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 3, slot->start_usec)) != SQLITE_OK) {
        sqlite3_reset(st);
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int rc = sqlite3_step(st);
    int64_t used = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        return sd_sqlite_fail(c, rc, "quota get");
    }
    *ret = used;
    return 0;
}

static int quota_take(struct sd_store *s, const char *cred_key, int64_t now_usec, int64_t n,
                      struct sd_quota_slot *slots, size_t n_slots)
{
    if (!sd_quota_take_args_ok(cred_key, n, slots, n_slots)) {
        return -EINVAL;
    }
    int64_t used[SD_QUOTA_SLOTS_MAX] = {0};
    bool room = true;
    int r = sd_sqlite_cp_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *c = s->cp;
    sqlite3_stmt *st = sd_sqlite_stmt_extra(c, SLOT_PURGE, SQL_PURGE);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if (sqlite3_bind_int64(st, 1, now_usec) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    r = sd_sqlite_step_done(c, st, "quota purge");
    for (size_t i = 0; r >= 0 && i < n_slots; i++) {
        r = get_used(c, cred_key, &slots[i], &used[i]);
        /* used <= limit - n, written so that it cannot overflow (0 <= n, limit) */
        if (r >= 0 && (n > slots[i].limit || used[i] > slots[i].limit - n)) {
            room = false;
        }
    }
    if (r < 0 || !room || n == 0) {
        goto out; /* commits the purge when r >= 0 */
    }
    st = sd_sqlite_stmt_extra(c, SLOT_ADD, SQL_ADD);
    if (!st) {
        r = -EIO;
        goto out;
    }
    for (size_t i = 0; r >= 0 && i < n_slots; i++) {
        if ((sqlite3_bind_text(st, 1, cred_key, -1, SQLITE_STATIC) |
             sqlite3_bind_text(st, 2, slots[i].name, -1, SQLITE_STATIC) |
             sqlite3_bind_int64(st, 3, slots[i].start_usec) |
             sqlite3_bind_int64(st, 4, slots[i].end_usec) | sqlite3_bind_int64(st, 5, n)) !=
            SQLITE_OK) {
            sqlite3_reset(st);
            r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        } else {
            r = sd_sqlite_step_done(c, st, "quota add");
            used[i] += n;
        }
    }
out:
    r = sd_sqlite_cp_end_write(s, r, false);
    if (r < 0) {
        return r;
    }
    for (size_t i = 0; i < n_slots; i++) {
        slots[i].used = used[i];
    }
    return room ? 0 : -EAGAIN;
}

static int quota_read(struct sd_store *s, const char *cred_key, struct sd_quota_slot *slots,
                      size_t n_slots)
{
    if (!sd_quota_args_ok(cred_key, slots, n_slots)) {
        return -EINVAL;
    }
    int64_t used[SD_QUOTA_SLOTS_MAX] = {0};
    pthread_mutex_lock(&s->cp_lock);
    struct conn *c = s->cp;
    /* One read transaction: every window from the same snapshot. */
    int r = sd_sqlite_run(c, ST_BEGIN);
    for (size_t i = 0; r >= 0 && i < n_slots; i++) {
        r = get_used(c, cred_key, &slots[i], &used[i]);
    }
    r = sd_sqlite_tx_finish(c, r);
    pthread_mutex_unlock(&s->cp_lock);
    if (r < 0) {
        return r;
    }
    for (size_t i = 0; i < n_slots; i++) {
        slots[i].used = used[i];
    }
    return 0;
}

const struct sd_store_quota_ops sd_sqlite_quota_ops = {
    .take = quota_take,
    .read = quota_read,
};
