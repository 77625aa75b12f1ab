/* ingest.h — records into the hub, for every producer that is not an HTTP request: the demo
 * loader now, the batch connectors (CSV, feeds, REST pull) next. It is the webhook's path —
 * the same validation (model/) and the same apply in the writer's group commit (store/) — run
 * synchronously: the call returns once the records are durably committed or refused.
 *
 * Thread rules: any thread except the writer's. */
#ifndef SD_CORE_INGEST_H
#define SD_CORE_INGEST_H

#include <jansson.h>
#include <stdbool.h>

#include "core/hub.h"

struct sd_ingest_outcome {
    int status; /* 202 stored; 400 validation or reference errors; 409 duplicate invoices */
    struct sd_issues errors; /* pointers into the body */
    struct sd_issues warnings;
    size_t n_events, n_customers, n_sales; /* accepted (202 only) */
    char **duplicate_invoices;             /* 409 only */
    size_t n_duplicate_invoices;
    /* Of the accepted records, those already stored with identical content (left as they are):
     * events, customers, and with upsert_sales sales. */
    size_t n_unchanged;
    size_t n_skipped;   /* skip_bad: records left out because of an error (in errors) */
    /* Of n_unchanged: records not applied because the source's remote version is older than
     * the stored one (an older remote version never overwrites a newer one). */
    size_t n_stale;
};
void sd_ingest_outcome_init(struct sd_ingest_outcome *o);
/* The same with room for `limit` errors (a batch connector that must list every bad row). */
void sd_ingest_outcome_init_limit(struct sd_ingest_outcome *o, size_t limit);
void sd_ingest_outcome_release(struct sd_ingest_outcome *o);

/* Validate body (an ingest body: {"events":[…], "customers":[…], "sales":[…]}) and apply it for
 * tenant/env, all or nothing. Returns 0 with out->status set, or negative errno if the store
 * failed (-EIO; nothing applied). */
int sd_hub_ingest(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const json_t *body,
                  struct sd_ingest_outcome *out);

/* ---- batch transports (connectors) ------------------------------------------------------------
 */

struct sd_ingest_opts {
    const char *source; /* the records' source label (sd_batch.source); NULL = "webhook" */
    const char *origin; /* the connector instance writing (sd_batch.origin); NULL = the API */
    bool upsert_sales; /* see sd_batch.upsert_sales: re-reading a page stores nothing twice */
    /* Customers may come without an e-mail (SD_VALIDATE_EMAIL_OPTIONAL): a connector whose
     * type sets customers_email_optional. The webhook never sets it. */
    bool email_optional;
    /* Leave out every record with an error (validation or reference; each reported in
     * out->errors with its pointer into `body`) and store the rest; status is then 202 unless
     * the body itself is malformed. Without it the body is all or nothing, as for the webhook. */
    bool skip_bad;
    /* If set: replace this connector's state document in the same transaction as the records
     * (a cursor that moves exactly when its page is stored). */
    const char *state_id;
    const char *state_doc;
    /* Instead of state_doc: called just before each attempt to store, with every record left
     * out so far (skip_bad; errors point into `body`) — the document it returns (heap) is
     * stored with the records if that attempt succeeds. For a cursor that must describe the
     * outcome (how many rows were skipped) yet commit in the same transaction. */
    char *(*state_fn)(void *arg, const struct sd_issues *skipped, size_t n_skipped);
    void *state_arg;
    /* With state_id: the fencing token of the run lease the writing run holds (0: none, a
     * caller without a lease). The state is then put only while that token is still the
     * lease's (store connector_state_put_fenced), so a run whose lease was taken over stores
     * nothing: the whole job fails with -ESTALE, its records undone with it. */
    int64_t state_fence;
};

/* sd_hub_ingest with options. An empty body ({} or no records) is allowed when state_id is
 * set: then only the state is stored. */
int sd_hub_ingest_opts(struct sd_hub *hub, int64_t tenant_id, enum sd_env env, const json_t *body,
                       const struct sd_ingest_opts *o, struct sd_ingest_outcome *out);

/* ---- the one apply point ----------------------------------------------------------------------
 * Every batch of records — the webhook's, a connector's page, a write job's file — is applied on
 * the writer thread through sd_ingest_apply (and a sale replaced through sd_ingest_replace_sale),
 * never by calling the store's apply directly: whatever must commit in the same transaction as a
 * change (the outbound items it causes for the tenant's targets) happens in this one place.
 * Writer thread only, inside a write job's savepoint. Same results as sd_store_apply_ingest /
 * sd_store_replace_sale. */
int sd_ingest_apply(struct sd_store_handle *st, int64_t tenant_id, enum sd_env env,
                    const struct sd_batch *b, struct sd_apply_result *res);
/* What the hub answers for a store outcome: 202 (200 for a replaced sale), 400 (refused),
 * 409 (duplicate invoice numbers), 404 (no such sale). */
int sd_ingest_status(enum sd_apply_outcome outcome, bool replace);
int sd_ingest_replace_sale(struct sd_store_handle *st, int64_t tenant_id, enum sd_env env,
                           const struct sd_sale_rec *sale, struct sd_apply_result *res);

/* For code already running on the writer thread (a connector's write job that stores a whole
 * file in one transaction): apply a batch validated beforehand (sd_validate_ingest, possibly on
 * another thread), no commit. batch->upsert_sales and batch->source are the caller's. The
 * records count only if the job keeps its savepoint. Returns 0 with out->status set, or -EIO. */
int sd_ingest_batch_in_writer(struct sd_store_handle *st, int64_t tenant_id, enum sd_env env,
                              const struct sd_batch *batch, struct sd_ingest_outcome *out);

#endif
