/* migrate.c — `stagedoor migrate`: move a venue's store from its SQLite files into PostgreSQL,
 * every table row for row, and prove the copy by counts and checksums (migrate.h).
 *
 * Why this is a store-layer operation that knows both backends, beside store.h rather than
 * behind it: the store interface speaks records, cursors and settings one operation at a time,
 * and replaying a venue through it would renumber every record (a client's change cursor would
 * point at other rows), re-hash nothing it cannot read back (key hashes), and lose what no
 * operation returns (outbox leases and fences, raw inbound bodies, quota windows, tombstones'
 * numbers). A faithful move copies tables, so it must read SQLite's and write PostgreSQL's —
 * SQL that belongs in src/store/ and nowhere above it.
 *
 * Design invariants:
 *  - The SQLite files are opened read-only with the SQLite API, one read transaction on each
 *    (opened together, kept until the verification is done), so the copy and the SQLite side of
 *    the checksums see one committed snapshot of each file. A hub may keep serving meanwhile:
 *    its commits after the snapshot are simply not in the copy, so for the real move stop the
 *    hub (or its ingest) first, migrate, and start it on PostgreSQL.
 *  - The PostgreSQL database is opened once through sd_store_open("postgresql", …), which
 *    applies the backend's migrations, then used through one libpq connection of our own.
 *  - Schemas must not drift: the tables and columns copied are those of the PostgreSQL schema
 *    (information_schema); each must exist in one of the SQLite files with exactly the same
 *    columns, and every SQLite table must exist in PostgreSQL. A table only PostgreSQL has is
 *    an error too unless pg_only_tables[] names it with the reason nothing is copied into it
 *    (it is locked and must be empty like the others). meta and schema_version are kept
 *    apart: PostgreSQL's meta holds 'seq' (the last record number handed out: the highest seq of
 *    events, customers, sales and tombstones, or SQLite's meta 'seq_floor' if higher, as the
 *    SQLite writer computes it) and 'settings_version' (the higher of the two files').
 *  - One transaction: LOCK every table (nothing else writes meanwhile), check every table is
 *    empty (else refuse naming it), COPY … FROM STDIN in text format per table (tables a foreign
 *    key points at first), set meta and every sequence owned by a column (identity columns and
 *    outbox_items_seq) past the highest id copied, COMMIT. Either all of it or nothing.
 *  - Ids keep their values: record seq numbers (cursors stay valid), tenant, profile, raw and
 *    quarantine ids, outbox seq and fences. SQLite may reuse the highest rowid after it was
 *    deleted; PostgreSQL's sequences never go back, which no caller relies on either way.
 *  - Identifiers in SQL text come from PostgreSQL's catalog and are checked to be plain
 *    lower-case names before use; values are COPY data or bound parameters. Error texts name
 *    tables and columns, never values. */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "base/log.h"
#include "store/migrate.h"
#include "store/store.h"

extern const unsigned sd_sqlite_schema_count;
extern const unsigned sd_sqlite_control_schema_count;

#define NAME_MAX_LEN 63
#define COPY_CHUNK (1u << 20)

enum coltype { COL_INT, COL_TEXT, COL_BYTEA };

struct col {
    char name[NAME_MAX_LEN + 1];
    enum coltype type;
};

struct table {
    char name[NAME_MAX_LEN + 1];
    bool control; /* in control.db, else stagedoor.db */
    struct col *cols;
    int ncols;
    int *pk; /* indices into cols, in key order; all columns when the table has no key */
    int npk;
    bool pk_is_all;
};

struct ctx {
    sqlite3 *data, *ctl;
    PGconn *pg;
    struct table *t; /* the tables copied, in copy order */
    size_t nt;
    char (*pg_only)[NAME_MAX_LEN + 1]; /* tables of pg_only_tables[] the database has */
    size_t n_pg_only;
    struct sd_migrate_result *res;
};

/* Tables only PostgreSQL has, and why nothing is copied into them. Every other table must exist
 * on both sides; these are locked and must be empty like the others. */
static const char *const pg_only_tables[][2] = {
    {"rate_buckets", "the token buckets several nodes share: SQLite keeps them in each process's "
                     "memory, so they start full, as after a restart"},
};

static bool is_pg_only(const char *name)
{
    for (size_t i = 0; i < sizeof(pg_only_tables) / sizeof(pg_only_tables[0]); i++) {
        if (strcmp(pg_only_tables[i][0], name) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- errors ---------------------------------------------------------------------------------- */

static int fail(struct ctx *x, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct ctx *x, int r, const char *fmt, ...)
{
    if (!x->res->error[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(x->res->error, sizeof(x->res->error), fmt, ap);
        va_end(ap);
    }
    return r;
}

/* A failed PostgreSQL call: its primary message names relations and constraints, never values
 * (DETAIL and CONTEXT, which may quote them, are not used). */
static int pg_fail(struct ctx *x, const PGresult *res, const char *what)
{
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!msg) {
        msg = PQerrorMessage(x->pg);
    }
    int r = PQstatus(x->pg) != CONNECTION_OK        ? -ECONNRESET
            : state && strncmp(state, "22", 2) == 0 ? -EINVAL
                                                    : -EIO;
    return fail(x, r, "%s: %.200s", what, msg ? msg : "?");
}

static int sqlite_fail(struct ctx *x, sqlite3 *db, const char *what)
{
    return fail(x, -EIO, "%s: %.200s", what, sqlite3_errmsg(db));
}

/* A catalog name we put into SQL text: lower-case letters, digits and '_' only. */
static bool ident_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN || (s[0] >= '0' && s[0] <= '9')) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            return false;
        }
    }
    return true;
}

/* ---- SQLite ---------------------------------------------------------------------------------- */

