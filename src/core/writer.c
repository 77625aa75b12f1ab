/* writer.c — single writer thread with group commit (see writer.h for the contract).
 *
 * Invariants: only this thread touches the store's write path; a job's `done` is called only
 * after the COMMIT that contains its work returned success; once `broken` is set (a commit
 * failed in a way that leaves the store's state unknown) it never clears. A lost database
 * server (-ECONNRESET, store.h) is not broken: its group fails, the next one reconnects. `disk_full` is not a broken state: it is set by a group that ran out of space (the
 * store rolled it back whole, nothing of it is kept, no job after the failing one is run) and
 * cleared by the next group that commits; while it is set and no job comes, a probe group
 * (take and free 64 KiB) runs every PROBE_INTERVAL_S. Commit latency goes to the metrics. The
 * group hook (the outbox's wake-up) runs after every group's end, committed or not. */
#include "core/writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "base/base.h"
#include "base/fault.h"
#include "base/log.h"
#include "core/metrics.h"

struct sd_writer {
    struct sd_store_handle *st;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sd_write_job *head, *tail;
    bool stopping;
    atomic_bool broken;
    atomic_bool disk_full;
    sd_writer_group_fn hook; /* under mu, and called under mu (see sd_writer_set_group_hook) */
    void *hook_arg;
};

#define MAX_GROUP 1024 /* jobs per transaction: bounds the latency of the first job */
#define PROBE_INTERVAL_S 5

static int probe_run(struct sd_store_handle *st, struct sd_write_job *job)
{
    (void)job;
    int r = sd_store_space_probe(st);
    return r == -ENOTSUP ? 0 : r;
}

static void probe_done(struct sd_write_job *job, int result)
{
    (void)job;
    (void)result; /* run_group logs the change of state */
}

/* The group hook is called with mu held, so that removing it waits for a call in progress;
 * it never submits, and submitters hold mu only briefly, so nothing waits on the writer. */
static void group_end(struct sd_writer *w, bool committed)
{
    pthread_mutex_lock(&w->mu);
    if (w->hook) {
        w->hook(w->hook_arg, committed);
    }
    pthread_mutex_unlock(&w->mu);
}

static void fail_group(struct sd_writer *w, struct sd_write_job *j, int err)
{
    group_end(w, false);
    while (j) {
        struct sd_write_job *next = j->next;
        j->done(j, err);
        j = next;
    }
}

static void run_group(struct sd_writer *w, struct sd_write_job *group)
{
    if (atomic_load(&w->broken)) {
        fail_group(w, group, -EIO);
        return;
    }
    int r = sd_store_write_begin(w->st);
    if (r < 0) {
        /* Nothing was written: these requests fail (500, or 503 when the database server is
         * away; the client retries) but the store is not broken — typically another process
         * held the write lock past busy_timeout, or the server restarts. */
        sd_log(SD_LOG_ERROR, "store begin failed; failing this group", SD_LOG_ERR_FMT,
               SD_LOG_ERR_ARGS(r));
        fail_group(w, group, r == -ECONNRESET ? -ECONNRESET : -EIO);
        return;
    }
    bool full = false;
    for (struct sd_write_job *j = group; j && !full; j = j->next) {
        r = sd_store_savepoint(w->st);
        if (r < 0) {
            full = r == -ENOSPC;
            j->run_result = -EIO;
            continue;
        }
        int jr = j->run(w->st, j);
        if (jr == -ENOSPC) {
            full = true; /* the transaction may be gone: no savepoint work, no next job */
            break;
        }
        if (jr == 0) {
            r = sd_store_savepoint_release(w->st);
        } else {
            r = sd_store_savepoint_rollback(w->st);
            if (r == 0 && jr == 1 && j->after_undo) {
                jr = j->after_undo(w->st, j);
                full = jr == -ENOSPC;
                jr = jr == 1 ? 0 : jr;
            }
        }
        j->run_result = jr < 0 ? jr : 0;
        if (r < 0) {
            full = full || r == -ENOSPC;
            j->run_result = -EIO;
        }
    }
    int64_t t0 = sd_mono_usec();
    if (full) {
        r = -ENOSPC;
    } else {
        /* The store's commit answers -ENOSPC too when a job hid its statement's SQLITE_FULL. */
        r = sd_fault_hit("commit") ? -EIO : sd_store_write_commit(w->st);
    }
    sd_metrics_commit_observe(sd_mono_usec() - t0);
    if (r == -ENOSPC) {
        /* Nothing of the group was kept and the store is intact: the requests are answered
         * 503 with Retry-After, and the next group tries again. */
        sd_store_write_rollback(w->st);
        if (!atomic_exchange(&w->disk_full, true)) {
            sd_log(SD_LOG_ERROR, "store is full; writes are refused until space comes back",
                   "err=%d", r);
        }
        fail_group(w, group, -ENOSPC);
        return;
    }
    if (r == -ECONNRESET) {
        /* The database server went away (store.h): this group is not accepted — its commit
         * did not happen or its outcome is unknown — but the store is intact and the next
         * group reconnects. */
        sd_log(SD_LOG_ERROR, "store connection lost; failing this group", SD_LOG_ERR_FMT,
               SD_LOG_ERR_ARGS(r));
        sd_store_write_rollback(w->st);
        fail_group(w, group, -ECONNRESET);
        return;
    }
    if (r < 0) {
        atomic_store(&w->broken, true);
        sd_log(SD_LOG_ERROR, "store commit failed; store is broken until restart", SD_LOG_ERR_FMT,
               SD_LOG_ERR_ARGS(r));
        sd_store_write_rollback(w->st);
        fail_group(w, group, -EIO);
        return;
    }
    if (atomic_exchange(&w->disk_full, false)) {
        sd_log(SD_LOG_INFO, "store accepts writes again after running out of space", NULL);
    }
    group_end(w, true);
    while (group) {
        struct sd_write_job *next = group->next;
        group->done(group, group->run_result);
        group = next;
    }
}

