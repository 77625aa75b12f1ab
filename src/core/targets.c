/* targets.c — checking, storing and showing push targets (see targets.h). The stored document
 * is the settings object exactly as checked, defaults filled in; type and environment live in
 * their own columns. Secrets are checked for what would break an HTTP header (control
 * characters) and otherwise stored as given: the worker must send them. */
#include "core/targets.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "core/connector_config.h"
#include "core/outbox.h"
#include "http/egress.h"

#define SECRET_SHOWN "(set)"
#define URL_MAX 2048
#define SECRET_MAX 1024
#define NAME_MAX_LEN 200
#define SOURCE_MAX 64

static const char *const settings_keys[] = {
    "url",  "app_key", "secure_token", "source", "segments_per_hour", "timeout_seconds",
    "name", NULL};
static const char *const secret_keys[] = {"app_key", "secure_token", NULL};

static bool in_list(const char *key, const char *const *list)
{
    for (size_t i = 0; list[i]; i++) {
        if (strcmp(key, list[i]) == 0) {
            return true;
        }
    }
    return false;
}

static bool has_ctl(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            return true;
        }
    }
    return false;
}

/* The URL: parsed by libcurl (http/egress.h), https:// (or http:// to a loopback literal or
 * localhost: the app key and secure token travel in its headers), no user info, and no address
 * literal the egress policy refuses. */
static void check_url(const json_t *v, struct sd_issues *errors)
{
    static const char *const schemes[] = {"https", "http", NULL};
    if (!json_is_string(v) || json_string_length(v) == 0) {
        sd_issues_add(errors, "/url", "required: the https:// URL segments are POSTed to");
        return;
    }
    const char *u = json_string_value(v);
    char why[320];
    struct sd_url su;
    if (json_string_length(v) > URL_MAX) {
        sd_issues_add(errors, "/url", "longer than %d characters", URL_MAX);
    } else if (has_ctl(u) || strlen(u) != json_string_length(v)) {
        sd_issues_add(errors, "/url", "contains control characters");
    } else if (sd_egress_check_url(u, schemes, sd_egress_policy_env(), &su, why, sizeof(why)) <
               0) {
        sd_issues_add(errors, "/url", "%s", why);
    } else if (strcmp(su.scheme, "http") == 0 && !su.host_loopback) {
        sd_issues_add(errors, "/url",
                      "must be https:// (the app key and secure token travel in its "
                      "headers); http:// is allowed for a loopback address or localhost only");
    }
}

static void check_secret(const json_t *v, const char *key, struct sd_issues *errors)
{
    char ptr[32];
    sd_utf8_snprintf(ptr, sizeof(ptr), "/%s", key);
    if (!json_is_string(v) || json_string_length(v) == 0) {
        sd_issues_add(errors, ptr, "required: a non-empty string");
    } else if (json_string_length(v) > SECRET_MAX) {
        sd_issues_add(errors, ptr, "longer than %d characters", SECRET_MAX);
    } else if (has_ctl(json_string_value(v)) ||
               strlen(json_string_value(v)) != json_string_length(v)) {
        sd_issues_add(errors, ptr,
                      "must not contain control characters (it is sent in an HTTP "
                      "header)");
    }
}

static void check_int(json_t *settings, const char *key, int64_t def, int64_t lo, int64_t hi,
                      struct sd_issues *errors)
{
    const json_t *v = json_object_get(settings, key);
    char ptr[32];
    sd_utf8_snprintf(ptr, sizeof(ptr), "/%s", key);
    if (!v) {
        json_object_set_new(settings, key, json_integer(def));
    } else if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        sd_issues_add(errors, ptr, "must be an integer from %lld to %lld", (long long)lo,
                      (long long)hi);
    }
}

static bool source_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SOURCE_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.' || c == ':')) {
            return false;
        }
    }
    return true;
}

/* Check a complete settings object; fills defaults in place. */
static void check_settings(json_t *settings, struct sd_issues *errors)
{
    check_url(json_object_get(settings, "url"), errors);
    for (size_t i = 0; secret_keys[i]; i++) {
        check_secret(json_object_get(settings, secret_keys[i]), secret_keys[i], errors);
    }
    check_int(settings, "segments_per_hour", 50, 1, 10000, errors);
    check_int(settings, "timeout_seconds", 30, 1, 300, errors);
    const json_t *src = json_object_get(settings, "source");
    if (src && !(json_is_string(src) && source_ok(json_string_value(src)))) {
        sd_issues_add(errors, "/source",
                      "must be a source name (1 to %d of A-Z a-z 0-9 _ - . :), as in the "
                      "customer records' source",
                      SOURCE_MAX);
    }
    const json_t *name = json_object_get(settings, "name");
    if (name && !(json_is_string(name) && json_string_length(name) <= NAME_MAX_LEN &&
                  !has_ctl(json_string_value(name)))) {
        sd_issues_add(errors, "/name", "must be a string of at most %d characters", NAME_MAX_LEN);
    }
}

