/* store_sql.h — for store-suite tests that check what the store wrote by reading its tables
 * directly, on either backend: a read-only connection of the backend's own (sqlite3 on
 * DIR/stagedoor.db, libpq on the test database's URL), one statement, its rows as text.
 *
 * The text: columns separated by '|', each row ending in '\n', SQL NULL written "NULL"; an
 * empty result is "". The statement must mean the same on both backends (plain SELECTs do);
 * where the dialects differ the test picks the text with sd_test_store_is_sqlite(). Failures
 * are cmocka assertions. Header-only: static functions for the test that includes it. */
#ifndef SD_TESTS_UNIT_STORE_SQL_H
#define SD_TESTS_UNIT_STORE_SQL_H

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>

#include "base/base.h"
#include "store_fixture.h"

static inline void sd_test_sql_cell(struct sd_buf *b, int col, const char *text)
{
    if (col > 0) {
        sd_buf_append(b, "|", 1);
    }
    sd_buf_puts(b, text ? text : "NULL");
}

/* The rows of sql on s's database (see above); the caller frees the text. */
static inline char *sd_test_sql(const struct sd_test_store *s, const char *sql)
{
    struct sd_buf b;
    sd_buf_init(&b);
    if (sd_test_store_is_sqlite()) {
        char path[160];
        snprintf(path, sizeof(path), "%s/stagedoor.db", s->dir);
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
            fail_msg("prepare %s: %s", sql, sqlite3_errmsg(db));
        }
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            for (int i = 0; i < sqlite3_column_count(st); i++) {
                sd_test_sql_cell(&b, i, (const char *)sqlite3_column_text(st, i));
            }
            sd_buf_append(&b, "\n", 1);
        }
        assert_int_equal(rc, SQLITE_DONE);
        sqlite3_finalize(st);
        sqlite3_close(db);
    } else {
        PGconn *pg = PQconnectdb(s->url);
        assert_int_equal(PQstatus(pg), CONNECTION_OK);
        PGresult *res = PQexec(pg, sql);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            fail_msg("query %s: %s", sql, PQerrorMessage(pg));
        }
        for (int r = 0; r < PQntuples(res); r++) {
            for (int i = 0; i < PQnfields(res); i++) {
                sd_test_sql_cell(&b, i, PQgetisnull(res, r, i) ? NULL : PQgetvalue(res, r, i));
            }
            sd_buf_append(&b, "\n", 1);
        }
        PQclear(res);
        PQfinish(pg);
    }
    return sd_buf_steal(&b);
}

/* The one integer sql returns (first column of its first row). */
static inline int64_t sd_test_sql_int(const struct sd_test_store *s, const char *sql)
{
    char *t = sd_test_sql(s, sql);
    long long v = 0;
    assert_int_equal(sscanf(t, "%lld", &v), 1);
    free(t);
    return (int64_t)v;
}

#endif
