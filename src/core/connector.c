/* connector.c — registry lookup, settings checked against each connector's key table, and the
 * source-run driver. See connector.h for the contract. */
#include "core/connector.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "http/egress.h"

const struct sd_connector *sd_connector_find(const char *name)
{
    for (size_t i = 0; sd_connectors[i]; i++) {
        if (strcmp(sd_connectors[i]->name, name) == 0) {
            return sd_connectors[i];
        }
    }
    return NULL;
}

static const struct sd_setting *find_key(const struct sd_connector *c, const char *key)
{
    for (const struct sd_setting *s = c->settings; s && s->key; s++) {
        if (strcmp(s->key, key) == 0) {
            return s;
        }
    }
    return NULL;
}

static bool has_ctl(const json_t *v)
{
    const char *p = json_string_value(v);
    if (strlen(p) != json_string_length(v)) {
        return true; /* a NUL inside */
    }
    for (; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            return true;
        }
    }
    return false;
}

static void check_choice(const struct sd_setting *s, const json_t *v, const char *ptr,
                         struct sd_issues *errors)
{
    struct sd_buf list = {0};
    for (size_t i = 0; s->choices && s->choices[i]; i++) {
        if (strcmp(json_string_value(v), s->choices[i]) == 0) {
            sd_buf_release(&list);
            return;
        }
        sd_buf_printf(&list, "%s%s", i ? ", " : "", s->choices[i]);
    }
    sd_issues_add(errors, ptr, "must be one of %s", list.data ? list.data : "(none)");
    sd_buf_release(&list);
}

static void check_value(const struct sd_setting *s, const json_t *v, const char *ptr,
                        struct sd_issues *errors)
{
    char why[320];
    switch (s->type) {
    case SD_SETTING_INT:
        if (!json_is_integer(v)) {
            sd_issues_add(errors, ptr, "must be an integer");
        } else if (json_integer_value(v) < s->min || json_integer_value(v) > s->max) {
            sd_issues_add(errors, ptr, "must be from %lld to %lld", (long long)s->min,
                          (long long)s->max);
        }
        break;
    case SD_SETTING_BOOL:
        if (!json_is_boolean(v)) {
            sd_issues_add(errors, ptr, "must be true or false");
        }
        break;
    case SD_SETTING_STRING:
    case SD_SETTING_SECRET:
    case SD_SETTING_CHOICE:
    case SD_SETTING_URL:
    case SD_SETTING_PATH:
        if (!json_is_string(v)) {
            sd_issues_add(errors, ptr, "must be a string");
        } else if (has_ctl(v)) {
            sd_issues_add(errors, ptr,
                          "must not contain control characters (line breaks, tabs, NUL): it "
                          "may be sent in a request header or line");
        } else if (s->type == SD_SETTING_CHOICE) {
            check_choice(s, v, ptr, errors);
        } else if ((int64_t)json_string_length(v) < s->min ||
                   (int64_t)json_string_length(v) > s->max) {
            sd_issues_add(errors, ptr, "must be %lld to %lld characters long", (long long)s->min,
                          (long long)s->max);
        } else if (s->type == SD_SETTING_URL &&
                   sd_egress_check_url(json_string_value(v), s->choices, sd_egress_policy_env(),
                                       NULL, why, sizeof(why)) < 0) {
            sd_issues_add(errors, ptr, "%s", why);
        } else if (s->type == SD_SETTING_PATH && json_string_length(v) > 0 &&
                   sd_egress_check_path(json_string_value(v), NULL, NULL, why, sizeof(why)) < 0) {
            sd_issues_add(errors, ptr, "%s", why);
        }
        break;
    }
}

