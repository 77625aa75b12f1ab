/* test_migrate.c — moving a venue's SQLite store into PostgreSQL (store/migrate.h): a store
 * filled through the store's own operations (every table the schema has, binary bodies with NUL
 * bytes, tombstones, erasures, outbox items with leases) is migrated into a fresh database on
 * the cluster in STAGEDOOR_TEST_PG (skipped, exit 77, without it), then read back with libpq and
 * through the PostgreSQL backend.
 *
 * What must hold:
 *  - every row of every table arrives with its values (key hashes, documents byte for byte,
 *    bytea bodies), record seq numbers unchanged, meta 'seq' the SQLite writer's next base, and
 *    ids handed out after the move continue past the copied ones;
 *  - a database that holds data is refused, naming a table, and nothing is written;
 *  - the verification finds a changed value, a missing row and a wrong meta 'seq', naming the
 *    table;
 *  - a SQLite file at another schema version, or schemas that drifted (a column on one side
 *    only), are refused before anything is copied. */
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
#include <libpq-fe.h>
#include <sqlite3.h>

#include "base/base.h"
#include "core/outbox.h"
#include "model/model.h"
#include "store/audience.h"
#include "store/inbound.h"
#include "store/migrate.h"
#include "store/quota.h"
#include "store/store.h"
#include "store_fixture.h"

#define DAY (86400LL * 1000000LL)

extern const unsigned sd_sqlite_schema_count; /* the data file's migrations this binary has */

struct fx {
    struct sd_test_store st; /* SQLite, whatever SD_TEST_STORE_BACKEND says: the source */
    struct sd_store_handle *h;
    int64_t acme, beta;
    char db[64];
    char url[512];
};

/* ---- the target database --------------------------------------------------------------------- */

static PGconn *connect_or_fail(const char *url)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) {
        fail_msg("cannot connect to PostgreSQL: %s", PQerrorMessage(c));
    }
    return c;
}

static void admin_exec(const char *sql)
{
    PGconn *c = connect_or_fail(getenv("STAGEDOOR_TEST_PG"));
    PGresult *res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    }
    PQclear(res);
    PQfinish(c);
}

/* The admin URL with its database replaced by db. */
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

static int setup(void **state)
{
    struct fx *f = sd_calloc(1, sizeof(*f));
    sd_test_store_make(&f->st, "migrate");
    assert_int_equal(sd_store_open("sqlite", f->st.dir, &f->h), 0);
    const char *rnd = strrchr(f->st.tmp, '.');
    assert_non_null(rnd);
    snprintf(f->db, sizeof(f->db), "sd_migrate_%s", rnd + 1);
    for (char *p = f->db; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))) {
            *p = '_';
        }
    }
    char sql[128];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->db);
    admin_exec(sql);
    make_url(f->url, sizeof(f->url), getenv("STAGEDOOR_TEST_PG"), f->db);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    sd_test_store_release(&f->st, f->h);
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", f->db);
    admin_exec(sql);
    free(f);
    return 0;
}

/* One text value from the target database (NULL → "<null>"); the caller frees it. */
static char *pg_value(struct fx *f, const char *sql)
{
    PGconn *c = connect_or_fail(f->url);
    PGresult *res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    }
    char *v = sd_strdup(PQgetisnull(res, 0, 0) ? "<null>" : PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(c);
    return v;
}

static int64_t pg_count(struct fx *f, const char *sql)
{
    char *v = pg_value(f, sql);
    int64_t n = 0;
    assert_int_equal(sd_parse_int64(v, true, &n), 0);
    free(v);
    return n;
}

static void pg_exec(struct fx *f, const char *sql)
{
    PGconn *c = connect_or_fail(f->url);
    PGresult *res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    }
    PQclear(res);
    PQfinish(c);
}

static int64_t sqlite_count(struct fx *f, const char *file, const char *sql)
{
    char *path = sd_asprintf("%s/%s", f->st.dir, file);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(path);
    return n;
}

/* ---- filling the SQLite store through its operations ---------------------------------------- */

