/* segment_rules.c — parser and checker of the segment rule language (segment_rules.h).
 *
 * One recursive descent over the JSON, building the store's rule tree (store/audience.h) as it
 * goes. Invariants:
 *  - Every problem is reported with the JSON Pointer of the node at fault, and parsing goes on
 *    after one (siblings are still checked), so one 400 lists everything wrong. The result is
 *    all-or-nothing: any error frees the partial tree.
 *  - Values leave here in the form the store compares: text of case-insensitive fields folded
 *    with sd_text_fold (the same folding the store applies to the stored side), ticket
 *    categories and currencies in their canonical spelling, money in minor units of the named
 *    currency, times of day as "HH:MM:SS", weekdays as 0 (Sunday) .. 6, points in time as a
 *    day, an instant or a distance from "now" (resolved by the store at query time).
 *  - Input is bounded before it costs anything: nesting (SD_SEG_RULE_DEPTH_MAX), nodes
 *    (SD_SEG_RULE_NODES_MAX, counted before a node is descended into), list and text sizes.
 *    Names quoted back in messages are cut to a few dozen bytes of valid UTF-8. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/base.h"
#include "core/segment_rules.h"

#define NUM_MAX 1000000000000LL      /* counts, quantities */
#define MONEY_MAX 1000000000000000LL /* minor units */
#define NAME_QUOTE_MAX 40            /* bytes of a key quoted in a message */

/* ---- tables ---------------------------------------------------------------------------------- */

enum ftype {
    FT_TEXT,     /* folded text */
    FT_EXACT,    /* text compared as sent */
    FT_CATEGORY, /* ticket category */
    FT_CURRENCY,
    FT_NUM,
    FT_MONEY,
    FT_CLOCK, /* time of day */
    FT_WEEKDAY,
    FT_TIME,   /* a point in time */
    FT_TIME_M, /* a point in time, or exists (first/last purchase) */
    FT_STATUS, /* a sales record status */
    FT_ORDER,  /* a held order type: reservation or option */
    FT_TIME_O, /* a point in time that may be absent (exists too) */
};

struct field_def {
    const char *name;
    enum sd_seg_field field;
    enum ftype type;
};

static const struct field_def sale_fields[] = {
    {"event_id", SD_SEG_F_EVENT_ID, FT_EXACT},
    {"title", SD_SEG_F_TITLE, FT_TEXT},
    {"work_title", SD_SEG_F_WORK_TITLE, FT_TEXT},
    {"composer", SD_SEG_F_COMPOSER, FT_TEXT},
    {"cast", SD_SEG_F_CAST, FT_TEXT},
    {"venue", SD_SEG_F_VENUE, FT_TEXT},
    {"hall", SD_SEG_F_HALL, FT_TEXT},
    {"city", SD_SEG_F_CITY, FT_TEXT},
    {"date", SD_SEG_F_DATE, FT_TIME},
    {"weekday", SD_SEG_F_WEEKDAY, FT_WEEKDAY},
    {"time", SD_SEG_F_TIME, FT_CLOCK},
    {"ticket_category", SD_SEG_F_TICKET_CATEGORY, FT_CATEGORY},
    {"purchased", SD_SEG_F_PURCHASED, FT_TIME},
    {"price", SD_SEG_F_PRICE, FT_MONEY},
    {"currency", SD_SEG_F_CURRENCY, FT_CURRENCY},
    {"quantity", SD_SEG_F_QUANTITY, FT_NUM},
    {"status", SD_SEG_F_STATUS, FT_STATUS},
    {"status_changed", SD_SEG_F_STATUS_CHANGED, FT_TIME_O},
    {"attended", SD_SEG_F_ATTENDED, FT_NUM},
    {NULL, 0, 0},
};
static const char sale_field_names[] = "event_id, title, work_title, composer, cast, venue, hall, "
                                       "city, date, weekday, time, ticket_category, purchased, "
                                       "price, currency, quantity, status, status_changed, "
                                       "attended";

/* An open reservation or option: the sale fields, its type and its expiry. */
static const struct field_def hold_fields[] = {
    {"event_id", SD_SEG_F_EVENT_ID, FT_EXACT},
    {"title", SD_SEG_F_TITLE, FT_TEXT},
    {"work_title", SD_SEG_F_WORK_TITLE, FT_TEXT},
    {"composer", SD_SEG_F_COMPOSER, FT_TEXT},
    {"cast", SD_SEG_F_CAST, FT_TEXT},
    {"venue", SD_SEG_F_VENUE, FT_TEXT},
    {"hall", SD_SEG_F_HALL, FT_TEXT},
    {"city", SD_SEG_F_CITY, FT_TEXT},
    {"date", SD_SEG_F_DATE, FT_TIME},
    {"weekday", SD_SEG_F_WEEKDAY, FT_WEEKDAY},
    {"time", SD_SEG_F_TIME, FT_CLOCK},
    {"ticket_category", SD_SEG_F_TICKET_CATEGORY, FT_CATEGORY},
    {"purchased", SD_SEG_F_PURCHASED, FT_TIME},
    {"price", SD_SEG_F_PRICE, FT_MONEY},
    {"currency", SD_SEG_F_CURRENCY, FT_CURRENCY},
    {"quantity", SD_SEG_F_QUANTITY, FT_NUM},
    {"order_type", SD_SEG_F_ORDER_TYPE, FT_ORDER},
    {"expires", SD_SEG_F_EXPIRES, FT_TIME_O},
    {NULL, 0, 0},
};
static const char hold_field_names[] = "event_id, title, work_title, composer, cast, venue, hall, "
                                       "city, date, weekday, time, ticket_category, purchased, "
                                       "price, currency, quantity, order_type, expires";

