/* test_quota.c — vendor quotas as data (core/quota.h over store/quota.h, a real store):
 * fixed windows that roll over, all-or-nothing takes across a minute and a day window, a day
 * count that survives closing and reopening the store, credentials (shared by instances with
 * one credential, independent otherwise, never the secret itself), the write reserve, the
 * retry time of a refused take, old windows purged, the status, atomic takes from several
 * threads on one and on two store handles and from two processes, the connector's waits
 * (sd_connector_wait, sd_connector_quota_take) that end as soon as the hub stops, and the
 * registered types' declarations. Times are passed in, except for the two waits, which
 * assert only what a loaded machine cannot break. store suite: both backends */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "core/connector.h"
#include "core/connector_config.h"
#include "core/hub.h"
#include "core/quota.h"
#include "store/quota.h"
#include "store/store.h"
#include "store_fixture.h"

#define SEC 1000000LL
#define MINUTE (60 * SEC)
#define DAY (86400 * SEC)
/* 2026-12-06T00:00:00Z, a UTC midnight: day and minute windows start here. */
#define T0 (1796515200LL * SEC)

struct fx {
    struct sd_test_store ts;
    struct sd_store_handle *h;
};

static int setup(void **state)
{
    struct fx *f = sd_calloc(1, sizeof(*f));
    sd_test_store_setup(&f->ts, "quota", &f->h);
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

static const struct sd_quota minute_only[] = {{"minute", MINUTE, 3, 0}, {NULL, 0, 0, 0}};
static const struct sd_quota minute_day[] = {
    {"minute", MINUTE, 5, 0}, {"day", DAY, 7, 0}, {NULL, 0, 0, 0}};
static const struct sd_quota reserved[] = {{"minute", MINUTE, 10, 4}, {NULL, 0, 0, 0}};

/* The count of window `name` of q at now (via the status, as operators see it). */
static int64_t used_of(struct sd_store_handle *h, const char *key, const struct sd_quota *q,
                       const char *name, int64_t now)
{
    json_t *st = sd_quota_status(h, key, q, now);
    assert_non_null(st);
    int64_t used = -1;
    size_t i;
    json_t *w;
    json_array_foreach(st, i, w)
    {
        if (strcmp(json_string_value(json_object_get(w, "window")), name) == 0) {
            used = json_integer_value(json_object_get(w, "used"));
        }
    }
    json_decref(st);
    assert_true(used >= 0);
    return used;
}

static void test_check_and_window(void **state)
{
    (void)state;
    assert_int_equal(sd_quota_check(NULL), 0);
    assert_int_equal(sd_quota_check(minute_day), 0);
    static const struct sd_quota bad[][2] = {
        {{"", MINUTE, 1, 0}, {NULL, 0, 0, 0}},
        {{"m", 0, 1, 0}, {NULL, 0, 0, 0}},
        {{"m", MINUTE, 0, 0}, {NULL, 0, 0, 0}},
        {{"m", MINUTE, 5, 6}, {NULL, 0, 0, 0}},
        {{"m", MINUTE, 5, -1}, {NULL, 0, 0, 0}},
        {{"a-name-longer-than-thirty-two-bytes", MINUTE, 5, 0}, {NULL, 0, 0, 0}},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sd_quota_check(bad[i]), -EINVAL);
    }
    static const struct sd_quota dup[] = {{"m", MINUTE, 5, 0}, {"m", DAY, 5, 0}, {NULL, 0, 0, 0}};
    assert_int_equal(sd_quota_check(dup), -EINVAL);

    int64_t s, e;
    sd_quota_window(T0 + 59 * SEC, MINUTE, &s, &e);
    assert_true(s == T0 && e == T0 + MINUTE);
    sd_quota_window(T0 + 60 * SEC, MINUTE, &s, &e);
    assert_true(s == T0 + MINUTE && e == T0 + 2 * MINUTE);
    sd_quota_window(T0 + DAY - 1, DAY, &s, &e);
    assert_true(s == T0 && e == T0 + DAY);
    sd_quota_window(-1, MINUTE, &s, &e);
    assert_true(s == -MINUTE && e == 0);
}