static void ingest(struct fx *f, int64_t tenant, enum sd_env env, const char *source,
                   const char *text)
{
    json_error_t jerr;
    json_t *body = json_loads(text, 0, &jerr);
    if (!body) {
        fail_msg("bad JSON %s: %s", text, jerr.text);
    }
    sd_json_exact_prices(body, text, strlen(text));
    struct sd_issues errors, warnings;
    sd_issues_init(&errors, 10);
    sd_issues_init(&warnings, 100);
    struct sd_batch b = {0};
    if (sd_validate_ingest(body, &b, &errors, &warnings) != 0) {
        json_t *why = sd_issues_to_json(&errors);
        char *text_why = json_dumps(why, 0);
        fail_msg("invalid body: %s", text_why);
    }
    b.source = source;
    struct sd_apply_result res;
    sd_apply_result_init(&res);
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_savepoint(f->h), 0);
    assert_int_equal(sd_store_apply_ingest(f->h, tenant, env, &b, &res), 0);
    assert_int_equal(res.outcome, SD_APPLY_OK);
    assert_int_equal(sd_store_savepoint_release(f->h), 0);
    assert_int_equal(sd_store_write_commit(f->h), 0);
    sd_apply_result_release(&res);
    sd_batch_release(&b);
    sd_issues_release(&errors);
    sd_issues_release(&warnings);
    json_decref(body);
}

static const char SALE_DOC_INVOICE[] = "INV-2";

