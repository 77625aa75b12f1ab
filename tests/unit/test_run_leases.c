/* test_run_leases.c — connector run leases with fencing tokens (store.h run_lease_*,
 * connector_state_put_fenced), through the store interface.
 * store suite: both backends
 *
 *  - test_one_wins: two handles (two nodes) take one lease: the first gets a token, the second
 *    -EBUSY; the holder takes it again with a greater token; another connector's lease is free.
 *  - test_gone_owner: a busy take names the holder; a take naming a gone owner other than the
 *    holder is still -EBUSY; naming the holder as gone takes its unexpired lease over, and
 *    the holder's token is then stale.
 *  - test_race: four threads, each with its own handle, take one lease at once: exactly one
 *    gets it.
 *  - test_expiry: a lease that ran out is taken by the other node with a greater token; the
 *    old holder's renew and release are then -ESTALE, the new holder's work; a released lease
 *    is taken at once, again with a greater token.
 *  - test_fenced_commit: the holder's fenced state put commits; once the lease is taken over,
 *    the old holder's put is -ESTALE and, its savepoint undone, nothing of its job is stored
 *    (neither the state nor, where the backend stores records, the records it applied); a put
 *    with a token never issued is -ESTALE too; the new holder's put commits.
 *  - test_takeover_waits_for_commit: the holder's fenced put has passed its check (its lease
 *    already expired) and its transaction is still open: another node's take waits until that
 *    transaction commits, and only then gets the lease, so what the check let through is
 *    committed before any takeover (the stored state is the old holder's). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "base/base.h"
#include "model/model.h"
#include "store/store.h"
#include "store_fixture.h"

#define CON "con_00000000000000c1"
#define LONG_USEC (60LL * 1000000)

struct fx {
    struct sd_test_store ts;
    struct sd_store_handle *a, *b;
    int64_t tenant;
};

static int setup(void **state)
{
    struct fx *f = sd_calloc(1, sizeof(*f));
    sd_test_store_setup(&f->ts, "leases", &f->a);
    f->tenant = sd_test_store_tenant(f->a, "venue", "Venue");
    sd_test_store_open(&f->ts, &f->b);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    sd_store_close(f->b);
    sd_test_store_release(&f->ts, f->a);
    free(f);
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A take without a gone owner, not asking who holds it. */
static int take(struct sd_store_handle *h, const char *id, const char *owner, int64_t lease_usec,
                int64_t *ret_fence)
{
    return sd_store_run_lease_take(h, id, owner, NULL, lease_usec, ret_fence, NULL);
}

static void test_one_wins(void **state)
{
    struct fx *f = *state;
    int64_t fa = 0, fb = 0, fa2 = 0;
    assert_int_equal(take(f->a, CON, "node-a", LONG_USEC, &fa), 0);
    assert_true(fa > 0);
    assert_int_equal(take(f->b, CON, "node-b", LONG_USEC, &fb), -EBUSY);
    assert_int_equal(fb, 0); /* written only on success */
    assert_int_equal(take(f->a, CON, "node-a", LONG_USEC, &fa2), 0);
    assert_true(fa2 > fa);
    /* the first token is no longer the lease's */
    assert_int_equal(sd_store_run_lease_renew(f->a, CON, fa, LONG_USEC), -ESTALE);
    assert_int_equal(sd_store_run_lease_renew(f->a, CON, fa2, LONG_USEC), 0);
    /* a lease is per connector */
    assert_int_equal(take(f->b, "con_00000000000000c2", "node-b", LONG_USEC, &fb), 0);
    assert_true(fb > 0);
    /* bounds */
    assert_int_equal(take(f->b, CON, "node-b", 0, &fb), -EINVAL);
    char big[SD_LEASE_OWNER_MAX + 2];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(take(f->b, CON, big, LONG_USEC, &fb), -EINVAL);
}