static void check_members(const json_t *body, struct sd_issues *errors)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        if (!in_list(key, settings_keys) && strcmp(key, "type") != 0 &&
            strcmp(key, "environment") != 0) {
            char ptr[160];
            sd_utf8_snprintf(ptr, sizeof(ptr), "/%s", key);
            sd_issues_add(errors, ptr, "unknown member");
        }
    }
}

/* The rate limit the store plans with: segments_per_hour (default 50). */
static int64_t rate_of(const json_t *settings)
{
    const json_t *v = json_object_get(settings, "segments_per_hour");
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 50;
}

bool sd_target_is_push(const struct sd_target *t)
{
    return t && t->type && strcmp(t->type, SD_TARGET_TYPE_PUSH) == 0;
}

int sd_target_config_list(struct sd_store_handle *st, int64_t tenant_id, struct sd_target **ret,
                          size_t *ret_n)
{
    struct sd_target *v = NULL;
    size_t n = 0, kept = 0;
    int r = sd_store_target_list(st, tenant_id, &v, &n);
    if (r < 0) {
        return r;
    }
    for (size_t i = 0; i < n; i++) {
        if (sd_target_is_push(&v[i])) {
            v[kept++] = v[i];
        } else {
            sd_target_release(&v[i]);
        }
    }
    *ret = v;
    *ret_n = kept;
    return 0;
}

int sd_target_config_delete(struct sd_store_handle *st, const char *id)
{
    struct sd_target t = {0};
    int r = sd_store_target_get(st, id, &t);
    if (r == 0 && !sd_target_is_push(&t)) {
        r = -ENOENT;
    }
    sd_target_release(&t);
    return r < 0 ? r : sd_store_target_delete(st, id, SD_TARGET_DELETED);
}

int sd_target_config_create(struct sd_store_handle *st, const struct sd_tenant *tenant,
                            const json_t *body, char **ret_id, struct sd_issues *errors)
{
    if (!json_is_object(body)) {
        sd_issues_add(errors, "", "must be a JSON object");
        return -EINVAL;
    }
    check_members(body, errors);
    const json_t *type = json_object_get(body, "type");
    if (!json_is_string(type) || strcmp(json_string_value(type), SD_TARGET_TYPE_PUSH) != 0) {
        sd_issues_add(errors, "/type", "required: \"" SD_TARGET_TYPE_PUSH "\"");
    }
    enum sd_env env = SD_ENV_TEST;
    const json_t *envv = json_object_get(body, "environment");
    if (!json_is_string(envv) || sd_env_parse(json_string_value(envv), &env) < 0) {
        sd_issues_add(errors, "/environment", "required: \"test\" or \"prod\"");
    }
    json_t *settings = json_object();
    for (size_t i = 0; settings_keys[i]; i++) {
        const json_t *v = json_object_get(body, settings_keys[i]);
        if (v && !json_is_null(v)) {
            json_object_set(settings, settings_keys[i], (json_t *)v);
        }
    }
    check_settings(settings, errors);
    if (errors->total > 0) {
        json_decref(settings);
        return -EINVAL;
    }
    char *id = sd_outbox_new_id("tgt_");
    char *doc = json_dumps(settings, JSON_COMPACT | JSON_SORT_KEYS);
    int64_t rate = rate_of(settings);
    json_decref(settings);
    struct sd_target t = {.id = id,
                          .tenant_id = tenant->id,
                          .env = env,
                          .type = (char *)SD_TARGET_TYPE_PUSH,
                          .doc = doc,
                          .rate_per_hour = rate};
    int r = id && doc ? sd_store_target_put(st, &t, true, NULL) : -EIO;
    if (doc) {
        explicit_bzero(doc, strlen(doc));
    }
    free(doc);
    if (r < 0) {
        free(id);
        return r;
    }
    *ret_id = id;
    return 0;
}

int sd_target_config_get(struct sd_store_handle *st, const struct sd_tenant *tenant, const char *id,
                         struct sd_target *ret)
{
    struct sd_target t = {0};
    int r = sd_store_target_get(st, id, &t);
    if (r < 0) {
        return r;
    }
    if (t.tenant_id != tenant->id || !sd_target_is_push(&t)) {
        sd_target_release(&t);
        return -ENOENT;
    }
    *ret = t;
    return 0;
}

