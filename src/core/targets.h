/* targets.h — push targets (issue #4 §3): the systems segments are pushed to, configured per
 * tenant and environment. One set of rules for the admin API and the CLI: a configuration is
 * checked completely when it is saved (every error with a JSON Pointer into the body) and shown
 * the same way everywhere, with the secrets (app_key, secure_token) replaced by "(set)" — once
 * set they are never returned, printed or logged; only the outbox worker reads them.
 *
 * Settings (the body of POST, and PATCH with any subset):
 *   type              "audience_push" (required on create; cannot change)
 *   environment       "test" | "prod" (required on create; cannot change)
 *   url               https:// URL the segment is POSTed to (http:// only for a loopback
 *                     literal or localhost); parsed by libcurl, no user info, address
 *                     literals checked against the egress policy (http/egress.h)
 *   app_key           sent as X-App-Key (secret)
 *   secure_token      sent as X-Secure-Token (secret)
 *   segments_per_hour rate limit per rolling hour, 1..10000 (default 50)
 *   source            optional: the source (as in customer records' `source`) whose customer
 *                     ids this target understands; members with a record from it are sent
 *                     with that customer_id, others by e-mail only. null on PATCH removes it
 *   timeout_seconds   HTTP timeout per attempt, 1..300 (default 30)
 *   name              optional label, at most 200 characters
 *
 * Thread rules: any thread. */
#ifndef SD_CORE_TARGETS_H
#define SD_CORE_TARGETS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "model/model.h"
#include "store/audience.h"
#include "store/store.h"

#define SD_TARGET_TYPE_PUSH "audience_push"
/* last_error of the waiting items of a target deleted through the targets API or CLI. */
#define SD_TARGET_DELETED "the target was deleted"

/* Targets are connector instances (store/audience.h); this API is the alias for the instances
 * of the audience_push type. */
bool sd_target_is_push(const struct sd_target *t);
/* The tenant's audience_push instances (every environment). */
int sd_target_config_list(struct sd_store_handle *st, int64_t tenant_id, struct sd_target **ret,
                          size_t *ret_n);
/* Delete an audience_push instance (any tenant: callers check); its waiting items become dead
 * with last_error SD_TARGET_DELETED. -ENOENT if id names none. */
int sd_target_config_delete(struct sd_store_handle *st, const char *id);

/* Create for tenant; *ret_id (heap) is the new "tgt_…" id. 0, -EINVAL with errors, or a store
 * error. */
int sd_target_config_create(struct sd_store_handle *st, const struct sd_tenant *tenant,
                            const json_t *body, char **ret_id, struct sd_issues *errors);
/* Update (PATCH): members sent replace the stored ones; secrets not sent (or sent back as
 * "(set)") keep their value — unless the URL's scheme, host or port changes: then both secrets
 * must be sent again (-EINVAL with "required again"), so they never follow the URL to another
 * host. -ENOENT if the id is not this tenant's. */
int sd_target_config_update(struct sd_store_handle *st, const struct sd_tenant *tenant,
                            const char *id, const json_t *body, struct sd_issues *errors);
/* Fetch a target of this tenant: -ENOENT if missing or another tenant's. */
int sd_target_config_get(struct sd_store_handle *st, const struct sd_tenant *tenant, const char *id,
                         struct sd_target *ret);
/* As shown to operators: target_id, client_id, type, environment, the settings with secrets as
 * "(set)", created_at, updated_at. New reference. */
json_t *sd_target_config_view(const struct sd_target *t);

#endif
