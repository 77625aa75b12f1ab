/* test_segment_rules.c — the segment rule parser (core/segment_rules.c): every node type, every
 * field and operator, the normal forms values leave in, the limits, and the errors with their
 * JSON Pointers. Table-driven: each case is a rule text and what must come out. What the store
 * does with the tree is tested in test_segments_store.c. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "core/segment_rules.h"
#include "model/model.h"

static struct sd_seg_rule *parse_ok(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    if (!j) {
        fail_msg("bad test JSON: %s (%s)", text, jerr.text);
    }
    struct sd_issues errors;
    sd_issues_init(&errors, 20);
    struct sd_seg_rule *r = NULL;
    int rc = sd_seg_rule_parse(j, "/rules", &r, &errors);
    if (rc != 0) {
        fail_msg("rule %s rejected: %s %s", text, errors.n ? errors.items[0].pointer : "",
                 errors.n ? errors.items[0].message : "");
    }
    assert_int_equal(errors.total, 0);
    sd_issues_release(&errors);
    json_decref(j);
    return r;
}

/* The rule must be rejected with an error at `pointer` whose message contains `msg`. */
static void parse_bad(const char *text, const char *pointer, const char *msg)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    if (!j) {
        fail_msg("bad test JSON: %s (%s)", text, jerr.text);
    }
    struct sd_issues errors;
    sd_issues_init(&errors, 50);
    struct sd_seg_rule *r = (struct sd_seg_rule *)0x1;
    int rc = sd_seg_rule_parse(j, "/rules", &r, &errors);
    if (rc != -EINVAL) {
        fail_msg("rule %s accepted", text);
    }
    assert_ptr_equal(r, (struct sd_seg_rule *)0x1); /* untouched */
    bool found = false;
    for (size_t i = 0; i < errors.n && !found; i++) {
        found = strcmp(errors.items[i].pointer, pointer) == 0 &&
                strstr(errors.items[i].message, msg) != NULL;
    }
    if (!found) {
        fail_msg("rule %s: no error at %s containing \"%s\"; first: %s \"%s\"", text, pointer, msg,
                 errors.n ? errors.items[0].pointer : "-",
                 errors.n ? errors.items[0].message : "-");
    }
    sd_issues_release(&errors);
    json_decref(j);
}

/* ---- node types ------------------------------------------------------------------------------ */

static void test_boolean_nodes(void **state)
{
    (void)state;
    struct sd_seg_rule *r =
        parse_ok("{\"all\":[{\"bought\":{}},{\"any\":[{\"not\":{\"customer\":{}}},"
                 "{\"all\":[]}]}]}");
    assert_int_equal(r->kind, SD_SEG_ALL);
    assert_int_equal(r->n_kids, 2);
    assert_int_equal(r->kids[0]->kind, SD_SEG_BOUGHT);
    assert_int_equal(r->kids[0]->n_where, 0);
    assert_int_equal(r->kids[1]->kind, SD_SEG_ANY);
    assert_int_equal(r->kids[1]->kids[0]->kind, SD_SEG_NOT);
    assert_int_equal(r->kids[1]->kids[0]->n_kids, 1);
    assert_int_equal(r->kids[1]->kids[0]->kids[0]->kind, SD_SEG_CUSTOMER);
    assert_int_equal(r->kids[1]->kids[1]->kind, SD_SEG_ALL);
    assert_int_equal(r->kids[1]->kids[1]->n_kids, 0);
    sd_seg_rule_free(r);
    r = parse_ok("{\"any\":[]}");
    assert_int_equal(r->kind, SD_SEG_ANY);
    assert_int_equal(r->n_kids, 0);
    sd_seg_rule_free(r);
}

