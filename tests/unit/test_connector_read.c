/* test_connector_read.c — sd_connector_records_page, a connector reading the hub's records back
 * (a reconciliation's view of what the hub holds): live records of its own tenant and
 * environment in change order, tombstones skipped but passed over by the sequence number to
 * resume from, pages bounded by the limit, bad arguments refused; and sd_connector_check_sale_refs,
 * a file's references checked before anything of it is written.
 *
 * store suite: both backends (ctest store_pg.* runs it on PostgreSQL). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/base.h"
#include "core/connector.h"
#include "core/hub.h"
#include "model/model.h"
#include "store/store.h"
#include "store_fixture.h"

struct fx {
    struct sd_test_store st;
    struct sd_store_handle *h;
    int64_t t;
};

static int setup(void **state)
{
    struct fx *f = sd_calloc(1, sizeof(*f));
    sd_test_store_setup(&f->st, "cread", &f->h);
    f->t = sd_test_store_tenant(f->h, "acme", "Acme Tickets");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    sd_test_store_release(&f->st, f->h);
    free(f);
    return 0;
}

static void add_events(struct fx *f, enum sd_env env, const char *const *ids)
{
    struct sd_batch b = {0};
    for (size_t i = 0; ids[i]; i++) {
        b.events = sd_realloc(b.events, (b.n_events + 1) * sizeof(*b.events));
        b.events[b.n_events] = (struct sd_event_rec){
            .index = b.n_events,
            .event_id = sd_strdup(ids[i]),
            .dup_key = sd_asprintf("k-%s", ids[i]),
            .doc = sd_asprintf("{\"event_id\":\"%s\",\"title\":\"T\"}", ids[i])};
        b.n_events++;
    }
    struct sd_apply_result res;
    sd_apply_result_init(&res);
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_savepoint(f->h), 0);
    assert_int_equal(sd_store_apply_ingest(f->h, f->t, env, &b, &res), 0);
    assert_int_equal(res.outcome, SD_APPLY_OK);
    assert_int_equal(sd_store_savepoint_release(f->h), 0);
    assert_int_equal(sd_store_write_commit(f->h), 0);
    sd_apply_result_release(&res);
    sd_batch_release(&b);
}

/* A record read inside the write transaction (what sd_connector_job_customer uses): the
 * transaction's own uncommitted customer is seen there and nowhere else until the commit; it is
 * found by its source only; a rolled back one is gone. */
static void test_customer_in_write(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {.source = "tb", .origin = "con_x"};
    b.customers = sd_calloc(1, sizeof(*b.customers));
    b.customers[0] = (struct sd_customer_rec){
        .customer_id = sd_strdup("F1"),
        .email_key = sd_strdup("f1@x.org"),
        .ad_opt_out = -1,
        .doc = sd_strdup("{\"customer_id\":\"F1\",\"email\":\"f1@x.org\",\"activity_count\":2}")};
    b.n_customers = 1;
    struct sd_apply_result res;
    char *doc = NULL, **sources = NULL;
    size_t n = 0;
    for (int keep = 0; keep < 2; keep++) {
        sd_apply_result_init(&res);
        assert_int_equal(sd_store_write_begin(f->h), 0);
        assert_int_equal(sd_store_get_customer_in_write(f->h, f->t, SD_ENV_TEST, "F1", "tb", &doc),
                         -ENOENT);
        assert_int_equal(sd_store_apply_ingest(f->h, f->t, SD_ENV_TEST, &b, &res), 0);
        assert_int_equal(res.outcome, SD_APPLY_OK);
        assert_int_equal(sd_store_get_customer_in_write(f->h, f->t, SD_ENV_TEST, "F1", "tb", &doc),
                         0);
        json_t *o = json_loads(doc, 0, NULL);
        assert_int_equal(json_integer_value(json_object_get(o, "activity_count")), 2);
        assert_string_equal(json_string_value(json_object_get(o, "source")), "tb");
        json_decref(o);
        free(doc);
        doc = NULL;
        assert_int_equal(
            sd_store_get_customer_in_write(f->h, f->t, SD_ENV_TEST, "F1", "webhook", &doc),
            -ENOENT);
        assert_int_equal(sd_store_get_customer_in_write(f->h, f->t, SD_ENV_PROD, "F1", "tb", &doc),
                         -ENOENT);
        /* a reader outside the transaction does not see it yet */
        assert_int_equal(
            sd_store_get_customer(f->h, f->t, SD_ENV_TEST, "F1", "tb", &doc, &sources, &n),
            -ENOENT);
        if (keep) {
            assert_int_equal(sd_store_write_commit(f->h), 0);
        } else {
            assert_int_equal(sd_store_write_rollback(f->h), 0);
        }
        sd_apply_result_release(&res);
    }
    assert_int_equal(sd_store_get_customer(f->h, f->t, SD_ENV_TEST, "F1", "tb", &doc, &sources, &n),
                     0);
    free(doc);
    sd_batch_release(&b);
}

