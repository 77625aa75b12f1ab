/* sqlite_outbox.c — the SQLite side of store/audience.h's outbox part (issue #4): push targets,
 * the delivery outbox and the remote segments a target created.
 *
 * Every change runs on the control-plane connection (`ctl`, ctl_lock, BEGIN IMMEDIATE,
 * synchronous=FULL), so a delivery is durable when delivery_insert returns and every claim is
 * serialized with every other claim — of this process's worker threads and of any other process
 * on the same file — by SQLite's write lock. None of these changes bump the settings version:
 * they are data, not configuration a running server has to reload. Reads use the read pool.
 *
 * Invariants the SQL keeps:
 *  - A claim and the rate-limit decision it depends on happen in one transaction: the sends
 *    inside the window are counted, the target's waiting deliveries are given their slots
 *    (next_attempt_usec) and the chosen row is leased before COMMIT. `sent_usec` (the first send
 *    of a run) lives in the delivery document under "$.sent_usec" and is written only here:
 *    stamped by the claim, carried over by finish, cleared by requeue. A row whose first send is
 *    inside the window was updated at that send or later, so `updated_usec > now - window`
 *    narrows the scan before the JSON is read.
 *  - Every change to a leased row names the lease (lease_until_usec) it holds: a worker whose
 *    lease ran out and was taken over changes nothing (-ESTALE).
 *  - The 201's remote segment id is written in the same transaction that ends the lease.
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
#include "store/store.h"

enum {
    S_TARGET_INSERT = 48,
    S_TARGET_UPDATE,
    S_TARGET_GET,
    S_TARGET_LIST,
    S_TARGET_DELETE,
    S_REMOTE_DELETE_TARGET,
    S_DLV_INSERT,
    S_DLV_GET,
    S_DLV_GET_SCOPED,
    S_DLV_LIST,
    S_DLV_NEXT_DUE,
    S_DLV_CANDIDATES,
    S_TARGET_LIMIT,
    S_DLV_SENDS,
    S_DLV_WAITING,
    S_DLV_SET_NEXT,
    S_DLV_CLAIM,
    S_DLV_RENEW,
    S_DLV_FINISH,
    S_REMOTE_UPSERT,
    S_REMOTE_GET,
    S_DLV_REQUEUE,
    S_DLV_STATE,
    S_DLV_TARGET,
    S_DLV_BY_REQUEST,
    S_DLV_KILL_TARGET,
    S_LAST_ /* must stay <= 96 */
};
_Static_assert(S_LAST_ <= SD_SQLITE_EXTRA_SLOTS, "outbox statement slots are 48..95");

#define TARGET_COLS                                                                                \
    "SELECT t.id, t.tenant_id, n.client_id, t.env, t.type, t.doc, t.created_usec, "                \
    "t.updated_usec FROM targets t JOIN tenants n ON n.id = t.tenant_id "

#define DLV_COLS                                                                                   \
    "SELECT d.id, d.tenant_id, n.client_id, d.env, d.segment_id, d.target_id, d.state, "           \
    "d.attempts, d.next_attempt_usec, d.lease_until_usec, "                                        \
    "coalesce(json_extract(d.doc, '$.sent_usec'), 0), d.idem_key, d.doc, d.created_usec, "         \
    "d.updated_usec FROM deliveries d JOIN tenants n ON n.id = d.tenant_id "

/* Rows a claim may take now (?1 = now), in due order. */
#define DUE_WHERE                                                                                  \
    "((d.state IN ('queued', 'retrying') AND d.next_attempt_usec <= ?1) OR "                       \
    "(d.state = 'sending' AND d.lease_until_usec <= ?1))"

