/* test_mapping.c — connector field mappings: the spec check (pointers and messages of what is
 * refused at save time), each conversion on both sides of its boundaries (table-driven: one
 * source column mapped to one model field), values maps, constants, kind filtering, unmapped
 * keep/drop, source priority, the JSON object path, the normalized form, the model field table
 * against the validators, an end-to-end German export through sd_validate_event/sale, and a
 * rough rows/s figure for a 9-column sales row. */
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
#include "mapping/mapping.h"
#include "mapping/mapping_internal.h"

#define E SD_KIND_EVENT
#define C SD_KIND_CUSTOMER
#define S SD_KIND_SALE

static json_t *load(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!v) {
        fail_msg("bad test json: %s (%s)", text, jerr.text);
    }
    return v;
}

static void print_issues(const struct sd_issues *l)
{
    for (size_t k = 0; k < l->n; k++) {
        print_message("  issue '%s': %s\n", l->items[k].pointer, l->items[k].message);
    }
}

static struct sd_mapping *mapping(const char *spec_text)
{
    json_t *spec = spec_text ? load(spec_text) : NULL;
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    struct sd_mapping *m = NULL;
    int rc = sd_mapping_new(spec, &m, &errors);
    if (rc != 0) {
        print_issues(&errors);
        fail_msg("spec refused: %s", spec_text);
    }
    assert_non_null(m);
    assert_int_equal(errors.total, 0);
    sd_issues_release(&errors);
    json_decref(spec);
    return m;
}

/* Apply a row given as "Name=value" strings. */
static json_t *apply_pairs(const struct sd_mapping *m, enum sd_kind kind, const char *const *pairs,
                           const char *ptr, struct sd_issues *errors)
{
    const char *names[64] = {NULL}, *values[64] = {NULL};
    char *own[64] = {NULL};
    size_t n = 0;
    for (; pairs[n]; n++) {
        own[n] = sd_strdup(pairs[n]);
        char *eq = strchr(own[n], '=');
        assert_non_null(eq);
        *eq = '\0';
        names[n] = own[n];
        values[n] = eq + 1;
    }
    json_t *out = sd_mapping_apply_row(m, kind, names, values, n, ptr, errors);
    for (size_t i = 0; i < n; i++) {
        free(own[i]);
    }
    return out;
}

static void assert_json(const json_t *got, const char *want_text)
{
    json_t *want = load(want_text);
    if (!json_equal(got, want)) {
        char *g = got ? json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        fail_msg("got %s, want %s", g ? g : "(null)", want_text);
    }
    json_decref(want);
}

/* ---- the seed's cheat-sheet shorthand ------------------------------------------------------ */

static void test_shorthand_cheat_sheet(void **state)
{
    struct sd_mapping *m =
        mapping("{\"EventNo\":\"event_id\",\"EventDate\":\"date\",\"EventTime\":\"time\","
                "\"TicketType\":\"ticket_category\",\"PriceGross\":\"sales_price\"}");
    json_t *norm = sd_mapping_to_json(m);
    assert_json(norm, "{\"fields\":{\"EventNo\":\"event_id\",\"EventDate\":\"date\","
                      "\"EventTime\":\"time\",\"TicketType\":\"ticket_category\","
                      "\"PriceGross\":\"sales_price\"},\"values\":{},\"constants\":{},"
                      "\"formats\":{},\"unmapped\":\"keep\"}");
    json_decref(norm);
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    static const char *const row[] = {"EventNo=EVT-1",    "EventDate=2025-10-03",
                                      "EventTime=19:30",  "TicketType=regular",
                                      "PriceGross=89.00", NULL};
    json_t *ev = apply_pairs(m, E, row, "/line/2", &errors);
    assert_json(ev, "{\"event_id\":\"EVT-1\",\"date\":\"2025-10-03\",\"time\":\"19:30:00\"}");
    json_t *sa = apply_pairs(m, S, row, "/line/2", &errors);
    assert_json(sa, "{\"event_id\":\"EVT-1\",\"ticket_category\":\"regular\","
                    "\"sales_price\":\"89.00\"}");
    json_t *cu = apply_pairs(m, C, row, "/line/2", &errors);
    assert_json(cu, "{}");
    assert_int_equal(errors.total, 0);
    json_decref(ev);
    json_decref(sa);
    json_decref(cu);
    sd_issues_release(&errors);
    sd_mapping_free(m);
}

/* ---- conversions --------------------------------------------------------------------------- */

struct conv_case {
    enum sd_kind kind;
    const char *formats; /* the spec's "formats" member, or NULL */
    const char *field;   /* model field the column "Src" maps to */
    const char *value;   /* the cell */
    const char *want;    /* JSON of the field; NULL: absent; "!fragment": conversion error */
};

#define DE                                                                                         \
    "{\"date\":\"DD.MM.YYYY\",\"time\":\"HH:mm\",\"datetime\":\"DD.MM.YYYY HH:mm:ss\","            \
    "\"utc_offset\":\"+01:00\",\"decimal_comma\":true}"
#define US "{\"decimal_comma\":false}"