/* A season in two tenants and both environments, and a row in every other table. */
static void fill(struct fx *f)
{
    f->acme = sd_test_store_tenant(f->h, "acme", "Acme Tickets");
    f->beta = sd_test_store_tenant(f->h, "beta", "Beta \"Oper\"\ttab\\slash\nnewline");
    assert_int_equal(sd_store_tenant_set_limits(f->h, "beta", 60, 120), 0);
    char hash[65];
    sd_sha256_hex("acme-test-key", 13, hash);
    assert_int_equal(sd_store_key_insert(f->h, "key_acme1", "acme", SD_ENV_TEST, hash), 0);
    sd_sha256_hex("beta-prod-key", 13, hash);
    assert_int_equal(sd_store_key_insert(f->h, "key_beta1", "beta", SD_ENV_PROD, hash), 0);
    assert_int_equal(sd_store_key_revoke(f->h, "key_beta1"), 0);

    ingest(f, f->acme, SD_ENV_TEST, NULL,
           "{\"events\":[{\"event_id\":\"E1\",\"title\":\"Otello\",\"date\":\"2025-10-03\","
           "\"time\":\"19:30:00\",\"venue\":\"State Opera\",\"hall\":\"Hall 1\","
           "\"capacity\":1250,\"city\":\"Berlin\"},"
           "{\"event_id\":\"E2\",\"title\":\"Tosca – «Vissi d'arte»\",\"date\":\"2025-11-03\","
           "\"time\":\"19:30:00\",\"venue\":\"State Opera\",\"hall\":\"Hall 2\","
           "\"capacity\":900,\"city\":\"Zürich\"}],"
           "\"customers\":[{\"customer_id\":\"C1\",\"email\":\"anna@example.com\","
           "\"first_name\":\"Anna\",\"last_name\":\"Müller\"},"
           "{\"customer_id\":\"C2\",\"email\":\"ben@example.com\",\"first_name\":\"Ben\"},"
           "{\"customer_id\":\"C3\",\"email\":\"cleo@example.com\"}],"
           "\"sales\":[{\"invoice_number\":\"INV-1\",\"event_id\":\"E1\",\"customer_id\":\"C1\","
           "\"purchase_datetime\":\"2025-04-15T11:08:42Z\",\"ticket_category\":\"regular\","
           "\"quantity\":2,\"sales_price\":\"89.00\",\"currency\":\"EUR\"},"
           "{\"invoice_number\":\"INV-2\",\"event_id\":\"E2\",\"customer_id\":\"C2\","
           "\"purchase_datetime\":\"2025-04-16T11:08:42Z\",\"ticket_category\":\"VIP\",\"note\":"
           "\"loge\\t\\\\ «A»\\n\","
           "\"quantity\":3,\"sales_price\":\"120.50\",\"currency\":\"EUR\"},"
           "{\"invoice_number\":\"INV-3\",\"event_id\":\"E1\",\"customer_id\":\"C3\","
           "\"purchase_datetime\":\"2025-04-17T11:08:42Z\",\"ticket_category\":\"regular\","
           "\"quantity\":1,\"sales_price\":\"50.00\",\"currency\":\"CHF\"},"
           "{\"invoice_number\":\"INV-4\",\"event_id\":\"E2\",\"customer_id\":\"ANON\","
           "\"purchase_datetime\":\"2025-04-18T11:08:42Z\",\"ticket_category\":\"regular\","
           "\"quantity\":1,\"sales_price\":\"10.00\",\"currency\":\"EUR\"}]}");
    /* a refund of one ticket of INV-1, and a customer of another source */
    ingest(f, f->acme, SD_ENV_TEST, NULL,
           "{\"sales\":[{\"invoice_number\":\"R-1\",\"event_id\":\"E1\",\"customer_id\":\"C1\","
           "\"purchase_datetime\":\"2025-05-01T09:00:00Z\",\"ticket_category\":\"regular\","
           "\"quantity\":1,\"sales_price\":\"89.00\",\"currency\":\"EUR\","
           "\"refund_of\":\"INV-1\"}]}");
    /* the same performance under another id: an alias */
    ingest(f, f->acme, SD_ENV_TEST, NULL,
           "{\"events\":[{\"event_id\":\"E1-again\",\"title\":\"Otello\","
           "\"date\":\"2025-10-03\",\"time\":\"19:30:00\",\"venue\":\"State Opera\","
           "\"hall\":\"Hall 1\",\"capacity\":1250,\"city\":\"Berlin\"}]}");
    ingest(f, f->acme, SD_ENV_TEST, "csv",
           "{\"customers\":[{\"customer_id\":\"K1\",\"email\":\"anna@example.com\"}]}");
    ingest(f, f->beta, SD_ENV_PROD, NULL,
           "{\"events\":[{\"event_id\":\"P1\",\"title\":\"Carmen\",\"date\":\"2026-01-03\","
           "\"time\":\"20:00:00\",\"venue\":\"Beta\",\"hall\":\"Main\",\"capacity\":10,"
           "\"city\":\"Wien\"}]}");

    /* tombstones: a sale deleted, a customer erased (an erasure row, suppression), and the
     * highest seq now belongs to a tombstone */
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_delete_record(f->h, f->acme, SD_ENV_TEST, SD_KIND_SALE, "INV-4", NULL,
                                            SD_TOMBSTONE_DELETED, NULL, "con_origin"),
                     1);
    struct sd_erasure_result er = {0};
    assert_int_equal(sd_store_profile_erase(f->h, f->acme, SD_ENV_TEST, "webhook", "C3", &er), 0);
    struct sd_idem_entry idem = {.status = 202, .response = "{\"ok\":true}", .created_usec = 1000};
    memset(idem.body_hash, 'a', 64);
    assert_int_equal(sd_store_idem_put(f->h, f->acme, SD_ENV_TEST, "idem-1", &idem), 0);
    assert_int_equal(sd_store_write_commit(f->h), 0);

    /* connectors and their state */
    struct sd_connector_conf c = {.id = "con_feed1",
                                  .tenant_id = f->acme,
                                  .env = SD_ENV_TEST,
                                  .type = "feed",
                                  .schedule = "hourly",
                                  .settings = "{\"url\":\"http://x\",\"secret\":\"s\\\\1\"}",
                                  .mapping = "{}"};
    assert_int_equal(sd_store_connector_put(f->h, &c, true), 0);
    assert_int_equal(sd_store_connector_request_run(f->h, "con_feed1", 12345), 0);
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(
        sd_store_connector_state_put(f->h, "con_feed1", "{\"cursor\":\"abc\\n\",\"state\":\"ok\"}"),
        0);
    assert_int_equal(sd_store_write_commit(f->h), 0);

    /* a target and outbox items, one of them leased */
    int64_t now = sd_now_usec();
    struct sd_outbox_clock clk = {.now_usec = now,
                                  .window_usec = 3600LL * 1000000LL,
                                  .lease_usec = 60LL * 1000000LL,
                                  .plan = sd_outbox_plan,
                                  .owner = "node-a"};
    struct sd_target t = {.id = "tgt_0000000000000001",
                          .tenant_id = f->acme,
                          .env = SD_ENV_TEST,
                          .type = "audience_push",
                          .doc = "{\"url\":\"https://crm.example/s\"}",
                          .rate_per_hour = 50};
    assert_int_equal(sd_store_target_put(f->h, &t, true, &clk), 0);
    const char *ids[2] = {"dlv_0000000000000001", "dlv_0000000000000002"};
    for (int i = 0; i < 2; i++) {
        struct sd_outbox_item d = {.id = (char *)ids[i],
                                   .tenant_id = f->acme,
                                   .env = SD_ENV_TEST,
                                   .connector_id = t.id,
                                   .operation = (char *)"push_segment",
                                   .subject_kind = (char *)"segment",
                                   .subject_id = (char *)"seg_0000000000000001",
                                   .idem_key = (char *)(i ? "key-b" : "key-a"),
                                   .doc = (char *)"{\"kind\":\"create\"}"};
        assert_int_equal(sd_store_delivery_insert(f->h, &d, &clk, NULL), 0);
    }
    struct sd_outbox_item claimed = {0};
    assert_int_equal(sd_store_delivery_claim(f->h, &clk, &claimed), 0);
    sd_outbox_item_release(&claimed);

    /* a segment */
    struct sd_segment_row row = {.id = "seg_0000000000000001",
                                 .tenant_id = f->acme,
                                 .env = SD_ENV_TEST,
                                 .name = "Verdi lovers",
                                 .description = "",
                                 .rules = "{\"bought\":{}}",
                                 .member_count = 3,
                                 .computed_usec = 100,
                                 .created_usec = 100,
                                 .updated_usec = 100};
    assert_int_equal(sd_store_segment_create(f->h, &row), 0);

    /* raw-first inbound: a door, a binary body with NUL bytes, a quarantined object, subjects */
    char thash[65];
    sd_sha256_hex("door-token", 10, thash);
    assert_int_equal(sd_store_inbound_door_set(f->h, "con_feed1", thash), 0);
    static const unsigned char body[] = {'{', 0, 1, 2, '\\', 'x', '\n', '\t', 0xff, 0, '}'};
    struct sd_inbound_raw raw = {.connector_id = "con_feed1",
                                 .tenant_id = f->acme,
                                 .env = SD_ENV_TEST,
                                 .received_usec = now,
                                 .expires_usec = now + DAY,
                                 .headers = "{\"content-type\":\"application/octet-stream\"}",
                                 .body = (unsigned char *)body,
                                 .body_len = sizeof(body)};
    sd_sha256_hex(body, sizeof(body), raw.content_hash);
    int64_t raw_id = 0;
    bool renewed = false;
    assert_int_equal(sd_store_write_begin(f->h), 0);
    assert_int_equal(sd_store_inbound_raw_put(f->h, &raw, 0, &raw_id, &renewed), 0);
    assert_int_equal(sd_store_inbound_quarantine_put(f->h, raw_id, "con_feed1", f->acme,
                                                     SD_ENV_TEST, 0, "no mapping"),
                     0);
    char *subjects[2] = {"cid:C1", "em:0123"};
    assert_int_equal(sd_store_inbound_subjects_put(f->h, f->acme, SD_ENV_TEST, raw_id, subjects, 2),
                     0);
    assert_int_equal(sd_store_inbound_scan_put(f->h, f->acme, SD_ENV_TEST, "INV-2", "scan-1",
                                               "2025-11-03T19:01:00Z", "Gate A"),
                     1);
    assert_int_equal(sd_store_write_commit(f->h), 0);

    /* the quota ledger */
    struct sd_quota_slot slot = {.name = "day",
                                 .start_usec = now / DAY * DAY,
                                 .end_usec = now / DAY * DAY + DAY,
                                 .limit = 5000};
    assert_int_equal(sd_store_quota_take(f->h, "archtics:abc", now, 3, &slot, 1), 0);
}

