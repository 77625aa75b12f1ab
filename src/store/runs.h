/* runs.h — the store's connector run history: one row per finished run of a connector
 * instance. Part of the one store interface (store.h): sd_store_ops.runs points to a backend's
 * `struct sd_store_runs_ops`; callers use the sd_store_run_* wrappers (store/runs.c), which
 * answer -ENOTSUP for a backend without one.
 *
 * The store keeps and lists; it does not judge. What a run's status, trigger and error are is
 * core's business (core/runs.c); the store checks only their shape.
 *
 * Obligations of every backend:
 *  - Path: any thread; each call is its own durable transaction and bumps no settings version
 *    (a run is history, not a setting: schedulers must not reload for it). It never runs
 *    inside the writer's transaction.
 *  - record with fence ≠ 0 is fenced like connector_state_put_fenced: it stores nothing and
 *    answers -ESTALE unless `fence` is still the token of the connector's run lease, checked in
 *    the same transaction as the insert (so a run that lost its lease records nothing).
 *  - At most SD_RUNS_KEEP rows per connector id: record deletes the oldest beyond that in the
 *    same transaction.
 *  - seq is assigned by the store, unique and increasing per store: the list's order (newest
 *    first) and its cursor.
 *
 * Errors: -EINVAL (bad arguments: see each op), -EEXIST (run_id already recorded), -ESTALE,
 * -EIO (backend failure, logged by the backend without values). */
#ifndef SD_STORE_RUNS_H
#define SD_STORE_RUNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define SD_RUNS_KEEP 1000     /* rows kept per connector */
#define SD_RUNS_PAGE_MAX 1000 /* most rows one list call returns */
#define SD_RUN_ERROR_MAX 1024 /* bytes of a run's error text */
#define SD_RUN_WORD_MAX 32    /* bytes of run_id, trigger */

enum sd_run_status {
    SD_RUN_OK = 0,
    SD_RUN_FAILED = 1,
    SD_RUN_CANCELLED = 2,
};
const char *sd_run_status_name(enum sd_run_status st); /* "ok", "failed", "cancelled" */

/* One finished run. Strings are heap-owned in what list returns (sd_runs_free); record only
 * reads them. */
struct sd_run {
    int64_t seq;  /* assigned by record; the list cursor */
    char *run_id; /* unique, at most SD_RUN_WORD_MAX bytes */
    int64_t tenant_id;
    enum sd_env env;
    char *connector_id;
    char *trigger; /* "schedule", "run_now", "resume" …: core's words, at most SD_RUN_WORD_MAX */
    int64_t started_usec;
    int64_t finished_usec; /* ≥ started_usec */
    enum sd_run_status status;
    int64_t records_in; /* stored by the run (of them records_unchanged already as they were) */
    int64_t records_rejected;
    int64_t records_unchanged;
    char *error; /* NULL: none; at most SD_RUN_ERROR_MAX bytes */
    bool dry_run;
};
void sd_runs_free(struct sd_run *v, size_t n);

struct sd_store_runs_ops {
    /* Store run (seq ignored) and prune its connector's rows to the newest SD_RUNS_KEEP.
     * fence: see above (0: not fenced). -EINVAL: a string NULL, empty or too long, env or
     * status out of range, a count negative, finished before started. */
    int (*record)(struct sd_store *s, const struct sd_run *run, int64_t fence);
    /* Runs of connector_id in tenant tenant_id (another tenant's runs are never returned),
     * newest first, those with seq < before_seq only (0: from the newest), at most limit
     * (1..SD_RUNS_PAGE_MAX). *ret is NULL when n is 0. */
    int (*list)(struct sd_store *s, int64_t tenant_id, const char *connector_id, int64_t before_seq,
                size_t limit, struct sd_run **ret, size_t *ret_n);
};

int sd_store_run_record(struct sd_store_handle *h, const struct sd_run *run, int64_t fence);
int sd_store_run_list(struct sd_store_handle *h, int64_t tenant_id, const char *connector_id,
                      int64_t before_seq, size_t limit, struct sd_run **ret, size_t *ret_n);
/* The shape checks of record, shared by the backends: true if run may be stored. */
bool sd_run_valid(const struct sd_run *run);

extern const struct sd_store_runs_ops sd_sqlite_runs_ops;
extern const struct sd_store_runs_ops sd_pg_runs_ops;

#endif
