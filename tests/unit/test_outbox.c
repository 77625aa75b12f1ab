/* test_outbox.c — the audience push outbox without the network: the back-off schedule and its
 * jitter bounds, how answers are classified, the 429 wait, the rate plan (checked against a
 * brute-force reading of "at most L sends in any rolling window"), push target validation, and
 * the store's outbox operations on a real store: FIFO and the rate limit at claim time,
 * leases (no double claim, takeover after expiry with the same Idempotency-Key), fencing of
 * late outcomes, the remote segment id, replay, and claims racing from two store handles (two
 * processes) with two threads each; on PostgreSQL also two nodes claiming a long queue without
 * a rate (every lease decided by FOR UPDATE SKIP LOCKED alone), each item exactly once.
 * store suite: both backends */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "connectors/audience_push/audience_push.h"
#include "core/outbox.h"
#include "core/targets.h"
#include "store/audience.h"
#include "store/store.h"
#include "store_fixture.h"

#define SEC 1000000LL
#define HOUR (3600 * SEC)

/* ---- back-off -------------------------------------------------------------------------------- */

static void test_backoff_schedule_and_jitter_bounds(void **state)
{
    (void)state;
    static const int64_t want[][2] = {
        {0, 30 * SEC},             /* after attempt 1 */
        {30 * SEC, 300 * SEC},     /* after attempt 2 */
        {300 * SEC, 1800 * SEC},   /* after attempt 3 */
        {1800 * SEC, 7200 * SEC},  /* after attempt 4 */
        {7200 * SEC, 21600 * SEC}, /* after attempt 5 */
    };
    int64_t min_total = 0, max_total = 0;
    for (int failed = 1; failed <= 5; failed++) {
        int64_t lo, hi;
        sd_outbox_backoff_bounds(failed, &lo, &hi);
        assert_int_equal(lo, want[failed - 1][0]);
        assert_int_equal(hi, want[failed - 1][1]);
        min_total += lo;
        max_total += hi;
        /* The extremes of the random value reach the ends of the step. */
        assert_int_equal(sd_outbox_backoff_usec(failed, 0, 1.0), lo);
        assert_true(sd_outbox_backoff_usec(failed, UINT64_MAX, 1.0) >= hi - 1);
        assert_true(sd_outbox_backoff_usec(failed, UINT64_MAX, 1.0) <= hi);
        /* Many random draws stay inside and spread over the step (full jitter). */
        int64_t seen_lo = INT64_MAX, seen_hi = 0;
        for (int i = 0; i < 2000; i++) {
            uint64_t rnd;
            assert_int_equal(sd_random_bytes(&rnd, sizeof(rnd)), 0);
            int64_t v = sd_outbox_backoff_usec(failed, rnd, 1.0);
            assert_true(v >= lo && v <= hi);
            seen_lo = v < seen_lo ? v : seen_lo;
            seen_hi = v > seen_hi ? v : seen_hi;
            /* The scale knob shrinks the same draw proportionally. */
            int64_t s = sd_outbox_backoff_usec(failed, rnd, 0.001);
            assert_true(s >= lo / 1000 - 1 && s <= hi / 1000 + 1);
        }
        assert_true(seen_lo < lo + (hi - lo) / 10);
        assert_true(seen_hi > hi - (hi - lo) / 10);
    }
    /* Six attempts spread over hours, not seconds: at least 2 h 35 min between first and last. */
    assert_true(min_total >= 2 * HOUR + 35 * 60 * SEC);
    assert_true(max_total <= 9 * HOUR);
    /* Out-of-range inputs are clamped to the schedule's ends. */
    int64_t lo, hi;
    sd_outbox_backoff_bounds(0, &lo, &hi);
    assert_int_equal(hi, 30 * SEC);
    sd_outbox_backoff_bounds(99, &lo, &hi);
    assert_int_equal(hi, 21600 * SEC);
}

/* ---- classification -------------------------------------------------------------------------- */

static void test_classification(void **state)
{
    (void)state;
    static const struct {
        int err;
        long status;
        bool has_id, update;
        enum sd_verdict want;
    } cases[] = {
        {0, 201, true, false, SD_VERDICT_OK},
        {0, 200, true, false, SD_VERDICT_OK},
        {0, 202, true, false, SD_VERDICT_OK},
        {0, 201, false, false, SD_VERDICT_REJECT}, /* created, but which segment? */
        {0, 204, false, false, SD_VERDICT_REJECT},
        {0, 200, false, true, SD_VERDICT_OK}, /* an update keeps the known id */
        {0, 204, false, true, SD_VERDICT_OK},
        {0, 500, false, false, SD_VERDICT_RETRY},
        {0, 502, false, false, SD_VERDICT_RETRY},
        {0, 503, false, false, SD_VERDICT_RETRY},
        {0, 504, false, false, SD_VERDICT_RETRY},
        {0, 408, false, false, SD_VERDICT_RETRY},
        {0, 429, false, false, SD_VERDICT_WAIT},
        {0, 400, false, false, SD_VERDICT_REJECT},
        {0, 401, false, false, SD_VERDICT_REJECT},
        {0, 403, false, false, SD_VERDICT_REJECT},
        {0, 404, false, false, SD_VERDICT_REJECT},
        {0, 409, false, false, SD_VERDICT_REJECT},
        {0, 422, false, false, SD_VERDICT_REJECT},
        {0, 301, false, false, SD_VERDICT_REJECT},
        {0, 302, false, false, SD_VERDICT_REJECT},
        {0, 307, false, false, SD_VERDICT_REJECT},
        {0, 100, false, false, SD_VERDICT_REJECT},
        {-ETIMEDOUT, 0, false, false, SD_VERDICT_RETRY},
        {-ECONNREFUSED, 0, false, false, SD_VERDICT_RETRY},
        {-EIO, 0, false, false, SD_VERDICT_RETRY},
        {-EFBIG, 0, false, false, SD_VERDICT_REJECT},
        {0, 509, false, false, SD_VERDICT_WAIT}, /* the one classifier: bandwidth limit */
        {0, 202, false, true, SD_VERDICT_OK},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum sd_verdict v =
            sd_audience_push_judge(cases[i].err, cases[i].status, cases[i].has_id, cases[i].update);
        if (v != cases[i].want) {
            fail_msg("case %zu (err %d, status %ld): got %d, want %d", i, cases[i].err,
                     cases[i].status, (int)v, (int)cases[i].want);
        }
    }
}

static void test_retry_after(void **state)
{
    (void)state;
    assert_int_equal(sd_outbox_retry_after_usec("5", 1.0), 5 * SEC);
    assert_int_equal(sd_outbox_retry_after_usec("0", 1.0), 0);
    assert_int_equal(sd_outbox_retry_after_usec("86400", 1.0), 3600 * SEC); /* bounded */
    assert_int_equal(sd_outbox_retry_after_usec(NULL, 1.0), 60 * SEC);      /* default */
    assert_int_equal(sd_outbox_retry_after_usec("soon", 1.0), 60 * SEC);
    assert_int_equal(sd_outbox_retry_after_usec(NULL, 0.001), 60 * 1000); /* scaled default */
    assert_int_equal(sd_outbox_retry_after_usec("2", 0.001), 2 * SEC);    /* theirs: not scaled */
    assert_int_equal(sd_outbox_retry_after_usec("Wed, 21 Oct 2015 07:28:00 GMT", 1.0), 0);
}

/* ---- the rate plan --------------------------------------------------------------------------- */

static size_t in_window(const int64_t *v, size_t n, int64_t t, int64_t w)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        c += v[i] > t - w && v[i] <= t;
    }
    return c;
}

