/* sqlite_outbox.c — the SQLite side of store/audience.h's outbox part: target connector
 * instances (rows of `connectors`), the generic outbox of items and the remote references
 * (schema 0007_outbox_items.sql).
 *
 * Every change runs on the control-plane connection (`ctl`, ctl_lock, BEGIN IMMEDIATE,
 * synchronous=FULL), so an item is durable when delivery_insert returns and every claim is
 * serialized with every other claim — of this process's worker threads and of any other process
 * on the same file — by SQLite's write lock. Item changes do not bump the settings version:
 * they are data, not configuration a running server has to reload; target changes do (they are
 * connectors). Reads use the read pool.
 *
 * Invariants the SQL keeps:
 *  - A claim and the rate-limit decision it depends on happen in one transaction: the sends
 *    inside the window are counted, the connector's waiting items are given their slots
 *    (next_attempt_usec) and the chosen row is leased before COMMIT. `sent_usec` (the first
 *    send of a run) is stamped by the claim and cleared by requeue. A row whose first send is
 *    inside the window was updated at that send or later, so `updated_usec > now - window`
 *    narrows the scan.
 *  - FIFO per subject is part of the claim's WHERE: a row with an earlier (smaller seq) row of
 *    the same (connector, subject_kind, subject_id) still queued, sending or retrying is not
 *    claimable, whatever its time.
 *  - Every change to a leased row names the fencing token (`fence`, bumped by each claim) it
 *    holds: a worker whose lease ran out and was taken over changes nothing (-ESTALE).
 *  - The remote reference a delivery answered with is written in the same transaction that
 *    ends the lease.
 *
 * Statement slots 48..95 of struct conn's `extra` array belong to this file. */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "sqlite_internal.h"
#include "store/audience.h"
#include "store/outbox_plan.h"
#include "store/store.h"

enum {
    S_BEFORE_ = 47, /* the first statement is slot 48 */
    SD_OUTBOX_STATEMENTS(S_),
    S_TARGET_LIMIT,
    S_DLV_KILL_TARGET,
    S_LAST_ /* must stay <= 96 */
};
_Static_assert(S_LAST_ <= 96, "outbox statement slots are 48..95 (quota starts at 96)");

/* Rows a claim may take now (?1 = now), in due order. */
#define DUE_WHERE                                                                                  \
    "((d.state IN " SD_OUTBOX_WAITING " AND d.next_attempt_usec <= ?1) OR "                        \
    "(d.state = 'sending' AND d.lease_until_usec <= ?1)) AND " SD_OUTBOX_FIFO_FREE

