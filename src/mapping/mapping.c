/* mapping.c — mapping specs (parse, check, normalize) and applying them to source records.
 *
 * Design invariants:
 *  - All checking and precomputation happens once in sd_mapping_new: the source-name lookup
 *    (one open-addressing hash table holding every "fields" entry plus every model field name
 *    mapped to itself), one hash table per values map, the constants by field, and compiled
 *    date/time formats. Applying a mapping to a row then costs one hash lookup per cell and
 *    the json_t the record needs — no other allocation for rows of up to CELLS_ON_STACK cells.
 *  - The tables' keys point into m->spec, the normalized copy the mapping owns and never
 *    modifies; the caller's spec is not referenced after sd_mapping_new returns.
 *  - Priority when several source members name one model field: the lowest rank wins among
 *    non-empty members; rank = position in "fields", a member named as the model field itself
 *    ranks after all of them, equal ranks (a repeated column) keep the first.
 *  - Issues are always valid UTF-8: source names and values are echoed sanitized (bad bytes →
 *    U+FFFD), values cut at 40 bytes, names at SD_MAPPING_MAX_NAME; pointers are RFC 6901.
 *  - A record is all-or-nothing: any conversion error frees the partial record and returns NULL
 *    after every cell was looked at, so one answer lists every problem of the row. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/base.h"
#include "mapping/mapping_internal.h"
#include "model/tz.h"

#define VALUE_ECHO_MAX 40 /* bytes of a source value quoted in a message */
#define CELLS_ON_STACK 64
/* Rank of a member named as the model field itself: after every "fields" entry. */
#define RANK_SELF (INT_MAX - 1)
#define SUGGEST_MAX_LEN 40 /* longer unknown names get no "did you mean" */

/* ---- hash table: byte string → entry ------------------------------------------------------ */

struct entry {
    const char *key; /* NULL: free slot */
    size_t len;
    uint32_t hash;
    int target;          /* names table: model field index */
    int rank;            /* names table: priority, lower wins */
    const json_t *value; /* values maps: the model value */
};

struct table {
    struct entry *slots; /* NULL: empty table */
    size_t mask;
    size_t n;
};

static uint32_t hash_bytes(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static void table_init(struct table *t, size_t expect)
{
    size_t cap = 16;
    while (cap < expect * 2) {
        cap <<= 1;
    }
    t->slots = sd_calloc(cap, sizeof(*t->slots));
    t->mask = cap - 1;
    t->n = 0;
}

static void table_release(struct table *t)
{
    free(t->slots);
    *t = (struct table){0};
}

static const struct entry *table_find(const struct table *t, const char *key, size_t len)
{
    if (!t->slots) {
        return NULL;
    }
    uint32_t h = hash_bytes(key, len);
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        const struct entry *e = &t->slots[i];
        if (!e->key) {
            return NULL;
        }
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0) {
            return e;
        }
    }
}

/* The entry for key, new (key set, rest zero) or existing. The table never fills beyond half
 * (table_init sizes it for every key it will get), so probing always ends. */
static struct entry *table_add(struct table *t, const char *key, size_t len, bool *ret_existed)
{
    uint32_t h = hash_bytes(key, len);
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        struct entry *e = &t->slots[i];
        if (!e->key) {
            *e = (struct entry){.key = key, .len = len, .hash = h};
            t->n++;
            *ret_existed = false;
            return e;
        }
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0) {
            *ret_existed = true;
            return e;
        }
    }
}

/* ---- the mapping ---------------------------------------------------------------------------- */

struct sd_mapping {
    json_t *spec;       /* normalized; owns every key the tables point to */
    struct table names; /* source name → model field */
    struct table values[MAP_N_FIELDS];
    const json_t *constants[MAP_N_FIELDS];
    struct map_formats fmt;
    bool keep_unmapped;
};

static const char *const spec_members[] = {"fields",  "values",   "constants",
                                           "formats", "unmapped", NULL};

/* jansson's iterators take a non-const object although walking does not modify it. */
static void *iter_first(const json_t *obj)
{
    return json_object_iter((json_t *)obj);
}

static void *iter_next(const json_t *obj, void *it)
{
    return json_object_iter_next((json_t *)obj, it);
}

/* Append s[0..len) as valid UTF-8 (bad bytes and NUL → U+FFFD). At most max bytes of s are
 * used, cut at a character boundary with "…" appended. With `pointer`, '~' and '/' are escaped
 * as RFC 6901 requires. */
static void put_clean(struct sd_buf *b, const char *s, size_t len, size_t max, bool pointer)
{
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        int n = sd_utf8_next(s + i, len - i, &cp);
        size_t step = n < 0 ? 1 : (size_t)n;
        if (i + step > max) {
            sd_buf_puts(b, "\xe2\x80\xa6");
            return;
        }
        if (n < 0 || cp == 0) {
            sd_buf_puts(b, "\xef\xbf\xbd");
        } else if (pointer && cp == '~') {
            sd_buf_puts(b, "~0");
        } else if (pointer && cp == '/') {
            sd_buf_puts(b, "~1");
        } else {
            sd_buf_append(b, s + i, step);
        }
        i += step;
    }
}

