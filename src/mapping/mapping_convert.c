/* mapping_convert.c — the value conversions of a mapping: date/time formats (compiled once when
 * the spec is saved, matched per cell), integers, booleans, decimals in either notation and the
 * cast shorthand.
 *
 * Invariants:
 *  - Conversions change the form of a value, never judge it: a date is checked for its shape
 *    and field ranges (month 1..12, day 1..31, hour 0..23 …) because a value outside them does
 *    not match the format at all, but "31.02.2025" becomes "2025-02-31" and the validator says
 *    it is not a real date. The same for years outside 1900..9999 and negative prices.
 *  - Nothing here allocates except the json_t a caller asked for: values are matched in place,
 *    results go into caller buffers of fixed size (a value longer than any valid form is
 *    refused before copying).
 *  - Parsing is by hand on bytes, never strptime/strtod: results must not depend on locale. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mapping/mapping_internal.h"
#include "model/tz.h"

const struct map_field sd_map_fields[MAP_N_FIELDS] = {
    {"event_id", MT_STRING, MAP_KIND_BIT(SD_KIND_EVENT) | MAP_KIND_BIT(SD_KIND_SALE)},
    {"title", MT_STRING, MAP_KIND_BIT(SD_KIND_EVENT)},
    {"date", MT_DATE, MAP_KIND_BIT(SD_KIND_EVENT)},
    {"time", MT_TIME, MAP_KIND_BIT(SD_KIND_EVENT)},
    {"venue", MT_STRING, MAP_KIND_BIT(SD_KIND_EVENT)},
    {"hall", MT_STRING, MAP_KIND_BIT(SD_KIND_EVENT)},
    {"capacity", MT_INTEGER, MAP_KIND_BIT(SD_KIND_EVENT)},
    {"city", MT_STRING, MAP_KIND_BIT(SD_KIND_EVENT)},
    {"work_title", MT_STRING, MAP_KIND_BIT(SD_KIND_EVENT)},
    {"composer", MT_STRING, MAP_KIND_BIT(SD_KIND_EVENT)},
    {"cast", MT_CAST, MAP_KIND_BIT(SD_KIND_EVENT)},
    {"customer_id", MT_STRING, MAP_KIND_BIT(SD_KIND_CUSTOMER) | MAP_KIND_BIT(SD_KIND_SALE)},
    {"email", MT_STRING, MAP_KIND_BIT(SD_KIND_CUSTOMER)},
    {"salutation", MT_STRING, MAP_KIND_BIT(SD_KIND_CUSTOMER)},
    {"first_name", MT_STRING, MAP_KIND_BIT(SD_KIND_CUSTOMER)},
    {"last_name", MT_STRING, MAP_KIND_BIT(SD_KIND_CUSTOMER)},
    {"street", MT_STRING, MAP_KIND_BIT(SD_KIND_CUSTOMER)},
    {"post_code", MT_STRING, MAP_KIND_BIT(SD_KIND_CUSTOMER)},
    {"ad_opt_out", MT_BOOL, MAP_KIND_BIT(SD_KIND_CUSTOMER)},
    {"invoice_number", MT_STRING, MAP_KIND_BIT(SD_KIND_SALE)},
    {"purchase_datetime", MT_DATETIME, MAP_KIND_BIT(SD_KIND_SALE)},
    {"ticket_category", MT_STRING, MAP_KIND_BIT(SD_KIND_SALE)},
    {"quantity", MT_INTEGER, MAP_KIND_BIT(SD_KIND_SALE)},
    {"sales_price", MT_DECIMAL, MAP_KIND_BIT(SD_KIND_SALE)},
    {"base_price", MT_DECIMAL, MAP_KIND_BIT(SD_KIND_SALE)},
    {"currency", MT_STRING, MAP_KIND_BIT(SD_KIND_SALE)},
    /* order lifecycle (model.h) */
    {"order_type", MT_STRING, MAP_KIND_BIT(SD_KIND_SALE)},
    {"status", MT_STRING, MAP_KIND_BIT(SD_KIND_SALE)},
    {"refunded_quantity", MT_INTEGER, MAP_KIND_BIT(SD_KIND_SALE)},
    {"refunded_amount", MT_DECIMAL, MAP_KIND_BIT(SD_KIND_SALE)},
    {"status_changed_at", MT_DATETIME, MAP_KIND_BIT(SD_KIND_SALE)},
    {"expires_at", MT_DATETIME, MAP_KIND_BIT(SD_KIND_SALE)},
    {"attended_quantity", MT_INTEGER, MAP_KIND_BIT(SD_KIND_SALE)},
    {"refund_of", MT_STRING, MAP_KIND_BIT(SD_KIND_SALE)},
};

