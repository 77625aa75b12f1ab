/* connector_config.h — configuring connector instances at run time: one set of rules for the
 * admin API and the CLI. A configuration is checked completely when it is saved (type,
 * environment, schedule, every setting against the connector's table, the mapping against the
 * model), so a typo is a 400 now and not a failed run at 3 a.m.; and it is shown the same way
 * everywhere, with secret settings redacted and the run status merged in. */
#ifndef SD_CORE_CONNECTOR_CONFIG_H
#define SD_CORE_CONNECTOR_CONFIG_H

#include <jansson.h>

#include "core/hub.h"
#include "model/model.h"
#include "store/store.h"

/* Create: body {"type", "environment", "schedule"?, "settings"?, "mapping"?} for tenant
 * (tenant_id/client_id). Stores it and writes the new id into *ret_id (heap). Returns 0,
 * -EINVAL with errors (pointers into the body), or a store error. */
int sd_connector_config_create(struct sd_store_handle *st, const struct sd_tenant *tenant,
                               const json_t *body, char **ret_id, struct sd_issues *errors);
/* Update: body {"schedule"?, "settings"?, "mapping"?}; settings are merged member by member
 * (null removes one, so its default applies again; a secret not sent, or sent back as "(set)",
 * keeps its value — unless the update changes the scheme, host or port of a URL setting: then
 * the secrets not sent again are dropped, never sent to the new host), the mapping is replaced. -ENOENT if the id is not this tenant's. */
int sd_connector_config_update(struct sd_store_handle *st, const struct sd_tenant *tenant,
                               const char *id, const json_t *body, struct sd_issues *errors);
/* Fetch an instance of this tenant: -ENOENT if missing or another tenant's. */
int sd_connector_config_get(struct sd_store_handle *st, const struct sd_tenant *tenant,
                            const char *id, struct sd_connector_conf *ret);
/* The instance as shown to operators: configuration (secrets redacted), and "status": state
 * (never_run, running, ok, failed), last_run, last_success, last_error, records_in,
 * records_rejected, cursor, progress, next_run, and for a type that declares quotas "quotas"
 * (sd_quota_status_instance; null if the ledger cannot be read). hub may be NULL (no live
 * facts: the CLI).
 * New reference. */
json_t *sd_connector_config_view(struct sd_hub *hub, struct sd_store_handle *st,
                                 const struct sd_connector_conf *c);
/* RFC 3339 UTC text of a µs time ("2026-11-25T12:00:00Z"); JSON null for 0. */
json_t *sd_json_time(int64_t usec);

#endif