/* An issue at base + "/" + key (key escaped), message from fmt. */
static void issue_at(struct sd_issues *errors, const char *base, const char *key, size_t keylen,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void issue_at(struct sd_issues *errors, const char *base, const char *key, size_t keylen,
                     const char *fmt, ...)
{
    struct sd_buf p;
    sd_buf_init(&p);
    sd_buf_puts(&p, base ? base : "");
    if (key) {
        sd_buf_append(&p, "/", 1);
        put_clean(&p, key, keylen, SIZE_MAX, true);
    }
    va_list ap;
    va_start(ap, fmt);
    char *msg = sd_vasprintf(fmt, ap);
    va_end(ap);
    sd_issues_add(errors, p.data, "%s", msg);
    free(msg);
    sd_buf_release(&p);
}

static size_t edit_distance(const char *a, size_t na, const char *b, size_t nb)
{
    size_t row[SUGGEST_MAX_LEN + 1];
    for (size_t j = 0; j <= nb; j++) {
        row[j] = j;
    }
    for (size_t i = 1; i <= na; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) {
                best = up + 1;
            }
            if (row[j - 1] + 1 < best) {
                best = row[j - 1] + 1;
            }
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}

static void unknown_field(struct sd_issues *errors, const char *base, const char *key,
                          size_t keylen, const char *name, size_t len)
{
    struct sd_buf msg;
    sd_buf_init(&msg);
    sd_buf_puts(&msg, "unknown model field '");
    put_clean(&msg, name, len, SD_MAPPING_MAX_NAME, false);
    sd_buf_puts(&msg, "' (");
    if (len <= SUGGEST_MAX_LEN) {
        size_t best = 3;
        const char *guess = NULL;
        for (int i = 0; i < MAP_N_FIELDS; i++) {
            const char *f = sd_map_fields[i].name;
            size_t d = strlen(f) <= SUGGEST_MAX_LEN ? edit_distance(name, len, f, strlen(f)) : 99;
            if (d < best && d < len) {
                best = d;
                guess = f;
            }
        }
        if (guess) {
            sd_buf_printf(&msg, "did you mean '%s'? ", guess);
        }
    }
    sd_buf_puts(&msg, "known:");
    for (int i = 0; i < MAP_N_FIELDS; i++) {
        sd_buf_printf(&msg, "%s %s", i ? "," : "", sd_map_fields[i].name);
    }
    sd_buf_puts(&msg, ")");
    issue_at(errors, base, key, keylen, "%s", msg.data);
    sd_buf_release(&msg);
}

/* Model field named by a JSON string, or -1 with an issue. */
static int want_field(const json_t *v, struct sd_issues *errors, const char *base, const char *key,
                      size_t keylen)
{
    int t = json_is_string(v) ? sd_map_field_find(json_string_value(v), json_string_length(v)) : -1;
    if (!json_is_string(v)) {
        issue_at(errors, base, key, keylen, "must be a model field name (a string)");
    } else if (t < 0) {
        unknown_field(errors, base, key, keylen, json_string_value(v), json_string_length(v));
    }
    return t;
}

/* Valid UTF-8 without NUL; works on substrings (len, not strlen, decides). */
static bool text_ok(const char *s, size_t len)
{
    return sd_utf8_valid(s, len);
}

/* Trim a source name: whitespace, NBSP and a leading UTF-8 byte order mark (first CSV cell). */
static void trim_name(const char **s, size_t *len)
{
    if (*len >= 3 && memcmp(*s, "\xef\xbb\xbf", 3) == 0) {
        *s += 3;
        *len -= 3;
    }
    sd_map_trim(s, len);
}

/* A "fields" key: NULL if usable, else why not. */
static const char *source_name_problem(const char *key, size_t len)
{
    if (len == 0) {
        return "source name must not be empty";
    }
    if (len > SD_MAPPING_MAX_NAME) {
        return "source name is longer than 200 bytes";
    }
    if (!text_ok(key, len)) {
        return "source name must be valid UTF-8 without NUL characters";
    }
    const char *t = key;
    size_t tl = len;
    trim_name(&t, &tl);
    if (tl != len) {
        return "source name must not start or end with whitespace (source names are trimmed)";
    }
    return NULL;
}

static void load_fields(struct sd_mapping *m, const json_t *fields, const char *base,
                        struct sd_issues *errors)
{
    size_t n = json_object_size(fields);
    if (!json_is_object(fields)) {
        issue_at(errors, base, NULL, 0, "must be an object of source name → model field name");
        n = 0;
    } else if (n > SD_MAPPING_MAX_ENTRIES) {
        issue_at(errors, base, NULL, 0, "has %zu entries, at most %d are allowed", n,
                 SD_MAPPING_MAX_ENTRIES);
        n = 0;
    }
    table_init(&m->names, n + MAP_N_FIELDS);
    int rank = 0;
    for (void *it = n ? iter_first(fields) : NULL; it; it = iter_next(fields, it)) {
        const char *key = json_object_iter_key(it);
        size_t keylen = json_object_iter_key_len(it);
        const char *why = source_name_problem(key, keylen);
        if (why) {
            issue_at(errors, base, key, keylen, "%s", why);
            continue;
        }
        int t = want_field(json_object_iter_value(it), errors, base, key, keylen);
        if (t < 0) {
            continue;
        }
        bool existed;
        struct entry *e = table_add(&m->names, key, keylen, &existed);
        e->target = t;
        e->rank = rank++;
    }
    for (int t = 0; t < MAP_N_FIELDS; t++) {
        bool existed;
        const char *name = sd_map_fields[t].name;
        struct entry *e = table_add(&m->names, name, strlen(name), &existed);
        if (!existed) {
            e->target = t;
            e->rank = RANK_SELF;
        }
    }
}

static void load_value_map(struct sd_mapping *m, int t, const json_t *map, const char *base,
                           struct sd_issues *errors)
{
    bool is_bool = sd_map_fields[t].type == MT_BOOL;
    size_t n = json_object_size(map);
    if (!json_is_object(map)) {
        issue_at(errors, base, NULL, 0, "must be an object of source value → model value");
        return;
    }
    if (n > SD_MAPPING_MAX_ENTRIES) {
        issue_at(errors, base, NULL, 0, "has %zu entries, at most %d are allowed", n,
                 SD_MAPPING_MAX_ENTRIES);
        return;
    }
    table_init(&m->values[t], n);
    for (void *it = iter_first(map); it; it = iter_next(map, it)) {
        const char *key = json_object_iter_key(it);
        size_t keylen = json_object_iter_key_len(it);
        const json_t *v = json_object_iter_value(it);
        if (keylen == 0) {
            issue_at(errors, base, key, keylen,
                     "source value must not be empty (empty cells are absent)");
        } else if (keylen > SD_MAPPING_MAX_NAME) {
            issue_at(errors, base, key, keylen, "source value is longer than 200 bytes");
        } else if (!text_ok(key, keylen)) {
            issue_at(errors, base, key, keylen,
                     "source value must be valid UTF-8 without NUL characters");
        } else if (json_is_boolean(v) && is_bool) {
            bool existed;
            table_add(&m->values[t], key, keylen, &existed)->value = v;
        } else if (!json_is_string(v)) {
            issue_at(errors, base, key, keylen, "%s",
                     is_bool ? "must be a string or true/false" : "must be a string");
        } else if (json_string_length(v) > SD_MAPPING_MAX_NAME) {
            issue_at(errors, base, key, keylen, "is longer than 200 bytes");
        } else if (!text_ok(json_string_value(v), json_string_length(v))) {
            issue_at(errors, base, key, keylen, "must be valid UTF-8 without NUL characters");
        } else {
            bool existed;
            table_add(&m->values[t], key, keylen, &existed)->value = v;
        }
    }
}

static void load_values(struct sd_mapping *m, const json_t *values, struct sd_issues *errors)
{
    const char *base = "/mapping/values";
    if (!json_is_object(values)) {
        issue_at(errors, base, NULL, 0, "must be an object of model field → value map");
        return;
    }
    struct sd_buf p;
    sd_buf_init(&p);
    for (void *it = iter_first(values); it; it = iter_next(values, it)) {
        const char *key = json_object_iter_key(it);
        size_t keylen = json_object_iter_key_len(it);
        int t = sd_map_field_find(key, keylen);
        if (t < 0) {
            unknown_field(errors, base, key, keylen, key, keylen);
            continue;
        }
        sd_buf_reset(&p);
        sd_buf_printf(&p, "%s/%s", base, sd_map_fields[t].name);
        load_value_map(m, t, json_object_iter_value(it), p.data, errors);
    }
    sd_buf_release(&p);
}

/* NULL if v is a usable constant for field t, else what it must be. */
static const char *constant_problem(int t, const json_t *v)
{
    const char *s = json_string_value(v);
    bool str = json_is_string(v) && text_ok(s, json_string_length(v));
    char utc[48];
    const char *why = NULL;
    int64_t amount;
    switch (sd_map_fields[t].type) {
    case MT_STRING: return str ? NULL : "must be a string (valid UTF-8 without NUL characters)";
    case MT_DATE: return str && sd_date_valid(s) ? NULL : "must be a date string \"YYYY-MM-DD\"";
    case MT_TIME: return str && sd_time_valid(s) ? NULL : "must be a time string \"HH:MM:SS\"";
    case MT_DATETIME:
        return str && sd_datetime_to_utc(s, utc, sizeof(utc)) == 0
                   ? NULL
                   : "must be an RFC 3339 date-time string like \"2025-04-15T11:08:42Z\"";
    case MT_INTEGER: return json_is_integer(v) ? NULL : "must be an integer";
    case MT_BOOL: return json_is_boolean(v) ? NULL : "must be true or false";
    case MT_DECIMAL:
        return str && sd_decimal_parse(v, -1, &amount, &why) == 0
                   ? NULL
                   : "must be a decimal string like \"89.00\"";
    case MT_CAST:
        if (!json_is_array(v)) {
            return "must be an array of {\"name\", \"role\"} objects";
        }
        for (size_t i = 0; i < json_array_size(v); i++) {
            const json_t *member = json_array_get(v, i);
            const json_t *name = json_object_get(member, "name");
            const json_t *role = json_object_get(member, "role");
            size_t size = json_object_size(member);
            if (!json_is_string(name) ||
                !text_ok(json_string_value(name), json_string_length(name)) ||
                (role && (!json_is_string(role) ||
                          !text_ok(json_string_value(role), json_string_length(role)))) ||
                size != (role ? 2u : 1u)) {
                return "must be an array of {\"name\", \"role\"} objects (role optional)";
            }
        }
        return NULL;
    }
    return "has an unknown type";
}

static void load_constants(struct sd_mapping *m, const json_t *constants, struct sd_issues *errors)
{
    const char *base = "/mapping/constants";
    if (!json_is_object(constants)) {
        issue_at(errors, base, NULL, 0, "must be an object of model field → value");
        return;
    }
    for (void *it = iter_first(constants); it; it = iter_next(constants, it)) {
        const char *key = json_object_iter_key(it);
        size_t keylen = json_object_iter_key_len(it);
        const json_t *v = json_object_iter_value(it);
        int t = sd_map_field_find(key, keylen);
        if (t < 0) {
            unknown_field(errors, base, key, keylen, key, keylen);
            continue;
        }
        const char *why = constant_problem(t, v);
        if (why) {
            issue_at(errors, base, key, keylen, "%s", why);
            continue;
        }
        m->constants[t] = v;
    }
}

static bool two_digits(const char *s, int max)
{
    return s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9' &&
           (s[0] - '0') * 10 + (s[1] - '0') <= max;
}

/* "Z", "UTC" (any case) or ±HH:MM → out ("Z" or the offset). */
static bool parse_offset(const char *s, size_t len, char out[8])
{
    if ((len == 1 && (s[0] == 'Z' || s[0] == 'z')) || (len == 3 && strncasecmp(s, "UTC", 3) == 0)) {
        memcpy(out, "Z", 2);
        return true;
    }
    if (len == 6 && (s[0] == '+' || s[0] == '-') && two_digits(s + 1, 23) && s[3] == ':' &&
        two_digits(s + 4, 59)) {
        memcpy(out, s, 6);
        out[6] = '\0';
        return true;
    }
    return false;
}

static void load_formats(struct sd_mapping *m, const json_t *formats, struct sd_issues *errors)
{
    const char *base = "/mapping/formats";
    if (!json_is_object(formats)) {
        issue_at(errors, base, NULL, 0, "must be an object");
        return;
    }
    static const struct {
        const char *name;
        enum map_fmt_class cls;
    } fmts[] = {{"date", MAP_FMT_DATE}, {"time", MAP_FMT_TIME}, {"datetime", MAP_FMT_DATETIME}};
    struct map_fmt *slots[] = {&m->fmt.date, &m->fmt.time, &m->fmt.datetime};
    bool *has[] = {&m->fmt.has_date, &m->fmt.has_time, &m->fmt.has_datetime};
    for (void *it = iter_first(formats); it; it = iter_next(formats, it)) {
        const char *key = json_object_iter_key(it);
        size_t keylen = json_object_iter_key_len(it);
        const json_t *v = json_object_iter_value(it);
        int k = -1;
        for (int i = 0; i < 3; i++) {
            if (strlen(fmts[i].name) == keylen && memcmp(fmts[i].name, key, keylen) == 0) {
                k = i;
            }
        }
        if (k >= 0) {
            char why[200];
            if (!json_is_string(v)) {
                issue_at(errors, base, key, keylen, "must be a string");
            } else if (sd_map_fmt_compile(json_string_value(v), json_string_length(v), fmts[k].cls,
                                          slots[k], why, sizeof(why)) < 0) {
                issue_at(errors, base, key, keylen, "%s", why);
            } else {
                *has[k] = true;
            }
        } else if (keylen == 10 && memcmp(key, "utc_offset", 10) == 0) {
            if (!json_is_string(v) ||
                !parse_offset(json_string_value(v), json_string_length(v), m->fmt.offset)) {
                issue_at(errors, base, key, keylen,
                         "must be \"Z\", \"UTC\" or a fixed offset like \"+01:00\" (for a "
                         "named time zone with daylight saving time use \"timezone\")");
            } else if (json_object_get(formats, "timezone")) {
                issue_at(errors, base, key, keylen, "give either utc_offset or timezone, not both");
            }
        } else if (keylen == 8 && memcmp(key, "timezone", 8) == 0) {
            char why[200];
            if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
                issue_at(errors, base, key, keylen,
                         "must be a string naming an IANA time zone such as \"Europe/Berlin\"");
            } else if (sd_tz_get(json_string_value(v), &m->fmt.tz, why, sizeof(why)) < 0) {
                issue_at(errors, base, key, keylen, "%s", why);
            }
        } else if (keylen == 11 && memcmp(key, "amount_unit", 11) == 0) {
            /* Sources that count money in integer fractions (S-360: thousandths, 40000 =
             * 40.000): the integer becomes the exact decimal, and the validator refuses one
             * that the currency's minor unit cannot hold (40005 thousandths of EUR). */
            static const char *const units[] = {"decimal", "tenths", "hundredths", "thousandths",
                                                "ten_thousandths"};
            int found = -2;
            for (int i = 0; i < 5 && json_is_string(v); i++) {
                if (strcmp(json_string_value(v), units[i]) == 0) {
                    found = i - 1;
                }
            }
            if (found < -1) {
                issue_at(errors, base, key, keylen,
                         "must be decimal, tenths, hundredths, thousandths or ten_thousandths");
            } else {
                m->fmt.amount_scale = found < 0 ? -1 : found + 1;
            }
        } else if (keylen == 13 && memcmp(key, "decimal_comma", 13) == 0) {
            if (!json_is_boolean(v)) {
                issue_at(errors, base, key, keylen, "must be true or false");
            } else {
                m->fmt.decimal_comma = json_is_true(v);
            }
        } else {
            issue_at(errors, base, key, keylen,
                     "unknown member (expected date, time, datetime, utc_offset, timezone, "
                     "decimal_comma, amount_unit)");
        }
    }
}

