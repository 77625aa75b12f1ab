/* test_tradablebits.c — the tradablebits connector's declarations: its settings are checked as
 * a whole (a backfill start that is not a real date, a lower-case or non-letter currency, both
 * streams switched off are refused with a pointer to the setting; the required currency and
 * event city are named when missing; a complete configuration passes with the issue's defaults
 * filled), and its quotas follow the ledger's rules and stay under 600 calls in any rolling
 * minute. The push half's pure parts: a sale with its customer and event becomes the ticket
 * the create call takes (ticket_key source:invoice, GMT purchase time, seats and amount as
 * text), the bulk body carries one form field per ticket, and a bulk answer is read row by row
 * (rows found by their index, in any order; duplicates a hit; an unknown status an error; a
 * row outside the call or given twice ignored; a missing row reported; an answer that is not
 * {"data": [...]} refused whole). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "core/connector.h"
#include "core/quota.h"
#include "connectors/tradablebits/tradablebits.h"

static json_t *good(void)
{
    return json_pack("{s:s, s:s, s:s, s:s}", "api_key", "k", "api_secret", "s", "currency", "CAD",
                     "event_city", "Vancouver");
}

static bool has(const struct sd_issues *e, const char *ptr, const char *why)
{
    for (size_t i = 0; i < e->n; i++) {
        if (strcmp(e->items[i].pointer, ptr) == 0 && strstr(e->items[i].message, why)) {
            return true;
        }
    }
    return false;
}

static void test_defaults(void **state)
{
    (void)state;
    const struct sd_connector *c = sd_connector_find("tradablebits");
    assert_non_null(c);
    assert_int_equal(c->kind, SD_CONNECTOR_SOURCE | SD_CONNECTOR_TARGET);
    json_t *in = good();
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    json_t *out = sd_connector_check_settings(c, in, &errors);
    assert_non_null(out);
    assert_string_equal(json_string_value(json_object_get(out, "base_url")),
                        "https://tradablebits.com/api/v1/");
    assert_string_equal(json_string_value(json_object_get(out, "fans_updated_path")),
                        "/crm/fans/updated");
    assert_string_equal(json_string_value(json_object_get(out, "tickets_path")), "/crm/tickets");
    assert_int_equal(json_integer_value(json_object_get(out, "tickets_page_size")), 1000);
    json_decref(out);
    json_decref(in);
    sd_issues_release(&errors);
}

static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *key, *value, *ptr, *why;
    } cases[] = {
        {"backfill_start", "2025-13-01", "/settings/backfill_start", "YYYY-MM-DD"},
        {"backfill_start", "2025-01-01x", "/settings/backfill_start", "characters"},
        {"backfill_start", "01.02.2025", "/settings/backfill_start", "YYYY-MM-DD"},
        {"currency", "cad", "/settings/currency", "uppercase ISO 4217"},
        {"currency", "C4D", "/settings/currency", "uppercase ISO 4217"},
    };
    const struct sd_connector *c = sd_connector_find("tradablebits");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *in = good();
        json_object_set_new(in, cases[i].key, json_string(cases[i].value));
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        json_t *out = sd_connector_check_settings(c, in, &errors);
        if (out || !has(&errors, cases[i].ptr, cases[i].why)) {
            fail_msg("%s = '%s' not refused at %s with '%s'", cases[i].key, cases[i].value,
                     cases[i].ptr, cases[i].why);
        }
        json_decref(in);
        sd_issues_release(&errors);
    }
    /* every stream off */
    json_t *in = good();
    json_object_set_new(in, "pull_fans", json_false());
    json_object_set_new(in, "pull_tickets", json_false());
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    assert_null(sd_connector_check_settings(c, in, &errors));
    assert_true(has(&errors, "/settings", "all off"));
    sd_issues_release(&errors);
    /* activities alone are a pull of their own */
    json_object_set_new(in, "pull_activities", json_true());
    sd_issues_init(&errors, SD_MAX_ISSUES);
    json_t *ok = sd_connector_check_settings(c, in, &errors);
    assert_non_null(ok);
    assert_int_equal(errors.total, 0);
    json_decref(ok);
    sd_issues_release(&errors);
    json_decref(in);
    /* the required ones, named */
    in = json_pack("{s:s, s:s}", "api_key", "k", "api_secret", "s");
    sd_issues_init(&errors, SD_MAX_ISSUES);
    assert_null(sd_connector_check_settings(c, in, &errors));
    assert_true(has(&errors, "/settings/currency", ""));
    assert_true(has(&errors, "/settings/event_city", ""));
    sd_issues_release(&errors);
    json_decref(in);
}

static void test_quotas(void **state)
{
    (void)state;
    const struct sd_connector *c = sd_connector_find("tradablebits");
    assert_non_null(c->quotas);
    assert_int_equal(sd_quota_check(c->quotas), 0);
    /* A rolling minute overlaps at most 60 s / window + 1 aligned windows. */
    for (const struct sd_quota *q = c->quotas; q->name; q++) {
        int64_t overlap = 60 * 1000000LL / q->window_usec + 1;
        assert_true(overlap * q->calls <= 600);
        assert_true(q->write_reserve > 0 && q->write_reserve < q->calls);
    }
    assert_string_equal(c->credential_settings[0], "api_key");
    assert_null(c->credential_settings[1]);
}