static const struct conv_case conv_cases[] = {
    /* strings: trimmed, empty → absent */
    {E, NULL, "title", "  Otello \t", "\"Otello\""},
    {E, NULL, "title", "\xc2\xa0Otello\xc2\xa0", "\"Otello\""},
    {E, NULL, "title", "Ot ello", "\"Ot ello\""},
    {E, NULL, "title", "", NULL},
    {E, NULL, "title", " \t\r\n", NULL},
    {E, NULL, "title", "x", "\"x\""},
    {E, NULL, "title", "bad \xff utf8", "!value is not valid UTF-8 text"},
    /* integers: sign and digits only */
    {E, NULL, "capacity", "1250", "1250"},
    {E, NULL, "capacity", " 0 ", "0"},
    {E, NULL, "capacity", "+3", "3"},
    {E, NULL, "capacity", "-1", "-1"},
    {E, NULL, "capacity", "007", "7"},
    {E, NULL, "capacity", "1.250", "!'1.250' is not an integer"},
    {E, NULL, "capacity", "1,250", "!is not an integer (optional sign and digits only"},
    {E, NULL, "capacity", "2.0", "!is not an integer"},
    {E, NULL, "capacity", "12a", "!is not an integer"},
    {E, NULL, "capacity", "-", "!is not an integer"},
    {E, NULL, "capacity", "+-1", "!is not an integer"},
    {E, NULL, "capacity", "1 250", "!is not an integer"},
    {S, NULL, "quantity", "9223372036854775807", "9223372036854775807"},
    {S, NULL, "quantity", "9223372036854775808", "!is out of range"},
    {S, NULL, "quantity", "-9223372036854775808", "-9223372036854775808"},
    {S, NULL, "quantity", "-9223372036854775809", "!is out of range"},
    {S, NULL, "quantity", "", NULL},
    /* booleans */
    {C, NULL, "ad_opt_out", "true", "true"},
    {C, NULL, "ad_opt_out", "FALSE", "false"},
    {C, NULL, "ad_opt_out", "1", "true"},
    {C, NULL, "ad_opt_out", "0", "false"},
    {C, NULL, "ad_opt_out", "Yes", "true"},
    {C, NULL, "ad_opt_out", "no", "false"},
    {C, NULL, "ad_opt_out", "y", "true"},
    {C, NULL, "ad_opt_out", "N", "false"},
    {C, NULL, "ad_opt_out", "Ja", "true"},
    {C, NULL, "ad_opt_out", "nein", "false"},
    {C, NULL, "ad_opt_out", "J", "true"},
    {C, NULL, "ad_opt_out", "2", "\"2\""},
    {C, NULL, "ad_opt_out", "jaa", "\"jaa\""},
    {C, NULL, "ad_opt_out", "neinn", "\"neinn\""},
    {C, NULL, "ad_opt_out", "maybe", "\"maybe\""},
    /* decimals with decimal_comma */
    {S, DE, "sales_price", "89,00", "\"89.00\""},
    {S, DE, "sales_price", "1.234,50", "\"1234.50\""},
    {S, DE, "sales_price", "1.234.567,89", "\"1234567.89\""},
    {S, DE, "sales_price", "1.234", "\"1234\""},
    {S, DE, "sales_price", "999,5", "\"999.5\""},
    {S, DE, "sales_price", "0", "\"0\""},
    {S, DE, "sales_price", "+5", "\"5\""},
    {S, DE, "sales_price", "-5,00", "\"-5.00\""},
    {S, DE, "sales_price", "89.50", "!'89.50' is not a decimal in format 1.234,56"},
    {S, DE, "sales_price", "12.34,5", "!is not a decimal"},
    {S, DE, "sales_price", "1234.567,8", "!is not a decimal"},
    {S, DE, "sales_price", "1.2345", "!is not a decimal"},
    {S, DE, "sales_price", "89,", "!is not a decimal"},
    {S, DE, "sales_price", ",5", "!is not a decimal"},
    {S, DE, "sales_price", "1,2,3", "!is not a decimal"},
    {S, DE, "sales_price", "-", "!is not a decimal"},
    {S, DE, "base_price", "89,00 \xe2\x82\xac", "\"89,00 \xe2\x82\xac\""}, /* validator's job */
    {S, DE, "base_price", "EUR 89", "\"EUR 89\""},
    /* decimals without decimal_comma */
    {S, US, "sales_price", "1,234.50", "\"1234.50\""},
    {S, US, "sales_price", "89.00", "\"89.00\""},
    {S, US, "sales_price", "1234", "\"1234\""},
    {S, NULL, "sales_price", "1.234", "\"1.234\""},
    {S, US, "sales_price", "89,00", "!'89,00' is not a decimal in format 1,234.56"},
    {S, US, "sales_price", "12,34.5", "!is not a decimal"},
    {S, NULL, "sales_price", "1234567890123456789012345678901234567890123456789012345678901234",
     "\"1234567890123456789012345678901234567890123456789012345678901234\""},
    {S, NULL, "sales_price", "12345678901234567890123456789012345678901234567890123456789012345",
     "!is not a decimal"},
    /* dates */
    {E, DE, "date", "03.10.2025", "\"2025-10-03\""},
    {E, DE, "date", " 03.10.2025 ", "\"2025-10-03\""},
    {E, DE, "date", "2025-10-03", "\"2025-10-03\""}, /* ISO accepted too */
    {E, DE, "date", "31.10.2025", "\"2025-10-31\""},
    {E, DE, "date", "32.10.2025", "!'32.10.2025' is not a date in format DD.MM.YYYY"},
    {E, DE, "date", "01.01.2025", "\"2025-01-01\""},
    {E, DE, "date", "00.01.2025", "!is not a date in format DD.MM.YYYY"},
    {E, DE, "date", "01.12.2025", "\"2025-12-01\""},
    {E, DE, "date", "01.13.2025", "!is not a date"},
    {E, DE, "date", "01.00.2025", "!is not a date"},
    {E, DE, "date", "31.02.2025", "\"2025-02-31\""}, /* the validator judges the calendar */
    {E, DE, "date", "3.10.2025", "!is not a date"},
    {E, DE, "date", "03.10.25", "!is not a date"},
    {E, DE, "date", "03.10.2025x", "!is not a date"},
    {E, DE, "date", "03/10/2025", "!is not a date"},
    {E, DE, "date", "2025-13-03", "!is not a date"},
    {E, "{\"date\":\"D.M.YYYY\"}", "date", "3.1.2025", "\"2025-01-03\""},
    {E, "{\"date\":\"D.M.YYYY\"}", "date", "03.01.2025", "\"2025-01-03\""},
    {E, "{\"date\":\"D.M.YYYY\"}", "date", "123.1.2025", "!is not a date in format D.M.YYYY"},
    {E, "{\"date\":\"DD.MM.YY\"}", "date", "03.10.25", "\"2025-10-03\""},
    {E, "{\"date\":\"DD.MM.YY\"}", "date", "03.10.68", "\"2068-10-03\""},
    {E, "{\"date\":\"DD.MM.YY\"}", "date", "03.10.69", "\"1969-10-03\""},
    {E, "{\"date\":\"DD.MM.YY\"}", "date", "03.10.2025", "!is not a date"},
    {E, "{\"date\":\"MM/DD/YYYY\"}", "date", "10/03/2025", "\"2025-10-03\""},
    {E, "{\"date\":\"YYYYMMDD\"}", "date", "20251003", "\"2025-10-03\""},
    {E, NULL, "date", "2025-10-03", "\"2025-10-03\""},
    {E, NULL, "date", "03.10.2025", "!'03.10.2025' is not a date in format YYYY-MM-DD"},
    /* times */
    {E, DE, "time", "19:30", "\"19:30:00\""},
    {E, DE, "time", "19:30:15", "\"19:30:15\""}, /* ISO */
    {E, DE, "time", "00:00", "\"00:00:00\""},
    {E, DE, "time", "23:59", "\"23:59:00\""},
    {E, DE, "time", "24:00", "!'24:00' is not a time in format HH:mm"},
    {E, DE, "time", "19:60", "!is not a time"},
    {E, DE, "time", "9:30", "!is not a time"},
    {E, DE, "time", "19.30", "!is not a time"},
    {E, "{\"time\":\"H:mm\"}", "time", "9:30", "\"09:30:00\""},
    {E, "{\"time\":\"H.mm\"}", "time", "19.30", "\"19:30:00\""},
    {E, "{\"time\":\"HH:mm:ss\"}", "time", "19:30:59", "\"19:30:59\""},
    {E, "{\"time\":\"HH:mm:ss\"}", "time", "19:30:60", "!is not a time in format HH:mm:ss"},
    {E, NULL, "time", "19:30", "\"19:30:00\""},
    {E, NULL, "time", "7 pm", "!is not a time in format HH:mm:ss"},
    /* datetimes */
    {S, DE, "purchase_datetime", "15.04.2025 11:08:42", "\"2025-04-15T11:08:42+01:00\""},
    {S, DE, "purchase_datetime", "2025-04-15T11:08:42Z", "\"2025-04-15T11:08:42Z\""},
    {S, DE, "purchase_datetime", "2025-04-15T11:08:42.250-05:00",
     "\"2025-04-15T11:08:42.250-05:00\""},
    {S, DE, "purchase_datetime", "2025-04-15 11:08:42+02:00", "\"2025-04-15T11:08:42+02:00\""},
    {S, DE, "purchase_datetime", "2025-04-15T11:08:42", "\"2025-04-15T11:08:42+01:00\""},
    {S, DE, "purchase_datetime", "15.04.2025 11:08",
     "!'15.04.2025 11:08' is not a date-time in format DD.MM.YYYY HH:mm:ss"},
    {S, DE, "purchase_datetime", "15.04.2025 24:08:42", "!is not a date-time"},
    {S, DE, "purchase_datetime", "15.04.2025 23:59:59", "\"2025-04-15T23:59:59+01:00\""},
    {S, NULL, "purchase_datetime", "2025-04-15 11:08:42", "\"2025-04-15T11:08:42Z\""},
    {S, "{\"datetime\":\"DD.MM.YYYY HH:mm\",\"utc_offset\":\"UTC\"}", "purchase_datetime",
     "15.04.2025 11:08", "\"2025-04-15T11:08:00Z\""},
    {S, "{\"datetime\":\"YYYY-MM-DDTHH:mm\",\"utc_offset\":\"-05:30\"}", "purchase_datetime",
     "2025-04-15T11:08", "\"2025-04-15T11:08:00-05:30\""},
/* a named zone: local times become UTC instants, daylight saving time included */
#define BERLIN "{\"datetime\":\"DD.MM.YYYY HH:mm\",\"timezone\":\"Europe/Berlin\"}"
    {S, BERLIN, "purchase_datetime", "15.01.2026 11:08", "\"2026-01-15T10:08:00Z\""},
    {S, BERLIN, "purchase_datetime", "15.07.2026 11:08", "\"2026-07-15T09:08:00Z\""},
    {S, BERLIN, "purchase_datetime", "2026-07-15 11:08:42", "\"2026-07-15T09:08:42Z\""},
    {S, BERLIN, "purchase_datetime", "01.01.2026 00:30", "\"2025-12-31T23:30:00Z\""},
    /* the skipped hour moves forward by the gap; the repeated one is the earlier instant */
    {S, BERLIN, "purchase_datetime", "29.03.2026 02:30", "\"2026-03-29T01:30:00Z\""},
    {S, BERLIN, "purchase_datetime", "25.10.2026 02:30", "\"2026-10-25T00:30:00Z\""},
    /* a value with its own offset keeps it; an impossible day is left to the validator */
    {S, BERLIN, "purchase_datetime", "2026-07-15T11:08:42-04:00", "\"2026-07-15T11:08:42-04:00\""},
    {S, BERLIN, "purchase_datetime", "31.02.2026 11:08", "\"2026-02-31T11:08:00Z\""},
    {S, "{\"timezone\":\"America/New_York\"}", "purchase_datetime", "2026-11-01T01:30:00",
     "\"2026-11-01T05:30:00Z\""},
    {S, "{\"timezone\":\"Asia/Kolkata\"}", "purchase_datetime", "2026-06-01 12:00:00",
     "\"2026-06-01T06:30:00Z\""},
    {S, NULL, "purchase_datetime", "15.04.2025 11:08:42",
     "!is not an RFC 3339 date-time like 2025-04-15T11:08:42Z"},
    {S, NULL, "purchase_datetime", "2025-04-15T11:08:42.1234567890Z", "!is not an RFC 3339"},
    /* cast */
    {E, NULL, "cast", "Anna Netrebko (Leonora); Pl\xc3\xa1\x63ido Domingo (Otello) ;Chorus",
     "[{\"name\":\"Anna Netrebko\",\"role\":\"Leonora\"},"
     "{\"name\":\"Pl\\u00e1cido Domingo\",\"role\":\"Otello\"},{\"name\":\"Chorus\"}]"},
    {E, NULL, "cast", "A ( B ) ;; ", "[{\"name\":\"A\",\"role\":\"B\"}]"},
    {E, NULL, "cast", "A ()", "[{\"name\":\"A\"}]"},
    {E, NULL, "cast", "A (B", "[{\"name\":\"A (B\"}]"},
    {E, NULL, "cast", "A (x) (B)", "[{\"name\":\"A (x)\",\"role\":\"B\"}]"},
    {E, NULL, "cast", " ; ; ", NULL},
};

