/* sqlite_segments.c — the SQLite side of store/audience.h's segments part (issue #4):
 * segment definitions (control plane) and membership, computed in SQL.
 *
 * Definitions live in `segments` (0003_audiences.sql). Writes go through the `ctl`
 * connection like every configuration change, but do not bump the settings version: nothing
 * reloads on a segment. Reads use the pool.
 *
 * Membership: the rule tree compiles into ONE SELECT (store/seg_sql.c, the compiler both
 * backends share, here in SQLite's dialect), prepared and run here. Sales are read through an
 * index the compiler names, not the planner's choice (no ANALYZE statistics; left alone it
 * walks an index whose order scatters the table reads, which is one random read per sale on a
 * cold cache): the covering seg_sales_event for everything but the document fields,
 * sales_customer when only the customer key counts, sales_seq — one pass in rowid order — when
 * quantity or ticket_category must be read (0004_segment_indexes.sql). Case-insensitive fields
 * compare sd_fold(stored), sd_fold being the model's sd_text_fold registered as a SQL function
 * on every connection the store opens (sd_sqlite_register_fold).
 *
 * A membership query runs on one read connection, in one read transaction (the member page and
 * its e-mails and source ids come from the same snapshot) and never blocks the writer. A
 * progress handler, called every PROGRESS_OPS virtual-machine instructions while the
 * computation runs, enforces the caller's budget (audience.h): the cancel flag first (a
 * shutdown stops a computation within milliseconds, -ECANCELED), then the clock and the
 * calling thread's CPU time (-ETIME). The CPU clock is what a budget is fair in: a computation
 * that waits for the CPU behind webhooks (its worker runs at the lowest priority) is not
 * charged for the wait. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "base/log.h"
#include "sqlite_internal.h"
#include "store/audience.h"
#include "store/seg_members.h"
#include "store/seg_sql.h"
#include "store/store.h"

#define PROGRESS_OPS 4096 /* about 20-100 µs of work between two checks */

/* Extra statement slots 32..47 (sqlite_internal.h). */
enum {
    SLOT_INSERT = 32,
    SLOT_COUNT_SCOPE,
    SLOT_UPDATE,
    SLOT_SET_COUNT,
    SLOT_DELETE,
    SLOT_GET,
    SLOT_LIST,
    SLOT_SOURCES,
    SLOT_SNAP_PURGE_MEMBERS = 40,
    SLOT_SNAP_PURGE,
    SLOT_SNAP_INSERT,
    SLOT_SNAP_MEMBER,
    SLOT_SNAP_COMPLETE,
    SLOT_SNAP_GET,
    SLOT_SNAP_PAGE,
};

#define SEG_COLS                                                                                   \
    "id, tenant_id, env, name, description, rules, coalesce(member_count, -1),"                    \
    " coalesce(computed_usec, 0), created_usec, updated_usec"

static const char SQL_INSERT[] =
    "INSERT INTO segments (id, tenant_id, env, name, description, rules, member_count,"
    " computed_usec, created_usec, updated_usec) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
static const char SQL_COUNT_SCOPE[] =
    "SELECT count(*) FROM segments WHERE tenant_id = ?1 AND env = ?2";
static const char SQL_UPDATE[] =
    "UPDATE segments SET name = ?4, description = ?5, rules = ?6, member_count = ?7,"
    " computed_usec = ?8, updated_usec = ?10 WHERE id = ?1 AND tenant_id = ?2 AND env = ?3";
static const char SQL_SET_COUNT[] = "UPDATE segments SET member_count = ?4, computed_usec = ?5"
                                    " WHERE id = ?1 AND tenant_id = ?2 AND env = ?3";
static const char SQL_DELETE[] = "DELETE FROM segments WHERE id = ?1 AND tenant_id = ?2"
                                 " AND env = ?3";
static const char SQL_GET[] =
    "SELECT " SEG_COLS " FROM segments WHERE id = ?1 AND tenant_id = ?2 AND env = ?3";