int sd_map_field_find(const char *name, size_t len)
{
    for (int i = 0; i < MAP_N_FIELDS; i++) {
        if (strlen(sd_map_fields[i].name) == len && memcmp(sd_map_fields[i].name, name, len) == 0) {
            return i;
        }
    }
    return -1;
}

/* ---- formats -------------------------------------------------------------------------------- */

enum { TOK_LIT = 0, TOK_YYYY, TOK_YY, TOK_MM, TOK_M, TOK_DD, TOK_D, TOK_HH, TOK_H, TOK_MI, TOK_SS };
enum { P_YEAR = 1, P_MONTH = 2, P_DAY = 4, P_HOUR = 8, P_MIN = 16, P_SEC = 32 };
#define P_DATE (P_YEAR | P_MONTH | P_DAY)
#define P_TIME (P_HOUR | P_MIN | P_SEC)

static const struct {
    char letter;
    uint8_t run;
    uint8_t tok;
    uint8_t part;
    uint8_t min, max; /* digits */
} tokens[] = {
    {'Y', 4, TOK_YYYY, P_YEAR, 4, 4}, {'Y', 2, TOK_YY, P_YEAR, 2, 2},
    {'M', 2, TOK_MM, P_MONTH, 2, 2},  {'M', 1, TOK_M, P_MONTH, 1, 2},
    {'D', 2, TOK_DD, P_DAY, 2, 2},    {'D', 1, TOK_D, P_DAY, 1, 2},
    {'H', 2, TOK_HH, P_HOUR, 2, 2},   {'H', 1, TOK_H, P_HOUR, 1, 2},
    {'m', 2, TOK_MI, P_MIN, 2, 2},    {'s', 2, TOK_SS, P_SEC, 2, 2},
};
#define N_TOKENS (sizeof(tokens) / sizeof(*tokens))

static const char *const part_names[] = {"year", "month", "day", "hour", "minute", "second"};

static const char *class_name(enum map_fmt_class cls)
{
    return cls == MAP_FMT_DATE ? "date" : cls == MAP_FMT_TIME ? "time" : "datetime";
}

static const char *class_tokens(enum map_fmt_class cls)
{
    return cls == MAP_FMT_DATE   ? "DD, D, MM, M, YYYY, YY"
           : cls == MAP_FMT_TIME ? "HH, H, mm, ss"
                                 : "DD, D, MM, M, YYYY, YY, HH, H, mm, ss";
}

static int part_index(unsigned part)
{
    int i = 0;
    while (part > 1) {
        part >>= 1;
        i++;
    }
    return i;
}