static void test_windows_roll_over(void **state)
{
    struct fx *f = *state;
    int64_t now = T0 + 10 * SEC, retry = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(
            sd_quota_take(f->h, "t:k", minute_only, SD_QUOTA_WRITE, 1, now + i * SEC, &retry), 0);
    }
    assert_int_equal(
        sd_quota_take(f->h, "t:k", minute_only, SD_QUOTA_WRITE, 1, now + 40 * SEC, &retry),
        -EAGAIN);
    assert_true(retry == T0 + MINUTE);
    assert_int_equal(used_of(f->h, "t:k", minute_only, "minute", now + 45 * SEC), 3);
    /* The next minute is a new window. */
    assert_int_equal(sd_quota_take(f->h, "t:k", minute_only, SD_QUOTA_WRITE, 2, retry, NULL), 0);
    assert_int_equal(used_of(f->h, "t:k", minute_only, "minute", retry), 2);
    assert_int_equal(sd_quota_take(f->h, "t:k", minute_only, SD_QUOTA_WRITE, 2, retry + SEC, NULL),
                     -EAGAIN);
    assert_int_equal(sd_quota_take(f->h, "t:k", minute_only, SD_QUOTA_WRITE, 1, retry + SEC, NULL),
                     0);
    /* n = 0 spends nothing; a negative n or more than a window holds is refused. */
    assert_int_equal(sd_quota_take(f->h, "t:k", minute_only, SD_QUOTA_WRITE, 0, retry, NULL), 0);
    assert_int_equal(sd_quota_take(f->h, "t:k", minute_only, SD_QUOTA_WRITE, -1, retry, NULL),
                     -EINVAL);
    assert_int_equal(sd_quota_take(f->h, "t:k", minute_only, SD_QUOTA_WRITE, 4, retry, NULL),
                     -E2BIG);
    /* No quotas: unlimited. */
    assert_int_equal(sd_quota_take(f->h, "t:k", NULL, SD_QUOTA_WRITE, 1000, retry, NULL), 0);
}

static void test_all_or_nothing(void **state)
{
    struct fx *f = *state;
    int64_t retry = 0;
    assert_int_equal(sd_quota_take(f->h, "t:k", minute_day, SD_QUOTA_WRITE, 5, T0, NULL), 0);
    /* The minute is full: the day is not counted either. */
    assert_int_equal(sd_quota_take(f->h, "t:k", minute_day, SD_QUOTA_WRITE, 1, T0 + SEC, &retry),
                     -EAGAIN);
    assert_true(retry == T0 + MINUTE);
    assert_int_equal(used_of(f->h, "t:k", minute_day, "day", T0 + SEC), 5);
    /* Next minute: 3 more would break the day (5 + 3 > 7): the new minute stays untouched. */
    int64_t m2 = T0 + MINUTE + SEC;
    assert_int_equal(sd_quota_take(f->h, "t:k", minute_day, SD_QUOTA_WRITE, 3, m2, &retry),
                     -EAGAIN);
    assert_true(retry == T0 + DAY);
    assert_int_equal(used_of(f->h, "t:k", minute_day, "minute", m2), 0);
    assert_int_equal(used_of(f->h, "t:k", minute_day, "day", m2), 5);
    assert_int_equal(sd_quota_take(f->h, "t:k", minute_day, SD_QUOTA_WRITE, 2, m2, NULL), 0);
    assert_int_equal(used_of(f->h, "t:k", minute_day, "minute", m2), 2);
    assert_int_equal(used_of(f->h, "t:k", minute_day, "day", m2), 7);
    /* Both full: the day's end is when both have room. */
    int64_t m3 = T0 + 2 * MINUTE;
    assert_int_equal(sd_quota_take(f->h, "t:k", minute_day, SD_QUOTA_WRITE, 1, m3, &retry),
                     -EAGAIN);
    assert_true(retry == T0 + DAY);
    assert_int_equal(sd_quota_take(f->h, "t:k", minute_day, SD_QUOTA_WRITE, 5, T0 + DAY, NULL), 0);
}

