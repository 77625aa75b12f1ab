/* test_alerts.c — the pure parts of core/alerts.h: the Standard Webhooks signature (a known
 * answer: the vector the standardwebhooks libraries test themselves with, checked here against
 * the npm package's own sign()), malformed secrets, the retry back-off, and the settings check
 * (defaults, fields named in errors, the secret never in the view). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alerts.h"

static void test_sign_known_answer(void **state)
{
    (void)state;
    char sig[128];
    const char *body = "{\"test\": 2432232314}";
    assert_int_equal(sd_alerts_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                    "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, strlen(body),
                                    sig, sizeof(sig)),
                     0);
    assert_string_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /* another timestamp, another signature */
    char other[128];
    assert_int_equal(sd_alerts_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                    "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, body, strlen(body),
                                    other, sizeof(other)),
                     0);
    assert_string_not_equal(sig, other);
}

static void test_sign_bad_secrets(void **state)
{
    (void)state;
    char sig[128];
    static const char *const bad[] = {
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",       /* no prefix */
        "whsec_",                                 /* empty */
        "whsec_c2hvcnQ=",                         /* "short": below 24 bytes */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",  /* not a multiple of 4 */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2La=aSw", /* padding inside */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa!w", /* not base64 */
        NULL};
    for (size_t i = 0; bad[i]; i++) {
        assert_int_equal(sd_alerts_sign(bad[i], "id", 1, "{}", 2, sig, sizeof(sig)), -EINVAL);
    }
}

static void test_backoff(void **state)
{
    (void)state;
    assert_int_equal(sd_alerts_backoff_usec(1, 1.0), 10LL * 1000000);
    assert_int_equal(sd_alerts_backoff_usec(2, 1.0), 60LL * 1000000);
    assert_int_equal(sd_alerts_backoff_usec(3, 1.0), 300LL * 1000000);
    assert_int_equal(sd_alerts_backoff_usec(4, 1.0), 1800LL * 1000000);
    assert_int_equal(sd_alerts_backoff_usec(5, 1.0), 3600LL * 1000000);
    assert_int_equal(sd_alerts_backoff_usec(40, 1.0), 3600LL * 1000000);
    assert_int_equal(sd_alerts_backoff_usec(1, 0.01), 100LL * 1000);
}

static void test_give_up_after_a_day(void **state)
{
    (void)state;
    const int64_t t0 = 1700000000000000LL, hour = 3600LL * 1000000, day = 24 * hour;
    int64_t next = -1;
    assert_int_equal(sd_alerts_after_failure(t0, t0 + 1000, 1, 1.0, &next), SD_ALERT_PENDING);
    assert_int_equal(next, t0 + 1000 + 10LL * 1000000);
    assert_int_equal(sd_alerts_after_failure(t0, t0 + 20 * hour, 9, 1.0, &next), SD_ALERT_PENDING);
    assert_int_equal(next, t0 + 21 * hour);
    /* the next attempt would come after the day: given up now */
    assert_int_equal(sd_alerts_after_failure(t0, t0 + day - hour / 2, 9, 1.0, &next),
                     SD_ALERT_FAILED);
    assert_int_equal(next, 0);
    assert_int_equal(sd_alerts_after_failure(t0, t0 + day, 2, 1.0, &next), SD_ALERT_FAILED);
}

/* Check body text; returns the number of errors and, when 0, the doc and secret. */
static size_t check(const char *text, json_t **doc, char **secret, const char *want_ptr)
{
    json_t *body = json_loads(text, 0, NULL);
    assert_non_null(body);
    struct sd_issues errors;
    sd_issues_init(&errors, 20);
    *doc = NULL;
    *secret = NULL;
    int r = sd_alerts_settings_check(body, doc, secret, &errors);
    size_t n = errors.total;
    assert_int_equal(r, n ? -EINVAL : 0);
    if (want_ptr) {
        bool found = false;
        for (size_t i = 0; i < errors.n; i++) {
            found = found || strcmp(errors.items[i].pointer, want_ptr) == 0;
        }
        assert_true(found);
    }
    sd_issues_release(&errors);
    json_decref(body);
    return n;
}