static void test_plan_examples(void **state)
{
    (void)state;
    const int64_t now = 1000 * HOUR, w = HOUR;
    int64_t slots[4];

    /* Nothing sent: two may go now, the third one window after the first. */
    sd_outbox_plan(NULL, 0, 2, w, now, 3, slots);
    assert_int_equal(slots[0], now);
    assert_int_equal(slots[1], now);
    assert_int_equal(slots[2], now + w);

    /* Limit 2, sent at now-50min and now-10min: the next goes when the older leaves (+10 min),
     * the one after when the newer does. */
    int64_t sends[] = {now - 50 * 60 * SEC, now - 10 * 60 * SEC};
    sd_outbox_plan(sends, 2, 2, w, now, 3, slots);
    assert_int_equal(slots[0], now + 10 * 60 * SEC);
    assert_int_equal(slots[1], now + 50 * 60 * SEC);
    assert_int_equal(slots[2], now + 70 * 60 * SEC);

    /* 50 per hour, 50 sent over the last 50 minutes: the 51st waits for the first send + 1 h. */
    int64_t fifty[50];
    for (int i = 0; i < 50; i++) {
        fifty[i] = now - (50 - i) * 60 * SEC;
    }
    sd_outbox_plan(fifty, 50, 50, w, now, 1, slots);
    assert_int_equal(slots[0], fifty[0] + w);

    /* Limit lowered below what was sent: wait until enough have left the window. */
    int64_t three[] = {now - 30 * 60 * SEC, now - 20 * 60 * SEC, now - 10 * 60 * SEC};
    sd_outbox_plan(three, 3, 1, w, now, 1, slots);
    assert_int_equal(slots[0], three[2] + w);

    /* Below the limit: at once. */
    sd_outbox_plan(three, 3, 50, w, now, 2, slots);
    assert_int_equal(slots[0], now);
    assert_int_equal(slots[1], now);
}

static void test_plan_brute_force(void **state)
{
    (void)state;
    const int64_t w = 100; /* small units so minimality can be checked step by step */
    for (int round = 0; round < 300; round++) {
        uint32_t rnd[8];
        assert_int_equal(sd_random_bytes(rnd, sizeof(rnd)), 0);
        int64_t now = 1000;
        int64_t limit = 1 + rnd[0] % 5;
        size_t ns = rnd[1] % 8, nw = 1 + rnd[2] % 8;
        int64_t sends[8];
        for (size_t i = 0; i < ns; i++) {
            sends[i] = now - (int64_t)(rnd[3 + i % 5] >> (i * 3)) % w; /* inside the window */
        }
        /* ascending */
        for (size_t i = 1; i < ns; i++) {
            for (size_t k = i; k > 0 && sends[k - 1] > sends[k]; k--) {
                int64_t t = sends[k];
                sends[k] = sends[k - 1];
                sends[k - 1] = t;
            }
        }
        int64_t slots[8];
        sd_outbox_plan(sends, ns, limit, w, now, nw, slots);
        int64_t all[16];
        size_t na = 0;
        for (size_t i = 0; i < ns; i++) {
            all[na++] = sends[i];
        }
        for (size_t j = 0; j < nw; j++) {
            int64_t t = slots[j];
            assert_true(t >= now);
            assert_true(j == 0 || t >= slots[j - 1]); /* FIFO */
            /* Allowed at t, and not one unit earlier (unless it is now). */
            assert_true(in_window(all, na, t, w) < (size_t)limit);
            if (t > now) {
                assert_true(in_window(all, na, t - 1, w) >= (size_t)limit);
            }
            all[na++] = t;
        }
    }
}

/* ---- targets --------------------------------------------------------------------------------- */

struct fx {
    struct sd_test_store st;
    struct sd_store_handle *h;
    struct sd_tenant acme;
};

static int setup(void **state)
{
    struct fx *f = sd_calloc(1, sizeof(*f));
    sd_test_store_setup(&f->st, "outbox", &f->h);
    assert_int_equal(sd_store_tenant_create(f->h, "acme", "Acme Tickets"), 0);
    assert_int_equal(sd_store_tenant_get(f->h, "acme", &f->acme), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    sd_tenant_release(&f->acme);
    sd_test_store_release(&f->st, f->h);
    free(f);
    return 0;
}

static bool has_error(const struct sd_issues *e, const char *pointer)
{
    for (size_t i = 0; i < e->n; i++) {
        if (strcmp(e->items[i].pointer, pointer) == 0) {
            return true;
        }
    }
    return false;
}

/* Create a target from JSON text; returns its id (heap) or fails the test. */
static char *add_target(struct fx *f, const char *json)
{
    json_t *body = json_loads(json, 0, NULL);
    assert_non_null(body);
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    char *id = NULL;
    int r = sd_target_config_create(f->h, &f->acme, body, &id, &errors);
    if (r != 0) {
        fail_msg("target create: %d (%s %s)", r, errors.n ? errors.items[0].pointer : "",
                 errors.n ? errors.items[0].message : "");
    }
    sd_issues_release(&errors);
    json_decref(body);
    return id;
}

static void test_target_validation(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *body;
        const char *pointers[4];
    } bad[] = {
        {"{}", {"/type", "/environment", "/url", "/app_key"}},
        {"{\"type\":\"webhook\",\"environment\":\"staging\",\"url\":\"https://x.example/s\","
         "\"app_key\":\"k\",\"secure_token\":\"t\"}",
         {"/type", "/environment"}},
        {"{\"type\":\"audience_push\",\"environment\":\"test\",\"url\":\"http://crm.example/s\","
         "\"app_key\":\"k\",\"secure_token\":\"t\"}",
         {"/url"}},
        {"{\"type\":\"audience_push\",\"environment\":\"test\",\"url\":\"ftp://crm.example/s\","
         "\"app_key\":\"k\",\"secure_token\":\"t\"}",
         {"/url"}},
        {"{\"type\":\"audience_push\",\"environment\":\"test\",\"url\":\"https://u:p@x.example/\","
         "\"app_key\":\"k\",\"secure_token\":\"t\"}",
         {"/url"}},
        {"{\"type\":\"audience_push\",\"environment\":\"test\",\"url\":\"https://x.example/\","
         "\"app_key\":\"k\\r\\nX-Evil: 1\",\"secure_token\":\"\"}",
         {"/app_key", "/secure_token"}},
        {"{\"type\":\"audience_push\",\"environment\":\"test\",\"url\":\"https://x.example/\","
         "\"app_key\":\"k\",\"secure_token\":\"t\",\"segments_per_hour\":0,"
         "\"timeout_seconds\":\"30\",\"source\":\"s 360\",\"colour\":\"red\"}",
         {"/segments_per_hour", "/timeout_seconds", "/source", "/colour"}},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *body = json_loads(bad[i].body, 0, NULL);
        assert_non_null(body);
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        char *id = NULL;
        assert_int_equal(sd_target_config_create(f->h, &f->acme, body, &id, &errors), -EINVAL);
        assert_null(id);
        for (size_t k = 0; k < 4 && bad[i].pointers[k]; k++) {
            if (!has_error(&errors, bad[i].pointers[k])) {
                fail_msg("case %zu: no error at %s", i, bad[i].pointers[k]);
            }
        }
        sd_issues_release(&errors);
        json_decref(body);
    }
    /* Loopback may be plain http (tests, a local relay). */
    char *id = add_target(f, "{\"type\":\"audience_push\",\"environment\":\"test\","
                             "\"url\":\"http://127.0.0.1:9/s\",\"app_key\":\"k\","
                             "\"secure_token\":\"t\"}");
    free(id);
}

