/* test_verdict.c — the one HTTP classifier (http/verdict.h), row by row of its table: what a
 * status or a transport error means for every pull and every push. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "http/verdict.h"

static void test_statuses(void **state)
{
    (void)state;
    static const struct {
        long status;
        enum sd_verdict want;
    } rows[] = {
        /* OK: 2xx */
        {200, SD_VERDICT_OK},
        {201, SD_VERDICT_OK},
        {202, SD_VERDICT_OK},
        {204, SD_VERDICT_OK},
        {299, SD_VERDICT_OK},
        /* WAIT: the remote's rate or bandwidth limit */
        {429, SD_VERDICT_WAIT},
        {509, SD_VERDICT_WAIT},
        /* RETRY: 408 and every other 5xx */
        {408, SD_VERDICT_RETRY},
        {500, SD_VERDICT_RETRY},
        {502, SD_VERDICT_RETRY},
        {503, SD_VERDICT_RETRY},
        {504, SD_VERDICT_RETRY},
        {599, SD_VERDICT_RETRY},
        /* REJECT: 1xx, 3xx, every other 4xx, and what is not HTTP at all */
        {100, SD_VERDICT_REJECT},
        {199, SD_VERDICT_REJECT},
        {301, SD_VERDICT_REJECT},
        {304, SD_VERDICT_REJECT},
        {400, SD_VERDICT_REJECT},
        {401, SD_VERDICT_REJECT},
        {403, SD_VERDICT_REJECT},
        {404, SD_VERDICT_REJECT},
        {409, SD_VERDICT_REJECT},
        {413, SD_VERDICT_REJECT},
        {422, SD_VERDICT_REJECT},
        {499, SD_VERDICT_REJECT},
        {0, SD_VERDICT_REJECT},
        {600, SD_VERDICT_REJECT},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        enum sd_verdict got = sd_http_classify(0, rows[i].status);
        if (got != rows[i].want) {
            fail_msg("status %ld: %s, want %s", rows[i].status, sd_verdict_name(got),
                     sd_verdict_name(rows[i].want));
        }
    }
}

static void test_transport_errors(void **state)
{
    (void)state;
    static const struct {
        int err;
        enum sd_verdict want;
    } rows[] = {
        /* RETRY: timeout, refused, reset, DNS, TLS, anything else the transport says */
        {-ETIMEDOUT, SD_VERDICT_RETRY},
        {-ECONNREFUSED, SD_VERDICT_RETRY},
        {-ECONNRESET, SD_VERDICT_RETRY},
        {-EIO, SD_VERDICT_RETRY},
        {-EPROTO, SD_VERDICT_RETRY},
        /* REJECT: sending the same request again cannot help */
        {-EFBIG, SD_VERDICT_REJECT},
        {-ENETUNREACH, SD_VERDICT_REJECT},
        {-EPERM, SD_VERDICT_REJECT},
        {-EACCES, SD_VERDICT_REJECT},
        {-ENOENT, SD_VERDICT_REJECT},
        {-ECANCELED, SD_VERDICT_REJECT},
        {-EINVAL, SD_VERDICT_REJECT},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        /* the status is ignored once the transport failed, even a 200 read before it */
        for (long status = 0; status <= 200; status += 200) {
            enum sd_verdict got = sd_http_classify(rows[i].err, status);
            if (got != rows[i].want) {
                fail_msg("error %d (status %ld): %s, want %s", rows[i].err, status,
                         sd_verdict_name(got), sd_verdict_name(rows[i].want));
            }
        }
    }
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(sd_verdict_name(SD_VERDICT_OK), "ok");
    assert_string_equal(sd_verdict_name(SD_VERDICT_RETRY), "retry");
    assert_string_equal(sd_verdict_name(SD_VERDICT_WAIT), "wait");
    assert_string_equal(sd_verdict_name(SD_VERDICT_REJECT), "reject");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_statuses),
        cmocka_unit_test(test_transport_errors),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