static void test_conversions(void **state)
{
    for (size_t i = 0; i < sizeof(conv_cases) / sizeof(*conv_cases); i++) {
        const struct conv_case *k = &conv_cases[i];
        char *spec = sd_asprintf("{\"fields\":{\"Src\":\"%s\"}%s%s}", k->field,
                                 k->formats ? ",\"formats\":" : "", k->formats ? k->formats : "");
        struct sd_mapping *m = mapping(spec);
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        const char *names[] = {"Src"};
        const char *values[] = {k->value};
        json_t *out = sd_mapping_apply_row(m, k->kind, names, values, 1, "/line/7", &errors);
        if (k->want && k->want[0] == '!') {
            if (out || errors.total != 1) {
                print_issues(&errors);
                fail_msg("case %zu (%s '%s'): expected error '%s'", i, k->field, k->value,
                         k->want + 1);
            }
            char *ptr = sd_asprintf("/line/7/%s", k->field);
            assert_string_equal(errors.items[0].pointer, ptr);
            if (!strstr(errors.items[0].message, k->want + 1) ||
                strncmp(errors.items[0].message, "field 'Src': ", 13) != 0) {
                fail_msg("case %zu: message '%s' lacks '%s'", i, errors.items[0].message,
                         k->want + 1);
            }
            free(ptr);
        } else {
            if (!out || errors.total != 0) {
                print_issues(&errors);
                fail_msg("case %zu (%s '%s'): refused", i, k->field, k->value);
            }
            json_t *got = json_object_get(out, k->field);
            if (!k->want) {
                if (got || json_object_size(out) != 0) {
                    fail_msg("case %zu (%s '%s'): expected absent", i, k->field, k->value);
                }
            } else {
                assert_json(got, k->want);
                assert_int_equal(json_object_size(out), 1);
            }
        }
        json_decref(out);
        sd_issues_release(&errors);
        sd_mapping_free(m);
        free(spec);
    }
}

/* The brief's message, exactly; a long value is echoed cut to 40 bytes at a character edge. */
static void test_conversion_message(void **state)
{
    struct sd_mapping *m = mapping("{\"fields\":{\"EventDate\":\"date\"},\"formats\":" DE "}");
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    static const char *const bad[] = {"EventDate=32.10.2025", NULL};
    assert_null(apply_pairs(m, E, bad, "/line/12", &errors));
    assert_int_equal(errors.total, 1);
    assert_string_equal(errors.items[0].pointer, "/line/12/date");
    assert_string_equal(errors.items[0].message,
                        "field 'EventDate': '32.10.2025' is not a date in format DD.MM.YYYY");
    /* 39 ASCII bytes then a 2-byte character: the cut falls before it. */
    static const char *const longv[] = {
        "EventDate=123456789012345678901234567890123456789\xc3\xa4xxxxxxxxxxxxxxx", NULL};
    assert_null(apply_pairs(m, E, longv, "/line/13", &errors));
    assert_int_equal(errors.total, 2);
    assert_string_equal(errors.items[1].message,
                        "field 'EventDate': '123456789012345678901234567890123456789\xe2\x80\xa6' "
                        "is not a date in format DD.MM.YYYY");
    /* Every problem of the row is reported, and a NULL ptr means "". */
    static const char *const two[] = {"EventDate=x", "capacity=1.5", NULL};
    assert_null(apply_pairs(m, E, two, NULL, &errors));
    assert_int_equal(errors.total, 4);
    assert_string_equal(errors.items[2].pointer, "/date");
    assert_string_equal(errors.items[3].pointer, "/capacity");
    assert_string_equal(errors.items[3].message,
                        "field 'capacity': '1.5' is not an integer (optional sign and digits "
                        "only, no thousand separators)");
    sd_issues_release(&errors);
    sd_mapping_free(m);
}

/* ---- values maps and constants -------------------------------------------------------------- */

