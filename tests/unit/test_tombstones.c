/* test_tombstones.c — the store's side of deletions in the change feed, merged updates, remote
 * versions and origins (store.h: delete_record, get_customer, apply_ingest), a fresh store per
 * test; store suite: both backends. Records are built by hand (no validator): each doc is
 * given as JSON text, so merging and the feed's entries can be checked by content.
 *
 * What must hold:
 *  - a record deleted or erased appears in the feed once, as a tombstone without its data,
 *    after its last change: a follower at any cursor before the tombstone sees it, one after
 *    it sees nothing more, and no later record reuses its number;
 *  - an update merges: members left out keep their stored values, a null removes one;
 *  - an update whose remote version is older than the stored one is not applied (stale);
 *  - each row remembers the origin of the batch that last changed it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/base.h"
#include "model/model.h"
#include "store/audience.h"
#include "store/store.h"
#include "store_fixture.h"
#include "store_sql.h"

struct fx {
    struct sd_test_store st;
    struct sd_store_handle *h;
    int64_t t; /* tenant "acme" */
};

static int setup(void **state)
{
    struct fx *f = sd_calloc(1, sizeof(*f));
    sd_test_store_setup(&f->st, "tomb", &f->h);
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

/* ---- builders -------------------------------------------------------------------------------- */

static void add_ev(struct sd_batch *b, const char *id, const char *doc, int64_t rv)
{
    b->events = sd_realloc(b->events, (b->n_events + 1) * sizeof(*b->events));
    b->events[b->n_events] = (struct sd_event_rec){.index = b->n_events,
                                                   .event_id = sd_strdup(id),
                                                   .dup_key = sd_asprintf("k-%s", id),
                                                   .doc = sd_strdup(doc),
                                                   .remote_version = rv};
    b->n_events++;
}

static void add_cu(struct sd_batch *b, const char *id, const char *doc, int opt_out, int64_t rv)
{
    b->customers = sd_realloc(b->customers, (b->n_customers + 1) * sizeof(*b->customers));
    b->customers[b->n_customers] =
        (struct sd_customer_rec){.index = b->n_customers,
                                 .customer_id = sd_strdup(id),
                                 .email_key = sd_asprintf("%s@x.org", id),
                                 .ad_opt_out = opt_out,
                                 .doc = sd_strdup(doc),
                                 .remote_version = rv};
    b->n_customers++;
}

static void add_sa(struct sd_batch *b, const char *inv, const char *cust, int64_t price, int64_t rv)
{
    b->sales = sd_realloc(b->sales, (b->n_sales + 1) * sizeof(*b->sales));
    struct sd_sale_rec s = {
        .index = b->n_sales,
        .invoice_number = sd_strdup(inv),
        .event_id = sd_strdup("E1"),
        .customer_id = sd_strdup(cust),
        .purchase_datetime = sd_strdup("2025-01-02T03:04:05Z"),
        .sales_price_minor = price,
        .doc = sd_asprintf("{\"invoice_number\":\"%s\",\"price\":%lld}", inv, (long long)price),
        .remote_version = rv,
    };
    memcpy(s.currency, "EUR", 4);
    b->sales[b->n_sales++] = s;
}

/* Apply b as the writer does (begin, savepoint, apply, release, commit), free it, and return
 * the result counts through res (released by the caller). */
static void ingest(struct fx *f, struct sd_batch *b, struct sd_apply_result *res)
{
    sd_apply_result_init(res);
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_savepoint(f->h), 0);
    assert_int_equal(sd_store_apply_ingest(f->h, f->t, SD_ENV_TEST, b, res), 0);
    assert_int_equal(res->outcome, SD_APPLY_OK);
    assert_int_equal(sd_store_savepoint_release(f->h), 0);
    assert_int_equal(sd_store_write_commit(f->h), 0);
    sd_batch_release(b);
}

static void ingest_ok(struct fx *f, struct sd_batch *b)
{
    struct sd_apply_result res;
    ingest(f, b, &res);
    sd_apply_result_release(&res);
}

static int del(struct fx *f, enum sd_kind kind, const char *id, const char *source,
               enum sd_tombstone_reason reason)
{
    assert_int_equal(sd_store_write_begin(f->h), 0);
    int r =
        sd_store_delete_record(f->h, f->t, SD_ENV_TEST, kind, id, source, reason, NULL, "con_test");
    assert_int_equal(sd_store_write_commit(f->h), 0);
    return r;
}

