/* datetime.c — calendar dates, wall-clock times and RFC 3339 timestamps of the data model.
 *
 * Parsing is strict and by hand (fixed positions, ASCII digits only), never via strptime or
 * the C library's time zone machinery: results must not depend on the process TZ or locale.
 * UTC conversion uses the proleptic Gregorian day count (Howard Hinnant's days_from_civil),
 * so no gmtime/timegm is needed. Years are limited to 1900..9999 before and after conversion,
 * which keeps every stored timestamp four-digit and sortable as text. Leap seconds (":60") are
 * rejected: a ticket sale is never stamped inside one and the store cannot represent it. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "model/model.h"

#define FRACTION_MAX 9 /* nanoseconds; more digits would be fake precision */

static bool parse_digits(const char *s, int n, int *ret)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *ret = v;
    return true;
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* "YYYY-MM-DD" at s (10 bytes available). */
static bool parse_date(const char *s, int *y, int *m, int *d)
{
    if (!parse_digits(s, 4, y) || s[4] != '-' || !parse_digits(s + 5, 2, m) || s[7] != '-' ||
        !parse_digits(s + 8, 2, d)) {
        return false;
    }
    return *y >= 1900 && *y <= 9999 && *m >= 1 && *m <= 12 && *d >= 1 &&
           *d <= days_in_month(*y, *m);
}

/* "HH:MM:SS" at s (8 bytes available). */
static bool parse_time(const char *s, int *h, int *mi, int *sec)
{
    if (!parse_digits(s, 2, h) || s[2] != ':' || !parse_digits(s + 3, 2, mi) || s[5] != ':' ||
        !parse_digits(s + 6, 2, sec)) {
        return false;
    }
    return *h <= 23 && *mi <= 59 && *sec <= 59;
}

bool sd_date_valid(const char *s)
{
    int y, m, d;
    return s && strlen(s) == 10 && parse_date(s, &y, &m, &d);
}

bool sd_time_valid(const char *s)
{
    int h, mi, sec;
    return s && strlen(s) == 8 && parse_time(s, &h, &mi, &sec);
}

int64_t sd_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void sd_civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

int sd_datetime_to_utc(const char *s, char *out, size_t outsz)
{
    if (!s || !out) {
        return -EINVAL;
    }
    size_t len = strlen(s);
    int y, mo, d, h, mi, sec;
    if (len < 20 || !parse_date(s, &y, &mo, &d) || (s[10] != 'T' && s[10] != 't') ||
        !parse_time(s + 11, &h, &mi, &sec)) {
        return -EINVAL;
    }
    size_t i = 19, frac_start = 0, frac_len = 0;
    if (s[i] == '.') {
        frac_start = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
        frac_len = i - frac_start;
        if (frac_len == 0 || frac_len > FRACTION_MAX) {
            return -EINVAL;
        }
    }
    int offset_min = 0;
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < len && (s[i] == '+' || s[i] == '-')) {
        int oh, om;
        if (len - i < 6 || !parse_digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
            !parse_digits(s + i + 4, 2, &om) || oh > 23 || om > 59) {
            return -EINVAL;
        }
        offset_min = (oh * 60 + om) * (s[i] == '-' ? -1 : 1);
        i += 6;
    } else {
        return -EINVAL;
    }
    if (i != len) {
        return -EINVAL;
    }
    int64_t t =
        sd_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - (int64_t)offset_min * 60;
    int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
    int64_t rem = t - days * 86400;
    int64_t uy;
    int um, ud;
    sd_civil_from_days(days, &uy, &um, &ud);
    if (uy < 1900 || uy > 9999) {
        return -EINVAL;
    }
    int uh = (int)(rem / 3600), umi = (int)(rem / 60 % 60), us = (int)(rem % 60);
    int n;
    if (frac_len > 0) {
        n = snprintf(out, outsz, "%04d-%02d-%02dT%02d:%02d:%02d.%.*sZ", (int)uy, um, ud, uh, umi,
                     us, (int)frac_len, s + frac_start);
    } else {
        n = snprintf(out, outsz, "%04d-%02d-%02dT%02d:%02d:%02dZ", (int)uy, um, ud, uh, umi, us);
    }
    if (n < 0 || (size_t)n >= outsz) {
        return -EINVAL;
    }
    return 0;
}
