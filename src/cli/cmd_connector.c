/* cmd_connector.c — `stagedoor connector add|list|show|update|run|remove`: the CLI face of the
 * admin API's connector resource, working on the store directly (a running server notices
 * within a second through the settings version). The same rules apply as over HTTP (one
 * implementation, core/connector_config.c); secrets are never printed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cli/cli.h"
#include "core/auth.h"
#include "core/connector.h"
#include "core/connector_config.h"
#include "store/store.h"

static const char usage_connector[] =
    "usage: stagedoor connector <add|list|show|update|run|remove|types|rotate-token> ...\n"
    "  connector add CLIENT_ID --type TYPE --env test|prod [--schedule S] [--settings JSON]\n"
    "                [--mapping JSON] [--data DIR]\n"
    "  connector list CLIENT_ID [--data DIR]\n"
    "  connector show CONNECTOR_ID [--data DIR]\n"
    "  connector update CONNECTOR_ID [--schedule S] [--settings JSON] [--mapping JSON]\n"
    "  connector run CONNECTOR_ID [--data DIR]\n"
    "  connector remove CONNECTOR_ID [--data DIR]\n"
    "  connector types [TYPE] [--json|--markdown]\n"
    "  connector rotate-token CONNECTOR_ID [--data DIR]   (webhook doors: a new URL token)\n"
    "JSON arguments may be given as @FILE to read them from a file.\n";
/* The usage of `connector add`: its list of types comes from the registry. */
static const char usage_add_head[] =
    "usage: stagedoor connector add CLIENT_ID --type TYPE --env test|prod [--schedule S]\n"
    "                               [--settings JSON|@FILE] [--mapping JSON|@FILE] [--data DIR]\n";
static const char usage_add_tail[] =
    "Schedules: manual, every 15m, hourly, daily at 02:00 (UTC), or cron. Prints the new\n"
    "connector id. Each type's settings: stagedoor connector types TYPE.\n";
static const char usage_types[] =
    "usage: stagedoor connector types [TYPE] [--json|--markdown]\n"
    "Every connector type (or one) with its kind, help and settings table (key, type, default,\n"
    "bounds or choices, help). --json for machines; --markdown prints the tables\n"
    "docs/CONNECTORS.md carries (scripts/gen-connector-docs writes them there).\n";
static const char usage_list[] = "usage: stagedoor connector list CLIENT_ID [--data DIR]\n";
static const char usage_show[] =
    "usage: stagedoor connector show CONNECTOR_ID [--data DIR]\n"
    "Prints the configuration (secrets redacted) and the last run's status as JSON.\n";
static const char usage_update[] =
    "usage: stagedoor connector update CONNECTOR_ID [--schedule S] [--settings JSON|@FILE]\n"
    "                                  [--mapping JSON|@FILE] [--data DIR]\n"
    "Settings are merged key by key (null restores a default); the mapping is replaced.\n";
static const char usage_run[] =
    "usage: stagedoor connector run CONNECTOR_ID [--data DIR]\n"
    "Asks the running server to run the connector now (within a second).\n";
static const char usage_remove[] = "usage: stagedoor connector remove CONNECTOR_ID [--data DIR]\n";

/* A JSON argument, or @FILE. NULL after printing why. */
static json_t *json_arg(const char *name, const char *v)
{
    json_error_t err;
    json_t *j = v[0] == '@' ? json_load_file(v + 1, JSON_REJECT_DUPLICATES, &err)
                            : json_loads(v, JSON_REJECT_DUPLICATES, &err);
    if (!j) {
        sd_cli_usage_error("%s is not valid JSON: line %d, column %d: %s", name, err.line,
                           err.column, err.text);
    }
    return j;
}

