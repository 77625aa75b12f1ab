/* test_model_validate.c — record validators and the ingest body. Cases patch one valid base
 * record (a key set to "<del>" is removed) and list exactly the issues expected, as
 * "pointer|message fragment"; every expected issue must be found and nothing else. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/model.h"

#define EV_BASE                                                                                 \
    "{\"event_id\":\"EVT-12345\",\"title\":\"Otello\",\"date\":\"2025-10-03\","                 \
    "\"time\":\"19:30:00\",\"venue\":\"State Opera\",\"hall\":\"Main Hall\","                   \
    "\"capacity\":1250,\"city\":\"Berlin\"}"
#define CU_BASE "{\"customer_id\":\"C-9988\",\"email\":\"jane.doe@example.com\"}"
#define SA_BASE                                                                                 \
    "{\"invoice_number\":\"A1234\",\"event_id\":\"EVT-12345\",\"customer_id\":\"C-9988\","      \
    "\"purchase_datetime\":\"2025-04-15T11:08:42Z\",\"ticket_category\":\"regular\","           \
    "\"quantity\":2,\"sales_price\":\"89.00\",\"currency\":\"EUR\"}"

#define MAX_EXPECT 20

struct rec_case {
    enum sd_kind kind;
    const char *patch; /* JSON object merged into the base record; "<del>" removes a key */
    const char *errors[MAX_EXPECT];
    const char *warnings[MAX_EXPECT];
};

static json_t *load(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!v) {
        fail_msg("bad test json: %s (%s)", text, jerr.text);
    }
    return v;
}

static json_t *patched(enum sd_kind kind, const char *patch)
{
    json_t *rec = load(kind == SD_KIND_EVENT ? EV_BASE : kind == SD_KIND_CUSTOMER ? CU_BASE
                                                                                   : SA_BASE);
    if (!patch) {
        return rec;
    }
    json_t *p = load(patch);
    if (!json_is_object(p)) {
        json_decref(rec);
        return p; /* whole record replaced (non-object cases) */
    }
    const char *key;
    json_t *v;
    json_object_foreach(p, key, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), "<del>") == 0) {
            json_object_del(rec, key);
        } else {
            json_object_set(rec, key, v);
        }
    }
    json_decref(p);
    return rec;
}

/* Every expected "pointer|fragment" matches one issue, and there are no others. */
static void expect_issues(size_t case_no, const char *what, const struct sd_issues *got,
                          const char *const *want)
{
    size_t n_want = 0;
    bool used[SD_MAX_ISSUES] = {false};
    for (; n_want < MAX_EXPECT && want[n_want]; n_want++) {
        const char *bar = strchr(want[n_want], '|');
        size_t plen = (size_t)(bar - want[n_want]);
        bool found = false;
        for (size_t k = 0; k < got->n && !found; k++) {
            if (!used[k] && strlen(got->items[k].pointer) == plen &&
                strncmp(got->items[k].pointer, want[n_want], plen) == 0 &&
                strstr(got->items[k].message, bar + 1)) {
                used[k] = found = true;
            }
        }
        if (!found) {
            for (size_t k = 0; k < got->n; k++) {
                print_message("  got %s: '%s' %s\n", what, got->items[k].pointer,
                              got->items[k].message);
            }
            fail_msg("case %zu: %s '%s' not found", case_no, what, want[n_want]);
        }
    }
    if (got->total != n_want) {
        for (size_t k = 0; k < got->n; k++) {
            print_message("  got %s: '%s' %s\n", what, got->items[k].pointer,
                          got->items[k].message);
        }
        fail_msg("case %zu: %zu %s, expected %zu", case_no, got->total, what, n_want);
    }
}

static int run_record(enum sd_kind kind, const json_t *rec, const char *ptr,
                      struct sd_issues *errors, struct sd_issues *warnings)
{
    int rc;
    if (kind == SD_KIND_EVENT) {
        struct sd_event_rec r = {0};
        rc = sd_validate_event(rec, ptr, &r, errors, warnings);
        sd_event_rec_release(&r);
    } else if (kind == SD_KIND_CUSTOMER) {
        struct sd_customer_rec r = {0};
        rc = sd_validate_customer(rec, ptr, &r, errors, warnings);
        sd_customer_rec_release(&r);
    } else {
        struct sd_sale_rec r = {0};
        rc = sd_validate_sale(rec, ptr, &r, errors, warnings);
        sd_sale_rec_release(&r);
    }
    return rc;
}

#define E SD_KIND_EVENT
#define C SD_KIND_CUSTOMER
#define S SD_KIND_SALE