/* ---- tests ----------------------------------------------------------------------------------- */

static const struct sd_migrate_table *table(const struct sd_migrate_result *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->tables[i].name, name) == 0) {
            return &m->tables[i];
        }
    }
    fail_msg("no table %s in the result", name);
    return NULL;
}

static void test_migrate_everything(void **state)
{
    struct fx *f = *state;
    fill(f);
    /* The SQLite store stays open: a hub may keep serving during the copy. */
    struct sd_migrate_result m = {0};
    int r = sd_store_migrate(f->st.dir, f->url, &m);
    if (r != 0) {
        fail_msg("migrate: %d %s", r, m.error);
    }

    /* Every table of the schema is in the result, with SQLite's count and verified. */
    static const char *const tables[] = {
        "api_keys",          "connector_state",    "connectors",  "customers",
        "erasures",          "event_aliases",      "events",      "idempotency",
        "inbound_doors",     "inbound_quarantine", "inbound_raw", "inbound_subjects",
        "outbox_items",      "profile_facts",      "profiles",    "quota_windows",
        "remote_refs",       "sale_scans",         "sales",       "segment_snapshot_members",
        "segment_snapshots", "segments",           "suppression", "tenants",
        "tombstones"};
    for (size_t i = 0; i < sizeof(tables) / sizeof(*tables); i++) {
        const struct sd_migrate_table *t = table(&m, tables[i]);
        assert_true(t->ok);
        assert_int_equal(t->rows, t->pg_rows);
        bool control = strcmp(tables[i], "tenants") == 0 || strcmp(tables[i], "api_keys") == 0 ||
                       strcmp(tables[i], "quota_windows") == 0;
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", tables[i]);
        assert_int_equal(t->rows, sqlite_count(f, control ? "control.db" : "stagedoor.db", sql));
        assert_int_equal(t->rows, pg_count(f, sql));
    }
    /* tenants come before api_keys (its foreign key) */
    size_t ti = 0, ki = 0;
    for (size_t i = 0; i < m.n; i++) {
        ti = strcmp(m.tables[i].name, "tenants") == 0 ? i : ti;
        ki = strcmp(m.tables[i].name, "api_keys") == 0 ? i : ki;
    }
    assert_true(ti < ki);
    /* the content is real: nothing empty that the fill wrote to */
    static const char *const filled[] = {
        "api_keys",      "connector_state",  "connectors",   "customers",     "erasures",
        "event_aliases", "events",           "idempotency",  "inbound_doors", "inbound_quarantine",
        "inbound_raw",   "inbound_subjects", "outbox_items", "profile_facts", "profiles",
        "quota_windows", "sale_scans",       "sales",        "segments",      "suppression",
        "tenants",       "tombstones"};
    for (size_t i = 0; i < sizeof(filled) / sizeof(*filled); i++) {
        if (table(&m, filled[i])->rows == 0) {
            fail_msg("table %s was not filled", filled[i]);
        }
    }

    /* key hashes */
    char hash[65];
    sd_sha256_hex("acme-test-key", 13, hash);
    char *v = pg_value(f, "SELECT hash_hex FROM api_keys WHERE key_id = 'key_acme1'");
    assert_string_equal(v, hash);
    free(v);
    v = pg_value(f, "SELECT revoked_usec > 0 FROM api_keys WHERE key_id = 'key_beta1'");
    assert_string_equal(v, "t");
    free(v);
    /* text with tab, backslash, newline and quotes */
    v = pg_value(f, "SELECT name FROM tenants WHERE client_id = 'beta'");
    assert_string_equal(v, "Beta \"Oper\"\ttab\\slash\nnewline");
    free(v);
    /* a sale document byte for byte, and its refund's figures */
    char *doc = NULL;
    assert_int_equal(
        sd_store_get_record(f->h, SD_KIND_SALE, f->acme, SD_ENV_TEST, SALE_DOC_INVOICE, &doc), 0);
    v = pg_value(f, "SELECT doc FROM sales WHERE invoice_number = 'INV-2'");
    assert_string_equal(v, doc);
    free(v);
    free(doc);
    assert_int_equal(pg_count(f, "SELECT refunded_quantity FROM sales WHERE invoice_number = "
                                 "'INV-1'"),
                     sqlite_count(f, "stagedoor.db",
                                  "SELECT refunded_quantity FROM sales WHERE invoice_number = "
                                  "'INV-1'"));
    /* seq numbers unchanged; meta seq = the highest (a tombstone's), as SQLite's writer sees */
    int64_t max_seq = sqlite_count(f, "stagedoor.db",
                                   "SELECT max((SELECT max(seq) FROM sales), (SELECT max(seq) "
                                   "FROM customers), (SELECT max(seq) FROM events), (SELECT "
                                   "coalesce(max(seq), 0) FROM tombstones), coalesce((SELECT v "
                                   "FROM meta WHERE k = 'seq_floor'), 0))");
    assert_int_equal(pg_count(f, "SELECT v FROM meta WHERE k = 'seq'"), max_seq);
    assert_int_equal(m.seq, max_seq);
    assert_int_equal(
        pg_count(f, "SELECT seq FROM sales WHERE invoice_number = 'INV-3'"),
        sqlite_count(f, "stagedoor.db", "SELECT seq FROM sales WHERE invoice_number = 'INV-3'"));
    /* the binary body, NUL bytes and all */
    PGconn *c = connect_or_fail(f->url);
    PGresult *res = PQexecParams(c, "SELECT body FROM inbound_raw", 0, NULL, NULL, NULL, NULL, 1);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    static const unsigned char body[] = {'{', 0, 1, 2, '\\', 'x', '\n', '\t', 0xff, 0, '}'};
    assert_int_equal(PQgetlength(res, 0, 0), sizeof(body));
    assert_memory_equal(PQgetvalue(res, 0, 0), body, sizeof(body));
    PQclear(res);
    PQfinish(c);
    /* the leased outbox item keeps its lease and fence */
    v = pg_value(f, "SELECT state || ' ' || fence || ' ' || lease_owner FROM outbox_items"
                    " WHERE id = 'dlv_0000000000000001'");
    assert_string_equal(v, "sending 1 node-a");
    free(v);
    sd_migrate_result_release(&m);

    /* Through the PostgreSQL backend: the connector's state, and ids continue past the copy. */
    struct sd_store_handle *pg = NULL;
    assert_int_equal(sd_store_open("postgresql", f->url, &pg), 0);
    char *st = NULL;
    assert_int_equal(sd_store_connector_state_get(pg, "con_feed1", &st), 0);
    assert_string_equal(st, "{\"cursor\":\"abc\\n\",\"state\":\"ok\"}");
    free(st);
    struct sd_tenant beta = {0};
    assert_int_equal(sd_store_tenant_get(pg, "beta", &beta), 0);
    assert_int_equal(beta.id, f->beta);
    assert_int_equal(beta.per_minute, 60);
    sd_tenant_release(&beta);
    assert_int_equal(sd_store_tenant_create(pg, "gamma", "Gamma"), 0);
    struct sd_tenant gamma = {0};
    assert_int_equal(sd_store_tenant_get(pg, "gamma", &gamma), 0);
    assert_int_equal(gamma.id, f->beta + 1);
    sd_tenant_release(&gamma);
    sd_store_close(pg);
    assert_int_equal(pg_count(f, "SELECT nextval('outbox_items_seq')"),
                     sqlite_count(f, "stagedoor.db", "SELECT max(seq) FROM outbox_items") + 1);
    assert_int_equal(pg_count(f, "SELECT nextval(pg_get_serial_sequence('profiles', 'id'))"),
                     sqlite_count(f, "stagedoor.db", "SELECT max(id) FROM profiles") + 1);
    assert_int_equal(pg_count(f, "SELECT nextval(pg_get_serial_sequence('inbound_raw', 'id'))"),
                     sqlite_count(f, "stagedoor.db", "SELECT max(id) FROM inbound_raw") + 1);

    /* A second migrate into the same database is refused and writes nothing. */
    int64_t sales = pg_count(f, "SELECT count(*) FROM sales");
    r = sd_store_migrate(f->st.dir, f->url, &m);
    assert_int_equal(r, -ENOTEMPTY);
    assert_non_null(strstr(m.error, "not empty (table "));
    sd_migrate_result_release(&m);
    assert_int_equal(pg_count(f, "SELECT count(*) FROM sales"), sales);
}

