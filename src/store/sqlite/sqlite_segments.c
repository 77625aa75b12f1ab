/* sqlite_segments.c — the SQLite side of store/audience.h's segments part (issue #4):
 * segment definitions (control plane) and membership, computed in SQL.
 *
 * Definitions live in `segments` (0003_audiences.sql). Writes go through the `ctl`
 * connection like every configuration change, but do not bump the settings version: nothing
 * reloads on a segment. Reads use the pool.
 *
 * Membership compiles the rule tree into ONE SELECT over profiles p (tenant, env, opt_out = 0,
 * suppressed = 0) whose WHERE is the rule: every leaf becomes `p.id [NOT] IN (subquery)` with
 * a subquery that is not correlated to p, so SQLite runs each once per statement and probes
 * the result per profile, instead of once per profile. The subqueries:
 *  - bought: the profiles of the customer records whose key (source, customer_id) is among the
 *    keys of the matching sales — the sales give each buyer once, so a profile is looked up
 *    per buyer, not per sale. Event filters become `s.event_ref IN (SELECT event_id FROM
 *    events e WHERE …)`: only the events' documents are parsed;
 *  - count: without a `where`, purchases, tickets and spend read the per-profile facts
 *    (profile_facts, 0013_profile_facts.sql, kept by triggers in the writer's transaction).
 *    Otherwise they are summed per customer key first and the partial sums per profile (a
 *    profile may have records in several sources); distinct events are always grouped by
 *    profile from the sales. When the comparison holds for zero (lt 3, eq 0, …) the leaf
 *    is `NOT IN (… HAVING NOT <comparison>)`, which keeps the profiles without a matching sale;
 *  - first / last purchase: rewritten into bought leaves with a purchase-time range
 *    ("last purchase before X" = bought ∧ ¬bought at or after X), which need no grouping;
 *    without a `where`, they compare the earliest / latest live purchase the facts hold;
 *  - customer: the source records of the tenant+env matching every filter.
 * Subqueries never return NULL (c.profile_id IS NOT NULL), so NOT IN and NOT are exact.
 * Sales are read through an index chosen here, not by the planner (no ANALYZE statistics;
 * left alone it walks an index whose order scatters the table reads, which is one random read
 * per sale on a cold cache): the covering seg_sales_event for everything but the document
 * fields, sales_customer when only the customer key counts, sales_seq — one pass in rowid
 * order — when quantity or ticket_category must be read (0004_segment_indexes.sql).
 *
 * The SQL text is built from fixed fragments only; numbered parameters (?5 …) carry every
 * value of the rule. ?1 tenant, ?2 env, ?3 after, ?4 limit are the same in every query.
 * Relative times are resolved here against the caller's now_usec; time bounds become half-open
 * [lo, hi) ranges compared as text on the stored UTC forms ("YYYY-MM-DDTHH:MM:SS" prefix of
 * purchase_datetime, "YYYY-MM-DD" event dates), which is exact to the second.
 * Case-insensitive fields compare sd_fold(stored) with the rule's value folded the same way
 * (sd_text_fold, Unicode simple lowercase, whitespace trimmed and collapsed): sd_fold is a SQL
 * function registered on every connection the store opens. The customer fields a rule filters
 * on most (post_code, city) are stored folded beside the document (seg_post_code, seg_city,
 * 0014_segment_customer_fields.sql) and read through their indexes.
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
#include "store/store.h"

#define PROGRESS_OPS 4096 /* about 20-100 µs of work between two checks */
#define PARAM_FIRST 5

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

/* ---- the rule compiler ------------------------------------------------------------------------
 */

enum bind_type { B_INT, B_TEXT };
struct bind {
    enum bind_type type;
    int64_t i;
    char *text; /* owned */
};

struct q {
    struct sd_buf sql;
    struct bind *binds; /* binds[k] is parameter PARAM_FIRST + k */
    size_t n_binds;
    int64_t now_sec;
    int64_t today; /* days since 1970-01-01 (UTC) */
    int err;       /* -EINVAL once the tree turned out malformed */
};

static void q_release(struct q *q)
{
    sd_buf_release(&q->sql);
    for (size_t i = 0; i < q->n_binds; i++) {
        free(q->binds[i].text);
    }
    free(q->binds);
}

static void put(struct q *q, const char *s)
{
    sd_buf_puts(&q->sql, s);
}

/* Append a new parameter "?N" bound to an integer / a text (copied). */
static void param_int(struct q *q, int64_t v)
{
    q->binds = sd_realloc(q->binds, (q->n_binds + 1) * sizeof(*q->binds));
    q->binds[q->n_binds] = (struct bind){B_INT, v, NULL};
    sd_buf_printf(&q->sql, "?%zu", PARAM_FIRST + q->n_binds);
    q->n_binds++;
}

static void param_text(struct q *q, const char *v)
{
    q->binds = sd_realloc(q->binds, (q->n_binds + 1) * sizeof(*q->binds));
    q->binds[q->n_binds] = (struct bind){B_TEXT, 0, sd_strdup(v ? v : "")};
    sd_buf_printf(&q->sql, "?%zu", PARAM_FIRST + q->n_binds);
    q->n_binds++;
}

static bool is_text_field(enum sd_seg_field f)
{
    switch (f) {
    case SD_SEG_F_EVENT_ID:
    case SD_SEG_F_TITLE:
    case SD_SEG_F_WORK_TITLE:
    case SD_SEG_F_COMPOSER:
    case SD_SEG_F_CAST:
    case SD_SEG_F_VENUE:
    case SD_SEG_F_HALL:
    case SD_SEG_F_CITY:
    case SD_SEG_F_TIME:
    case SD_SEG_F_TICKET_CATEGORY:
    case SD_SEG_F_CURRENCY:
    case SD_SEG_F_POST_CODE:
    case SD_SEG_F_CUSTOMER_CITY:
    case SD_SEG_F_SALUTATION:
    case SD_SEG_F_SOURCE:
    case SD_SEG_F_LAST_ACTIVITY_TYPE:
    case SD_SEG_F_LAST_ACTIVITY_CAMPAIGN:
    case SD_SEG_F_STATUS:
    case SD_SEG_F_ORDER_TYPE: return true;
    default: return false;
    }
}

static bool is_event_field(enum sd_seg_field f)
{
    return f <= SD_SEG_F_TIME;
}

