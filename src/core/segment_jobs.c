/* segment_jobs.c — the segment workers (segment_jobs.h).
 *
 * One mutex guards the waiting list (FIFO), the per-tenant tallies and the stop flag. A worker
 * takes the oldest waiting job whose tenant runs fewer than tenant_running_max computations, so
 * a tenant with a long queue never keeps another tenant's job from the next free worker; a job
 * skipped that way keeps its place. Tallies are a small array (at most queue_max + workers
 * tenants can have a job in the pool at once), updated before done is called, so a client that
 * retries as soon as it has its answer is counted correctly.
 *
 * Cancellation is the pool's `stopping` flag, read by the store's progress handler through the
 * budget: a running SQLite statement stops within a few thousand instructions. */
#include "core/segment_jobs.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/base.h"
#include "base/log.h"

struct tally {
    int64_t tenant_id;
    unsigned running, total; /* total: running + waiting; the slot is free when 0 */
};

struct sd_segment_jobs {
    struct sd_segment_jobs_config cfg;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct sd_segment_job *head, *tail; /* waiting, oldest first */
    unsigned n_waiting, n_running;
    struct tally *tallies;
    size_t n_tallies;
    atomic_bool stopping;
    bool joined;
    _Atomic int64_t budget_usec;
    int64_t avg_usec; /* moving average of recent computations, for Retry-After */
    pthread_t *threads;
    unsigned n_threads;
};

void sd_segment_jobs_config_default(struct sd_segment_jobs_config *cfg)
{
    *cfg = (struct sd_segment_jobs_config){
        .workers = 2,
        .queue_max = 8,
        .tenant_max = 2,
        .tenant_running_max = 1,
        .budget_usec = SD_SEGMENT_BUDGET_DEFAULT_USEC,
    };
}

static struct tally *tally_of(struct sd_segment_jobs *p, int64_t tenant_id, bool add)
{
    struct tally *free_slot = NULL;
    for (size_t i = 0; i < p->n_tallies; i++) {
        struct tally *t = &p->tallies[i];
        if (t->total > 0 && t->tenant_id == tenant_id) {
            return t;
        }
        if (t->total == 0 && !free_slot) {
            free_slot = t;
        }
    }
    if (add && free_slot) {
        *free_slot = (struct tally){.tenant_id = tenant_id};
    }
    return add ? free_slot : NULL;
}

/* Seconds until a retry may find room: the average computation, times the rounds of workers
 * the waiting jobs need. Called with the lock held. */
static unsigned retry_after(const struct sd_segment_jobs *p)
{
    int64_t avg = p->avg_usec > 0 ? p->avg_usec : 1000000;
    int64_t rounds = 1 + p->n_waiting / p->cfg.workers;
    int64_t s = (avg * rounds + 999999) / 1000000;
    return (unsigned)(s < 1 ? 1 : s > 60 ? 60 : s);
}

int sd_segment_jobs_submit(struct sd_segment_jobs *p, struct sd_segment_job *job,
                           unsigned *ret_retry_after)
{
    pthread_mutex_lock(&p->lock);
    int r = 0;
    struct tally *t = NULL;
    if (atomic_load(&p->stopping)) {
        r = -ESHUTDOWN;
    } else if ((t = tally_of(p, job->tenant_id, false)) && t->total >= p->cfg.tenant_max) {
        r = -EBUSY;
    } else if (p->n_waiting >= p->cfg.queue_max) {
        r = -EAGAIN;
    } else {
        t = t ? t : tally_of(p, job->tenant_id, true);
        t->total++;
        job->next = NULL;
        if (p->tail) {
            p->tail->next = job;
        } else {
            p->head = job;
        }
        p->tail = job;
        p->n_waiting++;
        pthread_cond_broadcast(&p->cond);
    }
    if (r < 0) {
        *ret_retry_after = r == -ESHUTDOWN ? 5 : retry_after(p);
    }
    pthread_mutex_unlock(&p->lock);
    return r;
}

/* The oldest waiting job whose tenant may run one more, unlinked; NULL if none. Lock held. */
static struct sd_segment_job *take(struct sd_segment_jobs *p)
{
    struct sd_segment_job *prev = NULL;
    for (struct sd_segment_job *j = p->head; j; prev = j, j = j->next) {
        struct tally *t = tally_of(p, j->tenant_id, false);
        if (t && t->running >= p->cfg.tenant_running_max) {
            continue;
        }
        if (prev) {
            prev->next = j->next;
        } else {
            p->head = j->next;
        }
        if (p->tail == j) {
            p->tail = prev;
        }
        j->next = NULL;
        p->n_waiting--;
        p->n_running++;
        t->running++;
        return j;
    }
    return NULL;
}