static void test_bought_fields(void **state)
{
    (void)state;
    struct sd_seg_rule *r =
        parse_ok("{\"bought\":{\"composer\":{\"eq\":\"  Giuseppe   VERDI \"},"
                 "\"city\":\"Berlin\",\"title\":[\"Otello\",\"AIDA\"],"
                 "\"purchased\":{\"after\":\"730 days ago\",\"before\":\"2026-01-01\"}}}");
    assert_int_equal(r->kind, SD_SEG_BOUGHT);
    assert_int_equal(r->n_where, 5);
    assert_int_equal(r->where[0].field, SD_SEG_F_COMPOSER);
    assert_int_equal(r->where[0].op, SD_SEG_EQ);
    assert_string_equal(r->where[0].v[0].text, "giuseppe verdi"); /* folded */
    assert_int_equal(r->where[1].field, SD_SEG_F_CITY);
    assert_int_equal(r->where[1].op, SD_SEG_EQ); /* shorthand */
    assert_string_equal(r->where[1].v[0].text, "berlin");
    assert_int_equal(r->where[2].op, SD_SEG_IN); /* array shorthand */
    assert_int_equal(r->where[2].n, 2);
    assert_string_equal(r->where[2].v[1].text, "aida");
    assert_int_equal(r->where[3].field, SD_SEG_F_PURCHASED);
    assert_int_equal(r->where[3].op, SD_SEG_GT); /* after */
    assert_int_equal(r->where[3].v[0].time.kind, SD_SEG_T_AGO);
    assert_int_equal(r->where[3].v[0].time.v, 730 * 86400);
    assert_int_equal(r->where[4].op, SD_SEG_LT); /* before */
    assert_int_equal(r->where[4].v[0].time.kind, SD_SEG_T_DAY);
    assert_int_equal(r->where[4].v[0].time.v, 20454); /* 2026-01-01 */
    sd_seg_rule_free(r);
}

/* Every field with one operator of its type: accepted, right field code. */
static void test_every_field(void **state)
{
    (void)state;
    static const struct {
        const char *rule;
        enum sd_seg_field field;
        enum sd_seg_op op;
    } cases[] = {
        {"{\"bought\":{\"event_id\":{\"prefix\":\"EVT-\"}}}", SD_SEG_F_EVENT_ID, SD_SEG_PREFIX},
        {"{\"bought\":{\"title\":{\"contains\":\"otel\"}}}", SD_SEG_F_TITLE, SD_SEG_CONTAINS},
        {"{\"bought\":{\"work_title\":{\"exists\":false}}}", SD_SEG_F_WORK_TITLE, SD_SEG_EXISTS},
        {"{\"bought\":{\"composer\":{\"ne\":\"Verdi\"}}}", SD_SEG_F_COMPOSER, SD_SEG_NE},
        {"{\"bought\":{\"cast\":{\"in\":[\"A\",\"B\"]}}}", SD_SEG_F_CAST, SD_SEG_IN},
        {"{\"bought\":{\"venue\":{\"eq\":\"State Opera\"}}}", SD_SEG_F_VENUE, SD_SEG_EQ},
        {"{\"bought\":{\"hall\":{\"prefix\":\"Main\"}}}", SD_SEG_F_HALL, SD_SEG_PREFIX},
        {"{\"bought\":{\"city\":{\"in\":[\"Berlin\"]}}}", SD_SEG_F_CITY, SD_SEG_IN},
        {"{\"bought\":{\"date\":{\"between\":[\"2025-01-01\",\"2025-12-31\"]}}}", SD_SEG_F_DATE,
         SD_SEG_BETWEEN},
        {"{\"bought\":{\"weekday\":{\"in\":[\"sat\",\"Sunday\"]}}}", SD_SEG_F_WEEKDAY, SD_SEG_IN},
        {"{\"bought\":{\"time\":{\"gte\":\"18:00\"}}}", SD_SEG_F_TIME, SD_SEG_GTE},
        {"{\"bought\":{\"ticket_category\":{\"eq\":\"vip\"}}}", SD_SEG_F_TICKET_CATEGORY,
         SD_SEG_EQ},
        {"{\"bought\":{\"purchased\":{\"gte\":\"today\"}}}", SD_SEG_F_PURCHASED, SD_SEG_GTE},
        {"{\"bought\":{\"price\":{\"currency\":\"EUR\",\"lte\":\"50.00\"}}}", SD_SEG_F_PRICE,
         SD_SEG_LTE},
        {"{\"bought\":{\"currency\":{\"ne\":\"eur\"}}}", SD_SEG_F_CURRENCY, SD_SEG_NE},
        {"{\"bought\":{\"quantity\":{\"gt\":3}}}", SD_SEG_F_QUANTITY, SD_SEG_GT},
        {"{\"customer\":{\"post_code\":{\"prefix\":\"10\"}}}", SD_SEG_F_POST_CODE, SD_SEG_PREFIX},
        {"{\"customer\":{\"city\":{\"eq\":\"Berlin\"}}}", SD_SEG_F_CUSTOMER_CITY, SD_SEG_EQ},
        {"{\"customer\":{\"salutation\":{\"in\":[\"Ms\",\"Frau\"]}}}", SD_SEG_F_SALUTATION,
         SD_SEG_IN},
        {"{\"customer\":{\"source\":{\"eq\":\"csv\"}}}", SD_SEG_F_SOURCE, SD_SEG_EQ},
        {"{\"customer\":{\"activities\":{\"gte\":2}}}", SD_SEG_F_ACTIVITIES, SD_SEG_GTE},
        {"{\"customer\":{\"last_activity\":{\"after\":\"90 days ago\"}}}", SD_SEG_F_LAST_ACTIVITY,
         SD_SEG_GT},
        {"{\"customer\":{\"last_activity\":{\"exists\":false}}}", SD_SEG_F_LAST_ACTIVITY,
         SD_SEG_EXISTS},
        {"{\"customer\":{\"last_activity_type\":\"contest\"}}", SD_SEG_F_LAST_ACTIVITY_TYPE,
         SD_SEG_EQ},
        {"{\"customer\":{\"last_activity_campaign\":{\"contains\":\"give\"}}}",
         SD_SEG_F_LAST_ACTIVITY_CAMPAIGN, SD_SEG_CONTAINS},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sd_seg_rule *r = parse_ok(cases[i].rule);
        assert_int_equal(r->n_where, 1);
        assert_int_equal(r->where[0].field, cases[i].field);
        assert_int_equal(r->where[0].op, cases[i].op);
        sd_seg_rule_free(r);
    }
}