/* The SQL expression a field's condition compares (events e, sales s, customers c). */
static const char *field_expr(enum sd_seg_field f)
{
    switch (f) {
    case SD_SEG_F_EVENT_ID: return "e.event_id";
    case SD_SEG_F_TITLE: return "sd_fold(json_extract(e.doc, '$.title'))";
    case SD_SEG_F_WORK_TITLE: return "sd_fold(json_extract(e.doc, '$.work_title'))";
    case SD_SEG_F_COMPOSER: return "sd_fold(json_extract(e.doc, '$.composer'))";
    case SD_SEG_F_CAST: return "sd_fold(json_extract(j.value, '$.name'))";
    case SD_SEG_F_VENUE: return "sd_fold(json_extract(e.doc, '$.venue'))";
    case SD_SEG_F_HALL: return "sd_fold(json_extract(e.doc, '$.hall'))";
    case SD_SEG_F_CITY: return "sd_fold(json_extract(e.doc, '$.city'))";
    case SD_SEG_F_DATE: return "json_extract(e.doc, '$.date')";
    case SD_SEG_F_WEEKDAY: return "CAST(strftime('%w', json_extract(e.doc, '$.date')) AS INTEGER)";
    case SD_SEG_F_TIME: return "json_extract(e.doc, '$.time')";
    case SD_SEG_F_TICKET_CATEGORY: return "json_extract(s.doc, '$.ticket_category')";
    case SD_SEG_F_PURCHASED: return "s.purchase_datetime";
    case SD_SEG_F_PRICE: return "s.sales_price_minor";
    case SD_SEG_F_CURRENCY: return "s.currency";
    case SD_SEG_F_QUANTITY: return "json_extract(s.doc, '$.quantity')";
    case SD_SEG_F_POST_CODE: return "c.seg_post_code"; /* sd_fold of '$.post_code' */
    case SD_SEG_F_CUSTOMER_CITY: return "c.seg_city";  /* sd_fold of '$.city' */
    case SD_SEG_F_SALUTATION: return "sd_fold(json_extract(c.doc, '$.salutation'))";
    case SD_SEG_F_SOURCE: return "c.source";
    case SD_SEG_F_ACTIVITIES: return "coalesce(json_extract(c.doc, '$.activity_count'), 0)";
    case SD_SEG_F_LAST_ACTIVITY: return "json_extract(c.doc, '$.last_activity_at')";
    case SD_SEG_F_LAST_ACTIVITY_TYPE: return "sd_fold(json_extract(c.doc, '$.last_activity_type'))";
    case SD_SEG_F_LAST_ACTIVITY_CAMPAIGN:
        return "sd_fold(json_extract(c.doc, '$.last_activity_campaign'))";
    case SD_SEG_F_STATUS: return "s.status";
    case SD_SEG_F_STATUS_CHANGED: return "s.status_changed";
    case SD_SEG_F_ATTENDED: return "s.attended_quantity";
    case SD_SEG_F_ORDER_TYPE: return "s.order_type";
    case SD_SEG_F_EXPIRES: return "s.expires";
    case SD_SEG_F_MEASURE: break;
    }
    return NULL;
}

/* A value list as a JSON array text, for `x IN (SELECT value FROM json_each(?))`. */
static void param_list(struct q *q, const struct sd_seg_cond *c, bool text)
{
    json_t *a = json_array();
    for (size_t i = 0; i < c->n; i++) {
        json_array_append_new(a, text ? json_string(c->v[i].text ? c->v[i].text : "")
                                      : json_integer(c->v[i].num));
    }
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    param_text(q, s ? s : "[]");
    free(s);
}

/* Text or number comparison of expression x. */
static void compare(struct q *q, const char *x, const struct sd_seg_cond *c, bool text)
{
    static const char *const sym[] = {
        [SD_SEG_EQ] = " = ",   [SD_SEG_NE] = " IS NOT ", [SD_SEG_GT] = " > ",
        [SD_SEG_GTE] = " >= ", [SD_SEG_LT] = " < ",      [SD_SEG_LTE] = " <= ",
    };
    put(q, "(");
    switch (c->op) {
    case SD_SEG_EQ:
    case SD_SEG_NE:
    case SD_SEG_GT:
    case SD_SEG_GTE:
    case SD_SEG_LT:
    case SD_SEG_LTE:
        if (c->n != 1) {
            q->err = -EINVAL;
            break;
        }
        put(q, x);
        put(q, sym[c->op]);
        if (text) {
            param_text(q, c->v[0].text);
        } else {
            param_int(q, c->v[0].num);
        }
        break;
    case SD_SEG_BETWEEN:
        if (c->n != 2) {
            q->err = -EINVAL;
            break;
        }
        put(q, x);
        put(q, " BETWEEN ");
        text ? param_text(q, c->v[0].text) : param_int(q, c->v[0].num);
        put(q, " AND ");
        text ? param_text(q, c->v[1].text) : param_int(q, c->v[1].num);
        break;
    case SD_SEG_IN:
        put(q, x);
        put(q, " IN (SELECT value FROM json_each(");
        param_list(q, c, text);
        put(q, "))");
        break;
    case SD_SEG_CONTAINS:
    case SD_SEG_PREFIX:
        if (c->n != 1 || !text) {
            q->err = -EINVAL;
            break;
        }
        put(q, "instr(");
        put(q, x);
        put(q, ", ");
        param_text(q, c->v[0].text);
        put(q, c->op == SD_SEG_PREFIX ? ") = 1" : ") > 0");
        break;
    case SD_SEG_EXISTS:
        put(q, x);
        put(q, c->exists ? " IS NOT NULL" : " IS NULL");
        break;
    }
    put(q, ")");
}

/* ---- time ranges ---- */

static void format_day(int64_t days, char out[16])
{
    int64_t y;
    int m, d;
    sd_civil_from_days(days, &y, &m, &d);
    if (y > 9999) {
        snprintf(out, 16, "~"); /* after every stored date */
    } else if (y < 0) {
        snprintf(out, 16, "0"); /* before every stored date */
    } else {
        snprintf(out, 16, "%04" PRId64 "-%02d-%02d", y, m, d);
    }
}

