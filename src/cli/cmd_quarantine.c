/* cmd_quarantine.c — the CLI face of raw-first vendor webhooks (core/inbound.h):
 *   stagedoor quarantine list CLIENT_ID [--connector ID] [--env test|prod] [--data DIR]
 *   stagedoor quarantine replay CONNECTOR_ID [--from T --to T] [--data DIR]
 *   stagedoor connector rotate-token CONNECTOR_ID [--data DIR]
 * Replay opens the hub's writer like `profile erase`; a running server's writer and this one
 * take turns on the store's write lock. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/connector_config.h"
#include "core/hub.h"
#include "core/inbound.h"
#include "store/inbound.h"

static const char usage_quarantine[] =
    "usage: stagedoor quarantine <list|replay> ...\n"
    "  quarantine list CLIENT_ID [--connector CONNECTOR_ID] [--env test|prod] [--data DIR]\n"
    "  quarantine replay CONNECTOR_ID [--from RFC3339 --to RFC3339] [--data DIR]\n"
    "Vendor webhook objects that could not be mapped, and their replay through the current\n"
    "mapping (with --from/--to: every payload received in [from, to)).\n";

static const char usage_rotate[] =
    "usage: stagedoor connector rotate-token CONNECTOR_ID [--data DIR]\n"
    "Make a new inbound door token; the old URL stops working at once. The new path is\n"
    "printed once.\n";

static void print_doors(struct sd_store_handle *st, const char *connector_id, const char *token);

static int quarantine_list(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *connector = NULL, *envs = NULL, *pos[1];
    struct sd_cli_opt opts[] = {{"--data", true, &data, NULL},
                                {"--connector", true, &connector, NULL},
                                {"--env", true, &envs, NULL},
                                {0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 1, usage_quarantine);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 1) {
        return sd_cli_usage_error("quarantine list needs a CLIENT_ID");
    }
    enum sd_env env = (enum sd_env) - 1;
    if (envs && sd_env_parse(envs, &env) < 0) {
        return sd_cli_usage_error("--env must be test or prod");
    }
    struct sd_store_handle *st = NULL;
    int r = sd_cli_open_store(data, &st);
    if (r) {
        return r;
    }
    struct sd_tenant t = {0};
    int rc = SD_EXIT_OK;
    r = sd_store_tenant_get(st, pos[0], &t);
    if (r == -ENOENT) {
        rc = sd_cli_fail("no tenant '%s'", pos[0]);
    } else if (r < 0) {
        rc = sd_cli_fail("cannot read the tenant: %s", strerror(-r));
    }
    int64_t after = 0;
    while (rc == SD_EXIT_OK) {
        struct sd_inbound_quarantined *v = NULL;
        size_t nv = 0;
        r = sd_store_inbound_quarantine_list(st, t.id, env, connector, after, SD_INBOUND_LIST_MAX,
                                             &v, &nv);
        if (r < 0) {
            rc = sd_cli_fail("cannot list the quarantine: %s", strerror(-r));
            break;
        }
        for (size_t i = 0; i < nv; i++) {
            char when[32];
            sd_cli_format_time(v[i].received_usec, when);
            char idx[24] = "payload";
            if (v[i].idx >= 0) {
                snprintf(idx, sizeof(idx), "%lld", (long long)v[i].idx);
            }
            printf("%lld\t%s\tpayload %lld\tobject %s\treceived %s\t%s\n", (long long)v[i].id,
                   v[i].connector_id, (long long)v[i].raw_id, idx, when, v[i].reason);
            after = v[i].id;
        }
        sd_inbound_quarantined_free(v, nv);
        if (nv < SD_INBOUND_LIST_MAX) {
            break;
        }
    }
    sd_tenant_release(&t);
    sd_store_close(st);
    return rc;
}

static int parse_time(const char *s, int64_t *ret)
{
    char utc[64];
    int y, mo, d, h, mi, sec;
    if (sd_datetime_to_utc(s, utc, sizeof(utc)) < 0 ||
        sscanf(utc, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec) != 6) {
        return -EINVAL;
    }
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    *ret = (int64_t)timegm(&tm) * 1000000;
    return 0;
}

static int quarantine_replay(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *from = NULL, *to = NULL, *pos[1];
    struct sd_cli_opt opts[] = {{"--data", true, &data, NULL},
                                {"--from", true, &from, NULL},
                                {"--to", true, &to, NULL},
                                {0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 1, usage_quarantine);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 1) {
        return sd_cli_usage_error("quarantine replay needs a CONNECTOR_ID");
    }
    int64_t from_usec = 0, to_usec = 0;
    if ((from != NULL) != (to != NULL)) {
        return sd_cli_usage_error("--from and --to go together");
    }
    if ((from && parse_time(from, &from_usec) < 0) || (to && parse_time(to, &to_usec) < 0)) {
        return sd_cli_usage_error("--from and --to must be RFC 3339 date-times");
    }
    struct sd_hub *hub = NULL;
    int r = sd_hub_open(data, sd_cli_store_location(), &hub);
    if (r < 0) {
        return sd_cli_fail("cannot open the store in '%s': %s", data, strerror(-r));
    }
    struct sd_connector_conf c = {0};
    int rc = SD_EXIT_OK;
    r = sd_store_connector_get(hub->store, pos[0], &c);
    if (r == -ENOENT || (r == 0 && !sd_inbound_type_has_door(c.type))) {
        rc = sd_cli_fail("no connector '%s' with an inbound door", pos[0]);
    } else if (r < 0) {
        rc = sd_cli_fail("cannot read the connector: %s", strerror(-r));
    } else {
        struct sd_inbound_replay res = {0};
        r = sd_inbound_replay(hub, &c, from != NULL, from_usec, to_usec, &res);
        if (r < 0) {
            rc = sd_cli_fail("replay failed: %s", strerror(-r));
        } else {
            printf("replayed %zu payloads: %zu objects, %zu applied, %zu still quarantined, "
                   "%zu skipped (erased person)\n",
                   res.payloads, res.objects, res.applied, res.quarantined, res.skipped_erased);
        }
    }
    sd_connector_conf_release(&c);
    sd_hub_close(hub);
    return rc;
}

int sd_cmd_quarantine(int argc, char **argv)
{
    static const struct sd_cli_subcommand subs[] = {
        {"list", quarantine_list},
        {"replay", quarantine_replay},
        {NULL, NULL},
    };
    return sd_cli_dispatch("quarantine", subs, usage_quarantine, argc, argv);
}

int sd_cmd_connector_rotate_token(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *id = NULL;
    int r = sd_cli_parse_id(argc, argv, usage_rotate, "connector", "rotate-token", "CONNECTOR_ID",
                            &data, &id);
    if (r >= 0) {
        return r;
    }
    struct sd_store_handle *st = NULL;
    if ((r = sd_cli_open_store(data, &st)) != 0) {
        return r;
    }
    char *token = NULL;
    r = sd_inbound_token_rotate(st, id, &token);
    if (r == 0) {
        print_doors(st, id, token);
    }
    sd_store_close(st);
    if (r == -ENOENT) {
        return sd_cli_fail("no connector '%s'", id);
    }
    if (r == -EINVAL) {
        return sd_cli_fail("connector '%s' has no inbound door", id);
    }
    if (r < 0) {
        return sd_cli_fail("cannot rotate the token: %s", strerror(-r));
    }
    free(token);
    return SD_EXIT_OK;
}

void sd_cmd_print_door(const char *connector_id, const char *token)
{
    char *path = sd_inbound_path(connector_id, token);
    printf("inbound door (shown once; POST the vendor's payloads here): %s\n", path);
    free(path);
}

/* A type with streams: one URL per stream instead of the plain door. */
static void print_doors(struct sd_store_handle *st, const char *connector_id, const char *token)
{
    struct sd_connector_conf c = {0};
    json_t *streams = NULL;
    if (sd_store_connector_get(st, connector_id, &c) == 0) {
        streams = sd_inbound_stream_paths(c.type, c.settings, connector_id, token);
    }
    sd_connector_conf_release(&c);
    if (!streams) {
        sd_cmd_print_door(connector_id, token);
        return;
    }
    const char *name;
    json_t *path;
    json_object_foreach(streams, name, path)
    {
        printf("inbound stream %s (shown once; POST the vendor's payloads here): %s\n", name,
               json_string_value(path));
    }
    json_decref(streams);
}

int sd_cmd_connector_open_door(const char *data, const char *connector_id)
{
    struct sd_store_handle *st = NULL;
    int r = sd_cli_open_store(data, &st);
    if (r) {
        return r;
    }
    struct sd_connector_conf c = {0};
    int rc = SD_EXIT_OK;
    if (sd_store_connector_get(st, connector_id, &c) == 0 && sd_inbound_type_has_door(c.type)) {
        char *token = NULL;
        r = sd_inbound_token_rotate(st, connector_id, &token);
        if (r < 0) {
            rc = sd_cli_fail("the connector was added, but its door token was not made (%s); "
                             "run `stagedoor connector rotate-token %s`",
                             strerror(-r), connector_id);
        } else {
            print_doors(st, connector_id, token);
        }
        free(token);
    }
    sd_connector_conf_release(&c);
    sd_store_close(st);
    return rc;
}