static int sqlite_open_ro(struct ctx *x, const char *dir, const char *file, sqlite3 **ret)
{
    char *path = sd_asprintf("%s/%s", dir, file);
    struct stat sb;
    int r = 0;
    if (stat(path, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        r = fail(x, -ENOENT, "'%s' holds no %s (not a stagedoor data directory)", dir, file);
        goto out;
    }
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        r = fail(x, -EIO, "cannot open %s: %.200s", file, db ? sqlite3_errmsg(db) : "no memory");
        sqlite3_close(db);
        goto out;
    }
    sqlite3_busy_timeout(db, 5000);
    *ret = db;
out:
    free(path);
    return r;
}

/* One integer from sql with an optional text parameter: 1 with *ret set, 0 if no row. */
static int sqlite_int(struct ctx *x, sqlite3 *db, const char *sql, const char *param, int64_t *ret)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK && param) {
        rc = sqlite3_bind_text(st, 1, param, -1, SQLITE_STATIC);
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
    }
    int r = 0;
    if (rc == SQLITE_ROW) {
        *ret = sqlite3_column_int64(st, 0);
        r = 1;
    } else if (rc != SQLITE_DONE) {
        r = sqlite_fail(x, db, "sqlite");
    }
    sqlite3_finalize(st);
    return r;
}

static int sqlite_exec(struct ctx *x, sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : sqlite_fail(x, db, sql);
}

static int check_version(struct ctx *x, sqlite3 *db, const char *file, unsigned known)
{
    int64_t v = 0;
    int r = sqlite_int(x, db, "PRAGMA user_version", NULL, &v);
    if (r < 0) {
        return r;
    }
    if (v < (int64_t)known) {
        return fail(x, -EPROTO,
                    "%s is at schema version %" PRId64 ", this stagedoor's is %u: upgrade "
                    "DATA_DIR first by opening it with this stagedoor (e.g. stagedoor tenant "
                    "list --data DATA_DIR)",
                    file, v, known);
    }
    if (v > (int64_t)known) {
        return fail(x, -EPROTO,
                    "%s is at schema version %" PRId64 ", newer than this stagedoor's %u: "
                    "migrate with the stagedoor that wrote it",
                    file, v, known);
    }
    return 0;
}

/* Open both files and start one read transaction on each (a deferred BEGIN takes its snapshot
 * at the first read, which follows at once). The data file's snapshot is taken first: the
 * control file's is then at least as new, so every tenant a copied record names is copied too
 * (tenants are never deleted). */
static int sqlite_begin(struct ctx *x, const char *dir)
{
    int r = sqlite_open_ro(x, dir, "stagedoor.db", &x->data);
    if (r == 0) {
        r = sqlite_open_ro(x, dir, "control.db", &x->ctl);
    }
    if (r == 0) {
        r = sqlite_exec(x, x->data, "BEGIN");
    }
    if (r == 0) {
        r = sqlite_exec(x, x->ctl, "BEGIN");
    }
    int64_t n = 0;
    if (r == 0) {
        r = sqlite_int(x, x->data, "SELECT count(*) FROM sqlite_master", NULL, &n);
    }
    if (r >= 0) {
        r = sqlite_int(x, x->ctl, "SELECT count(*) FROM sqlite_master", NULL, &n);
    }
    if (r >= 0) {
        r = check_version(x, x->data, "stagedoor.db", sd_sqlite_schema_count);
    }
    if (r >= 0) {
        r = check_version(x, x->ctl, "control.db", sd_sqlite_control_schema_count);
    }
    return r < 0 ? r : 0;
}

static void sqlite_end(struct ctx *x)
{
    if (x->data) {
        sqlite3_exec(x->data, "COMMIT", NULL, NULL, NULL);
        sqlite3_close(x->data);
        x->data = NULL;
    }
    if (x->ctl) {
        sqlite3_exec(x->ctl, "COMMIT", NULL, NULL, NULL);
        sqlite3_close(x->ctl);
        x->ctl = NULL;
    }
}

/* ---- PostgreSQL ------------------------------------------------------------------------------ */

static int pg_connect(struct ctx *x, const char *url)
{
    x->pg = PQconnectdb(url);
    if (!x->pg || PQstatus(x->pg) != CONNECTION_OK) {
        return fail(x, -ECONNREFUSED, "cannot connect to PostgreSQL: %.200s",
                    x->pg ? PQerrorMessage(x->pg) : "out of memory");
    }
    /* The text forms the copy writes and the checksums read: UTF-8, bytea as hex. */
    PGresult *res = PQexec(x->pg, "SET client_encoding = 'UTF8'; SET bytea_output = 'hex';"
                                  " SET synchronous_commit = on; SET lock_timeout = '30s';"
                                  " SET application_name = 'stagedoor migrate'");
    int r = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : pg_fail(x, res, "session setup");
    PQclear(res);
    return r;
}

/* Run sql with text parameters; PGRES_COMMAND_OK or TUPLES_OK, result in *ret (NULL: dropped). */
static int pg_query(struct ctx *x, const char *sql, int n, const char *const *params,
                    PGresult **ret)
{
    PGresult *res = PQexecParams(x->pg, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        int r = pg_fail(x, res, "postgresql");
        PQclear(res);
        return r;
    }
    if (ret) {
        *ret = res;
    } else {
        PQclear(res);
    }
    return 0;
}

static int pg_int(struct ctx *x, const char *sql, int64_t *ret)
{
    PGresult *res = NULL;
    int r = pg_query(x, sql, 0, NULL, &res);
    if (r < 0) {
        return r;
    }
    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        r = fail(x, -EIO, "postgresql: no value for \"%.80s\"", sql);
    } else {
        r = sd_parse_int64(PQgetvalue(res, 0, 0), true, ret);
        if (r < 0) {
            r = fail(x, -EIO, "postgresql: not an integer for \"%.80s\"", sql);
        }
    }
    PQclear(res);
    return r;
}

