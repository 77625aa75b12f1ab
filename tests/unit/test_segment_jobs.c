/* test_segment_jobs.c — the segment workers' queue (core/segment_jobs.c): a tenant's limit
 * (429) and the queue's (503) refuse at once with a Retry-After, a tenant never runs more than
 * its share while another tenant's job waits, a stop cancels what runs and what waits and
 * refuses what comes after, the budget reaches every computation, and workers run at the
 * lowest priority.
 *
 * Jobs here compute nothing: each one blocks on a gate the test opens, so every state (running,
 * waiting) is reached on purpose, not by timing. Waits for a state poll with a generous bound
 * (never a wall-clock assertion). */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/segment_jobs.h"

/* The test's side of every job: a gate, and what happened. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

struct tjob {
    struct sd_segment_job job; /* first */
    int id;
    bool open;       /* the gate: run returns once it is open (or the budget's cancel is set) */
    bool running;    /* inside run */
    int runs, dones; /* how often run / done were called */
    int result;      /* what done got */
    struct sd_seg_budget seen; /* the budget run got */
    int policy, nice;          /* the worker's scheduling policy and niceness */
};

static int trun(struct sd_segment_job *job, const struct sd_seg_budget *budget)
{
    struct tjob *t = (struct tjob *)job;
    int policy = sched_getscheduler(0);
    int nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    pthread_mutex_lock(&mu);
    t->seen = *budget;
    t->policy = policy;
    t->nice = nice;
    t->runs++;
    t->running = true;
    pthread_cond_broadcast(&cv);
    int r = t->id;
    while (!t->open) {
        if (budget->cancel && atomic_load(budget->cancel)) {
            r = -ECANCELED; /* as the store answers a cancelled computation */
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 5 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&cv, &mu, &ts);
    }
    t->running = false;
    pthread_mutex_unlock(&mu);
    return r;
}

static void tdone(struct sd_segment_job *job, int result)
{
    struct tjob *t = (struct tjob *)job;
    pthread_mutex_lock(&mu);
    t->dones++;
    t->result = result;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void tjob_init(struct tjob *t, int id, int64_t tenant)
{
    *t = (struct tjob){.id = id, .job = {.tenant_id = tenant, .run = trun, .done = tdone}};
}

/* Wait (at most 30 s) until pred holds under mu. */
static bool wait_for(bool (*pred)(void *), void *arg)
{
    bool ok = false;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < 3000 && !(ok = pred(arg)); i++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&cv, &mu, &ts);
    }
    pthread_mutex_unlock(&mu);
    return ok;
}

static bool is_running(void *arg)
{
    return ((struct tjob *)arg)->running;
}

static bool is_done(void *arg)
{
    return ((struct tjob *)arg)->dones > 0;
}

