/* log.c — one structured line per record on stderr, written with a single write(2) so lines
 * from different threads never interleave. Callers never pass secrets or personal data. */
#include "base/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"

static _Atomic int min_level = SD_LOG_INFO;

void sd_log_set_level(enum sd_log_level lvl)
{
    atomic_store(&min_level, (int)lvl);
}

void sd_log(enum sd_log_level lvl, const char *msg, const char *fmt, ...)
{
    if ((int)lvl < atomic_load(&min_level)) {
        return;
    }
    static const char *names[] = {"debug", "info", "warn", "error"};
    int64_t now = sd_now_usec();
    time_t secs = (time_t)(now / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char line[2048];
    int n = snprintf(line, sizeof(line),
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s msg=\"%s\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(now % 1000000 / 1000), names[lvl], msg);
    if (n < 0) {
        return;
    }
    if ((size_t)n < sizeof(line) - 2 && fmt) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
        va_end(ap);
        if (m > 0) {
            n += m;
        }
    }
    if ((size_t)n > sizeof(line) - 2) {
        n = (int)sizeof(line) - 2;
    }
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