json_t *sd_connector_check_settings(const struct sd_connector *c, const json_t *settings,
                                    struct sd_issues *errors)
{
    size_t before = errors->total;
    if (settings && !json_is_object(settings)) {
        sd_issues_add(errors, "/settings", "must be an object");
        return NULL;
    }
    json_t *out = json_object();
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)settings, key, v)
    {
        char ptr[160];
        sd_utf8_snprintf(ptr, sizeof(ptr), "/settings/%s", key);
        const struct sd_setting *s = find_key(c, key);
        if (!s && (c->kind & SD_CONNECTOR_SOURCE) && strcmp(key, "source") == 0) {
            const char *label = json_string_value(v);
            size_t n = label ? strlen(label) : 0;
            bool ok = n >= 1 && n <= 64;
            for (size_t i = 0; ok && i < n; i++) {
                char ch = label[i];
                ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                     ch == '-' || ch == '.';
            }
            if (!ok) {
                sd_issues_add(errors, ptr, "must be 1 to 64 of a-z 0-9 _ - .");
            }
            json_object_set(out, key, v);
            continue;
        }
        if (!s) {
            sd_issues_add(errors, ptr, "unknown setting for connector '%s'", c->name);
            continue;
        }
        check_value(s, v, ptr, errors);
        json_object_set(out, key, v);
    }
    for (const struct sd_setting *s = c->settings; s && s->key; s++) {
        if (json_object_get(out, s->key)) {
            continue;
        }
        char ptr[160];
        sd_utf8_snprintf(ptr, sizeof(ptr), "/settings/%s", s->key);
        if (!s->default_value) {
            sd_issues_add(errors, ptr, "required setting is missing");
            continue;
        }
        json_t *d = json_loads(s->default_value, JSON_DECODE_ANY, NULL);
        if (!d) {
            sd_issues_add(errors, ptr, "connector '%s' declares an invalid default", c->name);
            continue;
        }
        json_object_set_new(out, s->key, d);
    }
    if (errors->total == before && c->check) {
        void *conf = NULL;
        if (sd_connector_settings_new(c, out, &conf) < 0) {
            sd_issues_add(errors, "/settings",
                          "connector '%s' declares a setting its settings "
                          "struct cannot hold",
                          c->name);
        } else {
            c->check(conf, errors);
        }
        free(conf);
    }
    if (errors->total > before) {
        json_decref(out);
        return NULL;
    }
    return out;
}

json_t *sd_connector_redact_settings(const struct sd_connector *c, const json_t *settings)
{
    json_t *out = json_deep_copy(settings);
    for (const struct sd_setting *s = c->settings; s && s->key; s++) {
        const json_t *v = json_object_get(out, s->key);
        /* An empty secret (the default "none") is shown as it is: nothing to hide. */
        if (s->type == SD_SETTING_SECRET && v && !(json_is_string(v) && !json_string_length(v))) {
            json_object_set_new(out, s->key, json_string("(set)"));
        }
    }
    return out;
}

bool sd_connector_email_optional(const struct sd_connector_ctx *ctx)
{
    return ctx && ctx->connector && ctx->connector->customers_email_optional;
}

unsigned sd_connector_validate_flags(const struct sd_connector_ctx *ctx)
{
    return sd_connector_email_optional(ctx) ? SD_VALIDATE_EMAIL_OPTIONAL : 0;
}

int sd_connector_emit(struct sd_connector_ctx *ctx, const json_t *body,
                      struct sd_ingest_outcome *out)
{
    int r = sd_hub_ingest(ctx->hub, ctx->tenant_id, ctx->env, body, out);
    if (r == 0) {
        size_t n = out->n_events + out->n_customers + out->n_sales;
        if (out->status == 202) {
            ctx->records_in += n;
        } else {
            ctx->records_rejected++;
        }
    }
    return r;
}

int sd_connector_run_source(struct sd_hub *hub, const char *name, int64_t tenant_id,
                            enum sd_env env, const char *id, const json_t *settings,
                            struct sd_issues *errors, uint64_t *ret_records)
{
    const struct sd_connector *c = sd_connector_find(name);
    if (!c || !(c->kind & SD_CONNECTOR_SOURCE) || !c->run) {
        sd_issues_add(errors, "/type", "no source connector '%s'", name);
        return -ENOENT;
    }
    json_t *checked = sd_connector_check_settings(c, settings, errors);
    if (!checked) {
        return -EINVAL;
    }
    void *conf = NULL;
    int r = sd_connector_settings_new(c, checked, &conf);
    if (r < 0) {
        sd_issues_add(errors, "/settings",
                      "connector '%s' declares a setting its settings "
                      "struct cannot hold",
                      name);
    }
    struct sd_connector_ctx ctx = {.hub = hub,
                                   .tenant_id = tenant_id,
                                   .env = env,
                                   .id = id,
                                   .settings = checked,
                                   .conf = conf,
                                   .connector = c};
    void *state = NULL;
    if (r == 0) {
        r = c->init ? c->init(&ctx, &state) : 0;
    }
    if (r == 0) {
        r = c->run(&ctx, state);
        if (c->fini) {
            c->fini(state);
        }
    }
    sd_log(r == 0 ? SD_LOG_INFO : SD_LOG_ERROR, "connector run finished",
           "connector=\"[%s/%s]\" records=%llu rejected=%llu " SD_LOG_ERR_FMT, c->name, id,
           (unsigned long long)ctx.records_in, (unsigned long long)ctx.records_rejected,
           SD_LOG_ERR_ARGS(r));
    free(conf);
    json_decref(checked);
    if (ret_records) {
        *ret_records = ctx.records_in;
    }
    return r;
}
