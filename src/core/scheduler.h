/* scheduler.h — runs the connectors configured in the store on their schedules.
 *
 * One thread watches the store's settings version (every 250 ms) and reloads the connector
 * list when it changes, so instances added, changed, removed or asked to "run now" by the admin
 * API or the CLI (another process) are seen within a second. Each due instance runs on a
 * thread of its own; one instance never runs twice at once; at most SD_SCHEDULER_MAX_RUNS
 * instances run together (the rest wait, in due order). The next run time comes from the
 * committed state (last_run_usec), so schedules survive restarts, and a run cut short by a
 * crash is simply due again and resumes from its committed cursor. Folders named by a
 * connector's watch_dir are watched with inotify (plus the schedule as a periodic rescan) and
 * trigger a run as soon as something lands.
 *
 * Thread rules: new/free from the main thread; wake/live from any thread. */
#ifndef SD_CORE_SCHEDULER_H
#define SD_CORE_SCHEDULER_H

#include <jansson.h>

#include "core/hub.h"

#define SD_SCHEDULER_MAX_RUNS 4

struct sd_scheduler;

int sd_scheduler_new(struct sd_hub *hub, struct sd_scheduler **ret);
/* Asks running connectors to stop at their next safe point, waits for them, stops. NULL ok. */
void sd_scheduler_free(struct sd_scheduler *s);
/* Look at the store again now (after a "run now" request). */
void sd_scheduler_wake(struct sd_scheduler *s);
/* Live facts of an instance for its status: {"running": bool, "run_started_usec",
 * "progress", "next_run_usec"}; NULL if the scheduler does not know the id. New reference. */
json_t *sd_scheduler_live(struct sd_scheduler *s, const char *id);

#endif