static void format_instant(int64_t secs, char out[32])
{
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int64_t rem = secs - days * 86400;
    char day[16];
    format_day(days, day);
    if (day[0] == '~' || day[0] == '0') {
        snprintf(out, 32, "%s", day);
        return;
    }
    snprintf(out, 32, "%sT%02d:%02d:%02d", day, (int)(rem / 3600), (int)(rem / 60 % 60),
             (int)(rem % 60));
}

/* The half-open range [lo, hi) a time value stands for: in seconds (by_day false) or days. */
static void time_range(const struct q *q, const struct sd_seg_time *t, bool by_day, int64_t *lo,
                       int64_t *hi)
{
    int64_t secs = 0;
    bool is_day = false;
    int64_t day = 0;
    switch (t->kind) {
    case SD_SEG_T_DAY:
        is_day = true;
        day = t->v;
        break;
    case SD_SEG_T_DAYS_AGO:
        is_day = true;
        day = q->today - t->v;
        break;
    case SD_SEG_T_INSTANT: secs = t->v; break;
    case SD_SEG_T_AGO: secs = q->now_sec - t->v; break;
    }
    if (by_day) {
        int64_t d = is_day ? day : (secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400));
        *lo = d;
        *hi = d + 1;
    } else if (is_day) {
        *lo = day * 86400;
        *hi = (day + 1) * 86400;
    } else {
        *lo = secs;
        *hi = secs + 1;
    }
}

static void param_time(struct q *q, int64_t v, bool by_day)
{
    char buf[32];
    if (by_day) {
        format_day(v, buf);
    } else {
        format_instant(v, buf);
    }
    param_text(q, buf);
}

/* A time condition as an optional lower and upper bound, and whether it is negated (ne). */
struct range {
    bool has_lo, has_hi, negate;
    int64_t lo, hi;
};

static int cond_range(const struct q *q, const struct sd_seg_cond *c, bool by_day,
                      struct range *ret)
{
    int64_t lo = 0, hi = 0, lo2 = 0, hi2 = 0;
    if (c->op == SD_SEG_BETWEEN ? c->n != 2 : c->n != 1) {
        return -EINVAL;
    }
    time_range(q, &c->v[0].time, by_day, &lo, &hi);
    struct range r = {0};
    switch (c->op) {
    case SD_SEG_NE: r.negate = true; /* fall through */
    case SD_SEG_EQ: r = (struct range){true, true, r.negate, lo, hi}; break;
    case SD_SEG_GT: r = (struct range){true, false, false, hi, 0}; break;
    case SD_SEG_GTE: r = (struct range){true, false, false, lo, 0}; break;
    case SD_SEG_LT: r = (struct range){false, true, false, 0, lo}; break;
    case SD_SEG_LTE: r = (struct range){false, true, false, 0, hi}; break;
    case SD_SEG_BETWEEN:
        time_range(q, &c->v[1].time, by_day, &lo2, &hi2);
        r = (struct range){true, true, false, lo, hi2};
        break;
    default: return -EINVAL;
    }
    *ret = r;
    return 0;
}

/* x within range (no negation applied). */
static void range_sql(struct q *q, const char *x, const struct range *r, bool by_day)
{
    put(q, "(");
    if (r->has_lo) {
        put(q, x);
        put(q, " >= ");
        param_time(q, r->lo, by_day);
    }
    if (r->has_lo && r->has_hi) {
        put(q, " AND ");
    }
    if (r->has_hi) {
        put(q, x);
        put(q, " < ");
        param_time(q, r->hi, by_day);
    }
    if (!r->has_lo && !r->has_hi) {
        put(q, "1");
    }
    put(q, ")");
}

/* One filter condition on the current row (events e, sales s, customers c). */
static void cond_sql(struct q *q, const struct sd_seg_cond *c)
{
    const char *x = field_expr(c->field);
    if (!x) {
        q->err = -EINVAL;
        return;
    }
    if (c->field == SD_SEG_F_DATE || c->field == SD_SEG_F_PURCHASED ||
        c->field == SD_SEG_F_STATUS_CHANGED || c->field == SD_SEG_F_EXPIRES ||
        c->field == SD_SEG_F_LAST_ACTIVITY) {
        bool by_day = c->field == SD_SEG_F_DATE;
        if (c->op == SD_SEG_EXISTS) {
            if (c->field == SD_SEG_F_DATE || c->field == SD_SEG_F_PURCHASED) {
                put(q, c->exists ? "1" : "0"); /* both are required fields */
            } else {
                put(q, x);
                put(q, c->exists ? " IS NOT NULL" : " IS NULL");
            }
            return;
        }
        struct range r;
        if (cond_range(q, c, by_day, &r) < 0) {
            q->err = -EINVAL;
            return;
        }
        if (r.negate) {
            put(q, "NOT ");
        }
        range_sql(q, x, &r, by_day);
        return;
    }
    if (c->field == SD_SEG_F_CAST) {
        if (c->op == SD_SEG_EXISTS) {
            put(q, c->exists ? "(coalesce(json_array_length(e.doc, '$.cast'), 0) > 0)"
                             : "(coalesce(json_array_length(e.doc, '$.cast'), 0) = 0)");
            return;
        }
        /* ne: no cast member has the name. */
        struct sd_seg_cond eq = *c;
        if (c->op == SD_SEG_NE) {
            eq.op = SD_SEG_EQ;
        }
        put(q, c->op == SD_SEG_NE ? "NOT EXISTS" : "EXISTS");
        put(q, " (SELECT 1 FROM json_each(e.doc, '$.cast') j WHERE ");
        compare(q, x, &eq, true);
        put(q, ")");
        return;
    }
    if (c->field == SD_SEG_F_PRICE) {
        put(q, "(s.currency = ");
        param_text(q, c->currency);
        put(q, " AND ");
        compare(q, x, c, false);
        put(q, ")");
        return;
    }
    compare(q, x, c, is_text_field(c->field));
}

/* Extra purchase-time bounds of a bought leaf (first/last purchase rewrites). */
struct bounds {
    bool has_lo, has_hi;
    int64_t lo, hi; /* seconds */
};

/* Which index a sales subquery reads (0004_segment_indexes.sql). Every choice is spelled out
 * with INDEXED BY: the planner has no statistics (nobody runs ANALYZE) and, left alone, walks
 * an index whose order scatters its table reads. */
