/* test_observe_store.c — the store's observation ops (store/observe.h) on a real store: a key's
 * last use only moves forward and shows in key_list and the auth snapshot without changing the
 * settings version; traffic counters add up across flushes, stay per tenant, list in order
 * with a limit, purge old hours, and refuse bad rows; segment sizes keep one point per segment
 * per 10 minutes (either side: nodes' clocks differ) for 400 days, per tenant and environment;
 * a segment's pushes name each target's newest item of it; the outbox figures count waiting
 * items per tenant and connector. store suite: both backends */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "core/outbox.h"
#include "store/audience.h"
#include "store/observe.h"
#include "store/store.h"
#include "store_fixture.h"

#define HOUR (3600LL * 1000000)
#define T0 (1796515200LL * 1000000) /* 2026-12-06T00:00:00Z */

struct fx {
    struct sd_test_store ts;
    struct sd_store_handle *h;
    int64_t opera, ballet;
};

static int setup(void **state)
{
    struct fx *f = sd_calloc(1, sizeof(*f));
    sd_test_store_setup(&f->ts, "observe", &f->h);
    f->opera = sd_test_store_tenant(f->h, "opera", "Opera");
    f->ballet = sd_test_store_tenant(f->h, "ballet", "Ballet");
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

static int64_t last_used(struct sd_store_handle *h, const char *client, const char *key_id)
{
    struct sd_key_info *k = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_key_list(h, client, &k, &n), 0);
    int64_t v = -1;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(k[i].key_id, key_id) == 0) {
            v = k[i].last_used_usec;
        }
    }
    sd_keys_free(k, n);
    return v;
}

static void test_key_touch(void **state)
{
    struct fx *f = *state;
    assert_int_equal(sd_store_key_insert(f->h, "key_a", "opera", SD_ENV_TEST, "aa11"), 0);
    assert_int_equal(sd_store_key_insert(f->h, "key_b", "opera", SD_ENV_PROD, "bb22"), 0);
    assert_int_equal(last_used(f->h, "opera", "key_a"), 0);
    int64_t v0 = 0, v1 = 0;
    assert_int_equal(sd_store_settings_version(f->h, &v0), 0);

    const char *ids[] = {"key_a", "key_b", "key_unknown"};
    int64_t when[] = {T0 + 5, T0 + 7, T0 + 9};
    assert_int_equal(sd_store_observe_key_touch(f->h, ids, when, 3), 0);
    assert_int_equal(last_used(f->h, "opera", "key_a"), T0 + 5);
    assert_int_equal(last_used(f->h, "opera", "key_b"), T0 + 7);
    /* only forward: an older time (another node's late flush) changes nothing */
    int64_t older[] = {T0 + 1};
    assert_int_equal(sd_store_observe_key_touch(f->h, ids, older, 1), 0);
    assert_int_equal(last_used(f->h, "opera", "key_a"), T0 + 5);
    int64_t newer[] = {T0 + 50};
    assert_int_equal(sd_store_observe_key_touch(f->h, ids, newer, 1), 0);
    assert_int_equal(last_used(f->h, "opera", "key_a"), T0 + 50);
    /* traffic, not settings: running servers do not reload for it */
    assert_int_equal(sd_store_settings_version(f->h, &v1), 0);
    assert_int_equal(v0, v1);
    /* the auth snapshot carries it (a restarted server starts from the stored time) */
    struct sd_tenant *t = NULL;
    struct sd_key_info *k = NULL;
    size_t nt = 0, nk = 0;
    assert_int_equal(sd_store_auth_snapshot(f->h, &t, &nt, &k, &nk), 0);
    bool seen = false;
    for (size_t i = 0; i < nk; i++) {
        if (strcmp(k[i].key_id, "key_b") == 0) {
            assert_int_equal(k[i].last_used_usec, T0 + 7);
            seen = true;
        }
    }
    assert_true(seen);
    sd_tenants_free(t, nt);
    sd_keys_free(k, nk);
    /* bad arguments */
    assert_int_equal(sd_store_observe_key_touch(f->h, NULL, when, 1), -EINVAL);
    const char *null_id[] = {NULL};
    assert_int_equal(sd_store_observe_key_touch(f->h, null_id, when, 1), -EINVAL);
    assert_int_equal(sd_store_observe_key_touch(f->h, NULL, NULL, 0), 0);
}

