/* segments.c — the segments resource (issue #4 §2): /v1/{client_id}/segments[/{id}[/members]].
 *
 * Tenant routes: the key's tenant and environment scope everything, so a TEST key never sees or
 * counts PROD data. What a valid segment is, how members are counted and paged, lives in
 * core/segments.c; these handlers translate HTTP.
 *
 * Computing members (POST and PUT count them, /members pages them) never runs on an HTTP
 * thread: the handler checks what it can at once (body, limit, cursor: a 400 costs no queue
 * slot), suspends the connection and queues a `struct call` on the segment workers
 * (core/segment_jobs.h); the worker computes within the budget and resumes the connection, and
 * on_resume answers on an HTTP thread. A full queue or a busy tenant is answered at once (503 /
 * 429 with Retry-After), so the HTTP threads only ever wait for microseconds of work here. List,
 * get and delete read or write one row and stay on the HTTP thread.
 *
 * The member cursor is "p1." + the last profile id in hex: opaque to clients, stable across
 * calls (members are ordered by profile id), and checked strictly when it comes back. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/segment_jobs.h"
#include "core/segments.h"

#define CURSOR_PREFIX "p1."
#define MEMBERS_DEFAULT 100

static void reply_error(struct sd_req *req, int r, const struct sd_issues *errors)
{
    switch (r) {
    case -EINVAL:
        if (errors && errors->total > 0) {
            sd_api_reply_validation(req, errors);
        } else {
            sd_req_reply_error(req, 422, "invalid_rule",
                               "the stored rule of this segment is not valid any more; replace "
                               "it with PUT");
        }
        return;
    case -ENOENT:
        sd_req_reply_error(req, 404, "not_found", "no segment '%s' in %s",
                           req->n_params > 1 ? req->params[1] : "", sd_env_name(req->who.env));
        return;
    case -EDQUOT:
        sd_req_reply_error(req, 409, "segment_limit_reached",
                           "this environment already has %d segments; delete one first",
                           SD_SEGMENTS_MAX);
        return;
    case -ETIME: {
        struct sd_seg_budget b = sd_segment_jobs_budget(req->hub->segment_jobs);
        sd_req_reply_error(req, 503, "segment_too_slow",
                           "computing the members needed more than this hub's budget of %lld s "
                           "of CPU time (or %lld s on the clock); narrow the rule (e.g. filter "
                           "by event or purchase date, fewer count/spend rules)",
                           (long long)(b.cpu_usec / 1000000), (long long)(b.wall_usec / 1000000));
        return;
    }
    default: sd_api_reply_store_error(req, r);
    }
}

/* ---- computations on the segment workers ------------------------------------------------------
 */

enum call_kind { CALL_CREATE, CALL_UPDATE, CALL_MEMBERS };

/* One computation, from the handler through a worker back to on_resume (req->state). The
 * worker reads only the inputs and writes only the results; the connection is suspended
 * meanwhile, so nothing else touches it. */
struct call {
    struct sd_segment_job job; /* first */
    struct sd_req *req;
    struct sd_hub *hub;
    enum call_kind kind;
    enum sd_env env;
    json_t *body; /* create, update (NULL: recount) */
    char *segment_id;
    int64_t after;
    size_t limit;
    /* results */
    int r;
    unsigned retry_after;
    struct sd_segment *seg;
    struct sd_member_page page;
    struct sd_issues errors;
};

static void call_cleanup(struct sd_req *req)
{
    struct call *c = req->state;
    if (!c) {
        return;
    }
    json_decref(c->body);
    free(c->segment_id);
    sd_segment_free(c->seg);
    sd_member_page_release(&c->page);
    sd_issues_release(&c->errors);
    free(c);
    req->state = NULL;
}

static int call_run(struct sd_segment_job *job, const struct sd_seg_budget *budget)
{
    struct call *c = (struct call *)job;
    switch (c->kind) {
    case CALL_CREATE:
        return sd_segment_create(c->hub, job->tenant_id, c->env, c->body, budget, &c->seg,
                                 &c->errors);
    case CALL_UPDATE:
        return sd_segment_update(c->hub, job->tenant_id, c->env, c->segment_id, c->body, budget,
                                 &c->seg, &c->errors);
    case CALL_MEMBERS: {
        struct sd_segment *seg = NULL;
        int r = sd_segment_load(c->hub, job->tenant_id, c->env, c->segment_id, &seg);
        if (r == 0) {
            r = sd_segment_members_within(c->hub, seg, c->after, c->limit, budget, &c->page);
        }
        sd_segment_free(seg);
        return r;
    }
    }
    return -EINVAL;
}

