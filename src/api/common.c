/* common.c — answers shared by the API handlers: body parsing with precise JSON errors,
 * validation failures and store failures. */
#include <errno.h>
#include <string.h>

#include "api/api.h"
#include "base/log.h"

json_t *sd_api_parse_body(struct sd_req *req)
{
    json_error_t err;
    json_t *v = json_loadb(req->body.data ? req->body.data : "", req->body.len,
                           JSON_REJECT_DUPLICATES, &err);
    if (!v) {
        sd_req_reply_error(req, 400, "malformed_json", "line %d, column %d: %s", err.line,
                           err.column, err.text);
        return NULL;
    }
    sd_json_exact_prices(v, req->body.data ? req->body.data : "", req->body.len);
    return v;
}

json_t *sd_api_validation_body(const struct sd_issues *errors)
{
    json_t *o =
        json_pack("{s:s, s:o}", "error", "validation_failed", "errors", sd_issues_to_json(errors));
    if (errors->total > errors->n) {
        json_object_set_new(o, "errors_total", json_integer((json_int_t)errors->total));
    }
    return o;
}

void sd_api_reply_validation(struct sd_req *req, const struct sd_issues *errors)
{
    sd_req_reply_json(req, 400, sd_api_validation_body(errors));
}

void sd_api_reply_store_error(struct sd_req *req, int err)
{
    if (err == -ENOSPC) {
        /* Out of space: SQLite rolled the group back, nothing is lost or half-kept. */
        sd_req_add_header(req, "Retry-After", "%d", SD_API_STORAGE_RETRY_S);
        sd_req_reply_error(req, 503, "storage_full",
                           "the hub's storage is full; nothing of this request was stored. "
                           "Retry later");
        return;
    }
    if (err == -ECONNRESET) {
        /* The database server went away mid-request (a restart, a failover): the store
         * reconnects on its next use. A COMMIT whose answer was lost may have happened, so the
         * answer does not claim "nothing was stored": a re-sent request is applied once. */
        sd_req_add_header(req, "Retry-After", "%d", SD_API_BUSY_RETRY_S);
        sd_req_reply_error(req, 503, "store_unavailable",
                           "the hub lost its connection to the database; this request was not "
                           "accepted (it may have been stored if the connection broke at "
                           "commit). Send it again, with the same Idempotency-Key if it has one");
        return;
    }
    if (err == -ETIMEDOUT) {
        /* The write lock stayed taken (a long write job, another process) for the store's
         * bound: nothing was written, the same request can be sent again. */
        sd_req_add_header(req, "Retry-After", "%d", SD_API_BUSY_RETRY_S);
        sd_req_reply_error(req, 503, "store_busy",
                           "the hub's store stayed busy with other writes; nothing of this "
                           "request was applied. Retry later");
        return;
    }
    sd_log(SD_LOG_ERROR, "store operation failed", "request_id=%s " SD_LOG_ERR_FMT, req->request_id,
           SD_LOG_ERR_ARGS(err));
    sd_req_reply_error(req, 500, "internal_error",
                       "the request could not be stored; nothing was applied. Quote the "
                       "request id when reporting this");
}

bool sd_api_path_tenant(struct sd_req *req, struct sd_tenant *ret)
{
    int r = sd_store_tenant_get(req->hub->store, req->params[0], ret);
    if (r == -ENOENT) {
        sd_req_reply_error(req, 404, "not_found", "no tenant '%s'", req->params[0]);
        return false;
    }
    if (r < 0) {
        sd_api_reply_store_error(req, r);
        return false;
    }
    return true;
}

#define IDEMPOTENCY_KEY_MAX 255

bool sd_api_idempotency_key(struct sd_req *req, const char **ret)
{
    const char *k = sd_req_header(req, "Idempotency-Key");
    *ret = k;
    if (!k) {
        return true;
    }
    size_t n = strlen(k);
    bool ok = n > 0 && n <= IDEMPOTENCY_KEY_MAX;
    for (size_t i = 0; ok && i < n; i++) {
        ok = k[i] >= 0x21 && k[i] <= 0x7e;
    }
    if (!ok) {
        sd_req_reply_error(req, 400, "invalid_idempotency_key",
                           "Idempotency-Key must be 1 to %d printable ASCII characters",
                           IDEMPOTENCY_KEY_MAX);
    }
    return ok;
}
