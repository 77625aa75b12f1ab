/* routes.c — the one route table: every endpoint of the hub, its method, what the server checks
 * before the handler (flags) and the name used in metrics and logs. Adding an endpoint is one
 * line here and a handler in its resource file. */
#include "api/api.h"
#include "http/router.h"

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
    /* ROUTES-PROFILES */
    /* ROUTES-SEGMENTS */
    /* ROUTES-OUTBOX */
};
const size_t sd_routes_count = sizeof(sd_routes) / sizeof(sd_routes[0]);

const char *const sd_route_names[] = {
    "healthz",        "metrics",      "ingest",     "events_list", "event_get",
    "customers_list", "customer_get", "sales_list", "sale_get",    "sale_put",
    "connector_create", "connectors_list", "connector_get", "connector_update",
    "connector_delete", "connector_run",
    /* NAMES-PROFILES */
    /* NAMES-SEGMENTS */
    /* NAMES-OUTBOX */
};
_Static_assert(sizeof(sd_route_names) / sizeof(sd_route_names[0]) ==
                   sizeof(sd_routes) / sizeof(sd_routes[0]),
               "one metrics name per route");