static const char *const statuses[] = {"sold", "refunded", "cancelled", "exchanged",
                                       "open", "freed",    NULL};
static const char *const held_types[] = {"reservation", "option", NULL};

static const struct field_def customer_fields[] = {
    {"post_code", SD_SEG_F_POST_CODE, FT_TEXT},
    {"city", SD_SEG_F_CUSTOMER_CITY, FT_TEXT},
    {"salutation", SD_SEG_F_SALUTATION, FT_TEXT},
    {"source", SD_SEG_F_SOURCE, FT_EXACT},
    {"activities", SD_SEG_F_ACTIVITIES, FT_NUM},
    {"last_activity", SD_SEG_F_LAST_ACTIVITY, FT_TIME_O},
    {"last_activity_type", SD_SEG_F_LAST_ACTIVITY_TYPE, FT_TEXT},
    {"last_activity_campaign", SD_SEG_F_LAST_ACTIVITY_CAMPAIGN, FT_TEXT},
    {NULL, 0, 0},
};
static const char customer_field_names[] = "post_code, city, salutation, source, activities, "
                                           "last_activity, last_activity_type, "
                                           "last_activity_campaign";

struct op_def {
    const char *name;
    enum sd_seg_op op;
};

static const struct op_def op_defs[] = {
    {"eq", SD_SEG_EQ},
    {"ne", SD_SEG_NE},
    {"gt", SD_SEG_GT},
    {"gte", SD_SEG_GTE},
    {"lt", SD_SEG_LT},
    {"lte", SD_SEG_LTE},
    {"between", SD_SEG_BETWEEN},
    {"in", SD_SEG_IN},
    {"contains", SD_SEG_CONTAINS},
    {"prefix", SD_SEG_PREFIX},
    {"before", SD_SEG_LT},
    {"after", SD_SEG_GT},
    {"exists", SD_SEG_EXISTS},
    {NULL, 0},
};

/* The operators each type takes, in the order messages list them. */
static const char *const ops_of_type[][11] = {
    [FT_TEXT] = {"eq", "ne", "in", "contains", "prefix", "exists", NULL},
    [FT_EXACT] = {"eq", "ne", "in", "prefix", "exists", NULL},
    [FT_CATEGORY] = {"eq", "ne", "in", NULL},
    [FT_CURRENCY] = {"eq", "ne", "in", NULL},
    [FT_NUM] = {"eq", "ne", "gt", "gte", "lt", "lte", "between", "in", NULL},
    [FT_MONEY] = {"eq", "ne", "gt", "gte", "lt", "lte", "between", "in", NULL},
    [FT_CLOCK] = {"eq", "ne", "gt", "gte", "lt", "lte", "between", "in", NULL},
    [FT_WEEKDAY] = {"eq", "ne", "in", NULL},
    [FT_TIME] = {"eq", "ne", "before", "after", "gt", "gte", "lt", "lte", "between", NULL},
    [FT_TIME_M] = {"eq", "ne", "before", "after", "gt", "gte", "lt", "lte", "between", "exists",
                   NULL},
    [FT_STATUS] = {"eq", "ne", "in", NULL},
    [FT_ORDER] = {"eq", "ne", "in", NULL},
    [FT_TIME_O] = {"eq", "ne", "before", "after", "gt", "gte", "lt", "lte", "between", "exists",
                   NULL},
};

static const char rule_names[] = "all, any, not, bought, count, first_purchase, last_purchase, "
                                 "customer, refunded, holds, abandoned";

static const char *const weekdays[] = {"sunday",   "monday", "tuesday", "wednesday",
                                       "thursday", "friday", "saturday"};

static const char *const categories[] = {"regular", "VIP", "subscription", "comp"};

/* ---- parser state, pointers, messages -------------------------------------------------------- */

struct parser {
    struct sd_buf path;
    const char *root; /* pointer of the whole rule */
    struct sd_issues *errors;
    size_t nodes;
    bool too_big; /* the node limit was hit and reported: stop descending */
};