static const char SQL_LIST[] = "SELECT " SEG_COLS " FROM segments WHERE tenant_id = ?1"
                               " AND env = ?2 ORDER BY created_usec, id";
/* The source records of a page's members (?1: their ids as a JSON array), per member most
 * recently updated first (a member's e-mail is the first one's that has one): one statement
 * for the whole page. Without the index named, the planner prefers (tenant_id, env) — two
 * equalities — and reads every customer of the tenant. */
static const char SQL_SOURCES[] =
    "SELECT profile_id, source, customer_id, json_extract(doc, '$.email') FROM customers"
    " INDEXED BY customers_profile WHERE profile_id IN (SELECT value FROM json_each(?1))"
    " AND tenant_id = ?2 AND env = ?3 ORDER BY profile_id, updated_usec DESC, seq DESC";

/* ---- definitions (control plane) ------------------------------------------------------------- */

static void read_row(sqlite3_stmt *st, struct sd_segment_row *r)
{
    r->id = sd_sqlite_column_strdup(st, 0);
    r->tenant_id = sqlite3_column_int64(st, 1);
    r->env = sqlite3_column_int(st, 2) == 1 ? SD_ENV_PROD : SD_ENV_TEST;
    r->name = sd_sqlite_column_strdup(st, 3);
    r->description = sd_sqlite_column_strdup(st, 4);
    r->rules = sd_sqlite_column_strdup(st, 5);
    r->member_count = sqlite3_column_int64(st, 6);
    r->computed_usec = sqlite3_column_int64(st, 7);
    r->created_usec = sqlite3_column_int64(st, 8);
    r->updated_usec = sqlite3_column_int64(st, 9);
}

/* Bind (id, tenant, env) to ?1..?3. */
static int bind_key(sqlite3_stmt *st, const char *id, int64_t tenant_id, enum sd_env env)
{
    return sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) | sqlite3_bind_int64(st, 2, tenant_id) |
           sqlite3_bind_int(st, 3, (int)env);
}

static bool row_ok(const struct sd_segment_row *row)
{
    return row && row->id && row->name && row->description && row->rules &&
           sd_sqlite_env_ok(row->env);
}

static int bind_row(sqlite3_stmt *st, const struct sd_segment_row *row)
{
    int rc = bind_key(st, row->id, row->tenant_id, row->env);
    rc |= sqlite3_bind_text(st, 4, row->name, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 5, row->description, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 6, row->rules, -1, SQLITE_STATIC);
    if (row->member_count >= 0) {
        rc |= sqlite3_bind_int64(st, 7, row->member_count);
        rc |= sqlite3_bind_int64(st, 8, row->computed_usec);
    } else {
        rc |= sqlite3_bind_null(st, 7) | sqlite3_bind_null(st, 8);
    }
    rc |= sqlite3_bind_int64(st, 9, row->created_usec);
    rc |= sqlite3_bind_int64(st, 10, row->updated_usec);
    return rc;
}

static int seg_create(struct sd_store *s, const struct sd_segment_row *row)
{
    if (!row_ok(row)) {
        return -EINVAL;
    }
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    sqlite3_stmt *st = sd_sqlite_stmt_extra(k, SLOT_COUNT_SCOPE, SQL_COUNT_SCOPE);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if ((sqlite3_bind_int64(st, 1, row->tenant_id) | sqlite3_bind_int(st, 2, (int)row->env)) !=
        SQLITE_OK) {
        r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
        goto out;
    }
    int rc = sqlite3_step(st);
    int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW) {
        r = sd_sqlite_fail(k, rc, "segment count");
        goto out;
    }
    if (n >= SD_SEGMENTS_MAX) {
        r = -EDQUOT;
        goto out;
    }
    st = sd_sqlite_stmt_extra(k, SLOT_INSERT, SQL_INSERT);
    if (!st) {
        r = -EIO;
    } else if (bind_row(st, row) != SQLITE_OK) {
        r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
    } else {
        r = sd_sqlite_step_done(k, st, "segment insert");
    }
out:
    return sd_sqlite_ctl_end_write(s, r, false);
}