/* Build a request body from the options (the same shape the admin API takes). */
static int build_body(const char *type, const char *env, const char *schedule, const char *settings,
                      const char *mapping, json_t **ret)
{
    json_t *body = json_object();
    if (type) {
        json_object_set_new(body, "type", json_string(type));
    }
    if (env) {
        json_object_set_new(body, "environment", json_string(env));
    }
    if (schedule) {
        json_object_set_new(body, "schedule", json_string(schedule));
    }
    if (settings) {
        json_t *j = json_arg("--settings", settings);
        if (!j) {
            json_decref(body);
            return SD_EXIT_USAGE;
        }
        json_object_set_new(body, "settings", j);
    }
    if (mapping) {
        json_t *j = json_arg("--mapping", mapping);
        if (!j) {
            json_decref(body);
            return SD_EXIT_USAGE;
        }
        json_object_set_new(body, "mapping", j);
    }
    *ret = body;
    return 0;
}

const char *sd_cli_connector_types(void)
{
    static char names[512];
    if (!names[0]) {
        size_t len = 0;
        for (size_t i = 0; sd_connectors[i]; i++) {
            if (!(sd_connectors[i]->kind & SD_CONNECTOR_SOURCE) || sd_connectors[i]->test_only) {
                continue;
            }
            int n = snprintf(names + len, sizeof(names) - len, "%s%s", len ? ", " : "",
                             sd_connectors[i]->name);
            if (n < 0 || (size_t)n >= sizeof(names) - len) {
                break; /* cut: the list is for people, `connector types` has them all */
            }
            len += (size_t)n;
        }
    }
    return names;
}

static int connector_add(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *type = NULL, *env = NULL, *schedule = NULL,
               *settings = NULL, *mapping = NULL, *pos[1];
    struct sd_cli_opt opts[] = {{"--data", true, &data, NULL},
                                {"--type", true, &type, NULL},
                                {"--env", true, &env, NULL},
                                {"--schedule", true, &schedule, NULL},
                                {"--settings", true, &settings, NULL},
                                {"--mapping", true, &mapping, NULL},
                                {0}};
    char *usage_add =
        sd_asprintf("%sTypes: %s.\n%s", usage_add_head, sd_cli_connector_types(), usage_add_tail);
    int n = sd_cli_parse(argc, argv, opts, pos, 1, usage_add);
    free(usage_add);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 1) {
        return sd_cli_usage_error("connector add needs a CLIENT_ID");
    }
    if (!sd_client_id_valid(pos[0])) {
        return sd_cli_bad_client_id(pos[0]);
    }
    json_t *body = NULL;
    int r = build_body(type, env, schedule, settings, mapping, &body);
    if (r) {
        return r;
    }
    struct sd_store_handle *st = NULL;
    if ((r = sd_cli_open_store(data, &st)) != 0) {
        json_decref(body);
        return r;
    }
    struct sd_tenant t = {0};
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    char *id = NULL;
    r = sd_store_tenant_get(st, pos[0], &t);
    if (r == 0) {
        r = sd_connector_config_create(st, &t, body, &id, &errors);
    }
    sd_store_close(st);
    json_decref(body);
    sd_tenant_release(&t);
    int rc = SD_EXIT_OK;
    if (r == -ENOENT) {
        rc = sd_cli_fail("no tenant '%s'", pos[0]);
    } else if (r == -EINVAL) {
        rc = sd_cli_print_issues(&errors);
    } else if (r < 0) {
        rc = sd_cli_fail("cannot add the connector: %s", strerror(-r));
    } else {
        printf("%s\n", id);
        rc = sd_cmd_connector_open_door(data, id);
    }
    free(id);
    sd_issues_release(&errors);
    return rc;
}