static const char *const sql[] = {
    [S_TARGET_INSERT] = "INSERT INTO targets (id, tenant_id, env, type, doc, created_usec, "
                        "updated_usec) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    [S_TARGET_UPDATE] = "UPDATE targets SET doc = ?2, updated_usec = ?3 WHERE id = ?1",
    [S_TARGET_GET] = TARGET_COLS "WHERE t.id = ?1",
    [S_TARGET_LIST] = TARGET_COLS "WHERE t.tenant_id = ?1 ORDER BY t.created_usec, t.id",
    [S_TARGET_DELETE] = "DELETE FROM targets WHERE id = ?1",
    [S_REMOTE_DELETE_TARGET] = "DELETE FROM remote_segments WHERE target_id = ?1",
    [S_DLV_INSERT] = "INSERT INTO deliveries (id, tenant_id, env, segment_id, target_id, state, "
                     "attempts, next_attempt_usec, lease_until_usec, idem_key, doc, "
                     "created_usec, updated_usec, request_key) VALUES (?1, ?2, ?3, ?4, ?5, "
                     "'queued', 0, ?6, 0, ?7, json_remove(?8, '$.sent_usec'), ?6, ?6, ?9)",
    [S_DLV_BY_REQUEST] = DLV_COLS "WHERE d.tenant_id = ?1 AND d.env = ?2 AND d.request_key = ?3",
    [S_DLV_GET] = DLV_COLS "WHERE d.id = ?1",
    [S_DLV_GET_SCOPED] = DLV_COLS "WHERE d.tenant_id = ?1 AND d.env = ?2 AND d.id = ?3",
    [S_DLV_LIST] = DLV_COLS "WHERE (?1 = 0 OR d.tenant_id = ?1) AND (?2 IS NULL OR d.state = ?2) "
                            "ORDER BY d.created_usec DESC, d.id DESC LIMIT ?3",
    /* One min() per state so each is an index lookup on deliveries_due. */
    [S_DLV_NEXT_DUE] =
        "SELECT (SELECT min(next_attempt_usec) FROM deliveries WHERE state = 'queued'), "
        "(SELECT min(next_attempt_usec) FROM deliveries WHERE state = 'retrying'), "
        "(SELECT min(lease_until_usec) FROM deliveries WHERE state = 'sending')",
    [S_DLV_CANDIDATES] = "SELECT d.id, d.target_id, d.state FROM deliveries d WHERE " DUE_WHERE
                         " ORDER BY d.next_attempt_usec, d.created_usec, d.id LIMIT 32",
    [S_TARGET_LIMIT] = "SELECT coalesce(json_extract(doc, '$.segments_per_hour'), 50) FROM "
                       "targets WHERE id = ?1",
    [S_DLV_SENDS] = "SELECT s FROM (SELECT json_extract(doc, '$.sent_usec') AS s FROM deliveries "
                    "WHERE target_id = ?1 AND updated_usec > ?2) WHERE s > ?2 ORDER BY s",
    [S_DLV_WAITING] = "SELECT id, next_attempt_usec FROM deliveries WHERE target_id = ?1 AND "
                      "state = 'queued' ORDER BY created_usec, id",
    [S_DLV_SET_NEXT] = "UPDATE deliveries SET next_attempt_usec = ?2 WHERE id = ?1 AND "
                       "state = 'queued'",
    [S_DLV_CLAIM] =
        "UPDATE deliveries AS d SET state = 'sending', attempts = attempts + 1, "
        "lease_until_usec = ?2, updated_usec = ?1, doc = json_set(CASE WHEN "
        "coalesce(json_extract(doc, '$.sent_usec'), 0) = 0 THEN json_set(doc, '$.sent_usec', ?1) "
        "ELSE doc END, '$.lease_owner', ?4) WHERE d.id = ?3 AND " DUE_WHERE,
    [S_DLV_RENEW] = "UPDATE deliveries SET lease_until_usec = ?3 WHERE id = ?1 AND "
                    "state = 'sending' AND lease_until_usec = ?2",
    [S_DLV_FINISH] = "UPDATE deliveries SET state = ?3, attempts = max(0, attempts + ?4), "
                     "next_attempt_usec = ?5, lease_until_usec = 0, "
                     "doc = json_set(?6, '$.sent_usec', json_extract(doc, '$.sent_usec')), "
                     "updated_usec = ?7 WHERE id = ?1 AND state = 'sending' AND "
                     "lease_until_usec = ?2",
    [S_REMOTE_UPSERT] = "INSERT INTO remote_segments (target_id, segment_id, remote_segment_id, "
                        "updated_usec) SELECT target_id, segment_id, ?2, ?3 FROM deliveries "
                        "WHERE id = ?1 ON CONFLICT (target_id, segment_id) DO UPDATE SET "
                        "remote_segment_id = excluded.remote_segment_id, "
                        "updated_usec = excluded.updated_usec",
    [S_REMOTE_GET] = "SELECT r.remote_segment_id FROM remote_segments r JOIN targets t ON "
                     "t.id = r.target_id WHERE t.tenant_id = ?1 AND t.env = ?2 AND "
                     "r.target_id = ?3 AND r.segment_id = ?4",
    [S_DLV_REQUEUE] = "UPDATE deliveries SET state = 'queued', attempts = 0, "
                      "next_attempt_usec = ?4, lease_until_usec = 0, idem_key = ?2, "
                      "doc = json_remove(?3, '$.sent_usec'), updated_usec = ?4 "
                      "WHERE id = ?1 AND state = 'dead'",
    [S_DLV_STATE] = "SELECT state FROM deliveries WHERE id = ?1",
    [S_DLV_TARGET] = "SELECT target_id FROM deliveries WHERE id = ?1",
    /* A deleted target's waiting deliveries: dead at once (one in flight finishes on its own). */
    [S_DLV_KILL_TARGET] = "UPDATE deliveries SET state = 'dead', next_attempt_usec = 0, "
                          "lease_until_usec = 0, updated_usec = ?2, doc = json_set(doc, "
                          "'$.last_error', 'the target was deleted') WHERE target_id = ?1 AND "
                          "state IN ('queued', 'retrying')",
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
    t->created_usec = sqlite3_column_int64(st, 6);
    t->updated_usec = sqlite3_column_int64(st, 7);
}

