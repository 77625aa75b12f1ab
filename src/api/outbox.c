/* outbox.c — the audience push over HTTP (issue #4 §3): push targets (admin), the push itself
 * (tenant key), the delivery status (tenant and admin) and the replay of a dead delivery
 * (admin). The rules live in core/targets.c and core/outbox*.c, shared with the CLI; these
 * handlers only translate HTTP. Target secrets are never returned ("(set)"). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/outbox.h"
#include "core/targets.h"


static void reply_target_error(struct sd_req *req, int r, const struct sd_issues *errors)
{
    if (r == -EINVAL && errors) {
        sd_api_reply_validation(req, errors);
    } else if (r == -ENOENT) {
        sd_req_reply_error(req, 404, "not_found", "no target '%s' for tenant '%s'",
                           req->n_params > 1 ? req->params[1] : "", req->params[0]);
    } else {
        sd_api_reply_store_error(req, r);
    }
}

/* ---- targets (admin) ------------------------------------------------------------------------- */

int sd_api_admin_target_create(struct sd_req *req)
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
        int r = sd_target_config_create(req->hub->store, &t, body, &id, &errors);
        if (r == 0) {
            sd_req_add_header(req, "Location", "/admin/v1/tenants/%s/targets/%s", t.client_id, id);
            sd_req_reply_json(req, 201, json_pack("{s:s}", "target_id", id));
        } else {
            reply_target_error(req, r, &errors);
        }
        free(id);
        sd_issues_release(&errors);
        json_decref(body);
    }
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

int sd_api_admin_targets_list(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    struct sd_target *v = NULL;
    size_t n = 0;
    int r = sd_target_config_list(req->hub->store, t.id, &v, &n);
    if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(arr, sd_target_config_view(&v[i]));
        }
        sd_req_reply_json(req, 200, json_pack("{s:o}", "data", arr));
    }
    sd_targets_free(v, n);
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