/* One UPDATE/DELETE on ctl that must hit exactly the segment of this tenant+env. */
static int ctl_change(struct sd_store *s, unsigned slot, const char *sql,
                      const struct sd_segment_row *row, const char *id, int64_t tenant_id,
                      enum sd_env env, const int64_t *count, int64_t computed_usec)
{
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    sqlite3_stmt *st = sd_sqlite_stmt_extra(k, slot, sql);
    if (!st) {
        r = -EIO;
        goto out;
    }
    int rc = row ? bind_row(st, row) : bind_key(st, id, tenant_id, env);
    if (count) {
        rc |= sqlite3_bind_int64(st, 4, *count) | sqlite3_bind_int64(st, 5, computed_usec);
    }
    if (rc != SQLITE_OK) {
        r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
        goto out;
    }
    r = sd_sqlite_step_done(k, st, "segment change");
    if (r == 0 && sqlite3_changes(k->db) == 0) {
        r = -ENOENT;
    }
out:
    return sd_sqlite_ctl_end_write(s, r, false);
}

static int seg_update(struct sd_store *s, const struct sd_segment_row *row)
{
    if (!row_ok(row)) {
        return -EINVAL;
    }
    return ctl_change(s, SLOT_UPDATE, SQL_UPDATE, row, NULL, 0, 0, NULL, 0);
}

static int seg_set_count(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                         int64_t member_count, int64_t computed_usec)
{
    if (!id || !sd_sqlite_env_ok(env) || member_count < 0) {
        return -EINVAL;
    }
    return ctl_change(s, SLOT_SET_COUNT, SQL_SET_COUNT, NULL, id, tenant_id, env, &member_count,
                      computed_usec);
}

static int seg_remove(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id)
{
    if (!id || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    return ctl_change(s, SLOT_DELETE, SQL_DELETE, NULL, id, tenant_id, env, NULL, 0);
}

static int seg_get(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *id,
                   struct sd_segment_row *ret)
{
    if (!id || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    sqlite3_stmt *st = sd_sqlite_stmt_extra(c, SLOT_GET, SQL_GET);
    if (!st) {
        r = -EIO;
    } else if (bind_key(st, id, tenant_id, env) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    } else {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            read_row(st, ret);
            r = 0;
        } else if (rc == SQLITE_DONE) {
            r = -ENOENT;
        } else {
            r = sd_sqlite_fail(c, rc, "segment get");
        }
        sqlite3_reset(st);
    }
    sd_sqlite_pool_put(s, c);
    return r;
}

static int seg_list(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                    struct sd_segment_row **ret, size_t *ret_n)
{
    if (!sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_segment_row *v = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *st = sd_sqlite_stmt_extra(c, SLOT_LIST, SQL_LIST);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if ((sqlite3_bind_int64(st, 1, tenant_id) | sqlite3_bind_int(st, 2, (int)env)) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            v = sd_realloc(v, cap * sizeof(*v));
        }
        read_row(st, &v[n++]);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        r = sd_sqlite_fail(c, rc, "segment list");
        goto out;
    }
    *ret = v;
    *ret_n = n;
    v = NULL;
    n = 0;
    r = 0;
out:
    sd_sqlite_pool_put(s, c);
    sd_segment_rows_free(v, n);
    return r;
}

/* ---- running it -------------------------------------------------------------------------------
 */

/* sd_fold(x): the model's text folding, so stored text compares like the rule's values. */
static void fold_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const unsigned char *t = sqlite3_value_text(argv[0]);
    if (!t) {
        sqlite3_result_null(ctx);
        return;
    }
    char *f = sd_text_fold((const char *)t);
    sqlite3_result_text(ctx, f, -1, free);
}

int sd_sqlite_register_fold(sqlite3 *db)
{
    return sqlite3_create_function_v2(db, "sd_fold", 1,
                                      SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, NULL,
                                      fold_fn, NULL, NULL, NULL);
}

