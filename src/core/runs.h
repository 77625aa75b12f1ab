/* runs.h — the run history of connector instances: one row per finished run, written where a
 * run ends (core/connector_run.c) and shown by the API (the runs list, a connector's
 * "last_run"). The rows live in the store (store/runs.h). */
#ifndef SD_CORE_RUNS_H
#define SD_CORE_RUNS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/hub.h"
#include "store/runs.h"
#include "store/store.h"

/* How a run ended, as connector_run.c knows it. */
struct sd_run_end {
    const char *trigger; /* "schedule", "run_now" or "resume" */
    int64_t started_usec;
    int64_t finished_usec;
    int result;        /* the connector's result: 0 or a negative errno */
    bool cancelled;    /* the hub or the scheduler stopped it (-ECANCELED, stop flag) */
    const char *error; /* the connector's message about the run (no record values) */
    uint64_t records_in, records_rejected, records_unchanged;
    bool dry_run;
};

/* Record the run of conf that ended as `end` (a new run id), fenced by the run's lease token
 * (0: none): a run that lost its lease records nothing (-ESTALE, not logged as a failure).
 * Other failures are logged, never fatal to the run. Returns 0 or a negative errno. */
int sd_runs_record(struct sd_hub *hub, const struct sd_connector_conf *conf, int64_t fence,
                   const struct sd_run_end *end);

/* A run as the API shows it: {"run_id", "connector_id", "environment", "trigger",
 * "started_at", "finished_at", "duration_ms", "status", "records_in", "records_rejected",
 * "records_unchanged", "error", "dry_run"}. New reference. */
json_t *sd_run_json(const struct sd_run *run);

/* The newest run of connector_id of tenant_id as sd_run_json, or JSON null if it never
 * finished one (or the history cannot be read). New reference. */
json_t *sd_runs_last_json(struct sd_store_handle *st, int64_t tenant_id, const char *connector_id);

/* The word of a trigger for a run of conf about to start, from the committed state it starts
 * from and the connector's latest "run now" request (read from the store): "resume" (a run was
 * cut short), "run_now" (a request newer than the last run) or "schedule". */
const char *sd_runs_trigger(struct sd_hub *hub, const struct sd_connector_conf *conf,
                            const json_t *state);

#endif
