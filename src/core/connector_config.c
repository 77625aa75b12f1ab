/* connector_config.c — checking, storing and showing connector configurations (see
 * connector_config.h). Settings are stored with their defaults filled in, exactly as checked;
 * the mapping is stored as sent once sd_mapping_new has accepted it. */
#include "core/connector_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "core/connector.h"
#include "core/inbound.h"
#include "core/quota.h"
#include "core/runs.h"
#include "core/schedule.h"
#include "core/scheduler.h"
#include "http/egress.h"
#include "core/targets.h"
#include "mapping/mapping.h"

json_t *sd_json_time(int64_t usec)
{
    if (usec <= 0) {
        return json_null();
    }
    time_t t = (time_t)(usec / 1000000);
    struct tm tm;
    char buf[32];
    if (!gmtime_r(&t, &tm) || strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        return json_null();
    }
    return json_string(buf);
}

static void check_members(const json_t *body, const char *const *allowed, struct sd_issues *errors)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i]; i++) {
            ok = ok || strcmp(key, allowed[i]) == 0;
        }
        if (!ok) {
            char ptr[160];
            sd_utf8_snprintf(ptr, sizeof(ptr), "/%s", key);
            sd_issues_add(errors, ptr, "unknown member");
        }
    }
}

static void check_schedule(const json_t *v, struct sd_issues *errors)
{
    const char *why = NULL;
    struct sd_schedule sc;
    if (!json_is_string(v)) {
        sd_issues_add(errors, "/schedule", "must be a string such as \"every 15m\"");
    } else if (sd_schedule_parse(json_string_value(v), &sc, &why) < 0) {
        sd_issues_add(errors, "/schedule", "%s", why);
    }
}

/* Types configured here: sources, and targets but the audience push, whose instances the
 * targets API configures (it checks the URL against the egress policy and keeps the secrets). */
static bool configurable(const struct sd_connector *c)
{
    return (c->kind & SD_CONNECTOR_SOURCE) ||
           ((c->kind & SD_CONNECTOR_TARGET) && strcmp(c->name, SD_TARGET_TYPE_PUSH) != 0);
}

static void check_mapping(const json_t *v, struct sd_issues *errors)
{
    struct sd_mapping *m = NULL;
    if (v && !json_is_object(v)) {
        sd_issues_add(errors, "/mapping", "must be an object");
        return;
    }
    if (sd_mapping_new(v, &m, errors) == 0) {
        sd_mapping_free(m);
    }
}

static char *new_id(void)
{
    uint8_t rnd[8];
    if (sd_random_bytes(rnd, sizeof(rnd)) < 0) {
        return NULL;
    }
    char hex[17];
    for (size_t i = 0; i < 8; i++) {
        snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
    }
    return sd_asprintf("con_%s", hex);
}

int sd_connector_config_create(struct sd_store_handle *st, const struct sd_tenant *tenant,
                               const json_t *body, char **ret_id, struct sd_issues *errors)
{
    static const char *const allowed[] = {"type",     "environment", "schedule",
                                          "settings", "mapping",     NULL};
    if (!json_is_object(body)) {
        sd_issues_add(errors, "", "must be a JSON object");
        return -EINVAL;
    }
    check_members(body, allowed, errors);
    const json_t *type = json_object_get(body, "type");
    const json_t *envv = json_object_get(body, "environment");
    const struct sd_connector *c = NULL;
    if (!json_is_string(type)) {
        sd_issues_add(errors, "/type", "required: the connector type (e.g. \"csv_drop\")");
    } else if (!(c = sd_connector_find(json_string_value(type))) || !configurable(c)) {
        struct sd_buf names = {0};
        for (size_t i = 0; sd_connectors[i]; i++) {
            if (configurable(sd_connectors[i])) {
                sd_buf_printf(&names, "%s%s", names.len ? ", " : "", sd_connectors[i]->name);
            }
        }
        sd_issues_add(errors, "/type", "unknown connector type (known: %s)",
                      names.data ? names.data : "");
        sd_buf_release(&names);
        c = NULL;
    }
    enum sd_env env = SD_ENV_TEST;
    if (!json_is_string(envv) || sd_env_parse(json_string_value(envv), &env) < 0) {
        sd_issues_add(errors, "/environment", "required: \"test\" or \"prod\"");
    }
    const json_t *sched = json_object_get(body, "schedule");
    if (sched) {
        check_schedule(sched, errors);
    }
    json_t *settings = NULL;
    if (c) {
        settings = sd_connector_check_settings(c, json_object_get(body, "settings"), errors);
    }
    check_mapping(json_object_get(body, "mapping"), errors);
    if (errors->total > 0) {
        json_decref(settings);
        return -EINVAL;
    }
    char *id = new_id();
    char *settings_text = json_dumps(settings, JSON_COMPACT | JSON_SORT_KEYS);
    const json_t *mapping = json_object_get(body, "mapping");
    char *mapping_text = mapping ? json_dumps(mapping, JSON_COMPACT) : sd_strdup("{}");
    struct sd_connector_conf conf = {
        .id = id,
        .tenant_id = tenant->id,
        .env = env,
        .type = (char *)c->name,
        .schedule = (char *)(sched ? json_string_value(sched)
                                   : (c->default_schedule ? c->default_schedule : "manual")),
        .settings = settings_text,
        .mapping = mapping_text,
    };
    int r = id ? sd_store_connector_put(st, &conf, true) : -EIO;
    free(settings_text);
    free(mapping_text);
    json_decref(settings);
    if (r < 0) {
        free(id);
        return r;
    }
    *ret_id = id;
    return 0;
}

