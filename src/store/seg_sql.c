/* seg_sql.c — the segment rule compiler (seg_sql.h), one for both backends, and the small table
 * of what their SQL dialects spell differently.
 *
 * The query. A rule tree compiles into ONE SELECT over profiles p (tenant, env, opt_out = 0,
 * suppressed = 0) whose WHERE is the rule: every leaf becomes `p.id [NOT] IN (subquery)` with a
 * subquery that is not correlated to p, so the engine runs each once per statement and probes
 * the result per profile, instead of once per profile. The subqueries:
 *  - bought: the profiles of the customer records whose key (source, customer_id) is among the
 *    keys of the matching sales — the sales give each buyer once, so a profile is looked up
 *    per buyer, not per sale. Event filters become `s.event_ref IN (SELECT event_id FROM
 *    events e WHERE …)`: only the events' documents are parsed;
 *  - count: without a `where`, purchases, tickets and spend read the per-profile facts
 *    (profile_facts, kept by the writer in its transaction). Otherwise they are summed per
 *    customer key first and the partial sums per profile (a profile may have records in several
 *    sources); distinct events are always grouped by profile from the sales. When the
 *    comparison holds for zero (lt 3, eq 0, …) the leaf is `NOT IN (… HAVING NOT <comparison>)`,
 *    which keeps the profiles without a matching sale;
 *  - first / last purchase: rewritten into bought leaves with a purchase-time range
 *    ("last purchase before X" = bought ∧ ¬bought at or after X), which need no grouping;
 *    without a `where`, they compare the earliest / latest live purchase the facts hold;
 *  - customer: the source records of the tenant+env matching every filter.
 * Subqueries never return NULL (c.profile_id IS NOT NULL), so NOT IN and NOT are exact.
 *
 * The SQL text is built from fixed fragments only; numbered parameters carry every value of the
 * rule (seg_sql.h lists the fixed ones). Relative times are resolved here against the caller's
 * now_usec; time bounds become half-open [lo, hi) ranges compared as text on the stored UTC
 * forms ("YYYY-MM-DDTHH:MM:SS" prefix of purchase_datetime, "YYYY-MM-DD" event dates), which is
 * exact to the second because the forms compare in byte order. Case-insensitive fields compare
 * sd_fold(stored) with the rule's value folded the same way (sd_text_fold, Unicode simple
 * lowercase, whitespace trimmed and collapsed); the customer fields a rule filters on most
 * (post_code, city) are stored folded beside the document (seg_post_code, seg_city).
 *
 * The dialects. The compiler writes one query shape for both; `struct sd_seg_dialect` holds only
 * the spellings that differ, and why:
 *  - placeholders: SQLite ?N; PostgreSQL $N with the type spelled (::bigint, ::text), because it
 *    infers an untyped parameter's type from its context and some contexts (a JSON array's
 *    text, an aggregate's comparison) name none or the wrong one;
 *  - index hints: SQLite has no statistics here (nobody runs ANALYZE) and, left alone, walks an
 *    index whose order scatters its table reads, so every sales and customers subquery names
 *    its index (INDEXED BY); PostgreSQL has no hints, and its planner has statistics
 *    (autovacuum's ANALYZE): nothing is written;
 *  - JSON members of a TEXT document: SQLite json_extract(doc, '$.a'), PostgreSQL
 *    (doc::jsonb ->> 'a'); both give a string member's text and NULL for an absent or null one,
 *    and the model validates most members' types (strings; quantity an integer, cast to
 *    numeric). The customer's activity members are kept as sent, of any JSON type, and
 *    json_extract gives numbers as numbers (true as 1), which SQLite orders before all text and
 *    after none; PostgreSQL reproduces that where it can without failing: a count that is not
 *    a number compares as +Infinity (above every integer, equal to none, as text is in SQLite),
 *    true/false count 1/0, a time that is a number or boolean compares as '' (before every
 *    time), a folded text that is a boolean folds '1'/'0'. Left different: a folded member
 *    that is a non-integer number or an object folds jsonb's text ("2.50", {"a": 1}), SQLite
 *    its own ("2.5", {"a":1}). An array's length and its elements (the cast):
 *    json_array_length / json_each against jsonb_array_length / jsonb_array_elements;
 *  - a value list (in): one JSON array text parameter, expanded by json_each (SQLite) or
 *    jsonb_array_elements_text (PostgreSQL, cast to bigint for numbers);
 *  - the weekday of a "YYYY-MM-DD" text: strftime('%w') against extract(dow) (0 = Sunday in
 *    both; dates are validated, so PostgreSQL's date cast never fails);
 *  - "is not" that treats NULL as a value: IS NOT against IS DISTINCT FROM; the position of a
 *    substring: instr against strpos (same arguments, 1-based, 0 when absent, 1 for "");
 *  - true and false: SQLite 1 / 0, PostgreSQL TRUE / FALSE (a WHERE must be boolean there);
 *  - byte order: text compared by order (times, post-code prefixes, <, >, between on text, and
 *    min/max of times) must compare bytes, as SQLite's BINARY does; PostgreSQL compares text by
 *    the database's collation unless told, so those operands carry COLLATE "C" (equality needs
 *    nothing: PostgreSQL's deterministic collations are equal only when the bytes are).
 * The fold function keeps its name, sd_fold: SQLite's is registered in C on every connection,
 * PostgreSQL's is SQL (postgres/schema/0004_fold.sql), equal to sd_text_fold on every input.
 * One thing the text cannot settle for PostgreSQL: it runs a leaf's `p.id [NOT] IN (subquery)`
 * as a hashed SubPlan only while the subquery's ids fit in work_mem × hash_mem_multiplier;
 * beyond that (a few hundred thousand ids at the default 4MB) it plans a scan of the
 * materialised ids per profile, quadratic. Whoever runs these queries on PostgreSQL sets
 * work_mem for the computation's transaction (SET LOCAL). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/base.h"
#include "base/utf8.h"
#include "model/model.h"
#include "store/seg_sql.h"

struct sd_seg_dialect {
    const char *name;
    char placeholder;                 /* before a parameter's number */
    const char *int_type, *text_type; /* after it */
    bool index_hints;                 /* " INDEXED BY <index>" after a table */
    /* JSON members of a document, as templates: %D the document, %M the member's name */
    const char *json_text;  /* a string member's text */
    const char *json_num;   /* an integer member's value */
    const char *json_any;   /* a member of any type as SQLite's json_extract gives it to text */
    const char *json_time;  /* … to a comparison with a time's text */
    const char *json_count; /* … to a comparison with an integer */
    const char *json_len;   /* an array member's length, NULL when absent */
    const char *json_elems; /* a FROM item: an array member's elements, j(value) */
    const char *weekday[2]; /* around a "YYYY-MM-DD": its weekday, 0 = Sunday */
    const char *in_text[2], *in_int[2]; /* around a JSON array parameter: " IN (its values)" */
    const char *ne;                     /* not equal, NULL being a value */
    const char *position;               /* name of f(haystack, needle): 1-based, 0 if absent */
    const char *yes, *no;               /* true, false */
    const char *bytewise;               /* after a text operand compared by order */
};

