/* test_log.c — log helpers: the reason text printed beside a negative errno ("err=-111" alone
 * said nothing), for negative and positive codes, per thread; the line format (ts, level, msg,
 * tail), the same from sd_log and sd_log_text, and long lines cut to 2047 bytes with their
 * newline. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/log.h"

static void test_reason(void **state)
{
    assert_string_equal(sd_log_reason(-ECONNREFUSED), "Connection refused");
    assert_string_equal(sd_log_reason(ENOENT), "No such file or directory");
    assert_string_equal(sd_log_reason(-ENOSPC), "No space left on device");
    /* An unknown code still gives text, never NULL or empty. */
    const char *u = sd_log_reason(-99999);
    assert_non_null(u);
    assert_true(strlen(u) > 0);
    /* The line format the callers use. */
    char line[128];
    snprintf(line, sizeof(line), SD_LOG_ERR_FMT, SD_LOG_ERR_ARGS(-ECONNREFUSED));
    assert_string_equal(line, "err=-111 reason=\"Connection refused\"");
}

static void *other_thread(void *arg)
{
    (void)arg;
    return (void *)sd_log_reason(-ETIMEDOUT);
}

static void test_per_thread(void **state)
{
    const char *mine = sd_log_reason(-EACCES);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, other_thread, NULL), 0);
    void *theirs = NULL;
    assert_int_equal(pthread_join(t, &theirs), 0);
    assert_string_equal(mine, "Permission denied"); /* not overwritten by the other thread */
}

/* Runs fn with stderr sent to a temporary file; returns what was written (heap). */
static char *capture(void (*fn)(void))
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    sd_log_flush();
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
    fn();
    sd_log_flush();
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    off_t n = lseek(fileno(tmp), 0, SEEK_END);
    assert_true(n >= 0);
    char *text = calloc(1, (size_t)n + 1);
    assert_int_equal(pread(fileno(tmp), text, (size_t)n, 0), n);
    fclose(tmp);
    return text;
}

static void two_lines(void)
{
    sd_log(SD_LOG_INFO, "request", "request_id=%s status=%d duration_us=%lld", "abc", 202,
           (long long)-17);
    static const char tail[] = "request_id=abc status=202 duration_us=-17";
    sd_log_text(SD_LOG_INFO, "request", tail, sizeof(tail) - 1);
    sd_log_text(SD_LOG_INFO, "no tail", NULL, 0);
    sd_log(SD_LOG_DEBUG, "below the level", "x=%d", 1); /* not written */
}

/* "ts=YYYY-MM-DDTHH:MM:SS.mmmZ " of now (within a few seconds); returns the rest. */
static const char *check_ts(const char *line)
{
    int y, mo, d, h, mi, sec, ms, used = 0;
    assert_int_equal(
        sscanf(line, "ts=%4d-%2d-%2dT%2d:%2d:%2d.%3dZ %n", &y, &mo, &d, &h, &mi, &sec, &ms, &used),
        7);
    assert_int_equal(used, 28);
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    time_t now = time(NULL);
    assert_true(t <= now && now - t <= 5);
    assert_true(ms >= 0 && ms <= 999);
    return line + used;
}

static void test_line_format(void **state)
{
    (void)state;
    char *text = capture(two_lines);
    char *lines[4] = {text, NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) {
        char *nl = strchr(lines[i], '\n');
        assert_non_null(nl);
        *nl = '\0';
        lines[i + 1] = nl + 1;
    }
    assert_string_equal(lines[3], ""); /* nothing after the third line */
    char *l1 = lines[0], *l2 = lines[1], *l3 = lines[2];
    const char *want = "level=info msg=\"request\" request_id=abc status=202 duration_us=-17";
    assert_string_equal(check_ts(l1), want);
    assert_string_equal(check_ts(l2), want);
    assert_string_equal(check_ts(l3), "level=info msg=\"no tail\"");
    free(text);
}

static void long_lines(void)
{
    static char big[5000];
    memset(big, 'v', sizeof(big) - 1);
    sd_log(SD_LOG_WARN, "long", "k=%s", big);
    sd_log_text(SD_LOG_WARN, "long", big, sizeof(big) - 1);
}

static void test_long_lines_cut(void **state)
{
    (void)state;
    char *text = capture(long_lines);
    char *nl = strchr(text, '\n');
    assert_non_null(nl);
    assert_int_equal(nl - text + 1, 2047);
    char *nl2 = strchr(nl + 1, '\n');
    assert_non_null(nl2);
    assert_int_equal(nl2 - nl, 2047);
    assert_int_equal(nl2[1], '\0');
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reason),
        cmocka_unit_test(test_per_thread),
        cmocka_unit_test(test_line_format),
        cmocka_unit_test(test_long_lines_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