static void test_values_maps(void **state)
{
    struct sd_mapping *m = mapping(
        "{\"fields\":{\"TicketType\":\"ticket_category\",\"Werbung\":\"ad_opt_out\","
        "\"Anrede\":\"salutation\",\"Menge\":\"quantity\"},"
        "\"values\":{\"ticket_category\":{\"Abo\":\"subscription\",\"Freikarte\":\"comp\","
        "\"Normal\":\"regular\"},\"ad_opt_out\":{\"keine Werbung\":true,\"Werbung ok\":false,"
        "\"egal\":\"nein\"},\"salutation\":{\"Hr.\":\"Herr\",\"-\":\"\"},"
        "\"quantity\":{\"ein\":\"1\",\"zwei\":\"zwei\"}}}");
    static const struct {
        enum sd_kind kind;
        const char *cell;
        const char *field;
        const char *want; /* NULL: absent, "!": error */
    } cases[] = {
        {S, "TicketType=Abo", "ticket_category", "\"subscription\""},
        {S, "TicketType=Freikarte", "ticket_category", "\"comp\""},
        {S, "TicketType= Normal ", "ticket_category", "\"regular\""}, /* after trimming */
        {S, "TicketType=VIP", "ticket_category", "\"VIP\""},          /* not in map: unchanged */
        {S, "TicketType=abo", "ticket_category", "\"abo\""},          /* exact match */
        {C, "Werbung=keine Werbung", "ad_opt_out", "true"},
        {C, "Werbung=Werbung ok", "ad_opt_out", "false"},
        {C, "Werbung=egal", "ad_opt_out", "false"}, /* mapped string, then converted */
        {C, "Werbung=ja", "ad_opt_out", "true"},
        {C, "Anrede=Hr.", "salutation", "\"Herr\""},
        {C, "Anrede=-", "salutation", NULL}, /* mapped to "" → absent */
        {S, "Menge=ein", "quantity", "1"},
        {S, "Menge=zwei", "quantity", "!'zwei' is not an integer"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        const char *row[] = {cases[i].cell, NULL};
        json_t *out = apply_pairs(m, cases[i].kind, row, "/line/1", &errors);
        if (cases[i].want && cases[i].want[0] == '!') {
            assert_null(out);
            assert_int_equal(errors.total, 1);
            assert_non_null(strstr(errors.items[0].message, cases[i].want + 1));
        } else {
            if (!out) {
                print_issues(&errors);
                fail_msg("case %zu refused", i);
            }
            if (cases[i].want) {
                assert_json(json_object_get(out, cases[i].field), cases[i].want);
            } else {
                assert_null(json_object_get(out, cases[i].field));
            }
        }
        json_decref(out);
        sd_issues_release(&errors);
    }
    sd_mapping_free(m);
}

static void test_constants(void **state)
{
    struct sd_mapping *m =
        mapping("{\"fields\":{\"Preis\":\"sales_price\",\"Kat\":\"ticket_category\"},"
                "\"constants\":{\"currency\":\"EUR\",\"quantity\":1,\"city\":\"Berlin\","
                "\"ad_opt_out\":false,\"ticket_category\":\"regular\"}}");
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    static const char *const r1[] = {"Preis=89.00", NULL};
    json_t *sa = apply_pairs(m, S, r1, "/line/1", &errors);
    assert_json(sa, "{\"sales_price\":\"89.00\",\"currency\":\"EUR\",\"quantity\":1,"
                    "\"ticket_category\":\"regular\"}");
    json_decref(sa);
    /* A record's own value wins over the constant; an empty cell is no value. */
    static const char *const r2[] = {"Preis=89.00", "currency=CHF", "Kat=", "quantity=3", NULL};
    sa = apply_pairs(m, S, r2, "/line/2", &errors);
    assert_json(sa, "{\"sales_price\":\"89.00\",\"currency\":\"CHF\",\"quantity\":3,"
                    "\"ticket_category\":\"regular\"}");
    json_decref(sa);
    /* Constants apply to the kind's fields only. */
    json_t *ev = apply_pairs(m, E, r1, "/line/3", &errors);
    assert_json(ev, "{\"city\":\"Berlin\"}");
    json_decref(ev);
    json_t *cu = apply_pairs(m, C, r1, "/line/3", &errors);
    assert_json(cu, "{\"ad_opt_out\":false}");
    json_decref(cu);
    assert_int_equal(errors.total, 0);
    sd_issues_release(&errors);
    sd_mapping_free(m);
}

/* ---- spec check ------------------------------------------------------------------------------ */

struct spec_case {
    const char *spec;
    const char *errors[6]; /* "pointer|message fragment"; none: the spec is valid */
};

static const struct spec_case spec_cases[] = {
    {"null", {NULL}},
    {"{}", {NULL}},
    {"{\"fields\":{},\"values\":{},\"constants\":{},\"formats\":{},\"unmapped\":\"drop\"}", {NULL}},
    {"{\"fields\":{\"A\":\"event_id\",\"B\":\"event_id\"}}", {NULL}}, /* two sources, one field */
    {"{\"formats\":{\"datetime\":\"YYYY-MM-DDTHH:mm\",\"utc_offset\":\"utc\"}}", {NULL}},
    {"{\"formats\":{\"utc_offset\":\"-05:30\",\"date\":\"YY/M/D\",\"time\":\"H\\u00b7mm\"}}",
     {NULL}},
    {"{\"constants\":{\"date\":\"2025-10-03\",\"time\":\"19:30:00\",\"capacity\":10,"
     "\"purchase_datetime\":\"2025-04-15T11:08:42+01:00\",\"base_price\":\"75.50\","
     "\"cast\":[{\"name\":\"A\",\"role\":\"B\"}],\"ad_opt_out\":true}}",
     {NULL}},
    {"{\"fields\":{\"EventNo\":\"evnt_id\"}}",
     {"/mapping/fields/EventNo|unknown model field 'evnt_id' (did you mean 'event_id'? known: "
      "event_id, title, date, time, venue, hall, capacity, city, work_title, composer, cast, "
      "customer_id, email, salutation, first_name, last_name, street, post_code, ad_opt_out, "
      "invoice_number, purchase_datetime, ticket_category, quantity, sales_price, base_price, "
      "currency, order_type, status, refunded_quantity, refunded_amount, status_changed_at, "
      "expires_at, attended_quantity, refund_of)"}},
    {"{\"EventNo\":\"evnt_id\",\"X\":\"zzzzzzzz\"}",
     {"/mapping/EventNo|unknown model field 'evnt_id' (did you mean",
      "/mapping/X|unknown model field 'zzzzzzzz' (known: event_id,"}},
    {"{\"fields\":{\"a/b~c\":3}}", {"/mapping/fields/a~1b~0c|must be a model field name"}},
    {"{\"fields\":{\"\":\"title\",\" A\":\"title\",\"B\\t\":\"title\",\"\\u00a0C\":\"title\"}}",
     {"/mapping/fields/|must not be empty", "/mapping/fields/ A|must not start or end",
      "/mapping/fields/B\t|whitespace", "/mapping/fields/\xc2\xa0\x43|whitespace"}},
    {"{\"fields\":5}", {"/mapping/fields|must be an object"}},
    {"[1]", {"/mapping|must be an object"}},
    {"{\"fields\":{},\"extra\":1}", {"/mapping/extra|unknown member (expected fields"}},
    {"{\"unmapped\":\"ignore\"}", {"/mapping/unmapped|must be \"keep\" or \"drop\""}},
    {"{\"values\":{\"x\":{}}}", {"/mapping/values/x|unknown model field 'x'"}},
    {"{\"values\":{\"ticket_category\":[]}}", {"/mapping/values/ticket_category|must be an obj"}},
    {"{\"values\":{\"ticket_category\":{\"Abo\":1,\"\":\"comp\",\"V\":true}}}",
     {"/mapping/values/ticket_category/Abo|must be a string",
      "/mapping/values/ticket_category/|must not be empty",
      "/mapping/values/ticket_category/V|must be a string"}},
    {"{\"values\":{\"ad_opt_out\":{\"X\":1}}}",
     {"/mapping/values/ad_opt_out/X|must be a string or true/false"}},
    {"{\"values\":5}", {"/mapping/values|must be an object"}},
    {"{\"constants\":{\"currenc\":\"EUR\"}}",
     {"/mapping/constants/currenc|unknown model field 'currenc' (did you mean 'currency'?"}},
    {"{\"constants\":{\"quantity\":\"2\",\"currency\":3,\"date\":\"03.10.2025\","
     "\"time\":\"19:30\",\"sales_price\":\"89,00\",\"ad_opt_out\":\"no\"}}",
     {"/mapping/constants/quantity|must be an integer",
      "/mapping/constants/currency|must be a string",
      "/mapping/constants/date|must be a date string",
      "/mapping/constants/time|must be a time string",
      "/mapping/constants/sales_price|must be a decimal string",
      "/mapping/constants/ad_opt_out|must be true or false"}},
    {"{\"constants\":{\"purchase_datetime\":\"2025-04-15 11:08\",\"cast\":[1]}}",
     {"/mapping/constants/purchase_datetime|must be an RFC 3339",
      "/mapping/constants/cast|must be an array of"}},
    {"{\"formats\":{\"date\":\"DD.MM.YYY\"}}",
     {"/mapping/formats/date|unknown token 'YYY' in date format (use DD, D, MM, M, YYYY, YY "
      "and literal separators)"}},
    {"{\"formats\":{\"date\":\"dd.MM.yyyy\"}}", {"/mapping/formats/date|unknown token 'dd'"}},
    {"{\"formats\":{\"date\":\"DD.MM\"}}", {"/mapping/formats/date|needs a year"}},
    {"{\"formats\":{\"date\":\"DD.MM.YYYY HH:mm\"}}",
     {"/mapping/formats/date|unknown token 'HH' in date format"}},
    {"{\"formats\":{\"date\":\"DD.DD.MM.YYYY\"}}", {"/mapping/formats/date|the day appears twice"}},
    {"{\"formats\":{\"date\":\"\"}}", {"/mapping/formats/date|must not be empty"}},
    {"{\"formats\":{\"date\":\"DD.MM.YYYY.........................................."
     "..............\"}}",
     {"/mapping/formats/date|longer than 64 bytes"}},
    {"{\"formats\":{\"time\":\"HH:MM\"}}", {"/mapping/formats/time|unknown token 'MM' in time"}},
    {"{\"formats\":{\"time\":\"HH\"}}", {"/mapping/formats/time|needs an hour (HH or H) and min"}},
    {"{\"formats\":{\"time\":\"HH:mm:s\"}}", {"/mapping/formats/time|unknown token 's'"}},
    {"{\"formats\":{\"datetime\":\"DD.MM.YYYY\"}}", {"/mapping/formats/datetime|needs a year"}},
    {"{\"formats\":{\"datetime\":\"DD.MM.YYYY hh:mm\"}}", {"/mapping/formats/datetime|'hh'"}},
    {"{\"formats\":{\"datetime\":5}}", {"/mapping/formats/datetime|must be a string"}},
    {"{\"formats\":{\"utc_offset\":\"Europe/Berlin\"}}",
     {"/mapping/formats/utc_offset|use \"timezone\""}},
    {"{\"formats\":{\"timezone\":\"Europe/Berlin\"}}", {NULL}},
    {"{\"formats\":{\"timezone\":\"Europe/Atlantis\"}}",
     {"/mapping/formats/timezone|unknown time zone 'Europe/Atlantis'"}},
    {"{\"formats\":{\"timezone\":\"../../etc/passwd\"}}",
     {"/mapping/formats/timezone|'../../etc/passwd' is not a time zone name"}},
    {"{\"formats\":{\"timezone\":\"+01:00\"}}",
     {"/mapping/formats/timezone|'+01:00' is not a time zone name"}},
    {"{\"formats\":{\"timezone\":1}}", {"/mapping/formats/timezone|must be a string"}},
    {"{\"formats\":{\"timezone\":\"Europe/Berlin\",\"utc_offset\":\"+01:00\"}}",
     {"/mapping/formats/utc_offset|not both"}},
    {"{\"formats\":{\"utc_offset\":\"+24:00\"}}", {"/mapping/formats/utc_offset|fixed offset"}},
    {"{\"formats\":{\"utc_offset\":\"+0100\"}}", {"/mapping/formats/utc_offset|fixed offset"}},
    {"{\"formats\":{\"decimal_comma\":\"yes\",\"zone\":\"x\"}}",
     {"/mapping/formats/decimal_comma|must be true or false",
      "/mapping/formats/zone|unknown member (expected date"}},
    {"{\"formats\":[]}", {"/mapping/formats|must be an object"}},
};

static void expect_issues(size_t case_no, const struct sd_issues *got, const char *const *want,
                          size_t max)
{
    size_t n_want = 0;
    bool used[SD_MAX_ISSUES] = {false};
    for (; n_want < max && want[n_want]; n_want++) {
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
            print_issues(got);
            fail_msg("case %zu: '%s' not found", case_no, want[n_want]);
        }
    }
    if (got->total != n_want) {
        print_issues(got);
        fail_msg("case %zu: %zu issues, expected %zu", case_no, got->total, n_want);
    }
}