const struct sd_seg_dialect sd_seg_dialect_sqlite = {
    .name = "sqlite",
    .placeholder = '?',
    .int_type = "",
    .text_type = "",
    .index_hints = true,
    .json_text = "json_extract(%D, '$.%M')",
    .json_num = "json_extract(%D, '$.%M')",
    .json_any = "json_extract(%D, '$.%M')",
    .json_time = "json_extract(%D, '$.%M')",
    .json_count = "json_extract(%D, '$.%M')",
    .json_len = "json_array_length(%D, '$.%M')",
    .json_elems = "json_each(%D, '$.%M') j",
    .weekday = {"CAST(strftime('%w', ", ") AS INTEGER)"},
    .in_text = {" IN (SELECT value FROM json_each(", "))"},
    .in_int = {" IN (SELECT value FROM json_each(", "))"},
    .ne = " IS NOT ",
    .position = "instr",
    .yes = "1",
    .no = "0",
    .bytewise = "",
};

const struct sd_seg_dialect sd_seg_dialect_pg = {
    .name = "postgresql",
    .placeholder = '$',
    .int_type = "::bigint",
    .text_type = "::text",
    .index_hints = false,
    .json_text = "(%D::jsonb ->> '%M')",
    .json_num = "CAST(%D::jsonb ->> '%M' AS numeric)",
    .json_any = "(CASE jsonb_typeof(%D::jsonb -> '%M') WHEN 'boolean'"
                " THEN CAST(CAST(%D::jsonb ->> '%M' AS boolean) AS integer)::text"
                " ELSE %D::jsonb ->> '%M' END)",
    .json_time = "(CASE jsonb_typeof(%D::jsonb -> '%M') WHEN 'number' THEN ''"
                 " WHEN 'boolean' THEN '' ELSE %D::jsonb ->> '%M' END)",
    .json_count = "(CASE jsonb_typeof(%D::jsonb -> '%M')"
                  " WHEN 'number' THEN CAST(%D::jsonb ->> '%M' AS numeric)"
                  " WHEN 'boolean' THEN CAST(CAST(%D::jsonb ->> '%M' AS boolean) AS integer)"
                  " WHEN 'string' THEN CAST('Infinity' AS numeric)"
                  " WHEN 'object' THEN CAST('Infinity' AS numeric)"
                  " WHEN 'array' THEN CAST('Infinity' AS numeric) END)",
    .json_len = "jsonb_array_length(%D::jsonb -> '%M')",
    .json_elems = "jsonb_array_elements(%D::jsonb -> '%M') j",
    .weekday = {"CAST(extract(dow FROM CAST(", " AS date)) AS integer)"},
    .in_text = {" IN (SELECT jsonb_array_elements_text(", "::jsonb))"},
    .in_int = {" IN (SELECT CAST(jsonb_array_elements_text(", "::jsonb) AS bigint))"},
    .ne = " IS DISTINCT FROM ",
    .position = "strpos",
    .yes = "TRUE",
    .no = "FALSE",
    .bytewise = " COLLATE \"C\"",
};