static void *writer_main(void *arg)
{
    struct sd_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stopping) {
            if (!atomic_load(&w->disk_full)) {
                pthread_cond_wait(&w->cv, &w->mu);
                continue;
            }
            /* Out of space and idle: probe now and then, so the hub heals (and /healthz says
             * so) even when no request arrives — a load balancer stops sending them on 503. */
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += PROBE_INTERVAL_S;
            if (pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT && !w->head &&
                !w->stopping) {
                pthread_mutex_unlock(&w->mu);
                struct sd_write_job probe = {.run = probe_run, .done = probe_done};
                run_group(w, &probe);
                pthread_mutex_lock(&w->mu);
            }
        }
        if (!w->head && w->stopping) {
            break;
        }
        /* A job `alone` ends the group before it and is a group of its own. */
        struct sd_write_job *group = w->head, *last = group;
        size_t n = 1;
        while (!last->alone && last->next && !last->next->alone && n < MAX_GROUP) {
            last = last->next;
            n++;
        }
        w->head = last->next;
        if (!w->head) {
            w->tail = NULL;
        }
        last->next = NULL;
        pthread_mutex_unlock(&w->mu);
        run_group(w, group);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int sd_writer_new(struct sd_store_handle *st, struct sd_writer **ret)
{
    struct sd_writer *w = sd_calloc(1, sizeof(*w));
    w->st = st;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    atomic_init(&w->broken, false);
    atomic_init(&w->disk_full, false);
    int r = pthread_create(&w->thread, NULL, writer_main, w);
    if (r != 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w);
        return -r;
    }
    *ret = w;
    return 0;
}

void sd_writer_free(struct sd_writer *w)
{
    if (!w) {
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

int sd_writer_submit(struct sd_writer *w, struct sd_write_job *job)
{
    if (atomic_load(&w->broken)) {
        return -EIO;
    }
    job->next = NULL;
    job->run_result = 0;
    pthread_mutex_lock(&w->mu);
    if (w->stopping) {
        pthread_mutex_unlock(&w->mu);
        return -ESHUTDOWN;
    }
    if (w->tail) {
        w->tail->next = job;
    } else {
        w->head = job;
    }
    w->tail = job;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

struct sync_job {
    struct sd_write_job job;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int result;
};

static void sync_done(struct sd_write_job *job, int result)
{
    struct sync_job *sj = (struct sync_job *)job;
    pthread_mutex_lock(&sj->mu);
    sj->done = true;
    sj->result = result;
    pthread_cond_signal(&sj->cv);
    pthread_mutex_unlock(&sj->mu);
}

int sd_writer_run_sync(struct sd_writer *w, sd_write_run_fn run, void *arg)
{
    struct sync_job sj = {.job = {.run = run, .done = sync_done, .arg = arg, .alone = true}};
    pthread_mutex_init(&sj.mu, NULL);
    pthread_cond_init(&sj.cv, NULL);
    int r = sd_writer_submit(w, &sj.job);
    if (r == 0) {
        pthread_mutex_lock(&sj.mu);
        while (!sj.done) {
            pthread_cond_wait(&sj.cv, &sj.mu);
        }
        pthread_mutex_unlock(&sj.mu);
        r = sj.result;
    }
    pthread_mutex_destroy(&sj.mu);
    pthread_cond_destroy(&sj.cv);
    return r;
}

bool sd_writer_others_waiting(struct sd_writer *w)
{
    pthread_mutex_lock(&w->mu);
    bool waiting = w->head != NULL;
    pthread_mutex_unlock(&w->mu);
    /* a settings write waiting for the data's write lock counts too (store.h write_waiting) */
    return waiting || sd_store_write_waiting(w->st);
}

bool sd_writer_broken(struct sd_writer *w)
{
    return atomic_load(&w->broken);
}

bool sd_writer_disk_full(struct sd_writer *w)
{
    return atomic_load(&w->disk_full);
}

void sd_writer_set_group_hook(struct sd_writer *w, sd_writer_group_fn fn, void *arg)
{
    pthread_mutex_lock(&w->mu);
    w->hook = fn;
    w->hook_arg = fn ? arg : NULL;
    pthread_mutex_unlock(&w->mu);
}