static bool member_is(const char *key, size_t keylen, const char *name)
{
    return strlen(name) == keylen && memcmp(key, name, keylen) == 0;
}

static json_t *copy_or_empty(const json_t *v)
{
    json_t *c = v ? json_deep_copy(v) : json_object();
    if (!c) {
        abort(); /* jansson fails only for lack of memory (style: allocation failure aborts) */
    }
    return c;
}

/* (Re)build every table of m from the spec's parts (fields, values, constants, formats; NULL
 * when absent), reporting problems. */
static void load_parts(struct sd_mapping *m, const json_t *const part[5], const char *fields_base,
                       struct sd_issues *errors)
{
    table_release(&m->names);
    for (int t = 0; t < MAP_N_FIELDS; t++) {
        table_release(&m->values[t]);
        m->constants[t] = NULL;
    }
    sd_map_formats_init(&m->fmt);
    json_t *empty = json_object();
    load_fields(m, part[0] ? part[0] : empty, fields_base, errors);
    load_values(m, part[1] ? part[1] : empty, errors);
    load_constants(m, part[2] ? part[2] : empty, errors);
    load_formats(m, part[3] ? part[3] : empty, errors);
    json_decref(empty);
}

int sd_mapping_new(const json_t *spec, struct sd_mapping **ret, struct sd_issues *errors)
{
    struct sd_issues local;
    sd_issues_init(&local, 1);
    if (!errors) {
        errors = &local;
    }
    size_t errors0 = errors->total;
    int r = -EINVAL;
    const json_t *part[5] = {NULL}; /* spec_members order */
    const char *fields_base = "/mapping/fields";
    struct sd_mapping *m = sd_calloc(1, sizeof(*m));

    if (spec && !json_is_null(spec)) {
        if (!json_is_object(spec)) {
            sd_issues_add(errors, "/mapping", "must be an object");
            goto out;
        }
        bool shorthand = json_object_size(spec) > 0;
        for (int i = 0; spec_members[i]; i++) {
            if (json_object_get(spec, spec_members[i])) {
                shorthand = false;
            }
        }
        if (shorthand) {
            part[0] = spec;
            fields_base = "/mapping";
        } else {
            for (void *it = iter_first(spec); it; it = iter_next(spec, it)) {
                const char *key = json_object_iter_key(it);
                size_t keylen = json_object_iter_key_len(it);
                int k = -1;
                for (int i = 0; spec_members[i]; i++) {
                    if (member_is(key, keylen, spec_members[i])) {
                        k = i;
                    }
                }
                if (k < 0) {
                    issue_at(errors, "/mapping", key, keylen,
                             "unknown member (expected fields, values, constants, formats, "
                             "unmapped)");
                } else {
                    part[k] = json_object_iter_value(it);
                }
            }
        }
    }
    const char *unmapped = "keep";
    if (part[4]) {
        const char *u = json_string_value(part[4]);
        if (u && (strcmp(u, "keep") == 0 || strcmp(u, "drop") == 0) &&
            json_string_length(part[4]) == 4) {
            unmapped = u;
        } else {
            sd_issues_add(errors, "/mapping/unmapped", "must be \"keep\" or \"drop\"");
        }
    }
    m->keep_unmapped = strcmp(unmapped, "keep") == 0;
    /* First pass on the caller's spec: every problem is reported against what was sent (a
     * copy would already have lost anything after a NUL in a key: jansson's copies cut keys
     * at NUL). Only a clean spec is copied and loaded again, so that the tables point into
     * m->spec, which the mapping owns. */
    load_parts(m, part, fields_base, errors);
    if (errors->total != errors0 || !ret) {
        goto out;
    }
    m->spec = json_object();
    json_object_set_new(m->spec, "fields", copy_or_empty(part[0]));
    json_object_set_new(m->spec, "values", copy_or_empty(part[1]));
    json_object_set_new(m->spec, "constants", copy_or_empty(part[2]));
    json_object_set_new(m->spec, "formats", copy_or_empty(part[3]));
    json_object_set_new(m->spec, "unmapped", json_string(unmapped));
    const json_t *copies[5] = {
        json_object_get(m->spec, "fields"),    json_object_get(m->spec, "values"),
        json_object_get(m->spec, "constants"), json_object_get(m->spec, "formats"),
        json_object_get(m->spec, "unmapped"),
    };
    load_parts(m, copies, fields_base, errors);
    if (errors->total != errors0 || !ret) {
        goto out;
    }
    *ret = m;
    m = NULL;
    r = 0;
out:
    sd_mapping_free(m);
    sd_issues_release(&local);
    return r;
}

