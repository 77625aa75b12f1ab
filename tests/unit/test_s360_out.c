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
    json_t *b = s360_contact_body(cust, NULL, NULL, "req-1", "NEWSLETTER", why, sizeof(why));
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
    json_t *b = s360_contact_body(cust, cur, "0000000042", "req-2", "NEWSLETTER", why, sizeof(why));
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
    b = s360_contact_body(cust, cur, "0000000042", "req-3", "NEWSLETTER", why, sizeof(why));
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
    assert_null(s360_contact_body(cust, NULL, NULL, "r", "NEWSLETTER", why, sizeof(why)));
    assert_non_null(strstr(why, "lastName"));
    json_t *company = parse("{\"contactNumber\":\"7\",\"structureContact\":{\"name\":\"AG\"}}");
    json_object_set_new(cust, "last_name", json_string("X"));
    why[0] = '\0';
    assert_null(s360_contact_body(cust, company, "7", "r", "NEWSLETTER", why, sizeof(why)));
    assert_non_null(strstr(why, "company"));
    json_decref(company);
    json_decref(cust);
}

/* The main address's street of a body built for customer street `street` over S-360's lines
 * s1/s2 (NULL: absent); *ret2 the street2 sent (NULL: none). */
static const char *street_sent(const char *street, const char *s1, const char *s2,
                               json_t **ret_body, const char **ret2)
{
    json_t *addr = json_pack("{s:b}", "isMain", 1);
    if (s1) {
        json_object_set_new(addr, "street1", json_string(s1));
    }
    if (s2) {
        json_object_set_new(addr, "street2", json_string(s2));
    }
    json_t *cur =
        json_pack("{s:{s:s}, s:[o]}", "individualContact", "lastName", "L", "addresses", addr);
    json_t *cust = json_pack("{s:s, s:s}", "customer_id", "1", "street", street);
    char why[256] = "";
    json_t *b = s360_contact_body(cust, cur, "1", "r", "NEWSLETTER", why, sizeof(why));
    assert_non_null(b);
    json_decref(cust);
    json_decref(cur);
    const json_t *a = json_array_get(json_object_get(b, "addresses"), 0);
    *ret_body = b;
    *ret2 = str_at(a, "street2", NULL);
    return str_at(a, "street1", NULL);
}

/* stagedoor's one street over S-360's two lines (the inbound joins them "street1, street2"). */
static void test_street_lines(void **state)
{
    (void)state;
    json_t *b = NULL;
    const char *s2 = NULL;
    /* Unchanged: both lines stay as they are. */
    assert_string_equal(street_sent("Seestr. 4, c/o Muster", "Seestr. 4", "c/o Muster", &b, &s2),
                        "Seestr. 4");
    assert_string_equal(s2, "c/o Muster");
    json_decref(b);
    /* The first line changed, the second still ends it: split back there. */
    assert_string_equal(street_sent("Bergweg 9, c/o Muster", "Seestr. 4", "c/o Muster", &b, &s2),
                        "Bergweg 9");
    assert_string_equal(s2, "c/o Muster");
    json_decref(b);
    /* Anything else: the whole street is the first line, the second is dropped. */
    assert_string_equal(street_sent("Bergweg 9", "Seestr. 4", "c/o Muster", &b, &s2), "Bergweg 9");
    assert_null(s2);
    json_decref(b);
    /* One line only: written as before. */
    assert_string_equal(street_sent("Bergweg 9", "Seestr. 4", NULL, &b, &s2), "Bergweg 9");
    assert_null(s2);
    json_decref(b);
    /* A lone street2 the inbound took as the street, unchanged: left alone. */
    assert_null(street_sent("Postfach 12", NULL, "Postfach 12", &b, &s2));
    assert_string_equal(s2, "Postfach 12");
    json_decref(b);
}

