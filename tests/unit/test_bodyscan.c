/* test_bodyscan.c — the streaming body scanner: records at depth 2, nesting, the parsed-size
 * estimate per node kind; strings (with escapes) are never read as structure; any chunking
 * gives the same figures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "server/bodyscan.h"

#define O SD_SCAN_COST_OBJECT
#define A SD_SCAN_COST_ARRAY
#define S SD_SCAN_COST_STRING
#define N SD_SCAN_COST_NUMBER
#define L SD_SCAN_COST_LITERAL

static const struct {
    const char *json;
    size_t records;
    int max_depth;
    uint64_t nodes; /* the estimate without the bytes themselves */
} cases[] = {
    {"{}", 0, 1, O},
    {"[]", 0, 1, A},
    {"{\"events\":[{\"a\":1},{\"b\":true}]}", 2, 3, O + S + A + O + S + N + O + S + L},
    {"{\"x\":[[{},{}]]}", 0, 3 + 1, O + S + A + A + O + O},
    {"[-1, 2.5e3 ,null,false]", 0, 1, A + N + N + L + L},
    {"{\"k\":\"{[\\\"]}\\\\\"}", 0, 1, O + S + S}, /* structure and escapes inside a string */
    {"{\"a\":{\"b\":{\"c\":[[[]]]}}}", 1, 6, O + S + O + S + O + S + A + A + A},
    {"  \r\n\t", 0, 0, 0},
};

static void check(const char *json, size_t chunk, size_t i)
{
    struct sd_body_scan s;
    sd_body_scan_init(&s);
    size_t len = strlen(json);
    for (size_t at = 0; at < len; at += chunk) {
        sd_body_scan_feed(&s, json + at, len - at < chunk ? len - at : chunk);
    }
    assert_int_equal(s.records, cases[i].records);
    assert_int_equal(s.max_depth, cases[i].max_depth);
    assert_int_equal(s.parsed_bytes, cases[i].nodes + len);
    assert_false(s.in_string);
}

static void test_cases_any_chunking(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (size_t chunk = 1; chunk <= 8; chunk++) {
            check(cases[i].json, chunk, i);
        }
        check(cases[i].json, 1 << 20, i);
    }
}

/* The attack the estimate exists for: 2.8 million {} in 8 MiB estimate at 85 bytes per byte. */
static void test_empty_objects_cost(void **state)
{
    (void)state;
    static char buf[3 * 1000];
    for (size_t i = 0; i < 1000; i++) {
        memcpy(buf + 3 * i, "{},", 3);
    }
    struct sd_body_scan s;
    sd_body_scan_init(&s);
    sd_body_scan_feed(&s, "[[", 2);
    sd_body_scan_feed(&s, buf, sizeof(buf));
    assert_int_equal(s.parsed_bytes, 2 * A + 2 + 1000 * (O + 3));
    assert_int_equal(s.records, 1000); /* depth 2: the scanner does not know the schema */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases_any_chunking),
        cmocka_unit_test(test_empty_objects_cost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