/* ---- the two schemas ------------------------------------------------------------------------- */

static const char sql_tables[] =
    "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    " AND table_type = 'BASE TABLE' AND table_name NOT IN ('meta', 'schema_version')"
    " ORDER BY table_name";
static const char sql_columns[] =
    "SELECT column_name, data_type FROM information_schema.columns"
    " WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position";
static const char sql_pk[] =
    "SELECT k.column_name FROM information_schema.table_constraints c"
    " JOIN information_schema.key_column_usage k ON k.constraint_schema = c.constraint_schema"
    " AND k.constraint_name = c.constraint_name AND k.table_name = c.table_name"
    " WHERE c.table_schema = current_schema() AND c.table_name = $1"
    " AND c.constraint_type = 'PRIMARY KEY' ORDER BY k.ordinal_position";
static const char sql_fks[] =
    "SELECT a.relname, b.relname FROM pg_constraint c JOIN pg_class a ON a.oid = c.conrelid"
    " JOIN pg_class b ON b.oid = c.confrelid WHERE c.contype = 'f'"
    " AND a.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())";
static const char sql_owned_seqs[] =
    "SELECT table_name, column_name, pg_get_serial_sequence(quote_ident(table_name),"
    " column_name) FROM information_schema.columns WHERE table_schema = current_schema()"
    " AND pg_get_serial_sequence(quote_ident(table_name), column_name) IS NOT NULL"
    " ORDER BY table_name, column_name";

static void tables_free(struct ctx *x)
{
    for (size_t i = 0; i < x->nt; i++) {
        free(x->t[i].cols);
        free(x->t[i].pk);
    }
    free(x->t);
    x->t = NULL;
    x->nt = 0;
    free(x->pg_only);
    x->pg_only = NULL;
    x->n_pg_only = 0;
}

static int col_index(const struct table *t, const char *name)
{
    for (int i = 0; i < t->ncols; i++) {
        if (strcmp(t->cols[i].name, name) == 0) {
            return i;
        }
    }
    return -1;
}

static int sqlite_has_table(struct ctx *x, sqlite3 *db, const char *name)
{
    int64_t one = 0;
    return sqlite_int(x, db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", name,
                      &one);
}

/* t's columns in PostgreSQL and in its SQLite file must be the same set. */
static int match_sqlite_columns(struct ctx *x, struct table *t)
{
    sqlite3 *db = t->control ? x->ctl : x->data;
    sqlite3_stmt *st = NULL;
    bool *seen = sd_calloc((size_t)t->ncols + 1, sizeof(*seen));
    int rc = sqlite3_prepare_v2(db, "SELECT name FROM pragma_table_info(?1)", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_bind_text(st, 1, t->name, -1, SQLITE_STATIC);
    }
    int r = 0;
    while (r == 0 && rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        int i = name ? col_index(t, name) : -1;
        if (i < 0) {
            r = fail(x, -EPROTO, "column %s.%.64s exists only in SQLite (the schemas have drifted)",
                     t->name, name ? name : "?");
        } else {
            seen[i] = true;
        }
        rc = SQLITE_OK;
    }
    if (r == 0 && rc != SQLITE_DONE && rc != SQLITE_OK) {
        r = sqlite_fail(x, db, "table info");
    }
    sqlite3_finalize(st);
    for (int i = 0; i < t->ncols && r == 0; i++) {
        if (!seen[i]) {
            r = fail(x, -EPROTO,
                     "column %s.%s exists only in PostgreSQL (the schemas have drifted)", t->name,
                     t->cols[i].name);
        }
    }
    free(seen);
    return r;
}

/* The meta keys SQLite keeps that PostgreSQL's meta takes over (see set_counters); any other
 * key would be lost, so it is drift. ('space_probe' exists only inside a probe's transaction.) */
static int check_meta_keys(struct ctx *x, sqlite3 *db, const char *file, const char *known)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT k FROM meta ORDER BY k", -1, &st, NULL);
    int r = 0;
    while (r == 0 && rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(st, 0);
        char word[72];
        snprintf(word, sizeof(word), " %.64s ", k ? k : "");
        if (!k || !strstr(known, word)) {
            r = fail(x, -EPROTO,
                     "meta key '%.64s' of %s has no place in PostgreSQL's meta (the "
                     "schemas have drifted)",
                     k ? k : "?", file);
        }
        rc = SQLITE_OK;
    }
    if (r == 0 && rc != SQLITE_DONE && rc != SQLITE_OK) {
        r = sqlite_fail(x, db, "meta");
    }
    sqlite3_finalize(st);
    return r;
}

