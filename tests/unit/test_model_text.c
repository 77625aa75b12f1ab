/* test_model_text.c — UTF-8 validity, folding, e-mail check and environment names. Each
 * table lists both sides of every boundary (lengths, code point ranges, byte classes). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/model.h"

struct utf8_case {
    const char *s;
    size_t len;
    bool valid;
};

#define U(lit, ok) {lit, sizeof(lit) - 1, ok}

static void test_utf8_valid(void **state)
{
    static const struct utf8_case cases[] = {
        U("", true),
        U("plain ascii", true),
        U("\x7f", true),                /* last 1-byte */
        U("\xc2\x80", true),            /* first 2-byte */
        U("\xc1\xbf", false),           /* overlong 2-byte */
        U("\xdf\xbf", true),            /* last 2-byte */
        U("\xe0\xa0\x80", true),        /* U+0800 first 3-byte */
        U("\xe0\x9f\xbf", false),       /* overlong 3-byte */
        U("\xed\x9f\xbf", true),        /* U+D7FF */
        U("\xed\xa0\x80", false),       /* U+D800 surrogate */
        U("\xed\xbf\xbf", false),       /* U+DFFF surrogate */
        U("\xee\x80\x80", true),        /* U+E000 */
        U("\xef\xbf\xbf", true),        /* U+FFFF */
        U("\xf0\x90\x80\x80", true),    /* U+10000 */
        U("\xf0\x8f\xbf\xbf", false),   /* overlong 4-byte */
        U("\xf4\x8f\xbf\xbf", true),    /* U+10FFFF */
        U("\xf4\x90\x80\x80", false),   /* U+110000 */
        U("\xf5\x80\x80\x80", false),   /* lead byte beyond range */
        U("\x80", false),               /* lone continuation */
        U("\xc3", false),               /* truncated */
        U("\xe2\x82", false),           /* truncated 3-byte */
        U("\xc3\x28", false),           /* bad continuation */
        U("a\0b", false),               /* NUL inside */
        U("Gr\xc3\xbc\xc3\x9f Gott", true),
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        if (sd_utf8_valid(cases[i].s, cases[i].len) != cases[i].valid) {
            fail_msg("case %zu", i);
        }
    }
    assert_false(sd_utf8_valid(NULL, 0));
    uint32_t cp = 0;
    assert_int_equal(sd_utf8_next("\xe2\x82\xac", 3, &cp), 3);
    assert_int_equal(cp, 0x20ac);
    assert_int_equal(sd_utf8_next("\xe2\x82\xac", 2, &cp), -1);
    assert_int_equal(sd_utf8_next("", 0, &cp), -1);
}

struct fold_case {
    const char *in;
    const char *out;
};

