/* archtics_reconcile.c — accounts deleted or merged on the Archtics side, applied to the hub.
 *
 * No incremental call reports a deleted or merged account, and customer_query answers both the
 * same way (5024, "not found"). So a sweep, every reconcile_days, asks customer_query for each
 * account the hub holds under the instance's source label (read back with
 * sd_connector_records_page, in change order). An account Archtics no longer knows is:
 *  - merged, when a sale the hub holds for it now belongs to another account in Archtics (a
 *    merge moves the sales to the survivor): one get_ticket_sales call for that sale's event,
 *    from one minute before its time, finds it; the account gets a "merged" tombstone naming the
 *    survivor, and its sales and profile membership move to the survivor (core/deletions.h);
 *  - deleted otherwise: a "deleted" tombstone.
 *
 * Cost: one call per account the hub holds, plus one per vanished account that has a sale; a
 * sweep of N accounts costs N calls. It is spread over runs: each run spends at most
 * reconcile_calls_per_run calls on it (never the write reserve: these are reads) and commits
 * where it stopped in the instance's saved state, so the next run goes on from there and the
 * day's quota is shared with the streams. With 5,000 calls a day, 100,000 accounts take about
 * 100,000 / reconcile_calls_per_run runs: size reconcile_days to match (docs/connectors).
 *
 * Invariant: only an account Archtics answered "not found" for (5024 / sql_code 100) is ever
 * removed; every other answer (quota, transport, any other error) stops the step and keeps the
 * checkpoint, so a failing call never deletes anything. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "connectors/archtics/archtics.h"
#include "core/deletions.h"
#include "model/tz.h"

#define SAVED "reconcile"
#define PAGE 200

/* For each account id that is a key of `gone` (values null), the hub's latest sale of it that
 * is not a refund, read back from the sales feed in one pass: gone[id] becomes {"invoice",
 * "event", "when"}. 0, or the store's negative errno. */
static int sales_of(struct sd_connector_ctx *ctx, json_t *gone)
{
    int64_t after = 0;
    bool more = true;
    while (more) {
        json_t *recs = NULL;
        int r = sd_connector_records_page(ctx, SD_KIND_SALE, after, SD_CONNECTOR_READ_MAX, &recs,
                                          &after, &more);
        if (r < 0) {
            return r;
        }
        size_t i;
        json_t *s;
        json_array_foreach(recs, i, s)
        {
            const char *cid = json_string_value(json_object_get(s, "customer_id"));
            const char *inv = json_string_value(json_object_get(s, "invoice_number"));
            const char *ev = json_string_value(json_object_get(s, "event_id"));
            const char *at = json_string_value(json_object_get(s, "purchase_datetime"));
            const char *type = json_string_value(json_object_get(s, "order_type"));
            /* a plan seat block (a reservation) is no get_ticket_sales row */
            if (cid && inv && ev && at && json_object_get(gone, cid) &&
                !json_object_get(s, "refund_of") && (!type || strcmp(type, "sale") == 0)) {
                json_object_set_new(
                    gone, cid,
                    json_pack("{s:s, s:s, s:s}", "invoice", inv, "event", ev, "when", at));
            }
        }
        json_decref(recs);
    }
    return 0;
}

/* Which account holds sale `invoice` now in Archtics: 0 with *ret_acct, -ENOENT when the sale
 * is not found, -EAGAIN when the call did not succeed (a->status says why). */
static int holder_of(struct ats_client *cl, const struct sd_tz *tz, const char *event,
                     const char *invoice, const char *when_utc, struct ats_answer *a,
                     int64_t *ret_acct)
{
    int64_t utc = 0, local = 0;
    char since[20], stamp[20];
    snprintf(stamp, sizeof(stamp), "%.19s", when_utc); /* "YYYY-MM-DDTHH:MM:SS" of "…Z" */
    if (ats_local_parse(stamp, &utc) < 0 || sd_tz_utc_to_local(tz, utc, &local) < 0) {
        return -ENOENT;
    }
    ats_local_format(local - 60, since); /* one minute before: the boundary is never missed */
    json_t *params =
        json_pack("{s:s, s:s, s:i}", "event_name", event, "since_date_time", since, "count", 1000);
    int r = ats_call(cl, "get_ticket_sales", params, a);
    json_decref(params);
    if (r < 0 || (a->status != ATS_OK && a->status != ATS_NOT_FOUND)) {
        return -EAGAIN;
    }
    const json_t *rows = ats_get(a->c1, "sales");
    size_t i;
    const json_t *row;
    json_array_foreach(rows, i, row)
    {
        char *t = ats_get_text(row, "trans_id");
        bool hit = t && strcmp(t, invoice) == 0;
        free(t);
        if (hit && ats_get_int(row, "acct_id", ret_acct) == 0) {
            return 0;
        }
    }
    return -ENOENT;
}

