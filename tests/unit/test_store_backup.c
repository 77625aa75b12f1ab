/* test_store_backup.c — the store's online backup (store/backup.h), through the interface.
 * store suite: both backends
 *
 *  - test_copy_is_a_store: a backup of a store with records and a key verifies, reports the
 *    schema versions and row counts, and a store opened on DEST (the restore) reads the same
 *    records, tenant and key; the source keeps working.
 *  - test_writer_keeps_writing: with the writer's transaction open and holding uncommitted
 *    records, the backup neither waits for it nor copies them; the writer then commits, and a
 *    second backup holds the new records.
 *  - test_refuses_dest: a non-empty directory (-ENOTEMPTY, its file untouched) and a file
 *    (-ENOTDIR) are refused with a message; an empty directory is used.
 *  - test_failed_copy_leaves_nothing: a copy that cannot be written (files limited to 64 KiB,
 *    so the write fails as on a full disk) fails with a message and removes what it wrote and
 *    the directory it made; the same DEST works once the limit is gone.
 *  - test_postgresql_points_to_pg_dump: PostgreSQL answers -ENOTSUP, a message naming pg_dump,
 *    and writes nothing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/base.h"
#include "model/model.h"
#include "store/backup.h"
#include "store/store.h"
#include "store_fixture.h"

struct fx {
    struct sd_test_store ts;
    struct sd_store_handle *h;
    int64_t tenant;
    char dest[160];
};

static int setup(void **state)
{
    struct fx *f = sd_calloc(1, sizeof(*f));
    sd_test_store_setup(&f->ts, "backup", &f->h);
    f->tenant = sd_test_store_tenant(f->h, "venue", "Venue");
    assert_int_equal(sd_store_key_insert(f->h, "key_b1", "venue", SD_ENV_TEST,
                                         "00112233445566778899aabbccddeeff00112233445566778899"
                                         "aabbccddeeff"),
                     0);
    snprintf(f->dest, sizeof(f->dest), "%s/bk", f->ts.tmp);
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

/* Apply the ingest body `json` in the writer's transaction, left open when commit is false. */
static void apply(struct fx *f, const char *json, bool commit)
{
    json_error_t jerr;
    json_t *body = json_loads(json, 0, &jerr);
    assert_non_null(body);
    struct sd_batch b = {0};
    struct sd_issues errors, warnings;
    sd_issues_init(&errors, 100);
    sd_issues_init(&warnings, 100);
    assert_int_equal(sd_validate_ingest(body, &b, &errors, &warnings), 0);
    struct sd_apply_result res;
    sd_apply_result_init(&res);
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_savepoint(f->h), 0);
    assert_int_equal(sd_store_apply_ingest(f->h, f->tenant, SD_ENV_TEST, &b, &res), 0);
    assert_int_equal(res.outcome, SD_APPLY_OK);
    assert_int_equal(sd_store_savepoint_release(f->h), 0);
    if (commit) {
        assert_int_equal(sd_store_write_commit(f->h), 0);
    }
    sd_apply_result_release(&res);
    sd_batch_release(&b);
    sd_issues_release(&errors);
    sd_issues_release(&warnings);
    json_decref(body);
}

static const char records[] =
    "{\"events\":[{\"event_id\":\"E1\",\"title\":\"Otello\",\"date\":\"2026-10-03\","
    "\"time\":\"19:30:00\",\"venue\":\"State Opera\",\"hall\":\"Main\",\"capacity\":1250,"
    "\"city\":\"Berlin\"}],"
    "\"customers\":[{\"customer_id\":\"C1\",\"email\":\"c1@example.com\"},"
    "{\"customer_id\":\"C2\",\"email\":\"c2@example.com\"}],"
    "\"sales\":[{\"invoice_number\":\"I1\",\"event_id\":\"E1\",\"customer_id\":\"C1\","
    "\"purchase_datetime\":\"2026-04-15T11:08:42Z\",\"ticket_category\":\"regular\","
    "\"quantity\":2,\"sales_price\":\"89.00\",\"currency\":\"EUR\"}]}";

static int64_t rows(const struct sd_store_backup_report *rep, const char *table)
{
    for (size_t i = 0; i < rep->n_tables; i++) {
        if (strcmp(rep->tables[i].name, table) == 0) {
            return rep->tables[i].rows;
        }
    }
    fail_msg("table %s not in the report", table);
    return -1;
}