static void read_delivery(sqlite3_stmt *st, struct sd_delivery *d)
{
    *d = (struct sd_delivery){0}; /* every field, request_key (not read) included */
    d->id = sd_sqlite_column_strdup(st, 0);
    d->tenant_id = sqlite3_column_int64(st, 1);
    d->client_id = sd_sqlite_column_strdup(st, 2);
    d->env = col_env(st, 3);
    d->segment_id = sd_sqlite_column_strdup(st, 4);
    d->target_id = sd_sqlite_column_strdup(st, 5);
    const char *name = (const char *)sqlite3_column_text(st, 6);
    enum sd_delivery_state state = SD_DELIVERY_DEAD;
    (void)sd_delivery_state_parse(name, &state);
    d->state = state;
    d->attempts = sqlite3_column_int64(st, 7);
    d->next_attempt_usec = sqlite3_column_int64(st, 8);
    d->lease_until_usec = sqlite3_column_int64(st, 9);
    d->sent_usec = sqlite3_column_int64(st, 10);
    d->idem_key = sd_sqlite_column_strdup(st, 11);
    d->doc = sd_sqlite_column_strdup(st, 12);
    d->created_usec = sqlite3_column_int64(st, 13);
    d->updated_usec = sqlite3_column_int64(st, 14);
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

/* ---- targets --------------------------------------------------------------------------------- */

static int plan_target(struct conn *k, const char *target_id, const struct sd_outbox_clock *clk,
                       char **ret_first);

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
    } else {
        rc |= sqlite3_bind_text(st, 2, t->doc, -1, SQLITE_STATIC);
        rc |= sqlite3_bind_int64(st, 3, sd_now_usec());
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
    return sd_sqlite_ctl_end_write(s, r, false);
}

