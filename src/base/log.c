/* log.c — one structured line per record on stderr. Callers never pass secrets or personal
 * data.
 *
 * Info and debug lines are appended to one buffer under a mutex and written in blocks (when
 * 32 KiB are waiting, or when sd_log_flush() runs — the server's housekeeping loop calls it four
 * times a second, and exit flushes): at tens of thousands of requests per second one write(2)
 * per line costs more than the request. Warnings and errors flush the buffer and are written at
 * once, so nothing important waits. Lines never interleave. */
#include "base/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "base/fmt.h"

static _Atomic int min_level = SD_LOG_INFO;

#define BUF_CAP (64 * 1024)
#define BUF_FLUSH_AT (32 * 1024)
static pthread_mutex_t buf_lock = PTHREAD_MUTEX_INITIALIZER;
static char buf[BUF_CAP];
static size_t buf_len;
static pthread_once_t atexit_once = PTHREAD_ONCE_INIT;

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w <= 0) {
            return; /* nowhere to report a failing stderr */
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Caller holds buf_lock. */
static void flush_locked(void)
{
    write_all(buf, buf_len);
    buf_len = 0;
}

void sd_log_flush(void)
{
    pthread_mutex_lock(&buf_lock);
    flush_locked();
    pthread_mutex_unlock(&buf_lock);
}

static void register_atexit(void)
{
    atexit(sd_log_flush);
}

void sd_log_set_level(enum sd_log_level lvl)
{
    atomic_store(&min_level, (int)lvl);
}

/* "YYYY-MM-DDTHH:MM:SS" of a second, formatted once per second and thread: gmtime_r takes
 * glibc's time zone lock, which every thread's request line would otherwise queue on. */
static const char *second_text(int64_t secs)
{
    static _Thread_local int64_t cached_secs = -1;
    static _Thread_local char text[80]; /* room for any int the fields may hold */
    if (secs != cached_secs) {
        time_t t = (time_t)secs;
        struct tm tm;
        gmtime_r(&t, &tm);
        snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached_secs = secs;
    }
    return text;
}

#define LINE_MAX_BYTES 2048 /* a line with its newline; longer ones are cut */

/* "ts=... level=... msg=\"...\"" */
static void put_head(struct sd_line *l, enum sd_log_level lvl, const char *msg)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    int64_t now = sd_now_usec();
    int ms = (int)(now % 1000000 / 1000);
    char frac[5] = {'.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10),
                    'Z'};
    sd_line_puts(l, "ts=");
    sd_line_puts(l, second_text(now / 1000000));
    sd_line_put(l, frac, sizeof(frac));
    sd_line_puts(l, " level=");
    sd_line_puts(l, names[lvl]);
    sd_line_puts(l, " msg=\"");
    sd_line_puts(l, msg);
    sd_line_put(l, "\"", 1);
}

/* The line (at most LINE_MAX_BYTES - 2 bytes, room left for the newline) goes out. */
static void emit(enum sd_log_level lvl, char *line, size_t n)
{
    line[n++] = '\n';
    pthread_once(&atexit_once, register_atexit);
    pthread_mutex_lock(&buf_lock);
    if (lvl >= SD_LOG_WARN || buf_len + n > BUF_CAP) {
        flush_locked();
    }
    if (lvl >= SD_LOG_WARN) {
        write_all(line, n);
    } else {
        memcpy(buf + buf_len, line, n);
        buf_len += n;
        if (buf_len >= BUF_FLUSH_AT) {
            flush_locked();
        }
    }
    pthread_mutex_unlock(&buf_lock);
}

void sd_log(enum sd_log_level lvl, const char *msg, const char *fmt, ...)
{
    if ((int)lvl < atomic_load(&min_level)) {
        return;
    }
    char line[LINE_MAX_BYTES];
    struct sd_line l;
    sd_line_init(&l, line, sizeof(line) - 1); /* the last byte is the newline's */
    put_head(&l, lvl, msg);
    if (fmt && l.len < l.cap - 1) {
        sd_line_put(&l, " ", 1);
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + l.len, l.cap - l.len, fmt, ap);
        va_end(ap);
        if (m > 0) {
            l.len += (size_t)m < l.cap - 1 - l.len ? (size_t)m : l.cap - 1 - l.len;
        }
    }
    emit(lvl, line, l.len);
}

void sd_log_text(enum sd_log_level lvl, const char *msg, const char *tail, size_t tail_len)
{
    if ((int)lvl < atomic_load(&min_level)) {
        return;
    }
    char line[LINE_MAX_BYTES];
    struct sd_line l;
    sd_line_init(&l, line, sizeof(line) - 1);
    put_head(&l, lvl, msg);
    if (tail && l.len < l.cap - 1) {
        sd_line_put(&l, " ", 1);
        sd_line_put(&l, tail, tail_len);
    }
    emit(lvl, line, l.len);
}

const char *sd_log_reason(int err)
{
    static _Thread_local char text[128];
    int e = err < 0 ? -err : err;
    /* GNU strerror_r: returns a static string or fills text; never fails. */
    const char *r = strerror_r(e, text, sizeof(text));
    if (r != text) {
        snprintf(text, sizeof(text), "%s", r);
    }
    return text;
}