/* The feed of `kind` after `cursor`, as one JSON array of {"seq":…, "doc":…}. */
static json_t *feed(struct fx *f, enum sd_kind kind, int64_t cursor)
{
    struct sd_record_page p = {0};
    assert_int_equal(sd_store_list_records(f->h, kind, f->t, SD_ENV_TEST, cursor, 1000, &p), 0);
    json_t *a = json_array();
    for (size_t i = 0; i < p.n; i++) {
        json_t *doc = json_loads(p.docs[i], 0, NULL);
        assert_non_null(doc);
        json_array_append_new(a, json_pack("{s:I, s:o}", "seq", (json_int_t)p.seqs[i], "doc", doc));
        if (i > 0) {
            assert_true(p.seqs[i] > p.seqs[i - 1]);
        }
    }
    sd_record_page_release(&p);
    return a;
}

static const char *str_at(json_t *a, size_t i, const char *key)
{
    return json_string_value(json_object_get(json_object_get(json_array_get(a, i), "doc"), key));
}

static int64_t seq_at(json_t *a, size_t i)
{
    return json_integer_value(json_object_get(json_array_get(a, i), "seq"));
}

static json_t *customer(struct fx *f, const char *id, const char *source)
{
    char *doc = NULL, **sources = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_get_customer(f->h, f->t, SD_ENV_TEST, id, source, &doc, &sources, &n),
                     0);
    json_t *j = json_loads(doc, 0, NULL);
    free(doc);
    assert_non_null(j);
    return j;
}

static json_t *event(struct fx *f, const char *id)
{
    char *doc = NULL;
    assert_int_equal(sd_store_get_record(f->h, SD_KIND_EVENT, f->t, SD_ENV_TEST, id, &doc), 0);
    json_t *j = json_loads(doc, 0, NULL);
    free(doc);
    assert_non_null(j);
    return j;
}

/* ---- tombstones ------------------------------------------------------------------------------ */

/* A customer updated and then erased appears once, as a tombstone, after its last change; a
 * follower between the two versions sees only the tombstone. */
static void test_erased_customer_feed(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {0};
    add_ev(&b, "E1", "{\"event_id\":\"E1\"}", 0);
    add_cu(&b, "C1", "{\"customer_id\":\"C1\",\"first_name\":\"Ann\"}", -1, 0);
    add_cu(&b, "C2", "{\"customer_id\":\"C2\"}", -1, 0);
    add_sa(&b, "INV-1", "C1", 100, 0);
    ingest_ok(f, &b);
    json_t *a = feed(f, SD_KIND_CUSTOMER, 0);
    assert_int_equal(json_array_size(a), 2);
    int64_t between = seq_at(a, 0); /* a follower that saw C1's first version */
    json_decref(a);

    add_cu(&b, "C1", "{\"customer_id\":\"C1\",\"first_name\":\"Anna\"}", -1, 0);
    ingest_ok(f, &b);

    assert_int_equal(sd_store_write_begin(f->h), 0);
    struct sd_erasure_result er = {0};
    assert_int_equal(sd_store_profile_erase(f->h, f->t, SD_ENV_TEST, NULL, "C1", &er), 0);
    assert_int_equal(sd_store_write_commit(f->h), 0);

    for (int k = 0; k < 2; k++) {
        a = feed(f, SD_KIND_CUSTOMER, k == 0 ? 0 : between);
        assert_int_equal(json_array_size(a), 2); /* C2, then C1's tombstone: once, last */
        assert_string_equal(str_at(a, 0, "customer_id"), "C2");
        json_t *t = json_object_get(json_array_get(a, 1), "doc");
        assert_true(json_is_true(json_object_get(t, "deleted")));
        assert_string_equal(json_string_value(json_object_get(t, "id")), "C1");
        assert_string_equal(json_string_value(json_object_get(t, "reason")), "erased");
        assert_string_equal(json_string_value(json_object_get(t, "source")), "webhook");
        assert_int_equal(json_object_size(t), 4); /* nothing else: no personal data */
        assert_true(seq_at(a, 1) > between);
        json_decref(a);
    }
    /* The sale stays, now anonymous (a change of its own in the sales feed). */
    char *doc = NULL;
    assert_int_equal(sd_store_get_record(f->h, SD_KIND_SALE, f->t, SD_ENV_TEST, "INV-1", &doc), 0);
    assert_non_null(strstr(doc, "\"customer_id\":\"ANON\""));
    free(doc);

    /* A follower past the tombstone sees nothing; the next record gets a higher number. */
    a = feed(f, SD_KIND_CUSTOMER, 0);
    int64_t last = seq_at(a, 1);
    json_decref(a);
    a = feed(f, SD_KIND_CUSTOMER, last);
    assert_int_equal(json_array_size(a), 0);
    json_decref(a);
    add_cu(&b, "C3", "{\"customer_id\":\"C3\"}", -1, 0);
    ingest_ok(f, &b);
    a = feed(f, SD_KIND_CUSTOMER, last);
    assert_int_equal(json_array_size(a), 1);
    assert_true(seq_at(a, 0) > last);
    json_decref(a);
}