static const char *const sql[] = {
    [S_TARGET_INSERT] = "INSERT INTO connectors (id, tenant_id, env, type, schedule, settings, "
                        "mapping, run_requested_usec, created_usec, updated_usec, rate_per_hour) "
                        "VALUES (?1, ?2, ?3, ?4, 'manual', ?5, '{}', 0, ?6, ?6, ?7)",
    [S_TARGET_UPDATE] = "UPDATE connectors SET settings = ?2, updated_usec = ?3, "
                        "rate_per_hour = ?4 WHERE id = ?1",
    [S_TARGET_GET] = SD_OUTBOX_TARGET_COLS "WHERE t.id = ?1",
    [S_TARGET_LIST] = SD_OUTBOX_TARGET_COLS "WHERE t.tenant_id = ?1 ORDER BY t.created_usec, t.id",
    [S_TARGET_DELETE] = "DELETE FROM connectors WHERE id = ?1",
    [S_TARGET_STATE_DELETE] = "DELETE FROM connector_state WHERE connector_id = ?1",
    [S_REMOTE_DELETE_TARGET] = "DELETE FROM remote_refs WHERE connector_id = ?1",
    [S_DLV_INSERT] =
        "INSERT INTO outbox_items (id, tenant_id, env, connector_id, operation, subject_kind, "
        "subject_id, payload, dedupe_key, state, attempts, next_attempt_usec, idem_key, "
        "request_key, origin, doc, created_usec, updated_usec) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
        "?7, ?8, ?9, 'queued', 0, ?10, ?11, ?12, ?13, ?14, ?10, ?10)",
    [S_DLV_BY_REQUEST] =
        SD_OUTBOX_ITEM_COLS "WHERE d.tenant_id = ?1 AND d.env = ?2 AND d.request_key = ?3",
    [S_DLV_GET] = SD_OUTBOX_ITEM_COLS "WHERE d.id = ?1",
    [S_DLV_GET_SCOPED] = SD_OUTBOX_ITEM_COLS "WHERE d.tenant_id = ?1 AND d.env = ?2 AND d.id = ?3",
    [S_DLV_LIST] =
        SD_OUTBOX_ITEM_COLS "WHERE (?1 = 0 OR d.tenant_id = ?1) AND (?4 < 0 OR d.env = ?4) AND "
                            "(?2 IS NULL OR d.state = ?2) AND (?5 IS NULL OR d.connector_id = ?5) "
                            "ORDER BY d.created_usec DESC, d.seq DESC LIMIT ?3",
    /* On outbox_items_due. */
    [S_DLV_NEXT_DUE] = SD_OUTBOX_NEXT_DUE_SQL,
    [S_DLV_CANDIDATES] = "SELECT d.id, d.connector_id, d.state, coalesce((SELECT c.rate_per_hour "
                         "FROM connectors c WHERE c.id = d.connector_id), 0) FROM outbox_items d "
                         "WHERE " DUE_WHERE " ORDER BY d.next_attempt_usec, d.seq LIMIT 32",
    /* Due items of one connector and operation, besides the one claimed (?2), in due order;
     * first sends of a connector with a rate are left to the planned claim. */
    [S_DLV_MORE] =
        "SELECT d.id FROM outbox_items d WHERE d.connector_id = ?3 AND d.operation = "
        "?4 AND d.id <> ?2 AND NOT (d.state = 'queued' AND coalesce((SELECT "
        "c.rate_per_hour FROM connectors c WHERE c.id = d.connector_id), 0) > 0) AND " DUE_WHERE
        " ORDER BY d.next_attempt_usec, d.seq LIMIT ?5",
    [S_TARGET_LIMIT] = "SELECT coalesce(rate_per_hour, 0) FROM connectors WHERE id = ?1",
    [S_DLV_SENDS] = "SELECT sent_usec FROM outbox_items WHERE connector_id = ?1 AND "
                    "updated_usec > ?2 AND sent_usec > ?2 ORDER BY sent_usec",
    [S_DLV_WAITING] =
        "SELECT d.id, d.next_attempt_usec, " SD_OUTBOX_FIFO_FREE " FROM outbox_items d "
        "WHERE d.connector_id = ?1 AND d.state = 'queued' ORDER BY d.seq",
    [S_DLV_SET_NEXT] = "UPDATE outbox_items SET next_attempt_usec = ?2 WHERE id = ?1 AND "
                       "state = 'queued'",
    [S_DLV_CLAIM] = "UPDATE outbox_items AS d SET state = 'sending', attempts = attempts + 1, "
                    "fence = fence + 1, lease_until_usec = ?2, updated_usec = ?1, "
                    "lease_owner = ?4, sent_usec = CASE WHEN sent_usec = 0 THEN ?1 ELSE "
                    "sent_usec END WHERE d.id = ?3 AND " DUE_WHERE,
    [S_DLV_RENEW] = "UPDATE outbox_items SET lease_until_usec = ?3 WHERE id = ?1 AND "
                    "state = 'sending' AND fence = ?2",
    [S_DLV_FINISH] = "UPDATE outbox_items SET state = ?3, attempts = max(0, attempts + ?4), "
                     "next_attempt_usec = ?5, lease_until_usec = 0, lease_owner = NULL, "
                     "doc = ?6, remote_ref = coalesce(?8, remote_ref), updated_usec = ?7 "
                     "WHERE id = ?1 AND state = 'sending' AND fence = ?2",
    [S_REMOTE_UPSERT_ITEM] =
        "INSERT INTO remote_refs (connector_id, kind, local_id, remote_id, updated_usec) "
        "SELECT connector_id, subject_kind, subject_id, ?2, ?3 FROM outbox_items WHERE id = ?1 "
        "ON CONFLICT (connector_id, kind, local_id) DO UPDATE SET "
        "remote_id = excluded.remote_id, updated_usec = excluded.updated_usec",
    [S_DLV_REQUEUE] = "UPDATE outbox_items SET state = 'queued', attempts = 0, "
                      "next_attempt_usec = ?4, lease_until_usec = 0, lease_owner = NULL, "
                      "sent_usec = 0, idem_key = ?2, doc = ?3, updated_usec = ?4 "
                      "WHERE id = ?1 AND state = 'dead'",
    [S_DLV_STATE] = "SELECT state FROM outbox_items WHERE id = ?1",
    [S_DLV_CONNECTOR] = "SELECT connector_id FROM outbox_items WHERE id = ?1",
    /* A deleted connector's waiting items: dead at once (one in flight finishes on its own). */
    [S_DLV_KILL_TARGET] =
        "UPDATE outbox_items SET state = 'dead', next_attempt_usec = 0, "
        "lease_until_usec = 0, updated_usec = ?2, doc = json_set(doc, "
        "'$.last_error', ?3) WHERE connector_id = ?1 AND state IN " SD_OUTBOX_WAITING,
    [S_DLV_DEDUPE] = "SELECT id FROM outbox_items WHERE connector_id = ?1 AND dedupe_key = ?2 "
                     "AND state IN " SD_OUTBOX_WAITING " ORDER BY seq LIMIT 1",
    [S_DLV_CANCEL] = "UPDATE outbox_items SET state = 'cancelled', next_attempt_usec = 0, "
                     "doc = ?2, updated_usec = ?3 WHERE id = ?1 AND state IN " SD_OUTBOX_WAITING,
    [S_DLV_SEND_NOW] = "UPDATE outbox_items SET next_attempt_usec = min(next_attempt_usec, ?2), "
                       "updated_usec = ?2 WHERE id = ?1 AND state IN " SD_OUTBOX_WAITING,
    [S_REMOTE_GET] = "SELECT remote_id FROM remote_refs WHERE connector_id = ?1 AND kind = ?2 "
                     "AND local_id = ?3",
    [S_REMOTE_FIND] = "SELECT local_id FROM remote_refs WHERE connector_id = ?1 AND kind = ?2 "
                      "AND remote_id = ?3 ORDER BY updated_usec, local_id LIMIT 1",
    [S_REMOTE_PUT] = "INSERT INTO remote_refs (connector_id, kind, local_id, remote_id, "
                     "updated_usec) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (connector_id, kind, "
                     "local_id) DO UPDATE SET remote_id = excluded.remote_id, "
                     "updated_usec = excluded.updated_usec",
    [S_REMOTE_LIST] = "SELECT local_id, remote_id FROM remote_refs WHERE connector_id = ?1 AND "
                      "kind = ?2 AND local_id > ?3 ORDER BY local_id LIMIT ?4",
    [S_REMOTE_DELETE] = "DELETE FROM remote_refs WHERE connector_id = ?1 AND kind = ?2 AND "
                        "local_id = ?3",
    /* Records of source ?5 in the profile of record (?3, ?4), the record itself left out. */
    [S_LINKED] = "SELECT count(*) FROM customers c JOIN customers m ON m.profile_id = c.profile_id "
                 "WHERE c.tenant_id = ?1 AND c.env = ?2 AND c.source = ?3 AND c.customer_id = ?4 "
                 "AND m.tenant_id = ?1 AND m.env = ?2 AND m.source = ?5 AND "
                 "NOT (m.source = c.source AND m.customer_id = c.customer_id)",
    [S_VERSION] = "SELECT remote_version FROM customers WHERE tenant_id = ?1 AND env = ?2 AND "
                  "source = ?3 AND customer_id = ?4",
};

static sqlite3_stmt *stmt(struct conn *c, unsigned slot)
{
    return sd_sqlite_stmt_extra(c, slot, sql[slot]);
}

static enum sd_env col_env(sqlite3_stmt *st, int col)
{
    return sqlite3_column_int(st, col) == 1 ? SD_ENV_PROD : SD_ENV_TEST;
}

static void read_target(sqlite3_stmt *st, struct sd_target *t)
{
    t->id = sd_sqlite_column_strdup(st, 0);
    t->tenant_id = sqlite3_column_int64(st, 1);
    t->client_id = sd_sqlite_column_strdup(st, 2);
    t->env = col_env(st, 3);
    t->type = sd_sqlite_column_strdup(st, 4);
    t->doc = sd_sqlite_column_strdup(st, 5);
    t->rate_per_hour = sqlite3_column_int64(st, 6);
    t->created_usec = sqlite3_column_int64(st, 7);
    t->updated_usec = sqlite3_column_int64(st, 8);
}

