/* admin.c — the admin API (/admin/v1/…): connectors configured per tenant and environment at
 * run time (issue #3). Every route needs the admin token (route flag SD_ROUTE_ADMIN, checked by
 * the server). The rules for what a valid configuration is live in core/connector_config.c,
 * shared with the CLI; these handlers only translate HTTP. Secrets are never returned. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/connector_config.h"
#include "core/scheduler.h"


static void reply_connector_error(struct sd_req *req, int r, const struct sd_issues *errors)
{
    if (r == -EINVAL) {
        sd_api_reply_validation(req, errors);
    } else if (r == -ENOENT) {
        sd_req_reply_error(req, 404, "not_found", "no connector '%s' for tenant '%s'",
                           req->n_params > 1 ? req->params[1] : "", req->params[0]);
    } else {
        sd_api_reply_store_error(req, r);
    }
}

int sd_api_admin_connector_create(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    json_t *body = sd_api_parse_body(req);
    if (body) {
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        char *id = NULL;
        int r = sd_connector_config_create(req->hub->store, &t, body, &id, &errors);
        if (r == 0) {
            sd_req_add_header(req, "Location", "/admin/v1/tenants/%s/connectors/%s", t.client_id,
                              id);
            json_t *created = json_pack("{s:s}", "connector_id", id);
            sd_api_inbound_door_open(req, id, created);
            sd_req_reply_json(req, 201, created);
        } else {
            reply_connector_error(req, r, &errors);
        }
        free(id);
        sd_issues_release(&errors);
        json_decref(body);
    }
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

int sd_api_admin_connectors_list(struct sd_req *req)
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
    } else {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(arr, sd_connector_config_view(req->hub, req->hub->store, &v[i]));
        }
        sd_req_reply_json(req, 200, json_pack("{s:o}", "data", arr));
    }
    sd_connector_confs_free(v, n);
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

int sd_api_admin_connector_get(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    struct sd_connector_conf c = {0};
    int r = sd_connector_config_get(req->hub->store, &t, req->params[1], &c);
    if (r < 0) {
        reply_connector_error(req, r, NULL);
    } else {
        sd_req_reply_json(req, 200, sd_connector_config_view(req->hub, req->hub->store, &c));
    }
    sd_connector_conf_release(&c);
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

int sd_api_admin_connector_update(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    json_t *body = sd_api_parse_body(req);
    if (body) {
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        int r = sd_connector_config_update(req->hub->store, &t, req->params[1], body, &errors);
        if (r < 0) {
            reply_connector_error(req, r, &errors);
        } else {
            struct sd_connector_conf c = {0};
            if (sd_connector_config_get(req->hub->store, &t, req->params[1], &c) == 0) {
                sd_req_reply_json(req, 200,
                                  sd_connector_config_view(req->hub, req->hub->store, &c));
            } else {
                sd_req_reply_error(req, 404, "not_found", "connector removed meanwhile");
            }
            sd_connector_conf_release(&c);
        }
        sd_issues_release(&errors);
        json_decref(body);
    }
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

int sd_api_admin_connector_delete(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    struct sd_connector_conf c = {0};
    int r = sd_connector_config_get(req->hub->store, &t, req->params[1], &c);
    if (r == 0) {
        r = sd_store_connector_delete(req->hub->store, c.id);
    }
    if (r < 0) {
        reply_connector_error(req, r, NULL);
    } else {
        sd_req_reply_text(req, 204, NULL, "");
    }
    sd_connector_conf_release(&c);
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

int sd_api_admin_connector_run(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    struct sd_connector_conf c = {0};
    int r = sd_connector_config_get(req->hub->store, &t, req->params[1], &c);
    if (r == 0) {
        r = sd_store_connector_request_run(req->hub->store, c.id, sd_now_usec());
    }
    if (r < 0) {
        reply_connector_error(req, r, NULL);
    } else {
        if (req->hub->scheduler) {
            sd_scheduler_wake(req->hub->scheduler);
        }
        sd_req_reply_json(req, 202,
                          json_pack("{s:s, s:s}", "connector_id", c.id, "state", "queued"));
    }
    sd_connector_conf_release(&c);
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}