/* delete_record for each kind: the row goes, its tombstone follows in the feed, a second
 * delete changes nothing, an ambiguous customer id needs its source. */
static void test_delete_record(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {0};
    add_ev(&b, "E1", "{\"event_id\":\"E1\"}", 0);
    add_ev(&b, "E2", "{\"event_id\":\"E2\"}", 0);
    add_cu(&b, "C1", "{\"customer_id\":\"C1\"}", -1, 0);
    add_sa(&b, "INV-1", "C1", 100, 0);
    ingest_ok(f, &b);
    add_cu(&b, "C1", "{\"customer_id\":\"C1\"}", -1, 0);
    b.source = "crm";
    ingest_ok(f, &b);

    json_t *a = feed(f, SD_KIND_SALE, 0);
    int64_t sale_seq = seq_at(a, 0);
    json_decref(a);
    assert_int_equal(del(f, SD_KIND_SALE, "INV-1", NULL, SD_TOMBSTONE_DELETED), 1);
    assert_int_equal(del(f, SD_KIND_SALE, "INV-1", NULL, SD_TOMBSTONE_DELETED), 0);
    a = feed(f, SD_KIND_SALE, 0);
    assert_int_equal(json_array_size(a), 1);
    assert_string_equal(str_at(a, 0, "id"), "INV-1");
    assert_string_equal(str_at(a, 0, "reason"), "deleted");
    assert_null(json_object_get(json_object_get(json_array_get(a, 0), "doc"), "source"));
    assert_true(seq_at(a, 0) > sale_seq);
    json_decref(a);
    int64_t n = -1;
    assert_int_equal(sd_store_count_records(f->h, SD_KIND_SALE, f->t, SD_ENV_TEST, &n), 0);
    assert_int_equal(n, 0);

    /* C1 exists in "webhook" and "crm": without a source the delete is refused. */
    assert_int_equal(del(f, SD_KIND_CUSTOMER, "C1", NULL, SD_TOMBSTONE_DELETED), -ENOTUNIQ);
    assert_int_equal(del(f, SD_KIND_CUSTOMER, "C1", "crm", SD_TOMBSTONE_DELETED), 1);
    a = feed(f, SD_KIND_CUSTOMER, 0);
    assert_int_equal(json_array_size(a), 2);
    assert_string_equal(str_at(a, 0, "source"), "webhook");
    assert_null(json_object_get(json_object_get(json_array_get(a, 0), "doc"), "deleted"));
    assert_string_equal(str_at(a, 1, "source"), "crm");
    assert_string_equal(str_at(a, 1, "reason"), "deleted");
    json_decref(a);
    /* One source left: the id alone names it again. */
    assert_int_equal(del(f, SD_KIND_CUSTOMER, "C1", NULL, SD_TOMBSTONE_DELETED), 1);

    /* An event merged into another: the tombstone names the survivor. */
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_delete_record(f->h, f->t, SD_ENV_TEST, SD_KIND_EVENT, "E2", NULL,
                                            SD_TOMBSTONE_MERGED, "E1", NULL),
                     1);
    assert_int_equal(sd_store_write_commit(f->h), 0);
    a = feed(f, SD_KIND_EVENT, 0);
    assert_int_equal(json_array_size(a), 2);
    assert_string_equal(str_at(a, 0, "event_id"), "E1");
    assert_string_equal(str_at(a, 1, "id"), "E2");
    assert_string_equal(str_at(a, 1, "reason"), "merged");
    assert_string_equal(str_at(a, 1, "merged_into"), "E1");
    json_decref(a);
    /* A plain delete leaves nothing to read; a merged id reads as its survivor. */
    assert_int_equal(del(f, SD_KIND_EVENT, "E1", NULL, SD_TOMBSTONE_DELETED), 1);
    char *doc = NULL;
    assert_int_equal(sd_store_get_record(f->h, SD_KIND_EVENT, f->t, SD_ENV_TEST, "E1", &doc),
                     -ENOENT);
}