/* The running computation's limits, as the progress handler sees them. */
struct limits {
    int64_t wall_deadline; /* monotonic µs */
    int64_t cpu_deadline;  /* thread CPU µs; INT64_MAX: none */
    const atomic_bool *cancel;
    int reason; /* why the handler stopped the statement: -ECANCELED or -ETIME */
    const char *what;
};

static int64_t thread_cpu_usec(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) {
        return 0;
    }
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Nonzero when the computation must stop now (and why, in l->reason). */
static int over_limits(struct limits *l)
{
    if (l->cancel && atomic_load_explicit(l->cancel, memory_order_relaxed)) {
        l->reason = -ECANCELED;
        l->what = "cancelled";
        return 1;
    }
    if (sd_mono_usec() > l->wall_deadline) {
        l->reason = -ETIME;
        l->what = "wall clock";
        return 1;
    }
    if (l->cpu_deadline != INT64_MAX && thread_cpu_usec() > l->cpu_deadline) {
        l->reason = -ETIME;
        l->what = "cpu time";
        return 1;
    }
    return 0;
}

static int progress_cb(void *arg)
{
    return over_limits(arg);
}

static void limits_init(struct limits *l, const struct sd_seg_budget *b)
{
    int64_t wall = b && b->wall_usec > 0 ? b->wall_usec : SD_SEGMENT_WALL_MAX_USEC;
    *l = (struct limits){
        .wall_deadline = sd_mono_usec() + wall,
        .cpu_deadline = b && b->cpu_usec > 0 ? thread_cpu_usec() + b->cpu_usec : INT64_MAX,
        .cancel = b ? b->cancel : NULL,
    };
}

/* Install the handler for the whole computation (the member lookups included); it stays on
 * the connection until limits_off, before the connection goes back to the pool. */
static void limits_on(struct conn *c, struct limits *l)
{
    sqlite3_progress_handler(c->db, PROGRESS_OPS, progress_cb, l);
}

static void limits_off(struct conn *c)
{
    sqlite3_progress_handler(c->db, 0, NULL, NULL);
}

/* A membership query being run: its compiled text, the read connection it runs on, its
 * prepared statement and the budget the progress handler enforces. */
struct run {
    struct sd_seg_sql q;
    struct conn *c;
    sqlite3_stmt *st;
    struct limits lim;
};

static void run_close(struct sd_store *s, struct run *run)
{
    sqlite3_finalize(run->st);
    if (run->c) {
        sd_sqlite_pool_put(s, run->c);
    }
    sd_seg_sql_release(&run->q);
    run->st = NULL;
    run->c = NULL;
}

/* What every membership query does first: compile the rule in SQLite's dialect, borrow a read
 * connection, start the budget (one already spent stops here), prepare the statement and bind
 * the scope, the rule's values and, for members, after (?3) and limit (?4; -1: no limit).
 * On failure nothing is left to close. */
static int run_open(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                    const struct sd_seg_rule *rule, int64_t now_usec, bool count_only,
                    int64_t after, int64_t limit, const struct sd_seg_budget *budget,
                    struct run *ret)
{
    struct run run = {0};
    int r = sd_seg_sql_build(rule, now_usec, count_only, &sd_seg_dialect_sqlite, &run.q);
    if (r < 0) {
        return r;
    }
    r = sd_sqlite_pool_get(s, &run.c);
    if (r < 0) {
        run.c = NULL;
        goto fail;
    }
    limits_init(&run.lim, budget);
    if (over_limits(&run.lim)) {
        r = run.lim.reason;
        goto fail;
    }
    /* The text holds no values (they are bound), so it may be logged. */
    sd_log(SD_LOG_DEBUG, "segment query", "sql=\"%s\"", run.q.sql);
    int rc = sqlite3_prepare_v2(run.c->db, run.q.sql, (int)run.q.len + 1, &run.st, NULL);
    if (rc != SQLITE_OK) {
        r = sd_sqlite_fail(run.c, rc, "prepare segment query");
        goto fail;
    }
    rc = sqlite3_bind_int64(run.st, 1, tenant_id) | sqlite3_bind_int(run.st, 2, (int)env);
    if (!count_only) {
        rc |= sqlite3_bind_int64(run.st, 3, after) | sqlite3_bind_int64(run.st, 4, limit);
    }
    for (size_t i = 0; i < run.q.n_params; i++) {
        int n = (int)(run.q.first_param + i);
        const struct sd_seg_param *p = &run.q.params[i];
        rc |= p->type == SD_SEG_P_INT ? sqlite3_bind_int64(run.st, n, p->i)
                                      : sqlite3_bind_text(run.st, n, p->text, -1, SQLITE_STATIC);
    }
    if (rc != SQLITE_OK) {
        r = sd_sqlite_fail(run.c, SQLITE_MISUSE, "bind");
        goto fail;
    }
    *ret = run;
    return 0;
fail:
    run_close(s, &run);
    return r;
}