static void errp(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void errp(struct parser *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = sd_vasprintf(fmt, ap);
    va_end(ap);
    sd_issues_add(p->errors, p->path.data, "%s", msg);
    free(msg);
}

/* Append key (keylen bytes, maybe with NUL or bad UTF-8) to b: invalid sequences and control
 * characters become U+FFFD; with `pointer`, '~' and '/' are escaped (RFC 6901); with `max`,
 * at most that many bytes are copied and "…" marks the cut. */
static void put_clean(struct sd_buf *b, const char *key, size_t keylen, bool pointer, size_t max)
{
    size_t i = 0, used = 0;
    while (i < keylen) {
        uint32_t cp;
        int n = sd_utf8_next(key + i, keylen - i, &cp);
        if (max && used + (n > 0 ? (size_t)n : 3) > max) {
            sd_buf_puts(b, "\xe2\x80\xa6");
            return;
        }
        if (n < 0 || cp < 0x20 || cp == 0x7f) {
            sd_buf_puts(b, "\xef\xbf\xbd");
            i += n < 0 ? 1 : (size_t)n;
            used += 3;
        } else if (pointer && cp == '~') {
            sd_buf_puts(b, "~0");
            i++;
            used++;
        } else if (pointer && cp == '/') {
            sd_buf_puts(b, "~1");
            i++;
            used++;
        } else {
            sd_buf_append(b, key + i, (size_t)n);
            i += (size_t)n;
            used += (size_t)n;
        }
    }
}

/* A short printable copy of a key for messages. */
static char *quote_name(const char *key, size_t keylen)
{
    struct sd_buf b;
    sd_buf_init(&b);
    sd_buf_puts(&b, "");
    put_clean(&b, key, keylen, false, NAME_QUOTE_MAX);
    return sd_buf_steal(&b);
}

static size_t push_key(struct parser *p, const char *key, size_t keylen)
{
    size_t at = p->path.len;
    sd_buf_append(&p->path, "/", 1);
    put_clean(&p->path, key, keylen, true, 0);
    return at;
}

static size_t push_index(struct parser *p, size_t i)
{
    size_t at = p->path.len;
    sd_buf_printf(&p->path, "/%zu", i);
    return at;
}

static void pop(struct parser *p, size_t at)
{
    p->path.len = at;
    p->path.data[at] = '\0';
}

/* Count one node; false once the limit is passed (reported once, at the rule's root). */
static bool take_node(struct parser *p)
{
    if (p->too_big) {
        return false;
    }
    if (++p->nodes > SD_SEG_RULE_NODES_MAX) {
        p->too_big = true;
        sd_issues_add(p->errors, p->root,
                      "rule is too large: more than %d rules, fields and operators",
                      SD_SEG_RULE_NODES_MAX);
        return false;
    }
    return true;
}

static void list_ops(struct sd_buf *b, enum ftype t)
{
    for (size_t i = 0; ops_of_type[t][i]; i++) {
        sd_buf_printf(b, "%s%s", i ? ", " : "", ops_of_type[t][i]);
    }
}

/* jansson's iterators take a non-const object although walking does not modify it. */
static void *iter_first(const json_t *obj)
{
    return json_object_iter((json_t *)obj);
}

static void *iter_next(const json_t *obj, void *it)
{
    return json_object_iter_next((json_t *)obj, it);
}

static bool key_is(const char *key, size_t keylen, const char *name)
{
    return strlen(name) == keylen && memcmp(key, name, keylen) == 0;
}

/* ---- values ---------------------------------------------------------------------------------- */

/* A usable string value (valid UTF-8, no NUL, not too long); reports otherwise. */
static const char *want_text(struct parser *p, const json_t *v)
{
    if (!json_is_string(v)) {
        errp(p, "must be a string");
        return NULL;
    }
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (strlen(s) != len || !sd_utf8_valid(s, len)) {
        errp(p, "must be valid UTF-8 without NUL characters");
        return NULL;
    }
    if (len > SD_SEG_RULE_TEXT_MAX) {
        errp(p, "must be at most %d bytes long", SD_SEG_RULE_TEXT_MAX);
        return NULL;
    }
    return s;
}

static bool parse_int(struct parser *p, const json_t *v, int64_t max, int64_t *ret)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max) {
        errp(p, "must be an integer from 0 to %lld", (long long)max);
        return false;
    }
    *ret = json_integer_value(v);
    return true;
}

static bool parse_money(struct parser *p, const json_t *v, const char *currency, int64_t *ret)
{
    if (json_is_integer(v)) {
        return parse_int(p, v, MONEY_MAX, ret);
    }
    if (!json_is_string(v)) {
        errp(p, "must be an integer amount in minor units (8900) or a decimal string (\"89.00\")");
        return false;
    }
    int minor = sd_currency_minor_units(currency);
    const char *why = NULL;
    int64_t amount = 0;
    if (minor < 0 || sd_decimal_parse(v, minor, &amount, &why) < 0) {
        errp(p, "%s", why ? why : "must be a decimal amount");
        return false;
    }
    if (amount > MONEY_MAX) {
        errp(p, "is too large");
        return false;
    }
    *ret = amount;
    return true;
}

/* "HH:MM" or "HH:MM:SS" → "HH:MM:SS". */
static bool parse_clock(struct parser *p, const json_t *v, char **ret)
{
    const char *s = want_text(p, v);
    if (!s) {
        return false;
    }
    char full[16];
    size_t len = strlen(s);
    if (len == 5) {
        snprintf(full, sizeof(full), "%s:00", s);
    } else if (len == 8) {
        memcpy(full, s, 9);
    } else {
        full[0] = '\0';
    }
    if (!sd_time_valid(full)) {
        errp(p, "must be a time of day, HH:MM or HH:MM:SS (e.g. 19:30)");
        return false;
    }
    *ret = sd_strdup(full);
    return true;
}