/* An event the hub holds from Archtics: written by the events stream (its "archtics" member)
 * or imported from an extract (its kept "event_category" column). */
static bool archtics_event(const json_t *e)
{
    return json_is_object(json_object_get(e, "archtics")) ||
           json_is_string(json_object_get(e, "event_category"));
}

/* The events pass of a sweep: the hub's Archtics events are asked for by name, EVENTS_BATCH at
 * a time (event_details with an event_filter list); one Archtics does not list any more gets a
 * "deleted" tombstone (its sales stay). 0 when done, 1 when the share or the quota ended it,
 * -EAGAIN when a call failed (nothing removed for that batch), or the store's negative errno. */
#define EVENTS_BATCH 50
static int sweep_events(struct sd_connector_ctx *ctx, struct ats_client *cl, int64_t budget,
                        struct archtics_reconcile_report *rep)
{
    json_t *ids = json_array();
    int64_t after = 0;
    bool more = true;
    int r = 0;
    while (more && r == 0) {
        json_t *recs = NULL;
        r = sd_connector_records_page(ctx, SD_KIND_EVENT, after, SD_CONNECTOR_READ_MAX, &recs,
                                      &after, &more);
        size_t i;
        json_t *e;
        json_array_foreach(recs, i, e)
        {
            const char *id = json_string_value(json_object_get(e, "event_id"));
            if (id && *id && !strchr(id, ',') && archtics_event(e)) {
                json_array_append_new(ids, json_string(id));
            }
        }
        json_decref(recs);
    }
    for (size_t at = 0; r == 0 && at < json_array_size(ids); at += EVENTS_BATCH) {
        if (rep->calls + 1 > budget) {
            r = 1;
            break;
        }
        struct sd_buf filter;
        sd_buf_init(&filter);
        size_t end =
            at + EVENTS_BATCH < json_array_size(ids) ? at + EVENTS_BATCH : json_array_size(ids);
        for (size_t k = at; k < end; k++) {
            sd_buf_printf(&filter, "%s%s", k > at ? "," : "",
                          json_string_value(json_array_get(ids, k)));
        }
        json_t *params = json_pack("{s:s, s:s, s:I}", "event_filter", filter.data,
                                   "event_filter_type", "L", "count", (json_int_t)EVENTS_BATCH);
        sd_buf_release(&filter);
        struct ats_answer a = {0};
        int cr = ats_call(cl, "event_details", params, &a);
        json_decref(params);
        rep->calls += a.calls;
        if (cr < 0 || (a.status != ATS_OK && a.status != ATS_NOT_FOUND)) {
            r = a.status == ATS_PAUSED || a.status == ATS_CANCELED ? 1 : -EAGAIN;
            ats_answer_release(&a);
            break;
        }
        json_t *listed = json_object();
        size_t i;
        const json_t *ev;
        json_array_foreach(ats_get(a.c1, "events"), i, ev)
        {
            char *name = ats_get_text(ev, "event_name");
            if (name) {
                json_object_set_new(listed, name, json_true());
            }
            free(name);
        }
        ats_answer_release(&a);
        for (size_t k = at; r == 0 && k < end; k++) {
            const char *id = json_string_value(json_array_get(ids, k));
            if (json_object_get(listed, id)) {
                continue;
            }
            struct sd_deletion d = {
                .kind = SD_KIND_EVENT, .id = id, .reason = SD_TOMBSTONE_DELETED};
            struct sd_deletion_outcome out = {0};
            r = sd_hub_delete_records_fenced(ctx->hub, ctx->tenant_id, ctx->env, &d, 1, ctx->id,
                                             ctx->run_fence, &out);
            if (r == 0) {
                rep->events_deleted++;
                sd_log(SD_LOG_INFO, "archtics event deleted", "connector=\"[archtics/%s]\"",
                       ctx->id ? ctx->id : "");
            }
        }
        json_decref(listed);
    }
    json_decref(ids);
    return r;
}