static void test_settings_check(void **state)
{
    (void)state;
    json_t *doc = NULL;
    char *secret = NULL;
    assert_int_equal(check("{\"webhook_url\": null}", &doc, &secret, NULL), 0);
    assert_null(secret); /* left out: keep */
    json_t *rules = json_object_get(doc, "rules");
    assert_int_equal(json_integer_value(json_object_get(rules, "connector_failures_in_a_row")), 3);
    assert_true(json_is_true(json_object_get(rules, "dead_letters")));
    json_decref(doc);
    assert_int_equal(check("{\"webhook_url\": null, \"secret\": null, \"rules\": "
                           "{\"dead_letters\": false, \"quota_used\": 0.75}}",
                           &doc, &secret, NULL),
                     0);
    assert_string_equal(secret, ""); /* null: remove */
    rules = json_object_get(doc, "rules");
    assert_true(json_is_false(json_object_get(rules, "dead_letters")));
    assert_true(json_real_value(json_object_get(rules, "quota_used")) == 0.75);
    free(secret);
    json_decref(doc);
    assert_int_equal(check("{\"webhook_url\": \"https://alerts.example.com/x\", \"secret\": "
                           "\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"}",
                           &doc, &secret, NULL),
                     0);
    assert_string_equal(secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    /* the document stored never holds the secret */
    char *text = json_dumps(doc, JSON_COMPACT);
    assert_null(strstr(text, "whsec_"));
    free(text);
    free(secret);
    json_decref(doc);
    assert_int_equal(
        check("{\"webhook_url\": \"http://example.com/x\"}", &doc, &secret, "/webhook_url"), 1);
    assert_int_equal(check("{\"webhook_url\": 7}", &doc, &secret, "/webhook_url"), 1);
    assert_int_equal(check("{\"secret\": \"whsec_c2hvcnQ=\"}", &doc, &secret, "/secret"), 1);
    assert_int_equal(check("{\"rules\": {\"record_count_drop\": {\"below_percent\": 0}}}", &doc,
                           &secret, "/rules/record_count_drop"),
                     1);
    assert_int_equal(check("{\"rules\": {\"connector_failures_in_a_row\": true}}", &doc, &secret,
                           "/rules/connector_failures_in_a_row"),
                     1);
    assert_int_equal(check("{\"rules\": {\"nope\": 1}, \"extra\": 1}", &doc, &secret, "/rules"), 2);
    /* quota_used starts at half a window */
    assert_int_equal(
        check("{\"rules\": {\"quota_used\": 0.3}}", &doc, &secret, "/rules/quota_used"), 1);
    assert_int_equal(
        check("{\"rules\": {\"quota_used\": 0.5, \"rejected_share\": 0.01}}", &doc, &secret, NULL),
        0);
    json_decref(doc);
}

static void test_settings_view(void **state)
{
    (void)state;
    json_t *v = sd_alerts_settings_view(NULL, false);
    assert_true(json_is_true(json_object_get(v, "defaults")));
    assert_true(json_is_null(json_object_get(v, "webhook_url")));
    assert_true(json_is_false(json_object_get(v, "secret_set")));
    assert_null(json_object_get(v, "secret"));
    json_decref(v);
    v = sd_alerts_settings_view("{\"webhook_url\":\"https://a.example/x\",\"rules\":"
                                "{\"rejected_share\":false}}",
                                true);
    assert_true(json_is_false(json_object_get(v, "defaults")));
    assert_true(json_is_true(json_object_get(v, "secret_set")));
    assert_true(json_is_false(json_object_get(json_object_get(v, "rules"), "rejected_share")));
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_known_answer), cmocka_unit_test(test_sign_bad_secrets),
        cmocka_unit_test(test_backoff),           cmocka_unit_test(test_settings_check),
        cmocka_unit_test(test_settings_view),     cmocka_unit_test(test_give_up_after_a_day),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