static int load_table(struct ctx *x, struct table *t)
{
    const char *p[1] = {t->name};
    PGresult *res = NULL;
    int r = pg_query(x, sql_columns, 1, p, &res);
    if (r < 0) {
        return r;
    }
    t->ncols = PQntuples(res);
    t->cols = sd_calloc((size_t)t->ncols + 1, sizeof(*t->cols));
    for (int i = 0; i < t->ncols && r == 0; i++) {
        const char *name = PQgetvalue(res, i, 0), *type = PQgetvalue(res, i, 1);
        if (!ident_ok(name)) {
            r = fail(x, -EPROTO, "column name in %s not supported by migrate", t->name);
            break;
        }
        snprintf(t->cols[i].name, sizeof(t->cols[i].name), "%s", name);
        if (strcmp(type, "bigint") == 0 || strcmp(type, "integer") == 0 ||
            strcmp(type, "smallint") == 0) {
            t->cols[i].type = COL_INT;
        } else if (strcmp(type, "text") == 0 || strcmp(type, "character varying") == 0) {
            t->cols[i].type = COL_TEXT;
        } else if (strcmp(type, "bytea") == 0) {
            t->cols[i].type = COL_BYTEA;
        } else {
            r = fail(x, -EPROTO, "column %s.%s has type %.40s, which migrate does not know",
                     t->name, name, type);
        }
    }
    PQclear(res);
    if (r < 0) {
        return r;
    }
    r = pg_query(x, sql_pk, 1, p, &res);
    if (r < 0) {
        return r;
    }
    int nk = PQntuples(res);
    t->pk = sd_calloc((size_t)(nk ? nk : t->ncols) + 1, sizeof(*t->pk));
    for (int i = 0; i < nk && r == 0; i++) {
        int c = col_index(t, PQgetvalue(res, i, 0));
        if (c < 0) {
            r = fail(x, -EPROTO, "primary key of %s names an unknown column", t->name);
        }
        t->pk[t->npk++] = c;
    }
    PQclear(res);
    if (r == 0 && nk == 0) {
        /* No key: order by every column, which is a total order up to identical rows. */
        for (int i = 0; i < t->ncols; i++) {
            t->pk[t->npk++] = i;
        }
        t->pk_is_all = true;
    }
    if (r < 0) {
        return r;
    }
    int in_data = sqlite_has_table(x, x->data, t->name);
    int in_ctl = in_data < 0 ? 0 : sqlite_has_table(x, x->ctl, t->name);
    if (in_data < 0 || in_ctl < 0) {
        return in_data < 0 ? in_data : in_ctl;
    }
    if (in_data && in_ctl) {
        return fail(x, -EPROTO, "table %s is in both stagedoor.db and control.db", t->name);
    }
    if (!in_data && !in_ctl) {
        return fail(x, -EPROTO, "table %s exists only in PostgreSQL (the schemas have drifted)",
                    t->name);
    }
    t->control = in_ctl;
    return match_sqlite_columns(x, t);
}

static bool have_table(const struct ctx *x, const char *name)
{
    for (size_t i = 0; i < x->nt; i++) {
        if (strcmp(x->t[i].name, name) == 0) {
            return true;
        }
    }
    return false;
}

/* Every SQLite table (but meta and SQLite's own) must be one PostgreSQL has. */
static int sqlite_extra_tables(struct ctx *x, sqlite3 *db, const char *file)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT name FROM sqlite_master WHERE type = 'table'"
                                " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> 'meta'"
                                " ORDER BY name",
                                -1, &st, NULL);
    int r = 0;
    while (r == 0 && rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        if (!name || !have_table(x, name)) {
            r = fail(x, -EPROTO, "table %s of %s exists only in SQLite (the schemas have drifted)",
                     name ? name : "?", file);
        }
        rc = SQLITE_OK;
    }
    if (r == 0 && rc != SQLITE_DONE && rc != SQLITE_OK) {
        r = sqlite_fail(x, db, "table list");
    }
    sqlite3_finalize(st);
    return r;
}

/* Put the tables in an order where every table a foreign key points at comes before the table
 * that holds the key (COPY checks keys row by row). */
static int order_tables(struct ctx *x)
{
    PGresult *res = NULL;
    int r = pg_query(x, sql_fks, 0, NULL, &res);
    if (r < 0) {
        return r;
    }
    int nfk = PQntuples(res);
    struct table *sorted = sd_calloc(x->nt + 1, sizeof(*sorted));
    bool *done = sd_calloc(x->nt + 1, sizeof(*done));
    size_t n = 0;
    while (n < x->nt) {
        size_t before = n;
        for (size_t i = 0; i < x->nt; i++) {
            if (done[i]) {
                continue;
            }
            bool ready = true;
            for (int f = 0; f < nfk && ready; f++) {
                const char *from = PQgetvalue(res, f, 0), *to = PQgetvalue(res, f, 1);
                if (strcmp(from, x->t[i].name) != 0 || strcmp(to, from) == 0) {
                    continue;
                }
                for (size_t j = 0; j < x->nt; j++) {
                    if (!done[j] && strcmp(x->t[j].name, to) == 0) {
                        ready = false;
                    }
                }
            }
            if (ready) {
                sorted[n++] = x->t[i];
                done[i] = true;
            }
        }
        if (n == before) {
            r = fail(x, -EPROTO, "the foreign keys between the tables form a cycle");
            break;
        }
    }
    PQclear(res);
    if (r == 0) {
        free(x->t);
        x->t = sorted;
    } else {
        free(sorted);
    }
    free(done);
    return r;
}

static int load_schema(struct ctx *x)
{
    PGresult *res = NULL;
    int r = pg_query(x, sql_tables, 0, NULL, &res);
    if (r < 0) {
        return r;
    }
    int n = PQntuples(res);
    x->t = sd_calloc((size_t)n + 1, sizeof(*x->t));
    x->pg_only = sd_calloc((size_t)n + 1, sizeof(*x->pg_only));
    for (int i = 0; i < n && r == 0; i++) {
        const char *name = PQgetvalue(res, i, 0);
        if (!ident_ok(name)) {
            r = fail(x, -EPROTO, "a table name in the PostgreSQL schema is not supported");
            break;
        }
        if (is_pg_only(name)) {
            snprintf(x->pg_only[x->n_pg_only++], sizeof(x->pg_only[0]), "%s", name);
            continue;
        }
        snprintf(x->t[x->nt].name, sizeof(x->t[x->nt].name), "%s", name);
        x->nt++;
        r = load_table(x, &x->t[x->nt - 1]);
    }
    PQclear(res);
    if (r == 0) {
        r = check_meta_keys(x, x->data, "stagedoor.db", " settings_version seq_floor ");
    }
    if (r == 0) {
        r = check_meta_keys(x, x->ctl, "control.db", " settings_version ");
    }
    if (r == 0) {
        r = sqlite_extra_tables(x, x->data, "stagedoor.db");
    }
    if (r == 0) {
        r = sqlite_extra_tables(x, x->ctl, "control.db");
    }
    if (r == 0) {
        r = order_tables(x);
    }
    if (r == 0) {
        x->res->tables = sd_calloc(x->nt + 1, sizeof(*x->res->tables));
        x->res->n = x->nt;
        for (size_t i = 0; i < x->nt; i++) {
            snprintf(x->res->tables[i].name, sizeof(x->res->tables[i].name), "%s", x->t[i].name);
            x->res->tables[i].pg_rows = -1;
        }
    }
    return r;
}

