/* tradablebits.c — the `tradablebits` connector: its type (settings, quotas, the source and
 * target entry points) and the pull half: fans and tickets from the Tradable Bits CRM API (a
 * fan CRM) into customers, sales and events. The push half (sales as tickets, customers as
 * fans) is tb_push.c; the activities stream (pull_activities: per-fan figures on the customer)
 * is tb_activities.c; the parts share tradablebits.h.
 *
 * Streams, fans first so that the sales of a ticket page find their customer:
 *  - fans: the updated-fans feed in fan_time_key order (`<unix>_<ms>_<fan_id>`, unique even
 *    when timestamps tie). The first page asks last_update_date = backfill_start; every later
 *    page min_time_key = the previous page's meta.max_fan_time_key, which is the cursor
 *    committed with that page's customers. The feed has no max_count cap, so a full export
 *    needs no partition.
 *  - tickets: ascending ticket_id windows (min_ticket_id, exclusive) inside a last-update date
 *    window [lo, hi] with include_deleted. A backfill walks closed windows of partition_days
 *    from backfill_start, so no single query spans the whole history; the window that reaches
 *    the present is open (no max). When the open window is exhausted, the next sweep starts
 *    (inclusive) at the latest last update the server had reported by the current sweep's
 *    first page (see struct tk_window): the server's own timestamps, never our clock, so a
 *    skewed hub clock can neither skip nor stall a change. An id cursor alone would find
 *    new tickets only; the date window finds changed ones too. Records a sweep sees again are
 *    upserts of identical content ("unchanged").
 * Every page is stored with the cursor that follows it in ONE transaction (sd_connector_commit):
 * a restart between pages resumes after the last stored page and fetches nothing twice.
 *
 * A ticket page carries, with data=fan, each ticket's fan: its customer is stored with the sale
 * (a fan created after the fans stream ran still resolves), and its event from the ticket's
 * event fields (one per event_key per page). A ticket marked is_deleted propagates as the
 * setting deleted_tickets says: cancel (default) stores its sale with status "cancelled" and
 * the ticket's last update as status_changed_at (a cancelled sale counts no tickets and no
 * spend, and is final: docs/ORDER_LIFECYCLE.md); tombstone deletes the sale from the hub (a
 * tombstone in the change feed, committed just before the page); skip leaves the sale as it
 * is and counts the ticket in the run's warning.
 *
 * No echo: a ticket whose sale this instance pushed (the remote reference its delivery
 * recorded) and a fan its push created are left out of the pull.
 *
 * Records are shaped (ids as strings, consent, the event's date and time split) and then
 * mapped through the connector's default mapping overlaid with the instance's own (docs/
 * connectors/tradablebits.md). Every request is counted against the type's quotas before it is
 * sent; repeats the retry loop made (429 with Retry-After, 5xx) are counted after it returns. */
#include <errno.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "base/log.h"
#include "core/connector.h"
#include "core/deletions.h"
#include "http/client.h"
#include "http/verdict.h"
#include "mapping/mapping.h"

#include "connectors/tradablebits/tradablebits.h"
#include "connectors/tradablebits/tb_tags.h"

#define AT(member) offsetof(struct tb_conf, member)

