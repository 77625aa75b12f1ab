/* alerts.h — alerts a venue's data team expects, per tenant: rules, evaluation where the facts
 * appear, a history, and delivery to the tenant's webhook signed per the Standard Webhooks
 * specification (webhook-id, webhook-timestamp, webhook-signature "v1,<base64 HMAC-SHA256>").
 *
 * Rules (settings {"webhook_url", "secret", "rules": {…}}; a rule left out has its default, a
 * rule set to false is off):
 *   connector_failures_in_a_row  N: the last N runs of a connector failed        default 3
 *   record_count_drop  {"below_percent": X, "previous_runs": K}: a successful run stored fewer
 *       than X % of the median records_in of the K successful runs before it (K ≥ 3)
 *                                                                  default {50, 5}
 *   rejected_share  S (0..1]: a run rejected more than S of the rows it read, or the API
 *       ingest of a tenant and environment refused more than S of the rows sent in a 5-minute
 *       window (judged once the window ends, with at least 20 rows)               default 0.25
 *   dead_letters  true/false: an outbox delivery went dead                        default true
 *   quota_used  F [0.5..1]: a vendor quota window is at least F used              default 0.9
 *   vendor_webhook_non200  true/false: the hub answered a vendor's webhook (an inbound door
 *       with a valid connector id) with a status that is not 2xx                 default true
 * A tenant without settings gets every default and no webhook (alerts are stored and shown).
 *
 * One alert per (tenant, rule, subject) stays open until the fact stops (a successful run, a
 * run at its usual size, a 2xx answer, a quota window below the threshold) or 24 hours pass;
 * meanwhile the same fact opens nothing new.
 *
 * Facts are handed over by the hooks below without waiting: with the alert worker running
 * (sd_alerts_start, while serving) they are queued and judged on its thread, which also sends;
 * without it (the CLI) they are judged at once on the caller's thread and stored unsent until a
 * server runs. The worker never blocks a request or a run: a full queue drops the fact (logged). */
#ifndef SD_CORE_ALERTS_H
#define SD_CORE_ALERTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/hub.h"
#include "model/model.h"
#include "store/alerts.h"
#include "store/store.h"

/* ---- settings ------------------------------------------------------------------------------- */

/* Check a PUT body {"webhook_url": URL|null, "secret"?: "whsec_<base64 of 24..64 bytes>"|null,
 * "rules"?: {…}}. On success *ret_doc is the document to store ({"webhook_url", "rules"} with
 * every rule filled in) and *ret_secret the secret to store: NULL when the body leaves it out
 * (keep the stored one), "" when it is null (remove), else the secret (heap; the caller wipes
 * and frees it). Returns 0 or -EINVAL with errors at JSON pointers of the body. */
int sd_alerts_settings_check(const json_t *body, json_t **ret_doc, char **ret_secret,
                             struct sd_issues *errors);
/* The settings as the API shows them: {"webhook_url", "secret_set", "rules", "defaults"}
 * ("defaults": true when the tenant never set any). doc NULL: none stored. New reference. */
json_t *sd_alerts_settings_view(const char *doc, bool secret_set);

/* ---- facts (hooks) ----------------------------------------------------------------------------
 */

struct sd_run_end;
/* A run of conf ended and was recorded as run_id. */
void sd_alerts_run_end(struct sd_hub *hub, const struct sd_connector_conf *conf, const char *run_id,
                       const struct sd_run_end *end);
/* An outbox delivery went dead: its target, and why (no record values). */
void sd_alerts_dead_letter(struct sd_hub *hub, int64_t tenant_id, enum sd_env env,
                           const char *target_id, const char *delivery_id, const char *why);
/* A quota take of connector instance connector_id (tenant, env) left window `window` at used
 * of limit calls. */
void sd_alerts_quota(struct sd_hub *hub, int64_t tenant_id, enum sd_env env,
                     const char *connector_id, const char *window, int64_t used, int64_t limit);
/* The same with the fullest window of this thread's last quota take (sd_quota_last_fill). */
void sd_alerts_quota_taken(struct sd_hub *hub, int64_t tenant_id, enum sd_env env,
                           const char *connector_id);
/* An API ingest request of tenant_id in env was answered status with rows records in its body
 * (202: all stored; 400: all refused — a request is applied whole or not at all). Counted in
 * the worker's 5-minute window of (tenant, env); nothing without a worker. */
void sd_alerts_ingest(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, int status,
                      int64_t rows);
/* The inbound door of connector_id answered status. */
void sd_alerts_inbound_answer(struct sd_hub *hub, const char *connector_id, int status);

/* ---- the worker -------------------------------------------------------------------------------
 */

/* Start the worker of hub (hub->alerts): it judges queued facts and sends due alerts, retrying
 * with back-off (10 s, 1 min, 5 min, 30 min, then hourly; STAGEDOOR_ALERT_TIME_SCALE scales
 * the waits for tests) and giving up once an alert is a day old. 0 or -errno. */
int sd_alerts_start(struct sd_hub *hub);
/* Stop and join it (the attempt in flight ends within its 10 s timeout). NULL-safe. */
void sd_alerts_stop(struct sd_hub *hub);

/* Pure parts, for tests. The wait after `failed` failed attempts at time scale `scale`. */
int64_t sd_alerts_backoff_usec(int64_t failed, double scale);
/* After a failed attempt (attempts counted with it) at now_usec of an alert created at
 * created_usec: SD_ALERT_PENDING with *ret_next_usec the next attempt, or SD_ALERT_FAILED
 * (given up: the alert is a day old, or the next attempt would come after that day). */
enum sd_alert_delivery sd_alerts_after_failure(int64_t created_usec, int64_t now_usec,
                                               int64_t attempts, double scale,
                                               int64_t *ret_next_usec);
/* The Standard Webhooks signature "v1,<base64>" of (id, timestamp, body) with secret
 * "whsec_<base64>" into out (at least 64 bytes). 0, or -EINVAL for a malformed secret. */
int sd_alerts_sign(const char *secret, const char *id, int64_t timestamp, const char *body,
                   size_t body_len, char *out, size_t out_size);

#endif
