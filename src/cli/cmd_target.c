/* cmd_target.c — `stagedoor target add|list|show|update|remove`: push targets, the CLI face of
 * the admin API's target resource, working on the store directly. The same rules apply as over
 * HTTP (core/targets.c). Secrets may be given as @FILE so they stay out of `ps` and shell
 * history; they are never printed back ("(set)"). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "cli/cli.h"
#include "core/auth.h"
#include "core/targets.h"
#include "store/audience.h"
#include "store/store.h"

static const char usage_target[] =
    "usage: stagedoor target <add|list|show|update|remove> ...\n"
    "  target add CLIENT_ID --env test|prod --url URL --app-key KEY --secure-token TOKEN\n"
    "             [--segments-per-hour N] [--source SOURCE] [--timeout SECONDS] [--name NAME]\n"
    "  target list CLIENT_ID\n"
    "  target show TARGET_ID\n"
    "  target update TARGET_ID [--url URL] [--app-key KEY] [--secure-token TOKEN] ...\n"
    "  target remove TARGET_ID\n"
    "Every command takes --data DIR. KEY and TOKEN may be @FILE to read them from a file.\n";
static const char usage_add[] =
    "usage: stagedoor target add CLIENT_ID --env test|prod --url URL --app-key KEY|@FILE\n"
    "                            --secure-token TOKEN|@FILE [--segments-per-hour N (50)]\n"
    "                            [--source SOURCE] [--timeout SECONDS (30)] [--name NAME]\n"
    "                            [--data DIR]\n"
    "Adds an audience push target (segments are POSTed to URL with X-App-Key and\n"
    "X-Secure-Token). With --source, members known to that source are sent with its customer\n"
    "ids, others by e-mail. Prints the new target id.\n";
static const char usage_list[] = "usage: stagedoor target list CLIENT_ID [--data DIR]\n";
static const char usage_show[] = "usage: stagedoor target show TARGET_ID [--data DIR]\n"
                                 "Prints the target as JSON; secrets show as \"(set)\".\n";
static const char usage_update[] =
    "usage: stagedoor target update TARGET_ID [--url URL] [--app-key KEY|@FILE]\n"
    "                               [--secure-token TOKEN|@FILE] [--segments-per-hour N]\n"
    "                               [--source SOURCE|--no-source] [--timeout SECONDS]\n"
    "                               [--name NAME] [--data DIR]\n"
    "Options not given keep their value (secrets included).\n";
static const char usage_remove[] =
    "usage: stagedoor target remove TARGET_ID [--data DIR]\n"
    "Its deliveries stay listed; those still pending become dead at their next attempt.\n";

struct target_opts {
    const char *data, *env, *url, *app_key, *secure_token, *per_hour, *source, *timeout, *name;
    bool no_source;
};

/* A secret from the command line, or @FILE (first line, at most 4 KiB). NULL after an error. */
static char *secret_arg(const char *name, const char *v)
{
    if (v[0] != '@') {
        return sd_strdup(v);
    }
    int fd = open(v + 1, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        sd_cli_usage_error("%s: cannot read '%s': %s", name, v + 1, strerror(errno));
        return NULL;
    }
    char buf[4097];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0) {
        sd_cli_usage_error("%s: cannot read '%s'", name, v + 1);
        return NULL;
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    char *s = sd_strdup(buf);
    explicit_bzero(buf, sizeof(buf));
    return s;
}

static int int_opt(json_t *body, const char *key, const char *name, const char *v)
{
    int64_t n = 0;
    if (sd_parse_int64(v, false, &n) < 0) {
        return sd_cli_usage_error("%s must be a whole number (got '%s')", name, v);
    }
    json_object_set_new(body, key, json_integer(n));
    return 0;
}