const char *sd_seg_dialect_name(const struct sd_seg_dialect *dialect)
{
    return dialect ? dialect->name : "";
}

struct q {
    const struct sd_seg_dialect *d;
    struct sd_buf sql;
    struct sd_seg_param *params; /* params[k] is parameter first_param + k */
    size_t n_params;
    unsigned first_param;
    int64_t now_sec;
    int64_t today; /* days since 1970-01-01 (UTC) */
    int err;       /* -EINVAL once the tree turned out malformed */
};

/* Append a fixed fragment. Fragments spell the fixed parameters SQLite's way (?1 tenant, ?2
 * env, ?3 after, ?4 limit); a dialect with another placeholder gets its own ($1 …). */
static void put(struct q *q, const char *s)
{
    if (q->d->placeholder == '?') {
        sd_buf_puts(&q->sql, s);
        return;
    }
    for (const char *at; (at = strchr(s, '?')) != NULL; s = at + 1) {
        sd_buf_append(&q->sql, s, (size_t)(at - s));
        sd_buf_append(&q->sql, at[1] >= '0' && at[1] <= '9' ? &q->d->placeholder : "?", 1);
    }
    sd_buf_puts(&q->sql, s);
}

/* x, then what makes the dialect compare it by bytes (an operand of <, >, between …). */
static void put_bytewise(struct q *q, const char *x)
{
    put(q, x);
    put(q, q->d->bytewise);
}

static void put_bool(struct q *q, bool v)
{
    put(q, v ? q->d->yes : q->d->no);
}

/* " INDEXED BY index" where the dialect takes hints. */
static void put_index(struct q *q, const char *index)
{
    if (q->d->index_hints) {
        put(q, " INDEXED BY ");
        put(q, index);
    }
}

/* A JSON member of a document: template t with %D the document, %M the member (a fixed name). */
static void put_json(struct sd_buf *b, const char *t, const char *doc, const char *member)
{
    for (const char *at; (at = strchr(t, '%')) != NULL; t = at + 2) {
        sd_buf_append(b, t, (size_t)(at - t));
        sd_buf_puts(b, at[1] == 'D' ? doc : member);
    }
    sd_buf_puts(b, t);
}

/* Append a new parameter bound to an integer / a text (copied). */
static void param_add(struct q *q, struct sd_seg_param p)
{
    q->params = sd_realloc(q->params, (q->n_params + 1) * sizeof(*q->params));
    q->params[q->n_params] = p;
    sd_buf_printf(&q->sql, "%c%zu%s", q->d->placeholder, q->first_param + q->n_params,
                  p.type == SD_SEG_P_INT ? q->d->int_type : q->d->text_type);
    q->n_params++;
}

static void param_int(struct q *q, int64_t v)
{
    param_add(q, (struct sd_seg_param){SD_SEG_P_INT, v, NULL});
}