static void test_day_survives_restart(void **state)
{
    struct fx *f = *state;
    int64_t noon = T0 + DAY / 2;
    assert_int_equal(sd_quota_take(f->h, "t:k", minute_day, SD_QUOTA_WRITE, 4, noon, NULL), 0);
    assert_int_equal(sd_quota_take(f->h, "t:k", minute_day, SD_QUOTA_WRITE, 2, noon + MINUTE, NULL),
                     0);
    sd_store_close(f->h);
    f->h = NULL;
    sd_test_store_open(&f->ts, &f->h);
    int64_t later = noon + 3 * 3600 * SEC;
    assert_int_equal(used_of(f->h, "t:k", minute_day, "day", later), 6);
    int64_t retry = 0;
    assert_int_equal(sd_quota_take(f->h, "t:k", minute_day, SD_QUOTA_WRITE, 2, later, &retry),
                     -EAGAIN);
    assert_true(retry == T0 + DAY);
    assert_int_equal(sd_quota_take(f->h, "t:k", minute_day, SD_QUOTA_WRITE, 1, later, NULL), 0);
}

static const struct sd_quota vendor_q[] = {{"minute", MINUTE, 2, 0}, {NULL, 0, 0, 0}};
static const struct sd_connector keyed = {.name = "vendor",
                                          .kind = SD_CONNECTOR_SOURCE,
                                          .quotas = vendor_q,
                                          .credential_settings = SD_CHOICES("api_key")};
static const struct sd_connector per_instance = {
    .name = "other", .kind = SD_CONNECTOR_SOURCE, .quotas = vendor_q};

static void test_credentials(void **state)
{
    struct fx *f = *state;
    json_t *s1 = json_pack("{s:s, s:s}", "api_key", "k1-secret", "url", "http://a");
    json_t *s2 = json_pack("{s:s, s:s}", "api_key", "k1-secret", "url", "http://b");
    json_t *s3 = json_pack("{s:s}", "api_key", "k2-secret");

    char *k1 = sd_quota_cred_key(&keyed, s1, "con_a");
    char *k2 = sd_quota_cred_key(&keyed, s2, "con_b");
    char *k3 = sd_quota_cred_key(&keyed, s3, "con_c");
    assert_string_equal(k1, k2); /* other settings do not matter */
    assert_string_not_equal(k1, k3);
    assert_true(strncmp(k1, "vendor:", 7) == 0 && strlen(k1) == 7 + 64);
    assert_null(strstr(k1, "k1-secret"));
    free(k1);
    free(k2);
    free(k3);

    /* Two instances with one credential share the budget; another credential has its own. */
    assert_int_equal(sd_quota_take_instance(f->h, &keyed, s1, "con_a", SD_QUOTA_WRITE, 1, T0, NULL),
                     0);
    assert_int_equal(sd_quota_take_instance(f->h, &keyed, s2, "con_b", SD_QUOTA_WRITE, 1, T0, NULL),
                     0);
    assert_int_equal(sd_quota_take_instance(f->h, &keyed, s1, "con_a", SD_QUOTA_WRITE, 1, T0, NULL),
                     -EAGAIN);
    assert_int_equal(sd_quota_take_instance(f->h, &keyed, s3, "con_c", SD_QUOTA_WRITE, 2, T0, NULL),
                     0);
    json_t *st = sd_quota_status_instance(f->h, &keyed, s2, "con_b", T0);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(st, 0), "used")), 2);
    json_decref(st);

    /* Without credential settings every instance is its own credential, whatever its
     * settings. */
    assert_int_equal(
        sd_quota_take_instance(f->h, &per_instance, s1, "con_x", SD_QUOTA_WRITE, 2, T0, NULL), 0);
    assert_int_equal(
        sd_quota_take_instance(f->h, &per_instance, s1, "con_y", SD_QUOTA_WRITE, 2, T0, NULL), 0);
    assert_int_equal(
        sd_quota_take_instance(f->h, &per_instance, s1, "con_x", SD_QUOTA_WRITE, 1, T0, NULL),
        -EAGAIN);
    /* A type without quotas is unlimited. */
    static const struct sd_connector free_type = {.name = "free"};
    assert_int_equal(
        sd_quota_take_instance(f->h, &free_type, s1, "con_z", SD_QUOTA_READ, 99999, T0, NULL), 0);
    st = sd_quota_status_instance(f->h, &free_type, s1, "con_z", T0);
    assert_int_equal(json_array_size(st), 0);
    json_decref(st);
    json_decref(s1);
    json_decref(s2);
    json_decref(s3);
}

