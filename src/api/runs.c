/* runs.c — a connector's run history over HTTP (core/runs.h), newest first:
 *   GET /admin/v1/tenants/{client_id}/connectors/{connector_id}/runs?limit=&before=  (admin)
 *   GET /v1/{client_id}/connectors/{connector_id}/runs?limit=&before=  (the tenant's key: its
 *       own connectors of the key's environment only)
 * Answer {"runs": [...], "next_before": n | null}: next_before, passed as ?before=, continues
 * with the older runs (null: no older run). limit 1..1000 (default 50). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "base/base.h"
#include "core/connector_config.h"
#include "core/runs.h"

#define RUNS_LIMIT_DEFAULT 50

/* ?limit= and ?before= into *ret_limit and *ret_before; false after a 400. */
static bool page_query(struct sd_req *req, size_t *ret_limit, int64_t *ret_before)
{
    int64_t l = RUNS_LIMIT_DEFAULT, b = 0;
    const char *limit = sd_req_query(req, "limit");
    const char *before = sd_req_query(req, "before");
    if (limit && (sd_parse_int64(limit, false, &l) < 0 || l < 1 || l > SD_RUNS_PAGE_MAX)) {
        sd_req_reply_error(req, 400, "invalid_parameter", "limit must be an integer from 1 to %d",
                           SD_RUNS_PAGE_MAX);
        return false;
    }
    if (before && (sd_parse_int64(before, false, &b) < 0 || b < 1)) {
        sd_req_reply_error(req, 400, "invalid_parameter",
                           "before must be a positive integer (a next_before of an earlier page)");
        return false;
    }
    *ret_limit = (size_t)l;
    *ret_before = b;
    return true;
}

static void reply_runs(struct sd_req *req, int64_t tenant_id, const char *connector_id)
{
    size_t limit = 0;
    int64_t before = 0;
    if (!page_query(req, &limit, &before)) {
        return;
    }
    struct sd_run *v = NULL;
    size_t n = 0;
    /* One more than asked: whether an older page exists. */
    size_t ask = limit < SD_RUNS_PAGE_MAX ? limit + 1 : limit;
    int r = sd_store_run_list(req->hub->store, tenant_id, connector_id, before, ask, &v, &n);
    if (r < 0) {
        sd_api_reply_store_error(req, r);
        return;
    }
    json_t *runs = json_array();
    size_t shown = n < limit ? n : limit;
    for (size_t i = 0; i < shown; i++) {
        json_array_append_new(runs, sd_run_json(&v[i]));
    }
    bool more = n > limit || (n == SD_RUNS_PAGE_MAX && limit == SD_RUNS_PAGE_MAX);
    json_t *next = more && shown ? json_integer((json_int_t)v[shown - 1].seq) : json_null();
    sd_runs_free(v, n);
    sd_req_reply_json(req, 200, json_pack("{s:o, s:o}", "runs", runs, "next_before", next));
}

int sd_api_admin_connector_runs(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    struct sd_connector_conf c = {0};
    int r = sd_connector_config_get(req->hub->store, &t, req->params[1], &c);
    if (r == -ENOENT) {
        sd_req_reply_error(req, 404, "not_found", "no connector '%s' for tenant '%s'",
                           req->params[1], req->params[0]);
    } else if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else {
        reply_runs(req, t.id, c.id);
    }
    sd_connector_conf_release(&c);
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

int sd_api_connector_runs(struct sd_req *req)
{
    struct sd_connector_conf c = {0};
    int r = sd_store_connector_get(req->hub->store, req->params[1], &c);
    if (r == -ENOENT || (r == 0 && (c.tenant_id != req->who.tenant_id || c.env != req->who.env))) {
        /* Another tenant's connector, or one of the other environment, is not there for this
         * key. */
        sd_req_reply_error(req, 404, "not_found", "no connector '%s' in %s", req->params[1],
                           sd_env_name(req->who.env));
    } else if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else {
        reply_runs(req, c.tenant_id, c.id);
    }
    sd_connector_conf_release(&c);
    return SD_REQ_DONE;
}