static void param_text(struct q *q, const char *v)
{
    param_add(q, (struct sd_seg_param){SD_SEG_P_TEXT, 0, sd_strdup(v ? v : "")});
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

/* Where a field's value comes from (events e, sales s, customers c, cast members j). */
enum source {
    SRC_NONE,    /* not a filter field */
    SRC_COLUMN,  /* a column, as it is */
    SRC_TEXT,    /* a document member the model validates as a string */
    SRC_FOLD,    /* … folded (sd_fold) */
    SRC_NUM,     /* a document member the model validates as an integer */
    SRC_WEEKDAY, /* the weekday of a "YYYY-MM-DD" member */
    /* members the model keeps as sent, of any JSON type (a source writes them) */
    SRC_ANY_TIME,  /* compared with times */
    SRC_ANY_FOLD,  /* folded */
    SRC_ANY_COUNT, /* compared with integers; absent counts 0 */
};

static const struct field {
    enum source src;
    const char *what; /* column, or the document */
    const char *member;
} fields[] = {
    [SD_SEG_F_EVENT_ID] = {SRC_COLUMN, "e.event_id", NULL},
    [SD_SEG_F_TITLE] = {SRC_FOLD, "e.doc", "title"},
    [SD_SEG_F_WORK_TITLE] = {SRC_FOLD, "e.doc", "work_title"},
    [SD_SEG_F_COMPOSER] = {SRC_FOLD, "e.doc", "composer"},
    [SD_SEG_F_CAST] = {SRC_FOLD, "j.value", "name"},
    [SD_SEG_F_VENUE] = {SRC_FOLD, "e.doc", "venue"},
    [SD_SEG_F_HALL] = {SRC_FOLD, "e.doc", "hall"},
    [SD_SEG_F_CITY] = {SRC_FOLD, "e.doc", "city"},
    [SD_SEG_F_DATE] = {SRC_TEXT, "e.doc", "date"},
    [SD_SEG_F_WEEKDAY] = {SRC_WEEKDAY, "e.doc", "date"},
    [SD_SEG_F_TIME] = {SRC_TEXT, "e.doc", "time"},
    [SD_SEG_F_TICKET_CATEGORY] = {SRC_TEXT, "s.doc", "ticket_category"},
    [SD_SEG_F_PURCHASED] = {SRC_COLUMN, "s.purchase_datetime", NULL},
    [SD_SEG_F_PRICE] = {SRC_COLUMN, "s.sales_price_minor", NULL},
    [SD_SEG_F_CURRENCY] = {SRC_COLUMN, "s.currency", NULL},
    [SD_SEG_F_QUANTITY] = {SRC_NUM, "s.doc", "quantity"},
    [SD_SEG_F_POST_CODE] = {SRC_COLUMN, "c.seg_post_code", NULL}, /* sd_fold of post_code */
    [SD_SEG_F_CUSTOMER_CITY] = {SRC_COLUMN, "c.seg_city", NULL},  /* sd_fold of city */
    [SD_SEG_F_SALUTATION] = {SRC_FOLD, "c.doc", "salutation"},
    [SD_SEG_F_SOURCE] = {SRC_COLUMN, "c.source", NULL},
    [SD_SEG_F_ACTIVITIES] = {SRC_ANY_COUNT, "c.doc", "activity_count"},
    [SD_SEG_F_LAST_ACTIVITY] = {SRC_ANY_TIME, "c.doc", "last_activity_at"},
    [SD_SEG_F_LAST_ACTIVITY_TYPE] = {SRC_ANY_FOLD, "c.doc", "last_activity_type"},
    [SD_SEG_F_LAST_ACTIVITY_CAMPAIGN] = {SRC_ANY_FOLD, "c.doc", "last_activity_campaign"},
    [SD_SEG_F_STATUS] = {SRC_COLUMN, "s.status", NULL},
    [SD_SEG_F_STATUS_CHANGED] = {SRC_COLUMN, "s.status_changed", NULL},
    [SD_SEG_F_ATTENDED] = {SRC_COLUMN, "s.attended_quantity", NULL},
    [SD_SEG_F_ORDER_TYPE] = {SRC_COLUMN, "s.order_type", NULL},
    [SD_SEG_F_EXPIRES] = {SRC_COLUMN, "s.expires", NULL},
    [SD_SEG_F_MEASURE] = {SRC_NONE, NULL, NULL},
};

/* The SQL expression a field's condition compares, into *ret (initialised here, the caller
 * releases it); false for a field no filter has. */
static bool field_expr(const struct sd_seg_dialect *d, enum sd_seg_field f, struct sd_buf *ret)
{
    sd_buf_init(ret);
    if ((unsigned)f >= sizeof(fields) / sizeof(fields[0]) || fields[f].src == SRC_NONE) {
        return false;
    }
    const struct field *x = &fields[f];
    switch (x->src) {
    case SRC_NONE: return false;
    case SRC_COLUMN: sd_buf_puts(ret, x->what); break;
    case SRC_TEXT: put_json(ret, d->json_text, x->what, x->member); break;
    case SRC_FOLD:
    case SRC_ANY_FOLD:
        sd_buf_puts(ret, "sd_fold(");
        put_json(ret, x->src == SRC_FOLD ? d->json_text : d->json_any, x->what, x->member);
        sd_buf_puts(ret, ")");
        break;
    case SRC_NUM: put_json(ret, d->json_num, x->what, x->member); break;
    case SRC_WEEKDAY:
        sd_buf_puts(ret, d->weekday[0]);
        put_json(ret, d->json_text, x->what, x->member);
        sd_buf_puts(ret, d->weekday[1]);
        break;
    case SRC_ANY_TIME: put_json(ret, d->json_time, x->what, x->member); break;
    case SRC_ANY_COUNT:
        sd_buf_puts(ret, "coalesce(");
        put_json(ret, d->json_count, x->what, x->member);
        sd_buf_puts(ret, ", 0)");
        break;
    }
    return true;
}

/* A value list as a JSON array text parameter, expanded into " IN (its values)". */
static void param_list(struct q *q, const struct sd_seg_cond *c, bool text)
{
    json_t *a = json_array();
    for (size_t i = 0; i < c->n; i++) {
        json_array_append_new(a, text ? json_string(c->v[i].text ? c->v[i].text : "")
                                      : json_integer(c->v[i].num));
    }
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    put(q, text ? q->d->in_text[0] : q->d->in_int[0]);
    param_text(q, s ? s : "[]");
    put(q, text ? q->d->in_text[1] : q->d->in_int[1]);
    free(s);
}

/* Text or number comparison of expression x. */
static void compare(struct q *q, const char *x, const struct sd_seg_cond *c, bool text)
{
    static const char *const sym[] = {
        [SD_SEG_EQ] = " = ",   [SD_SEG_NE] = NULL,  [SD_SEG_GT] = " > ",
        [SD_SEG_GTE] = " >= ", [SD_SEG_LT] = " < ", [SD_SEG_LTE] = " <= ",
    };
    bool ordered = text && c->op != SD_SEG_EQ && c->op != SD_SEG_NE;
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
        ordered ? put_bytewise(q, x) : put(q, x);
        put(q, c->op == SD_SEG_NE ? q->d->ne : sym[c->op]);
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
        ordered ? put_bytewise(q, x) : put(q, x);
        put(q, " BETWEEN ");
        text ? param_text(q, c->v[0].text) : param_int(q, c->v[0].num);
        put(q, " AND ");
        text ? param_text(q, c->v[1].text) : param_int(q, c->v[1].num);
        break;
    case SD_SEG_IN:
        put(q, x);
        param_list(q, c, text);
        break;
    case SD_SEG_CONTAINS:
    case SD_SEG_PREFIX:
        if (c->n != 1 || !text) {
            q->err = -EINVAL;
            break;
        }
        put(q, q->d->position);
        put(q, "(");
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
        put_bytewise(q, x);
        put(q, " >= ");
        param_time(q, r->lo, by_day);
    }
    if (r->has_lo && r->has_hi) {
        put(q, " AND ");
    }
    if (r->has_hi) {
        put_bytewise(q, x);
        put(q, " < ");
        param_time(q, r->hi, by_day);
    }
    if (!r->has_lo && !r->has_hi) {
        put_bool(q, true);
    }
    put(q, ")");
}

