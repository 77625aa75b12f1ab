/* test_s360_out.c — the pure parts of the s360 connector's outbound half (connectors/s360/
 * s360_out.h): the saveIndividualContactData and createOrUpdateOrder bodies, the verdict of an
 * answer (HTTP status and in-band statusCode), S-360 times and the stale-overwrite rule. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "connectors/s360/s360_out.h"

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    assert_non_null(j);
    return j;
}

static const char *str_at(const json_t *obj, const char *a, const char *b)
{
    const json_t *v = json_object_get(obj, a);
    return json_string_value(b ? json_object_get(v, b) : v);
}

/* A create: the customer's own values only, no contactNumber. */
static void test_contact_create(void **state)
{
    (void)state;
    json_t *cust = parse("{\"customer_id\":\"c1\",\"email\":\"ann@example.ch\","
                         "\"first_name\":\"Ann\",\"last_name\":\"Muster\","
                         "\"street\":\"Bahnhofstr. 1\",\"post_code\":\"8001\"}");
    char why[256] = "";
    json_t *b = s360_contact_body(cust, NULL, NULL, "req-1", why, sizeof(why));
    assert_non_null(b);
    assert_null(json_object_get(b, "contactNumber"));
    assert_string_equal(str_at(b, "requestId", NULL), "req-1");
    assert_string_equal(str_at(b, "individualContact", "firstName"), "Ann");
    assert_string_equal(str_at(b, "individualContact", "lastName"), "Muster");
    const json_t *means = json_object_get(b, "communicationMeans");
    assert_int_equal(json_array_size(means), 1);
    assert_string_equal(str_at(json_array_get(means, 0), "type", NULL), "EMAIL");
    assert_string_equal(str_at(json_array_get(means, 0), "value", NULL), "ann@example.ch");
    const json_t *addrs = json_object_get(b, "addresses");
    assert_int_equal(json_array_size(addrs), 1);
    assert_string_equal(str_at(json_array_get(addrs, 0), "street1", NULL), "Bahnhofstr. 1");
    assert_string_equal(str_at(json_array_get(addrs, 0), "zipCode", NULL), "8001");
    json_decref(b);
    json_decref(cust);
}

/* An update keeps what stagedoor does not manage (phones, town, birth date, other addresses)
 * because S-360 replaces the sections it is given; null clears, absent leaves. */
static void test_contact_update_keeps_the_rest(void **state)
{
    (void)state;
    json_t *cur = parse(
        "{\"contactNumber\":\"0000000042\",\"lastUpdateDate\":\"2026-03-01T10:00:00.000+01:00\","
        "\"individualContact\":{\"title\":\"MRS\",\"firstName\":\"Anna\",\"lastName\":\"Alt\","
        "\"birthDate\":\"1970-01-02\"},"
        "\"communicationMeans\":[{\"type\":\"MOBILE\",\"value\":\"+41 79 1\",\"isMain\":false},"
        "{\"type\":\"EMAIL\",\"value\":\"old@example.ch\",\"isMain\":true}],"
        "\"addresses\":[{\"isMain\":false,\"street1\":\"Other 2\"},"
        "{\"isMain\":true,\"street1\":\"Old 1\",\"zipCode\":\"3000\",\"town\":\"Bern\"}]}");
    json_t *cust = parse("{\"customer_id\":\"0000000042\",\"email\":\"new@example.ch\","
                         "\"first_name\":null,\"last_name\":\"Neu\",\"post_code\":\"3011\"}");
    char why[256] = "";
    json_t *b = s360_contact_body(cust, cur, "0000000042", "req-2", why, sizeof(why));
    assert_non_null(b);
    assert_string_equal(str_at(b, "contactNumber", NULL), "0000000042");
    const json_t *ind = json_object_get(b, "individualContact");
    assert_null(json_object_get(ind, "firstName")); /* null clears */
    assert_string_equal(str_at(ind, "lastName", NULL), "Neu");
    assert_string_equal(str_at(ind, "birthDate", NULL), "1970-01-02");
    assert_string_equal(str_at(ind, "title", NULL), "MRS");
    const json_t *means = json_object_get(b, "communicationMeans");
    assert_int_equal(json_array_size(means), 2);
    assert_string_equal(str_at(json_array_get(means, 0), "value", NULL), "+41 79 1");
    assert_string_equal(str_at(json_array_get(means, 1), "value", NULL), "new@example.ch");
    const json_t *addrs = json_object_get(b, "addresses");
    assert_int_equal(json_array_size(addrs), 2);
    assert_string_equal(str_at(json_array_get(addrs, 0), "street1", NULL), "Other 2");
    const json_t *main_addr = json_array_get(addrs, 1);
    assert_string_equal(str_at(main_addr, "street1", NULL), "Old 1"); /* absent: left */
    assert_string_equal(str_at(main_addr, "zipCode", NULL), "3011");
    assert_string_equal(str_at(main_addr, "town", NULL), "Bern");
    json_decref(b);

    /* A null last name never clears S-360's mandatory one. */
    json_object_set_new(cust, "last_name", json_null());
    b = s360_contact_body(cust, cur, "0000000042", "req-3", why, sizeof(why));
    assert_non_null(b);
    assert_string_equal(str_at(b, "individualContact", "lastName"), "Alt");
    json_decref(b);
    json_decref(cust);
    json_decref(cur);
}

