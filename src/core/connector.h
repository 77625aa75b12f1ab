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
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/hub.h"
#include "core/ingest.h"

enum sd_connector_kind { SD_CONNECTOR_SOURCE = 1, SD_CONNECTOR_TARGET = 2 };
enum sd_delivery_result { SD_DELIVERED = 0, SD_RETRY = 1, SD_REJECTED = 2 };

/* Setting types. Every string-like value (STRING, SECRET, CHOICE, URL, PATH) is refused if it
 * holds a control character (C0, DEL, NUL): values end up in HTTP headers, URLs and log lines.
 *   CHOICE  one of `choices` (the error lists them); min/max unused.
 *   URL     a URL (http/egress.h: parsed with libcurl, no user:password@, no control
 *           characters) whose scheme is one of `choices`, and whose host, if it is an address
 *           literal, the egress policy allows. Changing its scheme, host or port drops the
 *           connector's stored secrets unless the same update sends them again.
 *   PATH    an absolute path inside the configured file roots (STAGEDOOR_FILE_ROOTS), never
 *           in /etc, /proc, /sys, /dev or the data directory; "" allowed when min is 0. */
enum sd_setting_type {
    SD_SETTING_STRING,
    SD_SETTING_INT,
    SD_SETTING_BOOL,
    SD_SETTING_SECRET,
    SD_SETTING_CHOICE,
    SD_SETTING_URL,
    SD_SETTING_PATH,
};

struct sd_setting {
    const char *key;
    enum sd_setting_type type;
    const char *default_value; /* as JSON text ("200", "\"EUR\"", "true"); NULL = required */
    int64_t min, max;          /* ints: value bounds; strings: length bounds */
    const char *help;
    const char *const *choices; /* CHOICE: allowed values; URL: allowed schemes (NULL-ended) */
};

/* A NULL-terminated list for sd_setting.choices: SD_CHOICES("auto", "comma"). */
#define SD_CHOICES(...) ((const char *const[]){__VA_ARGS__, NULL})

struct sd_mapping;

/* What a running connector instance sees of the hub. The fields below `records_rejected` are
 * set for instances configured at run time (the scheduler's runs); the demo loader leaves them
 * zero. */
struct sd_connector_ctx {
    struct sd_hub *hub;
    int64_t tenant_id;
    enum sd_env env;
    const char *id;          /* instance id for log lines "[type/id]" */
    const json_t *settings;  /* checked, defaults filled (sd_connector_check_settings) */
    uint64_t records_in;     /* counted by sd_connector_emit / sd_connector_commit */
    uint64_t records_rejected;
    uint64_t records_unchanged; /* of records_in: already stored as they were (configured runs) */

    const struct sd_mapping *mapping; /* source fields → model (identity if none configured) */
    const json_t *cursor;    /* the cursor committed by the last commit (NULL: from scratch) */
    const char *work_dir;    /* DATA/connectors/<id>/, private to this instance, exists */
    const char *source;      /* source label of its records (setting "source", or the type) */
    const atomic_bool *stop; /* the hub is stopping: return -ECANCELED at the next safe point */
    _Atomic uint64_t *progress; /* rows/records read so far in this run, shown in the status */
    json_t *state;           /* the state document; owned by the runtime (connector_run.c) */
    char *error;             /* why the run failed, set with sd_connector_fail */
};

/* Record why this run fails (shown as last_error in the status; never put secrets in it).
 * Returns -EIO-style `code` so a connector can write `return sd_connector_fail(ctx, -EIO, …)`. */
