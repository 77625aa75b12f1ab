/* write_plan.c — the parts of applying an ingest batch that do not depend on the database,
 * shared by sqlite_write.c and pg_write.c so that both backends give the same outcomes,
 * messages and ordering by construction: the batch's map of looked-up ids, a sale's reference
 * checks, the refusal / duplicate outcome of a batch's sales and the unchanged / stale counts.
 *
 * Invariants: each event id a batch names is looked up once per batch (a day's sales name a
 * few events, a season's history a few hundred), an unknown one is remembered too; the checks
 * report every error of every sale, in batch order, so that a refused batch names them all. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/utf8.h"
#include "base/log.h"
#include "store/lifecycle_plan.h"
#include "store/write_plan.h"

void sd_stored_sale_release(struct sd_stored_sale *x)
{
    free(x->changed);
    free(x->doc);
    free(x->customer_id);
    *x = (struct sd_stored_sale){0};
}

/* ---- the batch's map --------------------------------------------------------------------- */

static size_t str_hash(const char *k)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *k; k++) {
        h = (h ^ (unsigned char)*k) * 1099511628211ULL;
    }
    return (size_t)h;
}

static struct sd_refmap_entry *refmap_find(struct sd_refmap *m, const char *key)
{
    size_t i = str_hash(key) & (m->cap - 1);
    while (m->slot[i].key && strcmp(m->slot[i].key, key) != 0) {
        i = (i + 1) & (m->cap - 1);
    }
    return &m->slot[i];
}

static void refmap_grow(struct sd_refmap *m)
{
    struct sd_refmap old = *m;
    m->cap = old.cap ? old.cap * 2 : 64;
    m->slot = sd_calloc(m->cap, sizeof(*m->slot));
    for (size_t i = 0; i < old.cap; i++) {
        if (old.slot[i].key) {
            *refmap_find(m, old.slot[i].key) = old.slot[i];
        }
    }
    free(old.slot);
}

/* The entry of key, a free slot for it if there is none (room made first). */
static struct sd_refmap_entry *refmap_slot(struct sd_refmap *m, const char *key)
{
    if (2 * (m->n + 1) > m->cap) {
        refmap_grow(m);
    }
    return refmap_find(m, key);
}

const struct sd_refmap_entry *sd_refmap_get(const struct sd_refmap *m, const char *key)
{
    if (!m->cap) {
        return NULL;
    }
    const struct sd_refmap_entry *e = refmap_find((struct sd_refmap *)m, key);
    return e->key ? e : NULL;
}

void sd_refmap_put(struct sd_refmap *m, const char *key, const char *val)
{
    struct sd_refmap_entry *e = refmap_slot(m, key);
    if (!e->key) {
        e->key = sd_strdup(key);
        e->val = val ? sd_strdup(val) : NULL;
        m->n++;
    }
}

void sd_refmap_release(struct sd_refmap *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        free(m->slot[i].key);
        free(m->slot[i].val);
    }
    free(m->slot);
    *m = (struct sd_refmap){0};
}

/* ---- small rules ------------------------------------------------------------------------- */

const char *sd_write_env_name(enum sd_env env)
{
    return env == SD_ENV_PROD ? "prod" : "test";
}

const char *sd_write_batch_source(const struct sd_batch *b)
{
    return b->source && *b->source ? b->source : SD_SOURCE_WEBHOOK;
}

void sd_write_count_kept(struct sd_apply_result *res, int how)
{
    res->n_unchanged += how == 2 || how == 3;
    res->n_stale += how == 3;
}

void sd_write_push_duplicate(struct sd_apply_result *res, const char *invoice, size_t *cap)
{
    if (res->n_duplicate_invoices == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        res->duplicate_invoices =
            sd_realloc(res->duplicate_invoices, *cap * sizeof(*res->duplicate_invoices));
    }
    res->duplicate_invoices[res->n_duplicate_invoices++] = sd_strdup(invoice);
}

/* ---- a sale's references ----------------------------------------------------------------- */