static void test_target_secrets_and_update(void **state)
{
    struct fx *f = *state;
    char *id = add_target(f, "{\"type\":\"audience_push\",\"environment\":\"prod\","
                             "\"url\":\"https://crm.example/segments\",\"app_key\":\"APPKEY-1\","
                             "\"secure_token\":\"TOKEN-1\",\"source\":\"s360\"}");
    struct sd_target t = {0};
    assert_int_equal(sd_target_config_get(f->h, &f->acme, id, &t), 0);
    assert_int_equal(t.env, SD_ENV_PROD);
    json_t *view = sd_target_config_view(&t);
    char *text = json_dumps(view, 0);
    assert_null(strstr(text, "APPKEY-1"));
    assert_null(strstr(text, "TOKEN-1"));
    assert_string_equal(json_string_value(json_object_get(view, "app_key")), "(set)");
    assert_string_equal(json_string_value(json_object_get(view, "secure_token")), "(set)");
    assert_int_equal(json_integer_value(json_object_get(view, "segments_per_hour")), 50);
    assert_int_equal(json_integer_value(json_object_get(view, "timeout_seconds")), 30);
    assert_string_equal(json_string_value(json_object_get(view, "source")), "s360");
    free(text);
    json_decref(view);
    sd_target_release(&t);

    /* PATCH: secrets not sent are kept; null removes the source; env cannot change. */
    json_t *patch = json_loads("{\"segments_per_hour\":2,\"source\":null}", 0, NULL);
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    assert_int_equal(sd_target_config_update(f->h, &f->acme, id, patch, &errors), 0);
    json_decref(patch);
    assert_int_equal(sd_store_target_get(f->h, id, &t), 0);
    json_t *stored = json_loads(t.doc, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(stored, "app_key")), "APPKEY-1");
    assert_string_equal(json_string_value(json_object_get(stored, "secure_token")), "TOKEN-1");
    assert_null(json_object_get(stored, "source"));
    assert_int_equal(json_integer_value(json_object_get(stored, "segments_per_hour")), 2);
    json_decref(stored);
    sd_target_release(&t);

    patch = json_loads("{\"environment\":\"test\",\"app_key\":null}", 0, NULL);
    assert_int_equal(sd_target_config_update(f->h, &f->acme, id, patch, &errors), -EINVAL);
    assert_true(has_error(&errors, "/environment"));
    assert_true(has_error(&errors, "/app_key"));
    json_decref(patch);
    sd_issues_release(&errors);

    /* Another tenant's id is not found. */
    assert_int_equal(sd_store_tenant_create(f->h, "beta", "Beta"), 0);
    struct sd_tenant beta = {0};
    assert_int_equal(sd_store_tenant_get(f->h, "beta", &beta), 0);
    assert_int_equal(sd_target_config_get(f->h, &beta, id, &t), -ENOENT);
    sd_tenant_release(&beta);

    assert_int_equal(sd_target_config_delete(f->h, id), 0);
    assert_int_equal(sd_target_config_delete(f->h, id), -ENOENT);
    free(id);
}

/* ---- the store's outbox ---------------------------------------------------------------------- */

static struct sd_outbox_clock clock_at(int64_t now)
{
    return (struct sd_outbox_clock){
        .now_usec = now, .window_usec = HOUR, .lease_usec = 60 * SEC, .plan = sd_outbox_plan};
}

/* An item of `target` whose subject is segment "seg_" + the id's suffix ("dlv_a" → "seg_a"). */
static void insert(struct fx *f, const char *id, const char *target, const char *key, int64_t now)
{
    char subject[64];
    snprintf(subject, sizeof(subject), "seg_%s", id + 4);
    struct sd_outbox_item d = {.id = (char *)id,
                               .tenant_id = f->acme.id,
                               .env = SD_ENV_TEST,
                               .connector_id = (char *)target,
                               .operation = (char *)"push_segment",
                               .subject_kind = (char *)"segment",
                               .subject_id = subject,
                               .idem_key = (char *)key,
                               .doc = (char *)"{\"kind\":\"create\"}"};
    struct sd_outbox_clock clk = clock_at(now);
    assert_int_equal(sd_store_delivery_insert(f->h, &d, &clk, NULL), 0);
}

static void get(struct fx *f, const char *id, struct sd_outbox_item *d)
{
    assert_int_equal(sd_store_delivery_get(f->h, f->acme.id, SD_ENV_TEST, id, d), 0);
}

static void test_claim_fifo_rate_limit_and_leases(void **state)
{
    struct fx *f = *state;
    char *tgt = add_target(f, "{\"type\":\"audience_push\",\"environment\":\"test\","
                              "\"url\":\"https://crm.example/s\",\"app_key\":\"k\","
                              "\"secure_token\":\"t\",\"segments_per_hour\":2}");
    const int64_t t0 = sd_now_usec();
    insert(f, "dlv_a", tgt, "key-a", t0);
    insert(f, "dlv_b", tgt, "key-b", t0 + 1);
    insert(f, "dlv_c", tgt, "key-c", t0 + 2);

    /* Planned at push time: the third waits for the first slot to free, an hour on. */
    struct sd_outbox_item d = {0};
    get(f, "dlv_c", &d);
    assert_int_equal(d.state, SD_DELIVERY_QUEUED);
    assert_true(d.next_attempt_usec >= t0 + HOUR);
    json_t *view = sd_outbox_delivery_view(&d);
    assert_string_equal(json_string_value(json_object_get(view, "waiting_for")), "rate_limit");
    json_decref(view);
    sd_outbox_item_release(&d);

    /* Claims go in creation order; the third does not go. */
    struct sd_outbox_clock clk = clock_at(t0 + 10);
    struct sd_outbox_item a = {0}, b = {0}, none = {0};
    assert_int_equal(sd_store_delivery_claim(f->h, &clk, &a), 0);
    assert_string_equal(a.id, "dlv_a");
    assert_int_equal(a.state, SD_DELIVERY_SENDING);
    assert_int_equal(a.attempts, 1);
    assert_int_equal(a.sent_usec, t0 + 10);
    assert_int_equal(a.lease_until_usec, t0 + 10 + 60 * SEC);
    assert_string_equal(a.idem_key, "key-a");
    clk = clock_at(t0 + 20);
    assert_int_equal(sd_store_delivery_claim(f->h, &clk, &b), 0);
    assert_string_equal(b.id, "dlv_b");
    assert_int_equal(sd_store_delivery_claim(f->h, &clk, &none), -ENOENT);
    get(f, "dlv_c", &d);
    assert_int_equal(d.next_attempt_usec, t0 + 10 + HOUR); /* first send + 1 h */
    sd_outbox_item_release(&d);

    /* A held lease is not claimed again; an expired one is, with the same key and attempt + 1. */
    clk = clock_at(t0 + 30 * SEC);
    assert_int_equal(sd_store_delivery_claim(f->h, &clk, &none), -ENOENT);
    clk = clock_at(t0 + 61 * SEC);
    struct sd_outbox_item again = {0};
    assert_int_equal(sd_store_delivery_claim(f->h, &clk, &again), 0);
    assert_string_equal(again.id, "dlv_a");
    assert_int_equal(again.attempts, 2);
    assert_string_equal(again.idem_key, "key-a");
    assert_int_equal(again.sent_usec, t0 + 10); /* the run's first send stays */

    /* The old holder's outcome is refused (fencing); the new holder's is recorded. */
    struct sd_delivery_outcome oc = {.state = SD_DELIVERY_DELIVERED,
                                     .doc = "{\"kind\":\"create\",\"remote_segment_id\":\"R1\"}",
                                     .remote_ref = "R1"};
    assert_int_equal(sd_store_delivery_finish(f->h, a.id, a.fence, &oc), -ESTALE);
    assert_int_equal(sd_store_delivery_renew(f->h, a.id, a.fence, t0 + HOUR), -ESTALE);
    assert_int_equal(sd_store_delivery_finish(f->h, again.id, again.fence, &oc), 0);
    assert_int_equal(sd_store_delivery_finish(f->h, again.id, again.fence, &oc),
                     -ESTALE); /* a delivered row is never finished twice */
    get(f, "dlv_a", &d);
    assert_int_equal(d.state, SD_DELIVERY_DELIVERED);
    assert_int_equal(d.sent_usec, t0 + 10);
    sd_outbox_item_release(&d);
    char *remote = NULL;
    assert_int_equal(sd_store_remote_ref_get(f->h, tgt, "segment", "seg_a", &remote), 0);
    assert_string_equal(remote, "R1");
    free(remote);
    assert_int_equal(sd_store_remote_ref_find(f->h, tgt, "segment", "R1", &remote), 0);
    assert_string_equal(remote, "seg_a");
    free(remote);
    assert_int_equal(sd_store_remote_ref_get(f->h, tgt, "customer", "seg_a", &remote),
                     -ENOENT); /* scoped by kind */

    /* 429: retrying, the attempt given back. */
    struct sd_delivery_outcome wait = {.state = SD_DELIVERY_RETRYING,
                                       .next_attempt_usec = t0 + 2 * HOUR,
                                       .attempts_delta = -1,
                                       .doc = "{\"last_status\":429}"};
    assert_int_equal(sd_store_delivery_finish(f->h, b.id, b.fence, &wait), 0);
    get(f, "dlv_b", &d);
    assert_int_equal(d.state, SD_DELIVERY_RETRYING);
    assert_int_equal(d.attempts, 0);
    assert_int_equal(d.next_attempt_usec, t0 + 2 * HOUR);
    assert_int_equal(d.sent_usec, t0 + 20); /* still counts against the window */
    sd_outbox_item_release(&d);

    /* An hour after the first send, the third may go (one send left the window). */
    clk = clock_at(t0 + 10 + HOUR);
    struct sd_outbox_item c = {0};
    assert_int_equal(sd_store_delivery_claim(f->h, &clk, &c), 0);
    assert_string_equal(c.id, "dlv_c");

    /* Dead, then replayed: queued, attempts reset, new key, new run (no first send yet). */
    struct sd_delivery_outcome dead = {.state = SD_DELIVERY_DEAD, .doc = "{\"last_status\":400}"};
    assert_int_equal(sd_store_delivery_finish(f->h, c.id, c.fence, &dead), 0);
    struct sd_outbox_clock rclk = clock_at(t0 + 10 + HOUR + 5);
    assert_int_equal(sd_store_delivery_requeue(f->h, "dlv_b", "key-new", "{}", &rclk), -EBUSY);
    assert_int_equal(sd_store_delivery_requeue(f->h, "dlv_zz", "key-new", "{}", &rclk), -ENOENT);
    assert_int_equal(sd_store_delivery_requeue(f->h, "dlv_c", "key-c2", "{\"replays\":1}", &rclk),
                     0);
    get(f, "dlv_c", &d);
    assert_int_equal(d.state, SD_DELIVERY_QUEUED);
    assert_int_equal(d.attempts, 0);
    assert_int_equal(d.sent_usec, 0);
    assert_string_equal(d.idem_key, "key-c2");
    sd_outbox_item_release(&d);

    /* Lists: by state, newest first. */
    struct sd_delivery_filter flt = {
        .tenant_id = f->acme.id, .state = SD_DELIVERY_DELIVERED, .limit = 10};
    struct sd_outbox_item *v = NULL;
    size_t n = 0;
    bool more = true;
    assert_int_equal(sd_store_delivery_list(f->h, &flt, &v, &n, &more), 0);
    assert_int_equal(n, 1);
    assert_false(more);
    assert_string_equal(v[0].id, "dlv_a");
    assert_string_equal(v[0].client_id, "acme");
    sd_outbox_items_free(v, n);
    flt = (struct sd_delivery_filter){.tenant_id = 0, .state = -1, .limit = 2};
    assert_int_equal(sd_store_delivery_list(f->h, &flt, &v, &n, &more), 0);
    assert_int_equal(n, 2);
    assert_true(more);
    assert_string_equal(v[0].id, "dlv_c");
    sd_outbox_items_free(v, n);

    /* Deleting the target forgets its remote segments. */
    assert_int_equal(sd_target_config_delete(f->h, tgt), 0);
    assert_int_equal(sd_store_remote_ref_get(f->h, tgt, "segment", "seg_a", &remote), -ENOENT);

    sd_outbox_item_release(&a);
    sd_outbox_item_release(&b);
    sd_outbox_item_release(&c);
    sd_outbox_item_release(&again);
    free(tgt);
}