static void test_write_reserve(void **state)
{
    struct fx *f = *state;
    /* 10 calls, 4 kept for writes: reads stop at 6, writes go on to 10. */
    for (int i = 0; i < 6; i++) {
        assert_int_equal(sd_quota_take(f->h, "t:r", reserved, SD_QUOTA_READ, 1, T0, NULL), 0);
    }
    int64_t retry = 0;
    assert_int_equal(sd_quota_take(f->h, "t:r", reserved, SD_QUOTA_READ, 1, T0, &retry), -EAGAIN);
    assert_true(retry == T0 + MINUTE);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(sd_quota_take(f->h, "t:r", reserved, SD_QUOTA_WRITE, 1, T0, NULL), 0);
    }
    assert_int_equal(sd_quota_take(f->h, "t:r", reserved, SD_QUOTA_WRITE, 1, T0, NULL), -EAGAIN);
    /* Writes first: reads find the window full from calls - write_reserve on. */
    int64_t m2 = T0 + MINUTE;
    assert_int_equal(sd_quota_take(f->h, "t:r", reserved, SD_QUOTA_WRITE, 5, m2, NULL), 0);
    assert_int_equal(sd_quota_take(f->h, "t:r", reserved, SD_QUOTA_READ, 1, m2, NULL), 0);
    assert_int_equal(sd_quota_take(f->h, "t:r", reserved, SD_QUOTA_READ, 1, m2, NULL), -EAGAIN);
    /* A read larger than the read budget can never fit. */
    assert_int_equal(sd_quota_take(f->h, "t:r", reserved, SD_QUOTA_READ, 7, m2, NULL), -E2BIG);
    assert_int_equal(sd_quota_take(f->h, "t:r", reserved, SD_QUOTA_WRITE, 4, m2, NULL), 0);
}

static void test_purge_and_status(void **state)
{
    struct fx *f = *state;
    int64_t v0 = 0, v1 = 0;
    assert_int_equal(sd_store_settings_version(f->h, &v0), 0);
    assert_int_equal(sd_quota_take(f->h, "t:p", minute_day, SD_QUOTA_WRITE, 3, T0 + SEC, NULL), 0);
    /* Counting calls is not a settings change. */
    assert_int_equal(sd_store_settings_version(f->h, &v1), 0);
    assert_true(v0 == v1);

    json_t *st = sd_quota_status(f->h, "t:p", minute_day, T0 + 2 * SEC);
    assert_non_null(st);
    assert_int_equal(json_array_size(st), 2);
    json_t *m = json_array_get(st, 0), *d = json_array_get(st, 1);
    assert_string_equal(json_string_value(json_object_get(m, "window")), "minute");
    assert_int_equal(json_integer_value(json_object_get(m, "limit")), 5);
    assert_int_equal(json_integer_value(json_object_get(m, "used")), 3);
    assert_int_equal(json_integer_value(json_object_get(m, "reserved_for_writes")), 0);
    assert_string_equal(json_string_value(json_object_get(m, "resets_at")), "2026-12-06T00:01:00Z");
    assert_string_equal(json_string_value(json_object_get(d, "window")), "day");
    assert_int_equal(json_integer_value(json_object_get(d, "used")), 3);
    assert_string_equal(json_string_value(json_object_get(d, "resets_at")), "2026-12-07T00:00:00Z");
    json_decref(st);

    /* A take on another credential, two days on, deletes the ended windows of every
     * credential: the old day's row is gone from the ledger itself. */
    assert_int_equal(
        sd_quota_take(f->h, "t:other", minute_day, SD_QUOTA_WRITE, 1, T0 + 2 * DAY, NULL), 0);
    struct sd_quota_slot old = {.name = "day", .start_usec = T0, .end_usec = T0 + DAY};
    assert_int_equal(sd_store_quota_read(f->h, "t:p", &old, 1), 0);
    assert_int_equal(old.used, 0);
    /* ...while a window still running stays. */
    struct sd_quota_slot cur = {
        .name = "day", .start_usec = T0 + 2 * DAY, .end_usec = T0 + 3 * DAY};
    assert_int_equal(sd_store_quota_read(f->h, "t:other", &cur, 1), 0);
    assert_int_equal(cur.used, 1);

    /* The store refuses what it cannot count. */
    struct sd_quota_slot bad = {.name = "day", .start_usec = T0, .end_usec = T0};
    assert_int_equal(sd_store_quota_take(f->h, "t:p", T0, 1, &bad, 1), -EINVAL);
    assert_int_equal(sd_store_quota_take(f->h, "", T0, 1, &cur, 1), -EINVAL);
    assert_int_equal(sd_store_quota_take(f->h, "t:p", T0, 1, &cur, 0), -EINVAL);
}

