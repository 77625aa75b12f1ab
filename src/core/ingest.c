/* ingest.c — the synchronous ingest path (see ingest.h): validate, then apply inside the
 * writer's group commit and wait for the commit. */
#include "core/ingest.h"


#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

#include "core/metrics.h"
#include "core/outbox.h"

void sd_ingest_outcome_init_limit(struct sd_ingest_outcome *o, size_t limit)
{
    *o = (struct sd_ingest_outcome){0};
    sd_issues_init(&o->errors, limit);
    sd_issues_init(&o->warnings, SD_MAX_ISSUES);
}

void sd_ingest_outcome_init(struct sd_ingest_outcome *o)
{
    sd_ingest_outcome_init_limit(o, SD_MAX_ISSUES);
}

void sd_ingest_outcome_release(struct sd_ingest_outcome *o)
{
    sd_issues_release(&o->errors);
    sd_issues_release(&o->warnings);
    for (size_t i = 0; i < o->n_duplicate_invoices; i++) {
        free(o->duplicate_invoices[i]);
    }
    free(o->duplicate_invoices);
    o->duplicate_invoices = NULL;
    o->n_duplicate_invoices = 0;
}

/* ---- the one apply point (see ingest.h) -------------------------------------------------------- */

int sd_ingest_apply(struct sd_store_handle *st, int64_t tenant_id, enum sd_env env,
                    const struct sd_batch *b, struct sd_apply_result *res)
{
    int r = sd_store_apply_ingest(st, tenant_id, env, b, res);
    if (r < 0 || res->outcome != SD_APPLY_OK) {
        return r;
    }
    /* The outbound items the change causes commit with it (or not at all). */
    int q = sd_outbox_changes_in_writer(st, tenant_id, env, b);
    return q < 0 ? q : 0;
}

int sd_ingest_status(enum sd_apply_outcome outcome, bool replace)
{
    switch (outcome) {
    case SD_APPLY_OK:
        return replace ? 200 : 202;
    case SD_APPLY_DUPLICATE:
        return 409;
    case SD_APPLY_NOT_FOUND:
        return 404;
    case SD_APPLY_REFUSED:
    default:
        return 400;
    }
}

int sd_ingest_replace_sale(struct sd_store_handle *st, int64_t tenant_id, enum sd_env env,
                           const struct sd_sale_rec *sale, struct sd_apply_result *res)
{
    int r = sd_store_replace_sale(st, tenant_id, env, sale, res);
    if (r < 0 || res->outcome != SD_APPLY_OK) {
        return r;
    }
    struct sd_batch one = {.sales = (struct sd_sale_rec *)sale, .n_sales = 1};
    int q = sd_outbox_changes_in_writer(st, tenant_id, env, &one);
    return q < 0 ? q : 0;
}

struct apply {
    int64_t tenant_id;
    enum sd_env env;
    const struct sd_batch *batch;
    const struct sd_ingest_opts *opts;
    struct sd_apply_result res;
};

static int apply_run(struct sd_store_handle *st, struct sd_write_job *job)
{
    struct apply *a = job->arg;
    int r = 0;
    if (sd_batch_count(a->batch) > 0) {
        r = sd_ingest_apply(st, a->tenant_id, a->env, a->batch, &a->res);
    } else {
        a->res.outcome = SD_APPLY_OK;
    }
    if (r < 0) {
        return r;
    }
    if (a->res.outcome != SD_APPLY_OK) {
        return 1;
    }
    if (a->opts && a->opts->state_id) {
        r = a->opts->state_fence
                ? sd_store_connector_state_put_fenced(st, a->opts->state_id, a->opts->state_doc,
                                                      a->opts->state_fence)
                : sd_store_connector_state_put(st, a->opts->state_id, a->opts->state_doc);
    }
    return r;
}

static void move_issues(struct sd_issues *to, struct sd_issues *from)
{
    for (size_t i = 0; i < from->n; i++) {
        sd_issues_add(to, from->items[i].pointer, "%s", from->items[i].message);
    }
}