static struct sd_traffic_count row(int64_t tenant, enum sd_env env, int64_t hour, const char *kind,
                                   const char *source, const char *field, const char *code,
                                   int64_t n)
{
    struct sd_traffic_count t = {.tenant_id = tenant, .env = env, .hour_usec = hour, .n = n};
    snprintf(t.kind, sizeof(t.kind), "%s", kind);
    snprintf(t.source, sizeof(t.source), "%s", source);
    snprintf(t.field, sizeof(t.field), "%s", field);
    snprintf(t.code, sizeof(t.code), "%s", code);
    return t;
}

static void test_traffic_counts(void **state)
{
    struct fx *f = *state;
    struct sd_traffic_count v[] = {
        row(f->opera, SD_ENV_TEST, T0, "rejected", "ingest", "sales.currency", "invalid", 3),
        row(f->opera, SD_ENV_TEST, T0, "answer", "ingest", "", "4xx", 2),
        row(f->opera, SD_ENV_PROD, T0 + HOUR, "accepted", "ingest", "sales", "", 10),
        row(f->ballet, SD_ENV_TEST, T0, "rejected", "ingest", "events.date", "missing", 1),
    };
    int64_t v0 = 0, v1 = 0;
    assert_int_equal(sd_store_settings_version(f->h, &v0), 0);
    assert_int_equal(sd_store_observe_traffic_add(f->h, v, 4, 0), 0);
    /* a second flush (another node, the next minute) adds to the same rows */
    assert_int_equal(sd_store_observe_traffic_add(f->h, v, 2, 0), 0);
    assert_int_equal(sd_store_settings_version(f->h, &v1), 0);
    assert_int_equal(v0, v1);

    struct sd_traffic_count *got = NULL;
    size_t n = 0;
    bool more = true;
    assert_int_equal(sd_store_observe_traffic_list(f->h, f->opera, 0, 100, &got, &n, &more), 0);
    assert_int_equal(n, 3);
    assert_false(more);
    /* ordered by hour, kind, env, source, field, code */
    assert_string_equal(got[0].kind, "answer");
    assert_int_equal(got[0].n, 4);
    assert_string_equal(got[1].kind, "rejected");
    assert_string_equal(got[1].field, "sales.currency");
    assert_string_equal(got[1].code, "invalid");
    assert_int_equal(got[1].n, 6);
    assert_int_equal(got[1].env, SD_ENV_TEST);
    assert_string_equal(got[2].kind, "accepted");
    assert_int_equal(got[2].env, SD_ENV_PROD);
    assert_int_equal(got[2].hour_usec, T0 + HOUR);
    assert_int_equal(got[2].n, 10);
    free(got);
    /* since, limit */
    assert_int_equal(sd_store_observe_traffic_list(f->h, f->opera, T0 + HOUR, 100, &got, &n, &more),
                     0);
    assert_int_equal(n, 1);
    free(got);
    assert_int_equal(sd_store_observe_traffic_list(f->h, f->opera, 0, 2, &got, &n, &more), 0);
    assert_int_equal(n, 2);
    assert_true(more);
    free(got);
    /* per tenant */
    assert_int_equal(sd_store_observe_traffic_list(f->h, f->ballet, 0, 100, &got, &n, &more), 0);
    assert_int_equal(n, 1);
    assert_string_equal(got[0].field, "events.date");
    assert_int_equal(got[0].n, 1);
    free(got);
    /* purge: hours before T0 + HOUR go, of every tenant */
    assert_int_equal(sd_store_observe_traffic_add(f->h, NULL, 0, T0 + HOUR), 0);
    assert_int_equal(sd_store_observe_traffic_list(f->h, f->opera, 0, 100, &got, &n, &more), 0);
    assert_int_equal(n, 1);
    assert_string_equal(got[0].kind, "accepted");
    free(got);
    assert_int_equal(sd_store_observe_traffic_list(f->h, f->ballet, 0, 100, &got, &n, &more), 0);
    assert_int_equal(n, 0);
    free(got);
}

static void test_traffic_refuses_bad_rows(void **state)
{
    struct fx *f = *state;
    struct sd_traffic_count bad[] = {
        row(f->opera, SD_ENV_TEST, T0, "bogus", "ingest", "", "", 1),
        row(f->opera, SD_ENV_TEST, T0, "answer", "", "", "2xx", 1),
        row(f->opera, SD_ENV_TEST, T0, "answer", "ingest", "", "2xx", -1),
    };
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(sd_store_observe_traffic_add(f->h, &bad[i], 1, 0), -EINVAL);
    }
    struct sd_traffic_count ok = row(f->opera, SD_ENV_TEST, T0, "answer", "ingest", "", "2xx", 1);
    assert_int_equal(sd_store_observe_traffic_add(f->h, &ok, SD_TRAFFIC_ADD_MAX + 1, 0), -EINVAL);
    struct sd_traffic_count *got = NULL;
    size_t n = 9;
    assert_int_equal(sd_store_observe_traffic_list(f->h, f->opera, 0, 100, &got, &n, NULL), 0);
    assert_int_equal(n, 0); /* nothing half-applied */
    free(got);
}