static const struct sd_setting settings[] = {
    {"base_url", SD_SETTING_URL, "\"https://tradablebits.com/api/v1/\"", 8, 2048, "API base URL",
     SD_CHOICES("http", "https"), AT(base_url)},
    {"api_key", SD_SETTING_SECRET, NULL, 1, 256, "API key (sent as the Api-Key header)", NULL,
     AT(api_key)},
    {"api_secret", SD_SETTING_SECRET, NULL, 1, 256, "API secret (sent as the Api-Secret header)",
     NULL, AT(api_secret)},
    {"fans_updated_path", SD_SETTING_STRING, "\"/crm/fans/updated\"", 1, 256,
     "path of the updated-fans feed (to confirm with Tradable Bits)", NULL, AT(fans_updated_path)},
    {"tickets_path", SD_SETTING_STRING, "\"/crm/tickets\"", 1, 256,
     "path of the tickets list (to confirm with Tradable Bits)", NULL, AT(tickets_path)},
    {"pull_fans", SD_SETTING_BOOL, "true", 0, 0, "pull fans into customers", NULL, AT(pull_fans)},
    {"pull_tickets", SD_SETTING_BOOL, "true", 0, 0, "pull tickets into sales and events", NULL,
     AT(pull_tickets)},
    {"pull_activities", SD_SETTING_BOOL, "false", 0, 0,
     "pull activities (contest entries, campaign sign-ups) into their fans' customer records: "
     "activity_count, last_activity_at, last_activity_type, last_activity_campaign and the "
     "opt-in an entry carries",
     NULL, AT(pull_activities)},
    {"activities_path", SD_SETTING_STRING, "\"/crm/activities\"", 1, 256,
     "path of the activities list", NULL, AT(activities_path)},
    {"activities_page_size", SD_SETTING_INT, "200", 1, 200,
     "activities asked for per page (limit; the API allows at most 200)", NULL,
     AT(activities_page_size)},
    {"backfill_start", SD_SETTING_STRING, "\"2010-01-01\"", 10, 10,
     "YYYY-MM-DD: the first run pulls what changed on or after this day", NULL, AT(backfill_start)},
    {"partition_days", SD_SETTING_INT, "30", 1, 3660, "days of ticket updates per backfill window",
     NULL, AT(partition_days)},
    {"tickets_page_size", SD_SETTING_INT, "1000", 1, 1000, "tickets asked for per page (limit)",
     NULL, AT(tickets_page_size)},
    {"fans_page_size", SD_SETTING_INT, "1000", 1, 100000,
     "the updated-fans feed's fixed page size: a shorter page is the last", NULL,
     AT(fans_page_size)},
    {"currency", SD_SETTING_STRING, NULL, 3, 3,
     "ISO 4217 code of paid_amount (the API does not say)", NULL, AT(currency)},
    {"event_city", SD_SETTING_STRING, NULL, 1, 128,
     "city of the events (tickets carry the buyer's city, not the venue's)", NULL, AT(event_city)},
    {"policy", SD_SETTING_CHOICE, "\"reject_page\"", 0, 0,
     "reject_page (a page is all or nothing; the run stops there) or skip_records (store the "
     "good records, list the others in the warning)",
     SD_CHOICES("reject_page", "skip_records"), AT(policy)},
    {"timeout_seconds", SD_SETTING_INT, "60", 1, 600, "per request", NULL, AT(timeout_seconds)},
    {"max_attempts", SD_SETTING_INT, "6", 1, 20, "attempts per page before the run fails", NULL,
     AT(max_attempts)},
    {"retry_initial_ms", SD_SETTING_INT, "1000", 1, 600000, "first back-off", NULL,
     AT(retry_initial_ms)},
    {"max_wait_seconds", SD_SETTING_INT, "120", 1, 3600,
     "longest wait for one Retry-After or back-off", NULL, AT(max_wait_seconds)},
    {"quota_10s_calls", SD_SETTING_INT, "0", 0, 10000,
     "calls per aligned 10 s window shared by pulls and pushes of this api_key (0: 85, under the "
     "600 per minute default; 1400 fits a 10,000 per minute contract)",
     NULL, AT(quota_10s_calls)},
    {"deleted_tickets", SD_SETTING_CHOICE, "\"cancel\"", 0, 0,
     "what a ticket marked is_deleted does to its stored sale: cancel (the sale is cancelled, "
     "its quantity and amount kept), tombstone (the sale is deleted from the hub) or skip "
     "(left as it is, counted in the warning)",
     SD_CHOICES("cancel", "tombstone", "skip"), AT(deleted_policy)},
    {"push_tickets", SD_SETTING_BOOL, "false", 0, 0,
     "push the hub's sales as tickets (bulk call); the instance must be a target too", NULL,
     AT(push_tickets)},
    {"push_fans", SD_SETTING_BOOL, "false", 0, 0, "push the hub's customers as fans", NULL,
     AT(push_fans)},
    {"tickets_bulk_path", SD_SETTING_STRING, "\"/crm/tickets/bulk\"", 1, 256,
     "path of the bulk ticket call (to confirm with Tradable Bits)", NULL, AT(tickets_bulk_path)},
    {"tickets_bulk_field", SD_SETTING_STRING, "\"tickets\"", 1, 64,
     "form field of the bulk call, one JSON ticket per repeated field (to confirm)", NULL,
     AT(tickets_bulk_field)},
    {"fans_create_path", SD_SETTING_STRING, "\"/crm/fans\"", 1, 256,
     "path of fan create (to confirm with Tradable Bits)", NULL, AT(fans_create_path)},
    {"fan_update_path", SD_SETTING_STRING, "\"/crm/fans/{fan_id}\"", 1, 256,
     "path of fan update; {fan_id} is the fan (to confirm with Tradable Bits)", NULL,
     AT(fan_update_path)},
    {"tag_prefix", SD_SETTING_STRING, "\"stagedoor-\"", 0, 32,
     "a segment's tag is named tag_prefix + the segment id", NULL, AT(tag_prefix)},
    {"segments", SD_SETTING_STRING, "\"\"", 0, 4096,
     "segments synced to fan tags: 'ID' or 'ID@SCHEDULE' separated by ';'", NULL, AT(segments)},
    {"tags_path", SD_SETTING_STRING, "\"/crm/tags\"", 1, 256,
     "path of tag create and list (to confirm with Tradable Bits)", NULL, AT(tags_path)},
    {"tag_add_path", SD_SETTING_STRING, "\"/crm/tags/{tag_id}/fans\"", 1, 256,
     "path adding fans to a tag; {tag_id} is the tag (to confirm with Tradable Bits)", NULL,
     AT(tag_add_path)},
    {"tag_remove_path", SD_SETTING_STRING, "\"/crm/tags/{tag_id}/fans/remove\"", 1, 256,
     "path removing fans from a tag; {tag_id} is the tag (to confirm with Tradable Bits)", NULL,
     AT(tag_remove_path)},
    {NULL, 0, NULL, 0, 0, NULL, NULL, 0},
};

/* 600 calls per minute is the documented limit; whether the vendor's window is rolling or
 * per calendar minute is not public. The ledger's windows are fixed, and a rolling minute
 * overlaps at most seven aligned 10 s windows: 7 × 85 = 595 < 600 holds either way. 15 calls
 * of each window are kept for the write half. */
static const struct sd_quota quotas[] = {
    {"10s", 10 * 1000000LL, 85, 15},
    {NULL, 0, 0, 0},
};

static const char *const credential_settings[] = {"api_key", NULL};

static const struct tb_conf *cf(const struct sd_connector_ctx *ctx)
{
    return ctx->conf;
}

/* ---- time ------------------------------------------------------------------------------------ */

/* "YYYY-MM-DD", "YYYY-MM-DD HH:MM:SS" or ISO 8601 with optional fraction and Z/±HH:MM → epoch
 * seconds. -1 when unreadable. */