static void call_done(struct sd_segment_job *job, int r)
{
    struct call *c = (struct call *)job;
    c->r = r;
    sd_req_resume(c->req);
}

static int on_resume(struct sd_req *req);

/* Queue c (owned by req from here) and suspend; a refusal is answered on resume too. */
static int submit(struct sd_req *req, struct call *c)
{
    c->req = req;
    c->hub = req->hub;
    c->env = req->who.env;
    c->job.tenant_id = req->who.tenant_id;
    c->job.run = call_run;
    c->job.done = call_done;
    sd_issues_init(&c->errors, SD_MAX_ISSUES);
    req->state = c;
    req->cleanup = call_cleanup;
    req->on_resume = on_resume;
    int rs = sd_req_suspend(req);
    int r = sd_segment_jobs_submit(req->hub->segment_jobs, &c->job, &c->retry_after);
    if (r < 0) {
        c->r = r;
        sd_req_resume(req);
    }
    return rs;
}

static void reply_refused(struct sd_req *req, const struct call *c)
{
    sd_req_add_header(req, "Retry-After", "%u", c->retry_after);
    switch (c->r) {
    case -EBUSY:
        sd_req_reply_error(req, 429, "too_many_segment_computations",
                           "this tenant already has as many segment computations running or "
                           "waiting as the hub allows; retry after %u s",
                           c->retry_after);
        return;
    case -EAGAIN:
        sd_req_reply_error(req, 503, "segment_queue_full",
                           "the hub's segment computations are all taken; retry after %u s",
                           c->retry_after);
        return;
    default:
        sd_req_reply_error(req, 503, "shutting_down", "the hub is shutting down; retry after %u s",
                           c->retry_after);
    }
}

static void reply_members(struct sd_req *req, const struct sd_member_page *page);

static int on_resume(struct sd_req *req)
{
    struct call *c = req->state;
    int r = c->r;
    if (r == -EBUSY || r == -EAGAIN || r == -ESHUTDOWN || r == -ECANCELED) {
        if (r == -ECANCELED) {
            c->retry_after = 5;
        }
        reply_refused(req, c);
        return SD_REQ_DONE;
    }
    if (r < 0) {
        reply_error(req, r, &c->errors);
        return SD_REQ_DONE;
    }
    switch (c->kind) {
    case CALL_CREATE:
        sd_req_add_header(req, "Location", "/v1/%s/segments/%s", req->params[0], c->seg->id);
        sd_req_reply_json(req, 201, sd_segment_view(c->seg));
        break;
    case CALL_UPDATE: sd_req_reply_json(req, 200, sd_segment_view(c->seg)); break;
    case CALL_MEMBERS: reply_members(req, &c->page); break;
    }
    return SD_REQ_DONE;
}

/* Checks a segment body on the HTTP thread, so an invalid one never takes a queue slot. False
 * after answering 400 (the body is freed then). */
static bool body_checked(struct sd_req *req, json_t *body, bool create)
{
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    int r = sd_segment_check(body, create, &errors);
    if (r < 0) {
        reply_error(req, r, &errors);
        json_decref(body);
    }
    sd_issues_release(&errors);
    return r >= 0;
}

int sd_api_segment_create(struct sd_req *req)
{
    json_t *body = sd_api_parse_body(req);
    if (!body) {
        return SD_REQ_DONE;
    }
    if (!body_checked(req, body, true)) {
        return SD_REQ_DONE;
    }
    struct call *c = sd_calloc(1, sizeof(*c));
    c->kind = CALL_CREATE;
    c->body = body;
    return submit(req, c);
}

