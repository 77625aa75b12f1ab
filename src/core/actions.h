/* actions.h — connector actions (struct sd_connector_action in core/connector.h): an
 * operator's request to a target instance ("create this offer in the ticketing system")
 * becomes one outbox item, and the caller may wait a bounded time for its delivery.
 *
 * Idempotency: every action request carries the client's Idempotency-Key, stored as the item's
 * request key (unique per tenant and environment). A request with a key used before for the
 * same instance and action answers the item that request created (nothing new is queued); used
 * for another instance or action, it is refused. The item's subject is its own id, which the
 * connector may send to the remote as its external reference, so a retried delivery can find
 * what an earlier attempt made.
 *
 * Thread rules: any thread (HTTP threads); the store serialises the inserts. */
#ifndef SD_CORE_ACTIONS_H
#define SD_CORE_ACTIONS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/connector.h"
#include "core/hub.h"
#include "store/audience.h"

/* The longest wait sd_action_wait allows (the API's ?wait= is bounded by it). */
#define SD_ACTION_WAIT_MAX_S 60
#define SD_ACTION_WAIT_DEFAULT_S 10

/* The action `name` of connector type c, or NULL. */
const struct sd_connector_action *sd_connector_action_find(const struct sd_connector *c,
                                                           const char *name);

/* Queue action `action` of instance connector_id of (tenant_id, env) with the request body.
 * request_key is required (non-empty). Returns 0 with *ret_id (heap) naming the item
 * (*ret_replayed: an earlier request with this key made it); -ENOENT: no such instance in that
 * tenant and environment (*ret_what "connector") or its type has no such action ("action");
 * -EINVAL: the body was refused (reasons in errors) or no request_key; -EEXIST: the key was
 * used for another instance or action; or a store error. The outbox is woken. */
int sd_action_submit(struct sd_hub *hub, int64_t tenant_id, enum sd_env env,
                     const char *connector_id, const char *action, const json_t *body,
                     const char *request_key, char **ret_id, bool *ret_replayed,
                     const char **ret_what, struct sd_issues *errors);

/* Wait at most wait_usec for item id of (tenant_id, env) to end (delivered, dead or
 * cancelled), looking every 50 ms; *ret is the item as it is then (release it). 0, -ENOENT or a
 * store error. */
int sd_action_wait(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const char *id,
                   int64_t wait_usec, struct sd_outbox_item *ret);

#endif