/* Resolve a sale's event_id (an alias included) to the canonical event id: 1 and *ret_ref
 * (valid while m lives), 0 if there is no such event, negative errno. */
static int resolve_event(struct sd_store *s, const struct sd_write_lookup *lk, struct sd_refmap *m,
                         int64_t tenant_id, enum sd_env env, const char *event_id,
                         const char **ret_ref)
{
    struct sd_refmap_entry *e = refmap_slot(m, event_id);
    if (!e->key) {
        struct sd_buf ref = {0};
        int r = lk->event_resolve(s, tenant_id, env, event_id, &ref);
        if (r < 0) {
            sd_buf_release(&ref);
            return r;
        }
        e->key = sd_strdup(event_id);
        e->val = r == 1 ? sd_buf_steal(&ref) : NULL;
        sd_buf_release(&ref);
        m->n++;
    }
    *ret_ref = e->val;
    return e->val != NULL;
}

int sd_write_check_sale_refs(struct sd_store *s, const struct sd_write_lookup *lk,
                             int64_t tenant_id, enum sd_env env, const char *source,
                             const struct sd_sale_rec *sale, const char *ptr_prefix,
                             struct sd_refmap *events, const struct sd_refmap *customers,
                             const char **customer_cache, struct sd_apply_result *res,
                             const char **ret_ref)
{
    int n_err = 0;
    char ptr[64];
    int r = resolve_event(s, lk, events, tenant_id, env, sale->event_id, ret_ref);
    if (r < 0) {
        return r;
    }
    if (r == 0) {
        sd_utf8_snprintf(ptr, sizeof(ptr), "%s/event_id", ptr_prefix);
        sd_issues_add(&res->errors, ptr, "event '%s' does not exist in %s", sale->event_id,
                      sd_write_env_name(env));
        n_err++;
    }
    const char *cid = sale->customer_id;
    if (strcmp(cid, SD_ANON_CUSTOMER) != 0 &&
        !(*customer_cache && strcmp(*customer_cache, cid) == 0)) {
        const struct sd_refmap_entry *known = customers ? sd_refmap_get(customers, cid) : NULL;
        r = known ? known->val != NULL : lk->customer_exists(s, tenant_id, env, source, cid);
        if (r < 0) {
            return r;
        }
        if (r == 0) {
            sd_utf8_snprintf(ptr, sizeof(ptr), "%s/customer_id", ptr_prefix);
            sd_issues_add(&res->errors, ptr, "customer '%s' does not exist in %s", cid,
                          sd_write_env_name(env));
            n_err++;
        } else {
            *customer_cache = cid;
        }
    }
    return n_err;
}

int sd_write_check_all_sales(struct sd_store *s, const struct sd_write_lookup *lk,
                             int64_t tenant_id, enum sd_env env, const struct sd_batch *b,
                             struct sd_refmap *events, const struct sd_refmap *customers,
                             const char **customer_cache, struct sd_apply_result *res,
                             const char **checked)
{
    int n_err = 0;
    for (size_t i = 0; i < b->n_sales; i++) {
        char prefix[40];
        snprintf(prefix, sizeof(prefix), "/sales/%zu", b->sales[i].index);
        int r =
            sd_write_check_sale_refs(s, lk, tenant_id, env, sd_write_batch_source(b), &b->sales[i],
                                     prefix, events, customers, customer_cache, res, &checked[i]);
        if (r < 0) {
            return r;
        }
        n_err += r;
    }
    return n_err;
}

int sd_write_sales_outcome(struct sd_apply_result *res, int r, size_t ref_errors)
{
    if (r >= 0 && ref_errors > 0) {
        for (size_t i = 0; i < res->n_duplicate_invoices; i++) {
            free(res->duplicate_invoices[i]);
        }
        free(res->duplicate_invoices);
        res->duplicate_invoices = NULL;
        res->n_duplicate_invoices = 0;
        res->outcome = SD_APPLY_REFUSED;
        return 0;
    }
    if (r >= 0 && res->n_duplicate_invoices > 0) {
        res->outcome = SD_APPLY_DUPLICATE;
    }
    return r;
}

