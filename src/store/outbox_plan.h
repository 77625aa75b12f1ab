/* outbox_plan.h — the backend-neutral part of the outbox (store/audience.h's outbox part):
 * the rules both backends apply to their arguments, the rate plan of a connector, the choice
 * a claim makes among its candidates, the SQL text both dialects share and the names of the
 * outbox's statements. sqlite_outbox.c and pg_outbox.c read the rows and write the decisions
 * with their own statements; what is decided, and in which order, lives here once, so the two
 * backends give the same answers, errors and ordering.
 *
 * For the backends only (store/sqlite, store/postgres); callers use the sd_store_* wrappers.
 * Nothing here touches a database: the backend hands in what it read (plain structs) and the
 * writes the decision needs (callbacks, called in order, inside the backend's transaction). */
#ifndef SD_STORE_OUTBOX_PLAN_H
#define SD_STORE_OUTBOX_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/audience.h"

/* ---- statements ------------------------------------------------------------------------------ */

/* The statements both backends have, by name (P is the backend's enum prefix), in slot order;
 * each backend lists its own after them and gives each its SQL in its dialect. */
#define SD_OUTBOX_STATEMENTS(P)                                                                    \
    P##TARGET_INSERT, P##TARGET_UPDATE, P##TARGET_GET, P##TARGET_LIST, P##TARGET_DELETE,           \
        P##TARGET_STATE_DELETE, P##REMOTE_DELETE_TARGET, P##DLV_INSERT, P##DLV_BY_REQUEST,         \
        P##DLV_GET, P##DLV_GET_SCOPED, P##DLV_LIST, P##DLV_NEXT_DUE, P##DLV_CANDIDATES,            \
        P##DLV_SENDS, P##DLV_WAITING, P##DLV_SET_NEXT, P##DLV_CLAIM, P##DLV_RENEW, P##DLV_FINISH,  \
        P##REMOTE_UPSERT_ITEM, P##DLV_REQUEUE, P##DLV_STATE, P##DLV_CONNECTOR, P##DLV_DEDUPE,      \
        P##DLV_CANCEL, P##DLV_SEND_NOW, P##REMOTE_GET, P##REMOTE_FIND, P##REMOTE_PUT,              \
        P##REMOTE_LIST, P##REMOTE_DELETE, P##DLV_MORE, P##LINKED, P##VERSION

/* SQL text without parameters, the same in both dialects. */
#define SD_OUTBOX_TARGET_COLS                                                                      \
    "SELECT t.id, t.tenant_id, n.client_id, t.env, t.type, t.settings, "                           \
    "coalesce(t.rate_per_hour, 0), t.created_usec, t.updated_usec FROM connectors t "              \
    "JOIN tenants n ON n.id = t.tenant_id "

#define SD_OUTBOX_ITEM_COLS                                                                        \
    "SELECT d.id, d.tenant_id, n.client_id, d.env, d.connector_id, d.operation, d.subject_kind, "  \
    "d.subject_id, d.payload, d.dedupe_key, d.state, d.attempts, d.next_attempt_usec, "            \
    "d.lease_until_usec, d.fence, d.lease_owner, d.sent_usec, d.idem_key, d.request_key, "         \
    "d.origin, d.remote_ref, d.doc, d.created_usec, d.updated_usec "                               \
    "FROM outbox_items d JOIN tenants n ON n.id = d.tenant_id "

#define SD_OUTBOX_WAITING "('queued', 'retrying')"
#define SD_OUTBOX_ACTIVE "('queued', 'sending', 'retrying')"

/* No earlier item of the same subject is still on its way (FIFO per subject). */
#define SD_OUTBOX_FIFO_FREE                                                                        \
    "NOT EXISTS (SELECT 1 FROM outbox_items e WHERE e.connector_id = d.connector_id AND "          \
    "e.subject_kind = d.subject_kind AND e.subject_id = d.subject_id AND e.seq < d.seq AND "       \
    "e.state IN " SD_OUTBOX_ACTIVE ")"

/* One lookup per state, in time order, skipping items held back by an earlier item of their
 * subject (they become due when that one ends, not by their time). */
#define SD_OUTBOX_NEXT_DUE_SQL                                                                     \
    "SELECT (SELECT d.next_attempt_usec FROM outbox_items d WHERE d.state = 'queued' "             \
    "AND " SD_OUTBOX_FIFO_FREE " ORDER BY d.next_attempt_usec LIMIT 1), "                          \
    "(SELECT d.next_attempt_usec FROM outbox_items d WHERE d.state = 'retrying' "                  \
    "AND " SD_OUTBOX_FIFO_FREE " ORDER BY d.next_attempt_usec LIMIT 1), "                          \
    "(SELECT min(lease_until_usec) FROM outbox_items WHERE state = 'sending')"

/* Both backends name the function of each op after the op (statics of their *_outbox.c): one
 * initializer serves both ops tables. */
