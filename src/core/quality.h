/* quality.h — data quality and traffic counted in memory and flushed to the store per hour:
 * every rejected record or field by (tenant, environment, source, field, error code), records
 * accepted by source and kind, and HTTP answers by route and status class.
 *
 * Labels are bounded so neither memory nor the store grows with hostile input: a field label is
 * the record kind and the known field names a JSON Pointer names ("/sales/3/currency" →
 * "sales.currency"; a name the model does not know → "other"), an error code one of
 * SD_QUALITY_CODES (classified from the validator's words), a source "ingest", "sale_put" or a
 * connector id. At most SD_TRAFFIC_ADD_MAX distinct rows are held between two flushes; counts
 * past that are dropped and the drop is logged at the next flush.
 *
 * The same counts, summed per tenant since the process started, feed the /metrics series
 * (sd_quality_render_metrics), at most SD_QUALITY_METRIC_TENANTS tenants by name, the rest
 * summed under tenant="_other".
 *
 * Thread rules: any thread (one mutex, held for a hash lookup or to swap the table out; a
 * flush writes without it). The serve loop flushes once a minute, a quality read before it
 * answers. */
#ifndef SD_CORE_QUALITY_H
#define SD_CORE_QUALITY_H

#include <stdbool.h>
#include <stdint.h>

#include "base/base.h"
#include "model/model.h"
#include "store/store.h"

#define SD_QUALITY_CODES "missing, invalid, unknown_field, unknown_reference, duplicate, other"
#define SD_QUALITY_METRIC_TENANTS 100
#define SD_QUALITY_METRIC_CONNECTORS 200
#define SD_QUALITY_RETENTION_USEC (400LL * 86400 * 1000000) /* hour rows kept 400 days */

struct sd_quality;

struct sd_quality *sd_quality_new(void);
void sd_quality_free(struct sd_quality *q); /* NULL is fine; unflushed counts are lost */

/* Every issue of `errors` (and those past its cap, as field "other" / code "other") counted as
 * rejected for source. base: prefixed to each pointer (a body that is one record: "/sales/0"
 * for PUT …/sales/{invoice_number}), or NULL. q NULL: nothing. */
void sd_quality_rejected(struct sd_quality *q, int64_t tenant_id, enum sd_env env,
                         const char *source, const char *base, const struct sd_issues *errors);
/* n records rejected for source without issues (a connector's rows written to its error
 * file): field "record", code "other". */
void sd_quality_rejected_n(struct sd_quality *q, int64_t tenant_id, enum sd_env env,
                           const char *source, uint64_t n);
/* n records of `kind` stored for source. */
void sd_quality_accepted(struct sd_quality *q, int64_t tenant_id, enum sd_env env,
                         const char *source, enum sd_kind kind, uint64_t n);
/* One HTTP answer of route with status (counted by class 2xx / 4xx / 5xx). */
void sd_quality_answer(struct sd_quality *q, int64_t tenant_id, enum sd_env env, const char *route,
                       int status);

/* A connector run ended: ok or failed, with the records it stored and rejected, at end_usec
 * (for the per-connector /metrics series; at most SD_QUALITY_METRIC_CONNECTORS connectors by
 * id, the rest summed under connector="_other"). */
void sd_quality_run(struct sd_quality *q, const char *connector_id, int64_t tenant_id, bool ok,
                    uint64_t records_in, uint64_t rejected, int64_t end_usec);

/* Write the counts held so far to the store (store/observe.h traffic_add, which also deletes
 * rows older than SD_QUALITY_RETENTION_USEC). 0, or negative errno: the counts are kept for the
 * next flush. */
int sd_quality_flush(struct sd_quality *q, struct sd_store_handle *st);

/* Field label and error code of one issue (exposed for tests). label/code are written with at
 * most SD_TRAFFIC_TEXT_MAX bytes. */
void sd_quality_classify(const char *pointer, const char *message, char *label, size_t label_cap,
                         char *code, size_t code_cap);

/* The /metrics series of this module, each with bounded labels (README § Operating):
 *  - per tenant since start: stagedoor_tenant_records_accepted_total{tenant,kind},
 *    stagedoor_tenant_records_rejected_total{tenant}, stagedoor_tenant_http_answers_total{tenant,
 *    class};
 *  - per connector since start: stagedoor_connector_runs_total{tenant,connector,outcome},
 *    stagedoor_connector_last_run_age_seconds{tenant,connector},
 *    stagedoor_connector_last_run_records{tenant,connector,kind="stored"|"rejected"};
 *  - the outbox now, from one store query (store/observe.h outbox_stats):
 *    stagedoor_outbox_queue_depth, stagedoor_outbox_oldest_age_seconds,
 *    stagedoor_outbox_attempts, stagedoor_outbox_dead_letters, each {tenant,target}.
 * At most SD_QUALITY_METRIC_TENANTS tenants and SD_QUALITY_METRIC_CONNECTORS connectors or
 * targets are named; the rest are summed under "_other" (the oldest age: the largest). */
/* Tenants are named by their client id (one tenant list read from st per call); a tenant the
 * list does not hold (yet) is summed under "_other". */
void sd_quality_render_metrics(struct sd_quality *q, struct sd_store_handle *st,
                               struct sd_buf *out);

#endif