static void test_value_normal_forms(void **state)
{
    (void)state;
    struct sd_seg_rule *r =
        parse_ok("{\"bought\":{\"ticket_category\":[\"vip\",\"COMP\"],\"currency\":\"chf\","
                 "\"time\":{\"between\":[\"18:00\",\"20:30:15\"]},\"weekday\":\"Sat\","
                 "\"price\":{\"currency\":\"JPY\",\"eq\":\"1200\",\"ne\":5}}}");
    assert_string_equal(r->where[0].v[0].text, "VIP");
    assert_string_equal(r->where[0].v[1].text, "comp");
    assert_string_equal(r->where[1].v[0].text, "CHF");
    assert_string_equal(r->where[2].v[0].text, "18:00:00");
    assert_string_equal(r->where[2].v[1].text, "20:30:15");
    assert_int_equal(r->where[3].v[0].num, 6); /* Saturday */
    assert_int_equal(r->where[4].field, SD_SEG_F_PRICE);
    assert_string_equal(r->where[4].currency, "JPY");
    assert_int_equal(r->where[4].v[0].num, 1200); /* JPY has no minor unit */
    assert_int_equal(r->where[5].op, SD_SEG_NE);
    assert_int_equal(r->where[5].v[0].num, 5); /* integers are minor units */
    sd_seg_rule_free(r);

    r = parse_ok("{\"bought\":{\"price\":{\"currency\":\"EUR\",\"between\":[\"9.5\",10000]}}}");
    assert_int_equal(r->where[0].v[0].num, 950);
    assert_int_equal(r->where[0].v[1].num, 10000);
    sd_seg_rule_free(r);
}

static void test_time_values(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        enum sd_seg_time_kind kind;
        int64_t v;
    } cases[] = {
        {"1970-01-02", SD_SEG_T_DAY, 1},
        {"2024-02-29", SD_SEG_T_DAY, 19782},
        {"2024-01-01T00:00:10Z", SD_SEG_T_INSTANT, 1704067210},
        {"2024-01-01T02:00:10+02:00", SD_SEG_T_INSTANT, 1704067210},
        {"2024-01-01T00:00:10.999Z", SD_SEG_T_INSTANT, 1704067210},
        {"now", SD_SEG_T_AGO, 0},
        {"today", SD_SEG_T_DAYS_AGO, 0},
        {"Yesterday", SD_SEG_T_DAYS_AGO, 1},
        {"tomorrow", SD_SEG_T_DAYS_AGO, -1},
        {"730 days ago", SD_SEG_T_AGO, 730 * 86400},
        {"1 day ago", SD_SEG_T_AGO, 86400},
        {"  3   Hours  ago", SD_SEG_T_AGO, 3 * 3600},
        {"2 weeks ago", SD_SEG_T_AGO, 14 * 86400},
        {"90 minutes ago", SD_SEG_T_AGO, 90 * 60},
        {"in 30 days", SD_SEG_T_AGO, -30 * 86400},
        {"36500 days ago", SD_SEG_T_AGO, 36500LL * 86400},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[160];
        snprintf(text, sizeof(text), "{\"last_purchase\":{\"after\":\"%s\"}}", cases[i].value);
        struct sd_seg_rule *r = parse_ok(text);
        assert_int_equal(r->kind, SD_SEG_LAST_PURCHASE);
        assert_int_equal(r->n_cmp, 1);
        assert_int_equal(r->cmp[0].field, SD_SEG_F_MEASURE);
        assert_int_equal(r->cmp[0].op, SD_SEG_GT);
        assert_int_equal(r->cmp[0].v[0].time.kind, cases[i].kind);
        assert_int_equal(r->cmp[0].v[0].time.v, cases[i].v);
        sd_seg_rule_free(r);
    }
    static const char *const bad[] = {
        "2024-02-30",
        "36501 days ago",
        "3 months ago",
        "ago",
        "days ago",
        "1 day",
        "in 3",
        "2024-01-01T25:00:00Z",
        "yesterday ago",
        "-1 days ago",
        "1234567 days ago",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[160];
        snprintf(text, sizeof(text), "{\"last_purchase\":{\"after\":\"%s\"}}", bad[i]);
        parse_bad(text, "/rules/last_purchase/after", "must be a date");
    }
}

