/* test_store.c — conformance tests for store.h, store suite: both backends (a fresh store per
 * test: a temporary directory on SQLite, a fresh database on PostgreSQL). Records are built by
 * hand (the validators are not involved): each carries a small JSON doc so list/get can be
 * checked by content, and is freed with the model's sd_batch_release / sd_sale_rec_release.
 *
 * SD_STORE_BENCH=<commits> makes test_throughput run that many group commits (50 requests of
 * 100 sales each) instead of the short default, and print sales/s. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "base/base.h"
#include "model/model.h"
#include "store/store.h"
#include "store_fixture.h"
#include "store_sql.h"

struct fx {
    struct sd_test_store st;
    struct sd_store_handle *h;
    int64_t t1, t2; /* tenants "acme" and "beta" */
};

/* ---- record builders ------------------------------------------------------------------------ */

static struct sd_event_rec ev(size_t index, const char *id, const char *dup_key)
{
    return (struct sd_event_rec){
        .index = index,
        .event_id = sd_strdup(id),
        .dup_key = sd_strdup(dup_key),
        .doc = sd_asprintf("{\"event_id\":\"%s\",\"k\":\"%s\"}", id, dup_key),
    };
}

static struct sd_customer_rec cu(size_t index, const char *id, const char *email, int opt_out)
{
    return (struct sd_customer_rec){
        .index = index,
        .customer_id = sd_strdup(id),
        .email_key = email ? sd_strdup(email) : NULL,
        .ad_opt_out = opt_out,
        .doc = sd_asprintf("{\"customer_id\":\"%s\"}", id),
    };
}

static struct sd_sale_rec sa(size_t index, const char *inv, const char *event_id,
                             const char *customer_id, int64_t price)
{
    struct sd_sale_rec s = {
        .index = index,
        .invoice_number = sd_strdup(inv),
        .event_id = sd_strdup(event_id),
        .customer_id = sd_strdup(customer_id),
        .purchase_datetime = sd_strdup("2025-01-02T03:04:05Z"),
        .sales_price_minor = price,
        .doc = sd_asprintf("{\"invoice_number\":\"%s\",\"event_id\":\"%s\",\"price\":%lld}", inv,
                           event_id, (long long)price),
    };
    memcpy(s.currency, "EUR", 4);
    return s;
}

static void add_ev(struct sd_batch *b, const char *id, const char *dup_key)
{
    b->events = sd_realloc(b->events, (b->n_events + 1) * sizeof(*b->events));
    b->events[b->n_events] = ev(b->n_events, id, dup_key);
    b->n_events++;
}

static void add_cu(struct sd_batch *b, const char *id, const char *email, int opt_out)
{
    b->customers = sd_realloc(b->customers, (b->n_customers + 1) * sizeof(*b->customers));
    b->customers[b->n_customers] = cu(b->n_customers, id, email, opt_out);
    b->n_customers++;
}

static void add_sa(struct sd_batch *b, const char *inv, const char *event_id, const char *cust)
{
    b->sales = sd_realloc(b->sales, (b->n_sales + 1) * sizeof(*b->sales));
    b->sales[b->n_sales] = sa(b->n_sales, inv, event_id, cust, 8900);
    b->n_sales++;
}

/* One request the way the writer runs it: begin, savepoint, apply, release or roll back the
 * savepoint, commit. Returns the outcome; res is left for the caller to inspect and release. */
static int ingest(struct fx *f, int64_t tenant, enum sd_env env, const struct sd_batch *b,
                  struct sd_apply_result *res)
{
    sd_apply_result_init(res);
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_savepoint(f->h), 0);
    assert_int_equal(sd_store_apply_ingest(f->h, tenant, env, b, res), 0);
    if (res->outcome == SD_APPLY_OK) {
        assert_int_equal(sd_store_savepoint_release(f->h), 0);
    } else {
        assert_int_equal(sd_store_savepoint_rollback(f->h), 0);
    }
    assert_int_equal(sd_store_write_commit(f->h), 0);
    return (int)res->outcome;
}

static int ingest_ok(struct fx *f, int64_t tenant, enum sd_env env, struct sd_batch *b)
{
    struct sd_apply_result res;
    int st = ingest(f, tenant, env, b, &res);
    sd_apply_result_release(&res);
    sd_batch_release(b);
    return st;
}

static int64_t count(struct fx *f, enum sd_kind kind, int64_t tenant, enum sd_env env)
{
    int64_t n = -1;
    assert_int_equal(sd_store_count_records(f->h, kind, tenant, env, &n), 0);
    return n;
}

static char *get(struct fx *f, enum sd_kind kind, int64_t tenant, enum sd_env env,
                 const char *id)
{
    char *doc = NULL;
    int r = sd_store_get_record(f->h, kind, tenant, env, id, &doc);
    if (r == -ENOENT) {
        return NULL;
    }
    assert_int_equal(r, 0);
    return doc;
}

static bool has_issue(const struct sd_issues *l, const char *pointer, const char *needle)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i].pointer, pointer) == 0 && strstr(l->items[i].message, needle)) {
            return true;
        }
    }
    return false;
}

/* ---- fixture -------------------------------------------------------------------------------- */

static void fx_open(struct fx *f)
{
    sd_test_store_open(&f->st, &f->h);
}

static void fx_reopen(struct fx *f)
{
    sd_store_close(f->h);
    f->h = NULL;
    fx_open(f);
}

static int64_t tenant_id(struct fx *f, const char *client_id)
{
    struct sd_tenant t;
    assert_int_equal(sd_store_tenant_get(f->h, client_id, &t), 0);
    int64_t id = t.id;
    sd_tenant_release(&t);
    return id;
}