int sd_target_config_update(struct sd_store_handle *st, const struct sd_tenant *tenant,
                            const char *id, const json_t *body, struct sd_issues *errors)
{
    if (!json_is_object(body)) {
        sd_issues_add(errors, "", "must be a JSON object");
        return -EINVAL;
    }
    struct sd_target t = {0};
    int r = sd_target_config_get(st, tenant, id, &t);
    if (r < 0) {
        return r;
    }
    char *doc = NULL;
    json_t *settings = json_loads(t.doc, 0, NULL);
    if (!json_is_object(settings)) {
        json_decref(settings);
        settings = json_object();
    }
    check_members(body, errors);
    const json_t *type = json_object_get(body, "type");
    if (type && !(json_is_string(type) && strcmp(json_string_value(type), t.type) == 0)) {
        sd_issues_add(errors, "/type", "cannot be changed; create a new target instead");
    }
    const json_t *envv = json_object_get(body, "environment");
    if (envv &&
        !(json_is_string(envv) && strcmp(json_string_value(envv), sd_env_name(t.env)) == 0)) {
        sd_issues_add(errors, "/environment", "cannot be changed; create a new target instead");
    }
    /* Stored secrets go only to the host they were given for: a new scheme, host or port
     * refuses the update unless this request sends them again (they are required). */
    const json_t *new_url = json_object_get(body, "url");
    bool moved = json_is_string(new_url) &&
                 !sd_egress_same_origin(json_string_value(json_object_get(settings, "url")),
                                        json_string_value(new_url));
    for (size_t i = 0; moved && secret_keys[i]; i++) {
        const json_t *v = json_object_get(body, secret_keys[i]);
        if (!v || (json_is_string(v) && strcmp(json_string_value(v), SECRET_SHOWN) == 0)) {
            char ptr[32];
            snprintf(ptr, sizeof(ptr), "/%s", secret_keys[i]);
            sd_issues_add(errors, ptr,
                          "required again: the URL's scheme, host or port changed, and stored "
                          "secrets are never sent to a new host");
        }
    }
    for (size_t i = 0; settings_keys[i]; i++) {
        const char *key = settings_keys[i];
        const json_t *v = json_object_get(body, key);
        if (!v) {
            continue; /* not sent: kept (secrets included, unless the URL moved) */
        }
        if (in_list(key, secret_keys) && json_is_string(v) &&
            strcmp(json_string_value(v), SECRET_SHOWN) == 0) {
            continue; /* the redacted value sent back: keep the stored one */
        }
        if (json_is_null(v)) {
            json_object_del(settings, key); /* optional ones go; defaults come back */
        } else {
            json_object_set(settings, key, (json_t *)v);
        }
    }
    check_settings(settings, errors);
    if (errors->total > 0) {
        r = -EINVAL;
        goto out;
    }
    doc = json_dumps(settings, JSON_COMPACT | JSON_SORT_KEYS);
    struct sd_target u = {.id = t.id, .doc = doc, .rate_per_hour = rate_of(settings)};
    /* A changed segments_per_hour applies to the deliveries already waiting too. */
    struct sd_outbox_clock clk = sd_outbox_clock_now(SD_OUTBOX_CLAIM_LEASE_USEC);
    r = doc ? sd_store_target_put(st, &u, false, &clk) : -EIO;
out:
    if (doc) {
        explicit_bzero(doc, strlen(doc));
    }
    free(doc);
    json_decref(settings);
    if (t.doc) {
        explicit_bzero(t.doc, strlen(t.doc));
    }
    sd_target_release(&t);
    return r;
}

json_t *sd_target_config_view(const struct sd_target *t)
{
    json_t *settings = json_loads(t->doc ? t->doc : "{}", 0, NULL);
    if (!json_is_object(settings)) {
        json_decref(settings);
        settings = json_object();
    }
    json_t *v = json_object();
    json_object_set_new(v, "target_id", json_string(t->id));
    json_object_set_new(v, "client_id", json_string(t->client_id ? t->client_id : ""));
    json_object_set_new(v, "type", json_string(t->type ? t->type : ""));
    json_object_set_new(v, "environment", json_string(sd_env_name(t->env)));
    for (size_t i = 0; settings_keys[i]; i++) {
        const char *key = settings_keys[i];
        const json_t *s = json_object_get(settings, key);
        if (in_list(key, secret_keys)) {
            json_object_set_new(v, key, s ? json_string(SECRET_SHOWN) : json_null());
        } else {
            json_object_set_new(v, key, s ? json_deep_copy(s) : json_null());
        }
    }
    json_object_set_new(v, "created_at", sd_json_time(t->created_usec));
    json_object_set_new(v, "updated_at", sd_json_time(t->updated_usec));
    json_decref(settings);
    return v;
}
