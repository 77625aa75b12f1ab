/* cmd_delivery.c — `stagedoor delivery list|show|retry|cancel|send-now`: the outbox seen from
 * the command line, on the store directly. A replay (retry) queues a dead delivery again, send-now
 * makes a waiting one due now; a running server's workers notice within a second. Shows the same
 * fields as the admin API (core/outbox_policy.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cli/cli.h"
#include "core/outbox.h"
#include "store/audience.h"
#include "store/store.h"

static const char usage_delivery[] =
    "usage: stagedoor delivery <list|show|retry|cancel|send-now> ...\n"
    "  delivery list [--state STATE] [--client CLIENT_ID] [--connector ID] [--limit N]\n"
    "  delivery show DELIVERY_ID\n"
    "  delivery retry DELIVERY_ID\n"
    "  delivery cancel DELIVERY_ID [--reason TEXT]\n"
    "  delivery send-now DELIVERY_ID\n"
    "Every command takes --data DIR.\n";
static const char usage_list[] =
    "usage: stagedoor delivery list [--state STATE] [--client CLIENT_ID] [--connector ID]\n"
    "                               [--limit N (100)] [--data DIR]\n"
    "Newest first. STATE: queued, sending, retrying, delivered, dead or cancelled.\n";
static const char usage_cancel[] =
    "usage: stagedoor delivery cancel DELIVERY_ID [--reason TEXT] [--data DIR]\n"
    "Cancels a waiting (queued or retrying) delivery for good; the reason is kept with it.\n";
static const char usage_send_now[] =
    "usage: stagedoor delivery send-now DELIVERY_ID [--data DIR]\n"
    "Makes a waiting delivery due now (its attempts are kept; a rate limit still applies).\n";
static const char usage_show[] = "usage: stagedoor delivery show DELIVERY_ID [--data DIR]\n"
                                 "Prints the delivery as JSON, with its attempt history.\n";
static const char usage_retry[] =
    "usage: stagedoor delivery retry DELIVERY_ID [--data DIR]\n"
    "Replays a dead delivery: queued again with attempts reset and a new Idempotency-Key; the\n"
    "body is rebuilt when it is sent, so today's opt-outs and erasures apply.\n";

static int delivery_list(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *state = NULL, *client = NULL, *limit = NULL;
    const char *connector = NULL;
    struct sd_cli_opt opts[] = {
        {"--data", true, &data, NULL},     {"--state", true, &state, NULL},
        {"--client", true, &client, NULL}, {"--connector", true, &connector, NULL},
        {"--limit", true, &limit, NULL},   {0}};
    int n = sd_cli_parse(argc, argv, opts, NULL, 0, usage_list);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    struct sd_delivery_filter f = {.tenant_id = 0, .env = -1, .state = -1, .limit = 100};
    if (state) {
        enum sd_delivery_state s;
        if (sd_delivery_state_parse(state, &s) < 0) {
            return sd_cli_usage_error(
                "--state must be queued, sending, retrying, delivered, dead or cancelled");
        }
        f.state = (int)s;
    }
    f.connector_id = connector;
    if (limit) {
        long long l = sd_cli_positive("--limit", limit, 1000);
        if (l < 0) {
            return SD_EXIT_USAGE;
        }
        f.limit = (size_t)l;
    }
    struct sd_store_handle *st = NULL;
    int r = sd_cli_open_store(data, &st);
    if (r) {
        return r;
    }
    struct sd_tenant t = {0};
    if (client) {
        r = sd_store_tenant_get(st, client, &t);
        if (r < 0) {
            sd_store_close(st);
            return r == -ENOENT ? sd_cli_fail("no tenant '%s'", client)
                                : sd_cli_fail("cannot read tenant: %s", strerror(-r));
        }
        f.tenant_id = t.id;
    }
    struct sd_outbox_item *v = NULL;
    size_t nv = 0;
    bool more = false;
    r = sd_store_delivery_list(st, &f, &v, &nv, &more);
    int rc = SD_EXIT_OK;
    if (r < 0) {
        rc = sd_cli_fail("cannot list deliveries: %s", strerror(-r));
    } else {
        printf("%-20s %-12s %-4s %-9s %-6s %-3s %-20s %-6s %s\n", "DELIVERY_ID", "CLIENT_ID", "ENV",
               "STATE", "KIND", "TRY", "NEXT_ATTEMPT", "STATUS", "REMOTE_SEGMENT_ID");
        for (size_t i = 0; i < nv; i++) {
            json_t *view = sd_outbox_delivery_view(&v[i]);
            const json_t *next = json_object_get(view, "next_attempt_at");
            const json_t *status = json_object_get(view, "last_status");
            const json_t *remote = json_object_get(view, "remote_segment_id");
            char st_text[16] = "-";
            if (json_is_integer(status)) {
                snprintf(st_text, sizeof(st_text), "%lld", (long long)json_integer_value(status));
            }
            printf("%-20s %-12s %-4s %-9s %-6s %-3lld %-20s %-6s %s\n", v[i].id,
                   v[i].client_id ? v[i].client_id : "-", sd_env_name(v[i].env),
                   sd_delivery_state_name(v[i].state),
                   json_is_string(json_object_get(view, "kind"))
                       ? json_string_value(json_object_get(view, "kind"))
                       : "-",
                   (long long)v[i].attempts, json_is_string(next) ? json_string_value(next) : "-",
                   st_text, json_is_string(remote) ? json_string_value(remote) : "-");
            json_decref(view);
        }
        if (more) {
            printf("(more; use --limit or --state to narrow)\n");
        }
    }
    sd_outbox_items_free(v, nv);
    sd_tenant_release(&t);
    sd_store_close(st);
    return rc;
}

static int delivery_show(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *id = NULL;
    int r = sd_cli_parse_id(argc, argv, usage_show, "delivery", "show", "DELIVERY_ID", &data, &id);
    if (r >= 0) {
        return r;
    }
    struct sd_store_handle *st = NULL;
    if ((r = sd_cli_open_store(data, &st)) != 0) {
        return r;
    }
    struct sd_outbox_item d = {0};
    r = sd_store_delivery_get(st, 0, SD_ENV_TEST, id, &d);
    int rc = SD_EXIT_OK;
    if (r == -ENOENT) {
        rc = sd_cli_fail("no delivery '%s'", id);
    } else if (r < 0) {
        rc = sd_cli_fail("cannot read the delivery: %s", strerror(-r));
    } else {
        json_t *view = sd_outbox_delivery_view(&d);
        char *text = json_dumps(view, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", text);
        free(text);
        json_decref(view);
    }
    sd_outbox_item_release(&d);
    sd_store_close(st);
    return rc;
}

static int delivery_retry(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *id = NULL;
    int r =
        sd_cli_parse_id(argc, argv, usage_retry, "delivery", "retry", "DELIVERY_ID", &data, &id);
    if (r >= 0) {
        return r;
    }
    struct sd_store_handle *st = NULL;
    if ((r = sd_cli_open_store(data, &st)) != 0) {
        return r;
    }
    r = sd_outbox_retry(st, id);
    sd_store_close(st);
    if (r == -ENOENT) {
        return sd_cli_fail("no delivery '%s'", id);
    }
    if (r == -EBUSY) {
        return sd_cli_fail("delivery '%s' is not dead; only a dead delivery can be replayed", id);
    }
    if (r < 0) {
        return sd_cli_fail("cannot replay the delivery: %s", strerror(-r));
    }
    printf("queued %s again; a running server sends it within a second\n", id);
    return SD_EXIT_OK;
}

static int delivery_cancel(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *reason = NULL;
    const char *pos[1] = {NULL};
    struct sd_cli_opt opts[] = {
        {"--data", true, &data, NULL}, {"--reason", true, &reason, NULL}, {0}};
    int n = sd_cli_parse(argc, argv, opts, pos, 1, usage_cancel);
    if (n < 0) {
        return n == -1 ? SD_EXIT_OK : SD_EXIT_USAGE;
    }
    if (n != 1) {
        return sd_cli_usage_error("delivery cancel takes one DELIVERY_ID");
    }
    if (reason && strlen(reason) > 500) {
        return sd_cli_usage_error("--reason is at most 500 characters");
    }
    struct sd_store_handle *st = NULL;
    int r = sd_cli_open_store(data, &st);
    if (r) {
        return r;
    }
    r = sd_outbox_cancel(st, pos[0], "cli", reason);
    sd_store_close(st);
    if (r == -ENOENT) {
        return sd_cli_fail("no delivery '%s'", pos[0]);
    }
    if (r == -EBUSY) {
        return sd_cli_fail("delivery '%s' is not waiting (queued or retrying)", pos[0]);
    }
    if (r < 0) {
        return sd_cli_fail("cannot cancel the delivery: %s", strerror(-r));
    }
    printf("cancelled %s\n", pos[0]);
    return SD_EXIT_OK;
}

static int delivery_send_now(int argc, char **argv)
{
    const char *data = SD_DEFAULT_DATA_DIR, *id = NULL;
    int r = sd_cli_parse_id(argc, argv, usage_send_now, "delivery", "send-now", "DELIVERY_ID",
                            &data, &id);
    if (r >= 0) {
        return r;
    }
    struct sd_store_handle *st = NULL;
    if ((r = sd_cli_open_store(data, &st)) != 0) {
        return r;
    }
    r = sd_outbox_send_now(st, id);
    sd_store_close(st);
    if (r == -ENOENT) {
        return sd_cli_fail("no delivery '%s'", id);
    }
    if (r == -EBUSY) {
        return sd_cli_fail("delivery '%s' is not waiting (queued or retrying)", id);
    }
    if (r < 0) {
        return sd_cli_fail("cannot make the delivery due: %s", strerror(-r));
    }
    printf("%s is due now; a running server sends it within a second\n", id);
    return SD_EXIT_OK;
}

int sd_cmd_delivery(int argc, char **argv)
{
    static const struct sd_cli_subcommand subs[] = {
        {"list", delivery_list},     {"show", delivery_show},         {"retry", delivery_retry},
        {"cancel", delivery_cancel}, {"send-now", delivery_send_now}, {NULL, NULL},
    };
    return sd_cli_dispatch("delivery", subs, usage_delivery, argc, argv);
}
