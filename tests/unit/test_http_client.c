/* test_http_client.c — the pure helpers of http/client.c: escaping a file name for a URL and
 * reading Retry-After. (Requests themselves are tested end to end against local servers.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "http/client.h"

static void test_url_escape(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"sales_2025.csv", "sales_2025.csv"},
        {"Sales Export #2.csv", "Sales%20Export%20%232.csv"},
        {"a?b&c=d%e", "a%3Fb%26c%3Dd%25e"},
        {"~x-y.z", "~x-y.z"},
        {"Kündigungen.csv", "K%C3%BCndigungen.csv"},
        {"a/b", "a%2Fb"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = sd_http_url_escape(cases[i].in);
        assert_string_equal(got, cases[i].out);
        free(got);
    }
}

static void test_retry_after(void **state)
{
    (void)state;
    assert_int_equal(sd_http_retry_after("120", 3600), 120);
    assert_int_equal(sd_http_retry_after("7200", 3600), 3600);
    assert_int_equal(sd_http_retry_after(NULL, 3600), -1);
    assert_int_equal(sd_http_retry_after("soon", 3600), -1);
    /* an HTTP-date in the past waits nothing */
    assert_int_equal(sd_http_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 3600), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_escape),
        cmocka_unit_test(test_retry_after),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