/* Is a sweep due? One in progress goes on; the next begins reconcile_days after the last one
 * ended. The first: at once when the hub started from a file extract (bootstrap_cutoff: the
 * extract may be outdated already), else reconcile_days after the first run (a backfill has
 * just read every account). */
static bool due(const struct archtics_conf *cf, json_t *st)
{
    if (cf->reconcile_days <= 0) {
        return false;
    }
    if (json_integer_value(json_object_get(st, "after_seq")) > 0) {
        return true; /* a sweep in progress */
    }
    const json_t *done = json_object_get(st, "last_done_usec");
    if (!json_is_integer(done)) {
        if (cf->bootstrap_cutoff[0]) {
            return true;
        }
        json_object_set_new(st, "last_done_usec", json_integer(sd_now_usec()));
        return false;
    }
    return sd_now_usec() - json_integer_value(done) >= cf->reconcile_days * 86400LL * 1000000;
}

int archtics_reconcile_step(struct sd_connector_ctx *ctx, struct ats_client *cl,
                            struct archtics_reconcile_report *rep)
{
    const struct archtics_conf *cf = ctx->conf;
    memset(rep, 0, sizeof(*rep));
    json_t *saved = sd_connector_saved(ctx);
    if (!cf || !saved) {
        return 0;
    }
    json_t *st = json_object_get(saved, SAVED);
    if (!json_is_object(st)) {
        st = json_object();
        json_object_set_new(saved, SAVED, st);
    }
    if (!due(cf, st)) {
        return 0;
    }
    const struct sd_tz *tz = NULL;
    if (sd_tz_get(cf->venue_time_zone, &tz, NULL, 0) < 0) {
        return sd_connector_fail(ctx, -EINVAL, "reconciliation: unknown venue_time_zone");
    }
    const char *own = ctx->source ? ctx->source : "archtics";
    int64_t after = json_integer_value(json_object_get(st, "after_seq"));
    int64_t budget = cf->reconcile_calls_per_run;
    bool more = true;
    int r = 0;
    rep->ran = true;
    if (after == 0 && !json_is_true(json_object_get(st, "events_checked"))) {
        /* a sweep begins with the events: few calls (one per EVENTS_BATCH events) */
        r = sweep_events(ctx, cl, budget, rep);
        if (r == 0) {
            saved = sd_connector_saved(ctx);
            st = json_object_get(saved, SAVED);
            json_object_set_new(st, "events_checked", json_true());
        }
    }
    while (more && r == 0) {
        /* a page no larger than what is left of the share (an account costs one call, a
         * vanished one a second), so a page is normally checked whole and the checkpoint moves
         * past it; a step stopped inside a page asks that page's accounts again next time */
        int64_t left = budget - rep->calls;
        if (left < 2) {
            r = 1;
            break;
        }
        size_t limit = (size_t)(left / 2 < PAGE ? left / 2 : PAGE);
        json_t *recs = NULL, *gone = json_object();
        int64_t last = after;
        r = sd_connector_records_page(ctx, SD_KIND_CUSTOMER, after, limit, &recs, &last, &more);
        size_t i;
        json_t *c;
        json_array_foreach(recs, i, c)
        {
            const char *src = json_string_value(json_object_get(c, "source"));
            const char *id = json_string_value(json_object_get(c, "customer_id"));
            char *end = NULL;
            long long acct = id ? strtoll(id, &end, 10) : 0;
            if (r != 0) {
                break;
            }
            if (!src || strcmp(src, own) != 0 || !id || end == id || *end) {
                continue; /* another system's customer, or not an Archtics account number */
            }
            struct ats_answer a = {0};
            json_t *qp = json_pack("{s:I, s:s}", "acct_id", (json_int_t)acct, "call_reason", "S");
            int cr = ats_call(cl, "customer_query", qp, &a);
            json_decref(qp);
            rep->calls += a.calls;
            enum ats_status status = cr < 0 ? ATS_RETRY : a.status;
            ats_answer_release(&a);
            if (status == ATS_OK) {
                rep->checked++;
            } else if (status == ATS_NOT_FOUND) {
                json_object_set_new(gone, id, json_null()); /* vanished: merged or deleted */
            } else {
                r = status == ATS_PAUSED || status == ATS_CANCELED ? 1 : -EAGAIN;
            }
        }
        if (json_object_size(gone) > 0) {
            int sr = sales_of(ctx, gone);
            r = sr < 0 ? sr : r;
        }
        const char *id;
        json_t *sale;
        json_object_foreach(gone, id, sale)
        {
            if (r < 0) {
                break;
            }
            int64_t into = 0, acct = strtoll(id, NULL, 10);
            bool merged = false;
            if (json_is_object(sale)) {
                struct ats_answer h = {0};
                int hr = holder_of(cl, tz, json_string_value(json_object_get(sale, "event")),
                                   json_string_value(json_object_get(sale, "invoice")),
                                   json_string_value(json_object_get(sale, "when")), &h, &into);
                rep->calls += h.calls;
                enum ats_status hs = h.status;
                ats_answer_release(&h);
                if (hr == -EAGAIN) {
                    r = hs == ATS_PAUSED || hs == ATS_CANCELED ? 1 : -EAGAIN;
                    break; /* not judged: asked again by the next step */
                }
                merged = hr == 0 && into != acct;
            }
            char into_text[32];
            snprintf(into_text, sizeof(into_text), "%lld", (long long)into);
            struct sd_deletion d = {.kind = SD_KIND_CUSTOMER,
                                    .id = id,
                                    .source = own,
                                    .reason = merged ? SD_TOMBSTONE_MERGED : SD_TOMBSTONE_DELETED,
                                    .merged_into = merged ? into_text : NULL};
            struct sd_deletion_outcome out = {0};
            int dr = sd_hub_delete_records_fenced(ctx->hub, ctx->tenant_id, ctx->env, &d, 1,
                                                  ctx->id, ctx->run_fence, &out);
            if (dr < 0) {
                r = dr;
                break;
            }
            if (merged) {
                rep->merged++;
            } else {
                rep->deleted++;
            }
            sd_log(SD_LOG_INFO, merged ? "archtics account merged" : "archtics account deleted",
                   "connector=\"[archtics/%s]\" acct_id=%lld into=%s", ctx->id ? ctx->id : "",
                   (long long)acct, merged ? into_text : "-");
        }
        if (r == 0) {
            after = last; /* the whole page was checked */
        }
        json_decref(gone);
        json_decref(recs);
    }
    /* the saved object may have been replaced by a commit in between: look it up again */
    saved = sd_connector_saved(ctx);
    st = json_object_get(saved, SAVED);
    if (!json_is_object(st)) {
        st = json_object();
        json_object_set_new(saved, SAVED, st);
    }
    if (r == 0 && !more) {
        json_object_set_new(st, "after_seq", json_integer(0));
        json_object_del(st, "events_checked");
        json_object_set_new(st, "last_done_usec", json_integer(sd_now_usec()));
        rep->finished = true;
    } else {
        json_object_set_new(st, "after_seq", json_integer(after));
    }
    json_object_set_new(st, "last_checked", json_integer((json_int_t)rep->checked));
    json_object_set_new(st, "last_deleted", json_integer((json_int_t)rep->deleted));
    json_object_set_new(st, "last_merged", json_integer((json_int_t)rep->merged));
    json_object_set_new(st, "last_events_deleted", json_integer((json_int_t)rep->events_deleted));
    int sr = sd_connector_state_save(ctx);
    if (r < 0) {
        return r == -EAGAIN ? 0 : r; /* a failed call: the next run goes on from here */
    }
    return sr < 0 && sr != -ENOTSUP ? sr : 0;
}