static int target_get(struct sd_store *s, const char *id, struct sd_target *ret)
{
    if (!id) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = stmt(c, S_TARGET_GET);
    if (!st) {
        r = -EIO;
    } else if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    } else {
        r = one_row(c, st, read_target_v, ret, "target get");
    }
    sd_sqlite_pool_put(s, c);
    return r;
}

static int target_list(struct sd_store *s, int64_t tenant_id, struct sd_target **ret, size_t *ret_n)
{
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_target *v = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *st = stmt(c, S_TARGET_LIST);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if (sqlite3_bind_int64(st, 1, tenant_id) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
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
        goto out;
    }
    *ret = v;
    *ret_n = n;
    v = NULL;
    n = 0;
    r = 0;
out:
    sd_sqlite_pool_put(s, c);
    sd_targets_free(v, n);
    return r;
}

/* Run statement `slot` on ctl binding ?1 = id. Returns the number of rows changed or -EIO. */
static int ctl_by_id(struct conn *k, unsigned slot, const char *id, const char *op)
{
    sqlite3_stmt *st = stmt(k, slot);
    if (!st) {
        return -EIO;
    }
    if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK) {
        return sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
    }
    int r = sd_sqlite_step_done(k, st, op);
    return r < 0 ? r : sqlite3_changes(k->db);
}

static int target_delete(struct sd_store *s, const char *id)
{
    if (!id) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    r = ctl_by_id(s->ctl, S_TARGET_DELETE, id, "target delete");
    if (r == 0) {
        r = -ENOENT;
    } else if (r > 0) {
        r = ctl_by_id(s->ctl, S_REMOTE_DELETE_TARGET, id, "remote segments delete");
    }
    if (r >= 0) {
        sqlite3_stmt *st = stmt(s->ctl, S_DLV_KILL_TARGET);
        if (!st) {
            r = -EIO;
        } else if ((sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) |
                    sqlite3_bind_int64(st, 2, sd_now_usec())) != SQLITE_OK) {
            r = sd_sqlite_fail(s->ctl, SQLITE_MISUSE, "bind");
        } else {
            r = sd_sqlite_step_done(s->ctl, st, "deliveries of a deleted target");
        }
    }
    return sd_sqlite_ctl_end_write(s, r < 0 ? r : 0, false);
}

/* ---- rate plan ------------------------------------------------------------------------------- */

struct waiting {
    char *id;
    int64_t next;
};

/* Give every queued (never sent in this run) delivery of target_id its slot under the rate
 * limit, oldest first, inside the open ctl transaction. *ret_first (may be NULL) receives the
 * id of the oldest waiting delivery if it may go now (heap), else NULL. */
static int plan_target(struct conn *k, const char *target_id, const struct sd_outbox_clock *clk,
                       char **ret_first)
{
    int64_t *sends = NULL;
    struct waiting *w = NULL;
    int64_t *slots = NULL;
    size_t ns = 0, cs = 0, nw = 0, cw = 0;
    int64_t limit = 50;
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
        nw++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        r = sd_sqlite_fail(k, rc, "delivery waiting");
        goto out;
    }
    if (nw == 0) {
        r = 0;
        goto out;
    }

    slots = sd_calloc(nw, sizeof(*slots));
    clk->plan(sends, ns, limit, clk->window_usec, clk->now_usec, nw, slots);
    st = stmt(k, S_DLV_SET_NEXT);
    if (!st) {
        goto out;
    }
    for (size_t j = 0; j < nw; j++) {
        bool may_go = slots[j] <= clk->now_usec;
        /* One that may go keeps its own (past) time, so due order among targets stays. */
        int64_t next = may_go ? (w[j].next <= clk->now_usec ? w[j].next : clk->now_usec) : slots[j];
        if (next == w[j].next) {
            continue;
        }
        if ((sqlite3_bind_text(st, 1, w[j].id, -1, SQLITE_STATIC) |
             sqlite3_bind_int64(st, 2, next)) != SQLITE_OK) {
            r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
            goto out;
        }
        if ((r = sd_sqlite_step_done(k, st, "delivery plan")) < 0) {
            goto out;
        }
        r = -EIO;
    }
    if (ret_first && slots[0] <= clk->now_usec) {
        *ret_first = w[0].id;
        w[0].id = NULL;
    }
    r = 0;