int tb_parse_time(const char *s, int64_t *ret)
{
    int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
    if (!s || sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10) {
        return -1;
    }
    const char *p = s + 10;
    if (*p == 'T' || *p == ' ') {
        int k = 0;
        if (sscanf(p + 1, "%2d:%2d:%2d%n", &h, &mi, &sec, &k) != 3 || k != 8) {
            return -1;
        }
        p += 9;
        if (*p == '.') {
            p++;
            while (*p >= '0' && *p <= '9') {
                p++;
            }
        }
    }
    int64_t off = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, k = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &k) != 2 || k != 5) {
            return -1;
        }
        off = (*p == '-' ? -1 : 1) * (oh * 3600 + om * 60);
        p += 6;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) {
        return -1;
    }
    *ret = sd_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
    return 0;
}

/* The API's GMT date-time form "YYYY-MM-DD HH:MM:SS". */
static void format_gmt(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%d %H:%M:%S", &tm);
}

static void check(const void *conf, struct sd_issues *errors)
{
    const struct tb_conf *c = conf;
    int64_t t;
    if (tb_parse_time(c->backfill_start, &t) < 0 || strlen(c->backfill_start) != 10) {
        sd_issues_add(errors, "/settings/backfill_start", "must be a date YYYY-MM-DD");
    }
    for (int i = 0; i < 3; i++) {
        if (c->currency[i] < 'A' || c->currency[i] > 'Z') {
            sd_issues_add(errors, "/settings/currency", "must be an uppercase ISO 4217 code");
            break;
        }
    }
    if (!c->pull_fans && !c->pull_tickets && !c->pull_activities && !c->push_fans &&
        !c->push_tickets) {
        sd_issues_add(errors, "/settings",
                      "pull_fans, pull_tickets and pull_activities are all off and nothing is "
                      "pushed");
    }
    tb_tags_check(c, errors);
}

/* ---- requests -------------------------------------------------------------------------------- */

/* base + path + "?" + name=value pairs (values escaped; NULL values left out). */
char *tb_build_url(const struct tb_conf *c, const char *path, const char *const *params)
{
    struct sd_buf b;
    sd_buf_init(&b);
    size_t bl = strlen(c->base_url);
    bool slash = bl > 0 && c->base_url[bl - 1] == '/';
    sd_buf_printf(&b, "%.*s%s%s", (int)(slash ? bl - 1 : bl), c->base_url,
                  path[0] == '/' ? "" : "/", path);
    char sep = strchr(path, '?') ? '&' : '?';
    for (size_t i = 0; params[i]; i += 2) {
        if (!params[i + 1]) {
            continue;
        }
        char *v = sd_http_url_escape(params[i + 1]);
        sd_buf_printf(&b, "%c%s=%s", sep, params[i], v);
        free(v);
        sep = '&';
    }
    return sd_buf_steal(&b);
}

/* GET url and return its JSON object answer in *ret_doc; 0 or the run's failure. */
int tb_fetch_page(struct tb_run *run, const char *what, const char *url, json_t **ret_doc)
{
    struct sd_connector_ctx *ctx = run->ctx;
    *ret_doc = NULL;
    int r = sd_connector_quota_take(ctx, 1);
    if (r < 0) {
        return sd_connector_fail(ctx, r, "%s: the call quota could not be taken (%s)", what,
                                 r == -ECANCELED ? "stopped" : "ledger error");
    }
    const char *headers[] = {"Accept: application/json", run->h_key, run->h_secret, NULL};
    struct sd_http_request rq = {
        .url = url, .headers = headers, .timeout_ms = cf(ctx)->timeout_seconds * 1000};
    struct sd_http_retry pol = {.max_attempts = (int)cf(ctx)->max_attempts,
                                .initial_ms = cf(ctx)->retry_initial_ms,
                                .max_wait_s = cf(ctx)->max_wait_seconds,
                                .stop = ctx->stop};
    struct sd_http_response resp;
    int attempts = 0;
    r = sd_http_fetch_retry(&rq, &pol, &resp, &attempts);
    if (attempts > 1) {
        /* The repeats were made already: count them so the ledger stays true. */
        int q = sd_connector_quota_take(ctx, attempts - 1);
        if (q < 0 && q != -E2BIG && r == 0) {
            r = q;
            sd_utf8_snprintf(resp.error, sizeof(resp.error), "%s",
                             q == -ECANCELED ? "stopped" : "the call quota ledger failed");
        }
    }
    if (r < 0) {
        r = sd_connector_fail(ctx, r, "%s failed after %d attempt(s): %s", what, attempts,
                              resp.error[0] ? resp.error : "stopped");
        goto out;
    }
    enum sd_verdict verdict = sd_http_classify(0, resp.status);
    if (verdict != SD_VERDICT_OK) {
        r = sd_connector_fail(ctx, -EIO, "%s: HTTP %ld after %d attempt(s) (%s)", what, resp.status,
                              attempts, verdict == SD_VERDICT_REJECT ? "refused" : "gave up");
        goto out;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len,
                             JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(doc) || !json_is_array(json_object_get(doc, "data"))) {
        json_decref(doc);
        r = sd_connector_fail(ctx, -EPROTO, "%s: the answer is not {\"meta\", \"data\": [...]}",
                              what);
        goto out;
    }
    const char *st = json_string_value(json_object_get(json_object_get(doc, "meta"), "status"));
    if (st && strcmp(st, "error") == 0) {
        json_decref(doc);
        r = sd_connector_fail(ctx, -EPROTO, "%s: the answer says meta.status \"error\"", what);
        goto out;
    }
    *ret_doc = doc;
    r = 0;
out:
    sd_http_response_release(&resp);
    return r;
}

