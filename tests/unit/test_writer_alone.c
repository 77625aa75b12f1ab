/* test_writer_alone.c — a long job (`alone`: a loader's write job, e.g. part of a CSV file being
 * stored) is a group of its own. The jobs queued before it commit in their own group, before it
 * runs; the ones queued after it go into the next group. So a webhook request queued during
 * one import job waits for that job only, never also for the next one sharing its commit.
 *
 * store suite: both backends (ctest store_pg.* runs it on PostgreSQL). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/writer.h"
#include "store/store.h"
#include "store_fixture.h"

struct probe {
    struct sd_write_job job;
    int *groups; /* the group counter */
    int group;   /* the group this job ran in */
    int result;
    bool done;
};

static void count_group(void *arg, bool committed)
{
    (void)committed;
    (*(int *)arg)++;
}

static int probe_run(struct sd_store_handle *st, struct sd_write_job *job)
{
    (void)st;
    struct probe *p = job->arg;
    p->group = *p->groups;
    return 0;
}

static void probe_done(struct sd_write_job *job, int result)
{
    struct probe *p = job->arg;
    p->result = result;
    p->done = true;
}

struct gate {
    struct sd_writer *w;
    struct probe *queue[4];
    size_t n;
};

/* Runs on the writer thread: queues the probes in order while this group is in progress, so
 * they are all waiting when the writer forms its next group. */
static int gate_run(struct sd_store_handle *st, struct sd_write_job *job)
{
    (void)st;
    struct gate *g = job->arg;
    for (size_t i = 0; i < g->n; i++) {
        if (sd_writer_submit(g->w, &g->queue[i]->job) != 0) {
            return -EIO;
        }
    }
    return 0;
}

static void probe_init(struct probe *p, int *groups, bool alone)
{
    *p = (struct probe){.job = {.run = probe_run, .done = probe_done, .alone = alone},
                        .groups = groups,
                        .group = -1,
                        .result = 1};
    p->job.arg = p;
}

static void test_long_job_runs_in_a_group_of_its_own(void **state)
{
    (void)state;
    struct sd_test_store st;
    struct sd_store_handle *h = NULL;
    sd_test_store_setup(&st, "writeralone", &h);
    struct sd_writer *w = NULL;
    assert_int_equal(sd_writer_new(h, &w), 0);
    int groups = 0; /* read and written on the writer thread only, until sd_writer_free */
    sd_writer_set_group_hook(w, count_group, &groups);

    struct probe before1, before2, alone, after1, after2;
    probe_init(&before1, &groups, false);
    probe_init(&before2, &groups, false);
    probe_init(&alone, &groups, true);
    probe_init(&after1, &groups, false);
    probe_init(&after2, &groups, false);
    struct gate g = {.w = w, .queue = {&before1, &before2, &alone, &after1}, .n = 4};
    assert_int_equal(sd_writer_run_sync(w, gate_run, &g), 0);
    /* and a second long job right behind the first */
    struct probe alone2;
    probe_init(&alone2, &groups, true);
    struct gate g2 = {.w = w, .queue = {&alone2, &after2}, .n = 2};
    assert_int_equal(sd_writer_run_sync(w, gate_run, &g2), 0);
    sd_writer_free(w); /* finishes every queued job */

    struct probe *all[] = {&before1, &before2, &alone, &after1, &alone2, &after2};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        assert_true(all[i]->done);
        assert_int_equal(all[i]->result, 0);
        assert_true(all[i]->group >= 0);
    }
    /* the jobs queued before the long one share a group, committed before it ran */
    assert_int_equal(before1.group, before2.group);
    assert_true(alone.group > before2.group);
    /* the ones after it are in a later group */
    assert_true(after1.group > alone.group);
    /* two long jobs, queued one behind the other, are not one group either */
    assert_true(after2.group > alone2.group);
    sd_test_store_release(&st, h);
}

/* A job that is not alone still shares its group with the jobs queued with it (group commit). */
static void test_short_jobs_still_share_a_group(void **state)
{
    (void)state;
    struct sd_test_store st;
    struct sd_store_handle *h = NULL;
    sd_test_store_setup(&st, "writershort", &h);
    struct sd_writer *w = NULL;
    assert_int_equal(sd_writer_new(h, &w), 0);
    int groups = 0;
    sd_writer_set_group_hook(w, count_group, &groups);
    struct probe a, b, c;
    probe_init(&a, &groups, false);
    probe_init(&b, &groups, false);
    probe_init(&c, &groups, false);
    struct gate g = {.w = w, .queue = {&a, &b, &c}, .n = 3};
    assert_int_equal(sd_writer_run_sync(w, gate_run, &g), 0);
    sd_writer_free(w);
    assert_true(a.done && b.done && c.done);
    assert_int_equal(a.group, b.group);
    assert_int_equal(b.group, c.group);
    sd_test_store_release(&st, h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_job_runs_in_a_group_of_its_own),
        cmocka_unit_test(test_short_jobs_still_share_a_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