/* ---- concurrency ------------------------------------------------------------------------------
 */

#define RACE_LIMIT 50
#define RACE_TRIES 40
static const struct sd_quota race_q[] = {
    {"minute", MINUTE, RACE_LIMIT, 0}, {"day", DAY, 1000, 0}, {NULL, 0, 0, 0}};

struct racer {
    struct sd_store_handle *h;
    atomic_int *go;
    int taken;
    int failed;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    while (!atomic_load(r->go)) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < RACE_TRIES; i++) {
        int rc = sd_quota_take(r->h, "t:race", race_q, SD_QUOTA_WRITE, 1, T0 + i * 1000, NULL);
        if (rc == 0) {
            r->taken++;
        } else if (rc != -EAGAIN) {
            r->failed++;
        }
    }
    return NULL;
}

static void test_concurrent_takes(void **state)
{
    struct fx *f = *state;
    /* Two threads on one handle (serialized in the process) and one on a second handle (a
     * second connection, as another process would have): 120 tries for 50 calls. */
    struct sd_store_handle *h2 = NULL;
    sd_test_store_open(&f->ts, &h2);
    atomic_int go = 0;
    struct racer rs[3] = {{f->h, &go, 0, 0}, {f->h, &go, 0, 0}, {h2, &go, 0, 0}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, race, &rs[i]), 0);
    }
    atomic_store(&go, 1);
    int taken = 0;
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(rs[i].failed, 0);
        taken += rs[i].taken;
    }
    assert_int_equal(taken, RACE_LIMIT);
    assert_int_equal(used_of(f->h, "t:race", race_q, "minute", T0), RACE_LIMIT);
    assert_int_equal(used_of(h2, "t:race", race_q, "day", T0), RACE_LIMIT);
    sd_store_close(h2);
}

/* Two processes on one data directory (two servers, or a server and the CLI): the parent
 * closes its store before the fork, so that neither process inherits SQLite's state of an
 * open file, then both open the store and race for the same calls. */
static void test_concurrent_processes(void **state)
{
    struct fx *f = *state;
    sd_store_close(f->h);
    f->h = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sd_store_handle *h = NULL;
        int taken = 0;
        if (sd_store_open(sd_test_store_kind(), sd_test_store_location(&f->ts), &h) != 0) {
            _exit(255);
        }
        for (int i = 0; i < RACE_TRIES * 2; i++) {
            int rc = sd_quota_take(h, "t:race", race_q, SD_QUOTA_WRITE, 1, T0 + i, NULL);
            if (rc == 0) {
                taken++;
            } else if (rc != -EAGAIN) {
                sd_store_close(h);
                _exit(254);
            }
        }
        sd_store_close(h);
        _exit(taken);
    }
    sd_test_store_open(&f->ts, &f->h);
    int taken = 0;
    for (int i = 0; i < RACE_TRIES * 2; i++) {
        int rc = sd_quota_take(f->h, "t:race", race_q, SD_QUOTA_WRITE, 1, T0 + i, NULL);
        assert_true(rc == 0 || rc == -EAGAIN);
        taken += rc == 0;
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    int child = WEXITSTATUS(status);
    assert_true(child <= RACE_LIMIT);
    assert_int_equal(taken + child, RACE_LIMIT);
    assert_int_equal(used_of(f->h, "t:race", race_q, "minute", T0), RACE_LIMIT);
}

/* ---- the connector's waits ------------------------------------------------------------------- */

struct stopper {
    atomic_bool *stop;
    int64_t after_usec;
};

static void *stop_later(void *arg)
{
    struct stopper *s = arg;
    struct timespec ts = {(time_t)(s->after_usec / SEC), (long)(s->after_usec % SEC) * 1000};
    nanosleep(&ts, NULL);
    atomic_store(s->stop, true);
    return NULL;
}

