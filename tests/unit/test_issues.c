/* test_issues.c — an issue is never lost on its way to JSON: pointers and messages that quote
 * text which is not UTF-8 (a %FF from a URL, a character cut by a fixed-size buffer) are
 * repaired to U+FFFD when added, so errors[] lists every stored issue; sd_json_text never fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/model.h"

#define FFFD "\xEF\xBF\xBD"

static void test_every_issue_reaches_json(void **state)
{
    (void)state;
    static const struct {
        const char *pointer, *quoted;
        const char *want_pointer, *want_message;
    } cases[] = {
        {"/a", "plain", "/a", "no 'plain' here"},
        {"/a", "caf\xC3\xA9", "/a", "no 'caf\xC3\xA9' here"},
        {"/a", "\xFF", "/a", "no '" FFFD "' here"},
        {"/a", "cut \xC3", "/a", "no 'cut " FFFD "' here"},               /* é cut after 1 byte */
        {"/a", "\xE2\x82", "/a", "no '" FFFD FFFD "' here"},              /* € cut after 2 */
        {"/\xC3\xA9t\xC3", "x", "/\xC3\xA9t" FFFD, "no 'x' here"},         /* a cut pointer */
        {"/\xC0\xAF", "\xED\xA0\x80", "/" FFFD FFFD, "no '" FFFD FFFD FFFD "' here"},
    };
    size_t n = sizeof(cases) / sizeof(cases[0]);
    struct sd_issues l;
    sd_issues_init(&l, 100);
    for (size_t i = 0; i < n; i++) {
        sd_issues_add(&l, cases[i].pointer, "no '%s' here", cases[i].quoted);
    }
    json_t *arr = sd_issues_to_json(&l);
    assert_int_equal(json_array_size(arr), n);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i);
        print_message("case %zu\n", i);
        assert_string_equal(json_string_value(json_object_get(o, "pointer")),
                            cases[i].want_pointer);
        assert_string_equal(json_string_value(json_object_get(o, "message")),
                            cases[i].want_message);
    }
    char *text = json_dumps(arr, JSON_COMPACT);
    assert_non_null(text);
    free(text);
    json_decref(arr);
    sd_issues_release(&l);
}

static void test_json_text(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"", ""},
        {"ok", "ok"},
        {"\xF0\x9F\x8E\xAD", "\xF0\x9F\x8E\xAD"},
        {"\xF0\x9F\x8E", FFFD FFFD FFFD},
        {"a\xFF" "b", "a" FFFD "b"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *j = sd_json_text(cases[i].in);
        assert_non_null(j);
        assert_string_equal(json_string_value(j), cases[i].want);
        json_decref(j);
    }
    json_t *j = sd_json_text(NULL);
    assert_string_equal(json_string_value(j), "");
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_issue_reaches_json),
        cmocka_unit_test(test_json_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
