/* tenants_http.c — tenants and their API keys over HTTP (/admin/v1/tenants…), the same
 * operations as `stagedoor tenant` and `stagedoor key`, behind the admin token (route flag
 * SD_ROUTE_ADMIN, checked by the server).
 *
 * Rules the CLI follows too: a client id is 1 to 64 of A-Z a-z 0-9 _ -, a name at most 200
 * characters; a key's secret appears in the answer that creates it and never again (lists show
 * its id, environment and dates only, never the secret or its hash); a revocation takes effect
 * on every server at its next settings reload (within a second), as with the CLI. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/auth.h"
#include "core/connector_config.h"
#include "core/profiles.h"

#define TENANT_NAME_MAX 200

/* The tenant as GET /admin/v1/tenants/{client_id} shows it; NULL after a store failure. */
static json_t *tenant_json(struct sd_req *req, const struct sd_tenant *t)
{
    return sd_profiles_tenant_view(req->hub->store, t);
}

static json_t *key_json(const struct sd_key_info *k)
{
    return json_pack("{s:s, s:s, s:o, s:o, s:b, s:o}", "key_id", k->key_id, "environment",
                     sd_env_name(k->env), "created_at", sd_json_time(k->created_usec), "revoked_at",
                     sd_json_time(k->revoked_usec), "revoked", k->revoked_usec != 0, "last_used_at",
                     sd_json_time(k->last_used_usec));
}

int sd_api_admin_tenants_list(struct sd_req *req)
{
    struct sd_tenant *v = NULL;
    size_t n = 0;
    int r = sd_store_tenant_list(req->hub->store, &v, &n);
    if (r < 0) {
        sd_api_reply_store_error(req, r);
        return SD_REQ_DONE;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n && arr; i++) {
        json_t *o = tenant_json(req, &v[i]);
        if (!o) {
            json_decref(arr);
            arr = NULL;
        } else {
            json_array_append_new(arr, o);
        }
    }
    sd_tenants_free(v, n);
    if (arr) {
        sd_req_reply_json(req, 200, json_pack("{s:o}", "data", arr));
    } else {
        sd_api_reply_store_error(req, -EIO);
    }
    return SD_REQ_DONE;
}

/* Members of a body other than `allowed` are errors (a misspelt member is never ignored). */
static void check_members(const json_t *body, const char *const *allowed, struct sd_issues *errors)
{
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)body, key, val)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++) {
            ok = strcmp(allowed[i], key) == 0;
        }
        if (!ok) {
            char *ptr = sd_asprintf("/%s", key);
            sd_issues_add(errors, ptr, "unknown member");
            free(ptr);
        }
    }
}

int sd_api_admin_tenant_create(struct sd_req *req)
{
    json_t *body = sd_api_parse_body(req);
    if (!body) {
        return SD_REQ_DONE;
    }
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    const char *client_id = NULL, *name = NULL;
    if (!json_is_object(body)) {
        sd_issues_add(&errors, "", "must be an object with \"client_id\" and optionally \"name\"");
    } else {
        static const char *const allowed[] = {"client_id", "name", NULL};
        check_members(body, allowed, &errors);
        const json_t *c = json_object_get(body, "client_id");
        const json_t *nm = json_object_get(body, "name");
        if (!c) {
            sd_issues_add(&errors, "/client_id", "required field is missing");
        } else if (!json_is_string(c) || !sd_client_id_valid(json_string_value(c))) {
            sd_issues_add(&errors, "/client_id", "must be 1 to 64 of A-Z a-z 0-9 _ -");
        } else {
            client_id = json_string_value(c);
        }
        if (nm && (!json_is_string(nm) || json_string_length(nm) == 0 ||
                   json_string_length(nm) > TENANT_NAME_MAX)) {
            sd_issues_add(&errors, "/name", "must be a string of 1 to 200 bytes");
        } else if (nm) {
            name = json_string_value(nm);
        }
    }
    if (errors.total > 0) {
        sd_api_reply_validation(req, &errors);
        goto out;
    }
    int r = sd_store_tenant_create(req->hub->store, client_id, name ? name : client_id);
    if (r == -EEXIST) {
        sd_req_reply_error(req, 409, "already_exists", "tenant '%s' already exists", client_id);
        goto out;
    }
    struct sd_tenant t = {0};
    if (r == 0) {
        r = sd_store_tenant_get(req->hub->store, client_id, &t);
    }
    json_t *view = r == 0 ? tenant_json(req, &t) : NULL;
    if (r < 0 || !view) {
        sd_api_reply_store_error(req, r < 0 ? r : -EIO);
    } else {
        sd_req_add_header(req, "Location", "/admin/v1/tenants/%s", client_id);
        sd_req_reply_json(req, 201, view);
    }
    sd_tenant_release(&t);
out:
    sd_issues_release(&errors);
    json_decref(body);
    return SD_REQ_DONE;
}

