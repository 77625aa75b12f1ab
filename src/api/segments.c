/* segments.c — the segments resource (issue #4 §2): /v1/{client_id}/segments[/{id}[/members]].
 *
 * Tenant routes: the key's tenant and environment scope everything, so a TEST key never sees or
 * counts PROD data. What a valid segment is, how members are counted and paged, lives in
 * core/segments.c; these handlers translate HTTP. Counting runs synchronously on the HTTP
 * thread against a read connection of the store (it never blocks the writer); over millions of
 * sales it takes seconds, which these low-rate endpoints accept.
 *
 * The member cursor is "p1." + the last profile id in hex: opaque to clients, stable across
 * calls (members are ordered by profile id), and checked strictly when it comes back. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
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
    case -ENOSPC:
        sd_req_reply_error(req, 409, "segment_limit_reached",
                           "this environment already has %d segments; delete one first",
                           SD_SEGMENTS_MAX);
        return;
    case -ETIME:
        sd_req_reply_error(req, 503, "segment_too_slow",
                           "computing the members took longer than the hub allows; narrow the "
                           "rule (e.g. filter by event or purchase date)");
        return;
    default: sd_api_reply_store_error(req, r);
    }
}

int sd_api_segment_create(struct sd_req *req)
{
    json_t *body = sd_api_parse_body(req);
    if (!body) {
        return SD_REQ_DONE;
    }
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    struct sd_segment *seg = NULL;
    int r = sd_segment_create(req->hub, req->who.tenant_id, req->who.env, body, &seg, &errors);
    if (r == 0) {
        sd_req_add_header(req, "Location", "/v1/%s/segments/%s", req->params[0], seg->id);
        sd_req_reply_json(req, 201, sd_segment_view(seg));
    } else {
        reply_error(req, r, &errors);
    }
    sd_segment_free(seg);
    sd_issues_release(&errors);
    json_decref(body);
    return SD_REQ_DONE;
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
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    struct sd_segment *seg = NULL;
    int r = sd_segment_update(req->hub, req->who.tenant_id, req->who.env, req->params[1], body,
                              &seg, &errors);
    if (r == 0) {
        sd_req_reply_json(req, 200, sd_segment_view(seg));
    } else {
        reply_error(req, r, &errors);
    }
    sd_segment_free(seg);
    sd_issues_release(&errors);
    json_decref(body);
    return SD_REQ_DONE;
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
    struct sd_segment *seg = NULL;
    int r = sd_segment_load(req->hub, req->who.tenant_id, req->who.env, req->params[1], &seg);
    struct sd_member_page page = {0};
    if (r == 0) {
        r = sd_segment_members(req->hub, seg, after, (size_t)limit, &page);
    }
    sd_segment_free(seg);
    if (r < 0) {
        reply_error(req, r, NULL);
        return SD_REQ_DONE;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < page.n; i++) {
        const struct sd_member *m = &page.v[i];
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
    snprintf(cursor, sizeof(cursor), CURSOR_PREFIX "%" PRIx64, (uint64_t)page.next_after);
    sd_req_reply_json(req, 200,
                      json_pack("{s:o, s:s, s:b}", "data", data, "next_cursor", cursor, "has_more",
                                page.has_more));
    sd_member_page_release(&page);
    return SD_REQ_DONE;
}