/* Step st; an interruption by the progress handler becomes l->reason. */
static int step(struct conn *c, sqlite3_stmt *st, struct limits *l, const char *op)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        return rc;
    }
    if (rc == SQLITE_INTERRUPT && l->reason < 0) {
        sd_log(l->reason == -ETIME ? SD_LOG_WARN : SD_LOG_INFO, "segment query cut off",
               "op=\"%s\" limit=\"%s\"", op, l->what);
        return l->reason;
    }
    return sd_sqlite_fail(c, rc, op);
}

static int seg_count(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                     const struct sd_seg_rule *rule, int64_t now_usec,
                     const struct sd_seg_budget *budget, int64_t *ret)
{
    if (!rule || !sd_sqlite_env_ok(env)) {
        return -EINVAL;
    }
    struct run run;
    int r = run_open(s, tenant_id, env, rule, now_usec, true, 0, 0, budget, &run);
    if (r < 0) {
        return r;
    }
    limits_on(run.c, &run.lim);
    r = step(run.c, run.st, &run.lim, "segment count");
    limits_off(run.c);
    if (r == SQLITE_ROW) {
        *ret = sqlite3_column_int64(run.st, 0);
        r = 0;
    } else if (r >= 0) {
        r = sd_sqlite_fail(run.c, SQLITE_ERROR, "segment count: no row");
    }
    run_close(s, &run);
    return r;
}

/* Fill the e-mail and source ids of every member of page (ids ascending) from their source
 * records, in one statement. */
static int member_sources(struct conn *c, int64_t tenant_id, enum sd_env env, struct limits *l,
                          struct sd_seg_member_page *page)
{
    if (page->n == 0) {
        return 0;
    }
    sqlite3_stmt *st = sd_sqlite_stmt_extra(c, SLOT_SOURCES, SQL_SOURCES);
    if (!st) {
        return -EIO;
    }
    struct sd_buf ids;
    sd_buf_init(&ids);
    for (size_t i = 0; i < page->n; i++) {
        sd_buf_printf(&ids, "%c%" PRId64, i ? ',' : '[', page->v[i].profile_id);
    }
    sd_buf_puts(&ids, "]");
    int rc = sqlite3_bind_text(st, 1, ids.data, (int)ids.len, SQLITE_STATIC) |
             sqlite3_bind_int64(st, 2, tenant_id) | sqlite3_bind_int(st, 3, (int)env);
    if (rc != SQLITE_OK) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        sd_buf_release(&ids);
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    struct sd_seg_sources_cursor cur = {0};
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *email = sqlite3_column_type(st, 3) == SQLITE_TEXT
                                ? (const char *)sqlite3_column_text(st, 3)
                                : NULL;
        sd_seg_sources_add(page, &cur, sqlite3_column_int64(st, 0),
                           (const char *)sqlite3_column_text(st, 1),
                           (const char *)sqlite3_column_text(st, 2), email);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    sd_buf_release(&ids);
    if (rc == SQLITE_INTERRUPT && l->reason < 0) {
        return l->reason;
    }
    if (rc != SQLITE_DONE) {
        return sd_sqlite_fail(c, rc, "segment member sources");
    }
    sd_seg_sources_sort(page);
    return 0;
}

