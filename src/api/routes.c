/* routes.c — the one route table: every endpoint of the hub, its method, what the server checks
 * before the handler (flags) and the name used in metrics and logs. Adding an endpoint is one
 * line here and a handler in its resource file. */
#include "api/api.h"
#include "core/metrics.h"
#include "server/router.h"

#define TENANT_WRITE (SD_ROUTE_TENANT | SD_ROUTE_JSON_BODY | SD_ROUTE_RATE_LIMITED)
#define TENANT_READ (SD_ROUTE_TENANT | SD_ROUTE_RATE_LIMITED)
#define ADMIN SD_ROUTE_ADMIN
#define ADMIN_WRITE (SD_ROUTE_ADMIN | SD_ROUTE_JSON_BODY)
#define CONNECTORS "/admin/v1/tenants/{client_id}/connectors"

const struct sd_route sd_routes[] = {
    {"GET", "/healthz", "healthz", 0, sd_api_healthz},
    {"GET", "/metrics", "metrics", 0, sd_api_metrics},
    {"POST", "/v1/{client_id}/ingest", "ingest", TENANT_WRITE, sd_api_ingest},
    {"GET", "/v1/{client_id}/events", "events_list", TENANT_READ, sd_api_events_list},
    {"GET", "/v1/{client_id}/events/{event_id}", "event_get", TENANT_READ, sd_api_event_get},
    {"GET", "/v1/{client_id}/customers", "customers_list", TENANT_READ, sd_api_customers_list},
    {"GET", "/v1/{client_id}/customers/{customer_id}", "customer_get", TENANT_READ,
     sd_api_customer_get},
    {"GET", "/v1/{client_id}/sales", "sales_list", TENANT_READ, sd_api_sales_list},
    {"GET", "/v1/{client_id}/sales/{invoice_number}", "sale_get", TENANT_READ, sd_api_sale_get},
    {"PUT", "/v1/{client_id}/sales/{invoice_number}", "sale_put", TENANT_WRITE, sd_api_sale_put},
    {"POST", CONNECTORS, "connector_create", ADMIN_WRITE, sd_api_admin_connector_create},
    {"GET", CONNECTORS, "connectors_list", ADMIN, sd_api_admin_connectors_list},
    {"GET", CONNECTORS "/{connector_id}", "connector_get", ADMIN, sd_api_admin_connector_get},
    {"PATCH", CONNECTORS "/{connector_id}", "connector_update", ADMIN_WRITE,
     sd_api_admin_connector_update},
    {"DELETE", CONNECTORS "/{connector_id}", "connector_delete", ADMIN,
     sd_api_admin_connector_delete},
    {"POST", CONNECTORS "/{connector_id}/run", "connector_run", ADMIN, sd_api_admin_connector_run},
    {"GET", "/v1/{client_id}/profiles", "profiles_find", TENANT_READ, sd_api_profiles_find},
    {"GET", "/v1/{client_id}/profiles/{profile_id}", "profile_get", TENANT_READ,
     sd_api_profile_get},
    {"POST", "/v1/{client_id}/profiles/{profile_id}/split", "profile_split", TENANT_WRITE,
     sd_api_profile_split},
    {"DELETE", "/v1/{client_id}/customers/{customer_id}", "customer_erase", TENANT_READ,
     sd_api_customer_erase},
    {"GET", "/admin/v1/tenants/{client_id}", "tenant_get", ADMIN, sd_api_admin_tenant_get},
    {"PATCH", "/admin/v1/tenants/{client_id}", "tenant_update", ADMIN_WRITE,
     sd_api_admin_tenant_update},
    {"POST", "/admin/v1/tenants/{client_id}/suppressions", "suppressions_add", ADMIN_WRITE,
     sd_api_admin_suppressions_add},
    /* ROUTES-PROFILES */
    {"POST", "/v1/{client_id}/segments", "segment_create", TENANT_WRITE, sd_api_segment_create},
    {"GET", "/v1/{client_id}/segments", "segments_list", TENANT_READ, sd_api_segments_list},
    {"GET", "/v1/{client_id}/segments/{segment_id}", "segment_get", TENANT_READ,
     sd_api_segment_get},
    {"PUT", "/v1/{client_id}/segments/{segment_id}", "segment_update", TENANT_WRITE,
     sd_api_segment_update},
    {"DELETE", "/v1/{client_id}/segments/{segment_id}", "segment_delete", TENANT_READ,
     sd_api_segment_delete},
    {"GET", "/v1/{client_id}/segments/{segment_id}/members", "segment_members", TENANT_READ,
     sd_api_segment_members},
    /* ROUTES-SEGMENTS */
    {"POST", "/admin/v1/tenants/{client_id}/targets", "target_create", ADMIN_WRITE,
     sd_api_admin_target_create},
    {"GET", "/admin/v1/tenants/{client_id}/targets", "targets_list", ADMIN,
     sd_api_admin_targets_list},
    {"GET", "/admin/v1/tenants/{client_id}/targets/{target_id}", "target_get", ADMIN,
     sd_api_admin_target_get},
    {"PATCH", "/admin/v1/tenants/{client_id}/targets/{target_id}", "target_update", ADMIN_WRITE,
     sd_api_admin_target_update},
    {"DELETE", "/admin/v1/tenants/{client_id}/targets/{target_id}", "target_delete", ADMIN,
     sd_api_admin_target_delete},
    {"POST", "/v1/{client_id}/segments/{segment_id}/push", "segment_push", TENANT_WRITE,
     sd_api_segment_push},
    {"GET", "/v1/{client_id}/deliveries", "tenant_deliveries_list", TENANT_READ,
     sd_api_deliveries_list},
    {"GET", "/v1/{client_id}/deliveries/{delivery_id}", "delivery_get", TENANT_READ,
     sd_api_delivery_get},
    {"GET", "/admin/v1/deliveries", "deliveries_list", ADMIN, sd_api_admin_deliveries_list},
    {"GET", "/admin/v1/deliveries/{delivery_id}", "admin_delivery_get", ADMIN,
     sd_api_admin_delivery_get},
    {"POST", "/admin/v1/deliveries/{delivery_id}/retry", "delivery_retry", ADMIN,
     sd_api_admin_delivery_retry},
    {"POST", "/admin/v1/deliveries/{delivery_id}/cancel", "delivery_cancel", ADMIN,
     sd_api_admin_delivery_cancel},
    {"POST", "/admin/v1/deliveries/{delivery_id}/send-now", "delivery_send_now", ADMIN,
     sd_api_admin_delivery_send_now},
    /* ROUTES-OUTBOX */
    {"DELETE", "/v1/{client_id}/events/{event_id}", "event_delete", TENANT_READ,
     sd_api_event_delete},
    {"DELETE", "/v1/{client_id}/sales/{invoice_number}", "sale_delete", TENANT_READ,
     sd_api_sale_delete},
    /* ROUTES-TOMBSTONES */
    {"POST", "/in/{connector_id}/{token}", "inbound", SD_ROUTE_JSON_BODY, sd_api_inbound_receive},
    {"POST", CONNECTORS "/{connector_id}/inbound-token", "inbound_token", ADMIN,
     sd_api_admin_inbound_token},
    {"POST", CONNECTORS "/{connector_id}/replay", "inbound_replay", ADMIN,
     sd_api_admin_inbound_replay},
    {"GET", "/admin/v1/tenants/{client_id}/quarantine", "quarantine_list", ADMIN,
     sd_api_admin_quarantine_list},
    /* ROUTES-INBOUND */
    {"POST", "/in/{connector_id}/{token}/{stream}", "inbound_stream", SD_ROUTE_JSON_BODY,
     sd_api_inbound_receive},
    {"POST", "/in/{connector_id}/{token}/{scope}/{stream}", "inbound_scoped", SD_ROUTE_JSON_BODY,
     sd_api_inbound_receive},
    /* ROUTES-INBOUND-STREAMS */
    {"POST", "/v1/{client_id}/connectors/{connector_id}/{action}", "connector_action",
     TENANT_WRITE, sd_api_connector_action},
    /* ROUTES-ACTIONS */
    {"GET", "/openapi.yaml", "openapi", 0, sd_api_openapi},
    /* ROUTES-OPENAPI */
    {"GET", "/admin/v1/tenants", "tenants_list", ADMIN, sd_api_admin_tenants_list},
    {"POST", "/admin/v1/tenants", "tenant_create", ADMIN_WRITE, sd_api_admin_tenant_create},
    {"GET", "/admin/v1/tenants/{client_id}/keys", "keys_list", ADMIN, sd_api_admin_keys_list},
    {"POST", "/admin/v1/tenants/{client_id}/keys", "key_create", ADMIN_WRITE,
     sd_api_admin_key_create},
    {"DELETE", "/admin/v1/tenants/{client_id}/keys/{key_id}", "key_revoke", ADMIN,
     sd_api_admin_key_revoke},
    {"GET", "/admin/v1/tenants/{client_id}/quality", "admin_quality", ADMIN,
     sd_api_admin_quality},
    {"GET", "/v1/{client_id}/quality", "quality", TENANT_READ, sd_api_quality},
    {"GET", "/admin/v1/tenants/{client_id}/quotas", "admin_quotas", ADMIN, sd_api_admin_quotas},
    {"GET", "/v1/{client_id}/segments/{segment_id}/history", "segment_history", TENANT_READ,
     sd_api_segment_history},
    /* ROUTES-OBSERVE */
    {"GET", "/ui", "ui", 0, sd_api_ui_index},
    {"GET", "/ui/{file}", "ui_file", 0, sd_api_ui_file},
    {"GET", "/v1/{client_id}/summary", "summary", TENANT_READ, sd_api_summary},
    {"GET", "/admin/v1/tenants/{client_id}/summary", "admin_summary", ADMIN, sd_api_admin_summary},
    /* ROUTES-UI */
    {"GET", CONNECTORS "/{connector_id}/runs", "connector_runs", ADMIN, sd_api_admin_connector_runs},
    {"GET", "/v1/{client_id}/connectors/{connector_id}/runs", "tenant_connector_runs", TENANT_READ,
     sd_api_connector_runs},
    /* ROUTES-RUNS */
    {"GET", "/admin/v1/tenants/{client_id}/alerts", "alerts_get", ADMIN, sd_api_admin_alerts_get},
    {"PUT", "/admin/v1/tenants/{client_id}/alerts", "alerts_put", ADMIN_WRITE,
     sd_api_admin_alerts_put},
    {"GET", "/admin/v1/tenants/{client_id}/alerts/history", "alerts_history", ADMIN,
     sd_api_admin_alerts_history},
    /* ROUTES-ALERTS */
};
const size_t sd_routes_count = sizeof(sd_routes) / sizeof(sd_routes[0]);