/* ---- shaping and mapping --------------------------------------------------------------------- */

/* A JSON id (integer or string) as a string, or NULL. */
json_t *tb_id_string(const json_t *v)
{
    if (json_is_integer(v)) {
        return json_sprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
    }
    if (json_is_string(v) && json_string_length(v) > 0) {
        return json_copy((json_t *)v);
    }
    return NULL;
}

/* A boolean the API may send as true/false, 0/1 or "0"/"1"/"true"/"false". -1: absent. */
int tb_truth(const json_t *v)
{
    if (json_is_boolean(v)) {
        return json_is_true(v);
    }
    if (json_is_integer(v)) {
        return json_integer_value(v) != 0;
    }
    const char *s = json_string_value(v);
    if (s) {
        return strcmp(s, "1") == 0 || strcmp(s, "true") == 0 || strcmp(s, "True") == 0;
    }
    return -1;
}

/* A fan as a source record: fan_id a string, consent as ad_opt_out (opt-out wins; an explicit
 * subscription is consent; neither says nothing), nested members dropped. */
json_t *tb_shape_fan(const json_t *fan)
{
    json_t *o = json_deep_copy(fan);
    json_object_set_new(o, "fan_id", tb_id_string(json_object_get(fan, "fan_id")));
    json_object_del(o, "fields");
    json_object_del(o, "tags");
    int optout = tb_truth(json_object_get(fan, "is_optout"));
    int sub = tb_truth(json_object_get(fan, "is_subscribed"));
    if (optout == 1) {
        json_object_set_new(o, "ad_opt_out", json_true());
    } else if (sub == 1) {
        json_object_set_new(o, "ad_opt_out", json_false());
    }
    return o;
}

/* A ticket as a sale source record: the fan's id (or ANON), amounts as decimal text. */
static json_t *shape_sale(const json_t *t)
{
    json_t *o = json_deep_copy(t);
    json_t *fid = tb_id_string(json_object_get(json_object_get(t, "fan"), "fan_id"));
    json_object_set_new(o, "fan_id", fid ? fid : json_string("ANON"));
    json_object_del(o, "fan");
    const json_t *paid = json_object_get(t, "paid_amount");
    if (json_is_real(paid)) {
        json_object_set_new(o, "paid_amount", json_sprintf("%.15g", json_real_value(paid)));
    }
    return o;
}

/* A ticket's event fields as an event source record; the date and time are the wall clock of
 * event_date as written (its own offset). NULL when the ticket names no event. */
static json_t *shape_event(const json_t *t)
{
    const char *key = json_string_value(json_object_get(t, "event_key"));
    const char *when = json_string_value(json_object_get(t, "event_date"));
    if (!key || !*key) {
        return NULL;
    }
    json_t *o = json_object();
    json_object_set_new(o, "event_key", json_string(key));
    json_object_set(o, "event_name", json_object_get(t, "event_name"));
    json_object_set(o, "venue_name", json_object_get(t, "venue_name"));
    json_object_set(o, "event_hall", json_object_get(t, "venue_name"));
    if (when && strlen(when) >= 10) {
        json_object_set_new(o, "event_day", json_stringn(when, 10));
        if (strlen(when) >= 19 && (when[10] == 'T' || when[10] == ' ')) {
            json_object_set_new(o, "event_time", json_stringn(when + 11, 8));
        }
    }
    return o;
}

/* The default mapping, with the instance's mapping laid over it member by member. */
static int build_mapping(struct tb_run *run)
{
    struct sd_connector_ctx *ctx = run->ctx;
    json_t *spec =
        json_pack("{s:{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}, "
                  "s:{}, s:{s:s, s:s, s:i, "
                  "s:s},"
                  " s:{}, s:s}",
                  "fields", "fan_id", "customer_id", "ticket_key", "invoice_number", "event_key",
                  "event_id", "purchase_timestamp", "purchase_datetime", "num_seats", "quantity",
                  "paid_amount", "sales_price", "event_name", "title", "venue_name", "venue",
                  "event_hall", "hall", "event_day", "date", "event_time", "time", "postal_code",
                  "post_code", "sale_status", "status", "deleted_at", "status_changed_at", "values",
                  "constants", "currency", cf(ctx)->currency, "ticket_category", "regular",
                  "capacity", 0, "city", cf(ctx)->event_city, "formats", "unmapped", "drop");
    if (!spec) {
        return -ENOMEM;
    }
    json_t *mine = ctx->mapping ? sd_mapping_to_json(ctx->mapping) : NULL;
    bool configured = false;
    const char *parts[] = {"fields", "values", "constants", "formats"};
    for (size_t i = 0; mine && i < 4; i++) {
        json_t *m = json_object_get(mine, parts[i]);
        if (json_object_size(m) > 0) {
            configured = true;
            json_object_update(json_object_get(spec, parts[i]), m);
        }
    }
    if (configured) {
        json_object_set(spec, "unmapped", json_object_get(mine, "unmapped"));
    }
    json_decref(mine);
    struct sd_issues errors;
    sd_issues_init(&errors, 4);
    int r = sd_mapping_new(spec, &run->mapping, &errors);
    if (r < 0) {
        r = sd_connector_fail(ctx, -EINVAL, "the mapping with its defaults is refused: %s %s",
                              errors.n ? errors.items[0].pointer : "",
                              errors.n ? errors.items[0].message : "");
    }
    sd_issues_release(&errors);
    json_decref(spec);
    return r;
}

