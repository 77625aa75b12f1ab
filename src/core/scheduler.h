/* scheduler.h — runs the connectors configured in the store on their schedules.
 *
 * One thread watches the store's settings version (every 250 ms) and reloads the connector
 * list when it changes, so instances added, changed, removed or asked to "run now" by the admin
 * API or the CLI (another process) are seen within a second. Each due instance runs on a
 * thread of its own; one instance never runs twice at once; at most SD_SCHEDULER_MAX_RUNS
 * instances run together and at most SD_SCHEDULER_MAX_RUNS_PER_TENANT of one tenant, so one
 * tenant's slow runs cannot starve the others' schedules; the rest wait and are picked fairly
 * (sd_scheduler_pick). A "manual" connector runs only when asked: no folder watch. The next run
 * time comes from the committed state (last_run_usec), so schedules survive restarts, and a run cut
 * short by a crash is simply due again and resumes from its committed cursor. Folders named by a
 * connector's watch_dir are watched with inotify (plus the schedule as a periodic rescan) and
 * trigger a run as soon as something lands.
 *
 * Several nodes on one store: each scheduler has a node id (hostname/pid/random, logged at
 * start) and runs a due connector only under its run lease (store run_lease_take), renewed
 * every third of the lease while the run lasts and released at its end; every commit of the
 * run names the lease's fencing token, so a run whose lease was taken over stores nothing more
 * and stops at its next safe point. A node that dies leaves its lease to expire; another node
 * then takes the run over and resumes it from the committed cursor. The lease lasts
 * STAGEDOOR_RUN_LEASE_SECONDS (1 … 86400, default 900): longer than the longest HTTP timeout
 * a connector can be configured with (600 s). Renewals run on the scheduler's thread, not the
 * run's, so a run waiting on a slow request keeps its lease; the lease runs out only when the
 * node itself stalls or loses the store, and a run learns of a lost lease at its next safe
 * point, which may be one whole request away. A failover takes at most one lease plus a
 * quarter of it (at most 30 s). See scheduler.c for how a run is judged due.
 *
 * Thread rules: new/free from the main thread; wake/live from any thread. */
#ifndef SD_CORE_SCHEDULER_H
#define SD_CORE_SCHEDULER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/hub.h"

#define SD_SCHEDULER_MAX_RUNS 4
#define SD_SCHEDULER_MAX_RUNS_PER_TENANT 2

/* One connector instance as the pick sees it. */
struct sd_scheduler_candidate {
    int64_t tenant_id;
    int64_t due_usec; /* since when it is due (earliest of its schedule slot and any drop or
                         request); INT64_MAX when not due */
    bool running;
};

/* The run to start next among n candidates, or -1 when none may start: not while max_runs run
 * in all; never one that is running, not due, or whose tenant already runs max_per_tenant.
 * Fair across tenants: the tenant with the fewest runs going wins (round robin), then the one
 * that waited longest, then the lower index. Pure function (the scheduler's loop calls it with
 * its lock held; tests call it directly). */
ssize_t sd_scheduler_pick(const struct sd_scheduler_candidate *c, size_t n, size_t max_runs,
                          size_t max_per_tenant);

struct sd_scheduler;

/* The run lease length from STAGEDOOR_RUN_LEASE_SECONDS (out of range: the default, logged). */
int64_t sd_scheduler_lease_usec(void);

int sd_scheduler_new(struct sd_hub *hub, struct sd_scheduler **ret);
/* Asks running connectors to stop at their next safe point, waits for them, stops. NULL ok. */
void sd_scheduler_free(struct sd_scheduler *s);
/* Look at the store again now (after a "run now" request). */
void sd_scheduler_wake(struct sd_scheduler *s);
/* Live facts of an instance for its status: {"running": bool, "run_started_usec",
 * "progress", "next_run_usec"}; NULL if the scheduler does not know the id. New reference. */
json_t *sd_scheduler_live(struct sd_scheduler *s, const char *id);

#endif