/* ---- racing claims --------------------------------------------------------------------------- */

#define RACE_N 60

struct racer {
    struct sd_store_handle *h;
    char got[RACE_N][32];
    size_t n;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    for (int idle = 0; idle < 50;) {
        struct sd_outbox_item d = {0};
        struct sd_outbox_clock clk = clock_at(sd_now_usec());
        int e = sd_store_delivery_claim(r->h, &clk, &d);
        if (e == -ENOENT) {
            idle++;
            usleep(1000);
            continue;
        }
        assert_int_equal(e, 0);
        snprintf(r->got[r->n++], sizeof(r->got[0]), "%s", d.id);
        struct sd_delivery_outcome oc = {.state = SD_DELIVERY_DELIVERED, .doc = "{}"};
        assert_int_equal(sd_store_delivery_finish(r->h, d.id, d.fence, &oc), 0);
        sd_outbox_item_release(&d);
    }
    return NULL;
}

/* Change a target's segments_per_hour through the configuration update, as API and CLI do. */
static void set_limit(struct fx *f, const char *target_id, int per_hour)
{
    json_t *body = json_pack("{s:i}", "segments_per_hour", per_hour);
    struct sd_issues errors;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    assert_int_equal(sd_target_config_update(f->h, &f->acme, target_id, body, &errors), 0);
    sd_issues_release(&errors);
    json_decref(body);
}

/* Raising a target's segments_per_hour applies to the deliveries already waiting: they are
 * planned again with the new limit (through the configuration update, as API and CLI do). */
static void test_new_limit_replans_waiting(void **state)
{
    struct fx *f = *state;
    char *tgt = add_target(f, "{\"type\":\"audience_push\",\"environment\":\"test\","
                              "\"url\":\"https://crm.example/s\",\"app_key\":\"k\","
                              "\"secure_token\":\"t\",\"segments_per_hour\":1}");
    const int64_t t0 = sd_now_usec();
    insert(f, "dlv_p1", tgt, "key-p1", t0);
    insert(f, "dlv_p2", tgt, "key-p2", t0 + 1);
    struct sd_outbox_item d = {0};
    get(f, "dlv_p2", &d);
    assert_true(d.next_attempt_usec >= t0 + HOUR);
    sd_outbox_item_release(&d);

    set_limit(f, tgt, 5);
    get(f, "dlv_p2", &d);
    assert_true(d.next_attempt_usec < t0 + HOUR);
    assert_true(d.next_attempt_usec <= sd_now_usec());
    sd_outbox_item_release(&d);

    /* and lowering it again moves the second one back behind the window */
    set_limit(f, tgt, 1);
    get(f, "dlv_p2", &d);
    assert_true(d.next_attempt_usec >= t0 + HOUR);
    sd_outbox_item_release(&d);
    free(tgt);
}

/* A push request's Idempotency-Key: unique per tenant and environment, found again by key;
 * deliveries without one never collide. */
static void test_request_keys(void **state)
{
    struct fx *f = *state;
    char *tgt = add_target(f, "{\"type\":\"audience_push\",\"environment\":\"test\","
                              "\"url\":\"https://crm.example/s\",\"app_key\":\"k\","
                              "\"secure_token\":\"t\"}");
    const int64_t t0 = sd_now_usec();
    struct sd_outbox_item d = {.id = (char *)"dlv_k1",
                               .tenant_id = f->acme.id,
                               .env = SD_ENV_TEST,
                               .connector_id = tgt,
                               .operation = (char *)"push_segment",
                               .subject_kind = (char *)"segment",
                               .subject_id = (char *)"seg_1",
                               .idem_key = (char *)"key-1",
                               .request_key = (char *)"client-key",
                               .doc = (char *)"{\"kind\":\"create\"}"};
    struct sd_outbox_clock clk = clock_at(t0);
    assert_int_equal(sd_store_delivery_insert(f->h, &d, &clk, NULL), 0);
    d.id = (char *)"dlv_k2";
    assert_int_equal(sd_store_delivery_insert(f->h, &d, &clk, NULL), -EEXIST);
    d.env = SD_ENV_PROD; /* another environment has its own keys */
    assert_int_equal(sd_store_delivery_insert(f->h, &d, &clk, NULL), 0);
    insert(f, "dlv_n1", tgt, "key-n1", t0);
    insert(f, "dlv_n2", tgt, "key-n2", t0);

    struct sd_outbox_item got = {0};
    assert_int_equal(
        sd_store_delivery_by_request(f->h, f->acme.id, SD_ENV_TEST, "client-key", &got), 0);
    assert_string_equal(got.id, "dlv_k1");
    assert_string_equal(got.subject_id, "seg_1");
    sd_outbox_item_release(&got);
    assert_int_equal(
        sd_store_delivery_by_request(f->h, f->acme.id, SD_ENV_PROD, "client-key", &got), 0);
    assert_string_equal(got.id, "dlv_k2");
    sd_outbox_item_release(&got);
    assert_int_equal(sd_store_delivery_by_request(f->h, f->acme.id, SD_ENV_TEST, "other", &got),
                     -ENOENT);
    assert_int_equal(
        sd_store_delivery_by_request(f->h, f->acme.id + 1000, SD_ENV_TEST, "client-key", &got),
        -ENOENT);
    free(tgt);
}