/* "c1, c2, …" (names passed ident_ok). */
static void column_list(struct sd_buf *b, const struct table *t)
{
    for (int i = 0; i < t->ncols; i++) {
        sd_buf_printf(b, "%s%s", i ? ", " : "", t->cols[i].name);
    }
}

/* ---- what SQLite numbers that PostgreSQL keeps in meta -------------------------------------- */

static int expected_meta(struct ctx *x, int64_t *ret_seq, int64_t *ret_settings)
{
    int64_t seq = 0, floor = 0, sv_data = 0, sv_ctl = 0;
    int r = sqlite_int(x, x->data,
                       "SELECT max((SELECT coalesce(max(seq), 0) FROM events),"
                       " (SELECT coalesce(max(seq), 0) FROM customers),"
                       " (SELECT coalesce(max(seq), 0) FROM sales),"
                       " (SELECT coalesce(max(seq), 0) FROM tombstones))",
                       NULL, &seq);
    if (r >= 0) {
        r = sqlite_int(x, x->data, "SELECT v FROM meta WHERE k = 'seq_floor'", NULL, &floor);
    }
    if (r >= 0) {
        r = sqlite_int(x, x->data, "SELECT v FROM meta WHERE k = 'settings_version'", NULL,
                       &sv_data);
    }
    if (r >= 0) {
        r = sqlite_int(x, x->ctl, "SELECT v FROM meta WHERE k = 'settings_version'", NULL, &sv_ctl);
    }
    if (r < 0) {
        return r;
    }
    *ret_seq = seq > floor ? seq : floor;
    *ret_settings = sv_data > sv_ctl ? sv_data : sv_ctl;
    return 0;
}

/* ---- the copy -------------------------------------------------------------------------------- */

static const char hexdig[] = "0123456789abcdef";

static void append_hex(struct sd_buf *b, const unsigned char *p, size_t n)
{
    char chunk[256];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        chunk[k++] = hexdig[p[i] >> 4];
        chunk[k++] = hexdig[p[i] & 15];
        if (k == sizeof(chunk)) {
            sd_buf_append(b, chunk, k);
            k = 0;
        }
    }
    sd_buf_append(b, chunk, k);
}

/* Text for COPY's text format: backslash, newline, carriage return and tab escaped. */
static void append_copy_text(struct sd_buf *b, const unsigned char *p, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        const char *esc = p[i] == '\\'   ? "\\\\"
                          : p[i] == '\n' ? "\\n"
                          : p[i] == '\r' ? "\\r"
                          : p[i] == '\t' ? "\\t"
                                         : NULL;
        if (esc) {
            sd_buf_append(b, p + start, i - start);
            sd_buf_append(b, esc, 2);
            start = i + 1;
        }
    }
    sd_buf_append(b, p + start, n - start);
}

/* Value i of the current row as the bytes the checksum and the copy work from; *ret_null for
 * NULL. Integers must be stored as integers, text must hold no NUL byte. */
static int column_value(struct ctx *x, const struct table *t, sqlite3_stmt *st, int i, char num[24],
                        const unsigned char **ret, size_t *ret_n, bool *ret_null)
{
    int type = sqlite3_column_type(st, i);
    *ret_null = type == SQLITE_NULL;
    if (*ret_null) {
        return 0;
    }
    switch (t->cols[i].type) {
    case COL_INT:
        if (type != SQLITE_INTEGER) {
            return fail(x, -EINVAL, "column %s.%s holds a value that is not an integer", t->name,
                        t->cols[i].name);
        }
        *ret_n = (size_t)snprintf(num, 24, "%" PRId64, (int64_t)sqlite3_column_int64(st, i));
        *ret = (const unsigned char *)num;
        return 0;
    case COL_TEXT:
        *ret = sqlite3_column_text(st, i);
        *ret_n = (size_t)sqlite3_column_bytes(st, i);
        if (*ret_n && memchr(*ret, 0, *ret_n)) {
            return fail(x, -EINVAL,
                        "column %s.%s holds text with a NUL byte (PostgreSQL text "
                        "cannot)",
                        t->name, t->cols[i].name);
        }
        return 0;
    case COL_BYTEA:
        *ret = sqlite3_column_blob(st, i);
        *ret_n = (size_t)sqlite3_column_bytes(st, i);
        return 0;
    }
    return -EINVAL;
}

static int sqlite_select(struct ctx *x, const struct table *t, bool ordered, sqlite3_stmt **ret)
{
    struct sd_buf q;
    sd_buf_init(&q);
    sd_buf_puts(&q, "SELECT ");
    column_list(&q, t);
    sd_buf_printf(&q, " FROM %s", t->name);
    if (ordered) {
        sd_buf_puts(&q, " ORDER BY ");
        for (int k = 0; k < t->npk; k++) {
            const struct col *c = &t->cols[t->pk[k]];
            sd_buf_printf(&q, "%s%s%s", k ? ", " : "", c->name,
                          c->type == COL_TEXT ? " COLLATE BINARY" : "");
        }
    }
    sqlite3 *db = t->control ? x->ctl : x->data;
    int rc = sqlite3_prepare_v2(db, q.data, -1, ret, NULL);
    sd_buf_release(&q);
    return rc == SQLITE_OK ? 0 : sqlite_fail(x, db, "select");
}