static void test_copy_is_a_store(void **state)
{
    struct fx *f = *state;
    if (!sd_test_store_is_sqlite()) {
        skip();
    }
    apply(f, records, true);
    struct sd_store_backup_report rep;
    int r = sd_store_backup(f->h, f->dest, &rep);
    assert_int_equal(r, 0);
    assert_true(rep.schema_version > 0);
    assert_true(rep.control_schema_version > 0);
    assert_true(rep.pages > 0 && rep.bytes > 0);
    assert_int_equal(rows(&rep, "tenants"), 1);
    assert_int_equal(rows(&rep, "api_keys"), 1);
    assert_int_equal(rows(&rep, "events"), 1);
    assert_int_equal(rows(&rep, "customers"), 2);
    assert_int_equal(rows(&rep, "sales"), 1);

    /* The restore: a store opened on DEST. */
    struct sd_store_handle *copy = NULL;
    assert_int_equal(sd_store_open("sqlite", f->dest, &copy), 0);
    struct sd_tenant t = {0};
    assert_int_equal(sd_store_tenant_get(copy, "venue", &t), 0);
    assert_int_equal(t.id, f->tenant);
    sd_tenant_release(&t);
    struct sd_key_info *keys = NULL;
    size_t n_keys = 0;
    assert_int_equal(sd_store_key_list(copy, "venue", &keys, &n_keys), 0);
    assert_int_equal(n_keys, 1);
    assert_string_equal(keys[0].key_id, "key_b1");
    sd_keys_free(keys, n_keys);
    char *a = NULL, *b = NULL;
    assert_int_equal(sd_store_get_record(f->h, SD_KIND_SALE, f->tenant, SD_ENV_TEST, "I1", &a), 0);
    assert_int_equal(sd_store_get_record(copy, SD_KIND_SALE, f->tenant, SD_ENV_TEST, "I1", &b), 0);
    assert_string_equal(a, b);
    free(a);
    free(b);
    int64_t n = 0;
    assert_int_equal(sd_store_count_records(copy, SD_KIND_CUSTOMER, f->tenant, SD_ENV_TEST, &n), 0);
    assert_int_equal(n, 2);
    sd_store_close(copy);
    /* The source keeps working after the backup. */
    apply(f, "{\"customers\":[{\"customer_id\":\"C3\",\"email\":\"c3@example.com\"}]}", true);
}

static void test_writer_keeps_writing(void **state)
{
    struct fx *f = *state;
    if (!sd_test_store_is_sqlite()) {
        skip();
    }
    apply(f, records, true);
    /* The writer's transaction stays open with two more customers. */
    apply(f,
          "{\"customers\":[{\"customer_id\":\"C8\",\"email\":\"c8@example.com\"},"
          "{\"customer_id\":\"C9\",\"email\":\"c9@example.com\"}]}",
          false);
    struct sd_store_backup_report rep;
    assert_int_equal(sd_store_backup(f->h, f->dest, &rep), 0);
    assert_int_equal(rows(&rep, "customers"), 2); /* committed data only */
    assert_int_equal(sd_store_write_commit(f->h), 0);

    char second[200];
    snprintf(second, sizeof(second), "%s/bk2", f->ts.tmp);
    assert_int_equal(sd_store_backup(f->h, second, &rep), 0);
    assert_int_equal(rows(&rep, "customers"), 4);
}

static void test_refuses_dest(void **state)
{
    struct fx *f = *state;
    if (!sd_test_store_is_sqlite()) {
        skip();
    }
    struct sd_store_backup_report rep;
    assert_int_equal(mkdir(f->dest, 0700), 0);
    char keep[200];
    snprintf(keep, sizeof(keep), "%s/keep", f->dest);
    FILE *fp = fopen(keep, "we");
    assert_non_null(fp);
    fputs("mine", fp);
    fclose(fp);
    assert_int_equal(sd_store_backup(f->h, f->dest, &rep), -ENOTEMPTY);
    assert_non_null(strstr(rep.message, "is not empty"));
    struct stat sb;
    assert_int_equal(stat(keep, &sb), 0);
    assert_int_equal(sb.st_size, 4);
    char stagedoor_db[200];
    snprintf(stagedoor_db, sizeof(stagedoor_db), "%s/stagedoor.db", f->dest);
    assert_int_equal(stat(stagedoor_db, &sb), -1);

    assert_int_equal(sd_store_backup(f->h, keep, &rep), -ENOTDIR);
    assert_non_null(strstr(rep.message, "not a directory"));

    char empty[200];
    snprintf(empty, sizeof(empty), "%s/empty", f->ts.tmp);
    assert_int_equal(mkdir(empty, 0700), 0);
    assert_int_equal(sd_store_backup(f->h, empty, &rep), 0);
    assert_int_equal(rows(&rep, "tenants"), 1);
}

static void test_failed_copy_leaves_nothing(void **state)
{
    struct fx *f = *state;
    if (!sd_test_store_is_sqlite()) {
        skip();
    }
    apply(f, records, true);
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN); /* the write fails with EFBIG */
    struct rlimit small = {64 * 1024, old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    struct sd_store_backup_report rep;
    int r = sd_store_backup(f->h, f->dest, &rep);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    assert_true(r == -EIO || r == -ENOSPC);
    assert_non_null(strstr(rep.message, "stagedoor.db"));
    struct stat sb;
    assert_int_equal(stat(f->dest, &sb), -1); /* DEST, made by the backup, is gone */
    assert_int_equal(sd_store_backup(f->h, f->dest, &rep), 0);
    assert_int_equal(rows(&rep, "sales"), 1);
}

static void test_postgresql_points_to_pg_dump(void **state)
{
    struct fx *f = *state;
    if (sd_test_store_is_sqlite()) {
        skip();
    }
    struct sd_store_backup_report rep;
    assert_int_equal(sd_store_backup(f->h, f->dest, &rep), -ENOTSUP);
    assert_non_null(strstr(rep.message, "pg_dump"));
    struct stat sb;
    assert_int_equal(stat(f->dest, &sb), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_copy_is_a_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_keeps_writing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_dest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_copy_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_postgresql_points_to_pg_dump, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
