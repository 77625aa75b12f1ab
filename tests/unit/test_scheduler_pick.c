/* test_scheduler_pick.c — which due connector run starts next: the global cap, the per-tenant
 * cap (one tenant's slow runs never take every slot), round robin across tenants, and the
 * longest wait first within a tie. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/scheduler.h"

#define NOT_DUE INT64_MAX

/* Start runs with the pick until it says none, as the scheduler's loop does; returns how many
 * started and writes their indexes in order to `order`. */
static size_t start_all(struct sd_scheduler_candidate *c, size_t n, size_t *order)
{
    size_t k = 0;
    for (;;) {
        ssize_t p =
            sd_scheduler_pick(c, n, SD_SCHEDULER_MAX_RUNS, SD_SCHEDULER_MAX_RUNS_PER_TENANT);
        if (p < 0) {
            return k;
        }
        assert_true((size_t)p < n);
        assert_false(c[p].running);
        assert_true(c[p].due_usec != NOT_DUE);
        c[p].running = true;
        order[k++] = (size_t)p;
    }
}

static void test_tenant_cap(void **state)
{
    /* Tenant 1 has four slow connectors due long ago, tenant 2 one due just now: tenant 1 gets
     * two slots, and tenant 2's run starts in the same round (old code: tenant 1 took all four
     * slots by due time, tenant 2 waited for one of its runs to end). */
    struct sd_scheduler_candidate c[] = {
        {.tenant_id = 1, .due_usec = 100}, {.tenant_id = 1, .due_usec = 101},
        {.tenant_id = 1, .due_usec = 102}, {.tenant_id = 1, .due_usec = 103},
        {.tenant_id = 2, .due_usec = 900},
    };
    size_t order[8];
    size_t k = start_all(c, 5, order);
    assert_int_equal(k, 3);
    assert_true(c[4].running);
    assert_true(c[0].running && c[1].running);
    assert_false(c[2].running || c[3].running);
    /* While tenant 1 has two running, its third stays waiting even with free slots. */
    assert_int_equal(
        sd_scheduler_pick(c, 5, SD_SCHEDULER_MAX_RUNS, SD_SCHEDULER_MAX_RUNS_PER_TENANT), -1);
    /* One of tenant 1's runs ends: its next waiting one starts. */
    c[0].running = false;
    c[0].due_usec = NOT_DUE;
    assert_int_equal(
        sd_scheduler_pick(c, 5, SD_SCHEDULER_MAX_RUNS, SD_SCHEDULER_MAX_RUNS_PER_TENANT), 2);
}

static void test_global_cap(void **state)
{
    /* Four tenants with two due each: the global cap of four holds, and every tenant gets one
     * before any gets a second. */
    struct sd_scheduler_candidate c[8];
    for (size_t i = 0; i < 8; i++) {
        c[i] = (struct sd_scheduler_candidate){.tenant_id = (int64_t)(i % 4),
                                               .due_usec = (int64_t)(10 * i)};
    }
    size_t order[8];
    size_t k = start_all(c, 8, order);
    assert_int_equal(k, SD_SCHEDULER_MAX_RUNS);
    for (size_t i = 0; i < 4; i++) {
        assert_true(c[i].running); /* the first of each tenant */
        assert_false(c[i + 4].running);
    }
}

static void test_round_robin(void **state)
{
    /* Tenant 1 waited longest for three runs, tenants 2 and 3 one each: round robin gives
     * tenants 1, 2 and 3 one each (by wait), then tenant 1 its second. */
    struct sd_scheduler_candidate c[] = {
        {.tenant_id = 1, .due_usec = 1},  {.tenant_id = 1, .due_usec = 2},
        {.tenant_id = 1, .due_usec = 3},  {.tenant_id = 3, .due_usec = 50},
        {.tenant_id = 2, .due_usec = 40}, {.tenant_id = 2, .due_usec = NOT_DUE},
    };
    size_t order[8];
    size_t k = start_all(c, 6, order);
    assert_int_equal(k, 4);
    assert_int_equal(order[0], 0);
    assert_int_equal(order[1], 4);
    assert_int_equal(order[2], 3);
    assert_int_equal(order[3], 1);
    assert_false(c[5].running); /* never one that is not due */
}

static void test_nothing_due(void **state)
{
    struct sd_scheduler_candidate c[] = {{.tenant_id = 1, .due_usec = NOT_DUE},
                                         {.tenant_id = 2, .due_usec = 5, .running = true}};
    assert_int_equal(sd_scheduler_pick(c, 2, 4, 2), -1);
    assert_int_equal(sd_scheduler_pick(NULL, 0, 4, 2), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tenant_cap),
        cmocka_unit_test(test_global_cap),
        cmocka_unit_test(test_round_robin),
        cmocka_unit_test(test_nothing_due),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