/* Map one shaped record into body[kind]; false (with the issue) when refused. */
static bool map_into(struct tb_run *run, enum sd_kind kind, const json_t *src, const char *ptr,
                     json_t *body, struct sd_issues *errors)
{
    json_t *rec = sd_mapping_apply_object(run->mapping, kind, src, ptr, errors);
    if (!rec) {
        return false;
    }
    const char *name = sd_kind_array_name(kind);
    json_t *arr = json_object_get(body, name);
    if (!arr) {
        arr = json_array();
        json_object_set_new(body, name, arr);
    }
    json_array_append_new(arr, rec);
    return true;
}

/* Store a page's body with its cursor. reject_page: a page with `bad` records the mapping
 * refused (issues in mapped), or one the store refuses, fails the run and nothing of it is
 * stored. skip_records: the good records are stored and the others counted for the warning. */
static int store_page(struct tb_run *run, const char *what, const json_t *body,
                      const json_t *cursor, size_t n, size_t bad, const struct sd_issues *mapped)
{
    struct sd_connector_ctx *ctx = run->ctx;
    bool skip = cf(ctx)->policy == TB_POLICY_SKIP_RECORDS;
    if (bad > 0 && !skip) {
        return sd_connector_fail(ctx, -EINVAL, "%s refused (%zu bad record(s)); first: %s %s", what,
                                 bad, mapped->items[0].pointer, mapped->items[0].message);
    }
    ctx->records_rejected += bad;
    struct sd_ingest_outcome out;
    sd_ingest_outcome_init(&out);
    int r = sd_connector_commit(ctx, body, cursor, skip, &out);
    if (r < 0) {
        r = sd_connector_fail(ctx, r, "storing %s failed", what);
    } else if (out.status != 202) {
        r = sd_connector_fail(ctx, -EINVAL, "%s refused, nothing of it stored: %s %s", what,
                              out.errors.n ? out.errors.items[0].pointer : "",
                              out.errors.n ? out.errors.items[0].message : "");
    } else {
        atomic_fetch_add(ctx->progress, n);
        if (out.n_skipped + bad > 0) {
            if (!run->first_skip) {
                /* A mapping refusal points into the page as fetched; the store's into the
                 * records the mapping kept. */
                const struct sd_issues *is = bad > 0 ? mapped : &out.errors;
                run->first_skip = sd_asprintf("%s: %s %s", what, is->n ? is->items[0].pointer : "",
                                              is->n ? is->items[0].message : "");
            }
            run->skipped += out.n_skipped + bad;
        }
    }
    sd_ingest_outcome_release(&out);
    return r;
}

/* The committed cursor with `name` replaced by v (stolen). New reference. */
json_t *tb_cursor_with(struct sd_connector_ctx *ctx, const char *name, json_t *v)
{
    json_t *c = json_is_object(ctx->cursor) ? json_deep_copy(ctx->cursor) : json_object();
    json_object_set_new(c, name, v);
    return c;
}

bool tb_stopping(struct sd_connector_ctx *ctx)
{
    return ctx->stop && atomic_load(ctx->stop);
}

/* Whether the record of remote id `id` was written by this instance's push (no echo):
 * tickets by the remote reference its delivery recorded (sale ↔ ticket id), fans by the note
 * a fan create leaves (TB_REF_FAN_CREATED). A store error counts as not (the record is pulled,
 * as before the push existed). */
bool tb_pushed_here(struct tb_run *run, const char *kind, const json_t *id, bool by_local)
{
    json_t *s = tb_id_string(id);
    if (!s) {
        return false;
    }
    char *other = NULL;
    int r = by_local ? sd_connector_remote_ref_get(run->ctx, kind, json_string_value(s), &other)
                     : sd_connector_remote_ref_find(run->ctx, kind, json_string_value(s), &other);
    free(other);
    json_decref(s);
    return r == 0;
}

/* ---- fans ------------------------------------------------------------------------------------ */

static int pull_fans(struct tb_run *run)
{
    struct sd_connector_ctx *ctx = run->ctx;
    for (;;) {
        if (tb_stopping(ctx)) {
            return sd_connector_fail(ctx, -ECANCELED,
                                     "stopped; the next run resumes from the "
                                     "committed cursor");
        }
        const char *key = json_string_value(json_object_get(ctx->cursor, "fans"));
        const char *params[] = {"last_update_date", key ? NULL : cf(ctx)->backfill_start,
                                "min_time_key", key, NULL};
        char *url = tb_build_url(cf(ctx), cf(ctx)->fans_updated_path, params);
        char what[160];
        sd_utf8_snprintf(what, sizeof(what), "fans page after '%s'",
                         key ? key : cf(ctx)->backfill_start);
        json_t *doc = NULL;
        int r = tb_fetch_page(run, what, url, &doc);
        free(url);
        if (r < 0) {
            return r;
        }
        const json_t *data = json_object_get(doc, "data");
        const char *next =
            json_string_value(json_object_get(json_object_get(doc, "meta"), "max_fan_time_key"));
        size_t n = json_array_size(data);
        if (n > 0 && (!next || (key && strcmp(next, key) == 0))) {
            json_decref(doc);
            return sd_connector_fail(ctx, -EPROTO, "%s: meta.max_fan_time_key is %s", what,
                                     next ? "the cursor sent (it does not move)" : "missing");
        }
        json_t *body = json_object();
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        size_t i;
        json_t *fan;
        size_t bad = 0;
        json_array_foreach(data, i, fan)
        {
            if (tb_pushed_here(run, TB_REF_FAN_CREATED, json_object_get(fan, "fan_id"), true)) {
                run->echoes++;
                continue; /* a fan this instance created: the hub's own customer */
            }
            char ptr[64];
            sd_utf8_snprintf(ptr, sizeof(ptr), "/data/%zu", i);
            json_t *src = tb_shape_fan(fan);
            bad += !map_into(run, SD_KIND_CUSTOMER, src, ptr, body, &errors);
            json_decref(src);
        }
        if (n > 0) {
            json_t *cursor = tb_cursor_with(ctx, "fans", json_string(next));
            r = store_page(run, what, body, cursor, n, bad, &errors);
            json_decref(cursor);
        }
        sd_issues_release(&errors);
        json_decref(body);
        json_decref(doc);
        if (r < 0 || n < (size_t)cf(ctx)->fans_page_size) {
            return r;
        }
    }
}

