/* schedule.c — parsing schedule strings and computing the next run (see schedule.h). Calendar
 * forms ("hourly", "daily at", cron) are all compiled to cron bit sets, so one search finds
 * the next slot, skipping whole months, days and hours that cannot match.
 *
 * In a named zone the search runs on the zone's wall clock and every matching local minute is
 * turned into an instant (model/tz.h: a skipped minute moves forward by the gap, a repeated one
 * is its earlier instant, and also its later one for schedules that run every hour). Local and
 * UTC order differ only within a clock change, so the search starts a little before the local
 * time of the previous run and, once it has an instant after that run, looks a little further
 * for an earlier one (CHANGE_MAX covers every change in the tz database but whole skipped days,
 * where the next run found is still a real future run, only perhaps not the first). */
#include "core/schedule.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "model/model.h"
#include "model/tz.h"

#define MIN_USEC 60000000LL
#define CHANGE_MAX (3 * 3600) /* seconds: the largest clock change searched around */
#define ALL_HOURS 0xffffffU

static const char *skip_ws(const char *p)
{
    while (*p && isspace((unsigned char)*p)) {
        p++;
    }
    return p;
}

static bool parse_uint(const char **pp, int max, int *ret)
{
    const char *p = *pp;
    if (!isdigit((unsigned char)*p)) {
        return false;
    }
    long v = 0;
    while (isdigit((unsigned char)*p)) {
        v = v * 10 + (*p - '0');
        if (v > max) {
            return false;
        }
        p++;
    }
    *ret = (int)v;
    *pp = p;
    return true;
}

/* One cron field: "*", "*\/n", "a", "a-b", "a-b/n", comma lists. */
static bool cron_field(const char *f, size_t len, int lo, int hi, uint64_t *ret, bool *any)
{
    char buf[64];
    if (len == 0 || len >= sizeof(buf)) {
        return false;
    }
    memcpy(buf, f, len);
    buf[len] = '\0';
    uint64_t bits = 0;
    *any = strcmp(buf, "*") == 0;
    char *save = NULL;
    for (char *part = strtok_r(buf, ",", &save); part; part = strtok_r(NULL, ",", &save)) {
        const char *p = part;
        int a = lo, b = hi, step = 1;
        if (*p == '*') {
            p++;
        } else {
            if (!parse_uint(&p, hi, &a) || a < lo) {
                return false;
            }
            b = a;
            if (*p == '-') {
                p++;
                if (!parse_uint(&p, hi, &b) || b < a) {
                    return false;
                }
            }
        }
        if (*p == '/') {
            p++;
            if (!parse_uint(&p, hi, &step) || step == 0) {
                return false;
            }
            if (b == a && part[0] != '*') {
                b = hi;
            }
        }
        if (*p) {
            return false;
        }
        for (int v = a; v <= b; v += step) {
            bits |= 1ULL << v;
        }
    }
    *ret = bits;
    return bits != 0;
}

static int parse_cron(const char *s, struct sd_schedule *sc, const char **why)
{
    const char *fields[5];
    size_t lens[5];
    const char *p = s;
    for (int i = 0; i < 5; i++) {
        p = skip_ws(p);
        if (!*p) {
            *why = "cron needs five fields: minute hour day-of-month month day-of-week";
            return -EINVAL;
        }
        fields[i] = p;
        while (*p && !isspace((unsigned char)*p)) {
            p++;
        }
        lens[i] = (size_t)(p - fields[i]);
    }
    if (*skip_ws(p)) {
        *why = "cron needs five fields: minute hour day-of-month month day-of-week";
        return -EINVAL;
    }
    uint64_t v[5];
    bool any[5];
    static const int lo[5] = {0, 0, 1, 1, 0}, hi[5] = {59, 23, 31, 12, 7};
    for (int i = 0; i < 5; i++) {
        if (!cron_field(fields[i], lens[i], lo[i], hi[i], &v[i], &any[i])) {
            *why = "a cron field is not valid (use *, numbers, ranges a-b, steps /n, lists)";
            return -EINVAL;
        }
    }
    sc->kind = SD_SCHED_CRON;
    sc->minutes = v[0];
    sc->hours = (uint32_t)v[1];
    sc->mdays = (uint32_t)v[2];
    sc->months = (uint16_t)v[3];
    sc->wdays = (uint8_t)((v[4] | (v[4] >> 7)) & 0x7f); /* 7 is Sunday too */
    sc->mday_any = any[2];
    sc->wday_any = any[4];
    return 0;
}

