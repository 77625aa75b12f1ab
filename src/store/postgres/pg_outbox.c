/* pg_outbox.c — the PostgreSQL side of store/audience.h's outbox part: target connector
 * instances (rows of `connectors`), the generic outbox of items and the remote references. The
 * SQLite backend (sqlite_outbox.c) is the reference: same statements, same order, same
 * outcomes; what differs is how the decisions stay atomic when several processes share the
 * database, which SQLite gets from its one write lock.
 *
 * Every change is one sd_pg_tx_run transaction on a pool connection (read committed, retried on
 * serialization failures and deadlocks); reads are single statements on a pool connection. Only
 * target changes bump the settings version (they are connectors); items are data.
 *
 * Invariants, and how they hold across processes:
 *  - No two claims hold one lease. A lease is one UPDATE of the row whose id comes from a
 *    sub-select `... WHERE due FOR UPDATE SKIP LOCKED`: the row is locked and re-checked in its
 *    newest version (due, FIFO per subject) in the same statement, and a row another
 *    transaction is deciding about is skipped, never waited for. A claim that finds its
 *    candidate taken moves on to the next, as the SQLite claim does.
 *  - The rate limit holds together: planning a connector (count its sends in the window, give
 *    its queued items their slots, lease the first that may go) happens under a row lock on the
 *    connector (`SELECT … FOR UPDATE`), held to COMMIT, so plans of one connector are
 *    serialized across processes and each one's statements see the previous plan's commit.
 *    Every path that stamps a first send (sent_usec) or clears one (requeue) holds that lock.
 *  - Lock order is connector before items, everywhere, so these paths cannot deadlock: a claim
 *    waits for a connector lock only for the first connector it plans (holding nothing yet) and
 *    skips a connector another claim is planning after that.
 *  - Every change to a leased row names its fencing token: -ESTALE otherwise.
 *
 * Where this differs from SQLite (visible only with concurrent callers):
 *  - A claim may answer -ENOENT while a due item exists that a concurrent claim holds locked
 *    (SKIP LOCKED), where SQLite would have waited for the lock; the caller's next claim (at
 *    delivery_next_due, which is then now) finds it.
 *  - A claim reads a connector's rate with its candidates: a claim that read them just before a
 *    target_put gave the connector its first rate may lease one queued item of it without a
 *    plan; every claim that starts after that commit plans.
 *  - outbox_add_tx (the writer) checks its dedupe key without the connector lock, so a
 *    delivery_insert racing it from another process may store a second item with the same key
 *    (sent twice, never lost). Taking the lock there would hold claims back for a whole group
 *    commit.
 *  - A connector deleted makes its waiting items' doc carry last_error: SQLite's json_set is
 *    done here with jansson on the stored text (compact output, member order kept), which gives
 *    SQLite's bytes for the documents core writes (jansson's own compact output).
 *
 * Statement slots 576..767 (pg_internal.h) belong to this file. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "pg_internal.h"
#include "pg_outbox.h"
#include "store/audience.h"
#include "store/outbox_plan.h"
#include "store/store.h"

enum {
    S_BEFORE_ = 575, /* the first statement is slot 576 */
    SD_OUTBOX_STATEMENTS(S_),
    S_TARGET_LOCK,
    S_TARGET_LOCK_SKIP,
    S_DLV_KILL_LIST,
    S_DLV_KILL_ONE,
    S_LAST_
};
#define S_FIRST_ S_TARGET_INSERT
_Static_assert(S_LAST_ <= 768, "outbox statement slots are 576..767");

/* Rows a claim may take now ($1 = now), in due order. */
#define DUE_WHERE                                                                                  \
    "((d.state IN " SD_OUTBOX_WAITING " AND d.next_attempt_usec <= $1::bigint) OR "                \
    "(d.state = 'sending' AND d.lease_until_usec <= $1::bigint)) AND " SD_OUTBOX_FIFO_FREE

#define RATE_OF_D                                                                                  \
    "coalesce((SELECT c.rate_per_hour FROM connectors c WHERE c.id = d.connector_id), 0)"