/* ---- tickets --------------------------------------------------------------------------------- */

/* The tickets cursor: {"lo", "hi"?, "after"?, "seen"?, "snap", "next_lo"?} (times
 * "YYYY-MM-DD HH:MM:SS"). A sweep is the backfill (its closed windows and the open one) or one
 * open window after it; a change may be missed only when it happens after the sweep's first
 * page was read, and then it carries a later timestamp than anything the server had reported
 * by that page. So the next sweep starts at next_lo: `seen` (the latest last update ever
 * reported) as it stood after the sweep's first page ("snap": taken). Using the latest
 * timestamp of the whole sweep would lose a ticket that changed after its page was read while
 * a ticket on a later page changed after it. No clock of ours enters: only timestamps the
 * server reported. */
struct tk_window {
    int64_t lo, hi;  /* hi < 0: open */
    int64_t after;   /* < 0: from the window's start */
    int64_t seen;    /* < 0: none reported yet */
    bool snap;       /* next_lo taken for this sweep */
    int64_t next_lo; /* < 0: none (the sweep after starts at backfill_start) */
};

static void put_time(json_t *o, const char *name, int64_t v)
{
    if (v >= 0) {
        char t[32];
        format_gmt(v, t);
        json_object_set_new(o, name, json_string(t));
    }
}

static int64_t get_time(const json_t *o, const char *name)
{
    int64_t t;
    return tb_parse_time(json_string_value(json_object_get(o, name)), &t) == 0 ? t : -1;
}

static json_t *window_json(const struct tk_window *w)
{
    json_t *o = json_object();
    put_time(o, "lo", w->lo);
    put_time(o, "hi", w->hi);
    if (w->after >= 0) {
        json_object_set_new(o, "after", json_integer(w->after));
    }
    put_time(o, "seen", w->seen);
    json_object_set_new(o, "snap", json_boolean(w->snap));
    put_time(o, "next_lo", w->next_lo);
    return o;
}

/* The window starting at lo: closed (partition_days long) while it ends more than a day before
 * the hub's clock, else open. The clock only decides how the history is cut, never what a
 * window covers: the last one is open whatever the clocks say. */
static void window_at(const struct tb_conf *c, int64_t lo, struct tk_window *w)
{
    int64_t hi = lo + c->partition_days * 86400 - 1;
    w->lo = lo;
    w->hi = hi < (int64_t)time(NULL) - 86400 ? hi : -1;
    w->after = -1;
}

static int window_from_cursor(struct sd_connector_ctx *ctx, struct tk_window *w)
{
    const json_t *c = json_object_get(ctx->cursor, "tickets");
    if (!c) {
        int64_t t = 0;
        tb_parse_time(cf(ctx)->backfill_start, &t);
        window_at(cf(ctx), t, w);
        w->seen = w->next_lo = -1;
        w->snap = false;
        return 0;
    }
    w->lo = get_time(c, "lo");
    if (w->lo < 0) {
        return sd_connector_fail(ctx, -EINVAL, "the committed tickets cursor is unreadable");
    }
    w->hi = get_time(c, "hi");
    const json_t *a = json_object_get(c, "after");
    w->after = json_is_integer(a) ? json_integer_value(a) : -1;
    w->seen = get_time(c, "seen");
    w->snap = json_is_true(json_object_get(c, "snap"));
    w->next_lo = get_time(c, "next_lo");
    return 0;
}

/* A deleted ticket's sale: cancel stores it cancelled (into the page's body); tombstone
 * queues the deletion of its invoice (run->deletions), applied before the page is stored. */
static bool delete_sale(struct tb_run *run, const json_t *src, const char *ptr, json_t *body,
                        struct sd_issues *errors)
{
    if (cf(run->ctx)->deleted_policy == TB_DELETED_CANCEL) {
        return map_into(run, SD_KIND_SALE, src, ptr, body, errors);
    }
    json_t *rec = sd_mapping_apply_object(run->mapping, SD_KIND_SALE, src, ptr, errors);
    const char *inv = json_string_value(json_object_get(rec, "invoice_number"));
    if (inv && *inv) {
        json_array_append_new(run->deletions, json_string(inv));
    }
    json_decref(rec);
    return rec != NULL;
}