static const char *sales_index(const struct sd_seg_cond *where, size_t n_where,
                               enum sd_seg_measure m, bool is_count, const struct bounds *b)
{
    bool doc = false;
    bool few_events = false;
    for (size_t i = 0; i < n_where; i++) {
        enum sd_seg_field f = where[i].field;
        doc = doc || f == SD_SEG_F_TICKET_CATEGORY || f == SD_SEG_F_QUANTITY ||
              f == SD_SEG_F_STATUS || f == SD_SEG_F_STATUS_CHANGED || f == SD_SEG_F_ATTENDED;
        few_events = few_events || (f == SD_SEG_F_EVENT_ID &&
                                    (where[i].op == SD_SEG_EQ || where[i].op == SD_SEG_IN));
    }
    if (doc) {
        /* The document is in the table only: the few sales of named events through the
         * event index, otherwise one pass over the table in rowid order. */
        return few_events ? "seg_sales_event" : "sales_seq";
    }
    if (n_where == 0 && (!is_count || m == SD_SEG_M_PURCHASES || m == SD_SEG_M_TICKETS)) {
        /* customer key, net tickets and purchase time are all it reads, in customer order */
        (void)b;
        return "sales_customer";
    }
    return "seg_sales_event"; /* covers event, purchase time, customer, currency, price, nets */
}

/* Which sales rows a leaf looks at, before its filters (model.h "order lifecycle"). */
enum base {
    BASE_ALL,       /* every row: sums of net figures (0 where nothing counts) */
    BASE_LIVE,      /* live sales: net tickets left */
    BASE_REFUNDED,  /* sales with something refunded */
    BASE_HOLD,      /* open reservations and options, not expired */
    BASE_ABANDONED, /* abandoned baskets */
};

/* The partial index of the rows that are not plain sold sales (0010_order_lifecycle.sql); the
 * query must repeat its WHERE term word for word for SQLite to use it. */
#define LIFECYCLE_ROWS "(s.order_type <> 'sale' OR s.status <> 'sold')"

static void base_sql(struct q *q, enum base base)
{
    switch (base) {
    case BASE_ALL: return;
    case BASE_LIVE: put(q, " AND s.net_quantity > 0"); return;
    case BASE_REFUNDED:
        put(q, " AND " LIFECYCLE_ROWS " AND s.order_type = 'sale'"
               " AND (s.refunded_quantity > 0 OR s.refunded_minor > 0)");
        return;
    case BASE_HOLD:
        put(q, " AND " LIFECYCLE_ROWS " AND s.order_type IN ('reservation', 'option')"
               " AND s.status = 'open' AND (s.expires IS NULL OR s.expires > ");
        param_time(q, q->now_sec, false);
        put(q, ")");
        return;
    case BASE_ABANDONED: put(q, " AND " LIFECYCLE_ROWS " AND s.order_type = 'abandoned'"); return;
    }
}

/* " FROM sales s INDEXED BY … [join] WHERE <scope, filters, currency, bounds>". */
static void sales_from(struct q *q, const char *index, const char *join,
                       const struct sd_seg_cond *where, size_t n_where, const char *currency,
                       const struct bounds *b, enum base base)
{
    put(q, " FROM sales s INDEXED BY ");
    put(q, base >= BASE_REFUNDED ? "seg_sales_lifecycle" : index);
    if (join) {
        put(q, join);
    }
    put(q, " WHERE s.tenant_id = ?1 AND s.env = ?2 AND s.customer_id <> '" SD_ANON_CUSTOMER "'");
    base_sql(q, base);
    bool any_event = false;
    for (size_t i = 0; i < n_where; i++) {
        any_event = any_event || is_event_field(where[i].field);
    }
    if (any_event) {
        put(q, " AND s.event_ref IN (SELECT e.event_id FROM events e WHERE e.tenant_id = ?1"
               " AND e.env = ?2");
        for (size_t i = 0; i < n_where; i++) {
            if (is_event_field(where[i].field)) {
                put(q, " AND ");
                cond_sql(q, &where[i]);
            }
        }
        put(q, ")");
    }
    for (size_t i = 0; i < n_where; i++) {
        if (!is_event_field(where[i].field)) {
            put(q, " AND ");
            cond_sql(q, &where[i]);
        }
    }
    if (currency && currency[0]) {
        put(q, " AND s.currency = ");
        param_text(q, currency);
    }
    if (b && b->has_lo) {
        put(q, " AND s.purchase_datetime >= ");
        param_time(q, b->lo, false);
    }
    if (b && b->has_hi) {
        put(q, " AND s.purchase_datetime < ");
        param_time(q, b->hi, false);
    }
}

/* "p.id IN (profiles of the customers with a matching sale)", or NOT IN. The sales give the
 * distinct customer keys first, so each buyer's profile is looked up once, not once a sale. */
static void facts_leaf(struct q *q, bool in, const struct sd_seg_rule *r, const struct bounds *b,
                       enum base base)
{
    put(q, in ? "p.id IN (" : "p.id NOT IN (");
    put(q, "SELECT c.profile_id FROM customers c INDEXED BY seg_customers_key"
           " WHERE c.tenant_id = ?1 AND c.env = ?2 AND c.profile_id IS NOT NULL"
           " AND (c.source, c.customer_id) IN (SELECT s.source, s.customer_id");
    sales_from(q, sales_index(r->where, r->n_where, 0, false, b), NULL, r->where, r->n_where, NULL,
               b, base);
    if (r->kind == SD_SEG_ABANDONED && r->not_bought_since) {
        /* no live sale of the same profile (any of its source records) purchased after it */
        put(q, " AND NOT EXISTS (SELECT 1 FROM customers c1 INDEXED BY seg_customers_key"
               " JOIN customers c2 INDEXED BY customers_profile ON c2.profile_id = c1.profile_id"
               " JOIN sales s2 INDEXED BY sales_customer ON s2.tenant_id = ?1 AND s2.env = ?2"
               " AND s2.source = c2.source AND s2.customer_id = c2.customer_id"
               " WHERE c1.tenant_id = ?1 AND c1.env = ?2 AND c1.source = s.source"
               " AND c1.customer_id = s.customer_id AND c2.tenant_id = ?1 AND c2.env = ?2"
               " AND s2.net_quantity > 0 AND s2.purchase_datetime > s.purchase_datetime)");
    }
    put(q, "))");
}

static void bought_leaf(struct q *q, bool in, const struct sd_seg_rule *r, const struct bounds *b)
{
    facts_leaf(q, in, r, b, BASE_LIVE);
}