static bool parse_weekday(struct parser *p, const json_t *v, int64_t *ret)
{
    const char *s = want_text(p, v);
    if (!s) {
        return false;
    }
    char *f = sd_text_fold(s);
    bool ok = false;
    for (int i = 0; i < 7 && !ok; i++) {
        if (strcmp(f, weekdays[i]) == 0 || (strlen(f) == 3 && strncmp(f, weekdays[i], 3) == 0)) {
            *ret = i;
            ok = true;
        }
    }
    free(f);
    if (!ok) {
        errp(p, "must be a weekday: monday .. sunday (or mon .. sun)");
    }
    return ok;
}

static bool parse_category(struct parser *p, const json_t *v, char **ret)
{
    const char *s = want_text(p, v);
    if (!s) {
        return false;
    }
    for (size_t i = 0; i < sizeof(categories) / sizeof(categories[0]); i++) {
        if (strcasecmp(s, categories[i]) == 0) {
            *ret = sd_strdup(categories[i]);
            return true;
        }
    }
    errp(p, "must be a ticket category: regular, VIP, subscription or comp");
    return false;
}

/* An active ISO 4217 code (any case) → uppercase into out[4]. */
static bool parse_currency(struct parser *p, const json_t *v, char out[4])
{
    const char *s = want_text(p, v);
    if (!s) {
        return false;
    }
    char up[4] = {0};
    bool shape = strlen(s) == 3;
    for (int i = 0; shape && i < 3; i++) {
        char c = s[i];
        up[i] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
    }
    if (!shape || sd_currency_minor_units(up) < 0) {
        errp(p, "must be an active ISO 4217 currency code (e.g. EUR)");
        return false;
    }
    memcpy(out, up, 4);
    return true;
}

/* Whole-number token of at most 6 digits. */
static bool small_number(const char *s, size_t len, int64_t *ret)
{
    if (len == 0 || len > 6) {
        return false;
    }
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *ret = v;
    return true;
}

/* Seconds per unit word ("day", "days", …), 0 if not a unit. */
static int64_t unit_seconds(const char *s, size_t len)
{
    static const struct {
        const char *name;
        int64_t secs;
    } units[] = {{"minute", 60}, {"hour", 3600}, {"day", 86400}, {"week", 7 * 86400}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        size_t n = strlen(units[i].name);
        if ((len == n || (len == n + 1 && s[n] == 's')) && strncmp(s, units[i].name, n) == 0) {
            return units[i].secs;
        }
    }
    return 0;
}

/* "N unit ago" / "in N unit" (already folded) → seconds before now (negative: after). */
static bool parse_relative(const char *f, int64_t *ret)
{
    const char *sp1 = strchr(f, ' ');
    if (!sp1) {
        return false;
    }
    const char *sp2 = strchr(sp1 + 1, ' ');
    if (!sp2 || strchr(sp2 + 1, ' ')) {
        return false;
    }
    int64_t n, unit;
    int64_t sign;
    if (strcmp(sp2 + 1, "ago") == 0) {
        if (!small_number(f, (size_t)(sp1 - f), &n)) {
            return false;
        }
        unit = unit_seconds(sp1 + 1, (size_t)(sp2 - sp1 - 1));
        sign = 1;
    } else if (sp1 - f == 2 && strncmp(f, "in", 2) == 0) {
        if (!small_number(sp1 + 1, (size_t)(sp2 - sp1 - 1), &n)) {
            return false;
        }
        unit = unit_seconds(sp2 + 1, strlen(sp2 + 1));
        sign = -1;
    } else {
        return false;
    }
    if (unit == 0 || n * unit > (int64_t)SD_SEG_RULE_AGO_MAX * 86400) {
        return false;
    }
    *ret = sign * n * unit;
    return true;
}

static bool parse_time(struct parser *p, const json_t *v, struct sd_seg_time *ret)
{
    static const char help[] = "must be a date (2024-01-31), a date-time (2024-01-31T18:00:00Z) "
                               "or relative: now, today, yesterday, tomorrow, \"730 days ago\", "
                               "\"in 2 weeks\" (units: minutes, hours, days, weeks; at most "
                               "36500 days)";
    const char *s = want_text(p, v);
    if (!s) {
        return false;
    }
    if (sd_date_valid(s)) {
        int m = (s[5] - '0') * 10 + (s[6] - '0');
        int d = (s[8] - '0') * 10 + (s[9] - '0');
        int64_t y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
        *ret = (struct sd_seg_time){SD_SEG_T_DAY, sd_days_from_civil(y, m, d)};
        return true;
    }
    char utc[40];
    if (sd_datetime_to_utc(s, utc, sizeof(utc)) == 0) {
        /* "YYYY-MM-DDTHH:MM:SS…Z": the fraction, if any, is dropped (rules work in seconds). */
        int64_t y =
            (utc[0] - '0') * 1000 + (utc[1] - '0') * 100 + (utc[2] - '0') * 10 + (utc[3] - '0');
        int m = (utc[5] - '0') * 10 + (utc[6] - '0');
        int d = (utc[8] - '0') * 10 + (utc[9] - '0');
        int64_t secs = ((utc[11] - '0') * 10 + (utc[12] - '0')) * 3600 +
                       ((utc[14] - '0') * 10 + (utc[15] - '0')) * 60 +
                       ((utc[17] - '0') * 10 + (utc[18] - '0'));
        *ret =
            (struct sd_seg_time){SD_SEG_T_INSTANT, sd_days_from_civil(y, m, d) * 86400 + secs};
        return true;
    }
    char *f = sd_text_fold(s);
    bool ok = true;
    int64_t ago = 0;
    if (strcmp(f, "now") == 0) {
        *ret = (struct sd_seg_time){SD_SEG_T_AGO, 0};
    } else if (strcmp(f, "today") == 0) {
        *ret = (struct sd_seg_time){SD_SEG_T_DAYS_AGO, 0};
    } else if (strcmp(f, "yesterday") == 0) {
        *ret = (struct sd_seg_time){SD_SEG_T_DAYS_AGO, 1};
    } else if (strcmp(f, "tomorrow") == 0) {
        *ret = (struct sd_seg_time){SD_SEG_T_DAYS_AGO, -1};
    } else if (parse_relative(f, &ago)) {
        *ret = (struct sd_seg_time){SD_SEG_T_AGO, ago};
    } else {
        errp(p, "%s", help);
        ok = false;
    }
    free(f);
    return ok;
}

