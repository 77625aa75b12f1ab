/* test_guard.c — the connection guard: each phase's deadline (head, request with held time not
 * counted, idle, and a kept-alive connection's next head), and the slot reserve (a new
 * connection near the per-address or total limit closes the oldest one still sending a head or
 * idle, never one in a request, and the sweep closes requests slower than the head deadline
 * when nothing else can go). "Closed" is seen from the peer of a socketpair: end of file. */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "server/guard.h"

#define SEC 1000000LL
#define MAX_PAIRS 32

static int pairs[MAX_PAIRS][2];
static int n_pairs;

static struct sd_guard *guard_new(unsigned max_conn, unsigned max_ip)
{
    struct sd_guard_config cfg = {.max_connections = max_conn,
                                  .max_per_ip = max_ip,
                                  .head_usec = 10 * SEC,
                                  .request_usec = 120 * SEC,
                                  .idle_usec = 30 * SEC,
                                  .no_thread = true};
    struct sd_guard *g = NULL;
    assert_int_equal(sd_guard_new(&cfg, &g), 0);
    return g;
}

/* A connection from 10.0.0.ip; returns its index (the peer is pairs[i][1]). */
static struct sd_guard_conn *conn_add(struct sd_guard *g, int ip, int *ret_i)
{
    assert_true(n_pairs < MAX_PAIRS);
    int i = n_pairs++;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pairs[i]), 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(0x0a000000u | (unsigned)ip);
    *ret_i = i;
    return sd_guard_add(g, pairs[i][0], (struct sockaddr *)&a);
}

static bool closed(int i)
{
    char c;
    ssize_t n = recv(pairs[i][1], &c, 1, MSG_DONTWAIT);
    return n == 0;
}

static void sweep(struct sd_guard *g, int64_t after_usec)
{
    struct sd_guard_closed k;
    sd_guard_sweep(g, sd_mono_usec() + after_usec, &k);
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < n_pairs; i++) {
        close(pairs[i][0]);
        close(pairs[i][1]);
    }
    n_pairs = 0;
    return 0;
}

static void test_head_deadline(void **state)
{
    (void)state;
    struct sd_guard *g = guard_new(0, 0);
    int i;
    struct sd_guard_conn *c = conn_add(g, 1, &i);
    sweep(g, 9 * SEC);
    assert_false(closed(i));
    sweep(g, 11 * SEC);
    assert_true(closed(i));
    sd_guard_remove(g, c);
    sd_guard_free(g);
}

static void test_request_deadline_without_held_time(void **state)
{
    (void)state;
    struct sd_guard *g = guard_new(0, 0);
    int i;
    struct sd_guard_conn *c = conn_add(g, 1, &i);
    sd_guard_request(g, c);
    sweep(g, 60 * SEC); /* past the head deadline: no longer applies */
    assert_false(closed(i));
    sd_guard_hold(g, c);
    sweep(g, 1000 * SEC); /* the hub works: no deadline */
    assert_false(closed(i));
    sd_guard_unhold(g, c);
    sweep(g, 110 * SEC);
    assert_false(closed(i));
    sweep(g, 121 * SEC);
    assert_true(closed(i));
    sd_guard_remove(g, c);
    sd_guard_free(g);
}

static void test_idle_then_next_head(void **state)
{
    (void)state;
    struct sd_guard *g = guard_new(0, 0);
    int i, j;
    struct sd_guard_conn *c = conn_add(g, 1, &i);
    sd_guard_request(g, c);
    sd_guard_idle(g, c);
    sweep(g, 29 * SEC);
    assert_false(closed(i));
    sweep(g, 31 * SEC);
    assert_true(closed(i));
    /* a kept-alive connection whose request line came: 10 s for the rest of the head */
    struct sd_guard_conn *d = conn_add(g, 1, &j);
    sd_guard_request(g, d);
    sd_guard_idle(g, d);
    sd_guard_request_line(g, d);
    sweep(g, 11 * SEC);
    assert_true(closed(j));
    sd_guard_remove(g, c);
    sd_guard_remove(g, d);
    sd_guard_free(g);
}

