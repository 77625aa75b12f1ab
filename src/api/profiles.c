/* profiles.c — unified customers over HTTP (issue #4 §1): reading profiles and looking them up
 * (tenant key, scoped to the key's environment), splitting a record out of a profile, GDPR
 * erasure through DELETE /customers/{id}?erase=profile, and the admin side: a tenant's link
 * rule (PATCH /admin/v1/tenants/{client_id}) and its suppression list.
 *
 * The write operations are rare and small, so their handlers wait for the writer's commit
 * (sd_writer_run_sync) instead of suspending the connection. Lookups answer 200 with a possibly
 * empty "data" array: "no profile has this address" is an answer, not a missing resource; only
 * GET of one profile id is a 404 when it does not exist. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/profiles.h"

static void reply_profiles(struct sd_req *req, struct sd_profile *v, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(arr, sd_profile_view(&v[i]));
    }
    sd_req_reply_json(req, 200, json_pack("{s:o}", "data", arr));
}

/* The profile id in the path, or a 404 answer (returns false). */
static bool path_profile_id(struct sd_req *req, int64_t *ret)
{
    if (sd_profiles_parse_id(req->params[1], ret) < 0) {
        sd_req_reply_error(req, 404, "not_found", "no profile '%s' in %s", req->params[1],
                           sd_env_name(req->who.env));
        return false;
    }
    return true;
}

int sd_api_profile_get(struct sd_req *req)
{
    int64_t id = 0;
    if (!path_profile_id(req, &id)) {
        return SD_REQ_DONE;
    }
    struct sd_profile p = {0};
    int r = sd_store_profile_get(req->hub->store, req->who.tenant_id, req->who.env, id, &p);
    if (r == -ENOENT) {
        sd_req_reply_error(req, 404, "not_found", "no profile %lld in %s", (long long)id,
                           sd_env_name(req->who.env));
    } else if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else {
        sd_req_reply_json(req, 200, sd_profile_view(&p));
    }
    sd_profile_release(&p);
    return SD_REQ_DONE;
}

int sd_api_profiles_find(struct sd_req *req)
{
    const char *email = sd_req_query(req, "email");
    const char *source = sd_req_query(req, "source");
    const char *cid = sd_req_query(req, "customer_id");
    if ((email != NULL) == (cid != NULL) || (source && !cid)) {
        sd_req_reply_error(req, 400, "invalid_parameter",
                           "look profiles up by ?email=ADDRESS or by ?customer_id=ID (optionally "
                           "with &source=SOURCE), not both");
        return SD_REQ_DONE;
    }
    struct sd_profile *v = NULL;
    size_t n = 0;
    int r;
    if (email) {
        char *key = sd_profiles_email_key(email);
        if (!key) {
            sd_req_reply_error(req, 400, "invalid_parameter",
                               "email is not a valid e-mail address (a '+' in it must be sent "
                               "as %%2B)");
            return SD_REQ_DONE;
        }
        r = sd_store_profile_find_by_email(req->hub->store, req->who.tenant_id, req->who.env, key,
                                           &v, &n);
        free(key);
    } else {
        if (!*cid || (source && !*source)) {
            sd_req_reply_error(req, 400, "invalid_parameter",
                               "customer_id and source must not be empty");
            return SD_REQ_DONE;
        }
        r = sd_store_profile_find_by_source(req->hub->store, req->who.tenant_id, req->who.env,
                                            source, cid, &v, &n);
    }
    if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else {
        reply_profiles(req, v, n);
    }
    sd_profiles_free(v, n);
    return SD_REQ_DONE;
}

int sd_api_profile_split(struct sd_req *req)
{
    int64_t id = 0;
    if (!path_profile_id(req, &id)) {
        return SD_REQ_DONE;
    }
    json_t *body = sd_api_parse_body(req);
    if (!body) {
        return SD_REQ_DONE;
    }
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    const char *source = NULL, *cid = NULL;
    int64_t new_id = 0;
    int r = sd_profiles_parse_split(body, &source, &cid, &errors);
    if (r < 0) {
        sd_api_reply_validation(req, &errors);
        goto out;
    }
    r = sd_profiles_split(req->hub->writer, req->who.tenant_id, req->who.env, id, source, cid,
                          &new_id);
    if (r == -ENOENT) {
        sd_req_reply_error(req, 404, "not_found",
                           "profile %lld in %s has no record '%s' from source '%s'", (long long)id,
                           sd_env_name(req->who.env), cid, source);
        goto out;
    }
    if (r == -EBUSY) {
        sd_req_reply_error(req, 409, "only_member",
                           "record '%s' from source '%s' is the only record of profile %lld; "
                           "there is nothing to split it from",
                           cid, source, (long long)id);
        goto out;
    }
    if (r < 0) {
        sd_api_reply_store_error(req, r);
        goto out;
    }
    struct sd_profile p = {0};
    r = sd_store_profile_get(req->hub->store, req->who.tenant_id, req->who.env, new_id, &p);
    if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else {
        sd_req_add_header(req, "Location", "/v1/%s/profiles/%lld", req->params[0],
                          (long long)new_id);
        sd_req_reply_json(req, 201, sd_profile_view(&p));
    }
    sd_profile_release(&p);
out:
    sd_issues_release(&errors);
    json_decref(body);
    return SD_REQ_DONE;
}