/* Merged away: the tombstone names the survivor, and references follow it. */
static void test_merge_moves_references(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {0};
    add_ev(&b, "E1", "{\"event_id\":\"E1\"}", 0);
    add_ev(&b, "E2", "{\"event_id\":\"E2\"}", 0);
    add_cu(&b, "C1", "{\"customer_id\":\"C1\"}", -1, 0);
    add_cu(&b, "C2", "{\"customer_id\":\"C2\"}", -1, 0);
    add_sa(&b, "INV-1", "C2", 100, 0);
    b.sales[0].event_id[1] = '2'; /* INV-1 is for E2 */
    ingest_ok(f, &b);
    json_t *a = feed(f, SD_KIND_SALE, 0);
    int64_t sale_seq = seq_at(a, 0);
    json_decref(a);

    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_delete_record(f->h, f->t, SD_ENV_TEST, SD_KIND_EVENT, "E2", NULL,
                                            SD_TOMBSTONE_MERGED, "E1", NULL),
                     1);
    assert_int_equal(sd_store_delete_record(f->h, f->t, SD_ENV_TEST, SD_KIND_CUSTOMER, "C2",
                                            "webhook", SD_TOMBSTONE_MERGED, "C1", NULL),
                     1);
    assert_int_equal(sd_store_write_commit(f->h), 0);

    a = feed(f, SD_KIND_EVENT, 0);
    assert_int_equal(json_array_size(a), 2);
    assert_string_equal(str_at(a, 1, "id"), "E2");
    assert_string_equal(str_at(a, 1, "reason"), "merged");
    assert_string_equal(str_at(a, 1, "merged_into"), "E1");
    json_decref(a);
    a = feed(f, SD_KIND_CUSTOMER, 0);
    assert_int_equal(json_array_size(a), 2);
    assert_string_equal(str_at(a, 1, "id"), "C2");
    assert_string_equal(str_at(a, 1, "merged_into"), "C1");
    json_decref(a);
    /* E2 is now an alias of E1 (reads and new sales resolve it); INV-1 names C1, a change. */
    json_t *e = event(f, "E2");
    assert_string_equal(json_string_value(json_object_get(e, "event_id")), "E1");
    json_decref(e);
    a = feed(f, SD_KIND_SALE, sale_seq);
    assert_int_equal(json_array_size(a), 1);
    assert_string_equal(str_at(a, 0, "customer_id"), "C1");
    json_decref(a);
    add_sa(&b, "INV-2", "C1", 100, 0);
    b.sales[0].event_id[1] = '2';
    ingest_ok(f, &b); /* E2 resolves: no reference error */

    char *rows = sd_test_sql(&f->st, "SELECT DISTINCT event_ref FROM sales");
    assert_string_equal(rows, "E1\n");
    free(rows);
}

/* A rolled-back deletion leaves neither the deletion nor its tombstone, and its number is
 * handed out again (nobody saw it). */
static void test_delete_rolled_back(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {0};
    add_cu(&b, "C1", "{\"customer_id\":\"C1\"}", -1, 0);
    ingest_ok(f, &b);
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_savepoint(f->h), 0);
    assert_int_equal(sd_store_delete_record(f->h, f->t, SD_ENV_TEST, SD_KIND_CUSTOMER, "C1", NULL,
                                            SD_TOMBSTONE_DELETED, NULL, NULL),
                     1);
    assert_int_equal(sd_store_savepoint_rollback(f->h), 0);
    assert_int_equal(sd_store_write_commit(f->h), 0);
    json_t *a = feed(f, SD_KIND_CUSTOMER, 0);
    assert_int_equal(json_array_size(a), 1);
    assert_null(json_object_get(json_object_get(json_array_get(a, 0), "doc"), "deleted"));
    json_decref(a);
}

/* ---- merge ----------------------------------------------------------------------------------- */