/* ---- events ------------------------------------------------------------------------------ */

int sd_write_apply_events(struct sd_store *s, const struct sd_event_steps *st, int64_t tenant_id,
                          enum sd_env env, const struct sd_batch *b, int64_t now,
                          struct sd_apply_result *res)
{
    struct sd_buf other;
    sd_buf_init(&other);
    int r = 0;
    for (size_t i = 0; i < b->n_events; i++) {
        const struct sd_event_rec *e = &b->events[i];
        char ptr[48];
        snprintf(ptr, sizeof(ptr), "/events/%zu", e->index);

        r = st->update(s, tenant_id, env, e->event_id, e, now, b->origin);
        if (r != 0) {
            if (r < 0) {
                goto out;
            }
            sd_write_count_kept(res, r);
            continue;
        }
        r = st->alias_get(s, tenant_id, env, e->event_id, &other);
        if (r < 0) {
            goto out;
        }
        if (r == 1) {
            r = st->update(s, tenant_id, env, other.data, e, now, b->origin);
            if (r < 0) {
                goto out;
            }
            if (r == 0) {
                sd_log(SD_LOG_ERROR, "event alias points to no event", "tenant=%lld",
                       (long long)tenant_id);
                r = -EIO;
                goto out;
            }
            sd_write_count_kept(res, r);
            sd_issues_add(&res->warnings, ptr, "'%s' is an alias of event '%s'; updated that event",
                          e->event_id, other.data);
            continue;
        }
        r = st->by_dup(s, tenant_id, env, e->dup_key, &other);
        if (r < 0) {
            goto out;
        }
        if (r == 1) {
            /* The record updates that event, as any later send under the alias does: what the
             * request sent (unknown fields included) is what reading the event returns. A new
             * alias was stored, so the record never counts as unchanged here. */
            r = st->alias_insert(s, tenant_id, env, e->event_id, other.data);
            if (r == 0) {
                r = st->update(s, tenant_id, env, other.data, e, now, b->origin);
                r = r == 0 ? -EIO : r; /* found by dup_key a moment ago */
            }
            if (r < 0) {
                goto out;
            }
            sd_issues_add(&res->warnings, ptr,
                          "same performance (date, time, venue, hall) as event '%s'; '%s' stored "
                          "as an alias and that event updated with this record",
                          other.data, e->event_id);
            continue;
        }
        r = st->insert(s, tenant_id, env, e, now, b->origin);
        if (r < 0) {
            goto out;
        }
    }
    r = 0;
out:
    sd_buf_release(&other);
    return r;
}

/* ---- sales ------------------------------------------------------------------------------- */

/* A batch transport re-sent a stored sale: identical → unchanged, else replace it (new seq). */
static int upsert_existing_sale(struct sd_store *s, const struct sd_sale_steps *st,
                                int64_t tenant_id, enum sd_env env, const struct sd_batch *b,
                                const struct sd_sale_rec *sale, const struct sd_sale_plan *p,
                                const char *event_ref, int64_t now, struct sd_apply_result *res)
{
    if (p->unchanged) {
        res->n_unchanged++;
        return 0;
    }
    int r = st->update(s, tenant_id, env, sale, p, event_ref, now, sd_write_batch_source(b),
                       b->origin, false);
    if (r == 0) {
        sd_write_count_kept(res, 3); /* an older remote version: the stored sale stays */
    }
    return r < 0 ? r : 0;
}

