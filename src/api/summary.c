/* summary.c — how much a tenant holds, in one cheap answer: GET /v1/{client_id}/summary (its
 * key's environment) and GET /admin/v1/tenants/{client_id}/summary?environment=test|prod (the
 * admin token; default test). {"client_id", "environment", "events", "customers", "sales"}:
 * the records stored now (deleted ones not counted), counted by the store on either backend —
 * the numbers the dashboard's overview shows, equal to what paging through the lists yields. */
#include "api/api.h"

static void reply_summary(struct sd_req *req, int64_t tenant_id, const char *client_id,
                          enum sd_env env)
{
    static const struct {
        enum sd_kind kind;
        const char *name;
    } kinds[] = {
        {SD_KIND_EVENT, "events"}, {SD_KIND_CUSTOMER, "customers"}, {SD_KIND_SALE, "sales"}};
    json_t *o = json_pack("{s:s, s:s}", "client_id", client_id, "environment", sd_env_name(env));
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        int64_t n = 0;
        int r = sd_store_count_records(req->hub->store, kinds[i].kind, tenant_id, env, &n);
        if (r < 0) {
            json_decref(o);
            sd_api_reply_store_error(req, r);
            return;
        }
        json_object_set_new(o, kinds[i].name, json_integer((json_int_t)n));
    }
    sd_req_reply_json(req, 200, o);
}

int sd_api_summary(struct sd_req *req)
{
    reply_summary(req, req->who.tenant_id, req->who.client_id, req->who.env);
    return SD_REQ_DONE;
}

int sd_api_admin_summary(struct sd_req *req)
{
    enum sd_env env = SD_ENV_TEST;
    const char *e = sd_req_query(req, "environment");
    if (e && sd_env_parse(e, &env) < 0) {
        sd_req_reply_error(req, 400, "invalid_parameter",
                           "environment must be \"test\" or \"prod\"");
        return SD_REQ_DONE;
    }
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    reply_summary(req, t.id, t.client_id, env);
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}
