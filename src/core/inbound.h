/* inbound.h — raw-first vendor webhooks: a source connector instance's inbound door.
 *
 * A vendor (S-360 first) POSTs payloads to /in/{connector_id}/{token}. The rules:
 *  - The door admits a request only with the right token (its SHA-256 is stored, compared in
 *    constant time), the configured credential (HTTP Basic, a static header or a Bearer token)
 *    and a peer address inside the allowlist; anything else is refused the same way (404),
 *    never saying which check failed, and nothing is stored.
 *  - Raw first: the body as received (bytes, the headers that matter, time, connector, content
 *    hash) is committed by the writer in the same transaction that applies every object that
 *    could be mapped and validated; an object that could not is quarantined with its reason
 *    and index. 200 is answered only after that commit. The same body twice (same content hash
 *    for the connector) is stored and applied once.
 *  - Replay re-runs quarantined objects (or every payload of a time range) through the current
 *    mapping, never applies an object that names an erased person's address, and never doubles
 *    a record (records are upserted by their ids).
 *  - Retention: a payload is deleted raw_retention_days after receipt (the hourly purge); an
 *    erasure empties every payload that mentions the person at once.
 *
 * Thread rules: admit/prepare/views on any thread; *_run functions on the writer thread only;
 * sd_inbound_replay on any thread but the writer's (it submits writer jobs and waits). */
#ifndef SD_CORE_INBOUND_H
#define SD_CORE_INBOUND_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/base.h"
#include "core/connector.h"
#include "core/hub.h"
#include "store/store.h"

/* The door's settings, as the connector's settings struct holds them (a member named `inbound`
 * of this type); every connector with inbound_map lists SD_INBOUND_SETTINGS(its struct type) in
 * its settings table. */
enum sd_inbound_auth { SD_INBOUND_AUTH_NONE, SD_INBOUND_AUTH_BASIC, SD_INBOUND_AUTH_HEADER,
                       SD_INBOUND_AUTH_BEARER };
struct sd_inbound_conf {
    int auth; /* enum sd_inbound_auth */
    const char *auth_user, *auth_header, *auth_secret, *allow_from;
    int64_t max_objects, max_body_kib, raw_retention_days, dedupe_hours;
};
#define SD_INBOUND_AT(type, member) offsetof(type, inbound.member)
/* clang-format off */
#define SD_INBOUND_SETTINGS(type)                                                                  \
    {"auth", SD_SETTING_CHOICE, "\"none\"", 0, 0,                                                  \
     "credential the vendor must send besides the URL token: none, basic (HTTP Basic "             \
     "auth_user/auth_secret), header (header auth_header = auth_secret), bearer "                  \
     "(Authorization: Bearer auth_secret)",                                                        \
     SD_CHOICES("none", "basic", "header", "bearer"), SD_INBOUND_AT(type, auth)},                  \
        {"auth_user", SD_SETTING_STRING, "\"\"", 0, 128, "HTTP Basic user name (auth=basic)",      \
         NULL, SD_INBOUND_AT(type, auth_user)},                                                    \
        {"auth_header", SD_SETTING_STRING, "\"\"", 0, 64,                                          \
         "header name for auth=header (e.g. X-Api-Key)", NULL, SD_INBOUND_AT(type, auth_header)},  \
        {"auth_secret", SD_SETTING_SECRET, "\"\"", 0, 256,                                         \
         "password (basic), header value (header) or token (bearer)", NULL,                       \
         SD_INBOUND_AT(type, auth_secret)},                                                        \
        {"allow_from", SD_SETTING_STRING, "\"\"", 0, 4096,                                         \
         "peer addresses admitted: comma-separated IPv4/IPv6 addresses or CIDR ranges "            \
         "(\"203.0.113.0/24, 2001:db8::/32\"); empty: any",                                        \
         NULL, SD_INBOUND_AT(type, allow_from)},                                                   \
        {"max_objects", SD_SETTING_INT, "500", 1, 10000,                                           \
         "objects one payload may hold; more is refused with 413", NULL,                          \
         SD_INBOUND_AT(type, max_objects)},                                                        \
        {"max_body_kib", SD_SETTING_INT, "4096", 1, 8192,                                          \
         "bytes one payload may hold, in KiB; more is refused with 413", NULL,                    \
         SD_INBOUND_AT(type, max_body_kib)},                                                       \
        {"raw_retention_days", SD_SETTING_INT, "30", 1, 3650,                                      \
         "days a payload is kept as received (for replay) before the purge deletes it", NULL,     \
         SD_INBOUND_AT(type, raw_retention_days)},                                                 \
        {"dedupe_hours", SD_SETTING_INT, "24", 1, 8760,                                            \
         "a payload identical to one received this many hours before is a resend: answered "       \
         "200 and applied once; an older twin is applied again", NULL,                             \
         SD_INBOUND_AT(type, dedupe_hours)}