static int setup(void **state)
{
    struct fx *f = sd_calloc(1, sizeof(*f));
    sd_test_store_setup(&f->st, "store", &f->h); /* the store creates f->st.dir */
    f->t1 = sd_test_store_tenant(f->h, "acme", "Acme Tickets");
    f->t2 = sd_test_store_tenant(f->h, "beta", "Beta Shows");
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

/* ---- open, migrations ------------------------------------------------------------------------ */

extern const unsigned sd_sqlite_schema_count;

static int64_t user_version(const char *dir)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/stagedoor.db", dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void test_open_and_migrations(void **state)
{
    struct fx *f = *state;
    if (!sd_test_store_is_sqlite()) {
        skip(); /* reads and rewrites the SQLite file's user_version */
    }
    struct stat stt;
    assert_int_equal(stat(f->st.dir, &stt), 0);
    assert_int_equal(stt.st_mode & 0777, 0700);
    assert_int_equal(user_version(f->st.dir), (int64_t)sd_sqlite_schema_count);
    fx_reopen(f); /* migrations already applied: reopening changes nothing */
    fx_reopen(f);
    assert_int_equal(user_version(f->st.dir), (int64_t)sd_sqlite_schema_count);
    assert_int_equal(tenant_id(f, "acme"), f->t1);

    struct sd_store_handle *h2 = NULL;
    assert_int_equal(sd_store_open("nosuch", f->st.dir, &h2), -EINVAL);

    /* A database written by a newer program is refused, not half-understood. */
    sd_store_close(f->h);
    f->h = NULL;
    char path[160];
    snprintf(path, sizeof(path), "%s/stagedoor.db", f->st.dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sd_store_open("sqlite", f->st.dir, &h2), -EIO);
    char pragma[64];
    snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %u", sd_sqlite_schema_count);
    assert_int_equal(sqlite3_exec(db, pragma, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    fx_open(f);
    assert_int_equal(sd_store_open("sqlite", "/proc/nonexistent/dir", &h2) < 0, 1);
}

/* ---- control plane --------------------------------------------------------------------------- */

static void test_tenants(void **state)
{
    struct fx *f = *state;
    int64_t v0, v1;
    assert_int_equal(sd_store_settings_version(f->h, &v0), 0);
    assert_true(v0 >= 2); /* two tenant_create in setup */

    assert_int_equal(sd_store_tenant_create(f->h, "acme", "again"), -EEXIST);
    assert_int_equal(sd_store_settings_version(f->h, &v1), 0);
    assert_int_equal(v1, v0); /* failed writes do not bump */

    struct sd_tenant t;
    assert_int_equal(sd_store_tenant_get(f->h, "acme", &t), 0);
    assert_string_equal(t.client_id, "acme");
    assert_string_equal(t.name, "Acme Tickets");
    assert_int_equal(t.per_minute, 500);
    assert_int_equal(t.burst, 1000);
    assert_true(t.created_usec > 0);
    sd_tenant_release(&t);
    assert_int_equal(sd_store_tenant_get(f->h, "nobody", &t), -ENOENT);

    assert_int_equal(sd_store_tenant_set_limits(f->h, "beta", 60, 120), 0);
    assert_int_equal(sd_store_settings_version(f->h, &v1), 0);
    assert_int_equal(v1, v0 + 1);
    assert_int_equal(sd_store_tenant_set_limits(f->h, "nobody", 1, 1), -ENOENT);
    assert_int_equal(sd_store_tenant_get(f->h, "beta", &t), 0);
    assert_int_equal(t.per_minute, 60);
    assert_int_equal(t.burst, 120);
    sd_tenant_release(&t);

    struct sd_tenant *v = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_tenant_list(f->h, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].client_id, "acme");
    assert_string_equal(v[1].client_id, "beta");
    sd_tenants_free(v, n);
}

static void test_keys_and_auth_snapshot(void **state)
{
    struct fx *f = *state;
    int64_t v0, v1;
    assert_int_equal(sd_store_settings_version(f->h, &v0), 0);
    assert_int_equal(sd_store_key_insert(f->h, "key_a", "acme", SD_ENV_TEST, "aa11"), 0);
    assert_int_equal(sd_store_key_insert(f->h, "key_b", "acme", SD_ENV_PROD, "bb22"), 0);
    assert_int_equal(sd_store_key_insert(f->h, "key_c", "nobody", SD_ENV_PROD, "cc33"), -ENOENT);
    assert_int_equal(sd_store_key_insert(f->h, "key_a", "beta", SD_ENV_PROD, "dd44"), -EEXIST);
    assert_int_equal(sd_store_key_insert(f->h, "key_d", "beta", SD_ENV_PROD, "aa11"), -EEXIST);
    assert_int_equal(sd_store_settings_version(f->h, &v1), 0);
    assert_int_equal(v1, v0 + 2);

    struct sd_key_info *k = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_key_list(f->h, "acme", &k, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(k[0].key_id, "key_a");
    assert_string_equal(k[0].client_id, "acme");
    assert_int_equal(k[0].tenant_id, f->t1);
    assert_int_equal(k[0].env, SD_ENV_TEST);
    assert_null(k[0].hash_hex); /* only auth_snapshot returns hashes */
    assert_int_equal(k[1].env, SD_ENV_PROD);
    assert_int_equal(k[1].revoked_usec, 0);
    sd_keys_free(k, n);
    assert_int_equal(sd_store_key_list(f->h, "beta", &k, &n), 0);
    assert_int_equal(n, 0);
    sd_keys_free(k, n);
    assert_int_equal(sd_store_key_list(f->h, "nobody", &k, &n), -ENOENT);

    assert_int_equal(sd_store_key_revoke(f->h, "key_a"), 0);
    assert_int_equal(sd_store_settings_version(f->h, &v0), 0);
    assert_int_equal(v0, v1 + 1);
    assert_int_equal(sd_store_key_revoke(f->h, "nosuch"), -ENOENT);

    struct sd_tenant *t = NULL;
    size_t nt = 0;
    assert_int_equal(sd_store_auth_snapshot(f->h, &t, &nt, &k, &n), 0);
    assert_int_equal(nt, 2);
    assert_int_equal(n, 2);
    int64_t revoked = 0;
    for (size_t i = 0; i < n; i++) {
        assert_non_null(k[i].hash_hex);
        if (strcmp(k[i].key_id, "key_a") == 0) {
            assert_string_equal(k[i].hash_hex, "aa11");
            revoked = k[i].revoked_usec;
        } else {
            assert_int_equal(k[i].revoked_usec, 0);
        }
    }
    assert_true(revoked > 0);
    sd_tenants_free(t, nt);
    sd_keys_free(k, n);

    /* Revoking again succeeds and keeps the first time. */
    usleep(2000);
    assert_int_equal(sd_store_key_revoke(f->h, "key_a"), 0);
    assert_int_equal(sd_store_key_list(f->h, "acme", &k, &n), 0);
    assert_int_equal(k[0].revoked_usec, revoked);
    sd_keys_free(k, n);
}

static void test_settings_seen_by_other_handle(void **state)
{
    /* Another process (the CLI) writes the same file; a running server notices. */
    struct fx *f = *state;
    struct sd_store_handle *cli = NULL;
    sd_test_store_open(&f->st, &cli);
    int64_t v0, v1;
    assert_int_equal(sd_store_settings_version(f->h, &v0), 0);
    assert_int_equal(sd_store_tenant_create(cli, "gamma", "Gamma"), 0);
    assert_int_equal(sd_store_settings_version(f->h, &v1), 0);
    assert_int_equal(v1, v0 + 1);
    struct sd_tenant t;
    assert_int_equal(sd_store_tenant_get(f->h, "gamma", &t), 0);
    sd_tenant_release(&t);
    sd_store_close(cli);
}

/* ---- ingest ---------------------------------------------------------------------------------- */

static void test_ingest_insert_and_upsert(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {0};
    add_ev(&b, "E1", "2025-05-01|20:00:00|arena|hall a");
    add_ev(&b, "E2", "2025-05-02|20:00:00|arena|hall a");
    add_cu(&b, "C1", "a@example.org", 1);
    add_cu(&b, "C2", NULL, -1);
    add_sa(&b, "INV-1", "E1", "C1");
    add_sa(&b, "INV-2", "E2", "ANON");
    add_sa(&b, "INV-3", "E1", "C2");
    struct sd_apply_result res;
    assert_int_equal(ingest(f, f->t1, SD_ENV_TEST, &b, &res), SD_APPLY_OK);
    assert_int_equal(res.errors.n, 0);
    assert_int_equal(res.warnings.n, 0);
    sd_apply_result_release(&res);
    sd_batch_release(&b);
    assert_int_equal(count(f, SD_KIND_EVENT, f->t1, SD_ENV_TEST), 2);
    assert_int_equal(count(f, SD_KIND_CUSTOMER, f->t1, SD_ENV_TEST), 2);
    assert_int_equal(count(f, SD_KIND_SALE, f->t1, SD_ENV_TEST), 3);

    struct sd_record_page p = {0};
    assert_int_equal(sd_store_list_records(f->h, SD_KIND_EVENT, f->t1, SD_ENV_TEST, 0, 10, &p), 0);
    assert_int_equal(p.n, 2);
    int64_t e2_seq = p.seqs[1];
    assert_true(p.seqs[0] < p.seqs[1]);
    sd_record_page_release(&p);

    /* Upserts: same ids, new content, new seq, counts unchanged. */
    add_ev(&b, "E2", "2025-06-02|21:00:00|arena|hall b");
    add_cu(&b, "C1", "b@example.org", -1); /* opt-out omitted: the stored one stays */
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_TEST, &b), SD_APPLY_OK);
    assert_int_equal(count(f, SD_KIND_EVENT, f->t1, SD_ENV_TEST), 2);
    assert_int_equal(count(f, SD_KIND_CUSTOMER, f->t1, SD_ENV_TEST), 2);
    char *doc = get(f, SD_KIND_EVENT, f->t1, SD_ENV_TEST, "E2");
    assert_non_null(strstr(doc, "hall b"));
    free(doc);
    assert_int_equal(sd_store_list_records(f->h, SD_KIND_EVENT, f->t1, SD_ENV_TEST, e2_seq, 10,
                                           &p),
                     0);
    assert_int_equal(p.n, 1); /* only E2 changed after its old seq */
    assert_non_null(strstr(p.docs[0], "\"E2\""));
    assert_true(p.seqs[0] > e2_seq);
    sd_record_page_release(&p);
}

static void test_alias_detection(void **state)
{
    struct fx *f = *state;
    const char *k = "2025-05-01|20:00:00|arena|hall a";
    struct sd_batch b = {0};
    add_ev(&b, "E1", k);
    add_ev(&b, "E1-dup", k); /* same performance within one request */
    struct sd_apply_result res;
    assert_int_equal(ingest(f, f->t1, SD_ENV_TEST, &b, &res), SD_APPLY_OK);
    assert_int_equal(res.warnings.n, 1);
    assert_true(has_issue(&res.warnings, "/events/1",
                          "same performance (date, time, venue, hall) as event 'E1'; 'E1-dup' "
                          "stored as an alias"));
    sd_apply_result_release(&res);
    sd_batch_release(&b);
    assert_int_equal(count(f, SD_KIND_EVENT, f->t1, SD_ENV_TEST), 1);

    /* get_record through the alias returns the canonical event. */
    char *doc = get(f, SD_KIND_EVENT, f->t1, SD_ENV_TEST, "E1-dup");
    assert_non_null(doc);
    assert_non_null(strstr(doc, "\"event_id\":\"E1\""));
    free(doc);

    /* Sending the alias again updates the canonical event, with a warning. */
    add_ev(&b, "E0", "other|key");
    add_ev(&b, "E1-dup", "2025-05-01|20:00:00|arena|hall z");
    assert_int_equal(ingest(f, f->t1, SD_ENV_TEST, &b, &res), SD_APPLY_OK);
    assert_true(has_issue(&res.warnings, "/events/1",
                          "'E1-dup' is an alias of event 'E1'; updated that event"));
    sd_apply_result_release(&res);
    sd_batch_release(&b);
    assert_int_equal(count(f, SD_KIND_EVENT, f->t1, SD_ENV_TEST), 2);
    doc = get(f, SD_KIND_EVENT, f->t1, SD_ENV_TEST, "E1");
    assert_non_null(strstr(doc, "hall z"));
    free(doc);

    /* A sale may reference the alias. */
    add_sa(&b, "INV-A", "E1-dup", "ANON");
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_TEST, &b), SD_APPLY_OK);
    assert_int_equal(count(f, SD_KIND_SALE, f->t1, SD_ENV_TEST), 1);

    /* Same performance in another env or tenant is not a duplicate. */
    add_ev(&b, "P1", "2025-05-01|20:00:00|arena|hall z");
    assert_int_equal(ingest(f, f->t1, SD_ENV_PROD, &b, &res), SD_APPLY_OK);
    assert_int_equal(res.warnings.n, 0);
    sd_apply_result_release(&res);
    sd_batch_release(&b);
    add_ev(&b, "Q1", "2025-05-01|20:00:00|arena|hall z");
    assert_int_equal(ingest(f, f->t2, SD_ENV_TEST, &b, &res), SD_APPLY_OK);
    assert_int_equal(res.warnings.n, 0);
    sd_apply_result_release(&res);
    sd_batch_release(&b);
    assert_null(get(f, SD_KIND_EVENT, f->t1, SD_ENV_PROD, "E1-dup"));
}