static const char *const sql[S_LAST_ - S_FIRST_] = {
#define Q(slot) [(slot)-S_FIRST_]
    Q(S_TARGET_INSERT) = "INSERT INTO connectors (id, tenant_id, env, type, schedule, settings, "
                         "mapping, run_requested_usec, created_usec, updated_usec, rate_per_hour) "
                         "VALUES ($1, $2, $3, $4, 'manual', $5, '{}', 0, $6, $6, $7) "
                         "ON CONFLICT DO NOTHING",
    Q(S_TARGET_UPDATE) = "UPDATE connectors SET settings = $2, updated_usec = $3, "
                         "rate_per_hour = $4 WHERE id = $1",
    Q(S_TARGET_GET) = SD_OUTBOX_TARGET_COLS "WHERE t.id = $1",
    Q(S_TARGET_LIST) = SD_OUTBOX_TARGET_COLS "WHERE t.tenant_id = $1 ORDER BY t.created_usec, "
                                             "t.id COLLATE \"C\"",
    Q(S_TARGET_DELETE) = "DELETE FROM connectors WHERE id = $1",
    Q(S_TARGET_STATE_DELETE) = "DELETE FROM connector_state WHERE connector_id = $1",
    Q(S_REMOTE_DELETE_TARGET) = "DELETE FROM remote_refs WHERE connector_id = $1",
    /* ON CONFLICT DO NOTHING: a taken id or request key answers -EEXIST without aborting the
     * transaction (the writer's, for outbox_add_tx). */
    Q(S_DLV_INSERT) =
        "INSERT INTO outbox_items (id, tenant_id, env, connector_id, operation, subject_kind, "
        "subject_id, payload, dedupe_key, state, attempts, next_attempt_usec, idem_key, "
        "request_key, origin, doc, created_usec, updated_usec) VALUES ($1, $2, $3, $4, $5, $6, "
        "$7, $8, $9, 'queued', 0, $10, $11, $12, $13, $14, $10, $10) ON CONFLICT DO NOTHING",
    Q(S_DLV_BY_REQUEST) =
        SD_OUTBOX_ITEM_COLS "WHERE d.tenant_id = $1 AND d.env = $2 AND d.request_key = $3",
    Q(S_DLV_GET) = SD_OUTBOX_ITEM_COLS "WHERE d.id = $1",
    Q(S_DLV_GET_SCOPED) = SD_OUTBOX_ITEM_COLS "WHERE d.tenant_id = $1 AND d.env = $2 AND d.id = $3",
    Q(S_DLV_LIST) = SD_OUTBOX_ITEM_COLS
    "WHERE ($1::bigint = 0 OR d.tenant_id = $1::bigint) AND "
    "($4::int < 0 OR d.env = $4::int) AND ($2::text IS NULL OR d.state = $2::text) AND "
    "($5::text IS NULL OR d.connector_id = $5::text) "
    "ORDER BY d.created_usec DESC, d.seq DESC LIMIT $3",
    Q(S_DLV_NEXT_DUE) = SD_OUTBOX_NEXT_DUE_SQL,
    Q(S_DLV_CANDIDATES) =
        "SELECT d.id, d.connector_id, d.state, " RATE_OF_D " FROM outbox_items d WHERE " DUE_WHERE
        " ORDER BY d.next_attempt_usec, d.seq LIMIT 32",
    /* The connector's row lock: plans of one connector are serialized by it (see the top). */
    Q(S_TARGET_LOCK) = "SELECT coalesce(rate_per_hour, 0) FROM connectors WHERE id = $1 "
                       "FOR UPDATE",
    Q(S_TARGET_LOCK_SKIP) = "SELECT coalesce(rate_per_hour, 0) FROM connectors WHERE id = $1 "
                            "FOR UPDATE SKIP LOCKED",
    Q(S_DLV_SENDS) = "SELECT sent_usec FROM outbox_items WHERE connector_id = $1 AND "
                     "updated_usec > $2 AND sent_usec > $2 ORDER BY sent_usec",
    Q(S_DLV_WAITING) = "SELECT d.id, d.next_attempt_usec, CASE WHEN " SD_OUTBOX_FIFO_FREE
                       " THEN 1 ELSE 0 END FROM outbox_items d "
                       "WHERE d.connector_id = $1 AND d.state = 'queued' ORDER BY d.seq",
    Q(S_DLV_SET_NEXT) = "UPDATE outbox_items SET next_attempt_usec = $2 WHERE id = $1 AND "
                        "state = 'queued'",
    /* The lease: decided and taken in this one statement (locked, re-checked in the row's
     * newest version; a row another transaction holds is skipped). */
    Q(S_DLV_CLAIM) = "UPDATE outbox_items AS u SET state = 'sending', attempts = u.attempts + 1, "
                     "fence = u.fence + 1, lease_until_usec = $2, updated_usec = $1::bigint, "
                     "lease_owner = $4, sent_usec = CASE WHEN u.sent_usec = 0 THEN $1::bigint "
                     "ELSE u.sent_usec END WHERE u.id = (SELECT d.id FROM outbox_items d WHERE "
                     "d.id = $3 AND " DUE_WHERE " FOR UPDATE OF d SKIP LOCKED)",
    Q(S_DLV_RENEW) = "UPDATE outbox_items SET lease_until_usec = $3 WHERE id = $1 AND "
                     "state = 'sending' AND fence = $2",
    Q(S_DLV_FINISH) = "UPDATE outbox_items SET state = $3, attempts = greatest(0, attempts + $4), "
                      "next_attempt_usec = $5, lease_until_usec = 0, lease_owner = NULL, "
                      "doc = $6, remote_ref = coalesce($8, remote_ref), updated_usec = $7 "
                      "WHERE id = $1 AND state = 'sending' AND fence = $2",
    Q(S_REMOTE_UPSERT_ITEM) =
        "INSERT INTO remote_refs (connector_id, kind, local_id, remote_id, updated_usec) "
        "SELECT connector_id, subject_kind, subject_id, $2, $3 FROM outbox_items WHERE id = $1 "
        "ON CONFLICT (connector_id, kind, local_id) DO UPDATE SET "
        "remote_id = excluded.remote_id, updated_usec = excluded.updated_usec",
    Q(S_DLV_REQUEUE) = "UPDATE outbox_items SET state = 'queued', attempts = 0, "
                       "next_attempt_usec = $4, lease_until_usec = 0, lease_owner = NULL, "
                       "sent_usec = 0, idem_key = $2, doc = $3, updated_usec = $4 "
                       "WHERE id = $1 AND state = 'dead'",
    Q(S_DLV_STATE) = "SELECT state FROM outbox_items WHERE id = $1",
    Q(S_DLV_CONNECTOR) = "SELECT connector_id FROM outbox_items WHERE id = $1",
    /* A deleted connector's waiting items: dead at once (one in flight finishes on its own). */
    Q(S_DLV_KILL_LIST) = "SELECT id, doc FROM outbox_items WHERE connector_id = $1 AND "
                         "state IN " SD_OUTBOX_WAITING " ORDER BY seq FOR UPDATE",
    Q(S_DLV_KILL_ONE) = "UPDATE outbox_items SET state = 'dead', next_attempt_usec = 0, "
                        "lease_until_usec = 0, updated_usec = $2, doc = $3 WHERE id = $1 AND "
                        "state IN " SD_OUTBOX_WAITING,
    Q(S_DLV_DEDUPE) = "SELECT id FROM outbox_items WHERE connector_id = $1 AND dedupe_key = $2 "
                      "AND state IN " SD_OUTBOX_WAITING " ORDER BY seq LIMIT 1",
    Q(S_DLV_CANCEL) = "UPDATE outbox_items SET state = 'cancelled', next_attempt_usec = 0, "
                      "doc = $2, updated_usec = $3 WHERE id = $1 AND state IN " SD_OUTBOX_WAITING,
    Q(S_DLV_SEND_NOW) = "UPDATE outbox_items SET next_attempt_usec = "
                        "least(next_attempt_usec, $2), updated_usec = $2 WHERE id = $1 AND "
                        "state IN " SD_OUTBOX_WAITING,
    Q(S_REMOTE_GET) = "SELECT remote_id FROM remote_refs WHERE connector_id = $1 AND kind = $2 "
                      "AND local_id = $3",
    Q(S_REMOTE_FIND) = "SELECT local_id FROM remote_refs WHERE connector_id = $1 AND kind = $2 "
                       "AND remote_id = $3 ORDER BY updated_usec, local_id COLLATE \"C\" LIMIT 1",
    Q(S_REMOTE_PUT) = "INSERT INTO remote_refs (connector_id, kind, local_id, remote_id, "
                      "updated_usec) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (connector_id, kind, "
                      "local_id) DO UPDATE SET remote_id = excluded.remote_id, "
                      "updated_usec = excluded.updated_usec",
    /* Byte order, as SQLite's BINARY collation. */
    Q(S_REMOTE_LIST) = "SELECT local_id, remote_id FROM remote_refs WHERE connector_id = $1 AND "
                       "kind = $2 AND local_id COLLATE \"C\" > $3 COLLATE \"C\" "
                       "ORDER BY local_id COLLATE \"C\" LIMIT $4",
    Q(S_REMOTE_DELETE) = "DELETE FROM remote_refs WHERE connector_id = $1 AND kind = $2 AND "
                         "local_id = $3",
    /* Due items of one connector and operation, besides the one claimed ($2), in due order,
     * locked for this transaction (others skip them); first sends of a connector with a rate
     * are left to the planned claim. */
    Q(S_DLV_MORE) = "SELECT d.id FROM outbox_items d WHERE d.connector_id = $3 AND d.operation = "
                    "$4 AND d.id <> $2 AND NOT (d.state = 'queued' AND " RATE_OF_D
                    " > 0) AND " DUE_WHERE " ORDER BY d.next_attempt_usec, d.seq LIMIT $5 "
                    "FOR UPDATE OF d SKIP LOCKED",
    /* Records of source $5 in the profile of record ($3, $4), the record itself left out. */
    Q(S_LINKED) = "SELECT count(*) FROM customers c JOIN customers m ON m.profile_id = "
                  "c.profile_id WHERE c.tenant_id = $1 AND c.env = $2 AND c.source = $3 AND "
                  "c.customer_id = $4 AND m.tenant_id = $1 AND m.env = $2 AND m.source = $5 AND "
                  "NOT (m.source = c.source AND m.customer_id = c.customer_id)",
    Q(S_VERSION) = "SELECT remote_version FROM customers WHERE tenant_id = $1 AND env = $2 AND "
                   "source = $3 AND customer_id = $4",
#undef Q
};