static void test_claims_race_across_handles(void **state)
{
    struct fx *f = *state;
    char *t1 = add_target(f, "{\"type\":\"audience_push\",\"environment\":\"test\","
                             "\"url\":\"https://a.example/s\",\"app_key\":\"k\","
                             "\"secure_token\":\"t\",\"segments_per_hour\":10000}");
    char *t2 = add_target(f, "{\"type\":\"audience_push\",\"environment\":\"test\","
                             "\"url\":\"https://b.example/s\",\"app_key\":\"k\","
                             "\"secure_token\":\"t\",\"segments_per_hour\":7}");
    int64_t now = sd_now_usec();
    for (int i = 0; i < RACE_N; i++) {
        char id[32], key[32];
        snprintf(id, sizeof(id), "dlv_%03d", i);
        snprintf(key, sizeof(key), "k%d", i);
        insert(f, id, i % 2 ? t1 : t2, key, now);
    }
    /* A second handle on the same file plays a second process. */
    struct sd_store_handle *h2 = NULL;
    sd_test_store_open(&f->st, &h2);
    struct racer rs[4] = {{.h = f->h}, {.h = f->h}, {.h = h2}, {.h = h2}};
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, race, &rs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    sd_store_close(h2);
    /* Every t1 delivery exactly once; of t2's 30 exactly the limit (7), the oldest ones. */
    size_t total = 0;
    char seen[RACE_N] = {0};
    for (int i = 0; i < 4; i++) {
        for (size_t k = 0; k < rs[i].n; k++) {
            int64_t num = -1;
            assert_int_equal(sd_parse_int64(rs[i].got[k] + 4, false, &num), 0);
            assert_true(num >= 0 && num < RACE_N);
            assert_int_equal(seen[num], 0);
            seen[num] = 1;
            total++;
        }
    }
    assert_int_equal(total, RACE_N / 2 + 7);
    for (int i = 0; i < RACE_N; i++) {
        bool want = i % 2 == 1 || i / 2 < 7;
        if (seen[i] != want) {
            fail_msg("dlv_%03d: claimed %d, want %d", i, seen[i], want);
        }
    }
    free(t1);
    free(t2);
}

/* ---- two nodes on one database (PostgreSQL) ------------------------------------------------- */

#define NODE_ITEMS 240
#define NODE_THREADS 4

struct node_claimer {
    struct sd_store_handle *h;
    const char *owner;
    int got[NODE_ITEMS]; /* how often this thread leased item i */
    size_t n;
    int err; /* the first unexpected answer, or 0 */
};

/* Claim (one, then up to four more of the same connector and operation, as a batch send does)
 * and finish them delivered, until the queue has stayed empty for a while. */
static void *node_claim(void *arg)
{
    struct node_claimer *r = arg;
    for (int idle = 0; idle < 40 && !r->err;) {
        struct sd_outbox_clock clk = clock_at(sd_now_usec());
        clk.owner = r->owner;
        struct sd_outbox_item first = {0};
        int e = sd_store_delivery_claim(r->h, &clk, &first);
        if (e == -ENOENT) {
            idle++;
            usleep(2000);
            continue;
        }
        if (e != 0) {
            r->err = e;
            break;
        }
        idle = 0;
        struct sd_outbox_item *more = NULL;
        size_t n_more = 0;
        e = sd_store_delivery_claim_more(r->h, &clk, &first, 4, &more, &n_more);
        if (e != 0) {
            r->err = e;
        }
        const char *ids[5];
        int64_t fences[5];
        struct sd_delivery_outcome oc[5];
        int ret[5];
        for (size_t i = 0; i <= n_more; i++) {
            const struct sd_outbox_item *d = i == 0 ? &first : &more[i - 1];
            int64_t num = -1;
            if (sd_parse_int64(d->id + 4, false, &num) != 0 || num < 0 || num >= NODE_ITEMS ||
                !d->lease_owner || strcmp(d->lease_owner, r->owner) != 0) {
                r->err = -EPROTO;
                continue;
            }
            r->got[num]++;
            r->n++;
            ids[i] = d->id;
            fences[i] = d->fence;
            oc[i] = (struct sd_delivery_outcome){.state = SD_DELIVERY_DELIVERED, .doc = "{}"};
        }
        if (!r->err) {
            e = sd_store_delivery_finish_many(r->h, n_more + 1, ids, fences, oc, ret);
            for (size_t i = 0; e == 0 && i <= n_more; i++) {
                e = ret[i];
            }
            if (e != 0) {
                r->err = e;
            }
        }
        sd_outbox_item_release(&first);
        sd_outbox_items_free(more, n_more);
    }
    return NULL;
}

/* Two nodes (two store handles, two threads each) drain one queue of a connector without a
 * rate: every lease is decided by the claim statement's row lock alone (FOR UPDATE SKIP
 * LOCKED), so each item is leased exactly once and every outcome names a fence that is still
 * its own. SQLite serializes claims by its write lock; test_claims_race_across_handles covers
 * it there. */
static void test_claims_two_nodes(void **state)
{
    if (sd_test_store_is_sqlite()) {
        skip();
    }
    struct fx *f = *state;
    struct sd_target con = {.id = (char *)"con_nodes",
                            .tenant_id = f->acme.id,
                            .env = SD_ENV_TEST,
                            .type = (char *)"test_contacts",
                            .doc = (char *)"{}"};
    assert_int_equal(sd_store_target_put(f->h, &con, true, NULL), 0);
    int64_t now = sd_now_usec();
    for (int i = 0; i < NODE_ITEMS; i++) {
        char id[32], subject[32];
        snprintf(id, sizeof(id), "dlv_%03d", i);
        snprintf(subject, sizeof(subject), "c%d", i);
        struct sd_outbox_item d = {.id = id,
                                   .tenant_id = f->acme.id,
                                   .env = SD_ENV_TEST,
                                   .connector_id = con.id,
                                   .operation = (char *)"upsert_contact",
                                   .subject_kind = (char *)"customer",
                                   .subject_id = subject,
                                   .idem_key = id,
                                   .doc = (char *)"{}"};
        struct sd_outbox_clock clk = clock_at(now - 1000);
        assert_int_equal(sd_store_delivery_insert(f->h, &d, &clk, NULL), 0);
    }
    struct sd_store_handle *h2 = NULL;
    sd_test_store_open(&f->st, &h2);
    struct node_claimer *rs = sd_calloc(NODE_THREADS, sizeof(*rs));
    pthread_t th[NODE_THREADS];
    for (int i = 0; i < NODE_THREADS; i++) {
        rs[i].h = i % 2 ? h2 : f->h;
        rs[i].owner = i % 2 ? "node-b" : "node-a";
        assert_int_equal(pthread_create(&th[i], NULL, node_claim, &rs[i]), 0);
    }
    for (int i = 0; i < NODE_THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    sd_store_close(h2);
    size_t per_node[2] = {0, 0};
    for (int i = 0; i < NODE_THREADS; i++) {
        if (rs[i].err) {
            fail_msg("claimer %d: %d", i, rs[i].err);
        }
        per_node[i % 2] += rs[i].n;
    }
    for (int k = 0; k < NODE_ITEMS; k++) {
        int times = 0;
        for (int i = 0; i < NODE_THREADS; i++) {
            times += rs[i].got[k];
        }
        if (times != 1) {
            fail_msg("dlv_%03d leased %d times", k, times);
        }
    }
    assert_int_equal(per_node[0] + per_node[1], NODE_ITEMS);
    /* Nothing is left waiting, and no item was delivered twice. */
    struct sd_delivery_filter flt = {
        .tenant_id = f->acme.id, .env = -1, .state = SD_DELIVERY_DELIVERED, .limit = 1000};
    struct sd_outbox_item *v = NULL;
    size_t n = 0;
    bool more = true;
    assert_int_equal(sd_store_delivery_list(f->h, &flt, &v, &n, &more), 0);
    assert_int_equal(n, NODE_ITEMS);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(v[i].attempts, 1);
        assert_int_equal(v[i].fence, 1);
    }
    sd_outbox_items_free(v, n);
    int64_t due = 0;
    assert_int_equal(sd_store_delivery_next_due(f->h, &due), -ENOENT);
    free(rs);
}