static void test_spec_cases(void **state)
{
    for (size_t i = 0; i < sizeof(spec_cases) / sizeof(*spec_cases); i++) {
        json_t *spec = load(spec_cases[i].spec);
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        struct sd_mapping *m = (struct sd_mapping *)&errors; /* must stay untouched on error */
        int rc = sd_mapping_new(spec, &m, &errors);
        expect_issues(i, &errors, spec_cases[i].errors, 6);
        if (spec_cases[i].errors[0]) {
            assert_int_equal(rc, -EINVAL);
            assert_ptr_equal(m, &errors);
        } else {
            assert_int_equal(rc, 0);
            sd_mapping_free(m);
        }
        sd_issues_release(&errors);
        json_decref(spec);
    }
    /* NULL spec, NULL errors */
    struct sd_mapping *m = NULL;
    assert_int_equal(sd_mapping_new(NULL, &m, NULL), 0);
    sd_mapping_free(m);
    json_t *bad = load("{\"fields\":5}");
    assert_int_equal(sd_mapping_new(bad, &m, NULL), -EINVAL);
    assert_int_equal(sd_mapping_new(NULL, NULL, NULL), -EINVAL);
    json_decref(bad);
    sd_mapping_free(NULL);
}

static void test_spec_limits(void **state)
{
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    struct sd_mapping *m = NULL;
    json_t *fields = json_object();
    for (int i = 0; i < SD_MAPPING_MAX_ENTRIES; i++) {
        char name[16];
        snprintf(name, sizeof(name), "col%d", i);
        json_object_set_new(fields, name, json_string("title"));
    }
    json_t *spec = json_pack("{s:O}", "fields", fields);
    assert_int_equal(sd_mapping_new(spec, &m, &errors), 0); /* 500: fine */
    sd_mapping_free(m);
    json_object_set_new(fields, "one-more", json_string("title"));
    json_decref(spec);
    spec = json_pack("{s:O}", "fields", fields);
    assert_int_equal(sd_mapping_new(spec, &m, &errors), -EINVAL);
    assert_int_equal(errors.total, 1);
    assert_string_equal(errors.items[0].pointer, "/mapping/fields");
    assert_string_equal(errors.items[0].message, "has 501 entries, at most 500 are allowed");
    json_decref(spec);
    json_decref(fields);

    char name[SD_MAPPING_MAX_NAME + 2];
    memset(name, 'n', sizeof(name) - 1);
    name[SD_MAPPING_MAX_NAME] = '\0';
    spec = json_pack("{s:{s:s}}", "fields", name, "title");
    assert_int_equal(sd_mapping_new(spec, &m, &errors), 0); /* 200 bytes: fine */
    sd_mapping_free(m);
    json_decref(spec);
    name[SD_MAPPING_MAX_NAME] = 'n';
    name[SD_MAPPING_MAX_NAME + 1] = '\0';
    spec = json_pack("{s:{s:s}}", "fields", name, "title");
    assert_int_equal(sd_mapping_new(spec, &m, &errors), -EINVAL);
    assert_int_equal(errors.total, 2);
    assert_string_equal(errors.items[1].message, "source name is longer than 200 bytes");
    json_decref(spec);

    /* NUL inside names (jansson's API allows it, its parser does not). */
    sd_issues_release(&errors);
    spec = load("{\"fields\":{},\"values\":{\"title\":{}}}");
    json_object_setn_new_nocheck(json_object_get(spec, "fields"), "N\0", 2, json_string("title"));
    json_object_setn_new_nocheck(json_object_get(json_object_get(spec, "values"), "title"), "V\0",
                                 2, json_string("x"));
    json_object_set_new(json_object_get(json_object_get(spec, "values"), "title"), "W",
                        json_stringn("a\0b", 3));
    assert_int_equal(sd_mapping_new(spec, &m, &errors), -EINVAL);
    assert_int_equal(errors.total, 3);
    assert_string_equal(errors.items[0].pointer, "/mapping/fields/N\xef\xbf\xbd");
    assert_string_equal(errors.items[0].message,
                        "source name must be valid UTF-8 without NUL characters");
    assert_string_equal(errors.items[1].pointer, "/mapping/values/title/V\xef\xbf\xbd");
    assert_string_equal(errors.items[2].pointer, "/mapping/values/title/W");
    json_decref(spec);
    sd_issues_release(&errors);
}

/* ---- applying ------------------------------------------------------------------------------- */

/* A combined export carries several kinds' columns; each kind takes its own. A column that the
 * mapping sends to another kind's field (Nr → event_id for customers) is dropped for this
 * kind; one merely named as another kind's field (`venue`, `currency`) is for this kind an
 * unmapped column and kept under its name, as the webhook keeps it. */
