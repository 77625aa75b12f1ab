/* test_log.c — log helpers: the reason text printed beside a negative errno ("err=-111" alone
 * said nothing), for negative and positive codes, per thread. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reason),
        cmocka_unit_test(test_per_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
