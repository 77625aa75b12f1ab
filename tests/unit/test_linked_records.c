/* test_linked_records.c — the two store reads a CRM connector's outbound half makes about a
 * customer of another source, against the store: how many records of a source share its
 * profile, in the writer's transaction right after the ingest that linked them
 * (sd_store_outbox_linked_tx, what on_change asks through sd_outbox_change_linked), and the
 * remote_version a record was stored with (sd_store_customer_version). Records go through the
 * real validator and are applied the way the writer applies them. Each test gets a fresh store.
 *
 * store suite: both backends (ctest store_pg.* runs it on PostgreSQL). */
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
#include "model/model.h"
#include "store/audience.h"
#include "store/store.h"
#include "store_fixture.h"

struct fx {
    struct sd_test_store st;
    struct sd_store_handle *h;
    int64_t t1, t2;
};

static const enum sd_env T = SD_ENV_TEST;

static int setup(void **state)
{
    struct fx *f = sd_calloc(1, sizeof(*f));
    sd_test_store_setup(&f->st, "linked", &f->h);
    f->t1 = sd_test_store_tenant(f->h, "acme", "Acme");
    f->t2 = sd_test_store_tenant(f->h, "beta", "Beta");
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

/* Apply one customer {customer_id, email} from `source` with `version` as the writer would and,
 * in the same transaction, count the records of `member_source` linked to it. */
static int64_t ingest_and_count(struct fx *f, int64_t tenant, const char *source, const char *id,
                                const char *email, int64_t version, const char *member_source)
{
    char *json =
        sd_asprintf("{\"customers\":[{\"customer_id\":\"%s\",\"email\":\"%s\"}]}", id, email);
    json_t *body = json_loads(json, 0, NULL);
    assert_non_null(body);
    struct sd_batch b = {0};
    struct sd_issues errors, warnings;
    sd_issues_init(&errors, SD_MAX_ISSUES);
    sd_issues_init(&warnings, SD_MAX_ISSUES);
    assert_int_equal(sd_validate_ingest(body, &b, &errors, &warnings), 0);
    b.source = source;
    for (size_t i = 0; i < b.n_customers; i++) {
        b.customers[i].remote_version = version;
    }
    struct sd_apply_result res;
    sd_apply_result_init(&res);
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_savepoint(f->h), 0);
    assert_int_equal(sd_store_apply_ingest(f->h, tenant, T, &b, &res), 0);
    assert_int_equal(res.outcome, SD_APPLY_OK);
    int64_t n = -1;
    assert_int_equal(sd_store_outbox_linked_tx(f->h, tenant, T, source, id, member_source, &n), 0);
    assert_int_equal(sd_store_savepoint_release(f->h), 0);
    assert_int_equal(sd_store_write_commit(f->h), 0);
    sd_apply_result_release(&res);
    sd_batch_release(&b);
    sd_issues_release(&errors);
    sd_issues_release(&warnings);
    json_decref(body);
    free(json);
    return n;
}

/* Linked by the tenant's rule (e-mail by default), in the same transaction as the link. */
static void test_linked_count(void **state)
{
    struct fx *f = *state;
    /* nobody of source s360 yet */
    assert_int_equal(ingest_and_count(f, f->t1, "csv", "a", "ann@example.ch", 0, "s360"), 0);
    /* an S-360 contact with Ann's address joins her profile */
    assert_int_equal(ingest_and_count(f, f->t1, "s360", "0001", "ann@example.ch", 5, "s360"), 0);
    /* Ann's next change sees it (the record itself is never counted) */
    assert_int_equal(ingest_and_count(f, f->t1, "csv", "a", "ann@example.ch", 0, "s360"), 1);
    assert_int_equal(ingest_and_count(f, f->t1, "csv", "a", "ann@example.ch", 0, "csv"), 0);
    /* a second contact sharing the address: two */
    assert_int_equal(ingest_and_count(f, f->t1, "s360", "0002", "ann@example.ch", 6, "s360"), 1);
    assert_int_equal(ingest_and_count(f, f->t1, "csv", "a", "ann@example.ch", 0, "s360"), 2);
    /* another address, another tenant: none */
    assert_int_equal(ingest_and_count(f, f->t1, "csv", "b", "bob@example.ch", 0, "s360"), 0);
    assert_int_equal(ingest_and_count(f, f->t2, "csv", "a", "ann@example.ch", 0, "s360"), 0);
    /* a record not stored has no profile: 0, no error */
    int64_t n = -1;
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_outbox_linked_tx(f->h, f->t1, T, "csv", "nobody", "s360", &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(sd_store_outbox_linked_tx(f->h, f->t1, T, NULL, "a", "s360", &n), -EINVAL);
    assert_int_equal(sd_store_write_commit(f->h), 0);
}

/* The remote_version kept with a record: the highest its source gave. */
static void test_customer_version(void **state)
{
    struct fx *f = *state;
    int64_t v = -1;
    assert_int_equal(sd_store_customer_version(f->h, f->t1, T, "s360", "0001", &v), -ENOENT);
    ingest_and_count(f, f->t1, "s360", "0001", "ann@example.ch", 1772355600123LL, "s360");
    assert_int_equal(sd_store_customer_version(f->h, f->t1, T, "s360", "0001", &v), 0);
    assert_true(v == 1772355600123LL);
    /* an older resend is not applied and does not lower it */
    ingest_and_count(f, f->t1, "s360", "0001", "ann@example.ch", 1772355600000LL, "s360");
    assert_int_equal(sd_store_customer_version(f->h, f->t1, T, "s360", "0001", &v), 0);
    assert_true(v == 1772355600123LL);
    /* a record stored without one: 0; scoped to source, tenant and environment */
    ingest_and_count(f, f->t1, "csv", "a", "ann@example.ch", 0, "s360");
    assert_int_equal(sd_store_customer_version(f->h, f->t1, T, "csv", "a", &v), 0);
    assert_true(v == 0);
    assert_int_equal(sd_store_customer_version(f->h, f->t1, T, "csv", "0001", &v), -ENOENT);
    assert_int_equal(sd_store_customer_version(f->h, f->t2, T, "s360", "0001", &v), -ENOENT);
    assert_int_equal(sd_store_customer_version(f->h, f->t1, SD_ENV_PROD, "s360", "0001", &v),
                     -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_linked_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_customer_version, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