static int run(struct pgconn *c, unsigned slot, const struct sd_pg_params *p, PGresult **ret)
{
    return sd_pg_exec(c, slot, sql[slot - S_FIRST_], p, ret);
}

/* Run a statement on a pool connection (committed rows, no transaction of its own). */
static int run_pooled(struct sd_store *s, unsigned slot, const struct sd_pg_params *p,
                      PGresult **ret)
{
    return sd_pg_exec_pooled(s, slot, sql[slot - S_FIRST_], p, ret);
}

static enum sd_env col_env(const PGresult *r, int row, int col)
{
    return sd_pg_int64(r, row, col) == 1 ? SD_ENV_PROD : SD_ENV_TEST;
}

static void read_target(const PGresult *r, int i, struct sd_target *t)
{
    t->id = sd_pg_strdup(r, i, 0);
    t->tenant_id = sd_pg_int64(r, i, 1);
    t->client_id = sd_pg_strdup(r, i, 2);
    t->env = col_env(r, i, 3);
    t->type = sd_pg_strdup(r, i, 4);
    t->doc = sd_pg_strdup(r, i, 5);
    t->rate_per_hour = sd_pg_int64(r, i, 6);
    t->created_usec = sd_pg_int64(r, i, 7);
    t->updated_usec = sd_pg_int64(r, i, 8);
}

static void read_delivery(const PGresult *r, int i, struct sd_outbox_item *d)
{
    *d = (struct sd_outbox_item){0};
    d->id = sd_pg_strdup(r, i, 0);
    d->tenant_id = sd_pg_int64(r, i, 1);
    d->client_id = sd_pg_strdup(r, i, 2);
    d->env = col_env(r, i, 3);
    d->connector_id = sd_pg_strdup(r, i, 4);
    d->operation = sd_pg_strdup(r, i, 5);
    d->subject_kind = sd_pg_strdup(r, i, 6);
    d->subject_id = sd_pg_strdup(r, i, 7);
    d->payload = sd_pg_strdup(r, i, 8);
    d->dedupe_key = sd_pg_strdup(r, i, 9);
    enum sd_delivery_state state = SD_DELIVERY_DEAD;
    (void)sd_delivery_state_parse(sd_pg_text(r, i, 10), &state);
    d->state = state;
    d->attempts = sd_pg_int64(r, i, 11);
    d->next_attempt_usec = sd_pg_int64(r, i, 12);
    d->lease_until_usec = sd_pg_int64(r, i, 13);
    d->fence = sd_pg_int64(r, i, 14);
    d->lease_owner = sd_pg_strdup(r, i, 15);
    d->sent_usec = sd_pg_int64(r, i, 16);
    d->idem_key = sd_pg_strdup(r, i, 17);
    d->request_key = sd_pg_strdup(r, i, 18);
    d->origin = sd_pg_strdup(r, i, 19);
    d->remote_ref = sd_pg_strdup(r, i, 20);
    d->doc = sd_pg_strdup(r, i, 21);
    d->created_usec = sd_pg_int64(r, i, 22);
    d->updated_usec = sd_pg_int64(r, i, 23);
}

/* The parameters of a statement that takes the texts in `ids` (NULL-terminated, at most 4). */
static void p_texts(struct sd_pg_params *p, const char *const *ids)
{
    for (size_t i = 0; ids[i]; i++) {
        sd_pg_p_text(p, ids[i]);
    }
}

/* Run a statement whose parameters are the texts in `ids` (p_texts). */
static int run_texts(struct pgconn *c, unsigned slot, const char *const *ids, PGresult **ret)
{
    struct sd_pg_params p = {0};
    p_texts(&p, ids);
    return run(c, slot, &p, ret);
}

static void read_target_v(const PGresult *r, int i, void *ret)
{
    read_target(r, i, ret);
}

static void read_delivery_v(const PGresult *r, int i, void *ret)
{
    read_delivery(r, i, ret);
}

/* A lookup's answer (r: its rows or an error): the first row read into ret (0), -ENOENT when
 * there is none, or the error. Clears res. */
static int first_row(int r, PGresult *res, void (*read)(const PGresult *, int, void *), void *ret)
{
    if (r > 0) {
        read(res, 0, ret);
        r = 0;
    } else if (r == 0) {
        r = -ENOENT;
    }
    PQclear(res);
    return r;
}

/* The item `id` on c (inside c's transaction when it has one): 0, -ENOENT or an error. */
static int item_get(struct pgconn *c, const char *id, struct sd_outbox_item *ret)
{
    PGresult *res = NULL;
    int r = run_texts(c, S_DLV_GET, (const char *const[]){id, NULL}, &res);
    return first_row(r, res, read_delivery_v, ret);
}

/* ---- rate plan ------------------------------------------------------------------------------- */

/* Lock connector target_id's row (lock mode: S_TARGET_LOCK waits, S_TARGET_LOCK_SKIP does not)
 * and read its rate into *ret_limit. 1 locked, 0 no such row (or, skipping, locked by another
 * transaction), or a negative errno. */
static int lock_target(struct pgconn *c, unsigned mode, const char *target_id, int64_t *ret_limit)
{
    PGresult *res = NULL;
    int r = run_texts(c, mode, (const char *const[]){target_id, NULL}, &res);
    *ret_limit = r > 0 ? sd_pg_int64(res, 0, 0) : 0;
    PQclear(res);
    return r < 0 ? r : r > 0;
}

static int set_next(void *ctx, const char *id, int64_t next_usec)
{
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, id);
    sd_pg_p_int(&p, next_usec);
    return run(ctx, S_DLV_SET_NEXT, &p, NULL);
}