/* One filter condition on the current row (events e, sales s, customers c). */
static void cond_sql(struct q *q, const struct sd_seg_cond *c)
{
    struct sd_buf xb;
    if (!field_expr(q->d, c->field, &xb)) {
        sd_buf_release(&xb);
        q->err = -EINVAL;
        return;
    }
    const char *x = xb.data;
    if (c->field == SD_SEG_F_DATE || c->field == SD_SEG_F_PURCHASED ||
        c->field == SD_SEG_F_STATUS_CHANGED || c->field == SD_SEG_F_EXPIRES ||
        c->field == SD_SEG_F_LAST_ACTIVITY) {
        bool by_day = c->field == SD_SEG_F_DATE;
        struct range r;
        if (c->op == SD_SEG_EXISTS) {
            if (c->field == SD_SEG_F_DATE || c->field == SD_SEG_F_PURCHASED) {
                put_bool(q, c->exists); /* both are required fields */
            } else {
                put(q, x);
                put(q, c->exists ? " IS NOT NULL" : " IS NULL");
            }
        } else if (cond_range(q, c, by_day, &r) < 0) {
            q->err = -EINVAL;
        } else {
            if (r.negate) {
                put(q, "NOT ");
            }
            range_sql(q, x, &r, by_day);
        }
    } else if (c->field == SD_SEG_F_CAST) {
        struct sd_buf cast;
        sd_buf_init(&cast);
        if (c->op == SD_SEG_EXISTS) {
            put_json(&cast, q->d->json_len, "e.doc", "cast");
            put(q, "(coalesce(");
            put(q, cast.data);
            put(q, c->exists ? ", 0) > 0)" : ", 0) = 0)");
        } else {
            /* ne: no cast member has the name. */
            struct sd_seg_cond eq = *c;
            if (c->op == SD_SEG_NE) {
                eq.op = SD_SEG_EQ;
            }
            put_json(&cast, q->d->json_elems, "e.doc", "cast");
            put(q, c->op == SD_SEG_NE ? "NOT EXISTS" : "EXISTS");
            put(q, " (SELECT 1 FROM ");
            put(q, cast.data);
            put(q, " WHERE ");
            compare(q, x, &eq, true);
            put(q, ")");
        }
        sd_buf_release(&cast);
    } else if (c->field == SD_SEG_F_PRICE) {
        put(q, "(s.currency = ");
        param_text(q, c->currency);
        put(q, " AND ");
        compare(q, x, c, false);
        put(q, ")");
    } else {
        compare(q, x, c, is_text_field(c->field));
    }
    sd_buf_release(&xb);
}