/* Shape one ticket page into body; the ids and last update seen go to w. */
static size_t ticket_page_body(struct tb_run *run, const json_t *data, json_t *body,
                               struct tk_window *w, int64_t *page_max, struct sd_issues *errors)
{
    json_t *seen_events = json_object(), *seen_fans = json_object();
    size_t bad = 0, i;
    json_t *t;
    json_array_foreach(data, i, t)
    {
        const json_t *tid = json_object_get(t, "ticket_id");
        if (json_is_integer(tid) && json_integer_value(tid) > w->after) {
            w->after = json_integer_value(tid);
        }
        int64_t up;
        const char *updated = json_string_value(json_object_get(t, "last_updated_timestamp"));
        if (tb_parse_time(updated, &up) == 0 && up > *page_max) {
            *page_max = up;
        }
        if (tb_pushed_here(run, "sale", tid, false)) {
            run->echoes++;
            continue; /* a ticket this instance pushed: the hub's own sale */
        }
        bool deleted = tb_truth(json_object_get(t, "is_deleted")) == 1;
        if (deleted && cf(run->ctx)->deleted_policy == TB_DELETED_SKIP) {
            run->deleted_skipped++;
            continue;
        }
        char ptr[64];
        sd_utf8_snprintf(ptr, sizeof(ptr), "/data/%zu", i);
        json_t *ev = shape_event(t);
        const char *ek = json_string_value(json_object_get(t, "event_key"));
        if (ev && !json_object_get(seen_events, ek)) {
            json_object_set_new(seen_events, ek, json_true());
            bad += !map_into(run, SD_KIND_EVENT, ev, ptr, body, errors);
        }
        json_decref(ev);
        const json_t *fan = json_object_get(t, "fan");
        json_t *fid = tb_id_string(json_object_get(fan, "fan_id"));
        if (fid && !json_object_get(seen_fans, json_string_value(fid))) {
            json_object_set_new(seen_fans, json_string_value(fid), json_true());
            char fptr[80];
            sd_utf8_snprintf(fptr, sizeof(fptr), "%s/fan", ptr);
            json_t *src = tb_shape_fan(fan);
            bad += !map_into(run, SD_KIND_CUSTOMER, src, fptr, body, errors);
            json_decref(src);
        }
        json_decref(fid);
        json_t *src = shape_sale(t);
        if (deleted && cf(run->ctx)->deleted_policy == TB_DELETED_CANCEL) {
            /* A cancelled sale counts for nothing (no tickets, no spend) and is final. */
            json_object_set_new(src, "sale_status", json_string("cancelled"));
            json_object_set(src, "deleted_at", json_object_get(t, "last_updated_timestamp"));
        }
        if (deleted) {
            bad += !delete_sale(run, src, ptr, body, errors);
        } else {
            bad += !map_into(run, SD_KIND_SALE, src, ptr, body, errors);
        }
        json_decref(src);
    }
    json_decref(seen_events);
    json_decref(seen_fans);
    return bad;
}

/* tombstone: the page's deletions, committed before its records and cursor: a crash in
 * between reads the page again, whose deletions then find nothing left to delete. */
static int apply_deletions(struct tb_run *run, const char *what)
{
    struct sd_connector_ctx *ctx = run->ctx;
    size_t n = json_array_size(run->deletions);
    if (n == 0) {
        return 0;
    }
    struct sd_deletion *v = calloc(n, sizeof(*v));
    if (!v) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        v[i].kind = SD_KIND_SALE;
        v[i].id = json_string_value(json_array_get(run->deletions, i));
        v[i].reason = SD_TOMBSTONE_DELETED;
    }
    struct sd_deletion_outcome gone = {0};
    int r = sd_hub_delete_records_fenced(ctx->hub, ctx->tenant_id, ctx->env, v, n, ctx->id,
                                         ctx->run_fence, &gone);
    free(v);
    if (r < 0) {
        return sd_connector_fail(ctx, r, "%s: storing its deletions failed", what);
    }
    run->tombstoned += gone.n_deleted;
    return 0;
}

static int pull_tickets(struct tb_run *run)
{
    struct sd_connector_ctx *ctx = run->ctx;
    struct tk_window w = {0};
    int r = window_from_cursor(ctx, &w);
    char page_size[24];
    sd_utf8_snprintf(page_size, sizeof(page_size), "%lld", (long long)cf(ctx)->tickets_page_size);
    while (r == 0) {
        if (tb_stopping(ctx)) {
            return sd_connector_fail(ctx, -ECANCELED,
                                     "stopped; the next run resumes from the "
                                     "committed cursor");
        }
        char lo[32], hi[32], after[24];
        format_gmt(w.lo, lo);
        if (w.hi >= 0) {
            format_gmt(w.hi, hi);
        }
        sd_utf8_snprintf(after, sizeof(after), "%lld", (long long)w.after);
        const char *params[] = {"min_last_update_date",
                                lo,
                                "max_last_update_date",
                                w.hi >= 0 ? hi : NULL,
                                "min_ticket_id",
                                w.after >= 0 ? after : NULL,
                                "include_deleted",
                                "true",
                                "data",
                                "fan",
                                "limit",
                                page_size,
                                NULL};
        char *url = tb_build_url(cf(ctx), cf(ctx)->tickets_path, params);
        char what[160];
        sd_utf8_snprintf(what, sizeof(what), "tickets page updated %s..%s after id %s", lo,
                         w.hi >= 0 ? hi : "", w.after >= 0 ? after : "-");
        json_t *doc = NULL;
        r = tb_fetch_page(run, what, url, &doc);
        free(url);
        if (r < 0) {
            return r;
        }
        const json_t *data = json_object_get(doc, "data");
        size_t n = json_array_size(data);
        json_t *body = json_object();
        struct sd_issues errors;
        sd_issues_init(&errors, SD_MAX_ISSUES);
        int64_t before = w.after, page_max = -1;
        size_t bad = ticket_page_body(run, data, body, &w, &page_max, &errors);
        bool last = n < (size_t)cf(ctx)->tickets_page_size;
        bool open = w.hi < 0;
        if (page_max > w.seen) {
            w.seen = page_max;
        }
        if (!w.snap) {
            w.snap = true; /* the sweep's first page */
            w.next_lo = w.seen;
        }
        if (n > 0 && w.after <= before) {
            r = sd_connector_fail(ctx, -EPROTO, "%s: the ticket ids do not move forward", what);
        } else {
            if (last) {
                /* The window is done: the next one, or, after the open window, the next sweep
                 * from next_lo (inclusive, so equal timestamps are not lost). After the
                 * backfill every sweep is one open window. */
                if (open) {
                    int64_t t = 0;
                    tb_parse_time(cf(ctx)->backfill_start, &t);
                    w.lo = w.next_lo >= 0 ? w.next_lo : t;
                    w.after = -1;
                    w.snap = false;
                    w.next_lo = -1;
                } else {
                    window_at(cf(ctx), w.hi + 1, &w);
                }
            }
            json_t *cursor = tb_cursor_with(ctx, "tickets", window_json(&w));
            r = bad > 0 && cf(ctx)->policy != TB_POLICY_SKIP_RECORDS ? 0
                                                                     : apply_deletions(run, what);
            if (r == 0) {
                r = store_page(run, what, body, cursor, n, bad, &errors);
            }
            json_decref(cursor);
            json_array_clear(run->deletions);
        }
        sd_issues_release(&errors);
        json_decref(body);
        json_decref(doc);
        if (last && open) {
            break;
        }
    }
    return r;
}

