/* ingest.h — records into the hub, for every producer that is not an HTTP request: the demo
 * loader now, the batch connectors (CSV, feeds, REST pull) next. It is the webhook's path —
 * the same validation (model/) and the same apply in the writer's group commit (store/) — run
 * synchronously: the call returns once the records are durably committed or refused.
 *
 * Thread rules: any thread except the writer's. */
#ifndef SD_CORE_INGEST_H
#define SD_CORE_INGEST_H

#include <jansson.h>

#include "core/hub.h"

struct sd_ingest_outcome {
    int status; /* 202 stored; 400 validation or reference errors; 409 duplicate invoices */
    struct sd_issues errors;   /* pointers into the body */
    struct sd_issues warnings;
    size_t n_events, n_customers, n_sales; /* accepted (202 only) */
    char **duplicate_invoices;             /* 409 only */
    size_t n_duplicate_invoices;
};
void sd_ingest_outcome_init(struct sd_ingest_outcome *o);
void sd_ingest_outcome_release(struct sd_ingest_outcome *o);

/* Validate body (an ingest body: {"events":[…], "customers":[…], "sales":[…]}) and apply it for
 * tenant/env, all or nothing. Returns 0 with out->status set, or negative errno if the store
 * failed (-EIO; nothing applied). */
int sd_hub_ingest(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const json_t *body,
                  struct sd_ingest_outcome *out);

#endif