static void test_count_and_purchase_nodes(void **state)
{
    (void)state;
    struct sd_seg_rule *r = parse_ok("{\"count\":{\"of\":\"purchases\",\"gte\":3,\"lt\":10,"
                                     "\"where\":{\"composer\":\"Verdi\"}}}");
    assert_int_equal(r->kind, SD_SEG_COUNT);
    assert_int_equal(r->measure, SD_SEG_M_PURCHASES);
    assert_int_equal(r->n_cmp, 2);
    assert_int_equal(r->cmp[0].op, SD_SEG_GTE);
    assert_int_equal(r->cmp[0].v[0].num, 3);
    assert_int_equal(r->cmp[1].op, SD_SEG_LT);
    assert_int_equal(r->n_where, 1);
    assert_int_equal(r->where[0].field, SD_SEG_F_COMPOSER);
    sd_seg_rule_free(r);

    static const struct {
        const char *rule;
        enum sd_seg_measure m;
        enum sd_seg_op op;
        int64_t v0;
    } cases[] = {
        {"{\"count\":{\"of\":\"tickets\",\"eq\":4}}", SD_SEG_M_TICKETS, SD_SEG_EQ, 4},
        {"{\"count\":{\"of\":\"events\",\"ne\":0}}", SD_SEG_M_EVENTS, SD_SEG_NE, 0},
        {"{\"count\":{\"of\":\"events\",\"gt\":1}}", SD_SEG_M_EVENTS, SD_SEG_GT, 1},
        {"{\"count\":{\"of\":\"purchases\",\"lte\":2}}", SD_SEG_M_PURCHASES, SD_SEG_LTE, 2},
        {"{\"count\":{\"of\":\"purchases\",\"between\":[1,2]}}", SD_SEG_M_PURCHASES, SD_SEG_BETWEEN,
         1},
        {"{\"count\":{\"of\":\"purchases\",\"in\":[0,3]}}", SD_SEG_M_PURCHASES, SD_SEG_IN, 0},
        {"{\"count\":{\"of\":\"spend\",\"currency\":\"EUR\",\"gte\":\"500.00\"}}", SD_SEG_M_SPEND,
         SD_SEG_GTE, 50000},
        {"{\"count\":{\"of\":\"spend\",\"currency\":\"eur\",\"gte\":50000}}", SD_SEG_M_SPEND,
         SD_SEG_GTE, 50000},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        r = parse_ok(cases[i].rule);
        assert_int_equal(r->measure, cases[i].m);
        assert_int_equal(r->cmp[0].op, cases[i].op);
        assert_int_equal(r->cmp[0].v[0].num, cases[i].v0);
        if (cases[i].m == SD_SEG_M_SPEND) {
            assert_string_equal(r->currency, "EUR");
        }
        sd_seg_rule_free(r);
    }

    r = parse_ok("{\"first_purchase\":{\"where\":{\"city\":\"Berlin\"},\"exists\":true,"
                 "\"between\":[\"2020-01-01\",\"1 day ago\"],\"ne\":\"2021-05-05\"}}");
    assert_int_equal(r->kind, SD_SEG_FIRST_PURCHASE);
    assert_int_equal(r->n_where, 1);
    assert_int_equal(r->n_cmp, 3);
    assert_int_equal(r->cmp[0].op, SD_SEG_EXISTS);
    assert_true(r->cmp[0].exists);
    assert_int_equal(r->cmp[1].op, SD_SEG_BETWEEN);
    assert_int_equal(r->cmp[2].op, SD_SEG_NE);
    sd_seg_rule_free(r);
}

