/* test_model_datetime.c — calendar dates, times and RFC 3339 → UTC, both sides of every bound
 * (month lengths, leap years, 23:59:59, year range, offsets crossing day/year boundaries). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "model/model.h"

struct valid_case {
    const char *s;
    bool valid;
};

static void test_date(void **state)
{
    static const struct valid_case cases[] = {
        {"2025-10-03", true},  {"2025-01-31", true},  {"2025-01-32", false},
        {"2025-02-28", true},  {"2025-02-29", false}, {"2024-02-29", true},
        {"2024-02-30", false}, {"2000-02-29", true},  {"1900-02-29", false},
        {"2100-02-29", false}, {"2025-04-30", true},  {"2025-04-31", false},
        {"2025-12-31", true},  {"2025-13-01", false}, {"2025-00-10", false},
        {"2025-01-00", false}, {"1900-01-01", true},  {"1899-12-31", false},
        {"9999-12-31", true},  {"2025-1-01", false},  {"2025-01-1", false},
        {"25-01-01", false},   {"2025/01/01", false}, {"2025-01-01 ", false},
        {" 2025-01-01", false}, {"2025-01-01T00:00:00", false}, {"", false},
        {"20250101", false},   {"+025-01-01", false}, {"2025-0a-01", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        if (sd_date_valid(cases[i].s) != cases[i].valid) {
            fail_msg("case %zu: %s", i, cases[i].s);
        }
    }
    assert_false(sd_date_valid(NULL));
}

static void test_time(void **state)
{
    static const struct valid_case cases[] = {
        {"00:00:00", true},  {"19:30:00", true},  {"23:59:59", true},  {"24:00:00", false},
        {"23:60:00", false}, {"23:59:60", false}, {"9:30:00", false},  {"19:30", false},
        {"19:30:00.5", false}, {"19-30-00", false}, {"", false},       {"19:30:0a", false},
        {" 19:30:00", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        if (sd_time_valid(cases[i].s) != cases[i].valid) {
            fail_msg("case %zu: %s", i, cases[i].s);
        }
    }
    assert_false(sd_time_valid(NULL));
}

struct utc_case {
    const char *in;
    const char *out; /* NULL: invalid */
};

static void test_datetime_to_utc(void **state)
{
    static const struct utc_case cases[] = {
        {"2025-04-15T11:08:42Z", "2025-04-15T11:08:42Z"},
        {"2025-04-15t11:08:42z", "2025-04-15T11:08:42Z"},
        {"2025-04-15T13:08:42+02:00", "2025-04-15T11:08:42Z"},
        {"2025-04-15T13:08:42-02:00", "2025-04-15T15:08:42Z"},
        {"2025-04-15T11:08:42-00:00", "2025-04-15T11:08:42Z"},
        {"2025-04-15T11:08:42.5Z", "2025-04-15T11:08:42.5Z"},
        {"2025-04-15T13:08:42.120+02:00", "2025-04-15T11:08:42.120Z"},
        {"2025-04-15T11:08:42.123456789Z", "2025-04-15T11:08:42.123456789Z"},
        {"2025-04-15T11:08:42.1234567890Z", NULL}, /* 10 fraction digits */
        {"2025-04-15T11:08:42.Z", NULL},
        {"2025-01-01T00:30:00+01:00", "2024-12-31T23:30:00Z"},
        {"2024-12-31T23:30:00-01:00", "2025-01-01T00:30:00Z"},
        {"2024-02-29T23:00:00-01:00", "2024-03-01T00:00:00Z"},
        {"2024-03-01T00:59:59+01:00", "2024-02-29T23:59:59Z"},
        {"2025-03-01T00:00:00+00:01", "2025-02-28T23:59:00Z"},
        {"2025-04-15T11:08:42+23:59", "2025-04-14T11:09:42Z"},
        {"2025-04-15T11:08:42+24:00", NULL},
        {"2025-04-15T11:08:42+02:60", NULL},
        {"2025-04-15T11:08:42+0200", NULL},
        {"2025-04-15T11:08:42+02", NULL},
        {"2025-04-15T11:08:42", NULL}, /* no offset */
        {"2025-04-15 11:08:42Z", NULL},
        {"2025-04-15T24:00:00Z", NULL},
        {"2025-04-15T23:59:60Z", NULL},
        {"2025-02-29T10:00:00Z", NULL},
        {"2025-04-15T11:08:42ZZ", NULL},
        {"2025-04-15T11:08:42Z ", NULL},
        {"1900-01-01T00:00:00Z", "1900-01-01T00:00:00Z"},
        {"1900-01-01T00:59:00+01:00", NULL}, /* UTC falls in 1899 */
        {"9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"},
        {"9999-12-31T23:59:59-00:01", NULL}, /* UTC falls in 10000 */
        {"", NULL},
        {"2025-04-15", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char out[40] = "untouched";
        int rc = sd_datetime_to_utc(cases[i].in, out, sizeof(out));
        if (cases[i].out) {
            if (rc != 0 || strcmp(out, cases[i].out) != 0) {
                fail_msg("case %zu: %s → rc %d '%s'", i, cases[i].in, rc, out);
            }
        } else if (rc != -EINVAL) {
            fail_msg("case %zu: %s accepted as '%s'", i, cases[i].in, out);
        }
    }
    char small[10];
    assert_int_equal(sd_datetime_to_utc("2025-04-15T11:08:42Z", small, sizeof(small)), -EINVAL);
    char out[40];
    assert_int_equal(sd_datetime_to_utc(NULL, out, sizeof(out)), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_date),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_datetime_to_utc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
