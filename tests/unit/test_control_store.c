/* test_control_store.c — the control plane's own file (DATA/control.db, issue #8 §2).
 *
 *  - test_control_plane_while_data_locked: another connection holds the data file's write lock
 *    (as a long reject_file import does); opening the store, creating a tenant and a key,
 *    revoking a key, listing and the auth snapshot all still work. Before, open itself failed
 *    after the 5 s busy timeout (BEGIN IMMEDIATE to check migrations).
 *  - test_old_store_moves: a data file at schema version 5 (tenants, keys, link rules, a
 *    connector, a settings version) is opened: every row arrives in control.db with its id, the
 *    data file no longer holds the tables, and the settings version moves past the old one.
 *  - test_old_store_move_repeated: the same after a crash between the copy's commit and the
 *    data migration's (control.db already holds the rows): no duplicate, nothing lost. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "base/base.h"
#include "store/audience.h"
#include "store/store.h"
#include "store_fixture.h"

extern const char *const sd_sqlite_schema[];
extern const char *const sd_sqlite_control_schema[];

struct fx {
    struct sd_test_store st;
};

static int setup(void **state)
{
    struct fx *f = sd_calloc(1, sizeof(*f));
    sd_test_store_make(&f->st, "control");
    /* the tests write old files into the data folder before the store first opens it */
    assert_int_equal(mkdir(f->st.dir, 0700), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    sd_test_store_release(&f->st, NULL);
    free(f);
    return 0;
}

static sqlite3 *raw_open(struct fx *f, const char *name)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/%s", f->st.dir, name);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    return db;
}

static void raw_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        fail_msg("%s: %s", sql, err ? err : sqlite3_errstr(rc));
    }
}

static int64_t raw_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static const char *hash_of(char c)
{
    static char h[5][65];
    int i = c - 'a';
    memset(h[i], c, 64);
    h[i][64] = '\0';
    return h[i];
}

static void test_control_plane_while_data_locked(void **state)
{
    struct fx *f = *state;
    struct sd_store_handle *h = NULL;
    assert_int_equal(sd_store_open("sqlite", f->st.dir, &h), 0);
    assert_int_equal(sd_store_tenant_create(h, "acme", "Acme"), 0);
    assert_int_equal(sd_store_key_insert(h, "key_leaked", "acme", SD_ENV_TEST, hash_of('a')), 0);
    int64_t v0 = 0;
    assert_int_equal(sd_store_settings_version(h, &v0), 0);
    sd_store_close(h);
    h = NULL;

    /* A data writer in the middle of a long transaction. */
    sqlite3 *data = raw_open(f, "stagedoor.db");
    raw_exec(data, "BEGIN IMMEDIATE; INSERT INTO meta (k, v) VALUES ('held', 1)");

    assert_int_equal(sd_store_open("sqlite", f->st.dir, &h), 0);
    assert_int_equal(sd_store_key_revoke(h, "key_leaked"), 0);
    assert_int_equal(sd_store_tenant_create(h, "beta", "Beta"), 0);
    assert_int_equal(sd_store_key_insert(h, "key_beta", "beta", SD_ENV_PROD, hash_of('b')), 0);
    assert_int_equal(sd_store_tenant_set_limits(h, "beta", 60, 10), 0);
    assert_int_equal(sd_store_profile_link_rule_set(h, "beta", SD_LINK_NONE), 0);
    enum sd_link_rule rule = SD_LINK_EMAIL;
    assert_int_equal(sd_store_profile_link_rule_get(h, "beta", &rule), 0);
    assert_int_equal(rule, SD_LINK_NONE);

    struct sd_tenant *t = NULL;
    size_t nt = 0;
    assert_int_equal(sd_store_tenant_list(h, &t, &nt), 0);
    assert_int_equal(nt, 2);
    sd_tenants_free(t, nt);
    struct sd_key_info *k = NULL;
    size_t nk = 0;
    assert_int_equal(sd_store_key_list(h, "acme", &k, &nk), 0);
    assert_int_equal(nk, 1);
    assert_true(k[0].revoked_usec > 0);
    sd_keys_free(k, nk);

    /* What a running server's auth reload reads. */
    int64_t v1 = 0;
    assert_int_equal(sd_store_settings_version(h, &v1), 0);
    assert_true(v1 > v0);
    assert_int_equal(sd_store_auth_snapshot(h, &t, &nt, &k, &nk), 0);
    assert_int_equal(nt, 2);
    assert_int_equal(nk, 2);
    for (size_t i = 0; i < nk; i++) {
        assert_int_equal(k[i].revoked_usec > 0, strcmp(k[i].key_id, "key_leaked") == 0);
    }
    sd_tenants_free(t, nt);
    sd_keys_free(k, nk);
    sd_store_close(h);

    /* The data writer's transaction was never disturbed. */
    raw_exec(data, "COMMIT");
    sqlite3_close(data);
}