/* clang-format on */

/* Whole-settings checks of the door settings (credential complete, allowlist parses); for a
 * connector's check hook, on its filled settings struct. Pointers "/settings/<key>". */
void sd_inbound_check_conf(const struct sd_inbound_conf *conf, struct sd_issues *errors);

/* A new door token for the instance (replacing any old one: the old URL stops working at
 * once). *ret_token is the token (heap), shown once; only its SHA-256 is stored. -ENOENT if
 * the instance does not exist, -EINVAL if its type has no door. */
int sd_inbound_token_rotate(struct sd_store_handle *st, const char *connector_id, char **ret_token);
/* Whether instances of this connector type have a door (SOURCE with inbound_map). */
bool sd_inbound_type_has_door(const char *type);
/* The door's path for a token: "/in/<connector_id>/<token>" (heap). */
char *sd_inbound_path(const char *connector_id, const char *token);
/* A type with inbound_streams: its stream paths for the instance, {"<stream>":
 * "/in/<connector_id>/<token>[/<scope>]/<stream>", …} (scope: the value of the type's
 * inbound_scope_setting in settings_json, the stored settings); token NULL writes "{token}".
 * NULL for a type without streams. New reference. */
json_t *sd_inbound_stream_paths(const char *type, const char *settings_json,
                                const char *connector_id, const char *token);

/* What the door needs of a request. header(arg, name) returns a request header or NULL. */
struct sd_inbound_request {
    const char *connector_id;
    const char *token;
    const char *(*header)(void *arg, const char *name);
    void *header_arg;
    const struct sockaddr *peer; /* NULL: unknown (refused when an allowlist is set) */
    /* A streamed door (/in/{id}/{token}[/{scope}]/{stream}): the stream and the scope segment
     * (NULL when the path has none). A type with inbound_streams admits only a known stream
     * with the right scope; a type without admits only stream == NULL. */
    const char *scope;
    const char *stream;
};
/* Admit a request: 0 with the instance's configuration in *ret_conf, or -ENOENT whatever the
 * reason (no such instance, no door, wrong token, credential or address), or a store error
 * (-EIO). *ret_known says whether the connector exists with a door (for counting refusals by
 * connector without letting a stranger invent label values). */
int sd_inbound_admit(struct sd_store_handle *st, const struct sd_inbound_request *rq,
                     struct sd_connector_conf *ret_conf, bool *ret_known);

/* A received payload, parsed, split and mapped, ready for the writer. */
struct sd_inbound_payload;
struct sd_inbound_outcome {
    int64_t raw_id;
    bool duplicate; /* the same body was stored before: nothing changed */
    size_t objects, applied, quarantined, skipped_erased;
    size_t skipped; /* objects the mapping acknowledged without storing (SD_INBOUND_SKIP) */
};
/* Prepare a payload for conf's instance: -E2BIG with *ret_why (static text) when it breaks
 * the door's limits (bytes, objects: nothing is stored, answer 413); otherwise 0. A body that
 * is not JSON, or not an object or an array, is stored and quarantined as a whole (index -1).
 * headers: the kept request headers as a JSON object (reference stolen); its member "stream"
 * (set by the door, not a request header) is the stream the payload came in on, kept with the
 * payload so that replay maps it the same way. */
