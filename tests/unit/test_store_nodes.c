/* test_store_nodes.c — several store handles on one store, as several stagedoor processes
 * ("nodes") have them: store suite: both backends.
 *
 *  - handles opened at the same moment on a new store all succeed: the schema is created once
 *    (SQLite: its file lock; PostgreSQL: the migration advisory lock);
 *  - what one handle's control plane commits (tenants, keys, revocations, connectors) the other
 *    sees at once, and the settings version moves for it, so the other node reloads;
 *  - the write path: a connector's state committed by one handle's writer is what the other
 *    reads; a rolled-back write leaves nothing; two writers in turn both commit;
 *  - PostgreSQL only: a connection the server drops is reconnected on next use, and a call
 *    that runs then succeeds (not "broken until restart");
 *  - PostgreSQL only: a tenant's rate limit is shared by the nodes — threads of three nodes
 *    taking from one bucket get exactly its tokens between them, and three nodes' limiters
 *    together allow the burst less at most the documented tolerance, never more. */
#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "core/ratelimit.h"
#include "store/store.h"
#include "store_fixture.h"

#define NODES 3

struct fx {
    struct sd_test_store ts;
    struct sd_store_handle *h[NODES];
};

struct opener {
    const struct sd_test_store *ts;
    struct sd_store_handle *h;
    int r;
};

static void *open_thread(void *arg)
{
    struct opener *o = arg;
    o->r = sd_store_open(sd_test_store_kind(), sd_test_store_location(o->ts), &o->h);
    return NULL;
}

static int setup(void **state)
{
    struct fx *f = sd_calloc(1, sizeof(*f));
    sd_test_store_make(&f->ts, "nodes");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    for (int i = 1; i < NODES; i++) {
        sd_store_close(f->h[i]);
    }
    sd_test_store_release(&f->ts, f->h[0]);
    free(f);
    return 0;
}

/* Opens NODES handles at once on the new store. */
static void open_all(struct fx *f)
{
    struct opener o[NODES];
    pthread_t t[NODES];
    for (int i = 0; i < NODES; i++) {
        o[i] = (struct opener){.ts = &f->ts};
        assert_int_equal(pthread_create(&t[i], NULL, open_thread, &o[i]), 0);
    }
    for (int i = 0; i < NODES; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(o[i].r, 0);
        f->h[i] = o[i].h;
    }
}

static void test_open_at_once_then_share_control_plane(void **state)
{
    struct fx *f = *state;
    open_all(f);
    int64_t v0 = 0, v1 = 0;
    assert_int_equal(sd_store_settings_version(f->h[1], &v0), 0);
    assert_int_equal(sd_store_tenant_create(f->h[0], "acme", "Acme Opera"), 0);
    assert_int_equal(sd_store_tenant_create(f->h[2], "acme", "again"), -EEXIST);
    assert_int_equal(sd_store_settings_version(f->h[1], &v1), 0);
    assert_true(v1 > v0);

    struct sd_tenant t = {0};
    assert_int_equal(sd_store_tenant_get(f->h[1], "acme", &t), 0);
    assert_string_equal(t.name, "Acme Opera");
    assert_int_equal(t.per_minute, 500);
    assert_int_equal(t.burst, 1000);
    int64_t tid = t.id;
    sd_tenant_release(&t);
    assert_int_equal(sd_store_tenant_set_limits(f->h[2], "acme", 60, 10), 0);
    assert_int_equal(sd_store_tenant_set_limits(f->h[2], "nobody", 60, 10), -ENOENT);
    assert_int_equal(sd_store_tenant_get(f->h[0], "acme", &t), 0);
    assert_int_equal(t.per_minute, 60);
    assert_int_equal(t.burst, 10);
    sd_tenant_release(&t);
    assert_int_equal(sd_store_tenant_get(f->h[0], "nobody", &t), -ENOENT);

    assert_int_equal(sd_store_key_insert(f->h[0], "key_a", "acme", SD_ENV_TEST, "aa11"), 0);
    assert_int_equal(sd_store_key_insert(f->h[1], "key_b", "acme", SD_ENV_PROD, "bb22"), 0);
    assert_int_equal(sd_store_key_insert(f->h[1], "key_c", "nobody", SD_ENV_PROD, "cc33"),
                     -ENOENT);
    assert_int_equal(sd_store_key_insert(f->h[2], "key_d", "acme", SD_ENV_PROD, "bb22"), -EEXIST);
    assert_int_equal(sd_store_key_revoke(f->h[2], "key_a"), 0);
    assert_int_equal(sd_store_settings_version(f->h[0], &v0), 0);
    assert_int_equal(sd_store_key_revoke(f->h[1], "key_a"), 0); /* again: nothing changes */
    assert_int_equal(sd_store_settings_version(f->h[0], &v1), 0);
    assert_int_equal(v1, v0);
    assert_int_equal(sd_store_key_revoke(f->h[1], "key_zz"), -ENOENT);

    struct sd_key_info *k = NULL;
    size_t nk = 0;
    assert_int_equal(sd_store_key_list(f->h[0], "acme", &k, &nk), 0);
    assert_int_equal(nk, 2);
    assert_string_equal(k[0].key_id, "key_a");
    assert_true(k[0].revoked_usec > 0);
    assert_null(k[0].hash_hex); /* a listing never carries hashes */
    assert_int_equal(k[1].env, SD_ENV_PROD);
    assert_int_equal(k[1].revoked_usec, 0);
    sd_keys_free(k, nk);
    assert_int_equal(sd_store_key_list(f->h[0], "nobody", &k, &nk), -ENOENT);

    struct sd_tenant *ts = NULL;
    size_t nt = 0;
    assert_int_equal(sd_store_auth_snapshot(f->h[2], &ts, &nt, &k, &nk), 0);
    assert_int_equal(nt, 1);
    assert_int_equal(ts[0].id, tid);
    assert_int_equal(nk, 2);
    assert_string_equal(k[1].hash_hex, "bb22");
    sd_tenants_free(ts, nt);
    sd_keys_free(k, nk);
}

