/* test_ingest_answer.c — the webhook's 202 answer written directly is byte for byte what
 * jansson writes for the same object (compact, order preserved), so an idempotent replay
 * returns the same bytes whichever path built the first answer; a request id JSON would escape
 * is left to jansson (NULL). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "api/ingest_answer.h"

static char *jansson_answer(const char *id, size_t e, size_t c, size_t s)
{
    json_t *o = json_pack("{s:s, s:s, s:{s:I, s:I, s:I}, s:o}", "status", "queued",
                          "request_id", id, "accepted", "events", (json_int_t)e, "customers",
                          (json_int_t)c, "sales", (json_int_t)s, "warnings", json_array());
    assert_non_null(o);
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    assert_non_null(text);
    return text;
}

static void test_same_bytes_as_jansson(void **state)
{
    (void)state;
    static const char *const ids[] = {"", "sd-0000000000000001", "a1b2c3d4e5f60718293a4b5c6d7e8f90",
                                      "with/slash", "sp ace~!#$%&'()*+,-.:;<=>?@[]^_`{|}"};
    static const size_t counts[][3] = {
        {0, 0, 1}, {0, 0, 0}, {1, 2, 3}, {1000, 0, 5000}, {0, 1000000, 0}, {9, 99, 999999999}};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
            char *fast = sd_ingest_accepted_text(ids[i], counts[k][0], counts[k][1], counts[k][2]);
            char *want = jansson_answer(ids[i], counts[k][0], counts[k][1], counts[k][2]);
            assert_non_null(fast);
            assert_string_equal(fast, want);
            free(fast);
            free(want);
        }
    }
}

static void test_escaped_ids_left_to_jansson(void **state)
{
    (void)state;
    static const char *const ids[] = {"quo\"te", "back\\slash", "tab\there", "nl\n", "del\x7F",
                                      "caf\xC3\xA9"};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        assert_null(sd_ingest_accepted_text(ids[i], 0, 0, 1));
    }
    assert_null(sd_ingest_accepted_text(NULL, 0, 0, 1));
    /* the longest id written directly, and one longer: left to jansson, never cut */
    char id[130];
    memset(id, 'r', 128);
    id[128] = '\0';
    char *fast = sd_ingest_accepted_text(id, 1, 2, 3);
    char *want = jansson_answer(id, 1, 2, 3);
    assert_non_null(fast);
    assert_string_equal(fast, want);
    free(fast);
    free(want);
    id[128] = 'r';
    id[129] = '\0';
    assert_null(sd_ingest_accepted_text(id, 1, 2, 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_bytes_as_jansson),
        cmocka_unit_test(test_escaped_ids_left_to_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
