/* test_alerts_store.c — alert settings and history (store/alerts.h) through the store
 * interface.
 * store suite: both backends
 *
 *  - test_settings: none until put; put stores doc and secret; a put without a secret keeps
 *    it, "" removes it; tenants are apart.
 *  - test_open_dedupe: one open alert per (tenant, rule, subject) within the window (-EEXIST);
 *    another subject, rule or tenant opens its own; once resolved, or once the window passed,
 *    a new one opens; history is newest first and per tenant.
 *  - test_claim_delivery: only pending alerts whose time has come are claimed, each once
 *    while its lease lasts; delivery_set records the outcome; a given-up alert is never
 *    claimed again; an unknown id is -ENOENT.
 *  - test_prune: a tenant keeps its newest SD_ALERTS_KEEP alerts. */
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
#include "store/alerts.h"
#include "store/store.h"
#include "store_fixture.h"

#define T0 1700000000000000LL
#define DAY (86400LL * 1000000)

struct fx {
    struct sd_test_store ts;
    struct sd_store_handle *h;
    int64_t tenant, other;
};

static int setup(void **state)
{
    struct fx *f = sd_calloc(1, sizeof(*f));
    sd_test_store_setup(&f->ts, "alerts", &f->h);
    f->tenant = sd_test_store_tenant(f->h, "venue", "Venue");
    f->other = sd_test_store_tenant(f->h, "other", "Other");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    sd_test_store_release(&f->ts, f->h);
    free(f);
    return 0;
}

static int open_one(struct fx *f, int64_t tenant, const char *id, const char *rule,
                    const char *subject, int64_t at, enum sd_alert_delivery d)
{
    struct sd_alert a = {.id = (char *)id,
                         .tenant_id = tenant,
                         .env = SD_ENV_PROD,
                         .rule = (char *)rule,
                         .subject = (char *)subject,
                         .doc = "{\"message\":\"m\"}",
                         .created_usec = at,
                         .delivery = d,
                         .next_attempt_usec = at};
    return sd_store_alert_open(f->h, &a, DAY);
}

static void test_settings(void **state)
{
    struct fx *f = *state;
    char *doc = NULL, *secret = NULL;
    assert_int_equal(sd_store_alert_settings_get(f->h, f->tenant, &doc, &secret), -ENOENT);
    assert_int_equal(sd_store_alert_settings_put(f->h, f->tenant, "{\"a\":1}", "whsec_AAAA"), 0);
    assert_int_equal(sd_store_alert_settings_get(f->h, f->tenant, &doc, &secret), 0);
    assert_string_equal(doc, "{\"a\":1}");
    assert_string_equal(secret, "whsec_AAAA");
    free(doc);
    free(secret);
    assert_int_equal(sd_store_alert_settings_put(f->h, f->tenant, "{\"a\":2}", NULL), 0);
    assert_int_equal(sd_store_alert_settings_get(f->h, f->tenant, &doc, &secret), 0);
    assert_string_equal(doc, "{\"a\":2}");
    assert_string_equal(secret, "whsec_AAAA"); /* kept */
    free(doc);
    free(secret);
    assert_int_equal(sd_store_alert_settings_put(f->h, f->tenant, "{\"a\":3}", ""), 0);
    assert_int_equal(sd_store_alert_settings_get(f->h, f->tenant, &doc, &secret), 0);
    assert_null(secret); /* removed */
    free(doc);
    assert_int_equal(sd_store_alert_settings_get(f->h, f->other, &doc, NULL), -ENOENT);
    assert_int_equal(sd_store_alert_settings_put(f->h, f->tenant, NULL, NULL), -EINVAL);
}

