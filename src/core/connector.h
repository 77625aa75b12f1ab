/* connector.h — the one interface every connector implements (Fluent Bit's input/output
 * plugins are the model). A connector is a self-contained module in connectors/<name>/ that
 * exports one `const struct sd_connector`; the registry (connectors/registry.c) is one static
 * table, so adding a connector touches no core file but that table.
 *
 * Kind is a set of flags: a SOURCE's `run` fetches records from somewhere (a file, a feed, a
 * remote API, a generator) and hands them to the hub with sd_connector_emit(), which is the
 * webhook's own validation and store path. A TARGET writes to a remote system through the
 * outbox (core/outbox.h): `on_change` turns a stored change into outbox items, inside the
 * writer's transaction, and `deliver` performs one item's request and says what the answer
 * means (enum sd_verdict, http/verdict.h: OK with the remote reference, RETRY, WAIT with a
 * retry-after, REJECT with the remote answer). Core owns the queue: leases, fencing, FIFO per
 * subject, back-off, dead letters, replay, cancel. One instance of a type with both flags does
 * both with one set of settings (credentials). The scheduler runs only types with `run`.
 *
 * Settings are declared in a table of keys {name, type, default, bounds, help, choices, offset}
 * (Fluent Bit's config map is the model): unknown keys, wrong types, out-of-bound values and
 * unknown choices are refused when a connector is configured (with a JSON Pointer to the
 * offending member), defaults are filled in, and secrets are never shown again. Core then fills
 * the connector's own settings struct from the checked values once per run (ctx->conf), so a
 * connector reads typed members, never settings by string key; the same table prints
 * `stagedoor connector types` and the settings tables of docs/CONNECTORS.md.
 *
 * Thread rules: one run of one connector instance at a time; `state` belongs to that run. */
#ifndef SD_CORE_CONNECTOR_H
#define SD_CORE_CONNECTOR_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/hub.h"
#include "core/ingest.h"
#include "http/verdict.h"

enum sd_connector_kind { SD_CONNECTOR_SOURCE = 1, SD_CONNECTOR_TARGET = 2 };

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

/* One setting. When the connector declares settings_size > 0, `offset` is
 * offsetof(its settings struct, member) and the member's C type follows the setting's type:
 *   STRING, SECRET, URL, PATH  const char *  (points into the checked settings: valid for the run)
 *   INT                        int64_t
 *   BOOL                       bool
 *   CHOICE                     int           (the index of the value in `choices`: declare an
 *                                            enum in the same order next to the table)
 * Every setting of such a table is filled; a connector with settings_size 0 (the older form)
 * gets no struct (ctx->conf NULL) and reads ctx->settings. */
struct sd_setting {
    const char *key;
    enum sd_setting_type type;
    const char *default_value; /* as JSON text ("200", "\"EUR\"", "true"); NULL = required */
    int64_t min, max;          /* ints: value bounds; strings: length bounds */
    const char *help;
    const char *const *choices; /* CHOICE: allowed values; URL: allowed schemes (NULL-ended) */
    size_t offset;              /* offsetof into the connector's settings struct (see above) */
};

/* A NULL-terminated list for sd_setting.choices: SD_CHOICES("auto", "comma"). */
#define SD_CHOICES(...) ((const char *const[]){__VA_ARGS__, NULL})

struct sd_mapping;

/* A vendor's limit on calls: at most `calls` per fixed window of `window_usec`, counted per
 * credential (see sd_connector.credential_settings) in a persistent ledger that pull runs and
 * deliveries of every instance with that credential share, and that a restart does not reset.
 * Windows are aligned to the Unix epoch: a 60 s window is a wall-clock minute, a 86400 s window
 * a UTC day. Of each window, write_reserve calls are kept for writes (deliveries): reads
 * (pull runs) stop at calls - write_reserve, so a backfill cannot starve the outbox. Rules:
 * name 1–32 bytes and unique in the list, window_usec > 0, calls > 0,
 * 0 <= write_reserve <= calls; at most 8 per connector (core/quota.h). */
