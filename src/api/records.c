/* records.c — reading records back (seed §3, REST pull side) and replacing a sale.
 *
 * Lists are in change order: every insert and update gets a new store-wide sequence number, and
 * the cursor is the last sequence number a client has seen ("s1." + hex), so following
 * next_cursor later returns exactly what was created or changed since. An empty page returns
 * the cursor it was given, so a client can poll with it forever. Documents are stored as JSON
 * text and spliced into the answer without re-parsing. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/deletions.h"
#include "core/ingest.h"
#include "core/quality.h"

#define CURSOR_PREFIX "s1."

static int parse_cursor(const char *c, int64_t *ret)
{
    if (!c || !*c) {
        *ret = 0;
        return 0;
    }
    if (strncmp(c, CURSOR_PREFIX, strlen(CURSOR_PREFIX)) != 0) {
        return -EINVAL;
    }
    c += strlen(CURSOR_PREFIX);
    if (!*c || strlen(c) > 16) {
        return -EINVAL;
    }
    uint64_t v = 0;
    for (; *c; c++) {
        int d;
        if (*c >= '0' && *c <= '9') {
            d = *c - '0';
        } else if (*c >= 'a' && *c <= 'f') {
            d = *c - 'a' + 10;
        } else {
            return -EINVAL;
        }
        v = v * 16 + (uint64_t)d;
    }
    if (v > INT64_MAX) {
        return -EINVAL;
    }
    *ret = (int64_t)v;
    return 0;
}

static int list(struct sd_req *req, enum sd_kind kind)
{
    int64_t limit = 100, after = 0;
    const char *l = sd_req_query(req, "limit");
    if (l && (sd_parse_int64(l, false, &limit) < 0 || limit < 1 || limit > 1000)) {
        sd_req_reply_error(req, 400, "invalid_parameter",
                           "limit must be an integer from 1 to 1000");
        return SD_REQ_DONE;
    }
    if (parse_cursor(sd_req_query(req, "cursor"), &after) < 0) {
        sd_req_reply_error(req, 400, "invalid_parameter",
                           "cursor is not a cursor this hub returned");
        return SD_REQ_DONE;
    }
    struct sd_record_page page = {0};
    int r = sd_store_list_records(req->hub->store, kind, req->who.tenant_id, req->who.env, after,
                                  (size_t)limit, &page);
    if (r < 0) {
        sd_api_reply_store_error(req, r);
        return SD_REQ_DONE;
    }
    struct sd_buf b;
    sd_buf_init(&b);
    sd_buf_puts(&b, "{\"data\":[");
    for (size_t i = 0; i < page.n; i++) {
        if (i) {
            sd_buf_puts(&b, ",");
        }
        sd_buf_puts(&b, page.docs[i]);
    }
    int64_t last = page.n ? page.seqs[page.n - 1] : after;
    sd_buf_printf(&b, "],\"next_cursor\":\"" CURSOR_PREFIX "%" PRIx64 "\",\"has_more\":%s}",
                  (uint64_t)last, page.has_more ? "true" : "false");
    sd_record_page_release(&page);
    free(req->resp_body);
    req->status = 200;
    req->content_type = "application/json";
    req->resp_body = sd_buf_steal(&b);
    return SD_REQ_DONE;
}

int sd_api_events_list(struct sd_req *req)
{
    return list(req, SD_KIND_EVENT);
}

int sd_api_customers_list(struct sd_req *req)
{
    return list(req, SD_KIND_CUSTOMER);
}

int sd_api_sales_list(struct sd_req *req)
{
    return list(req, SD_KIND_SALE);
}

static int get_one(struct sd_req *req, enum sd_kind kind, const char *what)
{
    char *doc = NULL;
    int r = sd_store_get_record(req->hub->store, kind, req->who.tenant_id, req->who.env,
                                req->params[1], &doc);
    if (r == -ENOENT) {
        sd_req_reply_error(req, 404, "not_found", "no %s '%s' in %s", what, req->params[1],
                           sd_env_name(req->who.env));
        return SD_REQ_DONE;
    }
    if (r < 0) {
        sd_api_reply_store_error(req, r);
        return SD_REQ_DONE;
    }
    free(req->resp_body);
    req->status = 200;
    req->content_type = "application/json";
    req->resp_body = doc;
    return SD_REQ_DONE;
}

int sd_api_event_get(struct sd_req *req)
{
    return get_one(req, SD_KIND_EVENT, "event");
}

/* Customers are source records: one id may be held by several sources, each its own record.
 * ?source= names one; without it an id held by several sources is ambiguous (409 listing them). */
