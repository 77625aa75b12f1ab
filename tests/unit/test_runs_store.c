/* test_runs_store.c — the connector run history (store/runs.h) through the store interface.
 * store suite: both backends
 *
 *  - test_record_list: runs are listed newest first with every field as recorded; a page ends
 *    at limit and ?before continues with older ones; another tenant sees none of them; another
 *    connector's runs stay apart.
 *  - test_fenced: a fenced record commits while its token holds the lease and stores nothing
 *    (-ESTALE) once the lease was taken over; a run_id recorded twice is -EEXIST.
 *  - test_prune: of SD_RUNS_KEEP + 5 runs of one connector only the newest SD_RUNS_KEEP are
 *    kept; another connector's rows are untouched.
 *  - test_invalid: bad arguments are -EINVAL and store nothing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "base/base.h"
#include "store/runs.h"
#include "store/store.h"
#include "store_fixture.h"

#define CON "con_00000000000000r1"
#define CON2 "con_00000000000000r2"
#define T0 1700000000000000LL

struct fx {
    struct sd_test_store ts;
    struct sd_store_handle *h;
    int64_t tenant, other;
};

static int setup(void **state)
{
    struct fx *f = sd_calloc(1, sizeof(*f));
    sd_test_store_setup(&f->ts, "runs", &f->h);
    f->tenant = sd_test_store_tenant(f->h, "venue", "Venue");
    f->other = sd_test_store_tenant(f->h, "other", "Other");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    sd_test_store_release(&f->ts, f->h);
    free(f);
    return 0;
}

/* Run number i of connector con: started at T0 + i s, lasting i ms; odd ones failed. */
static int record(struct fx *f, const char *con, int i, int64_t fence)
{
    char id[32], err[64];
    snprintf(id, sizeof(id), "run_%s_%d", con + 18, i);
    snprintf(err, sizeof(err), "vendor answered 500 (run %d)", i);
    struct sd_run run = {.run_id = id,
                         .tenant_id = f->tenant,
                         .env = i % 3 == 0 ? SD_ENV_PROD : SD_ENV_TEST,
                         .connector_id = (char *)con,
                         .trigger = i % 2 ? "run_now" : "schedule",
                         .started_usec = T0 + i * 1000000LL,
                         .finished_usec = T0 + i * 1000000LL + i * 1000LL,
                         .status = i % 2 ? SD_RUN_FAILED : SD_RUN_OK,
                         .records_in = 10 * i,
                         .records_rejected = i,
                         .records_unchanged = 2 * i,
                         .error = i % 2 ? err : NULL,
                         .dry_run = i == 4};
    return sd_store_run_record(f->h, &run, fence);
}

static void test_record_list(void **state)
{
    struct fx *f = *state;
    for (int i = 1; i <= 5; i++) {
        assert_int_equal(record(f, CON, i, 0), 0);
    }
    assert_int_equal(record(f, CON2, 9, 0), 0);
    struct sd_run *v = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_run_list(f->h, f->tenant, CON, 0, 3, &v, &n), 0);
    assert_int_equal(n, 3);
    for (size_t k = 0; k < n; k++) {
        int i = 5 - (int)k; /* newest first */
        char id[32];
        snprintf(id, sizeof(id), "run_%s_%d", CON + 18, i);
        assert_string_equal(v[k].run_id, id);
        assert_string_equal(v[k].connector_id, CON);
        assert_int_equal(v[k].tenant_id, f->tenant);
        assert_int_equal(v[k].env, i % 3 == 0 ? SD_ENV_PROD : SD_ENV_TEST);
        assert_string_equal(v[k].trigger, i % 2 ? "run_now" : "schedule");
        assert_int_equal(v[k].started_usec, T0 + i * 1000000LL);
        assert_int_equal(v[k].finished_usec - v[k].started_usec, i * 1000LL);
        assert_int_equal(v[k].status, i % 2 ? SD_RUN_FAILED : SD_RUN_OK);
        assert_int_equal(v[k].records_in, 10 * i);
        assert_int_equal(v[k].records_rejected, i);
        assert_int_equal(v[k].records_unchanged, 2 * i);
        if (i % 2) {
            assert_non_null(v[k].error);
            assert_non_null(strstr(v[k].error, "vendor answered 500"));
        } else {
            assert_null(v[k].error);
        }
        assert_int_equal(v[k].dry_run, i == 4);
        if (k) {
            assert_true(v[k].seq < v[k - 1].seq);
        }
    }
    int64_t before = v[n - 1].seq;
    sd_runs_free(v, n);
    assert_int_equal(sd_store_run_list(f->h, f->tenant, CON, before, 10, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].run_id, "run_r1_2");
    assert_string_equal(v[1].run_id, "run_r1_1");
    sd_runs_free(v, n);
    /* another tenant sees nothing of this tenant's connector */
    assert_int_equal(sd_store_run_list(f->h, f->other, CON, 0, 10, &v, &n), 0);
    assert_int_equal(n, 0);
    assert_null(v);
    assert_int_equal(sd_store_run_list(f->h, f->tenant, CON2, 0, 10, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].run_id, "run_r2_9");
    sd_runs_free(v, n);
}