static bool is_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int sd_map_fmt_compile(const char *text, size_t len, enum map_fmt_class cls, struct map_fmt *ret,
                       char *why, size_t whysz)
{
    unsigned allowed = cls == MAP_FMT_DATE   ? P_DATE
                       : cls == MAP_FMT_TIME ? P_TIME
                                             : P_DATE | P_TIME;
    unsigned seen = 0;
    struct map_fmt f;
    memset(&f, 0, sizeof(f));
    if (len == 0) {
        snprintf(why, whysz, "must not be empty");
        return -EINVAL;
    }
    if (len > SD_MAPPING_MAX_FORMAT) {
        snprintf(why, whysz, "is longer than %d bytes", SD_MAPPING_MAX_FORMAT);
        return -EINVAL;
    }
    if (memchr(text, '\0', len)) {
        snprintf(why, whysz, "must not contain NUL characters");
        return -EINVAL;
    }
    memcpy(f.text, text, len);
    size_t i = 0;
    while (i < len) {
        char c = text[i];
        size_t run = 1;
        if (is_letter(c)) {
            while (i + run < len && text[i + run] == c) {
                run++;
            }
        }
        if (!is_letter(c) || (c == 'T' && run == 1)) {
            /* A literal: merged with the literal before it, if any. */
            if (f.n > 0 && f.it[f.n - 1].tok == TOK_LIT) {
                f.it[f.n - 1].len++;
            } else {
                f.it[f.n].tok = TOK_LIT;
                f.it[f.n].off = (uint8_t)i;
                f.it[f.n].len = 1;
                f.n++;
            }
            i++;
            continue;
        }
        size_t k = 0;
        while (k < N_TOKENS && !(tokens[k].letter == c && tokens[k].run == run)) {
            k++;
        }
        if (k == N_TOKENS || !(tokens[k].part & allowed)) {
            snprintf(why, whysz,
                     "unknown token '%.*s' in %s format (use %s and literal separators)",
                     (int)(run > 8 ? 8 : run), text + i, class_name(cls), class_tokens(cls));
            return -EINVAL;
        }
        if (seen & tokens[k].part) {
            snprintf(why, whysz, "the %s appears twice ('%.*s')",
                     part_names[part_index(tokens[k].part)], (int)run, text + i);
            return -EINVAL;
        }
        seen |= tokens[k].part;
        f.it[f.n].tok = tokens[k].tok;
        f.it[f.n].off = (uint8_t)i;
        f.it[f.n].len = (uint8_t)run;
        f.n++;
        i += run;
    }
    unsigned need = allowed & ~(unsigned)P_SEC;
    if ((seen & need) != need) {
        if (cls == MAP_FMT_DATE) {
            snprintf(why, whysz,
                     "a date format needs a year (YYYY or YY), a month (MM or M) and a day (DD or "
                     "D)");
        } else if (cls == MAP_FMT_TIME) {
            snprintf(why, whysz, "a time format needs an hour (HH or H) and minutes (mm)");
        } else {
            snprintf(why, whysz,
                     "a datetime format needs a year, a month, a day, an hour and minutes "
                     "(YYYY, MM, DD, HH, mm)");
        }
        return -EINVAL;
    }
    *ret = f;
    return 0;
}

struct dt {
    int y, mo, d, h, mi, s;
};

static int token_digits(uint8_t tok, int *min)
{
    for (size_t k = 0; k < N_TOKENS; k++) {
        if (tokens[k].tok == tok) {
            *min = tokens[k].min;
            return tokens[k].max;
        }
    }
    *min = 0;
    return 0;
}

/* Match the whole of s against f. Fields the format lacks stay 0 (seconds). */
static bool fmt_match(const struct map_fmt *f, const char *s, size_t len, struct dt *ret)
{
    struct dt v = {0, 0, 0, 0, 0, 0};
    size_t pos = 0;
    for (uint8_t i = 0; i < f->n; i++) {
        uint8_t tok = f->it[i].tok;
        if (tok == TOK_LIT) {
            size_t l = f->it[i].len;
            if (len - pos < l || memcmp(s + pos, f->text + f->it[i].off, l) != 0) {
                return false;
            }
            pos += l;
            continue;
        }
        int min, max = token_digits(tok, &min), n = 0, x = 0;
        while (n < max && pos < len && s[pos] >= '0' && s[pos] <= '9') {
            x = x * 10 + (s[pos] - '0');
            pos++;
            n++;
        }
        if (n < min) {
            return false;
        }
        switch (tok) {
        case TOK_YYYY: v.y = x; break;
        case TOK_YY: v.y = x < 69 ? 2000 + x : 1900 + x; break;
        case TOK_MM:
        case TOK_M: v.mo = x; break;
        case TOK_DD:
        case TOK_D: v.d = x; break;
        case TOK_HH:
        case TOK_H: v.h = x; break;
        case TOK_MI: v.mi = x; break;
        default: v.s = x; break;
        }
    }
    if (pos != len) {
        return false;
    }
    *ret = v;
    return true;
}