int sd_connector_config_get(struct sd_store_handle *st, const struct sd_tenant *tenant,
                            const char *id, struct sd_connector_conf *ret)
{
    struct sd_connector_conf c = {0};
    int r = sd_store_connector_get(st, id, &c);
    if (r < 0) {
        return r;
    }
    if (c.tenant_id != tenant->id) {
        sd_connector_conf_release(&c);
        return -ENOENT;
    }
    *ret = c;
    return 0;
}

/* Stored secrets go only to the host they were given for: when the patch changes the scheme,
 * host or port of a URL setting, every secret the patch does not send again (absent, or the
 * redacted "(set)") is removed from `merged`, so its default ("": none) applies. */
static void drop_secrets_if_moved(const struct sd_connector *con, json_t *merged,
                                  const json_t *patch)
{
    bool moved = false;
    for (const struct sd_setting *d = con ? con->settings : NULL; d && d->key; d++) {
        const json_t *nv = json_object_get(patch, d->key);
        if (d->type == SD_SETTING_URL && nv &&
            !(json_is_string(nv) &&
              sd_egress_same_origin(json_string_value(json_object_get(merged, d->key)),
                                    json_string_value(nv)))) {
            moved = true;
        }
    }
    for (const struct sd_setting *d = con ? con->settings : NULL; moved && d && d->key; d++) {
        const json_t *nv = json_object_get(patch, d->key);
        if (d->type == SD_SETTING_SECRET &&
            (!nv || (json_is_string(nv) && strcmp(json_string_value(nv), "(set)") == 0))) {
            json_object_del(merged, d->key);
        }
    }
}

int sd_connector_config_update(struct sd_store_handle *st, const struct sd_tenant *tenant,
                               const char *id, const json_t *body, struct sd_issues *errors)
{
    static const char *const allowed[] = {"schedule", "settings",    "mapping",
                                          "type",     "environment", NULL};
    if (!json_is_object(body)) {
        sd_issues_add(errors, "", "must be a JSON object");
        return -EINVAL;
    }
    struct sd_connector_conf c = {0};
    int r = sd_connector_config_get(st, tenant, id, &c);
    if (r < 0) {
        return r;
    }
    check_members(body, allowed, errors);
    const json_t *type = json_object_get(body, "type");
    if (type && !(json_is_string(type) && strcmp(json_string_value(type), c.type) == 0)) {
        sd_issues_add(errors, "/type", "cannot be changed; create a new connector instead");
    }
    const struct sd_connector *known = sd_connector_find(c.type);
    if (known && !configurable(known)) {
        sd_issues_add(errors, "", "a %s instance is changed with the targets API "
                      "(/admin/v1/tenants/{client_id}/targets/{id})", c.type);
    }
    const json_t *envv = json_object_get(body, "environment");
    if (envv &&
        !(json_is_string(envv) && strcmp(json_string_value(envv), sd_env_name(c.env)) == 0)) {
        sd_issues_add(errors, "/environment", "cannot be changed; create a new connector instead");
    }
    const json_t *sched = json_object_get(body, "schedule");
    if (sched) {
        check_schedule(sched, errors);
    }
    const struct sd_connector *con = sd_connector_find(c.type);
    json_t *merged = json_loads(c.settings, 0, NULL);
    if (!json_is_object(merged)) {
        json_decref(merged);
        merged = json_object();
    }
    const json_t *patch = json_object_get(body, "settings");
    if (patch && !json_is_object(patch)) {
        sd_issues_add(errors, "/settings", "must be an object");
    } else if (patch) {
        drop_secrets_if_moved(con, merged, patch);
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)patch, key, v)
        {
            const struct sd_setting *def = NULL;
            for (const struct sd_setting *d = con ? con->settings : NULL; d && d->key; d++) {
                def = strcmp(d->key, key) == 0 ? d : def;
            }
            if (def && def->type == SD_SETTING_SECRET && json_is_string(v) &&
                strcmp(json_string_value(v), "(set)") == 0) {
                continue; /* the redacted value sent back: keep the secret */
            }
            if (json_is_null(v)) {
                json_object_del(merged, key);
            } else {
                json_object_set(merged, key, v);
            }
        }
    }
    json_t *settings = con ? sd_connector_check_settings(con, merged, errors) : NULL;
    const json_t *mapping = json_object_get(body, "mapping");
    if (mapping) {
        check_mapping(mapping, errors);
    }
    if (errors->total > 0 || !settings) {
        r = -EINVAL;
        goto out;
    }
    char *settings_text = json_dumps(settings, JSON_COMPACT | JSON_SORT_KEYS);
    char *mapping_text = mapping ? json_dumps(mapping, JSON_COMPACT) : sd_strdup(c.mapping);
    struct sd_connector_conf u = {.id = c.id,
                                  .schedule = sched ? (char *)json_string_value(sched) : c.schedule,
                                  .settings = settings_text,
                                  .mapping = mapping_text};
    r = sd_store_connector_put(st, &u, false);
    free(settings_text);
    free(mapping_text);
