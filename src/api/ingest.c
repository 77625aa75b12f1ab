/* ingest.c — POST /v1/{client_id}/ingest, the webhook (seed §2, §3, §6).
 *
 * Order of decisions: malformed JSON → 400; Idempotency-Key seen before (same body → replay,
 * other body → 422); validation → 400 with every error (with the reference errors of the sales
 * valid on their own, which the writer checks in a savepoint it undoes); then the writer applies
 * events, customers, sales in the request's savepoint inside a group commit: reference errors →
 * 400, existing invoice numbers → 409, both undoing the whole request. The 202 is sent only after
 * the commit returned, i.e. after fsync.
 *
 * Idempotency: the first answer — 202, 400 or 409 — is stored under the key in the same
 * transaction as the request's records (for a refusal, right after its savepoint is undone), so
 * a replay returns it byte for byte. Malformed JSON and 500s are not stored: the first can't be
 * matched to anything and the second must stay retryable. Two requests racing with one key: the
 * store refuses the second entry (-EEXIST), that request is undone and answered from the first
 * one's stored answer. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/ingest_answer.h"
#include "base/log.h"
#include "core/alerts.h"
#include "core/ingest.h"
#include "core/quality.h"
#include "core/metrics.h"
#include "core/outbox.h"

#define IDEM_TTL_USEC (24LL * 3600 * 1000000)

struct ingest {
    struct sd_write_job job;
    struct sd_req *req;
    struct sd_batch batch;
    struct sd_issues warnings;
    struct sd_apply_result res;
    const char *idem_key;
    /* Refused by validation, but some sales are valid on their own: batch holds the records
     * valid on their own, applied only to find reference errors and always undone. */
    bool refused;
    struct sd_issues field_errors;
    char body_hash[65];
    bool idem_raced;
    int answer_status; /* with answer: the final answer, fixed before the commit */
    char *answer;
    int result;
    int64_t rows; /* records in the body, for the alerts' ingest window */
};

static void ingest_cleanup(struct sd_req *req)
{
    struct ingest *in = req->state;
    if (in->rows > 0 && in->answer_status > 0) {
        /* stored whole (202) or refused whole (400): the rejected share of the window */
        sd_alerts_ingest(req->hub, req->who.tenant_id, req->who.env, in->answer_status, in->rows);
    }
    sd_batch_release(&in->batch);
    sd_issues_release(&in->warnings);
    sd_issues_release(&in->field_errors);
    sd_apply_result_release(&in->res);
    free(in->answer);
    free(in);
    req->state = NULL;
}

/* Replay or refuse from a stored idempotency entry. Returns true if answered. */
static bool answer_from_idem(struct sd_req *req, const char *key, const char *body_hash)
{
    struct sd_idem_entry e = {0};
    int r = sd_store_idem_get(req->hub->store, req->who.tenant_id, req->who.env, key, &e);
    if (r == -ENOENT) {
        return false;
    }
    if (r < 0) {
        sd_api_reply_store_error(req, r);
        return true;
    }
    bool answered = false;
    if (e.created_usec >= sd_now_usec() - IDEM_TTL_USEC) {
        answered = true;
        if (strcmp(e.body_hash, body_hash) == 0) {
            sd_req_reply_text(req, e.status, "application/json", e.response);
            sd_req_add_header(req, "Idempotent-Replayed", "true");
        } else {
            sd_req_reply_error(req, 422, "idempotency_key_reused",
                               "Idempotency-Key '%s' was used with a different body", key);
        }
    }
    free(e.response);
    return answered;
}

static void append_issues(json_t *arr, const struct sd_issues *l)
{
    for (size_t i = 0; i < l->n && json_array_size(arr) < SD_MAX_ISSUES; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "pointer", sd_json_text(l->items[i].pointer));
        json_object_set_new(o, "message", sd_json_text(l->items[i].message));
        json_array_append_new(arr, o);
    }
}

/* Never fails: a body that could not be built (a bug, not client data: quoted text goes in
 * through sd_json_text) becomes a fixed JSON error text instead of a crash. */
static char *dump(json_t *o)
{
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!text) {
        sd_log(SD_LOG_ERROR, "ingest answer could not be built", NULL);
        text = sd_strdup("{\"error\":\"internal_error\",\"message\":\"the answer could not be "
                         "built\"}");
    }
    return text;
}

/* The answer for the writer's outcome (202, 400 reference errors, 409). Built on an HTTP thread,
 * unless it must be stored as the idempotent answer in the same transaction. */
