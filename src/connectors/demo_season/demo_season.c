/* demo_season.c — source connector "demo_season": a generated season of a fictional opera house
 * (demo/season.h), emitted through the hub's ingest path like any other source. `stagedoor
 * demo` runs it; it is also the smallest complete example of a source connector. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "base/log.h"
#include "core/connector.h"
#include "demo/season.h"

#define STR_(x) #x
#define STR(x) STR_(x) /* the defaults are season.h's sizes, as setting text */

struct demo_conf {
    int64_t seed, events, customers, sales, batch;
};

#define AT(member) offsetof(struct demo_conf, member)

static const struct sd_setting settings[] = {
    {"seed", SD_SETTING_INT, "20261001", 0, INT64_MAX, "generator seed (same seed, same data)",
     NULL, AT(seed)},
    {"events", SD_SETTING_INT, STR(SD_SEASON_DEFAULT_EVENTS), 1, 1000000, "performances", NULL,
     AT(events)},
    {"customers", SD_SETTING_INT, STR(SD_SEASON_DEFAULT_CUSTOMERS), 0, 100000000, "customers", NULL,
     AT(customers)},
    {"sales", SD_SETTING_INT, STR(SD_SEASON_DEFAULT_SALES), 0, 100000000, "ticket sales", NULL,
     AT(sales)},
    {"batch", SD_SETTING_INT, "2000", 1, 10000, "records per ingest body", NULL, AT(batch)},
    {NULL, 0, NULL, 0, 0, NULL, NULL, 0},
};

static int demo_run(struct sd_connector_ctx *ctx, void *state)
{
    (void)state;
    const struct demo_conf *conf = ctx->conf;
    struct sd_season *season = sd_season_new((uint64_t)conf->seed, (size_t)conf->events,
                                             (size_t)conf->customers, (size_t)conf->sales);
    if (!season) {
        return -EINVAL;
    }
    size_t batch = (size_t)conf->batch;
    int r = 0;
    json_t *body;
    while (r == 0 && (body = sd_season_next(season, batch)) != NULL) {
        struct sd_ingest_outcome out;
        sd_ingest_outcome_init(&out);
        r = sd_connector_emit(ctx, body, &out);
        if (r == 0 && out.status != 202) {
            sd_log(SD_LOG_ERROR, "demo data refused",
                   "connector=\"[demo_season/%s]\" status=%d duplicate_invoices=%zu"
                   " pointer=\"%s\" message=\"%s\"",
                   ctx->id, out.status, out.n_duplicate_invoices,
                   out.errors.n ? out.errors.items[0].pointer : "",
                   out.errors.n ? out.errors.items[0].message : "");
            r = -EINVAL;
        }
        sd_ingest_outcome_release(&out);
        json_decref(body);
    }
    sd_season_free(season);
    return r;
}

const struct sd_connector sd_connector_demo_season = {
    .name = "demo_season",
    .kind = SD_CONNECTOR_SOURCE,
    .help = "a generated opera season (events, customers, sales) for demos and benchmarks",
    .settings = settings,
    .settings_size = sizeof(struct demo_conf),
    .run = demo_run,
};