void sd_mapping_free(struct sd_mapping *m)
{
    if (!m) {
        return;
    }
    table_release(&m->names);
    for (int t = 0; t < MAP_N_FIELDS; t++) {
        table_release(&m->values[t]);
    }
    json_decref(m->spec);
    free(m);
}

const char *sd_mapping_target_of(const struct sd_mapping *m, enum sd_kind kind,
                                 const char *source_name)
{
    if (!m || !source_name) {
        return NULL;
    }
    const char *name = source_name;
    size_t len = strlen(name);
    trim_name(&name, &len);
    const struct entry *e = table_find(&m->names, name, len);
    if (!e || !(sd_map_fields[e->target].kinds & MAP_KIND_BIT(kind))) {
        return NULL;
    }
    return sd_map_fields[e->target].name;
}

json_t *sd_mapping_to_json(const struct sd_mapping *m)
{
    return m ? json_deep_copy(m->spec) : NULL;
}

/* ---- applying ------------------------------------------------------------------------------- */

enum { COL_SKIP = -1, COL_KEEP = -2 };

/* One source member, names and string values already trimmed. */
struct cell {
    const char *name; /* NULL: skipped */
    size_t name_len;
    const char *str; /* string value, or NULL */
    size_t str_len;
    const json_t *json; /* non-string JSON value (object path), or NULL */
    int target;         /* model field index, COL_SKIP or COL_KEEP */
};