int sd_write_apply_sales(struct sd_store *s, const struct sd_write_lookup *lk,
                         const struct sd_sale_steps *st, int64_t tenant_id, enum sd_env env,
                         const struct sd_batch *b, int64_t now, struct sd_apply_result *res)
{
    struct sd_refmap events = {0}, customers = {0};
    const char *customer_cache = NULL;
    const char **checked = NULL; /* upsert: each sale's event ref, from the first pass */
    size_t ref_errors = 0, dup_cap = 0;
    struct sd_sale_plan *plans = sd_calloc(b->n_sales + 1, sizeof(*plans));
    struct sd_refund_targets targets = {0};
    struct sd_facts_batch facts = {0};
    int r = sd_lifecycle_plan_sales(s, lk, tenant_id, env, b, now, plans, &targets, res);
    if (r < 0) {
        goto out;
    }
    ref_errors += (size_t)r;
    r = st->prefetch ? st->prefetch(s, tenant_id, env, b, &events, &customers, &facts) : 0;
    if (r < 0) {
        goto out;
    }
    if (b->upsert_sales && ref_errors == 0) {
        checked = sd_calloc(b->n_sales + 1, sizeof(*checked));
        r = sd_write_check_all_sales(s, lk, tenant_id, env, b, &events, &customers, &customer_cache,
                                     res, checked);
        if (r != 0) {
            ref_errors += r > 0 ? (size_t)r : 0;
            goto out;
        }
    }
    for (size_t i = 0; i < b->n_sales; i++) {
        const struct sd_sale_rec *sale = &b->sales[i];
        const char *ref = NULL;
        if (checked) {
            ref = checked[i];
        } else {
            char prefix[40];
            snprintf(prefix, sizeof(prefix), "/sales/%zu", sale->index);
            r = sd_write_check_sale_refs(s, lk, tenant_id, env, sd_write_batch_source(b), sale,
                                         prefix, &events, &customers, &customer_cache, res, &ref);
            if (r < 0) {
                goto out;
            }
            ref_errors += (size_t)r;
            if (ref_errors > 0) {
                continue;
            }
        }
        r = st->insert(s, tenant_id, env, b, sale, &plans[i], ref, now, &facts);
        if (r < 0) {
            goto out;
        }
        if (r == 0 && !b->upsert_sales) {
            sd_write_push_duplicate(res, sale->invoice_number, &dup_cap);
        } else if (r == 0) {
            r = st->facts_flush(s, tenant_id, env, &facts);
            r = r < 0 ? r
                      : upsert_existing_sale(s, st, tenant_id, env, b, sale, &plans[i], ref, now,
                                             res);
            if (r < 0) {
                goto out;
            }
        }
    }
    /* the new sales join the purchase facts before refunds change any of them */
    r = st->facts_flush(s, tenant_id, env, &facts);
    if (r >= 0 && ref_errors == 0 && res->n_duplicate_invoices == 0) {
        r = st->refunds(s, tenant_id, env, &targets);
    }
out:
    r = sd_write_sales_outcome(res, r, ref_errors);
    free(checked);
    sd_facts_batch_release(&facts);
    sd_sale_plans_free(plans, b->n_sales);
    sd_refund_targets_release(&targets);
    sd_refmap_release(&events);
    sd_refmap_release(&customers);
    return r;
}

/* ---- replacing one sale ------------------------------------------------------------------ */

/* The planning of a replacement: its references checked and its lifecycle planned at now. 1
 * when the replacement is refused (issues added, res->outcome SD_APPLY_REFUSED), 0 with *plan
 * (release plan->changed) and *ret_ref (valid while events lives), or negative errno. */
static int replace_plan(struct sd_store *s, const struct sd_write_lookup *lk, int64_t tenant_id,
                        enum sd_env env, const struct sd_sale_rec *sale, int64_t now,
                        struct sd_sale_plan *plan, struct sd_refmap *events, const char **ret_ref,
                        struct sd_apply_result *res)
{
    const char *customer_cache = NULL;
    int r = sd_write_check_sale_refs(s, lk, tenant_id, env, SD_SOURCE_WEBHOOK, sale, "", events,
                                     NULL, &customer_cache, res, ret_ref);
    if (r == 0) {
        char now_text[32];
        sd_lifecycle_utc_text(now, now_text);
        r = sd_lifecycle_plan_one(s, lk, tenant_id, env, sale, "", true, now_text, plan, res);
    }
    if (r > 0) {
        res->outcome = SD_APPLY_REFUSED;
        return 1;
    }
    return r;
}