/* Whether a count comparison holds for a profile without any matching sale (value 0). */
static bool holds_at_zero(const struct sd_seg_cond *c)
{
    int64_t a = c->n > 0 ? c->v[0].num : 0, b = c->n > 1 ? c->v[1].num : 0;
    switch (c->op) {
    case SD_SEG_EQ: return a == 0;
    case SD_SEG_NE: return a != 0;
    case SD_SEG_GT: return 0 > a;
    case SD_SEG_GTE: return 0 >= a;
    case SD_SEG_LT: return 0 < a;
    case SD_SEG_LTE: return 0 <= a;
    case SD_SEG_BETWEEN: return a <= 0 && 0 <= b;
    case SD_SEG_IN:
        for (size_t i = 0; i < c->n; i++) {
            if (c->v[i].num == 0) {
                return true;
            }
        }
        return false;
    default: return false;
    }
}

/* The comparisons of a count leaf on total, ANDed (negated as a whole when not `in`). */
static void count_cmp(struct q *q, const struct sd_seg_rule *r, const char *total, bool negate)
{
    put(q, negate ? "NOT (" : "(");
    for (size_t i = 0; i < r->n_cmp; i++) {
        if (i) {
            put(q, " AND ");
        }
        compare(q, total, &r->cmp[i], false);
    }
    put(q, ")");
}

/* A count of purchases, tickets or spend without a `where`: read from the per-profile facts
 * (0013_profile_facts.sql), which hold exactly the sums the sales path computes, per currency,
 * in one pass over them (their primary key, in profile order). Spend in one currency is one
 * row per profile, compared as it is; the others sum a profile's rows. */
static void count_facts_leaf(struct q *q, const struct sd_seg_rule *r, bool zero)
{
    static const char *const total[] = {
        [SD_SEG_M_PURCHASES] = "sum(f.purchases)",
        [SD_SEG_M_TICKETS] = "sum(f.tickets)",
        [SD_SEG_M_EVENTS] = NULL,
        [SD_SEG_M_SPEND] = "sum(f.spend_minor)",
    };
    put(q, zero ? "p.id NOT IN (" : "p.id IN (");
    if (r->measure == SD_SEG_M_SPEND && r->currency[0]) {
        put(q, "SELECT f.profile_id FROM profile_facts f WHERE f.tenant_id = ?1 AND f.env = ?2"
               " AND f.currency = ");
        param_text(q, r->currency);
        put(q, " AND ");
        count_cmp(q, r, "f.spend_minor", zero);
    } else {
        put(q, "SELECT f.profile_id FROM profile_facts f WHERE f.tenant_id = ?1 AND f.env = ?2"
               " GROUP BY f.profile_id HAVING ");
        count_cmp(q, r, total[r->measure], zero);
    }
    put(q, ")");
}

/* Counts are per profile, over all its source records. Without a `where`, purchases, tickets
 * and spend come from the per-profile facts (count_facts_leaf). Otherwise purchases, tickets and
 * spend add up, so they are summed per customer key first (one group per buyer, in the index's
 * order where it can) and those partial sums per profile; distinct events do not add up and
 * are grouped by profile directly. */
static void count_leaf(struct q *q, const struct sd_seg_rule *r)
{
    static const char *const partial[] = {
        [SD_SEG_M_PURCHASES] = "count(*)",
        [SD_SEG_M_TICKETS] = "coalesce(sum(s.net_quantity), 0)",
        [SD_SEG_M_EVENTS] = NULL,
        [SD_SEG_M_SPEND] = "coalesce(sum(s.net_minor), 0)",
    };
    /* Purchases and events count live sales; tickets and spend add net figures, which are 0
     * wherever nothing is left to count. */
    enum base base =
        r->measure == SD_SEG_M_PURCHASES || r->measure == SD_SEG_M_EVENTS ? BASE_LIVE : BASE_ALL;
    if ((unsigned)r->measure > SD_SEG_M_SPEND || r->n_cmp == 0) {
        q->err = -EINVAL;
        return;
    }
    bool zero = true;
    for (size_t i = 0; i < r->n_cmp; i++) {
        zero = zero && holds_at_zero(&r->cmp[i]);
    }
    if (r->n_where == 0 && r->measure != SD_SEG_M_EVENTS) {
        count_facts_leaf(q, r, zero);
        return;
    }
    const char *index = sales_index(r->where, r->n_where, r->measure, true, NULL);
    const char *currency = r->measure == SD_SEG_M_SPEND ? r->currency : NULL;
    const char *total;
    put(q, zero ? "p.id NOT IN (" : "p.id IN (");
    if (r->measure == SD_SEG_M_EVENTS) {
        put(q, "SELECT c.profile_id");
        /* CROSS JOIN keeps sales the outer loop: the filters first, then each matching sale's
         * customer key to its profile. */
        sales_from(q, index, " CROSS JOIN customers c INDEXED BY seg_customers_key", r->where,
                   r->n_where, NULL, NULL, base);
        put(q, " AND c.tenant_id = ?1 AND c.env = ?2 AND c.source = s.source"
               " AND c.customer_id = s.customer_id AND c.profile_id IS NOT NULL");
        total = "count(DISTINCT s.event_ref)";
    } else {
        put(q, "SELECT c.profile_id FROM (SELECT s.source AS src, s.customer_id AS cid, ");
        put(q, partial[r->measure]);
        put(q, " AS v");
        sales_from(q, index, NULL, r->where, r->n_where, currency, NULL, base);
        put(q, " GROUP BY s.source, s.customer_id) x JOIN customers c INDEXED BY"
               " seg_customers_key ON c.tenant_id = ?1 AND c.env = ?2 AND c.source = x.src"
               " AND c.customer_id = x.cid WHERE c.profile_id IS NOT NULL");
        total = "sum(x.v)";
    }
    put(q, " GROUP BY c.profile_id HAVING ");
    count_cmp(q, r, total, zero);
    put(q, ")");
}

/* first/last purchase without a `where`, from the per-profile facts: the profile's latest
 * (earliest) live purchase is the max (min) over its rows, one pass over the facts in profile
 * order per condition. "Last purchase within [lo, hi)" = some live purchase ≥ lo and none ≥ hi
 * = latest ≥ lo and latest < hi, the rewrite purchase_range makes into bought leaves; ne is
 * "bought, and not within"; exists false is "no live purchase". */