static int copy_end(struct ctx *x, const struct table *t, const char *abort_reason, int64_t rows)
{
    int r = 0;
    if (PQputCopyEnd(x->pg, abort_reason) != 1) {
        r = fail(x, -EIO, "copy of %s: %.200s", t->name, PQerrorMessage(x->pg));
    }
    PGresult *res;
    while ((res = PQgetResult(x->pg))) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            if (r == 0 && !abort_reason) {
                char what[96];
                snprintf(what, sizeof(what), "copy of %s", t->name);
                r = pg_fail(x, res, what);
            }
        } else if (!abort_reason) {
            int64_t n = -1;
            if (sd_parse_int64(PQcmdTuples(res), false, &n) < 0 || n != rows) {
                r = fail(x, -EIO, "copy of %s: PostgreSQL took a different number of rows",
                         t->name);
            }
        }
        PQclear(res);
    }
    return r;
}

static int copy_table(struct ctx *x, const struct table *t, int64_t *ret_rows)
{
    struct sd_buf q, b;
    sd_buf_init(&q);
    sd_buf_init(&b);
    sqlite3_stmt *st = NULL;
    int64_t rows = 0;
    sd_buf_printf(&q, "COPY %s (", t->name);
    column_list(&q, t);
    sd_buf_puts(&q, ") FROM STDIN");
    PGresult *res = PQexec(x->pg, q.data);
    int r = 0;
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        r = pg_fail(x, res, "copy");
        PQclear(res);
        goto out;
    }
    PQclear(res);
    r = sqlite_select(x, t, false, &st);
    int rc = SQLITE_OK;
    while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int i = 0; i < t->ncols && r == 0; i++) {
            char num[24];
            const unsigned char *v = NULL;
            size_t n = 0;
            bool null = false;
            r = column_value(x, t, st, i, num, &v, &n, &null);
            if (r < 0) {
                break;
            }
            if (i) {
                sd_buf_append(&b, "\t", 1);
            }
            if (null) {
                sd_buf_append(&b, "\\N", 2);
            } else if (t->cols[i].type == COL_BYTEA) {
                sd_buf_append(&b, "\\\\x", 3);
                append_hex(&b, v, n);
            } else {
                append_copy_text(&b, v, n);
            }
        }
        sd_buf_append(&b, "\n", 1);
        rows++;
        if (r == 0 && b.len >= COPY_CHUNK) {
            if (PQputCopyData(x->pg, b.data, (int)b.len) != 1) {
                r = fail(x, -EIO, "copy of %s: %.200s", t->name, PQerrorMessage(x->pg));
            }
            sd_buf_reset(&b);
        }
    }
    if (r == 0 && rc != SQLITE_DONE) {
        r = sqlite_fail(x, t->control ? x->ctl : x->data, "read");
    }
    if (r == 0 && b.len && PQputCopyData(x->pg, b.data, (int)b.len) != 1) {
        r = fail(x, -EIO, "copy of %s: %.200s", t->name, PQerrorMessage(x->pg));
    }
    int e = copy_end(x, t, r < 0 ? "stagedoor migrate stopped" : NULL, rows);
    if (r == 0) {
        r = e;
    }
    if (r == 0) {
        *ret_rows = rows;
    }
out:
    sqlite3_finalize(st);
    sd_buf_release(&q);
    sd_buf_release(&b);
    return r;
}

/* Lock every table against writers for the transaction, then refuse unless all are empty and
 * no record number was ever handed out here. */
static int lock_and_check_empty(struct ctx *x)
{
    struct sd_buf q;
    sd_buf_init(&q);
    sd_buf_puts(&q, "LOCK TABLE meta");
    size_t n = x->nt + x->n_pg_only;
    for (size_t i = 0; i < n; i++) {
        sd_buf_printf(&q, ", %s", i < x->nt ? x->t[i].name : x->pg_only[i - x->nt]);
    }
    sd_buf_puts(&q, " IN EXCLUSIVE MODE");
    int r = pg_query(x, q.data, 0, NULL, NULL);
    for (size_t i = 0; i < n && r == 0; i++) {
        const char *name = i < x->nt ? x->t[i].name : x->pg_only[i - x->nt];
        int64_t any = 0;
        sd_buf_reset(&q);
        sd_buf_printf(&q, "SELECT count(*) FROM (SELECT 1 FROM %s LIMIT 1) AS one", name);
        r = pg_int(x, q.data, &any);
        if (r == 0 && any) {
            r = fail(x, -ENOTEMPTY,
                     "the PostgreSQL database is not empty (table %s has rows): migrate into a "
                     "fresh database",
                     name);
        }
    }
    int64_t seq = 0;
    if (r == 0) {
        r = pg_int(x, "SELECT coalesce((SELECT v FROM meta WHERE k = 'seq'), 0)", &seq);
    }
    if (r == 0 && seq != 0) {
        r = fail(x, -ENOTEMPTY,
                 "the PostgreSQL database is not empty (meta 'seq' is past 0: records were "
                 "written there): migrate into a fresh database");
    }
    sd_buf_release(&q);
    return r;
}