static bool cell_empty(const struct cell *c)
{
    return c->str ? c->str_len == 0 : (!c->json || json_is_null(c->json));
}

/* "field 'Name': 'value…' <what>" at ptr + "/" + model field. */
static void conv_error(struct sd_issues *errors, const char *ptr, int t, const struct cell *c,
                       const char *s, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static void conv_error(struct sd_issues *errors, const char *ptr, int t, const struct cell *c,
                       const char *s, size_t len, const char *fmt, ...)
{
    struct sd_buf msg;
    sd_buf_init(&msg);
    sd_buf_puts(&msg, "field '");
    put_clean(&msg, c->name, c->name_len, SD_MAPPING_MAX_NAME, false);
    sd_buf_puts(&msg, "': ");
    if (s) {
        sd_buf_puts(&msg, "'");
        put_clean(&msg, s, len, VALUE_ECHO_MAX, false);
        sd_buf_puts(&msg, "' ");
    }
    va_list ap;
    va_start(ap, fmt);
    char *what = sd_vasprintf(fmt, ap);
    va_end(ap);
    sd_buf_puts(&msg, what);
    free(what);
    const char *name = sd_map_fields[t].name;
    issue_at(errors, ptr, name, strlen(name), "%s", msg.data);
    sd_buf_release(&msg);
}

/* An amount counted in integer fractions (formats.amount_unit) → the exact decimal string:
 * 40000 thousandths → "40.000". A JSON integer or an integer string; anything else refuses
 * the record, naming the unit expected. */
static int convert_scaled(const struct map_formats *f, int t, const struct cell *c, const char *ptr,
                          struct sd_issues *errors, json_t **ret)
{
    json_int_t v = 0;
    int r = 0;
    if (c->str) {
        if (c->str_len == 0) {
            return 0;
        }
        r = sd_map_integer(c->str, c->str_len, &v);
    } else {
        v = json_integer_value(c->json);
    }
    if (r < 0) {
        static const char *const unit[] = {"", "tenths", "hundredths", "thousandths",
                                           "ten thousandths"};
        conv_error(errors, ptr, t, c, c->str, c->str_len,
                   "is not an integer amount in %s (formats.amount_unit)",
                   unit[f->amount_scale < 5 ? f->amount_scale : 0]);
        return -EINVAL;
    }
    char buf[32];
    sd_decimal_format((int64_t)v, f->amount_scale, buf);
    *ret = json_string_nocheck(buf);
    return 0;
}

/* Convert the winning cell for model field t. 0 with *ret (NULL: absent), or -EINVAL with an
 * issue added. */
static int convert_cell(const struct sd_mapping *m, int t, const struct cell *c, const char *ptr,
                        struct sd_issues *errors, json_t **ret)
{
    const struct map_formats *f = &m->fmt;
    const struct table *vmap = &m->values[t];
    const char *s = c->str;
    size_t len = c->str_len;
    *ret = NULL;
    if (sd_map_fields[t].type == MT_DECIMAL && f->amount_scale >= 0 &&
        (json_is_integer(c->json) || s)) {
        return convert_scaled(f, t, c, ptr, errors, ret);
    }
    if (!s) {
        /* A non-string JSON value passes as it is; an integer may still be a values-map key. */
        const struct entry *e = NULL;
        if (json_is_integer(c->json) && vmap->n > 0) {
            char num[32];
            int n =
                snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(c->json));
            e = table_find(vmap, num, (size_t)n);
        }
        if (!e) {
            *ret = json_deep_copy(c->json);
            if (!*ret) {
                conv_error(errors, ptr, t, c, NULL, 0, "value cannot be copied");
                return -EINVAL;
            }
            return 0;
        }
        if (json_is_boolean(e->value)) {
            *ret = json_boolean(json_is_true(e->value));
            return 0;
        }
        s = json_string_value(e->value);
        len = json_string_length(e->value);
    } else {
        if (!sd_utf8_valid(s, len)) {
            conv_error(errors, ptr, t, c, NULL, 0, "value is not valid UTF-8 text");
            return -EINVAL;
        }
        const struct entry *e = vmap->n > 0 ? table_find(vmap, s, len) : NULL;
        if (e && json_is_boolean(e->value)) {
            *ret = json_boolean(json_is_true(e->value));
            return 0;
        }
        if (e) {
            s = json_string_value(e->value);
            len = json_string_length(e->value);
        }
    }
    sd_map_trim(&s, &len);
    if (len == 0) {
        return 0; /* mapped to "" */
    }
    char buf[80];
    switch (sd_map_fields[t].type) {
    case MT_STRING: *ret = json_stringn_nocheck(s, len); return 0;
    case MT_INTEGER: {
        json_int_t v;
        int r = sd_map_integer(s, len, &v);
        if (r == -ERANGE) {
            conv_error(errors, ptr, t, c, s, len, "is out of range for an integer");
            return r;
        }
        if (r < 0) {
            conv_error(errors, ptr, t, c, s, len,
                       "is not an integer (optional sign and digits only, no thousand "
                       "separators)");
            return r;
        }
        *ret = json_integer(v);
        return 0;
    }
    case MT_BOOL: {
        int b = sd_map_bool(s, len);
        *ret = b < 0 ? json_stringn_nocheck(s, len) : json_boolean(b);
        return 0;
    }
    case MT_DECIMAL: {
        int r = sd_map_decimal(s, len, f->decimal_comma, buf, sizeof(buf));
        if (r < 0) {
            conv_error(errors, ptr, t, c, s, len, "is not a decimal in format %s",
                       f->decimal_comma ? "1.234,56" : "1,234.56");
            return r;
        }
        *ret = r > 0 ? json_string_nocheck(buf) : json_stringn_nocheck(s, len);
        return 0;
    }
    case MT_DATE:
        if (sd_map_date(f, s, len, buf) < 0) {
            conv_error(errors, ptr, t, c, s, len, "is not a date in format %s",
                       f->has_date ? f->date.text : "YYYY-MM-DD");
            return -EINVAL;
        }
        *ret = json_string_nocheck(buf);
        return 0;
    case MT_TIME:
        if (sd_map_time(f, s, len, buf) < 0) {
            conv_error(errors, ptr, t, c, s, len, "is not a time in format %s",
                       f->has_time ? f->time.text : "HH:mm:ss");
            return -EINVAL;
        }
        *ret = json_string_nocheck(buf);
        return 0;
    case MT_DATETIME:
        if (sd_map_datetime(f, s, len, buf) < 0) {
            if (f->has_datetime) {
                conv_error(errors, ptr, t, c, s, len, "is not a date-time in format %s",
                           f->datetime.text);
            } else {
                conv_error(errors, ptr, t, c, s, len,
                           "is not an RFC 3339 date-time like 2025-04-15T11:08:42Z");
            }
            return -EINVAL;
        }
        *ret = json_string_nocheck(buf);
        return 0;
    case MT_CAST: *ret = sd_map_cast(s, len); return 0;
    }
    return 0;
}

