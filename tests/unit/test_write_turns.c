/* test_write_turns.c — the writer's BEGIN is never refused because the same process's
 * control-plane transactions (the outbox workers' claims and finishes on the `ctl` connection)
 * keep taking the data file's write lock back to back. SQLite arbitrates two connections by
 * sleeping and polling (the busy handler), which is not fair: a stream of short transactions
 * with no gap between them can hold the lock at every poll until busy_timeout runs out, and
 * the writer's group then fails ("database is locked", a 500 to the client). The store
 * alternates the lock between the writer and the control plane instead, so both get turns. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "base/base.h"
#include "core/outbox.h"
#include "store/audience.h"
#include "store/store.h"
#include "store_fixture.h"

#define GROUPS 40
#define ITEMS 64
#define HOUR_USEC (3600LL * 1000000)

struct hammer {
    struct sd_store_handle *h;
    atomic_bool stop;
    atomic_long turns;
    atomic_int unexpected; /* a store error */
};

/* Claims and finishes, one write transaction after another with no pause between them, as
 * the outbox workers run when the vendor's call quota sends every item back to wait: each
 * claim leases the item due first, each finish (a commit that syncs the log) puts it back as
 * retrying, due again at once, so the items never run out. */
static void *hammer_main(void *arg)
{
    struct hammer *m = arg;
    while (!atomic_load(&m->stop)) {
        struct sd_outbox_clock clk = {.now_usec = sd_now_usec(),
                                      .window_usec = HOUR_USEC,
                                      .lease_usec = HOUR_USEC,
                                      .plan = sd_outbox_plan};
        struct sd_outbox_item d = {0};
        int r = sd_store_delivery_claim(m->h, &clk, &d);
        if (r == 0) {
            struct sd_delivery_outcome o = {.state = SD_DELIVERY_RETRYING,
                                            .next_attempt_usec = sd_now_usec(),
                                            .attempts_delta = -1,
                                            .doc = "{}"};
            r = sd_store_delivery_finish(m->h, d.id, d.fence, &o);
            sd_outbox_item_release(&d);
        }
        if (r != 0 && r != -ENOENT) {
            atomic_fetch_add(&m->unexpected, 1);
        }
        atomic_fetch_add(&m->turns, 1);
    }
    return NULL;
}

/* A connector and ITEMS items due for it. */
static void queue_items(struct sd_store_handle *h)
{
    int64_t tenant = sd_test_store_tenant(h, "acme", "Acme");
    struct sd_target con = {.id = (char *)"con_quota",
                            .tenant_id = tenant,
                            .env = SD_ENV_TEST,
                            .type = (char *)"test_contacts",
                            .doc = (char *)"{}"};
    assert_int_equal(sd_store_target_put(h, &con, true, NULL), 0);
    /* In one writer transaction, as an ingest batch queues them. */
    assert_int_equal(sd_store_write_begin(h), 0);
    for (int i = 0; i < ITEMS; i++) {
        char id[32], subject[32];
        snprintf(id, sizeof(id), "dlv_%06d", i);
        snprintf(subject, sizeof(subject), "c%06d", i);
        struct sd_outbox_item d = {.id = id,
                                   .tenant_id = tenant,
                                   .env = SD_ENV_TEST,
                                   .connector_id = con.id,
                                   .operation = (char *)"upsert_contact",
                                   .subject_kind = (char *)"customer",
                                   .subject_id = subject,
                                   .idem_key = id,
                                   .doc = (char *)"{}"};
        char *got = NULL;
        assert_int_equal(sd_store_outbox_add_tx(h, &d, sd_now_usec(), &got), 0);
        free(got);
    }
    assert_int_equal(sd_store_write_commit(h), 0);
}

static void test_writer_begins_while_ctl_transactions_run_back_to_back(void **state)
{
    (void)state;
    struct sd_test_store st;
    struct sd_store_handle *h = NULL;
    sd_test_store_setup(&st, "turns", &h);
    queue_items(h);
    struct hammer m = {.h = h};
    atomic_init(&m.stop, false);
    atomic_init(&m.turns, 0);
    atomic_init(&m.unexpected, 0);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, hammer_main, &m), 0);
    }
    /* The workers are running before the first group. */
    while (atomic_load(&m.turns) < 50) {
        sched_yield();
    }
    int failed = 0;
    for (int g = 0; g < GROUPS && failed == 0; g++) {
        long before = atomic_load(&m.turns);
        int r = sd_store_write_begin(h);
        if (r < 0) {
            failed = r;
            break;
        }
        assert_int_equal(sd_store_write_commit(h), 0);
        /* Let the workers run between groups, as between the writer's batches. */
        while (atomic_load(&m.turns) == before) {
            sched_yield();
        }
    }
    atomic_store(&m.stop, true);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
    }
    assert_int_equal(failed, 0);
    assert_int_equal(atomic_load(&m.unexpected), 0);
    sd_test_store_release(&st, h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_begins_while_ctl_transactions_run_back_to_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