static bool date_ranges_ok(const struct dt *v)
{
    return v->mo >= 1 && v->mo <= 12 && v->d >= 1 && v->d <= 31;
}

static bool time_ranges_ok(const struct dt *v)
{
    return v->h <= 23 && v->mi <= 59 && v->s <= 59;
}

static void compile_builtin(struct map_fmt *f, const char *text, enum map_fmt_class cls)
{
    char why[8];
    /* Built-in formats are constants known to compile. */
    (void)sd_map_fmt_compile(text, strlen(text), cls, f, why, sizeof(why));
}

void sd_map_formats_init(struct map_formats *f)
{
    memset(f, 0, sizeof(*f));
    memcpy(f->offset, "Z", 2);
    f->amount_scale = -1;
    compile_builtin(&f->iso_date, "YYYY-MM-DD", MAP_FMT_DATE);
    compile_builtin(&f->iso_time, "HH:mm:ss", MAP_FMT_TIME);
    compile_builtin(&f->iso_time_hm, "HH:mm", MAP_FMT_TIME);
    compile_builtin(&f->iso_dt_t, "YYYY-MM-DDTHH:mm:ss", MAP_FMT_DATETIME);
    compile_builtin(&f->iso_dt_sp, "YYYY-MM-DD HH:mm:ss", MAP_FMT_DATETIME);
}