int sd_api_admin_target_get(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    struct sd_target g = {0};
    int r = sd_target_config_get(req->hub->store, &t, req->params[1], &g);
    if (r < 0) {
        reply_target_error(req, r, NULL);
    } else {
        sd_req_reply_json(req, 200, sd_target_config_view(&g));
    }
    sd_target_release(&g);
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

int sd_api_admin_target_update(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    json_t *body = sd_api_parse_body(req);
    if (body) {
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        int r = sd_target_config_update(req->hub->store, &t, req->params[1], body, &errors);
        struct sd_target g = {0};
        if (r == 0) {
            r = sd_target_config_get(req->hub->store, &t, req->params[1], &g);
        }
        if (r < 0) {
            reply_target_error(req, r, &errors);
        } else {
            sd_req_reply_json(req, 200, sd_target_config_view(&g));
        }
        sd_target_release(&g);
        sd_issues_release(&errors);
        json_decref(body);
    }
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

int sd_api_admin_target_delete(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    struct sd_target g = {0};
    int r = sd_target_config_get(req->hub->store, &t, req->params[1], &g);
    if (r == 0) {
        r = sd_target_config_delete(req->hub->store, g.id);
    }
    if (r < 0) {
        reply_target_error(req, r, NULL);
    } else {
        sd_req_reply_text(req, 204, NULL, "");
    }
    sd_target_release(&g);
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

/* ---- push and status (tenant) ---------------------------------------------------------------- */

int sd_api_segment_push(struct sd_req *req)
{
    const char *request_key = NULL;
    if (!sd_api_idempotency_key(req, &request_key)) {
        return SD_REQ_DONE;
    }
    /* ?dry_run=true: the target computes and reports what it would do, and sends nothing. */
    const char *dry = sd_req_query(req, "dry_run");
    if (dry && strcmp(dry, "true") != 0 && strcmp(dry, "false") != 0) {
        sd_req_reply_error(req, 400, "invalid_parameter", "dry_run must be true or false");
        return SD_REQ_DONE;
    }
    struct sd_push_options opt = {.dry_run = dry && strcmp(dry, "true") == 0};
    json_t *body = sd_api_parse_body(req);
    if (!body) {
        return SD_REQ_DONE;
    }
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    const json_t *tid = json_object_get(body, "target_id");
    if (!json_is_object(body)) {
        sd_issues_add(&errors, "", "must be a JSON object");
    } else {
        const char *key;
        json_t *v;
        json_object_foreach(body, key, v)
        {
            if (strcmp(key, "target_id") != 0) {
                /* at most 100 bytes of the name, cut on a character boundary */
                sd_issues_add(&errors, "", "unknown member '%.*s' (only target_id)",
                              (int)sd_utf8_prefix_len(key, strlen(key), 100), key);
            }
        }
        if (!json_is_string(tid) || json_string_length(tid) == 0 || json_string_length(tid) > 64) {
            sd_issues_add(&errors, "/target_id", "required: the id of a push target (\"tgt_…\")");
        }
    }
    if (errors.total > 0) {
        sd_api_reply_validation(req, &errors);
        goto out;
    }
    const char *target_id = json_string_value(tid);
    const char *segment_id = req->params[1];
    char *id = NULL;
    const char *what = NULL;
    bool replayed = false;
    int r = sd_outbox_push_segment(req->hub, req->who.tenant_id, req->who.env, segment_id,
                                   target_id, request_key, &opt, &id, &what, &replayed);
    if (r == -EEXIST) {
        sd_req_reply_error(req, 422, "idempotency_key_reused",
                           "Idempotency-Key '%s' was used for a push of another segment or "
                           "target (or for a dry run and a push)",
                           request_key);
    } else if (r == -ENOTSUP && what && strcmp(what, "dry_run") == 0) {
        sd_issues_add(&errors, "/target_id", "target '%s' is of a type that cannot do a dry run",
                      target_id);
        sd_api_reply_validation(req, &errors);
    } else if (r == -ENOTSUP) {
        sd_issues_add(&errors, "/target_id", "target '%s' is of a type that takes no segment",
                      target_id);
        sd_api_reply_validation(req, &errors);
    } else if (r == -ENOENT && what && strcmp(what, "target") == 0) {
        sd_issues_add(&errors, "/target_id", "no target '%s' for this tenant in %s", target_id,
                      sd_env_name(req->who.env));
        sd_api_reply_validation(req, &errors);
    } else if (r == -ENOENT) {
        sd_req_reply_error(req, 404, "not_found", "no segment '%s' in %s", segment_id,
                           sd_env_name(req->who.env));
    } else if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else {
        struct sd_outbox_item d = {0};
        json_t *ans = json_pack("{s:s, s:s}", "delivery_id", id, "state", "queued");
        if (sd_store_delivery_get(req->hub->store, req->who.tenant_id, req->who.env, id, &d) == 0) {
            json_t *view = sd_outbox_delivery_view(&d);
            /* A replayed push answers what became of the delivery since (a new one is queued,
             * though a worker may have claimed it by now). */
            if (replayed) {
                json_object_set(ans, "state", json_object_get(view, "state"));
            }
            json_object_set(ans, "kind", json_object_get(view, "kind"));
            if (d.state == SD_DELIVERY_QUEUED) {
                json_object_set(ans, "next_attempt_at", json_object_get(view, "next_attempt_at"));
                json_object_set(ans, "waiting_for", json_object_get(view, "waiting_for"));
            }
            json_decref(view);
            sd_outbox_item_release(&d);
        }
        sd_req_add_header(req, "Location", "/v1/%s/deliveries/%s", req->who.client_id, id);
        if (replayed) {
            sd_req_add_header(req, "Idempotent-Replayed", "true");
        }
        sd_req_reply_json(req, 202, ans);
    }
    free(id);
out:
    sd_issues_release(&errors);
    json_decref(body);
    return SD_REQ_DONE;
}

int sd_api_delivery_get(struct sd_req *req)
{
    struct sd_outbox_item d = {0};
    int r = sd_store_delivery_get(req->hub->store, req->who.tenant_id, req->who.env, req->params[1],
                                  &d);
    if (r == -ENOENT) {
        sd_req_reply_error(req, 404, "not_found", "no delivery '%s' in %s", req->params[1],
                           sd_env_name(req->who.env));
    } else if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else {
        sd_req_reply_json(req, 200, sd_outbox_delivery_view(&d));
    }
    sd_outbox_item_release(&d);
    return SD_REQ_DONE;
}

/* ---- deliveries (admin) ---------------------------------------------------------------------- */

/* The query of a deliveries list (state, connector, limit) into f; false after a 400. */
static bool list_query(struct sd_req *req, struct sd_delivery_filter *f)
{
    const char *state = sd_req_query(req, "state");
    const char *limit = sd_req_query(req, "limit");
    enum sd_delivery_state s;
    if (state) {
        if (sd_delivery_state_parse(state, &s) < 0) {
            sd_req_reply_error(req, 400, "invalid_parameter",
                               "state must be queued, sending, retrying, delivered, dead or "
                               "cancelled");
            return false;
        }
        f->state = (int)s;
    }
    if (limit) {
        int64_t l = 0;
        if (sd_parse_int64(limit, false, &l) < 0 || l < 1 || l > 1000) {
            sd_req_reply_error(req, 400, "invalid_parameter",
                               "limit must be an integer from 1 to 1000");
            return false;
        }
        f->limit = (size_t)l;
    }
    f->connector_id = sd_req_query(req, "connector");
    return true;
}

static void list_reply(struct sd_req *req, const struct sd_delivery_filter *f)
{
    struct sd_outbox_item *v = NULL;
    size_t n = 0;
    bool more = false;
    int r = sd_store_delivery_list(req->hub->store, f, &v, &n, &more);
    if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            json_t *view = sd_outbox_delivery_view(&v[i]);
            json_object_del(view, "history");
            json_array_append_new(arr, view);
        }
        sd_req_reply_json(req, 200, json_pack("{s:o, s:b}", "data", arr, "has_more", more));
    }
    sd_outbox_items_free(v, n);
}

int sd_api_deliveries_list(struct sd_req *req)
{
    /* A tenant key sees its own items, in its own environment. */
    struct sd_delivery_filter f = {
        .tenant_id = req->who.tenant_id, .env = (int)req->who.env, .state = -1, .limit = 100};
    if (list_query(req, &f)) {
        list_reply(req, &f);
    }
    return SD_REQ_DONE;
}

int sd_api_admin_deliveries_list(struct sd_req *req)
{
    struct sd_delivery_filter f = {.tenant_id = 0, .env = -1, .state = -1, .limit = 100};
    if (!list_query(req, &f)) {
        return SD_REQ_DONE;
    }
    const char *client = sd_req_query(req, "client_id");
    struct sd_tenant t = {0};
    if (client) {
        int r = sd_store_tenant_get(req->hub->store, client, &t);
        if (r == -ENOENT) {
            sd_req_reply_error(req, 404, "not_found", "no tenant '%s'", client);
            return SD_REQ_DONE;
        }
        if (r < 0) {
            sd_api_reply_store_error(req, r);
            return SD_REQ_DONE;
        }
        f.tenant_id = t.id;
    }
    list_reply(req, &f);
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

int sd_api_admin_delivery_get(struct sd_req *req)
{
    struct sd_outbox_item d = {0};
    int r = sd_store_delivery_get(req->hub->store, 0, SD_ENV_TEST, req->params[0], &d);
    if (r == -ENOENT) {
        sd_req_reply_error(req, 404, "not_found", "no delivery '%s'", req->params[0]);
    } else if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else {
        sd_req_reply_json(req, 200, sd_outbox_delivery_view(&d));
    }
    sd_outbox_item_release(&d);
    return SD_REQ_DONE;
}

int sd_api_admin_delivery_retry(struct sd_req *req)
{
    int r = sd_outbox_retry(req->hub->store, req->params[0]);
    if (r == -ENOENT) {
        sd_req_reply_error(req, 404, "not_found", "no delivery '%s'", req->params[0]);
    } else if (r == -EBUSY) {
        sd_req_reply_error(req, 409, "not_dead",
                           "delivery '%s' is not dead; only a dead delivery can be replayed (push "
                           "the segment again to send it anew)",
                           req->params[0]);
    } else if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else {
        sd_outbox_wake(req->hub->outbox);
        sd_req_reply_json(
            req, 202, json_pack("{s:s, s:s}", "delivery_id", req->params[0], "state", "queued"));
    }
    return SD_REQ_DONE;
}

/* 404 / 409 not_waiting for an operator action on a delivery that is missing or not waiting. */
static bool action_error(struct sd_req *req, int r, const char *what)
{
    if (r == -ENOENT) {
        sd_req_reply_error(req, 404, "not_found", "no delivery '%s'", req->params[0]);
    } else if (r == -EBUSY) {
        sd_req_reply_error(req, 409, "not_waiting",
                           "delivery '%s' is not waiting (queued or retrying); only a waiting "
                           "delivery can be %s",
                           req->params[0], what);
    } else if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else {
        return false;
    }
    return true;
}

/* The delivery as it is now, with `status`. */
static void reply_view(struct sd_req *req, int status)
{
    struct sd_outbox_item d = {0};
    int r = sd_store_delivery_get(req->hub->store, 0, SD_ENV_TEST, req->params[0], &d);
    if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else {
        sd_req_reply_json(req, status, sd_outbox_delivery_view(&d));
    }
    sd_outbox_item_release(&d);
}

int sd_api_admin_delivery_cancel(struct sd_req *req)
{
    /* No body (like retry and send-now): the optional reason is a query parameter. */
    const char *reason = sd_req_query(req, "reason");
    if (reason && strlen(reason) > 500) {
        sd_req_reply_error(req, 400, "invalid_parameter", "reason is at most 500 characters");
        return SD_REQ_DONE;
    }
    int r = sd_outbox_cancel(req->hub->store, req->params[0], "admin", reason);
    if (!action_error(req, r, "cancelled")) {
        reply_view(req, 200);
    }
    return SD_REQ_DONE;
}

int sd_api_admin_delivery_send_now(struct sd_req *req)
{
    int r = sd_outbox_send_now(req->hub->store, req->params[0]);
    if (!action_error(req, r, "sent now")) {
        sd_outbox_wake(req->hub->outbox);
        reply_view(req, 202);
    }
    return SD_REQ_DONE;
}