/* Give every queued (never sent in this run) item of connector target_id its slot under its
 * rate `limit` (sd_outbox_plan_apply), inside the open transaction that holds the connector's
 * row lock. *ret_first (may be NULL): as sd_outbox_plan_apply's. A connector without a rate is
 * left alone. */
static int plan_target(struct pgconn *c, const char *target_id, int64_t limit,
                       const struct sd_outbox_clock *clk, char **ret_first)
{
    PGresult *res = NULL;
    int64_t *sends = NULL;
    struct sd_outbox_waiting *w = NULL;
    size_t ns = 0, nw = 0;
    int r;
    if (ret_first) {
        *ret_first = NULL;
    }
    if (limit <= 0) {
        return 0;
    }

    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, target_id);
    sd_pg_p_int(&p, clk->now_usec - clk->window_usec);
    r = run(c, S_DLV_SENDS, &p, &res);
    if (r < 0) {
        goto out;
    }
    ns = (size_t)r;
    sends = sd_calloc(ns ? ns : 1, sizeof(*sends));
    for (size_t i = 0; i < ns; i++) {
        sends[i] = sd_pg_int64(res, (int)i, 0);
    }
    PQclear(res);
    res = NULL;

    r = run_texts(c, S_DLV_WAITING, (const char *const[]){target_id, NULL}, &res);
    if (r <= 0) {
        goto out;
    }
    nw = (size_t)r;
    w = sd_calloc(nw, sizeof(*w));
    for (size_t j = 0; j < nw; j++) {
        w[j].id = sd_pg_strdup(res, (int)j, 0);
        w[j].next = sd_pg_int64(res, (int)j, 1);
        w[j].fifo_free = sd_pg_int64(res, (int)j, 2) != 0;
    }
    PQclear(res);
    res = NULL;
    r = sd_outbox_plan_apply(clk, limit, sends, ns, w, nw, set_next, c, ret_first);
out:
    PQclear(res);
    sd_outbox_waiting_free(w, nw);
    free(sends);
    return r < 0 ? r : 0;
}

/* Lock connector target_id (waiting for it) and plan it: what every non-claim change that
 * affects a plan does. */
static int lock_and_plan(struct pgconn *c, const char *target_id, const struct sd_outbox_clock *clk)
{
    int64_t limit = 0;
    int r = lock_target(c, S_TARGET_LOCK, target_id, &limit);
    return r < 0 ? r : plan_target(c, target_id, limit, clk, NULL);
}

/* ---- targets --------------------------------------------------------------------------------- */

struct target_put_arg {
    const struct sd_target *t;
    bool create;
    const struct sd_outbox_clock *clk;
};

static int target_put_tx(struct pgconn *c, void *arg)
{
    const struct target_put_arg *a = arg;
    const struct sd_target *t = a->t;
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, t->id);
    int64_t now = sd_now_usec();
    if (a->create) {
        sd_pg_p_int(&p, t->tenant_id);
        sd_pg_p_int(&p, (int64_t)t->env);
        sd_pg_p_text(&p, t->type);
        sd_pg_p_text(&p, t->doc);
        sd_pg_p_int(&p, now);
    } else {
        sd_pg_p_text(&p, t->doc);
        sd_pg_p_int(&p, now);
    }
    if (t->rate_per_hour > 0) {
        sd_pg_p_int(&p, t->rate_per_hour);
    } else {
        sd_pg_p_text(&p, NULL);
    }
    int r = run(c, a->create ? S_TARGET_INSERT : S_TARGET_UPDATE, &p, NULL);
    if (r == 0) {
        return a->create ? -EEXIST : -ENOENT;
    }
    if (r > 0 && a->clk && a->clk->plan) {
        r = lock_and_plan(c, t->id, a->clk);
    }
    return r < 0 ? r : 0;
}

static int target_put(struct sd_store *s, const struct sd_target *t, bool create,
                      const struct sd_outbox_clock *clk)
{
    if (!t || !t->id || !t->doc || (create && (!t->type || !sd_pg_env_ok(t->env)))) {
        return -EINVAL;
    }
    struct target_put_arg a = {.t = t, .create = create, .clk = clk};
    return sd_pg_tx_run(s, NULL, true, target_put_tx, &a);
}

static int target_get(struct sd_store *s, const char *id, struct sd_target *ret)
{
    if (!id) {
        return -EINVAL;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, id);
    PGresult *res = NULL;
    int r = run_pooled(s, S_TARGET_GET, &p, &res);
    return first_row(r, res, read_target_v, ret);
}

/* The connectors of tenant_id, read on connection c. */
static int list_targets(struct pgconn *c, int64_t tenant_id, struct sd_target **ret, size_t *ret_n)
{
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, tenant_id);
    PGresult *res = NULL;
    int r = run(c, S_TARGET_LIST, &p, &res);
    if (r < 0) {
        return r;
    }
    struct sd_target *v = r ? sd_calloc((size_t)r, sizeof(*v)) : NULL;
    for (int i = 0; i < r; i++) {
        read_target(res, i, &v[i]);
    }
    PQclear(res);
    *ret = v;
    *ret_n = (size_t)r;
    return 0;
}

static int target_list(struct sd_store *s, int64_t tenant_id, struct sd_target **ret, size_t *ret_n)
{
    struct pgconn *c = NULL;
    int r = sd_pg_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    r = list_targets(c, tenant_id, ret, ret_n);
    sd_pg_pool_put(s, c);
    return r;
}

/* On the writer's own connection, so the writer never waits for a read connection. */
static int outbox_targets_tx(struct sd_store *s, int64_t tenant_id, struct sd_target **ret,
                             size_t *ret_n)
{
    struct pgconn *w = sd_pg_writer(s);
    if (!w) {
        return -EINVAL;
    }
    return list_targets(w, tenant_id, ret, ret_n);
}

