/* test_pg_json.c — the PostgreSQL backend's record documents (store/postgres/pg_json.c) against
 * the SQLite backend's, which is the reference: every case runs SQLite's own json_patch,
 * json_set and json_extract on an in-memory database and compares the text byte for byte.
 * A table of the merge rules' corners, then many random documents written as the model writes
 * them (jansson, compact, member order kept) with colliding member names, nulls, nested
 * objects, arrays, reals and escapes. No database server needed. */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "model/model.h"
#include "store/postgres/pg_json.h"

static sqlite3 *db;

static int setup(void **state)
{
    (void)state;
    return sqlite3_open(":memory:", &db) == SQLITE_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sqlite3_close(db);
    return 0;
}

/* The text SQLite returns for sql with up to three text parameters (NULL: SQL NULL). */
static char *sqlite_text(const char *sql, const char *a, const char *b, const char *c)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    const char *v[3] = {a, b, c};
    for (int i = 0; i < 3 && i < sqlite3_bind_parameter_count(st); i++) {
        if (v[i]) {
            sqlite3_bind_text(st, i + 1, v[i], -1, SQLITE_STATIC);
        }
    }
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const unsigned char *t = sqlite3_column_text(st, 0);
    char *ret = t ? sd_strdup((const char *)t) : NULL;
    sqlite3_finalize(st);
    return ret;
}

static void check_patch(const char *target, const char *patch)
{
    char *want = target ? sqlite_text("SELECT json_patch(?1, ?2)", target, patch, NULL)
                        : sqlite_text("SELECT json_patch('{}', ?1)", patch, NULL, NULL);
    char *got = NULL;
    assert_int_equal(sd_pg_json_patch(target, patch, NULL, NULL, &got), 0);
    if (strcmp(want, got) != 0) {
        print_error("target %s patch %s: sqlite %s, pg %s\n", target ? target : "(none)", patch,
                    want, got);
    }
    assert_string_equal(got, want);
    free(got);
    free(want);
    /* ... and with the event's id set after the merge, as an event update does */
    if (target) {
        want = sqlite_text("SELECT json_set(json_patch(?1, ?2), '$.event_id', ?3)", target, patch,
                           "E\"1\\\x01\x1f\tx");
        assert_int_equal(sd_pg_json_patch(target, patch, "event_id", "E\"1\\\x01\x1f\tx", &got), 0);
        assert_string_equal(got, want);
        free(got);
        free(want);
    }
}

static void check_set(const char *doc, const char *key, const char *value)
{
    char *path = sd_asprintf("$.%s", key);
    char *want = sqlite_text("SELECT json_set(?1, ?2, ?3)", doc, path, value);
    char *got = NULL;
    assert_int_equal(sd_pg_json_set(doc, key, value, &got), 0);
    assert_string_equal(got, want);
    free(got);
    free(want);
    free(path);
}

static void check_fold(const char *doc, const char *key)
{
    char *path = sd_asprintf("$.%s", key);
    char *type = sqlite_text("SELECT json_type(?1, ?2)", doc, path, NULL);
    char *raw = sqlite_text("SELECT json_extract(?1, ?2)", doc, path, NULL);
    char *want = raw ? sd_text_fold(raw) : NULL;
    bool present = true;
    char *got = NULL;
    assert_int_equal(sd_pg_json_fold_member(doc, key, &present, &got), 0);
    assert_int_equal(present, type != NULL);
    if (want) {
        assert_non_null(got);
        assert_string_equal(got, want);
    } else {
        assert_null(got);
    }
    free(got);
    free(want);
    free(raw);
    free(type);
    free(path);
}

static void test_merge_table(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"{}", "{}"},
        {"{\"a\":1}", "{\"a\":2}"},
        {"{\"a\":1,\"b\":2}", "{\"a\":null}"},
        {"{\"a\":1,\"b\":2}", "{\"c\":3,\"a\":4}"},
        {"{\"a\":{\"x\":1,\"y\":2}}", "{\"a\":{\"y\":null,\"z\":[1,null]}}"},
        {"{\"a\":[1,2]}", "{\"a\":{\"k\":null,\"m\":{\"n\":null,\"o\":1}}}"},
        {"{\"a\":1}", "{\"b\":{\"c\":null,\"d\":{}}}"},
        {"{\"a\":1}", "[1,2]"},
        {"[1,2]", "{\"a\":null,\"b\":1}"},
        {"{\"a\":1.5e10,\"b\":-0.0,\"c\":1.1000000000000001}", "{\"d\":12345678901234567}"},
        {"{\"post_code\":1e20}", "{\"city\":-0.0,\"post_code\":99999999999999999999}"},
        {"{\"s\":\"a\\\"b\\\\c\\u00e9\\n\\/\"}", "{\"t\":\"\\u001F\"}"},
        {"{\"\\u0061\":1,\"a\":2}", "{\"a\":3}"},
        {"{\"k\":\"é€😀\"}", "{\"k\":null,\"l\":\"ü\"}"},
        {"{ \"a\" : [ 1 , { \"b\" : null } ] }", "{ \"c\" : true , \"d\" : false }"},
        {"{\"event_id\":\"E1\",\"title\":\"x\"}", "{\"event_id\":\"E2\",\"title\":null}"},
        {"{\"a\":null}", "{\"a\":1}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_patch(cases[i][0], cases[i][1]);
        check_patch(NULL, cases[i][1][0] == '{' ? cases[i][1] : "{}");
    }
}

