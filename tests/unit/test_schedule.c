/* test_schedule.c — schedule strings: every accepted form parses, every wrong one is refused
 * with a reason, and the next run time is right for intervals, hourly, daily and cron
 * (including day-of-month/day-of-week "either matches" and Sunday as 0 or 7), and for
 * calendar schedules in a named time zone across both daylight-saving changes (the skipped
 * hour runs forward by the gap, the repeated hour once, hourly schedules once per real hour). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/schedule.h"

#define SEC 1000000LL
#define MIN (60 * SEC)

/* µs of a UTC calendar time. */
static int64_t at(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {
        .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return (int64_t)timegm(&tm) * SEC;
}

static struct sd_schedule parse_ok(const char *s)
{
    struct sd_schedule sc;
    const char *why = NULL;
    int r = sd_schedule_parse(s, &sc, &why);
    if (r != 0) {
        fail_msg("'%s' refused: %s", s, why);
    }
    return sc;
}

static void test_forms(void **state)
{
    (void)state;
    const char *good[] = {"manual",      "every 30s",           "every 15m",      "every 2h",
                          "every 1d",    " Every 10S ",         "hourly",         "hourly at :05",
                          "daily",       "daily at 02:00",      "daily at 23:59", "*/15 * * * *",
                          "0 2 * * 1-5", "5,35 8-18/2 1 1,6 0", "0 0 * * 7",      NULL};
    for (size_t i = 0; good[i]; i++) {
        parse_ok(good[i]);
    }
    const char *bad[] = {"",
                         "sometimes",
                         "every",
                         "every 15",
                         "every 0m",
                         "every 5s",
                         "every 8d",
                         "every 15x",
                         "hourly at 61",
                         "daily at 24:00",
                         "daily at 2",
                         "daily 02:00",
                         "* * * *",
                         "* * * * * *",
                         "60 * * * *",
                         "* 24 * * *",
                         "* * 0 * *",
                         "* * * 13 *",
                         "*/0 * * * *",
                         "a * * * *",
                         "5-2 * * * *",
                         NULL};
    for (size_t i = 0; bad[i]; i++) {
        struct sd_schedule sc;
        const char *why = NULL;
        if (sd_schedule_parse(bad[i], &sc, &why) == 0) {
            fail_msg("'%s' accepted", bad[i]);
        }
        assert_non_null(why);
        assert_true(strlen(why) > 10);
    }
    assert_int_equal(sd_schedule_parse(NULL, &(struct sd_schedule){0}, &(const char *){NULL}), -22);
}

static void test_every(void **state)
{
    (void)state;
    struct sd_schedule sc = parse_ok("every 15m");
    int64_t now = at(2026, 11, 25, 12, 7);
    assert_int_equal(sd_schedule_next(&sc, 0, now), now); /* never ran: due at once */
    assert_int_equal(sd_schedule_next(&sc, now, now), now + 15 * MIN);
    sc = parse_ok("manual");
    assert_int_equal(sd_schedule_next(&sc, 0, now), INT64_MAX);
}

static void test_calendar(void **state)
{
    (void)state;
    int64_t now = at(2026, 11, 25, 12, 7);
    struct sd_schedule sc = parse_ok("hourly");
    assert_int_equal(sd_schedule_next(&sc, 0, now), at(2026, 11, 25, 13, 0));
    sc = parse_ok("hourly at :05");
    assert_int_equal(sd_schedule_next(&sc, 0, now), at(2026, 11, 25, 13, 5));
    sc = parse_ok("daily at 02:00");
    assert_int_equal(sd_schedule_next(&sc, 0, now), at(2026, 11, 26, 2, 0));
    /* After a run at 02:00 the next is tomorrow's; after three days down, one catch-up run. */
    assert_int_equal(sd_schedule_next(&sc, at(2026, 11, 26, 2, 0), now), at(2026, 11, 27, 2, 0));
    assert_int_equal(sd_schedule_next(&sc, at(2026, 11, 20, 2, 0), now), at(2026, 11, 21, 2, 0));
    /* Year end and leap day. */
    assert_int_equal(sd_schedule_next(&sc, at(2027, 12, 31, 3, 0), 0), at(2028, 1, 1, 2, 0));
    sc = parse_ok("0 0 29 2 *");
    assert_int_equal(sd_schedule_next(&sc, at(2026, 3, 1, 0, 0), 0), at(2028, 2, 29, 0, 0));
}

static void test_cron(void **state)
{
    (void)state;
    int64_t now = at(2026, 11, 25, 12, 7); /* a Wednesday */
    struct sd_schedule sc = parse_ok("*/15 * * * *");
    assert_int_equal(sd_schedule_next(&sc, 0, now), at(2026, 11, 25, 12, 15));
    sc = parse_ok("0 2 * * 1-5"); /* weekdays 02:00 */
    assert_int_equal(sd_schedule_next(&sc, at(2026, 11, 27, 2, 0), 0), at(2026, 11, 30, 2, 0));
    sc = parse_ok("30 6 * * 0"); /* Sundays */
    assert_int_equal(sd_schedule_next(&sc, 0, now), at(2026, 11, 29, 6, 30));
    sc = parse_ok("30 6 * * 7"); /* 7 is Sunday too */
    assert_int_equal(sd_schedule_next(&sc, 0, now), at(2026, 11, 29, 6, 30));
    /* Both day fields restricted: either matches (the 1st, or any Friday). */
    sc = parse_ok("0 9 1 * 5");
    assert_int_equal(sd_schedule_next(&sc, 0, now), at(2026, 11, 27, 9, 0));
    assert_int_equal(sd_schedule_next(&sc, at(2026, 11, 27, 9, 0), 0), at(2026, 12, 1, 9, 0));
}

static void test_zone_forms(void **state)
{
    (void)state;
    const char *good[] = {"daily at 02:00 Europe/Berlin",
                          "hourly at :05 Europe/Berlin",
                          "0 2 * * * Europe/Berlin",
                          "  daily America/New_York  ",
                          "hourly UTC",
                          "*/15 8-18 * * 1-5 Asia/Kolkata"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        parse_ok(good[i]);
    }
    assert_null(parse_ok("daily at 02:00").tz);
    assert_null(parse_ok("daily at 02:00 UTC").tz);
    assert_non_null(parse_ok("daily at 02:00 Europe/Berlin").tz);
    struct {
        const char *s, *why;
    } bad[] = {{"every 15m Europe/Berlin", "only applies"},
               {"manual Europe/Berlin", "only applies"},
               {"daily at 02:00 Europe/Atlantis", "unknown time zone"},
               {"daily at 02:00 europe/berlin", "unknown time zone"},
               {"daily at 02:00 Europe/../../etc/passwd", "unknown time zone"},
               {"0 2 * * * Europe/Berlin extra", "five fields"},
               {"daily at 02:00 /etc/passwd", "needs a time"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sd_schedule sc;
        const char *why = NULL;
        if (sd_schedule_parse(bad[i].s, &sc, &why) == 0) {
            fail_msg("'%s' accepted", bad[i].s);
        }
        if (!strstr(why, bad[i].why)) {
            fail_msg("'%s': %s", bad[i].s, why);
        }
    }
}

struct zone_case {
    const char *sched;
    int64_t last, want;
};

static void test_zone_next(void **state)
{
    (void)state;
    const struct zone_case cases[] = {
        /* Berlin, ordinary days: 02:30 local is 01:30 UTC in winter, 00:30 UTC in summer */
        {"daily at 02:30 Europe/Berlin", at(2026, 1, 10, 1, 30), at(2026, 1, 11, 1, 30)},
        {"daily at 02:30 Europe/Berlin", at(2026, 7, 10, 0, 30), at(2026, 7, 11, 0, 30)},
        /* spring forward (2026-03-29): 02:30 does not exist, the run is at 03:30 CEST */
        {"daily at 02:30 Europe/Berlin", at(2026, 3, 28, 1, 30), at(2026, 3, 29, 1, 30)},
        {"daily at 02:30 Europe/Berlin", at(2026, 3, 29, 1, 30), at(2026, 3, 30, 0, 30)},
        /* fall back (2026-10-25): 02:30 happens twice, the run is once, at the first */
        {"daily at 02:30 Europe/Berlin", at(2026, 10, 24, 0, 30), at(2026, 10, 25, 0, 30)},
        {"daily at 02:30 Europe/Berlin", at(2026, 10, 25, 0, 30), at(2026, 10, 26, 1, 30)},
        /* hourly keeps one run per real hour through both changes */
        {"hourly at :05 Europe/Berlin", at(2026, 10, 25, 0, 5), at(2026, 10, 25, 1, 5)},
        {"hourly at :05 Europe/Berlin", at(2026, 10, 25, 1, 5), at(2026, 10, 25, 2, 5)},
        {"hourly at :05 Europe/Berlin", at(2026, 3, 29, 0, 5), at(2026, 3, 29, 1, 5)},
        {"hourly at :05 Europe/Berlin", at(2026, 3, 29, 1, 5), at(2026, 3, 29, 2, 5)},
        /* cron with a zone; New York changes at 02:00 local */
        {"0 2 * * * America/New_York", at(2026, 3, 7, 7, 0), at(2026, 3, 8, 7, 0)},
        {"0 2 * * * America/New_York", at(2026, 3, 8, 7, 0), at(2026, 3, 9, 6, 0)},
        {"30 1 * * * America/New_York", at(2026, 10, 31, 5, 30), at(2026, 11, 1, 5, 30)},
        {"30 1 * * * America/New_York", at(2026, 11, 1, 5, 30), at(2026, 11, 2, 6, 30)},
        /* weekdays only, local: Friday 2026-03-27 02:00 CET, then Monday 03-30 02:00 CEST */
        {"0 2 * * 1-5 Europe/Berlin", at(2026, 3, 27, 1, 0), at(2026, 3, 30, 0, 0)},
        /* southern hemisphere: Sydney skips 02:00-03:00 on 2026-10-04 */
        {"daily at 02:30 Australia/Sydney", at(2026, 10, 2, 16, 30), at(2026, 10, 3, 16, 30)},
        /* far future, from the zone's footer rule */
        {"daily at 02:30 Europe/Berlin", at(2100, 3, 27, 1, 30), at(2100, 3, 28, 1, 30)},
        /* a local date boundary that is not the UTC one */
        {"daily at 00:10 Asia/Kolkata", at(2026, 5, 31, 18, 40), at(2026, 6, 1, 18, 40)},
        {"0 0 29 2 * Europe/Berlin", at(2026, 3, 1, 0, 0), at(2028, 2, 28, 23, 0)},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sd_schedule sc = parse_ok(cases[i].sched);
        int64_t got = sd_schedule_next(&sc, cases[i].last, 0);
        if (got != cases[i].want) {
            fail_msg("%s after %lld: %lld min off", cases[i].sched,
                     (long long)(cases[i].last / SEC), (long long)((got - cases[i].want) / MIN));
        }
    }
    /* never ran: the next slot after now */
    struct sd_schedule sc = parse_ok("daily at 02:00 Europe/Berlin");
    assert_int_equal(sd_schedule_next(&sc, 0, at(2026, 11, 25, 12, 7)), at(2026, 11, 26, 1, 0));
}

/* Runs of a schedule in [from, to): each next run strictly after the one before. */
static int count_runs(const char *sched, int64_t from, int64_t to)
{
    struct sd_schedule sc = parse_ok(sched);
    int n = 0;
    for (int64_t t = sd_schedule_next(&sc, from, 0); t < to; t = sd_schedule_next(&sc, t, 0)) {
        n++;
        assert_true(n < 1000);
    }
    return n;
}

static void test_zone_counts(void **state)
{
    (void)state;
    /* The spring day in Berlin is 23 hours long, the autumn day 25: a daily run happens once
     * on each, an hourly one once per real hour. */
    int64_t spring = at(2026, 3, 28, 23, 0), autumn = at(2026, 10, 24, 22, 0);
    assert_int_equal(count_runs("daily at 02:30 Europe/Berlin", spring, spring + 23 * 60 * MIN), 1);
    assert_int_equal(count_runs("daily at 02:30 Europe/Berlin", autumn, autumn + 25 * 60 * MIN), 1);
    assert_int_equal(count_runs("hourly at :05 Europe/Berlin", spring, spring + 23 * 60 * MIN), 23);
    assert_int_equal(count_runs("hourly at :05 Europe/Berlin", autumn, autumn + 25 * 60 * MIN), 25);
    /* hour 2 given: 02:00 and 02:30 once each; every hour: 50 half hours in 25 h, less the
     * start itself (runs are strictly after it) */
    assert_int_equal(count_runs("*/30 2 * * * Europe/Berlin", autumn, autumn + 25 * 60 * MIN), 2);
    assert_int_equal(count_runs("*/30 * * * * Europe/Berlin", autumn, autumn + 25 * 60 * MIN), 49);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),       cmocka_unit_test(test_every),
        cmocka_unit_test(test_calendar),    cmocka_unit_test(test_cron),
        cmocka_unit_test(test_zone_forms),  cmocka_unit_test(test_zone_next),
        cmocka_unit_test(test_zone_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
