/* test_utf8.c — base/utf8: validity on both sides of every boundary of the RFC 3629 table
 * (lengths, overlongs, surrogates, U+10FFFF), repair to U+FFFD, truncation that never cuts a
 * character, and the boundary-aware snprintf. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/utf8.h"

#define FFFD "\xEF\xBF\xBD"

static void test_valid_boundaries(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t n; /* 0: strlen */
        int seq;  /* sd_utf8_seq_len of the first sequence */
        bool valid;
    } cases[] = {
        {"a", 0, 1, true},
        {"\x7F", 0, 1, true},                 /* last 1-byte */
        {"\x80", 0, 0, false},                /* lone continuation */
        {"\xBF", 0, 0, false},
        {"\xC0\x80", 0, 0, false},            /* overlong NUL */
        {"\xC0\xAF", 0, 0, false},            /* overlong '/' */
        {"\xC1\xBF", 0, 0, false},            /* overlong U+007F */
        {"\xC2\x80", 0, 2, true},             /* U+0080, first 2-byte */
        {"\xC3", 0, 0, false},                /* lead without continuation */
        {"\xC3\xA9", 0, 2, true},             /* é */
        {"\xC3\x28", 0, 0, false},            /* bad continuation */
        {"\xDF\xBF", 0, 2, true},             /* U+07FF, last 2-byte */
        {"\xE0\x9F\xBF", 0, 0, false},        /* overlong U+07FF */
        {"\xE0\xA0\x80", 0, 3, true},         /* U+0800, first 3-byte */
        {"\xE2\x82", 0, 0, false},            /* € cut after 2 bytes */
        {"\xE2\x82\xAC", 0, 3, true},         /* € */
        {"\xED\x9F\xBF", 0, 3, true},         /* U+D7FF, before the surrogates */
        {"\xED\xA0\x80", 0, 0, false},        /* U+D800 */
        {"\xED\xBF\xBF", 0, 0, false},        /* U+DFFF */
        {"\xEE\x80\x80", 0, 3, true},         /* U+E000, after them */
        {"\xEF\xBF\xBF", 0, 3, true},         /* U+FFFF */
        {"\xF0\x8F\xBF\xBF", 0, 0, false},    /* overlong U+FFFF */
        {"\xF0\x90\x80\x80", 0, 4, true},     /* U+10000, first 4-byte */
        {"\xF0\x9F\x8E\xAD", 0, 4, true},     /* 🎭 */
        {"\xF0\x9F\x8E", 0, 0, false},        /* 🎭 cut */
        {"\xF4\x8F\xBF\xBF", 0, 4, true},     /* U+10FFFF, the last */
        {"\xF4\x90\x80\x80", 0, 0, false},    /* U+110000 */
        {"\xF5\x80\x80\x80", 0, 0, false},    /* lead beyond the range */
        {"\xFF", 0, 0, false},
        {"a\0b", 3, 1, false},                /* NUL is refused by _valid */
        {"", 0, 0, true},                     /* empty is valid, has no sequence */
        {"ok \xC3\xA9 \xFF", 0, 1, false},    /* invalid at the end */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = cases[i].n ? cases[i].n : strlen(cases[i].s);
        print_message("case %zu\n", i);
        assert_int_equal(sd_utf8_seq_len(cases[i].s, n), cases[i].seq);
        assert_int_equal(sd_utf8_valid(cases[i].s, n), cases[i].valid);
    }
    assert_false(sd_utf8_valid(NULL, 0));
}

static void test_repair(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t n; /* 0: strlen */
        const char *out;
    } cases[] = {
        {"plain", 0, "plain"},
        {"caf\xC3\xA9", 0, "caf\xC3\xA9"},
        {"\xFF", 0, FFFD},
        {"a\xFF" "b", 0, "a" FFFD "b"},
        {"\xC3", 0, FFFD},                       /* lone lead */
        {"\xC0\xAF", 0, FFFD FFFD},              /* overlong: each byte replaced */
        {"\xE2\x82" "x", 0, FFFD FFFD "x"},      /* cut €, then ASCII survives */
        {"\xED\xA0\x80", 0, FFFD FFFD FFFD},     /* surrogate */
        {"a\0b", 3, "a" FFFD "b"},               /* NUL is replaced too */
        {"\xF0\x9F\x8E\xAD\xFF", 0, "\xF0\x9F\x8E\xAD" FFFD},
        {"", 0, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = cases[i].n ? cases[i].n : strlen(cases[i].in);
        char *r = sd_utf8_repair(cases[i].in, n);
        print_message("case %zu\n", i);
        assert_string_equal(r, cases[i].out);
        assert_true(sd_utf8_valid(r, strlen(r)));
        free(r);
    }
}

static void test_prefix_len(void **state)
{
    (void)state;
    /* "aé€🎭" = 1 + 2 + 3 + 4 bytes; boundaries at 0, 1, 3, 6, 10 */
    const char *s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x8E\xAD";
    static const size_t want[] = {0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10, 10};
    for (size_t max = 0; max < sizeof(want) / sizeof(want[0]); max++) {
        print_message("max %zu\n", max);
        assert_int_equal(sd_utf8_prefix_len(s, 10, max), want[max]);
    }
    /* invalid bytes are units of one: a prefix may end right after any of them */
    assert_int_equal(sd_utf8_prefix_len("\xFF\xFF\xFF", 3, 2), 2);
    assert_int_equal(sd_utf8_prefix_len("\xFF\xC3\xA9", 3, 2), 1);
}

static void test_snprintf_cuts_on_a_boundary(void **state)
{
    (void)state;
    static const struct {
        size_t size;
        const char *arg;
        const char *out;
        int ret;
    } cases[] = {
        {16, "\xC3\xA9t\xC3\xA9", "/\xC3\xA9t\xC3\xA9", 6},     /* fits */
        {7, "\xC3\xA9t\xC3\xA9", "/\xC3\xA9t\xC3\xA9", 6},      /* fits exactly */
        {6, "\xC3\xA9t\xC3\xA9", "/\xC3\xA9t", 6},              /* é would be cut: dropped */
        {5, "\xC3\xA9t\xC3\xA9", "/\xC3\xA9t", 6},
        {3, "\xC3\xA9t\xC3\xA9", "/", 6},
        {4, "\xF0\x9F\x8E\xAD", "/", 5},                        /* 🎭 would be cut */
        {5, "\xF0\x9F\x8E\xAD", "/", 5},
        {6, "\xF0\x9F\x8E\xAD", "/\xF0\x9F\x8E\xAD", 5},
        {1, "x", "", 2},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[16];
        memset(buf, 'Z', sizeof(buf));
        print_message("case %zu\n", i);
        assert_int_equal(sd_utf8_snprintf(buf, cases[i].size, "/%s", cases[i].arg), cases[i].ret);
        assert_string_equal(buf, cases[i].out);
        assert_true(sd_utf8_valid(buf, strlen(buf)));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_boundaries),
        cmocka_unit_test(test_repair),
        cmocka_unit_test(test_prefix_len),
        cmocka_unit_test(test_snprintf_cuts_on_a_boundary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