static void test_fenced(void **state)
{
    struct fx *f = *state;
    int64_t fa = 0, fb = 0;
    assert_int_equal(sd_store_run_lease_take(f->h, CON, "node-a", NULL, 1000, &fa, NULL), 0);
    assert_int_equal(record(f, CON, 1, fa), 0);
    /* the lease ran out and another node took it: the old holder's record is refused */
    struct timespec ts = {.tv_nsec = 20 * 1000000L};
    nanosleep(&ts, NULL);
    assert_int_equal(sd_store_run_lease_take(f->h, CON, "node-b", NULL, 60000000LL, &fb, NULL), 0);
    assert_int_equal(record(f, CON, 2, fa), -ESTALE);
    assert_int_equal(record(f, CON, 3, fb), 0);
    assert_int_equal(record(f, CON, 3, fb), -EEXIST);
    struct sd_run *v = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_run_list(f->h, f->tenant, CON, 0, 10, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].run_id, "run_r1_3");
    assert_string_equal(v[1].run_id, "run_r1_1");
    sd_runs_free(v, n);
}

static void test_prune(void **state)
{
    struct fx *f = *state;
    assert_int_equal(record(f, CON2, 1, 0), 0);
    for (int i = 1; i <= SD_RUNS_KEEP + 5; i++) {
        assert_int_equal(record(f, CON, i, 0), 0);
    }
    struct sd_run *v = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_run_list(f->h, f->tenant, CON, 0, SD_RUNS_PAGE_MAX, &v, &n), 0);
    assert_int_equal(n, SD_RUNS_KEEP);
    char id[32];
    snprintf(id, sizeof(id), "run_r1_%d", SD_RUNS_KEEP + 5);
    assert_string_equal(v[0].run_id, id);
    assert_string_equal(v[n - 1].run_id, "run_r1_6"); /* 1..5 pruned */
    int64_t before = v[n - 1].seq;
    sd_runs_free(v, n);
    assert_int_equal(sd_store_run_list(f->h, f->tenant, CON, before, 10, &v, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(sd_store_run_list(f->h, f->tenant, CON2, 0, 10, &v, &n), 0);
    assert_int_equal(n, 1);
    sd_runs_free(v, n);
}

static void test_invalid(void **state)
{
    struct fx *f = *state;
    struct sd_run run = {.run_id = "run_x",
                         .tenant_id = f->tenant,
                         .connector_id = CON,
                         .trigger = "schedule",
                         .started_usec = T0,
                         .finished_usec = T0 - 1};
    assert_int_equal(sd_store_run_record(f->h, &run, 0), -EINVAL); /* ends before it starts */
    run.finished_usec = T0;
    run.records_in = -1;
    assert_int_equal(sd_store_run_record(f->h, &run, 0), -EINVAL);
    run.records_in = 0;
    run.trigger = "";
    assert_int_equal(sd_store_run_record(f->h, &run, 0), -EINVAL);
    run.trigger = "schedule";
    char big[SD_RUN_ERROR_MAX + 2];
    memset(big, 'e', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    run.error = big;
    assert_int_equal(sd_store_run_record(f->h, &run, 0), -EINVAL);
    run.error = NULL;
    run.status = (enum sd_run_status)7;
    assert_int_equal(sd_store_run_record(f->h, &run, 0), -EINVAL);
    struct sd_run *v = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_run_list(f->h, f->tenant, CON, 0, 0, &v, &n), -EINVAL);
    assert_int_equal(sd_store_run_list(f->h, f->tenant, CON, 0, SD_RUNS_PAGE_MAX + 1, &v, &n),
                     -EINVAL);
    assert_int_equal(sd_store_run_list(f->h, f->tenant, CON, 0, 10, &v, &n), 0);
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_record_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fenced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