static void test_reference_errors_roll_back(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {0};
    add_ev(&b, "E1", "k1");
    add_cu(&b, "C1", NULL, 0);
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_TEST, &b), SD_APPLY_OK);
    struct sd_record_page p = {0};
    assert_int_equal(sd_store_list_records(f->h, SD_KIND_CUSTOMER, f->t1, SD_ENV_TEST, 0, 10, &p),
                     0);
    int64_t last_seq = p.seqs[p.n - 1];
    sd_record_page_release(&p);

    add_ev(&b, "E2", "k2"); /* would be stored, but the request fails as a whole */
    add_sa(&b, "INV-1", "E1", "C1");
    add_sa(&b, "INV-2", "NOPE", "C1");
    add_sa(&b, "INV-3", "E1", "C-NOPE");
    add_sa(&b, "INV-4", "NOPE2", "ANON");
    struct sd_apply_result res;
    assert_int_equal(ingest(f, f->t1, SD_ENV_TEST, &b, &res), SD_APPLY_REFUSED);
    assert_int_equal(res.errors.n, 3);
    assert_true(has_issue(&res.errors, "/sales/1/event_id", "event 'NOPE' does not exist in test"));
    assert_true(has_issue(&res.errors, "/sales/2/customer_id",
                          "customer 'C-NOPE' does not exist in test"));
    assert_true(has_issue(&res.errors, "/sales/3/event_id", "event 'NOPE2' does not exist"));
    assert_int_equal(res.n_duplicate_invoices, 0);
    sd_apply_result_release(&res);
    sd_batch_release(&b);
    assert_int_equal(count(f, SD_KIND_SALE, f->t1, SD_ENV_TEST), 0);
    assert_null(get(f, SD_KIND_EVENT, f->t1, SD_ENV_TEST, "E2"));

    /* The seq counter was restored: the next change gets last_seq + 1. */
    add_cu(&b, "C9", NULL, -1);
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_TEST, &b), SD_APPLY_OK);
    assert_int_equal(sd_store_list_records(f->h, SD_KIND_CUSTOMER, f->t1, SD_ENV_TEST, last_seq,
                                           10, &p),
                     0);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.seqs[0], last_seq + 1);
    sd_record_page_release(&p);
}

static void test_duplicate_invoices_409(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {0};
    add_ev(&b, "E1", "k1");
    add_sa(&b, "INV-1", "E1", "ANON");
    add_sa(&b, "INV-2", "E1", "ANON");
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_TEST, &b), SD_APPLY_OK);

    add_sa(&b, "INV-3", "E1", "ANON");
    add_sa(&b, "INV-2", "E1", "ANON");
    add_sa(&b, "INV-1", "E1", "ANON");
    struct sd_apply_result res;
    assert_int_equal(ingest(f, f->t1, SD_ENV_TEST, &b, &res), SD_APPLY_DUPLICATE);
    assert_int_equal(res.n_duplicate_invoices, 2);
    assert_string_equal(res.duplicate_invoices[0], "INV-2");
    assert_string_equal(res.duplicate_invoices[1], "INV-1");
    sd_apply_result_release(&res);
    sd_batch_release(&b);
    assert_int_equal(count(f, SD_KIND_SALE, f->t1, SD_ENV_TEST), 2);
    assert_null(get(f, SD_KIND_SALE, f->t1, SD_ENV_TEST, "INV-3"));

    /* The same invoice number in another env or tenant is a different sale. */
    add_ev(&b, "E1", "k1");
    add_sa(&b, "INV-1", "E1", "ANON");
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_PROD, &b), SD_APPLY_OK);
    add_ev(&b, "E1", "k1");
    add_sa(&b, "INV-1", "E1", "ANON");
    assert_int_equal(ingest_ok(f, f->t2, SD_ENV_TEST, &b), SD_APPLY_OK);
}

