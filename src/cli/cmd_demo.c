/* cmd_demo.c — `stagedoor demo`: a hub with something in it, in one command.
 *
 * Creates the tenant `demo` and a TEST key (printed), loads a generated season of a fictional
 * opera house (200 performances, 20,000 customers, 150,000 sales) through the same validation
 * and store path as the webhook (the `demo_season` source connector) — unless the demo data is
 * already there — and serves. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "cli/cli.h"
#include "cli/serve.h"
#include "core/connector.h"
#include "demo/season.h"

static const char usage_demo[] =
    "usage: stagedoor demo [--data DIR] [--listen HOST:PORT] [serve options]\n"
    "Creates tenant 'demo' with a new TEST key (printed), loads a generated opera season\n"
    "(200 performances, 20,000 customers, 150,000 sales) if not loaded yet, then serves like\n"
    "`stagedoor serve` (same options).\n";

#define DEMO_CLIENT "demo"

static int load_season(struct sd_hub *hub, int64_t tenant_id)
{
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    uint64_t records = 0;
    int r = sd_connector_run_source(hub, "demo_season", tenant_id, SD_ENV_TEST, "demo", NULL,
                                    &errors, &records);
    if (r == 0) {
        printf("loaded demo season: %llu records (%d events, %d customers, %d sales)\n",
               (unsigned long long)records, SD_SEASON_DEFAULT_EVENTS, SD_SEASON_DEFAULT_CUSTOMERS,
               SD_SEASON_DEFAULT_SALES);
        fflush(stdout);
    } else if (errors.n) {
        fprintf(stderr, "stagedoor: %s: %s\n", errors.items[0].pointer, errors.items[0].message);
    }
    sd_issues_release(&errors);
    return r;
}

static void print_hint(const struct sd_serve_opts *o, int port, void *arg)
{
    const char *key = arg;
    bool v6 = strchr(o->host, ':') != NULL;
    printf("try: curl -H 'Authorization: Bearer %s' '%s://%s%s%s:%d/v1/demo/events?limit=2'\n", key,
           o->cfg.tls_cert ? "https" : "http", v6 ? "[" : "", o->host, v6 ? "]" : "", port);
}

int sd_cmd_demo(int argc, char **argv)
{
    struct sd_serve_opts o = {0};
    struct sd_hub *hub = NULL;
    int r = sd_serve_prepare(argc, argv, usage_demo, &o, &hub);
    if (r >= 0) {
        return r;
    }
    r = sd_store_tenant_create(hub->store, DEMO_CLIENT, "Staatsoper Lindenhof (demo)");
    struct sd_tenant t = {0};
    if ((r < 0 && r != -EEXIST) || (r = sd_store_tenant_get(hub->store, DEMO_CLIENT, &t)) < 0) {
        sd_hub_close(hub);
        return sd_cli_fail("cannot create the demo tenant: %s", strerror(-r));
    }
    int64_t events = 0;
    r = sd_store_count_records(hub->store, SD_KIND_EVENT, t.id, SD_ENV_TEST, &events);
    if (r == 0 && events == 0) {
        printf("loading the demo season (150,000 sales)...\n");
        fflush(stdout);
        r = load_season(hub, t.id);
    }
    sd_tenant_release(&t);
    if (r < 0) {
        sd_hub_close(hub);
        return sd_cli_fail("cannot load the demo data: %s", strerror(-r));
    }
    char *key = NULL, *key_id = NULL;
    r = sd_key_create(hub->store, DEMO_CLIENT, SD_ENV_TEST, &key, &key_id);
    if (r < 0) {
        sd_hub_close(hub);
        return sd_cli_fail("cannot create the demo key: %s", strerror(-r));
    }
    sd_auth_refresh(hub->auth);
    printf("demo tenant: %s, TEST key id %s\nTEST API key (shown once): %s\n", DEMO_CLIENT, key_id,
           key);
    fflush(stdout);
    o.on_listening = print_hint;
    o.on_listening_arg = key;
    r = sd_serve_run(hub, &o);
    free(key);
    free(key_id);
    sd_hub_close(hub);
    return r;
}