/* One value of a condition of type t into *out (path at the value). */
static bool parse_value(struct parser *p, enum ftype t, const json_t *v, const char *currency,
                        struct sd_seg_value *out)
{
    const char *s;
    switch (t) {
    case FT_TEXT:
        if (!(s = want_text(p, v))) {
            return false;
        }
        out->text = sd_text_fold(s);
        if (!out->text[0]) {
            errp(p, "must not be empty");
            return false;
        }
        return true;
    case FT_EXACT:
        if (!(s = want_text(p, v))) {
            return false;
        }
        if (!s[0]) {
            errp(p, "must not be empty");
            return false;
        }
        out->text = sd_strdup(s);
        return true;
    case FT_CATEGORY: return parse_category(p, v, &out->text);
    case FT_CURRENCY: {
        char code[4];
        if (!parse_currency(p, v, code)) {
            return false;
        }
        out->text = sd_strdup(code);
        return true;
    }
    case FT_NUM: return parse_int(p, v, NUM_MAX, &out->num);
    case FT_MONEY: return parse_money(p, v, currency, &out->num);
    case FT_CLOCK: return parse_clock(p, v, &out->text);
    case FT_WEEKDAY: return parse_weekday(p, v, &out->num);
    case FT_TIME:
    case FT_TIME_M:
    case FT_TIME_O: return parse_time(p, v, &out->time);
    case FT_STATUS:
    case FT_ORDER: {
        const char *const *names = t == FT_STATUS ? statuses : held_types;
        if (!(s = want_text(p, v))) {
            return false;
        }
        for (size_t i = 0; names[i]; i++) {
            if (strcmp(s, names[i]) == 0) {
                out->text = sd_strdup(names[i]);
                return true;
            }
        }
        errp(p, "%s",
             t == FT_STATUS ? "must be a status: sold, refunded, cancelled, exchanged, "
                              "open or freed"
                            : "must be an order type held: reservation or option");
        return false;
    }
    }
    return false;
}

/* For between: the lower bound must not exceed the upper one (where the two compare). */
static bool between_ordered(enum ftype t, const struct sd_seg_value *v)
{
    switch (t) {
    case FT_NUM:
    case FT_MONEY: return v[0].num <= v[1].num;
    case FT_CLOCK: return strcmp(v[0].text, v[1].text) <= 0;
    case FT_TIME:
    case FT_TIME_M:
    case FT_TIME_O:
        if (v[0].time.kind == v[1].time.kind && v[0].time.kind != SD_SEG_T_AGO &&
            v[0].time.kind != SD_SEG_T_DAYS_AGO) {
            return v[0].time.v <= v[1].time.v;
        }
        if (v[0].time.kind == v[1].time.kind) { /* both relative: more ago comes first */
            return v[0].time.v >= v[1].time.v;
        }
        return true;
    default: return true;
    }
}

static void cond_free_values(struct sd_seg_cond *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].text);
    }
    free(c->v);
    c->v = NULL;
    c->n = 0;
}

struct conds {
    struct sd_seg_cond *v;
    size_t n;
};

/* Parse `op: value` (path at the value) into a new condition appended to cs. */
static bool parse_op(struct parser *p, enum sd_seg_field field, enum ftype t, enum sd_seg_op op,
                     const json_t *v, const char *currency, struct conds *cs)
{
    struct sd_seg_cond c = {.field = field, .op = op};
    if (currency) {
        memcpy(c.currency, currency, 4);
    }
    bool ok = true;
    if (op == SD_SEG_EXISTS) {
        if (!json_is_boolean(v)) {
            errp(p, "must be true or false");
            return false;
        }
        c.exists = json_is_true(v);
    } else if (op == SD_SEG_BETWEEN || op == SD_SEG_IN) {
        size_t n = json_array_size(v);
        if (!json_is_array(v) || (op == SD_SEG_BETWEEN && n != 2) ||
            (op == SD_SEG_IN && (n < 1 || n > SD_SEG_RULE_LIST_MAX))) {
            if (op == SD_SEG_BETWEEN) {
                errp(p, "must be an array of two values [from, to]");
            } else {
                errp(p, "must be an array of 1 to %d values", SD_SEG_RULE_LIST_MAX);
            }
            return false;
        }
        c.v = sd_calloc(n, sizeof(*c.v));
        c.n = n;
        for (size_t i = 0; i < n; i++) {
            size_t at = push_index(p, i);
            ok = parse_value(p, t, json_array_get(v, i), currency, &c.v[i]) && ok;
            pop(p, at);
        }
        if (ok && op == SD_SEG_BETWEEN && !between_ordered(t, c.v)) {
            errp(p, "the first value must not be greater than the second");
            ok = false;
        }
    } else {
        c.v = sd_calloc(1, sizeof(*c.v));
        c.n = 1;
        ok = parse_value(p, t, v, currency, &c.v[0]);
    }
    if (!ok) {
        cond_free_values(&c);
        return false;
    }
    cs->v = sd_realloc(cs->v, (cs->n + 1) * sizeof(*cs->v));
    cs->v[cs->n++] = c;
    return true;
}