static int check_run(struct sd_store_handle *st, struct sd_write_job *job)
{
    struct apply *a = job->arg;
    int r = sd_ingest_apply(st, a->tenant_id, a->env, a->batch, &a->res);
    return r < 0 ? r : 1; /* only the errors are wanted: undo whatever was applied */
}

static unsigned ingest_flags(const struct sd_ingest_opts *o)
{
    return o && o->email_optional ? SD_VALIDATE_EMAIL_OPTIONAL : 0;
}

/* A body validation refused: add the reference errors (unknown event or customer) of its sales
 * that are valid on their own, found by the store inside a savepoint that is undone, so one
 * answer lists every error. A failure of this check leaves the field errors alone. */
static void refusal_refs(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const json_t *body,
                         const struct sd_ingest_opts *o, struct sd_ingest_outcome *out)
{
    struct sd_batch batch;
    if (sd_validate_ingest_checkable_flags(body, ingest_flags(o), &batch) == 0) {
        return;
    }
    batch.upsert_sales = o && o->upsert_sales;
    batch.source = o ? o->source : NULL;
    batch.origin = o ? o->origin : NULL;
    struct apply a = {.tenant_id = tenant_id, .env = env, .batch = &batch, .opts = o};
    sd_apply_result_init(&a.res);
    a.res.errors.limit = out->errors.limit;
    if (sd_writer_run_sync(hub->writer, check_run, &a) >= 0) {
        move_issues(&out->errors, &a.res.errors);
        out->errors.total += a.res.errors.total - a.res.errors.n;
    }
    sd_apply_result_release(&a.res);
    sd_batch_release(&batch);
}

/* Validate + apply one body in one writer job. */
static int ingest_once(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const json_t *body,
                       const struct sd_ingest_opts *o, struct sd_ingest_outcome *out)
{
    struct sd_batch batch = {0};
    bool state_only = o && o->state_id && json_is_object(body) && json_object_size(body) == 0;
    if (!state_only) {
        int r =
            sd_validate_ingest_flags(body, ingest_flags(o), &batch, &out->errors, &out->warnings);
        if (r < 0 || out->errors.total > 0) {
            out->status = 400;
            refusal_refs(hub, tenant_id, env, body, o, out);
            return 0;
        }
    }
    batch.upsert_sales = o && o->upsert_sales;
    batch.source = o ? o->source : NULL;
    batch.origin = o ? o->origin : NULL;
    struct apply a = {.tenant_id = tenant_id, .env = env, .batch = &batch, .opts = o};
    sd_apply_result_init(&a.res);
    a.res.errors.limit = out->errors.limit; /* a batch connector may want every error */
    int r = sd_writer_run_sync(hub->writer, apply_run, &a);
    if (r == 0) {
        out->status = sd_ingest_status(a.res.outcome, false);
        move_issues(&out->errors, &a.res.errors);
        move_issues(&out->warnings, &a.res.warnings);
        if (a.res.outcome == SD_APPLY_OK) {
            out->n_events = batch.n_events;
            out->n_customers = batch.n_customers;
            out->n_sales = batch.n_sales;
            out->n_unchanged = a.res.n_unchanged;
            out->n_stale = a.res.n_stale;
            sd_metrics_records(SD_KIND_EVENT, batch.n_events);
            sd_metrics_records(SD_KIND_CUSTOMER, batch.n_customers);
            sd_metrics_records(SD_KIND_SALE, batch.n_sales);
        } else if (a.res.outcome == SD_APPLY_DUPLICATE) {
            out->duplicate_invoices = a.res.duplicate_invoices;
            out->n_duplicate_invoices = a.res.n_duplicate_invoices;
            a.res.duplicate_invoices = NULL;
            a.res.n_duplicate_invoices = 0;
        }
    }
    sd_apply_result_release(&a.res);
    sd_batch_release(&batch);
    return r < 0 ? r : 0;
}

int sd_hub_ingest(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const json_t *body,
                  struct sd_ingest_outcome *out)
{
    return ingest_once(hub, tenant_id, env, body, NULL, out);
}

/* ---- skip_bad: leave out the records named by errors and try again ----------------------------
 */

static const char *const kind_names[3] = {"events", "customers", "sales"};