/* The request body the admin API would take, from the options. */
static int build_body(const struct target_opts *o, bool create, json_t **ret)
{
    json_t *body = json_object();
    if (create) {
        json_object_set_new(body, "type", json_string(SD_TARGET_TYPE_PUSH));
    }
    if (o->env) {
        json_object_set_new(body, "environment", json_string(o->env));
    }
    if (o->url) {
        json_object_set_new(body, "url", json_string(o->url));
    }
    const char *secrets[][2] = {{"app_key", o->app_key}, {"secure_token", o->secure_token}};
    for (size_t i = 0; i < 2; i++) {
        if (!secrets[i][1]) {
            continue;
        }
        char *s = secret_arg(i == 0 ? "--app-key" : "--secure-token", secrets[i][1]);
        if (!s) {
            json_decref(body);
            return SD_EXIT_USAGE;
        }
        json_object_set_new(body, secrets[i][0], json_string(s));
        explicit_bzero(s, strlen(s));
        free(s);
    }
    int r = 0;
    if (o->per_hour) {
        r = r ? r : int_opt(body, "segments_per_hour", "--segments-per-hour", o->per_hour);
    }
    if (o->timeout) {
        r = r ? r : int_opt(body, "timeout_seconds", "--timeout", o->timeout);
    }
    if (o->source && o->no_source) {
        r = r ? r : sd_cli_usage_error("--source and --no-source exclude each other");
    } else if (o->source) {
        json_object_set_new(body, "source", json_string(o->source));
    } else if (o->no_source) {
        json_object_set_new(body, "source", json_null());
    }
    if (o->name) {
        json_object_set_new(body, "name", json_string(o->name));
    }
    if (r) {
        json_decref(body);
        return r;
    }
    *ret = body;
    return 0;
}

static int target_add(int argc, char **argv)
{
    struct target_opts o = {.data = SD_DEFAULT_DATA_DIR};
    const char *pos[1];
    struct sd_cli_opt opts[] = {{"--data", true, &o.data, NULL},
                                {"--env", true, &o.env, NULL},
                                {"--url", true, &o.url, NULL},
                                {"--app-key", true, &o.app_key, NULL},
                                {"--secure-token", true, &o.secure_token, NULL},
                                {"--segments-per-hour", true, &o.per_hour, NULL},
                                {"--source", true, &o.source, NULL},
                                {"--timeout", true, &o.timeout, NULL},
                                {"--name", true, &o.name, NULL},
                                {0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 1, usage_add);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 1) {
        return sd_cli_usage_error("target add needs a CLIENT_ID");
    }
    if (!sd_client_id_valid(pos[0])) {
        return sd_cli_bad_client_id(pos[0]);
    }
    json_t *body = NULL;
    int r = build_body(&o, true, &body);
    if (r) {
        return r;
    }
    struct sd_store_handle *st = NULL;
    if ((r = sd_cli_open_store(o.data, &st)) != 0) {
        json_decref(body);
        return r;
    }
    struct sd_tenant t = {0};
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    char *id = NULL;
    r = sd_store_tenant_get(st, pos[0], &t);
    if (r == 0) {
        r = sd_target_config_create(st, &t, body, &id, &errors);
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
        rc = sd_cli_fail("cannot add the target: %s", strerror(-r));
    } else {
        printf("%s\n", id);
    }
    free(id);
    sd_issues_release(&errors);
    return rc;
}

static int target_list(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *pos[1];
    struct sd_cli_opt opts[] = {{"--data", true, &data, NULL}, {0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 1, usage_list);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 1) {
        return sd_cli_usage_error("target list needs a CLIENT_ID");
    }
    struct sd_store_handle *st = NULL;
    int r = sd_cli_open_store(data, &st);
    if (r) {
        return r;
    }
    struct sd_tenant t = {0};
    struct sd_target *v = NULL;
    size_t nv = 0;
    r = sd_store_tenant_get(st, pos[0], &t);
    if (r == 0) {
        r = sd_target_config_list(st, t.id, &v, &nv);
    }
    int rc = SD_EXIT_OK;
    if (r == -ENOENT) {
        rc = sd_cli_fail("no tenant '%s'", pos[0]);
    } else if (r < 0) {
        rc = sd_cli_fail("cannot list targets: %s", strerror(-r));
    } else {
        printf("%-20s %-5s %-8s %-10s %s\n", "TARGET_ID", "ENV", "PER_HOUR", "SOURCE", "URL");
        for (size_t i = 0; i < nv; i++) {
            json_t *view = sd_target_config_view(&v[i]);
            const char *src = json_string_value(json_object_get(view, "source"));
            printf("%-20s %-5s %-8lld %-10s %s\n", v[i].id, sd_env_name(v[i].env),
                   (long long)json_integer_value(json_object_get(view, "segments_per_hour")),
                   src ? src : "-", json_string_value(json_object_get(view, "url")));
            json_decref(view);
        }
    }
    sd_targets_free(v, nv);
    sd_tenant_release(&t);
    sd_store_close(st);
    return rc;
}

