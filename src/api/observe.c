/* observe.c — what a venue's operator reads about its data and traffic: data quality and
 * answers by status per hour (GET /admin/v1/tenants/{client_id}/quality, and a tenant key's own
 * GET /v1/{client_id}/quality, its environment only), the vendor quotas its connectors use per
 * window (GET /admin/v1/tenants/{client_id}/quotas) and a segment's size over time
 * (GET /v1/{client_id}/segments/{segment_id}/history).
 *
 * A read first flushes this server's in-memory counters (core/quality.h), so an answer holds
 * everything this node counted until then; other nodes' counts arrive within their next flush
 * (a minute). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/connector.h"
#include "core/connector_config.h"
#include "core/quality.h"
#include "core/quota.h"
#include "core/segments.h"
#include "store/observe.h"

#define HOUR_USEC (3600LL * 1000000)
#define DEFAULT_SINCE_USEC (24 * HOUR_USEC)

static int two(const char *p)
{
    return (p[0] - '0') * 10 + (p[1] - '0');
}

/* ?since= as an RFC 3339 time (any offset) into µs since the epoch; absent: `dflt`. false
 * after answering 400. */
static bool query_since(struct sd_req *req, int64_t dflt, int64_t *ret)
{
    const char *s = sd_req_query(req, "since");
    if (!s) {
        *ret = dflt;
        return true;
    }
    char utc[48];
    if (sd_datetime_to_utc(s, utc, sizeof(utc)) < 0) {
        sd_req_reply_error(req, 400, "invalid_parameter",
                           "since must be an RFC 3339 time such as 2026-12-01T00:00:00Z");
        return false;
    }
    /* utc is "YYYY-MM-DDTHH:MM:SS[.frac]Z", checked by sd_datetime_to_utc */
    int64_t y = (utc[0] - '0') * 1000 + (utc[1] - '0') * 100 + two(utc + 2);
    int64_t days = sd_days_from_civil(y, two(utc + 5), two(utc + 8));
    *ret = ((days * 24 + two(utc + 11)) * 60 + two(utc + 14)) * 60 * 1000000LL +
           two(utc + 17) * 1000000LL;
    return true;
}

/* The quality answer for a tenant; env_only: one environment (a tenant key's), else both. */
static void reply_quality(struct sd_req *req, int64_t tenant_id, const enum sd_env *env_only)
{
    int64_t since = 0, now = sd_now_usec();
    if (!query_since(req, now - now % HOUR_USEC - DEFAULT_SINCE_USEC, &since)) {
        return;
    }
    int r = sd_quality_flush(req->hub->quality, req->hub->store);
    if (r < 0) {
        sd_api_reply_store_error(req, r);
        return;
    }
    struct sd_traffic_count *v = NULL;
    size_t n = 0;
    bool more = false;
    r = sd_store_observe_traffic_list(req->hub->store, tenant_id, since, 0, &v, &n, &more);
    if (r < 0) {
        sd_api_reply_store_error(req, r);
        return;
    }
    json_t *rejected = json_array(), *accepted = json_array(), *answers = json_array();
    json_int_t n_rej = 0, n_acc = 0, n_ans[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        const struct sd_traffic_count *t = &v[i];
        if (env_only && t->env != *env_only) {
            continue;
        }
        json_t *o = json_pack("{s:o, s:s, s:s}", "hour", sd_json_time(t->hour_usec), "environment",
                              sd_env_name(t->env), "source", t->source);
        if (strcmp(t->kind, "rejected") == 0) {
            json_object_set_new(o, "field", json_string(t->field));
            json_object_set_new(o, "code", json_string(t->code));
            json_array_append(rejected, o);
            n_rej += t->n;
        } else if (strcmp(t->kind, "accepted") == 0) {
            json_object_set_new(o, "kind", json_string(t->field));
            json_array_append(accepted, o);
            n_acc += t->n;
        } else {
            /* an answer's source is its route */
            json_object_set_new(o, "route", json_string(t->source));
            json_object_del(o, "source");
            json_object_set_new(o, "class", json_string(t->code));
            json_array_append(answers, o);
            n_ans[t->code[0] == '2' ? 0 : t->code[0] == '4' ? 1 : 2] += t->n;
        }
        json_object_set_new(o, "count", json_integer((json_int_t)t->n));
        json_decref(o);
    }
    free(v);
    sd_req_reply_json(req, 200,
                      json_pack("{s:o, s:o, s:o, s:o, s:{s:I, s:I, s:{s:I, s:I, s:I}}, s:b}",
                                "since", sd_json_time(since), "rejected", rejected, "accepted",
                                accepted, "answers", answers, "totals", "rejected", n_rej,
                                "accepted", n_acc, "answers", "2xx", n_ans[0], "4xx", n_ans[1],
                                "5xx", n_ans[2], "has_more", more));
}

