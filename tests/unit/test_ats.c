/* test_ats.c — the pure parts of the Archtics ATS client (connectors/archtics/ats.h): the
 * envelope (members, order, a ref that depends only on the command), tolerant answers (numbers
 * as strings, key case, result in the header, error_desc), the result classes (11408 a hit,
 * 11075 too large, not-found codes, the expired poll), money from JSON floats through the
 * shortest decimal text, venue-local minutes to UTC across both New York clock changes of 2026,
 * and a session's cookie jar exported and imported again (the poll resume). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "connectors/archtics/ats.h"
#include "http/client.h"
#include "model/tz.h"

static const struct ats_params P = {.base_url = "http://127.0.0.1:1",
                                    .product = "sth-customer",
                                    .dsn = "venue_a",
                                    .api_key = "k",
                                    .src_sys_name = "stagedoor",
                                    .archtics_version = "1",
                                    .uid = "stagedoor"};

static void test_envelope(void **unused)
{
    (void)unused;
    json_t *params = json_pack("{s:s, s:i}", "since_date_time", "2026-03-01 00:00", "count", 500);
    char *a = ats_envelope_text(&P, "get_accounts_with_updates", params);
    json_t *doc = json_loads(a, 0, NULL);
    assert_non_null(doc);
    const json_t *h = json_object_get(doc, "header");
    assert_int_equal(json_integer_value(json_object_get(h, "ver")), 1);
    assert_int_equal(json_integer_value(json_object_get(h, "src_sys_type")), 2);
    assert_string_equal(json_string_value(json_object_get(h, "src_sys_name")), "stagedoor");
    assert_string_equal(json_string_value(json_object_get(h, "archtics_version")), "1");
    const json_t *c1 = json_object_get(doc, "command1");
    assert_string_equal(json_string_value(json_object_get(c1, "cmd")), "get_accounts_with_updates");
    assert_string_equal(json_string_value(json_object_get(c1, "uid")), "stagedoor");
    assert_string_equal(json_string_value(json_object_get(c1, "dsn")), "venue_a");
    const char *ref = json_string_value(json_object_get(c1, "ref"));
    assert_non_null(ref);
    assert_true(strlen(ref) <= 32);
    assert_string_equal(json_string_value(json_object_get(c1, "since_date_time")),
                        "2026-03-01 00:00");
    /* cmd, uid, dsn, ref come first, as the documents show them */
    assert_true(strstr(a, "\"cmd\"") < strstr(a, "\"since_date_time\""));
    /* the same command has the same text (a restarted run finds its saved poll) … */
    char *b = ats_envelope_text(&P, "get_accounts_with_updates", params);
    assert_string_equal(a, b);
    /* … and another command another ref */
    json_object_set_new(params, "count", json_integer(499));
    char *c = ats_envelope_text(&P, "get_accounts_with_updates", params);
    json_t *doc2 = json_loads(c, 0, NULL);
    assert_string_not_equal(
        ref, json_string_value(json_object_get(json_object_get(doc2, "command1"), "ref")));
    /* a parameter may not override the envelope's own members */
    json_t *evil = json_pack("{s:s}", "dsn", "other");
    char *d = ats_envelope_text(&P, "ping", evil);
    assert_non_null(strstr(d, "\"dsn\":\"venue_a\""));
    assert_null(strstr(d, "other"));
    free(a);
    free(b);
    free(c);
    free(d);
    json_decref(evil);
    json_decref(doc);
    json_decref(doc2);
    json_decref(params);
}

static int parse(const char *body, int64_t *result, int64_t *sql, char *detail)
{
    json_t *doc = NULL;
    char why[160];
    int r = ats_parse_answer(body, strlen(body), &doc, result, sql, detail, 256, why, sizeof(why));
    json_decref(doc);
    return r;
}