/* ---- errors ---------------------------------------------------------------------------------- */

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *rule, *pointer, *msg;
    } cases[] = {
        /* the issue's example */
        {"{\"all\":[{\"bought\":{}},{\"bought\":{\"composer\":{\"equals\":\"Verdi\"}}}]}",
         "/rules/all/1/bought/composer",
         "unknown operator 'equals' (use eq, ne, in, contains, prefix, exists)"},
        {"[]", "/rules", "exactly one key"},
        {"{}", "/rules", "exactly one key"},
        {"{\"all\":[],\"any\":[]}", "/rules", "exactly one key"},
        {"{\"bougth\":{}}", "/rules", "unknown rule 'bougth' (use all, any"},
        {"{\"all\":{}}", "/rules/all", "must be an array of rules"},
        {"{\"not\":[]}", "/rules/not", "exactly one key"},
        {"{\"bought\":[]}", "/rules/bought", "must be an object of fields"},
        {"{\"bought\":{\"composr\":\"x\"}}", "/rules/bought", "unknown field 'composr' (use"},
        {"{\"customer\":{\"composer\":\"x\"}}", "/rules/customer",
         "unknown field 'composer' (use post_code, city, salutation, source, activities, "
         "last_activity, last_activity_type, last_activity_campaign)"},
        {"{\"bought\":{\"composer\":{}}}", "/rules/bought/composer", "needs at least one operator"},
        {"{\"bought\":{\"composer\":{\"gt\":\"a\"}}}", "/rules/bought/composer",
         "operator 'gt' does not apply to composer"},
        {"{\"bought\":{\"composer\":{\"eq\":5}}}", "/rules/bought/composer/eq", "must be a string"},
        {"{\"bought\":{\"composer\":{\"eq\":\"  \"}}}", "/rules/bought/composer/eq",
         "must not be empty"},
        {"{\"bought\":{\"composer\":{\"in\":[]}}}", "/rules/bought/composer/in",
         "array of 1 to 500"},
        {"{\"bought\":{\"composer\":{\"in\":[\"a\",3]}}}", "/rules/bought/composer/in/1",
         "must be a string"},
        {"{\"bought\":{\"composer\":{\"exists\":\"yes\"}}}", "/rules/bought/composer/exists",
         "true or false"},
        {"{\"bought\":{\"ticket_category\":\"gold\"}}", "/rules/bought/ticket_category",
         "regular, VIP, subscription or comp"},
        {"{\"bought\":{\"ticket_category\":{\"contains\":\"V\"}}}", "/rules/bought/ticket_category",
         "does not apply"},
        {"{\"bought\":{\"currency\":\"EURO\"}}", "/rules/bought/currency", "ISO 4217"},
        {"{\"bought\":{\"quantity\":{\"gt\":-1}}}", "/rules/bought/quantity/gt", "integer from 0"},
        {"{\"bought\":{\"quantity\":{\"gt\":1.5}}}", "/rules/bought/quantity/gt", "integer from 0"},
        {"{\"bought\":{\"quantity\":{\"between\":[5,1]}}}", "/rules/bought/quantity/between",
         "not be greater"},
        {"{\"bought\":{\"quantity\":{\"between\":[1]}}}", "/rules/bought/quantity/between",
         "two values"},
        {"{\"bought\":{\"price\":{\"gt\":\"5.00\"}}}", "/rules/bought/price", "needs a currency"},
        {"{\"bought\":{\"price\":\"5.00\"}}", "/rules/bought/price", "currency and operators"},
        {"{\"bought\":{\"price\":{\"currency\":\"EUR\",\"gt\":\"5.001\"}}}",
         "/rules/bought/price/gt", "decimal"},
        {"{\"bought\":{\"price\":{\"currency\":\"EUR\",\"gt\":5.5}}}", "/rules/bought/price/gt",
         "minor units"},
        {"{\"bought\":{\"price\":{\"currency\":\"EUR\",\"above\":1}}}", "/rules/bought/price",
         "unknown key 'above' (use currency, eq"},
        {"{\"bought\":{\"time\":\"7pm\"}}", "/rules/bought/time", "time of day"},
        {"{\"bought\":{\"time\":\"24:00\"}}", "/rules/bought/time", "time of day"},
        {"{\"bought\":{\"weekday\":\"mo\"}}", "/rules/bought/weekday", "monday .. sunday"},
        {"{\"bought\":{\"weekday\":{\"gt\":\"mon\"}}}", "/rules/bought/weekday", "does not apply"},
        {"{\"bought\":{\"date\":{\"contains\":\"2024\"}}}", "/rules/bought/date",
         "operator 'contains' does not apply to date (use eq, ne, before, after"},
        {"{\"bought\":{\"date\":{\"exists\":true}}}", "/rules/bought/date", "does not apply"},
        {"{\"bought\":{\"purchased\":{\"between\":[\"2025-01-02\",\"2025-01-01\"]}}}",
         "/rules/bought/purchased/between", "not be greater"},
        {"{\"count\":{\"gte\":1}}", "/rules/count/of", "is missing"},
        {"{\"count\":{\"of\":\"visits\",\"gte\":1}}", "/rules/count/of",
         "purchases, tickets, events or spend"},
        {"{\"count\":{\"of\":\"purchases\"}}", "/rules/count", "needs a comparison"},
        {"{\"count\":{\"of\":\"purchases\",\"contains\":1}}", "/rules/count",
         "operator 'contains' does not apply to a count"},
        {"{\"count\":{\"of\":\"purchases\",\"more\":1}}", "/rules/count",
         "unknown key 'more' (use of, where, currency, eq"},
        {"{\"count\":{\"of\":\"spend\",\"gte\":1}}", "/rules/count/currency", "is missing"},
        {"{\"count\":{\"of\":\"tickets\",\"currency\":\"EUR\",\"gte\":1}}", "/rules/count/currency",
         "only a count of spend"},
        {"{\"count\":{\"of\":\"purchases\",\"where\":{\"post_code\":\"1\"},\"gte\":1}}",
         "/rules/count/where", "unknown field 'post_code'"},
        {"{\"count\":{\"of\":\"purchases\",\"gte\":\"3\"}}", "/rules/count/gte", "integer"},
        {"{\"first_purchase\":{}}", "/rules/first_purchase", "needs a comparison"},
        {"{\"first_purchase\":{\"exists\":1}}", "/rules/first_purchase/exists", "true or false"},
        {"{\"last_purchase\":\"today\"}", "/rules/last_purchase", "must be an object"},
        {"{\"last_purchase\":{\"where\":{\"nope\":1},\"after\":\"today\"}}",
         "/rules/last_purchase/where", "unknown field 'nope'"},
        {"{\"bought\":{\"composer\":{\"eq\":\"a\",\"in~/\":[]}}}", "/rules/bought/composer",
         "unknown operator 'in~/'"},
        {"{\"bought\":{\"a/b\":1}}", "/rules/bought", "unknown field 'a/b'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parse_bad(cases[i].rule, cases[i].pointer, cases[i].msg);
    }
}