int sd_api_customer_get(struct sd_req *req)
{
    const char *source = sd_req_query(req, "source");
    if (source && !*source) {
        sd_req_reply_error(req, 400, "invalid_parameter", "source must not be empty");
        return SD_REQ_DONE;
    }
    const char *cid = req->params[1];
    char *doc = NULL, **sources = NULL;
    size_t n = 0;
    int r = sd_store_get_customer(req->hub->store, req->who.tenant_id, req->who.env, cid, source,
                                  &doc, &sources, &n);
    if (r == -ENOENT && source) {
        sd_req_reply_error(req, 404, "not_found", "no customer '%s' from source '%s' in %s", cid,
                           source, sd_env_name(req->who.env));
    } else if (r == -ENOENT) {
        sd_req_reply_error(req, 404, "not_found", "no customer '%s' in %s", cid,
                           sd_env_name(req->who.env));
    } else if (r == -ENOTUNIQ) {
        json_t *list = json_array();
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(list, sd_json_text(sources[i]));
            free(sources[i]);
        }
        free(sources);
        json_t *msg = sd_json_text(cid);
        char *m = sd_asprintf("customer '%s' exists in %zu sources in %s; name one with ?source=",
                              json_string_value(msg), n, sd_env_name(req->who.env));
        json_decref(msg);
        sd_req_reply_json(req, 409,
                          json_pack("{s:s, s:s, s:o}", "error", "ambiguous_customer", "message", m,
                                    "sources", list));
        free(m);
    } else if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else {
        free(req->resp_body);
        req->status = 200;
        req->content_type = "application/json";
        req->resp_body = doc;
    }
    return SD_REQ_DONE;
}

int sd_api_sale_get(struct sd_req *req)
{
    return get_one(req, SD_KIND_SALE, "sale");
}

/* ---- DELETE /v1/{client_id}/events/{id}, /sales/{id} ----------------------------------------- */

/* An event's aliases go with it and its sales stay (delete them first if they must go). The
 * deletion is durable before the answer; deleting what is not there is 404. */
static int delete_one(struct sd_req *req, enum sd_kind kind, const char *what)
{
    struct sd_deletion d = {.kind = kind, .id = req->params[1], .reason = SD_TOMBSTONE_DELETED};
    struct sd_deletion_outcome out = {0};
    int r = sd_hub_delete_records(req->hub, req->who.tenant_id, req->who.env, &d, 1, NULL, &out);
    if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else if (out.n_deleted == 0) {
        sd_req_reply_error(req, 404, "not_found", "no %s '%s' in %s", what, req->params[1],
                           sd_env_name(req->who.env));
    } else {
        sd_req_reply_json(req, 200,
                          json_pack("{s:b, s:o}", "deleted", 1, "id", sd_json_text(d.id)));
    }
    return SD_REQ_DONE;
}

int sd_api_event_delete(struct sd_req *req)
{
    return delete_one(req, SD_KIND_EVENT, "event");
}

int sd_api_sale_delete(struct sd_req *req)
{
    return delete_one(req, SD_KIND_SALE, "sale");
}

/* ---- PUT /v1/{client_id}/sales/{invoice_number} -------------------------------------------- */

struct sale_put {
    struct sd_write_job job;
    struct sd_req *req;
    struct sd_sale_rec sale;
    struct sd_issues warnings;
    struct sd_apply_result res;
    int result;
};