static void test_per_ip_reserve_closes_oldest_waiting(void **state)
{
    (void)state;
    struct sd_guard *g = guard_new(100, 5); /* 5 per address: the 5th closes one */
    int idx[6];
    struct sd_guard_conn *c[6];
    for (int k = 0; k < 4; k++) {
        c[k] = conn_add(g, 7, &idx[k]);
    }
    sd_guard_request(g, c[0]); /* the oldest is in a request: kept */
    int other;
    struct sd_guard_conn *o = conn_add(g, 8, &other); /* another address: no effect */
    for (int k = 0; k < 4; k++) {
        assert_false(closed(idx[k]));
    }
    c[4] = conn_add(g, 7, &idx[4]);
    assert_false(closed(idx[0]));
    assert_true(closed(idx[1]));
    assert_false(closed(idx[2]));
    assert_false(closed(other));
    struct sd_guard_closed k;
    sd_guard_sweep(g, sd_mono_usec(), &k);
    assert_int_equal(k.evicted, 1);
    for (int n = 0; n < 5; n++) {
        sd_guard_remove(g, c[n]);
    }
    sd_guard_remove(g, o);
    sd_guard_free(g);
}

static void test_total_reserve(void **state)
{
    (void)state;
    struct sd_guard *g = guard_new(10, 0); /* threshold 9 */
    int idx[10];
    struct sd_guard_conn *c[10];
    for (int k = 0; k < 9; k++) {
        c[k] = conn_add(g, k + 1, &idx[k]);
        sd_guard_request(g, c[k]);
        sd_guard_idle(g, c[k]); /* idle, kept alive */
    }
    c[9] = conn_add(g, 99, &idx[9]);
    assert_true(closed(idx[0]));
    for (int k = 1; k < 10; k++) {
        assert_false(closed(idx[k]));
    }
    for (int k = 0; k < 10; k++) {
        sd_guard_remove(g, c[k]);
    }
    sd_guard_free(g);
}

/* Past the reserve with nothing waiting: the sweep closes the oldest request that has run
 * longer than the head deadline (a slow body or a client not reading its answer), and only
 * as many as needed. */
static void test_slow_requests_make_room(void **state)
{
    (void)state;
    struct sd_guard *g = guard_new(100, 5);
    int idx[5], other_idx[3];
    struct sd_guard_conn *c[5], *other[3];
    for (int k = 0; k < 5; k++) {
        if (k < 3) { /* other addresses, under their reserve, interleaved */
            other[k] = conn_add(g, k == 2 ? 9 : 3, &other_idx[k]);
            sd_guard_request(g, other[k]);
        }
        c[k] = conn_add(g, 7, &idx[k]);
        sd_guard_request(g, c[k]);
    }
    for (int k = 0; k < 5; k++) {
        assert_false(closed(idx[k])); /* all young requests: nothing to close */
    }
    struct sd_guard_closed k;
    sd_guard_sweep(g, sd_mono_usec() + 5 * SEC, &k);
    assert_int_equal(k.evicted, 0);
    sd_guard_sweep(g, sd_mono_usec() + 11 * SEC, &k);
    assert_int_equal(k.evicted, 1);
    assert_int_equal(k.request, 0);
    assert_true(closed(idx[0]));
    for (int n = 1; n < 5; n++) {
        assert_false(closed(idx[n]));
    }
    for (int n = 0; n < 3; n++) {
        assert_false(closed(other_idx[n]));
        sd_guard_remove(g, other[n]);
    }
    for (int n = 0; n < 5; n++) {
        sd_guard_remove(g, c[n]);
    }
    sd_guard_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_head_deadline, teardown),
        cmocka_unit_test_teardown(test_request_deadline_without_held_time, teardown),
        cmocka_unit_test_teardown(test_idle_then_next_head, teardown),
        cmocka_unit_test_teardown(test_per_ip_reserve_closes_oldest_waiting, teardown),
        cmocka_unit_test_teardown(test_total_reserve, teardown),
        cmocka_unit_test_teardown(test_slow_requests_make_room, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