static void read_delivery(sqlite3_stmt *st, struct sd_outbox_item *d)
{
    *d = (struct sd_outbox_item){0};
    d->id = sd_sqlite_column_strdup(st, 0);
    d->tenant_id = sqlite3_column_int64(st, 1);
    d->client_id = sd_sqlite_column_strdup(st, 2);
    d->env = col_env(st, 3);
    d->connector_id = sd_sqlite_column_strdup(st, 4);
    d->operation = sd_sqlite_column_strdup(st, 5);
    d->subject_kind = sd_sqlite_column_strdup(st, 6);
    d->subject_id = sd_sqlite_column_strdup(st, 7);
    d->payload = sd_sqlite_column_strdup(st, 8);
    d->dedupe_key = sd_sqlite_column_strdup(st, 9);
    const char *name = (const char *)sqlite3_column_text(st, 10);
    enum sd_delivery_state state = SD_DELIVERY_DEAD;
    (void)sd_delivery_state_parse(name, &state);
    d->state = state;
    d->attempts = sqlite3_column_int64(st, 11);
    d->next_attempt_usec = sqlite3_column_int64(st, 12);
    d->lease_until_usec = sqlite3_column_int64(st, 13);
    d->fence = sqlite3_column_int64(st, 14);
    d->lease_owner = sd_sqlite_column_strdup(st, 15);
    d->sent_usec = sqlite3_column_int64(st, 16);
    d->idem_key = sd_sqlite_column_strdup(st, 17);
    d->request_key = sd_sqlite_column_strdup(st, 18);
    d->origin = sd_sqlite_column_strdup(st, 19);
    d->remote_ref = sd_sqlite_column_strdup(st, 20);
    d->doc = sd_sqlite_column_strdup(st, 21);
    d->created_usec = sqlite3_column_int64(st, 22);
    d->updated_usec = sqlite3_column_int64(st, 23);
}

/* Step a one-row lookup whose row `read` copies out. 0, -ENOENT or -EIO; resets st. */
static int one_row(struct conn *c, sqlite3_stmt *st, void (*read)(sqlite3_stmt *, void *),
                   void *ret, const char *op)
{
    int rc = sqlite3_step(st);
    int r;
    if (rc == SQLITE_ROW) {
        read(st, ret);
        r = 0;
    } else if (rc == SQLITE_DONE) {
        r = -ENOENT;
    } else {
        r = sd_sqlite_fail(c, rc, op);
    }
    sqlite3_reset(st);
    return r;
}

static void read_target_v(sqlite3_stmt *st, void *ret)
{
    read_target(st, ret);
}

static void read_delivery_v(sqlite3_stmt *st, void *ret)
{
    read_delivery(st, ret);
}

/* The statement in `slot` on k with parameters p[0..n) bound (?1..?n) into *ret: 0, -EIO
 * without a statement, or the bind failure. */
static int bound(struct conn *k, unsigned slot, const struct sd_sqlite_param *p, size_t n,
                 sqlite3_stmt **ret)
{
    sqlite3_stmt *st = stmt(k, slot);
    int r = sd_sqlite_bind_params(k, st, p, n);
    if (r == 0) {
        *ret = st;
    }
    return r;
}

/* Run the statement in `slot` on k with parameters p[0..n) (?1..?n) to its end. Returns the
 * number of rows it changed, -EIO without a statement, or the bind or step failure (-EEXIST
 * on a constraint). */
static int exec(struct conn *k, unsigned slot, const struct sd_sqlite_param *p, size_t n,
                const char *op)
{
    sqlite3_stmt *st = NULL;
    int r = bound(k, slot, p, n, &st);
    if (r == 0) {
        r = sd_sqlite_step_done(k, st, op);
    }
    return r < 0 ? r : sqlite3_changes(k->db);
}

/* A one-row lookup on a pool connection (statement `slot`, parameters p[0..n)): the row
 * copied out by `read` (0), -ENOENT without one, or an error. */
static int lookup(struct sd_store *s, unsigned slot, const struct sd_sqlite_param *p, size_t n,
                  void (*read)(sqlite3_stmt *, void *), void *ret, const char *op)
{
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = NULL;
    r = bound(c, slot, p, n, &st);
    if (r == 0) {
        r = one_row(c, st, read, ret, op);
    }
    sd_sqlite_pool_put(s, c);
    return r;
}

/* ---- targets --------------------------------------------------------------------------------- */

static int plan_target(struct conn *k, const char *target_id, const struct sd_outbox_clock *clk,
                       char **ret_first);

static int bind_rate(sqlite3_stmt *st, int col, int64_t rate)
{
    return rate > 0 ? sqlite3_bind_int64(st, col, rate) : sqlite3_bind_null(st, col);
}

static int target_put(struct sd_store *s, const struct sd_target *t, bool create,
                      const struct sd_outbox_clock *clk)
{
    if (!t || !t->id || !t->doc || (create && (!t->type || !sd_sqlite_env_ok(t->env)))) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    sqlite3_stmt *st = stmt(k, create ? S_TARGET_INSERT : S_TARGET_UPDATE);
    if (!st) {
        r = -EIO;
        goto out;
    }
    int rc = sqlite3_bind_text(st, 1, t->id, -1, SQLITE_STATIC);
    if (create) {
        rc |= sqlite3_bind_int64(st, 2, t->tenant_id);
        rc |= sqlite3_bind_int(st, 3, (int)t->env);
        rc |= sqlite3_bind_text(st, 4, t->type, -1, SQLITE_STATIC);
        rc |= sqlite3_bind_text(st, 5, t->doc, -1, SQLITE_STATIC);
        rc |= sqlite3_bind_int64(st, 6, sd_now_usec());
        rc |= bind_rate(st, 7, t->rate_per_hour);
    } else {
        rc |= sqlite3_bind_text(st, 2, t->doc, -1, SQLITE_STATIC);
        rc |= sqlite3_bind_int64(st, 3, sd_now_usec());
        rc |= bind_rate(st, 4, t->rate_per_hour);
    }
    if (rc != SQLITE_OK) {
        r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
        goto out;
    }
    r = sd_sqlite_step_done(k, st, create ? "target insert" : "target update");
    if (r == 0 && !create && sqlite3_changes(k->db) == 0) {
        r = -ENOENT;
    }
    if (r == 0 && clk && clk->plan) {
        r = plan_target(k, t->id, clk, NULL);
    }
out:
    return sd_sqlite_ctl_end_write(s, r, true);
}

