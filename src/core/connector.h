/* connector.h — the one interface every connector implements (Fluent Bit's input/output
 * plugins are the model). A connector is a self-contained module in connectors/<name>/ that
 * exports one `const struct sd_connector`; the registry (connectors/registry.c) is one static
 * table, so adding a connector touches no core file but that table.
 *
 * A source connector's `run` fetches records from somewhere (a file, a feed, a remote API, a
 * generator) and hands them to the hub with sd_connector_emit(), which is the webhook's own
 * validation and store path. A target connector's `deliver` sends one payload out and says
 * DELIVERED, RETRY (408, 429, 5xx, transport errors) or REJECTED (other 4xx) — the outbox
 * decides what happens next.
 *
 * Settings are declared in a table of keys {name, type, default, bounds, help}: unknown keys,
 * wrong types and out-of-bound values are refused when a connector is configured (with a JSON
 * Pointer to the offending member), defaults are filled in, and secrets are never shown again.
 *
 * Thread rules: one run of one connector instance at a time; `state` belongs to that run. */
#ifndef SD_CORE_CONNECTOR_H
#define SD_CORE_CONNECTOR_H

#include <jansson.h>
#include <stdint.h>

#include "core/hub.h"
#include "core/ingest.h"

enum sd_connector_kind { SD_CONNECTOR_SOURCE = 1, SD_CONNECTOR_TARGET = 2 };
enum sd_delivery_result { SD_DELIVERED = 0, SD_RETRY = 1, SD_REJECTED = 2 };

enum sd_setting_type { SD_SETTING_STRING, SD_SETTING_INT, SD_SETTING_BOOL, SD_SETTING_SECRET };

struct sd_setting {
    const char *key;
    enum sd_setting_type type;
    const char *default_value; /* as JSON text ("200", "\"EUR\"", "true"); NULL = required */
    int64_t min, max;          /* ints: value bounds; strings: length bounds */
    const char *help;
};

/* What a running connector instance sees of the hub. */
struct sd_connector_ctx {
    struct sd_hub *hub;
    int64_t tenant_id;
    enum sd_env env;
    const char *id;          /* instance id for log lines "[type/id]" */
    const json_t *settings;  /* checked, defaults filled (sd_connector_check_settings) */
    uint64_t records_in;     /* counted by sd_connector_emit */
    uint64_t records_rejected;
};

struct sd_connector {
    const char *name;
    enum sd_connector_kind kind;
    const char *help;
    const struct sd_setting *settings; /* terminated by {NULL} */
    int (*init)(struct sd_connector_ctx *ctx, void **ret_state);
    /* Source: fetch and emit until done. 0, or negative errno (the run failed). */
    int (*run)(struct sd_connector_ctx *ctx, void *state);
    /* Target: deliver one payload. */
    enum sd_delivery_result (*deliver)(struct sd_connector_ctx *ctx, void *state,
                                       const json_t *payload, json_t **ret_answer);
    void (*fini)(void *state);
};

/* The registry (connectors/registry.c). */
extern const struct sd_connector *const sd_connectors[];
const struct sd_connector *sd_connector_find(const char *name);

/* Check settings against the connector's table: returns a new object with defaults filled in,
 * or NULL with every problem in errors (pointer "/settings/<key>"). */
json_t *sd_connector_check_settings(const struct sd_connector *c, const json_t *settings,
                                    struct sd_issues *errors);
/* Settings for display: secrets replaced by "(set)". New reference. */
json_t *sd_connector_redact_settings(const struct sd_connector *c, const json_t *settings);

/* Hand one ingest body to the hub (sd_hub_ingest) and count it. */
int sd_connector_emit(struct sd_connector_ctx *ctx, const json_t *body,
                      struct sd_ingest_outcome *out);

/* init, run, fini of a source connector for tenant/env with the given (unchecked) settings. */
int sd_connector_run_source(struct sd_hub *hub, const char *name, int64_t tenant_id,
                            enum sd_env env, const char *id, const json_t *settings,
                            struct sd_issues *errors, uint64_t *ret_records);

#endif