/* A webhook batch (new invoices only): refund records change the sale they name, sent in the
 * same batch or before; an invoice twice in one batch is a duplicate once. */
static void set_sale(struct sd_sale_rec *s, int64_t quantity, const char *refund_of)
{
    s->state.quantity = quantity;
    s->state.total_minor = quantity * s->sales_price_minor;
    memcpy(s->state.currency, "EUR", 4);
    s->refund_of = refund_of ? sd_strdup(refund_of) : NULL;
    s->net_quantity = quantity;
    s->net_minor = s->state.total_minor;
}

static void test_webhook_refunds_and_duplicates(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {0};
    add_ev(&b, "E1", "k1");
    add_cu(&b, "C1", "c1@example.com", 0);
    add_sa(&b, "S1", "E1", "C1");
    add_sa(&b, "R1", "E1", "C1");
    set_sale(&b.sales[0], 3, NULL);
    set_sale(&b.sales[1], 1, "S1");
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_TEST, &b), SD_APPLY_OK);
    add_sa(&b, "R2", "E1", "C1");
    set_sale(&b.sales[0], 1, "S1");
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_TEST, &b), SD_APPLY_OK);
    char *rows = sd_test_sql(&f->st, "SELECT invoice_number, status, refunded_quantity,"
                                     " rr_quantity, net_quantity FROM sales ORDER BY seq");
    assert_string_equal(rows, "S1|refunded|2|2|1\n"
                              "R1|sold|0|0|1\n"
                              "R2|sold|0|0|1\n");
    free(rows);

    add_sa(&b, "S9", "E1", "ANON");
    add_sa(&b, "S8", "E1", "ANON");
    add_sa(&b, "S9", "E1", "ANON");
    struct sd_apply_result res;
    assert_int_equal(ingest(f, f->t1, SD_ENV_TEST, &b, &res), SD_APPLY_DUPLICATE);
    assert_int_equal(res.n_duplicate_invoices, 1);
    assert_string_equal(res.duplicate_invoices[0], "S9");
    sd_apply_result_release(&res);
    sd_batch_release(&b);
    assert_int_equal(count(f, SD_KIND_SALE, f->t1, SD_ENV_TEST), 3);
}

/* An upsert batch the store refuses writes nothing, even without a savepoint around it: the
 * CSV importer stores it again without the rows named, inside the file's one transaction. And
 * a batch naming more events than the per-batch map starts with resolves every one. */
static void test_upsert_refused_writes_nothing(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {0};
    char id[16], inv[16];
    for (int i = 0; i < 150; i++) {
        snprintf(id, sizeof(id), "EV%d", i);
        add_ev(&b, id, id);
    }
    add_cu(&b, "C1", "c1@example.com", 0);
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_TEST, &b), SD_APPLY_OK);

    add_sa(&b, "U-1", "EV1", "C1");
    add_sa(&b, "U-2", "NOPE", "C1");
    add_sa(&b, "U-3", "EV2", "ANON");
    add_sa(&b, "U-4", "EV3", "C-NOPE");
    b.upsert_sales = true;
    struct sd_apply_result res;
    sd_apply_result_init(&res);
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_apply_ingest(f->h, f->t1, SD_ENV_TEST, &b, &res), 0);
    assert_int_equal(res.outcome, SD_APPLY_REFUSED);
    assert_int_equal(res.errors.n, 2);
    assert_string_equal(res.errors.items[0].pointer, "/sales/1/event_id");
    assert_string_equal(res.errors.items[1].pointer, "/sales/3/customer_id");
    assert_int_equal(sd_store_write_commit(f->h), 0); /* committed, not rolled back */
    sd_apply_result_release(&res);
    sd_batch_release(&b);
    assert_int_equal(count(f, SD_KIND_SALE, f->t1, SD_ENV_TEST), 0);

    /* 300 sales over the 150 events, twice each, in a scattered order: all stored. */
    for (int i = 0; i < 300; i++) {
        snprintf(inv, sizeof(inv), "M-%d", i);
        snprintf(id, sizeof(id), "EV%d", (i * 37) % 150);
        add_sa(&b, inv, id, i % 2 ? "C1" : "ANON");
    }
    b.upsert_sales = true;
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_TEST, &b), SD_APPLY_OK);
    assert_int_equal(count(f, SD_KIND_SALE, f->t1, SD_ENV_TEST), 300);
    char *doc = get(f, SD_KIND_SALE, f->t1, SD_ENV_TEST, "M-299");
    assert_non_null(doc);
    free(doc);
}

/* Batch transports: an identical re-sent sale is unchanged (no 409, no new seq), a changed one
 * replaces the stored one with a new seq. */
static void test_upsert_sales(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {0};
    add_ev(&b, "E1", "k1");
    add_sa(&b, "INV-1", "E1", "ANON");
    add_sa(&b, "INV-2", "E1", "ANON");
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_TEST, &b), SD_APPLY_OK);
    struct sd_record_page p0 = {0};
    assert_int_equal(sd_store_list_records(f->h, SD_KIND_SALE, f->t1, SD_ENV_TEST, 0, 100, &p0), 0);
    int64_t last_seq = p0.seqs[p0.n - 1];
    sd_record_page_release(&p0);

    add_sa(&b, "INV-1", "E1", "ANON");
    add_sa(&b, "INV-2", "E1", "ANON");
    b.sales[1].sales_price_minor = 9900;
    free(b.sales[1].doc);
    b.sales[1].doc = sd_strdup("{\"invoice_number\":\"INV-2\",\"price\":9900}");
    b.upsert_sales = true;
    struct sd_apply_result res;
    assert_int_equal(ingest(f, f->t1, SD_ENV_TEST, &b, &res), SD_APPLY_OK);
    assert_int_equal(res.n_unchanged, 1);
    assert_int_equal(res.n_duplicate_invoices, 0);
    sd_apply_result_release(&res);
    sd_batch_release(&b);
    char *doc = get(f, SD_KIND_SALE, f->t1, SD_ENV_TEST, "INV-2");
    assert_non_null(strstr(doc, "9900"));
    free(doc);
    /* Only the changed sale moved past the old cursor. */
    struct sd_record_page p = {0};
    assert_int_equal(
        sd_store_list_records(f->h, SD_KIND_SALE, f->t1, SD_ENV_TEST, last_seq, 100, &p), 0);
    assert_int_equal(p.n, 1);
    assert_non_null(strstr(p.docs[0], "INV-2"));
    sd_record_page_release(&p);
    assert_int_equal(count(f, SD_KIND_SALE, f->t1, SD_ENV_TEST), 2);

    /* An event or customer re-sent with identical content keeps its place in change order. */
    struct sd_record_page pe = {0};
    add_cu(&b, "C1", "c1@example.com", 0);
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_TEST, &b), SD_APPLY_OK);
    assert_int_equal(sd_store_list_records(f->h, SD_KIND_EVENT, f->t1, SD_ENV_TEST, 0, 100, &pe),
                     0);
    int64_t ev_seq = pe.seqs[pe.n - 1];
    sd_record_page_release(&pe);
    struct sd_record_page pc = {0};
    assert_int_equal(
        sd_store_list_records(f->h, SD_KIND_CUSTOMER, f->t1, SD_ENV_TEST, 0, 100, &pc), 0);
    int64_t cu_seq = pc.seqs[pc.n - 1];
    sd_record_page_release(&pc);
    add_ev(&b, "E1", "k1");
    add_cu(&b, "C1", "c1@example.com", 0);
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_TEST, &b), SD_APPLY_OK);
    assert_int_equal(
        sd_store_list_records(f->h, SD_KIND_EVENT, f->t1, SD_ENV_TEST, ev_seq, 100, &pe), 0);
    assert_int_equal(pe.n, 0);
    sd_record_page_release(&pe);
    assert_int_equal(
        sd_store_list_records(f->h, SD_KIND_CUSTOMER, f->t1, SD_ENV_TEST, cu_seq, 100, &pc), 0);
    assert_int_equal(pc.n, 0);
    sd_record_page_release(&pc);
    /* … and a real change moves it. */
    add_cu(&b, "C1", "c1@example.com", 1);
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_TEST, &b), SD_APPLY_OK);
    assert_int_equal(
        sd_store_list_records(f->h, SD_KIND_CUSTOMER, f->t1, SD_ENV_TEST, cu_seq, 100, &pc), 0);
    assert_int_equal(pc.n, 1);
    sd_record_page_release(&pc);
}