struct sd_quota {
    const char *name; /* shown in the status: "minute", "day" */
    int64_t window_usec;
    int64_t calls;
    int64_t write_reserve;
};

/* What a running connector instance sees of the hub. The fields below `records_rejected` are
 * set for instances configured at run time (the scheduler's runs); the demo loader leaves them
 * zero. */
struct sd_connector_ctx {
    struct sd_hub *hub;
    int64_t tenant_id;
    enum sd_env env;
    const char *id;          /* instance id for log lines "[type/id]" */
    const json_t *settings;  /* checked, defaults filled (sd_connector_check_settings) */
    const void *conf;        /* the connector's settings struct filled from `settings`
                                (sd_connector_settings_new); NULL when settings_size is 0 */
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
    /* The type this instance runs (its quotas: sd_connector_quota_take); set for every run,
     * the demo loader's too. */
    const struct sd_connector *connector;
    struct sd_outbox_lease *lease; /* deliver: the item's lease (sd_connector_lease_extend) */
    /* inbound_map: the stream the object came in on (one of the type's inbound_streams), or
     * NULL at a plain door; the same on replay (the payload keeps its stream). */
    const char *inbound_stream;
    /* deliver: calls core already took from the quotas for this attempt (1 for a type with
     * quotas); sd_connector_quota_take* spends them first, and counts every further call of a
     * delivery (lease set) as a write, so a deliver that makes several requests (a query and
     * an update, a 202 poll) takes each of them from the ledger. */
    int64_t prepaid_calls;
    /* A scheduled run: the fencing token of the run lease its node holds (0: no lease, e.g.
     * the demo loader or a delivery). Core names it in every commit of the run (records with
     * their cursor, state saves, the run's last state document), so once another node took
     * the lease over, each of them fails with -ESTALE and nothing more is stored. */
    int64_t run_fence;
};

struct sd_outbox_item; /* store/audience.h (through core/outbox.h) */

/* An action an operator asks of a target instance through the API (core/actions.h): POST
 * /v1/{client_id}/connectors/{connector_id}/{name} with a JSON body and an Idempotency-Key
 * becomes ONE outbox item of `operation` (a retry of the request with the same key answers
 * that item, never a second one), whose subject (kind `subject_kind`) is the item's own id; the
 * API waits a bounded time for its delivery. `prepare` checks the body (pointers into it, e.g.
 * "/quantity") and returns the item's payload (a new object), or -EINVAL with the reasons in
 * errors. conf: the instance's filled settings struct (NULL when settings_size is 0). Pure:
 * called on HTTP threads, no network, no store. */
struct sd_connector_action {
    const char *name; /* 1–32 of a-z 0-9 _ -; the route's last segment */
    const char *operation;
    const char *subject_kind;
    int (*prepare)(const void *conf, const json_t *body, json_t **ret_payload,
                   struct sd_issues *errors);
};

/* What one deliver says about its exchange; core records it with the item (the answer kept
 * bounded, the error and status in the item's history) and decides what happens next from the
 * verdict. Every pointer is the connector's allocation, freed by core (free / json_decref). */
struct sd_delivery_result {
    char *remote_ref;         /* OK: the subject's remote id (kept on the item and in the remote
                                 references), or NULL: the known one stays */
    int64_t retry_after_usec; /* WAIT, RETRY: the wait the remote asked for; 0: core's default
                                 (WAIT) or back-off alone (RETRY) */
    long status;              /* the remote's status; 0 if nothing was answered */
    char *answer;             /* the remote's answer, or NULL (core keeps 2 KiB of it) */
    char *error;              /* why it failed, for operators (no secrets), or NULL */
    int64_t ms;               /* how long the exchange took */
    json_t *facts;            /* the connector's own facts about the item ({"kind": "update"}),
                                 merged into its record and shown with it
                                 (the views' "facts"), or NULL */
};
void sd_delivery_result_release(struct sd_delivery_result *res);