static void test_open_dedupe(void **state)
{
    struct fx *f = *state;
    assert_int_equal(open_one(f, f->tenant, "alr_1", "dead_letters", "tgt_a", T0, 1), 0);
    assert_int_equal(open_one(f, f->tenant, "alr_2", "dead_letters", "tgt_a", T0 + 10, 1), -EEXIST);
    assert_int_equal(open_one(f, f->tenant, "alr_3", "dead_letters", "tgt_b", T0 + 20, 1), 0);
    assert_int_equal(open_one(f, f->tenant, "alr_4", "quota_used", "tgt_a", T0 + 30, 0), 0);
    assert_int_equal(open_one(f, f->other, "alr_5", "dead_letters", "tgt_a", T0 + 40, 1), 0);
    /* resolved: the next one opens */
    assert_int_equal(sd_store_alert_resolve(f->h, f->tenant, "dead_letters", "tgt_a", T0 + 50), 1);
    assert_int_equal(sd_store_alert_resolve(f->h, f->tenant, "dead_letters", "tgt_a", T0 + 51), 0);
    assert_int_equal(open_one(f, f->tenant, "alr_6", "dead_letters", "tgt_a", T0 + 60, 1), 0);
    /* 24 h later the same open alert no longer holds the next one back */
    assert_int_equal(open_one(f, f->tenant, "alr_7", "dead_letters", "tgt_a", T0 + 60 + DAY, 1), 0);
    /* an id is unique */
    assert_int_equal(open_one(f, f->tenant, "alr_7", "dead_letters", "tgt_z", T0 + 70, 1), -EEXIST);
    struct sd_alert *v = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_alert_history(f->h, f->tenant, 10, &v, &n), 0);
    assert_int_equal(n, 5);
    static const char *const want[] = {"alr_7", "alr_6", "alr_4", "alr_3", "alr_1"};
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(v[i].id, want[i]);
        assert_int_equal(v[i].tenant_id, f->tenant);
        assert_int_equal(v[i].env, SD_ENV_PROD);
        assert_string_equal(v[i].doc, "{\"message\":\"m\"}");
    }
    assert_int_equal(v[4].resolved_usec, T0 + 50);
    assert_int_equal(v[1].resolved_usec, 0);
    assert_string_equal(v[2].rule, "quota_used");
    assert_int_equal(v[2].delivery, SD_ALERT_NOT_SENT);
    sd_alerts_free(v, n);
    assert_int_equal(sd_store_alert_history(f->h, f->other, 10, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].id, "alr_5");
    sd_alerts_free(v, n);
    assert_int_equal(sd_store_alert_history(f->h, f->tenant, 0, &v, &n), -EINVAL);
}

static void test_claim_delivery(void **state)
{
    struct fx *f = *state;
    assert_int_equal(open_one(f, f->tenant, "alr_a", "r", "s1", T0, SD_ALERT_PENDING), 0);
    assert_int_equal(open_one(f, f->tenant, "alr_b", "r", "s2", T0 + 5, SD_ALERT_PENDING), 0);
    assert_int_equal(open_one(f, f->tenant, "alr_c", "r", "s3", T0, SD_ALERT_NOT_SENT), 0);
    struct sd_alert *v = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_alert_claim(f->h, T0 + 1, 1000, 10, &v, &n), 0);
    assert_int_equal(n, 1); /* alr_b's time has not come, alr_c is not sent */
    assert_string_equal(v[0].id, "alr_a");
    sd_alerts_free(v, n);
    /* leased: not claimed again before the lease ends */
    assert_int_equal(sd_store_alert_claim(f->h, T0 + 10, 1000, 10, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].id, "alr_b");
    sd_alerts_free(v, n);
    assert_int_equal(sd_store_alert_claim(f->h, T0 + 2000, 1000, 10, &v, &n), 0);
    assert_int_equal(n, 2);
    sd_alerts_free(v, n);
    assert_int_equal(
        sd_store_alert_delivery_set(f->h, "alr_a", SD_ALERT_DELIVERED, 1, 0, T0 + 3000, NULL), 0);
    assert_int_equal(
        sd_store_alert_delivery_set(f->h, "alr_b", SD_ALERT_FAILED, 9, 0, 0, "HTTP 500"), 0);
    assert_int_equal(sd_store_alert_delivery_set(f->h, "alr_none", SD_ALERT_FAILED, 9, 0, 0, NULL),
                     -ENOENT);
    assert_int_equal(sd_store_alert_claim(f->h, T0 + DAY, 1000, 10, &v, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(sd_store_alert_history(f->h, f->tenant, 10, &v, &n), 0);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].id, "alr_a") == 0) {
            assert_int_equal(v[i].delivery, SD_ALERT_DELIVERED);
            assert_int_equal(v[i].attempts, 1);
            assert_int_equal(v[i].delivered_usec, T0 + 3000);
            assert_null(v[i].last_error);
        } else if (strcmp(v[i].id, "alr_b") == 0) {
            assert_int_equal(v[i].delivery, SD_ALERT_FAILED);
            assert_int_equal(v[i].attempts, 9);
            assert_string_equal(v[i].last_error, "HTTP 500");
        }
    }
    sd_alerts_free(v, n);
}

static void test_prune(void **state)
{
    struct fx *f = *state;
    for (int i = 1; i <= SD_ALERTS_KEEP + 3; i++) {
        char id[32], subject[32];
        snprintf(id, sizeof(id), "alr_%d", i);
        snprintf(subject, sizeof(subject), "s%d", i);
        assert_int_equal(open_one(f, f->tenant, id, "r", subject, T0 + i, 0), 0);
    }
    struct sd_alert *v = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_alert_history(f->h, f->tenant, SD_ALERTS_PAGE_MAX, &v, &n), 0);
    assert_int_equal(n, SD_ALERTS_KEEP);
    assert_string_equal(v[n - 1].id, "alr_4");
    sd_alerts_free(v, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_dedupe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_delivery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