/* Events and customers re-sent with identical content count as unchanged, like sales do in an
 * upsert batch (a batch connector's ack reports records_unchanged from this count); a changed
 * one, a new one, and a record that creates an alias do not. */
static void test_unchanged_counts(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {0};
    struct sd_apply_result res;
    add_ev(&b, "E1", "k1");
    add_ev(&b, "E2", "k2");
    add_cu(&b, "C1", "c1@example.com", 0);
    add_cu(&b, "C2", NULL, -1);
    assert_int_equal(ingest(f, f->t1, SD_ENV_TEST, &b, &res), SD_APPLY_OK);
    assert_int_equal(res.n_unchanged, 0); /* all new */
    sd_apply_result_release(&res);
    sd_batch_release(&b);

    /* The same records again: all four unchanged, webhook batch or upsert batch alike. */
    for (int upsert = 0; upsert < 2; upsert++) {
        add_ev(&b, "E1", "k1");
        add_ev(&b, "E2", "k2");
        add_cu(&b, "C1", "c1@example.com", 0);
        add_cu(&b, "C2", NULL, -1);
        b.upsert_sales = upsert;
        assert_int_equal(ingest(f, f->t1, SD_ENV_TEST, &b, &res), SD_APPLY_OK);
        assert_int_equal(res.n_unchanged, 4);
        sd_apply_result_release(&res);
        sd_batch_release(&b);
    }

    /* Changed content (E1's performance, C1's e-mail), a new event and a new customer: only E2
     * and C2 are unchanged. */
    add_ev(&b, "E1", "k1-moved");
    add_ev(&b, "E2", "k2");
    add_ev(&b, "E3", "k3");
    add_cu(&b, "C1", "c1-new@example.com", 0);
    add_cu(&b, "C2", NULL, -1);
    add_cu(&b, "C3", NULL, -1);
    assert_int_equal(ingest(f, f->t1, SD_ENV_TEST, &b, &res), SD_APPLY_OK);
    assert_int_equal(res.n_unchanged, 2);
    sd_apply_result_release(&res);
    sd_batch_release(&b);

    /* An omitted opt-out flag keeps the stored one: the customer is still unchanged. */
    add_cu(&b, "C1", "c1-new@example.com", -1);
    assert_int_equal(ingest(f, f->t1, SD_ENV_TEST, &b, &res), SD_APPLY_OK);
    assert_int_equal(res.n_unchanged, 1);
    sd_apply_result_release(&res);
    sd_batch_release(&b);

    /* Same performance under another id: a new alias is stored (not unchanged); sent again
     * under that alias it updates E2 with identical content (unchanged). */
    add_ev(&b, "E2-dup", "k2");
    assert_int_equal(ingest(f, f->t1, SD_ENV_TEST, &b, &res), SD_APPLY_OK);
    assert_int_equal(res.n_unchanged, 0);
    sd_apply_result_release(&res);
    sd_batch_release(&b);
    add_ev(&b, "E2-dup", "k2");
    assert_int_equal(ingest(f, f->t1, SD_ENV_TEST, &b, &res), SD_APPLY_OK);
    assert_int_equal(res.n_unchanged, 1);
    sd_apply_result_release(&res);
    sd_batch_release(&b);
}

/* Connector configuration (control plane) and state (write path, read back through the pool). */
static void test_connectors(void **state)
{
    struct fx *f = *state;
    int64_t v0 = 0, v1 = 0;
    assert_int_equal(sd_store_settings_version(f->h, &v0), 0);
    struct sd_connector_conf c = {.id = "con_1", .tenant_id = f->t1, .env = SD_ENV_PROD,
                                  .type = "feed", .schedule = "hourly",
                                  .settings = "{\"url\":\"http://x\"}", .mapping = "{}"};
    assert_int_equal(sd_store_connector_put(f->h, &c, true), 0);
    assert_int_equal(sd_store_connector_put(f->h, &c, true), -EEXIST);
    assert_int_equal(sd_store_settings_version(f->h, &v1), 0);
    assert_true(v1 > v0);
    c.id = "con_2";
    c.tenant_id = f->t2;
    c.env = SD_ENV_TEST;
    assert_int_equal(sd_store_connector_put(f->h, &c, true), 0);

    struct sd_connector_conf *v = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_connector_list(f->h, f->t1, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].id, "con_1");
    assert_string_equal(v[0].client_id, "acme");
    assert_int_equal(v[0].env, SD_ENV_PROD);
    sd_connector_confs_free(v, n);
    assert_int_equal(sd_store_connector_list(f->h, 0, &v, &n), 0);
    assert_int_equal(n, 2);
    sd_connector_confs_free(v, n);

    struct sd_connector_conf u = {.id = "con_1", .schedule = "every 15m",
                                  .settings = "{\"url\":\"http://y\"}", .mapping = "{\"a\":1}"};
    assert_int_equal(sd_store_connector_put(f->h, &u, false), 0);
    u.id = "con_nope";
    assert_int_equal(sd_store_connector_put(f->h, &u, false), -ENOENT);
    struct sd_connector_conf g = {0};
    assert_int_equal(sd_store_connector_get(f->h, "con_1", &g), 0);
    assert_string_equal(g.schedule, "every 15m");
    assert_string_equal(g.type, "feed"); /* type and env never change on update */
    assert_int_equal(g.env, SD_ENV_PROD);
    assert_string_equal(g.settings, "{\"url\":\"http://y\"}");
    sd_connector_conf_release(&g);
    assert_int_equal(sd_store_connector_request_run(f->h, "con_1", 42), 0);
    assert_int_equal(sd_store_connector_get(f->h, "con_1", &g), 0);
    assert_int_equal(g.run_requested_usec, 42);
    sd_connector_conf_release(&g);
    assert_int_equal(sd_store_connector_request_run(f->h, "con_nope", 42), -ENOENT);

    /* State: written inside a write transaction, visible once committed, gone with a rollback. */
    char *doc = NULL;
    assert_int_equal(sd_store_connector_state_get(f->h, "con_1", &doc), -ENOENT);
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_connector_state_put(f->h, "con_1", "{\"cursor\":\"a\"}"), 0);
    assert_int_equal(sd_store_write_commit(f->h), 0);
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_connector_state_put(f->h, "con_1", "{\"cursor\":\"b\"}"), 0);
    assert_int_equal(sd_store_write_rollback(f->h), 0);
    assert_int_equal(sd_store_connector_state_get(f->h, "con_1", &doc), 0);
    assert_string_equal(doc, "{\"cursor\":\"a\"}");
    free(doc);

    assert_int_equal(sd_store_connector_delete(f->h, "con_1"), 0);
    assert_int_equal(sd_store_connector_delete(f->h, "con_1"), -ENOENT);
    assert_int_equal(sd_store_connector_get(f->h, "con_1", &g), -ENOENT);
    assert_int_equal(sd_store_connector_state_get(f->h, "con_1", &doc), -ENOENT);
}