/* The operator named key for type t: 1 found, 0 not an operator at all, -1 an operator that
 * t does not take. */
static int find_op(enum ftype t, const char *key, size_t keylen, enum sd_seg_op *ret)
{
    for (size_t i = 0; op_defs[i].name; i++) {
        if (!key_is(key, keylen, op_defs[i].name)) {
            continue;
        }
        for (size_t j = 0; ops_of_type[t][j]; j++) {
            if (strcmp(ops_of_type[t][j], op_defs[i].name) == 0) {
                *ret = op_defs[i].op;
                return 1;
            }
        }
        return -1;
    }
    return 0;
}

static void err_op(struct parser *p, enum ftype t, const char *what, const char *key, size_t keylen,
                   int found, const char *also)
{
    char *name = quote_name(key, keylen);
    struct sd_buf b;
    sd_buf_init(&b);
    if (found < 0) {
        sd_buf_printf(&b, "operator '%s' does not apply to %s (use ", name, what);
    } else {
        sd_buf_printf(&b, "unknown %s '%s' (use ", also ? "key" : "operator", name);
        if (also) {
            sd_buf_printf(&b, "%s, ", also);
        }
    }
    list_ops(&b, t);
    sd_buf_puts(&b, ")");
    errp(p, "%s", b.data);
    sd_buf_release(&b);
    free(name);
}

/* One field's condition (path at the field): {op: value, …}, or the shorthand value (eq) /
 * [values] (in). */
static bool parse_field(struct parser *p, const struct field_def *fd, const json_t *v,
                        struct conds *cs)
{
    if (!take_node(p)) {
        return false;
    }
    if (!json_is_object(v)) {
        if (fd->type == FT_MONEY) {
            errp(p, "must be an object with a currency and operators, e.g. "
                    "{\"currency\": \"EUR\", \"gte\": \"50.00\"}");
            return false;
        }
        if (fd->type == FT_TIME_M) {
            errp(p, "must be an object of operators");
            return false;
        }
        return parse_op(p, fd->field, fd->type, json_is_array(v) ? SD_SEG_IN : SD_SEG_EQ, v, NULL,
                        cs);
    }
    char currency[4] = "";
    bool ok = true;
    if (fd->type == FT_MONEY) {
        const json_t *cur = json_object_get(v, "currency");
        if (!cur) {
            errp(p, "needs a currency: amounts are compared in one currency, e.g. "
                    "{\"currency\": \"EUR\", \"gte\": \"50.00\"}");
            return false;
        }
        size_t at = push_key(p, "currency", 8);
        ok = parse_currency(p, cur, currency);
        pop(p, at);
        if (!ok) {
            return false;
        }
    }
    size_t n_ops = 0;
    for (void *it = iter_first(v); it; it = iter_next(v, it)) {
        const char *key = json_object_iter_key(it);
        size_t keylen = json_object_iter_key_len(it);
        if (fd->type == FT_MONEY && key_is(key, keylen, "currency")) {
            continue;
        }
        enum sd_seg_op op = SD_SEG_EQ;
        int found = find_op(fd->type, key, keylen, &op);
        if (found <= 0) {
            err_op(p, fd->type, fd->name, key, keylen, found,
                   fd->type == FT_MONEY ? "currency" : NULL);
            ok = false;
            continue;
        }
        if (!take_node(p)) {
            return false;
        }
        n_ops++;
        size_t at = push_key(p, key, keylen);
        ok = parse_op(p, fd->field, fd->type, op, json_object_iter_value(it),
                      currency[0] ? currency : NULL, cs) &&
             ok;
        pop(p, at);
    }
    if (n_ops == 0 && ok) {
        struct sd_buf b;
        sd_buf_init(&b);
        list_ops(&b, fd->type);
        errp(p, "needs at least one operator (use %s)", b.data);
        sd_buf_release(&b);
        ok = false;
    }
    return ok;
}

/* An object of filters (path at it): every key a field of `defs`. */
static bool parse_filters(struct parser *p, const json_t *v, const struct field_def *defs,
                          const char *names, struct conds *cs)
{
    if (!json_is_object(v)) {
        errp(p, "must be an object of fields (%s)", names);
        return false;
    }
    bool ok = true;
    for (void *it = iter_first(v); it; it = iter_next(v, it)) {
        const char *key = json_object_iter_key(it);
        size_t keylen = json_object_iter_key_len(it);
        const struct field_def *fd = NULL;
        for (size_t i = 0; defs[i].name && !fd; i++) {
            if (key_is(key, keylen, defs[i].name)) {
                fd = &defs[i];
            }
        }
        if (!fd) {
            char *name = quote_name(key, keylen);
            errp(p, "unknown field '%s' (use %s)", name, names);
            free(name);
            ok = false;
            continue;
        }
        size_t at = push_key(p, key, keylen);
        ok = parse_field(p, fd, json_object_iter_value(it), cs) && ok;
        pop(p, at);
        if (p->too_big) {
            return false;
        }
    }
    return ok;
}