/* An unmapped member kept under its source name (the first of a repeated name wins). */
static void keep_cell(json_t *out, const struct cell *c, const char *ptr, struct sd_issues *errors)
{
    if (!text_ok(c->name, c->name_len)) {
        issue_at(errors, ptr, c->name, c->name_len,
                 "field name must be valid UTF-8 without NUL characters");
        return;
    }
    if (json_object_getn(out, c->name, c->name_len)) {
        return;
    }
    json_t *v;
    if (c->str) {
        if (!sd_utf8_valid(c->str, c->str_len)) {
            struct sd_buf msg;
            sd_buf_init(&msg);
            sd_buf_puts(&msg, "field '");
            put_clean(&msg, c->name, c->name_len, SD_MAPPING_MAX_NAME, false);
            sd_buf_puts(&msg, "': value is not valid UTF-8 text");
            issue_at(errors, ptr, c->name, c->name_len, "%s", msg.data);
            sd_buf_release(&msg);
            return;
        }
        v = json_stringn_nocheck(c->str, c->str_len);
    } else {
        v = json_deep_copy(c->json);
        if (!v) {
            issue_at(errors, ptr, c->name, c->name_len, "value cannot be copied");
            return;
        }
    }
    json_object_setn_new_nocheck(out, c->name, c->name_len, v);
}

