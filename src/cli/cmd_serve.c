/* cmd_serve.c — `stagedoor serve`: runs the hub until SIGTERM/SIGINT.
 *
 * Signals are blocked in every thread and taken synchronously by the main thread, which also
 * does housekeeping between signals: reloading keys and limits when the store's settings
 * version changes (4 times a second, so CLI changes apply within a second) and purging
 * idempotency entries older than 24 h. Besides the HTTP server it runs the connector
 * scheduler and the audience push worker (core/outbox.h). On a signal: stop accepting, let
 * in-flight requests finish, let the push workers record the attempt they are in, stop the
 * scheduler, drain the writer, close the store, exit 0. */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "base/base.h"
#include "base/log.h"
#include "cli/cli.h"
#include "cli/serve.h"
#include "core/alerts.h"
#include "core/hub.h"
#include "core/inbound.h"
#include "core/outbox.h"
#include "core/quality.h"
#include "core/scheduler.h"
#include "core/segment_jobs.h"
#include "http/egress.h"
#include "server/server.h"

static const char usage_serve[] =
    "usage: stagedoor serve [--data DIR] [--listen HOST:PORT] [--tls-cert FILE --tls-key FILE]\n"
    "                       [--behind-proxy] [--threads N] [--log-level debug|info|warn|error]\n"
    "                       [--max-connections N] [--max-per-ip N] [--header-timeout SEC]\n"
    "                       [--segment-budget SECONDS]\n"
    "Runs the hub. Defaults: --data " SD_DEFAULT_DATA_DIR ", --listen 127.0.0.1:8080.\n"
    "Port 0 picks a free port. Prints 'listening on http(s)://HOST:PORT' once ready.\n"
    "With --tls-cert/--tls-key it serves HTTPS only (TLS 1.2 and 1.3). Without TLS it refuses a\n"
    "non-loopback address unless --behind-proxy says a TLS-terminating proxy is in front.\n"
    "Connections: at most --max-connections (default 1000), --max-per-ip from one address\n"
    "(default 500); a request head must be complete --header-timeout seconds (default 10) after\n"
    "the connection opened, and near a limit the oldest connections still sending a head or\n"
    "idle are closed first to keep slots for new clients.\n"
    "--segment-budget: CPU seconds one segment computation may use (default 60, at most 3600;\n"
    "the clock allows ten times that); past it the request answers 503 segment_too_slow.\n";

/* Decided on the parsed address, never on a prefix: "127.attacker.example" is a name that
 * getaddrinfo would resolve to anywhere. Only "localhost" and loopback literals count. */
static bool is_loopback(const char *host)
{
    if (strcmp(host, "localhost") == 0) {
        return true;
    }
    struct sockaddr_in a4 = {.sin_family = AF_INET};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
        return sd_egress_classify((const struct sockaddr *)&a4) == SD_ADDR_LOOPBACK;
    }
    if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
        return sd_egress_classify((const struct sockaddr *)&a6) == SD_ADDR_LOOPBACK;
    }
    return false;
}