static void test_kind_filtering(void **state)
{
    struct sd_mapping *m =
        mapping("{\"fields\":{\"Nr\":\"event_id\",\"Titel\":\"title\",\"Kunde\":\"customer_id\","
                "\"Mail\":\"email\",\"Rechnung\":\"invoice_number\"},\"unmapped\":\"keep\"}");
    static const char *const row[] = {"Nr=E1",        "Titel=Otello", "Kunde=C1",
                                      "Mail=a@b.de",  "Rechnung=R1",  "venue=Oper",
                                      "currency=EUR", "Notiz=n1",     NULL};
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    json_t *ev = apply_pairs(m, E, row, "", &errors);
    json_t *cu = apply_pairs(m, C, row, "", &errors);
    json_t *sa = apply_pairs(m, S, row, "", &errors);
    assert_json(ev, "{\"event_id\":\"E1\",\"title\":\"Otello\",\"venue\":\"Oper\","
                    "\"currency\":\"EUR\",\"Notiz\":\"n1\"}");
    assert_json(cu, "{\"customer_id\":\"C1\",\"email\":\"a@b.de\",\"venue\":\"Oper\","
                    "\"currency\":\"EUR\",\"Notiz\":\"n1\"}");
    assert_json(sa, "{\"event_id\":\"E1\",\"customer_id\":\"C1\",\"invoice_number\":\"R1\","
                    "\"venue\":\"Oper\",\"currency\":\"EUR\",\"Notiz\":\"n1\"}");
    /* Output member order follows the source. */
    char *s = json_dumps(sa, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(s, "{\"event_id\":\"E1\",\"customer_id\":\"C1\",\"invoice_number\":"
                           "\"R1\",\"venue\":\"Oper\",\"currency\":\"EUR\",\"Notiz\":\"n1\"}");
    free(s);
    json_decref(ev);
    json_decref(cu);
    json_decref(sa);
    assert_int_equal(errors.total, 0);
    /* A customers file with a `city` column (an event field): the customer keeps it (it used
     * to be dropped silently, so a customer rule on city never matched a CSV customer)... */
    static const char *const cust[] = {"customer_id=C7", "email=c@d.de", "city=K\xc3\xb6ln", NULL};
    cu = apply_pairs(m, C, cust, "", &errors);
    assert_json(cu, "{\"customer_id\":\"C7\",\"email\":\"c@d.de\",\"city\":\"K\xc3\xb6ln\"}");
    json_decref(cu);
    /* ...unless unmapped columns are dropped. */
    struct sd_mapping *drop = mapping("{\"fields\":{},\"unmapped\":\"drop\"}");
    cu = apply_pairs(drop, C, cust, "", &errors);
    assert_json(cu, "{\"customer_id\":\"C7\",\"email\":\"c@d.de\"}");
    json_decref(cu);
    sd_mapping_free(drop);
    assert_int_equal(errors.total, 0);
    /* An unknown kind is an issue, not a crash. */
    assert_null(apply_pairs(m, (enum sd_kind)7, row, "/x", &errors));
    assert_int_equal(errors.total, 1);
    assert_string_equal(errors.items[0].pointer, "/x");
    sd_issues_release(&errors);
    sd_mapping_free(m);
}

static void test_unmapped(void **state)
{
    static const char *const row[] = {
        "\xef\xbb\xbfNr = E1 ", "Extra= x ", "Leer= ", "Extra=second", "a/b=1", NULL};
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    struct sd_mapping *keep = mapping("{\"Nr\":\"event_id\"}");
    json_t *out = apply_pairs(keep, E, row, "/line/1", &errors);
    /* BOM and whitespace trimmed from names; empty dropped; the first of a repeated name. */
    assert_json(out, "{\"event_id\":\"E1\",\"Extra\":\"x\",\"a/b\":\"1\"}");
    json_decref(out);
    struct sd_mapping *drop = mapping("{\"fields\":{\"Nr\":\"event_id\"},\"unmapped\":\"drop\"}");
    out = apply_pairs(drop, E, row, "/line/1", &errors);
    assert_json(out, "{\"event_id\":\"E1\"}");
    json_decref(out);
    assert_int_equal(errors.total, 0);
    /* Bad bytes in a kept name or value are refused with a clean pointer and message. */
    static const char *const bad[] = {"N\xff=1", "Extra=\xc3", NULL};
    assert_null(apply_pairs(keep, E, bad, "/line/2", &errors));
    assert_int_equal(errors.total, 2);
    assert_string_equal(errors.items[0].pointer, "/line/2/N\xef\xbf\xbd");
    assert_string_equal(errors.items[0].message,
                        "field name must be valid UTF-8 without NUL characters");
    assert_string_equal(errors.items[1].pointer, "/line/2/Extra");
    assert_string_equal(errors.items[1].message, "field 'Extra': value is not valid UTF-8 text");
    out = apply_pairs(drop, E, bad, "/line/2", &errors);
    assert_json(out, "{}");
    json_decref(out);
    sd_issues_release(&errors);
    sd_mapping_free(keep);
    sd_mapping_free(drop);
}

/* Several sources for one field: first non-empty in "fields" order, then the field's own name. */
static void test_priority(void **state)
{
    struct sd_mapping *m =
        mapping("{\"fields\":{\"Mobil\":\"email\",\"Mail\":\"email\",\"email\":\"email\"}}");
    struct sd_mapping *m2 = mapping("{\"fields\":{\"Mail\":\"email\"}}");
    static const struct {
        const struct sd_mapping **m;
        const char *row[4];
        const char *want;
    } cases[] = {
        {NULL, {"Mail=m@x.de", "Mobil=o@x.de", NULL}, "\"o@x.de\""},
        {NULL, {"Mail=m@x.de", "Mobil= ", NULL}, "\"m@x.de\""},
        {NULL, {"email=e@x.de", "Mail=m@x.de", NULL}, "\"m@x.de\""},
        {NULL, {"email=e@x.de", "Mail=", NULL}, "\"e@x.de\""},
        {NULL, {"Mail=1@x.de", "Mail=2@x.de", NULL}, "\"1@x.de\""},
        {NULL, {"Mail=", "Mail=2@x.de", NULL}, "\"2@x.de\""},
    };
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        json_t *out = apply_pairs(m, C, cases[i].row, "", &errors);
        assert_json(json_object_get(out, "email"), cases[i].want);
        assert_int_equal(json_object_size(out), 1);
        json_decref(out);
    }
    /* Without "email" in fields, a column named email still ranks after Mail. */
    static const char *const r[] = {"email=e@x.de", "Mail=m@x.de", NULL};
    json_t *out = apply_pairs(m2, C, r, "", &errors);
    assert_json(out, "{\"email\":\"m@x.de\"}");
    json_decref(out);
    /* A source named as a model field can be mapped elsewhere. */
    struct sd_mapping *m3 = mapping("{\"title\":\"salutation\"}");
    static const char *const r3[] = {"title=Dr.", NULL};
    out = apply_pairs(m3, C, r3, "", &errors);
    assert_json(out, "{\"salutation\":\"Dr.\"}");
    json_decref(out);
    out = apply_pairs(m3, E, r3, "", &errors);
    assert_json(out, "{}");
    json_decref(out);
    assert_int_equal(errors.total, 0);
    sd_issues_release(&errors);
    sd_mapping_free(m);
    sd_mapping_free(m2);
    sd_mapping_free(m3);
}

static void test_apply_object(void **state)
{
    struct sd_mapping *m = mapping(
        "{\"fields\":{\"kat\":\"ticket_category\",\"menge\":\"quantity\",\"preis\":\"sales_price\","
        "\"zeit\":\"purchase_datetime\",\"extra\":\"invoice_number\"},"
        "\"values\":{\"ticket_category\":{\"1\":\"regular\",\"2\":\"VIP\"}},"
        "\"formats\":{\"datetime\":\"DD.MM.YYYY HH:mm\",\"decimal_comma\":true}}");
    json_t *src = load("{\"kat\":2,\"menge\":\" 3 \",\"preis\":\"1.089,50\","
                       "\"zeit\":\"15.04.2025 11:08\",\"extra\":null,\"currency\":\"EUR\","
                       "\"nested\":{\"a\":[1,{\"b\":\"c\"}]},\"n\":1.5,\"t\":true,\"e\":\"  \"}");
    json_t *copy = json_deep_copy(src);
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    json_t *out = sd_mapping_apply_object(m, S, src, "/items/0", &errors);
    assert_json(out, "{\"ticket_category\":\"VIP\",\"quantity\":3,\"sales_price\":\"1089.50\","
                     "\"purchase_datetime\":\"2025-04-15T11:08:00Z\",\"currency\":\"EUR\","
                     "\"nested\":{\"a\":[1,{\"b\":\"c\"}]},\"n\":1.5,\"t\":true}");
    assert_true(json_equal(src, copy)); /* not modified */
    /* Nothing is shared: changing the result leaves the source alone. */
    json_array_append_new(json_object_get(json_object_get(out, "nested"), "a"), json_null());
    assert_true(json_equal(src, copy));
    json_decref(out);
    /* Non-string values pass unchanged: the validator judges them. */
    json_t *src2 = load("{\"kat\":7,\"menge\":2.5,\"preis\":89.5,\"zeit\":false}");
    out = sd_mapping_apply_object(m, S, src2, "/items/1", &errors);
    assert_json(out, "{\"ticket_category\":7,\"quantity\":2.5,\"sales_price\":89.5,"
                     "\"purchase_datetime\":false}");
    json_decref(out);
    assert_int_equal(errors.total, 0);
    /* Strings with NUL are refused; so is a source that is not an object. (jansson's parser
     * refuses NUL in keys, its API does not.) */
    json_t *src3 = load("{\"kat\":\"a\\u0000b\"}");
    json_object_setn_new_nocheck(src3, "x\0y", 3, json_string("1"));
    assert_null(sd_mapping_apply_object(m, S, src3, "/items/2", &errors));
    assert_int_equal(errors.total, 2);
    assert_string_equal(errors.items[0].pointer, "/items/2/ticket_category");
    assert_string_equal(errors.items[1].pointer, "/items/2/x\xef\xbf\xbdy");
    /* An event's or customer's null clears the field (the store merges their updates), unless
     * another member gives a value; an empty string is absent. */
    struct sd_mapping *mc = mapping("{\"fields\":{\"vorname\":\"first_name\"}}");
    json_t *src4 = load("{\"customer_id\":\"C1\",\"vorname\":null,\"last_name\":null,"
                        "\"street\":\"\",\"post_code\":null,\"x\":null}");
    out = sd_mapping_apply_object(mc, SD_KIND_CUSTOMER, src4, "/items/5", &errors);
    assert_json(out, "{\"customer_id\":\"C1\",\"first_name\":null,\"last_name\":null,"
                     "\"post_code\":null}");
    json_decref(out);
    json_t *src5 = load("{\"vorname\":null,\"first_name\":\"Jane\"}");
    out = sd_mapping_apply_object(mc, SD_KIND_CUSTOMER, src5, "/items/6", &errors);
    assert_json(out, "{\"first_name\":\"Jane\"}");
    json_decref(out);
    json_decref(src4);
    json_decref(src5);
    sd_mapping_free(mc);
    json_t *arr = load("[]");
    assert_null(sd_mapping_apply_object(m, S, arr, "/items/3", &errors));
    assert_null(sd_mapping_apply_object(m, S, NULL, "/items/4", &errors));
    assert_int_equal(errors.total, 4);
    assert_string_equal(errors.items[3].message, "must be an object");
    json_decref(arr);
    json_decref(src3);
    json_decref(src2);
    json_decref(copy);
    json_decref(src);
    sd_issues_release(&errors);
    sd_mapping_free(m);
}

