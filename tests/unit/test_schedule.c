/* test_schedule.c — schedule strings: every accepted form parses, every wrong one is refused
 * with a reason, and the next run time is right for intervals, hourly, daily and cron
 * (including day-of-month/day-of-week "either matches" and Sunday as 0 or 7). */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_every),
        cmocka_unit_test(test_calendar),
        cmocka_unit_test(test_cron),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