/* meta 'seq' and 'settings_version', and every sequence a column owns, past what was copied. */
static int set_counters(struct ctx *x)
{
    int64_t seq = 0, settings = 0;
    int r = expected_meta(x, &seq, &settings);
    if (r < 0) {
        return r;
    }
    char a[24], b[24];
    snprintf(a, sizeof(a), "%" PRId64, seq);
    snprintf(b, sizeof(b), "%" PRId64, settings);
    const char *p[2] = {a, b};
    r = pg_query(x,
                 "INSERT INTO meta (k, v) VALUES ('seq', $1), ('settings_version', $2)"
                 " ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                 2, p, NULL);
    if (r < 0) {
        return r;
    }
    x->res->seq = seq;
    x->res->settings_version = settings;
    PGresult *res = NULL;
    r = pg_query(x, sql_owned_seqs, 0, NULL, &res);
    for (int i = 0; r == 0 && i < PQntuples(res); i++) {
        const char *tname = PQgetvalue(res, i, 0), *cname = PQgetvalue(res, i, 1);
        if (!ident_ok(tname) || !ident_ok(cname)) {
            r = fail(x, -EPROTO, "a sequence-owning column's name is not supported");
            break;
        }
        char *q = sd_asprintf("SELECT coalesce(max(%s), 0) FROM %s", cname, tname);
        int64_t max = 0;
        r = pg_int(x, q, &max);
        free(q);
        if (r < 0) {
            break;
        }
        /* Empty: the next id is 1, as on a fresh database; else the next is max + 1. */
        char v[24];
        snprintf(v, sizeof(v), "%" PRId64, max ? max : 1);
        const char *sp[3] = {PQgetvalue(res, i, 2), v, max ? "true" : "false"};
        r = pg_query(x, "SELECT setval($1::regclass, $2::bigint, $3::boolean)", 3, sp, NULL);
    }
    PQclear(res);
    return r;
}

/* ---- verification ---------------------------------------------------------------------------- */

static void digest(const void *p, size_t n, unsigned char out[32])
{
    unsigned int len = 32;
    EVP_Digest(p, n, out, &len, EVP_sha256(), NULL);
}

static void hex32(const unsigned char d[32], char out[65])
{
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hexdig[d[i] >> 4];
        out[2 * i + 1] = hexdig[d[i] & 15];
    }
    out[64] = '\0';
}

static int sqlite_checksum(struct ctx *x, const struct table *t, int64_t *ret_rows,
                           unsigned char ret_sum[32])
{
    sqlite3_stmt *st = NULL;
    int r = sqlite_select(x, t, true, &st);
    if (r < 0) {
        return r;
    }
    EVP_MD_CTX *agg = EVP_MD_CTX_new();
    EVP_DigestInit_ex(agg, EVP_sha256(), NULL);
    struct sd_buf row;
    sd_buf_init(&row);
    int64_t rows = 0;
    int rc = SQLITE_OK;
    while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        sd_buf_reset(&row);
        for (int i = 0; i < t->ncols && r == 0; i++) {
            char num[24];
            const unsigned char *v = NULL;
            size_t n = 0;
            bool null = false;
            r = column_value(x, t, st, i, num, &v, &n, &null);
            if (r < 0 || null) {
                sd_buf_append(&row, "-", 1);
            } else if (t->cols[i].type == COL_BYTEA) {
                sd_buf_printf(&row, "%zu:", 2 * n);
                append_hex(&row, v, n);
            } else {
                sd_buf_printf(&row, "%zu:", n);
                sd_buf_append(&row, v, n);
            }
        }
        unsigned char d[32];
        digest(row.data, row.len, d);
        EVP_DigestUpdate(agg, d, 32);
        rows++;
    }
    if (r == 0 && rc != SQLITE_DONE) {
        r = sqlite_fail(x, t->control ? x->ctl : x->data, "read");
    }
    unsigned int len = 32;
    EVP_DigestFinal_ex(agg, ret_sum, &len);
    EVP_MD_CTX_free(agg);
    sd_buf_release(&row);
    sqlite3_finalize(st);
    if (r == 0) {
        *ret_rows = rows;
    }
    return r;
}

/* The same checksum computed by PostgreSQL from what it stored: one sha256 per row in key order
 * (text keys compared bytewise, as SQLite's BINARY collation does), aggregated here. */
static int pg_checksum(struct ctx *x, const struct table *t, int64_t *ret_rows,
                       unsigned char ret_sum[32])
{
    struct sd_buf q;
    sd_buf_init(&q);
    sd_buf_puts(&q, "SELECT sha256(");
    for (int i = 0; i < t->ncols; i++) {
        const char *c = t->cols[i].name;
        sd_buf_printf(&q, "%sCASE WHEN %s IS NULL THEN convert_to('-', 'UTF8') ELSE ",
                      i ? " || " : "", c);
        switch (t->cols[i].type) {
        case COL_INT:
            sd_buf_printf(&q, "convert_to(length(%s::text)::text || ':' || %s::text, 'UTF8')", c,
                          c);
            break;
        case COL_TEXT:
            sd_buf_printf(&q,
                          "convert_to(octet_length(convert_to(%s, 'UTF8'))::text || ':', 'UTF8')"
                          " || convert_to(%s, 'UTF8')",
                          c, c);
            break;
        case COL_BYTEA:
            sd_buf_printf(&q,
                          "convert_to((2 * octet_length(%s))::text || ':' || encode(%s, 'hex'),"
                          " 'UTF8')",
                          c, c);
            break;
        }
        sd_buf_puts(&q, " END");
    }
    sd_buf_printf(&q, ") FROM %s ORDER BY ", t->name);
    for (int k = 0; k < t->npk; k++) {
        const struct col *c = &t->cols[t->pk[k]];
        sd_buf_printf(&q, "%s%s%s NULLS FIRST", k ? ", " : "", c->name,
                      c->type == COL_TEXT ? " COLLATE \"C\"" : "");
    }
    int r = 0;
    if (!PQsendQueryParams(x->pg, q.data, 0, NULL, NULL, NULL, NULL, 1) ||
        !PQsetSingleRowMode(x->pg)) {
        r = fail(x, -EIO, "checksum of %s: %.200s", t->name, PQerrorMessage(x->pg));
        sd_buf_release(&q);
        return r;
    }
    sd_buf_release(&q);
    EVP_MD_CTX *agg = EVP_MD_CTX_new();
    EVP_DigestInit_ex(agg, EVP_sha256(), NULL);
    int64_t rows = 0;
    PGresult *res;
    while ((res = PQgetResult(x->pg))) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_SINGLE_TUPLE) {
            if (PQgetlength(res, 0, 0) != 32) {
                if (r == 0) {
                    r = fail(x, -EIO, "checksum of %s: unexpected digest", t->name);
                }
            } else {
                EVP_DigestUpdate(agg, PQgetvalue(res, 0, 0), 32);
                rows++;
            }
        } else if (st != PGRES_TUPLES_OK && r == 0) {
            char what[96];
            snprintf(what, sizeof(what), "checksum of %s", t->name);
            r = pg_fail(x, res, what);
        }
        PQclear(res);
    }
    unsigned int len = 32;
    EVP_DigestFinal_ex(agg, ret_sum, &len);
    EVP_MD_CTX_free(agg);
    if (r == 0) {
        *ret_rows = rows;
    }
    return r;
}