/* deliver: keep the item's lease at least need_usec ahead (extend it to now + to_usec when it
 * ends sooner): before a request whose timeout would outlast it, and while a long payload is
 * built. 0, or -ESTALE: another worker took the item over, so do not send (core records
 * nothing for this attempt). */
int sd_connector_lease_extend(struct sd_connector_ctx *ctx, int64_t need_usec, int64_t to_usec);

/* Remote references of this instance: (kind, local id) ↔ the remote system's id (a CRM's
 * contact number, a fan id, a remote segment id), so an update goes to the remote record the
 * first write created and an inbound record from that system resolves to the same local one.
 * Usable by deliver and by source runs (not by on_change). get/find: 0 with a heap string, or
 * -ENOENT; put: insert or replace. Negative errno on store errors. */
int sd_connector_remote_ref_get(const struct sd_connector_ctx *ctx, const char *kind,
                                const char *local_id, char **ret_remote);
int sd_connector_remote_ref_find(const struct sd_connector_ctx *ctx, const char *kind,
                                 const char *remote_id, char **ret_local);
int sd_connector_remote_ref_put(const struct sd_connector_ctx *ctx, const char *kind,
                                const char *local_id, const char *remote_id);
/* The customer records linked with one: the ids of the records of member_source that share the
 * profile of record (source, customer_id), in record order, that record itself left out (heap
 * array of heap strings, NULL when *ret_n is 0); 0 ids when it is not stored. And the
 * remote_version stored with a customer record (the highest version its source gave with it,
 * e.g. a CRM's last-change time; 0 = none; -ENOENT: no such record). For deliver and source
 * runs (read path, not from on_change: there, sd_outbox_change_linked). Negative errno. */
int sd_connector_linked_ids(const struct sd_connector_ctx *ctx, const char *source,
                            const char *customer_id, const char *member_source, char ***ret_ids,
                            size_t *ret_n);
int sd_connector_record_version(const struct sd_connector_ctx *ctx, const char *source,
                                const char *customer_id, int64_t *ret_version);

/* A set of remote references under one kind (what a remote list, a tag's members, was last
 * given), so the next write sends only the difference. list: up to limit (1..10000) local ids
 * greater than `after` (NULL: from the first) in byte order with their remote ids (heap arrays
 * of heap strings, NULL when *ret_n is 0). apply: puts and deletes (each ≤ 10000) in one
 * transaction: record each remote call's effect as soon as it is answered, so a sync cut short
 * (a 429, a crash) resumes from exactly where the remote stands. Negative errno. */
int sd_connector_remote_ref_list(const struct sd_connector_ctx *ctx, const char *kind,
                                 const char *after, size_t limit, char ***ret_local,
                                 char ***ret_remote, size_t *ret_n);
int sd_connector_remote_ref_apply(const struct sd_connector_ctx *ctx, const char *kind,
                                  const char *const *put_local, const char *const *put_remote,
                                  size_t n_put, const char *const *del_local, size_t n_del);

/* Read back the hub's records of `kind` in this instance's tenant and environment, in change
 * order after sequence number after_seq (0: from the first), at most `limit` rows (clamped to
 * SD_CONNECTOR_READ_MAX): *ret_records is a new array of the live records as stored (customers
 * carry their "source"; tombstones are skipped), *ret_last_seq the sequence number of the last
 * row read (tombstones included: pass it as after_seq for the next page), *ret_more whether
 * rows follow. For a reconciliation that compares the vendor's records with the hub's; any
 * thread but the writer's (not from on_change). 0, -EINVAL, or the store's negative errno. */
#define SD_CONNECTOR_READ_MAX 1000
int sd_connector_records_page(const struct sd_connector_ctx *ctx, enum sd_kind kind,
                              int64_t after_seq, size_t limit, json_t **ret_records,
                              int64_t *ret_last_seq, bool *ret_more);