static int seg_members(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                       const struct sd_seg_rule *rule, int64_t now_usec, int64_t after,
                       size_t limit, const struct sd_seg_budget *budget,
                       struct sd_seg_member_page *ret)
{
    if (!rule || !sd_sqlite_env_ok(env) || limit < 1 || limit > SD_SEGMENT_MEMBERS_MAX) {
        return -EINVAL;
    }
    struct run run;
    int r =
        run_open(s, tenant_id, env, rule, now_usec, false, after, (int64_t)limit + 1, budget, &run);
    if (r < 0) {
        return r;
    }
    struct sd_seg_member_page page = {.next_after = after};
    bool in_tx = false, limited = false;
    r = sd_sqlite_run(run.c, ST_BEGIN);
    if (r < 0) {
        goto out;
    }
    in_tx = true;
    page.v = sd_calloc(limit, sizeof(*page.v));
    limits_on(run.c, &run.lim);
    limited = true;
    while ((r = step(run.c, run.st, &run.lim, "segment members")) == SQLITE_ROW &&
           sd_seg_page_add(&page, limit, sqlite3_column_int64(run.st, 0))) {
    }
    if (r < 0) {
        goto out;
    }
    sqlite3_reset(run.st);
    r = member_sources(run.c, tenant_id, env, &run.lim, &page);
    if (r < 0) {
        goto out;
    }
    sd_seg_page_done(&page);
    r = 0;
out:
    if (limited) {
        limits_off(run.c);
    }
    sqlite3_finalize(run.st);
    run.st = NULL;
    if (in_tx) {
        (void)sd_sqlite_run(run.c, ST_COMMIT); /* ends the read transaction */
    }
    run_close(s, &run);
    return sd_seg_page_hand(r, &page, ret);
}

/* ---- snapshots ------------------------------------------------------------------------------- */

/* The snapshots to purge: expired ones (?1 now), and this scope's (?2, ?3) beyond the newest
 * ?4 (the new one makes the cap). */
#define SNAP_DOOMED                                                                                \
    "SELECT id FROM segment_snapshots WHERE expires_usec <= ?1 UNION SELECT id FROM"               \
    " (SELECT id FROM segment_snapshots WHERE tenant_id = ?2 AND env = ?3"                         \
    " ORDER BY created_usec DESC, id DESC LIMIT -1 OFFSET ?4)"
static const char SQL_SNAP_PURGE_MEMBERS[] =
    "DELETE FROM segment_snapshot_members WHERE snapshot_id IN (" SNAP_DOOMED ")";
static const char SQL_SNAP_PURGE[] = "DELETE FROM segment_snapshots WHERE id IN (" SNAP_DOOMED ")";
static const char SQL_SNAP_INSERT[] =
    "INSERT INTO segment_snapshots (id, tenant_id, env, segment_id, member_count, created_usec,"
    " expires_usec, complete) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)";
static const char SQL_SNAP_MEMBER[] =
    "INSERT INTO segment_snapshot_members (snapshot_id, profile_id) VALUES (?1, ?2)";
static const char SQL_SNAP_COMPLETE[] = "UPDATE segment_snapshots SET complete = 1 WHERE id = ?1";
static const char SQL_SNAP_GET[] =
    "SELECT member_count FROM segment_snapshots WHERE id = ?1 AND tenant_id = ?2 AND env = ?3"
    " AND segment_id = ?4 AND complete = 1 AND expires_usec > ?5";
/* Today's flags apply: a profile opted out, suppressed, erased or merged away since is left
 * out (the join finds no profile of this scope with both flags 0). */
static const char SQL_SNAP_PAGE[] =
    "SELECT m.profile_id FROM segment_snapshot_members m JOIN profiles p ON p.id = m.profile_id"
    " WHERE m.snapshot_id = ?1 AND m.profile_id > ?2 AND p.tenant_id = ?3 AND p.env = ?4"
    " AND p.opt_out = 0 AND p.suppressed = 0"
    " ORDER BY m.profile_id LIMIT ?5";