out:
    for (size_t j = 0; j < nw; j++) {
        free(w[j].id);
    }
    free(w);
    free(sends);
    free(slots);
    return r;
}

/* ---- deliveries ------------------------------------------------------------------------------ */

static int delivery_insert(struct sd_store *s, const struct sd_delivery *d,
                           const struct sd_outbox_clock *clk)
{
    if (!d || !d->id || !d->segment_id || !d->target_id || !d->idem_key || !d->doc || !clk ||
        !clk->plan || !sd_sqlite_env_ok(d->env)) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    sqlite3_stmt *st = stmt(k, S_DLV_INSERT);
    if (!st) {
        r = -EIO;
    } else if ((sqlite3_bind_text(st, 1, d->id, -1, SQLITE_STATIC) |
                sqlite3_bind_int64(st, 2, d->tenant_id) | sqlite3_bind_int(st, 3, (int)d->env) |
                sqlite3_bind_text(st, 4, d->segment_id, -1, SQLITE_STATIC) |
                sqlite3_bind_text(st, 5, d->target_id, -1, SQLITE_STATIC) |
                sqlite3_bind_int64(st, 6, clk->now_usec) |
                sqlite3_bind_text(st, 7, d->idem_key, -1, SQLITE_STATIC) |
                sqlite3_bind_text(st, 8, d->doc, -1, SQLITE_STATIC) |
                (d->request_key ? sqlite3_bind_text(st, 9, d->request_key, -1, SQLITE_STATIC)
                                : sqlite3_bind_null(st, 9))) != SQLITE_OK) {
        r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
    } else {
        r = sd_sqlite_step_done(k, st, "delivery insert");
    }
    if (r == 0) {
        r = plan_target(k, d->target_id, clk, NULL);
    }
    return sd_sqlite_ctl_end_write(s, r, false);
}

/* One delivery by the statement in `slot`: ?1 the id (tenant_id 0), or ?1..?3 the scope and
 * the text. */