static void test_verify_finds_tampering(void **state)
{
    struct fx *f = *state;
    fill(f);
    struct sd_migrate_result m = {0};
    assert_int_equal(sd_store_migrate(f->st.dir, f->url, &m), 0);
    sd_migrate_result_release(&m);
    assert_int_equal(sd_store_migrate_verify(f->st.dir, f->url, &m), 0);
    sd_migrate_result_release(&m);

    /* one byte of one document */
    pg_exec(f, "UPDATE sales SET doc = doc || ' ' WHERE invoice_number = 'INV-2'");
    assert_int_equal(sd_store_migrate_verify(f->st.dir, f->url, &m), -EBADMSG);
    assert_non_null(strstr(m.error, "table sales differs"));
    assert_false(table(&m, "sales")->ok);
    assert_true(table(&m, "customers")->ok);
    assert_int_equal(table(&m, "sales")->rows, table(&m, "sales")->pg_rows);
    sd_migrate_result_release(&m);
    pg_exec(f, "UPDATE sales SET doc = rtrim(doc, ' ') WHERE invoice_number = 'INV-2'");
    assert_int_equal(sd_store_migrate_verify(f->st.dir, f->url, &m), 0);
    sd_migrate_result_release(&m);

    /* one byte of a binary body */
    pg_exec(f, "UPDATE inbound_raw SET body = set_byte(body, 1, 7)");
    assert_int_equal(sd_store_migrate_verify(f->st.dir, f->url, &m), -EBADMSG);
    assert_non_null(strstr(m.error, "table inbound_raw differs"));
    sd_migrate_result_release(&m);
    pg_exec(f, "UPDATE inbound_raw SET body = set_byte(body, 1, 0)");

    /* a NULL where a value was */
    pg_exec(f, "UPDATE outbox_items SET lease_owner = NULL WHERE lease_owner IS NOT NULL");
    assert_int_equal(sd_store_migrate_verify(f->st.dir, f->url, &m), -EBADMSG);
    assert_non_null(strstr(m.error, "table outbox_items differs"));
    sd_migrate_result_release(&m);
    pg_exec(f, "UPDATE outbox_items SET lease_owner = 'node-a' WHERE fence = 1");

    /* a missing row */
    pg_exec(f, "DELETE FROM tombstones WHERE seq = (SELECT min(seq) FROM tombstones)");
    assert_int_equal(sd_store_migrate_verify(f->st.dir, f->url, &m), -EBADMSG);
    assert_non_null(strstr(m.error, "table tombstones differs"));
    assert_int_equal(table(&m, "tombstones")->pg_rows + 1, table(&m, "tombstones")->rows);
    sd_migrate_result_release(&m);
}