/* Every member id of rule at now_usec, in id order, from one read transaction. */
static int member_ids(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                      const struct sd_seg_rule *rule, int64_t now_usec,
                      const struct sd_seg_budget *budget, int64_t **ret, size_t *ret_n)
{
    struct run run;
    int r = run_open(s, tenant_id, env, rule, now_usec, false, 0, -1, budget, &run);
    if (r < 0) {
        return r;
    }
    int64_t *v = NULL;
    size_t n = 0, cap = 0;
    limits_on(run.c, &run.lim);
    while ((r = step(run.c, run.st, &run.lim, "segment snapshot")) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            v = sd_realloc(v, cap * sizeof(*v));
        }
        v[n++] = sqlite3_column_int64(run.st, 0);
    }
    limits_off(run.c);
    run_close(s, &run);
    if (r != SQLITE_DONE) {
        free(v);
        return r < 0 ? r : -EIO;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

/* Bind ?1..?4 of a purge statement and run it (inside a ctl write). */
static int snap_purge(struct conn *k, unsigned slot, const char *sql, int64_t now_usec,
                      int64_t tenant_id, enum sd_env env)
{
    sqlite3_stmt *st = sd_sqlite_stmt_extra(k, slot, sql);
    if (!st) {
        return -EIO;
    }
    if ((sqlite3_bind_int64(st, 1, now_usec) | sqlite3_bind_int64(st, 2, tenant_id) |
         sqlite3_bind_int(st, 3, (int)env) |
         sqlite3_bind_int(st, 4, SD_SEGMENT_SNAPSHOTS_MAX - 1)) != SQLITE_OK) {
        return sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
    }
    return sd_sqlite_step_done(k, st, "segment snapshot purge");
}

/* The first ctl transaction: purge, then the snapshot's row (not complete yet). */
static int snap_open(struct sd_store *s, const struct sd_seg_snapshot_req *q, int64_t id)
{
    int64_t tenant_id = q->tenant_id, now_usec = q->now_usec;
    enum sd_env env = q->env;
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    r = snap_purge(k, SLOT_SNAP_PURGE_MEMBERS, SQL_SNAP_PURGE_MEMBERS, now_usec, tenant_id, env);
    if (r == 0) {
        r = snap_purge(k, SLOT_SNAP_PURGE, SQL_SNAP_PURGE, now_usec, tenant_id, env);
    }
    sqlite3_stmt *st = r == 0 ? sd_sqlite_stmt_extra(k, SLOT_SNAP_INSERT, SQL_SNAP_INSERT) : NULL;
    if (r == 0 && !st) {
        r = -EIO;
    }
    if (r == 0) {
        if ((sqlite3_bind_int64(st, 1, id) | sqlite3_bind_int64(st, 2, tenant_id) |
             sqlite3_bind_int(st, 3, (int)env) |
             sqlite3_bind_text(st, 4, q->segment_id, -1, SQLITE_STATIC) |
             sqlite3_bind_int64(st, 5, q->count) | sqlite3_bind_int64(st, 6, now_usec) |
             sqlite3_bind_int64(st, 7, now_usec + q->ttl_usec)) != SQLITE_OK) {
            r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
        } else {
            r = sd_sqlite_step_done(k, st, "segment snapshot insert");
        }
    }
    return sd_sqlite_ctl_end_write(s, r, false);
}

/* One ctl transaction writing ids v[0..n) of snapshot id (and, when last, completing it). */
static int snap_chunk(struct sd_store *s, int64_t id, const int64_t *v, size_t n, bool last)
{
    int r = sd_sqlite_ctl_begin_write(s);
    if (r < 0) {
        return r;
    }
    struct conn *k = s->ctl;
    sqlite3_stmt *st = sd_sqlite_stmt_extra(k, SLOT_SNAP_MEMBER, SQL_SNAP_MEMBER);
    if (!st) {
        r = -EIO;
    }
    for (size_t i = 0; r == 0 && i < n; i++) {
        if ((sqlite3_bind_int64(st, 1, id) | sqlite3_bind_int64(st, 2, v[i])) != SQLITE_OK) {
            r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
        } else {
            r = sd_sqlite_step_done(k, st, "segment snapshot member");
        }
    }
    if (r == 0 && last) {
        st = sd_sqlite_stmt_extra(k, SLOT_SNAP_COMPLETE, SQL_SNAP_COMPLETE);
        if (!st) {
            r = -EIO;
        } else if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK) {
            r = sd_sqlite_fail(k, SQLITE_MISUSE, "bind");
        } else {
            r = sd_sqlite_step_done(k, st, "segment snapshot complete");
        }
    }
    return sd_sqlite_ctl_end_write(s, r, false);
}

