/* connector_read.c — a connector reads back what the hub holds for its tenant and environment
 * (sd_connector_records_page): a reconciliation compares the vendor's records with the hub's
 * without keeping a copy of its own ids in its state, which would outgrow it.
 *
 * Invariant: reads only, through the store's read path (any thread but the writer's); records
 * come in change order with their sequence number, so a sweep spread over many runs resumes
 * after the last one it checked. A file transport checks a whole file's references here
 * (sd_connector_check_sale_refs) before it writes any of it, without holding the writer. */
#include <errno.h>
#include <stdlib.h>

#include "core/connector.h"
#include "store/store.h"

int sd_connector_records_page(const struct sd_connector_ctx *ctx, enum sd_kind kind,
                              int64_t after_seq, size_t limit, json_t **ret_records,
                              int64_t *ret_last_seq, bool *ret_more)
{
    if (!ctx || !ctx->hub || !ctx->hub->store || !ret_records || !ret_last_seq || !ret_more ||
        after_seq < 0 || limit == 0) {
        return -EINVAL;
    }
    if (limit > SD_CONNECTOR_READ_MAX) {
        limit = SD_CONNECTOR_READ_MAX;
    }
    struct sd_record_page page = {0};
    int r = sd_store_list_records(ctx->hub->store, kind, ctx->tenant_id, ctx->env, after_seq, limit,
                                  &page);
    if (r < 0) {
        return r;
    }
    json_t *out = json_array();
    int64_t last = after_seq;
    for (size_t i = 0; i < page.n; i++) {
        last = page.seqs[i];
        json_t *doc = json_loads(page.docs[i], 0, NULL);
        if (!json_is_object(doc) || json_is_true(json_object_get(doc, "deleted"))) {
            json_decref(doc); /* a tombstone: no record to compare any more */
            continue;
        }
        json_array_append_new(out, doc);
    }
    *ret_more = page.has_more;
    sd_record_page_release(&page);
    *ret_records = out;
    *ret_last_seq = last;
    return 0;
}

int sd_connector_check_sale_refs(const struct sd_connector_ctx *ctx, struct sd_batch *batch,
                                 struct sd_issues *errors, bool *ret_needs_writer)
{
    if (!ctx || !ctx->hub || !ctx->hub->store || !batch || !errors || !ret_needs_writer) {
        return -EINVAL;
    }
    batch->upsert_sales = true;
    batch->source = ctx->source;
    batch->origin = ctx->id;
    return sd_store_check_sale_refs(ctx->hub->store, ctx->tenant_id, ctx->env, batch, errors,
                                    ret_needs_writer);
}