static void test_verify_finds_meta_seq(void **state)
{
    struct fx *f = *state;
    fill(f);
    struct sd_migrate_result m = {0};
    assert_int_equal(sd_store_migrate(f->st.dir, f->url, &m), 0);
    sd_migrate_result_release(&m);
    pg_exec(f, "UPDATE meta SET v = v - 1 WHERE k = 'seq'");
    assert_int_equal(sd_store_migrate_verify(f->st.dir, f->url, &m), -EBADMSG);
    assert_non_null(strstr(m.error, "meta 'seq'"));
    sd_migrate_result_release(&m);
}

static void sqlite_exec_file(struct fx *f, const char *file, const char *sql)
{
    char *path = sd_asprintf("%s/%s", f->st.dir, file);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    free(path);
}

static void test_refuses_other_schema_version(void **state)
{
    struct fx *f = *state;
    sd_test_store_tenant(f->h, "acme", "Acme");
    sd_store_close(f->h);
    f->h = NULL;
    char pragma[64];
    snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %u", sd_sqlite_schema_count - 1);
    sqlite_exec_file(f, "stagedoor.db", pragma);
    struct sd_migrate_result m = {0};
    assert_int_equal(sd_store_migrate(f->st.dir, f->url, &m), -EPROTO);
    assert_non_null(strstr(m.error, "upgrade DATA_DIR first by opening it with this stagedoor"));
    sd_migrate_result_release(&m);
    snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %u", sd_sqlite_schema_count + 1);
    sqlite_exec_file(f, "stagedoor.db", pragma);
    assert_int_equal(sd_store_migrate(f->st.dir, f->url, &m), -EPROTO);
    assert_non_null(strstr(m.error, "newer"));
    sd_migrate_result_release(&m);
    /* nothing was created or copied in PostgreSQL */
    assert_int_equal(pg_count(f, "SELECT count(*) FROM information_schema.tables WHERE "
                                 "table_schema = 'public'"),
                     0);
}