const char *const sd_route_names[] = {
    "healthz",        "metrics",      "ingest",     "events_list", "event_get",
    "customers_list", "customer_get", "sales_list", "sale_get",    "sale_put",
    "connector_create", "connectors_list", "connector_get", "connector_update",
    "connector_delete", "connector_run",
    "profiles_find", "profile_get", "profile_split", "customer_erase", "tenant_get",
    "tenant_update", "suppressions_add",
    /* NAMES-PROFILES */
    "segment_create", "segments_list", "segment_get", "segment_update", "segment_delete",
    "segment_members",
    /* NAMES-SEGMENTS */
    "target_create", "targets_list", "target_get", "target_update", "target_delete",
    "segment_push", "tenant_deliveries_list", "delivery_get", "deliveries_list",
    "admin_delivery_get", "delivery_retry", "delivery_cancel", "delivery_send_now",
    /* NAMES-OUTBOX */
    "event_delete", "sale_delete",
    /* NAMES-TOMBSTONES */
    "inbound", "inbound_token", "inbound_replay", "quarantine_list",
    /* NAMES-INBOUND */
    "inbound_stream", "inbound_scoped",
    /* NAMES-INBOUND-STREAMS */
    "connector_action",
    /* NAMES-ACTIONS */
    "openapi",
    /* NAMES-OPENAPI */
    "tenants_list", "tenant_create", "keys_list", "key_create", "key_revoke",
    "admin_quality", "quality", "admin_quotas", "segment_history",
    /* NAMES-OBSERVE */
    "ui", "ui_file", "summary", "admin_summary",
    /* NAMES-UI */
    "connector_runs", "tenant_connector_runs",
    /* NAMES-RUNS */
    "alerts_get", "alerts_put", "alerts_history",
    /* NAMES-ALERTS */
};
_Static_assert(sizeof(sd_routes) / sizeof(sd_routes[0]) <= SD_METRICS_MAX_ROUTES,
               "every route has its own metrics row");
_Static_assert(sizeof(sd_route_names) / sizeof(sd_route_names[0]) ==
                   sizeof(sd_routes) / sizeof(sd_routes[0]),
               "one metrics name per route");