/* A customer's opt-out goes to S-360's opt-in authorizations; nothing else ever does. */
static void test_opt_out_authorizations(void **state)
{
    (void)state;
    json_t *cur = parse("{\"individualContact\":{\"lastName\":\"L\"},\"authorizations\":["
                        "{\"authorizationType\":\"NEWSLETTER\",\"value\":true},"
                        "{\"authorizationType\":\"THIRD_PARTY\",\"value\":true}]}");
    json_t *cust = parse("{\"customer_id\":\"1\",\"ad_opt_out\":true}");
    char why[256] = "";
    json_t *b = s360_contact_body(cust, cur, "1", "r", "NEWSLETTER, PARTNERS", why, sizeof(why));
    assert_non_null(b);
    const json_t *au = json_object_get(b, "authorizations");
    assert_int_equal(json_array_size(au), 3);
    assert_string_equal(str_at(json_array_get(au, 0), "authorizationType", NULL), "NEWSLETTER");
    assert_true(json_is_false(json_object_get(json_array_get(au, 0), "value")));
    /* Not an opt-in type: kept as S-360 has it. */
    assert_true(json_is_true(json_object_get(json_array_get(au, 1), "value")));
    /* A listed type S-360 does not have yet: added, refused. */
    assert_string_equal(str_at(json_array_get(au, 2), "authorizationType", NULL), "PARTNERS");
    assert_true(json_is_false(json_object_get(json_array_get(au, 2), "value")));
    json_decref(b);

    /* Not opted out (false, or never said): no authorizations at all, so an S-360 opt-out is
     * never turned into an opt-in and no consent is invented. */
    json_object_set_new(cust, "ad_opt_out", json_false());
    json_object_set_new(json_array_get(json_object_get(cur, "authorizations"), 0), "value",
                        json_false());
    b = s360_contact_body(cust, cur, "1", "r", "NEWSLETTER", why, sizeof(why));
    assert_null(json_object_get(b, "authorizations"));
    json_decref(b);
    json_object_del(cust, "ad_opt_out");
    b = s360_contact_body(cust, NULL, NULL, "r", "NEWSLETTER", why, sizeof(why));
    assert_null(json_object_get(b, "authorizations"));
    json_decref(b);
    /* No opt-in type configured: nothing to write. */
    json_object_set_new(cust, "ad_opt_out", json_true());
    b = s360_contact_body(cust, cur, "1", "r", "", why, sizeof(why));
    assert_null(json_object_get(b, "authorizations"));
    json_decref(b);
    json_decref(cust);
    json_decref(cur);
}

/* The stale rule by S-360's own version (the lastUpdateDate stagedoor last received). */
static void test_staleness_by_remote_version(void **state)
{
    (void)state;
    int64_t received_ms = 1772355600123LL, skew = S360_CLOCK_SKEW_USEC;
    int64_t seen = received_ms * 1000;
    /* S-360 has nothing stagedoor did not receive: the local change goes out, whatever the
     * clocks say (queued long before S-360's stamp). */
    assert_false(s360_remote_newer(seen, received_ms, seen - 3600LL * 1000000, 0));
    /* S-360 changed after the version received: newer, even one ms later and even if the
     * local change was queued later by stagedoor's clock. */
    assert_true(s360_remote_newer(seen + 1000, received_ms, seen + 3600LL * 1000000, 0));
    /* ... unless that change is stagedoor's own last write whose echo has not come in yet. */
    assert_false(s360_remote_newer(seen + 5000000, received_ms, 0, seen + 5000000 - skew));
    assert_true(s360_remote_newer(seen + 5000000, received_ms, 0, seen + 1000000));
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
    assert_true(s360_remote_newer(queued + skew + 1, 0, queued, 0));
    /* Within the clock skew, or before the local change: the local change goes out. */
    assert_false(s360_remote_newer(queued + skew, 0, queued, 0));
    assert_false(s360_remote_newer(queued - 5000000, 0, queued, 0));
    /* stagedoor's own last write moved S-360's stamp: not a newer S-360 change. */
    assert_false(s360_remote_newer(queued + 60000000, 0, queued, queued + 59000000));
    assert_true(s360_remote_newer(queued + 60000000, 0, queued, queued + 10000000));
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
        cmocka_unit_test(test_street_lines),
        cmocka_unit_test(test_opt_out_authorizations),
        cmocka_unit_test(test_staleness_by_remote_version),
        cmocka_unit_test(test_subject),
        cmocka_unit_test(test_order_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