static void test_set_and_fold_table(void **state)
{
    (void)state;
    check_set("{\"a\":1}", "source", "webhook");
    check_set("{\"source\":1,\"a\":2}", "source", "con_\"x\"\\\x02");
    check_set("{\"a\":{\"source\":1}}", "source", "s");
    check_set("{\"customer_id\":\"C1\",\"x\":[null]}", "customer_id", "C2");
    static const char *const docs[] = {
        "{\"post_code\":\" 10115  Berlin \"}",
        "{\"post_code\":10115}",
        "{\"post_code\":null}",
        "{\"post_code\":\"\\u00C9TAGE\\tB\"}",
        "{\"post_code\":true}",
        "{\"post_code\":false}",
        "{\"post_code\":[1,\"a\"]}",
        "{\"post_code\":{\"a\":1}}",
        "{\"city\":\"x\"}",
        "{}",
        "{\"post_code\":1e20}",
        "{\"post_code\":12.0}",
        "{\"post_code\":-0.0}",
        "{\"post_code\":-0}",
        "{\"post_code\":99999999999999999999}",
        "{\"post_code\":0.1}",
    };
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        check_fold(docs[i], "post_code");
    }
    bool present = false;
    char *v = NULL;
    assert_int_equal(sd_pg_json_fold_member("{\"a\":", "a", &present, &v), -EINVAL);
    assert_int_equal(sd_pg_json_patch("{", "{}", NULL, NULL, &v), -EINVAL);
    assert_int_equal(sd_pg_json_patch("{}", "{} x", NULL, NULL, &v), -EINVAL);
}

/* ---- random documents -------------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static json_t *random_value(int depth)
{
    static const char *const texts[] = {"",          "a",    "Zoë",      "\"q\"",  "back\\slash",
                                        "tab\there", "nl\n", "\x01\x1f", "€ 1,00", "/path",
                                        "😀"};
    switch (rnd(depth > 2 ? 6 : 8)) {
    case 0: return json_null();
    case 1: return json_integer((json_int_t)rnd(100000) - 50000);
    case 2: return json_real((double)rnd(1000000) / 7.0 - 3000.0);
    case 3: return json_string(texts[rnd(sizeof(texts) / sizeof(texts[0]))]);
    case 4: return rnd(2) ? json_true() : json_false();
    case 5: return json_null();
    case 6: {
        json_t *a = json_array();
        for (unsigned i = rnd(4); i > 0; i--) {
            json_array_append_new(a, random_value(depth + 1));
        }
        return a;
    }
    default: {
        static const char *const keys[] = {"a",         "b",        "c",   "title", "city",
                                           "post_code", "event_id", "x y", "é",     "n\"k"};
        json_t *o = json_object();
        for (unsigned i = rnd(6); i > 0; i--) {
            json_object_set_new(o, keys[rnd(sizeof(keys) / sizeof(keys[0]))],
                                random_value(depth + 1));
        }
        return o;
    }
    }
}

static char *random_doc(void)
{
    json_t *v;
    do {
        v = random_value(0);
        if (!json_is_object(v)) {
            json_decref(v);
            v = NULL;
        }
    } while (!v);
    char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(v);
    char *ret = sd_strdup(s);
    free(s);
    return ret;
}

static void test_random_documents(void **state)
{
    (void)state;
    for (int i = 0; i < 3000; i++) {
        char *t = random_doc(), *p = random_doc();
        /* a stored document has no null members: store it as SQLite would */
        char *stored = sqlite_text("SELECT json_patch('{}', ?1)", t, NULL, NULL);
        check_patch(stored, p);
        check_patch(NULL, p);
        check_set(stored, "source", "con_0123");
        check_fold(p, "post_code");
        check_fold(p, "city");
        free(stored);
        free(t);
        free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_table),
        cmocka_unit_test(test_set_and_fold_table),
        cmocka_unit_test(test_random_documents),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
