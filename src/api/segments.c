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
 * Member pages read a snapshot of the members (core/segments.h): POST and PUT answer the
 * snapshot_id of the count they computed; a page without one (no snapshot parameter, no
 * cursor naming one) computes a new snapshot first. The member cursor is "s1." + the snapshot
 * id in hex + "." + the last profile id in hex: opaque to clients, checked strictly when it
 * comes back. The earlier "p1." + last id cursor is still accepted (it starts a new snapshot
 * after that id). An unknown or expired snapshot is 410 snapshot_expired. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "base/utf8.h"
#include "core/connector_config.h"
#include "core/segment_jobs.h"
#include "core/segments.h"
#include "store/observe.h"

#define CURSOR_PREFIX "p1."
#define SNAP_CURSOR_PREFIX "s1."
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
    case -ESTALE:
        sd_req_reply_error(req, 410, "snapshot_expired",
                           "this snapshot of the segment's members is unknown or expired "
                           "(snapshots live %lld minutes); start again without cursor and "
                           "snapshot",
                           (long long)(SD_SEGMENT_SNAPSHOT_TTL_USEC / 60000000));
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
    int64_t snapshot_id;
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
            r = sd_segment_members_snapshot(c->hub, seg, c->snapshot_id, c->after, c->limit, budget,
                                            &c->page);
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
    struct sd_segment_push *p = NULL;
    size_t n = 0;
    if (r == 0) {
        r = sd_store_observe_segment_pushes(req->hub->store, req->who.tenant_id, req->who.env,
                                            seg->id, &p, &n);
    }
    if (r < 0) {
        reply_error(req, r, NULL);
    } else {
        /* where the segment went: each target's newest delivery of it */
        json_t *view = sd_segment_view(seg), *to = json_array();
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(to, json_pack("{s:s, s:s, s:s, s:o}", "connector_id",
                                                p[i].connector_id, "delivery_id",
                                                p[i].delivery_id, "state", p[i].state, "at",
                                                sd_json_time(p[i].updated_usec)));
        }
        json_object_set_new(view, "pushed_to", to);
        sd_req_reply_json(req, 200, view);
    }
    free(p);
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