static const struct rec_case rec_cases[] = {
    /* ---- valid bases and accepted variants ---- */
    {E, NULL, {NULL}, {NULL}},
    {C, NULL, {NULL}, {NULL}},
    {S, NULL, {NULL}, {NULL}},
    {E, "{\"capacity\":0}", {NULL}, {NULL}},
    {E, "{\"date\":\"2024-02-29\",\"time\":\"23:59:59\"}", {NULL}, {NULL}},
    {E, "{\"time\":\"00:00:00\"}", {NULL}, {NULL}},
    {E, "{\"work_title\":\"Otello\",\"composer\":\"Verdi\",\"cast\":[{\"name\":\"A\","
        "\"role\":\"Otello\"},{\"name\":\"B\"}]}",
     {NULL}, {NULL}},
    {E, "{\"cast\":[]}", {NULL}, {NULL}},
    {E, "{\"genre\":\"opera\"}", {NULL}, {"/x/genre|unknown field 'genre' kept"}},
    {E, "{\"a/b~c\":1}", {NULL}, {"/x/a~1b~0c|unknown field 'a/b~c' kept"}},
    {E, "{\"cast\":[{\"name\":\"A\",\"voice\":\"tenor\"}]}", {NULL},
     {"/x/cast/0/voice|unknown field 'voice' kept"}},
    {C, "{\"salutation\":\"Ms\",\"first_name\":\"Jane\",\"last_name\":\"Doe\","
        "\"street\":\"Main St 12A\",\"post_code\":\"10115\",\"ad_opt_out\":true}",
     {NULL}, {NULL}},
    {C, "{\"ad_opt_out\":false}", {NULL}, {NULL}},
    {C, "{\"first_name\":null,\"street\":null}", {NULL}, {NULL}},
    {C, "{\"source\":\"crm\"}", {NULL}, {"/x/source|set by the hub"}},
    {C, "{\"email\":null}", {"/x/email|must be a string"}, {NULL}},
    {C, "{\"ad_opt_out\":null}", {"/x/ad_opt_out|must be true or false"}, {NULL}},
    {C, "{\"email\":\"  Jane.Doe@Example.com \"}", {NULL}, {NULL}},
    {C, "{\"customer_id\":\"anon\"}", {NULL}, {NULL}},
    {S, "{\"customer_id\":\"ANON\"}", {NULL}, {NULL}},
    {S, "{\"quantity\":1}", {NULL}, {NULL}},
    {S, "{\"ticket_category\":\"VIP\"}", {NULL}, {NULL}},
    {S, "{\"ticket_category\":\"subscription\"}", {NULL}, {NULL}},
    {S, "{\"ticket_category\":\"comp\",\"sales_price\":0}", {NULL}, {NULL}},
    {S, "{\"sales_price\":89.5,\"base_price\":75}", {NULL}, {NULL}},
    {S, "{\"sales_price\":\"89.000\"}", {NULL}, {NULL}},
    {S, "{\"currency\":\"JPY\",\"sales_price\":\"12000\"}", {NULL}, {NULL}},
    {S, "{\"currency\":\"BHD\",\"sales_price\":\"1.234\"}", {NULL}, {NULL}},
    {S, "{\"purchase_datetime\":\"2025-04-15T13:08:42.5+02:00\"}", {NULL}, {NULL}},
    {S, "{\"extra\":{\"deep\":[1,\"x\",{\"y\":null}]}}", {NULL},
     {"/x/extra|unknown field 'extra' kept"}},

    /* ---- not an object ---- */
    {E, "[1]", {"/x|must be an object"}, {NULL}},
    {C, "\"x\"", {"/x|must be an object"}, {NULL}},
    {S, "null", {"/x|must be an object"}, {NULL}},

    /* ---- event fields ---- */
    {E, "{\"event_id\":\"<del>\"}", {"/x/event_id|required field is missing"}, {NULL}},
    {E, "{\"event_id\":12345}", {"/x/event_id|must be a string"}, {NULL}},
    {E, "{\"event_id\":null}", {"/x/event_id|must be a string"}, {NULL}},
    {E, "{\"event_id\":\"\"}", {"/x/event_id|must not be empty"}, {NULL}},
    {E, "{\"title\":\" \\t\\n\"}", {"/x/title|must not be empty"}, {NULL}},
    {E, "{\"title\":\"\\u3000\"}", {"/x/title|must not be empty"}, {NULL}},
    {E, "{\"title\":\"a\\u0000b\"}", {"/x/title|valid UTF-8 without NUL"}, {NULL}},
    {E, "{\"venue\":\"<del>\",\"hall\":\"<del>\",\"city\":\"<del>\",\"title\":\"<del>\"}",
     {"/x/venue|required field is missing", "/x/hall|required field is missing",
      "/x/city|required field is missing", "/x/title|required field is missing"},
     {NULL}},
    {E, "{\"date\":\"2025-02-29\"}", {"/x/date|must be a real calendar date YYYY-MM-DD"}, {NULL}},
    {E, "{\"date\":\"2025-10-3\"}", {"/x/date|must be a real calendar date YYYY-MM-DD"}, {NULL}},
    {E, "{\"date\":\"\"}", {"/x/date|must be a real calendar date YYYY-MM-DD"}, {NULL}},
    {E, "{\"date\":20251003}", {"/x/date|must be a string"}, {NULL}},
    {E, "{\"time\":\"24:00:00\"}", {"/x/time|must be a time HH:MM:SS"}, {NULL}},
    {E, "{\"time\":\"19:30\"}", {"/x/time|must be a time HH:MM:SS"}, {NULL}},
    {E, "{\"capacity\":-1}", {"/x/capacity|must be 0 or more"}, {NULL}},
    {E, "{\"capacity\":1250.0}", {"/x/capacity|must be an integer"}, {NULL}},
    {E, "{\"capacity\":\"1250\"}", {"/x/capacity|must be an integer"}, {NULL}},
    {E, "{\"capacity\":null}", {"/x/capacity|must be an integer"}, {NULL}},
    {E, "{\"capacity\":\"<del>\"}", {"/x/capacity|required field is missing"}, {NULL}},
    /* null clears an optional field of a stored event (the store merges updates) */
    {E, "{\"work_title\":null,\"composer\":5}",
     {"/x/composer|must be a string or absent (null clears it)"}, {NULL}},
    {E, "{\"title\":null}", {"/x/title|must be a string"}, {NULL}},
    {E, "{\"cast\":{}}", {"/x/cast|must be an array or absent"}, {NULL}},
    {E, "{\"cast\":null}", {"/x/cast|must be an array or absent"}, {NULL}},
    {E, "{\"cast\":[\"A\",{\"role\":\"X\"},{\"name\":\"\"},{\"name\":1,\"role\":2}]}",
     {"/x/cast/0|must be an object", "/x/cast/1/name|required field is missing",
      "/x/cast/2/name|must not be empty", "/x/cast/3/name|must be a string",
      "/x/cast/3/role|must be a string or absent"},
     {NULL}},
    {E, "{\"notes\":[\"ok\",{\"k\":\"a\\u0000\"}]}", {"/x/notes/1/k|valid UTF-8 without NUL"},
     {"/x/notes|unknown field 'notes' kept"}},
    {E, "{\"event_id\":\"\",\"date\":\"x\",\"time\":\"y\",\"capacity\":-5,\"z\":1}",
     {"/x/event_id|must not be empty", "/x/date|real calendar date", "/x/time|HH:MM:SS",
      "/x/capacity|0 or more"},
     {"/x/z|unknown field 'z' kept"}},

    /* ---- customer fields ---- */
    {C, "{\"customer_id\":\"ANON\"}", {"/x/customer_id|reserved for anonymous sales"}, {NULL}},
    {C, "{\"customer_id\":\"<del>\"}", {"/x/customer_id|required field is missing"}, {NULL}},
    {C, "{\"email\":\"<del>\"}", {"/x/email|required field is missing"}, {NULL}},
    {C, "{\"email\":\"jane\"}", {"/x/email|must be a valid e-mail address"}, {NULL}},
    {C, "{\"email\":\"ja ne@example.com\"}", {"/x/email|must be a valid e-mail address"}, {NULL}},
    {C, "{\"email\":\"\"}", {"/x/email|must not be empty"}, {NULL}},
    {C, "{\"email\":[]}", {"/x/email|must be a string"}, {NULL}},
    {C, "{\"ad_opt_out\":null}", {"/x/ad_opt_out|must be true or false"}, {NULL}},
    {C, "{\"ad_opt_out\":\"true\"}", {"/x/ad_opt_out|must be true or false"}, {NULL}},
    {C, "{\"ad_opt_out\":0}", {"/x/ad_opt_out|must be true or false"}, {NULL}},
    {C, "{\"salutation\":true,\"first_name\":1,\"last_name\":{},\"street\":[],"
        "\"post_code\":10115}",
     {"/x/salutation|string or absent", "/x/first_name|string or absent",
      "/x/last_name|string or absent", "/x/street|string or absent",
      "/x/post_code|string or absent"},
     {NULL}},

    /* ---- sale fields ---- */
    {S, "{\"invoice_number\":\"<del>\",\"event_id\":\"\",\"customer_id\":null}",
     {"/x/invoice_number|required field is missing", "/x/event_id|must not be empty",
      "/x/customer_id|must be a string"},
     {NULL}},
    {S, "{\"purchase_datetime\":\"2025-04-15 11:08:42\"}", {"/x/purchase_datetime|RFC 3339"},
     {NULL}},
    {S, "{\"purchase_datetime\":\"2025-02-30T11:08:42Z\"}", {"/x/purchase_datetime|RFC 3339"},
     {NULL}},
    {S, "{\"purchase_datetime\":\"2025-04-15T11:08:42\"}", {"/x/purchase_datetime|RFC 3339"},
     {NULL}},
    {S, "{\"purchase_datetime\":1744715322}", {"/x/purchase_datetime|must be a string"},
     {NULL}},
    {S, "{\"ticket_category\":\"vip\"}", {"/x/ticket_category|must be one of regular, VIP"},
     {NULL}},
    {S, "{\"ticket_category\":\"Regular\"}", {"/x/ticket_category|must be one of"}, {NULL}},
    {S, "{\"ticket_category\":\"\"}", {"/x/ticket_category|must be one of"}, {NULL}},
    {S, "{\"quantity\":0}", {"/x/quantity|must be 1 or more"}, {NULL}},
    {S, "{\"quantity\":2.0}", {"/x/quantity|must be an integer"}, {NULL}},
    {S, "{\"quantity\":\"2\"}", {"/x/quantity|must be an integer"}, {NULL}},
    {S, "{\"currency\":\"eur\"}", {"/x/currency|must be an uppercase ISO 4217 code"}, {NULL}},
    {S, "{\"currency\":\"Eur\"}", {"/x/currency|must be an uppercase ISO 4217 code"}, {NULL}},
    {S, "{\"currency\":\"DEM\"}", {"/x/currency|active ISO 4217"}, {NULL}},
    {S, "{\"currency\":\"HRK\"}", {"/x/currency|active ISO 4217"}, {NULL}},
    {S, "{\"currency\":\"EURO\"}", {"/x/currency|active ISO 4217"}, {NULL}},
    {S, "{\"currency\":null}", {"/x/currency|must be a string"}, {NULL}},
    {S, "{\"currency\":\"<del>\"}", {"/x/currency|required field is missing"}, {NULL}},
    /* invalid currency: decimal places cannot be judged, only the currency is reported */
    {S, "{\"currency\":\"eur\",\"sales_price\":\"89.123\",\"base_price\":\"1.23456\"}",
     {"/x/currency|uppercase"}, {NULL}},
    /* …but other price problems still are */
    {S, "{\"currency\":\"XXX\",\"sales_price\":\"-1\"}",
     {"/x/currency|active ISO 4217", "/x/sales_price|negative"}, {NULL}},
    {S, "{\"sales_price\":\"89.001\"}", {"/x/sales_price|at most 2 decimal places"}, {NULL}},
    {S, "{\"currency\":\"JPY\",\"sales_price\":\"1.5\"}", {"/x/sales_price|whole amount"},
     {NULL}},
    {S, "{\"currency\":\"KWD\",\"sales_price\":\"1.0001\"}", {"/x/sales_price|at most 3"},
     {NULL}},
    {S, "{\"sales_price\":\"8.9e1\"}", {"/x/sales_price|exponent"}, {NULL}},
    {S, "{\"sales_price\":\"89,00\"}", {"/x/sales_price|plain decimal"}, {NULL}},
    {S, "{\"sales_price\":-0.01}", {"/x/sales_price|negative"}, {NULL}},
    {S, "{\"sales_price\":0.1234567890123456}", {"/x/sales_price|too many digits"}, {NULL}},
    {S, "{\"sales_price\":null}", {"/x/sales_price|must be a number or a numeric string"},
     {NULL}},
    {S, "{\"sales_price\":\"<del>\"}", {"/x/sales_price|required field is missing"}, {NULL}},
    {S, "{\"base_price\":null}", {"/x/base_price|numeric string or absent"}, {NULL}},
    {S, "{\"base_price\":\"75.005\"}", {"/x/base_price|at most 2"}, {NULL}},
    {S, "{\"sales_price\":\"92233720368547758.08\"}", {"/x/sales_price|too large"}, {NULL}},
    {S, "{\"sales_price\":\"92233720368547758.07\",\"quantity\":1}", {NULL}, {NULL}},
    {S, "{\"sales_price\":\"46116860184273879.04\",\"quantity\":2}",
     {"/x/sales_price|quantity × sales_price does not fit"}, {NULL}},
    {S, "{}", {NULL}, {NULL}},
};

