/* test_ratelimit.c — token bucket: starts full, refuses at empty with a Retry-After, refills at
 * per_minute/60 per second, clamps to a lowered burst, keeps buckets apart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "http/ratelimit.h"

#define SEC 1000000LL

static void test_burst_then_refuse(void **state)
{
    (void)state;
    struct sd_ratelimiter *rl = sd_ratelimiter_new();
    struct sd_ratelimit_result r;
    for (int i = 0; i < 1000; i++) {
        sd_ratelimit_take(rl, 1, 500, 1000, 0, &r);
        assert_true(r.allowed);
        assert_int_equal(r.limit, 1000);
        assert_int_equal(r.remaining, 999 - i);
    }
    sd_ratelimit_take(rl, 1, 500, 1000, 0, &r);
    assert_false(r.allowed);
    assert_int_equal(r.remaining, 0);
    /* 500/min = one token every 0.12 s → Retry-After rounds up to 1 s */
    assert_int_equal(r.retry_after, 1);
    /* full again after 1000 tokens / (500/60 per s) = 120 s */
    assert_int_equal(r.reset_sec, 120);
    sd_ratelimiter_free(rl);
}

static void test_refill(void **state)
{
    (void)state;
    struct sd_ratelimiter *rl = sd_ratelimiter_new();
    struct sd_ratelimit_result r;
    for (int i = 0; i < 5; i++) {
        sd_ratelimit_take(rl, 7, 60, 5, 0, &r); /* 1 token per second */
    }
    sd_ratelimit_take(rl, 7, 60, 5, 0, &r);
    assert_false(r.allowed);
    sd_ratelimit_take(rl, 7, 60, 5, SEC / 2, &r);
    assert_false(r.allowed);
    sd_ratelimit_take(rl, 7, 60, 5, SEC + 1, &r);
    assert_true(r.allowed);
    sd_ratelimit_take(rl, 7, 60, 5, SEC + 2, &r);
    assert_false(r.allowed);
    /* a long pause refills to the burst, not beyond */
    sd_ratelimit_take(rl, 7, 60, 5, 3600 * SEC, &r);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 4);
    sd_ratelimiter_free(rl);
}

static void test_keys_apart_and_lower_burst(void **state)
{
    (void)state;
    struct sd_ratelimiter *rl = sd_ratelimiter_new();
    struct sd_ratelimit_result r;
    for (uint64_t k = 0; k < 200; k++) { /* forces the table to grow */
        sd_ratelimit_take(rl, k, 500, 2, 0, &r);
        assert_true(r.allowed);
        assert_int_equal(r.remaining, 1);
    }
    sd_ratelimit_take(rl, 3, 500, 2, 0, &r);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
    sd_ratelimit_take(rl, 4, 500, 1, 0, &r); /* burst lowered to 1: clamp, then take */
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
    sd_ratelimit_take(rl, 4, 500, 1, 0, &r);
    assert_false(r.allowed);
    sd_ratelimiter_free(rl);
}

static void test_peek_takes_nothing(void **state)
{
    (void)state;
    struct sd_ratelimiter *rl = sd_ratelimiter_new();
    struct sd_ratelimit_result r;
    sd_ratelimit_take(rl, 9, 60, 2, 0, &r);
    for (int i = 0; i < 5; i++) {
        sd_ratelimit_peek(rl, 9, 60, 2, 0, &r);
        assert_true(r.allowed);
        assert_int_equal(r.remaining, 1);
    }
    sd_ratelimit_take(rl, 9, 60, 2, 0, &r);
    assert_int_equal(r.remaining, 0);
    sd_ratelimit_peek(rl, 9, 60, 2, 0, &r);
    assert_false(r.allowed);
    sd_ratelimiter_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refuse),
        cmocka_unit_test(test_refill),
        cmocka_unit_test(test_keys_apart_and_lower_burst),
        cmocka_unit_test(test_peek_takes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
