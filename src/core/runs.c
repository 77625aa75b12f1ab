/* runs.c — the run history of connector instances (core/runs.h).
 *
 * A row is written once the run's final state document is committed, fenced by the same lease
 * token: if another node took the lease over, the state commit and this record both fail with
 * -ESTALE and the history shows only the run of the node that holds the lease. The error text
 * is the connector's own message (the same text the state document's last_error carries), cut
 * to SD_RUN_ERROR_MAX bytes on a character boundary. */
#include "core/runs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "base/utf8.h"
#include "core/alerts.h"
#include "core/connector_config.h"

const char *sd_runs_trigger(struct sd_hub *hub, const struct sd_connector_conf *conf,
                            const json_t *state)
{
    /* The scheduler's copy of conf keeps its configuration between changes, not its latest
     * "run now" request: that is read from the store. */
    int64_t run_requested_usec = conf->run_requested_usec;
    struct sd_connector_conf fresh = {0};
    if (sd_store_connector_get(hub->store, conf->id, &fresh) == 0) {
        run_requested_usec = fresh.run_requested_usec;
        sd_connector_conf_release(&fresh);
    }
    const json_t *lr = json_object_get(state, "last_run_usec");
    const json_t *rs = json_object_get(state, "run_started_usec");
    int64_t last = json_is_integer(lr) ? json_integer_value(lr) : 0;
    if (json_is_integer(rs) && json_integer_value(rs) > last) {
        return "resume";
    }
    return run_requested_usec > last ? "run_now" : "schedule";
}

int sd_runs_record(struct sd_hub *hub, const struct sd_connector_conf *conf, int64_t fence,
                   const struct sd_run_end *end)
{
    uint8_t rnd[8];
    int r = sd_random_bytes(rnd, sizeof(rnd));
    if (r < 0) {
        return r;
    }
    char run_id[SD_RUN_WORD_MAX + 1];
    snprintf(run_id, sizeof(run_id), "run_%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
             rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    char *error = NULL;
    if (end->result != 0 && end->error) {
        char *whole = sd_utf8_repair(end->error, strlen(end->error));
        error = sd_strndup(whole, sd_utf8_prefix_len(whole, strlen(whole), SD_RUN_ERROR_MAX));
        free(whole);
    }
    enum sd_run_status status = end->result == 0 ? SD_RUN_OK
                                : end->cancelled ? SD_RUN_CANCELLED
                                                 : SD_RUN_FAILED;
    struct sd_run run = {.run_id = run_id,
                         .tenant_id = conf->tenant_id,
                         .env = conf->env,
                         .connector_id = conf->id,
                         .trigger = (char *)end->trigger,
                         .started_usec = end->started_usec,
                         .finished_usec = end->finished_usec < end->started_usec
                                              ? end->started_usec
                                              : end->finished_usec,
                         .status = status,
                         .records_in = (int64_t)end->records_in,
                         .records_rejected = (int64_t)end->records_rejected,
                         .records_unchanged = (int64_t)end->records_unchanged,
                         .error = error,
                         .dry_run = end->dry_run};
    r = sd_store_run_record(hub->store, &run, fence);
    if (r == 0) {
        /* the facts of a run's end: failures in a row, a record-count drop, rejected rows */
        sd_alerts_run_end(hub, conf, run_id, end);
    } else if (r != -ESTALE) {
        sd_log(SD_LOG_WARN, "connector run not added to the run history",
               "connector=%s " SD_LOG_ERR_FMT, conf->id, SD_LOG_ERR_ARGS(r));
    }
    free(error);
    return r;
}

json_t *sd_run_json(const struct sd_run *run)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:I, s:s, s:I, s:I, s:I, s:o, s:b}", "run_id",
                     run->run_id, "connector_id", run->connector_id, "environment",
                     sd_env_name(run->env), "trigger", run->trigger, "started_at",
                     sd_json_time(run->started_usec), "finished_at",
                     sd_json_time(run->finished_usec), "duration_ms",
                     (json_int_t)((run->finished_usec - run->started_usec) / 1000), "status",
                     sd_run_status_name(run->status), "records_in", (json_int_t)run->records_in,
                     "records_rejected", (json_int_t)run->records_rejected, "records_unchanged",
                     (json_int_t)run->records_unchanged, "error",
                     run->error ? json_string(run->error) : json_null(), "dry_run", run->dry_run);
}

json_t *sd_runs_last_json(struct sd_store_handle *st, int64_t tenant_id, const char *connector_id)
{
    struct sd_run *v = NULL;
    size_t n = 0;
    if (sd_store_run_list(st, tenant_id, connector_id, 0, 1, &v, &n) < 0 || n == 0) {
        return json_null();
    }
    json_t *o = sd_run_json(&v[0]);
    sd_runs_free(v, n);
    return o;
}
