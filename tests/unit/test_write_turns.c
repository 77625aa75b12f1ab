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
#include <time.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "base/base.h"
#include "core/outbox.h"
#include "core/writer.h"
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

/* ---- a settings write during a long writer job ---------------------------------------------
 * A long job on the writer thread (a CSV file being published) ends early when
 * sd_writer_others_waiting() says so. A settings write (a connector, a segment: the `ctl`
 * transactions) waits for its turn at the write lock for a bounded time, then gives up: the
 * writer must see it waiting, or the job runs to its row bound and the settings write fails. */

struct ctl_put {
    struct sd_store_handle *h;
    const char *id;
    int64_t tenant;
    atomic_int result;
    atomic_bool finished;
};

static void *ctl_put_main(void *arg)
{
    struct ctl_put *p = arg;
    struct sd_target con = {.id = (char *)p->id,
                            .tenant_id = p->tenant,
                            .env = SD_ENV_TEST,
                            .type = (char *)"test_contacts",
                            .doc = (char *)"{}"};
    atomic_store(&p->result, sd_store_target_put(p->h, &con, true, NULL));
    atomic_store(&p->finished, true);
    return NULL;
}

static void ctl_put_start(struct ctl_put *p, struct sd_store_handle *h, int64_t tenant,
                          const char *id, pthread_t *t)
{
    p->h = h;
    p->id = id;
    p->tenant = tenant;
    atomic_init(&p->result, 1);
    atomic_init(&p->finished, false);
    assert_int_equal(pthread_create(t, NULL, ctl_put_main, p), 0);
}

struct long_job {
    struct sd_writer *w;
    struct ctl_put put;
    pthread_t put_thread;
    bool saw_waiting;
};

/* Runs on the writer thread inside its group, holding the write lock: starts the settings
 * write, then stores nothing until the writer says someone waits, as a publish job past its
 * time bound does. It gives up after a minute so that a regression fails instead of hanging. */
static int long_job_run(struct sd_store_handle *st, struct sd_write_job *job)
{
    struct long_job *lj = job->arg;
    ctl_put_start(&lj->put, st, lj->put.tenant, "con_during_job", &lj->put_thread);
    int64_t until = sd_now_usec() + 60LL * 1000000;
    while (sd_now_usec() < until && !lj->saw_waiting) {
        lj->saw_waiting = sd_writer_others_waiting(lj->w);
        struct timespec ms = {.tv_nsec = 1000000};
        nanosleep(&ms, NULL);
    }
    return 0;
}

static void test_long_writer_job_yields_to_a_waiting_settings_write(void **state)
{
    (void)state;
    struct sd_test_store st;
    struct sd_store_handle *h = NULL;
    sd_test_store_setup(&st, "turnsyield", &h);
    struct long_job lj = {0};
    lj.put.tenant = sd_test_store_tenant(h, "acme", "Acme");
    assert_int_equal(sd_writer_new(h, &lj.w), 0);
    assert_false(sd_store_write_waiting(h));
    assert_false(sd_writer_others_waiting(lj.w));
    assert_int_equal(sd_writer_run_sync(lj.w, long_job_run, &lj), 0);
    assert_int_equal(pthread_join(lj.put_thread, NULL), 0);
    assert_true(lj.saw_waiting);
    /* the job ended for it, so the settings write had its turn within its bound */
    assert_int_equal(atomic_load(&lj.put.result), 0);
    assert_false(sd_store_write_waiting(h));
    sd_writer_free(lj.w);
    sd_test_store_release(&st, h);
}

/* While the write path holds the lock past the bound, the settings write gives up with
 * -ETIMEDOUT (nothing written, retry later: the API answers 503 with Retry-After), and while it
 * waits the store says so; once the lock is free the same write succeeds. */
static void test_settings_write_waiting_is_seen_then_times_out(void **state)
{
    (void)state;
    struct sd_test_store st;
    struct sd_store_handle *h = NULL;
    sd_test_store_setup(&st, "turnswait", &h);
    int64_t tenant = sd_test_store_tenant(h, "acme", "Acme");
    assert_int_equal(sd_store_write_begin(h), 0);
    assert_false(sd_store_write_waiting(h));
    struct ctl_put p;
    pthread_t t;
    ctl_put_start(&p, h, tenant, "con_blocked", &t);
    bool seen = false;
    while (!atomic_load(&p.finished)) {
        seen = seen || sd_store_write_waiting(h);
        sched_yield();
    }
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(seen);
    assert_int_equal(atomic_load(&p.result), -ETIMEDOUT);
    assert_false(sd_store_write_waiting(h));
    assert_int_equal(sd_store_write_commit(h), 0);

    ctl_put_start(&p, h, tenant, "con_blocked", &t);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(atomic_load(&p.result), 0);
    sd_test_store_release(&st, h);
}

/* Another process (here: another connection, as the CLI's) holds the data file's write lock
 * past busy_timeout: the settings write gives up with -ETIMEDOUT too, not a store failure. */
static void test_settings_write_behind_another_connection_times_out(void **state)
{
    (void)state;
    struct sd_test_store st;
    struct sd_store_handle *h = NULL;
    sd_test_store_setup(&st, "turnsother", &h);
    int64_t tenant = sd_test_store_tenant(h, "acme", "Acme");
    char path[160];
    snprintf(path, sizeof(path), "%s/stagedoor.db", st.dir);
    sqlite3 *other = NULL;
    assert_int_equal(sqlite3_open_v2(path, &other, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    struct ctl_put p;
    pthread_t t;
    ctl_put_start(&p, h, tenant, "con_other", &t);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(atomic_load(&p.result), -ETIMEDOUT);
    assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    ctl_put_start(&p, h, tenant, "con_other", &t);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(atomic_load(&p.result), 0);
    sd_test_store_release(&st, h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_begins_while_ctl_transactions_run_back_to_back),
        cmocka_unit_test(test_long_writer_job_yields_to_a_waiting_settings_write),
        cmocka_unit_test(test_settings_write_waiting_is_seen_then_times_out),
        cmocka_unit_test(test_settings_write_behind_another_connection_times_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