static void test_refuses_drift(void **state)
{
    struct fx *f = *state;
    sd_test_store_tenant(f->h, "acme", "Acme");
    /* a column only SQLite has */
    sqlite_exec_file(f, "stagedoor.db", "ALTER TABLE segments ADD COLUMN colour TEXT");
    struct sd_migrate_result m = {0};
    assert_int_equal(sd_store_migrate(f->st.dir, f->url, &m), -EPROTO);
    assert_non_null(strstr(m.error, "column segments.colour exists only in SQLite"));
    sd_migrate_result_release(&m);
    sqlite_exec_file(f, "stagedoor.db", "ALTER TABLE segments DROP COLUMN colour");
    /* a column only PostgreSQL has */
    pg_exec(f, "ALTER TABLE remote_refs ADD COLUMN extra BIGINT");
    assert_int_equal(sd_store_migrate(f->st.dir, f->url, &m), -EPROTO);
    assert_non_null(strstr(m.error, "column remote_refs.extra exists only in PostgreSQL"));
    sd_migrate_result_release(&m);
    pg_exec(f, "ALTER TABLE remote_refs DROP COLUMN extra");
    /* a table only PostgreSQL has */
    pg_exec(f, "CREATE TABLE pg_extra (x BIGINT PRIMARY KEY)");
    assert_int_equal(sd_store_migrate(f->st.dir, f->url, &m), -EPROTO);
    assert_non_null(strstr(m.error, "table pg_extra exists only in PostgreSQL"));
    sd_migrate_result_release(&m);
    pg_exec(f, "DROP TABLE pg_extra");
    /* a table only SQLite has */
    sqlite_exec_file(f, "stagedoor.db", "CREATE TABLE leftovers (x INTEGER)");
    assert_int_equal(sd_store_migrate(f->st.dir, f->url, &m), -EPROTO);
    assert_non_null(strstr(m.error, "table leftovers of stagedoor.db exists only in SQLite"));
    sd_migrate_result_release(&m);
    sqlite_exec_file(f, "stagedoor.db", "DROP TABLE leftovers");
    /* a meta key PostgreSQL has no place for */
    sqlite_exec_file(f, "stagedoor.db", "INSERT INTO meta (k, v) VALUES ('lease_epoch', 7)");
    assert_int_equal(sd_store_migrate(f->st.dir, f->url, &m), -EPROTO);
    assert_non_null(strstr(m.error, "meta key 'lease_epoch' of stagedoor.db"));
    sd_migrate_result_release(&m);
    sqlite_exec_file(f, "stagedoor.db", "DELETE FROM meta WHERE k = 'lease_epoch'");
    /* with the schemas equal again, it goes */
    assert_int_equal(sd_store_migrate(f->st.dir, f->url, &m), 0);
    assert_int_equal(table(&m, "tenants")->rows, 1);
    sd_migrate_result_release(&m);
}

