/* test_quality.c — the data-quality counters (core/quality.h): field labels bounded to what the
 * model defines, error codes from the validator's words, counts that add up per row and reach
 * the store in one flush (and stay for the next flush when the store refuses), the per-tenant
 * /metrics series bounded to 100 tenants and 200 connectors or targets, the rest under
 * "_other". */
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
#include "core/quality.h"
#include "core/outbox.h"
#include "store/audience.h"
#include "store/observe.h"
#include "store/store.h"
#include "store_fixture.h"

static void test_classify(void **state)
{
    (void)state;
    static const struct {
        const char *pointer, *message, *label, *code;
    } cases[] = {
        {"/sales/3/currency", "must be an uppercase ISO 4217 code", "sales.currency", "invalid"},
        {"/events/0/title", "required field is missing", "events.title", "missing"},
        {"/events/2/cast/1/role", "must be a string", "events.cast.role", "invalid"},
        {"/sales/0/event_id", "event 'X' does not exist in test", "sales.event_id",
         "unknown_reference"},
        {"/customers/9/zzz_private", "unknown field", "other", "unknown_field"},
        {"/sales/1/currency/deeper/still", "must be", "other", "invalid"},
        {"/tickets/0/x", "unknown top-level member", "other", "unknown_field"},
        {"/events", "must be an array of records", "events", "invalid"},
        {"", "request body must be a JSON object", "record", "invalid"},
        {"/sales/0/invoice_number", "duplicate invoice number", "sales.invoice_number",
         "duplicate"},
        {"/customers/0/email", "something new", "customers.email", "other"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char label[SD_TRAFFIC_TEXT_MAX + 1], code[SD_TRAFFIC_TEXT_MAX + 1];
        sd_quality_classify(cases[i].pointer, cases[i].message, label, sizeof(label), code,
                            sizeof(code));
        if (strcmp(label, cases[i].label) != 0 || strcmp(code, cases[i].code) != 0) {
            fail_msg("case %zu (%s): got %s/%s", i, cases[i].pointer, label, code);
        }
    }
}

struct fx {
    struct sd_test_store ts;
    struct sd_store_handle *h;
    int64_t opera;
};

static int setup(void **state)
{
    struct fx *f = sd_calloc(1, sizeof(*f));
    sd_test_store_setup(&f->ts, "quality", &f->h);
    f->opera = sd_test_store_tenant(f->h, "opera", "Opera");
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

static int64_t count_of(struct sd_store_handle *h, int64_t tenant, const char *kind,
                        const char *field, const char *code)
{
    struct sd_traffic_count *v = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_observe_traffic_list(h, tenant, 0, 0, &v, &n, NULL), 0);
    int64_t c = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].kind, kind) == 0 && strcmp(v[i].field, field) == 0 &&
            strcmp(v[i].code, code) == 0) {
            c += v[i].n;
        }
    }
    free(v);
    return c;
}

static void test_flush(void **state)
{
    struct fx *f = *state;
    struct sd_quality *q = sd_quality_new();
    struct sd_issues e;
    sd_issues_init(&e, 2);
    sd_issues_add(&e, "/currency", "must be an uppercase ISO 4217 code");
    sd_issues_add(&e, "/quantity", "must be an integer");
    sd_issues_add(&e, "/status", "must be one of sold, refunded"); /* past the cap */
    sd_quality_rejected(q, f->opera, SD_ENV_TEST, "sale_put", "/sales/0", &e);
    sd_quality_rejected(q, f->opera, SD_ENV_TEST, "sale_put", "/sales/0", &e);
    sd_issues_release(&e);
    sd_quality_accepted(q, f->opera, SD_ENV_TEST, "ingest", SD_KIND_SALE, 5);
    sd_quality_answer(q, f->opera, SD_ENV_TEST, "ingest", 202);
    sd_quality_answer(q, f->opera, SD_ENV_TEST, "ingest", 429);
    sd_quality_answer(q, f->opera, SD_ENV_TEST, "ingest", 301); /* no class: not counted */
    assert_int_equal(sd_quality_flush(q, f->h), 0);
    assert_int_equal(count_of(f->h, f->opera, "rejected", "sales.currency", "invalid"), 2);
    assert_int_equal(count_of(f->h, f->opera, "rejected", "sales.quantity", "invalid"), 2);
    assert_int_equal(count_of(f->h, f->opera, "rejected", "other", "other"), 2);
    assert_int_equal(count_of(f->h, f->opera, "accepted", "sales", ""), 5);
    assert_int_equal(count_of(f->h, f->opera, "answer", "", "2xx"), 1);
    assert_int_equal(count_of(f->h, f->opera, "answer", "", "4xx"), 1);
    /* a second flush adds only what was counted since */
    assert_int_equal(sd_quality_flush(q, f->h), 0);
    assert_int_equal(count_of(f->h, f->opera, "accepted", "sales", ""), 5);
    sd_quality_accepted(q, f->opera, SD_ENV_TEST, "ingest", SD_KIND_SALE, 2);
    assert_int_equal(sd_quality_flush(q, f->h), 0);
    assert_int_equal(count_of(f->h, f->opera, "accepted", "sales", ""), 7);
    sd_quality_free(q);
}