static void purchase_facts_leaf(struct q *q, const struct sd_seg_rule *r)
{
    const char *x =
        r->kind == SD_SEG_LAST_PURCHASE ? "max(f.last_purchase)" : "min(f.first_purchase)";
    put(q, "(");
    for (size_t i = 0; i < r->n_cmp; i++) {
        const struct sd_seg_cond *c = &r->cmp[i];
        if (i) {
            put(q, " AND ");
        }
        bool never = c->op == SD_SEG_EXISTS && !c->exists;
        put(q, never ? "p.id NOT IN (" : "p.id IN (");
        put(q, "SELECT f.profile_id FROM profile_facts f WHERE f.tenant_id = ?1 AND f.env = ?2"
               " GROUP BY f.profile_id HAVING ");
        put(q, x);
        put(q, " IS NOT NULL");
        if (c->op != SD_SEG_EXISTS) {
            struct range g;
            if (cond_range(q, c, false, &g) < 0) {
                q->err = -EINVAL;
                return;
            }
            put(q, g.negate ? " AND NOT " : " AND ");
            range_sql(q, x, &g, false);
        }
        put(q, ")");
    }
    put(q, ")");
}

/* first/last purchase within a range, as bought leaves (see the top of the file). */
static void purchase_range(struct q *q, const struct sd_seg_rule *r, const struct range *g)
{
    bool last = r->kind == SD_SEG_LAST_PURCHASE;
    struct bounds inner = {0}, outer = {0};
    bool need_inner, need_outer;
    if (last) {
        /* some purchase ≥ lo, none ≥ hi */
        inner = (struct bounds){.has_lo = g->has_lo, .lo = g->lo};
        outer = (struct bounds){.has_lo = true, .lo = g->hi};
        need_inner = true;
        need_outer = g->has_hi;
    } else {
        /* some purchase < hi, none < lo */
        inner = (struct bounds){.has_hi = g->has_hi, .hi = g->hi};
        outer = (struct bounds){.has_hi = true, .hi = g->lo};
        need_inner = true;
        need_outer = g->has_lo;
    }
    put(q, "(");
    if (need_inner) {
        bought_leaf(q, true, r, &inner);
    }
    if (need_outer) {
        put(q, " AND ");
        bought_leaf(q, false, r, &outer);
    }
    put(q, ")");
}

static void purchase_leaf(struct q *q, const struct sd_seg_rule *r)
{
    if (r->n_cmp == 0) {
        q->err = -EINVAL;
        return;
    }
    if (r->n_where == 0) {
        purchase_facts_leaf(q, r);
        return;
    }
    put(q, "(");
    for (size_t i = 0; i < r->n_cmp; i++) {
        const struct sd_seg_cond *c = &r->cmp[i];
        if (i) {
            put(q, " AND ");
        }
        if (c->op == SD_SEG_EXISTS) {
            bought_leaf(q, c->exists, r, NULL);
            continue;
        }
        struct range g;
        if (cond_range(q, c, false, &g) < 0) {
            q->err = -EINVAL;
            return;
        }
        if (g.negate) {
            put(q, "(");
            bought_leaf(q, true, r, NULL);
            put(q, " AND NOT ");
            purchase_range(q, r, &g);
            put(q, ")");
        } else {
            purchase_range(q, r, &g);
        }
    }
    put(q, ")");
}

/* The index of the folded customer field a condition can be looked up in (eq, in, prefix), or
 * NULL (ne, contains and exists read every record of the scope). */
static const char *customer_index(const struct sd_seg_cond *c)
{
    if (c->op != SD_SEG_EQ && c->op != SD_SEG_IN && c->op != SD_SEG_PREFIX) {
        return NULL;
    }
    if (c->field == SD_SEG_F_POST_CODE) {
        return "seg_customers_post_code";
    }
    if (c->field == SD_SEG_F_CUSTOMER_CITY) {
        return "seg_customers_city";
    }
    return NULL;
}

/* A prefix as the index range [p, p with its last byte raised) on column x, ANDed to the exact
 * instr() test that compare() writes. Text compares bytewise (BINARY), so every string that
 * starts with p lies in the range; folded text is UTF-8 and never holds a 0xFF byte, but such
 * bytes are dropped before raising the last one all the same. */
static void prefix_range(struct q *q, const char *x, const char *p)
{
    size_t n = strlen(p);
    put(q, " AND ");
    put(q, x);
    put(q, " >= ");
    param_text(q, p);
    while (n > 0 && (unsigned char)p[n - 1] == 0xFF) {
        n--;
    }
    if (n == 0) {
        return;
    }
    char *hi = sd_strndup(p, n);
    hi[n - 1] = (char)((unsigned char)hi[n - 1] + 1);
    put(q, " AND ");
    put(q, x);
    put(q, " < ");
    param_text(q, hi);
    free(hi);
}

/* The profiles of the source records matching every filter. The first filter on post_code or
 * city that an index serves picks that index (covering: the profile id is in it), so a filter
 * such as post_code prefix "1" reads its index range, not every customer. */
static void customer_leaf(struct q *q, const struct sd_seg_rule *r)
{
    const char *index = NULL;
    size_t at = 0;
    for (size_t i = 0; i < r->n_where && !index; i++) {
        index = customer_index(&r->where[i]);
        at = i;
    }
    put(q, "p.id IN (SELECT c.profile_id FROM customers c");
    if (index) {
        put(q, " INDEXED BY ");
        put(q, index);
    }
    put(q, " WHERE c.tenant_id = ?1 AND c.env = ?2 AND c.profile_id IS NOT NULL");
    for (size_t i = 0; i < r->n_where; i++) {
        put(q, " AND ");
        cond_sql(q, &r->where[i]);
    }
    const struct sd_seg_cond *c = index ? &r->where[at] : NULL;
    if (c && c->op == SD_SEG_PREFIX && c->n == 1 && c->v[0].text) {
        prefix_range(q, field_expr(c->field), c->v[0].text);
    }
    put(q, ")");
}