/* rate_buckets (the token buckets nodes share) exists only in PostgreSQL: nothing is copied into
 * it, but it must be empty like every other table. */
static void test_pg_only_table(void **state)
{
    struct fx *f = *state;
    sd_test_store_tenant(f->h, "acme", "Acme");
    struct sd_store_handle *pg = NULL;
    assert_int_equal(sd_store_open("postgresql", f->url, &pg), 0);
    sd_store_close(pg);
    pg_exec(f, "INSERT INTO rate_buckets (bucket_key, tokens, updated_usec) VALUES (1, 5, 1)");
    struct sd_migrate_result m = {0};
    assert_int_equal(sd_store_migrate(f->st.dir, f->url, &m), -ENOTEMPTY);
    assert_non_null(strstr(m.error, "table rate_buckets has rows"));
    sd_migrate_result_release(&m);
    assert_int_equal(pg_count(f, "SELECT count(*) FROM tenants"), 0);
    pg_exec(f, "DELETE FROM rate_buckets");
    assert_int_equal(sd_store_migrate(f->st.dir, f->url, &m), 0);
    for (size_t i = 0; i < m.n; i++) {
        assert_string_not_equal(m.tables[i].name, "rate_buckets");
    }
    assert_int_equal(table(&m, "tenants")->rows, 1);
    sd_migrate_result_release(&m);
    assert_int_equal(pg_count(f, "SELECT count(*) FROM rate_buckets"), 0);
}

static void test_not_a_data_dir(void **state)
{
    struct fx *f = *state;
    struct sd_migrate_result m = {0};
    assert_int_equal(sd_store_migrate("/tmp/no-such-stagedoor-dir", f->url, &m), -ENOENT);
    assert_non_null(strstr(m.error, "stagedoor.db"));
    sd_migrate_result_release(&m);
}

int main(void)
{
    const char *pg = getenv("STAGEDOOR_TEST_PG");
    if (!pg || !*pg) {
        fprintf(stderr, "skipped: STAGEDOOR_TEST_PG is not set (scripts/pg-cluster start DIR)\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migrate_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_finds_tampering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_finds_meta_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_other_schema_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_drift, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_only_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_data_dir, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