static void test_gone_owner(void **state)
{
    struct fx *f = *state;
    int64_t fa = 0, fb = 0;
    char *holder = NULL;
    assert_int_equal(take(f->a, CON, "host-a/101/aa", LONG_USEC, &fa), 0);
    assert_int_equal(
        sd_store_run_lease_take(f->b, CON, "host-b/202/bb", NULL, LONG_USEC, &fb, &holder), -EBUSY);
    assert_non_null(holder);
    assert_string_equal(holder, "host-a/101/aa");
    free(holder);
    holder = NULL;
    assert_int_equal(sd_store_run_lease_take(f->b, CON, "host-b/202/bb", "host-a/999/zz", LONG_USEC,
                                             &fb, &holder),
                     -EBUSY);
    assert_string_equal(holder, "host-a/101/aa");
    free(holder);
    holder = NULL;
    assert_int_equal(sd_store_run_lease_take(f->b, CON, "host-b/202/bb", "host-a/101/aa", LONG_USEC,
                                             &fb, &holder),
                     0);
    assert_null(holder);
    assert_true(fb > fa);
    assert_int_equal(sd_store_run_lease_renew(f->a, CON, fa, LONG_USEC), -ESTALE);
    assert_int_equal(sd_store_run_lease_renew(f->b, CON, fb, LONG_USEC), 0);
}

struct racer {
    struct sd_test_store *ts;
    struct sd_store_handle *h;
    char owner[16];
    pthread_barrier_t *start;
    int result;
    int64_t fence;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    pthread_barrier_wait(r->start);
    r->result = take(r->h, CON, r->owner, LONG_USEC, &r->fence);
    return NULL;
}

static void test_race(void **state)
{
    struct fx *f = *state;
    enum { N = 4 };
    struct racer rs[N];
    pthread_t th[N];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N);
    for (int i = 0; i < N; i++) {
        rs[i] = (struct racer){.ts = &f->ts, .start = &start};
        snprintf(rs[i].owner, sizeof(rs[i].owner), "node-%d", i);
        sd_test_store_open(&f->ts, &rs[i].h);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, race, &rs[i]), 0);
    }
    int won = 0, busy = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        won += rs[i].result == 0;
        busy += rs[i].result == -EBUSY;
        sd_store_close(rs[i].h);
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(won, 1);
    assert_int_equal(busy, N - 1);
}

static void test_expiry(void **state)
{
    struct fx *f = *state;
    int64_t fa = 0, fb = 0, fa2 = 0;
    assert_int_equal(take(f->a, CON, "node-a", 200000, &fa), 0);
    assert_int_equal(take(f->b, CON, "node-b", LONG_USEC, &fb), -EBUSY);
    sleep_ms(300);
    assert_int_equal(take(f->b, CON, "node-b", LONG_USEC, &fb), 0);
    assert_true(fb > fa);
    assert_int_equal(sd_store_run_lease_renew(f->a, CON, fa, LONG_USEC), -ESTALE);
    assert_int_equal(sd_store_run_lease_release(f->a, CON, fa), -ESTALE);
    /* the old holder's failed calls changed nothing: the new holder's lease stands */
    assert_int_equal(take(f->a, CON, "node-a", LONG_USEC, &fa2), -EBUSY);
    assert_int_equal(sd_store_run_lease_renew(f->b, CON, fb, LONG_USEC), 0);
    assert_int_equal(sd_store_run_lease_release(f->b, CON, fb), 0);
    assert_int_equal(sd_store_run_lease_release(f->b, CON, fb), -ESTALE); /* released already */
    assert_int_equal(sd_store_run_lease_renew(f->b, CON, fb, LONG_USEC), -ESTALE);
    assert_int_equal(take(f->a, CON, "node-a", LONG_USEC, &fa2), 0);
    assert_true(fa2 > fb);
    /* expired but not taken over: its holder still renews it */
    int64_t fc = 0;
    assert_int_equal(take(f->a, "con_00000000000000c3", "node-a", 100000, &fc), 0);
    sleep_ms(200);
    assert_int_equal(sd_store_run_lease_renew(f->a, "con_00000000000000c3", fc, LONG_USEC), 0);
    assert_int_equal(take(f->b, "con_00000000000000c3", "node-b", LONG_USEC, &fb), -EBUSY);
}

/* One customer record to apply with the state, for backends that store records. */
static void one_customer(struct sd_batch *b, struct sd_customer_rec *c, json_t **doc)
{
    *doc = json_pack("{s:s, s:s}", "customer_id", "c-stale", "email", "stale@example.com");
    struct sd_issues errors, warnings;
    sd_issues_init(&errors, 5);
    sd_issues_init(&warnings, 5);
    assert_int_equal(sd_validate_customer(*doc, "/customers/0", c, &errors, &warnings), 0);
    sd_issues_release(&errors);
    sd_issues_release(&warnings);
    *b = (struct sd_batch){.customers = c, .n_customers = 1, .source = "leases"};
}

