/* lifecycle_plan.c — the order-lifecycle planning of a batch's sales, one copy for both
 * backends (sqlite_write.c, pg_write.c): what a sales record's lifecycle columns become, which
 * refund records the rules refuse, and what refund records do to the sales they name. The
 * store computes nothing itself: statuses, refunds and net figures come from the model
 * (model/lifecycle.c); the stored state of an invoice comes from the backend's lookup.
 *
 * Invariants: planning reads, never writes, so that a refused batch writes nothing; a refund
 * record finds its sale earlier in the same batch before it looks at the stored one (the
 * batch's record is what will be stored); issues are added in batch order. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "store/lifecycle_plan.h"

void sd_refund_targets_release(struct sd_refund_targets *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].invoice);
        free(t->v[i].customer_id);
        free(t->v[i].changed);
    }
    free(t->v);
    *t = (struct sd_refund_targets){0};
}

void sd_sale_plans_free(struct sd_sale_plan *p, size_t n)
{
    for (size_t i = 0; p && i < n; i++) {
        free(p[i].changed);
    }
    free(p);
}

void sd_lifecycle_utc_text(int64_t usec, char out[32])
{
    int64_t secs = usec / 1000000;
    int64_t days = secs / 86400, rem = secs % 86400;
    int64_t y;
    int m, d;
    sd_civil_from_days(days, &y, &m, &d);
    snprintf(out, 32, "%04lld-%02d-%02dT%02d:%02d:%02dZ", (long long)y, m, d, (int)(rem / 3600),
             (int)(rem / 60 % 60), (int)(rem % 60));
}

static bool status_is_initial(enum sd_sale_status st)
{
    return st == SD_STATUS_SOLD || st == SD_STATUS_OPEN;
}

int sd_lifecycle_plan_one(struct sd_store *s, const struct sd_write_lookup *lk, int64_t tenant_id,
                          enum sd_env env, const struct sd_sale_rec *rec, const char *ptr,
                          bool check_stored, const char *now_text, struct sd_sale_plan *p,
                          struct sd_apply_result *res)
{
    struct sd_stored_sale old = {0};
    *p = (struct sd_sale_plan){.st = rec->state};
    /* The webhook stores new invoices only (a stored one fails the whole request with 409), so
     * it reads no stored state: its ingest costs what it did. */
    int r = check_stored ? lk->sale_state(s, tenant_id, env, rec->invoice_number, &old) : 0;
    if (r < 0) {
        return r;
    }
    p->stored = r == 1;
    r = 0;
    if (p->stored) {
        p->unchanged = old.doc && strcmp(old.doc, rec->doc) == 0;
        /* What refund records took stays taken when the sale itself is sent again. */
        p->rr_quantity = old.rr_quantity;
        p->rr_minor = old.rr_minor;
        if (p->st.order_type == SD_ORDER_SALE && (old.rr_quantity > 0 || old.rr_minor > 0)) {
            p->st.refunded_quantity += old.rr_quantity;
            p->st.refunded_minor += old.rr_minor;
            if (p->st.status == SD_STATUS_SOLD) {
                p->st.status = SD_STATUS_REFUNDED;
            }
            if (p->st.refunded_quantity > p->st.quantity ||
                p->st.refunded_minor > p->st.total_minor) {
                char at[64];
                snprintf(at, sizeof(at), "%s/quantity", ptr);
                sd_issues_add(&res->errors, at,
                              "must leave room for the %lld tickets refunded by refund records",
                              (long long)old.rr_quantity);
                r = 1;
                goto out;
            }
        }
        if (!p->unchanged && sd_sale_transition_check(&old.st, &p->st, ptr, &res->errors) < 0) {
            r = 1;
            goto out;
        }
    }
    if (rec->status_changed_at) {
        p->changed = sd_strdup(rec->status_changed_at);
    } else if (!status_is_initial(p->st.status)) {
        bool keep = p->stored && old.changed && old.st.status == p->st.status;
        p->changed = sd_strdup(keep ? old.changed : now_text);
    }
out:
    sd_stored_sale_release(&old);
    return r;
}

/* Add refund record i to the sale it names: a sale planned earlier in this batch, or a stored
 * one. 1 with an issue when that is not allowed, 0, -EIO. */