static void test_tolerant_answers(void **unused)
{
    (void)unused;
    int64_t result = -1, sql = -1;
    char detail[256];
    assert_int_equal(parse("{\"header\":{},\"command1\":{\"cmd\":\"PING\",\"result\":0}}", &result,
                           &sql, detail),
                     0);
    assert_int_equal(result, 0);
    assert_int_equal(sql, 0);
    /* numbers as strings, keys in another case, error_desc instead of error_detail */
    assert_int_equal(parse("{\"Command1\":{\"Result\":\" 5069 \",\"SQL_CODE\":\"100\","
                           "\"error_desc\":\"No blocks found\"}}",
                           &result, &sql, detail),
                     0);
    assert_int_equal(result, 5069);
    assert_int_equal(sql, 100);
    assert_string_equal(detail, "No blocks found");
    /* the result only in the header (a malformed envelope) */
    assert_int_equal(parse("{\"header\":{\"result\":9999},\"command1\":{}}", &result, &sql, detail),
                     0);
    assert_int_equal(result, 9999);
    /* an integral real is an integer; control characters leave the detail */
    assert_int_equal(parse("{\"command1\":{\"result\":11408.0,\"error_detail\":\"a\\nb\"}}",
                           &result, &sql, detail),
                     0);
    assert_int_equal(result, 11408);
    assert_string_equal(detail, "a b");
    /* refused: not JSON, not an object, no result, a fractional result, a repeated key */
    static const char *const bad[] = {"",
                                      "nope",
                                      "[1]",
                                      "{\"command1\":{}}",
                                      "{\"command1\":{\"result\":1.5}}",
                                      "{\"command1\":{\"result\":\"x\"}}",
                                      "{\"command1\":{\"result\":0,\"result\":1}}",
                                      NULL};
    for (size_t i = 0; bad[i]; i++) {
        assert_int_equal(parse(bad[i], &result, &sql, detail), -EBADMSG);
    }
    /* readers */
    json_t *o = json_pack("{s:s, s:i, s:f, s:s, s:b}", "Count", "7", "n", 3, "r", 2.5, "s",
                          "  x y ", "t", 1);
    int64_t v;
    assert_int_equal(ats_get_int(o, "count", &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(ats_get_int(o, "N", &v), 0);
    assert_int_equal(v, 3);
    assert_int_equal(ats_get_int(o, "r", &v), -EINVAL);
    assert_int_equal(ats_get_int(o, "missing", &v), -EINVAL);
    char *t = ats_get_text(o, "s");
    assert_string_equal(t, "x y");
    free(t);
    t = ats_get_text(o, "r");
    assert_string_equal(t, "2.5");
    free(t);
    t = ats_get_text(o, "t");
    assert_string_equal(t, "true");
    free(t);
    assert_null(ats_get_text(o, "missing"));
    json_decref(o);
}

static void test_result_classes(void **unused)
{
    (void)unused;
    assert_int_equal(ats_classify_result(0, 0, "", 1), ATS_OK);
    assert_int_equal(ats_classify_result(11408, 0, "Email address already exists", 1), ATS_HIT);
    assert_int_equal(ats_classify_result(11075, 0, "too large", 1), ATS_TOO_LARGE);
    assert_int_equal(ats_classify_result(5024, 100, "Account not found", 1), ATS_NOT_FOUND);
    assert_int_equal(ats_classify_result(5231, 100, "No events found", 1), ATS_NOT_FOUND);
    assert_int_equal(ats_classify_result(4242, 100, "whatever", 1), ATS_NOT_FOUND);
    assert_int_equal(ats_classify_result(5014, 0, "Invalid input", 1), ATS_REJECTED);
    assert_int_equal(ats_classify_result(9999, 0, "missing header", 1), ATS_REJECTED);
    /* the expired poll: by its text whatever the code, or by the configured code alone */
    assert_true(ats_is_no_data(1, "No data for token 'ABC'. The request may have expired", 1));
    assert_true(ats_is_no_data(77, "no data for token 'x'", 1));
    assert_true(ats_is_no_data(1, "", 1));
    assert_false(ats_is_no_data(1, "Some other error", 1));
    assert_false(ats_is_no_data(0, "No data for token", 1));
    assert_int_equal(ats_classify_result(1, 0, "No data for token 'A'", 1), ATS_RETRY);
}

static void test_money(void **unused)
{
    (void)unused;
    char out[40];
    static const struct {
        double v;
        const char *text;
    } reals[] = {
        {99.0, "99"},     {12.35, "12.35"}, {64.5, "64.5"},   {0.1, "0.1"},
        {19.99, "19.99"}, {42.35, "42.35"}, {84.15, "84.15"}, {1e20, "100000000000000000000"}};
    for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
        assert_int_equal(ats_real_text(reals[i].v, out), 0);
        assert_string_equal(out, reals[i].text);
    }
    /* a JSON document as the server sends it: the decimal text, never the double's digits */
    json_t *row = json_loads("{\"a\":84.15,\"b\":\"12.30\",\"c\":7,\"d\":-1.5,\"e\":\"1e3\","
                             "\"f\":\".5\",\"g\":0.30000000000000004}",
                             0, NULL);
    assert_int_equal(ats_money_text(row, "a", out), 0);
    assert_string_equal(out, "84.15");
    assert_int_equal(ats_money_text(row, "b", out), 0);
    assert_string_equal(out, "12.30");
    assert_int_equal(ats_money_text(row, "c", out), 0);
    assert_string_equal(out, "7");
    assert_int_equal(ats_money_text(row, "d", out), -EINVAL);
    assert_int_equal(ats_money_text(row, "e", out), -EINVAL);
    assert_int_equal(ats_money_text(row, "f", out), -EINVAL);
    assert_int_equal(ats_money_text(row, "missing", out), -EINVAL);
    /* 17 significant digits are kept as written: nothing is rounded to a nicer number */
    assert_int_equal(ats_money_text(row, "g", out), 0);
    assert_string_equal(out, "0.30000000000000004");
    json_decref(row);
}

static void test_local_times(void **unused)
{
    (void)unused;
    int64_t l;
    char out[24];
    assert_int_equal(ats_local_parse("2026-03-08 01:59", &l), 0);
    ats_local_format(l, out);
    assert_string_equal(out, "2026-03-08 01:59");
    assert_int_equal(ats_local_parse("2026-03-08", &l), 0);
    ats_local_format(l, out);
    assert_string_equal(out, "2026-03-08 00:00");
    assert_int_equal(ats_local_parse("2026-03-08T10:05:30", &l), 0);
    ats_local_format(l, out);
    assert_string_equal(out, "2026-03-08 10:05");
    static const char *const bad[] = {"",
                                      "2026-3-8",
                                      "2026-02-29 00:00",
                                      "2026-13-01",
                                      "2026-01-01 24:00",
                                      "2026-01-01 10:60",
                                      "2026-01-01 1:00",
                                      "2026-01-01x10:00",
                                      NULL};
    for (size_t i = 0; bad[i]; i++) {
        assert_int_equal(ats_local_parse(bad[i], &l), -EINVAL);
    }
    assert_int_equal(ats_local_parse("2024-02-29 12:00", &l), 0);

    const struct sd_tz *ny = NULL;
    char err[128];
    assert_int_equal(sd_tz_get("America/New_York", &ny, err, sizeof(err)), 0);
    int64_t u;
    /* an ordinary winter and summer minute */
    assert_int_equal(ats_local_to_utc(ny, "2026-01-15 19:30", false, &u), 0);
    ats_utc_format(u, out);
    assert_string_equal(out, "2026-01-16T00:30:00Z");
    assert_int_equal(ats_local_to_utc(ny, "2026-07-04 21:00", false, &u), 0);
    ats_utc_format(u, out);
    assert_string_equal(out, "2026-07-05T01:00:00Z");
    /* clocks forward on 2026-03-08: 02:30 never happened, it moves on by the gap */
    assert_int_equal(ats_local_to_utc(ny, "2026-03-08 02:30", false, &u), 0);
    ats_utc_format(u, out);
    assert_string_equal(out, "2026-03-08T07:30:00Z");
    /* clocks back on 2026-11-01: 01:30 happened twice; earlier unless asked for the later */
    assert_int_equal(ats_local_to_utc(ny, "2026-11-01 01:30", false, &u), 0);
    ats_utc_format(u, out);
    assert_string_equal(out, "2026-11-01T05:30:00Z");
    assert_int_equal(ats_local_to_utc(ny, "2026-11-01 01:30", true, &u), 0);
    ats_utc_format(u, out);
    assert_string_equal(out, "2026-11-01T06:30:00Z");
    assert_int_equal(ats_local_to_utc(ny, "not a time", false, &u), -EINVAL);
    assert_int_equal(ats_local_to_utc(NULL, "2026-11-01 01:30", false, &u), -EINVAL);
}

static void test_session_export_import(void **unused)
{
    (void)unused;
    struct sd_http_session *s = sd_http_session_new();
    char *empty = sd_http_session_export(s);
    assert_string_equal(empty, "");
    free(empty);
    const char *jar = "127.0.0.1\tFALSE\t/\tFALSE\t0\tSID\tS1\n"
                      "127.0.0.1\tFALSE\t/\tFALSE\t0\tQTKN\tQ7\n";
    assert_int_equal(sd_http_session_import(s, jar), 0);
    assert_int_equal(sd_http_session_cookies(s), 2);
    char *text = sd_http_session_export(s);
    assert_non_null(strstr(text, "\tSID\tS1\n"));
    assert_non_null(strstr(text, "\tQTKN\tQ7\n"));
    /* into a new session: the same jar (what a restarted run resumes with) */
    struct sd_http_session *t = sd_http_session_new();
    assert_int_equal(sd_http_session_import(t, text), 0);
    assert_int_equal(sd_http_session_cookies(t), 2);
    /* not cookie lines: refused, nothing imported */
    struct sd_http_session *u = sd_http_session_new();
    assert_int_equal(sd_http_session_import(u, "Set-Cookie: a=b\n"), -EINVAL);
    assert_int_equal(sd_http_session_import(u, "h\tFALSE\t/\tFALSE\t0\ta\tb\r\n"), -EINVAL);
    assert_int_equal(sd_http_session_cookies(u), 0);
    free(text);
    sd_http_session_free(s);
    sd_http_session_free(t);
    sd_http_session_free(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope),       cmocka_unit_test(test_tolerant_answers),
        cmocka_unit_test(test_result_classes), cmocka_unit_test(test_money),
        cmocka_unit_test(test_local_times),    cmocka_unit_test(test_session_export_import),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