/* More columns than fit on the stack, and NULL names/values. */
static void test_wide_and_null_row(void **state)
{
    struct sd_mapping *m = mapping("{\"fields\":{\"c150\":\"title\"},\"unmapped\":\"drop\"}");
    const char *names[200], *values[200];
    char buf[200][8];
    for (int i = 0; i < 200; i++) {
        snprintf(buf[i], sizeof(buf[i]), "c%d", i);
        names[i] = buf[i];
        values[i] = buf[i];
    }
    names[3] = NULL;
    values[4] = NULL;
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    json_t *out = sd_mapping_apply_row(m, E, names, values, 200, "", &errors);
    assert_json(out, "{\"title\":\"c150\"}");
    json_decref(out);
    out = sd_mapping_apply_row(m, E, NULL, NULL, 5, "", NULL);
    assert_json(out, "{}");
    json_decref(out);
    assert_int_equal(errors.total, 0);
    sd_issues_release(&errors);
    sd_mapping_free(m);
}

static void test_to_json_roundtrip(void **state)
{
    static const char *const specs[] = {
        NULL,
        "{\"A\":\"title\"}",
        "{\"fields\":{\"A\":\"title\",\"B\":\"title\"},\"values\":{\"ticket_category\":"
        "{\"Abo\":\"subscription\"}},\"constants\":{\"currency\":\"EUR\"},\"formats\":{\"date\":"
        "\"DD.MM.YYYY\",\"utc_offset\":\"UTC\",\"decimal_comma\":true},\"unmapped\":\"drop\"}",
    };
    static const char *const want[] = {
        "{\"fields\":{},\"values\":{},\"constants\":{},\"formats\":{},\"unmapped\":\"keep\"}",
        "{\"fields\":{\"A\":\"title\"},\"values\":{},\"constants\":{},\"formats\":{},"
        "\"unmapped\":\"keep\"}",
        NULL, /* as given */
    };
    for (size_t i = 0; i < sizeof(specs) / sizeof(*specs); i++) {
        struct sd_mapping *m = mapping(specs[i]);
        json_t *norm = sd_mapping_to_json(m);
        assert_json(norm, want[i] ? want[i] : specs[i]);
        char *text = json_dumps(norm, JSON_COMPACT);
        struct sd_mapping *m2 = mapping(text);
        json_t *norm2 = sd_mapping_to_json(m2);
        assert_true(json_equal(norm, norm2));
        /* The normalized copy is the caller's: changing it changes nothing inside. */
        json_object_clear(norm);
        json_t *norm3 = sd_mapping_to_json(m);
        assert_true(json_equal(norm2, norm3));
        json_decref(norm3);
        json_decref(norm2);
        json_decref(norm);
        free(text);
        sd_mapping_free(m2);
        sd_mapping_free(m);
    }
    assert_null(sd_mapping_to_json(NULL));
}

/* formats.amount_unit: integer fractions (S-360 thousandths) become the exact decimal, and the
 * validator then refuses what the currency's minor unit cannot hold, never rounding it. */
static void test_amount_unit(void **state)
{
    (void)state;
    json_t *spec = json_loads("{\"fields\":{\"saleAmount\":\"sales_price\"},"
                              "\"formats\":{\"amount_unit\":\"thousandths\"}}",
                              0, NULL);
    struct sd_mapping *m = NULL;
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    assert_int_equal(sd_mapping_new(spec, &m, &errors), 0);
    struct {
        const char *src;
        const char *want; /* sales_price, or NULL: refused by the mapping */
    } cases[] = {
        {"{\"saleAmount\":40000}", "40.000"}, {"{\"saleAmount\":\"40005\"}", "40.005"},
        {"{\"saleAmount\":0}", "0.000"},      {"{\"saleAmount\":7}", "0.007"},
        {"{\"saleAmount\":\"40.5\"}", NULL},  {"{\"saleAmount\":\"4O000\"}", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        json_t *src = json_loads(cases[i].src, 0, NULL);
        size_t e0 = errors.total;
        json_t *out = sd_mapping_apply_object(m, SD_KIND_SALE, src, "/r", &errors);
        if (cases[i].want) {
            assert_non_null(out);
            assert_string_equal(json_string_value(json_object_get(out, "sales_price")),
                                cases[i].want);
        } else {
            assert_null(out);
            assert_int_equal(errors.total, e0 + 1);
            assert_string_equal(errors.items[e0].pointer, "/r/sales_price");
            assert_non_null(strstr(errors.items[e0].message, "integer amount in thousandths"));
        }
        json_decref(out);
        json_decref(src);
    }
    /* 40000 thousandths are 40.00 EUR; 40005 are no whole cent: a validation error */
    const char *amounts[] = {"40.000", "40.005"};
    for (int i = 0; i < 2; i++) {
        json_t *sale = json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:s}", "invoice_number", "A1",
                                 "event_id", "E1", "customer_id", "C1", "purchase_datetime",
                                 "2025-04-15T11:08:42Z", "ticket_category", "regular", "quantity",
                                 1, "sales_price", amounts[i], "currency", "EUR");
        struct sd_sale_rec rec = {0};
        struct sd_issues errs, warns;
        sd_issues_init(&errs, SD_MAX_ISSUES);
        sd_issues_init(&warns, SD_MAX_ISSUES);
        int r = sd_validate_sale(sale, "", &rec, &errs, &warns);
        if (i == 0) {
            assert_int_equal(r, 0);
            assert_int_equal(rec.sales_price_minor, 4000);
        } else {
            assert_int_equal(r, -EINVAL);
            assert_string_equal(errs.items[0].pointer, "/sales_price");
        }
        sd_sale_rec_release(&rec);
        sd_issues_release(&errs);
        sd_issues_release(&warns);
        json_decref(sale);
    }
    /* an unknown unit is a spec error */
    json_t *bad = json_loads("{\"formats\":{\"amount_unit\":\"cents\"}}", 0, NULL);
    struct sd_mapping *m2 = NULL;
    size_t e0 = errors.total;
    assert_int_equal(sd_mapping_new(bad, &m2, &errors), -EINVAL);
    assert_string_equal(errors.items[e0].pointer, "/mapping/formats/amount_unit");
    json_decref(bad);
    sd_issues_release(&errors);
    sd_mapping_free(m);
    json_decref(spec);
}

/* The mapping's field table is exactly the validators' field lists. */
static void test_fields_match_validators(void **state)
{
    for (int t = 0; t < MAP_N_FIELDS; t++) {
        for (int k = E; k <= S; k++) {
            json_t *rec = json_pack("{s:s}", sd_map_fields[t].name, "x");
            struct sd_issues errors, warnings;
            sd_issues_init(&errors, SD_MAX_ISSUES);
            sd_issues_init(&warnings, SD_MAX_ISSUES);
            if (k == E) {
                struct sd_event_rec r = {0};
                sd_validate_event(rec, "", &r, &errors, &warnings);
                sd_event_rec_release(&r);
            } else if (k == C) {
                struct sd_customer_rec r = {0};
                sd_validate_customer(rec, "", &r, &errors, &warnings);
                sd_customer_rec_release(&r);
            } else {
                struct sd_sale_rec r = {0};
                sd_validate_sale(rec, "", &r, &errors, &warnings);
                sd_sale_rec_release(&r);
            }
            bool unknown = warnings.total > 0;
            bool in_kind = (sd_map_fields[t].kinds & MAP_KIND_BIT(k)) != 0;
            if (unknown == in_kind) {
                fail_msg("field '%s' kind %d: mapping says %d, validator says %d",
                         sd_map_fields[t].name, k, in_kind, !unknown);
            }
            sd_issues_release(&errors);
            sd_issues_release(&warnings);
            json_decref(rec);
        }
    }
    /* and every field a validator requires is in the table (required ones are reported) */
    for (int k = E; k <= S; k++) {
        json_t *rec = json_object();
        struct sd_issues errors, warnings;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        sd_issues_init(&warnings, SD_MAX_ISSUES);
        struct sd_sale_rec r = {0};
        struct sd_event_rec re = {0};
        struct sd_customer_rec rc = {0};
        if (k == E) {
            sd_validate_event(rec, "", &re, &errors, &warnings);
        } else if (k == C) {
            sd_validate_customer(rec, "", &rc, &errors, &warnings);
        } else {
            sd_validate_sale(rec, "", &r, &errors, &warnings);
        }
        for (size_t i = 0; i < errors.n; i++) {
            const char *name = errors.items[i].pointer + 1;
            int t = sd_map_field_find(name, strlen(name));
            assert_true(t >= 0);
            assert_true(sd_map_fields[t].kinds & MAP_KIND_BIT(k));
        }
        sd_issues_release(&errors);
        sd_issues_release(&warnings);
        json_decref(rec);
    }
}