static void open_gate(struct tjob *t)
{
    pthread_mutex_lock(&mu);
    t->open = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static struct sd_segment_jobs *pool(unsigned workers, unsigned queue_max, unsigned tenant_max,
                                    unsigned tenant_running_max)
{
    struct sd_segment_jobs_config cfg;
    sd_segment_jobs_config_default(&cfg);
    cfg.workers = workers;
    cfg.queue_max = queue_max;
    cfg.tenant_max = tenant_max;
    cfg.tenant_running_max = tenant_running_max;
    cfg.normal_priority = true;
    struct sd_segment_jobs *p = NULL;
    assert_int_equal(sd_segment_jobs_new(&cfg, &p), 0);
    return p;
}

static void test_config_bounds(void **state)
{
    (void)state;
    struct sd_segment_jobs_config cfg;
    sd_segment_jobs_config_default(&cfg);
    assert_int_equal(cfg.workers, 2);
    assert_true(cfg.budget_usec == SD_SEGMENT_BUDGET_DEFAULT_USEC);
    struct sd_segment_jobs *p = NULL;
    const unsigned bad_workers[] = {0, SD_SEGMENT_WORKERS_MAX + 1};
    for (size_t i = 0; i < 2; i++) {
        cfg.workers = bad_workers[i];
        assert_int_equal(sd_segment_jobs_new(&cfg, &p), -EINVAL);
    }
    sd_segment_jobs_config_default(&cfg);
    cfg.queue_max = 0;
    assert_int_equal(sd_segment_jobs_new(&cfg, &p), -EINVAL);
    sd_segment_jobs_config_default(&cfg);
    cfg.tenant_max = 0;
    assert_int_equal(sd_segment_jobs_new(&cfg, &p), -EINVAL);
    assert_null(p);
    sd_segment_jobs_free(NULL);
}

/* One worker busy with tenant 1: tenant 1's second job waits, its third is refused (-EBUSY);
 * other tenants fill the queue; the next is refused (-EAGAIN). Everything queued runs once. */
static void test_tenant_and_queue_limits(void **state)
{
    (void)state;
    struct sd_segment_jobs *p = pool(1, 3, 2, 1);
    struct tjob a1, a2, a3, b1, c1, d1;
    tjob_init(&a1, 1, 1);
    tjob_init(&a2, 2, 1);
    tjob_init(&a3, 3, 1);
    tjob_init(&b1, 4, 2);
    tjob_init(&c1, 5, 3);
    tjob_init(&d1, 6, 4);
    unsigned ra = 0;
    assert_int_equal(sd_segment_jobs_submit(p, &a1.job, &ra), 0);
    assert_true(wait_for(is_running, &a1));
    assert_int_equal(sd_segment_jobs_submit(p, &a2.job, &ra), 0);
    ra = 0;
    assert_int_equal(sd_segment_jobs_submit(p, &a3.job, &ra), -EBUSY);
    assert_true(ra >= 1 && ra <= 60);
    assert_int_equal(sd_segment_jobs_submit(p, &b1.job, &ra), 0);
    assert_int_equal(sd_segment_jobs_submit(p, &c1.job, &ra), 0);
    ra = 0;
    assert_int_equal(sd_segment_jobs_submit(p, &d1.job, &ra), -EAGAIN); /* a2, b1, c1 wait */
    assert_true(ra >= 1 && ra <= 60);
    struct tjob *queued[] = {&a1, &a2, &b1, &c1};
    for (size_t i = 0; i < 4; i++) {
        open_gate(queued[i]);
    }
    for (size_t i = 0; i < 4; i++) {
        assert_true(wait_for(is_done, queued[i]));
    }
    /* a finished tenant's slots are free again */
    tjob_init(&a3, 3, 1);
    open_gate(&a3);
    assert_int_equal(sd_segment_jobs_submit(p, &a3.job, &ra), 0);
    assert_true(wait_for(is_done, &a3));
    sd_segment_jobs_free(p);
    struct tjob *all[] = {&a1, &a2, &b1, &c1, &a3};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(all[i]->runs, 1);
        assert_int_equal(all[i]->dones, 1);
        assert_int_equal(all[i]->result, all[i]->id);
    }
    assert_int_equal(d1.runs + d1.dones, 0); /* refused: never run, done never called */
}

/* Two workers, tenant 1 submits two jobs before tenant 2's: tenant 2 gets the second worker,
 * and tenant 1's second job runs only once its first is done. */
static void test_tenant_running_limit(void **state)
{
    (void)state;
    struct sd_segment_jobs *p = pool(2, 8, 4, 1);
    struct tjob a1, a2, b1;
    tjob_init(&a1, 1, 1);
    tjob_init(&a2, 2, 1);
    tjob_init(&b1, 3, 2);
    unsigned ra;
    assert_int_equal(sd_segment_jobs_submit(p, &a1.job, &ra), 0);
    assert_int_equal(sd_segment_jobs_submit(p, &a2.job, &ra), 0);
    assert_int_equal(sd_segment_jobs_submit(p, &b1.job, &ra), 0);
    assert_true(wait_for(is_running, &a1));
    assert_true(wait_for(is_running, &b1));
    pthread_mutex_lock(&mu);
    assert_int_equal(a2.runs, 0);
    pthread_mutex_unlock(&mu);
    open_gate(&b1);
    assert_true(wait_for(is_done, &b1));
    pthread_mutex_lock(&mu);
    assert_int_equal(a2.runs, 0); /* a free worker, but tenant 1 already runs one */
    pthread_mutex_unlock(&mu);
    open_gate(&a1);
    assert_true(wait_for(is_running, &a2));
    open_gate(&a2);
    assert_true(wait_for(is_done, &a2));
    sd_segment_jobs_free(p);
    assert_int_equal(a2.result, 2);
}