static void test_metrics_bounded(void **state)
{
    struct fx *f = *state;
    struct sd_quality *q = sd_quality_new();
    /* 130 tenants: the first 100 by name, the other 30 summed under "_other" */
    int64_t ids[130];
    for (int i = 0; i < 130; i++) {
        char name[16];
        snprintf(name, sizeof(name), "t%03d", i);
        ids[i] = i == 0 ? f->opera : sd_test_store_tenant(f->h, name, name);
        sd_quality_accepted(q, ids[i], SD_ENV_TEST, "ingest", SD_KIND_EVENT, 1);
        sd_quality_answer(q, ids[i], SD_ENV_TEST, "ingest", 202);
    }
    struct sd_buf b;
    sd_buf_init(&b);
    sd_quality_render_metrics(q, f->h, &b);
    size_t series = 0;
    for (const char *p = b.data; (p = strstr(p, "stagedoor_tenant_records_rejected_total{")); p++) {
        series++;
    }
    assert_int_equal(series, SD_QUALITY_METRIC_TENANTS + 1);
    assert_non_null(strstr(b.data, "stagedoor_tenant_records_accepted_total{tenant=\"opera\","
                                   "kind=\"events\"} 1\n"));
    assert_non_null(strstr(b.data, "stagedoor_tenant_records_accepted_total{tenant=\"_other\","
                                   "kind=\"events\"} 30\n"));
    assert_non_null(strstr(b.data, "stagedoor_tenant_http_answers_total{tenant=\"_other\","
                                   "class=\"2xx\"} 30\n"));
    assert_null(strstr(b.data, "tenant=\"t129\""));
    sd_buf_release(&b);
    sd_quality_free(q);
}

static size_t count_of_text(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++) {
        n++;
    }
    return n;
}

static void test_connector_and_outbox_bounded(void **state)
{
    struct fx *f = *state;
    struct sd_quality *q = sd_quality_new();
    /* 250 connectors ran: 200 by id, 50 summed under "_other" */
    for (int i = 0; i < 250; i++) {
        char id[32];
        snprintf(id, sizeof(id), "con_%016d", i);
        sd_quality_run(q, id, f->opera, i % 2 == 0, 10, 1, sd_now_usec());
    }
    sd_quality_run(q, "con_0000000000000000", f->opera, true, 7, 2, sd_now_usec());
    /* 210 targets with a waiting item each: 200 named, 10 summed */
    struct sd_outbox_clock clk = {.now_usec = sd_now_usec(),
                                  .window_usec = 3600LL * 1000000LL,
                                  .lease_usec = 60LL * 1000000LL,
                                  .plan = sd_outbox_plan,
                                  .owner = "node-a"};
    for (int i = 0; i < 210; i++) {
        char tid[32], did[32];
        snprintf(tid, sizeof(tid), "tgt_%016d", i);
        snprintf(did, sizeof(did), "dlv_%016d", i);
        struct sd_target t = {.id = tid,
                              .tenant_id = f->opera,
                              .env = SD_ENV_TEST,
                              .type = "audience_push",
                              .doc = "{\"url\":\"https://crm.example/s\"}"};
        assert_int_equal(sd_store_target_put(f->h, &t, true, &clk), 0);
        struct sd_outbox_item d = {.id = did,
                                   .tenant_id = f->opera,
                                   .env = SD_ENV_TEST,
                                   .connector_id = tid,
                                   .operation = (char *)"push_segment",
                                   .subject_kind = (char *)"segment",
                                   .subject_id = (char *)"seg_1",
                                   .idem_key = did,
                                   .doc = (char *)"{}"};
        assert_int_equal(sd_store_delivery_insert(f->h, &d, &clk, NULL), 0);
    }
    struct sd_buf b;
    sd_buf_init(&b);
    sd_quality_render_metrics(q, f->h, &b);
    /* runs: 200 named connectors + _other, two outcomes each */
    assert_int_equal(count_of_text(b.data, "stagedoor_connector_runs_total{"), 2 * 201);
    assert_non_null(strstr(b.data, "stagedoor_connector_runs_total{tenant=\"_other\","
                                   "connector=\"_other\",outcome=\"ok\"} 25\n"));
    assert_non_null(strstr(b.data, "stagedoor_connector_runs_total{tenant=\"opera\","
                                   "connector=\"con_0000000000000000\",outcome=\"ok\"} 2\n"));
    assert_non_null(strstr(b.data, "stagedoor_connector_last_run_records{tenant=\"opera\","
                                   "connector=\"con_0000000000000000\",kind=\"stored\"} 7\n"));
    assert_int_equal(count_of_text(b.data, "stagedoor_connector_last_run_age_seconds{"), 200);
    /* outbox: 200 named targets + _other, per series */
    assert_int_equal(count_of_text(b.data, "stagedoor_outbox_queue_depth{"), 201);
    assert_int_equal(count_of_text(b.data, "stagedoor_outbox_dead_letters{"), 201);
    assert_non_null(strstr(b.data, "stagedoor_outbox_queue_depth{tenant=\"_other\","
                                   "target=\"_other\"} 10\n"));
    assert_non_null(strstr(b.data, "stagedoor_outbox_queue_depth{tenant=\"opera\","
                                   "target=\"tgt_0000000000000000\"} 1\n"));
    sd_buf_release(&b);
    sd_quality_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test_setup_teardown(test_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connector_and_outbox_bounded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
