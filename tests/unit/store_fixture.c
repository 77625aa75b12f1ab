/* store_fixture.c — the shared store fixture of the unit tests (API in store_fixture.h). Built
 * once as a small library linked into every unit test; tests that do not call it pull nothing.
 * Removal walks TMP depth first without following links, so a symlink a test planted is removed,
 * never what it points at; TMP itself always comes from mkdtemp, never from the caller. */
#include <errno.h>
#include <ftw.h>
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
#include <libpq-fe.h>

#include "store/store.h"
#include "store_fixture.h"

bool sd_test_store_is_sqlite(void)
{
    const char *b = getenv("SD_TEST_STORE_BACKEND");
    return !b || strcmp(b, "postgresql") != 0;
}

const char *sd_test_store_kind(void)
{
    return sd_test_store_is_sqlite() ? "sqlite" : "postgresql";
}

const char *sd_test_store_location(const struct sd_test_store *s)
{
    return sd_test_store_is_sqlite() ? s->dir : s->url;
}

/* The cluster's admin URL (STAGEDOOR_TEST_PG); exits 77 (skipped) when it is not set. */
static const char *admin_url(void)
{
    const char *u = getenv("STAGEDOOR_TEST_PG");
    if (!u || !*u) {
        fprintf(stderr, "skipped: STAGEDOOR_TEST_PG is not set (scripts/pg-cluster start DIR)\n");
        exit(77);
    }
    return u;
}

static void admin_exec(const char *sql)
{
    PGconn *c = PQconnectdb(admin_url());
    if (PQstatus(c) != CONNECTION_OK) {
        fail_msg("cannot connect to STAGEDOOR_TEST_PG: %s", PQerrorMessage(c));
    }
    PGresult *res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    }
    PQclear(res);
    PQfinish(c);
}

/* url = the admin URL with its database name replaced by db ("scheme://auth@host:port/db?q"). */
static void make_url(char *out, size_t cap, const char *admin, const char *db)
{
    const char *host = strstr(admin, "://");
    assert_non_null(host);
    const char *slash = strchr(host + 3, '/');
    const char *query = strchr(host + 3, '?');
    size_t head = slash ? (size_t)(slash - admin) : query ? (size_t)(query - admin) : strlen(admin);
    int n = snprintf(out, cap, "%.*s/%s%s", (int)head, admin, db, query ? query : "");
    assert_true(n > 0 && (size_t)n < cap);
}

void sd_test_store_make(struct sd_test_store *s, const char *tag)
{
    int n = snprintf(s->tmp, sizeof(s->tmp), "/tmp/sd_%s_test.XXXXXX", tag);
    assert_true(n > 0 && (size_t)n < sizeof(s->tmp));
    assert_non_null(mkdtemp(s->tmp));
    n = snprintf(s->dir, sizeof(s->dir), "%s/data", s->tmp);
    assert_true(n > 0 && (size_t)n < sizeof(s->dir));
    s->db[0] = s->url[0] = '\0';
    if (sd_test_store_is_sqlite()) {
        return;
    }
    /* The database is named after TMP's random part: unique among parallel test programs. */
    const char *rnd = strrchr(s->tmp, '.');
    assert_non_null(rnd);
    n = snprintf(s->db, sizeof(s->db), "sd_%.20s_%s", tag, rnd + 1);
    assert_true(n > 0 && (size_t)n < sizeof(s->db));
    for (char *p = s->db; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))) {
            *p = '_';
        }
    }
    char sql[128];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", s->db);
    admin_exec(sql);
    make_url(s->url, sizeof(s->url), admin_url(), s->db);
    assert_int_equal(mkdir(s->dir, 0700), 0);
}

void sd_test_store_open(const struct sd_test_store *s, struct sd_store_handle **ret)
{
    assert_int_equal(sd_store_open(sd_test_store_kind(), sd_test_store_location(s), ret), 0);
}

void sd_test_store_setup(struct sd_test_store *s, const char *tag, struct sd_store_handle **ret)
{
    sd_test_store_make(s, tag);
    sd_test_store_open(s, ret);
}

int64_t sd_test_store_tenant(struct sd_store_handle *h, const char *client_id, const char *name)
{
    assert_int_equal(sd_store_tenant_create(h, client_id, name), 0);
    struct sd_tenant t = {0};
    assert_int_equal(sd_store_tenant_get(h, client_id, &t), 0);
    int64_t id = t.id;
    sd_tenant_release(&t);
    return id;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    return remove(path) == 0 ? 0 : -errno;
}

void sd_test_store_release(struct sd_test_store *s, struct sd_store_handle *h)
{
    sd_store_close(h);
    if (s->tmp[0] == '\0') {
        return;
    }
    if (s->db[0]) {
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP DATABASE %s WITH (FORCE)", s->db);
        admin_exec(sql);
    }
    int rc = nftw(s->tmp, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (rc != 0) {
        fail_msg("cannot remove %s: %s", s->tmp, strerror(rc < 0 ? -rc : errno));
    }
    assert_int_equal(access(s->tmp, F_OK), -1);
    memset(s, 0, sizeof(*s));
}
