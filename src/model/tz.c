/* tz.c — a TZif reader (RFC 8536, versions 1 to 4) and the conversions between UTC and a
 * named zone's wall clock (see tz.h).
 *
 * A zone is its transition table (the 64-bit section of v2+ files, the 32-bit one of v1
 * files), its time types, and the POSIX TZ rule of the footer ("CET-1CEST,M3.5.0,M10.5.0/3")
 * that continues the table after its last transition. Nothing of the file is trusted: its size
 * is capped before reading, every count is checked against the bytes that remain (in 64-bit
 * arithmetic, so no product overflows), transition times must ascend strictly, every index
 * must name an existing type, offsets stay within ±26 h and the footer must parse completely.
 *
 * Invariant the local → UTC search rests on: every offset is within ±26 h, so the instants
 * that show a local time L lie in [L - 26 h, L + 26 h]; walking the offset regimes of that
 * window finds all of them (two in a repeated hour, none in a skipped one). */
#include "model/tz.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "model/model.h"

#define OFFSET_MAX (26 * 3600) /* |UT offset| of any type or rule */
#define RULE_HOURS_MAX 167     /* TZif v3+: a rule's transition time may be -167..167 h */
#define WINDOW OFFSET_MAX      /* see the invariant above */
#define CACHE_MAX 4096         /* zones kept per process */
#define HEADER_LEN 44

struct tz_type {
    int32_t off;
    uint8_t isdst;
};

/* One date of a POSIX rule: Jn (1..365, no Feb 29), n (0..365), or Mm.w.d. */
struct rule_date {
    char kind; /* 'J', 'N' or 'M' */
    int n, m, w, d;
    int32_t time; /* seconds after local midnight, -167 h .. 167 h */
};

struct posix_tz {
    int32_t std_off, dst_off; /* seconds east of UTC */
    bool has_dst;
    struct rule_date start, end;
};

struct sd_tz {
    char *name;
    size_t n_trans;
    int64_t *trans; /* strictly ascending UTC instants */
    uint8_t *trans_type;
    size_t n_types;
    struct tz_type *types;
    bool has_footer; /* false: after the last transition its type stays */
    struct posix_tz footer;
};

