/* metrics.c — counters for requests by route and status, records accepted by type, and two
 * latency histograms (request, store commit). Plain arrays of relaxed atomics: recording is a
 * few instructions on the hot path; rendering reads a slightly torn but monotonic view, which is
 * what Prometheus expects from counters. */
#include "core/metrics.h"

#include "core/inbound.h"
#include "core/outbox.h"

#include <stdatomic.h>

static const int statuses[] = {200, 201, 202, 204, 304, 400, 401, 403, 404, 405,
                               408, 409, 411, 413, 415, 422, 429, 500, 503};
#define N_STATUS (sizeof(statuses) / sizeof(statuses[0]) + 1) /* last: other */

static const double buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                 0.05,   0.1,     0.25,   0.5,   1,      2.5,   5};
#define N_BUCKETS (sizeof(buckets) / sizeof(buckets[0]))

struct histogram {
    _Atomic uint64_t counts[N_BUCKETS + 1];
    _Atomic uint64_t sum_usec;
    _Atomic uint64_t n;
};

static _Atomic uint64_t requests[SD_METRICS_MAX_ROUTES + 1][N_STATUS];
static _Atomic uint64_t records[3];
static struct histogram request_latency;
static struct histogram commit_latency;

static size_t status_index(int status)
{
    for (size_t i = 0; i < N_STATUS - 1; i++) {
        if (statuses[i] == status) {
            return i;
        }
    }
    return N_STATUS - 1;
}

static void observe(struct histogram *h, int64_t usec)
{
    if (usec < 0) {
        usec = 0;
    }
    double s = (double)usec / 1e6;
    size_t i = 0;
    while (i < N_BUCKETS && s > buckets[i]) {
        i++;
    }
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_usec, (uint64_t)usec, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->n, 1, memory_order_relaxed);
}

void sd_metrics_request(size_t route_idx, int status, int64_t duration_usec)
{
    if (route_idx > SD_METRICS_MAX_ROUTES) {
        route_idx = SD_METRICS_MAX_ROUTES;
    }
    atomic_fetch_add_explicit(&requests[route_idx][status_index(status)], 1, memory_order_relaxed);
    observe(&request_latency, duration_usec);
}

void sd_metrics_records(enum sd_kind kind, uint64_t n)
{
    if ((int)kind >= 0 && kind <= SD_KIND_SALE) {
        atomic_fetch_add_explicit(&records[kind], n, memory_order_relaxed);
    }
}

void sd_metrics_commit_observe(int64_t duration_usec)
{
    observe(&commit_latency, duration_usec);
}

static void render_histogram(struct sd_buf *out, const char *name, const char *help,
                             struct histogram *h)
{
    sd_buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t i = 0; i < N_BUCKETS; i++) {
        cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        sd_buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, buckets[i],
                      (unsigned long long)cum);
    }
    cum += atomic_load_explicit(&h->counts[N_BUCKETS], memory_order_relaxed);
    sd_buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    sd_buf_printf(out, "%s_sum %.6f\n%s_count %llu\n", name,
                  (double)atomic_load_explicit(&h->sum_usec, memory_order_relaxed) / 1e6, name,
                  (unsigned long long)cum);
}

void sd_metrics_render(struct sd_buf *out, const char *const *route_names, size_t n_routes)
{
    sd_buf_puts(out, "# HELP stagedoor_http_requests_total HTTP requests by route and status.\n"
                     "# TYPE stagedoor_http_requests_total counter\n");
    for (size_t r = 0; r <= SD_METRICS_MAX_ROUTES; r++) {
        const char *route = r < n_routes ? route_names[r] : "unmatched";
        if (r >= n_routes && r != SD_METRICS_MAX_ROUTES) {
            continue;
        }
        for (size_t s = 0; s < N_STATUS; s++) {
            uint64_t v = atomic_load_explicit(&requests[r][s], memory_order_relaxed);
            if (v == 0) {
                continue;
            }
            if (s == N_STATUS - 1) {
                sd_buf_printf(out,
                              "stagedoor_http_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                              route, (unsigned long long)v);
            } else {
                sd_buf_printf(out,
                              "stagedoor_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                              route, statuses[s], (unsigned long long)v);
            }
        }
    }
    static const char *kinds[] = {"event", "customer", "sale"};
    sd_buf_puts(out, "# HELP stagedoor_records_accepted_total Records durably accepted.\n"
                     "# TYPE stagedoor_records_accepted_total counter\n");
    for (int k = 0; k < 3; k++) {
        sd_buf_printf(out, "stagedoor_records_accepted_total{type=\"%s\"} %llu\n", kinds[k],
                      (unsigned long long)atomic_load_explicit(&records[k], memory_order_relaxed));
    }
    render_histogram(out, "stagedoor_http_request_duration_seconds",
                     "Time from request headers to response queued.", &request_latency);
    render_histogram(out, "stagedoor_store_commit_duration_seconds",
                     "Duration of one group commit (fsync included).", &commit_latency);
    sd_inbound_metrics_render(out);
    sd_outbox_metrics_render(out);
}

void sd_metrics_render_store(struct sd_buf *out, const struct sd_store_log_stats *log,
                             bool disk_full)
{
    sd_buf_printf(out,
                  "# HELP stagedoor_wal_bytes Size of the store's write-ahead log file.\n"
                  "# TYPE stagedoor_wal_bytes gauge\nstagedoor_wal_bytes %lld\n"
                  "# HELP stagedoor_wal_frames Pages in the write-ahead log after the last "
                  "commit.\n"
                  "# TYPE stagedoor_wal_frames gauge\nstagedoor_wal_frames %lld\n"
                  "# HELP stagedoor_wal_pinned 1 while a read transaction keeps the log from "
                  "being checkpointed.\n"
                  "# TYPE stagedoor_wal_pinned gauge\nstagedoor_wal_pinned %d\n"
                  "# HELP stagedoor_store_disk_full 1 while the last group commit failed for "
                  "lack of space.\n"
                  "# TYPE stagedoor_store_disk_full gauge\nstagedoor_store_disk_full %d\n",
                  (long long)log->bytes, (long long)log->frames, log->pinned ? 1 : 0,
                  disk_full ? 1 : 0);
}