/* Open the store and fetch one target by id (any tenant). */
static int one(const char *data, const char *id, struct sd_store_handle **ret_st,
               struct sd_target *ret)
{
    int r = sd_cli_open_store(data, ret_st);
    if (r) {
        return r;
    }
    r = sd_store_target_get(*ret_st, id, ret);
    if (r == 0 && !sd_target_is_push(ret)) {
        sd_target_release(ret);
        r = -ENOENT;
    }
    if (r < 0) {
        sd_store_close(*ret_st);
        *ret_st = NULL;
        return r == -ENOENT ? sd_cli_fail("no target '%s'", id)
                            : sd_cli_fail("cannot read target: %s", strerror(-r));
    }
    return 0;
}

static int target_show(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *id = NULL;
    int r = sd_cli_parse_id(argc, argv, usage_show, "target", "show", "TARGET_ID", &data, &id);
    if (r >= 0) {
        return r;
    }
    struct sd_store_handle *st = NULL;
    struct sd_target t = {0};
    if ((r = one(data, id, &st, &t)) != 0) {
        return r;
    }
    json_t *view = sd_target_config_view(&t);
    char *text = json_dumps(view, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", text);
    free(text);
    json_decref(view);
    sd_target_release(&t);
    sd_store_close(st);
    return SD_EXIT_OK;
}

static int target_update(int argc, char **argv)
{
    struct target_opts o = {.data = SD_DEFAULT_DATA_DIR};
    const char *pos[1];
    struct sd_cli_opt opts[] = {{"--data", true, &o.data, NULL},
                                {"--url", true, &o.url, NULL},
                                {"--app-key", true, &o.app_key, NULL},
                                {"--secure-token", true, &o.secure_token, NULL},
                                {"--segments-per-hour", true, &o.per_hour, NULL},
                                {"--source", true, &o.source, NULL},
                                {"--no-source", false, NULL, &o.no_source},
                                {"--timeout", true, &o.timeout, NULL},
                                {"--name", true, &o.name, NULL},
                                {0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 1, usage_update);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 1) {
        return sd_cli_usage_error("target update needs a TARGET_ID");
    }
    json_t *body = NULL;
    int r = build_body(&o, false, &body);
    if (r) {
        return r;
    }
    struct sd_store_handle *st = NULL;
    struct sd_target t = {0};
    if ((r = one(o.data, pos[0], &st, &t)) != 0) {
        json_decref(body);
        return r;
    }
    struct sd_tenant ten = {.id = t.tenant_id, .client_id = t.client_id};
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    r = sd_target_config_update(st, &ten, t.id, body, &errors);
    int rc = SD_EXIT_OK;
    if (r == -EINVAL) {
        rc = sd_cli_print_issues(&errors);
    } else if (r < 0) {
        rc = sd_cli_fail("cannot update the target: %s", strerror(-r));
    } else {
        printf("updated %s\n", t.id);
    }
    sd_issues_release(&errors);
    json_decref(body);
    sd_target_release(&t);
    sd_store_close(st);
    return rc;
}

static int target_remove(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *id = NULL;
    int r = sd_cli_parse_id(argc, argv, usage_remove, "target", "remove", "TARGET_ID", &data, &id);
    if (r >= 0) {
        return r;
    }
    struct sd_store_handle *st = NULL;
    if ((r = sd_cli_open_store(data, &st)) != 0) {
        return r;
    }
    r = sd_target_config_delete(st, id);
    sd_store_close(st);
    if (r == -ENOENT) {
        return sd_cli_fail("no target '%s'", id);
    }
    if (r < 0) {
        return sd_cli_fail("cannot remove the target: %s", strerror(-r));
    }
    printf("removed %s\n", id);
    return SD_EXIT_OK;
}

int sd_cmd_target(int argc, char **argv)
{
    static const struct sd_cli_subcommand subs[] = {
        {"add", target_add},       {"list", target_list},     {"show", target_show},
        {"update", target_update}, {"remove", target_remove}, {NULL, NULL},
    };
    return sd_cli_dispatch("target", subs, usage_target, argc, argv);
}
