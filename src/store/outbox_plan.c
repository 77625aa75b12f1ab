/* outbox_plan.c — the backend-neutral decisions of the outbox (store/outbox_plan.h): argument
 * rules, the rate plan of a connector and the claim's choice among its candidates, shared by
 * sqlite_outbox.c and pg_outbox.c.
 *
 * Invariants both backends rely on:
 *  - A plan writes only items whose time changes, in queue order, and picks the oldest item
 *    that may go and whose subject is free; nothing else of the connector moves.
 *  - A claim plans each rated connector at most once and leases at most one item. */
#include "store/outbox_plan.h"

#include <stdlib.h>
#include <string.h>

#include "base/base.h"

bool sd_outbox_item_ok(const struct sd_outbox_item *d)
{
    return d && d->id && d->connector_id && d->operation && d->subject_kind && d->subject_id &&
           d->idem_key && d->doc && (d->env == SD_ENV_TEST || d->env == SD_ENV_PROD);
}

bool sd_outbox_outcome_ok(const char *id, const struct sd_delivery_outcome *o)
{
    return id && o && o->doc &&
           (o->state == SD_DELIVERY_RETRYING || o->state == SD_DELIVERY_DELIVERED ||
            o->state == SD_DELIVERY_DEAD);
}

bool sd_outbox_more_ok(const struct sd_outbox_clock *clk, const struct sd_outbox_item *first)
{
    return clk && clk->lease_usec > 0 && first && first->id && first->connector_id &&
           first->operation;
}

bool sd_outbox_refs_list_ok(const char *connector_id, const char *kind, size_t limit,
                            char ***ret_local, char ***ret_remote, size_t *ret_n)
{
    return connector_id && kind && ret_local && ret_remote && ret_n && limit > 0 &&
           limit <= SD_REMOTE_REFS_PAGE_MAX;
}

bool sd_outbox_refs_apply_ok(const char *connector_id, const char *kind,
                             const char *const *put_local, const char *const *put_remote,
                             size_t n_put, const char *const *del_local, size_t n_del)
{
    if (!connector_id || !kind || n_put > SD_REMOTE_REFS_APPLY_MAX ||
        n_del > SD_REMOTE_REFS_APPLY_MAX || (n_put && (!put_local || !put_remote)) ||
        (n_del && !del_local)) {
        return false;
    }
    for (size_t i = 0; i < n_put; i++) {
        if (!put_local[i] || !put_remote[i]) {
            return false;
        }
    }
    for (size_t i = 0; i < n_del; i++) {
        if (!del_local[i]) {
            return false;
        }
    }
    return true;
}

void sd_outbox_waiting_free(struct sd_outbox_waiting *w, size_t n)
{
    for (size_t j = 0; w && j < n; j++) {
        free(w[j].id);
    }
    free(w);
}

int sd_outbox_plan_apply(const struct sd_outbox_clock *clk, int64_t limit, const int64_t *sends,
                         size_t ns, struct sd_outbox_waiting *w, size_t nw,
                         int (*set_next)(void *ctx, const char *id, int64_t next_usec), void *ctx,
                         char **ret_first)
{
    char *first = NULL;
    int r = 0;
    if (limit > 0 && nw > 0) {
        int64_t *slots = sd_calloc(nw, sizeof(*slots));
        clk->plan(sends, ns, limit, clk->window_usec, clk->now_usec, nw, slots);
        for (size_t j = 0; j < nw && r >= 0; j++) {
            bool may_go = slots[j] <= clk->now_usec;
            /* One that may go keeps its own (past) time, so due order among targets stays. */
            int64_t next =
                may_go ? (w[j].next <= clk->now_usec ? w[j].next : clk->now_usec) : slots[j];
            if (next != w[j].next) {
                r = set_next(ctx, w[j].id, next);
            }
            if (r >= 0 && ret_first && !first && may_go && w[j].fifo_free) {
                first = w[j].id;
                w[j].id = NULL;
            }
        }
        free(slots);
    }
    if (r < 0) {
        free(first);
        first = NULL;
    }
    if (ret_first) {
        *ret_first = first;
    }
    return r < 0 ? r : 0;
}

void sd_outbox_candidates_free(struct sd_outbox_candidate *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].id);
        free(v[i].connector_id);
    }
    free(v);
}

int sd_outbox_claim_pick(const struct sd_outbox_candidate *cand, size_t nc,
                         const struct sd_outbox_claim_io *io, void *ctx, char **ret_id)
{
    char *chosen = NULL;
    bool planned_any = false;
    int r = 0;
    for (size_t i = 0; i < nc && r >= 0; i++) {
        if (!cand[i].first_send) {
            /* No rate, a retry or a lease that ran out: it may go as it is. */
            chosen = sd_strdup(cand[i].id);
        } else {
            bool planned = false;
            for (size_t j = 0; j < i; j++) {
                planned = planned || (cand[j].first_send &&
                                      strcmp(cand[j].connector_id, cand[i].connector_id) == 0);
            }
            if (planned) {
                continue; /* its connector was planned already and had no free slot */
            }
            r = io->plan(ctx, cand[i].connector_id, !planned_any, &chosen);
            planned_any = true;
            if (r < 0 || !chosen) {
                continue;
            }
        }
        r = io->lease(ctx, chosen);
        if (r == 1) {
            break;
        }
        free(chosen); /* planned but not due yet, or taken: it keeps its place */
        chosen = NULL;
    }
    if (r < 0) {
        free(chosen);
        return r;
    }
    *ret_id = chosen;
    return 0;
}
