/* test_model_money.c — ISO 4217 table and exact decimals: strings, integers and reals (the
 * shortest round-trip text and the 15-digit bound), decimal places by value, int64 range. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "model/model.h"

struct cur_case {
    const char *code;
    int minor;
};

static void test_currency(void **state)
{
    static const struct cur_case cases[] = {
        {"EUR", 2}, {"USD", 2}, {"GBP", 2}, {"CHF", 2}, {"JPY", 0}, {"KRW", 0}, {"ISK", 0},
        {"BHD", 3}, {"KWD", 3}, {"TND", 3}, {"CLF", 4}, {"UYW", 4}, {"SLE", 2}, {"VES", 2},
        {"ZWG", 2}, {"AED", 2}, {"ZMW", 2}, {"XOF", 0}, {"XPF", 0},
        /* withdrawn, no minor unit, or not a code */
        {"DEM", -1}, {"FRF", -1}, {"HRK", -1}, {"SLL", -1}, {"ZWL", -1}, {"VEF", -1},
        {"MRO", -1}, {"XAU", -1}, {"XDR", -1}, {"XTS", -1}, {"eur", -1}, {"Eur", -1},
        {"EU", -1}, {"EURO", -1}, {"", -1}, {"E1R", -1}, {"AAA", -1}, {"ZZZ", -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        if (sd_currency_minor_units(cases[i].code) != cases[i].minor) {
            fail_msg("case %zu: %s", i, cases[i].code);
        }
    }
    assert_int_equal(sd_currency_minor_units(NULL), -1);
}

struct dec_case {
    const char *json; /* decoded with JSON_DECODE_ANY */
    int minor;
    int rc;
    int64_t amount;
    const char *why_part; /* substring of the reason on failure */
};

