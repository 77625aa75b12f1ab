/* connector_run.c — running a configured connector instance: its context (settings, mapping,
 * committed cursor, work folder), the commit that stores records and the cursor in one
 * transaction, whole-unit write jobs, state-only saves, and the state document written when a
 * run ends.
 *
 * The state document (store: connector_state) is {"cursor", "state", "last_run_usec",
 * "last_success_usec", "last_error", "records_in", "records_rejected", "records_unchanged",
 * "last_run": {…}, "saved": {…}}; "saved" is the connector's own (sd_connector_saved). Every
 * document written is derived from ctx->state, so whatever the connector saved travels with
 * each later commit and with the run's final document. It is only ever written by the writer inside the transaction of the records
 * it counts, so after a crash the cursor and the counters describe exactly what is stored.
 * records_unchanged (of records_in, those already stored as they were) is known only once a
 * commit is applied: a whole-unit job's commit counts it, a page commit leaves it to the run's
 * last state document. */
#include "core/connector_run.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "base/log.h"
#include "core/runs.h"
#include "core/quality.h"
#include "mapping/mapping.h"

int sd_connector_fail(struct sd_connector_ctx *ctx, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = sd_vasprintf(fmt, ap);
    va_end(ap);
    free(ctx->error);
    ctx->error = msg;
    return code;
}