/* Write v as exactly n decimal digits (v is range-checked by the caller, 0 ≤ v < 10^n). */
static char *put_digits(char *o, int v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        o[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return o + n;
}

/* "YYYY-MM-DD" into o (10 bytes); returns the end. */
static char *put_date(char *o, const struct dt *v)
{
    o = put_digits(o, v->y, 4);
    *o++ = '-';
    o = put_digits(o, v->mo, 2);
    *o++ = '-';
    return put_digits(o, v->d, 2);
}

/* "HH:MM:SS" into o (8 bytes); returns the end. */
static char *put_time(char *o, const struct dt *v)
{
    o = put_digits(o, v->h, 2);
    *o++ = ':';
    o = put_digits(o, v->mi, 2);
    *o++ = ':';
    return put_digits(o, v->s, 2);
}

static bool match_date(const struct map_fmt *f, const char *s, size_t len, struct dt *v)
{
    return fmt_match(f, s, len, v) && date_ranges_ok(v);
}

static bool match_time(const struct map_fmt *f, const char *s, size_t len, struct dt *v)
{
    return fmt_match(f, s, len, v) && time_ranges_ok(v);
}

static bool match_datetime(const struct map_fmt *f, const char *s, size_t len, struct dt *v)
{
    return fmt_match(f, s, len, v) && date_ranges_ok(v) && time_ranges_ok(v);
}

int sd_map_date(const struct map_formats *f, const char *s, size_t len, char out[11])
{
    struct dt v;
    if ((f->has_date && match_date(&f->date, s, len, &v)) || match_date(&f->iso_date, s, len, &v)) {
        *put_date(out, &v) = '\0';
        return 0;
    }
    return -EINVAL;
}

int sd_map_time(const struct map_formats *f, const char *s, size_t len, char out[9])
{
    struct dt v;
    if ((f->has_time && match_time(&f->time, s, len, &v)) || match_time(&f->iso_time, s, len, &v) ||
        match_time(&f->iso_time_hm, s, len, &v)) {
        *put_time(out, &v) = '\0';
        return 0;
    }
    return -EINVAL;
}

/* v read on the zone's wall clock → "YYYY-MM-DDTHH:MM:SSZ". The calendar is the validator's to
 * check: a day the month does not have ("2025-02-31") is passed on unconverted, for it to
 * refuse, rather than rolled into the next month by the day count. */
static int zoned_to_utc(const struct sd_tz *tz, const struct dt *v, char out[48])
{
    static const int dim[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (v->y % 4 == 0 && v->y % 100 != 0) || v->y % 400 == 0;
    if (v->d > dim[v->mo - 1] || (v->mo == 2 && v->d == 29 && !leap)) {
        char *o = put_date(out, v);
        *o++ = 'T';
        o = put_time(o, v);
        memcpy(o, "Z", 2);
        return 0;
    }
    int64_t local = sd_days_from_civil(v->y, v->mo, v->d) * 86400 + v->h * 3600 + v->mi * 60 + v->s;
    int64_t utc;
    if (sd_tz_local_to_utc(tz, local, SD_TZ_EARLIER, &utc) < 0) {
        return -EINVAL;
    }
    int64_t days = utc >= 0 ? utc / 86400 : -((-utc + 86399) / 86400);
    int64_t rem = utc - days * 86400, y;
    int mo, d;
    sd_civil_from_days(days, &y, &mo, &d);
    if (y < 0 || y > 9999) {
        return -EINVAL;
    }
    struct dt u = {(int)y, mo, d, (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60)};
    char *o = put_date(out, &u);
    *o++ = 'T';
    o = put_time(o, &u);
    memcpy(o, "Z", 2);
    return 0;
}

#define DATETIME_MAX 47 /* longest RFC 3339 value passed through (9 fraction digits fit) */

int sd_map_datetime(const struct map_formats *f, const char *s, size_t len, char out[48])
{
    struct dt v;
    if ((f->has_datetime && match_datetime(&f->datetime, s, len, &v)) ||
        match_datetime(&f->iso_dt_t, s, len, &v) || match_datetime(&f->iso_dt_sp, s, len, &v)) {
        if (f->tz) {
            return zoned_to_utc(f->tz, &v, out);
        }
        char *o = put_date(out, &v);
        *o++ = 'T';
        o = put_time(o, &v);
        memcpy(o, f->offset, strlen(f->offset) + 1);
        return 0;
    }
    if (len > DATETIME_MAX) {
        return -EINVAL;
    }
    /* Already RFC 3339 (with its own zone): passed on as sent, but with the date and time
     * separated by 'T' where a space was used (RFC 3339 §5.6 note) so the validator takes it. */
    char buf[DATETIME_MAX + 1], utc[48];
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (len > 10 && buf[10] == ' ') {
        buf[10] = 'T';
    }
    if (sd_datetime_to_utc(buf, utc, sizeof(utc)) < 0) {
        return -EINVAL;
    }
    memcpy(out, buf, len + 1);
    return 0;
}

/* ---- scalars -------------------------------------------------------------------------------- */

static bool ascii_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

void sd_map_trim(const char **s, size_t *len)
{
    const char *p = *s;
    size_t n = *len;
    for (;;) {
        if (n > 0 && ascii_space(p[0])) {
            p++;
            n--;
        } else if (n > 1 && (unsigned char)p[0] == 0xc2 && (unsigned char)p[1] == 0xa0) {
            p += 2;
            n -= 2;
        } else {
            break;
        }
    }
    for (;;) {
        if (n > 0 && ascii_space(p[n - 1])) {
            n--;
        } else if (n > 1 && (unsigned char)p[n - 2] == 0xc2 && (unsigned char)p[n - 1] == 0xa0) {
            n -= 2;
        } else {
            break;
        }
    }
    *s = p;
    *len = n;
}

int sd_map_integer(const char *s, size_t len, json_int_t *ret)
{
    size_t i = 0;
    bool neg = false;
    if (i < len && (s[i] == '+' || s[i] == '-')) {
        neg = s[i] == '-';
        i++;
    }
    if (i == len) {
        return -EINVAL;
    }
    /* Accumulate negatively so that the most negative value fits too. */
    json_int_t v = 0;
    const json_int_t min = (json_int_t)(-0x7fffffffffffffffLL - 1);
    bool range = false;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -EINVAL;
        }
        int d = s[i] - '0';
        if (v < (min + d) / 10) {
            range = true;
        } else {
            v = v * 10 - d;
        }
    }
    if (range || (!neg && v == min)) {
        return -ERANGE;
    }
    *ret = neg ? v : -v;
    return 0;
}