static void daily_at(struct sd_schedule *sc, int h, int m)
{
    *sc = (struct sd_schedule){.kind = SD_SCHED_CRON,
                               .minutes = 1ULL << m,
                               .hours = 1U << h,
                               .mdays = 0xfffffffeU,
                               .months = 0x1ffe,
                               .wdays = 0x7f,
                               .mday_any = true,
                               .wday_any = true};
}

static int parse_form(const char *s, struct sd_schedule *ret, const char **why)
{
    struct sd_schedule sc = {0};
    const char *p = skip_ws(s);
    char word[16] = "";
    size_t wl = 0;
    while (isalpha((unsigned char)p[wl]) && wl < sizeof(word) - 1) {
        word[wl] = (char)tolower((unsigned char)p[wl]);
        wl++;
    }
    word[wl] = '\0';
    const char *rest = skip_ws(p + wl);
    if (strcmp(word, "manual") == 0 && !*rest) {
        sc.kind = SD_SCHED_MANUAL;
    } else if (strcmp(word, "every") == 0) {
        int n = 0;
        if (!parse_uint(&rest, 1000000, &n) || n == 0) {
            *why = "\"every\" needs a positive number and a unit: every 30s, 15m, 2h or 1d";
            return -EINVAL;
        }
        char unit = (char)tolower((unsigned char)*rest);
        int64_t mul = unit == 's'   ? 1000000LL
                      : unit == 'm' ? MIN_USEC
                      : unit == 'h' ? 60 * MIN_USEC
                      : unit == 'd' ? 1440 * MIN_USEC
                                    : 0;
        if (!mul || *skip_ws(rest + 1)) {
            *why = "\"every\" needs a unit: s, m, h or d (every 15m)";
            return -EINVAL;
        }
        sc.kind = SD_SCHED_EVERY;
        sc.every_usec = mul * n;
        if (sc.every_usec < 10 * 1000000LL || sc.every_usec > 7 * 1440 * MIN_USEC) {
            *why = "an interval must be from 10s to 7d";
            return -EINVAL;
        }
    } else if (strcmp(word, "hourly") == 0) {
        int m = 0;
        if (*rest) {
            if (strncasecmp(rest, "at", 2) != 0) {
                return -EINVAL;
            }
            rest = skip_ws(rest + 2);
            if (*rest == ':') {
                rest++;
            }
            if (!parse_uint(&rest, 59, &m) || *skip_ws(rest)) {
                *why = "\"hourly at :MM\" needs a minute 00..59";
                return -EINVAL;
            }
        }
        daily_at(&sc, 0, m);
        sc.hours = 0xffffff;
    } else if (strcmp(word, "daily") == 0) {
        int h = 0, m = 0;
        if (*rest) {
            if (strncasecmp(rest, "at", 2) != 0) {
                return -EINVAL;
            }
            rest = skip_ws(rest + 2);
            if (!parse_uint(&rest, 23, &h) || *rest++ != ':' || !parse_uint(&rest, 59, &m) ||
                *skip_ws(rest)) {
                *why = "\"daily at HH:MM\" needs a time 00:00..23:59";
                return -EINVAL;
            }
        }
        daily_at(&sc, h, m);
    } else if (wl == 0) {
        if (parse_cron(p, &sc, why) < 0) {
            return -EINVAL;
        }
    } else {
        return -EINVAL;
    }
    *ret = sc;
    return 0;
}

int sd_schedule_parse(const char *s, struct sd_schedule *ret, const char **why)
{
    static const char bad[] = "unknown schedule (use \"manual\", \"every 15m\", \"hourly\","
                              " \"daily at 02:00\" or a five-field cron expression, optionally"
                              " followed by a time zone such as Europe/Berlin)";
    *why = bad;
    if (!s || strlen(s) > SD_SCHEDULE_MAX) {
        return -EINVAL;
    }
    /* A last word that starts with a letter, after at least one other word, names the zone:
     * no form ends in such a word otherwise ("manual", "hourly" and "daily" are first words). */
    char buf[SD_SCHEDULE_MAX + 1];
    size_t len = strlen(s);
    memcpy(buf, s, len + 1);
    while (len > 0 && isspace((unsigned char)buf[len - 1])) {
        buf[--len] = '\0';
    }
    size_t start = len;
    while (start > 0 && !isspace((unsigned char)buf[start - 1])) {
        start--;
    }
    const char *zone = NULL;
    if (start > 0 && *skip_ws(buf) != '\0' && skip_ws(buf) < buf + start &&
        isalpha((unsigned char)buf[start])) {
        zone = buf + start;
        buf[start - 1] = '\0';
    }
    struct sd_schedule sc;
    int r = parse_form(buf, &sc, why);
    if (r < 0) {
        return r;
    }
    if (zone) {
        if (sc.kind != SD_SCHED_CRON) {
            *why = "a time zone only applies to \"hourly\", \"daily\" and cron schedules";
            return -EINVAL;
        }
        if (strcmp(zone, "UTC") != 0 && sd_tz_get(zone, &sc.tz, NULL, 0) < 0) {
            *why = "unknown time zone after the schedule (an IANA name from the tz database such"
                   " as Europe/Berlin or America/New_York; names are case-sensitive)";
            return -EINVAL;
        }
    }
    *ret = sc;
    return 0;
}