/* Check the references of a validated batch's sales (this instance's source, tenant and
 * environment) against the committed data, without a write job: a file transport checks a
 * whole file this way before it stores any of it. Issues go to errors in the words and at the
 * pointers sd_connector_job_ingest_batch would give; *ret_needs_writer is set when a sale's
 * acceptance depends on more than references (a refund, or a stored invoice with other
 * content), which only storing can judge (store.h, check_sale_refs). Any thread but the
 * writer's. Returns the number of issues, or a negative errno. */
int sd_connector_check_sale_refs(const struct sd_connector_ctx *ctx, struct sd_batch *batch,
                                 struct sd_issues *errors, bool *ret_needs_writer);

/* on_change: one stored change of a record, as the writer applies it. */
struct sd_change {
    enum sd_kind kind;   /* SD_KIND_CUSTOMER, SD_KIND_EVENT, SD_KIND_SALE */
    const char *id;      /* the record's id (customer_id, event_id, invoice) */
    const char *source;  /* the record's source label */
    const json_t *record; /* the record as stored */
    const char *origin;  /* the connector instance that wrote it, or NULL (the hub's API) */
};

/* on_change: the outbound item a change causes, appended with sd_outbox_add (core/outbox.h). */
struct sd_outbox_adder;

/* Record why this run fails (shown as last_error in the status; never put secrets in it).
 * Returns -EIO-style `code` so a connector can write `return sd_connector_fail(ctx, -EIO, …)`. */