static void test_fold(void **state)
{
    static const struct fold_case cases[] = {
        {"", ""},
        {"   ", ""},
        {"\t\n\r\v\f", ""},
        {"Main Hall", "main hall"},
        {"  Main   Hall  ", "main hall"},
        {"Main\t\nHall", "main hall"},
        {"STAATSOPER UNTER DEN LINDEN", "staatsoper unter den linden"},
        /* ÄÖÜ, ΣΑΛΑ, ЗАЛ */
        {"GROSSER SAAL \xc3\x84\xc3\x96\xc3\x9c", "grosser saal \xc3\xa4\xc3\xb6\xc3\xbc"},
        {"\xce\xa3\xce\x91\xce\x9b\xce\x91", "\xcf\x83\xce\xb1\xce\xbb\xce\xb1"},
        {"\xd0\x97\xd0\x90\xd0\x9b", "\xd0\xb7\xd0\xb0\xd0\xbb"},
        {"a\xe3\x80\x80" "b", "a b"}, /* U+3000 ideographic space collapses */
        {"x\xc2\xa0y", "x\xc2\xa0y"}, /* no-break space is not a separator */
        {"1-2_3", "1-2_3"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char *f = sd_text_fold(cases[i].in);
        if (strcmp(f, cases[i].out) != 0) {
            fail_msg("case %zu: got '%s'", i, f);
        }
        free(f);
    }
    char *f = sd_text_fold("a\xff" "B"); /* stray byte: deterministic, no crash */
    assert_string_equal(f, "a\xef\xbf\xbd" "b");
    free(f);
}

struct email_case {
    const char *s;
    bool valid;
};

static void test_email(void **state)
{
    char local64[64 + 1 + 12], local65[65 + 1 + 12];
    memset(local64, 'a', 64);
    memcpy(local64 + 64, "@example.com", 13);
    memset(local65, 'a', 65);
    memcpy(local65 + 65, "@example.com", 13);
    /* total 254 vs 255: "a@" + labels */
    char total254[256], total255[257];
    memcpy(total254, "a@", 2);
    memset(total254 + 2, 'b', 252);
    for (int i = 2 + 60; i < 254; i += 61) {
        total254[i] = '.';
    }
    total254[254] = '\0';
    memcpy(total255, total254, 254);
    total255[254] = 'c';
    total255[255] = '\0';
    char label63[80], label64[80];
    memcpy(label63, "a@", 2);
    memset(label63 + 2, 'x', 63);
    memcpy(label63 + 65, ".de", 4);
    memcpy(label64, "a@", 2);
    memset(label64 + 2, 'x', 64);
    memcpy(label64 + 66, ".de", 4);
    const struct email_case cases[] = {
        {"jane.doe@example.com", true},
        {"Jane.Doe+tickets@Example.COM", true},
        {"j@e.de", true},
        {"a_b-c!#$%&'*+/=?^`{|}~@x-y.example", true},
        {"m\xc3\xbcller@b\xc3\xbchne.de", true},
        {"", false},
        {"jane", false},
        {"@example.com", false},
        {"jane@", false},
        {"jane@example", false},
        {"jane@@example.com", false},
        {"ja@ne@example.com", false},
        {"jane doe@example.com", false},
        {"jane@exa mple.com", false},
        {".jane@example.com", false},
        {"jane.@example.com", false},
        {"ja..ne@example.com", false},
        {"jane@.example.com", false},
        {"jane@example.com.", false},
        {"jane@example..com", false},
        {"jane@-example.com", false},
        {"jane@example-.com", false},
        {"jane@ex_ample.com", false},
        {"\"jane\"@example.com", false},
        {"jane@example.com\xff", false},
        {local64, true},
        {local65, false},
        {total254, true},
        {total255, false},
        {label63, true},
        {label64, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        if (sd_email_valid(cases[i].s) != cases[i].valid) {
            fail_msg("case %zu: %s", i, cases[i].s);
        }
    }
    assert_false(sd_email_valid(NULL));
}

static void test_env(void **state)
{
    assert_string_equal(sd_env_name(SD_ENV_TEST), "test");
    assert_string_equal(sd_env_name(SD_ENV_PROD), "prod");
    static const struct {
        const char *s;
        int rc;
        enum sd_env env;
    } cases[] = {
        {"test", 0, SD_ENV_TEST},
        {"TEST", 0, SD_ENV_TEST},
        {"Prod", 0, SD_ENV_PROD},
        {"prod", 0, SD_ENV_PROD},
        {"", -EINVAL, SD_ENV_TEST},
        {"production", -EINVAL, SD_ENV_TEST},
        {"tes", -EINVAL, SD_ENV_TEST},
        {" prod", -EINVAL, SD_ENV_TEST},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        enum sd_env e = (enum sd_env)42;
        int rc = sd_env_parse(cases[i].s, &e);
        assert_int_equal(rc, cases[i].rc);
        if (rc == 0) {
            assert_int_equal(e, cases[i].env);
        } else {
            assert_int_equal(e, 42); /* untouched on failure */
        }
    }
    enum sd_env e;
    assert_int_equal(sd_env_parse(NULL, &e), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_fold),
        cmocka_unit_test(test_email),
        cmocka_unit_test(test_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
