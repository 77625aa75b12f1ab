/* test_writer.c — the single writer's failure states against a real SQLite store: a group that
 * runs out of space (SQLITE_FULL) is refused whole with -ENOSPC, nothing of it is kept, the
 * writer is not broken, and the next group that commits clears the state. The space limit is
 * the store's test hook (STAGEDOOR_FAULT=max_pages: DIR/fault-max-pages caps the page count),
 * which fails writes exactly like a full disk. The group hook (what the outbox wakes its workers
 * with) runs once per group, after the COMMIT — a reader already sees the group's rows — and
 * before the jobs' `done`; a group that is refused calls it with committed false. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "core/writer.h"
#include "model/model.h"
#include "store/store.h"
#include "store_fixture.h"

struct fx {
    struct sd_test_store st;
    char cap[128];
    struct sd_store_handle *h;
    struct sd_writer *w;
    int64_t tenant;
};

/* A job that ingests `n` customers named PREFIX-i; `hide` turns any failure into -EIO, as a
 * careless job might. */
struct ingest_job {
    struct sd_write_job job;
    struct fx *f;
    const char *prefix;
    size_t n;
    bool hide;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int result;
};

static int ingest_run(struct sd_store_handle *st, struct sd_write_job *wj)
{
    struct ingest_job *j = wj->arg;
    struct sd_batch b = {0};
    b.customers = sd_calloc(j->n, sizeof(*b.customers));
    for (size_t i = 0; i < j->n; i++) {
        b.customers[i] = (struct sd_customer_rec){
            .index = i,
            .customer_id = sd_asprintf("%s-%zu", j->prefix, i),
            .doc = sd_asprintf("{\"customer_id\":\"%s-%zu\",\"pad\":\"%0600d\"}", j->prefix, i, 0),
        };
    }
    b.n_customers = j->n;
    struct sd_apply_result res;
    sd_apply_result_init(&res);
    int r = sd_store_apply_ingest(st, j->f->tenant, SD_ENV_TEST, &b, &res);
    if (r == 0 && res.outcome != SD_APPLY_OK) {
        r = -EINVAL;
    }
    sd_apply_result_release(&res);
    sd_batch_release(&b);
    return r < 0 && j->hide ? -EIO : r;
}