/* ---- the generic queue rules ----------------------------------------------------------------- */

/* An item of connector `con` on customer `subject`; 0 stored, 1 deduplicated (*ret_id). */
static int add_item(struct fx *f, const char *id, const char *con, const char *subject,
                    const char *dedupe, int64_t now, char **ret_id)
{
    struct sd_outbox_item d = {.id = (char *)id,
                               .tenant_id = f->acme.id,
                               .env = SD_ENV_TEST,
                               .connector_id = (char *)con,
                               .operation = (char *)"upsert_contact",
                               .subject_kind = (char *)"customer",
                               .subject_id = (char *)subject,
                               .dedupe_key = (char *)dedupe,
                               .origin = (char *)"con_other",
                               .idem_key = (char *)id,
                               .doc = (char *)"{}"};
    struct sd_outbox_clock clk = clock_at(now);
    return sd_store_delivery_insert(f->h, &d, &clk, ret_id);
}

static void claim_is(struct fx *f, int64_t now, const char *want, struct sd_outbox_item *ret)
{
    struct sd_outbox_clock clk = clock_at(now);
    struct sd_outbox_item d = {0};
    int r = sd_store_delivery_claim(f->h, &clk, &d);
    if (!want) {
        assert_int_equal(r, -ENOENT);
        return;
    }
    assert_int_equal(r, 0);
    assert_string_equal(d.id, want);
    if (ret) {
        *ret = d;
    } else {
        sd_outbox_item_release(&d);
    }
}

/* FIFO per subject, fencing, WAIT giving the attempt back, send-now, dedupe, cancel, remote
 * references and the deletion of a connector, on a connector without a rate limit. */
static void test_queue_rules(void **state)
{
    struct fx *f = *state;
    struct sd_target con = {.id = (char *)"con_contacts",
                            .tenant_id = f->acme.id,
                            .env = SD_ENV_TEST,
                            .type = (char *)"test_contacts",
                            .doc = (char *)"{}"};
    assert_int_equal(sd_store_target_put(f->h, &con, true, NULL), 0);
    const int64_t t0 = sd_now_usec();
    char *got = NULL;
    assert_int_equal(add_item(f, "dlv_1", con.id, "c1", NULL, t0, &got), 0);
    assert_string_equal(got, "dlv_1");
    free(got);
    assert_int_equal(add_item(f, "dlv_2", con.id, "c1", NULL, t0 + 1, NULL), 0);
    assert_int_equal(add_item(f, "dlv_3", con.id, "c2", NULL, t0 + 2, NULL), 0);
    assert_int_equal(add_item(f, "dlv_4", con.id, "c3", "c3-v1", t0 + 3, NULL), 0);
    /* The same dedupe key while the first waits: nothing stored, the waiting one answers. */
    assert_int_equal(add_item(f, "dlv_5", con.id, "c3", "c3-v1", t0 + 4, &got), 1);
    assert_string_equal(got, "dlv_4");
    free(got);
    struct sd_outbox_item d = {0};
    assert_int_equal(sd_store_delivery_get(f->h, 0, SD_ENV_TEST, "dlv_5", &d), -ENOENT);

    /* FIFO per subject: dlv_2 waits while dlv_1 (same customer) is on its way. */
    struct sd_outbox_item one = {0};
    claim_is(f, t0 + 10, "dlv_1", &one);
    assert_int_equal(one.fence, 1);
    assert_string_equal(one.origin, "con_other");
    claim_is(f, t0 + 10, "dlv_3", NULL);
    claim_is(f, t0 + 10, "dlv_4", NULL);
    claim_is(f, t0 + 10, NULL, NULL);
    /* dlv_2 is past its time but held back: the next work is when a lease ends. */
    int64_t due = 0;
    assert_int_equal(sd_store_delivery_next_due(f->h, &due), 0);
    assert_int_equal(due, t0 + 10 + 60 * SEC);
    /* Once dlv_4 is sending, its dedupe key no longer swallows a new change. */
    assert_int_equal(add_item(f, "dlv_6", con.id, "c3", "c3-v1", t0 + 11, NULL), 0);

    /* WAIT: retrying, the attempt given back; dlv_2 still waits behind it. */
    struct sd_delivery_outcome wait = {.state = SD_DELIVERY_RETRYING,
                                       .next_attempt_usec = t0 + HOUR,
                                       .attempts_delta = -1,
                                       .doc = "{\"last_status\":429}"};
    assert_int_equal(sd_store_delivery_finish(f->h, "dlv_1", one.fence, &wait), 0);
    assert_int_equal(sd_store_delivery_get(f->h, 0, SD_ENV_TEST, "dlv_1", &d), 0);
    assert_int_equal(d.state, SD_DELIVERY_RETRYING);
    assert_int_equal(d.attempts, 0);
    sd_outbox_item_release(&d);
    claim_is(f, t0 + 20, NULL, NULL);

    /* Send now: due at once, attempts kept; the new claim has a new fence. */
    struct sd_outbox_clock clk = clock_at(t0 + 30);
    assert_int_equal(sd_store_delivery_send_now(f->h, "dlv_1", &clk), 0);
    struct sd_outbox_item again = {0};
    claim_is(f, t0 + 31, "dlv_1", &again);
    assert_int_equal(again.attempts, 1);
    assert_int_equal(again.fence, 2);
    assert_int_equal(sd_store_delivery_renew(f->h, "dlv_1", one.fence, t0 + HOUR), -ESTALE);
    struct sd_delivery_outcome ok = {
        .state = SD_DELIVERY_DELIVERED, .doc = "{\"last_status\":200}", .remote_ref = "R-c1"};
    assert_int_equal(sd_store_delivery_finish(f->h, "dlv_1", one.fence, &ok), -ESTALE);
    assert_int_equal(sd_store_delivery_finish(f->h, "dlv_1", again.fence, &ok), 0);
    assert_int_equal(sd_store_delivery_get(f->h, f->acme.id, SD_ENV_TEST, "dlv_1", &d), 0);
    assert_string_equal(d.remote_ref, "R-c1");
    sd_outbox_item_release(&d);
    assert_int_equal(sd_store_remote_ref_get(f->h, con.id, "customer", "c1", &got), 0);
    assert_string_equal(got, "R-c1");
    free(got);
    assert_int_equal(sd_store_remote_ref_put(f->h, con.id, "customer", "c9", "R-c1b"), 0);
    assert_int_equal(sd_store_remote_ref_find(f->h, con.id, "customer", "R-c1b", &got), 0);
    assert_string_equal(got, "c9");
    free(got);
    /* Now the second change of c1 may go. */
    claim_is(f, t0 + 40, "dlv_2", NULL);

    /* Cancel: only a waiting item; final; never claimed. */
    assert_int_equal(add_item(f, "dlv_7", con.id, "c7", NULL, t0 + 50, NULL), 0);
    assert_int_equal(sd_store_delivery_cancel(f->h, "dlv_7", "{\"cancelled\":{}}", t0 + 51), 0);
    assert_int_equal(sd_store_delivery_cancel(f->h, "dlv_7", "{}", t0 + 52), -EBUSY);
    assert_int_equal(sd_store_delivery_send_now(f->h, "dlv_7", &clk), -EBUSY);
    assert_int_equal(sd_store_delivery_cancel(f->h, "dlv_nope", "{}", t0 + 52), -ENOENT);
    assert_int_equal(sd_store_delivery_cancel(f->h, "dlv_2", "{}", t0 + 52), -EBUSY); /* sending */
    assert_int_equal(sd_store_delivery_get(f->h, 0, SD_ENV_TEST, "dlv_7", &d), 0);
    assert_int_equal(d.state, SD_DELIVERY_CANCELLED);
    sd_outbox_item_release(&d);

    /* Lists by connector and environment. */
    struct sd_delivery_filter flt = {.tenant_id = f->acme.id,
                                     .env = SD_ENV_TEST,
                                     .state = SD_DELIVERY_CANCELLED,
                                     .connector_id = con.id,
                                     .limit = 10};
    struct sd_outbox_item *v = NULL;
    size_t n = 0;
    bool more = false;
    assert_int_equal(sd_store_delivery_list(f->h, &flt, &v, &n, &more), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].id, "dlv_7");
    sd_outbox_items_free(v, n);
    flt.env = SD_ENV_PROD;
    assert_int_equal(sd_store_delivery_list(f->h, &flt, &v, &n, &more), 0);
    assert_int_equal(n, 0);
    sd_outbox_items_free(v, n);
    flt = (struct sd_delivery_filter){
        .tenant_id = f->acme.id, .env = -1, .state = -1, .connector_id = "con_none", .limit = 10};
    assert_int_equal(sd_store_delivery_list(f->h, &flt, &v, &n, &more), 0);
    assert_int_equal(n, 0);
    sd_outbox_items_free(v, n);

    /* Deleting the connector settles what waits (dlv_6 queued), with the reason. */
    assert_int_equal(sd_store_target_delete(f->h, con.id, "the connector was deleted"), 0);
    assert_int_equal(sd_store_delivery_get(f->h, 0, SD_ENV_TEST, "dlv_6", &d), 0);
    assert_int_equal(d.state, SD_DELIVERY_DEAD);
    /* Its document gains last_error, as SQLite's json_set writes it (compact, members kept). */
    assert_string_equal(d.doc, "{\"last_error\":\"the connector was deleted\"}");
    sd_outbox_item_release(&d);
    assert_int_equal(sd_store_remote_ref_get(f->h, con.id, "customer", "c1", &got), -ENOENT);
    sd_outbox_item_release(&one);
    sd_outbox_item_release(&again);
}