/* "/sales/12/currency" → kind 2, index 12, rest "/currency". false if it names no record. */
static bool pointer_record(const char *p, int *ret_kind, size_t *ret_idx, const char **ret_rest)
{
    for (int k = 0; k < 3; k++) {
        size_t kl = strlen(kind_names[k]);
        if (p[0] != '/' || strncmp(p + 1, kind_names[k], kl) != 0 || p[1 + kl] != '/') {
            continue;
        }
        const char *q = p + 2 + kl;
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(q, &end, 10);
        if (end == q || errno || (*end && *end != '/')) {
            return false;
        }
        *ret_kind = k;
        *ret_idx = (size_t)v;
        *ret_rest = end;
        return true;
    }
    return false;
}

struct skip_state {
    const json_t *body;
    size_t n[3];
    bool *bad[3];
    size_t *map[3]; /* index in the reduced body → index in `body` */
};

static json_t *reduced_body(struct skip_state *ss)
{
    json_t *red = json_object();
    for (int k = 0; k < 3; k++) {
        const json_t *arr = json_object_get(ss->body, kind_names[k]);
        if (!arr) {
            continue;
        }
        json_t *out = json_array();
        size_t m = 0;
        for (size_t i = 0; i < ss->n[k]; i++) {
            if (!ss->bad[k][i]) {
                json_array_append(out, json_array_get(arr, i));
                ss->map[k][m++] = i;
            }
        }
        if (m > 0) {
            json_object_set_new(red, kind_names[k], out);
        } else {
            json_decref(out);
        }
    }
    return red;
}

/* Translate pointers of `from` (into the reduced body) to the original body, mark the records
 * they name as bad and add them to `to`. Returns how many records became bad, or -EINVAL if an
 * issue names no record (the body as a whole is wrong). */
static int mark_bad(struct skip_state *ss, const struct sd_issues *from, struct sd_issues *to)
{
    int newly = 0;
    for (size_t i = 0; i < from->n; i++) {
        int k;
        size_t idx;
        const char *rest;
        if (!pointer_record(from->items[i].pointer, &k, &idx, &rest)) {
            return -EINVAL;
        }
        size_t orig = ss->map[k][idx];
        if (!ss->bad[k][orig]) {
            ss->bad[k][orig] = true;
            newly++;
        }
        char ptr[64];
        snprintf(ptr, sizeof(ptr), "/%s/%zu", kind_names[k], orig);
        struct sd_buf b = {0};
        sd_buf_puts(&b, ptr);
        sd_buf_puts(&b, rest);
        sd_issues_add(to, b.data, "%s", from->items[i].message);
        sd_buf_release(&b);
    }
    return newly;
}

/* ingest_once with the state document from state_fn, if there is one. */
static int ingest_with_state(struct sd_hub *hub, int64_t tenant_id, enum sd_env env,
                             const json_t *body, const struct sd_ingest_opts *o,
                             const struct sd_issues *skipped, size_t n_skipped,
                             struct sd_ingest_outcome *out)
{
    if (!o || !o->state_fn) {
        return ingest_once(hub, tenant_id, env, body, o, out);
    }
    struct sd_ingest_opts o2 = *o;
    char *doc = o->state_fn(o->state_arg, skipped, n_skipped);
    o2.state_doc = doc;
    int r = ingest_once(hub, tenant_id, env, body, &o2, out);
    free(doc);
    return r;
}