/* Stop: the running job sees the cancel flag and ends with -ECANCELED, the waiting one is done
 * with -ECANCELED without running, later submissions are refused, a second stop is harmless. */
static void test_stop_cancels(void **state)
{
    (void)state;
    struct sd_segment_jobs *p = pool(1, 8, 2, 1);
    struct tjob a1, b1, c1;
    tjob_init(&a1, 1, 1);
    tjob_init(&b1, 2, 2);
    tjob_init(&c1, 3, 3);
    unsigned ra;
    assert_int_equal(sd_segment_jobs_submit(p, &a1.job, &ra), 0);
    assert_true(wait_for(is_running, &a1));
    assert_int_equal(sd_segment_jobs_submit(p, &b1.job, &ra), 0);
    sd_segment_jobs_stop(p); /* returns once the workers are joined */
    assert_int_equal(a1.runs, 1);
    assert_int_equal(a1.dones, 1);
    assert_int_equal(a1.result, -ECANCELED);
    assert_int_equal(b1.runs, 0);
    assert_int_equal(b1.dones, 1);
    assert_int_equal(b1.result, -ECANCELED);
    ra = 0;
    assert_int_equal(sd_segment_jobs_submit(p, &c1.job, &ra), -ESHUTDOWN);
    assert_true(ra >= 1);
    sd_segment_jobs_stop(p);
    sd_segment_jobs_free(p);
    assert_int_equal(c1.runs + c1.dones, 0);
}

/* The budget each run gets: CPU as configured (and changed), the clock ten times that, and the
 * pool's cancel flag; out-of-range budgets are refused. */
static void test_budget(void **state)
{
    (void)state;
    struct sd_segment_jobs *p = pool(1, 8, 2, 1);
    struct tjob a1, a2;
    tjob_init(&a1, 1, 1);
    tjob_init(&a2, 2, 1);
    open_gate(&a1);
    open_gate(&a2);
    unsigned ra;
    assert_int_equal(sd_segment_jobs_submit(p, &a1.job, &ra), 0);
    assert_true(wait_for(is_done, &a1));
    assert_true(a1.seen.cpu_usec == SD_SEGMENT_BUDGET_DEFAULT_USEC);
    assert_true(a1.seen.wall_usec == SD_SEGMENT_WALL_FACTOR * SD_SEGMENT_BUDGET_DEFAULT_USEC);
    assert_non_null(a1.seen.cancel);
    assert_int_equal(sd_segment_jobs_set_budget(p, 5 * 1000000LL), 0);
    assert_int_equal(sd_segment_jobs_set_budget(p, 999999), -EINVAL);
    assert_int_equal(sd_segment_jobs_set_budget(p, (SD_SEGMENT_BUDGET_MAX_SEC + 1) * 1000000LL),
                     -EINVAL);
    assert_int_equal(sd_segment_jobs_submit(p, &a2.job, &ra), 0);
    assert_true(wait_for(is_done, &a2));
    assert_true(a2.seen.cpu_usec == 5 * 1000000LL);
    assert_true(a2.seen.wall_usec == 50 * 1000000LL);
    struct sd_seg_budget b = sd_segment_jobs_budget(p);
    assert_true(b.cpu_usec == 5 * 1000000LL);
    assert_null(b.cancel); /* for callers on their own threads */
    sd_segment_jobs_free(p);
}

/* Workers started the normal way run at the lowest priority. */
static void test_low_priority(void **state)
{
    (void)state;
    struct sd_segment_jobs_config cfg;
    sd_segment_jobs_config_default(&cfg);
    struct sd_segment_jobs *p = NULL;
    assert_int_equal(sd_segment_jobs_new(&cfg, &p), 0);
    struct tjob a1;
    tjob_init(&a1, 1, 1);
    open_gate(&a1);
    unsigned ra;
    assert_int_equal(sd_segment_jobs_submit(p, &a1.job, &ra), 0);
    assert_true(wait_for(is_done, &a1));
    sd_segment_jobs_free(p);
    assert_true(a1.policy == SCHED_IDLE || a1.nice == 19);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_bounds),
        cmocka_unit_test(test_tenant_and_queue_limits),
        cmocka_unit_test(test_tenant_running_limit),
        cmocka_unit_test(test_stop_cancels),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_low_priority),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
