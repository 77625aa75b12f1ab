/* actions.c — connector actions over HTTP (core/actions.h): POST
 * /v1/{client_id}/connectors/{connector_id}/{action} with a JSON body and a required
 * Idempotency-Key. The request becomes one outbox item; the answer waits for its delivery at
 * most ?wait= seconds (default SD_ACTION_WAIT_DEFAULT_S, 0..SD_ACTION_WAIT_MAX_S):
 *   201  delivered: {"delivery_id", "state": "delivered", "remote_ref", "result": {facts}}
 *   202  still pending: {"delivery_id", "state", …}, Location: the delivery to poll
 *   422  rejected by the remote: {"error": "action_failed", "message": the remote's reason,
 *        "delivery_id", "last_status"}
 * A repeated request with the same key answers the same item (Idempotent-Replayed: true). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "base/base.h"
#include "core/actions.h"
#include "core/outbox.h"

int sd_api_connector_action(struct sd_req *req)
{
    const char *request_key = NULL;
    if (!sd_api_idempotency_key(req, &request_key)) {
        return SD_REQ_DONE;
    }
    if (!request_key) {
        sd_req_reply_error(req, 400, "idempotency_key_required",
                           "an action needs an Idempotency-Key header (a retry with the same key "
                           "never performs it twice)");
        return SD_REQ_DONE;
    }
    int64_t wait_s = SD_ACTION_WAIT_DEFAULT_S;
    const char *w = sd_req_query(req, "wait");
    if (w && (sd_parse_int64(w, false, &wait_s) < 0 || wait_s > SD_ACTION_WAIT_MAX_S)) {
        sd_req_reply_error(req, 400, "invalid_parameter", "wait must be 0 to %d seconds",
                           SD_ACTION_WAIT_MAX_S);
        return SD_REQ_DONE;
    }
    json_t *body = sd_api_parse_body(req);
    if (!body) {
        return SD_REQ_DONE;
    }
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    const char *connector_id = req->params[1], *action = req->params[2];
    char *id = NULL;
    bool replayed = false;
    const char *what = NULL;
    int r = sd_action_submit(req->hub, req->who.tenant_id, req->who.env, connector_id, action, body,
                             request_key, &id, &replayed, &what, &errors);
    if (r == -EEXIST) {
        sd_req_reply_error(req, 422, "idempotency_key_reused",
                           "Idempotency-Key '%s' was used for another connector or action",
                           request_key);
    } else if (r == -ENOENT && what && strcmp(what, "action") == 0) {
        sd_req_reply_error(req, 404, "not_found", "connector '%s' has no action '%s'", connector_id,
                           action);
    } else if (r == -ENOENT) {
        sd_req_reply_error(req, 404, "not_found", "no connector '%s' in %s", connector_id,
                           sd_env_name(req->who.env));
    } else if (r == -EINVAL) {
        sd_api_reply_validation(req, &errors);
    } else if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else {
        struct sd_outbox_item d = {0};
        r = sd_action_wait(req->hub, req->who.tenant_id, req->who.env, id, wait_s * 1000000, &d);
        if (r < 0) {
            sd_api_reply_store_error(req, r);
        } else {
            json_t *view = sd_outbox_delivery_view(&d);
            json_t *ans = json_pack("{s:s, s:s}", "delivery_id", id, "state",
                                    sd_delivery_state_name(d.state));
            sd_req_add_header(req, "Location", "/v1/%s/deliveries/%s", req->who.client_id, id);
            if (replayed) {
                sd_req_add_header(req, "Idempotent-Replayed", "true");
            }
            if (d.state == SD_DELIVERY_DELIVERED) {
                json_object_set(ans, "remote_ref", json_object_get(view, "remote_ref"));
                json_object_set(ans, "result", json_object_get(view, "facts"));
                sd_req_reply_json(req, 201, ans);
            } else if (d.state == SD_DELIVERY_DEAD || d.state == SD_DELIVERY_CANCELLED) {
                json_object_set_new(ans, "error", json_string("action_failed"));
                const json_t *why = json_object_get(view, "last_error");
                json_object_set_new(ans, "message",
                                    json_is_string(why)
                                        ? json_incref((json_t *)why)
                                        : json_string(sd_delivery_state_name(d.state)));
                json_object_set(ans, "last_status", json_object_get(view, "last_status"));
                sd_req_reply_json(req, 422, ans);
            } else {
                json_object_set(ans, "next_attempt_at", json_object_get(view, "next_attempt_at"));
                json_object_set(ans, "waiting_for", json_object_get(view, "waiting_for"));
                json_object_set(ans, "last_error", json_object_get(view, "last_error"));
                sd_req_reply_json(req, 202, ans);
            }
            json_decref(view);
            sd_outbox_item_release(&d);
        }
    }
    free(id);
    sd_issues_release(&errors);
    json_decref(body);
    return SD_REQ_DONE;
}