int sd_hub_ingest_opts(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const json_t *body,
                       const struct sd_ingest_opts *o, struct sd_ingest_outcome *out)
{
    if (!o || !o->skip_bad || !json_is_object(body)) {
        struct sd_issues none;
        sd_issues_init(&none, 0);
        return ingest_with_state(hub, tenant_id, env, body, o, &none, 0, out);
    }
    struct skip_state ss = {.body = body};
    size_t total = 0;
    for (int k = 0; k < 3; k++) {
        const json_t *arr = json_object_get(body, kind_names[k]);
        ss.n[k] = json_is_array(arr) ? json_array_size(arr) : 0;
        total += ss.n[k];
        ss.bad[k] = sd_calloc(ss.n[k] + 1, sizeof(bool));
        ss.map[k] = sd_calloc(ss.n[k] + 1, sizeof(size_t));
    }
    int r = 0;
    /* Each round removes at least one record, so total + 1 rounds always end. */
    for (size_t round = 0; round <= total; round++) {
        json_t *red = reduced_body(&ss);
        struct sd_ingest_outcome one;
        sd_ingest_outcome_init_limit(&one, total + 16);
        size_t n_bad = 0;
        for (int k = 0; k < 3; k++) {
            for (size_t i = 0; i < ss.n[k]; i++) {
                n_bad += ss.bad[k][i];
            }
        }
        r = ingest_with_state(hub, tenant_id, env, red, o, &out->errors, n_bad, &one);
        json_decref(red);
        if (r < 0) {
            sd_ingest_outcome_release(&one);
            break;
        }
        if (one.status == 202) {
            out->status = 202;
            out->n_events = one.n_events;
            out->n_customers = one.n_customers;
            out->n_sales = one.n_sales;
            out->n_unchanged = one.n_unchanged;
            out->n_stale = one.n_stale;
            move_issues(&out->warnings, &one.warnings);
            sd_ingest_outcome_release(&one);
            break;
        }
        struct sd_issues dup;
        sd_issues_init(&dup, total + 16);
        for (size_t i = 0; i < one.n_duplicate_invoices; i++) {
            /* 409 without upsert: find the sales by invoice number. */
            const json_t *sales = json_object_get(body, "sales");
            for (size_t j = 0; j < ss.n[2]; j++) {
                const json_t *inv = json_object_get(json_array_get(sales, j), "invoice_number");
                if (!ss.bad[2][j] && json_is_string(inv) &&
                    strcmp(json_string_value(inv), one.duplicate_invoices[i]) == 0) {
                    size_t red_idx = 0;
                    for (size_t m = 0; m < ss.n[2]; m++) {
                        if (ss.map[2][m] == j) {
                            red_idx = m;
                            break;
                        }
                    }
                    char ptr[64];
                    snprintf(ptr, sizeof(ptr), "/sales/%zu/invoice_number", red_idx);
                    sd_issues_add(&dup, ptr, "invoice number already exists");
                }
            }
        }
        int newly = mark_bad(&ss, one.status == 409 ? &dup : &one.errors, &out->errors);
        sd_issues_release(&dup);
        sd_ingest_outcome_release(&one);
        if (newly <= 0) {
            /* The body as a whole is wrong (or nothing could be attributed): refuse it. */
            out->status = 400;
            if (newly == 0) {
                sd_issues_add(&out->errors, "", "the batch was refused and no record is named");
            }
            break;
        }
    }
    for (int k = 0; k < 3; k++) {
        for (size_t i = 0; i < ss.n[k]; i++) {
            out->n_skipped += ss.bad[k][i];
        }
        free(ss.bad[k]);
        free(ss.map[k]);
    }
    return r;
}

/* ---- inside the writer ------------------------------------------------------------------------
 */

int sd_ingest_batch_in_writer(struct sd_store_handle *st, int64_t tenant_id, enum sd_env env,
                              const struct sd_batch *batch, struct sd_ingest_outcome *out)
{
    struct sd_apply_result res;
    sd_apply_result_init(&res);
    res.errors.limit = out->errors.limit;
    int r = sd_ingest_apply(st, tenant_id, env, batch, &res);
    if (r == 0) {
        out->status = sd_ingest_status(res.outcome, false);
        move_issues(&out->errors, &res.errors);
        move_issues(&out->warnings, &res.warnings);
        if (res.outcome == SD_APPLY_OK) {
            out->n_events = batch->n_events;
            out->n_customers = batch->n_customers;
            out->n_sales = batch->n_sales;
            out->n_unchanged = res.n_unchanged;
            out->n_stale = res.n_stale;
        }
        for (size_t i = 0; i < res.n_duplicate_invoices; i++) {
            sd_issues_add(&out->errors, "/sales", "invoice number '%s' already exists",
                          res.duplicate_invoices[i]);
        }
    }
    sd_apply_result_release(&res);
    return r;
}