static void rule_sql(struct q *q, const struct sd_seg_rule *r, unsigned depth)
{
    if (!r || depth > 64 || q->err) {
        q->err = -EINVAL;
        return;
    }
    switch (r->kind) {
    case SD_SEG_ALL:
    case SD_SEG_ANY:
        if (r->n_kids == 0) {
            put(q, r->kind == SD_SEG_ALL ? "1" : "0");
            return;
        }
        put(q, "(");
        for (size_t i = 0; i < r->n_kids; i++) {
            if (i) {
                put(q, r->kind == SD_SEG_ALL ? " AND " : " OR ");
            }
            rule_sql(q, r->kids[i], depth + 1);
        }
        put(q, ")");
        return;
    case SD_SEG_NOT:
        if (r->n_kids != 1) {
            q->err = -EINVAL;
            return;
        }
        put(q, "NOT (");
        rule_sql(q, r->kids[0], depth + 1);
        put(q, ")");
        return;
    case SD_SEG_BOUGHT: bought_leaf(q, true, r, NULL); return;
    case SD_SEG_COUNT: count_leaf(q, r); return;
    case SD_SEG_FIRST_PURCHASE:
    case SD_SEG_LAST_PURCHASE: purchase_leaf(q, r); return;
    case SD_SEG_CUSTOMER: customer_leaf(q, r); return;
    case SD_SEG_REFUNDED: facts_leaf(q, true, r, NULL, BASE_REFUNDED); return;
    case SD_SEG_HOLDS: facts_leaf(q, true, r, NULL, BASE_HOLD); return;
    case SD_SEG_ABANDONED: facts_leaf(q, true, r, NULL, BASE_ABANDONED); return;
    }
    q->err = -EINVAL;
}