static int target_get(struct sd_store *s, const char *id, struct sd_target *ret)
{
    if (!id) {
        return -EINVAL;
    }
    return lookup(s, S_TARGET_GET, SD_SQLITE_PARAMS(SD_SQLITE_TEXT(id)), read_target_v, ret,
                  "target get");
}

/* The connectors of tenant_id, read on connection c. */
static int list_targets(struct conn *c, int64_t tenant_id, struct sd_target **ret, size_t *ret_n)
{
    struct sd_target *v = NULL;
    size_t n = 0, cap = 0;
    int r;
    sqlite3_stmt *st = stmt(c, S_TARGET_LIST);
    if (!st) {
        return -EIO;
    }
    if (sqlite3_bind_int64(st, 1, tenant_id) != SQLITE_OK) {
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            v = sd_realloc(v, cap * sizeof(*v));
        }
        read_target(st, &v[n++]);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        r = sd_sqlite_fail(c, rc, "target list");
        sd_targets_free(v, n);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

static int target_list(struct sd_store *s, int64_t tenant_id, struct sd_target **ret, size_t *ret_n)
{
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    r = list_targets(c, tenant_id, ret, ret_n);
    sd_sqlite_pool_put(s, c);
    return r;
}

/* On the writer's own connection, so the writer never waits for a read connection. */
static int outbox_targets_tx(struct sd_store *s, int64_t tenant_id, struct sd_target **ret,
                             size_t *ret_n)
{
    if (!s->writer) {
        return -EINVAL;
    }
    return list_targets(s->writer, tenant_id, ret, ret_n);
}

/* On the writer's own connection, inside its transaction: sees the records the job just linked. */
static int outbox_linked_tx(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                            const char *source, const char *customer_id, const char *member_source,
                            int64_t *ret_n)
{
    if (!s->writer || !source || !customer_id || !member_source || !ret_n ||
        !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    struct conn *c = s->writer;
    sqlite3_stmt *st = stmt(c, S_LINKED);
    if (!st) {
        return -EIO;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, source) |
         sqlite3_bind_text(st, 4, customer_id, -1, SQLITE_STATIC) |
         sqlite3_bind_text(st, 5, member_source, -1, SQLITE_STATIC)) != SQLITE_OK) {
        sqlite3_reset(st);
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    int rc = sqlite3_step(st);
    int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_ROW) {
        return sd_sqlite_fail(c, rc, "linked records");
    }
    *ret_n = n;
    return 0;
}