static const struct sd_seg_snapshot_io snap_io = {
    .members = member_ids, .open = snap_open, .chunk = snap_chunk};

static int snapshot_create(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const char *segment_id, const struct sd_seg_rule *rule, int64_t now_usec,
                           int64_t ttl_usec, const struct sd_seg_budget *budget, int64_t *ret_id,
                           int64_t *ret_count)
{
    return sd_seg_snapshot_create(&snap_io, s, tenant_id, env, segment_id, rule, now_usec, ttl_usec,
                                  budget, ret_id, ret_count);
}

static int snapshot_members(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                            const char *segment_id, int64_t id, int64_t now_usec, int64_t after,
                            size_t limit, struct sd_seg_member_page *ret)
{
    if (!segment_id || !sd_sqlite_env_ok(env) || limit < 1 || limit > SD_SEGMENT_MEMBERS_MAX) {
        return -EINVAL;
    }
    struct conn *c = NULL;
    int r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        return r;
    }
    struct sd_seg_member_page page = {.next_after = after};
    struct limits lim;
    limits_init(&lim, NULL);
    sqlite3_stmt *st = NULL;
    r = sd_sqlite_run(c, ST_BEGIN);
    if (r < 0) {
        sd_sqlite_pool_put(s, c);
        return r;
    }
    st = sd_sqlite_stmt_extra(c, SLOT_SNAP_GET, SQL_SNAP_GET);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if ((sqlite3_bind_int64(st, 1, id) | sqlite3_bind_int64(st, 2, tenant_id) |
         sqlite3_bind_int(st, 3, (int)env) |
         sqlite3_bind_text(st, 4, segment_id, -1, SQLITE_STATIC) |
         sqlite3_bind_int64(st, 5, now_usec)) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        page.total = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) {
        r = -ENOENT;
        goto out;
    }
    if (rc != SQLITE_ROW) {
        r = sd_sqlite_fail(c, rc, "segment snapshot get");
        goto out;
    }
    st = sd_sqlite_stmt_extra(c, SLOT_SNAP_PAGE, SQL_SNAP_PAGE);
    if (!st) {
        r = -EIO;
        goto out;
    }
    if ((sqlite3_bind_int64(st, 1, id) | sqlite3_bind_int64(st, 2, after) |
         sqlite3_bind_int64(st, 3, tenant_id) | sqlite3_bind_int(st, 4, (int)env) |
         sqlite3_bind_int64(st, 5, (int64_t)limit + 1)) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    page.v = sd_calloc(limit, sizeof(*page.v));
    while ((rc = sqlite3_step(st)) == SQLITE_ROW &&
           sd_seg_page_add(&page, limit, sqlite3_column_int64(st, 0))) {
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        r = sd_sqlite_fail(c, rc, "segment snapshot page");
        goto out;
    }
    r = member_sources(c, tenant_id, env, &lim, &page);
    if (r == 0) {
        sd_seg_page_done(&page);
    }
out:
    (void)sd_sqlite_run(c, ST_COMMIT); /* ends the read transaction */
    sd_sqlite_pool_put(s, c);
    return sd_seg_page_hand(r, &page, ret);
}

const struct sd_store_segment_ops sd_sqlite_segment_ops = SD_SEGMENT_OPS_INIT;