static void test_wait_honours_stop(void **state)
{
    (void)state;
    atomic_bool stop = false;
    struct sd_connector_ctx ctx = {.id = "con_w", .stop = &stop};

    /* No stop: the whole wait. */
    int64_t t = sd_mono_usec();
    assert_int_equal(sd_connector_wait(&ctx, 20000), 0);
    assert_true(sd_mono_usec() - t >= 20000);
    assert_int_equal(sd_connector_wait(&ctx, 0), 0);
    assert_int_equal(sd_connector_wait(&ctx, -5), 0);

    /* A stop from another thread ends a 10-minute wait: the test would take 10 minutes if it
     * did not, so "returned at all, with -ECANCELED, well before" is the check. */
    struct stopper s = {&stop, 100000};
    pthread_t th;
    t = sd_mono_usec();
    assert_int_equal(pthread_create(&th, NULL, stop_later, &s), 0);
    assert_int_equal(sd_connector_wait(&ctx, 600 * SEC), -ECANCELED);
    assert_true(sd_mono_usec() - t < 300 * SEC);
    pthread_join(th, NULL);

    /* Already stopping: at once, even for a zero wait. */
    assert_int_equal(sd_connector_wait(&ctx, 600 * SEC), -ECANCELED);
    assert_int_equal(sd_connector_wait(&ctx, 0), -ECANCELED);

    /* Without a stop flag (the demo loader) a wait simply waits. */
    struct sd_connector_ctx bare = {.id = "con_b"};
    assert_int_equal(sd_connector_wait(&bare, 1000), 0);
}

static const struct sd_quota tick_q[] = {{"tick", 200000, 1, 0}, {NULL, 0, 0, 0}};
/* 3650 days: its windows change in 2029 and 2039, so a test run never straddles one. */
static const struct sd_quota decade_q[] = {{"decade", 3650 * DAY, 2, 1}, {NULL, 0, 0, 0}};

static void test_connector_quota_take(void **state)
{
    struct fx *f = *state;
    struct sd_hub hub = {.store = f->h};
    atomic_bool stop = false;
    json_t *settings = json_pack("{s:s}", "api_key", "x");
    struct sd_connector ticker = {.name = "ticker", .quotas = tick_q};
    struct sd_connector_ctx ctx = {
        .hub = &hub, .id = "con_t", .settings = settings, .stop = &stop, .connector = &ticker};

    /* One call per 200 ms window: three takes wait for two window ends in between. */
    int64_t start = sd_now_usec();
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sd_connector_quota_take(&ctx, 1), 0);
    }
    int64_t s0, s1, e;
    sd_quota_window(start, 200000, &s0, &e);
    sd_quota_window(sd_now_usec(), 200000, &s1, &e);
    assert_true(s1 - s0 >= 2 * 200000);
    assert_int_equal(sd_connector_quota_take(&ctx, 2), -E2BIG);

    /* Reads spend 2 - 1 per window: the second waits for the next one, until the hub stops. */
    struct sd_connector daily = {
        .name = "daily", .quotas = decade_q, .credential_settings = SD_CHOICES("api_key")};
    ctx.connector = &daily;
    assert_int_equal(sd_connector_quota_take(&ctx, 1), 0);
    struct stopper s = {&stop, 100000};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stop_later, &s), 0);
    assert_int_equal(sd_connector_quota_take(&ctx, 1), -ECANCELED);
    pthread_join(th, NULL);
    /* The write reserve is still there for the outbox. */
    assert_int_equal(sd_quota_take_instance(f->h, &daily, settings, "con_t", SD_QUOTA_WRITE, 1,
                                            sd_now_usec(), NULL),
                     0);

    /* A type without quotas never waits; a context without its type is a mistake. */
    struct sd_connector plain = {.name = "plain"};
    ctx.connector = &plain;
    assert_int_equal(sd_connector_quota_take(&ctx, 1000), 0);
    ctx.connector = NULL;
    assert_int_equal(sd_connector_quota_take(&ctx, 1), -EINVAL);
    json_decref(settings);
}

/* Inside a delivery (a lease set): the call core took before deliver is spent first, and the
 * further calls of the same deliver count as writes, so a read-merge-write takes its second
 * call from the write reserve that pull runs leave; a full window answers -EAGAIN within the
 * bound instead of holding the delivery worker. */
