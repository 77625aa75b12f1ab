/* hub.h — the running hub: the store, its single writer, the auth view and the rate limiter,
 * wired together once at start-up and torn down in reverse order. API handlers reach
 * everything they need through this struct; nothing here is global. */
#ifndef SD_CORE_HUB_H
#define SD_CORE_HUB_H

#include "core/auth.h"
#include "core/writer.h"
#include "core/ratelimit.h"
#include "store/store.h"

struct sd_scheduler;
struct sd_outbox;
struct sd_segment_jobs;

struct sd_hub {
    char *data_dir;
    struct sd_store_handle *store;
    struct sd_writer *writer;
    struct sd_auth *auth;
    struct sd_ratelimiter *ratelimiter;
    char admin_hash[65];              /* SHA-256 of the admin token; "" = admin API closed */
    struct sd_scheduler *scheduler;   /* connector runs; only while serving (NULL otherwise) */
    struct sd_outbox *outbox;         /* audience push worker; only while serving (or NULL) */
    /* segment computations (core/segment_jobs.h) */
    struct sd_segment_jobs *segment_jobs;
    /* data-quality and traffic counters (core/quality.h) */
    struct sd_quality *quality;
    struct sd_alerts *alerts; /* alert worker (core/alerts.h); only while serving (or NULL) */
};

/* Open the store, start the writer and the segment workers (default configuration). store
 * NULL: the SQLite store in data_dir; otherwise a PostgreSQL conninfo or postgresql:// URL.
 * data_dir is created if missing either way: it holds the node's local things (connector work
 * folders, the admin token). */
int sd_hub_open(const char *data_dir, const char *store, struct sd_hub **ret);
/* Stops the segment workers (cancelling what runs), drains the writer, then closes
 * everything. NULL is fine. */
void sd_hub_close(struct sd_hub *hub);

#endif