static void build_answer(struct ingest *in)
{
    if (in->res.outcome == SD_APPLY_OK && in->warnings.n == 0 && in->res.warnings.n == 0 &&
        (in->answer = sd_ingest_accepted_text(in->req->request_id, in->batch.n_events,
                                              in->batch.n_customers, in->batch.n_sales))) {
        /* the common answer, same bytes as below, without a jansson object */
    } else if (in->res.outcome == SD_APPLY_OK) {
        json_t *warnings = json_array();
        append_issues(warnings, &in->warnings);
        append_issues(warnings, &in->res.warnings);
        in->answer = dump(json_pack("{s:s, s:s, s:{s:I, s:I, s:I}, s:o}", "status", "queued",
                                    "request_id", in->req->request_id, "accepted", "events",
                                    (json_int_t)in->batch.n_events, "customers",
                                    (json_int_t)in->batch.n_customers, "sales",
                                    (json_int_t)in->batch.n_sales, "warnings", warnings));
    } else if (in->res.outcome == SD_APPLY_DUPLICATE) {
        json_t *inv = json_array();
        for (size_t i = 0; i < in->res.n_duplicate_invoices; i++) {
            json_array_append_new(inv, json_string(in->res.duplicate_invoices[i]));
        }
        in->answer =
            dump(json_pack("{s:s, s:s, s:o}", "error", "duplicate_invoice_number", "message",
                           "these invoice numbers already exist in this environment; "
                           "nothing from the request was stored (use PUT "
                           "/v1/{client_id}/sales/{invoice_number} to update)",
                           "invoice_numbers", inv));
    } else {
        in->answer = dump(sd_api_validation_body(&in->res.errors));
    }
    in->answer_status = sd_ingest_status(in->res.outcome, false);
}

/* The data-quality counts of the writer's outcome: records stored, or what refused them (field
 * errors found before the writer are counted where they are found). */
static void count_quality(struct ingest *in)
{
    struct sd_quality *q = in->req->hub->quality;
    int64_t t = in->req->who.tenant_id;
    enum sd_env env = in->req->who.env;
    if (in->res.outcome == SD_APPLY_OK && in->answer_status == 202) {
        sd_quality_accepted(q, t, env, "ingest", SD_KIND_EVENT, in->batch.n_events);
        sd_quality_accepted(q, t, env, "ingest", SD_KIND_CUSTOMER, in->batch.n_customers);
        sd_quality_accepted(q, t, env, "ingest", SD_KIND_SALE, in->batch.n_sales);
    } else if (in->res.outcome == SD_APPLY_DUPLICATE) {
        struct sd_issues dup;
        sd_issues_init(&dup, SD_MAX_ISSUES);
        for (size_t i = 0; i < in->res.n_duplicate_invoices; i++) {
            sd_issues_add(&dup, "/sales/0/invoice_number", "duplicate invoice number");
        }
        sd_quality_rejected(q, t, env, "ingest", NULL, &dup);
        sd_issues_release(&dup);
    } else {
        sd_quality_rejected(q, t, env, "ingest", NULL, &in->res.errors);
    }
}

/* Store the fixed answer under the Idempotency-Key; a concurrent first use wins. */
static int put_idem(struct sd_store_handle *st, struct ingest *in)
{
    struct sd_idem_entry e = {
        .status = in->answer_status, .response = in->answer, .created_usec = sd_now_usec()};
    memcpy(e.body_hash, in->body_hash, sizeof(e.body_hash));
    int r = sd_store_idem_put(st, in->req->who.tenant_id, in->req->who.env, in->idem_key, &e);
    if (r == -EEXIST) {
        in->idem_raced = true;
        return 1;
    }
    return r;
}

/* A refused body's answer: its field errors, then the reference errors the store found. */
static void refusal_errors(struct ingest *in)
{
    struct sd_issues all;
    sd_issues_init(&all, SD_MAX_ISSUES);
    const struct sd_issues *parts[2] = {&in->field_errors, &in->res.errors};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < parts[k]->n; i++) {
            sd_issues_add(&all, parts[k]->items[i].pointer, "%s", parts[k]->items[i].message);
        }
        all.total += parts[k]->total - parts[k]->n;
    }
    sd_issues_release(&in->res.errors);
    in->res.errors = all;
    in->res.outcome = SD_APPLY_REFUSED;
}

static int ingest_run(struct sd_store_handle *st, struct sd_write_job *job)
{
    struct ingest *in = job->arg;
    struct sd_req *req = in->req;
    int r = sd_ingest_apply(st, req->who.tenant_id, req->who.env, &in->batch, &in->res);
    if (r < 0) {
        return r;
    }
    if (in->refused) {
        refusal_errors(in);
    }
    if (in->idem_key) {
        build_answer(in);
    }
    if (in->res.outcome != SD_APPLY_OK) {
        return 1; /* undone; after_undo records the idempotent answer */
    }
    return in->idem_key ? put_idem(st, in) : 0;
}