/* ---- end to end: a German box-office export ------------------------------------------------ */

#define GERMAN_SPEC                                                                                \
    "{\"fields\":{\"VA-Nr\":\"event_id\",\"Titel\":\"title\",\"Datum\":\"date\","                  \
    "\"Beginn\":\"time\",\"Spielst\\u00e4tte\":\"venue\",\"Saal\":\"hall\","                       \
    "\"Pl\\u00e4tze\":\"capacity\",\"Ort\":\"city\",\"Besetzung\":\"cast\","                       \
    "\"Beleg\":\"invoice_number\",\"Kunde\":\"customer_id\",\"Kaufzeit\":\"purchase_datetime\","   \
    "\"Kategorie\":\"ticket_category\",\"Anzahl\":\"quantity\",\"Preis\":\"sales_price\","         \
    "\"Grundpreis\":\"base_price\"},"                                                              \
    "\"values\":{\"ticket_category\":{\"Abo\":\"subscription\",\"Freikarte\":\"comp\","            \
    "\"Normal\":\"regular\"}},"                                                                    \
    "\"constants\":{\"currency\":\"EUR\"},"                                                        \
    "\"formats\":{\"date\":\"DD.MM.YYYY\",\"time\":\"HH:mm\",\"datetime\":\"DD.MM.YYYY "           \
    "HH:mm:ss\","                                                                                  \
    "\"utc_offset\":\"+01:00\",\"decimal_comma\":true},\"unmapped\":\"drop\"}"

static void test_end_to_end_german_sale(void **state)
{
    struct sd_mapping *m = mapping(GERMAN_SPEC);
    /* One line of a ';'-separated combined export, split by the CSV reader. */
    static const char *const row[] = {
        "VA-Nr=EVT-12345",
        "Titel=Otello",
        "Datum=03.10.2025",
        "Beginn=19:30",
        "Spielst\xc3\xa4tte=Staatsoper",
        "Saal=Gro\xc3\x9f\x65r Saal",
        "Pl\xc3\xa4tze=1250",
        "Ort=Berlin",
        "Besetzung=Anna Netrebko (Desdemona); Jonas Kaufmann (Otello)",
        "Beleg=A1234",
        "Kunde=C-9988",
        "Kaufzeit=15.04.2025 11:08:42",
        "Kategorie=Abo",
        "Anzahl=2",
        "Preis=89,00",
        "Grundpreis=1.075,50",
        NULL,
    };
    struct sd_issues errors, warnings;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    sd_issues_init(&warnings, SD_MAX_ISSUES);
    json_t *sale = apply_pairs(m, S, row, "/line/2", &errors);
    assert_non_null(sale);
    assert_json(sale, "{\"event_id\":\"EVT-12345\",\"invoice_number\":\"A1234\","
                      "\"customer_id\":\"C-9988\","
                      "\"purchase_datetime\":\"2025-04-15T11:08:42+01:00\","
                      "\"ticket_category\":\"subscription\",\"quantity\":2,"
                      "\"sales_price\":\"89.00\",\"base_price\":\"1075.50\","
                      "\"currency\":\"EUR\"}");
    struct sd_sale_rec s;
    if (sd_validate_sale(sale, "/line/2", &s, &errors, &warnings) != 0) {
        print_issues(&errors);
        fail_msg("mapped sale refused by the validator");
    }
    assert_int_equal(warnings.total, 0);
    assert_int_equal(s.sales_price_minor, 8900);
    assert_string_equal(s.purchase_datetime, "2025-04-15T10:08:42Z");
    assert_string_equal(s.currency, "EUR");
    sd_sale_rec_release(&s);

    json_t *event = apply_pairs(m, E, row, "/line/2", &errors);
    assert_non_null(event);
    struct sd_event_rec ev;
    if (sd_validate_event(event, "/line/2", &ev, &errors, &warnings) != 0) {
        print_issues(&errors);
        fail_msg("mapped event refused by the validator");
    }
    assert_int_equal(warnings.total, 0);
    assert_string_equal(ev.dup_key, "2025-10-03|19:30:00|staatsoper|gro\xc3\x9f\x65r saal");
    json_t *doc = load(ev.doc);
    assert_json(json_object_get(doc, "cast"),
                "[{\"name\":\"Anna Netrebko\",\"role\":\"Desdemona\"},"
                "{\"name\":\"Jonas Kaufmann\",\"role\":\"Otello\"}]");
    json_decref(doc);
    sd_event_rec_release(&ev);
    assert_int_equal(errors.total, 0);

    /* The validator, not the mapping, judges the converted values. */
    static const char *const bad[] = {"Beleg=A1",
                                      "VA-Nr=E",
                                      "Kunde=C",
                                      "Kaufzeit=31.02.2025 "
                                      "10:00:00",
                                      "Kategorie=Stehplatz",
                                      "Anzahl=0",
                                      "Preis=89,00 \xe2\x82\xac",
                                      NULL};
    json_t *sale2 = apply_pairs(m, S, bad, "/line/3", &errors);
    assert_non_null(sale2);
    assert_int_equal(sd_validate_sale(sale2, "/line/3", &s, &errors, &warnings), -EINVAL);
    assert_int_equal(errors.total, 4);
    assert_string_equal(errors.items[0].pointer, "/line/3/purchase_datetime");
    assert_string_equal(errors.items[1].pointer, "/line/3/ticket_category");
    assert_string_equal(errors.items[2].pointer, "/line/3/quantity");
    assert_string_equal(errors.items[3].pointer, "/line/3/sales_price");
    json_decref(sale2);
    json_decref(event);
    json_decref(sale);
    sd_issues_release(&errors);
    sd_issues_release(&warnings);
    sd_mapping_free(m);
}

/* ---- throughput ----------------------------------------------------------------------------- */

static void test_rows_per_second(void **state)
{
    struct sd_mapping *m = mapping(GERMAN_SPEC);
    static const char *const names[] = {"Beleg",  "VA-Nr", "Kunde",      "Kaufzeit", "Kategorie",
                                        "Anzahl", "Preis", "Grundpreis", "Notiz"};
    static const char *const values[] = {"A1234", "EVT-12345", "C-9988", "15.04.2025 11:08:42",
                                         "Abo",   "2",         "89,00",  "1.075,50",
                                         "x"};
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    /* Time-boxed (about half a second) so sanitizer builds stay quick; figures from Release. */
    size_t rows = 0;
    int64_t t0 = sd_mono_usec(), dt = 0;
    while (dt < 500000 && rows < 2000000) {
        for (int i = 0; i < 1000; i++) {
            json_t *out = sd_mapping_apply_row(m, S, names, values, 9, "/line", &errors);
            if (!out) {
                fail_msg("row refused");
            }
            json_decref(out);
        }
        rows += 1000;
        dt = sd_mono_usec() - t0;
    }
    print_message("apply_row, 9-column sales row: %zu rows in %.3f s = %.0f rows/s\n", rows,
                  (double)dt / 1e6, (double)rows * 1e6 / (double)(dt > 0 ? dt : 1));
    assert_int_equal(errors.total, 0);
    sd_issues_release(&errors);
    sd_mapping_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shorthand_cheat_sheet),
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_conversion_message),
        cmocka_unit_test(test_values_maps),
        cmocka_unit_test(test_constants),
        cmocka_unit_test(test_spec_cases),
        cmocka_unit_test(test_spec_limits),
        cmocka_unit_test(test_kind_filtering),
        cmocka_unit_test(test_unmapped),
        cmocka_unit_test(test_priority),
        cmocka_unit_test(test_apply_object),
        cmocka_unit_test(test_wide_and_null_row),
        cmocka_unit_test(test_to_json_roundtrip),
        cmocka_unit_test(test_fields_match_validators),
        cmocka_unit_test(test_amount_unit),
        cmocka_unit_test(test_end_to_end_german_sale),
        cmocka_unit_test(test_rows_per_second),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