/* On the writer's own connection, inside its transaction: sees the records the job just linked. */
static int outbox_linked_tx(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                            const char *source, const char *customer_id, const char *member_source,
                            int64_t *ret_n)
{
    struct pgconn *w = sd_pg_writer(s);
    if (!w || !source || !customer_id || !member_source || !ret_n || !sd_pg_env_ok(env)) {
        return -EINVAL;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_scope(&p, tenant_id, env, source);
    sd_pg_p_text(&p, customer_id);
    sd_pg_p_text(&p, member_source);
    PGresult *res = NULL;
    int r = run(w, S_LINKED, &p, &res);
    if (r > 0) {
        *ret_n = sd_pg_int64(res, 0, 0);
        r = 0;
    } else if (r == 0) {
        r = -EIO; /* count(*) always answers one row */
    }
    PQclear(res);
    return r;
}

static int customer_version(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                            const char *source, const char *customer_id, int64_t *ret_version)
{
    if (!source || !customer_id || !ret_version || !sd_pg_env_ok(env)) {
        return -EINVAL;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_scope(&p, tenant_id, env, source);
    sd_pg_p_text(&p, customer_id);
    PGresult *res = NULL;
    int r = run_pooled(s, S_VERSION, &p, &res);
    if (r > 0) {
        *ret_version = sd_pg_int64(res, 0, 0);
        r = 0;
    } else if (r == 0) {
        r = -ENOENT;
    }
    PQclear(res);
    return r;
}

/* SQLite's json_set(doc, '$.last_error', reason) on the text core stored: a member replaced
 * in place or appended, the rest as it was (jansson keeps member order; core writes compact
 * jansson output, which parses and prints back byte for byte). A document that is not an object
 * is left as it is (json_set cannot set a member there); one that is not JSON fails as json_set
 * does. Heap result, or NULL. */
static char *doc_with_last_error(const char *doc, const char *reason)
{
    json_error_t err;
    json_t *j = json_loads(doc, JSON_DECODE_ANY, &err);
    if (!j) {
        return NULL;
    }
    char *out = NULL;
    if (!json_is_object(j)) {
        out = sd_strdup(doc);
    } else if (json_object_set_new(j, "last_error", json_string(reason)) == 0) {
        out = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    }
    json_decref(j);
    return out;
}

int sd_pg_outbox_settle_connector(struct pgconn *c, const char *id, const char *reason)
{
    PGresult *res = NULL;
    int r = run_texts(c, S_DLV_KILL_LIST, (const char *const[]){id, NULL}, &res);
    int64_t now = sd_now_usec();
    for (int i = 0; i < r; i++) {
        char *doc = doc_with_last_error(sd_pg_text(res, i, 1), reason);
        if (!doc) {
            sd_log(SD_LOG_ERROR, "waiting outbox item document is not JSON", NULL);
            r = -EIO;
            break;
        }
        struct sd_pg_params p = {0};
        sd_pg_p_text(&p, sd_pg_text(res, i, 0));
        sd_pg_p_int(&p, now);
        sd_pg_p_text(&p, doc);
        int k = run(c, S_DLV_KILL_ONE, &p, NULL);
        free(doc);
        if (k < 0) {
            r = k;
            break;
        }
    }
    PQclear(res);
    if (r >= 0) {
        r = run_texts(c, S_REMOTE_DELETE_TARGET, (const char *const[]){id, NULL}, NULL);
    }
    return r < 0 ? r : 0;
}

struct target_delete_arg {
    const char *id;
    const char *reason;
};

static int target_delete_tx(struct pgconn *c, void *arg)
{
    const struct target_delete_arg *a = arg;
    int r = run_texts(c, S_TARGET_DELETE, (const char *const[]){a->id, NULL}, NULL);
    if (r == 0) {
        return -ENOENT;
    }
    if (r > 0) {
        r = run_texts(c, S_TARGET_STATE_DELETE, (const char *const[]){a->id, NULL}, NULL);
    }
    if (r >= 0) {
        r = sd_pg_outbox_settle_connector(c, a->id, a->reason);
    }
    return r < 0 ? r : 0;
}

static int target_delete(struct sd_store *s, const char *id, const char *reason)
{
    if (!id || !reason) {
        return -EINVAL;
    }
    struct target_delete_arg a = {.id = id, .reason = reason};
    return sd_pg_tx_run(s, NULL, true, target_delete_tx, &a);
}

/* ---- items ---------------------------------------------------------------------------------- */

/* Dedupe, then insert d on connection c (inside its open transaction). 0 stored, 1 deduplicated
 * (*ret_found: the waiting item, heap), or negative errno (-EEXIST: the id or request key is
 * taken; nothing written, the transaction still usable). */
static int insert_item(struct pgconn *c, const struct sd_outbox_item *d, int64_t now_usec,
                       char **ret_found)
{
    int r;
    if (d->dedupe_key) {
        PGresult *res = NULL;
        r = run_texts(c, S_DLV_DEDUPE, (const char *const[]){d->connector_id, d->dedupe_key, NULL},
                      &res);
        if (r > 0) {
            *ret_found = sd_pg_strdup(res, 0, 0);
        }
        PQclear(res);
        if (r != 0) {
            return r < 0 ? r : 1;
        }
    }
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, d->id);
    sd_pg_p_int(&p, d->tenant_id);
    sd_pg_p_int(&p, (int64_t)d->env);
    sd_pg_p_text(&p, d->connector_id);
    sd_pg_p_text(&p, d->operation);
    sd_pg_p_text(&p, d->subject_kind);
    sd_pg_p_text(&p, d->subject_id);
    sd_pg_p_text(&p, d->payload);
    sd_pg_p_text(&p, d->dedupe_key);
    sd_pg_p_int(&p, now_usec);
    sd_pg_p_text(&p, d->idem_key);
    sd_pg_p_text(&p, d->request_key);
    sd_pg_p_text(&p, d->origin);
    sd_pg_p_text(&p, d->doc);
    r = run(c, S_DLV_INSERT, &p, NULL);
    return r < 0 ? r : r == 0 ? -EEXIST : 0;
}

struct insert_arg {
    const struct sd_outbox_item *d;
    const struct sd_outbox_clock *clk;
    char *found;
};

static int insert_tx(struct pgconn *c, void *arg)
{
    struct insert_arg *a = arg;
    free(a->found);
    a->found = NULL;
    /* The connector first (lock order), so a dedupe check and the plan see every commit of
     * another process's insert or claim on this connector. */
    int64_t limit = 0;
    int r = lock_target(c, S_TARGET_LOCK, a->d->connector_id, &limit);
    if (r >= 0) {
        r = insert_item(c, a->d, a->clk->now_usec, &a->found);
    }
    if (r == 0) {
        r = plan_target(c, a->d->connector_id, limit, a->clk, NULL);
    }
    return r;
}

static int delivery_insert(struct sd_store *s, const struct sd_outbox_item *d,
                           const struct sd_outbox_clock *clk, char **ret_id)
{
    if (!sd_outbox_item_ok(d) || !clk || !clk->plan) {
        return -EINVAL;
    }
    struct insert_arg a = {.d = d, .clk = clk};
    int r = sd_pg_tx_run(s, NULL, false, insert_tx, &a);
    if (r >= 0 && ret_id) {
        *ret_id = a.found ? a.found : sd_strdup(d->id);
        a.found = NULL;
    }
    free(a.found);
    return r;
}

static int outbox_add_tx(struct sd_store *s, const struct sd_outbox_item *d, int64_t now_usec,
                         char **ret_id)
{
    struct pgconn *w = sd_pg_writer(s);
    if (!sd_outbox_item_ok(d) || !w) {
        return -EINVAL;
    }
    char *found = NULL;
    int r = insert_item(w, d, now_usec, &found);
    if (r >= 0 && ret_id) {
        *ret_id = found ? found : sd_strdup(d->id);
        found = NULL;
    }
    free(found);
    return r;
}

/* One delivery by the statement in `slot` with parameters p. */
static int delivery_one(struct sd_store *s, unsigned slot, const struct sd_pg_params *p,
                        struct sd_outbox_item *ret)
{
    PGresult *res = NULL;
    int r = run_pooled(s, slot, p, &res);
    return first_row(r, res, read_delivery_v, ret);
}

static int delivery_get(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                        struct sd_outbox_item *ret)
{
    if (!id) {
        return -EINVAL;
    }
    struct sd_pg_params p = {0};
    if (tenant_id) {
        sd_pg_p_scope(&p, tenant_id, env, id);
    } else {
        sd_pg_p_text(&p, id);
    }
    return delivery_one(s, tenant_id ? S_DLV_GET_SCOPED : S_DLV_GET, &p, ret);
}

static int delivery_by_request(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                               const char *request_key, struct sd_outbox_item *ret)
{
    if (!tenant_id || !sd_pg_env_ok(env) || !request_key) {
        return -EINVAL;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_scope(&p, tenant_id, env, request_key);
    return delivery_one(s, S_DLV_BY_REQUEST, &p, ret);
}

static int delivery_list(struct sd_store *s, const struct sd_delivery_filter *f,
                         struct sd_outbox_item **ret, size_t *ret_n, bool *ret_more)
{
    size_t limit = f->limit < 1 ? 1 : f->limit > 1000 ? 1000 : f->limit;
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, f->tenant_id);
    sd_pg_p_text(&p,
                 f->state >= 0 ? sd_delivery_state_name((enum sd_delivery_state)f->state) : NULL);
    sd_pg_p_int(&p, (int64_t)limit + 1);
    sd_pg_p_int(&p, f->tenant_id ? f->env : -1);
    sd_pg_p_text(&p, f->connector_id);
    PGresult *res = NULL;
    int r = run_pooled(s, S_DLV_LIST, &p, &res);
    if (r < 0) {
        return r;
    }
    size_t n = (size_t)r > limit ? limit : (size_t)r;
    struct sd_outbox_item *v = n ? sd_calloc(n, sizeof(*v)) : NULL;
    for (size_t i = 0; i < n; i++) {
        read_delivery(res, (int)i, &v[i]);
    }
    PQclear(res);
    *ret = v;
    *ret_n = n;
    *ret_more = (size_t)r > limit;
    return 0;
}

static int delivery_next_due(struct sd_store *s, int64_t *ret_usec)
{
    PGresult *res = NULL;
    int r = run_pooled(s, S_DLV_NEXT_DUE, NULL, &res);
    if (r > 0) {
        r = -ENOENT;
        for (int i = 0; i < 3; i++) {
            if (sd_pg_isnull(res, 0, i)) {
                continue;
            }
            int64_t v = sd_pg_int64(res, 0, i);
            if (r == -ENOENT || v < *ret_usec) {
                *ret_usec = v;
                r = 0;
            }
        }
    } else if (r == 0) {
        r = -EIO; /* one row always */
    }
    PQclear(res);
    return r;
}

/* Lease `id` if it is still due and no other transaction holds it: 1 leased, 0 not (any more),
 * or a negative errno. */
static int lease(struct pgconn *c, const char *id, const struct sd_outbox_clock *clk)
{
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, clk->now_usec);
    sd_pg_p_int(&p, clk->now_usec + clk->lease_usec);
    sd_pg_p_text(&p, id);
    sd_pg_p_text(&p, clk->owner);
    int r = run(c, S_DLV_CLAIM, &p, NULL);
    return r < 0 ? r : r > 0;
}

