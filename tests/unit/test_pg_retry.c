/* test_pg_retry.c — the PostgreSQL backend's transaction runner (sd_pg_tx_run, store_pg.c): a
 * transaction refused with a serialization failure (SQLSTATE 40001) or a deadlock (40P01) is
 * run again from the start and its result is the retry's; one that keeps failing gives up
 * after its bound with -EAGAIN and nothing committed; any other error is not retried; and a
 * transaction's writes are undone when it fails, so a retry never sees its own first attempt.
 * PostgreSQL only: skipped (exit 77) without STAGEDOOR_TEST_PG. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "store/postgres/pg_internal.h"
#include "store/store.h"
#include "store_fixture.h"

struct fx {
    struct sd_test_store ts;
    struct sd_store_handle *h;
    struct sd_store *s;
};

static int setup(void **state)
{
    if (sd_test_store_is_sqlite()) {
        setenv("SD_TEST_STORE_BACKEND", "postgresql", 1); /* this test is about PostgreSQL */
    }
    struct fx *f = sd_calloc(1, sizeof(*f));
    sd_test_store_setup(&f->ts, "pgretry", &f->h);
    f->s = sd_store_handle_backend(f->h);
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

struct attempt {
    const char *sqlstate; /* raised while fail_left > 0 */
    int fail_left;
    int calls;
    int64_t seen; /* rows of the marker table the attempt saw before writing */
};

static int body(struct pgconn *c, void *arg)
{
    struct attempt *a = arg;
    a->calls++;
    PGresult *res = NULL;
    int r = sd_pg_exec_text(c, "SELECT count(*) FROM meta WHERE k = 'retry_marker'", NULL, &res);
    if (r < 0) {
        return r;
    }
    a->seen = sd_pg_int64(res, 0, 0);
    PQclear(res);
    r = sd_pg_exec_text(c, "INSERT INTO meta (k, v) VALUES ('retry_marker', 1)", NULL, NULL);
    if (r < 0) {
        return r;
    }
    if (a->fail_left > 0) {
        a->fail_left--;
        /* Raised with the SQLSTATE the server uses for the real thing (fixed texts). */
        const char *raise =
            strcmp(a->sqlstate, "40P01") == 0
                ? "DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '40P01'; END $$"
                : "DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '40001'; END $$";
        r = sd_pg_exec_text(c, raise, NULL, NULL);
        return r < 0 ? r : -EIO;
    }
    return 0;
}

static int64_t markers(struct fx *f)
{
    struct pgconn *c = NULL;
    assert_int_equal(sd_pg_pool_get(f->s, &c), 0);
    PGresult *res = NULL;
    assert_int_equal(
        sd_pg_exec_text(c, "SELECT count(*) FROM meta WHERE k = 'retry_marker'", NULL, &res), 1);
    int64_t n = sd_pg_int64(res, 0, 0);
    PQclear(res);
    sd_pg_pool_put(f->s, c);
    return n;
}

static void test_serialization_failure_retried(void **state)
{
    struct fx *f = *state;
    struct attempt a = {.sqlstate = "40001", .fail_left = 2};
    assert_int_equal(sd_pg_tx_run(f->s, NULL, false, body, &a), 0);
    assert_int_equal(a.calls, 3);
    assert_int_equal(a.seen, 0); /* the failed attempts' writes were rolled back */
    assert_int_equal(markers(f), 1);
}

static void test_deadlock_retried(void **state)
{
    struct fx *f = *state;
    struct attempt a = {.sqlstate = "40P01", .fail_left = 1};
    assert_int_equal(sd_pg_tx_run(f->s, NULL, false, body, &a), 0);
    assert_int_equal(a.calls, 2);
    assert_int_equal(a.seen, 0);
    assert_int_equal(markers(f), 1);
}

static void test_gives_up_after_its_bound(void **state)
{
    struct fx *f = *state;
    struct attempt a = {.sqlstate = "40001", .fail_left = 1000};
    assert_int_equal(sd_pg_tx_run(f->s, NULL, false, body, &a), -EAGAIN);
    assert_int_equal(a.calls, 5);
    assert_int_equal(markers(f), 0);
}

static int other_error(struct pgconn *c, void *arg)
{
    int *calls = arg;
    (*calls)++;
    int r = sd_pg_exec_text(c, "INSERT INTO meta (k, v) VALUES ('retry_marker', 1)", NULL, NULL);
    if (r < 0) {
        return r;
    }
    /* a unique violation: an outcome, not a transient failure */
    return sd_pg_exec_text(c, "INSERT INTO meta (k, v) VALUES ('retry_marker', 2)", NULL, NULL);
}

static void test_other_errors_not_retried(void **state)
{
    struct fx *f = *state;
    int calls = 0;
    assert_int_equal(sd_pg_tx_run(f->s, NULL, false, other_error, &calls), -EEXIST);
    assert_int_equal(calls, 1);
    assert_int_equal(markers(f), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_serialization_failure_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadlock_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gives_up_after_its_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_errors_not_retried, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