/* ---- rules ----------------------------------------------------------------------------------- */

static struct sd_seg_rule *parse_rule(struct parser *p, const json_t *v, unsigned depth);

static bool parse_kids(struct parser *p, struct sd_seg_rule *r, const json_t *v, unsigned depth)
{
    if (!json_is_array(v)) {
        errp(p, "must be an array of rules");
        return false;
    }
    bool ok = true;
    size_t n = json_array_size(v);
    r->kids = sd_calloc(n ? n : 1, sizeof(*r->kids));
    for (size_t i = 0; i < n && !p->too_big; i++) {
        size_t at = push_index(p, i);
        struct sd_seg_rule *kid = parse_rule(p, json_array_get(v, i), depth + 1);
        pop(p, at);
        if (!kid) {
            ok = false;
            continue;
        }
        r->kids[r->n_kids++] = kid;
    }
    return ok && !p->too_big;
}

/* The body of count / first_purchase / last_purchase (path at it). */
static bool parse_measure(struct parser *p, struct sd_seg_rule *r, const json_t *v)
{
    bool is_count = r->kind == SD_SEG_COUNT;
    if (!json_is_object(v)) {
        errp(p, is_count ? "must be an object: {\"of\": \"purchases\", \"gte\": 3}"
                         : "must be an object: {\"after\": \"365 days ago\"}");
        return false;
    }
    bool ok = true;
    enum ftype t = FT_TIME_M;
    const char *keys = "where";
    if (is_count) {
        keys = "of, where, currency";
        const json_t *of = json_object_get(v, "of");
        size_t at = push_key(p, "of", 2);
        static const char *const names[] = {"purchases", "tickets", "events", "spend"};
        bool found = false;
        for (size_t i = 0; of && json_is_string(of) && i < 4; i++) {
            if (strcmp(json_string_value(of), names[i]) == 0) {
                r->measure = (enum sd_seg_measure)i;
                found = true;
            }
        }
        if (!found) {
            errp(p, of ? "must be purchases, tickets, events or spend"
                       : "is missing: count purchases, tickets, events or spend");
            ok = false;
        }
        pop(p, at);
        t = FT_NUM;
        const json_t *cur = json_object_get(v, "currency");
        if (found && r->measure == SD_SEG_M_SPEND) {
            t = FT_MONEY;
            at = push_key(p, "currency", 8);
            if (!cur) {
                errp(p, "is missing: spend is summed in one currency");
                ok = false;
            } else if (!parse_currency(p, cur, r->currency)) {
                ok = false;
            }
            pop(p, at);
        } else if (found && cur) {
            at = push_key(p, "currency", 8);
            errp(p, "only a count of spend takes a currency (count purchases, tickets and "
                    "events with a where filter on currency)");
            ok = false;
            pop(p, at);
        }
        if (!ok) {
            return false;
        }
    }
    struct conds where = {0}, cmp = {0};
    for (void *it = iter_first(v); it; it = iter_next(v, it)) {
        const char *key = json_object_iter_key(it);
        size_t keylen = json_object_iter_key_len(it);
        const json_t *val = json_object_iter_value(it);
        if (is_count && (key_is(key, keylen, "of") || key_is(key, keylen, "currency"))) {
            continue;
        }
        size_t at = push_key(p, key, keylen);
        if (key_is(key, keylen, "where")) {
            ok = parse_filters(p, val, sale_fields, sale_field_names, &where) && ok;
            pop(p, at);
            if (p->too_big) {
                break;
            }
            continue;
        }
        pop(p, at);
        enum sd_seg_op op = SD_SEG_EQ;
        int found = find_op(t, key, keylen, &op);
        if (found <= 0) {
            err_op(p, t, is_count ? "a count" : "a purchase time", key, keylen, found, keys);
            ok = false;
            continue;
        }
        if (!take_node(p)) {
            break;
        }
        at = push_key(p, key, keylen);
        ok = parse_op(p, SD_SEG_F_MEASURE, t, op, val, r->currency[0] ? r->currency : NULL, &cmp) &&
             ok;
        pop(p, at);
    }
    if (ok && !p->too_big && cmp.n == 0) {
        struct sd_buf b;
        sd_buf_init(&b);
        list_ops(&b, t);
        errp(p, "needs a comparison (use %s)", b.data);
        sd_buf_release(&b);
        ok = false;
    }
    r->where = where.v;
    r->n_where = where.n;
    r->cmp = cmp.v;
    r->n_cmp = cmp.n;
    return ok && !p->too_big;
}

/* {"abandoned": {filter…, "bought_since": false}} (path at the object): the filters as for
 * bought, and bought_since false to keep only baskets after which nothing was bought. */