static void test_env_and_tenant_isolation(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {0};
    add_ev(&b, "E1", "k1");
    add_cu(&b, "C1", "x@example.org", 0);
    add_sa(&b, "INV-1", "E1", "C1");
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_TEST, &b), SD_APPLY_OK);

    for (int kind = SD_KIND_EVENT; kind <= SD_KIND_SALE; kind++) {
        assert_int_equal(count(f, kind, f->t1, SD_ENV_PROD), 0);
        assert_int_equal(count(f, kind, f->t2, SD_ENV_TEST), 0);
        struct sd_record_page p = {0};
        assert_int_equal(sd_store_list_records(f->h, kind, f->t1, SD_ENV_PROD, 0, 10, &p), 0);
        assert_int_equal(p.n, 0);
        assert_false(p.has_more);
        sd_record_page_release(&p);
    }
    assert_null(get(f, SD_KIND_EVENT, f->t1, SD_ENV_PROD, "E1"));
    assert_null(get(f, SD_KIND_CUSTOMER, f->t1, SD_ENV_PROD, "C1"));
    assert_null(get(f, SD_KIND_SALE, f->t1, SD_ENV_PROD, "INV-1"));
    assert_null(get(f, SD_KIND_SALE, f->t2, SD_ENV_TEST, "INV-1"));

    /* References never cross env or tenant. */
    add_sa(&b, "INV-2", "E1", "C1");
    struct sd_apply_result res;
    assert_int_equal(ingest(f, f->t1, SD_ENV_PROD, &b, &res), SD_APPLY_REFUSED);
    assert_true(has_issue(&res.errors, "/sales/0/event_id", "event 'E1' does not exist in prod"));
    assert_true(has_issue(&res.errors, "/sales/0/customer_id", "does not exist in prod"));
    sd_apply_result_release(&res);
    assert_int_equal(ingest(f, f->t2, SD_ENV_TEST, &b, &res), SD_APPLY_REFUSED);
    assert_int_equal(res.errors.n, 2);
    sd_apply_result_release(&res);
    sd_batch_release(&b);
}

static void test_list_paging(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {0};
    add_ev(&b, "E1", "k1");
    for (int i = 0; i < 25; i++) {
        char inv[16];
        snprintf(inv, sizeof(inv), "INV-%02d", i);
        add_sa(&b, inv, "E1", "ANON");
    }
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_TEST, &b), SD_APPLY_OK);

    int64_t cursor = 0;
    size_t total = 0;
    int pages = 0;
    for (;;) {
        struct sd_record_page p = {0};
        assert_int_equal(
            sd_store_list_records(f->h, SD_KIND_SALE, f->t1, SD_ENV_TEST, cursor, 10, &p), 0);
        for (size_t i = 0; i < p.n; i++) {
            char want[48];
            snprintf(want, sizeof(want), "\"INV-%02zu\"", total + i);
            assert_non_null(strstr(p.docs[i], want));
            assert_true(p.seqs[i] > cursor);
            cursor = p.seqs[i];
        }
        total += p.n;
        pages++;
        bool more = p.has_more;
        assert_int_equal(more, total < 25);
        sd_record_page_release(&p);
        if (!more) {
            break;
        }
    }
    assert_int_equal(total, 25);
    assert_int_equal(pages, 3);

    /* A changed record reappears after the cursor. */
    struct sd_sale_rec s = sa(0, "INV-03", "E1", "ANON", 100);
    struct sd_apply_result res;
    sd_apply_result_init(&res);
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_replace_sale(f->h, f->t1, SD_ENV_TEST, &s, &res), 0);
    assert_int_equal(res.outcome, SD_APPLY_OK);
    assert_int_equal(sd_store_write_commit(f->h), 0);
    sd_apply_result_release(&res);
    sd_sale_rec_release(&s);
    struct sd_record_page p = {0};
    assert_int_equal(sd_store_list_records(f->h, SD_KIND_SALE, f->t1, SD_ENV_TEST, cursor, 10, &p),
                     0);
    assert_int_equal(p.n, 1);
    assert_false(p.has_more);
    assert_non_null(strstr(p.docs[0], "\"INV-03\""));
    assert_non_null(strstr(p.docs[0], "\"price\":100"));
    sd_record_page_release(&p);

    /* limit 0: nothing, but has_more tells whether anything is there. */
    assert_int_equal(sd_store_list_records(f->h, SD_KIND_SALE, f->t1, SD_ENV_TEST, 0, 0, &p), 0);
    assert_int_equal(p.n, 0);
    assert_true(p.has_more);
    sd_record_page_release(&p);
}

static void test_replace_sale(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {0};
    add_ev(&b, "E1", "k1");
    add_ev(&b, "E2", "k2");
    add_ev(&b, "E2b", "k2"); /* alias of E2 */
    add_cu(&b, "C1", NULL, -1);
    add_sa(&b, "INV-1", "E1", "ANON");
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_TEST, &b), SD_APPLY_OK);

    struct {
        const char *inv, *event_id, *customer_id;
        enum sd_apply_outcome outcome;
        const char *err_ptr;
    } cases[] = {
        {"INV-1", "E2b", "C1", SD_APPLY_OK, NULL},
        {"INV-404", "E1", "ANON", SD_APPLY_NOT_FOUND, NULL},
        {"INV-1", "NOPE", "ANON", SD_APPLY_REFUSED, "/event_id"},
        {"INV-1", "E1", "C-NOPE", SD_APPLY_REFUSED, "/customer_id"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sd_sale_rec s = sa(0, cases[i].inv, cases[i].event_id, cases[i].customer_id, 42);
        struct sd_apply_result res;
        sd_apply_result_init(&res);
        assert_int_equal(sd_store_write_begin(f->h), 0);
        assert_int_equal(sd_store_replace_sale(f->h, f->t1, SD_ENV_TEST, &s, &res), 0);
        assert_int_equal(res.outcome, cases[i].outcome);
        if (cases[i].err_ptr) {
            assert_true(has_issue(&res.errors, cases[i].err_ptr, "does not exist in test"));
        }
        assert_int_equal(sd_store_write_commit(f->h), 0);
        sd_apply_result_release(&res);
        sd_sale_rec_release(&s);
    }
    char *doc = get(f, SD_KIND_SALE, f->t1, SD_ENV_TEST, "INV-1");
    assert_non_null(strstr(doc, "\"event_id\":\"E2b\""));
    assert_non_null(strstr(doc, "\"price\":42"));
    free(doc);
    assert_int_equal(count(f, SD_KIND_SALE, f->t1, SD_ENV_TEST), 1);
    /* Not visible in the other env. */
    struct sd_sale_rec s = sa(0, "INV-1", "E1", "ANON", 1);
    struct sd_apply_result res;
    sd_apply_result_init(&res);
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_replace_sale(f->h, f->t1, SD_ENV_PROD, &s, &res), 0);
    assert_int_equal(res.outcome, SD_APPLY_NOT_FOUND);
    assert_int_equal(sd_store_write_rollback(f->h), 0);
    sd_apply_result_release(&res);
    sd_sale_rec_release(&s);
}