static int serve_parse(int argc, char **argv, const char *usage, struct sd_serve_opts *o,
                       bool *ret_help)
{
    const char *listen = "127.0.0.1:8080", *threads = NULL, *level = NULL;
    const char *max_conn = NULL, *max_ip = NULL, *head_sec = NULL;
    const char *seg_budget = NULL;
    bool behind_proxy = false;
    *ret_help = false;
    o->data = SD_DEFAULT_DATA_DIR;
    struct sd_cli_opt opts[] = {{"--data", true, &o->data, NULL},
                                {"--listen", true, &listen, NULL},
                                {"--tls-cert", true, &o->cfg.tls_cert, NULL},
                                {"--tls-key", true, &o->cfg.tls_key, NULL},
                                {"--behind-proxy", false, NULL, &behind_proxy},
                                {"--threads", true, &threads, NULL},
                                {"--log-level", true, &level, NULL},
                                {"--max-connections", true, &max_conn, NULL},
                                {"--max-per-ip", true, &max_ip, NULL},
                                {"--header-timeout", true, &head_sec, NULL},
                                {"--segment-budget", true, &seg_budget, NULL},
                                {0}};
    int n = sd_cli_parse(argc, argv, opts, NULL, 0, usage);
    if (n == -1) {
        *ret_help = true;
        return 0;
    }
    if (n < 0) {
        return -1;
    }
    /* HOST:PORT, [IPv6]:PORT */
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen) {
        sd_cli_usage_error("--listen must be HOST:PORT (got '%s')", listen);
        return -1;
    }
    int64_t port = 0;
    if (sd_parse_int64(colon + 1, false, &port) < 0 || port > 65535) {
        sd_cli_usage_error("--listen port must be 0 to 65535 (got '%s')", colon + 1);
        return -1;
    }
    size_t hl = (size_t)(colon - listen);
    if (listen[0] == '[' && hl >= 2 && listen[hl - 1] == ']') {
        snprintf(o->host, sizeof(o->host), "%.*s", (int)(hl - 2), listen + 1);
    } else {
        snprintf(o->host, sizeof(o->host), "%.*s", (int)hl, listen);
    }
    o->cfg.host = o->host;
    o->cfg.routes = sd_routes;
    o->cfg.n_routes = sd_routes_count;
    o->cfg.port = (int)port;
    if (!o->cfg.tls_cert != !o->cfg.tls_key) {
        sd_cli_usage_error("--tls-cert and --tls-key go together");
        return -1;
    }
    if (!o->cfg.tls_cert && !behind_proxy && !is_loopback(o->host)) {
        sd_cli_usage_error("refusing to serve plain HTTP on non-loopback address '%s'; give "
                           "--tls-cert/--tls-key, or --behind-proxy if a TLS proxy is in front",
                           o->host);
        return -1;
    }
    if (threads) {
        long long t = sd_cli_positive("--threads", threads, 64);
        if (t < 0) {
            return -1;
        }
        o->cfg.threads = (unsigned)t;
    }
    struct {
        const char *name, *value;
        long long max;
        unsigned *out;
    } nums[] = {{"--max-connections", max_conn, 100000, &o->cfg.max_connections},
                {"--max-per-ip", max_ip, 100000, &o->cfg.max_per_ip},
                {"--header-timeout", head_sec, 3600, &o->cfg.header_timeout_sec}};
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        if (nums[i].value) {
            long long v = sd_cli_positive(nums[i].name, nums[i].value, nums[i].max);
            if (v < 0) {
                return -1;
            }
            *nums[i].out = (unsigned)v;
        }
    }
    if (seg_budget) {
        long long b = sd_cli_positive("--segment-budget", seg_budget, SD_SEGMENT_BUDGET_MAX_SEC);
        if (b < 0) {
            return -1;
        }
        o->segment_budget_sec = (unsigned)b;
    }
    if (level) {
        static const char *names[] = {"debug", "info", "warn", "error"};
        int found = -1;
        for (int i = 0; i < 4; i++) {
            if (strcmp(level, names[i]) == 0) {
                found = i;
            }
        }
        if (found < 0) {
            sd_cli_usage_error("--log-level must be debug, info, warn or error");
            return -1;
        }
        sd_log_set_level((enum sd_log_level)found);
    }
    return 0;
}

static void block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int purge_run(struct sd_store_handle *st, struct sd_write_job *job)
{
    (void)job;
    int r = sd_store_idem_purge(st, sd_now_usec() - 24LL * 3600 * 1000000);
    return r < 0 ? r : sd_inbound_purge_expired(st, sd_now_usec());
}

/* The hourly purge is queued, never waited for: the loop below also reloads the settings (a
 * revoked key is refused within a second), which must not wait behind a long write such as a
 * reject_file import. One purge at a time; the job is static, so it outlives the queue. */
static atomic_bool purge_queued;

static void purge_done(struct sd_write_job *job, int result)
{
    (void)job;
    (void)result;
    atomic_store(&purge_queued, false);
}

static void purge_queue(struct sd_writer *w)
{
    static struct sd_write_job job = {.run = purge_run, .done = purge_done};
    if (!atomic_exchange(&purge_queued, true) && sd_writer_submit(w, &job) < 0) {
        atomic_store(&purge_queued, false);
    }
}