struct claim_arg {
    const struct sd_outbox_clock *clk;
    struct sd_outbox_item item;
    bool found;
};

struct claim_io_ctx {
    struct pgconn *c;
    const struct sd_outbox_clock *clk;
};

/* The first connector planned waits for its lock (nothing is held yet); a later one another
 * claim is planning is skipped, so two claims never wait on each other. */
static int claim_plan(void *ctx, const char *connector_id, bool first, char **ret_first)
{
    const struct claim_io_ctx *x = ctx;
    int64_t limit = 0;
    int r = lock_target(x->c, first ? S_TARGET_LOCK : S_TARGET_LOCK_SKIP, connector_id, &limit);
    if (r <= 0) {
        *ret_first = NULL;
        return r;
    }
    return plan_target(x->c, connector_id, limit, x->clk, ret_first);
}

static int claim_lease(void *ctx, const char *id)
{
    const struct claim_io_ctx *x = ctx;
    return lease(x->c, id, x->clk);
}

static const struct sd_outbox_claim_io claim_io = {.plan = claim_plan, .lease = claim_lease};

static int claim_tx(struct pgconn *c, void *arg)
{
    struct claim_arg *a = arg;
    const struct sd_outbox_clock *clk = a->clk;
    sd_outbox_item_release(&a->item);
    a->found = false;
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, clk->now_usec);
    PGresult *res = NULL;
    int r = run(c, S_DLV_CANDIDATES, &p, &res);
    if (r < 0) {
        return r;
    }
    size_t nc = (size_t)r;
    struct sd_outbox_candidate *cand = sd_calloc(nc ? nc : 1, sizeof(*cand));
    for (size_t i = 0; i < nc; i++) {
        cand[i].id = sd_pg_strdup(res, (int)i, 0);
        cand[i].connector_id = sd_pg_strdup(res, (int)i, 1);
        const char *state = sd_pg_text(res, (int)i, 2);
        cand[i].first_send =
            state && strcmp(state, "queued") == 0 && sd_pg_int64(res, (int)i, 3) > 0;
    }
    PQclear(res);
    struct claim_io_ctx x = {.c = c, .clk = clk};
    char *chosen = NULL;
    r = sd_outbox_claim_pick(cand, nc, &claim_io, &x, &chosen);
    if (r >= 0 && chosen) {
        r = item_get(c, chosen, &a->item);
        a->found = r == 0;
    }
    free(chosen);
    sd_outbox_candidates_free(cand, nc);
    /* Nothing found still commits: the plan written above is what the status shows. */
    return r < 0 ? r : 0;
}

static int delivery_claim(struct sd_store *s, const struct sd_outbox_clock *clk,
                          struct sd_outbox_item *ret)
{
    if (!clk || !clk->plan || clk->lease_usec <= 0) {
        return -EINVAL;
    }
    struct claim_arg a = {.clk = clk};
    int r = sd_pg_tx_run(s, NULL, false, claim_tx, &a);
    if (r < 0 || !a.found) {
        sd_outbox_item_release(&a.item);
        return r < 0 ? r : -ENOENT;
    }
    *ret = a.item;
    return 0;
}

