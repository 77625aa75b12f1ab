/* hub.c — start-up and shutdown order of the hub's parts: store, writer, auth view, rate
 * limiter, segment workers. Shutdown stops the segment workers (they read the store) and
 * drains the writer before the store closes so no accepted job is lost. */
#include "core/hub.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "base/base.h"
#include "base/log.h"
#include "core/quality.h"
#include "core/segment_jobs.h"
#include "http/egress.h"

int sd_hub_open(const char *data_dir, const char *store, struct sd_hub **ret)
{
    struct sd_hub *hub = sd_calloc(1, sizeof(*hub));
    hub->data_dir = sd_strdup(data_dir);
    int r = 0;
    if (store && mkdir(data_dir, 0700) < 0 && errno != EEXIST) {
        r = -errno; /* SQLite's backend makes its own folder; PostgreSQL's has none */
        goto fail;
    }
    r = sd_store_open(store ? "postgresql" : "sqlite", store ? store : data_dir, &hub->store);
    if (r < 0) {
        goto fail;
    }
    sd_egress_set_data_dir(data_dir); /* path settings may never name it */
    r = sd_writer_new(hub->store, &hub->writer);
    if (r < 0) {
        goto fail;
    }
    r = sd_auth_new(hub->store, &hub->auth);
    if (r < 0) {
        goto fail;
    }
    hub->quality = sd_quality_new();
    hub->ratelimiter = sd_ratelimiter_new();
    sd_ratelimiter_share(hub->ratelimiter, hub->store); /* several nodes: one limit per tenant */
    struct sd_segment_jobs_config cfg;
    sd_segment_jobs_config_default(&cfg);
    r = sd_segment_jobs_new(&cfg, &hub->segment_jobs);
    if (r < 0) {
        goto fail;
    }
    *ret = hub;
    return 0;
fail:
    sd_hub_close(hub);
    return r;
}

void sd_hub_close(struct sd_hub *hub)
{
    if (!hub) {
        return;
    }
    sd_segment_jobs_free(hub->segment_jobs);
    sd_writer_free(hub->writer);
    sd_auth_free(hub->auth);
    sd_ratelimiter_free(hub->ratelimiter);
    sd_quality_free(hub->quality);
    sd_store_close(hub->store);
    free(hub->data_dir);
    free(hub);
}