static int connector_list(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *pos[1];
    struct sd_cli_opt opts[] = {{"--data", true, &data, NULL}, {0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 1, usage_list);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 1) {
        return sd_cli_usage_error("connector list needs a CLIENT_ID");
    }
    struct sd_store_handle *st = NULL;
    int r = sd_cli_open_store(data, &st);
    if (r) {
        return r;
    }
    struct sd_tenant t = {0};
    struct sd_connector_conf *v = NULL;
    size_t nv = 0;
    r = sd_store_tenant_get(st, pos[0], &t);
    if (r == 0) {
        r = sd_store_connector_list(st, t.id, &v, &nv);
    }
    int rc = SD_EXIT_OK;
    if (r == -ENOENT) {
        rc = sd_cli_fail("no tenant '%s'", pos[0]);
    } else if (r < 0) {
        rc = sd_cli_fail("cannot list connectors: %s", strerror(-r));
    } else {
        printf("%-20s %-10s %-5s %-16s %-9s %-21s %s\n", "CONNECTOR_ID", "TYPE", "ENV", "SCHEDULE",
               "STATE", "LAST_RUN", "RECORDS_IN");
        for (size_t i = 0; i < nv; i++) {
            json_t *view = sd_connector_config_view(NULL, st, &v[i]);
            json_t *status = json_object_get(view, "status");
            const json_t *last = json_object_get(status, "last_run");
            printf("%-20s %-10s %-5s %-16s %-9s %-21s %lld\n", v[i].id, v[i].type,
                   sd_env_name(v[i].env), v[i].schedule,
                   json_string_value(json_object_get(status, "state")),
                   json_is_string(last) ? json_string_value(last) : "-",
                   (long long)json_integer_value(json_object_get(status, "records_in")));
            json_decref(view);
        }
    }
    sd_connector_confs_free(v, nv);
    sd_tenant_release(&t);
    sd_store_close(st);
    return rc;
}

/* Open the store and fetch one connector by id (any tenant). */
static int one(const char *data, const char *id, struct sd_store_handle **ret_st,
               struct sd_connector_conf *ret)
{
    int r = sd_cli_open_store(data, ret_st);
    if (r) {
        return r;
    }
    r = sd_store_connector_get(*ret_st, id, ret);
    if (r < 0) {
        sd_store_close(*ret_st);
        *ret_st = NULL;
        return r == -ENOENT ? sd_cli_fail("no connector '%s'", id)
                            : sd_cli_fail("cannot read connector: %s", strerror(-r));
    }
    return 0;
}