static json_t *apply_cells(const struct sd_mapping *m, enum sd_kind kind, struct cell *cells,
                           size_t n, const char *ptr, struct sd_issues *errors)
{
    unsigned kb = MAP_KIND_BIT(kind);
    size_t pick[MAP_N_FIELDS];
    int rank[MAP_N_FIELDS];
    bool null_seen[MAP_N_FIELDS];
    for (int t = 0; t < MAP_N_FIELDS; t++) {
        pick[t] = SIZE_MAX;
        rank[t] = INT_MAX;
        null_seen[t] = false;
    }
    for (size_t i = 0; i < n; i++) {
        struct cell *c = &cells[i];
        c->target = COL_SKIP;
        if (!c->name) {
            continue;
        }
        const struct entry *e = table_find(&m->names, c->name, c->name_len);
        if (!e) {
            if (m->keep_unmapped && !cell_empty(c)) {
                c->target = COL_KEEP;
            }
            continue;
        }
        int t = e->target;
        if (!(sd_map_fields[t].kinds & kb)) {
            /* A member named as another kind's field (`city`, an event field, in a customers
             * file) is, for this kind, just an unmapped member: kept under its name as the
             * webhook keeps it. One the mapping's "fields" sends to another kind's field
             * (EventDate → date in a sales file) was assigned there on purpose: dropped. */
            if (e->rank == RANK_SELF && m->keep_unmapped && !cell_empty(c)) {
                c->target = COL_KEEP;
            }
            continue;
        }
        if (cell_empty(c)) {
            /* In an event or customer, a JSON null (not an empty cell) says "clear this field"
             * (the store merges their updates: absent keeps the stored value); it stands only
             * if no member gives a value. Sales are replaced whole: null is absent there. */
            null_seen[t] =
                null_seen[t] || (kind != SD_KIND_SALE && c->json && json_is_null(c->json));
            continue;
        }
        c->target = t;
        if (e->rank < rank[t]) {
            rank[t] = e->rank;
            pick[t] = i;
        }
    }
    size_t errors0 = errors->total;
    json_t *out = json_object();
    for (size_t i = 0; i < n; i++) {
        const struct cell *c = &cells[i];
        if (c->target == COL_KEEP) {
            keep_cell(out, c, ptr, errors);
        } else if (c->target >= 0 && pick[c->target] == i) {
            json_t *v;
            if (convert_cell(m, c->target, c, ptr, errors, &v) == 0 && v) {
                json_object_set_new_nocheck(out, sd_map_fields[c->target].name, v);
            }
        }
    }
    for (int t = 0; t < MAP_N_FIELDS; t++) {
        if (m->constants[t] && (sd_map_fields[t].kinds & kb) &&
            !json_object_get(out, sd_map_fields[t].name)) {
            json_object_set_new_nocheck(out, sd_map_fields[t].name,
                                        json_deep_copy(m->constants[t]));
        } else if (null_seen[t] && pick[t] == SIZE_MAX) {
            json_object_set_new_nocheck(out, sd_map_fields[t].name, json_null());
        }
    }
    if (errors->total != errors0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

static bool kind_ok(enum sd_kind kind, const char *ptr, struct sd_issues *errors)
{
    if (kind != SD_KIND_EVENT && kind != SD_KIND_CUSTOMER && kind != SD_KIND_SALE) {
        sd_issues_add(errors, ptr ? ptr : "", "unknown record kind %d", (int)kind);
        return false;
    }
    return true;
}

json_t *sd_mapping_apply_row(const struct sd_mapping *m, enum sd_kind kind,
                             const char *const *names, const char *const *values, size_t n,
                             const char *ptr, struct sd_issues *errors)
{
    struct sd_issues local;
    sd_issues_init(&local, 1);
    if (!errors) {
        errors = &local;
    }
    json_t *out = NULL;
    if (!kind_ok(kind, ptr, errors)) {
        goto out;
    }
    if (!names || !values) {
        n = 0;
    }
    struct cell stack[CELLS_ON_STACK];
    struct cell *cells = n <= CELLS_ON_STACK ? stack : sd_calloc(n, sizeof(*cells));
    for (size_t i = 0; i < n; i++) {
        struct cell *c = &cells[i];
        *c = (struct cell){0};
        if (!names[i]) {
            continue;
        }
        c->name = names[i];
        c->name_len = strlen(names[i]);
        trim_name(&c->name, &c->name_len);
        c->str = values[i] ? values[i] : "";
        c->str_len = strlen(c->str);
        sd_map_trim(&c->str, &c->str_len);
    }
    out = apply_cells(m, kind, cells, n, ptr, errors);
    if (cells != stack) {
        free(cells);
    }
out:
    sd_issues_release(&local);
    return out;
}

json_t *sd_mapping_apply_object(const struct sd_mapping *m, enum sd_kind kind, const json_t *src,
                                const char *ptr, struct sd_issues *errors)
{
    struct sd_issues local;
    sd_issues_init(&local, 1);
    if (!errors) {
        errors = &local;
    }
    json_t *out = NULL;
    if (!kind_ok(kind, ptr, errors)) {
        goto out;
    }
    if (!json_is_object(src)) {
        sd_issues_add(errors, ptr ? ptr : "", "must be an object");
        goto out;
    }
    size_t n = json_object_size(src);
    struct cell stack[CELLS_ON_STACK];
    struct cell *cells = n <= CELLS_ON_STACK ? stack : sd_calloc(n, sizeof(*cells));
    size_t i = 0;
    for (void *it = iter_first(src); it && i < n; it = iter_next(src, it), i++) {
        struct cell *c = &cells[i];
        *c = (struct cell){0};
        c->name = json_object_iter_key(it);
        c->name_len = json_object_iter_key_len(it);
        trim_name(&c->name, &c->name_len);
        const json_t *v = json_object_iter_value(it);
        if (json_is_string(v)) {
            c->str = json_string_value(v);
            c->str_len = json_string_length(v);
            sd_map_trim(&c->str, &c->str_len);
        } else {
            c->json = v;
        }
    }
    out = apply_cells(m, kind, cells, i, ptr, errors);
    if (cells != stack) {
        free(cells);
    }
out:
    sd_issues_release(&local);
    return out;
}