static bool cron_day(const struct sd_schedule *sc, int mday, int wday)
{
    bool md = sc->mdays >> mday & 1, wd = sc->wdays >> wday & 1;
    if (sc->mday_any || sc->wday_any) {
        return md && wd;
    }
    return md || wd;
}

/* The first minute ≥ t (seconds on the schedule's clock, a whole minute) whose calendar fields
 * match, skipping by month, day, hour and minute (a field that does not match moves to the
 * start of the next unit), up to five years ("0 0 29 2 *" must find the next leap day);
 * INT64_MAX when there is none. */
static int64_t next_match(const struct sd_schedule *sc, int64_t t)
{
    int64_t limit = t + (int64_t)5 * 366 * 86400;
    while (t < limit) {
        int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
        int64_t rem = t - days * 86400, y;
        int mon, mday, hour = (int)(rem / 3600), min = (int)(rem / 60 % 60);
        int wday = (int)(((days + 4) % 7 + 7) % 7); /* 1970-01-01 was a Thursday */
        sd_civil_from_days(days, &y, &mon, &mday);
        if (!(sc->months >> mon & 1)) {
            t = (mon == 12 ? sd_days_from_civil(y + 1, 1, 1) : sd_days_from_civil(y, mon + 1, 1)) *
                86400;
        } else if (!cron_day(sc, mday, wday)) {
            t = (days + 1) * 86400;
        } else if (!(sc->hours >> hour & 1)) {
            t = days * 86400 + (hour + 1) * 3600;
        } else if (!(sc->minutes >> min & 1)) {
            t = days * 86400 + hour * 3600 + (min + 1) * 60;
        } else {
            return t;
        }
    }
    return INT64_MAX;
}

/* The first run strictly after `from` (µs) of a calendar schedule in a named zone. */
static int64_t next_in_zone(const struct sd_schedule *sc, int64_t from)
{
    int64_t from_s = from >= 0 ? from / 1000000 : -((-from + 999999) / 1000000);
    int64_t local;
    if (sd_tz_utc_to_local(sc->tz, from_s, &local) < 0) {
        return INT64_MAX;
    }
    int64_t l = local - CHANGE_MAX;
    l = (l >= 0 ? l / 60 : -((-l + 59) / 60)) * 60;
    int64_t best = INT64_MAX, stop = INT64_MAX;
    /* Matches before the first acceptable one lie within CHANGE_MAX of local: at most a few
     * hundred minutes, whatever the schedule. */
    for (int guard = 0; guard < 2000; guard++) {
        l = next_match(sc, l);
        if (l == INT64_MAX || l > stop) {
            break;
        }
        int64_t u[2];
        int n = 0;
        int k = sd_tz_local_to_utc(sc->tz, l, SD_TZ_EARLIER, &u[n]);
        n += k >= 0;
        /* A schedule that runs every hour runs in both passes of a repeated hour; one bound to
         * given hours runs once, in the first. */
        if (k == SD_TZ_REPEATED && sc->hours == ALL_HOURS &&
            sd_tz_local_to_utc(sc->tz, l, SD_TZ_LATER, &u[n]) >= 0) {
            n++;
        }
        for (int i = 0; i < n; i++) {
            if (u[i] * 1000000 > from && u[i] < best) {
                best = u[i];
            }
        }
        if (best != INT64_MAX && stop == INT64_MAX) {
            stop = l + CHANGE_MAX;
        }
        l += 60;
    }
    return best == INT64_MAX ? INT64_MAX : best * 1000000;
}

int64_t sd_schedule_next(const struct sd_schedule *sc, int64_t last_usec, int64_t now_usec)
{
    switch (sc->kind) {
    case SD_SCHED_MANUAL: return INT64_MAX;
    case SD_SCHED_EVERY: return last_usec <= 0 ? now_usec : last_usec + sc->every_usec;
    case SD_SCHED_CRON: break;
    }
    int64_t from = last_usec > 0 ? last_usec : now_usec;
    if (sc->tz) {
        return next_in_zone(sc, from);
    }
    /* UTC: the next whole minute strictly after `from`. */
    int64_t t = next_match(sc, (from / MIN_USEC + 1) * 60);
    return t == INT64_MAX ? INT64_MAX : t * 1000000;
}
