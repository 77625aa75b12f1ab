/* test_ratelimit.c — token bucket: starts full, refuses at empty with a Retry-After, refills at
 * per_minute/60 per second, clamps to a lowered burst, keeps buckets apart; the RateLimit-*
 * figures show the per-minute limit and a Reset that agrees with Retry-After when refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/ratelimit.h"

#define SEC 1000000LL

static void test_burst_then_refuse(void **state)
{
    (void)state;
    struct sd_ratelimiter *rl = sd_ratelimiter_new();
    struct sd_ratelimit_result r;
    for (int i = 0; i < 1000; i++) {
        sd_ratelimit_take(rl, 1, 500, 1000, 0, &r);
        assert_true(r.allowed);
        assert_int_equal(r.limit, 500); /* the documented per-minute limit, not the burst */
        assert_int_equal(r.remaining, 999 - i);
    }
    sd_ratelimit_take(rl, 1, 500, 1000, 0, &r);
    assert_false(r.allowed);
    assert_int_equal(r.remaining, 0);
    /* 500/min = one token every 0.12 s → Retry-After rounds up to 1 s, and Reset agrees */
    assert_int_equal(r.retry_after, 1);
    assert_int_equal(r.reset_sec, 1);
    sd_ratelimiter_free(rl);
}

/* Reset and Retry-After for several limits, on both sides of "no token left". */
static void test_reset_agrees_with_retry_after(void **state)
{
    (void)state;
    static const struct {
        int64_t per_minute, burst;
        int taken;       /* tokens taken at t=0 before the checked request */
        int64_t at_usec; /* time of the checked request */
        bool allowed;
        int64_t remaining, reset, retry_after;
    } cases[] = {
        /* 60/min = 1 token/s */
        {60, 5, 0, 0, true, 4, 1, 0},         /* one below full: full again in 1 s */
        {60, 5, 3, 0, true, 1, 4, 0},         /* 1 left: full in 4 s */
        {60, 5, 4, 0, true, 0, 1, 0},         /* took the last token: next one in 1 s */
        {60, 5, 5, 0, false, 0, 1, 1},        /* refused: Reset = Retry-After = 1 */
        {60, 5, 5, SEC / 2, false, 0, 1, 1},  /* half a token back: still 1 s (rounded up) */
        {6, 5, 5, 0, false, 0, 10, 10},       /* 6/min: a token every 10 s */
        {6, 5, 5, 4 * SEC, false, 0, 6, 6},   /* 0.4 token back: 6 s to go */
        {6, 5, 5, 10 * SEC, true, 0, 10, 0},  /* the token came back and was taken */
        {1, 1, 1, 0, false, 0, 60, 60},       /* 1/min */
        {500, 1000, 1000, 0, false, 0, 1, 1}, /* the default */
        {500, 1000, 10, 0, true, 989, 2, 0},  /* 11 tokens short of full: 1.32 s → 2 */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sd_ratelimiter *rl = sd_ratelimiter_new();
        struct sd_ratelimit_result r;
        for (int k = 0; k < cases[i].taken; k++) {
            sd_ratelimit_take(rl, 1, cases[i].per_minute, cases[i].burst, 0, &r);
        }
        sd_ratelimit_take(rl, 1, cases[i].per_minute, cases[i].burst, cases[i].at_usec, &r);
        print_message("case %zu\n", i);
        assert_int_equal(r.allowed, cases[i].allowed);
        assert_int_equal(r.limit, cases[i].per_minute);
        assert_int_equal(r.remaining, cases[i].remaining);
        assert_int_equal(r.reset_sec, cases[i].reset);
        assert_int_equal(r.retry_after, cases[i].retry_after);
        if (!r.allowed) {
            assert_int_equal(r.reset_sec, r.retry_after);
        }
        sd_ratelimiter_free(rl);
    }
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
        cmocka_unit_test(test_reset_agrees_with_retry_after),
        cmocka_unit_test(test_refill),
        cmocka_unit_test(test_keys_apart_and_lower_burst),
        cmocka_unit_test(test_peek_takes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