struct claim_more_arg {
    const struct sd_outbox_clock *clk;
    const struct sd_outbox_item *first;
    size_t max;
    struct sd_outbox_item *v;
    size_t n;
};

static int claim_more_tx(struct pgconn *c, void *arg)
{
    struct claim_more_arg *a = arg;
    sd_outbox_items_free(a->v, a->n);
    a->v = sd_calloc(a->max, sizeof(*a->v));
    a->n = 0;
    struct sd_pg_params p = {0};
    sd_pg_p_int(&p, a->clk->now_usec);
    sd_pg_p_text(&p, a->first->id);
    sd_pg_p_text(&p, a->first->connector_id);
    sd_pg_p_text(&p, a->first->operation);
    sd_pg_p_int(&p, (int64_t)a->max);
    PGresult *res = NULL;
    int r = run(c, S_DLV_MORE, &p, &res);
    int n_ids = r < 0 ? 0 : r > (int)a->max ? (int)a->max : r;
    for (int i = 0; i < n_ids && r >= 0; i++) {
        const char *id = sd_pg_text(res, i, 0);
        r = lease(c, id, a->clk);
        if (r == 1) {
            r = item_get(c, id, &a->v[a->n]);
            a->n += r == 0;
        }
    }
    PQclear(res);
    return r < 0 ? r : 0;
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
    struct claim_more_arg a = {.clk = clk, .first = first, .max = max};
    int r = sd_pg_tx_run(s, NULL, false, claim_more_tx, &a);
    if (r < 0 || a.n == 0) {
        sd_outbox_items_free(a.v, a.n);
        return r < 0 ? r : 0;
    }
    *ret = a.v;
    *ret_n = a.n;
    return 0;
}

static int delivery_renew(struct sd_store *s, const char *id, int64_t fence,
                          int64_t new_lease_until_usec)
{
    if (!id) {
        return -EINVAL;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, id);
    sd_pg_p_int(&p, fence);
    sd_pg_p_int(&p, new_lease_until_usec);
    int r = run_pooled(s, S_DLV_RENEW, &p, NULL);
    return r < 0 ? r : r == 0 ? -ESTALE : 0;
}

/* One item's outcome inside the open transaction: 0, -ESTALE (not this fence's lease; nothing
 * written), or a store error. */
static int finish_row(struct pgconn *c, const char *id, int64_t fence,
                      const struct sd_delivery_outcome *o, int64_t now)
{
    const char *remote = o->state == SD_DELIVERY_DELIVERED ? o->remote_ref : NULL;
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, id);
    sd_pg_p_int(&p, fence);
    sd_pg_p_text(&p, sd_delivery_state_name(o->state));
    sd_pg_p_int(&p, o->attempts_delta);
    sd_pg_p_int(&p, o->state == SD_DELIVERY_RETRYING ? o->next_attempt_usec : 0);
    sd_pg_p_text(&p, o->doc);
    sd_pg_p_int(&p, now);
    sd_pg_p_text(&p, remote);
    int r = run(c, S_DLV_FINISH, &p, NULL);
    if (r == 0) {
        return -ESTALE;
    }
    if (r > 0 && remote) {
        struct sd_pg_params q = {0};
        sd_pg_p_text(&q, id);
        sd_pg_p_text(&q, remote);
        sd_pg_p_int(&q, now);
        r = run(c, S_REMOTE_UPSERT_ITEM, &q, NULL);
    }
    return r < 0 ? r : 0;
}

struct finish_arg {
    size_t n;
    const char *const *ids;
    const int64_t *fences;
    const struct sd_delivery_outcome *o;
    int *ret; /* NULL: one item, its -ESTALE is the call's answer */
};

static int finish_tx(struct pgconn *c, void *arg)
{
    const struct finish_arg *a = arg;
    int64_t now = sd_now_usec();
    for (size_t i = 0; i < a->n; i++) {
        int x = finish_row(c, a->ids[i], a->fences[i], &a->o[i], now);
        if (x == -ESTALE && a->ret) {
            a->ret[i] = -ESTALE;
            continue;
        }
        if (x < 0) {
            return x;
        }
        if (a->ret) {
            a->ret[i] = 0;
        }
    }
    return 0;
}

static int delivery_finish(struct sd_store *s, const char *id, int64_t fence,
                           const struct sd_delivery_outcome *o)
{
    if (!sd_outbox_outcome_ok(id, o)) {
        return -EINVAL;
    }
    struct finish_arg a = {.n = 1, .ids = &id, .fences = &fence, .o = o};
    return sd_pg_tx_run(s, NULL, false, finish_tx, &a);
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
    if (n == 0) {
        return 0;
    }
    struct finish_arg a = {.n = n, .ids = ids, .fences = fences, .o = o, .ret = ret};
    return sd_pg_tx_run(s, NULL, false, finish_tx, &a);
}

/* After an UPDATE of `id` guarded by its state changed nothing: -ENOENT if the row is missing,
 * else -EBUSY (it is not in a state the change applies to). */
static int why_unchanged(struct pgconn *c, const char *id)
{
    int r = run_texts(c, S_DLV_STATE, (const char *const[]){id, NULL}, NULL);
    return r < 0 ? r : r > 0 ? -EBUSY : -ENOENT;
}

/* Lock the connector of item `id` (lock order: connector before item), so a change that plans
 * it afterwards is serialized with its claims. 0, -ENOENT (no such item) or an error. */
static int lock_item_connector(struct pgconn *c, const char *id, char **ret_connector,
                               int64_t *ret_limit)
{
    PGresult *res = NULL;
    int r = run_texts(c, S_DLV_CONNECTOR, (const char *const[]){id, NULL}, &res);
    if (r > 0) {
        *ret_connector = sd_pg_strdup(res, 0, 0);
    }
    PQclear(res);
    if (r <= 0) {
        return r < 0 ? r : -ENOENT;
    }
    r = lock_target(c, S_TARGET_LOCK, *ret_connector, ret_limit);
    return r < 0 ? r : 0;
}

/* A state-guarded UPDATE of one item (requeue, cancel, send now). */
struct change_arg {
    const char *id;
    unsigned slot;
    struct sd_pg_params p;             /* the statement's parameters */
    const struct sd_outbox_clock *clk; /* the change may let a first send go: plan; or NULL */
};

/* The item's connector locked first when the change plans (lock order: connector before
 * item), the UPDATE, then -ENOENT or -EBUSY when it changed nothing (why_unchanged), else the
 * connector planned again. */