static void sale_put_cleanup(struct sd_req *req)
{
    struct sale_put *sp = req->state;
    sd_sale_rec_release(&sp->sale);
    sd_issues_release(&sp->warnings);
    sd_apply_result_release(&sp->res);
    free(sp);
    req->state = NULL;
}

static int sale_put_run(struct sd_store_handle *st, struct sd_write_job *job)
{
    struct sale_put *sp = job->arg;
    int r =
        sd_ingest_replace_sale(st, sp->req->who.tenant_id, sp->req->who.env, &sp->sale, &sp->res);
    if (r < 0) {
        return r;
    }
    return sp->res.outcome == SD_APPLY_OK ? 0 : 1;
}

static void sale_put_done(struct sd_write_job *job, int result)
{
    struct sale_put *sp = job->arg;
    sp->result = result;
    sd_req_resume(sp->req);
}

static int sale_put_resume(struct sd_req *req)
{
    struct sale_put *sp = req->state;
    if (sp->result < 0) {
        sd_api_reply_store_error(req, sp->result);
    } else if (sp->res.outcome == SD_APPLY_NOT_FOUND) {
        sd_req_reply_error(req, 404, "not_found",
                           "no sale '%s' in %s; create it with POST /v1/{client_id}/ingest",
                           req->params[1], sd_env_name(req->who.env));
    } else if (sp->res.outcome != SD_APPLY_OK) {
        sd_quality_rejected(req->hub->quality, req->who.tenant_id, req->who.env, "sale_put",
                            "/sales/0", &sp->res.errors);
        sd_api_reply_validation(req, &sp->res.errors);
    } else {
        sd_quality_accepted(req->hub->quality, req->who.tenant_id, req->who.env, "sale_put",
                            SD_KIND_SALE, 1);
        json_t *sale = json_loads(sp->sale.doc, 0, NULL);
        sd_req_reply_json(req, 200,
                          json_pack("{s:s, s:s, s:o, s:o}", "status", "updated", "request_id",
                                    req->request_id, "sale", sale ? sale : json_null(), "warnings",
                                    sd_issues_to_json(&sp->warnings)));
    }
    return SD_REQ_DONE;
}

int sd_api_sale_put(struct sd_req *req)
{
    json_t *body = sd_api_parse_body(req);
    if (!body) {
        return SD_REQ_DONE;
    }
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    if (!json_is_object(body)) {
        sd_issues_add(&errors, "", "must be a JSON object with the sale's fields");
    } else {
        json_t *inv = json_object_get(body, "invoice_number");
        if (!inv) {
            json_object_set_new(body, "invoice_number", json_string(req->params[1]));
        } else if (json_is_string(inv) && strcmp(json_string_value(inv), req->params[1]) != 0) {
            sd_issues_add(&errors, "/invoice_number",
                          "must match the invoice number in the URL ('%s')", req->params[1]);
        }
    }
    struct sale_put *sp = sd_calloc(1, sizeof(*sp));
    sp->req = req;
    req->state = sp;
    req->cleanup = sale_put_cleanup;
    sd_issues_init(&sp->warnings, SD_MAX_ISSUES);
    sd_apply_result_init(&sp->res);
    if (errors.total == 0) {
        sd_validate_sale(body, "", &sp->sale, &errors, &sp->warnings);
    }
    json_decref(body);
    if (errors.total > 0) {
        sd_quality_rejected(req->hub->quality, req->who.tenant_id, req->who.env, "sale_put",
                            "/sales/0", &errors);
        sd_api_reply_validation(req, &errors);
        sd_issues_release(&errors);
        return SD_REQ_DONE;
    }
    sd_issues_release(&errors);
    sp->job.run = sale_put_run;
    sp->job.done = sale_put_done;
    sp->job.arg = sp;
    req->on_resume = sale_put_resume;
    return sd_req_submit(req, &sp->job);
}