int sd_api_admin_keys_list(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    struct sd_key_info *k = NULL;
    size_t n = 0;
    int r = sd_store_key_list(req->hub->store, t.client_id, &k, &n);
    if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(arr, key_json(&k[i]));
        }
        sd_req_reply_json(req, 200, json_pack("{s:o}", "data", arr));
    }
    sd_keys_free(k, n);
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

int sd_api_admin_key_create(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    json_t *body = sd_api_parse_body(req);
    if (!body) {
        sd_tenant_release(&t);
        return SD_REQ_DONE;
    }
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    enum sd_env env = SD_ENV_TEST;
    if (!json_is_object(body)) {
        sd_issues_add(&errors, "", "must be an object with \"environment\"");
    } else {
        static const char *const allowed[] = {"environment", NULL};
        check_members(body, allowed, &errors);
        const json_t *e = json_object_get(body, "environment");
        if (!e) {
            sd_issues_add(&errors, "/environment", "required field is missing");
        } else if (!json_is_string(e) || sd_env_parse(json_string_value(e), &env) < 0) {
            sd_issues_add(&errors, "/environment", "must be \"test\" or \"prod\"");
        }
    }
    char *key = NULL, *key_id = NULL;
    if (errors.total > 0) {
        sd_api_reply_validation(req, &errors);
    } else {
        int r = sd_key_create(req->hub->store, t.client_id, env, &key, &key_id);
        if (r == -ENOENT) {
            sd_req_reply_error(req, 404, "not_found", "no tenant '%s'", t.client_id);
        } else if (r < 0) {
            sd_api_reply_store_error(req, r);
        } else {
            sd_req_add_header(req, "Location", "/admin/v1/tenants/%s/keys/%s", t.client_id, key_id);
            /* The secret is in this answer only: a client must store it now. */
            sd_req_reply_json(req, 201,
                              json_pack("{s:s, s:s, s:s, s:s, s:o}", "key_id", key_id,
                                        "environment", sd_env_name(env), "client_id", t.client_id,
                                        "key", key, "created_at", sd_json_time(sd_now_usec())));
        }
    }
    if (key) {
        explicit_bzero(key, strlen(key));
    }
    free(key);
    free(key_id);
    sd_issues_release(&errors);
    json_decref(body);
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

int sd_api_admin_key_revoke(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    /* The key must be this tenant's: a path never reaches another tenant's key. */
    struct sd_key_info *k = NULL;
    size_t n = 0;
    int r = sd_store_key_list(req->hub->store, t.client_id, &k, &n);
    bool found = false;
    for (size_t i = 0; r == 0 && i < n && !found; i++) {
        found = strcmp(k[i].key_id, req->params[1]) == 0;
    }
    if (r == 0 && found) {
        r = sd_store_key_revoke(req->hub->store, req->params[1]);
    }
    if (r == -ENOENT || (r == 0 && !found)) {
        sd_req_reply_error(req, 404, "not_found", "no key '%s' for tenant '%s'", req->params[1],
                           t.client_id);
    } else if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else {
        sd_req_reply_text(req, 204, NULL, "");
    }
    sd_keys_free(k, n);
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}