/* ---- run ------------------------------------------------------------------------------------- */

static int tb_run(struct sd_connector_ctx *ctx, void *state)
{
    (void)state;
    struct tb_run run = {.ctx = ctx, .deletions = json_array()};
    /* Segments whose tag sync is due are queued first, whatever the pull does. */
    if (tb_tags_schedule(ctx) < 0) {
        sd_log(SD_LOG_WARN, "the segments' tag syncs could not be queued; the next run tries again",
               "[tradablebits/%s]", ctx->id);
    }
    int r = build_mapping(&run);
    if (r == 0 && (sd_http_header("Api-Key", cf(ctx)->api_key, &run.h_key) < 0 ||
                   sd_http_header("Api-Secret", cf(ctx)->api_secret, &run.h_secret) < 0)) {
        r = sd_connector_fail(ctx, -EINVAL, "api_key or api_secret cannot be sent as a header");
    }
    if (r == 0 && cf(ctx)->pull_fans) {
        r = pull_fans(&run);
    }
    if (r == 0 && cf(ctx)->pull_tickets) {
        r = pull_tickets(&run);
    }
    if (r == 0 && cf(ctx)->pull_activities) {
        r = tb_pull_activities(&run);
    }
    if (r == 0 && (run.deleted_skipped > 0 || run.skipped > 0 || run.activities_unmatched > 0)) {
        /* Stored what it could; the warning says what was left out in this run. */
        char deleted[96] = "", skipped[1024] = "", unmatched[1024] = "";
        if (run.deleted_skipped > 0) {
            sd_utf8_snprintf(deleted, sizeof(deleted),
                             "%llu deleted ticket(s) skipped (deleted_tickets is skip)",
                             (unsigned long long)run.deleted_skipped);
        }
        if (run.skipped > 0) {
            sd_utf8_snprintf(skipped, sizeof(skipped), "%llu record(s) skipped; first: %s",
                             (unsigned long long)run.skipped, run.first_skip);
        }
        if (run.activities_unmatched > 0) {
            sd_utf8_snprintf(unmatched, sizeof(unmatched),
                             "%llu activit(ies) left out, their fan could not be stored; "
                             "first: %s",
                             (unsigned long long)run.activities_unmatched, run.first_unmatched);
        }
        sd_connector_fail(ctx, 0, "%s%s%s%s%s", deleted, deleted[0] && skipped[0] ? "; " : "",
                          skipped, (deleted[0] || skipped[0]) && unmatched[0] ? "; " : "",
                          unmatched);
    }
    free(run.first_skip);
    free(run.first_unmatched);
    json_decref(run.deletions);
    sd_http_header_free(run.h_key);
    sd_http_header_free(run.h_secret);
    sd_mapping_free(run.mapping);
    return r < 0 ? r : 0;
}

static const char *const operations[] = {TB_OP_TICKET, TB_OP_FAN, TB_OP_SYNC_TAG, NULL};
static const char *const batch_operations[] = {TB_OP_TICKET, NULL};

const struct sd_connector sd_connector_tradablebits = {
    .name = "tradablebits",
    .kind = SD_CONNECTOR_SOURCE | SD_CONNECTOR_TARGET,
    .help = "fans (customers) and tickets (sales, events) from the Tradable Bits CRM API, and "
            "the hub's sales as tickets, customers as fans and segments as fan tags back to it",
    .operations = operations,
    .on_change = tb_on_change,
    .deliver = tb_deliver,
    .batch_operations = batch_operations,
    .batch_max = TB_BULK_MAX,
    .deliver_batch = tb_deliver_batch,
    .settings = settings,
    .settings_size = sizeof(struct tb_conf),
    .default_schedule = "every 15m",
    .run = tb_run,
    .check = check,
    .quotas = quotas,
    .credential_settings = credential_settings,
    .segment_operation = TB_OP_SYNC_TAG,
    .segment_dry_run = true,
};