static void test_contact_refused(void **state)
{
    (void)state;
    char why[256] = "";
    json_t *cust = parse("{\"customer_id\":\"c2\",\"email\":\"x@example.ch\"}");
    assert_null(s360_contact_body(cust, NULL, NULL, "r", why, sizeof(why)));
    assert_non_null(strstr(why, "lastName"));
    json_t *company = parse("{\"contactNumber\":\"7\",\"structureContact\":{\"name\":\"AG\"}}");
    json_object_set_new(cust, "last_name", json_string("X"));
    why[0] = '\0';
    assert_null(s360_contact_body(cust, company, "7", "r", why, sizeof(why)));
    assert_non_null(strstr(why, "company"));
    json_decref(company);
    json_decref(cust);
}

static void test_judge(void **state)
{
    (void)state;
    const char *detail = "unset";
    json_t *ok = parse("{\"statusCode\":\"success\",\"contactNumber\":\"1\"}");
    json_t *busy = parse("{\"statusCode\":\"in_progress\"}");
    json_t *failed = parse("{\"statusCode\":\"failed\",\"statusDetail\":\"NOT_ENOUGH_SEATS: 0 "
                           "left\"}");
    json_t *bare = parse("{\"statusCode\":\"failed\"}");
    json_t *none = parse("{\"token\":\"x\"}");
    assert_int_equal(s360_judge(0, 200, ok, &detail), SD_VERDICT_OK);
    assert_null(detail);
    assert_int_equal(s360_judge(0, 200, busy, &detail), SD_VERDICT_RETRY);
    assert_null(detail);
    assert_int_equal(s360_judge(0, 200, failed, &detail), SD_VERDICT_REJECT);
    assert_string_equal(detail, "NOT_ENOUGH_SEATS: 0 left");
    assert_int_equal(s360_judge(0, 200, bare, &detail), SD_VERDICT_REJECT);
    assert_string_equal(detail, "failed");
    assert_int_equal(s360_judge(0, 200, none, &detail), SD_VERDICT_REJECT);
    assert_int_equal(s360_judge(0, 200, NULL, &detail), SD_VERDICT_REJECT);
    /* The rate limit, 509 as 429, never with Retry-After: wait; 5xx and transport: retry;
     * a 401 that survived the token's refresh: reject. */
    assert_int_equal(s360_judge(0, 509, NULL, &detail), SD_VERDICT_WAIT);
    assert_int_equal(s360_judge(0, 429, NULL, &detail), SD_VERDICT_WAIT);
    assert_int_equal(s360_judge(0, 503, NULL, &detail), SD_VERDICT_RETRY);
    assert_int_equal(s360_judge(-ETIMEDOUT, 0, NULL, &detail), SD_VERDICT_RETRY);
    assert_int_equal(s360_judge(0, 401, NULL, &detail), SD_VERDICT_REJECT);
    json_decref(ok);
    json_decref(busy);
    json_decref(failed);
    json_decref(bare);
    json_decref(none);
}