int sd_write_replace_sale(struct sd_store *s, const struct sd_write_lookup *lk,
                          const struct sd_sale_steps *st, int64_t tenant_id, enum sd_env env,
                          const struct sd_sale_rec *sale, struct sd_apply_result *res)
{
    int r = st->exists(s, tenant_id, env, sale->invoice_number);
    if (r < 0) {
        return r;
    }
    if (r == 0) {
        res->outcome = SD_APPLY_NOT_FOUND;
        return 0;
    }
    struct sd_sale_plan plan = {0};
    struct sd_refmap events = {0};
    const char *ref = NULL;
    int64_t now = sd_now_usec();
    r = replace_plan(s, lk, tenant_id, env, sale, now, &plan, &events, &ref, res);
    if (r != 0) {
        r = r < 0 ? r : 0;
        goto out;
    }
    /* A replacement is numbered even when its remote version kept the stored sale. */
    r = st->update(s, tenant_id, env, sale, &plan, ref, now, SD_SOURCE_WEBHOOK, NULL, true);
    if (r < 0) {
        goto out;
    }
    r = 0;
    res->outcome = SD_APPLY_OK;
out:
    free(plan.changed);
    sd_refmap_release(&events);
    return r;
}

int sd_write_apply_ingest(struct sd_store *s, const struct sd_ingest_steps *st, int64_t tenant_id,
                          enum sd_env env, const struct sd_batch *b, struct sd_apply_result *res)
{
    int64_t now = sd_now_usec();
    res->outcome = SD_APPLY_OK;
    int r = sd_write_apply_events(s, st->events, tenant_id, env, b, now, res);
    if (r == 0) {
        r = st->customers(s, tenant_id, env, b, now, res);
    }
    if (r == 0) {
        r = st->sales(s, tenant_id, env, b, now, res);
    }
    return r;
}

/* ---- deleting a record ------------------------------------------------------------------- */

int sd_write_delete_record(struct sd_store *s, const struct sd_delete_steps *st, int64_t tenant_id,
                           enum sd_env env, enum sd_kind kind, const char *id, const char *source,
                           enum sd_tombstone_reason reason, const char *merged_into,
                           const char *origin)
{
    if (!id || (unsigned)reason > SD_TOMBSTONE_MERGED ||
        (reason == SD_TOMBSTONE_MERGED) != (merged_into != NULL)) {
        return -EINVAL;
    }
    int64_t now = sd_now_usec();
    char *src = NULL;
    int r;
    switch (kind) {
    case SD_KIND_EVENT:
        r = st->event_delete(s, tenant_id, env, id);
        if (r > 0) {
            r = reason == SD_TOMBSTONE_MERGED ? st->merge_event(s, tenant_id, env, id, merged_into)
                                              : st->aliases_delete(s, tenant_id, env, id);
            r = r < 0 ? r : 1;
        }
        break;
    case SD_KIND_CUSTOMER: {
        int64_t seq = 0, profile_id = 0;
        r = st->customer_find(s, tenant_id, env, id, source, &seq, &src, &profile_id);
        if (r == 1) {
            r = st->customer_delete(s, tenant_id, env, seq);
            if (r == 0 && profile_id > 0) {
                r = st->member_gone(s, tenant_id, env, profile_id, now);
            }
            if (r == 0 && reason == SD_TOMBSTONE_MERGED) {
                r = st->merge_customer_sales(s, tenant_id, env, id, src, merged_into, now);
            }
            r = r < 0 ? r : 1;
        }
        break;
    }
    case SD_KIND_SALE: r = st->sale_delete(s, tenant_id, env, id); break;
    default: return -EINVAL;
    }
    if (r > 0) {
        r = st->tombstone_put(s, tenant_id, env, kind, id, src, reason, merged_into, origin, now);
        r = r < 0 ? r : 1;
    }
    free(src);
    return r;
}
