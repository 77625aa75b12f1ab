/* test_runs.c — connector "test_runs", for the tests only (compiled in with
 * STAGEDOOR_TEST_CONNECTORS, like test_contacts): a source that counts its runs, for the tests
 * of leased scheduling (several nodes on one store, each run done once).
 *
 * A run reads its committed cursor n (0 when none), appends "start n PID" to the file named by
 * the setting "log" (O_APPEND: one write per line, so processes sharing the file never mix
 * lines), holds for hold_ms (returning -ECANCELED if asked to stop meanwhile), then commits
 * the cursor n + 1 — with one customer "run-n-PID" when "customers" is true, the state alone
 * otherwise — and appends "done n PID" if the commit was stored, "refused n PID ERR" if not.
 * So the log shows which process ran which run, and the store which commit counted. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "core/connector.h"
#include "core/ingest.h"

struct runs_conf {
    const char *log;
    int64_t hold_ms;
    bool customers;
};

static const struct sd_setting settings[] = {
    {"log", SD_SETTING_STRING, NULL, 1, 1024, "file the runs append their lines to", NULL,
     offsetof(struct runs_conf, log)},
    {"hold_ms", SD_SETTING_INT, "0", 0, 600000, "how long a run takes", NULL,
     offsetof(struct runs_conf, hold_ms)},
    {"customers", SD_SETTING_BOOL, "true", 0, 0, "store one customer per run with its cursor", NULL,
     offsetof(struct runs_conf, customers)},
    {NULL, 0, NULL, 0, 0, NULL, NULL, 0},
};

static void log_line(const struct runs_conf *cf, const char *what, int64_t n, int err)
{
    int fd = open(cf->log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        return;
    }
    char line[96];
    int len =
        err ? snprintf(line, sizeof(line), "%s %lld %ld %d\n", what, (long long)n, (long)getpid(),
                       err)
            : snprintf(line, sizeof(line), "%s %lld %ld\n", what, (long long)n, (long)getpid());
    if (write(fd, line, (size_t)len) != len) {
        /* a test reads the file: a short line shows up there */
    }
    close(fd);
}

static int runs_run(struct sd_connector_ctx *ctx, void *state)
{
    (void)state;
    const struct runs_conf *cf = ctx->conf;
    int64_t n = json_is_integer(ctx->cursor) ? json_integer_value(ctx->cursor) : 0;
    log_line(cf, "start", n, 0);
    int r = sd_connector_wait(ctx, cf->hold_ms * 1000);
    if (r < 0) {
        log_line(cf, "stopped", n, r);
        return r;
    }
    json_t *body = json_object();
    if (cf->customers) {
        char id[64], email[96];
        snprintf(id, sizeof(id), "run-%lld-%ld", (long long)n, (long)getpid());
        snprintf(email, sizeof(email), "%s@example.com", id);
        json_object_set_new(body, "customers",
                            json_pack("[{s:s, s:s}]", "customer_id", id, "email", email));
    }
    json_t *cursor = json_integer(n + 1);
    struct sd_ingest_outcome out;
    sd_ingest_outcome_init(&out);
    r = sd_connector_commit(ctx, body, cursor, false, &out);
    if (r == 0 && out.status != 202) {
        r = sd_connector_fail(ctx, -EINVAL, "run %lld refused (status %d)", (long long)n,
                              out.status);
    }
    sd_ingest_outcome_release(&out);
    json_decref(cursor);
    json_decref(body);
    log_line(cf, r == 0 ? "done" : "refused", n, r);
    return r;
}

const struct sd_connector sd_connector_test_runs = {
    .name = "test_runs",
    .kind = SD_CONNECTOR_SOURCE,
    .help = "tests only: counts its runs in a file and in its cursor",
    .settings = settings,
    .settings_size = sizeof(struct runs_conf),
    .test_only = true,
    .default_schedule = "manual",
    .run = runs_run,
};