static void test_segment_sizes(void **state)
{
    struct fx *f = *state;
    const int64_t MIN = 60LL * 1000000;
    assert_int_equal(
        sd_store_observe_segment_size_record(f->h, f->opera, SD_ENV_TEST, "seg_a", T0, 100), 1);
    /* 5 minutes later, or 5 minutes earlier (another node's clock): skipped */
    assert_int_equal(sd_store_observe_segment_size_record(f->h, f->opera, SD_ENV_TEST, "seg_a",
                                                          T0 + 5 * MIN, 101),
                     0);
    assert_int_equal(sd_store_observe_segment_size_record(f->h, f->opera, SD_ENV_TEST, "seg_a",
                                                          T0 - 5 * MIN, 99),
                     0);
    assert_int_equal(sd_store_observe_segment_size_record(f->h, f->opera, SD_ENV_TEST, "seg_a",
                                                          T0 + 10 * MIN, 120),
                     1);
    /* other scopes are their own */
    assert_int_equal(
        sd_store_observe_segment_size_record(f->h, f->opera, SD_ENV_PROD, "seg_a", T0 + MIN, 7), 1);
    assert_int_equal(
        sd_store_observe_segment_size_record(f->h, f->ballet, SD_ENV_TEST, "seg_a", T0 + MIN, 8),
        1);
    struct sd_segment_size_point *v = NULL;
    size_t n = 0;
    assert_int_equal(
        sd_store_observe_segment_size_history(f->h, f->opera, SD_ENV_TEST, "seg_a", 0, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].at_usec, T0);
    assert_int_equal(v[0].member_count, 100);
    assert_int_equal(v[1].at_usec, T0 + 10 * MIN);
    assert_int_equal(v[1].member_count, 120);
    free(v);
    assert_int_equal(sd_store_observe_segment_size_history(f->h, f->opera, SD_ENV_TEST, "seg_a",
                                                           T0 + MIN, &v, &n),
                     0);
    assert_int_equal(n, 1);
    free(v);
    assert_int_equal(
        sd_store_observe_segment_size_history(f->h, f->opera, SD_ENV_TEST, "seg_b", 0, &v, &n), 0);
    assert_int_equal(n, 0);
    free(v);
    /* 400 days on: the new point purges the old ones of this segment */
    assert_int_equal(sd_store_observe_segment_size_record(f->h, f->opera, SD_ENV_TEST, "seg_a",
                                                          T0 + SD_SEGMENT_SIZE_KEEP_USEC + 5 * MIN,
                                                          130),
                     1);
    assert_int_equal(
        sd_store_observe_segment_size_history(f->h, f->opera, SD_ENV_TEST, "seg_a", 0, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].member_count, 120);
    assert_int_equal(v[1].member_count, 130);
    free(v);
    /* bad arguments */
    assert_int_equal(sd_store_observe_segment_size_record(f->h, f->opera, SD_ENV_TEST, "", T0, 1),
                     -EINVAL);
    assert_int_equal(sd_store_observe_segment_size_record(f->h, f->opera, SD_ENV_TEST, NULL, T0, 1),
                     -EINVAL);
    assert_int_equal(
        sd_store_observe_segment_size_record(f->h, f->opera, SD_ENV_TEST, "seg_c", T0, -1),
        -EINVAL);
}

static void add_item(struct sd_store_handle *h, const struct sd_outbox_clock *clk, int64_t tenant,
                     const char *id, const char *target, const char *kind, const char *subject)
{
    struct sd_outbox_item d = {.id = (char *)id,
                               .tenant_id = tenant,
                               .env = SD_ENV_TEST,
                               .connector_id = (char *)target,
                               .operation = (char *)"push_segment",
                               .subject_kind = (char *)kind,
                               .subject_id = (char *)subject,
                               .idem_key = (char *)id,
                               .doc = (char *)"{}"};
    assert_int_equal(sd_store_delivery_insert(h, &d, clk, NULL), 0);
}