static int plan_refund(struct sd_store *s, const struct sd_write_lookup *lk, int64_t tenant_id,
                       enum sd_env env, const struct sd_batch *b, size_t i,
                       struct sd_sale_plan *plans, struct sd_refund_targets *t, const char *ptr,
                       struct sd_apply_result *res)
{
    const struct sd_sale_rec *rec = &b->sales[i];
    struct sd_refund_target *tg = NULL;
    for (size_t k = 0; k < t->n && !tg; k++) {
        if (strcmp(t->v[k].invoice, rec->refund_of) == 0) {
            tg = &t->v[k];
        }
    }
    struct sd_refund_target fresh = {0};
    const char *buyer = tg ? tg->customer_id : NULL;
    if (!tg) {
        size_t j = i;
        while (j > 0 && strcmp(b->sales[j - 1].invoice_number, rec->refund_of) != 0) {
            j--;
        }
        if (j > 0) {
            const struct sd_sale_plan *o = &plans[j - 1];
            fresh =
                (struct sd_refund_target){.st = o->st,
                                          .rr_quantity = o->rr_quantity,
                                          .rr_minor = o->rr_minor,
                                          .customer_id = sd_strdup(b->sales[j - 1].customer_id)};
        } else {
            struct sd_stored_sale old = {0};
            int r = lk->sale_state(s, tenant_id, env, rec->refund_of, &old);
            if (r < 0) {
                return r;
            }
            if (r == 0) {
                char at[64];
                snprintf(at, sizeof(at), "%s/refund_of", ptr);
                sd_issues_add(&res->errors, at, "sale '%s' does not exist in %s", rec->refund_of,
                              sd_write_env_name(env));
                return 1;
            }
            fresh = (struct sd_refund_target){.st = old.st,
                                              .rr_quantity = old.rr_quantity,
                                              .rr_minor = old.rr_minor,
                                              .customer_id = old.customer_id};
            old.customer_id = NULL;
            sd_stored_sale_release(&old);
        }
        buyer = fresh.customer_id;
    }
    /* A refund goes back to whoever bought: the record names the sale's customer. */
    if (buyer && strcmp(buyer, rec->customer_id) != 0) {
        char at[64];
        snprintf(at, sizeof(at), "%s/customer_id", ptr);
        sd_issues_add(&res->errors, at, "must be '%s', the customer of sale '%s'", buyer,
                      rec->refund_of);
        free(fresh.customer_id);
        return 1;
    }
    struct sd_sale_state *st = tg ? &tg->st : &fresh.st;
    if (sd_sale_refund_apply(st, rec->refund_of, rec->state.quantity, rec->state.total_minor,
                             rec->currency, ptr, &res->errors) < 0) {
        free(fresh.customer_id);
        return 1;
    }
    if (!tg) {
        if (t->n == t->cap) {
            t->cap = t->cap ? t->cap * 2 : 8;
            t->v = sd_realloc(t->v, t->cap * sizeof(*t->v));
        }
        fresh.invoice = sd_strdup(rec->refund_of);
        tg = &t->v[t->n++];
        *tg = fresh;
    }
    tg->rr_quantity += rec->state.quantity;
    tg->rr_minor += rec->state.total_minor;
    free(tg->changed);
    tg->changed = sd_strdup(rec->purchase_datetime); /* the refund's time */
    return 0;
}

int sd_lifecycle_plan_sales(struct sd_store *s, const struct sd_write_lookup *lk, int64_t tenant_id,
                            enum sd_env env, const struct sd_batch *b, int64_t now,
                            struct sd_sale_plan *plans, struct sd_refund_targets *t,
                            struct sd_apply_result *res)
{
    char now_text[32];
    sd_lifecycle_utc_text(now, now_text);
    int n_err = 0;
    for (size_t i = 0; i < b->n_sales; i++) {
        const struct sd_sale_rec *rec = &b->sales[i];
        char ptr[40];
        snprintf(ptr, sizeof(ptr), "/sales/%zu", rec->index);
        int r = sd_lifecycle_plan_one(s, lk, tenant_id, env, rec, ptr, b->upsert_sales, now_text,
                                      &plans[i], res);
        if (r == 0 && rec->refund_of && !plans[i].stored) {
            r = plan_refund(s, lk, tenant_id, env, b, i, plans, t, ptr, res);
        }
        if (r < 0) {
            return r;
        }
        n_err += r;
    }
    return n_err;
}