static int change_tx(struct pgconn *c, void *arg)
{
    const struct change_arg *a = arg;
    char *connector = NULL;
    int64_t limit = 0;
    int r = a->clk ? lock_item_connector(c, a->id, &connector, &limit) : 0;
    if (r == 0) {
        r = run(c, a->slot, &a->p, NULL);
        if (r == 0) {
            r = why_unchanged(c, a->id);
        } else if (r > 0 && a->clk) {
            r = plan_target(c, connector, limit, a->clk, NULL);
        }
    }
    free(connector);
    return r < 0 ? r : 0;
}

static int delivery_requeue(struct sd_store *s, const char *id, const char *idem_key,
                            const char *doc, const struct sd_outbox_clock *clk)
{
    if (!id || !idem_key || !doc || !clk || !clk->plan) {
        return -EINVAL;
    }
    struct change_arg a = {.id = id, .slot = S_DLV_REQUEUE, .clk = clk};
    sd_pg_p_text(&a.p, id);
    sd_pg_p_text(&a.p, idem_key);
    sd_pg_p_text(&a.p, doc);
    sd_pg_p_int(&a.p, clk->now_usec);
    return sd_pg_tx_run(s, NULL, false, change_tx, &a);
}

static int delivery_cancel(struct sd_store *s, const char *id, const char *doc, int64_t now_usec)
{
    if (!id || !doc) {
        return -EINVAL;
    }
    struct change_arg a = {.id = id, .slot = S_DLV_CANCEL};
    sd_pg_p_text(&a.p, id);
    sd_pg_p_text(&a.p, doc);
    sd_pg_p_int(&a.p, now_usec);
    return sd_pg_tx_run(s, NULL, false, change_tx, &a);
}

static int delivery_send_now(struct sd_store *s, const char *id, const struct sd_outbox_clock *clk)
{
    if (!id || !clk || !clk->plan) {
        return -EINVAL;
    }
    /* a rate still applies to a first send */
    struct change_arg a = {.id = id, .slot = S_DLV_SEND_NOW, .clk = clk};
    sd_pg_p_text(&a.p, id);
    sd_pg_p_int(&a.p, clk->now_usec);
    return sd_pg_tx_run(s, NULL, false, change_tx, &a);
}

/* ---- remote references ----------------------------------------------------------------------- */

static int remote_lookup(struct sd_store *s, unsigned slot, const char *connector_id,
                         const char *kind, const char *key, char **ret)
{
    if (!connector_id || !kind || !key || !ret) {
        return -EINVAL;
    }
    struct sd_pg_params p = {0};
    p_texts(&p, (const char *const[]){connector_id, kind, key, NULL});
    PGresult *res = NULL;
    int r = run_pooled(s, slot, &p, &res);
    if (r > 0) {
        *ret = sd_pg_strdup(res, 0, 0);
        r = *ret ? 0 : -ENOENT;
    } else if (r == 0) {
        r = -ENOENT;
    }
    PQclear(res);
    return r;
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

struct remote_apply_arg {
    const char *connector_id;
    const char *kind;
    const char *const *put_local;
    const char *const *put_remote;
    size_t n_put;
    const char *const *del_local;
    size_t n_del;
};

static int remote_apply_tx(struct pgconn *c, void *arg)
{
    const struct remote_apply_arg *a = arg;
    int64_t now = sd_now_usec();
    int r = 0;
    for (size_t i = 0; r >= 0 && i < a->n_put; i++) {
        struct sd_pg_params p = {0};
        sd_pg_p_text(&p, a->connector_id);
        sd_pg_p_text(&p, a->kind);
        sd_pg_p_text(&p, a->put_local[i]);
        sd_pg_p_text(&p, a->put_remote[i]);
        sd_pg_p_int(&p, now);
        r = run(c, S_REMOTE_PUT, &p, NULL);
    }
    for (size_t i = 0; r >= 0 && i < a->n_del; i++) {
        r = run_texts(c, S_REMOTE_DELETE,
                      (const char *const[]){a->connector_id, a->kind, a->del_local[i], NULL}, NULL);
    }
    return r < 0 ? r : 0;
}

static int remote_ref_put(struct sd_store *s, const char *connector_id, const char *kind,
                          const char *local_id, const char *remote_id)
{
    if (!connector_id || !kind || !local_id || !remote_id) {
        return -EINVAL;
    }
    struct remote_apply_arg a = {.connector_id = connector_id,
                                 .kind = kind,
                                 .put_local = &local_id,
                                 .put_remote = &remote_id,
                                 .n_put = 1};
    return sd_pg_tx_run(s, NULL, false, remote_apply_tx, &a);
}

static int remote_ref_list(struct sd_store *s, const char *connector_id, const char *kind,
                           const char *after, size_t limit, char ***ret_local, char ***ret_remote,
                           size_t *ret_n)
{
    if (!sd_outbox_refs_list_ok(connector_id, kind, limit, ret_local, ret_remote, ret_n)) {
        return -EINVAL;
    }
    struct sd_pg_params p = {0};
    sd_pg_p_text(&p, connector_id);
    sd_pg_p_text(&p, kind);
    sd_pg_p_text(&p, after ? after : "");
    sd_pg_p_int(&p, (int64_t)limit);
    PGresult *res = NULL;
    int r = run_pooled(s, S_REMOTE_LIST, &p, &res);
    if (r < 0) {
        return r;
    }
    size_t n = (size_t)r > limit ? limit : (size_t)r;
    char **loc = NULL, **rem = NULL;
    if (n) {
        loc = sd_calloc(n, sizeof(*loc));
        rem = sd_calloc(n, sizeof(*rem));
        for (size_t i = 0; i < n; i++) {
            loc[i] = sd_pg_strdup(res, (int)i, 0);
            rem[i] = sd_pg_strdup(res, (int)i, 1);
        }
    }
    PQclear(res);
    *ret_local = loc;
    *ret_remote = rem;
    *ret_n = n;
    return 0;
}

static int remote_ref_apply(struct sd_store *s, const char *connector_id, const char *kind,
                            const char *const *put_local, const char *const *put_remote,
                            size_t n_put, const char *const *del_local, size_t n_del)
{
    if (!sd_outbox_refs_apply_ok(connector_id, kind, put_local, put_remote, n_put, del_local,
                                 n_del)) {
        return -EINVAL;
    }
    struct remote_apply_arg a = {.connector_id = connector_id,
                                 .kind = kind,
                                 .put_local = put_local,
                                 .put_remote = put_remote,
                                 .n_put = n_put,
                                 .del_local = del_local,
                                 .n_del = n_del};
    return sd_pg_tx_run(s, NULL, false, remote_apply_tx, &a);
}

const struct sd_store_outbox_ops sd_pg_outbox_ops = SD_OUTBOX_OPS_INIT;