static int delivery_one(struct sd_store *s, int slot, int64_t tenant_id, enum sd_env env,
                        const char *text, struct sd_delivery *ret)
{
    if (!text) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = stmt(c, slot);
    int rc;
    if (!st) {
        r = -EIO;
        goto out;
    }
    if (tenant_id) {
        rc = sd_sqlite_bind_scope(st, tenant_id, env, text);
    } else {
        rc = sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    }
    if (rc != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    r = one_row(c, st, read_delivery_v, ret, "delivery get");
out:
    sd_sqlite_pool_put(s, c);
    return r;
}

static int delivery_get(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                        struct sd_delivery *ret)
{
    return delivery_one(s, tenant_id ? S_DLV_GET_SCOPED : S_DLV_GET, tenant_id, env, id, ret);
}

static int delivery_by_request(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                               const char *request_key, struct sd_delivery *ret)
{
    if (!tenant_id || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    return delivery_one(s, S_DLV_BY_REQUEST, tenant_id, env, request_key, ret);
}

static int delivery_list(struct sd_store *s, const struct sd_delivery_filter *f,
                         struct sd_delivery **ret, size_t *ret_n, bool *ret_more)
{
    size_t limit = f->limit < 1 ? 1 : f->limit > 1000 ? 1000 : f->limit;
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_delivery *v = NULL;
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
    sd_deliveries_free(v, n);
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

struct candidate {
    char *id;
    char *target_id;
    bool first_send; /* queued: subject to the rate limit */
};

/* Lease `id` if it is still due; 1 leased, 0 not due (any more), or -EIO. */
static int lease(struct conn *k, const char *id, const struct sd_outbox_clock *clk)
{
    sqlite3_stmt *st = stmt(k, S_DLV_CLAIM);
    if (!st) {
        return -EIO;
    }
    if ((sqlite3_bind_int64(st, 1, clk->now_usec) |
         sqlite3_bind_int64(st, 2, clk->now_usec + clk->lease_usec) |
         sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC) |
         (clk->owner ? sqlite3_bind_text(st, 4, clk->owner, -1, SQLITE_STATIC)
                     : sqlite3_bind_null(st, 4))) != SQLITE_OK) {
        return sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
    }
    int r = sd_sqlite_step_done(k, st, "delivery claim");
    return r < 0 ? r : sqlite3_changes(k->db) > 0;
}

static int delivery_claim(struct sd_store *s, const struct sd_outbox_clock *clk,
                          struct sd_delivery *ret)
{
    if (!clk || !clk->plan || clk->lease_usec <= 0) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    struct candidate *cand = NULL;
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
        cand[nc].target_id = sd_sqlite_column_strdup(st, 1);
        const char *state = (const char *)sqlite3_column_text(st, 2);
        cand[nc].first_send = state && strcmp(state, "queued") == 0;
        nc++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        r = sd_sqlite_fail(k, rc, "delivery candidates");
        goto out;
    }
    r = -ENOENT;
    for (size_t i = 0; i < nc && !chosen; i++) {
        if (!cand[i].first_send) {
            /* A retry or a lease that ran out: its run already counted against the limit. */
            chosen = sd_strdup(cand[i].id);
            break;
        }
        bool planned = false;
        for (size_t j = 0; j < i; j++) {
            planned = planned ||
                      (cand[j].first_send && strcmp(cand[j].target_id, cand[i].target_id) == 0);
        }
        if (planned) {
            continue; /* its target was planned already and had no free slot */
        }
        int pr = plan_target(k, cand[i].target_id, clk, &chosen);
        if (pr < 0) {
            r = pr;
            goto out;
        }
    }
    if (chosen) {
        int lr = lease(k, chosen, clk);
        if (lr < 0) {
            r = lr;
            goto out;
        }
        if (lr == 0) {
            r = -ENOENT; /* planned but not due yet: it keeps its place */
            goto out;
        }
        st = stmt(k, S_DLV_GET);
        if (!st) {
            r = -EIO;
        } else if (sqlite3_bind_text(st, 1, chosen, -1, SQLITE_STATIC) != SQLITE_OK) {
            r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
        } else {
            r = one_row(k, st, read_delivery_v, ret, "delivery get");
        }
    }
out:
    for (size_t i = 0; i < nc; i++) {
        free(cand[i].id);
        free(cand[i].target_id);
    }
    free(cand);
    free(chosen);
    /* -ENOENT still commits: the plan written above is what the status shows. */
    int fr = sd_sqlite_ctl_end_write(s, r == -ENOENT ? 0 : r, false);
    return fr < 0 ? fr : r;
}

static int delivery_renew(struct sd_store *s, const char *id, int64_t lease_until_usec,
                          int64_t new_lease_until_usec)
{
    if (!id) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    sqlite3_stmt *st = stmt(k, S_DLV_RENEW);
    if (!st) {
        r = -EIO;
    } else if ((sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) |
                sqlite3_bind_int64(st, 2, lease_until_usec) |
                sqlite3_bind_int64(st, 3, new_lease_until_usec)) != SQLITE_OK) {
        r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
    } else {
        r = sd_sqlite_step_done(k, st, "delivery renew");
        if (r == 0 && sqlite3_changes(k->db) == 0) {
            r = -ESTALE;
        }
    }
    return sd_sqlite_ctl_end_write(s, r, false);
}

