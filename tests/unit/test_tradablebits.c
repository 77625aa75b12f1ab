/* test_tradablebits.c — the tradablebits connector's declarations: its settings are checked as
 * a whole (a backfill start that is not a real date, a lower-case or non-letter currency, both
 * streams switched off are refused with a pointer to the setting; the required currency and
 * event city are named when missing; a complete configuration passes with the issue's defaults
 * filled), and its quotas follow the ledger's rules and stay under 600 calls in any rolling
 * minute. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "core/connector.h"
#include "core/quota.h"

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
    /* both streams off */
    json_t *in = good();
    json_object_set_new(in, "pull_fans", json_false());
    json_object_set_new(in, "pull_tickets", json_false());
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    assert_null(sd_connector_check_settings(c, in, &errors));
    assert_true(has(&errors, "/settings", "both off"));
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_quotas),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
