/* test_connector_state.c — long-lived connector state across runs (sd_connector_saved,
 * sd_connector_state_save): what a run saves survives a kill -9 of the process right after the
 * save, what it only changed in memory does not, and the next run of the instance starts from
 * the saved document and carries it on. Also the limits: no state document, too large.
 *
 * The killed "hub" is a child process: it opens the store, saves and is killed with SIGKILL
 * before it can close anything; the test then opens the store again as a restarted hub would.
 * The writer side of the state lives in the store: store suite: both backends. */
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
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "core/connector.h"
#include "core/connector_run.h"
#include "store_fixture.h"

#define ID "con_00000000000000aa"

struct fx {
    struct sd_test_store ts;
    int64_t tenant;
};

/* The hub on the test's store: the data folder alone (SQLite) or with the database's URL. */
static int hub_open(const struct fx *f, struct sd_hub **ret)
{
    return sd_hub_open(f->ts.dir, sd_test_store_is_sqlite() ? NULL : f->ts.url, ret);
}

static int setup(void **state)
{
    struct fx *f = sd_calloc(1, sizeof(*f));
    struct sd_store_handle *h = NULL;
    sd_test_store_setup(&f->ts, "connstate", &h);
    f->tenant = sd_test_store_tenant(h, "venue", "Venue");
    sd_store_close(h);
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

/* In a child: open the hub, load the instance's state as a run does, set saved.poll to `poll`
 * (and save it if `save`), then set it to `poll` + 1000 without saving, and die by SIGKILL.
 * Exit codes other than the kill say which step failed. */
static void child_run_and_die(const struct fx *f, int poll, bool save)
{
    struct sd_hub *hub = NULL;
    if (hub_open(f, &hub) != 0) {
        _exit(2);
    }
    struct sd_connector_ctx ctx = {
        .hub = hub, .tenant_id = f->tenant, .env = SD_ENV_TEST, .id = ID};
    if (sd_connector_state_load(hub, ID, &ctx.state) != 0) {
        _exit(3);
    }
    json_t *saved = sd_connector_saved(&ctx);
    json_object_set_new(saved, "poll", json_integer(poll));
    json_object_set_new(saved, "cookies", json_string("CID=c1; QTKN=q1"));
    if (save && sd_connector_state_save(&ctx) != 0) {
        _exit(4);
    }
    json_object_set_new(sd_connector_saved(&ctx), "poll", json_integer(poll + 1000));
    raise(SIGKILL);
    _exit(5);
}

static void run_child(const struct fx *f, int poll, bool save)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        child_run_and_die(f, poll, save);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status)) {
        fail_msg("the child exited with %d instead of being killed", WEXITSTATUS(status));
    }
    assert_int_equal(WTERMSIG(status), SIGKILL);
}

static json_int_t saved_poll(struct sd_hub *hub)
{
    json_t *st = NULL;
    assert_int_equal(sd_connector_state_load(hub, ID, &st), 0);
    const json_t *v = json_object_get(json_object_get(st, "saved"), "poll");
    json_int_t n = json_is_integer(v) ? json_integer_value(v) : -1;
    json_decref(st);
    return n;
}

static void test_saved_state_survives_kill(void **state)
{
    struct fx *f = *state;
    run_child(f, 7, true);

    struct sd_hub *hub = NULL;
    assert_int_equal(hub_open(f, &hub), 0);
    assert_int_equal(saved_poll(hub), 7); /* saved; the change after the save is gone */
    sd_hub_close(hub);

    /* A change never saved dies with the process. */
    run_child(f, 8, false);
    assert_int_equal(hub_open(f, &hub), 0);
    assert_int_equal(saved_poll(hub), 7);

    /* The next run of the instance starts from the saved document and keeps it: a rest_pull
     * run that fails at once (nothing listens on the port) still writes its final state from
     * what it loaded. */
    char *settings = sd_asprintf("{\"base_url\": \"http://127.0.0.1:1\", \"events_path\": \"/e\", "
                                 "\"max_attempts\": 1}");
    struct sd_connector_conf conf = {.id = ID,
                                     .tenant_id = f->tenant,
                                     .env = SD_ENV_TEST,
                                     .type = "rest_pull",
                                     .schedule = "manual",
                                     .settings = settings,
                                     .mapping = "{}"};
    atomic_bool stop = false;
    assert_true(sd_connector_run_instance(hub, &conf, 0, &stop, NULL) < 0);
    json_t *st = NULL;
    assert_int_equal(sd_connector_state_load(hub, ID, &st), 0);
    assert_string_equal(json_string_value(json_object_get(st, "state")), "failed");
    const json_t *saved = json_object_get(st, "saved");
    assert_int_equal(json_integer_value(json_object_get(saved, "poll")), 7);
    assert_string_equal(json_string_value(json_object_get(saved, "cookies")), "CID=c1; QTKN=q1");
    json_decref(st);
    free(settings);
    sd_hub_close(hub);
}

static void test_save_limits(void **state)
{
    struct fx *f = *state;
    struct sd_hub *hub = NULL;
    assert_int_equal(hub_open(f, &hub), 0);
    /* No state document (a run not configured in the store). */
    struct sd_connector_ctx bare = {.hub = hub, .tenant_id = f->tenant, .id = ID};
    assert_null(sd_connector_saved(&bare));
    assert_int_equal(sd_connector_state_save(&bare), -ENOTSUP);

    /* Too large: refused, nothing written. */
    struct sd_connector_ctx ctx = {
        .hub = hub, .tenant_id = f->tenant, .env = SD_ENV_TEST, .id = ID};
    assert_int_equal(sd_connector_state_load(hub, ID, &ctx.state), 0);
    json_object_set_new(sd_connector_saved(&ctx), "poll", json_integer(1));
    assert_int_equal(sd_connector_state_save(&ctx), 0);
    char *big = sd_malloc(SD_CONNECTOR_STATE_MAX + 1);
    memset(big, 'x', SD_CONNECTOR_STATE_MAX);
    big[SD_CONNECTOR_STATE_MAX] = '\0';
    json_object_set_new(sd_connector_saved(&ctx), "blob", json_string(big));
    json_object_set_new(sd_connector_saved(&ctx), "poll", json_integer(2));
    assert_int_equal(sd_connector_state_save(&ctx), -EFBIG);
    assert_int_equal(saved_poll(hub), 1);
    free(big);
    json_decref(ctx.state);
    sd_hub_close(hub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_saved_state_survives_kill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_limits, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
