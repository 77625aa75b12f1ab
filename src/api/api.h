/* api.h — the HTTP API's handlers, one file per resource; the route table in routes.c is the
 * only place that lists them. */
#ifndef SD_API_H
#define SD_API_H

#include "server/request.h"
#include "server/router.h"

/* The route table (routes.c), handed to the server by `serve` (sd_server_config.routes): the
 * server never reaches up for it. sd_route_names[i] is routes[i]'s name, for the metrics. */
extern const struct sd_route sd_routes[];
extern const size_t sd_routes_count;
extern const char *const sd_route_names[];

int sd_api_healthz(struct sd_req *req);
int sd_api_metrics(struct sd_req *req);
/* GET /openapi.yaml: the embedded docs/openapi.yaml (api/docs.c). */
int sd_api_openapi(struct sd_req *req);
int sd_api_ingest(struct sd_req *req);
int sd_api_sale_put(struct sd_req *req);
int sd_api_events_list(struct sd_req *req);
int sd_api_customers_list(struct sd_req *req);
int sd_api_sales_list(struct sd_req *req);
int sd_api_event_get(struct sd_req *req);
int sd_api_customer_get(struct sd_req *req);
int sd_api_sale_get(struct sd_req *req);
int sd_api_admin_connector_create(struct sd_req *req);
int sd_api_admin_connectors_list(struct sd_req *req);
int sd_api_admin_connector_get(struct sd_req *req);
int sd_api_admin_connector_update(struct sd_req *req);
int sd_api_admin_connector_delete(struct sd_req *req);
int sd_api_admin_connector_run(struct sd_req *req);
int sd_api_profiles_find(struct sd_req *req);
int sd_api_profile_get(struct sd_req *req);
int sd_api_profile_split(struct sd_req *req);
int sd_api_customer_erase(struct sd_req *req);
/* DELETE of an event or a sale: the record leaves, its tombstone follows in the change feed. */
int sd_api_event_delete(struct sd_req *req);
int sd_api_sale_delete(struct sd_req *req);
int sd_api_admin_tenant_get(struct sd_req *req);
int sd_api_admin_tenant_update(struct sd_req *req);
int sd_api_admin_suppressions_add(struct sd_req *req);
/* API-PROFILES */
int sd_api_segment_create(struct sd_req *req);
int sd_api_segments_list(struct sd_req *req);
int sd_api_segment_get(struct sd_req *req);
int sd_api_segment_update(struct sd_req *req);
int sd_api_segment_delete(struct sd_req *req);
int sd_api_segment_members(struct sd_req *req);
/* API-SEGMENTS */
int sd_api_admin_target_create(struct sd_req *req);
int sd_api_admin_targets_list(struct sd_req *req);
int sd_api_admin_target_get(struct sd_req *req);
int sd_api_admin_target_update(struct sd_req *req);
int sd_api_admin_target_delete(struct sd_req *req);
int sd_api_segment_push(struct sd_req *req);
int sd_api_delivery_get(struct sd_req *req);
int sd_api_admin_deliveries_list(struct sd_req *req);
int sd_api_admin_delivery_get(struct sd_req *req);
int sd_api_admin_delivery_retry(struct sd_req *req);
int sd_api_deliveries_list(struct sd_req *req);
int sd_api_admin_delivery_cancel(struct sd_req *req);
int sd_api_admin_delivery_send_now(struct sd_req *req);
/* API-OUTBOX */
/* Tenants and keys over HTTP (api/tenants_http.c). */
int sd_api_admin_tenants_list(struct sd_req *req);
int sd_api_admin_tenant_create(struct sd_req *req);
int sd_api_admin_keys_list(struct sd_req *req);
int sd_api_admin_key_create(struct sd_req *req);
int sd_api_admin_key_revoke(struct sd_req *req);
/* Data quality and answers by status per hour (api/observe.c). */
int sd_api_admin_quality(struct sd_req *req);
int sd_api_quality(struct sd_req *req);
int sd_api_admin_quotas(struct sd_req *req);
int sd_api_segment_history(struct sd_req *req);
/* API-OBSERVE */
/* Raw-first vendor webhooks (api/inbound.c). */
int sd_api_inbound_receive(struct sd_req *req);
int sd_api_admin_inbound_token(struct sd_req *req);
int sd_api_admin_inbound_replay(struct sd_req *req);
int sd_api_admin_quarantine_list(struct sd_req *req);
/* Connector actions (api/actions.c): POST /v1/{client_id}/connectors/{connector_id}/{action}. */
int sd_api_connector_action(struct sd_req *req);
/* The dashboard's files (api/ui.c) and the tenant's record counts (api/summary.c). */
int sd_api_ui_index(struct sd_req *req);
int sd_api_ui_file(struct sd_req *req);
int sd_api_summary(struct sd_req *req);
int sd_api_admin_summary(struct sd_req *req);
/* A connector's run history (api/runs.c). */
int sd_api_admin_connector_runs(struct sd_req *req);
int sd_api_connector_runs(struct sd_req *req);
/* A tenant's alert settings and history (api/alerts.c). */
int sd_api_admin_alerts_get(struct sd_req *req);
int sd_api_admin_alerts_put(struct sd_req *req);
int sd_api_admin_alerts_history(struct sd_req *req);
/* The door's address as shown once after creation or rotation: {"path", "url", "token"}. */
json_t *sd_api_inbound_door_json(struct sd_req *req, const char *connector_id, const char *token);
/* After a connector was created: if its type has a door, make the door's token and add
 * "inbound" (sd_api_inbound_door_json) to the answer `o`. */
void sd_api_inbound_door_open(struct sd_req *req, const char *connector_id, json_t *o);
struct sd_inbound_quarantined;
json_t *sd_api_inbound_quarantined_json(const struct sd_inbound_quarantined *q);

/* Parse the request body as JSON (duplicate member names rejected). On failure answers 400
 * malformed_json with line and column and returns NULL. */
json_t *sd_api_parse_body(struct sd_req *req);
/* The 400 validation_failed body for these errors (new reference). */
json_t *sd_api_validation_body(const struct sd_issues *errors);
/* 400 validation_failed with the given errors. */
void sd_api_reply_validation(struct sd_req *req, const struct sd_issues *errors);
/* The tenant named by the path's first parameter (admin routes), or false after answering 404
 * (or 500). */
bool sd_api_path_tenant(struct sd_req *req, struct sd_tenant *ret);
/* The request's Idempotency-Key header into *ret (NULL when absent): true, or false after
 * answering 400 invalid_idempotency_key (1 to 255 printable ASCII characters). */
bool sd_api_idempotency_key(struct sd_req *req, const char **ret);
/* 500 after a store failure; the answer carries only the request id. -ENOSPC (out of space,
 * nothing stored) is a 503 storage_full with Retry-After instead, -ETIMEDOUT (the write lock
 * stayed taken for the store's bound, nothing applied) a 503 store_busy with Retry-After. */
void sd_api_reply_store_error(struct sd_req *req, int err);
/* Retry-After (seconds) of a 503 storage_full answer and of /healthz while degraded. */
#define SD_API_STORAGE_RETRY_S 30
/* Retry-After (seconds) of a 503 store_busy answer: a write job ends within a second. */
#define SD_API_BUSY_RETRY_S 1

#endif