out:
    json_decref(settings);
    json_decref(merged);
    sd_connector_conf_release(&c);
    return r;
}

json_t *sd_connector_config_view(struct sd_hub *hub, struct sd_store_handle *st,
                                 const struct sd_connector_conf *c)
{
    const struct sd_connector *con = sd_connector_find(c->type);
    json_t *settings = json_loads(c->settings, 0, NULL);
    json_t *shown = con ? sd_connector_redact_settings(con, settings) : json_object();
    json_t *mapping = json_loads(c->mapping, 0, NULL);
    json_t *out = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o}", "connector_id", c->id, "client_id",
        c->client_id ? c->client_id : "", "type", c->type, "environment", sd_env_name(c->env),
        "schedule", c->schedule, "settings", shown, "mapping", mapping ? mapping : json_object(),
        "created_at", sd_json_time(c->created_usec), "updated_at", sd_json_time(c->updated_usec));
    /* The scheduler's view first, then the committed state: a run that ends between the two
     * reads can then only make the state newer than the plan (next_run not after last_run,
     * visibly stale for a moment), never show a next_run planned from a run the state does not
     * show yet. */
    json_t *live = hub && hub->scheduler ? sd_scheduler_live(hub->scheduler, c->id) : NULL;
    char *doc = NULL;
    json_t *state = NULL;
    if (sd_store_connector_state_get(st, c->id, &doc) == 0) {
        state = json_loads(doc, 0, NULL);
        free(doc);
    }
    bool running = json_is_true(json_object_get(live, "running"));
    const char *st_name = running ? "running"
                          : json_is_string(json_object_get(state, "state"))
                              ? json_string_value(json_object_get(state, "state"))
                              : "never_run";
    json_t *status = json_object();
    json_object_set_new(status, "state", json_string(st_name));
    static const char *const times[][2] = {{"last_run_usec", "last_run"},
                                           {"last_success_usec", "last_success"},
                                           {"last_error_usec", "last_error_at"}};
    for (size_t i = 0; i < 3; i++) {
        const json_t *v = json_object_get(state, times[i][0]);
        json_object_set_new(status, times[i][1],
                            sd_json_time(json_is_integer(v) ? json_integer_value(v) : 0));
    }
    static const char *const copy[] = {
        "last_error", "last_warning",   "records_in",        "records_rejected",
        "cursor",     "last_run_stats", "records_unchanged", NULL};
    for (size_t i = 0; copy[i]; i++) {
        const json_t *v =
            json_object_get(state, strcmp(copy[i], "last_run_stats") == 0 ? "last_run" : copy[i]);
        json_object_set_new(status, copy[i], v ? json_deep_copy(v) : json_null());
    }
    if (running) {
        json_object_set(status, "progress", json_object_get(live, "progress"));
        const json_t *rs = json_object_get(live, "run_started_usec");
        json_object_set_new(status, "run_started",
                            sd_json_time(json_is_integer(rs) ? json_integer_value(rs) : 0));
    }
    const json_t *next = json_object_get(live, "next_run_usec");
    json_object_set_new(status, "next_run",
                        sd_json_time(json_is_integer(next) ? json_integer_value(next) : 0));
    if (con && con->quotas && con->quotas[0].name) {
        /* Calls used per window of the credential these settings name (shared with every
         * instance that has the same credential); null if the ledger cannot be read. */
        json_t *quotas = sd_quota_status_instance(st, con, settings, c->id, sd_now_usec());
        json_object_set_new(status, "quotas", quotas ? quotas : json_null());
    }
    if (sd_inbound_type_has_door(c->type)) {
        /* the door's payloads stored and objects waiting in quarantine */
        json_t *in = sd_inbound_status(st, c->id);
        json_object_set_new(status, "inbound", in ? in : json_null());
    }
    json_object_set_new(out, "status", status);
    json_object_set_new(out, "last_run", sd_runs_last_json(st, c->tenant_id, c->id));
    /* a door with streams: its URLs, the token left as "{token}" (shown once when made) */
    json_t *streams = sd_inbound_stream_paths(c->type, c->settings, c->id, NULL);
    if (streams) {
        json_object_set_new(out, "inbound_streams", streams);
    }
    json_decref(settings);
    json_decref(state);
    json_decref(live);
    return out;
}