static void test_decimal_parse(void **state)
{
    static const struct dec_case cases[] = {
        {"\"89.00\"", 2, 0, 8900, NULL},
        {"\"89\"", 2, 0, 8900, NULL},
        {"\"89.5\"", 2, 0, 8950, NULL},
        {"\"0\"", 2, 0, 0, NULL},
        {"\"0.01\"", 2, 0, 1, NULL},
        {"\"0.001\"", 2, -EINVAL, 0, "at most 2 decimal places"},
        {"\"89.000\"", 2, 0, 8900, NULL}, /* trailing zeros beyond minor are fine */
        {"\"89.0000000000000000000000000\"", 2, 0, 8900, NULL},
        {"\"007.50\"", 2, 0, 750, NULL},
        {"\"1.5\"", 0, -EINVAL, 0, "whole amount"},
        {"\"1.0\"", 0, 0, 1, NULL},
        {"\"1.234\"", 3, 0, 1234, NULL},
        {"\"1.2345\"", 3, -EINVAL, 0, "at most 3"},
        {"\"1.2345\"", 4, 0, 12345, NULL},
        {"\"1.23456\"", 4, -EINVAL, 0, "at most 4"},
        {"\"1.5\"", -1, 0, 1, NULL}, /* unknown currency: places not judged */
        {"\"1e3\"", 2, -EINVAL, 0, "exponent"},
        {"\"1E3\"", 2, -EINVAL, 0, "exponent"},
        {"\"-1.00\"", 2, -EINVAL, 0, "negative"},
        {"\"+1.00\"", 2, -EINVAL, 0, "plain decimal"},
        {"\".5\"", 2, -EINVAL, 0, "plain decimal"},
        {"\"5.\"", 2, -EINVAL, 0, "plain decimal"},
        {"\"\"", 2, -EINVAL, 0, "plain decimal"},
        {"\" 5\"", 2, -EINVAL, 0, "plain decimal"},
        {"\"5,00\"", 2, -EINVAL, 0, "plain decimal"},
        {"\"1.2.3\"", 2, -EINVAL, 0, "plain decimal"},
        {"\"5\\u00000\"", 2, -EINVAL, 0, "plain decimal"},
        {"\"92233720368547758.07\"", 2, 0, INT64_MAX, NULL},
        {"\"92233720368547758.08\"", 2, -EINVAL, 0, "too large"},
        {"\"9223372036854775807\"", 0, 0, INT64_MAX, NULL},
        {"\"9223372036854775808\"", 0, -EINVAL, 0, "too large"},
        {"89", 2, 0, 8900, NULL},
        {"0", 2, 0, 0, NULL},
        {"-1", 2, -EINVAL, 0, "negative"},
        {"92233720368547758", 2, 0, 9223372036854775800, NULL},
        {"92233720368547759", 2, -EINVAL, 0, "too large"},
        {"89.0", 2, 0, 8900, NULL},
        {"89.99", 2, 0, 8999, NULL},
        {"0.1", 2, 0, 10, NULL},
        {"0.07", 2, 0, 7, NULL},
        {"0.005", 2, -EINVAL, 0, "at most 2"},
        {"1e2", 2, 0, 10000, NULL},
        {"1.5e-1", 2, 0, 15, NULL},
        {"-0.0", 2, 0, 0, NULL},
        {"-0.5", 2, -EINVAL, 0, "negative"},
        {"123456789012.345", 3, 0, 123456789012345, NULL},   /* 15 significant digits */
        {"1234567890123.456", 3, -EINVAL, 0, "too many digits"}, /* 16 */
        {"0.1234567890123456", 4, -EINVAL, 0, "too many digits"},
        {"1e300", 2, -EINVAL, 0, "too large"},
        {"1e-300", 2, -EINVAL, 0, "at most 2"},
        {"true", 2, -EINVAL, 0, "number or a numeric string"},
        {"null", 2, -EINVAL, 0, "number or a numeric string"},
        {"[1]", 2, -EINVAL, 0, "number or a numeric string"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        json_error_t jerr;
        json_t *v = json_loads(cases[i].json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        if (!v) {
            fail_msg("case %zu: bad test json %s", i, cases[i].json);
        }
        int64_t amount = -42;
        const char *why = NULL;
        int rc = sd_decimal_parse(v, cases[i].minor, &amount, &why);
        json_decref(v);
        if (rc != cases[i].rc) {
            fail_msg("case %zu: %s rc %d (%s)", i, cases[i].json, rc, why ? why : "");
        }
        if (rc == 0 && amount != cases[i].amount) {
            fail_msg("case %zu: %s amount %lld", i, cases[i].json, (long long)amount);
        }
        if (rc != 0) {
            assert_int_equal(amount, -42); /* untouched */
            assert_non_null(why);
            if (!strstr(why, cases[i].why_part)) {
                fail_msg("case %zu: why '%s'", i, why);
            }
        }
    }
    /* why may be NULL */
    json_t *v = json_string("x");
    int64_t a;
    assert_int_equal(sd_decimal_parse(v, 2, &a, NULL), -EINVAL);
    json_decref(v);
}

struct fmt_case {
    int64_t amount;
    int minor;
    const char *out;
};

static void test_decimal_format(void **state)
{
    static const struct fmt_case cases[] = {
        {8900, 2, "89.00"},
        {5, 2, "0.05"},
        {0, 2, "0.00"},
        {99, 2, "0.99"},
        {100, 2, "1.00"},
        {1234, 0, "1234"},
        {0, 0, "0"},
        {1, 3, "0.001"},
        {12345, 4, "1.2345"},
        {-150, 2, "-1.50"},
        {INT64_MAX, 2, "92233720368547758.07"},
        {INT64_MIN, 2, "-92233720368547758.08"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char out[32];
        sd_decimal_format(cases[i].amount, cases[i].minor, out);
        if (strcmp(out, cases[i].out) != 0) {
            fail_msg("case %zu: '%s'", i, out);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_currency),
        cmocka_unit_test(test_decimal_parse),
        cmocka_unit_test(test_decimal_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