int sd_api_customer_erase(struct sd_req *req)
{
    const char *erase = sd_req_query(req, "erase");
    const char *source = sd_req_query(req, "source");
    if (!erase || strcmp(erase, "profile") != 0) {
        sd_req_reply_error(req, 400, "invalid_parameter",
                           "DELETE of a customer erases the whole person (GDPR Art. 17): every "
                           "record linked to its profile, in every source; say so with "
                           "?erase=profile (and &source=SOURCE if the id exists in several "
                           "sources)");
        return SD_REQ_DONE;
    }
    if (source && !*source) {
        sd_req_reply_error(req, 400, "invalid_parameter", "source must not be empty");
        return SD_REQ_DONE;
    }
    const char *cid = req->params[1];
    struct sd_erasure_result res = {0};
    int r =
        sd_profiles_erase(req->hub->writer, req->who.tenant_id, req->who.env, source, cid, &res);
    if (r == -ENOENT) {
        if (source) {
            sd_req_reply_error(req, 404, "not_found", "no customer '%s' from source '%s' in %s",
                               cid, source, sd_env_name(req->who.env));
        } else {
            sd_req_reply_error(req, 404, "not_found", "no customer '%s' in %s", cid,
                               sd_env_name(req->who.env));
        }
    } else if (r == -ENOTUNIQ) {
        sd_req_reply_error(req, 409, "ambiguous_customer",
                           "customer '%s' exists in several sources in %s; name one with "
                           "&source=SOURCE",
                           cid, sd_env_name(req->who.env));
    } else if (r < 0) {
        sd_api_reply_store_error(req, r);
    } else {
        sd_req_reply_json(req, 200,
                          json_pack("{s:b, s:I, s:I, s:I}", "erased", 1, "profile_id",
                                    (json_int_t)res.profile_id, "records_erased",
                                    (json_int_t)res.records_erased, "sales_anonymized",
                                    (json_int_t)res.sales_anonymized));
    }
    return SD_REQ_DONE;
}

/* ---- admin ------------------------------------------------------------------------------------
 */


static void reply_tenant(struct sd_req *req, const struct sd_tenant *t)
{
    json_t *v = sd_profiles_tenant_view(req->hub->store, t);
    if (!v) {
        sd_api_reply_store_error(req, -EIO);
        return;
    }
    sd_req_reply_json(req, 200, v);
}

int sd_api_admin_tenant_get(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (sd_api_path_tenant(req, &t)) {
        reply_tenant(req, &t);
    }
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

int sd_api_admin_tenant_update(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    json_t *body = sd_api_parse_body(req);
    if (body) {
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        int r = sd_profiles_tenant_patch(req->hub->store, t.client_id, body, &errors);
        if (r == -EINVAL) {
            sd_api_reply_validation(req, &errors);
        } else if (r == -ENOENT) {
            sd_req_reply_error(req, 404, "not_found", "no tenant '%s'", req->params[0]);
        } else if (r < 0) {
            sd_api_reply_store_error(req, r);
        } else {
            reply_tenant(req, &t);
        }
        sd_issues_release(&errors);
        json_decref(body);
    }
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}

int sd_api_admin_suppressions_add(struct sd_req *req)
{
    struct sd_tenant t = {0};
    if (!sd_api_path_tenant(req, &t)) {
        return SD_REQ_DONE;
    }
    json_t *body = sd_api_parse_body(req);
    if (body) {
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        enum sd_env env = SD_ENV_TEST;
        char **keys = NULL;
        size_t n = 0;
        int r = sd_profiles_parse_suppress(body, &env, &keys, &n, &errors);
        if (r < 0) {
            sd_api_reply_validation(req, &errors);
        } else {
            struct sd_suppress_result res = {0};
            r = sd_profiles_suppress(req->hub->writer, t.id, env, keys, n, &res);
            if (r < 0) {
                sd_api_reply_store_error(req, r);
            } else {
                sd_req_reply_json(req, 200,
                                  json_pack("{s:s, s:I, s:I, s:I, s:I}", "environment",
                                            sd_env_name(env), "received", (json_int_t)n, "added",
                                            (json_int_t)res.added, "already_suppressed",
                                            (json_int_t)(n - res.added), "profiles_suppressed",
                                            (json_int_t)res.profiles_suppressed));
            }
        }
        sd_profiles_keys_free(keys, n);
        sd_issues_release(&errors);
        json_decref(body);
    }
    sd_tenant_release(&t);
    return SD_REQ_DONE;
}