static uint64_t state_u64(const json_t *state, const char *key)
{
    const json_t *v = json_object_get(state, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

/* A copy of the state with this run's counters added to the totals it started with. */
static json_t *state_with(struct sd_connector_ctx *ctx, const json_t *cursor, uint64_t in,
                          uint64_t rejected)
{
    json_t *st = json_deep_copy(ctx->state);
    if (cursor) {
        json_object_set_new(st, "cursor", json_deep_copy(cursor));
    }
    json_object_set_new(st, "records_in", json_integer((json_int_t)in));
    json_object_set_new(st, "records_rejected", json_integer((json_int_t)rejected));
    return st;
}

struct commit_fn {
    struct sd_connector_ctx *ctx;
    sd_connector_cursor_fn fn;
    void *arg;
    uint64_t base_in, base_rej;
    size_t n_body;
};

static char *commit_state(void *arg, const struct sd_issues *skipped, size_t n_skipped)
{
    struct commit_fn *c = arg;
    json_t *cursor = c->fn(c->arg, skipped, n_skipped);
    json_t *st =
        state_with(c->ctx, cursor, c->base_in + c->n_body - n_skipped, c->base_rej + n_skipped);
    char *doc = json_dumps(st, JSON_COMPACT);
    json_decref(st);
    json_decref(cursor);
    return doc;
}

static size_t body_records(const json_t *body)
{
    size_t n = 0;
    static const char *const arrays[] = {"events", "customers", "sales"};
    for (int k = 0; k < 3; k++) {
        n += json_array_size(json_object_get(body, arrays[k]));
    }
    return n;
}

int sd_connector_commit_fn(struct sd_connector_ctx *ctx, const json_t *body,
                           sd_connector_cursor_fn cursor_fn, void *arg, bool skip_bad,
                           struct sd_ingest_outcome *out)
{
    struct commit_fn c = {.ctx = ctx,
                          .fn = cursor_fn,
                          .arg = arg,
                          .base_in = state_u64(ctx->state, "records_in"),
                          .base_rej = state_u64(ctx->state, "records_rejected"),
                          .n_body = body_records(body)};
    struct sd_ingest_opts o = {.source = ctx->source,
                               .origin = ctx->id,
                               .upsert_sales = true,
                               .email_optional = sd_connector_email_optional(ctx),
                               .skip_bad = skip_bad,
                               .state_id = ctx->state ? ctx->id : NULL,
                               .state_fn = ctx->state ? commit_state : NULL,
                               .state_arg = &c,
                               .state_fence = ctx->run_fence};
    int r = sd_hub_ingest_opts(ctx->hub, ctx->tenant_id, ctx->env, body, &o, out);
    if (r == 0) {
        /* what the source sent that was refused, by field and error, and what was stored */
        struct sd_quality *q = ctx->hub->quality;
        sd_quality_rejected(q, ctx->tenant_id, ctx->env, ctx->id, NULL, &out->errors);
        if (out->status == 202) {
            sd_quality_accepted(q, ctx->tenant_id, ctx->env, ctx->id, SD_KIND_EVENT,
                                out->n_events);
            sd_quality_accepted(q, ctx->tenant_id, ctx->env, ctx->id, SD_KIND_CUSTOMER,
                                out->n_customers);
            sd_quality_accepted(q, ctx->tenant_id, ctx->env, ctx->id, SD_KIND_SALE,
                                out->n_sales);
        }
    }
    if (r == 0 && out->status == 202) {
        ctx->records_in += out->n_events + out->n_customers + out->n_sales;
        ctx->records_unchanged += out->n_unchanged;
        ctx->records_rejected += out->n_skipped;
        /* What was committed: reload it (cheap, one row) so ctx->state is exactly the store's. */
        json_t *st = NULL;
        if (ctx->state && sd_connector_state_load(ctx->hub, ctx->id, &st) == 0) {
            json_decref(ctx->state);
            ctx->state = st;
            ctx->cursor = json_object_get(ctx->state, "cursor");
        }
    } else if (r == 0) {
        ctx->records_rejected += c.n_body;
    }
    return r;
}

static json_t *fixed_cursor(void *arg, const struct sd_issues *skipped, size_t n_skipped)
{
    (void)skipped;
    (void)n_skipped;
    return arg ? json_deep_copy(arg) : NULL;
}

int sd_connector_commit(struct sd_connector_ctx *ctx, const json_t *body, const json_t *cursor,
                        bool skip_bad, struct sd_ingest_outcome *out)
{
    return sd_connector_commit_fn(ctx, body, fixed_cursor, (void *)cursor, skip_bad, out);
}

const char *sd_kind_array_name(enum sd_kind kind)
{
    static const char *const names[] = {"events", "customers", "sales"};
    return (unsigned)kind < 3 ? names[kind] : "records";
}

size_t sd_connector_map_records(struct sd_connector_ctx *ctx, enum sd_kind kind,
                                const json_t *records, const char *ptr_prefix, json_t *body,
                                struct sd_issues *errors)
{
    const char *name = sd_kind_array_name(kind);
    json_t *arr = json_object_get(body, name);
    if (!arr) {
        arr = json_array();
        json_object_set_new(body, name, arr);
    }
    size_t bad = 0;
    for (size_t i = 0; i < json_array_size(records); i++) {
        char ptr[128];
        sd_utf8_snprintf(ptr, sizeof(ptr), "%s/%zu", ptr_prefix, i);
        const json_t *src = json_array_get(records, i);
        json_t *rec = NULL;
        if (!json_is_object(src)) {
            sd_issues_add(errors, ptr, "a record must be a JSON object");
        } else if (ctx->mapping) {
            rec = sd_mapping_apply_object(ctx->mapping, kind, src, ptr, errors);
        } else {
            rec = json_deep_copy(src);
        }
        if (rec) {
            json_array_append_new(arr, rec);
        } else {
            bad++;
        }
    }
    return bad;
}

/* ---- whole-unit jobs --------------------------------------------------------------------------
 */

struct sd_connector_job {
    struct sd_connector_ctx *ctx;
    struct sd_store_handle *st;
    sd_connector_job_fn fn;
    void *arg;
    json_t *cursor;    /* set by sd_connector_job_cursor */
    json_t *new_state; /* the state document job_run stored, adopted once committed */
    uint64_t stored;
    uint64_t unchanged; /* of stored: already stored as they were */
    uint64_t rejected;  /* sd_connector_job_reject */
    uint64_t stored_kind[3]; /* of stored: events, customers, sales (data-quality counts) */
};

struct sd_connector_ctx *sd_connector_job_ctx(struct sd_connector_job *job)
{
    return job->ctx;
}

int sd_connector_job_ingest(struct sd_connector_job *job, const json_t *body,
                            struct sd_ingest_outcome *out)
{
    struct sd_batch batch = {0};
    int r = sd_validate_ingest_flags(body, sd_connector_validate_flags(job->ctx), &batch,
                                     &out->errors, &out->warnings);
    if (r < 0 || out->errors.total > 0) {
        out->status = 400;
        return 0;
    }
    r = sd_connector_job_ingest_batch(job, &batch, out);
    sd_batch_release(&batch);
    return r;
}

int sd_connector_job_ingest_batch(struct sd_connector_job *job, struct sd_batch *batch,
                                  struct sd_ingest_outcome *out)
{
    batch->upsert_sales = true;
    batch->source = job->ctx->source;
    batch->origin = job->ctx->id;
    int r = sd_ingest_batch_in_writer(job->st, job->ctx->tenant_id, job->ctx->env, batch, out);
    if (r == 0 && out->status == 202) {
        job->stored += out->n_events + out->n_customers + out->n_sales;
        job->stored_kind[SD_KIND_EVENT] += out->n_events;
        job->stored_kind[SD_KIND_CUSTOMER] += out->n_customers;
        job->stored_kind[SD_KIND_SALE] += out->n_sales;
        job->unchanged += out->n_unchanged;
    }
    return r;
}

bool sd_connector_job_others_waiting(struct sd_connector_job *job)
{
    return sd_writer_others_waiting(job->ctx->hub->writer);
}

void sd_connector_job_reject(struct sd_connector_job *job, uint64_t n)
{
    job->rejected += n;
}

int sd_connector_job_cursor(struct sd_connector_job *job, const json_t *cursor)
{
    json_decref(job->cursor);
    job->cursor = json_deep_copy(cursor);
    return 0;
}

int sd_connector_job_customer(struct sd_connector_job *job, const char *customer_id,
                              json_t **ret_doc)
{
    char *doc = NULL;
    int r = sd_store_get_customer_in_write(job->st, job->ctx->tenant_id, job->ctx->env,
                                           customer_id, job->ctx->source, &doc);
    if (r < 0) {
        return r;
    }
    json_t *o = json_loads(doc ? doc : "", 0, NULL);
    free(doc);
    if (!json_is_object(o)) {
        json_decref(o);
        return -EIO;
    }
    json_object_del(o, "source");
    *ret_doc = o;
    return 0;
}

static int job_run(struct sd_store_handle *st, struct sd_write_job *wj)
{
    struct sd_connector_job *job = wj->arg;
    job->st = st;
    int r = job->fn(job, job->arg);
    if (r != 0 || !job->ctx->state) {
        return r;
    }
    json_t *state =
        state_with(job->ctx, job->cursor, state_u64(job->ctx->state, "records_in") + job->stored,
                   state_u64(job->ctx->state, "records_rejected") + job->rejected);
    json_object_set_new(state, "records_unchanged",
                        json_integer((json_int_t)(state_u64(job->ctx->state, "records_unchanged") +
                                                  job->unchanged)));
    char *doc = json_dumps(state, JSON_COMPACT);
    r = job->ctx->run_fence
            ? sd_store_connector_state_put_fenced(st, job->ctx->id, doc, job->ctx->run_fence)
            : sd_store_connector_state_put(st, job->ctx->id, doc);
    free(doc);
    if (r == 0) {
        job->new_state = state;
    } else {
        json_decref(state);
    }
    return r;
}

int sd_connector_write_job(struct sd_connector_ctx *ctx, sd_connector_job_fn fn, void *arg)
{
    struct sd_connector_job job = {.ctx = ctx, .fn = fn, .arg = arg};
    int r = sd_writer_run_sync(ctx->hub->writer, job_run, &job);
    if (r == 0 && job.new_state) {
        /* Kept and committed: the stored document is now the state. */
        json_decref(ctx->state);
        ctx->state = job.new_state;
        job.new_state = NULL;
        ctx->cursor = json_object_get(ctx->state, "cursor");
        ctx->records_in += job.stored;
        ctx->records_unchanged += job.unchanged;
        ctx->records_rejected += job.rejected;
        struct sd_quality *q = ctx->hub->quality;
        for (int k = 0; k < 3; k++) {
            sd_quality_accepted(q, ctx->tenant_id, ctx->env, ctx->id, (enum sd_kind)k,
                                job.stored_kind[k]);
        }
        sd_quality_rejected_n(q, ctx->tenant_id, ctx->env, ctx->id, job.rejected);
    }
    json_decref(job.new_state);
    json_decref(job.cursor);
    return r;
}

/* ---- long-lived state ------------------------------------------------------------------------
 */

json_t *sd_connector_saved(struct sd_connector_ctx *ctx)
{
    if (!json_is_object(ctx->state)) {
        return NULL;
    }
    json_t *saved = json_object_get(ctx->state, "saved");
    if (!json_is_object(saved)) {
        saved = json_object();
        json_object_set_new(ctx->state, "saved", saved);
    }
    return saved;
}

int sd_connector_state_save(struct sd_connector_ctx *ctx)
{
    if (!json_is_object(ctx->state) || !ctx->id) {
        return -ENOTSUP;
    }
    char *doc = json_dumps(ctx->state, JSON_COMPACT);
    if (!doc) {
        return -EINVAL;
    }
    int r = 0;
    if (strlen(doc) > SD_CONNECTOR_STATE_MAX) {
        r = -EFBIG;
        goto out;
    }
    json_t *empty = json_object();
    struct sd_ingest_outcome res;
    sd_ingest_outcome_init(&res);
    struct sd_ingest_opts o = {
        .state_id = ctx->id, .state_doc = doc, .state_fence = ctx->run_fence};
    r = sd_hub_ingest_opts(ctx->hub, ctx->tenant_id, ctx->env, empty, &o, &res);
    if (r == 0 && res.status != 202) {
        r = -EIO;
    }
    sd_ingest_outcome_release(&res);
    json_decref(empty);
out:
    free(doc);
    return r;
}

/* ---- one run of a configured instance ----------------------------------------------------------
 */

static int load_state(struct sd_hub *hub, const char *id, json_t **ret)
{
    char *doc = NULL;
    int r = sd_store_connector_state_get(hub->store, id, &doc);
    if (r == -ENOENT) {
        *ret = json_object();
        return 0;
    }
    if (r < 0) {
        return r;
    }
    json_t *v = json_loads(doc, 0, NULL);
    free(doc);
    *ret = json_is_object(v) ? v : json_object();
    if (!json_is_object(v)) {
        json_decref(v);
    }
    return 0;
}

int sd_connector_state_load(struct sd_hub *hub, const char *id, json_t **ret)
{
    return load_state(hub, id, ret);
}

int sd_connector_run_instance(struct sd_hub *hub, const struct sd_connector_conf *conf,
                              int64_t fence, const atomic_bool *stop,
                              struct sd_connector_live *live)
{
    const struct sd_connector *c = sd_connector_find(conf->type);
    int64_t started = sd_now_usec();
    struct sd_issues errors;
    sd_issues_init(&errors, 10);
    json_t *settings = json_loads(conf->settings, 0, NULL);
    json_t *spec = json_loads(conf->mapping, 0, NULL);
    json_t *checked = NULL;
    void *typed = NULL; /* the connector's settings struct, filled from checked */
    struct sd_mapping *mapping = NULL;
    char *work_dir = sd_asprintf("%s/connectors/%s", hub->data_dir, conf->id);
    struct sd_connector_ctx ctx = {.hub = hub,
                                   .tenant_id = conf->tenant_id,
                                   .env = conf->env,
                                   .id = conf->id,
                                   .work_dir = work_dir,
                                   .connector = c,
                                   .stop = stop,
                                   .run_fence = fence};
    _Atomic uint64_t progress_local = 0;
    ctx.progress = live ? &live->progress : &progress_local;
    atomic_store(ctx.progress, 0);
    uint64_t base_in = 0, base_rej = 0, base_unch = 0;
    const char *trigger = "schedule";
    int r = load_state(hub, conf->id, &ctx.state);
    if (r < 0) {
        sd_connector_fail(&ctx, r, "could not read the connector state");
        goto finish;
    }
    ctx.cursor = json_object_get(ctx.state, "cursor");
    trigger = sd_runs_trigger(hub, conf, ctx.state);
    {
        json_object_set_new(ctx.state, "run_started_usec", json_integer(started));
        char *doc0 = json_dumps(ctx.state, JSON_COMPACT);
        json_t *empty0 = json_object();
        struct sd_ingest_outcome out0;
        sd_ingest_outcome_init(&out0);
        struct sd_ingest_opts o0 = {.state_id = conf->id, .state_doc = doc0, .state_fence = fence};
        int r0 = sd_hub_ingest_opts(hub, conf->tenant_id, conf->env, empty0, &o0, &out0);
        sd_ingest_outcome_release(&out0);
        json_decref(empty0);
        free(doc0);
        if (r0 == -ESTALE) {
            /* The lease went to another node between the take and this first commit. */
            r = sd_connector_fail(&ctx, r0, "the run lease was taken over by another node");
            goto finish;
        }
    }
    base_in = state_u64(ctx.state, "records_in");
    base_rej = state_u64(ctx.state, "records_rejected");
    base_unch = state_u64(ctx.state, "records_unchanged");
    if (!c || !(c->kind & SD_CONNECTOR_SOURCE) || !c->run) {
        r = sd_connector_fail(&ctx, -ENOENT, "no source connector '%s'", conf->type);
        goto finish;
    }
    checked = sd_connector_check_settings(c, settings, &errors);
    if (!checked || sd_mapping_new(spec, &mapping, &errors) < 0) {
        r = sd_connector_fail(&ctx, -EINVAL, "configuration refused: %s %s",
                              errors.n ? errors.items[0].pointer : "",
                              errors.n ? errors.items[0].message : "");
        goto finish;
    }
    if ((r = sd_connector_settings_new(c, checked, &typed)) < 0) {
        r = sd_connector_fail(&ctx, r,
                              "configuration refused: its settings do not fit the "
                              "connector's settings struct");
        goto finish;
    }
    ctx.settings = checked;
    ctx.conf = typed;
    ctx.mapping = mapping;
    ctx.source = json_string_value(json_object_get(checked, "source"));
    if (!ctx.source) {
        ctx.source = conf->type;
    }
    char *dir1 = sd_asprintf("%s/connectors", hub->data_dir);
    mkdir(dir1, 0700);
    free(dir1);
    mkdir(work_dir, 0700);
    void *state = NULL;
    r = c->init ? c->init(&ctx, &state) : 0;
    if (r == 0) {
        r = c->run(&ctx, state);
        if (c->fini) {
            c->fini(state);
        }
    }
    if (r < 0 && !ctx.error) {
        sd_connector_fail(&ctx, r, "run failed (%s)", strerror(-r));
    }
    if (r == -ENOSPC) {
        /* The store ran out of space: nothing of the failed write was kept; say so first. */
        sd_connector_fail(&ctx, r,
                          "disk full: the hub's storage has no space left, the next run "
                          "retries (%s)",
                          ctx.error);
    }
finish:
    /* The run's outcome in the state document (a state-only commit). */
    {
        json_t *st = ctx.state ? json_deep_copy(ctx.state) : json_object();
        int64_t now = sd_now_usec();
        /* Totals: what the run's commits recorded plus what it refused without a commit. */
        json_object_set_new(st, "records_in", json_integer((json_int_t)(base_in + ctx.records_in)));
        json_object_set_new(st, "records_rejected",
                            json_integer((json_int_t)(base_rej + ctx.records_rejected)));
        json_object_set_new(st, "records_unchanged",
                            json_integer((json_int_t)(base_unch + ctx.records_unchanged)));
        json_object_set_new(st, "last_run_usec", json_integer(started));
        json_object_set_new(st, "state", json_string(r == 0 ? "ok" : "failed"));
        if (r == 0) {
            json_object_set_new(st, "last_success_usec", json_integer(now));
            json_object_set_new(st, "last_error", json_null());
            /* A run that stored what it could but left records out says so. */
            json_object_set_new(st, "last_warning",
                                ctx.error ? json_string(ctx.error) : json_null());
        } else {
            json_object_set_new(st, "last_error", sd_json_text(ctx.error ? ctx.error : "failed"));
            json_object_set_new(st, "last_error_usec", json_integer(now));
        }
        json_t *lr = json_pack("{s:I, s:I, s:I, s:I}", "records_in", (json_int_t)ctx.records_in,
                               "records_unchanged", (json_int_t)ctx.records_unchanged,
                               "records_rejected", (json_int_t)ctx.records_rejected, "duration_ms",
                               (json_int_t)((now - started) / 1000));
        json_object_set_new(st, "last_run", lr);
        char *doc = json_dumps(st, JSON_COMPACT);
        json_t *empty = json_object();
        struct sd_ingest_outcome out;
        sd_ingest_outcome_init(&out);
        struct sd_ingest_opts o = {.state_id = conf->id, .state_doc = doc, .state_fence = fence};
        int sr = sd_hub_ingest_opts(hub, conf->tenant_id, conf->env, empty, &o, &out);
        if (sr == -ESTALE) {
            /* Another node holds the lease now: its run owns the state. */
            sd_log(SD_LOG_WARN, "connector run lost its lease; its outcome is not stored",
                   "connector=%s", conf->id);
        } else if (sr < 0) {
            sd_log(SD_LOG_ERROR, "connector state not stored", "connector=%s", conf->id);
        }
        if (sr != -ESTALE) {
            /* One row of run history per run; a run that lost its lease records nothing. */
            struct sd_run_end end = {.trigger = trigger,
                                     .started_usec = started,
                                     .finished_usec = now,
                                     .result = r,
                                     .cancelled = r == -ECANCELED || (r != 0 && stop &&
                                                                      atomic_load(stop)),
                                     .error = ctx.error ? ctx.error : "failed",
                                     .records_in = ctx.records_in,
                                     .records_rejected = ctx.records_rejected,
                                     .records_unchanged = ctx.records_unchanged};
            sd_runs_record(hub, conf, fence, &end);
        }
        sd_ingest_outcome_release(&out);
        json_decref(empty);
        free(doc);
        json_decref(st);
    }
    sd_quality_run(hub->quality, conf->id, conf->tenant_id, r == 0, ctx.records_in,
                   ctx.records_rejected, sd_now_usec());
    sd_log(r == 0 ? SD_LOG_INFO : SD_LOG_ERROR, "connector run finished",
           "connector=\"[%s/%s]\" records=%llu rejected=%llu " SD_LOG_ERR_FMT, conf->type, conf->id,
           (unsigned long long)ctx.records_in, (unsigned long long)ctx.records_rejected,
           SD_LOG_ERR_ARGS(r));
    sd_issues_release(&errors);
    sd_mapping_free(mapping);
    free(typed);
    json_decref(checked);
    json_decref(settings);
    json_decref(spec);
    json_decref(ctx.state);
    free(ctx.error);
    free(work_dir);
    return r;
}