/* ---- no echo -----------------------------------------------------------------------------------
 */

#ifdef SD_TEST_CONNECTORS
/* The outbox items of a batch's changes, added as the writer adds them: inside its transaction
 * (the *_tx ops run on the writer's connection only while it writes), committed with it. */
static int changes_in_writer(struct fx *f, const struct sd_batch *batch)
{
    assert_int_equal(sd_store_write_begin(f->h), 0);
    int r = sd_outbox_changes_in_writer(f->h, f->acme.id, SD_ENV_TEST, batch);
    assert_int_equal(sd_store_write_commit(f->h), 0);
    return r;
}
#endif

/* A stored change is offered to every target instance of its tenant and environment with
 * on_change except the one it came from; each instance's items are its own. Uses the test
 * connector (tests/connectors/test_contacts), built in by the debug and sanitizer presets. */
static void test_no_echo(void **state)
{
#ifndef SD_TEST_CONNECTORS
    (void)state;
    skip();
#else
    struct fx *f = *state;
    const char *ids[] = {"con_a", "con_b", "con_prod"};
    for (size_t i = 0; i < 3; i++) {
        struct sd_target t = {.id = (char *)ids[i],
                              .tenant_id = f->acme.id,
                              .env = i == 2 ? SD_ENV_PROD : SD_ENV_TEST,
                              .type = (char *)"test_contacts",
                              .doc = (char *)"{\"url\":\"http://127.0.0.1:9/\"}"};
        assert_int_equal(sd_store_target_put(f->h, &t, true, NULL), 0);
    }
    struct sd_customer_rec rec = {.customer_id = (char *)"C1",
                                  .doc = (char *)"{\"customer_id\":\"C1\",\"email\":\"a@b.c\"}"};
    struct sd_batch batch = {.customers = &rec, .n_customers = 1, .origin = "con_a"};
    /* From con_a: only con_b gets an item (con_prod is another environment). */
    assert_int_equal(changes_in_writer(f, &batch), 1);
    struct sd_delivery_filter flt = {
        .tenant_id = f->acme.id, .env = -1, .state = -1, .connector_id = "con_a", .limit = 10};
    struct sd_outbox_item *v = NULL;
    size_t n = 0;
    bool more = false;
    assert_int_equal(sd_store_delivery_list(f->h, &flt, &v, &n, &more), 0);
    assert_int_equal(n, 0);
    sd_outbox_items_free(v, n);
    flt.connector_id = "con_b";
    assert_int_equal(sd_store_delivery_list(f->h, &flt, &v, &n, &more), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].origin, "con_a");
    assert_string_equal(v[0].operation, "upsert_contact");
    assert_string_equal(v[0].subject_id, "webhook:C1");
    assert_non_null(v[0].payload);
    sd_outbox_items_free(v, n);
    /* The same content again while con_b's item waits: deduplicated, nothing new. */
    assert_int_equal(changes_in_writer(f, &batch), 0);
    /* From the API (no origin): both test instances. */
    batch.origin = NULL;
    rec.doc = (char *)"{\"customer_id\":\"C1\",\"email\":\"new@b.c\"}";
    assert_int_equal(changes_in_writer(f, &batch), 2);
    flt.connector_id = "con_prod";
    assert_int_equal(sd_store_delivery_list(f->h, &flt, &v, &n, &more), 0);
    assert_int_equal(n, 0);
    sd_outbox_items_free(v, n);
#endif
}

/* An item of connector `con`, operation `op`, on customer `subject`. */
static void add_op_item(struct fx *f, const char *id, const char *con, const char *op,
                        const char *subject, int64_t now)
{
    struct sd_outbox_item d = {.id = (char *)id,
                               .tenant_id = f->acme.id,
                               .env = SD_ENV_TEST,
                               .connector_id = (char *)con,
                               .operation = (char *)op,
                               .subject_kind = (char *)"customer",
                               .subject_id = (char *)subject,
                               .idem_key = (char *)id,
                               .doc = (char *)"{}"};
    struct sd_outbox_clock clk = clock_at(now);
    assert_int_equal(sd_store_delivery_insert(f->h, &d, &clk, NULL), 0);
}

/* A batch claimed with a first item: due items of the same connector and operation only, in
 * due order, each leased as a claim leases one; FIFO per subject holds; first sends of a
 * connector with a rate are left to the planned claim. Outcomes of a batch are written
 * together, an item whose lease is stale left out. */