static void test_connectors_and_state_across_nodes(void **state)
{
    struct fx *f = *state;
    open_all(f);
    int64_t tid = sd_test_store_tenant(f->h[0], "acme", "Acme");
    struct sd_connector_conf c = {.id = "con_00000000000000a1", .tenant_id = tid,
                                  .env = SD_ENV_PROD, .type = "feed", .schedule = "hourly",
                                  .settings = "{\"url\":\"http://127.0.0.1:1/x\"}",
                                  .mapping = "{}"};
    assert_int_equal(sd_store_connector_put(f->h[0], &c, true), 0);
    assert_int_equal(sd_store_connector_put(f->h[1], &c, true), -EEXIST);
    c.schedule = "daily";
    assert_int_equal(sd_store_connector_put(f->h[1], &c, false), 0);
    struct sd_connector_conf missing = c;
    missing.id = "con_00000000000000ff";
    assert_int_equal(sd_store_connector_put(f->h[1], &missing, false), -ENOENT);
    assert_int_equal(sd_store_connector_request_run(f->h[2], c.id, 12345), 0);
    assert_int_equal(sd_store_connector_request_run(f->h[2], missing.id, 1), -ENOENT);

    struct sd_connector_conf got = {0};
    assert_int_equal(sd_store_connector_get(f->h[2], c.id, &got), 0);
    assert_string_equal(got.schedule, "daily");
    assert_string_equal(got.client_id, "acme");
    assert_string_equal(got.type, "feed");
    assert_int_equal(got.env, SD_ENV_PROD);
    assert_int_equal(got.run_requested_usec, 12345);
    assert_string_equal(got.settings, c.settings);
    sd_connector_conf_release(&got);

    /* State: committed by node 1's writer, read by node 2; a rollback leaves nothing. */
    char *doc = NULL;
    assert_int_equal(sd_store_connector_state_get(f->h[2], c.id, &doc), -ENOENT);
    assert_int_equal(sd_store_write_begin(f->h[1]), 0);
    assert_int_equal(sd_store_connector_state_put(f->h[1], c.id, "{\"cursor\":1}"), 0);
    assert_int_equal(sd_store_write_rollback(f->h[1]), 0);
    assert_int_equal(sd_store_connector_state_get(f->h[2], c.id, &doc), -ENOENT);
    for (int i = 0; i < NODES; i++) {
        char want[32];
        snprintf(want, sizeof(want), "{\"cursor\":%d}", i + 2);
        assert_int_equal(sd_store_write_begin(f->h[i]), 0);
        assert_int_equal(sd_store_connector_state_put(f->h[i], c.id, want), 0);
        assert_int_equal(sd_store_write_commit(f->h[i]), 0);
        assert_int_equal(sd_store_connector_state_get(f->h[(i + 1) % NODES], c.id, &doc), 0);
        assert_string_equal(doc, want);
        free(doc);
        doc = NULL;
    }

    struct sd_connector_conf *v = NULL;
    size_t n = 0;
    assert_int_equal(sd_store_connector_list(f->h[1], tid, &v, &n), 0);
    assert_int_equal(n, 1);
    sd_connector_confs_free(v, n);
    assert_int_equal(sd_store_connector_delete(f->h[0], c.id), 0);
    assert_int_equal(sd_store_connector_delete(f->h[0], c.id), -ENOENT);
    assert_int_equal(sd_store_connector_state_get(f->h[1], c.id, &doc), -ENOENT);
    assert_int_equal(sd_store_connector_list(f->h[1], 0, &v, &n), 0);
    assert_int_equal(n, 0);
    sd_connector_confs_free(v, n);
}