static void test_write_rollback(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {0};
    add_ev(&b, "E1", "k1");
    struct sd_apply_result res;
    sd_apply_result_init(&res);
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_savepoint(f->h), 0);
    assert_int_equal(sd_store_apply_ingest(f->h, f->t1, SD_ENV_TEST, &b, &res), 0);
    assert_int_equal(sd_store_savepoint_release(f->h), 0);
    /* Readers never see uncommitted data. */
    assert_int_equal(count(f, SD_KIND_EVENT, f->t1, SD_ENV_TEST), 0);
    assert_int_equal(sd_store_write_rollback(f->h), 0);
    sd_apply_result_release(&res);
    assert_int_equal(count(f, SD_KIND_EVENT, f->t1, SD_ENV_TEST), 0);
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_TEST, &b), SD_APPLY_OK);
    struct sd_record_page p = {0};
    assert_int_equal(sd_store_list_records(f->h, SD_KIND_EVENT, f->t1, SD_ENV_TEST, 0, 10, &p), 0);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.seqs[0], 1); /* the rolled back seq was reused */
    sd_record_page_release(&p);
}

/* One group of requests the way the writer runs them: each savepoint undoes exactly its own
 * request, also next to requests that ran no statement, and the numbering skips nothing kept. */
static void test_savepoints_in_one_group(void **state)
{
    struct fx *f = *state;
    struct sd_batch a = {0}, refused = {0}, c = {0}, dup = {0};
    add_ev(&a, "E1", "k1");
    add_sa(&refused, "INV-X", "E-MISSING", SD_ANON_CUSTOMER);
    add_ev(&c, "E2", "k2");
    add_sa(&c, "INV-1", "E1", SD_ANON_CUSTOMER);
    add_sa(&dup, "INV-1", "E1", SD_ANON_CUSTOMER);
    const struct sd_batch *jobs[] = {&a, &refused, NULL, NULL, &c, &dup};
    const enum sd_apply_outcome want[] = {SD_APPLY_OK,       SD_APPLY_REFUSED, SD_APPLY_OK,
                                          SD_APPLY_REFUSED, SD_APPLY_OK,      SD_APPLY_DUPLICATE};
    assert_int_equal(sd_store_write_begin(f->h), 0);
    for (size_t i = 0; i < sizeof(jobs) / sizeof(*jobs); i++) {
        struct sd_apply_result res;
        sd_apply_result_init(&res);
        assert_int_equal(sd_store_savepoint(f->h), 0);
        if (jobs[i]) {
            assert_int_equal(sd_store_apply_ingest(f->h, f->t1, SD_ENV_TEST, jobs[i], &res), 0);
        } else {
            res.outcome = want[i]; /* a request that ran no statement, kept or undone */
        }
        assert_int_equal(res.outcome, want[i]);
        if (res.outcome == SD_APPLY_OK) {
            assert_int_equal(sd_store_savepoint_release(f->h), 0);
        } else {
            assert_int_equal(sd_store_savepoint_rollback(f->h), 0);
        }
        sd_apply_result_release(&res);
    }
    assert_int_equal(sd_store_write_commit(f->h), 0);
    struct sd_record_page p = {0};
    assert_int_equal(sd_store_list_records(f->h, SD_KIND_EVENT, f->t1, SD_ENV_TEST, 0, 10, &p), 0);
    assert_int_equal(p.n, 2);
    assert_int_equal(p.seqs[0], 1);
    assert_int_equal(p.seqs[1], 2);
    sd_record_page_release(&p);
    assert_int_equal(sd_store_list_records(f->h, SD_KIND_SALE, f->t1, SD_ENV_TEST, 0, 10, &p), 0);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.seqs[0], 3);
    sd_record_page_release(&p);
    char *doc = get(f, SD_KIND_SALE, f->t1, SD_ENV_TEST, "INV-X");
    assert_null(doc);
    sd_batch_release(&a);
    sd_batch_release(&refused);
    sd_batch_release(&c);
    sd_batch_release(&dup);
    /* the next group starts clean */
    struct sd_batch d = {0};
    add_sa(&d, "INV-2", "E2", SD_ANON_CUSTOMER);
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_TEST, &d), SD_APPLY_OK);
    assert_int_equal(count(f, SD_KIND_SALE, f->t1, SD_ENV_TEST), 2);
}

static void test_idempotency(void **state)
{
    struct fx *f = *state;
    struct sd_idem_entry e = {.status = 202, .response = "{\"ok\":true}", .created_usec = 1000};
    memset(e.body_hash, 'a', 64);
    struct sd_idem_entry old = {.status = 400, .response = "{}", .created_usec = 10};
    memset(old.body_hash, 'b', 64);

    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_idem_put(f->h, f->t1, SD_ENV_TEST, "k1", &e), 0);
    assert_int_equal(sd_store_idem_put(f->h, f->t1, SD_ENV_TEST, "k1", &old), -EEXIST);
    assert_int_equal(sd_store_idem_put(f->h, f->t1, SD_ENV_TEST, "k-old", &old), 0);
    assert_int_equal(sd_store_write_commit(f->h), 0);

    struct sd_idem_entry got;
    assert_int_equal(sd_store_idem_get(f->h, f->t1, SD_ENV_TEST, "k1", &got), 0);
    assert_string_equal(got.body_hash, e.body_hash);
    assert_int_equal(got.status, 202);
    assert_string_equal(got.response, "{\"ok\":true}");
    assert_int_equal(got.created_usec, 1000);
    free(got.response);
    assert_int_equal(sd_store_idem_get(f->h, f->t1, SD_ENV_PROD, "k1", &got), -ENOENT);
    assert_int_equal(sd_store_idem_get(f->h, f->t2, SD_ENV_TEST, "k1", &got), -ENOENT);
    assert_int_equal(sd_store_idem_get(f->h, f->t1, SD_ENV_TEST, "k2", &got), -ENOENT);

    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_idem_purge(f->h, 500), 0);
    assert_int_equal(sd_store_write_commit(f->h), 0);
    assert_int_equal(sd_store_idem_get(f->h, f->t1, SD_ENV_TEST, "k-old", &got), -ENOENT);
    assert_int_equal(sd_store_idem_get(f->h, f->t1, SD_ENV_TEST, "k1", &got), 0);
    free(got.response);
}

static void test_persisted_after_reopen(void **state)
{
    struct fx *f = *state;
    struct sd_batch b = {0};
    add_ev(&b, "E1", "k1");
    add_ev(&b, "E1x", "k1");
    add_cu(&b, "C1", NULL, 1);
    add_sa(&b, "INV-1", "E1x", "C1");
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_PROD, &b), SD_APPLY_OK);
    assert_int_equal(sd_store_key_insert(f->h, "key_a", "acme", SD_ENV_PROD, "aa11"), 0);
    fx_reopen(f);
    assert_int_equal(count(f, SD_KIND_EVENT, f->t1, SD_ENV_PROD), 1);
    assert_int_equal(count(f, SD_KIND_CUSTOMER, f->t1, SD_ENV_PROD), 1);
    assert_int_equal(count(f, SD_KIND_SALE, f->t1, SD_ENV_PROD), 1);
    char *doc = get(f, SD_KIND_EVENT, f->t1, SD_ENV_PROD, "E1x");
    assert_non_null(doc);
    free(doc);
    struct sd_key_info *k = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_key_list(f->h, "acme", &k, &n), 0);
    assert_int_equal(n, 1);
    sd_keys_free(k, n);

    /* seq continues after reopen. */
    add_cu(&b, "C2", NULL, 0);
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_PROD, &b), SD_APPLY_OK);
    struct sd_record_page p = {0};
    assert_int_equal(sd_store_list_records(f->h, SD_KIND_CUSTOMER, f->t1, SD_ENV_PROD, 0, 10, &p),
                     0);
    assert_int_equal(p.n, 2);
    /* E1, E1x (its alias: an update of E1), C1, INV-1 took 1..4 */
    assert_int_equal(p.seqs[1], 5);
    sd_record_page_release(&p);
}