/* The whole query: the members' ids (count_only: their number). */
static int build(struct q *q, const struct sd_seg_rule *rule, int64_t now_usec, bool count_only)
{
    sd_buf_init(&q->sql);
    q->now_sec = now_usec / 1000000;
    q->today = q->now_sec >= 0 ? q->now_sec / 86400 : -((-q->now_sec + 86399) / 86400);
    put(q, count_only ? "SELECT count(*)" : "SELECT p.id");
    put(q, " FROM profiles p WHERE p.tenant_id = ?1 AND p.env = ?2 AND p.opt_out = 0"
           " AND p.suppressed = 0");
    if (!count_only) {
        put(q, " AND p.id > ?3");
    }
    put(q, " AND ");
    rule_sql(q, rule, 0);
    if (!count_only) {
        put(q, " ORDER BY p.id LIMIT ?4");
    }
    return q->err;
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

/* Prepare q on c and bind the scope and every parameter. */
static int prepare(struct conn *c, const struct q *q, int64_t tenant_id, enum sd_env env,
                   sqlite3_stmt **ret)
{
    sqlite3_stmt *st = NULL;
    /* The text holds no values (they are bound), so it may be logged. */
    sd_log(SD_LOG_DEBUG, "segment query", "sql=\"%s\"", q->sql.data);
    int rc = sqlite3_prepare_v2(c->db, q->sql.data, (int)q->sql.len + 1, &st, NULL);
    if (rc != SQLITE_OK) {
        return sd_sqlite_fail(c, rc, "prepare segment query");
    }
    rc = sqlite3_bind_int64(st, 1, tenant_id) | sqlite3_bind_int(st, 2, (int)env);
    for (size_t i = 0; i < q->n_binds; i++) {
        int n = (int)(PARAM_FIRST + i);
        const struct bind *b = &q->binds[i];
        rc |= b->type == B_INT ? sqlite3_bind_int64(st, n, b->i)
                               : sqlite3_bind_text(st, n, b->text, -1, SQLITE_STATIC);
    }
    if (rc != SQLITE_OK) {
        sqlite3_finalize(st);
        return sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    *ret = st;
    return 0;
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
    struct q q = {0};
    int r = build(&q, rule, now_usec, true);
    if (r < 0) {
        q_release(&q);
        return r;
    }
    struct conn *c = NULL;
    r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        q_release(&q);
        return r;
    }
    sqlite3_stmt *st = NULL;
    struct limits lim;
    limits_init(&lim, budget);
    r = over_limits(&lim) ? lim.reason : 0;
    if (r == 0) {
        r = prepare(c, &q, tenant_id, env, &st);
    }
    if (r == 0) {
        limits_on(c, &lim);
        r = step(c, st, &lim, "segment count");
        limits_off(c);
        if (r == SQLITE_ROW) {
            *ret = sqlite3_column_int64(st, 0);
            r = 0;
        } else if (r >= 0) {
            r = sd_sqlite_fail(c, SQLITE_ERROR, "segment count: no row");
        }
    }
    sqlite3_finalize(st);
    sd_sqlite_pool_put(s, c);
    q_release(&q);
    return r;
}

static int cmp_source(const void *a, const void *b)
{
    const struct sd_seg_member_source *x = a, *y = b;
    int r = strcmp(x->source, y->source);
    return r ? r : strcmp(x->customer_id, y->customer_id);
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
    size_t at = 0, cap = 0; /* the member the rows are at, and its sources' capacity */
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        while (at < page->n && page->v[at].profile_id < id) {
            at++;
            cap = 0;
        }
        if (at == page->n || page->v[at].profile_id != id) {
            continue; /* not a member of the page: cannot happen, the ids came from it */
        }
        struct sd_seg_member *m = &page->v[at];
        if (m->n_sources == cap) {
            cap = cap ? cap * 2 : 2;
            m->sources = sd_realloc(m->sources, cap * sizeof(*m->sources));
        }
        struct sd_seg_member_source *src = &m->sources[m->n_sources++];
        src->source = sd_sqlite_column_strdup(st, 1);
        src->customer_id = sd_sqlite_column_strdup(st, 2);
        if (!src->source) {
            src->source = sd_strdup("");
        }
        if (!src->customer_id) {
            src->customer_id = sd_strdup("");
        }
        if (!m->email && sqlite3_column_type(st, 3) == SQLITE_TEXT) {
            m->email = sd_sqlite_column_strdup(st, 3);
        }
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
    for (size_t i = 0; i < page->n; i++) {
        struct sd_seg_member *m = &page->v[i];
        if (m->n_sources > 1) {
            qsort(m->sources, m->n_sources, sizeof(*m->sources), cmp_source);
        }
    }
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
    struct q q = {0};
    int r = build(&q, rule, now_usec, false);
    if (r < 0) {
        q_release(&q);
        return r;
    }
    struct conn *c = NULL;
    r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        q_release(&q);
        return r;
    }
    struct sd_seg_member_page page = {.next_after = after};
    sqlite3_stmt *st = NULL;
    bool in_tx = false, limited = false;
    struct limits lim;
    limits_init(&lim, budget);
    r = over_limits(&lim) ? lim.reason : 0;
    if (r < 0) {
        goto out;
    }
    r = prepare(c, &q, tenant_id, env, &st);
    if (r < 0) {
        goto out;
    }
    if ((sqlite3_bind_int64(st, 3, after) | sqlite3_bind_int64(st, 4, (int64_t)limit + 1)) !=
        SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
        goto out;
    }
    r = sd_sqlite_run(c, ST_BEGIN);
    if (r < 0) {
        goto out;
    }
    in_tx = true;
    page.v = sd_calloc(limit, sizeof(*page.v));
    limits_on(c, &lim);
    limited = true;
    while ((r = step(c, st, &lim, "segment members")) == SQLITE_ROW) {
        if (page.n == limit) {
            page.has_more = true;
            break;
        }
        page.v[page.n++].profile_id = sqlite3_column_int64(st, 0);
    }
    if (r < 0) {
        goto out;
    }
    sqlite3_reset(st);
    r = member_sources(c, tenant_id, env, &lim, &page);
    if (r < 0) {
        goto out;
    }
    if (page.n > 0) {
        page.next_after = page.v[page.n - 1].profile_id;
    }
    r = 0;
out:
    if (limited) {
        limits_off(c);
    }
    sqlite3_finalize(st);
    if (in_tx) {
        (void)sd_sqlite_run(c, ST_COMMIT); /* ends the read transaction */
    }
    sd_sqlite_pool_put(s, c);
    q_release(&q);
    if (r == 0) {
        *ret = page;
    } else {
        sd_seg_member_page_release(&page);
    }
    return r;
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
    struct q q = {0};
    int r = build(&q, rule, now_usec, false);
    if (r < 0) {
        q_release(&q);
        return r;
    }
    struct conn *c = NULL;
    r = sd_sqlite_pool_get(s, &c);
    if (r < 0) {
        q_release(&q);
        return r;
    }
    int64_t *v = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *st = NULL;
    struct limits lim;
    limits_init(&lim, budget);
    r = over_limits(&lim) ? lim.reason : 0;
    if (r == 0) {
        r = prepare(c, &q, tenant_id, env, &st);
    }
    if (r == 0 && (sqlite3_bind_int64(st, 3, 0) | sqlite3_bind_int64(st, 4, -1)) != SQLITE_OK) {
        r = sd_sqlite_fail(c, SQLITE_MISUSE, "bind");
    }
    if (r == 0) {
        limits_on(c, &lim);
        while ((r = step(c, st, &lim, "segment snapshot")) == SQLITE_ROW) {
            if (n == cap) {
                cap = cap ? cap * 2 : 1024;
                v = sd_realloc(v, cap * sizeof(*v));
            }
            v[n++] = sqlite3_column_int64(st, 0);
        }
        limits_off(c);
        if (r == SQLITE_DONE) {
            r = 0;
        }
    }
    sqlite3_finalize(st);
    sd_sqlite_pool_put(s, c);
    q_release(&q);
    if (r < 0) {
        free(v);
        return r;
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
static int snap_open(struct sd_store *s, int64_t tenant_id, enum sd_env env, const char *segment_id,
                     int64_t id, int64_t count, int64_t now_usec, int64_t ttl_usec)
{
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
             sqlite3_bind_text(st, 4, segment_id, -1, SQLITE_STATIC) |
             sqlite3_bind_int64(st, 5, count) | sqlite3_bind_int64(st, 6, now_usec) |
             sqlite3_bind_int64(st, 7, now_usec + ttl_usec)) != SQLITE_OK) {
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

static int snapshot_create(struct sd_store *s, int64_t tenant_id, enum sd_env env,
                           const char *segment_id, const struct sd_seg_rule *rule, int64_t now_usec,
                           int64_t ttl_usec, const struct sd_seg_budget *budget, int64_t *ret_id,
                           int64_t *ret_count)
{
    if (!rule || !segment_id || !sd_sqlite_env_ok(env) || ttl_usec <= 0) {
        return -EINVAL;
    }
    int64_t *v = NULL;
    size_t n = 0;
    int r = member_ids(s, tenant_id, env, rule, now_usec, budget, &v, &n);
    if (r < 0) {
        return r;
    }
    uint64_t raw = 0;
    r = sd_random_bytes(&raw, sizeof(raw));
    int64_t id = (int64_t)(raw >> 1);
    id = id ? id : 1;
    if (r == 0) {
        r = snap_open(s, tenant_id, env, segment_id, id, (int64_t)n, now_usec, ttl_usec);
    }
    for (size_t at = 0; r == 0 && (at < n || at == 0);) {
        size_t k = n - at < SD_SEGMENT_SNAPSHOT_CHUNK ? n - at : SD_SEGMENT_SNAPSHOT_CHUNK;
        r = snap_chunk(s, id, n ? v + at : NULL, k, at + k == n); /* no members: v is NULL */
        at += k;
        if (n == 0) {
            break;
        }
    }
    free(v);
    if (r < 0) {
        return r; /* an incomplete snapshot is never read and goes with its expiry */
    }
    *ret_id = id;
    *ret_count = (int64_t)n;
    return 0;
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
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (page.n == limit) {
            page.has_more = true;
            break;
        }
        page.v[page.n++].profile_id = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        r = sd_sqlite_fail(c, rc, "segment snapshot page");
        goto out;
    }
    r = member_sources(c, tenant_id, env, &lim, &page);
    if (r == 0 && page.n > 0) {
        page.next_after = page.v[page.n - 1].profile_id;
    }
out:
    (void)sd_sqlite_run(c, ST_COMMIT); /* ends the read transaction */
    sd_sqlite_pool_put(s, c);
    if (r == 0) {
        *ret = page;
    } else {
        sd_seg_member_page_release(&page);
    }
    return r;
}

const struct sd_store_segment_ops sd_sqlite_segment_ops = {
    .create = seg_create,
    .update = seg_update,
    .set_count = seg_set_count,
    .remove = seg_remove,
    .get = seg_get,
    .list = seg_list,
    .count = seg_count,
    .members = seg_members,
    .snapshot_create = snapshot_create,
    .snapshot_members = snapshot_members,
};