/* Extra purchase-time bounds of a bought leaf (first/last purchase rewrites). */
struct bounds {
    bool has_lo, has_hi;
    int64_t lo, hi; /* seconds */
};

/* Which index a sales subquery reads, where the dialect takes hints (SQLite: the indexes of
 * its 0004_segment_indexes.sql). */
static const char *sales_index(const struct sd_seg_cond *where, size_t n_where,
                               enum sd_seg_measure m, bool is_count)
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

/* The partial index of the rows that are not plain sold sales (seg_sales_lifecycle); the query
 * repeats its WHERE term word for word, which SQLite needs to use it (PostgreSQL proves it). */
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
               " AND s.status = 'open' AND (s.expires IS NULL OR ");
        put_bytewise(q, "s.expires");
        put(q, " > ");
        param_time(q, q->now_sec, false);
        put(q, ")");
        return;
    case BASE_ABANDONED: put(q, " AND " LIFECYCLE_ROWS " AND s.order_type = 'abandoned'"); return;
    }
}

/* " FROM sales s [INDEXED BY …] [join] WHERE <scope, filters, currency, bounds>". */
static void sales_from(struct q *q, const char *index, const char *join,
                       const struct sd_seg_cond *where, size_t n_where, const char *currency,
                       const struct bounds *b, enum base base)
{
    put(q, " FROM sales s");
    put_index(q, base >= BASE_REFUNDED ? "seg_sales_lifecycle" : index);
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
        put(q, " AND ");
        put_bytewise(q, "s.purchase_datetime");
        put(q, " >= ");
        param_time(q, b->lo, false);
    }
    if (b && b->has_hi) {
        put(q, " AND ");
        put_bytewise(q, "s.purchase_datetime");
        put(q, " < ");
        param_time(q, b->hi, false);
    }
}

/* "p.id IN (profiles of the customers with a matching sale)", or NOT IN. The sales give the
 * distinct customer keys first, so each buyer's profile is looked up once, not once a sale. */