static void test_record_cases(void **state)
{
    for (size_t i = 0; i < sizeof(rec_cases) / sizeof(*rec_cases); i++) {
        const struct rec_case *tc = &rec_cases[i];
        json_t *rec = patched(tc->kind, tc->patch);
        struct sd_issues errors, warnings;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        sd_issues_init(&warnings, SD_MAX_ISSUES);
        int rc = run_record(tc->kind, rec, "/x", &errors, &warnings);
        expect_issues(i, "errors", &errors, tc->errors);
        expect_issues(i, "warnings", &warnings, tc->warnings);
        if (rc != (tc->errors[0] ? -EINVAL : 0)) {
            fail_msg("case %zu: rc %d", i, rc);
        }
        sd_issues_release(&errors);
        sd_issues_release(&warnings);
        json_decref(rec);
    }
}

/* Invalid UTF-8 cannot come out of jansson's parser; build such values by hand. */
static void test_invalid_utf8_built(void **state)
{
    json_t *rec = patched(SD_KIND_EVENT, NULL);
    json_object_set_new(rec, "title", json_stringn_nocheck("bad\xff", 4));
    json_object_set_new_nocheck(rec, "k\xfe/y", json_string("v"));
    json_object_setn_new_nocheck(rec, "n\0ul", 4, json_string("v"));
    struct sd_issues errors, warnings;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    sd_issues_init(&warnings, SD_MAX_ISSUES);
    struct sd_event_rec r = {0};
    assert_int_equal(sd_validate_event(rec, "/events/0", &r, &errors, &warnings), -EINVAL);
    const char *want[] = {"/events/0/title|valid UTF-8",
                          "/events/0/k\xef\xbf\xbd~1y|field name must be valid UTF-8",
                          "/events/0/n\xef\xbf\xbdul|field name must be valid UTF-8", NULL};
    expect_issues(0, "errors", &errors, want);
    assert_null(r.doc);
    /* every pointer and message is valid UTF-8, so the answer can be encoded */
    json_t *arr = sd_issues_to_json(&errors);
    assert_int_equal(json_array_size(arr), 3);
    json_decref(arr);
    sd_issues_release(&errors);
    sd_issues_release(&warnings);
    json_decref(rec);
}