int sd_api_segments_list(struct sd_req *req)
{
    struct sd_segment **v = NULL;
    size_t n = 0;
    int r = sd_segment_list(req->hub, req->who.tenant_id, req->who.env, &v, &n);
    if (r < 0) {
        reply_error(req, r, NULL);
        return SD_REQ_DONE;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(arr, sd_segment_view(v[i]));
    }
    sd_segments_free(v, n);
    sd_req_reply_json(req, 200, json_pack("{s:o}", "data", arr));
    return SD_REQ_DONE;
}

int sd_api_segment_get(struct sd_req *req)
{
    struct sd_segment *seg = NULL;
    int r = sd_segment_load(req->hub, req->who.tenant_id, req->who.env, req->params[1], &seg);
    if (r < 0) {
        reply_error(req, r, NULL);
    } else {
        sd_req_reply_json(req, 200, sd_segment_view(seg));
    }
    sd_segment_free(seg);
    return SD_REQ_DONE;
}

int sd_api_segment_update(struct sd_req *req)
{
    json_t *body = NULL;
    if (req->body.len > 0) {
        body = sd_api_parse_body(req);
        if (!body) {
            return SD_REQ_DONE;
        }
    }
    if (body && !body_checked(req, body, false)) {
        return SD_REQ_DONE;
    }
    struct call *c = sd_calloc(1, sizeof(*c));
    c->kind = CALL_UPDATE;
    c->body = body;
    c->segment_id = sd_strdup(req->params[1]);
    return submit(req, c);
}

int sd_api_segment_delete(struct sd_req *req)
{
    int r = sd_segment_delete(req->hub, req->who.tenant_id, req->who.env, req->params[1]);
    if (r < 0) {
        reply_error(req, r, NULL);
    } else {
        sd_req_reply_text(req, 204, NULL, "");
    }
    return SD_REQ_DONE;
}

static int parse_cursor(const char *c, int64_t *ret)
{
    if (!c || !*c) {
        *ret = 0;
        return 0;
    }
    size_t pl = strlen(CURSOR_PREFIX);
    if (strncmp(c, CURSOR_PREFIX, pl) != 0 || !c[pl] || strlen(c + pl) > 16) {
        return -EINVAL;
    }
    uint64_t v = 0;
    for (c += pl; *c; c++) {
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

int sd_api_segment_members(struct sd_req *req)
{
    int64_t limit = MEMBERS_DEFAULT, after = 0;
    const char *l = sd_req_query(req, "limit");
    if (l &&
        (sd_parse_int64(l, false, &limit) < 0 || limit < 1 || limit > SD_SEGMENT_MEMBERS_MAX)) {
        sd_req_reply_error(req, 400, "invalid_parameter", "limit must be an integer from 1 to %d",
                           SD_SEGMENT_MEMBERS_MAX);
        return SD_REQ_DONE;
    }
    if (parse_cursor(sd_req_query(req, "cursor"), &after) < 0) {
        sd_req_reply_error(req, 400, "invalid_parameter",
                           "cursor is not a cursor this hub returned");
        return SD_REQ_DONE;
    }
    struct call *c = sd_calloc(1, sizeof(*c));
    c->kind = CALL_MEMBERS;
    c->segment_id = sd_strdup(req->params[1]);
    c->after = after;
    c->limit = (size_t)limit;
    return submit(req, c);
}

static void reply_members(struct sd_req *req, const struct sd_member_page *page)
{
    json_t *data = json_array();
    for (size_t i = 0; i < page->n; i++) {
        const struct sd_member *m = &page->v[i];
        json_t *ids = json_array();
        for (size_t j = 0; j < m->n_sources; j++) {
            json_array_append_new(ids, json_pack("{s:s, s:s}", "source", m->sources[j].source,
                                                 "customer_id", m->sources[j].customer_id));
        }
        json_array_append_new(
            data, json_pack("{s:I, s:o, s:o}", "profile_id", (json_int_t)m->profile_id, "email",
                            m->email ? json_string(m->email) : json_null(), "source_ids", ids));
    }
    char cursor[32];
    snprintf(cursor, sizeof(cursor), CURSOR_PREFIX "%" PRIx64, (uint64_t)page->next_after);
    sd_req_reply_json(req, 200,
                      json_pack("{s:o, s:s, s:b}", "data", data, "next_cursor", cursor, "has_more",
                                page->has_more));
}