static int delivery_finish(struct sd_store *s, const char *id, int64_t lease_until_usec,
                           const struct sd_delivery_outcome *o)
{
    if (!id || !o || !o->doc ||
        (o->state != SD_DELIVERY_RETRYING && o->state != SD_DELIVERY_DELIVERED &&
         o->state != SD_DELIVERY_DEAD)) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    int64_t now = sd_now_usec();
    sqlite3_stmt *st = stmt(k, S_DLV_FINISH);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if ((sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 2, lease_until_usec) |
         sqlite3_bind_text(st, 3, sd_delivery_state_name(o->state), -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 4, o->attempts_delta) |
         sqlite3_bind_int64(st, 5, o->state == SD_DELIVERY_RETRYING ? o->next_attempt_usec : 0) |
         sqlite3_bind_text(st, 6, o->doc, -1, SQLITE_STATIC) | sqlite3_bind_int64(st, 7, now)) !=
        SQLITE_OK) {
        r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
        goto out;
    }
    r = sd_sqlite_step_done(k, st, "delivery finish");
    if (r == 0 && sqlite3_changes(k->db) == 0) {
        r = -ESTALE;
    }
    if (r == 0 && o->state == SD_DELIVERY_DELIVERED && o->remote_segment_id) {
        st = stmt(k, S_REMOTE_UPSERT);
        if (!st) {
            r = -EIO;
        } else if ((sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) |
                    sqlite3_bind_text(st, 2, o->remote_segment_id, -1, SQLITE_STATIC) |
                    sqlite3_bind_int64(st, 3, now)) != SQLITE_OK) {
            r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
        } else {
            r = sd_sqlite_step_done(k, st, "remote segment upsert");
        }
    }
out:
    return sd_sqlite_ctl_end_write(s, r, false);
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
    struct sd_buf target = {0};
    sqlite3_stmt *st = stmt(k, S_DLV_REQUEUE);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if ((sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) |
         sqlite3_bind_text(st, 2, idem_key, -1, SQLITE_STATIC) |
         sqlite3_bind_text(st, 3, doc, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 4, clk->now_usec)) != SQLITE_OK) {
        r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
        goto out;
    }
    if ((r = sd_sqlite_step_done(k, st, "delivery requeue")) < 0) {
        goto out;
    }
    bool changed = sqlite3_changes(k->db) > 0;
    st = stmt(k, changed ? S_DLV_TARGET : S_DLV_STATE);
    if (!st || sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK) {
        r = -EIO;
        goto out;
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        sd_buf_puts(&target, (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        r = sd_sqlite_fail(k, rc, "delivery state");
        goto out;
    }
    if (!changed) {
        r = rc == SQLITE_DONE ? -ENOENT : -EBUSY;
        goto out;
    }
    r = plan_target(k, target.data, clk, NULL);
out:
    sd_buf_release(&target);
    return sd_sqlite_ctl_end_write(s, r, false);
}

static int remote_segment_get(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                              const char *target_id, const char *segment_id, char **ret)
{
    if (!target_id || !segment_id) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = stmt(c, S_REMOTE_GET);
    if (!st) {
        r = -EIO;
    } else if ((sd_sqlite_bind_scope(st, tenant_id, env, target_id) |
                sqlite3_bind_text(st, 4, segment_id, -1, SQLITE_STATIC)) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    } else {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *ret = sd_sqlite_column_strdup(st, 0);
            r = *ret ? 0 : -ENOENT;
        } else if (rc == SQLITE_DONE) {
            r = -ENOENT;
        } else {
            r = sd_sqlite_fail(c, rc, "remote segment get");
        }
        sqlite3_reset(st);
    }
    sd_sqlite_pool_put(s, c);
    return r;
}

const struct sd_store_outbox_ops sd_sqlite_outbox_ops = {
    .target_put = target_put,
    .target_get = target_get,
    .target_list = target_list,
    .target_delete = target_delete,
    .delivery_insert = delivery_insert,
    .delivery_by_request = delivery_by_request,
    .delivery_get = delivery_get,
    .delivery_list = delivery_list,
    .delivery_next_due = delivery_next_due,
    .delivery_claim = delivery_claim,
    .delivery_renew = delivery_renew,
    .delivery_finish = delivery_finish,
    .delivery_requeue = delivery_requeue,
    .remote_segment_get = remote_segment_get,
};
