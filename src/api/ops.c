/* ops.c — operating endpoints: /healthz for load balancers (503 "failing" once the store is
 * broken, 503 "degraded" while the store is out of space — that one clears by itself at the
 * next successful write) and /metrics in Prometheus text format. Neither needs a key; neither
 * shows a record: /metrics names tenants by client id and connectors by id, with counts only,
 * and bounds how many it names (core/quality.h, core/metrics.h). */
#include <stdlib.h>

#include "api/api.h"
#include "core/metrics.h"
#include "core/quality.h"
#include "server/router.h"

int sd_api_healthz(struct sd_req *req)
{
    if (sd_writer_broken(req->hub->writer)) {
        sd_req_reply_json(req, 503,
                          json_pack("{s:s, s:s}", "status", "failing", "reason",
                                    "store commit failed; restart required"));
        return SD_REQ_DONE;
    }
    if (sd_writer_disk_full(req->hub->writer)) {
        sd_req_add_header(req, "Retry-After", "%d", SD_API_STORAGE_RETRY_S);
        sd_req_reply_json(req, 503,
                          json_pack("{s:s, s:s, s:s}", "status", "degraded", "reason", "disk_full",
                                    "detail",
                                    "the last write failed for lack of space; writes are "
                                    "refused until one succeeds again"));
        return SD_REQ_DONE;
    }
    sd_req_reply_text(req, 200, "application/json", "{\"status\":\"ok\"}");
    return SD_REQ_DONE;
}

int sd_api_metrics(struct sd_req *req)
{
    struct sd_buf b;
    sd_buf_init(&b);
    sd_metrics_render(&b, sd_route_names, sd_routes_count);
    struct sd_store_log_stats log;
    sd_store_log_stats(req->hub->store, &log);
    sd_metrics_render_store(&b, &log, sd_writer_disk_full(req->hub->writer));
    sd_quality_render_metrics(req->hub->quality, req->hub->store, &b);
    free(req->resp_body);
    req->status = 200;
    req->content_type = "text/plain; version=0.0.4";
    req->resp_body = sd_buf_steal(&b);
    return SD_REQ_DONE;
}