int sd_map_bool(const char *s, size_t len)
{
    static const struct {
        const char *word;
        int value;
    } words[] = {
        {"true", 1},  {"1", 1}, {"yes", 1}, {"y", 1}, {"ja", 1},   {"j", 1},
        {"false", 0}, {"0", 0}, {"no", 0},  {"n", 0}, {"nein", 0},
    };
    if (len == 0 || len > 5) {
        return -1;
    }
    char low[6];
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        low[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    low[len] = '\0';
    for (size_t k = 0; k < sizeof(words) / sizeof(*words); k++) {
        if (strcmp(low, words[k].word) == 0) {
            return words[k].value;
        }
    }
    return -1;
}

#define DECIMAL_MAX 64 /* bytes of a decimal in source notation; far beyond any price */

int sd_map_decimal(const char *s, size_t len, bool comma, char *out, size_t outsz)
{
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == ',' || s[i] == '+' ||
              s[i] == '-')) {
            return 0;
        }
    }
    if (len > DECIMAL_MAX || outsz < DECIMAL_MAX + 2) {
        return -EINVAL;
    }
    char dec = comma ? ',' : '.', grp = comma ? '.' : ',';
    size_t i = 0, o = 0;
    if (i < len && (s[i] == '+' || s[i] == '-')) {
        if (s[i] == '-') {
            out[o++] = '-';
        }
        i++;
    }
    size_t first = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        out[o++] = s[i++];
        first++;
    }
    if (first == 0) {
        return -EINVAL;
    }
    bool grouped = false;
    while (i < len && s[i] == grp) {
        i++;
        for (int k = 0; k < 3; k++, i++) {
            if (i >= len || s[i] < '0' || s[i] > '9') {
                return -EINVAL;
            }
            out[o++] = s[i];
        }
        grouped = true;
    }
    if (grouped && first > 3) {
        return -EINVAL;
    }
    if (i < len && s[i] == dec) {
        out[o++] = '.';
        i++;
        size_t frac = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            out[o++] = s[i++];
            frac++;
        }
        if (frac == 0) {
            return -EINVAL;
        }
    }
    if (i != len) {
        return -EINVAL;
    }
    out[o] = '\0';
    return 1;
}

/* ---- cast ----------------------------------------------------------------------------------- */

json_t *sd_map_cast(const char *s, size_t len)
{
    json_t *arr = NULL;
    size_t start = 0;
    while (start <= len) {
        const char *end = memchr(s + start, ';', len - start);
        size_t stop = end ? (size_t)(end - s) : len;
        const char *e = s + start;
        size_t elen = stop - start;
        sd_map_trim(&e, &elen);
        if (elen > 0) {
            const char *name = e, *role = NULL;
            size_t nlen = elen, rlen = 0;
            if (e[elen - 1] == ')') {
                const char *open = NULL;
                for (size_t k = elen - 1; k-- > 0;) {
                    if (e[k] == '(') {
                        open = e + k;
                        break;
                    }
                }
                if (open) {
                    nlen = (size_t)(open - e);
                    role = open + 1;
                    rlen = (size_t)(e + elen - 1 - role);
                    sd_map_trim(&name, &nlen);
                    sd_map_trim(&role, &rlen);
                }
            }
            json_t *m = json_object();
            /* Cut at ASCII bytes of valid UTF-8: the pieces are valid UTF-8 too. */
            json_object_set_new_nocheck(m, "name", json_stringn_nocheck(name, nlen));
            if (rlen > 0) {
                json_object_set_new_nocheck(m, "role", json_stringn_nocheck(role, rlen));
            }
            if (!arr) {
                arr = json_array();
            }
            json_array_append_new(arr, m);
        }
        if (!end) {
            break;
        }
        start = stop + 1;
    }
    return arr;
}