/* A validated batch of the sales in `sales` (a JSON array text). */
static struct sd_batch sales_batch(const char *sales)
{
    char *text = sd_asprintf("{\"sales\":%s}", sales);
    json_t *body = json_loads(text, 0, NULL);
    assert_non_null(body);
    struct sd_issues e, w;
    sd_issues_init(&e, 16);
    sd_issues_init(&w, 16);
    struct sd_batch b = {0};
    assert_int_equal(sd_validate_ingest(body, &b, &e, &w), 0);
    assert_int_equal(e.total, 0);
    sd_issues_release(&e);
    sd_issues_release(&w);
    json_decref(body);
    free(text);
    return b;
}

#define SALE(inv, ev, cu, qty)                                                                    \
    "{\"invoice_number\":\"" inv "\",\"event_id\":\"" ev "\",\"customer_id\":\"" cu "\","        \
    "\"purchase_datetime\":\"2025-04-15T11:08:42Z\",\"ticket_category\":\"regular\","             \
    "\"quantity\":" qty ",\"sales_price\":\"20.00\",\"currency\":\"EUR\"}"

/* The check a file transport runs before it writes (sd_connector_check_sale_refs): unknown
 * events and customers are named at the pointers the store would name, nothing is written, and
 * another environment sees nothing; a sale stored with other content or a refund record needs
 * the writer, one stored as is does not. */
static void test_check_sale_refs(void **state)
{
    struct fx *f = *state;
    add_events(f, SD_ENV_TEST, (const char *const[]){"E1", NULL});
    struct sd_hub hub = {.store = f->h};
    struct sd_connector_ctx ctx = {.hub = &hub, .tenant_id = f->t, .env = SD_ENV_TEST,
                                   .source = "csv_drop", .id = "con_x"};
    /* S1 stored through the write path */
    struct sd_batch stored = sales_batch("[" SALE("S1", "E1", "ANON", "1") "]");
    stored.upsert_sales = true;
    stored.source = "csv_drop";
    struct sd_apply_result res;
    sd_apply_result_init(&res);
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_apply_ingest(f->h, f->t, SD_ENV_TEST, &stored, &res), 0);
    assert_int_equal(res.outcome, SD_APPLY_OK);
    assert_int_equal(sd_store_write_commit(f->h), 0);
    sd_apply_result_release(&res);
    sd_batch_release(&stored);
    int64_t before = 0;
    assert_int_equal(sd_store_count_records(f->h, SD_KIND_SALE, f->t, SD_ENV_TEST, &before), 0);

    struct sd_batch b = sales_batch("[" SALE("N1", "E1", "ANON", "1") "," SALE(
        "N2", "NOPE", "ANON", "1") "," SALE("N3", "E1", "C9", "1") "," SALE("S1", "E1", "ANON",
                                                                             "1") "]");
    struct sd_issues errs;
    sd_issues_init(&errs, 16);
    bool needs = false;
    assert_int_equal(sd_connector_check_sale_refs(&ctx, &b, &errs, &needs), 2);
    assert_int_equal(errs.n, 2);
    assert_string_equal(errs.items[0].pointer, "/sales/1/event_id");
    assert_non_null(strstr(errs.items[0].message, "event 'NOPE' does not exist"));
    assert_string_equal(errs.items[1].pointer, "/sales/2/customer_id");
    assert_false(needs); /* S1 is stored with this very document */
    sd_issues_release(&errs);
    sd_batch_release(&b);
    int64_t after = 0;
    assert_int_equal(sd_store_count_records(f->h, SD_KIND_SALE, f->t, SD_ENV_TEST, &after), 0);
    assert_int_equal(after, before);

    /* S1 with another quantity: the lifecycle rules must judge the change */
    b = sales_batch("[" SALE("S1", "E1", "ANON", "2") "]");
    sd_issues_init(&errs, 16);
    assert_int_equal(sd_connector_check_sale_refs(&ctx, &b, &errs, &needs), 0);
    assert_true(needs);
    sd_issues_release(&errs);
    sd_batch_release(&b);

    /* a refund record needs the writer too */
    needs = false;
    b = sales_batch("[{\"invoice_number\":\"R1\",\"event_id\":\"E1\",\"customer_id\":\"ANON\","
                    "\"purchase_datetime\":\"2025-04-16T11:08:42Z\",\"ticket_category\":"
                    "\"regular\",\"quantity\":1,\"sales_price\":\"20.00\",\"currency\":\"EUR\","
                    "\"refund_of\":\"S1\"}]");
    sd_issues_init(&errs, 16);
    assert_int_equal(sd_connector_check_sale_refs(&ctx, &b, &errs, &needs), 0);
    assert_true(needs);
    sd_issues_release(&errs);
    sd_batch_release(&b);

    /* another environment knows none of them */
    ctx.env = SD_ENV_PROD;
    needs = false;
    b = sales_batch("[" SALE("N1", "E1", "ANON", "1") "]");
    sd_issues_init(&errs, 16);
    assert_int_equal(sd_connector_check_sale_refs(&ctx, &b, &errs, &needs), 1);
    assert_false(needs);
    sd_issues_release(&errs);
    sd_batch_release(&b);
}