static void test_delivery_quota_take(void **state)
{
    struct fx *f = *state;
    struct sd_hub hub = {.store = f->h};
    atomic_bool stop = false;
    json_t *settings = json_pack("{s:s}", "api_key", "deliveries");
    struct sd_connector daily = {
        .name = "daily", .quotas = decade_q, .credential_settings = SD_CHOICES("api_key")};
    struct sd_connector_ctx run = {
        .hub = &hub, .id = "con_r", .settings = settings, .stop = &stop, .connector = &daily};
    /* a pull run spends the read share (2 - 1) */
    assert_int_equal(sd_connector_quota_take(&run, 1), 0);
    int64_t retry_at = 0;
    assert_int_equal(sd_connector_quota_take_within(&run, 1, 0, &retry_at), -EAGAIN);

    /* a delivery whose first call core took already (prepaid) */
    struct sd_outbox_lease *lease = (struct sd_outbox_lease *)&stop; /* only tested for NULL */
    struct sd_connector_ctx dlv = {.hub = &hub,
                                   .id = "con_d",
                                   .settings = settings,
                                   .stop = &stop,
                                   .connector = &daily,
                                   .lease = lease,
                                   .prepaid_calls = 1};
    /* the prepaid call is spent without the ledger; the next one is a write, which finds the
     * reserve a read could not use */
    assert_int_equal(sd_connector_quota_take_within(&dlv, 1, 0, NULL), 0);
    assert_int_equal(dlv.prepaid_calls, 0);
    assert_int_equal(sd_connector_quota_take_within(&dlv, 1, 0, &retry_at), 0);
    assert_int_equal(sd_connector_quota_take_within(&dlv, 1, 0, &retry_at), -EAGAIN);
    assert_true(retry_at > sd_now_usec());
    char *key = sd_quota_cred_key(&daily, settings, "con_d");
    json_t *st = sd_quota_status(f->h, key, decade_q, sd_now_usec());
    assert_int_equal(json_integer_value(json_object_get(json_array_get(st, 0), "used")), 2);
    /* outside a delivery the same take is a read: still refused */
    dlv.lease = NULL;
    assert_int_equal(sd_connector_quota_take_within(&dlv, 1, 0, NULL), -EAGAIN);
    json_decref(st);
    free(key);
    json_decref(settings);
}

/* Every registered type's declaration is well-formed and names real settings: a vendor
 * connector with a malformed quota would otherwise fail only when it first runs. */
static void test_registry_declarations(void **state)
{
    (void)state;
    for (size_t i = 0; sd_connectors[i]; i++) {
        const struct sd_connector *c = sd_connectors[i];
        assert_int_equal(sd_quota_check(c->quotas), 0);
        for (size_t k = 0; c->credential_settings && c->credential_settings[k]; k++) {
            bool found = false;
            for (const struct sd_setting *s = c->settings; s && s->key; s++) {
                found = found || strcmp(s->key, c->credential_settings[k]) == 0;
            }
            if (!found) {
                fail_msg("%s: credential setting '%s' is not in its settings table", c->name,
                         c->credential_settings[k]);
            }
        }
    }
}

/* The connector status shows "quotas" for types that declare them (what it shows is
 * sd_quota_status_instance, tested above: no registered type declares quotas yet), and
 * nothing new for the others. */
static void test_view_only_for_quota_types(void **state)
{
    struct fx *f = *state;
    int64_t t = sd_test_store_tenant(f->h, "acme", "Acme");
    struct sd_connector_conf c = {.id = "con_0123456789abcdef",
                                  .tenant_id = t,
                                  .env = SD_ENV_PROD,
                                  .type = "feed",
                                  .schedule = "hourly",
                                  .settings = "{\"url\":\"http://x\"}",
                                  .mapping = "{}"};
    assert_int_equal(sd_store_connector_put(f->h, &c, true), 0);
    json_t *view = sd_connector_config_view(NULL, f->h, &c);
    json_t *status = json_object_get(view, "status");
    assert_non_null(status);
    assert_null(json_object_get(status, "quotas"));
    json_decref(view);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_and_window),
        cmocka_unit_test(test_registry_declarations),
        cmocka_unit_test_setup_teardown(test_windows_roll_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_day_survives_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_credentials, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_reserve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_and_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_takes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_processes, setup, teardown),
        cmocka_unit_test(test_wait_honours_stop),
        cmocka_unit_test_setup_teardown(test_delivery_quota_take, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connector_quota_take, setup, teardown),
        cmocka_unit_test_setup_teardown(test_view_only_for_quota_types, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