/* Hex digits c[0..n) (1..16 of them, lowercase) as a non-negative int64. */
static int parse_hex(const char *c, size_t n, int64_t *ret)
{
    if (n < 1 || n > 16) {
        return -EINVAL;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int d;
        if (c[i] >= '0' && c[i] <= '9') {
            d = c[i] - '0';
        } else if (c[i] >= 'a' && c[i] <= 'f') {
            d = c[i] - 'a' + 10;
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

/* A cursor: "p1.<after>" (no snapshot) or "s1.<snapshot>.<after>" (snapshot > 0). */
static int parse_cursor(const char *c, int64_t *ret_snapshot, int64_t *ret_after)
{
    *ret_snapshot = 0;
    *ret_after = 0;
    if (!c || !*c) {
        return 0;
    }
    if (strncmp(c, CURSOR_PREFIX, strlen(CURSOR_PREFIX)) == 0) {
        c += strlen(CURSOR_PREFIX);
        return parse_hex(c, strlen(c), ret_after);
    }
    if (strncmp(c, SNAP_CURSOR_PREFIX, strlen(SNAP_CURSOR_PREFIX)) != 0) {
        return -EINVAL;
    }
    c += strlen(SNAP_CURSOR_PREFIX);
    const char *dot = strchr(c, '.');
    if (!dot || parse_hex(c, (size_t)(dot - c), ret_snapshot) < 0 || *ret_snapshot == 0) {
        return -EINVAL;
    }
    return parse_hex(dot + 1, strlen(dot + 1), ret_after);
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
    int64_t snapshot = 0, named = 0;
    if (parse_cursor(sd_req_query(req, "cursor"), &snapshot, &after) < 0) {
        sd_req_reply_error(req, 400, "invalid_parameter",
                           "cursor is not a cursor this hub returned");
        return SD_REQ_DONE;
    }
    const char *sn = sd_req_query(req, "snapshot");
    if (sn &&
        (strlen(sn) != SD_SNAPSHOT_ID_HEX || parse_hex(sn, strlen(sn), &named) < 0 || named == 0)) {
        sd_req_reply_error(req, 400, "invalid_parameter",
                           "snapshot must be a snapshot_id this hub returned (%d hex digits)",
                           SD_SNAPSHOT_ID_HEX);
        return SD_REQ_DONE;
    }
    if (sn && snapshot != 0 && named != snapshot) {
        sd_req_reply_error(req, 400, "invalid_parameter",
                           "snapshot and cursor name different snapshots");
        return SD_REQ_DONE;
    }
    struct call *c = sd_calloc(1, sizeof(*c));
    c->kind = CALL_MEMBERS;
    c->segment_id = sd_strdup(req->params[1]);
    c->after = after;
    c->snapshot_id = snapshot ? snapshot : named;
    c->limit = (size_t)limit;
    return submit(req, c);
}

/* s as a JSON string: quotes, backslashes and control characters escaped, bytes that are not
 * UTF-8 replaced (U+FFFD) as the JSON builder's answers do. */
static void put_json_string(struct sd_buf *b, const char *s)
{
    char *fixed = NULL;
    if (!sd_utf8_valid(s, strlen(s))) {
        fixed = sd_utf8_repair(s, strlen(s));
        s = fixed;
    }
    sd_buf_puts(b, "\"");
    const char *run = s;
    for (const char *p = s;; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch != 0 && ch != '"' && ch != '\\' && ch >= 0x20) {
            continue;
        }
        sd_buf_append(b, run, (size_t)(p - run));
        if (ch == 0) {
            break;
        }
        if (ch == '"' || ch == '\\') {
            char esc[2] = {'\\', (char)ch};
            sd_buf_append(b, esc, 2);
        } else {
            sd_buf_printf(b, "\\u%04x", ch);
        }
        run = p + 1;
    }
    sd_buf_puts(b, "\"");
    free(fixed);
}

/* The page as JSON text, written directly: a 10,000-member page as jansson values (three
 * objects a member, built, serialized and freed) cost about as much as reading it from the
 * store. The same members, keys and order as the other answers' builder writes. */
static void reply_members(struct sd_req *req, const struct sd_member_page *page)
{
    struct sd_buf b;
    sd_buf_init(&b);
    sd_buf_puts(&b, "{\"data\":[");
    for (size_t i = 0; i < page->n; i++) {
        const struct sd_member *m = &page->v[i];
        sd_buf_printf(&b, "%s{\"profile_id\":%" PRId64 ",\"email\":", i ? "," : "", m->profile_id);
        if (m->email) {
            put_json_string(&b, m->email);
        } else {
            sd_buf_puts(&b, "null");
        }
        sd_buf_puts(&b, ",\"source_ids\":[");
        for (size_t j = 0; j < m->n_sources; j++) {
            sd_buf_puts(&b, j ? ",{\"source\":" : "{\"source\":");
            put_json_string(&b, m->sources[j].source);
            sd_buf_puts(&b, ",\"customer_id\":");
            put_json_string(&b, m->sources[j].customer_id);
            sd_buf_puts(&b, "}");
        }
        sd_buf_puts(&b, "]}");
    }
    char cursor[64], snap[SD_SNAPSHOT_ID_HEX + 1];
    snprintf(snap, sizeof(snap), "%016" PRIx64, (uint64_t)page->snapshot_id);
    snprintf(cursor, sizeof(cursor), SNAP_CURSOR_PREFIX "%s.%" PRIx64, snap,
             (uint64_t)page->next_after);
    sd_buf_printf(&b,
                  "],\"next_cursor\":\"%s\",\"has_more\":%s,\"snapshot_id\":\"%s\","
                  "\"member_count\":%" PRId64 "}",
                  cursor, page->has_more ? "true" : "false", snap, page->member_count);
    sd_req_reply_text(req, 200, "application/json", b.data);
    sd_buf_release(&b);
}