static void test_claim_more(void **state)
{
    struct fx *f = *state;
    const char *cons[] = {"con_a", "con_b"};
    for (size_t i = 0; i < 2; i++) {
        struct sd_target con = {.id = (char *)cons[i],
                                .tenant_id = f->acme.id,
                                .env = SD_ENV_TEST,
                                .type = (char *)"test_contacts",
                                .doc = (char *)"{}"};
        assert_int_equal(sd_store_target_put(f->h, &con, true, NULL), 0);
    }
    const int64_t t0 = sd_now_usec();
    add_op_item(f, "dlv_1", "con_a", "ticket", "c1", t0);
    add_op_item(f, "dlv_2", "con_a", "ticket", "c1", t0 + 1); /* behind dlv_1 (same subject) */
    add_op_item(f, "dlv_3", "con_a", "fan", "c2", t0 + 2);    /* another operation */
    add_op_item(f, "dlv_4", "con_b", "ticket", "c3", t0 + 3); /* another connector */
    add_op_item(f, "dlv_5", "con_a", "ticket", "c4", t0 + 4);
    add_op_item(f, "dlv_6", "con_a", "ticket", "c5", t0 + 5);
    add_op_item(f, "dlv_7", "con_a", "ticket", "c6", t0 + 6);
    struct sd_outbox_item first = {0};
    claim_is(f, t0 + 10, "dlv_1", &first);
    struct sd_outbox_clock clk = clock_at(t0 + 10);
    struct sd_outbox_item *more = NULL;
    size_t n = 99;
    assert_int_equal(sd_store_delivery_claim_more(f->h, &clk, &first, 0, &more, &n), 0);
    assert_int_equal(n, 0);
    assert_null(more);
    assert_int_equal(sd_store_delivery_claim_more(f->h, &clk, &first, 2, &more, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(more[0].id, "dlv_5");
    assert_string_equal(more[1].id, "dlv_6");
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(more[i].state, SD_DELIVERY_SENDING);
        assert_int_equal(more[i].attempts, 1);
        assert_true(more[i].lease_until_usec > t0 + 10);
    }
    sd_outbox_items_free(more, n);
    assert_int_equal(sd_store_delivery_claim_more(f->h, &clk, &first, 10, &more, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(more[0].id, "dlv_7");
    /* Their outcomes in one transaction; a stale fence is refused for that item alone. */
    const char *ids[] = {more[0].id, "dlv_1"};
    int64_t fences[] = {more[0].fence, first.fence + 1};
    struct sd_delivery_outcome oc[] = {
        {.state = SD_DELIVERY_DELIVERED, .doc = "{\"kind\":\"create\"}", .remote_ref = "T-7"},
        {.state = SD_DELIVERY_DEAD, .doc = "{}"}};
    int ret[2] = {1, 1};
    assert_int_equal(sd_store_delivery_finish_many(f->h, 2, ids, fences, oc, ret), 0);
    assert_int_equal(ret[0], 0);
    assert_int_equal(ret[1], -ESTALE);
    struct sd_outbox_item got = {0};
    get(f, "dlv_7", &got);
    assert_int_equal(got.state, SD_DELIVERY_DELIVERED);
    assert_string_equal(got.remote_ref, "T-7");
    sd_outbox_item_release(&got);
    char *remote = NULL;
    assert_int_equal(sd_store_remote_ref_get(f->h, "con_a", "customer", "c6", &remote), 0);
    assert_string_equal(remote, "T-7");
    free(remote);
    get(f, "dlv_1", &got);
    assert_int_equal(got.state, SD_DELIVERY_SENDING); /* its stale outcome wrote nothing */
    sd_outbox_item_release(&got);
    oc[1].state = SD_DELIVERY_QUEUED; /* not an outcome: nothing written at all */
    assert_int_equal(sd_store_delivery_finish_many(f->h, 2, ids, fences, oc, ret), -EINVAL);
    sd_outbox_items_free(more, n);
    assert_int_equal(sd_store_delivery_claim_more(f->h, &clk, &first, 10, &more, &n), 0);
    assert_int_equal(n, 0);
    struct sd_outbox_item d = {0};
    get(f, "dlv_2", &d);
    assert_int_equal(d.state, SD_DELIVERY_QUEUED);
    sd_outbox_item_release(&d);
    sd_outbox_item_release(&first);

    /* A connector with a rate: its first sends go one planned claim at a time. */
    char *tgt = add_target(f, "{\"type\":\"audience_push\",\"environment\":\"test\","
                              "\"url\":\"https://crm.example/s\",\"app_key\":\"k\","
                              "\"secure_token\":\"t\",\"segments_per_hour\":100}");
    insert(f, "dlv_r1", tgt, "key-r1", t0 + 20);
    insert(f, "dlv_r2", tgt, "key-r2", t0 + 21);
    struct sd_outbox_clock rclk = clock_at(t0 + 30);
    struct sd_outbox_item r1 = {0};
    assert_int_equal(sd_store_delivery_claim(f->h, &rclk, &r1), 0);
    while (strcmp(r1.connector_id, tgt) != 0) { /* the con_a items still due go first */
        sd_outbox_item_release(&r1);
        assert_int_equal(sd_store_delivery_claim(f->h, &rclk, &r1), 0);
    }
    assert_string_equal(r1.id, "dlv_r1");
    assert_int_equal(sd_store_delivery_claim_more(f->h, &rclk, &r1, 10, &more, &n), 0);
    assert_int_equal(n, 0);
    sd_outbox_item_release(&r1);
    free(tgt);
}

/* A set of remote references kept under one kind (the members a remote list was last given):
 * applied in one call (puts replace, deletes of absent ids are no error), listed in pages in
 * byte order ("B" before "a", "é" after "z"), scoped by connector and kind; bad arguments are
 * refused whole. */
static void test_remote_ref_sets(void **state)
{
    struct fx *f = *state;
    const char *put_l[] = {"a", "B", "\xc3\xa9", "z", "a"};
    const char *put_r[] = {"R-a", "R-B", "R-e", "R-z", "R-a2"};
    const char *del_l[] = {"z", "missing"};
    assert_int_equal(sd_store_remote_ref_apply(f->h, "con_s", "member", put_l, put_r, 5, del_l, 2),
                     0);
    assert_int_equal(sd_store_remote_ref_put(f->h, "con_s", "other", "a", "X"), 0);
    assert_int_equal(sd_store_remote_ref_put(f->h, "con_t", "member", "a", "Y"), 0);
    char **loc = NULL, **rem = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_remote_ref_list(f->h, "con_s", "member", NULL, 2, &loc, &rem, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(loc[0], "B");
    assert_string_equal(rem[0], "R-B");
    assert_string_equal(loc[1], "a");
    assert_string_equal(rem[1], "R-a2"); /* the later put of the same id wins */
    char *after = sd_strdup(loc[1]);
    for (size_t i = 0; i < n; i++) {
        free(loc[i]);
        free(rem[i]);
    }
    free(loc);
    free(rem);
    assert_int_equal(sd_store_remote_ref_list(f->h, "con_s", "member", after, 10, &loc, &rem, &n),
                     0);
    free(after);
    assert_int_equal(n, 1);
    assert_string_equal(loc[0], "\xc3\xa9");
    assert_string_equal(rem[0], "R-e");
    free(loc[0]);
    free(rem[0]);
    free(loc);
    free(rem);
    assert_int_equal(
        sd_store_remote_ref_list(f->h, "con_s", "member", "\xc3\xa9", 10, &loc, &rem, &n), 0);
    assert_int_equal(n, 0);
    assert_null(loc);
    assert_null(rem);
    char *local = NULL;
    assert_int_equal(sd_store_remote_ref_find(f->h, "con_s", "member", "R-z", &local), -ENOENT);
    assert_int_equal(sd_store_remote_ref_find(f->h, "con_s", "member", "R-B", &local), 0);
    assert_string_equal(local, "B");
    free(local);
    /* Refused whole: a NULL id among the puts, or too many. */
    const char *bad_l[] = {"q", NULL};
    assert_int_equal(sd_store_remote_ref_apply(f->h, "con_s", "member", bad_l, put_r, 2, NULL, 0),
                     -EINVAL);
    assert_int_equal(sd_store_remote_ref_apply(f->h, "con_s", "member", put_l, put_r,
                                               SD_REMOTE_REFS_APPLY_MAX + 1, NULL, 0),
                     -EINVAL);
    assert_int_equal(sd_store_remote_ref_list(f->h, "con_s", "member", NULL, 0, &loc, &rem, &n),
                     -EINVAL);
    assert_int_equal(sd_store_remote_ref_get(f->h, "con_s", "member", "q", &local), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_schedule_and_jitter_bounds),
        cmocka_unit_test(test_classification),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_plan_examples),
        cmocka_unit_test(test_plan_brute_force),
        cmocka_unit_test_setup_teardown(test_target_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_target_secrets_and_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_fifo_rate_limit_and_leases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claims_race_across_handles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claims_two_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_limit_replans_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_more, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remote_ref_sets, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