int sd_api_admin_quality(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (sd_api_path_tenant(req, &t)) {
        reply_quality(req, t.id, NULL);
    }
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

int sd_api_quality(struct sd_req *req)
{
    reply_quality(req, req->who.tenant_id, &req->who.env);
    return SD_REQ_DONE;
}

/* ---- vendor quotas ------------------------------------------------------------------------ */

/* One connector's credential key, or NULL when its type declares no quota. */
static char *cred_key_of(const struct sd_connector_conf *c, const struct sd_connector **ret_con,
                         json_t **ret_settings)
{
    const struct sd_connector *con = sd_connector_find(c->type);
    if (!con || !con->quotas || !con->quotas[0].name) {
        return NULL;
    }
    json_t *settings = json_loads(c->settings, 0, NULL);
    *ret_con = con;
    *ret_settings = settings;
    return sd_quota_cred_key(con, settings, c->id);
}

int sd_api_admin_quotas(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    struct sd_connector_conf *v = NULL;
    size_t n = 0;
    int r = sd_store_connector_list(req->hub->store, t.id, &v, &n);
    if (r < 0) {
        sd_api_reply_store_error(req, r);
        sd_tenant_release(&t);
        return SD_REQ_DONE;
    }
    /* The credential keys first: instances with equal credentials spend one budget, which the
     * answer says by naming the others (the key itself, a hash of secrets, is never shown). */
    char **keys = sd_calloc(n ? n : 1, sizeof(*keys));
    const struct sd_connector **cons = sd_calloc(n ? n : 1, sizeof(*cons));
    json_t **settings = sd_calloc(n ? n : 1, sizeof(*settings));
    for (size_t i = 0; i < n; i++) {
        keys[i] = cred_key_of(&v[i], &cons[i], &settings[i]);
    }
    int64_t now = sd_now_usec();
    json_t *arr = json_array();
    for (size_t i = 0; i < n && r == 0; i++) {
        if (!keys[i]) {
            continue;
        }
        struct sd_quota eff[SD_QUOTAS_MAX + 1];
        json_t *windows = sd_quota_status(req->hub->store, keys[i],
                                          sd_quota_effective(cons[i], settings[i], eff), now);
        if (!windows) {
            r = -EIO;
            break;
        }
        json_t *shared = json_array();
        for (size_t j = 0; j < n; j++) {
            if (j != i && keys[j] && strcmp(keys[i], keys[j]) == 0) {
                json_array_append_new(shared, json_string(v[j].id));
            }
        }
        json_array_append_new(arr,
                              json_pack("{s:s, s:s, s:s, s:o, s:o}", "connector_id", v[i].id,
                                        "type", v[i].type, "environment", sd_env_name(v[i].env),
                                        "credential_shared_with", shared, "windows", windows));
    }
    for (size_t i = 0; i < n; i++) {
        free(keys[i]);
        json_decref(settings[i]);
    }
    free(keys);
    free(cons);
    free(settings);
    sd_connector_confs_free(v, n);
    if (r < 0) {
        json_decref(arr);
        sd_api_reply_store_error(req, r);
    } else {
        sd_req_reply_json(req, 200, json_pack("{s:o, s:o}", "at", sd_json_time(now), "data", arr));
    }
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

/* ---- segment size history ----------------------------------------------------------------- */

int sd_api_segment_history(struct sd_req *req)
{
    int64_t since = 0;
    if (!query_since(req, 0, &since)) {
        return SD_REQ_DONE;
    }
    struct sd_segment *seg = NULL;
    int r = sd_segment_load(req->hub, req->who.tenant_id, req->who.env, req->params[1], &seg);
    if (r == -ENOENT) {
        sd_req_reply_error(req, 404, "not_found", "no segment '%s' in %s", req->params[1],
                           sd_env_name(req->who.env));
        return SD_REQ_DONE;
    }
    struct sd_segment_size_point *v = NULL;
    size_t n = 0;
    if (r == 0) {
        r = sd_store_observe_segment_size_history(req->hub->store, req->who.tenant_id, req->who.env,
                                                  seg->id, since, &v, &n);
    }
    if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else {
        json_t *points = json_array();
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(points, json_pack("{s:o, s:I}", "at", sd_json_time(v[i].at_usec),
                                                    "member_count", (json_int_t)v[i].member_count));
        }
        sd_req_reply_json(req, 200,
                          json_pack("{s:s, s:o}", "segment_id", seg->id, "points", points));
    }
    free(v);
    sd_segment_free(seg);
    return SD_REQ_DONE;
}