static void set_err(char *err, size_t errsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errsz, const char *fmt, ...)
{
    if (!err || errsz == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

/* ---- POSIX TZ strings -------------------------------------------------------------------------
 */

struct cursor {
    const char *p, *end;
};

static bool at_end(const struct cursor *c)
{
    return c->p >= c->end;
}

static int peek(const struct cursor *c)
{
    return at_end(c) ? -1 : (unsigned char)*c->p;
}

/* Up to `maxdigits` digits, value ≤ max. */
static bool parse_num(struct cursor *c, int maxdigits, int max, int *ret)
{
    int v = 0, n = 0;
    while (!at_end(c) && *c->p >= '0' && *c->p <= '9' && n < maxdigits) {
        v = v * 10 + (*c->p - '0');
        c->p++;
        n++;
    }
    if (n == 0 || v > max) {
        return false;
    }
    *ret = v;
    return true;
}

/* A zone abbreviation: three or more letters, or <…> of letters, digits, + and -. */
static bool parse_abbr(struct cursor *c)
{
    size_t n = 0;
    if (peek(c) == '<') {
        c->p++;
        while (!at_end(c) && *c->p != '>') {
            char ch = *c->p;
            bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                      (ch >= '0' && ch <= '9') || ch == '+' || ch == '-';
            if (!ok) {
                return false;
            }
            c->p++;
            n++;
        }
        if (at_end(c)) {
            return false;
        }
        c->p++;
        return n >= 3;
    }
    while (!at_end(c) && ((*c->p >= 'A' && *c->p <= 'Z') || (*c->p >= 'a' && *c->p <= 'z'))) {
        c->p++;
        n++;
    }
    return n >= 3;
}

/* [+-]hh[:mm[:ss]] with hours ≤ max_hours: seconds, sign applied as written. */
static bool parse_hms(struct cursor *c, int max_hours, int32_t *ret)
{
    int sign = 1, h = 0, m = 0, s = 0;
    if (peek(c) == '+' || peek(c) == '-') {
        sign = *c->p == '-' ? -1 : 1;
        c->p++;
    }
    if (!parse_num(c, 3, max_hours, &h)) {
        return false;
    }
    if (peek(c) == ':') {
        c->p++;
        if (!parse_num(c, 2, 59, &m)) {
            return false;
        }
        if (peek(c) == ':') {
            c->p++;
            if (!parse_num(c, 2, 59, &s)) {
                return false;
            }
        }
    }
    *ret = sign * (h * 3600 + m * 60 + s);
    return true;
}

static bool parse_rule_date(struct cursor *c, struct rule_date *r)
{
    *r = (struct rule_date){.time = 7200}; /* 02:00 unless given */
    if (peek(c) == 'J') {
        c->p++;
        r->kind = 'J';
        if (!parse_num(c, 3, 365, &r->n) || r->n < 1) {
            return false;
        }
    } else if (peek(c) == 'M') {
        c->p++;
        r->kind = 'M';
        if (!parse_num(c, 2, 12, &r->m) || r->m < 1 || peek(c) != '.') {
            return false;
        }
        c->p++;
        if (!parse_num(c, 1, 5, &r->w) || r->w < 1 || peek(c) != '.') {
            return false;
        }
        c->p++;
        if (!parse_num(c, 1, 6, &r->d)) {
            return false;
        }
    } else {
        r->kind = 'N';
        if (!parse_num(c, 3, 365, &r->n)) {
            return false;
        }
    }
    if (peek(c) == '/') {
        c->p++;
        if (!parse_hms(c, RULE_HOURS_MAX, &r->time)) {
            return false;
        }
    }
    return true;
}

/* "std offset [dst [offset] ,start[/time],end[/time]]"; a DST part without rules is refused
 * (the default rules POSIX leaves to the implementation would be a guess). */
static bool parse_posix(const char *s, size_t len, struct posix_tz *ret)
{
    struct cursor c = {s, s + len};
    struct posix_tz pt = {0};
    int32_t v;
    if (!parse_abbr(&c) || !parse_hms(&c, 24, &v)) {
        return false;
    }
    pt.std_off = -v; /* POSIX counts west as positive */
    if (at_end(&c)) {
        *ret = pt;
        return true;
    }
    if (!parse_abbr(&c)) {
        return false;
    }
    pt.has_dst = true;
    pt.dst_off = pt.std_off + 3600;
    if (peek(&c) != ',') {
        if (!parse_hms(&c, 24, &v)) {
            return false;
        }
        pt.dst_off = -v;
    }
    if (peek(&c) != ',') {
        return false;
    }
    c.p++;
    if (!parse_rule_date(&c, &pt.start) || peek(&c) != ',') {
        return false;
    }
    c.p++;
    if (!parse_rule_date(&c, &pt.end) || !at_end(&c)) {
        return false;
    }
    *ret = pt;
    return true;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int64_t y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Days since 1970-01-01 of the rule's date in year y. */
static int64_t rule_day(const struct rule_date *r, int64_t y)
{
    int64_t jan1 = sd_days_from_civil(y, 1, 1);
    switch (r->kind) {
    case 'J': return jan1 + r->n - 1 + (is_leap(y) && r->n >= 60 ? 1 : 0);
    case 'N': return jan1 + r->n;
    default: break;
    }
    int64_t first = sd_days_from_civil(y, r->m, 1);
    int wd = (int)(((first + 4) % 7 + 7) % 7); /* 1970-01-01 was a Thursday */
    int64_t day = first + (r->d - wd + 7) % 7 + (int64_t)(r->w - 1) * 7;
    while (day - first >= month_days(y, r->m)) { /* "5" means the last such weekday */
        day -= 7;
    }
    return day;
}

static int64_t year_of(int64_t t)
{
    int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
    int64_t y;
    int m, d;
    sd_civil_from_days(days, &y, &m, &d);
    return y;
}

/* The rule's transitions of years y-1 .. y+1, sorted: instant and isdst after it. */
static size_t rule_transitions(const struct posix_tz *pt, int64_t y, int64_t at[6], bool dst[6])
{
    size_t n = 0;
    for (int64_t yy = y - 1; yy <= y + 1; yy++) {
        at[n] = rule_day(&pt->start, yy) * 86400 + pt->start.time - pt->std_off;
        dst[n++] = true;
        at[n] = rule_day(&pt->end, yy) * 86400 + pt->end.time - pt->dst_off;
        dst[n++] = false;
    }
    for (size_t i = 1; i < n; i++) { /* insertion sort of six */
        for (size_t j = i; j > 0 && at[j] < at[j - 1]; j--) {
            int64_t ta = at[j];
            at[j] = at[j - 1];
            at[j - 1] = ta;
            bool td = dst[j];
            dst[j] = dst[j - 1];
            dst[j - 1] = td;
        }
    }
    return n;
}

static void footer_at(const struct posix_tz *pt, int64_t t, int32_t *off, int *isdst)
{
    if (!pt->has_dst) {
        *off = pt->std_off;
        *isdst = 0;
        return;
    }
    int64_t at[6];
    bool dst[6];
    size_t n = rule_transitions(pt, year_of(t + pt->std_off), at, dst);
    bool state = !dst[0];
    for (size_t i = 0; i < n && at[i] <= t; i++) {
        state = dst[i];
    }
    *off = state ? pt->dst_off : pt->std_off;
    *isdst = state;
}

/* ---- lookups ----------------------------------------------------------------------------------
 */

static bool in_range(int64_t t)
{
    return t >= -SD_TZ_SECONDS_MAX && t <= SD_TZ_SECONDS_MAX;
}

/* Index of the last transition ≤ t, or -1. */
static ptrdiff_t last_le(const struct sd_tz *tz, int64_t t)
{
    size_t lo = 0, hi = tz->n_trans; /* answer in [lo, hi) is the first > t */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->trans[mid] <= t) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return (ptrdiff_t)lo - 1;
}

static void offset_at(const struct sd_tz *tz, int64_t t, int32_t *off, int *isdst)
{
    if (tz->has_footer && (tz->n_trans == 0 || t >= tz->trans[tz->n_trans - 1])) {
        footer_at(&tz->footer, t, off, isdst);
        return;
    }
    ptrdiff_t i = last_le(tz, t);
    const struct tz_type *ty = &tz->types[i < 0 ? 0 : tz->trans_type[i]];
    *off = ty->off;
    *isdst = ty->isdst;
}

/* The first transition strictly after t: its instant in *ret. False when there is none. */
static bool next_transition(const struct sd_tz *tz, int64_t t, int64_t *ret)
{
    if (tz->n_trans > 0 && t < tz->trans[tz->n_trans - 1]) {
        *ret = tz->trans[last_le(tz, t) + 1];
        return true;
    }
    if (!tz->has_footer || !tz->footer.has_dst) {
        return false;
    }
    int64_t at[6];
    bool dst[6];
    for (int64_t y = year_of(t); y <= year_of(t) + 2; y++) {
        size_t n = rule_transitions(&tz->footer, y, at, dst);
        for (size_t i = 0; i < n; i++) {
            if (at[i] > t) {
                *ret = at[i];
                return true;
            }
        }
    }
    return false;
}

int sd_tz_offset_at(const struct sd_tz *tz, int64_t utc, int32_t *ret_offset, int *ret_isdst)
{
    if (!in_range(utc)) {
        return -ERANGE;
    }
    int32_t off;
    int isdst;
    offset_at(tz, utc, &off, &isdst);
    *ret_offset = off;
    if (ret_isdst) {
        *ret_isdst = isdst;
    }
    return 0;
}

int sd_tz_utc_to_local(const struct sd_tz *tz, int64_t utc, int64_t *ret_local)
{
    int32_t off;
    int r = sd_tz_offset_at(tz, utc, &off, NULL);
    if (r < 0) {
        return r;
    }
    *ret_local = utc + off;
    return 0;
}

int sd_tz_local_to_utc(const struct sd_tz *tz, int64_t local, enum sd_tz_policy policy,
                       int64_t *ret_utc)
{
    if (!in_range(local)) {
        return -ERANGE;
    }
    /* Walk the offset regimes [start, end) of the window: u = local - off is an instant showing
     * `local` when it falls in the regime whose offset is off. */
    int64_t first = 0, last = 0;
    size_t n = 0;
    int64_t start = local - WINDOW, limit = local + WINDOW, forward = 0;
    bool have_forward = false;
    int32_t prev_off = 0;
    bool have_prev = false;
    /* Each step passes one transition: the table's, or at most a few of the rule's per day. */
    for (size_t guard = 0; guard < tz->n_trans + 64 && start <= limit; guard++) {
        int32_t off;
        int isdst;
        offset_at(tz, start, &off, &isdst);
        int64_t end;
        bool more = next_transition(tz, start, &end);
        if (!more || end > limit + 1) {
            end = limit + 1;
        }
        if (have_prev && !have_forward && off > prev_off && start + prev_off <= local &&
            local < start + off) {
            forward = local - prev_off; /* in the gap this boundary opens */
            have_forward = true;
        }
        int64_t u = local - off;
        if (u >= start && u < end) {
            first = n == 0 ? u : first;
            last = u;
            n++;
        }
        prev_off = off;
        have_prev = true;
        start = end;
    }
    if (n == 1) {
        *ret_utc = first;
        return SD_TZ_UNIQUE;
    }
    if (n > 1) {
        if (policy == SD_TZ_REJECT) {
            return -ERANGE;
        }
        *ret_utc = policy == SD_TZ_LATER ? last : first;
        return SD_TZ_REPEATED;
    }
    if (policy == SD_TZ_REJECT || !have_forward) {
        return -ERANGE;
    }
    *ret_utc = forward;
    return SD_TZ_SKIPPED;
}

const char *sd_tz_name(const struct sd_tz *tz)
{
    return tz->name;
}

/* ---- TZif -------------------------------------------------------------------------------------
 */

struct tzif_counts {
    uint32_t isut, isstd, leap, time, type, chars;
};

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

static bool read_header(const uint8_t *p, size_t len, int *version, struct tzif_counts *c)
{
    if (len < HEADER_LEN || memcmp(p, "TZif", 4) != 0) {
        return false;
    }
    if (p[4] != 0 && (p[4] < '2' || p[4] > '4')) {
        return false;
    }
    *version = p[4] == 0 ? 1 : p[4] - '0';
    c->isut = be32(p + 20);
    c->isstd = be32(p + 24);
    c->leap = be32(p + 28);
    c->time = be32(p + 32);
    c->type = be32(p + 36);
    c->chars = be32(p + 40);
    return true;
}

/* Bytes of the data block that follows a header; 64-bit sums of 32-bit counts cannot wrap. */
static uint64_t block_len(const struct tzif_counts *c, unsigned tsize)
{
    return (uint64_t)c->time * tsize + c->time + (uint64_t)c->type * 6 + c->chars +
           (uint64_t)c->leap * (tsize + 4) + c->isstd + c->isut;
}

static int parse_block(struct sd_tz *tz, const uint8_t *p, const struct tzif_counts *c,
                       unsigned tsize, char *err, size_t errsz)
{
    if (c->type == 0 || c->type > 256 || c->chars == 0 || (c->isstd != 0 && c->isstd != c->type) ||
        (c->isut != 0 && c->isut != c->type)) {
        set_err(err, errsz, "inconsistent counts in the header");
        return -EBADMSG;
    }
    if (c->leap != 0) {
        set_err(err, errsz, "leap-second zone files are not supported");
        return -EBADMSG;
    }
    tz->n_trans = c->time;
    tz->trans = sd_calloc(c->time ? c->time : 1, sizeof(*tz->trans));
    tz->trans_type = sd_calloc(c->time ? c->time : 1, 1);
    for (size_t i = 0; i < c->time; i++) {
        tz->trans[i] = tsize == 8 ? be64(p + i * 8) : (int32_t)be32(p + i * 4);
        if (i > 0 && tz->trans[i] <= tz->trans[i - 1]) {
            set_err(err, errsz, "transition times do not ascend");
            return -EBADMSG;
        }
    }
    p += (size_t)c->time * tsize;
    for (size_t i = 0; i < c->time; i++) {
        if (p[i] >= c->type) {
            set_err(err, errsz, "a transition names a time type that does not exist");
            return -EBADMSG;
        }
        tz->trans_type[i] = p[i];
    }
    p += c->time;
    tz->n_types = c->type;
    tz->types = sd_calloc(c->type, sizeof(*tz->types));
    for (size_t i = 0; i < c->type; i++, p += 6) {
        int32_t off = (int32_t)be32(p);
        if (off < -OFFSET_MAX || off > OFFSET_MAX || p[4] > 1 || p[5] >= c->chars) {
            set_err(err, errsz, "a time type is out of range");
            return -EBADMSG;
        }
        tz->types[i] = (struct tz_type){.off = off, .isdst = p[4]};
    }
    p += c->chars;
    for (size_t i = 0; i < (size_t)c->isstd + c->isut; i++) {
        if (p[i] > 1) {
            set_err(err, errsz, "a standard/UT indicator is neither 0 nor 1");
            return -EBADMSG;
        }
    }
    return 0;
}

int sd_tz_parse(const void *data, size_t len, const char *name, struct sd_tz **ret, char *err,
                size_t errsz)
{
    const uint8_t *p = data;
    struct sd_tz *tz = sd_calloc(1, sizeof(*tz));
    tz->name = sd_strdup(name ? name : "");
    int version, r = -EBADMSG;
    struct tzif_counts c;
    if (len > SD_TZ_FILE_MAX) {
        set_err(err, errsz, "file larger than %d bytes", SD_TZ_FILE_MAX);
        goto out;
    }
    if (!read_header(p, len, &version, &c)) {
        set_err(err, errsz, "not a TZif file");
        goto out;
    }
    uint64_t need = HEADER_LEN + block_len(&c, 4);
    if (need > len) {
        set_err(err, errsz, "truncated");
        goto out;
    }
    if (version == 1) {
        r = parse_block(tz, p + HEADER_LEN, &c, 4, err, errsz);
        goto out;
    }
    /* v2+: the 64-bit section follows the 32-bit one, then "\n<TZ string>\n". */
    const uint8_t *h2 = p + need;
    size_t rest = len - (size_t)need;
    int v2;
    if (!read_header(h2, rest, &v2, &c)) {
        set_err(err, errsz, "second header missing or damaged");
        goto out;
    }
    uint64_t need2 = HEADER_LEN + block_len(&c, 8);
    if (need2 > rest) {
        set_err(err, errsz, "truncated");
        goto out;
    }
    r = parse_block(tz, h2 + HEADER_LEN, &c, 8, err, errsz);
    if (r < 0) {
        goto out;
    }
    r = -EBADMSG;
    const char *f = (const char *)h2 + need2;
    size_t flen = rest - (size_t)need2;
    const char *nl = flen > 1 && f[0] == '\n' ? memchr(f + 1, '\n', flen - 1) : NULL;
    if (!nl) {
        set_err(err, errsz, "footer missing or damaged");
        goto out;
    }
    size_t slen = (size_t)(nl - f - 1);
    if (slen > 0) {
        if (!parse_posix(f + 1, slen, &tz->footer)) {
            set_err(err, errsz, "footer TZ string not valid");
            goto out;
        }
        tz->has_footer = true;
    }
    r = 0;
out:
    if (r < 0) {
        sd_tz_free(tz);
        return r;
    }
    *ret = tz;
    return 0;
}

void sd_tz_free(struct sd_tz *tz)
{
    if (!tz) {
        return;
    }
    free(tz->name);
    free(tz->trans);
    free(tz->trans_type);
    free(tz->types);
    free(tz);
}

/* ---- names, files and the cache ---------------------------------------------------------------
 */

static bool name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > SD_TZ_NAME_MAX || name[0] == '/' || name[len - 1] == '/') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '+' || ch == '-' || ch == '/';
        if (!ok || (ch == '/' && name[i + 1] == '/')) {
            return false;
        }
    }
    return true;
}