static void test_times_and_staleness(void **state)
{
    (void)state;
    int64_t a = 0, b = 0;
    assert_int_equal(s360_time_usec("2026-03-01T10:00:00.123+01:00", &a), 0);
    assert_int_equal(s360_time_usec("2026-03-01T09:00:00.123Z", &b), 0);
    assert_true(a == b);
    assert_true(a == 1772355600123000LL);
    assert_int_equal(s360_time_usec("2026-07-01T10:00:00+02:00", &a), 0);
    assert_true(a == 1782892800000000LL);
    assert_int_equal(s360_time_usec("yesterday", &a), -EINVAL);
    assert_int_equal(s360_time_usec(NULL, &a), -EINVAL);

    int64_t queued = 1000LL * 1000000, skew = S360_CLOCK_SKEW_USEC;
    /* S-360 changed after the local change: its version stays. */
    assert_true(s360_remote_newer(queued + skew + 1, queued, 0));
    /* Within the clock skew, or before the local change: the local change goes out. */
    assert_false(s360_remote_newer(queued + skew, queued, 0));
    assert_false(s360_remote_newer(queued - 5000000, queued, 0));
    /* stagedoor's own last write moved S-360's stamp: not a newer S-360 change. */
    assert_false(s360_remote_newer(queued + 60000000, queued, queued + 59000000));
    assert_true(s360_remote_newer(queued + 60000000, queued, queued + 10000000));
}

static void test_subject(void **state)
{
    (void)state;
    char *buf = NULL;
    const char *src = NULL, *id = NULL;
    assert_int_equal(s360_split_subject("csv:a:b", &buf, &src, &id), 0);
    assert_string_equal(src, "csv");
    assert_string_equal(id, "a:b");
    free(buf);
    assert_int_equal(s360_split_subject("nocolon", &buf, &src, &id), -EINVAL);
    assert_int_equal(s360_split_subject(":x", &buf, &src, &id), -EINVAL);
    assert_int_equal(s360_split_subject("x:", &buf, &src, &id), -EINVAL);
}

static void test_order_body(void **state)
{
    (void)state;
    json_t *offer = parse("{\"offer_id\":\"off_1\",\"order_type\":\"RESERVATION\","
                          "\"performance_id\":10000000123,\"seat_category_id\":7,"
                          "\"audience_sub_category_id\":3,\"quantity\":2,\"contact\":\"42\"}");
    json_t *b = s360_order_body(offer, "0000000042", 1001, "req-9");
    assert_non_null(b);
    assert_string_equal(str_at(b, "requestId", NULL), "req-9");
    assert_int_equal(json_integer_value(json_object_get(b, "pointOfSalesId")), 1001);
    assert_string_equal(str_at(b, "orderType", NULL), "RESERVATION");
    assert_string_equal(str_at(b, "externalReference", NULL), "off_1");
    assert_string_equal(str_at(b, "purchasersInfo", "contactReference"), "0000000042");
    const json_t *line =
        json_array_get(json_object_get(json_object_get(b, "singleEntryAttributionOperations"),
                                       "operationAttributions"),
                       0);
    assert_true(json_integer_value(json_object_get(line, "performanceId")) == 10000000123LL);
    assert_int_equal(json_integer_value(json_object_get(line, "seatCategoryId")), 7);
    assert_int_equal(json_integer_value(json_object_get(line, "audienceSubCategoryId")), 3);
    assert_int_equal(json_integer_value(json_object_get(line, "quantity")), 2);
    json_decref(b);
    json_decref(offer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contact_create),
        cmocka_unit_test(test_contact_update_keeps_the_rest),
        cmocka_unit_test(test_contact_refused),
        cmocka_unit_test(test_judge),
        cmocka_unit_test(test_times_and_staleness),
        cmocka_unit_test(test_subject),
        cmocka_unit_test(test_order_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