/* In one write transaction: a savepoint, (records), the fenced put; the savepoint is released
 * if the put worked, else undone; then commit. Returns the put's result. */
static int fenced_job(struct fx *f, struct sd_store_handle *h, const char *doc, int64_t fence,
                      bool with_record)
{
    assert_int_equal(sd_store_write_begin(h), 0);
    assert_int_equal(sd_store_savepoint(h), 0);
    if (with_record) {
        struct sd_batch b;
        struct sd_customer_rec c;
        json_t *src = NULL;
        one_customer(&b, &c, &src);
        struct sd_apply_result res;
        sd_apply_result_init(&res);
        assert_int_equal(sd_store_apply_ingest(h, f->tenant, SD_ENV_TEST, &b, &res), 0);
        assert_int_equal(res.outcome, SD_APPLY_OK);
        sd_apply_result_release(&res);
        sd_customer_rec_release(&c);
        json_decref(src);
    }
    int r = sd_store_connector_state_put_fenced(h, CON, doc, fence);
    if (r == 0) {
        assert_int_equal(sd_store_savepoint_release(h), 0);
    } else {
        assert_int_equal(sd_store_savepoint_rollback(h), 0);
    }
    assert_int_equal(sd_store_write_commit(h), 0);
    return r;
}

static void assert_state(struct fx *f, const char *want)
{
    char *doc = NULL;
    assert_int_equal(sd_store_connector_state_get(f->a, CON, &doc), 0);
    assert_string_equal(doc, want);
    free(doc);
}

static void test_fenced_commit(void **state)
{
    struct fx *f = *state;
    int64_t fa = 0, fb = 0;
    assert_int_equal(take(f->a, CON, "node-a", 200000, &fa), 0);
    assert_int_equal(fenced_job(f, f->a, "{\"cursor\":1}", fa, false), 0);
    assert_state(f, "{\"cursor\":1}");
    /* a token never issued */
    assert_int_equal(fenced_job(f, f->a, "{\"cursor\":9}", fa + 1000, false), -ESTALE);
    sleep_ms(300);
    assert_int_equal(take(f->b, CON, "node-b", LONG_USEC, &fb), 0);
    /* Records only where the backend stores them yet (the wrapper answers -ENOTSUP without the
     * op); the state part is checked on every backend. */
    bool records = sd_store_count_records(f->a, SD_KIND_CUSTOMER, f->tenant, SD_ENV_TEST,
                                          &(int64_t){0}) != -ENOTSUP;
    assert_int_equal(fenced_job(f, f->a, "{\"cursor\":2}", fa, records), -ESTALE);
    assert_state(f, "{\"cursor\":1}");
    if (records) {
        int64_t n = -1;
        assert_int_equal(sd_store_count_records(f->a, SD_KIND_CUSTOMER, f->tenant, SD_ENV_TEST, &n),
                         0);
        assert_int_equal(n, 0);
    }
    assert_int_equal(fenced_job(f, f->b, "{\"cursor\":3}", fb, records), 0);
    assert_state(f, "{\"cursor\":3}");
    /* released: its own token no longer commits either */
    assert_int_equal(sd_store_run_lease_release(f->b, CON, fb), 0);
    assert_int_equal(fenced_job(f, f->b, "{\"cursor\":4}", fb, false), -ESTALE);
    assert_state(f, "{\"cursor\":3}");
    /* the plain put (callers without a lease) still works */
    assert_int_equal(sd_store_write_begin(f->a), 0);
    assert_int_equal(sd_store_connector_state_put(f->a, CON, "{\"cursor\":5}"), 0);
    assert_int_equal(sd_store_write_commit(f->a), 0);
    assert_state(f, "{\"cursor\":5}");
}

/* A leased run's deletions (core/deletions.c): run_lease_check in the deletion's transaction —
 * a run that lost its lease deletes nothing. */