static int connector_show(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *id = NULL;
    int r =
        sd_cli_parse_id(argc, argv, usage_show, "connector", "show", "CONNECTOR_ID", &data, &id);
    if (r >= 0) {
        return r;
    }
    struct sd_store_handle *st = NULL;
    struct sd_connector_conf c = {0};
    if ((r = one(data, id, &st, &c)) != 0) {
        return r;
    }
    json_t *view = sd_connector_config_view(NULL, st, &c);
    char *text = json_dumps(view, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", text);
    free(text);
    json_decref(view);
    sd_connector_conf_release(&c);
    sd_store_close(st);
    return SD_EXIT_OK;
}

static int connector_update(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *schedule = NULL, *settings = NULL, *mapping = NULL,
               *pos[1];
    struct sd_cli_opt opts[] = {{"--data", true, &data, NULL},
                                {"--schedule", true, &schedule, NULL},
                                {"--settings", true, &settings, NULL},
                                {"--mapping", true, &mapping, NULL},
                                {0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 1, usage_update);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 1) {
        return sd_cli_usage_error("connector update needs a CONNECTOR_ID");
    }
    json_t *body = NULL;
    int r = build_body(NULL, NULL, schedule, settings, mapping, &body);
    if (r) {
        return r;
    }
    struct sd_store_handle *st = NULL;
    struct sd_connector_conf c = {0};
    if ((r = one(data, pos[0], &st, &c)) != 0) {
        json_decref(body);
        return r;
    }
    struct sd_tenant t = {.id = c.tenant_id, .client_id = c.client_id};
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    r = sd_connector_config_update(st, &t, c.id, body, &errors);
    int rc = SD_EXIT_OK;
    if (r == -EINVAL) {
        rc = sd_cli_print_issues(&errors);
    } else if (r < 0) {
        rc = sd_cli_fail("cannot update the connector: %s", strerror(-r));
    } else {
        printf("updated %s\n", c.id);
    }
    sd_issues_release(&errors);
    json_decref(body);
    sd_connector_conf_release(&c);
    sd_store_close(st);
    return rc;
}

static int connector_run(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *id = NULL;
    int r = sd_cli_parse_id(argc, argv, usage_run, "connector", "run", "CONNECTOR_ID", &data, &id);
    if (r >= 0) {
        return r;
    }
    struct sd_store_handle *st = NULL;
    struct sd_connector_conf c = {0};
    if ((r = one(data, id, &st, &c)) != 0) {
        return r;
    }
    r = sd_store_connector_request_run(st, c.id, sd_now_usec());
    sd_connector_conf_release(&c);
    sd_store_close(st);
    if (r < 0) {
        return sd_cli_fail("cannot request a run: %s", strerror(-r));
    }
    printf("run requested for %s; a running server starts it within a second\n", id);
    return SD_EXIT_OK;
}

static int connector_remove(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *id = NULL;
    int r = sd_cli_parse_id(argc, argv, usage_remove, "connector", "remove", "CONNECTOR_ID", &data,
                            &id);
    if (r >= 0) {
        return r;
    }
    struct sd_store_handle *st = NULL;
    if ((r = sd_cli_open_store(data, &st)) != 0) {
        return r;
    }
    r = sd_store_connector_delete(st, id);
    sd_store_close(st);
    if (r == -ENOENT) {
        return sd_cli_fail("no connector '%s'", id);
    }
    if (r < 0) {
        return sd_cli_fail("cannot remove the connector: %s", strerror(-r));
    }
    printf("removed %s\n", id);
    return SD_EXIT_OK;
}

static int connector_types(int argc, char **argv)
{
    bool as_json = false, as_markdown = false;
    const char *pos[1];
    struct sd_cli_opt opts[] = {
        {"--json", false, NULL, &as_json}, {"--markdown", false, NULL, &as_markdown}, {0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 1, usage_types);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (as_json && as_markdown) {
        return sd_cli_usage_error("give --json or --markdown, not both");
    }
    const struct sd_connector *one = NULL;
    if (n == 1 && !(one = sd_connector_find(pos[0]))) {
        struct sd_buf names = {0};
        for (size_t i = 0; sd_connectors[i]; i++) {
            if (!sd_connectors[i]->test_only) {
                sd_buf_printf(&names, "%s%s", names.len ? ", " : "", sd_connectors[i]->name);
            }
        }
        int rc = sd_cli_usage_error("unknown connector type '%s' (known: %s)", pos[0],
                                    names.data ? names.data : "");
        sd_buf_release(&names);
        return rc;
    }
    if (as_json) {
        json_t *out = json_array();
        for (size_t i = 0; sd_connectors[i]; i++) {
            if (one ? sd_connectors[i] == one : !sd_connectors[i]->test_only) {
                json_array_append_new(out, sd_connector_describe(sd_connectors[i]));
            }
        }
        json_t *doc = one ? json_incref(json_array_get(out, 0)) : json_pack("{s:O}", "types", out);
        char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", text);
        free(text);
        json_decref(doc);
        json_decref(out);
        return SD_EXIT_OK;
    }
    struct sd_buf out = {0};
    for (size_t i = 0; sd_connectors[i]; i++) {
        if (one ? sd_connectors[i] != one : sd_connectors[i]->test_only) {
            continue;
        }
        if (out.len) {
            sd_buf_append(&out, "\n", 1);
        }
        if (as_markdown) {
            sd_connector_markdown(sd_connectors[i], &out);
        } else {
            sd_connector_text(sd_connectors[i], &out);
        }
    }
    fwrite(out.data, 1, out.len, stdout);
    sd_buf_release(&out);
    return SD_EXIT_OK;
}

int sd_cmd_connector(int argc, char **argv)
{
    static const struct sd_cli_subcommand subs[] = {
        {"add", connector_add},
        {"list", connector_list},
        {"show", connector_show},
        {"update", connector_update},
        {"run", connector_run},
        {"remove", connector_remove},
        {"types", connector_types},
        {"rotate-token", sd_cmd_connector_rotate_token},
        {NULL, NULL},
    };
    return sd_cli_dispatch("connector", subs, usage_connector, argc, argv);
}