static bool parse_abandoned(struct parser *p, struct sd_seg_rule *r, const json_t *v)
{
    if (!json_is_object(v)) {
        errp(p, "must be an object of fields (%s) and bought_since", sale_field_names);
        return false;
    }
    json_t *filters = json_object();
    bool ok = true;
    for (void *it = iter_first(v); it; it = iter_next(v, it)) {
        const char *key = json_object_iter_key(it);
        size_t keylen = json_object_iter_key_len(it);
        const json_t *val = json_object_iter_value(it);
        if (key_is(key, keylen, "bought_since")) {
            size_t at = push_key(p, key, keylen);
            if (!json_is_false(val)) {
                errp(p, "must be false (an abandoned basket with no purchase after it); leave it "
                        "out to keep every basket");
                ok = false;
            }
            r->not_bought_since = true;
            pop(p, at);
        } else {
            json_object_setn(filters, key, keylen, (json_t *)val);
        }
    }
    struct conds cs = {0};
    ok = parse_filters(p, filters, sale_fields, sale_field_names, &cs) && ok;
    r->where = cs.v;
    r->n_where = cs.n;
    json_decref(filters);
    return ok;
}

static struct sd_seg_rule *parse_rule(struct parser *p, const json_t *v, unsigned depth)
{
    if (!take_node(p)) {
        return NULL;
    }
    if (depth > SD_SEG_RULE_DEPTH_MAX) {
        errp(p, "rules are nested more than %d levels deep", SD_SEG_RULE_DEPTH_MAX);
        return NULL;
    }
    if (!json_is_object(v) || json_object_size(v) != 1) {
        errp(p, "must be an object with exactly one key (%s); combine rules with all or any",
             rule_names);
        return NULL;
    }
    void *it = iter_first(v);
    const char *key = json_object_iter_key(it);
    size_t keylen = json_object_iter_key_len(it);
    const json_t *val = json_object_iter_value(it);
    struct sd_seg_rule *r = sd_calloc(1, sizeof(*r));
    bool ok = true;
    size_t at = push_key(p, key, keylen);
    if (key_is(key, keylen, "all") || key_is(key, keylen, "any")) {
        r->kind = key_is(key, keylen, "all") ? SD_SEG_ALL : SD_SEG_ANY;
        ok = parse_kids(p, r, val, depth);
    } else if (key_is(key, keylen, "not")) {
        r->kind = SD_SEG_NOT;
        struct sd_seg_rule *kid = parse_rule(p, val, depth + 1);
        if (kid) {
            r->kids = sd_calloc(1, sizeof(*r->kids));
            r->kids[0] = kid;
            r->n_kids = 1;
        } else {
            ok = false;
        }
    } else if (key_is(key, keylen, "bought")) {
        r->kind = SD_SEG_BOUGHT;
        struct conds cs = {0};
        ok = parse_filters(p, val, sale_fields, sale_field_names, &cs);
        r->where = cs.v;
        r->n_where = cs.n;
    } else if (key_is(key, keylen, "customer")) {
        r->kind = SD_SEG_CUSTOMER;
        struct conds cs = {0};
        ok = parse_filters(p, val, customer_fields, customer_field_names, &cs);
        r->where = cs.v;
        r->n_where = cs.n;
    } else if (key_is(key, keylen, "refunded") || key_is(key, keylen, "holds")) {
        bool holds = key_is(key, keylen, "holds");
        r->kind = holds ? SD_SEG_HOLDS : SD_SEG_REFUNDED;
        struct conds cs = {0};
        ok = parse_filters(p, val, holds ? hold_fields : sale_fields,
                           holds ? hold_field_names : sale_field_names, &cs);
        r->where = cs.v;
        r->n_where = cs.n;
    } else if (key_is(key, keylen, "abandoned")) {
        r->kind = SD_SEG_ABANDONED;
        ok = parse_abandoned(p, r, val);
    } else if (key_is(key, keylen, "count")) {
        r->kind = SD_SEG_COUNT;
        ok = parse_measure(p, r, val);
    } else if (key_is(key, keylen, "first_purchase") || key_is(key, keylen, "last_purchase")) {
        r->kind =
            key_is(key, keylen, "first_purchase") ? SD_SEG_FIRST_PURCHASE : SD_SEG_LAST_PURCHASE;
        ok = parse_measure(p, r, val);
    } else {
        pop(p, at);
        char *name = quote_name(key, keylen);
        errp(p, "unknown rule '%s' (use %s)", name, rule_names);
        free(name);
        free(r);
        return NULL;
    }
    pop(p, at);
    if (!ok) {
        sd_seg_rule_free(r);
        return NULL;
    }
    return r;
}

int sd_seg_rule_parse(const json_t *rule, const char *ptr, struct sd_seg_rule **ret,
                      struct sd_issues *errors)
{
    struct parser p = {.root = ptr ? ptr : "", .errors = errors};
    sd_buf_init(&p.path);
    sd_buf_puts(&p.path, p.root);
    size_t e0 = errors->total;
    struct sd_seg_rule *r = rule ? parse_rule(&p, rule, 1) : NULL;
    if (!rule) {
        errp(&p, "is missing");
    }
    sd_buf_release(&p.path);
    if (!r || errors->total != e0) {
        sd_seg_rule_free(r);
        if (errors->total == e0) {
            sd_issues_add(errors, p.root, "is not a valid rule");
        }
        return -EINVAL;
    }
    *ret = r;
    return 0;
}