static void lower_priority(void)
{
    struct sched_param sp = {.sched_priority = 0};
    int r = pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
    if (r != 0) {
        /* Some containers refuse policy changes; niceness per thread (Linux: the tid) is the
         * next best thing. */
        pid_t tid = (pid_t)syscall(SYS_gettid);
        if (setpriority(PRIO_PROCESS, (id_t)tid, 19) != 0) {
            sd_log(SD_LOG_WARN, "cannot lower the segment worker's priority", "err=%d", errno);
        }
    }
}

static void *worker_main(void *arg)
{
    struct sd_segment_jobs *p = arg;
    if (!p->cfg.normal_priority) {
        lower_priority();
    }
    pthread_mutex_lock(&p->lock);
    for (;;) {
        struct sd_segment_job *job = NULL;
        while (!atomic_load(&p->stopping) && !(job = take(p))) {
            pthread_cond_wait(&p->cond, &p->lock);
        }
        if (!job) {
            break;
        }
        int64_t cpu = atomic_load(&p->budget_usec);
        struct sd_seg_budget budget = {
            .cpu_usec = cpu,
            .wall_usec = cpu * SD_SEGMENT_WALL_FACTOR,
            .cancel = &p->stopping,
        };
        pthread_mutex_unlock(&p->lock);

        int64_t t0 = sd_mono_usec();
        int r = job->run(job, &budget);
        int64_t took = sd_mono_usec() - t0;

        pthread_mutex_lock(&p->lock);
        struct tally *t = tally_of(p, job->tenant_id, false);
        t->running--;
        t->total--;
        p->n_running--;
        p->avg_usec = p->avg_usec ? (p->avg_usec * 3 + took) / 4 : took;
        pthread_cond_broadcast(&p->cond); /* the tenant's next job may run now */
        pthread_mutex_unlock(&p->lock);
        job->done(job, r); /* the job is the caller's again */
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int sd_segment_jobs_new(const struct sd_segment_jobs_config *cfg, struct sd_segment_jobs **ret)
{
    if (!cfg || cfg->workers < 1 || cfg->workers > SD_SEGMENT_WORKERS_MAX || cfg->queue_max < 1 ||
        cfg->tenant_max < 1 || cfg->tenant_running_max < 1 || cfg->budget_usec < 1) {
        return -EINVAL;
    }
    struct sd_segment_jobs *p = sd_calloc(1, sizeof(*p));
    p->cfg = *cfg;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    atomic_init(&p->stopping, false);
    atomic_init(&p->budget_usec, cfg->budget_usec);
    p->n_tallies = (size_t)cfg->queue_max + cfg->workers;
    p->tallies = sd_calloc(p->n_tallies, sizeof(*p->tallies));
    p->threads = sd_calloc(cfg->workers, sizeof(*p->threads));
    for (unsigned i = 0; i < cfg->workers; i++) {
        int rc = pthread_create(&p->threads[i], NULL, worker_main, p);
        if (rc != 0) {
            sd_segment_jobs_free(p);
            return -rc;
        }
        p->n_threads++;
    }
    *ret = p;
    return 0;
}

struct sd_seg_budget sd_segment_jobs_budget(const struct sd_segment_jobs *p)
{
    int64_t cpu = p ? atomic_load(&p->budget_usec) : SD_SEGMENT_BUDGET_DEFAULT_USEC;
    return (struct sd_seg_budget){.cpu_usec = cpu, .wall_usec = cpu * SD_SEGMENT_WALL_FACTOR};
}

int sd_segment_jobs_set_budget(struct sd_segment_jobs *p, int64_t budget_usec)
{
    if (budget_usec < 1000000 || budget_usec > SD_SEGMENT_BUDGET_MAX_SEC * 1000000LL) {
        return -EINVAL;
    }
    atomic_store(&p->budget_usec, budget_usec);
    return 0;
}

void sd_segment_jobs_stop(struct sd_segment_jobs *p)
{
    if (!p) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stopping, true);
    struct sd_segment_job *waiting = p->head;
    p->head = p->tail = NULL;
    for (struct sd_segment_job *j = waiting; j; j = j->next) {
        struct tally *t = tally_of(p, j->tenant_id, false);
        t->total--;
        p->n_waiting--;
    }
    pthread_cond_broadcast(&p->cond);
    bool join = !p->joined;
    p->joined = true;
    pthread_mutex_unlock(&p->lock);
    while (waiting) {
        struct sd_segment_job *j = waiting;
        waiting = j->next;
        j->next = NULL;
        j->done(j, -ECANCELED);
    }
    if (join) {
        for (unsigned i = 0; i < p->n_threads; i++) {
            pthread_join(p->threads[i], NULL);
        }
    }
}

void sd_segment_jobs_free(struct sd_segment_jobs *p)
{
    if (!p) {
        return;
    }
    sd_segment_jobs_stop(p);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p->tallies);
    free(p->threads);
    free(p);
}