static void test_ticket_and_bulk_body(void **state)
{
    (void)state;
    json_t *sale = json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:s}", "invoice_number", "A 1&2",
                             "event_id", "EV-1", "customer_id", "C-9", "purchase_datetime",
                             "2025-04-15T11:08:42.250Z", "quantity", 3, "sales_price", "89.50",
                             "ticket_category", "vip");
    json_t *cust = json_pack("{s:s, s:s, s:s}", "email", "a@b.test", "first_name", "Ann",
                             "last_name", "Lee");
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s}", "title", "Otello", "date", "2026-05-01",
                           "time", "19:30:00", "venue", "Arena");
    json_t *t = tb_ticket_from_sale("webhook", sale, cust, ev);
    assert_non_null(t);
    json_t *want = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
                             "ticket_key", "webhook:A 1&2", "first_name", "Ann", "last_name",
                             "Lee", "email", "a@b.test", "purchase_timestamp",
                             "2025-04-15 11:08:42", "paid_amount", "89.50", "num_seats", "3",
                             "event_key", "EV-1", "price_code", "vip", "customer_key", "C-9",
                             "event_name", "Otello", "venue_name", "Arena");
    json_object_set_new(want, "event_date", json_string("2026-05-01T19:30:00"));
    assert_true(json_equal(t, want));
    /* No customer or event: their fields are left out (the API names them per row). */
    json_t *bare = tb_ticket_from_sale(NULL, sale, NULL, NULL);
    assert_string_equal(json_string_value(json_object_get(bare, "ticket_key")), "hub:A 1&2");
    assert_null(json_object_get(bare, "email"));
    assert_null(json_object_get(bare, "event_date"));
    assert_null(json_object_get(t, "is_deleted"));
    json_object_set_new(sale, "status", json_string("cancelled"));
    json_t *cancelled = tb_ticket_from_sale("webhook", sale, cust, ev);
    assert_string_equal(json_string_value(json_object_get(cancelled, "is_deleted")), "true");
    json_decref(cancelled);
    json_object_del(sale, "status");
    json_object_del(sale, "invoice_number");
    assert_null(tb_ticket_from_sale("webhook", sale, cust, ev));

    json_t *two[] = {t, bare};
    size_t len = 0;
    char *body = tb_bulk_body("tickets", two, 2, &len);
    assert_non_null(body);
    assert_int_equal(len, strlen(body));
    /* two fields, each one JSON object, form-encoded ('&' inside a value escaped) */
    assert_int_equal(strncmp(body, "tickets=%7B", 11), 0);
    const char *amp = strchr(body, '&');
    assert_non_null(amp);
    assert_null(strchr(amp + 1, '&'));
    assert_int_equal(strncmp(amp, "&tickets=%7B", 12), 0);
    assert_non_null(strstr(body, "A+1%262"));
    free(body);
    json_decref(want);
    json_decref(t);
    json_decref(bare);
    json_decref(sale);
    json_decref(cust);
    json_decref(ev);
}

static void test_bulk_answer(void **state)
{
    (void)state;
    const char *ans =
        "{\"meta\": {\"count\": 5}, \"data\": ["
        "{\"row\": 2, \"ticket_id\": 7, \"status\": \"duplicate\"},"
        "{\"row\": 0, \"ticket_id\": \"5\", \"status\": \"success\"},"
        "{\"row\": 1, \"ticket_key\": \"k\", \"status\": \"error\", \"errors\": [\"email "
        "is required\"]},"
        "{\"row\": 3, \"status\": \"strange\"},"
        "{\"row\": 2, \"status\": \"error\"},"
        "{\"row\": 9, \"status\": \"success\"}]}";
    struct tb_row rows[5];
    char why[160];
    assert_int_equal(tb_bulk_answer_parse(ans, strlen(ans), rows, 5, why, sizeof(why)), 0);
    assert_int_equal(rows[0].outcome, TB_ROW_CREATED);
    assert_string_equal(rows[0].ticket_id, "5");
    assert_int_equal(rows[1].outcome, TB_ROW_ERROR);
    assert_null(rows[1].ticket_id);
    assert_non_null(strstr(rows[1].text, "email is required"));
    assert_int_equal(rows[2].outcome, TB_ROW_DUPLICATE); /* the first answer for row 2 stands */
    assert_string_equal(rows[2].ticket_id, "7");
    assert_int_equal(rows[3].outcome, TB_ROW_ERROR);
    assert_int_equal(rows[4].outcome, TB_ROW_MISSING);
    assert_null(rows[4].text);
    tb_rows_release(rows, 5);
    /* rows without an index: by position */
    const char *plain = "{\"data\": [{\"status\": \"success\", \"ticket_id\": 1},"
                        " {\"status\": \"duplicate\", \"ticket_id\": 2}]}";
    assert_int_equal(tb_bulk_answer_parse(plain, strlen(plain), rows, 2, why, sizeof(why)), 0);
    assert_int_equal(rows[0].outcome, TB_ROW_CREATED);
    assert_int_equal(rows[1].outcome, TB_ROW_DUPLICATE);
    assert_string_equal(rows[1].ticket_id, "2");
    tb_rows_release(rows, 2);
    /* not a list of rows: refused whole, every row missing */
    const char *bad[] = {"", "[]", "{\"data\": {}}", "{\"meta\": {}}", "{\"data\": [1,"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(tb_bulk_answer_parse(bad[i], strlen(bad[i]), rows, 2, why, sizeof(why)),
                         -EPROTO);
        assert_int_equal(rows[0].outcome, TB_ROW_MISSING);
        assert_int_equal(rows[1].outcome, TB_ROW_MISSING);
        assert_non_null(strstr(why, "data"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_quotas),
        cmocka_unit_test(test_ticket_and_bulk_body),
        cmocka_unit_test(test_bulk_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