/* ---- concurrency: readers on the pool while the writer commits ------------------------------ */

struct reader_arg {
    struct fx *f;
    int errors;
};

static void *reader_main(void *p)
{
    struct reader_arg *a = p;
    int64_t last = 0;
    for (int i = 0; i < 200; i++) {
        int64_t n = 0;
        if (sd_store_count_records(a->f->h, SD_KIND_SALE, a->f->t1, SD_ENV_TEST, &n) != 0 ||
            n < last) {
            a->errors++;
        }
        last = n;
        struct sd_record_page pg = {0};
        if (sd_store_list_records(a->f->h, SD_KIND_SALE, a->f->t1, SD_ENV_TEST, 0, 5, &pg) != 0) {
            a->errors++;
        }
        sd_record_page_release(&pg);
        int64_t v;
        if (sd_store_settings_version(a->f->h, &v) != 0) {
            a->errors++;
        }
    }
    return NULL;
}

static void test_concurrent_readers(void **state)
{
    struct fx *f = *state;
    enum { N_READERS = 12 }; /* more than the pool holds: some wait for a connection */
    pthread_t th[N_READERS];
    struct reader_arg args[N_READERS];
    struct sd_batch b = {0};
    add_ev(&b, "E1", "k1");
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_TEST, &b), SD_APPLY_OK);
    for (int i = 0; i < N_READERS; i++) {
        args[i] = (struct reader_arg){.f = f};
        assert_int_equal(pthread_create(&th[i], NULL, reader_main, &args[i]), 0);
    }
    for (int i = 0; i < 20; i++) {
        char inv[16];
        snprintf(inv, sizeof(inv), "INV-%d", i);
        add_sa(&b, inv, "E1", "ANON");
        assert_int_equal(ingest_ok(f, f->t1, SD_ENV_TEST, &b), SD_APPLY_OK);
        char cid[16];
        snprintf(cid, sizeof(cid), "t%d", i);
        assert_int_equal(sd_store_tenant_create(f->h, cid, "x"), 0);
    }
    for (int i = 0; i < N_READERS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].errors, 0);
    }
    assert_int_equal(count(f, SD_KIND_SALE, f->t1, SD_ENV_TEST), 20);
}

/* ---- throughput ------------------------------------------------------------------------------ */

static int64_t cpu_usec(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
           ru.ru_stime.tv_usec;
}

static void test_throughput(void **state)
{
    struct fx *f = *state;
    const char *env = getenv("SD_STORE_BENCH");
    int64_t commits = 4;
    if (env && sd_parse_int64(env, false, &commits) < 0) {
        commits = 4;
    }
    enum { PER_REQ = 100, REQ_PER_COMMIT = 50, N_EVENTS = 20, N_CUSTOMERS = 1000 };
    struct sd_batch setup_b = {0};
    for (int i = 0; i < N_EVENTS; i++) {
        char id[16], k[32];
        snprintf(id, sizeof(id), "E%d", i);
        snprintf(k, sizeof(k), "2025-05-%02d|20:00:00|v|h", i + 1);
        add_ev(&setup_b, id, k);
    }
    for (int i = 0; i < N_CUSTOMERS; i++) {
        char id[16];
        snprintf(id, sizeof(id), "C%d", i);
        add_cu(&setup_b, id, NULL, 0);
    }
    assert_int_equal(ingest_ok(f, f->t1, SD_ENV_PROD, &setup_b), SD_APPLY_OK);

    /* Pre-build every request so that only the store is timed. Docs are ~350 bytes, like a
     * normalized sale with a few unknown fields. */
    size_t n_req = (size_t)commits * REQ_PER_COMMIT;
    struct sd_batch *reqs = sd_calloc(n_req, sizeof(*reqs));
    size_t inv = 0;
    for (size_t r = 0; r < n_req; r++) {
        reqs[r].sales = sd_calloc(PER_REQ, sizeof(struct sd_sale_rec));
        reqs[r].n_sales = PER_REQ;
        for (size_t i = 0; i < PER_REQ; i++, inv++) {
            char id[32], ev_id[16], cust[16];
            snprintf(id, sizeof(id), "INV-%08zu", inv);
            snprintf(ev_id, sizeof(ev_id), "E%zu", (r % N_EVENTS));
            if (i % 3) {
                snprintf(cust, sizeof(cust), "C%zu", inv % N_CUSTOMERS);
            } else {
                snprintf(cust, sizeof(cust), "%s", SD_ANON_CUSTOMER);
            }
            struct sd_sale_rec *s = &reqs[r].sales[i];
            *s = sa(i, id, ev_id, cust, 8900);
            free(s->doc);
            s->doc = sd_asprintf(
                "{\"invoice_number\":\"%s\",\"event_id\":\"%s\",\"customer_id\":\"%s\","
                "\"purchase_datetime\":\"2025-01-02T03:04:05Z\",\"sales_price\":\"89.00\","
                "\"currency\":\"EUR\",\"ticket_category\":\"Parkett links\",\"seat\":\"R12 "
                "P34\",\"channel\":\"box office\",\"promo_code\":\"SPRING25\",\"quantity\":1,"
                "\"fees\":\"2.50\",\"note\":\"padding padding padding padding padding\"}",
                id, ev_id, cust);
        }
    }
    int64_t t0 = sd_mono_usec(), t_commit = 0, cpu0 = cpu_usec();
    size_t r = 0;
    for (int64_t c = 0; c < commits; c++) {
        assert_int_equal(sd_store_write_begin(f->h), 0);
        for (int q = 0; q < REQ_PER_COMMIT; q++, r++) {
            struct sd_apply_result res;
            sd_apply_result_init(&res);
            assert_int_equal(sd_store_savepoint(f->h), 0);
            assert_int_equal(sd_store_apply_ingest(f->h, f->t1, SD_ENV_PROD, &reqs[r], &res), 0);
            assert_int_equal(res.outcome, SD_APPLY_OK);
            assert_int_equal(sd_store_savepoint_release(f->h), 0);
            sd_apply_result_release(&res);
        }
        int64_t tc = sd_mono_usec();
        assert_int_equal(sd_store_write_commit(f->h), 0);
        t_commit += sd_mono_usec() - tc;
    }
    int64_t dt = sd_mono_usec() - t0, cpu = cpu_usec() - cpu0;
    double sales = (double)n_req * PER_REQ;
    printf("store throughput: %.0f sales in %.3f s = %.0f sales/s (apply_ingest + commit, %d "
           "sales/request, %d requests/commit, synchronous=FULL); commit (fsync) %.0f%% of wall "
           "time; cpu %.3f s = %.0f sales per cpu-second\n",
           sales, (double)dt / 1e6, sales / ((double)dt / 1e6), PER_REQ, REQ_PER_COMMIT,
           100.0 * (double)t_commit / (double)dt, (double)cpu / 1e6, sales / ((double)cpu / 1e6));
    assert_int_equal(count(f, SD_KIND_SALE, f->t1, SD_ENV_PROD), (int64_t)sales);
    for (size_t i = 0; i < n_req; i++) {
        sd_batch_release(&reqs[i]);
    }
    free(reqs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_and_migrations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_and_auth_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings_seen_by_other_handle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ingest_insert_and_upsert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alias_detection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unchanged_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reference_errors_roll_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_invoices_409, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_refunds_and_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upsert_sales, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upsert_refused_writes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connectors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_and_tenant_isolation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_sale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_savepoints_in_one_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persisted_after_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_readers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_throughput, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