static void test_segment_pushes(void **state)
{
    struct fx *f = *state;
    struct sd_outbox_clock clk = {.now_usec = sd_now_usec(),
                                  .window_usec = 3600LL * 1000000LL,
                                  .lease_usec = 60LL * 1000000LL,
                                  .plan = sd_outbox_plan,
                                  .owner = "node-a"};
    const char *targets[] = {"tgt_000000000000000b", "tgt_000000000000000a",
                             "tgt_000000000000000c"};
    for (int i = 0; i < 3; i++) {
        struct sd_target t = {.id = (char *)targets[i],
                              .tenant_id = i == 2 ? f->ballet : f->opera,
                              .env = SD_ENV_TEST,
                              .type = "audience_push",
                              .doc = "{\"url\":\"https://crm.example/s\"}"};
        assert_int_equal(sd_store_target_put(f->h, &t, true, &clk), 0);
    }
    add_item(f->h, &clk, f->opera, "dlv_0000000000000001", targets[0], "segment", "seg_x");
    add_item(f->h, &clk, f->opera, "dlv_0000000000000002", targets[0], "segment", "seg_x");
    add_item(f->h, &clk, f->opera, "dlv_0000000000000003", targets[1], "segment", "seg_x");
    add_item(f->h, &clk, f->opera, "dlv_0000000000000004", targets[1], "segment", "seg_y");
    add_item(f->h, &clk, f->opera, "dlv_0000000000000005", targets[1], "customer", "seg_x");
    add_item(f->h, &clk, f->ballet, "dlv_0000000000000006", targets[2], "segment", "seg_x");
    /* the newest item is cancelled: its state shows */
    assert_int_equal(sd_store_delivery_cancel(f->h, "dlv_0000000000000002", "{}", clk.now_usec), 0);

    struct sd_segment_push *v = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_observe_segment_pushes(f->h, f->opera, SD_ENV_TEST, "seg_x", &v, &n),
                     0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].connector_id, targets[1]); /* by connector id */
    assert_string_equal(v[0].delivery_id, "dlv_0000000000000003");
    assert_string_equal(v[0].state, "queued");
    assert_string_equal(v[1].connector_id, targets[0]);
    assert_string_equal(v[1].delivery_id, "dlv_0000000000000002");
    assert_string_equal(v[1].state, "cancelled");
    assert_true(v[1].updated_usec > 0);
    free(v);
    /* another environment, another segment, another tenant */
    assert_int_equal(sd_store_observe_segment_pushes(f->h, f->opera, SD_ENV_PROD, "seg_x", &v, &n),
                     0);
    assert_int_equal(n, 0);
    free(v);
    assert_int_equal(sd_store_observe_segment_pushes(f->h, f->opera, SD_ENV_TEST, "seg_z", &v, &n),
                     0);
    assert_int_equal(n, 0);
    free(v);
    assert_int_equal(sd_store_observe_segment_pushes(f->h, f->ballet, SD_ENV_TEST, "seg_x", &v, &n),
                     0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].delivery_id, "dlv_0000000000000006");
    free(v);

    /* The outbox figures: waiting items (a claimed one counts, sending), their oldest creation
     * and attempts, per tenant and connector; the cancelled item counts nowhere. */
    struct sd_outbox_item claimed = {0};
    assert_int_equal(sd_store_delivery_claim(f->h, &clk, &claimed), 0);
    sd_outbox_item_release(&claimed);
    struct sd_outbox_stat *o = NULL;
    assert_int_equal(sd_store_observe_outbox_stats(f->h, &o, &n), 0);
    assert_int_equal(n, 3);
    int64_t depth = 0, attempts = 0;
    for (size_t i = 0; i < n; i++) {
        depth += o[i].depth;
        attempts += o[i].attempts;
        assert_int_equal(o[i].dead, 0);
        assert_true(o[i].oldest_usec > 0 && o[i].oldest_usec <= sd_now_usec());
        if (strcmp(o[i].connector_id, targets[0]) == 0) {
            assert_int_equal(o[i].tenant_id, f->opera);
            assert_int_equal(o[i].depth, 1); /* dlv_1; dlv_2 was cancelled */
        } else if (strcmp(o[i].connector_id, targets[1]) == 0) {
            assert_int_equal(o[i].depth, 3);
        } else {
            assert_string_equal(o[i].connector_id, targets[2]);
            assert_int_equal(o[i].tenant_id, f->ballet);
            assert_int_equal(o[i].depth, 1);
        }
    }
    assert_int_equal(depth, 5);
    assert_int_equal(attempts, 1); /* the claim */
    /* ordered by tenant, then connector */
    assert_true(o[0].tenant_id <= o[1].tenant_id && o[1].tenant_id <= o[2].tenant_id);
    free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_key_touch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_traffic_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_traffic_refuses_bad_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_pushes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