int sd_inbound_prepare(const struct sd_connector_conf *conf, const char *body, size_t len,
                       json_t *headers, int64_t now_usec, struct sd_inbound_payload **ret,
                       const char **ret_why);
/* Writer: store the payload raw, apply what maps, quarantine the rest (see above). */
int sd_inbound_store_run(struct sd_store_handle *st, struct sd_inbound_payload *p);
const struct sd_inbound_outcome *sd_inbound_payload_outcome(const struct sd_inbound_payload *p);
/* What prepare made of the body, for tests: the number of objects (1 for a body quarantined as
 * a whole), and of object i whether it mapped (NULL) or why it will be quarantined. */
size_t sd_inbound_payload_count(const struct sd_inbound_payload *p);
const char *sd_inbound_payload_reason(const struct sd_inbound_payload *p, size_t i);
void sd_inbound_payload_free(struct sd_inbound_payload *p);
/* The field errors of the objects a received payload quarantines (pointers into each object's
 * mapped records, "/customers/0/email"), for the data-quality counts; empty for a replay. */
const struct sd_issues *sd_inbound_payload_rejected(const struct sd_inbound_payload *p);

/* Replay: re-run through conf's current mapping the connector's payloads with quarantined
 * objects (all == false: only those objects), or every payload received in [from, to) (all ==
 * true: every object). One writer job per payload. Sums into *ret (raw_id unused). */
struct sd_inbound_replay {
    size_t payloads, objects, applied, quarantined, skipped_erased;
};
int sd_inbound_replay(struct sd_hub *hub, const struct sd_connector_conf *conf, bool all,
                      int64_t from_usec, int64_t to_usec, struct sd_inbound_replay *ret);
/* sd_inbound_replay of the quarantine of instance connector_id (for the connector's own run,
 * which sees no store): -ENOENT if the instance is gone, or sd_inbound_replay's result. */
int sd_inbound_replay_quarantine(struct sd_hub *hub, const char *connector_id,
                                 struct sd_inbound_replay *ret);
/* A door connector's run (struct sd_connector.run, usable as it is): replay the instance's
 * quarantine through its current mapping (an object that arrived before what it needs applies
 * once that is stored), counting applied objects as records_in and those still quarantined as
 * records_rejected. Fails the run (sd_connector_fail) with -EINVAL when ctx has no hub or id
 * (an instance runs only when configured), or with the replay's error. state is unused. */
int sd_inbound_replay_run(struct sd_connector_ctx *ctx, void *state);

/* Writer: before an erasure of (source, customer_id), empty every payload that mentions the
 * person (their customer ids and addresses). Returns 0 or a store error. */
int sd_inbound_forget_person(struct sd_store_handle *st, int64_t tenant_id, enum sd_env env,
                             const char *source, const char *customer_id);
/* Writer: delete payloads past their retention (at most 10,000 per call). */
int sd_inbound_purge_expired(struct sd_store_handle *st, int64_t now_usec);

/* The door's part of a connector's status: {"payloads", "quarantined"} (NULL on failure). */
json_t *sd_inbound_status(struct sd_store_handle *st, const char *connector_id);

/* Counters for /metrics, by connector: payloads stored, objects applied and quarantined, and
 * answers other than 200 (each one a potential loss at the vendor, also logged). */
void sd_inbound_count(const char *connector_id, const struct sd_inbound_outcome *o);
void sd_inbound_count_non200(const char *connector_id, int status);
/* The same by connector and stream (stream NULL or "": the plain door, no stream label). */
void sd_inbound_count_stream(const char *connector_id, const char *stream,
                             const struct sd_inbound_outcome *o);
void sd_inbound_count_non200_stream(const char *connector_id, const char *stream, int status);
void sd_inbound_metrics_render(struct sd_buf *out);

#endif
