/* webhook_in.c — the generic vendor webhook receiver: a source connector with no fetching of
 * its own, whose records arrive at its inbound door (POST /in/{connector_id}/{token}, see
 * core/inbound.h) as a JSON array of objects or a single object.
 *
 * Each object is one record of the instance's `kind`: the object itself, or the member
 * `record_pointer` designates inside it (S-360 wraps an order as {"orderDetailsData": {…}}),
 * renamed and converted by the instance's mapping. Anything the mapping refuses, and every
 * object where record_pointer finds no object, is quarantined by the door with the reason.
 *
 * A run ("run now", or a schedule) replays the quarantined objects through the current
 * mapping: after fixing the mapping, one run applies what now maps. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "core/connector.h"
#include "core/inbound.h"
#include "formats/json_pointer.h"

/* The settings, filled by core from the checked settings (ctx->conf). */
enum webhook_in_kind { KIND_EVENTS, KIND_CUSTOMERS, KIND_SALES };
struct webhook_in_conf {
    int kind; /* enum webhook_in_kind */
    const char *record_pointer;
    struct sd_inbound_conf inbound; /* the door's settings (SD_INBOUND_SETTINGS) */
};

static const struct sd_setting webhook_in_settings[] = {
    {"kind", SD_SETTING_CHOICE, "\"customers\"", 0, 0,
     "what each object of a payload is: events, customers or sales",
     SD_CHOICES("events", "customers", "sales"), offsetof(struct webhook_in_conf, kind)},
    {"record_pointer", SD_SETTING_STRING, "\"\"", 0, 256,
     "JSON Pointer to the record inside each object (\"/orderDetailsData\"); empty: the object "
     "itself",
     NULL, offsetof(struct webhook_in_conf, record_pointer)},
    SD_INBOUND_SETTINGS(struct webhook_in_conf),
    {NULL, 0, NULL, 0, 0, NULL, NULL, 0},
};

static enum sd_kind kind_of(const struct webhook_in_conf *cf)
{
    switch (cf ? cf->kind : KIND_CUSTOMERS) {
    case KIND_EVENTS:
        return SD_KIND_EVENT;
    case KIND_SALES:
        return SD_KIND_SALE;
    default:
        return SD_KIND_CUSTOMER;
    }
}

static int inbound_map(struct sd_connector_ctx *ctx, const json_t *object, json_t *body,
                       struct sd_issues *issues)
{
    const struct webhook_in_conf *cf = ctx->conf;
    const char *ptr = cf ? cf->record_pointer : NULL;
    const json_t *rec = object;
    if (ptr && *ptr) {
        rec = sd_json_pointer_get(object, ptr);
        if (!json_is_object(rec)) {
            sd_issues_add(issues, ptr, "no object at record_pointer");
            return -EINVAL;
        }
    }
    json_t *one = json_array();
    json_array_append(one, (json_t *)rec);
    size_t bad = sd_connector_map_records(ctx, kind_of(cf), one, "", body, issues);
    json_decref(one);
    return bad ? -EINVAL : 0;
}

static void check(const void *conf, struct sd_issues *errors)
{
    const struct webhook_in_conf *cf = conf;
    if (cf->record_pointer && !sd_json_pointer_valid(cf->record_pointer)) {
        sd_issues_add(errors, "/settings/record_pointer",
                      "must be a JSON Pointer (\"\" or starting with '/')");
    }
    sd_inbound_check_conf(&cf->inbound, errors);
}

static int init(struct sd_connector_ctx *ctx, void **ret_state)
{
    (void)ctx;
    *ret_state = NULL;
    return 0;
}

static void fini(void *state)
{
    (void)state;
}

const struct sd_connector sd_connector_webhook_in = {
    .name = "webhook_in",
    .kind = SD_CONNECTOR_SOURCE,
    .help = "vendor webhooks received raw first at POST /in/{connector_id}/{token}; objects "
            "that cannot be mapped are quarantined; a run replays them",
    .settings = webhook_in_settings,
    .settings_size = sizeof(struct webhook_in_conf),
    .default_schedule = "manual",
    .init = init,
    .run = sd_inbound_replay_run, /* a run replays the quarantine */
    .deliver = NULL,
    .fini = fini,
    .check = check,
    .inbound_map = inbound_map,
};