/* A data file as schema version 5 left it: the control tables still inside. */
static void make_old_store(struct fx *f)
{
    sqlite3 *db = raw_open(f, "stagedoor.db");
    raw_exec(db, "PRAGMA journal_mode = WAL");
    for (unsigned i = 0; i < 5; i++) {
        raw_exec(db, sd_sqlite_schema[i]);
    }
    raw_exec(db, "PRAGMA user_version = 5");
    char sql[2048];
    snprintf(sql, sizeof(sql),
             "INSERT INTO tenants (id, client_id, name, per_minute, burst, created_usec, "
             "link_rule) VALUES (7, 'acme', 'Acme', 60, 5, 100, 'none'), "
             "(9, 'beta', 'Beta', 500, 1000, 200, 'email');"
             "INSERT INTO api_keys (key_id, tenant_id, env, hash_hex, created_usec, "
             "revoked_usec) VALUES ('key_a', 7, 0, '%s', 110, 0), "
             "('key_b', 9, 1, '%s', 210, 333);"
             "INSERT INTO connectors (id, tenant_id, env, type, schedule, settings, mapping, "
             "created_usec, updated_usec) VALUES ('con_0000000000000001', 9, 0, 'csv_drop', "
             "'manual', '{}', '{}', 300, 300);"
             "UPDATE meta SET v = 41 WHERE k = 'settings_version'",
             hash_of('a'), hash_of('b'));
    raw_exec(db, sql);
    sqlite3_close(db);
}

static void check_moved(struct fx *f)
{
    struct sd_store_handle *h = NULL;
    assert_int_equal(sd_store_open("sqlite", f->st.dir, &h), 0);
    struct sd_tenant t;
    assert_int_equal(sd_store_tenant_get(h, "acme", &t), 0);
    assert_int_equal(t.id, 7);
    assert_int_equal(t.per_minute, 60);
    assert_int_equal(t.burst, 5);
    assert_int_equal(t.created_usec, 100);
    sd_tenant_release(&t);
    enum sd_link_rule rule = SD_LINK_EMAIL;
    assert_int_equal(sd_store_profile_link_rule_get(h, "acme", &rule), 0);
    assert_int_equal(rule, SD_LINK_NONE);

    struct sd_tenant *tv = NULL;
    size_t nt = 0;
    struct sd_key_info *k = NULL;
    size_t nk = 0;
    assert_int_equal(sd_store_auth_snapshot(h, &tv, &nt, &k, &nk), 0);
    assert_int_equal(nt, 2);
    assert_int_equal(nk, 2);
    assert_string_equal(k[0].key_id, "key_a");
    assert_string_equal(k[0].hash_hex, hash_of('a'));
    assert_int_equal(k[0].tenant_id, 7);
    assert_int_equal(k[0].revoked_usec, 0);
    assert_string_equal(k[1].key_id, "key_b");
    assert_string_equal(k[1].client_id, "beta");
    assert_int_equal(k[1].env, SD_ENV_PROD);
    assert_int_equal(k[1].revoked_usec, 333);
    sd_tenants_free(tv, nt);
    sd_keys_free(k, nk);

    int64_t v = 0;
    assert_int_equal(sd_store_settings_version(h, &v), 0);
    assert_true(v > 41);

    /* The connector keeps its tenant (joined across the files for its client id). */
    struct sd_connector_conf c;
    assert_int_equal(sd_store_connector_get(h, "con_0000000000000001", &c), 0);
    assert_int_equal(c.tenant_id, 9);
    assert_string_equal(c.client_id, "beta");
    sd_connector_conf_release(&c);

    /* New rows go on from the old ids. */
    assert_int_equal(sd_store_tenant_create(h, "gamma", "Gamma"), 0);
    assert_int_equal(sd_store_tenant_get(h, "gamma", &t), 0);
    assert_true(t.id > 9);
    sd_tenant_release(&t);
    sd_store_close(h);

    sqlite3 *db = raw_open(f, "stagedoor.db");
    assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_master WHERE name IN "
                                 "('tenants', 'api_keys')"),
                     0);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM meta WHERE k = 'settings_version'"), 0);
    sqlite3_close(db);
    db = raw_open(f, "control.db");
    assert_int_equal(raw_int(db, "SELECT count(*) FROM tenants"), 3);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM api_keys"), 2);
    sqlite3_close(db);
}

static void test_old_store_moves(void **state)
{
    struct fx *f = *state;
    make_old_store(f);
    check_moved(f);
}

static void test_old_store_move_repeated(void **state)
{
    struct fx *f = *state;
    make_old_store(f);
    /* control.db as a crash right after the copy's commit left it. */
    sqlite3 *db = raw_open(f, "control.db");
    raw_exec(db, "PRAGMA journal_mode = WAL");
    raw_exec(db, sd_sqlite_control_schema[0]);
    raw_exec(db, "PRAGMA user_version = 1");
    char path[160];
    snprintf(path, sizeof(path), "ATTACH '%s/stagedoor.db' AS old", f->st.dir);
    raw_exec(db, path);
    raw_exec(db, "INSERT INTO main.tenants SELECT * FROM old.tenants;"
                 "INSERT INTO main.api_keys SELECT * FROM old.api_keys;"
                 "UPDATE main.meta SET v = 42 WHERE k = 'settings_version';"
                 "DETACH old");
    sqlite3_close(db);
    check_moved(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_control_plane_while_data_locked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_store_moves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_store_move_repeated, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
