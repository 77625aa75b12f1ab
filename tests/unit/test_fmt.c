/* test_fmt.c — integers as text without printf: the same digits as snprintf for edge values
 * and a fixed-seed sweep, and a fixed-buffer line that cuts instead of overflowing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/fmt.h"

static uint64_t next(uint64_t *s)
{
    /* splitmix64: a fixed seed gives the same sweep every run */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void check_i64(int64_t v)
{
    char want[32], got[SD_FMT_I64_MAX];
    int n = snprintf(want, sizeof(want), "%lld", (long long)v);
    assert_int_equal(sd_fmt_i64(got, v), (size_t)n);
    assert_string_equal(got, want);
}

static void check_hex(uint64_t v)
{
    char want[32], got[17];
    snprintf(want, sizeof(want), "%016llx", (unsigned long long)v);
    sd_fmt_hex64(got, v);
    assert_string_equal(got, want);
}

static void test_same_digits_as_printf(void **state)
{
    (void)state;
    static const int64_t edges[] = {0,
                                    1,
                                    -1,
                                    9,
                                    10,
                                    -10,
                                    99,
                                    100,
                                    999999,
                                    1000000,
                                    INT32_MAX,
                                    INT32_MIN,
                                    INT64_MAX,
                                    INT64_MIN,
                                    INT64_MIN + 1,
                                    INT64_MAX - 1};
    for (size_t i = 0; i < sizeof(edges) / sizeof(*edges); i++) {
        check_i64(edges[i]);
        check_hex((uint64_t)edges[i]);
    }
    uint64_t seed = 14;
    for (int i = 0; i < 20000; i++) {
        uint64_t r = next(&seed);
        check_i64((int64_t)r);
        check_i64((int64_t)(r >> (r % 64))); /* every magnitude */
        check_hex(r);
        check_hex(r >> (r % 64));
    }
}

static void test_line_cuts(void **state)
{
    (void)state;
    char buf[16];
    struct sd_line l;
    sd_line_init(&l, buf, sizeof(buf));
    assert_string_equal(buf, "");
    sd_line_puts(&l, "status=");
    sd_line_i64(&l, -202);
    assert_string_equal(buf, "status=-202");
    assert_int_equal(l.len, 11);
    assert_false(l.cut);
    sd_line_puts(&l, " duration_us=");
    assert_true(l.cut);
    assert_int_equal(l.len, sizeof(buf) - 1);
    assert_string_equal(buf, "status=-202 dur");
    sd_line_i64(&l, 5);
    assert_string_equal(buf, "status=-202 dur");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_digits_as_printf),
        cmocka_unit_test(test_line_cuts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
