/* store_fixture.h — the store fixture the store-backed unit tests share: a fresh folder under
 * /tmp, a store opened on a data folder inside it, tenants, and the removal of it all.
 *
 * Layout: TMP is /tmp/sd_<tag>_test.XXXXXX (made by mkdtemp), DIR is TMP/data, the data folder
 * the store is opened on. DIR is not created by the fixture: sd_store_open() creates it, as on a
 * first start. Whatever the store or the test writes under TMP (stagedoor.db, control.db, their
 * -wal and -shm files, test hooks such as DIR/fault-max-pages, raw files) goes with TMP.
 *
 * Ownership: a struct sd_test_store is the caller's, usually embedded in a test's own fixture
 * struct; it holds only the two paths. Store handles are the caller's too: the test closes,
 * reopens or opens more handles on DIR as it needs, and hands the one still open (or NULL) to
 * sd_test_store_release(), which closes it before removing TMP.
 *
 * Errors: every failure is a cmocka assertion, so these functions belong in cmocka setups,
 * teardowns and test bodies. One thread at a time.
 *
 * Backends (the store conformance suite). The store is SQLite unless the environment says
 * SD_TEST_STORE_BACKEND=postgresql: then make() also creates a fresh database on the cluster
 * whose URL is in STAGEDOOR_TEST_PG (scripts/pg-cluster), open() opens the PostgreSQL backend
 * on it, and release() drops it. Without STAGEDOOR_TEST_PG such a run exits 77 (ctest: skipped).
 * A unit test file holding the line "store suite: both backends" in a comment is registered
 * twice by CMakeLists.txt: unit.NAME (SQLite) and store_pg.NAME (PostgreSQL). DIR is made in
 * both cases (connector work folders and raw files live there on PostgreSQL too). A case that
 * only makes sense on SQLite (it reads the files) skips itself when !sd_test_store_is_sqlite(). */
#ifndef SD_TESTS_UNIT_STORE_FIXTURE_H
#define SD_TESTS_UNIT_STORE_FIXTURE_H

#include <stdint.h>

struct sd_store_handle;

#include <stdbool.h>

struct sd_test_store {
    char tmp[64]; /* TMP: "/tmp/sd_<tag>_test.XXXXXX"; empty until sd_test_store_make() */
    char dir[96]; /* DIR: TMP "/data", the data folder */
    char db[64];  /* PostgreSQL: the test's database name, else empty */
    char url[512]; /* PostgreSQL: its URL, else empty */
};

/* True unless this run tests the PostgreSQL backend. */
bool sd_test_store_is_sqlite(void);
/* The backend kind and location sd_test_store_open() uses for s. */
const char *sd_test_store_kind(void);
const char *sd_test_store_location(const struct sd_test_store *s);

/* Make a new TMP for `tag` (a short word naming the test, e.g. "outbox") and set DIR. */
void sd_test_store_make(struct sd_test_store *s, const char *tag);

/* Open the store on DIR into *ret: a new handle, the caller's to close. */
void sd_test_store_open(const struct sd_test_store *s, struct sd_store_handle **ret);

/* sd_test_store_make() then sd_test_store_open(): what most setups want. */
void sd_test_store_setup(struct sd_test_store *s, const char *tag, struct sd_store_handle **ret);

/* Create tenant `client_id` named `name` and return its id. */
int64_t sd_test_store_tenant(struct sd_store_handle *h, const char *client_id, const char *name);

/* Close `h` (NULL: none open) and remove TMP with everything under it, then assert TMP is gone,
 * so a test that leaves behind what cannot be removed fails instead of filling /tmp. Nothing to
 * do when *s was never made. *s is emptied: it may be made again. */
void sd_test_store_release(struct sd_test_store *s, struct sd_store_handle *h);

#endif