static void ingest_done(struct sd_write_job *wj, int result)
{
    struct ingest_job *j = wj->arg;
    pthread_mutex_lock(&j->mu);
    j->done = true;
    j->result = result;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void job_init(struct ingest_job *j, struct fx *f, const char *prefix, size_t n, bool hide)
{
    *j = (struct ingest_job){.f = f, .prefix = prefix, .n = n, .hide = hide};
    j->job = (struct sd_write_job){.run = ingest_run, .done = ingest_done, .arg = j};
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
}

static int job_wait(struct ingest_job *j)
{
    pthread_mutex_lock(&j->mu);
    while (!j->done) {
        pthread_cond_wait(&j->cv, &j->mu);
    }
    pthread_mutex_unlock(&j->mu);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    return j->result;
}

/* Holds the writer thread until released, so the jobs submitted meanwhile form one group. It
 * lives on the heap: the writer still uses it after run_as_one_group returned, until `done`. */
struct gate {
    struct sd_write_job job;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool entered, open;
};

static int gate_run(struct sd_store_handle *st, struct sd_write_job *wj)
{
    (void)st;
    struct gate *g = wj->arg;
    pthread_mutex_lock(&g->mu);
    g->entered = true;
    pthread_cond_broadcast(&g->cv);
    while (!g->open) {
        pthread_cond_wait(&g->cv, &g->mu);
    }
    pthread_mutex_unlock(&g->mu);
    return 0;
}

static void gate_done(struct sd_write_job *wj, int result)
{
    struct gate *g = wj->arg;
    (void)result; /* the gate's own group holds nothing */
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
}

/* Runs the jobs as one group: the gate holds the writer while they are queued behind it. */
static void run_as_one_group(struct fx *f, struct ingest_job **jobs, size_t n)
{
    struct gate *g = sd_calloc(1, sizeof(*g));
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->job = (struct sd_write_job){.run = gate_run, .done = gate_done, .arg = g};
    assert_int_equal(sd_writer_submit(f->w, &g->job), 0);
    pthread_mutex_lock(&g->mu);
    while (!g->entered) {
        pthread_cond_wait(&g->cv, &g->mu);
    }
    pthread_mutex_unlock(&g->mu);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(sd_writer_submit(f->w, &jobs[i]->job), 0);
    }
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void set_cap(struct fx *f, const char *pages)
{
    if (!pages) {
        unlink(f->cap);
        return;
    }
    FILE *fp = fopen(f->cap, "w");
    assert_non_null(fp);
    fprintf(fp, "%s\n", pages);
    fclose(fp);
}

static int64_t customers(struct fx *f)
{
    int64_t n = -1;
    assert_int_equal(sd_store_count_records(f->h, SD_KIND_CUSTOMER, f->tenant, SD_ENV_TEST, &n), 0);
    return n;
}

static int ingest_sync(struct fx *f, const char *prefix, size_t n)
{
    struct ingest_job j;
    job_init(&j, f, prefix, n, false);
    assert_int_equal(sd_writer_submit(f->w, &j.job), 0);
    return job_wait(&j);
}

static int setup(void **state)
{
    struct fx *f = sd_calloc(1, sizeof(*f));
    sd_test_store_setup(&f->st, "writer", &f->h);
    snprintf(f->cap, sizeof(f->cap), "%s/fault-max-pages", f->st.dir);
    f->tenant = sd_test_store_tenant(f->h, "acme", "Acme Tickets");
    assert_int_equal(sd_writer_new(f->h, &f->w), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    sd_writer_free(f->w);
    sd_test_store_release(&f->st, f->h); /* fault-max-pages and control.db go with it */
    free(f);
    return 0;
}

static void test_full_group_refused_whole_then_heals(void **state)
{
    struct fx *f = *state;
    assert_int_equal(ingest_sync(f, "OK", 3), 0);
    assert_int_equal(customers(f), 3);

    set_cap(f, "1"); /* SQLite keeps it at the current size: no page may be added */
    struct ingest_job small, big;
    job_init(&small, f, "SMALL", 1, false);
    job_init(&big, f, "BIG", 2000, false);
    struct ingest_job *jobs[] = {&small, &big};
    run_as_one_group(f, jobs, 2);
    assert_int_equal(job_wait(&small), -ENOSPC); /* it shared the group: not kept either */
    assert_int_equal(job_wait(&big), -ENOSPC);
    assert_int_equal(customers(f), 3);
    assert_true(sd_writer_disk_full(f->w));
    assert_false(sd_writer_broken(f->w));

    /* still full: refused again, still not broken */
    assert_int_equal(ingest_sync(f, "BIG2", 2000), -ENOSPC);
    assert_false(sd_writer_broken(f->w));

    set_cap(f, NULL);
    assert_int_equal(ingest_sync(f, "BIG3", 2000), 0);
    assert_false(sd_writer_disk_full(f->w));
    assert_int_equal(customers(f), 2003);
}

static void test_job_that_hides_enospc_still_gets_it(void **state)
{
    struct fx *f = *state;
    set_cap(f, "1");
    /* The first job turns SQLITE_FULL into -EIO; SQLite may have rolled the whole transaction
     * back, so the next job must not run in a transaction of its own and commit alone. */
    struct ingest_job hider, after;
    job_init(&hider, f, "HIDE", 2000, true);
    job_init(&after, f, "AFTER", 1, false);
    struct ingest_job *jobs[] = {&hider, &after};
    run_as_one_group(f, jobs, 2);
    assert_int_equal(job_wait(&hider), -ENOSPC);
    assert_int_equal(job_wait(&after), -ENOSPC);
    assert_int_equal(customers(f), 0);
    assert_true(sd_writer_disk_full(f->w));
    assert_false(sd_writer_broken(f->w));

    set_cap(f, NULL);
    assert_int_equal(ingest_sync(f, "AFTER", 1), 0);
    assert_int_equal(customers(f), 1);
    assert_false(sd_writer_disk_full(f->w));
}

/* What the group hook saw, on the writer thread. */
struct hook_log {
    struct fx *f;
    struct ingest_job *job; /* the job whose group is watched, or NULL */
    int calls, committed;
    int64_t seen_customers; /* as a reader saw them from inside the hook */
    bool job_done_before;   /* the job's done had run before the hook */
};

static void hook(void *arg, bool committed)
{
    struct hook_log *h = arg;
    h->calls++;
    h->committed += committed ? 1 : 0;
    h->seen_customers = customers(h->f);
    if (h->job) {
        pthread_mutex_lock(&h->job->mu);
        h->job_done_before = h->job->done;
        pthread_mutex_unlock(&h->job->mu);
    }
}

static void test_group_hook_runs_after_commit_before_done(void **state)
{
    struct fx *f = *state;
    struct hook_log h = {.f = f};
    sd_writer_set_group_hook(f->w, hook, &h);

    struct ingest_job j;
    job_init(&j, f, "HOOK", 2, false);
    h.job = &j;
    assert_int_equal(sd_writer_submit(f->w, &j.job), 0);
    assert_int_equal(job_wait(&j), 0);
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.committed, 1);
    assert_int_equal(h.seen_customers, 2); /* committed: a reader sees the rows */
    assert_false(h.job_done_before);

    h.job = NULL;
    set_cap(f, "1");
    assert_int_equal(ingest_sync(f, "BIG", 2000), -ENOSPC);
    assert_int_equal(h.calls, 2);
    assert_int_equal(h.committed, 1); /* refused: told, but not as committed */
    set_cap(f, NULL);

    sd_writer_set_group_hook(f->w, NULL, NULL);
    assert_int_equal(ingest_sync(f, "AFTER", 1), 0);
    assert_int_equal(h.calls, 2); /* removed: never called again */
}

int main(void)
{
    /* read once by base/fault.c, before the first write */
    setenv("STAGEDOOR_FAULT", "max_pages", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_group_refused_whole_then_heals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_that_hides_enospc_still_gets_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_hook_runs_after_commit_before_done, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