static int ingest_after_undo(struct sd_store_handle *st, struct sd_write_job *job)
{
    struct ingest *in = job->arg;
    if (!in->idem_key || in->idem_raced) {
        return 0;
    }
    return put_idem(st, in);
}

/* A request refused by validation, with an Idempotency-Key: only its answer is stored. */
static int ingest_refusal_run(struct sd_store_handle *st, struct sd_write_job *job)
{
    return put_idem(st, job->arg);
}

static void ingest_done(struct sd_write_job *job, int result)
{
    struct ingest *in = job->arg;
    in->result = result;
    sd_req_resume(in->req);
}

static int ingest_resume(struct sd_req *req)
{
    struct ingest *in = req->state;
    if (in->result < 0 && in->refused) {
        /* The reference check failed; the body is refused for its field errors anyway. */
        in->answer_status = 400;
        sd_api_reply_validation(req, &in->field_errors);
        return SD_REQ_DONE;
    }
    if (in->result < 0) {
        in->answer_status = 0; /* nothing was judged: not a rejection */
        sd_api_reply_store_error(req, in->result);
        return SD_REQ_DONE;
    }
    if (in->idem_raced) {
        in->answer_status = 0; /* another request's answer: its rows are counted there */
        if (!answer_from_idem(req, in->idem_key, in->body_hash)) {
            sd_api_reply_store_error(req, -EIO);
        }
        return SD_REQ_DONE;
    }
    if (!in->answer) {
        build_answer(in);
    }
    if (in->answer_status == 202) {
        sd_metrics_records(SD_KIND_EVENT, in->batch.n_events);
        sd_metrics_records(SD_KIND_CUSTOMER, in->batch.n_customers);
        sd_metrics_records(SD_KIND_SALE, in->batch.n_sales);
    }
    count_quality(in);
    sd_req_reply_text(req, in->answer_status, "application/json", in->answer);
    return SD_REQ_DONE;
}

int sd_api_ingest(struct sd_req *req)
{
    json_t *body = sd_api_parse_body(req);
    if (!body) {
        return SD_REQ_DONE;
    }
    struct ingest *in = sd_calloc(1, sizeof(*in));
    in->req = req;
    req->state = in;
    req->cleanup = ingest_cleanup;
    sd_issues_init(&in->warnings, SD_MAX_ISSUES);
    sd_apply_result_init(&in->res);
    in->job.done = ingest_done;
    in->job.arg = in;
    req->on_resume = ingest_resume;

    if (!sd_api_idempotency_key(req, &in->idem_key)) {
        json_decref(body);
        return SD_REQ_DONE;
    }
    if (in->idem_key) {
        sd_sha256_hex(req->body.data, req->body.len, in->body_hash);
        if (answer_from_idem(req, in->idem_key, in->body_hash)) {
            json_decref(body);
            return SD_REQ_DONE;
        }
    }

    static const char *const arrays[] = {"events", "customers", "sales"};
    for (size_t k = 0; k < 3; k++) {
        in->rows += (int64_t)json_array_size(json_object_get(body, arrays[k]));
    }
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    int r = sd_validate_ingest(body, &in->batch, &errors, &in->warnings);
    if ((r < 0 || errors.total > 0) && sd_validate_ingest_checkable(body, &in->batch) > 0) {
        /* Report reference errors with the field errors: the writer checks the sales that
         * are valid on their own and undoes them (ingest_run → refusal_errors). */
        json_decref(body);
        in->refused = true;
        in->field_errors = errors;
        in->job.run = ingest_run;
        in->job.after_undo = ingest_after_undo;
        return sd_req_submit(req, &in->job);
    }
    json_decref(body);
    if (r < 0 || errors.total > 0) {
        sd_quality_rejected(req->hub->quality, req->who.tenant_id, req->who.env, "ingest", NULL,
                            &errors);
        if (!in->idem_key) {
            in->answer_status = 400;
            sd_api_reply_validation(req, &errors);
            sd_issues_release(&errors);
            return SD_REQ_DONE;
        }
        in->answer_status = 400;
        in->answer = dump(sd_api_validation_body(&errors));
        sd_issues_release(&errors);
        in->job.run = ingest_refusal_run;
        return sd_req_submit(req, &in->job);
    }
    sd_issues_release(&errors);
    in->job.run = ingest_run;
    in->job.after_undo = ingest_after_undo;
    return sd_req_submit(req, &in->job);
}