/* Every problem is reported, not only the first. */
static void test_all_errors_reported(void **state)
{
    (void)state;
    json_t *j = json_loads("{\"all\":[{\"bought\":{\"composer\":{\"equals\":1}}},"
                           "{\"nope\":{}},{\"count\":{\"of\":\"x\"}}]}",
                           0, NULL);
    struct sd_issues errors;
    sd_issues_init(&errors, 50);
    struct sd_seg_rule *r = NULL;
    assert_int_equal(sd_seg_rule_parse(j, "", &r, &errors), -EINVAL);
    assert_null(r);
    assert_int_equal(errors.total, 3);
    assert_string_equal(errors.items[0].pointer, "/all/0/bought/composer");
    assert_string_equal(errors.items[1].pointer, "/all/1");
    assert_string_equal(errors.items[2].pointer, "/all/2/count/of");
    sd_issues_release(&errors);
    json_decref(j);
    /* a missing rule */
    sd_issues_init(&errors, 5);
    assert_int_equal(sd_seg_rule_parse(NULL, "/rules", &r, &errors), -EINVAL);
    assert_string_equal(errors.items[0].pointer, "/rules");
    sd_issues_release(&errors);
}

/* ---- limits ---------------------------------------------------------------------------------- */

static char *nested(const char *op, int depth)
{
    struct sd_buf b;
    sd_buf_init(&b);
    for (int i = 0; i < depth - 1; i++) {
        sd_buf_printf(&b, "{\"%s\":", op);
    }
    sd_buf_puts(&b, "{\"bought\":{}}");
    for (int i = 0; i < depth - 1; i++) {
        sd_buf_puts(&b, "}");
    }
    return sd_buf_steal(&b);
}