static int read_file(const char *path, uint8_t **ret, size_t *ret_len)
{
    /* O_NONBLOCK: a FIFO planted in the directory must not hang the open. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        return errno == ENOTDIR ? -ENOENT : -errno;
    }
    uint8_t *buf = NULL;
    struct stat st;
    int r;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = -ENOENT;
        goto out;
    }
    if (st.st_size > SD_TZ_FILE_MAX) {
        r = -EFBIG;
        goto out;
    }
    /* One byte more than allowed: a file that grew since fstat is noticed. */
    buf = sd_malloc(SD_TZ_FILE_MAX + 1);
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, SD_TZ_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            r = -errno;
            goto out;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
        if (len > SD_TZ_FILE_MAX) {
            r = -EFBIG;
            goto out;
        }
    }
    *ret = buf;
    *ret_len = len;
    buf = NULL;
    r = 0;
out:
    free(buf);
    close(fd);
    return r;
}

struct cache_entry {
    struct cache_entry *next;
    char *path;
    struct sd_tz *tz;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cache_entry *cache_head;
static size_t cache_n;

int sd_tz_get(const char *name, const struct sd_tz **ret, char *err, size_t errsz)
{
    if (!name || !name_valid(name)) {
        set_err(err, errsz,
                "'%.*s' is not a time zone name (an IANA name such as Europe/Berlin: letters, "
                "digits, _ + - and /, at most %d bytes)",
                SD_TZ_NAME_MAX, name ? name : "", SD_TZ_NAME_MAX);
        return -EINVAL;
    }
    const char *dir = getenv("TZDIR");
    char *path = sd_asprintf("%s/%s", dir && *dir ? dir : SD_TZ_DEFAULT_DIR, name);
    uint8_t *data = NULL;
    size_t len = 0;
    struct sd_tz *tz = NULL;
    char why[128] = "";
    int r;
    pthread_mutex_lock(&cache_lock);
    for (struct cache_entry *e = cache_head; e; e = e->next) {
        if (strcmp(e->path, path) == 0) {
            *ret = e->tz;
            r = 0;
            goto out;
        }
    }
    if (cache_n >= CACHE_MAX) {
        set_err(err, errsz, "time zone '%s' not loaded: more than %d zones in use", name,
                CACHE_MAX);
        r = -ENOSPC;
        goto out;
    }
    r = read_file(path, &data, &len);
    if (r == -ENOENT) {
        set_err(err, errsz, "unknown time zone '%s' (no such zone in the tz database)", name);
        goto out;
    }
    if (r < 0) {
        set_err(err, errsz, "time zone '%s' cannot be read: %s", name,
                r == -EFBIG ? "file too large" : strerror(-r));
        goto out;
    }
    r = sd_tz_parse(data, len, name, &tz, why, sizeof(why));
    if (r < 0) {
        set_err(err, errsz, "time zone '%s' is not a valid TZif file: %s", name, why);
        goto out;
    }
    struct cache_entry *e = sd_calloc(1, sizeof(*e));
    e->path = path;
    e->tz = tz;
    e->next = cache_head;
    cache_head = e;
    cache_n++;
    path = NULL;
    *ret = tz;
    tz = NULL;
out:
    pthread_mutex_unlock(&cache_lock);
    sd_tz_free(tz);
    free(data);
    free(path);
    return r;
}