static void test_merge_keeps_and_null_clears(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {0};
    add_ev(&b, "E1", "{\"event_id\":\"E1\",\"title\":\"Aida\",\"composer\":\"Verdi\",\"x\":null}",
           0);
    add_cu(&b, "C1",
           "{\"customer_id\":\"C1\",\"first_name\":\"Ann\",\"street\":\"Main 1\",\"note\":null}",
           -1, 0);
    ingest_ok(f, &b);
    json_t *e = event(f, "E1"), *c = customer(f, "C1", NULL);
    assert_null(json_object_get(e, "x")); /* a new record's nulls are not stored */
    assert_null(json_object_get(c, "note"));
    json_decref(e);
    json_decref(c);

    /* Fewer fields: the ones left out keep their stored values. */
    add_ev(&b, "E1", "{\"event_id\":\"E1\",\"title\":\"Aida (new)\"}", 0);
    add_cu(&b, "C1", "{\"customer_id\":\"C1\",\"ad_opt_out\":true}", 1, 0);
    ingest_ok(f, &b);
    e = event(f, "E1");
    assert_string_equal(json_string_value(json_object_get(e, "title")), "Aida (new)");
    assert_string_equal(json_string_value(json_object_get(e, "composer")), "Verdi");
    c = customer(f, "C1", NULL);
    assert_string_equal(json_string_value(json_object_get(c, "first_name")), "Ann");
    assert_string_equal(json_string_value(json_object_get(c, "street")), "Main 1");
    assert_true(json_is_true(json_object_get(c, "ad_opt_out")));
    assert_string_equal(json_string_value(json_object_get(c, "source")), "webhook");
    json_decref(e);
    json_decref(c);

    /* null clears one field; the others stay. */
    add_ev(&b, "E1", "{\"event_id\":\"E1\",\"composer\":null}", 0);
    add_cu(&b, "C1", "{\"customer_id\":\"C1\",\"street\":null}", -1, 0);
    ingest_ok(f, &b);
    e = event(f, "E1");
    assert_null(json_object_get(e, "composer"));
    assert_string_equal(json_string_value(json_object_get(e, "title")), "Aida (new)");
    c = customer(f, "C1", NULL);
    assert_null(json_object_get(c, "street"));
    assert_string_equal(json_string_value(json_object_get(c, "first_name")), "Ann");
    json_decref(e);
    json_decref(c);

    /* Sending a subset of what is stored changes nothing: unchanged, no new feed entry. */
    json_t *a = feed(f, SD_KIND_CUSTOMER, 0);
    int64_t last = seq_at(a, 0);
    json_decref(a);
    add_ev(&b, "E1", "{\"event_id\":\"E1\",\"title\":\"Aida (new)\"}", 0);
    add_cu(&b, "C1", "{\"customer_id\":\"C1\",\"first_name\":\"Ann\"}", -1, 0);
    struct sd_apply_result res;
    ingest(f, &b, &res);
    assert_int_equal(res.n_unchanged, 2);
    assert_int_equal(res.n_stale, 0);
    sd_apply_result_release(&res);
    a = feed(f, SD_KIND_CUSTOMER, last);
    assert_int_equal(json_array_size(a), 0);
    json_decref(a);
}

/* ---- remote versions and origin -------------------------------------------------------------- */

