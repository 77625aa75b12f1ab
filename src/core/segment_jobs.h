/* segment_jobs.h — the segment workers: computations of segment members (counts and member
 * pages) run here, off the HTTP threads, on a small pool of low-priority threads with a bounded
 * queue, a per-tenant limit and a budget per computation.
 *
 * Why: a segment rule can be made expensive on purpose (dozens of `spend` leaves read every sale
 * once each). Computed on the HTTP threads — one per core — a few such requests held every
 * thread, so /healthz and every tenant's webhook waited for them. Here they wait for a worker
 * instead, and what does not fit is refused at once:
 *  - a tenant has at most `tenant_max` computations in the hub (running or waiting), and at
 *    most `tenant_running_max` of them running: another tenant's job always finds a worker
 *    first (-EBUSY, the API's 429);
 *  - at most `queue_max` computations wait, all tenants together (-EAGAIN, the API's 503);
 *  - each computation gets a budget (struct sd_seg_budget: CPU time `budget_usec`, the clock
 *    ten times that) and the pool's stop flag, which the store checks while it computes.
 * Workers run at the lowest scheduling priority (SCHED_IDLE, or nice 19 where that is refused),
 * so on a small machine the webhook's threads and the writer always get the CPU first and a
 * computation uses only what they leave. There are at most SD_SEGMENT_WORKERS_MAX workers, each
 * holding one read connection of the store at a time: the store's read pool (8) always keeps
 * connections for the HTTP threads and the delivery workers.
 *
 * Thread rules: submit from any thread; run and done are called on a worker thread (done also
 * on the thread calling sd_segment_jobs_stop, for jobs that never ran). A job belongs to the
 * caller again once done has been called; the pool never touches it afterwards. */
#ifndef SD_CORE_SEGMENT_JOBS_H
#define SD_CORE_SEGMENT_JOBS_H

#include <stdbool.h>
#include <stdint.h>

#include "store/audience.h"

#define SD_SEGMENT_WORKERS_MAX 4
#define SD_SEGMENT_BUDGET_DEFAULT_USEC (60 * 1000000LL)
#define SD_SEGMENT_BUDGET_MAX_SEC 3600
/* The clock allows this many times the CPU budget (a computation that waits for the disk or
 * for the CPU is not charged CPU time, but it still ends). */
#define SD_SEGMENT_WALL_FACTOR 10

struct sd_segment_jobs_config {
    unsigned workers;            /* 1 .. SD_SEGMENT_WORKERS_MAX (default 2) */
    unsigned queue_max;          /* waiting computations, all tenants (default 8) */
    unsigned tenant_max;         /* one tenant's computations, running or waiting (default 2) */
    unsigned tenant_running_max; /* one tenant's computations running at once (default 1) */
    int64_t budget_usec;         /* CPU time per computation (default 60 s) */
    bool normal_priority;        /* tests only: leave the workers at the process's priority */
};
/* The defaults above. */
void sd_segment_jobs_config_default(struct sd_segment_jobs_config *cfg);

struct sd_segment_job {
    int64_t tenant_id;
    /* On a worker: compute within budget; the result is handed to done. */
    int (*run)(struct sd_segment_job *job, const struct sd_seg_budget *budget);
    /* Called once: with run's result, or -ECANCELED if the pool stopped before the job ran. */
    void (*done)(struct sd_segment_job *job, int result);
    /* the pool's */
    struct sd_segment_job *next;
};

struct sd_segment_jobs;

/* Start the workers. -EINVAL for a configuration out of range, -errno if a thread cannot
 * start. */
int sd_segment_jobs_new(const struct sd_segment_jobs_config *cfg, struct sd_segment_jobs **ret);
/* Queue job. 0: queued (done will be called). Refused, done is NOT called and *ret_retry_after
 * says in how many seconds (1 .. 60) a retry may succeed, an estimate from recent computations:
 * -EBUSY the tenant already has tenant_max computations, -EAGAIN queue_max are waiting,
 * -ESHUTDOWN the pool is stopping. */
int sd_segment_jobs_submit(struct sd_segment_jobs *p, struct sd_segment_job *job,
                           unsigned *ret_retry_after);
/* The budget a computation gets (for callers that compute on their own thread, e.g. the
 * delivery worker): CPU and clock as configured, no cancel flag. */
struct sd_seg_budget sd_segment_jobs_budget(const struct sd_segment_jobs *p);
/* Change the CPU budget of computations that start from now on (1 s ..
 * SD_SEGMENT_BUDGET_MAX_SEC). */
int sd_segment_jobs_set_budget(struct sd_segment_jobs *p, int64_t budget_usec);
/* Stop: refuse new jobs, cancel running ones (their computation stops within milliseconds and
 * done gets its -ECANCELED), call done(-ECANCELED) for the waiting ones, and join the workers.
 * Idempotent. */
void sd_segment_jobs_stop(struct sd_segment_jobs *p);
/* Stop, then free. NULL is fine. */
void sd_segment_jobs_free(struct sd_segment_jobs *p);

#endif