#define SD_OUTBOX_OPS_INIT                                                                         \
    {                                                                                              \
        .target_put = target_put, .target_get = target_get, .target_list = target_list,            \
        .target_delete = target_delete, .delivery_insert = delivery_insert,                        \
        .delivery_by_request = delivery_by_request, .delivery_get = delivery_get,                  \
        .delivery_list = delivery_list, .delivery_next_due = delivery_next_due,                    \
        .delivery_claim = delivery_claim, .delivery_claim_more = delivery_claim_more,              \
        .delivery_renew = delivery_renew, .delivery_finish = delivery_finish,                      \
        .delivery_finish_many = delivery_finish_many, .delivery_requeue = delivery_requeue,        \
        .delivery_cancel = delivery_cancel, .delivery_send_now = delivery_send_now,                \
        .outbox_add_tx = outbox_add_tx, .outbox_targets_tx = outbox_targets_tx,                    \
        .outbox_linked_tx = outbox_linked_tx, .customer_version = customer_version,                \
        .remote_ref_get = remote_ref_get, .remote_ref_find = remote_ref_find,                      \
        .remote_ref_put = remote_ref_put, .remote_ref_list = remote_ref_list,                      \
        .remote_ref_apply = remote_ref_apply,                                                      \
    }

/* ---- argument rules (true: the call may proceed, else it answers -EINVAL) -------------------- */

/* delivery_insert / outbox_add_tx: every required field set, env TEST or PROD. */
bool sd_outbox_item_ok(const struct sd_outbox_item *d);
/* delivery_finish(_many): id, o and o->doc set; o->state RETRYING, DELIVERED or DEAD. */
bool sd_outbox_outcome_ok(const char *id, const struct sd_delivery_outcome *o);
/* delivery_claim_more: a clock with a lease, the first item's id, connector and operation. */
bool sd_outbox_more_ok(const struct sd_outbox_clock *clk, const struct sd_outbox_item *first);
/* remote_ref_list: names, out-parameters, limit 1..SD_REMOTE_REFS_PAGE_MAX. */
bool sd_outbox_refs_list_ok(const char *connector_id, const char *kind, size_t limit,
                            char ***ret_local, char ***ret_remote, size_t *ret_n);
/* remote_ref_apply: names, at most SD_REMOTE_REFS_APPLY_MAX puts and deletes, none NULL. */
bool sd_outbox_refs_apply_ok(const char *connector_id, const char *kind,
                             const char *const *put_local, const char *const *put_remote,
                             size_t n_put, const char *const *del_local, size_t n_del);

/* ---- the rate plan --------------------------------------------------------------------------- */

/* A queued (never sent in this run) item of the connector being planned, in queue order. */
struct sd_outbox_waiting {
    char *id;       /* heap */
    int64_t next;   /* its next_attempt_usec as stored */
    bool fifo_free; /* no earlier item of its subject is on its way */
};

void sd_outbox_waiting_free(struct sd_outbox_waiting *w, size_t n);

/* Give each of the nw waiting items of a connector with rate `limit` (> 0) its slot, oldest
 * first, from the ns first sends inside the window (`sends`, ascending) with clk->plan. An item
 * whose slot is now keeps its own (past) time, so due order among connectors stays; every item
 * whose time changes is written with set_next(ctx, id, next) in queue order, the first error
 * ending the plan. *ret_first (may be NULL) receives the oldest item whose slot is now and
 * whose subject is free (taken out of w: heap), else NULL; NULL on an error too. 0 or the
 * negative errno of set_next. */
int sd_outbox_plan_apply(const struct sd_outbox_clock *clk, int64_t limit, const int64_t *sends,
                         size_t ns, struct sd_outbox_waiting *w, size_t nw,
                         int (*set_next)(void *ctx, const char *id, int64_t next_usec), void *ctx,
                         char **ret_first);

/* ---- the claim ------------------------------------------------------------------------------- */

/* An item a claim may take now, in due order. */
struct sd_outbox_candidate {
    char *id;           /* heap */
    char *connector_id; /* heap */
    bool first_send;    /* queued under a rate: subject to the rate limit */
};

void sd_outbox_candidates_free(struct sd_outbox_candidate *v, size_t n);

/* What a claim does to the database, inside the backend's transaction. */
struct sd_outbox_claim_io {
    /* Plan connector_id (whose first sends are rated): *ret_first receives the item that may go
     * now (heap) or NULL. `first` is true for the first connector this claim plans. 0 or a
     * negative errno. */
    int (*plan)(void *ctx, const char *connector_id, bool first, char **ret_first);
    /* Lease id if it is still due: 1 leased, 0 not (any more), or a negative errno. */
    int (*lease)(void *ctx, const char *id);
};

/* Walk the candidates in due order: one that is not a rated first send is leased as it is; a
 * rated first send's connector is planned once (later candidates of a connector planned
 * already are skipped: it had no free slot) and the item its plan lets go is leased. The first
 * lease taken ends the walk: 0 and *ret_id = its id (heap), or *ret_id = NULL when nothing was
 * leased; a negative errno from io ends it too. */
int sd_outbox_claim_pick(const struct sd_outbox_candidate *cand, size_t nc,
                         const struct sd_outbox_claim_io *io, void *ctx, char **ret_id);

#endif
