/* alerts.c — a tenant's alert settings and alert history over HTTP (core/alerts.h), admin only:
 *   PUT /admin/v1/tenants/{client_id}/alerts   {"webhook_url", "secret"?, "rules"?}: replaces
 *       the settings (rules left out take their defaults; the secret left out keeps the stored
 *       one, null removes it); answers the settings as GET does.
 *   GET /admin/v1/tenants/{client_id}/alerts   {"webhook_url", "secret_set", "rules",
 *       "defaults"} — the secret itself is never returned.
 *   GET /admin/v1/tenants/{client_id}/alerts/history?limit=  {"alerts": [...]}, newest first,
 *       limit 1..1000 (default 100). */
#include <errno.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "base/base.h"
#include "core/alerts.h"
#include "core/connector_config.h"

#define HISTORY_LIMIT_DEFAULT 100

static void wipe_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static void reply_settings(struct sd_req *req, int status, int64_t tenant_id)
{
    char *doc = NULL, *secret = NULL;
    int r = sd_store_alert_settings_get(req->hub->store, tenant_id, &doc, &secret);
    if (r < 0 && r != -ENOENT) {
        sd_api_reply_store_error(req, r);
        return;
    }
    sd_req_reply_json(req, status, sd_alerts_settings_view(doc, secret != NULL));
    free(doc);
    wipe_free(secret);
}

int sd_api_admin_alerts_get(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    reply_settings(req, 200, t.id);
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

int sd_api_admin_alerts_put(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    json_t *body = sd_api_parse_body(req);
    json_t *doc = NULL;
    char *secret = NULL, *stored = NULL, *old_doc = NULL;
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    if (!body) {
        goto out;
    }
    if (sd_alerts_settings_check(body, &doc, &secret, &errors) < 0) {
        sd_api_reply_validation(req, &errors);
        goto out;
    }
    int r = sd_store_alert_settings_get(req->hub->store, t.id, &old_doc, &stored);
    if (r < 0 && r != -ENOENT) {
        sd_api_reply_store_error(req, r);
        goto out;
    }
    /* Standard Webhooks: every delivery is signed, so a webhook needs a secret. */
    bool will_have_secret = secret ? secret[0] != '\0' : stored != NULL;
    if (json_is_string(json_object_get(doc, "webhook_url")) && !will_have_secret) {
        sd_issues_add(&errors, "/secret",
                      "required with a webhook_url: a Standard Webhooks secret \"whsec_<base64>\" "
                      "that signs every delivery");
        sd_api_reply_validation(req, &errors);
        goto out;
    }
    char *text = json_dumps(doc, JSON_COMPACT);
    r = sd_store_alert_settings_put(req->hub->store, t.id, text, secret);
    free(text);
    if (r < 0) {
        sd_api_reply_store_error(req, r);
        goto out;
    }
    reply_settings(req, 200, t.id);
out:
    sd_issues_release(&errors);
    json_decref(body);
    json_decref(doc);
    wipe_free(secret);
    wipe_free(stored);
    free(old_doc);
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

static json_t *alert_json(const struct sd_alert *a)
{
    json_t *doc = json_loads(a->doc ? a->doc : "{}", 0, NULL);
    json_t *msg = json_object_get(doc, "message");
    json_t *facts = json_object_get(doc, "facts");
    json_t *delivery =
        json_pack("{s:s, s:I, s:o, s:o, s:o}", "state", sd_alert_delivery_name(a->delivery),
                  "attempts", (json_int_t)a->attempts, "last_error",
                  a->last_error ? json_string(a->last_error) : json_null(), "delivered_at",
                  sd_json_time(a->delivered_usec), "next_attempt_at",
                  sd_json_time(a->delivery == SD_ALERT_PENDING ? a->next_attempt_usec : 0));
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:O, s:O, s:o, s:o, s:b, s:o}", "alert_id", a->id, "rule",
                  a->rule, "subject", a->subject, "environment", sd_env_name(a->env), "message",
                  msg ? msg : json_null(), "facts", facts ? facts : json_object(), "created_at",
                  sd_json_time(a->created_usec), "resolved_at", sd_json_time(a->resolved_usec),
                  "open", a->resolved_usec == 0, "delivery", delivery);
    json_decref(doc);
    return o;
}

int sd_api_admin_alerts_history(struct sd_req *req)
{
    int64_t limit = HISTORY_LIMIT_DEFAULT;
    const char *l = sd_req_query(req, "limit");
    if (l && (sd_parse_int64(l, false, &limit) < 0 || limit < 1 || limit > SD_ALERTS_PAGE_MAX)) {
        sd_req_reply_error(req, 400, "invalid_parameter", "limit must be an integer from 1 to %d",
                           SD_ALERTS_PAGE_MAX);
        return SD_REQ_DONE;
    }
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    struct sd_alert *v = NULL;
    size_t n = 0;
    int r = sd_store_alert_history(req->hub->store, t.id, (size_t)limit, &v, &n);
    if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(arr, alert_json(&v[i]));
        }
        sd_req_reply_json(req, 200, json_pack("{s:o}", "alerts", arr));
    }
    sd_alerts_free(v, n);
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}
