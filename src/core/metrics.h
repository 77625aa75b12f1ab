/* metrics.h — process-wide counters and histograms, rendered in Prometheus text format.
 * Lock-free (relaxed atomics); any thread may record. Route indexes come from the HTTP route
 * table; route names are passed at render time. */
#ifndef SD_CORE_METRICS_H
#define SD_CORE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "model/model.h"
#include "store/store.h"

#define SD_METRICS_MAX_ROUTES 96

void sd_metrics_request(size_t route_idx, int status, int64_t duration_usec);
void sd_metrics_records(enum sd_kind kind, uint64_t n);
void sd_metrics_commit_observe(int64_t duration_usec);
void sd_metrics_render(struct sd_buf *out, const char *const *route_names, size_t n_routes);
/* Gauges of the store's state at render time: the write-ahead log, and whether the last group
 * commit failed for lack of space. */
void sd_metrics_render_store(struct sd_buf *out, const struct sd_store_log_stats *log,
                             bool disk_full);

#endif