int sd_serve_run(struct sd_hub *hub, struct sd_serve_opts *o)
{
    struct sd_server *srv = NULL;
    int port = 0;
    /* The alert worker first: every other worker hands it facts. */
    int r = sd_alerts_start(hub);
    if (r < 0) {
        return sd_cli_fail("cannot start the alert worker: %s", strerror(-r));
    }
    r = sd_scheduler_new(hub, &hub->scheduler);
    if (r < 0) {
        sd_alerts_stop(hub);
        return sd_cli_fail("cannot start the connector scheduler: %s", strerror(-r));
    }
    r = sd_outbox_new(hub, &hub->outbox);
    if (r < 0) {
        sd_scheduler_free(hub->scheduler);
        hub->scheduler = NULL;
        sd_alerts_stop(hub);
        return sd_cli_fail("cannot start the audience push worker: %s", strerror(-r));
    }
    r = sd_server_start(hub, &o->cfg, &srv, &port);
    if (r < 0) {
        sd_outbox_free(hub->outbox);
        hub->outbox = NULL;
        sd_scheduler_free(hub->scheduler);
        hub->scheduler = NULL;
        sd_alerts_stop(hub);
        return sd_cli_fail("cannot serve on %s:%d: %s", o->host, o->cfg.port, strerror(-r));
    }
    bool v6 = strchr(o->host, ':') != NULL;
    printf("listening on %s://%s%s%s:%d\n", o->cfg.tls_cert ? "https" : "http", v6 ? "[" : "",
           o->host, v6 ? "]" : "", port);
    if (o->on_listening) {
        o->on_listening(o, port, o->on_listening_arg);
    }
    fflush(stdout);
    sd_log(SD_LOG_INFO, "serving", "port=%d data=\"%s\" tls=%s", port, o->data,
           o->cfg.tls_cert ? "on" : "off");

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    int64_t next_purge = sd_mono_usec() + 60LL * 1000000;
    /* Data-quality counters reach the store once a minute (and before a quality read). A
     * stopping server does not flush: what it counted in its last minute is not kept, and a
     * stopped hub writes nothing more (`stagedoor migrate --verify` after a stop). */
    int64_t next_quality = sd_mono_usec() + 60LL * 1000000;
    int sig = 0;
    for (;;) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 250 * 1000 * 1000};
        sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            break;
        }
        sd_log_flush();
        int ar = sd_auth_refresh(hub->auth);
        if (ar < 0) {
            sd_log(SD_LOG_WARN, "cannot reload settings; keeping the current ones", SD_LOG_ERR_FMT,
                   SD_LOG_ERR_ARGS(ar));
        }
        int ur = sd_auth_flush_usage(hub->auth, false);
        if (ur < 0) {
            sd_log(SD_LOG_WARN, "cannot record when keys were last used, retrying",
                   SD_LOG_ERR_FMT, SD_LOG_ERR_ARGS(ur));
        }
        if (sd_mono_usec() > next_quality) {
            next_quality = sd_mono_usec() + 60LL * 1000000;
            int qr = sd_quality_flush(hub->quality, hub->store);
            if (qr < 0) {
                sd_log(SD_LOG_WARN, "cannot store the data-quality counters, retrying in 60s",
                       SD_LOG_ERR_FMT, SD_LOG_ERR_ARGS(qr));
            }
        }
        if (sd_mono_usec() > next_purge) {
            next_purge = sd_mono_usec() + 3600LL * 1000000;
            purge_queue(hub->writer);
        }
    }
    sd_log(SD_LOG_INFO, "shutting down; finishing in-flight requests", "signal=%d", sig);
    /* Segment computations stop within milliseconds and answer 503 first, so the server's
     * grace period below never waits for one. */
    sd_segment_jobs_stop(hub->segment_jobs);
    sd_server_stop(srv, 30LL * 1000000);
    /* Push workers finish the attempt in flight (bounded by its timeout) and record it. */
    sd_outbox_free(hub->outbox);
    hub->outbox = NULL;
    /* Connector runs stop at their next safe point; what they committed stays committed. */
    sd_scheduler_free(hub->scheduler);
    hub->scheduler = NULL;
    /* Last: the facts the workers above handed over are judged before it ends. */
    sd_alerts_stop(hub);
    sd_log(SD_LOG_INFO, "stopped", NULL);
    sd_log_flush();
    return SD_EXIT_OK;
}

int sd_serve_prepare(int argc, char **argv, const char *usage, struct sd_serve_opts *o,
                     struct sd_hub **ret_hub)
{
    bool help = false;
    if (serve_parse(argc, argv, usage, o, &help) < 0) {
        return SD_EXIT_USAGE;
    }
    if (help) {
        return SD_EXIT_OK;
    }
    block_signals();
    int r = sd_hub_open(o->data, sd_cli_store_location(), ret_hub);
    if (r < 0) {
        return sd_cli_fail("cannot open the store in '%s': %s", o->data, strerror(-r));
    }
    bool created = false;
    r = sd_admin_token_ensure(o->data, (*ret_hub)->admin_hash, &created);
    if (r < 0) {
        sd_hub_close(*ret_hub);
        *ret_hub = NULL;
        return sd_cli_fail("cannot read or create the admin token '%s/admin.token': %s",
                           o->data, strerror(-r));
    }
    if (created) {
        sd_log(SD_LOG_INFO, "admin token created", "file=\"%s/admin.token\"", o->data);
    }
    if (o->segment_budget_sec) {
        (void)sd_segment_jobs_set_budget((*ret_hub)->segment_jobs,
                                         (int64_t)o->segment_budget_sec * 1000000);
    }
    return -1;
}

int sd_cmd_serve(int argc, char **argv)
{
    struct sd_serve_opts o = {0};
    struct sd_hub *hub = NULL;
    int r = sd_serve_prepare(argc, argv, usage_serve, &o, &hub);
    if (r >= 0) {
        return r;
    }
    r = sd_serve_run(hub, &o);
    sd_hub_close(hub);
    return r;
}