int sd_connector_fail(struct sd_connector_ctx *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
struct sd_connector {
    const char *name;
    enum sd_connector_kind kind;
    const char *help;
    const struct sd_setting *settings; /* terminated by {NULL} */
    const char *default_schedule;      /* when configured without one (core/schedule.h) */
    int (*init)(struct sd_connector_ctx *ctx, void **ret_state);
    /* Source: fetch and emit until done. 0, or negative errno (the run failed). */
    int (*run)(struct sd_connector_ctx *ctx, void *state);
    /* Target: deliver one payload. */
    enum sd_delivery_result (*deliver)(struct sd_connector_ctx *ctx, void *state,
                                       const json_t *payload, json_t **ret_answer);
    void (*fini)(void *state);
    /* Optional, sources: a local folder whose changes should trigger a run at once (inotify),
     * besides the schedule. NULL: none. */
    const char *(*watch_dir)(const json_t *settings);
    /* Optional: more checks of the settings as a whole (pointers "/settings/<key>"). */
    void (*check)(const json_t *settings, struct sd_issues *errors);

    /* ---- inbound door: raw-first vendor webhooks (core/inbound.h) ----
     * Optional, sources: a connector that sets inbound_map gets a door, POST
     * /in/{connector_id}/{token}, whose token is made when the instance is created. For each
     * object of a payload received there (a JSON array of objects, or one object), with the
     * instance's ctx (settings, mapping, source; no hub): append the model records it stands
     * for to body["events"|"customers"|"sales"] and return 0, or return -EINVAL with the
     * reasons in issues (the object is then quarantined, the rest of the payload applied).
     * Its settings table must include SD_INBOUND_SETTINGS (the door's auth, allowlist, limits
     * and retention). Pure: called on HTTP threads and on the writer (replay). */
    int (*inbound_map)(struct sd_connector_ctx *ctx, const json_t *object, json_t *body,
                       struct sd_issues *issues);
};

/* The registry (connectors/registry.c). */
extern const struct sd_connector *const sd_connectors[];
const struct sd_connector *sd_connector_find(const char *name);

/* Check settings against the connector's table: returns a new object with defaults filled in,
 * or NULL with every problem in errors (pointer "/settings/<key>"). Every source connector also
 * takes "source": the label its customers are kept under (1–64 of a-z 0-9 _ - .; default: the
 * connector's type), so ids of different systems never collide and a push can use them. */
json_t *sd_connector_check_settings(const struct sd_connector *c, const json_t *settings,
                                    struct sd_issues *errors);
/* Settings for display: secrets replaced by "(set)". New reference. */
json_t *sd_connector_redact_settings(const struct sd_connector *c, const json_t *settings);

/* Hand one ingest body to the hub (sd_hub_ingest) and count it. */
int sd_connector_emit(struct sd_connector_ctx *ctx, const json_t *body,
                      struct sd_ingest_outcome *out);

/* For configured instances: store `body` (upsert_sales; skip_bad if asked) and, in the same
 * transaction, `cursor` as the new committed cursor (NULL: unchanged). Counts into records_in
 * and records_rejected. Returns 0 with out->status, or -EIO. */
int sd_connector_commit(struct sd_connector_ctx *ctx, const json_t *body, const json_t *cursor,
                        bool skip_bad, struct sd_ingest_outcome *out);

/* Map source records (a JSON array of objects from a feed or an API page) to model records of
 * `kind` with the instance's mapping and append them to body["events"|"customers"|"sales"].
 * A record that cannot be mapped is left out with its issues (pointer ptr_prefix + "/" + index
 * + "/" + field) and counted in the return value (the number left out). */
size_t sd_connector_map_records(struct sd_connector_ctx *ctx, enum sd_kind kind,
                                const json_t *records, const char *ptr_prefix, json_t *body,
                                struct sd_issues *errors);
/* The ingest body's array name for a kind ("events", "customers", "sales"). */
const char *sd_kind_array_name(enum sd_kind kind);

/* sd_connector_commit whose cursor depends on the outcome: cursor_fn is called before each
 * attempt with the records left out so far (errors point into body) and returns the cursor to
 * commit with that attempt (new reference). */
typedef json_t *(*sd_connector_cursor_fn)(void *arg, const struct sd_issues *skipped,
                                          size_t n_skipped);
int sd_connector_commit_fn(struct sd_connector_ctx *ctx, const json_t *body,
                           sd_connector_cursor_fn cursor_fn, void *arg, bool skip_bad,
                           struct sd_ingest_outcome *out);

/* A unit of work that must be stored all or nothing although it is larger than one ingest
 * body (a CSV file with the reject_file policy): `fn` runs on the writer thread inside one
 * savepoint and stores through sd_connector_job_ingest / sd_connector_job_cursor. fn returns
 * 0 to keep everything, 1 to undo everything (the job still succeeded), negative errno to fail.
 * Other writes wait while it runs, so use it for bounded work. */
struct sd_connector_job;
typedef int (*sd_connector_job_fn)(struct sd_connector_job *job, void *arg);
int sd_connector_write_job(struct sd_connector_ctx *ctx, sd_connector_job_fn fn, void *arg);
int sd_connector_job_ingest(struct sd_connector_job *job, const json_t *body,
                            struct sd_ingest_outcome *out);
/* sd_connector_job_ingest for records validated beforehand (sd_validate_ingest on the
 * connector's own thread, so that the writer only stores): sets the batch's source and upsert
 * mode, then applies it. A refused batch (status != 202) writes nothing (the store checks
 * every reference of an upsert batch before it writes), so it can be applied again without the
 * records it named. */
int sd_connector_job_ingest_batch(struct sd_connector_job *job, struct sd_batch *batch,
                                  struct sd_ingest_outcome *out);
/* Count n records as rejected; they count into the state only if the job's work is kept. */
void sd_connector_job_reject(struct sd_connector_job *job, uint64_t n);
int sd_connector_job_cursor(struct sd_connector_job *job, const json_t *cursor);
struct sd_connector_ctx *sd_connector_job_ctx(struct sd_connector_job *job);

/* init, run, fini of a source connector for tenant/env with the given (unchecked) settings. */
int sd_connector_run_source(struct sd_hub *hub, const char *name, int64_t tenant_id,
                            enum sd_env env, const char *id, const json_t *settings,
                            struct sd_issues *errors, uint64_t *ret_records);

#endif
