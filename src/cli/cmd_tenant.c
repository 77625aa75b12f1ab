/* cmd_tenant.c — `stagedoor tenant create|list|limits`: tenants and their webhook rate limit.
 * Works while a server runs on the same data directory (the server reloads within a second). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/auth.h"
#include "store/store.h"

static const char usage_tenant[] =
    "usage: stagedoor tenant <create|list|limits> ...\n"
    "  tenant create CLIENT_ID [--name NAME] [--data DIR]\n"
    "  tenant list [--data DIR]\n"
    "  tenant limits CLIENT_ID --per-minute N --burst N [--data DIR]\n"
    "CLIENT_ID is 1 to 64 of A-Z a-z 0-9 _ -. DIR defaults to " SD_DEFAULT_DATA_DIR ".\n";

static const char usage_create[] =
    "usage: stagedoor tenant create CLIENT_ID [--name NAME] [--data DIR]\n"
    "Creates a tenant (a venue or client of the hub). Default limits: 500 requests per minute,\n"
    "burst 1000, per environment.\n";
static const char usage_list[] = "usage: stagedoor tenant list [--data DIR]\n"
                                 "Lists tenants: client id, name, per-minute limit, burst, "
                                 "created (UTC).\n";
static const char usage_limits[] =
    "usage: stagedoor tenant limits CLIENT_ID --per-minute N --burst N [--data DIR]\n"
    "Sets the webhook token bucket of a tenant (each environment has its own bucket).\n";

static int tenant_create(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *name = NULL, *pos[1];
    struct sd_cli_opt opts[] = {{"--data", true, &data, NULL}, {"--name", true, &name, NULL}, {0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 1, usage_create);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 1) {
        return sd_cli_usage_error("tenant create needs a CLIENT_ID");
    }
    if (!sd_client_id_valid(pos[0])) {
        return sd_cli_bad_client_id(pos[0]);
    }
    if (name && strlen(name) > 200) {
        return sd_cli_usage_error("--name is longer than 200 characters");
    }
    struct sd_store_handle *st = NULL;
    int r = sd_cli_open_store(data, &st);
    if (r) {
        return r;
    }
    r = sd_store_tenant_create(st, pos[0], name ? name : pos[0]);
    sd_store_close(st);
    if (r == -EEXIST) {
        return sd_cli_fail("tenant '%s' already exists", pos[0]);
    }
    if (r < 0) {
        return sd_cli_fail("cannot create tenant '%s': %s", pos[0], strerror(-r));
    }
    printf("created tenant %s\n", pos[0]);
    return SD_EXIT_OK;
}

static int tenant_list(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR;
    struct sd_cli_opt opts[] = {{"--data", true, &data, NULL}, {0}};
    int n = sd_cli_parse(argc, argv, opts, NULL, 0, usage_list);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    struct sd_store_handle *st = NULL;
    int r = sd_cli_open_store(data, &st);
    if (r) {
        return r;
    }
    struct sd_tenant *t = NULL;
    size_t nt = 0;
    r = sd_store_tenant_list(st, &t, &nt);
    sd_store_close(st);
    if (r < 0) {
        return sd_cli_fail("cannot list tenants: %s", strerror(-r));
    }
    printf("%-24s %-24s %10s %8s  %s\n", "CLIENT_ID", "NAME", "PER_MINUTE", "BURST", "CREATED");
    for (size_t i = 0; i < nt; i++) {
        char created[32];
        sd_cli_format_time(t[i].created_usec, created);
        printf("%-24s %-24s %10lld %8lld  %s\n", t[i].client_id, t[i].name ? t[i].name : "",
               (long long)t[i].per_minute, (long long)t[i].burst, created);
    }
    sd_tenants_free(t, nt);
    return SD_EXIT_OK;
}

static int tenant_limits(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *pm = NULL, *burst = NULL, *pos[1];
    struct sd_cli_opt opts[] = {{"--data", true, &data, NULL},
                                {"--per-minute", true, &pm, NULL},
                                {"--burst", true, &burst, NULL},
                                {0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 1, usage_limits);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 1) {
        return sd_cli_usage_error("tenant limits needs a CLIENT_ID");
    }
    if (!sd_client_id_valid(pos[0])) {
        return sd_cli_bad_client_id(pos[0]);
    }
    if (!pm || !burst) {
        return sd_cli_usage_error("tenant limits needs --per-minute N and --burst N");
    }
    long long per_minute = sd_cli_positive("--per-minute", pm, 1000000000LL);
    if (per_minute < 0) {
        return SD_EXIT_USAGE;
    }
    long long b = sd_cli_positive("--burst", burst, 1000000000LL);
    if (b < 0) {
        return SD_EXIT_USAGE;
    }
    struct sd_store_handle *st = NULL;
    int r = sd_cli_open_store(data, &st);
    if (r) {
        return r;
    }
    r = sd_store_tenant_set_limits(st, pos[0], per_minute, b);
    sd_store_close(st);
    if (r == -ENOENT) {
        return sd_cli_fail("no tenant '%s'", pos[0]);
    }
    if (r < 0) {
        return sd_cli_fail("cannot set limits: %s", strerror(-r));
    }
    printf("tenant %s: %lld requests per minute, burst %lld\n", pos[0], per_minute, b);
    return SD_EXIT_OK;
}

int sd_cmd_tenant(int argc, char **argv)
{
    static const struct sd_cli_subcommand subs[] = {
        {"create", tenant_create},
        {"list", tenant_list},
        {"limits", tenant_limits},
        {NULL, NULL},
    };
    return sd_cli_dispatch("tenant", subs, usage_tenant, argc, argv);
}