static void test_limits(void **state)
{
    (void)state;
    /* depth: 16 levels are fine, 17 are not */
    char *ok = nested("not", SD_SEG_RULE_DEPTH_MAX);
    sd_seg_rule_free(parse_ok(ok));
    free(ok);
    char *deep = nested("not", SD_SEG_RULE_DEPTH_MAX + 1);
    struct sd_buf ptr;
    sd_buf_init(&ptr);
    sd_buf_puts(&ptr, "/rules");
    for (int i = 0; i < SD_SEG_RULE_DEPTH_MAX; i++) {
        sd_buf_puts(&ptr, "/not");
    }
    parse_bad(deep, ptr.data, "nested more than 16");
    sd_buf_release(&ptr);
    free(deep);
    /* a very deep document is refused at the limit, not walked */
    char *very = nested("not", 5000);
    json_t *j = json_loads(very, 0, NULL);
    if (j) { /* jansson has its own depth limit; either refusal is fine */
        struct sd_issues errors;
        sd_issues_init(&errors, 5);
        struct sd_seg_rule *r = NULL;
        assert_int_equal(sd_seg_rule_parse(j, "", &r, &errors), -EINVAL);
        sd_issues_release(&errors);
        json_decref(j);
    }
    free(very);

    /* nodes: 1 (all) + 199 kids = 200 fine; one more is not */
    struct sd_buf b;
    sd_buf_init(&b);
    sd_buf_puts(&b, "{\"all\":[");
    for (int i = 0; i < SD_SEG_RULE_NODES_MAX - 1; i++) {
        sd_buf_printf(&b, "%s{\"bought\":{}}", i ? "," : "");
    }
    sd_buf_puts(&b, "]}");
    sd_seg_rule_free(parse_ok(b.data));
    sd_buf_reset(&b);
    sd_buf_puts(&b, "{\"all\":[");
    for (int i = 0; i < SD_SEG_RULE_NODES_MAX; i++) {
        sd_buf_printf(&b, "%s{\"bought\":{}}", i ? "," : "");
    }
    sd_buf_puts(&b, "]}");
    parse_bad(b.data, "/rules", "more than 200");
    /* fields and operators count too: 1 + 100 rules + 100 fields + 100 operators */
    sd_buf_reset(&b);
    sd_buf_puts(&b, "{\"any\":[");
    for (int i = 0; i < 100; i++) {
        sd_buf_printf(&b, "%s{\"customer\":{\"city\":{\"eq\":\"c%d\"}}}", i ? "," : "", i);
    }
    sd_buf_puts(&b, "]}");
    parse_bad(b.data, "/rules", "more than 200");
    sd_buf_release(&b);

    /* in lists: 500 values fine, 501 not */
    sd_buf_init(&b);
    sd_buf_puts(&b, "{\"customer\":{\"post_code\":{\"in\":[");
    for (int i = 0; i < SD_SEG_RULE_LIST_MAX; i++) {
        sd_buf_printf(&b, "%s\"%d\"", i ? "," : "", i);
    }
    sd_buf_puts(&b, "]}}}");
    sd_seg_rule_free(parse_ok(b.data));
    char *more = sd_strdup(b.data);
    more[strlen(more) - 4] = '\0';
    char *bigger = sd_asprintf("%s,\"x\"]}}}", more);
    parse_bad(bigger, "/rules/customer/post_code/in", "1 to 500");
    free(more);
    free(bigger);
    sd_buf_release(&b);

    /* text length */
    char big[SD_SEG_RULE_TEXT_MAX + 64];
    memset(big, 'a', sizeof(big));
    big[SD_SEG_RULE_TEXT_MAX + 1] = '\0';
    char *t = sd_asprintf("{\"bought\":{\"title\":\"%s\"}}", big);
    parse_bad(t, "/rules/bought/title", "at most 500 bytes");
    free(t);
    big[SD_SEG_RULE_TEXT_MAX] = '\0';
    t = sd_asprintf("{\"bought\":{\"title\":\"%s\"}}", big);
    sd_seg_rule_free(parse_ok(t));
    free(t);
}

/* Keys quoted back in messages are cut short and stay valid UTF-8 (the message goes into a
 * JSON answer); NUL inside a key does not cut the pointer. */
