/* log.h — structured, one-line log records to stderr.
 * A line is `ts=... level=... msg="..." key=value ...`. Callers pass key/value pairs already
 * formatted; secrets, API keys and personal data must never be passed here. Thread-safe; lines
 * never interleave. Info/debug lines are buffered briefly (sd_log_flush). */
#ifndef SD_LOG_H
#define SD_LOG_H

#include <stddef.h>

enum sd_log_level { SD_LOG_DEBUG = 0, SD_LOG_INFO, SD_LOG_WARN, SD_LOG_ERROR };

void sd_log_set_level(enum sd_log_level lvl);
/* fmt produces the `key=value ...` tail after msg (may be NULL). */
void sd_log(enum sd_log_level lvl, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The same line with its `key=value ...` tail already formatted (tail_len bytes, may be NULL):
 * for lines written on every request, without printf. */
void sd_log_text(enum sd_log_level lvl, const char *msg, const char *tail, size_t tail_len);

/* The reason text of an errno for a log line: sd_log_reason(-ECONNREFUSED) is "Connection
 * refused" (negative or positive codes; 0 is "Success"). Thread-safe: the text is in a per-thread
 * buffer, valid until the thread's next call, so use it once per sd_log call. Every line that
 * prints a negative errno prints its reason too, through these two: */
const char *sd_log_reason(int err);
#define SD_LOG_ERR_FMT "err=%d reason=\"%s\""
#define SD_LOG_ERR_ARGS(e) (e), sd_log_reason(e)

/* Write out buffered info/debug lines (see log.c). Safe from any thread; runs at exit. */
void sd_log_flush(void);

#endif