/* Compare every table; all are computed (the caller prints each), the first difference is the
 * error. Then meta 'seq', which the write path continues from. */
static int verify(struct ctx *x)
{
    int64_t start = sd_mono_usec();
    int r = 0;
    const char *bad = NULL;
    for (size_t i = 0; i < x->nt && r == 0; i++) {
        struct sd_migrate_table *m = &x->res->tables[i];
        unsigned char a[32], b[32];
        int64_t na = 0, nb = 0;
        r = sqlite_checksum(x, &x->t[i], &na, a);
        if (r == 0) {
            r = pg_checksum(x, &x->t[i], &nb, b);
        }
        if (r < 0) {
            break;
        }
        m->rows = na;
        m->pg_rows = nb;
        hex32(a, m->sum);
        m->ok = na == nb && memcmp(a, b, 32) == 0;
        if (!m->ok && !bad) {
            bad = m->name;
            fail(x, -EBADMSG,
                 "table %s differs: SQLite %" PRId64 " rows, PostgreSQL %" PRId64 " rows%s",
                 m->name, na, nb, na == nb ? ", checksums differ" : "");
        }
    }
    int64_t seq = 0, settings = 0, pg_seq = 0;
    if (r == 0) {
        r = expected_meta(x, &seq, &settings);
    }
    if (r == 0) {
        r = pg_int(x, "SELECT coalesce((SELECT v FROM meta WHERE k = 'seq'), 0)", &pg_seq);
    }
    if (r == 0 && pg_seq != seq && !bad) {
        bad = "meta";
        fail(x, -EBADMSG, "meta 'seq' differs: expected %" PRId64 ", PostgreSQL has %" PRId64, seq,
             pg_seq);
    }
    if (r == 0) {
        x->res->seq = pg_seq;
        x->res->rows = 0;
        for (size_t i = 0; i < x->nt; i++) {
            x->res->rows += x->res->tables[i].rows;
        }
    }
    x->res->verify_usec = sd_mono_usec() - start;
    return r < 0 ? r : bad ? -EBADMSG : 0;
}

/* ---- entry points ---------------------------------------------------------------------------- */

void sd_migrate_result_release(struct sd_migrate_result *r)
{
    if (r) {
        free(r->tables);
        memset(r, 0, sizeof(*r));
    }
}

static void ctx_end(struct ctx *x)
{
    sqlite_end(x);
    if (x->pg) {
        PQfinish(x->pg);
        x->pg = NULL;
    }
    tables_free(x);
}

int sd_store_migrate(const char *data_dir, const char *url, struct sd_migrate_result *ret)
{
    struct ctx x = {.res = ret};
    memset(ret, 0, sizeof(*ret));
    int r = sqlite_begin(&x, data_dir);
    if (r == 0) {
        /* Opening the store applies the PostgreSQL backend's migrations. */
        struct sd_store_handle *h = NULL;
        r = sd_store_open("postgresql", url, &h);
        if (r < 0) {
            r = fail(&x, r, "cannot open the PostgreSQL store (%s); see the log above",
                     strerror(-r));
        }
        sd_store_close(h);
    }
    if (r == 0) {
        r = pg_connect(&x, url);
    }
    if (r == 0) {
        r = load_schema(&x);
    }
    int64_t start = sd_mono_usec();
    if (r == 0) {
        r = pg_query(&x, "BEGIN", 0, NULL, NULL);
    }
    bool in_tx = r == 0;
    if (r == 0) {
        r = lock_and_check_empty(&x);
    }
    for (size_t i = 0; i < x.nt && r == 0; i++) {
        r = copy_table(&x, &x.t[i], &ret->tables[i].rows);
    }
    if (r == 0) {
        r = set_counters(&x);
    }
    if (in_tx && x.pg && PQstatus(x.pg) == CONNECTION_OK) {
        int c = pg_query(&x, r == 0 ? "COMMIT" : "ROLLBACK", 0, NULL, NULL);
        if (r == 0) {
            r = c;
        }
    }
    ret->copy_usec = sd_mono_usec() - start;
    if (r == 0) {
        /* Statistics now, not whenever autovacuum gets to it: without them the planner picks
         * whole-tenant scans for key lookups and segment rules on the moved data. */
        r = pg_query(&x, "ANALYZE", 0, NULL, NULL);
    }
    if (r == 0) {
        sd_log(SD_LOG_INFO, "store copied to postgresql, verifying", "tables=%zu", x.nt);
        r = verify(&x);
    }
    ctx_end(&x);
    return r;
}

int sd_store_migrate_verify(const char *data_dir, const char *url, struct sd_migrate_result *ret)
{
    struct ctx x = {.res = ret};
    memset(ret, 0, sizeof(*ret));
    int r = sqlite_begin(&x, data_dir);
    if (r == 0) {
        r = pg_connect(&x, url);
    }
    if (r == 0) {
        r = load_schema(&x);
    }
    if (r == 0) {
        r = verify(&x);
    }
    ctx_end(&x);
    return r;
}