int sd_connector_fail(struct sd_connector_ctx *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
struct sd_connector {
    const char *name;
    unsigned kind; /* SD_CONNECTOR_SOURCE | SD_CONNECTOR_TARGET: one instance may do both */
    const char *help;
    const struct sd_setting *settings; /* terminated by {NULL} */
    size_t settings_size;              /* sizeof its settings struct; 0: no struct (ctx->conf) */
    const char *default_schedule;      /* when configured without one (core/schedule.h) */
    int (*init)(struct sd_connector_ctx *ctx, void **ret_state);
    /* Source: fetch and emit until done. 0, or negative errno (the run failed). */
    int (*run)(struct sd_connector_ctx *ctx, void *state);
    /* Target: the outbox operations it performs (NULL-terminated names), or NULL. */
    const char *const *operations;
    /* Target: perform one item (ctx->settings are the instance's; init/fini around it). Fills
     * res and returns the verdict; never blocks beyond its own timeouts and ctx->stop. */
    enum sd_verdict (*deliver)(struct sd_connector_ctx *ctx, void *state,
                               const struct sd_outbox_item *item, struct sd_delivery_result *res);
    /* Target, optional: called on the writer thread, inside the transaction that stores a
     * change, for each instance of this type in the record's tenant and environment whose id
     * is not the change's origin (no echo). Appends the items the change causes with
     * sd_outbox_add; must not block (no network, no store access but
     * sd_outbox_change_linked: which records of a source share the changed customer's
     * profile). ctx has tenant, env, id, settings and conf only. */
    void (*on_change)(const struct sd_connector_ctx *ctx, const struct sd_change *change,
                      struct sd_outbox_adder *out);
    /* Target, optional: one request for several items of one operation (a vendor's bulk call).
     * For an item of an operation in batch_operations (NULL-terminated), core claims up to
     * batch_max - 1 more due items of the same instance and operation with it (FIFO per
     * subject holds; first sends under a per-hour rate are left to their planned claim) and
     * calls deliver_batch once with all n (items[0] the one claimed first) instead of
     * deliver: it fills res[i] and verdicts[i] (preset to RETRY) for each item, whose outcomes
     * core then records one by one, as it does deliver's. One quota call is taken for the
     * whole request. sd_connector_lease_extend keeps every item's lease; an item whose lease
     * was taken over meanwhile gets no outcome recorded (its new holder decides), so the
     * receiver must take a repeated item as a duplicate (a deterministic key). */
    const char *const *batch_operations;
    size_t batch_max;
    void (*deliver_batch)(struct sd_connector_ctx *ctx, void *state,
                          const struct sd_outbox_item *items, size_t n,
                          struct sd_delivery_result *res, enum sd_verdict *verdicts);
    void (*fini)(void *state);
    /* Optional, sources: a local folder whose changes should trigger a run at once (inotify),
     * besides the schedule, from the filled settings struct (NULL when settings_size is 0).
     * NULL: none. */
    const char *(*watch_dir)(const void *conf);
    /* Optional: more checks of the settings as a whole (pointers "/settings/<key>"), on the
     * filled settings struct (NULL when settings_size is 0); runs once every key passed. */
    void (*check)(const void *conf, struct sd_issues *errors);
    /* Optional: the vendor's limits, terminated by {NULL}; NULL = unlimited. */
    const struct sd_quota *quotas;
    /* The setting keys whose values identify the credential the quotas count against (e.g.
     * {"api_key", NULL}): instances of this type with equal values share one ledger. NULL:
     * every instance is its own credential. Only a hash of the values is stored. */
    const char *const *credential_settings;
    /* Compiled into test builds only (tests/connectors/, STAGEDOOR_TEST_CONNECTORS): usable
     * like any other, but left out of `stagedoor connector types` and the generated docs. */
    bool test_only;

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

    /* ---- segment push ----
     * Optional, targets: the operation (one of `operations`) that a push of a segment to an
     * instance of this type becomes (POST /v1/{client_id}/segments/{segment_id}/push with the
     * instance as target_id; core/outbox.h sd_outbox_push_segment): an item of subject kind
     * "segment" whose deliver reads the members at send time. NULL: the type takes no segment.
     * segment_dry_run: deliver honours a payload {"dry_run": true} (computes and reports its
     * facts, sends nothing), so the push route accepts ?dry_run=true for the type. */
    const char *segment_operation;
    bool segment_dry_run;
    /* inbound_map may also return SD_INBOUND_SKIP: the object is acknowledged and counted as
     * skipped (a history depth: older than the instance wants), neither stored nor quarantined.
     * It may set body["remote_version"] (an integer > 0, e.g. the record's last-change time in
     * ms): core takes it out and gives it to every record of the object, so an older resend
     * never overwrites a newer stored record (store.h, apply_ingest). It may also append entry
     * scans to body["scans"]: [{"invoice_number", "scan_id", "scanned_at"?, "gate"?}], each
     * counted once per scan_id into that sale's attended_quantity (store/inbound.h, scan_put);
     * a scan of a sale not stored (yet) quarantines the object. An object may map to scans
     * alone. */
    /* Optional, with inbound_map: the door's named streams (NULL-terminated; each 1–32 of
     * [a-z0-9_-]). The instance then has one URL per stream, POST
     * /in/{connector_id}/{token}[/{scope}]/{stream}, and no plain door; inbound_map reads the
     * stream in ctx->inbound_stream. */
    const char *const *inbound_streams;
    /* Optional, with inbound_streams: the key of a STRING setting whose value is a path segment
     * every stream URL carries between the token and the stream (an institution code); a
     * request with another segment is refused like a wrong token (404). NULL: no such segment. */
    const char *inbound_scope_setting;

    /* Optional, targets: the actions operators may ask for (struct sd_connector_action),
     * terminated by {NULL}; their operations are among `operations`. NULL: none. */
    const struct sd_connector_action *actions;

    /* Optional, sources: the vendor's people need not have an e-mail address (a box-office
     * buyer known by phone and postal address). Its customers are then validated with
     * SD_VALIDATE_EMAIL_OPTIONAL (model.h) on every path core validates them (commit, write
     * jobs, the inbound door and its replay): a record without "email" (or with null, which
     * clears a stored one) is stored with no e-mail, identified by (source, customer_id) only,
     * linked to a profile of its own. false: the hub's contract, an e-mail is required. */
    bool customers_email_optional;
};
#define SD_INBOUND_SKIP 1

/* The registry (connectors/registry.c). */
extern const struct sd_connector *const sd_connectors[];
const struct sd_connector *sd_connector_find(const char *name);

/* Check settings against the connector's table: returns a new object with defaults filled in,
 * or NULL with every problem in errors (pointer "/settings/<key>"). Every source connector also
 * takes "source": the label its customers are kept under (1–64 of a-z 0-9 _ - .; default: the
 * connector's type), so ids of different systems never collide and a push can use them. */
json_t *sd_connector_check_settings(const struct sd_connector *c, const json_t *settings,
                                    struct sd_issues *errors);
/* The connector's settings struct filled from checked settings (sd_connector_check_settings's
 * result, or stored settings saved through it): a zeroed heap block of c->settings_size bytes
 * (free() it; its strings point into `checked`, which must outlive it). *ret_conf is NULL when
 * settings_size is 0. Returns 0, or -EINVAL when a value is missing or does not fit its type
 * (settings that were not checked against this table) or the table names a member outside the
 * struct; nothing is written to *ret_conf then. */
int sd_connector_settings_new(const struct sd_connector *c, const json_t *checked, void **ret_conf);
/* The same into a caller's zeroed block of c->settings_size bytes. */
int sd_connector_settings_fill(const struct sd_connector *c, const json_t *checked, void *conf);
/* The index of `value` in s->choices, or -1. */
int sd_setting_choice_index(const struct sd_setting *s, const char *value);
/* A setting type's name as the docs and `stagedoor connector types` print it ("string", "int",
 * "bool", "secret", "choice", "url", "path"). */
const char *sd_setting_type_name(enum sd_setting_type type);

/* A connector type described from its table, for `stagedoor connector types --json`: {"name",
 * "kind", "help", "default_schedule"?, "settings": [{"key", "type", "required", "default",
 * "min"/"max" (int), "min_length"/"max_length" (strings), "choices" (choice), "schemes" (url),
 * "help"}]} — a source's implicit "source" setting last. New reference. */
json_t *sd_connector_describe(const struct sd_connector *c);
/* The same as the Markdown block docs/CONNECTORS.md carries (appended to out), between the
 * lines "<!-- BEGIN GENERATED: NAME -->" and "<!-- END GENERATED -->" (both included):
 * scripts/gen-connector-docs rewrites the docs from it, and a test fails when they differ. */
struct sd_buf;
void sd_connector_markdown(const struct sd_connector *c, struct sd_buf *out);
/* The same as plain text for a terminal (`stagedoor connector types`), appended to out. */
void sd_connector_text(const struct sd_connector *c, struct sd_buf *out);

/* Settings for display: secrets replaced by "(set)". New reference. */
json_t *sd_connector_redact_settings(const struct sd_connector *c, const json_t *settings);

/* The validation flags of the instance's records (SD_VALIDATE_EMAIL_OPTIONAL when its type
 * sets customers_email_optional), for a connector that validates on its own thread before
 * sd_connector_job_ingest_batch; sd_connector_email_optional is the same as a bool. */
unsigned sd_connector_validate_flags(const struct sd_connector_ctx *ctx);
bool sd_connector_email_optional(const struct sd_connector_ctx *ctx);

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
/* Inside a job: whether other writes (a webhook request) wait for this job to commit, so a
 * long job can end at its next step and let them in. */
bool sd_connector_job_others_waiting(struct sd_connector_job *job);
/* Count n records as rejected; they count into the state only if the job's work is kept. */
void sd_connector_job_reject(struct sd_connector_job *job, uint64_t n);
int sd_connector_job_cursor(struct sd_connector_job *job, const json_t *cursor);
struct sd_connector_ctx *sd_connector_job_ctx(struct sd_connector_job *job);
/* Inside a job: this instance's own customer record `customer_id` (of ctx->source) as the
 * job's transaction sees it, so that a record can be derived from what is stored (a count
 * increased) and stored in the same transaction. *ret_doc is a new object without "source";
 * -ENOENT when there is none, else the store's negative errno. */
int sd_connector_job_customer(struct sd_connector_job *job, const char *customer_id,
                              json_t **ret_doc);

/* Sleep usec µs (≤ 0: not at all), or less if the hub stops: 0 after the full wait,
 * -ECANCELED as soon as *ctx->stop is set (checked at least every 50 ms, so a stop is seen
 * within about 100 ms; no busy loop), also when it was set before the call. A NULL ctx->stop
 * never cancels. The wait for a polling loop (a report being prepared, a 202 to poll again). */
int sd_connector_wait(struct sd_connector_ctx *ctx, int64_t usec);

/* Count n calls of this run against its type's quotas (as reads: the write reserve stays
 * untouched; inside a deliver as writes, after ctx->prepaid_calls), for the credential of
 * ctx->settings, before making them. Waits (with
 * sd_connector_wait) until every window has room, then takes. 0: taken (or the type declares
 * no quotas); -ECANCELED: the hub stopped while waiting; -E2BIG: n can never fit a window
 * (more than calls - write_reserve); -EINVAL: ctx->connector unset or its quotas malformed;
 * -EIO: the ledger failed. Every wait is logged once, with the time it ends. */
int sd_connector_quota_take(struct sd_connector_ctx *ctx, int64_t n);
/* sd_connector_quota_take that waits at most max_wait_usec: when the windows have room no
 * sooner than that (a day's quota spent), it takes nothing and returns -EAGAIN with the time
 * every window has room in *ret_retry_at_usec (µs since the epoch; may be NULL), so that a
 * run can end with its checkpoints committed instead of holding a worker for hours. */
int sd_connector_quota_take_within(struct sd_connector_ctx *ctx, int64_t n, int64_t max_wait_usec,
                                   int64_t *ret_retry_at_usec);

/* ---- long-lived state across runs ----------------------------------------------------------
 *
 * A protocol that spans runs (a queued command still being polled, a session token, a bulk
 * export in progress) keeps what it needs in the object sd_connector_saved() returns, a member
 * of the state document that belongs to the connector alone (the runtime never reads it, the
 * status never shows it, so a session token may go there; credentials belong in SECRET
 * settings). It is committed with every commit and write job of the run and with the run's
 * final state; sd_connector_state_save() commits it NOW, without records, so that a kill -9
 * right after resumes from it. The next run of the instance finds it as last committed: the
 * document a run starts from is always the last one committed.
 *
 * Obligations: the object is valid until the next commit, write job or save (each may replace
 * ctx->state: call sd_connector_saved() again after one); keep it small (the whole document is
 * rewritten each time: SD_CONNECTOR_STATE_MAX bytes at most) and never put what a page's cursor
 * already says in it. Runs that are not configured in the store (the demo loader) have no
 * state document: sd_connector_saved() returns NULL, sd_connector_state_save() -ENOTSUP. */
#define SD_CONNECTOR_STATE_MAX (256 * 1024)
json_t *sd_connector_saved(struct sd_connector_ctx *ctx);
/* Commit ctx->state as it is now (a state-only writer transaction, durable on return). 0, or
 * -EFBIG (larger than SD_CONNECTOR_STATE_MAX; nothing written), -ENOTSUP (no state document),
 * or the store's negative errno (-EIO, -ENOSPC). */
int sd_connector_state_save(struct sd_connector_ctx *ctx);

/* init, run, fini of a source connector for tenant/env with the given (unchecked) settings. */
int sd_connector_run_source(struct sd_hub *hub, const char *name, int64_t tenant_id,
                            enum sd_env env, const char *id, const json_t *settings,
                            struct sd_issues *errors, uint64_t *ret_records);

#endif