static const char *id_at(const json_t *recs, size_t i)
{
    return json_string_value(json_object_get(json_array_get(recs, i), "event_id"));
}

static void test_pages_in_change_order(void **state)
{
    struct fx *f = *state;
    add_events(f, SD_ENV_TEST, (const char *const[]){"E1", "E2", "E3", NULL});
    add_events(f, SD_ENV_PROD, (const char *const[]){"P1", NULL}); /* another environment */
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_delete_record(f->h, f->t, SD_ENV_TEST, SD_KIND_EVENT, "E2", NULL,
                                            SD_TOMBSTONE_DELETED, NULL, "con_x"),
                     1);
    assert_int_equal(sd_store_write_commit(f->h), 0);

    struct sd_hub hub = {.store = f->h};
    struct sd_connector_ctx ctx = {.hub = &hub, .tenant_id = f->t, .env = SD_ENV_TEST};
    json_t *recs = NULL;
    int64_t last = 0;
    bool more = false;
    assert_int_equal(sd_connector_records_page(&ctx, SD_KIND_EVENT, 0, 2, &recs, &last, &more), 0);
    assert_int_equal(json_array_size(recs), 2);
    assert_string_equal(id_at(recs, 0), "E1");
    assert_string_equal(id_at(recs, 1), "E3");
    assert_true(more); /* E2's tombstone follows */
    json_decref(recs);
    int64_t first = last;
    assert_int_equal(sd_connector_records_page(&ctx, SD_KIND_EVENT, last, 100, &recs, &last, &more),
                     0);
    assert_int_equal(json_array_size(recs), 0); /* only the tombstone: skipped */
    assert_true(last > first);                  /* … but passed over */
    assert_false(more);
    json_decref(recs);

    /* nothing after the end: the same sequence number back */
    int64_t end = last;
    assert_int_equal(sd_connector_records_page(&ctx, SD_KIND_EVENT, end, 100, &recs, &last, &more),
                     0);
    assert_int_equal(json_array_size(recs), 0);
    assert_int_equal(last, end);
    json_decref(recs);

    /* the other environment sees its own */
    ctx.env = SD_ENV_PROD;
    assert_int_equal(sd_connector_records_page(&ctx, SD_KIND_EVENT, 0, 100, &recs, &last, &more),
                     0);
    assert_int_equal(json_array_size(recs), 1);
    assert_string_equal(id_at(recs, 0), "P1");
    json_decref(recs);

    assert_int_equal(sd_connector_records_page(&ctx, SD_KIND_EVENT, 0, 0, &recs, &last, &more),
                     -EINVAL);
    assert_int_equal(sd_connector_records_page(&ctx, SD_KIND_EVENT, -1, 5, &recs, &last, &more),
                     -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pages_in_change_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_customer_in_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_sale_refs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