/* Ends every session of the test's database but the admin one (a server restart, as far as the
 * store's connections can tell). */
static void drop_sessions(const struct fx *f)
{
    PGconn *c = PQconnectdb(getenv("STAGEDOOR_TEST_PG"));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    const char *params[1] = {f->ts.db};
    PGresult *res = PQexecParams(c,
                                 "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                 " WHERE datname = $1 AND pid <> pg_backend_pid()",
                                 1, NULL, params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_true(atoi(PQgetvalue(res, 0, 0)) >= 1); /* NOLINT: a count printed by PostgreSQL */
    PQclear(res);
    PQfinish(c);
}

static void test_lost_connections_reconnect(void **state)
{
    struct fx *f = *state;
    if (sd_test_store_is_sqlite()) {
        skip(); /* a SQLite store has no server to lose */
    }
    open_all(f);
    int64_t tid = sd_test_store_tenant(f->h[0], "acme", "Acme");
    (void)tid;
    drop_sessions(f);
    /* The pool connection that was dropped answers once with a failure or not at all, then
     * works: within a few calls every operation succeeds again. */
    struct sd_tenant t = {0};
    int r = sd_store_tenant_get(f->h[0], "acme", &t);
    if (r == 0) {
        sd_tenant_release(&t);
    }
    assert_int_equal(sd_store_tenant_get(f->h[0], "acme", &t), 0);
    sd_tenant_release(&t);
    /* A control-plane write retries a connection lost before its commit by itself. */
    drop_sessions(f);
    assert_int_equal(sd_store_tenant_create(f->h[0], "beta", "Beta"), 0);
    /* The writer's connection is reset at the next write_begin. */
    drop_sessions(f);
    r = sd_store_write_begin(f->h[0]);
    if (r < 0) {
        assert_int_equal(sd_store_write_begin(f->h[0]), 0);
    }
    assert_int_equal(sd_store_connector_state_put(f->h[0], "con_x", "{}"), 0);
    assert_int_equal(sd_store_write_commit(f->h[0]), 0);
    char *doc = NULL;
    assert_int_equal(sd_store_connector_state_get(f->h[1], "con_x", &doc), 0);
    free(doc);
}

struct taker {
    struct sd_store_handle *h;
    int64_t got;
    int fails;
};

static void *take_thread(void *arg)
{
    struct taker *t = arg;
    for (int i = 0; i < 400; i++) {
        int64_t g = 0;
        double left = 0;
        /* per_minute 1: no whole token comes back during the test */
        if (sd_store_rate_take(t->h, 42, 1, 1000, 3, 1000000, &g, &left) < 0) {
            t->fails++;
        }
        t->got += g;
    }
    return NULL;
}

static void test_shared_rate_limit(void **state)
{
    struct fx *f = *state;
    open_all(f);
    if (!sd_store_has_shared_rate(f->h[0])) {
        assert_true(sd_test_store_is_sqlite()); /* one process serves a SQLite store */
        skip();
    }
    /* The store's bucket: 3 nodes x 400 takes of 3 want 3,600 of 1,000 tokens. */
    struct taker t[NODES];
    pthread_t th[NODES];
    for (int i = 0; i < NODES; i++) {
        t[i] = (struct taker){.h = f->h[i]};
        assert_int_equal(pthread_create(&th[i], NULL, take_thread, &t[i]), 0);
    }
    int64_t total = 0;
    for (int i = 0; i < NODES; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(t[i].fails, 0);
        total += t[i].got;
    }
    assert_int_equal(total, 1000);

    /* Three nodes' limiters on one tenant's bucket (burst 100, chunk 5). */
    struct sd_ratelimiter *rl[NODES];
    for (int i = 0; i < NODES; i++) {
        rl[i] = sd_ratelimiter_new();
        sd_ratelimiter_share(rl[i], f->h[i]);
    }
    int allowed = 0;
    for (int i = 0; i < 600; i++) {
        struct sd_ratelimit_result r = {0};
        sd_ratelimit_take(rl[i % NODES], 7, 1, 100, 2000000, &r);
        allowed += r.allowed;
        if (!r.allowed) {
            assert_true(r.retry_after >= 1);
        }
    }
    assert_true(allowed <= 100);
    assert_true(allowed >= 100 - NODES * (SD_RATELIMIT_CHUNK(100) - 1));
    for (int i = 0; i < NODES; i++) {
        sd_ratelimiter_free(rl[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_at_once_then_share_control_plane, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_connectors_and_state_across_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_connections_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_rate_limit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