static int customer_version(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                            const char *source, const char *customer_id, int64_t *ret_version)
{
    if (!source || !customer_id || !ret_version || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = stmt(c, S_VERSION);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if ((sd_sqlite_bind_scope(st, tenant_id, env, source) |
         sqlite3_bind_text(st, 4, customer_id, -1, SQLITE_STATIC)) != SQLITE_OK) {
        sqlite3_reset(st);
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    int rc = sqlite3_step(st);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc == SQLITE_ROW) {
        *ret_version = v;
        r = 0;
    } else {
        r = rc == SQLITE_DONE ? -ENOENT : sd_sqlite_fail(c, rc, "customer version");
    }
out:
    sd_sqlite_pool_put(s, c);
    return r;
}

/* Run statement `slot` on ctl binding ?1 = id. Returns the number of rows changed or -EIO. */
int sd_sqlite_outbox_settle_connector(struct sd_store *s, const char *id, const char *reason)
{
    int r = exec(s->ctl, S_REMOTE_DELETE_TARGET, SD_SQLITE_PARAMS(SD_SQLITE_TEXT(id)),
                 "remote references delete");
    if (r < 0) {
        return r;
    }
    r = exec(
        s->ctl, S_DLV_KILL_TARGET,
        SD_SQLITE_PARAMS(SD_SQLITE_TEXT(id), SD_SQLITE_NUM(sd_now_usec()), SD_SQLITE_TEXT(reason)),
        "items of a deleted connector");
    return r < 0 ? r : 0;
}

static int target_delete(struct sd_store *s, const char *id, const char *reason)
{
    if (!id || !reason) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    r = exec(s->ctl, S_TARGET_DELETE, SD_SQLITE_PARAMS(SD_SQLITE_TEXT(id)), "target delete");
    if (r == 0) {
        r = -ENOENT;
    }
    if (r >= 0) {
        r = exec(s->ctl, S_TARGET_STATE_DELETE, SD_SQLITE_PARAMS(SD_SQLITE_TEXT(id)),
                 "connector state delete");
    }
    if (r >= 0) {
        r = sd_sqlite_outbox_settle_connector(s, id, reason);
    }
    return sd_sqlite_ctl_end_write(s, r < 0 ? r : 0, r >= 0);
}

/* ---- rate plan ------------------------------------------------------------------------------- */

static int set_next(void *ctx, const char *id, int64_t next_usec)
{
    int r = exec(ctx, S_DLV_SET_NEXT,
                 SD_SQLITE_PARAMS(SD_SQLITE_TEXT(id), SD_SQLITE_NUM(next_usec)), "delivery plan");
    return r < 0 ? r : 0;
}

/* Give every queued (never sent in this run) item of connector target_id its slot under the
 * rate limit (sd_outbox_plan_apply), inside the open ctl transaction. *ret_first (may be NULL):
 * as sd_outbox_plan_apply's. A connector without a rate is left alone (its items keep their
 * times). */
static int plan_target(struct conn *k, const char *target_id, const struct sd_outbox_clock *clk,
                       char **ret_first)
{
    int64_t *sends = NULL;
    struct sd_outbox_waiting *w = NULL;
    size_t ns = 0, cs = 0, nw = 0, cw = 0;
    int64_t limit = 0;
    int r = -EIO, rc;
    if (ret_first) {
        *ret_first = NULL;
    }

    sqlite3_stmt *st = stmt(k, S_TARGET_LIMIT);
    if (!st || sqlite3_bind_text(st, 1, target_id, -1, SQLITE_STATIC) != SQLITE_OK) {
        goto out;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        limit = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        r = sd_sqlite_fail(k, rc, "target limit");
        goto out;
    }
    if (limit <= 0) {
        r = 0;
        goto out;
    }

    st = stmt(k, S_DLV_SENDS);
    if (!st || (sqlite3_bind_text(st, 1, target_id, -1, SQLITE_STATIC) |
                sqlite3_bind_int64(st, 2, clk->now_usec - clk->window_usec)) != SQLITE_OK) {
        goto out;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (ns == cs) {
            cs = cs ? cs * 2 : 64;
            sends = sd_realloc(sends, cs * sizeof(*sends));
        }
        sends[ns++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        r = sd_sqlite_fail(k, rc, "delivery sends");
        goto out;
    }

    st = stmt(k, S_DLV_WAITING);
    if (!st || sqlite3_bind_text(st, 1, target_id, -1, SQLITE_STATIC) != SQLITE_OK) {
        goto out;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (nw == cw) {
            cw = cw ? cw * 2 : 16;
            w = sd_realloc(w, cw * sizeof(*w));
        }
        w[nw].id = sd_sqlite_column_strdup(st, 0);
        w[nw].next = sqlite3_column_int64(st, 1);
        w[nw].fifo_free = sqlite3_column_int(st, 2) != 0;
        nw++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        r = sd_sqlite_fail(k, rc, "delivery waiting");
        goto out;
    }
    r = sd_outbox_plan_apply(clk, limit, sends, ns, w, nw, set_next, k, ret_first);
out:
    sd_outbox_waiting_free(w, nw);
    free(sends);
    return r;
}

/* ---- items ---------------------------------------------------------------------------------- */

static int bind_opt(sqlite3_stmt *st, int col, const char *v)
{
    return v ? sqlite3_bind_text(st, col, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, col);
}

/* The waiting item of connector_id holding dedupe_key: 1 with *ret_id (heap), 0 none, or -EIO. */
static int dedupe_lookup(struct conn *k, const char *connector_id, const char *dedupe_key,
                         char **ret_id)
{
    sqlite3_stmt *st = stmt(k, S_DLV_DEDUPE);
    if (!st) {
        return -EIO;
    }
    if ((sqlite3_bind_text(st, 1, connector_id, -1, SQLITE_STATIC) |
         sqlite3_bind_text(st, 2, dedupe_key, -1, SQLITE_STATIC)) != SQLITE_OK) {
        return sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
    }
    int rc = sqlite3_step(st);
    int r = 0;
    if (rc == SQLITE_ROW) {
        *ret_id = sd_sqlite_column_strdup(st, 0);
        r = 1;
    } else if (rc != SQLITE_DONE) {
        r = sd_sqlite_fail(k, rc, "item dedupe");
    }
    sqlite3_reset(st);
    return r;
}

/* Dedupe, then insert d on connection k (inside its open transaction). 0 stored, 1 deduplicated
 * (*ret_found: the waiting item), or negative errno. */
static int insert_item(struct conn *k, const struct sd_outbox_item *d, int64_t now_usec,
                       char **ret_found)
{
    int r;
    if (d->dedupe_key && (r = dedupe_lookup(k, d->connector_id, d->dedupe_key, ret_found)) != 0) {
        return r;
    }
    r = exec(k, S_DLV_INSERT,
             SD_SQLITE_PARAMS(SD_SQLITE_TEXT(d->id), SD_SQLITE_NUM(d->tenant_id),
                              SD_SQLITE_NUM((int64_t)d->env), SD_SQLITE_TEXT(d->connector_id),
                              SD_SQLITE_TEXT(d->operation), SD_SQLITE_TEXT(d->subject_kind),
                              SD_SQLITE_TEXT(d->subject_id), SD_SQLITE_TEXT(d->payload),
                              SD_SQLITE_TEXT(d->dedupe_key), SD_SQLITE_NUM(now_usec),
                              SD_SQLITE_TEXT(d->idem_key), SD_SQLITE_TEXT(d->request_key),
                              SD_SQLITE_TEXT(d->origin), SD_SQLITE_TEXT(d->doc)),
             "item insert");
    return r < 0 ? r : 0;
}

static int delivery_insert(struct sd_store *s, const struct sd_outbox_item *d,
                           const struct sd_outbox_clock *clk, char **ret_id)
{
    if (!sd_outbox_item_ok(d) || !clk || !clk->plan) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    char *found = NULL;
    r = insert_item(k, d, clk->now_usec, &found);
    if (r == 0) {
        r = plan_target(k, d->connector_id, clk, NULL);
    }
    int er = sd_sqlite_ctl_end_write(s, r < 0 ? r : 0, false);
    if (er < 0) {
        r = er;
    }
    if (r >= 0 && ret_id) {
        *ret_id = found ? found : sd_strdup(d->id);
        found = NULL;
    }
    free(found);
    return r;
}

static int outbox_add_tx(struct sd_store *s, const struct sd_outbox_item *d, int64_t now_usec,
                         char **ret_id)
{
    if (!sd_outbox_item_ok(d) || !s->writer) {
        return -EINVAL;
    }
    char *found = NULL;
    int r = insert_item(s->writer, d, now_usec, &found);
    if (r >= 0 && ret_id) {
        *ret_id = found ? found : sd_strdup(d->id);
        found = NULL;
    }
    free(found);
    return r;
}

/* One delivery by the statement in `slot`: ?1 the id (tenant_id 0), or ?1..?3 the scope and
 * the text. */
static int delivery_one(struct sd_store *s, int slot, int64_t tenant_id, enum sd_env env,
                        const char *text, struct sd_outbox_item *ret)
{
    if (!text) {
        return -EINVAL;
    }
    if (tenant_id) {
        return lookup(s, slot,
                      SD_SQLITE_PARAMS(SD_SQLITE_NUM(tenant_id), SD_SQLITE_NUM((int64_t)env),
                                       SD_SQLITE_TEXT(text)),
                      read_delivery_v, ret, "delivery get");
    }
    return lookup(s, slot, SD_SQLITE_PARAMS(SD_SQLITE_TEXT(text)), read_delivery_v, ret,
                  "delivery get");
}

static int delivery_get(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                        struct sd_outbox_item *ret)
{
    return delivery_one(s, tenant_id ? S_DLV_GET_SCOPED : S_DLV_GET, tenant_id, env, id, ret);
}

static int delivery_by_request(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                               const char *request_key, struct sd_outbox_item *ret)
{
    if (!tenant_id || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    return delivery_one(s, S_DLV_BY_REQUEST, tenant_id, env, request_key, ret);
}

static int delivery_list(struct sd_store *s, const struct sd_delivery_filter *f,
                         struct sd_outbox_item **ret, size_t *ret_n, bool *ret_more)
{
    size_t limit = f->limit < 1 ? 1 : f->limit > 1000 ? 1000 : f->limit;
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_outbox_item *v = NULL;
    size_t n = 0, cap = 0;
    bool more = false;
    sqlite3_stmt *st = stmt(c, S_DLV_LIST);
    if (!st) {
        r = -EIO;
        goto out;
    }
    int rc = sqlite3_bind_int64(st, 1, f->tenant_id);
    if (f->state >= 0) {
        rc |= sqlite3_bind_text(st, 2, sd_delivery_state_name((enum sd_delivery_state)f->state), -1,
                                SQLITE_STATIC);
    } else {
        rc |= sqlite3_bind_null(st, 2);
    }
    rc |= sqlite3_bind_int64(st, 3, (int64_t)limit + 1);
    rc |= sqlite3_bind_int(st, 4, f->tenant_id ? f->env : -1);
    rc |= bind_opt(st, 5, f->connector_id);
    if (rc != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == limit) {
            more = true;
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            v = sd_realloc(v, cap * sizeof(*v));
        }
        read_delivery(st, &v[n++]);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        r = sd_sqlite_fail(c, rc, "delivery list");
        goto out;
    }
    *ret = v;
    *ret_n = n;
    *ret_more = more;
    v = NULL;
    n = 0;
    r = 0;
out:
    sd_sqlite_pool_put(s, c);
    sd_outbox_items_free(v, n);
    return r;
}

static int delivery_next_due(struct sd_store *s, int64_t *ret_usec)
{
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = stmt(c, S_DLV_NEXT_DUE);
    if (!st) {
        r = -EIO;
    } else {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            r = -ENOENT;
            for (int i = 0; i < 3; i++) {
                if (sqlite3_column_type(st, i) == SQLITE_NULL) {
                    continue;
                }
                int64_t v = sqlite3_column_int64(st, i);
                if (r == -ENOENT || v < *ret_usec) {
                    *ret_usec = v;
                    r = 0;
                }
            }
        } else {
            r = sd_sqlite_fail(c, rc, "delivery next due");
        }
        sqlite3_reset(st);
    }
    sd_sqlite_pool_put(s, c);
    return r;
}

/* Lease `id` if it is still due; 1 leased, 0 not due (any more), or -EIO. */
static int lease(struct conn *k, const char *id, const struct sd_outbox_clock *clk)
{
    int r = exec(k, S_DLV_CLAIM,
                 SD_SQLITE_PARAMS(SD_SQLITE_NUM(clk->now_usec),
                                  SD_SQLITE_NUM(clk->now_usec + clk->lease_usec),
                                  SD_SQLITE_TEXT(id), SD_SQLITE_TEXT(clk->owner)),
                 "item claim");
    return r < 0 ? r : r > 0;
}

struct claim_io_ctx {
    struct conn *k;
    const struct sd_outbox_clock *clk;
};

static int claim_plan(void *ctx, const char *connector_id, bool first, char **ret_first)
{
    const struct claim_io_ctx *x = ctx;
    (void)first; /* SQLite's one write lock serializes every plan */
    return plan_target(x->k, connector_id, x->clk, ret_first);
}

static int claim_lease(void *ctx, const char *id)
{
    const struct claim_io_ctx *x = ctx;
    return lease(x->k, id, x->clk);
}

static const struct sd_outbox_claim_io claim_io = {.plan = claim_plan, .lease = claim_lease};

static int delivery_claim(struct sd_store *s, const struct sd_outbox_clock *clk,
                          struct sd_outbox_item *ret)
{
    if (!clk || !clk->plan || clk->lease_usec <= 0) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    struct sd_outbox_candidate *cand = NULL;
    size_t nc = 0, cap = 0;
    char *chosen = NULL;
    sqlite3_stmt *st = stmt(k, S_DLV_CANDIDATES);
    if (!st || sqlite3_bind_int64(st, 1, clk->now_usec) != SQLITE_OK) {
        r = -EIO;
        goto out;
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (nc == cap) {
            cap = cap ? cap * 2 : 8;
            cand = sd_realloc(cand, cap * sizeof(*cand));
        }
        cand[nc].id = sd_sqlite_column_strdup(st, 0);
        cand[nc].connector_id = sd_sqlite_column_strdup(st, 1);
        const char *state = (const char *)sqlite3_column_text(st, 2);
        cand[nc].first_send =
            state && strcmp(state, "queued") == 0 && sqlite3_column_int64(st, 3) > 0;
        nc++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        r = sd_sqlite_fail(k, rc, "item candidates");
        goto out;
    }
    struct claim_io_ctx x = {.k = k, .clk = clk};
    if ((r = sd_outbox_claim_pick(cand, nc, &claim_io, &x, &chosen)) < 0) {
        goto out;
    }
    r = -ENOENT;
    if (chosen) {
        st = stmt(k, S_DLV_GET);
        if (!st) {
            r = -EIO;
        } else if (sqlite3_bind_text(st, 1, chosen, -1, SQLITE_STATIC) != SQLITE_OK) {
            r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
        } else {
            r = one_row(k, st, read_delivery_v, ret, "item get");
        }
    }
out:
    sd_outbox_candidates_free(cand, nc);
    free(chosen);
    /* -ENOENT still commits: the plan written above is what the status shows. */
    int fr = sd_sqlite_ctl_end_write(s, r == -ENOENT ? 0 : r, false);
    return fr < 0 ? fr : r;
}

static int delivery_claim_more(struct sd_store *s, const struct sd_outbox_clock *clk,
                               const struct sd_outbox_item *first, size_t max,
                               struct sd_outbox_item **ret, size_t *ret_n)
{
    *ret = NULL;
    *ret_n = 0;
    if (!sd_outbox_more_ok(clk, first)) {
        return -EINVAL;
    }
    if (max == 0) {
        return 0;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    char **ids = sd_calloc(max, sizeof(*ids));
    size_t n_ids = 0, n = 0;
    struct sd_outbox_item *v = sd_calloc(max, sizeof(*v));
    sqlite3_stmt *st = stmt(k, S_DLV_MORE);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if ((sqlite3_bind_int64(st, 1, clk->now_usec) |
         sqlite3_bind_text(st, 2, first->id, -1, SQLITE_STATIC) |
         sqlite3_bind_text(st, 3, first->connector_id, -1, SQLITE_STATIC) |
         sqlite3_bind_text(st, 4, first->operation, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 5, (int64_t)max)) != SQLITE_OK) {
        sqlite3_reset(st);
        r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
        goto out;
    }
    int rc = SQLITE_DONE;
    while (n_ids < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        ids[n_ids++] = sd_sqlite_column_strdup(st, 0);
    }
    sqlite3_reset(st);
    r = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : sd_sqlite_fail(k, rc, "item batch");
    for (size_t i = 0; i < n_ids && r == 0; i++) {
        int lr = lease(k, ids[i], clk);
        if (lr < 0) {
            r = lr;
            break;
        }
        if (lr == 0) {
            continue;
        }
        st = stmt(k, S_DLV_GET);
        if (!st) {
            r = -EIO;
        } else if (sqlite3_bind_text(st, 1, ids[i], -1, SQLITE_STATIC) != SQLITE_OK) {
            r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
        } else {
            r = one_row(k, st, read_delivery_v, &v[n], "item get");
            n += r == 0;
        }
    }
out:
    for (size_t i = 0; i < n_ids; i++) {
        free(ids[i]);
    }
    free(ids);
    int fr = sd_sqlite_ctl_end_write(s, r, false);
    if (r == 0 && fr < 0) {
        r = fr;
    }
    if (r < 0) {
        sd_outbox_items_free(v, n);
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

static int delivery_renew(struct sd_store *s, const char *id, int64_t fence,
                          int64_t new_lease_until_usec)
{
    if (!id) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    r = exec(s->ctl, S_DLV_RENEW,
             SD_SQLITE_PARAMS(SD_SQLITE_TEXT(id), SD_SQLITE_NUM(fence),
                              SD_SQLITE_NUM(new_lease_until_usec)),
             "item renew");
    return sd_sqlite_ctl_end_write(s, r < 0 ? r : r == 0 ? -ESTALE : 0, false);
}

/* One item's outcome inside the open write transaction: 0, -ESTALE (not this fence's lease),
 * or a store error. */
static int finish_row(struct conn *k, const char *id, int64_t fence,
                      const struct sd_delivery_outcome *o, int64_t now)
{
    const char *remote = o->state == SD_DELIVERY_DELIVERED ? o->remote_ref : NULL;
    int r =
        exec(k, S_DLV_FINISH,
             SD_SQLITE_PARAMS(
                 SD_SQLITE_TEXT(id), SD_SQLITE_NUM(fence),
                 SD_SQLITE_TEXT(sd_delivery_state_name(o->state)), SD_SQLITE_NUM(o->attempts_delta),
                 SD_SQLITE_NUM(o->state == SD_DELIVERY_RETRYING ? o->next_attempt_usec : 0),
                 SD_SQLITE_TEXT(o->doc), SD_SQLITE_NUM(now), SD_SQLITE_TEXT(remote)),
             "item finish");
    if (r == 0) {
        return -ESTALE;
    }
    if (r > 0 && remote) {
        r = exec(k, S_REMOTE_UPSERT_ITEM,
                 SD_SQLITE_PARAMS(SD_SQLITE_TEXT(id), SD_SQLITE_TEXT(remote), SD_SQLITE_NUM(now)),
                 "remote reference upsert");
    }
    return r < 0 ? r : 0;
}

static int delivery_finish(struct sd_store *s, const char *id, int64_t fence,
                           const struct sd_delivery_outcome *o)
{
    if (!sd_outbox_outcome_ok(id, o)) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    r = finish_row(s->ctl, id, fence, o, sd_now_usec());
    return sd_sqlite_ctl_end_write(s, r, false);
}

static int delivery_finish_many(struct sd_store *s, size_t n, const char *const *ids,
                                const int64_t *fences, const struct sd_delivery_outcome *o,
                                int *ret)
{
    for (size_t i = 0; i < n; i++) {
        if (!sd_outbox_outcome_ok(ids[i], &o[i])) {
            return -EINVAL;
        }
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    int64_t now = sd_now_usec();
    for (size_t i = 0; i < n && r == 0; i++) {
        int x = finish_row(s->ctl, ids[i], fences[i], &o[i], now);
        ret[i] = x == -ESTALE ? -ESTALE : 0;
        r = x == -ESTALE ? 0 : x;
    }
    return sd_sqlite_ctl_end_write(s, r, false);
}

/* After an UPDATE of `id` guarded by its state changed nothing: -ENOENT if the row is missing,
 * else -EBUSY (it is not in a state the change applies to). */
static int why_unchanged(struct conn *k, const char *id)
{
    sqlite3_stmt *st = stmt(k, S_DLV_STATE);
    if (!st || sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK) {
        return -EIO;
    }
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_ROW    ? -EBUSY
           : rc == SQLITE_DONE ? -ENOENT
                               : sd_sqlite_fail(k, rc, "item state");
}

/* The connector of item `id` into *ret (a heap string), inside the open ctl transaction. */
static int item_connector(struct conn *k, const char *id, char **ret)
{
    sqlite3_stmt *st = stmt(k, S_DLV_CONNECTOR);
    if (!st || sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK) {
        return -EIO;
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *ret = sd_sqlite_column_strdup(st, 0);
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : sd_sqlite_fail(k, rc, "item");
}

/* After a state-guarded UPDATE of item `id` (r: the rows it changed, or an error): -ENOENT or
 * -EBUSY when it changed nothing (why_unchanged); else, with clk, the item's connector is
 * planned again. */
static int changed_then_plan(struct conn *k, const char *id, int r,
                             const struct sd_outbox_clock *clk)
{
    if (r < 0) {
        return r;
    }
    if (r == 0) {
        return why_unchanged(k, id);
    }
    if (!clk) {
        return 0;
    }
    char *connector = NULL;
    if ((r = item_connector(k, id, &connector)) == 0) {
        r = plan_target(k, connector, clk, NULL);
    }
    free(connector);
    return r;
}

static int delivery_requeue(struct sd_store *s, const char *id, const char *idem_key,
                            const char *doc, const struct sd_outbox_clock *clk)
{
    if (!id || !idem_key || !doc || !clk || !clk->plan) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    r = exec(k, S_DLV_REQUEUE,
             SD_SQLITE_PARAMS(SD_SQLITE_TEXT(id), SD_SQLITE_TEXT(idem_key), SD_SQLITE_TEXT(doc),
                              SD_SQLITE_NUM(clk->now_usec)),
             "item requeue");
    r = changed_then_plan(k, id, r, clk);
    return sd_sqlite_ctl_end_write(s, r, false);
}

static int delivery_cancel(struct sd_store *s, const char *id, const char *doc, int64_t now_usec)
{
    if (!id || !doc) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    r = exec(s->ctl, S_DLV_CANCEL,
             SD_SQLITE_PARAMS(SD_SQLITE_TEXT(id), SD_SQLITE_TEXT(doc), SD_SQLITE_NUM(now_usec)),
             "item cancel");
    r = changed_then_plan(s->ctl, id, r, NULL);
    return sd_sqlite_ctl_end_write(s, r, false);
}

static int delivery_send_now(struct sd_store *s, const char *id, const struct sd_outbox_clock *clk)
{
    if (!id || !clk || !clk->plan) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    r = exec(s->ctl, S_DLV_SEND_NOW,
             SD_SQLITE_PARAMS(SD_SQLITE_TEXT(id), SD_SQLITE_NUM(clk->now_usec)), "item send now");
    r = changed_then_plan(s->ctl, id, r, clk); /* a rate still applies to a first send */
    return sd_sqlite_ctl_end_write(s, r, false);
}

/* ---- remote references ----------------------------------------------------------------------- */

static void read_text_v(sqlite3_stmt *st, void *ret)
{
    *(char **)ret = sd_sqlite_column_strdup(st, 0);
}

static int remote_lookup(struct sd_store *s, unsigned slot, const char *connector_id,
                         const char *kind, const char *key, char **ret)
{
    if (!connector_id || !kind || !key || !ret) {
        return -EINVAL;
    }
    int r = lookup(
        s, slot,
        SD_SQLITE_PARAMS(SD_SQLITE_TEXT(connector_id), SD_SQLITE_TEXT(kind), SD_SQLITE_TEXT(key)),
        read_text_v, ret, "remote reference");
    return r == 0 && !*ret ? -ENOENT : r;
}

static int remote_ref_get(struct sd_store *s, const char *connector_id, const char *kind,
                          const char *local_id, char **ret_remote)
{
    return remote_lookup(s, S_REMOTE_GET, connector_id, kind, local_id, ret_remote);
}

static int remote_ref_find(struct sd_store *s, const char *connector_id, const char *kind,
                           const char *remote_id, char **ret_local)
{
    return remote_lookup(s, S_REMOTE_FIND, connector_id, kind, remote_id, ret_local);
}

static int remote_ref_put(struct sd_store *s, const char *connector_id, const char *kind,
                          const char *local_id, const char *remote_id)
{
    if (!connector_id || !kind || !local_id || !remote_id) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    r = exec(s->ctl, S_REMOTE_PUT,
             SD_SQLITE_PARAMS(SD_SQLITE_TEXT(connector_id), SD_SQLITE_TEXT(kind),
                              SD_SQLITE_TEXT(local_id), SD_SQLITE_TEXT(remote_id),
                              SD_SQLITE_NUM(sd_now_usec())),
             "remote reference put");
    return sd_sqlite_ctl_end_write(s, r < 0 ? r : 0, false);
}

static int remote_ref_list(struct sd_store *s, const char *connector_id, const char *kind,
                           const char *after, size_t limit, char ***ret_local, char ***ret_remote,
                           size_t *ret_n)
{
    if (!sd_outbox_refs_list_ok(connector_id, kind, limit, ret_local, ret_remote, ret_n)) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    char **loc = NULL, **rem = NULL;
    size_t n = 0;
    sqlite3_stmt *st = stmt(c, S_REMOTE_LIST);
    if (!st) {
        r = -EIO;
    } else if ((sqlite3_bind_text(st, 1, connector_id, -1, SQLITE_STATIC) |
                sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC) |
                sqlite3_bind_text(st, 3, after ? after : "", -1, SQLITE_STATIC) |
                sqlite3_bind_int64(st, 4, (sqlite3_int64)limit)) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    } else {
        loc = sd_calloc(limit, sizeof(*loc));
        rem = sd_calloc(limit, sizeof(*rem));
        int rc = SQLITE_DONE;
        while (n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            loc[n] = sd_sqlite_column_strdup(st, 0);
            rem[n] = sd_sqlite_column_strdup(st, 1);
            n++;
            if (!loc[n - 1] || !rem[n - 1]) {
                rc = SQLITE_CORRUPT;
                break;
            }
        }
        if (n < limit && rc != SQLITE_DONE) {
            r = sd_sqlite_fail(c, rc, "remote reference list");
        }
        sqlite3_reset(st);
    }
    sd_sqlite_pool_put(s, c);
    if (r < 0 || n == 0) {
        for (size_t i = 0; i < n; i++) {
            free(loc[i]);
            free(rem[i]);
        }
        free(loc);
        free(rem);
        loc = rem = NULL;
        n = 0;
    }
    if (r == 0) {
        *ret_local = loc;
        *ret_remote = rem;
        *ret_n = n;
    }
    return r;
}

static int remote_ref_apply(struct sd_store *s, const char *connector_id, const char *kind,
                            const char *const *put_local, const char *const *put_remote,
                            size_t n_put, const char *const *del_local, size_t n_del)
{
    if (!sd_outbox_refs_apply_ok(connector_id, kind, put_local, put_remote, n_put, del_local,
                                 n_del)) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    int64_t now = sd_now_usec();
    for (size_t i = 0; r >= 0 && i < n_put; i++) {
        r = exec(k, S_REMOTE_PUT,
                 SD_SQLITE_PARAMS(SD_SQLITE_TEXT(connector_id), SD_SQLITE_TEXT(kind),
                                  SD_SQLITE_TEXT(put_local[i]), SD_SQLITE_TEXT(put_remote[i]),
                                  SD_SQLITE_NUM(now)),
                 "remote reference put");
    }
    for (size_t i = 0; r >= 0 && i < n_del; i++) {
        r = exec(k, S_REMOTE_DELETE,
                 SD_SQLITE_PARAMS(SD_SQLITE_TEXT(connector_id), SD_SQLITE_TEXT(kind),
                                  SD_SQLITE_TEXT(del_local[i])),
                 "remote reference delete");
    }
    return sd_sqlite_ctl_end_write(s, r < 0 ? r : 0, false);
}

const struct sd_store_outbox_ops sd_sqlite_outbox_ops = SD_OUTBOX_OPS_INIT;