static void facts_leaf(struct q *q, bool in, const struct sd_seg_rule *r, const struct bounds *b,
                       enum base base)
{
    put(q, in ? "p.id IN (" : "p.id NOT IN (");
    put(q, "SELECT c.profile_id FROM customers c");
    put_index(q, "seg_customers_key");
    put(q, " WHERE c.tenant_id = ?1 AND c.env = ?2 AND c.profile_id IS NOT NULL"
           " AND (c.source, c.customer_id) IN (SELECT s.source, s.customer_id");
    sales_from(q, sales_index(r->where, r->n_where, 0, false), NULL, r->where, r->n_where, NULL, b,
               base);
    if (r->kind == SD_SEG_ABANDONED && r->not_bought_since) {
        /* no live sale of the same profile (any of its source records) purchased after it */
        put(q, " AND NOT EXISTS (SELECT 1 FROM customers c1");
        put_index(q, "seg_customers_key");
        put(q, " JOIN customers c2");
        put_index(q, "customers_profile");
        put(q, " ON c2.profile_id = c1.profile_id JOIN sales s2");
        put_index(q, "sales_customer");
        put(q, " ON s2.tenant_id = ?1 AND s2.env = ?2"
               " AND s2.source = c2.source AND s2.customer_id = c2.customer_id"
               " WHERE c1.tenant_id = ?1 AND c1.env = ?2 AND c1.source = s.source"
               " AND c1.customer_id = s.customer_id AND c2.tenant_id = ?1 AND c2.env = ?2"
               " AND s2.net_quantity > 0 AND ");
        put_bytewise(q, "s2.purchase_datetime");
        put(q, " > s.purchase_datetime)");
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
 * (profile_facts), which hold exactly the sums the sales path computes, per currency, in one
 * pass over them (their primary key, in profile order). Spend in one currency is one row per
 * profile, compared as it is; the others sum a profile's rows. */
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

/* Counts are per profile, over all its source records. Without a `where`, purchases, tickets and
 * spend come from the per-profile facts (count_facts_leaf). Otherwise purchases, tickets and
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
    const char *index = sales_index(r->where, r->n_where, r->measure, true);
    const char *currency = r->measure == SD_SEG_M_SPEND ? r->currency : NULL;
    const char *total;
    put(q, zero ? "p.id NOT IN (" : "p.id IN (");
    if (r->measure == SD_SEG_M_EVENTS) {
        put(q, "SELECT c.profile_id");
        /* CROSS JOIN keeps sales the outer loop in SQLite: the filters first, then each
         * matching sale's customer key to its profile (PostgreSQL reads it as a plain join). */
        sales_from(q, index,
                   q->d->index_hints ? " CROSS JOIN customers c INDEXED BY seg_customers_key"
                                     : " CROSS JOIN customers c",
                   r->where, r->n_where, NULL, NULL, base);
        put(q, " AND c.tenant_id = ?1 AND c.env = ?2 AND c.source = s.source"
               " AND c.customer_id = s.customer_id AND c.profile_id IS NOT NULL");
        total = "count(DISTINCT s.event_ref)";
    } else {
        put(q, "SELECT c.profile_id FROM (SELECT s.source AS src, s.customer_id AS cid, ");
        put(q, partial[r->measure]);
        put(q, " AS v");
        sales_from(q, index, NULL, r->where, r->n_where, currency, NULL, base);
        put(q, " GROUP BY s.source, s.customer_id) x JOIN customers c");
        put_index(q, "seg_customers_key");
        put(q, " ON c.tenant_id = ?1 AND c.env = ?2 AND c.source = x.src"
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
 * "bought, and not within"; exists false is "no live purchase". The extreme is taken in byte
 * order, like every comparison of times. */
static void purchase_facts_leaf(struct q *q, const struct sd_seg_rule *r)
{
    struct sd_buf xb;
    sd_buf_init(&xb);
    bool last = r->kind == SD_SEG_LAST_PURCHASE;
    sd_buf_puts(&xb, last ? "max(f.last_purchase" : "min(f.first_purchase");
    sd_buf_puts(&xb, q->d->bytewise);
    sd_buf_puts(&xb, ")");
    const char *x = xb.data;
    put(q, "(");
    for (size_t i = 0; i < r->n_cmp && !q->err; i++) {
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
                break;
            }
            put(q, g.negate ? " AND NOT " : " AND ");
            range_sql(q, x, &g, false);
        }
        put(q, ")");
    }
    put(q, ")");
    sd_buf_release(&xb);
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

/* A prefix as the index range [p, p with its last character raised) on column x, ANDed to the
 * exact position test that compare() writes. Text compares bytewise, and UTF-8's byte order is
 * its code points' order, so every string that starts with p lies in the range. The bound stays
 * valid UTF-8 (PostgreSQL refuses anything else): the last code point is raised to the next
 * scalar value, skipping the surrogates; a last U+10FFFF is dropped and the one before raised;
 * text that does not decode (never folded text) gets no upper bound. */
static void prefix_range(struct q *q, const char *x, const char *p)
{
    put(q, " AND ");
    put_bytewise(q, x);
    put(q, " >= ");
    param_text(q, p);
    size_t n = strlen(p), at = 0, keep = 0;
    uint32_t last = 0;
    bool any = false;
    while (at < n) {
        uint32_t cp;
        int len = sd_utf8_next(p + at, n - at, &cp);
        if (len <= 0) {
            return;
        }
        if (cp != 0x10FFFF) {
            keep = at;
            last = cp;
            any = true;
        }
        at += (size_t)len;
    }
    if (!any) {
        return;
    }
    uint32_t cp = last == 0xD7FF ? 0xE000 : last + 1;
    char hi_cp[4];
    size_t hi_len;
    if (cp < 0x80) {
        hi_cp[0] = (char)cp;
        hi_len = 1;
    } else if (cp < 0x800) {
        hi_cp[0] = (char)(0xC0 | (cp >> 6));
        hi_cp[1] = (char)(0x80 | (cp & 0x3F));
        hi_len = 2;
    } else if (cp < 0x10000) {
        hi_cp[0] = (char)(0xE0 | (cp >> 12));
        hi_cp[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        hi_cp[2] = (char)(0x80 | (cp & 0x3F));
        hi_len = 3;
    } else {
        hi_cp[0] = (char)(0xF0 | (cp >> 18));
        hi_cp[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        hi_cp[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        hi_cp[3] = (char)(0x80 | (cp & 0x3F));
        hi_len = 4;
    }
    struct sd_buf hi;
    sd_buf_init(&hi);
    sd_buf_append(&hi, p, keep);
    sd_buf_append(&hi, hi_cp, hi_len);
    put(q, " AND ");
    put_bytewise(q, x);
    put(q, " < ");
    param_text(q, hi.data);
    sd_buf_release(&hi);
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
        put_index(q, index);
    }
    put(q, " WHERE c.tenant_id = ?1 AND c.env = ?2 AND c.profile_id IS NOT NULL");
    for (size_t i = 0; i < r->n_where; i++) {
        put(q, " AND ");
        cond_sql(q, &r->where[i]);
    }
    const struct sd_seg_cond *c = index ? &r->where[at] : NULL;
    if (c && c->op == SD_SEG_PREFIX && c->n == 1 && c->v[0].text) {
        struct sd_buf xb;
        if (field_expr(q->d, c->field, &xb)) {
            prefix_range(q, xb.data, c->v[0].text);
        }
        sd_buf_release(&xb);
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
            put_bool(q, r->kind == SD_SEG_ALL);
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

static void q_release(struct q *q)
{
    sd_buf_release(&q->sql);
    for (size_t i = 0; i < q->n_params; i++) {
        free(q->params[i].text);
    }
    free(q->params);
}

int sd_seg_sql_build(const struct sd_seg_rule *rule, int64_t now_usec, bool count_only,
                     const struct sd_seg_dialect *dialect, struct sd_seg_sql *ret)
{
    if (!rule || !dialect || !ret) {
        return -EINVAL;
    }
    struct q q = {.d = dialect, .first_param = count_only ? 3 : 5};
    sd_buf_init(&q.sql);
    q.now_sec = now_usec / 1000000;
    q.today = q.now_sec >= 0 ? q.now_sec / 86400 : -((-q.now_sec + 86399) / 86400);
    put(&q, count_only ? "SELECT count(*)" : "SELECT p.id");
    put(&q, " FROM profiles p WHERE p.tenant_id = ?1 AND p.env = ?2 AND p.opt_out = 0"
            " AND p.suppressed = 0");
    if (!count_only) {
        put(&q, " AND p.id > ?3");
    }
    put(&q, " AND ");
    rule_sql(&q, rule, 0);
    if (!count_only) {
        put(&q, " ORDER BY p.id LIMIT ?4");
    }
    if (q.err < 0) {
        int r = q.err;
        q_release(&q);
        return r;
    }
    size_t len = q.sql.len; /* before the steal empties the buffer */
    *ret = (struct sd_seg_sql){
        .len = len,
        .sql = sd_buf_steal(&q.sql),
        .params = q.params,
        .n_params = q.n_params,
        .first_param = q.first_param,
    };
    return 0;
}

void sd_seg_sql_release(struct sd_seg_sql *q)
{
    if (!q) {
        return;
    }
    free(q->sql);
    for (size_t i = 0; i < q->n_params; i++) {
        free(q->params[i].text);
    }
    free(q->params);
    *q = (struct sd_seg_sql){0};
}
