/* test_scheduler_leases.c — several nodes scheduling one store's connectors: each run is done
 * by one node, and a node that dies or stalls mid-run has its run taken over after its lease
 * expires, without anything of the old run stored afterwards.
 * store suite: both backends
 *
 * The connector is "test_runs" (tests/connectors/test_runs): a run reads its cursor n, appends
 * "start n PID" to a log file, holds, commits cursor n + 1 with a customer "run-n-PID" and
 * appends "done n PID" or "refused n PID ERR" ("stopped n PID ERR" if asked to stop while
 * holding). Leases last
 * 2 s (STAGEDOOR_RUN_LEASE_SECONDS).
 *
 *  - test_each_run_once: two hubs with a scheduler each, in this process, on one store; five
 *    "run now" requests one after the other: every run is done exactly once (cursors 0..4,
 *    one start and one done each) though both nodes see every request.
 *  - test_sigkill_takeover: a child process (a node) starts the run and is killed with SIGKILL
 *    while it holds; a hub started afterwards in this process takes the run over and finishes
 *    it: the cursor is 1 and only this node's commit is stored. The child ran on this host, so
 *    the survivor sees that its process is gone and takes its lease at once, well before it
 *    would have expired (a node of another host waits for the expiry, as the stalled node's
 *    test shows).
 *  - test_stalled_node_fenced: the same with SIGSTOP instead: the child's process is alive, so
 *    the takeover waits for its lease to expire (not before), then finishes; the stalled node
 *    resumes; its run stops or is refused (its lease was taken over), and nothing
 *    of it is stored: the cursor stays at the survivor's 1, no customer of the stalled node. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "core/hub.h"
#include "core/scheduler.h"
#include "store/store.h"
#include "store_fixture.h"

#define CON "con_00000000000000d1"
#define LEASE_SEC "2"

struct fx {
    struct sd_test_store ts;
    int64_t tenant;
    char log[128];
};

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void open_store(struct fx *f, struct sd_store_handle **ret)
{
    sd_test_store_open(&f->ts, ret);
}

static int open_hub(struct fx *f, struct sd_hub **ret)
{
    return sd_hub_open(f->ts.dir, sd_test_store_is_sqlite() ? NULL : sd_test_store_location(&f->ts),
                       ret);
}

static void put_connector(struct fx *f, int hold_ms)
{
    struct sd_store_handle *h = NULL;
    open_store(f, &h);
    char *settings = sd_asprintf("{\"log\":\"%s\",\"hold_ms\":%d}", f->log, hold_ms);
    struct sd_connector_conf c = {.id = CON,
                                  .tenant_id = f->tenant,
                                  .env = SD_ENV_TEST,
                                  .type = "test_runs",
                                  .schedule = "manual",
                                  .settings = settings,
                                  .mapping = "{}"};
    assert_int_equal(sd_store_connector_put(h, &c, true), 0);
    free(settings);
    sd_store_close(h);
}

static void request_run(struct fx *f)
{
    struct sd_store_handle *h = NULL;
    open_store(f, &h);
    assert_int_equal(sd_store_connector_request_run(h, CON, sd_now_usec()), 0);
    sd_store_close(h);
}

static int setup(void **state)
{
    struct fx *f = sd_calloc(1, sizeof(*f));
    struct sd_store_handle *h = NULL;
    sd_test_store_setup(&f->ts, "schedlease", &h);
    f->tenant = sd_test_store_tenant(h, "venue", "Venue");
    sd_store_close(h);
    snprintf(f->log, sizeof(f->log), "%s/runs.log", f->ts.tmp);
    setenv("STAGEDOOR_RUN_LEASE_SECONDS", LEASE_SEC, 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    sd_test_store_release(&f->ts, NULL);
    free(f);
    return 0;
}

/* How many lines "what n pid" the log holds (pid 0: any process, n -1: any run). */
static int count_lines(const struct fx *f, const char *what, long long n, long pid)
{
    FILE *fp = fopen(f->log, "re");
    if (!fp) {
        return 0;
    }
    char line[128];
    int count = 0;
    while (fgets(line, sizeof(line), fp)) {
        char w[16];
        long long ln = 0;
        long lp = 0;
        if (sscanf(line, "%15s %lld %ld", w, &ln, &lp) == 3 && strcmp(w, what) == 0 &&
            (n < 0 || ln == n) && (pid == 0 || lp == pid)) {
            count++;
        }
    }
    fclose(fp);
    return count;
}

static bool wait_line(const struct fx *f, const char *what, long long n, long pid, long ms)
{
    for (long t = 0; t < ms; t += 50) {
        if (count_lines(f, what, n, pid) > 0) {
            return true;
        }
        sleep_ms(50);
    }
    return false;
}

static int64_t committed_cursor(struct fx *f)
{
    struct sd_store_handle *h = NULL;
    open_store(f, &h);
    char *doc = NULL;
    assert_int_equal(sd_store_connector_state_get(h, CON, &doc), 0);
    json_t *st = json_loads(doc, 0, NULL);
    free(doc);
    json_t *c = json_object_get(st, "cursor");
    int64_t v = json_is_integer(c) ? json_integer_value(c) : -1;
    json_decref(st);
    sd_store_close(h);
    return v;
}

/* Whether the customer run-n-pid (stored by run n of process pid) exists. */
static bool has_customer(struct fx *f, long long n, long pid)
{
    struct sd_store_handle *h = NULL;
    open_store(f, &h);
    char id[64];
    snprintf(id, sizeof(id), "run-%lld-%ld", n, pid);
    char *doc = NULL;
    int r = sd_store_get_customer(h, f->tenant, SD_ENV_TEST, id, "test_runs", &doc, NULL, NULL);
    free(doc);
    sd_store_close(h);
    assert_true(r == 0 || r == -ENOENT);
    return r == 0;
}