static void test_stale_remote_version_skipped(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {0};
    add_ev(&b, "E1", "{\"event_id\":\"E1\",\"v\":100}", 100);
    add_cu(&b, "C1", "{\"customer_id\":\"C1\",\"v\":100}", -1, 100);
    add_sa(&b, "INV-1", "C1", 100, 100);
    b.upsert_sales = true;
    ingest_ok(f, &b);

    /* Older versions: nothing applied, counted stale (and unchanged). */
    add_ev(&b, "E1", "{\"event_id\":\"E1\",\"v\":50}", 50);
    add_cu(&b, "C1", "{\"customer_id\":\"C1\",\"v\":50}", 1, 50);
    add_sa(&b, "INV-1", "C1", 50, 50);
    b.upsert_sales = true;
    struct sd_apply_result res;
    ingest(f, &b, &res);
    assert_int_equal(res.n_stale, 3);
    assert_int_equal(res.n_unchanged, 3);
    sd_apply_result_release(&res);
    json_t *e = event(f, "E1"), *c = customer(f, "C1", NULL);
    assert_int_equal(json_integer_value(json_object_get(e, "v")), 100);
    assert_int_equal(json_integer_value(json_object_get(c, "v")), 100);
    assert_null(json_object_get(c, "ad_opt_out"));
    json_decref(e);
    json_decref(c);
    char *doc = NULL;
    assert_int_equal(sd_store_get_record(f->h, SD_KIND_SALE, f->t, SD_ENV_TEST, "INV-1", &doc), 0);
    assert_non_null(strstr(doc, "\"price\":100"));
    free(doc);

    /* A newer version applies; so does a record without one (0: the source gives none). */
    add_ev(&b, "E1", "{\"event_id\":\"E1\",\"v\":150}", 150);
    add_cu(&b, "C1", "{\"customer_id\":\"C1\",\"v\":0}", -1, 0);
    add_sa(&b, "INV-1", "C1", 150, 150);
    b.upsert_sales = true;
    ingest(f, &b, &res);
    assert_int_equal(res.n_stale, 0);
    assert_int_equal(res.n_unchanged, 0);
    sd_apply_result_release(&res);
    e = event(f, "E1");
    c = customer(f, "C1", NULL);
    assert_int_equal(json_integer_value(json_object_get(e, "v")), 150);
    assert_int_equal(json_integer_value(json_object_get(c, "v")), 0);
    json_decref(e);
    json_decref(c);
    assert_int_equal(sd_store_get_record(f->h, SD_KIND_SALE, f->t, SD_ENV_TEST, "INV-1", &doc), 0);
    assert_non_null(strstr(doc, "\"price\":150"));
    free(doc);

    /* The stored version is the highest seen: 120 is still older than 150. */
    add_ev(&b, "E1", "{\"event_id\":\"E1\",\"v\":120}", 120);
    ingest(f, &b, &res);
    assert_int_equal(res.n_stale, 1);
    sd_apply_result_release(&res);
}

/* The column origin holds the connector instance of the batch that last changed a row. */
static void test_origin_kept(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {0};
    add_ev(&b, "E1", "{\"event_id\":\"E1\"}", 0);
    add_cu(&b, "C1", "{\"customer_id\":\"C1\"}", -1, 0);
    add_sa(&b, "INV-1", "C1", 100, 0);
    b.origin = "con_0123456789abcdef";
    ingest_ok(f, &b);
    add_cu(&b, "C2", "{\"customer_id\":\"C2\"}", -1, 0); /* the API: no origin */
    ingest_ok(f, &b);

    char *rows =
        sd_test_sql(&f->st, "SELECT 'e', origin FROM events UNION ALL SELECT customer_id,"
                            " origin FROM customers UNION ALL SELECT 's', origin FROM sales"
                            " ORDER BY 1");
    assert_string_equal(rows, "C1|con_0123456789abcdef\n"
                              "C2|NULL\n"
                              "e|con_0123456789abcdef\n"
                              "s|con_0123456789abcdef\n");
    free(rows);
}

/* ---- reads: a customer's source -------------------------------------------------------------- */

static void test_customer_sources(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {0};
    add_cu(&b, "C1", "{\"customer_id\":\"C1\",\"first_name\":\"Web\"}", -1, 0);
    ingest_ok(f, &b);
    add_cu(&b, "C1", "{\"customer_id\":\"C1\",\"first_name\":\"Crm\"}", -1, 0);
    b.source = "crm";
    ingest_ok(f, &b);

    char *doc = NULL, **sources = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_get_customer(f->h, f->t, SD_ENV_TEST, "C1", NULL, &doc, &sources, &n),
                     -ENOTUNIQ);
    assert_null(doc);
    assert_int_equal(n, 2);
    assert_string_equal(sources[0], "crm");
    assert_string_equal(sources[1], "webhook");
    for (size_t i = 0; i < n; i++) {
        free(sources[i]);
    }
    free(sources);
    json_t *c = customer(f, "C1", "crm");
    assert_string_equal(json_string_value(json_object_get(c, "first_name")), "Crm");
    assert_string_equal(json_string_value(json_object_get(c, "source")), "crm");
    json_decref(c);
    assert_int_equal(
        sd_store_get_customer(f->h, f->t, SD_ENV_TEST, "C1", "pos", &doc, &sources, &n), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_erased_customer_feed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merge_moves_references, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_rolled_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merge_keeps_and_null_clears, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_remote_version_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_origin_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_customer_sources, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
