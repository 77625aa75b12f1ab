/* ingest.c — the synchronous ingest path (see ingest.h): validate, then apply inside the
 * writer's group commit and wait for the commit. */
#include "core/ingest.h"

#include <errno.h>
#include <stdlib.h>

#include "core/metrics.h"

void sd_ingest_outcome_init(struct sd_ingest_outcome *o)
{
    *o = (struct sd_ingest_outcome){0};
    sd_issues_init(&o->errors, SD_MAX_ISSUES);
    sd_issues_init(&o->warnings, SD_MAX_ISSUES);
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

struct apply {
    int64_t tenant_id;
    enum sd_env env;
    const struct sd_batch *batch;
    struct sd_apply_result res;
};

static int apply_run(struct sd_store_handle *st, struct sd_write_job *job)
{
    struct apply *a = job->arg;
    int r = sd_store_apply_ingest(st, a->tenant_id, a->env, a->batch, &a->res);
    if (r < 0) {
        return r;
    }
    return a->res.status == 202 ? 0 : 1;
}

static void move_issues(struct sd_issues *to, struct sd_issues *from)
{
    for (size_t i = 0; i < from->n; i++) {
        sd_issues_add(to, from->items[i].pointer, "%s", from->items[i].message);
    }
}

int sd_hub_ingest(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const json_t *body,
                  struct sd_ingest_outcome *out)
{
    struct sd_batch batch = {0};
    int r = sd_validate_ingest(body, &batch, &out->errors, &out->warnings);
    if (r < 0 || out->errors.total > 0) {
        out->status = 400;
        return 0;
    }
    struct apply a = {.tenant_id = tenant_id, .env = env, .batch = &batch};
    sd_apply_result_init(&a.res);
    r = sd_writer_run_sync(hub->writer, apply_run, &a);
    if (r == 0) {
        out->status = a.res.status;
        move_issues(&out->errors, &a.res.errors);
        move_issues(&out->warnings, &a.res.warnings);
        if (a.res.status == 202) {
            out->n_events = batch.n_events;
            out->n_customers = batch.n_customers;
            out->n_sales = batch.n_sales;
            sd_metrics_records(SD_KIND_EVENT, batch.n_events);
            sd_metrics_records(SD_KIND_CUSTOMER, batch.n_customers);
            sd_metrics_records(SD_KIND_SALE, batch.n_sales);
        } else if (a.res.status == 409) {
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