static void test_each_run_once(void **state)
{
    struct fx *f = *state;
    enum { RUNS = 5 };
    put_connector(f, 200);
    struct sd_hub *h1 = NULL, *h2 = NULL;
    assert_int_equal(open_hub(f, &h1), 0);
    assert_int_equal(open_hub(f, &h2), 0);
    struct sd_scheduler *s1 = NULL, *s2 = NULL;
    assert_int_equal(sd_scheduler_new(h1, &s1), 0);
    assert_int_equal(sd_scheduler_new(h2, &s2), 0);
    for (int k = 0; k < RUNS; k++) {
        request_run(f);
        if (!wait_line(f, "done", k, 0, 20000)) {
            fail_msg("run %d was not done", k);
        }
    }
    /* Time for a second node to repeat a run if it were going to: beyond a lease. */
    sleep_ms(3000);
    sd_scheduler_free(s1);
    sd_scheduler_free(s2);
    sd_hub_close(h1);
    sd_hub_close(h2);
    for (int k = 0; k < RUNS; k++) {
        assert_int_equal(count_lines(f, "start", k, 0), 1);
        assert_int_equal(count_lines(f, "done", k, 0), 1);
    }
    assert_int_equal(count_lines(f, "start", -1, 0), RUNS);
    assert_int_equal(count_lines(f, "refused", -1, 0), 0);
    assert_int_equal(committed_cursor(f), RUNS);
}

/* A node in a child process: open a hub, start its scheduler, wait to be signalled. */
static pid_t start_child_node(struct fx *f)
{
    fflush(NULL); /* the child must not write this process's buffered output again */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sd_hub *hub = NULL;
        struct sd_scheduler *s = NULL;
        if (open_hub(f, &hub) != 0 || sd_scheduler_new(hub, &s) != 0) {
            _exit(2);
        }
        for (;;) {
            pause();
        }
    }
    return pid;
}

/* The child started run 0 and holds; stop it with sig, then let a node in this process take
 * over. Returns the child's pid (stopped or dead). */
static pid_t takeover(struct fx *f, int sig, int64_t *ret_takeover_ms)
{
    put_connector(f, 3000);
    request_run(f);
    pid_t child = start_child_node(f);
    if (!wait_line(f, "start", 0, child, 20000)) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        fail_msg("the child node did not start the run");
    }
    sleep_ms(300);
    assert_int_equal(kill(child, sig), 0);
    if (sig == SIGKILL) {
        waitpid(child, NULL, 0);
    }
    int64_t t0 = sd_mono_usec();
    struct sd_hub *hub = NULL;
    struct sd_scheduler *s = NULL;
    assert_int_equal(open_hub(f, &hub), 0);
    assert_int_equal(sd_scheduler_new(hub, &s), 0);
    bool started = wait_line(f, "start", 0, getpid(), 20000);
    *ret_takeover_ms = (sd_mono_usec() - t0) / 1000;
    bool done = started && wait_line(f, "done", 0, getpid(), 20000);
    sd_scheduler_free(s);
    sd_hub_close(hub);
    if (!done) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        fail_msg("this node did not take the run over (started: %d)", started);
    }
    return child;
}

static void test_sigkill_takeover(void **state)
{
    struct fx *f = *state;
    int64_t ms = 0;
    pid_t child = takeover(f, SIGKILL, &ms);
    /* At once: the child's lease, taken about 0.3 s before the kill and not yet renewed, had
     * more than 1.6 s left. */
    if (ms >= 1500) {
        fail_msg("the takeover of a dead node's run took %lld ms", (long long)ms);
    }
    assert_int_equal(count_lines(f, "start", 0, 0), 2);
    assert_int_equal(count_lines(f, "done", 0, child), 0);
    assert_int_equal(count_lines(f, "done", 0, getpid()), 1);
    assert_int_equal(committed_cursor(f), 1);
    assert_true(has_customer(f, 0, getpid()));
    assert_false(has_customer(f, 0, child));
}

static void test_stalled_node_fenced(void **state)
{
    struct fx *f = *state;
    int64_t ms = 0;
    pid_t child = takeover(f, SIGSTOP, &ms);
    /* Not before the child's lease ran out: it was taken or renewed at most a third of a lease
     * before the stop, so at least about 2/3 of it was left. */
    if (ms < 1000) {
        fail_msg("a live node's run was taken over after %lld ms", (long long)ms);
    }
    assert_int_equal(kill(child, SIGCONT), 0);
    /* The stalled run wakes within its hold: it is told to stop (its renewal is refused) or
     * its commit is refused, whichever comes first. */
    bool ended = false;
    for (int i = 0; i < 200 && !ended; i++) {
        ended = count_lines(f, "stopped", 0, child) + count_lines(f, "refused", 0, child) > 0;
        sleep_ms(50);
    }
    sleep_ms(500); /* its last state document, if it tried one */
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    assert_true(ended);
    assert_int_equal(count_lines(f, "done", 0, child), 0);
    assert_int_equal(count_lines(f, "done", 0, getpid()), 1);
    assert_int_equal(committed_cursor(f), 1);
    assert_true(has_customer(f, 0, getpid()));
    assert_false(has_customer(f, 0, child));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_each_run_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_takeover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_node_fenced, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