static void test_quoted_names(void **state)
{
    (void)state;
    char key[300];
    memset(key, 'k', sizeof(key));
    key[299] = '\0';
    json_t *j = json_pack("{s:{s:i}}", "bought", key, 1);
    struct sd_issues errors;
    sd_issues_init(&errors, 5);
    struct sd_seg_rule *r = NULL;
    assert_int_equal(sd_seg_rule_parse(j, "", &r, &errors), -EINVAL);
    key[41] = '\0'; /* 41 k's: more than a quote keeps */
    assert_null(strstr(errors.items[0].message, key));
    assert_non_null(strstr(errors.items[0].message, "kkkk\xe2\x80\xa6"));
    assert_true(sd_utf8_valid(errors.items[0].message, strlen(errors.items[0].message)));
    sd_issues_release(&errors);
    json_decref(j);

    j = json_object();
    json_t *b = json_object();
    json_object_setn_new(b, "a\0b\xc3\xa9", 5, json_integer(1));
    json_object_set_new(j, "bought", b);
    sd_issues_init(&errors, 5);
    assert_int_equal(sd_seg_rule_parse(j, "", &r, &errors), -EINVAL);
    assert_string_equal(errors.items[0].pointer, "/bought");
    assert_true(sd_utf8_valid(errors.items[0].message, strlen(errors.items[0].message)));
    assert_non_null(strstr(errors.items[0].message, "a\xef\xbf\xbd"
                                                    "b\xc3\xa9"));
    sd_issues_release(&errors);
    json_decref(j);
}

/* The order lifecycle rules and fields: refunded, holds, abandoned; status, status_changed,
 * attended; order_type and expires for holds only. */
static void test_lifecycle_nodes(void **state)
{
    (void)state;
    struct sd_seg_rule *r =
        parse_ok("{\"refunded\":{\"status_changed\":{\"after\":\"30 days ago\"}}}");
    assert_int_equal(r->kind, SD_SEG_REFUNDED);
    assert_int_equal(r->n_where, 1);
    assert_int_equal(r->where[0].field, SD_SEG_F_STATUS_CHANGED);
    assert_int_equal(r->where[0].v[0].time.kind, SD_SEG_T_AGO);
    assert_int_equal(r->where[0].v[0].time.v, 30 * 86400);
    sd_seg_rule_free(r);
    r = parse_ok("{\"holds\":{\"order_type\":[\"reservation\",\"option\"],"
                 "\"expires\":{\"exists\":true}}}");
    assert_int_equal(r->kind, SD_SEG_HOLDS);
    assert_int_equal(r->n_where, 2);
    assert_int_equal(r->where[0].op, SD_SEG_IN);
    assert_string_equal(r->where[0].v[1].text, "option");
    sd_seg_rule_free(r);
    r = parse_ok(
        "{\"abandoned\":{\"purchased\":{\"after\":\"7 days ago\"},\"bought_since\":false}}");
    assert_int_equal(r->kind, SD_SEG_ABANDONED);
    assert_true(r->not_bought_since);
    assert_int_equal(r->n_where, 1);
    sd_seg_rule_free(r);
    r = parse_ok("{\"abandoned\":{}}");
    assert_false(r->not_bought_since);
    sd_seg_rule_free(r);
    r = parse_ok("{\"bought\":{\"status\":\"refunded\",\"attended\":0}}");
    assert_int_equal(r->where[0].field, SD_SEG_F_STATUS);
    assert_int_equal(r->where[1].field, SD_SEG_F_ATTENDED);
    assert_int_equal(r->where[1].v[0].num, 0);
    sd_seg_rule_free(r);
    parse_bad("{\"abandoned\":{\"bought_since\":true}}", "/rules/abandoned/bought_since",
              "must be false");
    parse_bad("{\"bought\":{\"status\":\"Refunded\"}}", "/rules/bought/status", "must be a status");
    parse_bad("{\"holds\":{\"order_type\":\"sale\"}}", "/rules/holds/order_type",
              "reservation or option");
    parse_bad("{\"bought\":{\"expires\":{\"exists\":true}}}", "/rules/bought",
              "unknown field 'expires'");
    parse_bad("{\"refunded\":[]}", "/rules/refunded", "must be an object of fields");
    parse_bad("{\"abandoned\":{\"weekday\":\"funday\"}}", "/rules/abandoned/weekday",
              "must be a weekday");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_boolean_nodes),   cmocka_unit_test(test_bought_fields),
        cmocka_unit_test(test_every_field),     cmocka_unit_test(test_value_normal_forms),
        cmocka_unit_test(test_time_values),     cmocka_unit_test(test_count_and_purchase_nodes),
        cmocka_unit_test(test_errors),          cmocka_unit_test(test_all_errors_reported),
        cmocka_unit_test(test_limits),          cmocka_unit_test(test_quoted_names),
        cmocka_unit_test(test_lifecycle_nodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