static void test_event_output(void **state)
{
    json_t *rec = patched(SD_KIND_EVENT,
                          "{\"venue\":\"  STATE   Opera \",\"hall\":\"Gro\\u00dfer  SAAL\","
                          "\"x\":[1,2.5,\"s\"],\"cast\":[{\"name\":\"A\"}]}");
    struct sd_issues errors, warnings;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    sd_issues_init(&warnings, SD_MAX_ISSUES);
    struct sd_event_rec r;
    assert_int_equal(sd_validate_event(rec, "/events/0", &r, &errors, &warnings), 0);
    assert_string_equal(r.event_id, "EVT-12345");
    assert_string_equal(r.dup_key, "2025-10-03|19:30:00|state opera|gro\xc3\x9f" "er saal");
    json_t *doc = load(r.doc);
    assert_true(json_equal(doc, rec)); /* event fields are kept as sent */
    assert_null(strchr(r.doc, '\n'));
    assert_null(strstr(r.doc, ": "));
    json_decref(doc);
    sd_event_rec_release(&r);
    sd_event_rec_release(&r); /* idempotent */
    sd_event_rec_release(NULL);
    sd_issues_release(&errors);
    sd_issues_release(&warnings);
    json_decref(rec);
}

static void test_customer_output(void **state)
{
    static const struct {
        const char *patch;
        const char *email_key;
        int opt_out;
    } cases[] = {
        {"{}", "jane.doe@example.com", -1},
        {"{\"email\":\" Jane.DOE@Example.COM\\t\",\"ad_opt_out\":true}",
         "jane.doe@example.com", 1},
        {"{\"email\":\"\\u00c4nne@B\\u00dcHNE.de\",\"ad_opt_out\":false}",
         "\xc3\xa4nne@b\xc3\xbchne.de", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        json_t *rec = patched(SD_KIND_CUSTOMER, cases[i].patch);
        struct sd_issues errors, warnings;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        sd_issues_init(&warnings, SD_MAX_ISSUES);
        struct sd_customer_rec r;
        assert_int_equal(sd_validate_customer(rec, "/customers/0", &r, &errors, &warnings), 0);
        assert_string_equal(r.customer_id, "C-9988");
        assert_string_equal(r.email_key, cases[i].email_key);
        assert_int_equal(r.ad_opt_out, cases[i].opt_out);
        json_t *doc = load(r.doc);
        assert_true(json_equal(doc, rec)); /* e-mail kept as sent */
        json_decref(doc);
        sd_customer_rec_release(&r);
        sd_issues_release(&errors);
        sd_issues_release(&warnings);
        json_decref(rec);
    }
}

/* SD_VALIDATE_EMAIL_OPTIONAL (a vendor whose people need not have an address): no e-mail, or
 * null, is admitted with no e-mail key; an address that is sent is still checked. Without the
 * flag (the hub's own contract) the same records are refused with the precise message. */
static void test_customer_email_optional(void **state)
{
    (void)state;
    static const struct {
        const char *patch;
        const char *strict;   /* error message without the flag */
        const char *optional; /* with it; NULL: admitted */
        const char *email_key;
    } cases[] = {
        {"{\"email\":\"<del>\"}", "required field is missing", NULL, NULL},
        {"{\"email\":null}", "must be a string", NULL, NULL},
        {"{\"email\":\"\"}", "must not be empty", "must not be empty", NULL},
        {"{\"email\":\"jane\"}", "must be a valid e-mail address", "must be a valid e-mail address",
         NULL},
        {"{\"email\":5}", "must be a string", "must be a string or absent (null clears it)", NULL},
        {"{\"email\":\" Jane@Example.com\"}", NULL, NULL, "jane@example.com"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        for (unsigned flags = 0; flags <= SD_VALIDATE_EMAIL_OPTIONAL;
             flags += SD_VALIDATE_EMAIL_OPTIONAL) {
            const char *want = flags ? cases[i].optional : cases[i].strict;
            json_t *rec = patched(SD_KIND_CUSTOMER, cases[i].patch);
            struct sd_issues errors, warnings;
            sd_issues_init(&errors, SD_MAX_ISSUES);
            sd_issues_init(&warnings, SD_MAX_ISSUES);
            struct sd_customer_rec r;
            int rc = sd_validate_customer_flags(rec, "/customers/0", flags, &r, &errors, &warnings);
            if (want) {
                assert_int_equal(rc, -EINVAL);
                assert_int_equal(errors.total, 1);
                assert_string_equal(errors.items[0].pointer, "/customers/0/email");
                assert_string_equal(errors.items[0].message, want);
            } else {
                assert_int_equal(rc, 0);
                assert_int_equal(errors.total, 0);
                assert_string_equal(r.customer_id, "C-9988");
                if (cases[i].email_key) {
                    assert_string_equal(r.email_key, cases[i].email_key);
                } else {
                    assert_null(r.email_key);
                }
                sd_customer_rec_release(&r);
            }
            sd_issues_release(&errors);
            sd_issues_release(&warnings);
            json_decref(rec);
        }
    }
    /* A whole body: the customer without e-mail and its sale; refused by the hub's contract. */
    json_t *body = load("{\"events\":[" EV_BASE "],\"customers\":[{\"customer_id\":\"C-9988\","
                        "\"first_name\":\"Box\"}],\"sales\":[" SA_BASE "]}");
    struct sd_batch b = {0};
    struct sd_issues errors, warnings;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    sd_issues_init(&warnings, SD_MAX_ISSUES);
    assert_int_equal(sd_validate_ingest(body, &b, &errors, &warnings), -EINVAL);
    assert_int_equal(errors.total, 1);
    assert_string_equal(errors.items[0].pointer, "/customers/0/email");
    assert_string_equal(errors.items[0].message, "required field is missing");
    sd_issues_release(&errors);
    sd_issues_init(&errors, SD_MAX_ISSUES);
    assert_int_equal(
        sd_validate_ingest_flags(body, SD_VALIDATE_EMAIL_OPTIONAL, &b, &errors, &warnings), 0);
    assert_int_equal(b.n_customers, 1);
    assert_null(b.customers[0].email_key);
    assert_int_equal(b.n_sales, 1);
    sd_batch_release(&b);
    /* the checkable records of a refused body: the customer counts only under the flag */
    assert_int_equal(sd_validate_ingest_checkable_flags(body, SD_VALIDATE_EMAIL_OPTIONAL, &b), 1);
    assert_int_equal(b.n_customers, 1);
    sd_batch_release(&b);
    assert_int_equal(sd_validate_ingest_checkable(body, &b), 0);
    sd_batch_release(&b);
    sd_issues_release(&errors);
    sd_issues_release(&warnings);
    json_decref(body);
}

static void test_sale_output(void **state)
{
    static const struct {
        const char *patch;
        const char *utc;
        int64_t minor;
        const char *sales_price, *base_price; /* in doc; base NULL: absent */
        const char *currency;
    } cases[] = {
        {"{}", "2025-04-15T11:08:42Z", 8900, "89.00", NULL, "EUR"},
        {"{\"sales_price\":89,\"base_price\":75.5}", "2025-04-15T11:08:42Z", 8900, "89.00",
         "75.50", "EUR"},
        {"{\"sales_price\":89.1,\"purchase_datetime\":\"2025-04-15T13:08:42.250+02:00\"}",
         "2025-04-15T11:08:42.250Z", 8910, "89.10", NULL, "EUR"},
        {"{\"sales_price\":\"12000.000\",\"currency\":\"JPY\"}", "2025-04-15T11:08:42Z", 12000,
         "12000", NULL, "JPY"},
        {"{\"sales_price\":\"1.5\",\"currency\":\"BHD\",\"base_price\":\"0\"}",
         "2025-04-15T11:08:42Z", 1500, "1.500", "0.000", "BHD"},
        {"{\"sales_price\":0.0001,\"currency\":\"CLF\"}", "2025-04-15T11:08:42Z", 1, "0.0001",
         NULL, "CLF"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        json_t *rec = patched(SD_KIND_SALE, cases[i].patch);
        json_object_set_new(rec, "note", json_string("kept"));
        struct sd_issues errors, warnings;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        sd_issues_init(&warnings, SD_MAX_ISSUES);
        struct sd_sale_rec r;
        assert_int_equal(sd_validate_sale(rec, "/sales/0", &r, &errors, &warnings), 0);
        assert_int_equal(warnings.total, 1);
        assert_string_equal(r.invoice_number, "A1234");
        assert_string_equal(r.event_id, "EVT-12345");
        assert_string_equal(r.customer_id, "C-9988");
        assert_string_equal(r.purchase_datetime, cases[i].utc);
        assert_int_equal(r.sales_price_minor, cases[i].minor);
        assert_string_equal(r.currency, cases[i].currency);
        json_t *doc = load(r.doc);
        assert_string_equal(json_string_value(json_object_get(doc, "sales_price")),
                            cases[i].sales_price);
        if (cases[i].base_price) {
            assert_string_equal(json_string_value(json_object_get(doc, "base_price")),
                                cases[i].base_price);
        } else {
            assert_null(json_object_get(doc, "base_price"));
        }
        assert_string_equal(json_string_value(json_object_get(doc, "purchase_datetime")),
                            cases[i].utc);
        assert_string_equal(json_string_value(json_object_get(doc, "currency")),
                            cases[i].currency);
        assert_string_equal(json_string_value(json_object_get(doc, "note")), "kept");
        assert_int_equal(json_integer_value(json_object_get(doc, "quantity")), 2);
        json_decref(doc);
        sd_sale_rec_release(&r);
        sd_issues_release(&errors);
        sd_issues_release(&warnings);
        json_decref(rec);
    }
}

/* The stored document is byte for byte what json_dumps (compact, member order as sent) makes of
 * the record with its normalized values: the fields a case normalizes are taken from the
 * document, every other member from the record, and the expected text is dumped by jansson. The
 * extras cover escapes, non-ASCII text, nested values, numbers of every kind, and member names
 * that need escaping (which take another route through the validator). */
static void test_doc_bytes(void **state)
{
    (void)state;
    static const char *const extras[] = {
        "{}",
        "{\"note\":\"kept\"}",
        "{\"note\":\"quote \\\" backslash \\\\ slash / tab \\t nl \\n ctl \\u0001 del \\u007f\"}",
        "{\"note\":\"Gr\\u00fc\\u00dfe \\u2603 \\ud83c\\udfb5\",\"seat\":{\"row\":12,"
        "\"block\":[\"A\",null,true,false,1.5,-0.0,1e300,123456789012345]}}",
        "{\"r\":0.1,\"i\":-7,\"big\":9007199254740993,\"e\":[],\"o\":{},\"z\":\"\"}",
        "{\"\":\"empty name\",\"a b\":1,\"~/x\":2}",
        "{\"caf\\u00e9\":\"name not ASCII\"}",
        "{\"q\\\"uote\":1,\"back\\\\slash\":2,\"tab\\tname\":3}",
        "{\"note\":\"x\",\"sales_price\":89.5,\"base_price\":\"70\","
        "\"purchase_datetime\":\"2025-04-15T13:08:42+02:00\"}",
    };
    static const char *const normalized[] = {"sales_price", "base_price", "purchase_datetime"};
    for (size_t i = 0; i < sizeof(extras) / sizeof(*extras); i++) {
        json_t *rec = patched(SD_KIND_SALE, extras[i]);
        struct sd_issues errors, warnings;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        sd_issues_init(&warnings, SD_MAX_ISSUES);
        struct sd_sale_rec r;
        assert_int_equal(sd_validate_sale(rec, "/sales/0", &r, &errors, &warnings), 0);
        json_t *doc = load(r.doc);
        json_t *want = json_deep_copy(rec);
        for (size_t k = 0; k < sizeof(normalized) / sizeof(*normalized); k++) {
            json_t *v = json_object_get(doc, normalized[k]);
            if (v) {
                json_object_set(want, normalized[k], v);
            }
        }
        char *want_text = json_dumps(want, JSON_COMPACT | JSON_PRESERVE_ORDER);
        assert_non_null(want_text);
        if (strcmp(r.doc, want_text) != 0) {
            fail_msg("case %zu:\n got  %s\n want %s", i, r.doc, want_text);
        }
        free(want_text);
        json_decref(want);
        json_decref(doc);
        sd_sale_rec_release(&r);
        sd_issues_release(&errors);
        sd_issues_release(&warnings);
        json_decref(rec);
    }
    /* events and customers are kept as sent: the same rule */
    static const char *const ev_extras[] = {
        "{\"program\":{\"conductor\":\"Muti\",\"acts\":4},\"note\":\"\\u00e9\\\"\"}",
        "{\"na\\u00efve key\":[1,2.25,\"x\"]}",
    };
    for (size_t i = 0; i < sizeof(ev_extras) / sizeof(*ev_extras); i++) {
        json_t *rec = patched(SD_KIND_EVENT, ev_extras[i]);
        struct sd_issues errors, warnings;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        sd_issues_init(&warnings, SD_MAX_ISSUES);
        struct sd_event_rec r;
        assert_int_equal(sd_validate_event(rec, "/events/0", &r, &errors, &warnings), 0);
        char *want_text = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
        assert_string_equal(r.doc, want_text);
        free(want_text);
        sd_event_rec_release(&r);
        sd_issues_release(&errors);
        sd_issues_release(&warnings);
        json_decref(rec);
    }
}

/* ---- ingest body ---------------------------------------------------------------------------- */

struct body_case {
    const char *body;
    size_t n_events, n_customers, n_sales; /* on success */
    const char *errors[MAX_EXPECT];
    const char *warnings[MAX_EXPECT];
};

static const struct body_case body_cases[] = {
    {"{\"events\":[" EV_BASE "]}", 1, 0, 0, {NULL}, {NULL}},
    {"{\"customers\":[" CU_BASE "," CU_BASE "]}", 0, 2, 0, {NULL}, {NULL}},
    {"{\"sales\":[" SA_BASE "],\"events\":[" EV_BASE "],\"customers\":[" CU_BASE "]}", 1, 1, 1,
     {NULL}, {NULL}},
    {"{\"events\":[],\"sales\":[" SA_BASE "]}", 0, 0, 1, {NULL}, {NULL}},
    {"{}", 0, 0, 0, {"|no records"}, {NULL}},
    {"{\"events\":[],\"customers\":[],\"sales\":[]}", 0, 0, 0, {"|no records"}, {NULL}},
    {"[]", 0, 0, 0, {"|must be a JSON object"}, {NULL}},
    {"\"events\"", 0, 0, 0, {"|must be a JSON object"}, {NULL}},
    {"{\"event\":[" EV_BASE "]}", 0, 0, 0, {"/event|unknown top-level member", "|no records"},
     {NULL}},
    {"{\"events\":[" EV_BASE "],\"x/y\":1}", 0, 0, 0, {"/x~1y|unknown top-level member"},
     {NULL}},
    {"{\"events\":{},\"sales\":[" SA_BASE "]}", 0, 0, 0, {"/events|must be an array"}, {NULL}},
    {"{\"events\":null,\"customers\":\"x\"}", 0, 0, 0,
     {"/events|must be an array", "/customers|must be an array", "|no records"}, {NULL}},
    {"{\"events\":[1," EV_BASE ",[]]}", 0, 0, 0,
     {"/events/0|must be an object", "/events/2|must be an object"}, {NULL}},
    /* every record is checked, errors from all of them are collected */
    {"{\"events\":[{\"event_id\":\"E\"}],\"customers\":[{\"customer_id\":\"ANON\","
     "\"email\":\"x@y.z\",\"w\":1}],\"sales\":[{\"quantity\":0}]}",
     0, 0, 0,
     {"/events/0/title|missing", "/events/0/date|missing", "/events/0/time|missing",
      "/events/0/venue|missing", "/events/0/hall|missing", "/events/0/capacity|missing",
      "/events/0/city|missing", "/customers/0/customer_id|reserved",
      "/sales/0/invoice_number|missing", "/sales/0/event_id|missing",
      "/sales/0/customer_id|missing", "/sales/0/purchase_datetime|missing",
      "/sales/0/ticket_category|missing", "/sales/0/quantity|1 or more",
      "/sales/0/currency|missing", "/sales/0/sales_price|missing"},
     {"/customers/0/w|unknown field 'w' kept"}},
    /* duplicate invoice numbers: error on each later one, pointing at the first */
    {"{\"sales\":[" SA_BASE "," SA_BASE "]}", 0, 0, 0,
     {"/sales/1/invoice_number|duplicate invoice_number in this request (first used at "
      "/sales/0)"},
     {NULL}},
    {"{\"sales\":[" SA_BASE ",{\"invoice_number\":\"B\"}," SA_BASE "," SA_BASE "]}", 0, 0, 0,
     {"/sales/1/event_id|missing", "/sales/1/customer_id|missing",
      "/sales/1/purchase_datetime|missing", "/sales/1/ticket_category|missing",
      "/sales/1/quantity|missing", "/sales/1/sales_price|missing",
      "/sales/1/currency|missing", "/sales/2/invoice_number|/sales/0)",
      "/sales/3/invoice_number|/sales/0)"},
     {NULL}},
};

static void test_body_cases(void **state)
{
    for (size_t i = 0; i < sizeof(body_cases) / sizeof(*body_cases); i++) {
        const struct body_case *tc = &body_cases[i];
        json_t *body = load(tc->body);
        struct sd_issues errors, warnings;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        sd_issues_init(&warnings, SD_MAX_ISSUES);
        struct sd_batch b = {0};
        int rc = sd_validate_ingest(body, &b, &errors, &warnings);
        expect_issues(i, "errors", &errors, tc->errors);
        expect_issues(i, "warnings", &warnings, tc->warnings);
        if (tc->errors[0]) {
            assert_int_equal(rc, -EINVAL);
            assert_int_equal(sd_batch_count(&b), 0);
            assert_null(b.events);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(b.n_events, tc->n_events);
            assert_int_equal(b.n_customers, tc->n_customers);
            assert_int_equal(b.n_sales, tc->n_sales);
            assert_int_equal(sd_batch_count(&b), tc->n_events + tc->n_customers + tc->n_sales);
        }
        sd_batch_release(&b);
        sd_issues_release(&errors);
        sd_issues_release(&warnings);
        json_decref(body);
    }
}

static void test_second_in_sequence(void **state)
{
    /* Records keep request order and their array index; a fourth duplicate points at the
     * first, and the later errors were the only ones. Error issues collected before the call
     * are not mistaken for the request's own. */
    json_t *body = load("{\"sales\":[{\"invoice_number\":\"I-2\",\"event_id\":\"E\","
                        "\"customer_id\":\"ANON\",\"purchase_datetime\":\"2025-04-15T11:08:42Z\","
                        "\"ticket_category\":\"comp\",\"quantity\":1,\"sales_price\":0,"
                        "\"currency\":\"EUR\"}," SA_BASE "],\"events\":[" EV_BASE "," EV_BASE
                        "]}");
    struct sd_issues errors, warnings;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    sd_issues_init(&warnings, SD_MAX_ISSUES);
    struct sd_batch b;
    assert_int_equal(sd_validate_ingest(body, &b, &errors, &warnings), 0);
    assert_int_equal(b.n_sales, 2);
    assert_int_equal(b.n_events, 2); /* same event twice: for the store to decide */
    assert_int_equal(b.sales[0].index, 0);
    assert_int_equal(b.sales[1].index, 1);
    assert_string_equal(b.sales[0].invoice_number, "I-2");
    assert_string_equal(b.sales[0].customer_id, SD_ANON_CUSTOMER);
    assert_string_equal(b.sales[1].invoice_number, "A1234");
    assert_int_equal(b.events[1].index, 1);
    sd_batch_release(&b);
    assert_int_equal(sd_batch_count(&b), 0);
    sd_batch_release(&b);
    sd_batch_release(NULL);
    assert_int_equal(sd_batch_count(NULL), 0);
    sd_issues_release(&errors);
    sd_issues_release(&warnings);
    json_decref(body);
}

static void test_many_errors_capped(void **state)
{
    /* 300 bad records: the list stops at the cap but counts them all, and nothing leaks. */
    json_t *arr = json_array();
    for (int i = 0; i < 300; i++) {
        json_array_append_new(arr, json_pack("{s:i}", "quantity", 0));
    }
    json_t *body = json_pack("{s:o}", "sales", arr);
    struct sd_issues errors, warnings;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    sd_issues_init(&warnings, SD_MAX_ISSUES);
    struct sd_batch b = {0};
    assert_int_equal(sd_validate_ingest(body, &b, &errors, &warnings), -EINVAL);
    assert_int_equal(errors.n, SD_MAX_ISSUES);
    assert_int_equal(errors.total, 300 * 8);
    sd_issues_release(&errors);
    sd_issues_release(&warnings);
    json_decref(body);
}

static void test_null_body(void **state)
{
    struct sd_issues errors, warnings;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    sd_issues_init(&warnings, SD_MAX_ISSUES);
    struct sd_batch b = {0};
    assert_int_equal(sd_validate_ingest(NULL, &b, &errors, &warnings), -EINVAL);
    assert_int_equal(errors.total, 1);
    struct sd_sale_rec s = {0};
    assert_int_equal(sd_validate_sale(NULL, NULL, &s, &errors, &warnings), -EINVAL);
    assert_string_equal(errors.items[1].pointer, "");
    sd_issues_release(&errors);
    sd_issues_release(&warnings);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_cases),
        cmocka_unit_test(test_invalid_utf8_built),
        cmocka_unit_test(test_event_output),
        cmocka_unit_test(test_customer_output),
        cmocka_unit_test(test_customer_email_optional),
        cmocka_unit_test(test_sale_output),
        cmocka_unit_test(test_body_cases),
        cmocka_unit_test(test_doc_bytes),
        cmocka_unit_test(test_second_in_sequence),
        cmocka_unit_test(test_many_errors_capped),
        cmocka_unit_test(test_null_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