static int fenced_delete(struct sd_store_handle *h, int64_t tenant, int64_t fence)
{
    assert_int_equal(sd_store_write_begin(h), 0);
    assert_int_equal(sd_store_savepoint(h), 0);
    int r = sd_store_run_lease_check(h, CON, fence);
    if (r == 0) {
        r = sd_store_delete_record(h, tenant, SD_ENV_TEST, SD_KIND_CUSTOMER, "c-stale", "leases",
                                   SD_TOMBSTONE_DELETED, NULL, CON);
    }
    if (r >= 0) {
        assert_int_equal(sd_store_savepoint_release(h), 0);
    } else {
        assert_int_equal(sd_store_savepoint_rollback(h), 0);
    }
    assert_int_equal(sd_store_write_commit(h), 0);
    return r;
}

static void test_fenced_deletion(void **state)
{
    struct fx *f = *state;
    int64_t fa = 0, fb = 0, n = -1;
    assert_int_equal(take(f->a, CON, "node-a", 200000, &fa), 0);
    assert_int_equal(sd_store_write_begin(f->a), 0);
    assert_int_equal(sd_store_run_lease_check(f->a, CON, fa), 0);
    assert_int_equal(sd_store_run_lease_check(f->a, CON, fa + 1000), -ESTALE);
    assert_int_equal(sd_store_run_lease_check(f->a, "con_00000000000000c9", fa), -ESTALE);
    assert_int_equal(sd_store_write_commit(f->a), 0);
    /* one customer, stored without a lease */
    struct sd_batch b;
    struct sd_customer_rec c;
    json_t *src = NULL;
    one_customer(&b, &c, &src);
    struct sd_apply_result res;
    sd_apply_result_init(&res);
    assert_int_equal(sd_store_write_begin(f->a), 0);
    assert_int_equal(sd_store_apply_ingest(f->a, f->tenant, SD_ENV_TEST, &b, &res), 0);
    assert_int_equal(res.outcome, SD_APPLY_OK);
    assert_int_equal(sd_store_write_commit(f->a), 0);
    sd_apply_result_release(&res);
    sd_customer_rec_release(&c);
    json_decref(src);
    /* node b takes the connector over: node a's deletion is refused, the record stays */
    sleep_ms(300);
    assert_int_equal(take(f->b, CON, "node-b", LONG_USEC, &fb), 0);
    assert_int_equal(fenced_delete(f->a, f->tenant, fa), -ESTALE);
    assert_int_equal(sd_store_count_records(f->a, SD_KIND_CUSTOMER, f->tenant, SD_ENV_TEST, &n), 0);
    assert_int_equal(n, 1);
    /* the holder's deletion goes through */
    assert_int_equal(fenced_delete(f->b, f->tenant, fb), 1);
    assert_int_equal(sd_store_count_records(f->a, SD_KIND_CUSTOMER, f->tenant, SD_ENV_TEST, &n), 0);
    assert_int_equal(n, 0);
}

struct taker {
    struct sd_store_handle *h;
    int result;
    int64_t fence;
    atomic_bool finished;
};

static void *take_later(void *arg)
{
    struct taker *t = arg;
    t->result = take(t->h, CON, "node-b", LONG_USEC, &t->fence);
    atomic_store(&t->finished, true);
    return NULL;
}

static void test_takeover_waits_for_commit(void **state)
{
    struct fx *f = *state;
    int64_t fa = 0;
    assert_int_equal(take(f->a, CON, "node-a", 100000, &fa), 0);
    sleep_ms(200); /* expired, not taken over: the token still passes */
    assert_int_equal(sd_store_write_begin(f->a), 0);
    assert_int_equal(sd_store_connector_state_put_fenced(f->a, CON, "{\"cursor\":7}", fa), 0);
    struct taker t = {.h = f->b};
    atomic_init(&t.finished, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, take_later, &t), 0);
    sleep_ms(500);
    bool early = atomic_load(&t.finished);
    assert_int_equal(sd_store_write_commit(f->a), 0);
    pthread_join(th, NULL);
    assert_false(early);
    assert_int_equal(t.result, 0);
    assert_true(t.fence > fa);
    assert_state(f, "{\"cursor\":7}");
    assert_int_equal(fenced_job(f, f->a, "{\"cursor\":8}", fa, false), -ESTALE);
    assert_state(f, "{\"cursor\":7}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gone_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fenced_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fenced_deletion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_takeover_waits_for_commit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
