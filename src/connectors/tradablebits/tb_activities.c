/* tb_activities.c — the activities stream of the `tradablebits` pull (setting pull_activities):
 * a fan's contest entries, campaign sign-ups and other campaign actions, kept on the fan's
 * customer record as the figures a venue's data team segments by:
 *   activity_count          how many activities the fan has had (since backfill)
 *   last_activity_at        the latest activity's creation_timestamp, UTC "YYYY-MM-DDTHH:MM:SSZ"
 *   last_activity_type      its app_type (the kind of campaign: contest, quiz …)
 *   last_activity_campaign  its campaign_title
 * and the consent an entry carries: an activity with is_subscribed is an explicit opt-in through
 * the campaign's form, so a customer not opted out becomes ad_opt_out false; a stored opt-out
 * is never undone by it (opt-out wins). Segments read these fields through the `customer` rule
 * (activities, last_activity, last_activity_type, last_activity_campaign).
 *
 * The list is read in ascending activity_id; min_activity_id is exclusive, so the cursor is the
 * last activity id stored. Each page is aggregated per fan and stored by ONE write job with its
 * cursor: the job reads each fan's stored figures in its own transaction and writes them
 * increased, so a count is exact whatever stops the run: a page is counted with its cursor or
 * not at all, and a restart between pages fetches nothing twice.
 *
 * A fan the hub does not hold yet (pull_fans off, or the fan is newer than the fans stream's
 * last page) is created from the fan structure the page carries (include_details), through the
 * instance's mapping like any fan. An activity whose fan cannot be stored — no fan structure
 * (the fan was deleted at the vendor), a fan this instance's push created (no echo: its
 * customer belongs to another source), or a record the mapping or validation refuses — is left
 * out and counted in the run's warning; its cursor still moves. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "core/connector.h"
#include "core/ingest.h"
#include "mapping/mapping.h"
#include "model/model.h"

#include "connectors/tradablebits/tradablebits.h"

struct page {
    struct tb_run *run;
    const char *what;
    struct tb_act_page agg;
    json_t *cursor;
    /* out of the job */
    uint64_t unmatched;
    char *first_unmatched;
    uint64_t stored;
    char *refused; /* the store's refusal, or NULL */
};

static void note_unmatched(struct page *pg, int64_t n, const json_t *fan_id, const char *why)
{
    pg->unmatched += (uint64_t)n;
    if (!pg->first_unmatched) {
        pg->first_unmatched = sd_asprintf("fan %s: %s", json_string_value(fan_id), why);
    }
}

static void format_utc(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

json_t *tb_act_record(const struct tb_act_fan *a, const char *cid, const json_t *stored,
                      const char **ret_why)
{
    json_t *rec;
    int64_t count = a->n, stored_last = -1;
    int opted_out = 0;
    if (stored) {
        rec = json_object();
        json_object_set_new(rec, "customer_id", json_string(cid));
        const json_t *email = json_object_get(stored, "email");
        if (json_is_string(email)) {
            json_object_set(rec, "email", (json_t *)email);
        }
        const json_t *c = json_object_get(stored, "activity_count");
        if (json_is_integer(c) && json_integer_value(c) > 0 &&
            json_integer_value(c) <= INT64_MAX - count) {
            count += json_integer_value(c);
        }
        const char *at = json_string_value(json_object_get(stored, "last_activity_at"));
        if (at && tb_parse_time(at, &stored_last) < 0) {
            stored_last = -1;
        }
        opted_out = json_is_true(json_object_get(stored, "ad_opt_out"));
    } else if (a->pushed) {
        *ret_why = "created by this instance's push (its customer is the hub's own)";
        return NULL;
    } else if (!json_is_object(a->fan_rec)) {
        *ret_why = a->why ? a->why : "unknown to the hub and the page carries no fan";
        return NULL;
    } else {
        rec = json_deep_copy(a->fan_rec);
        opted_out = json_is_true(json_object_get(rec, "ad_opt_out"));
        /* the activity figures are computed here, never taken from the vendor's fan */
        json_object_del(rec, "last_activity_at");
        json_object_del(rec, "last_activity_type");
        json_object_del(rec, "last_activity_campaign");
    }
    json_object_set_new(rec, "activity_count", json_integer(count));
    if (a->last && a->last_t >= stored_last) {
        char t[32];
        format_utc(a->last_t, t);
        json_object_set_new(rec, "last_activity_at", json_string(t));
        const json_t *type = json_object_get(a->last, "app_type");
        const json_t *camp = json_object_get(a->last, "campaign_title");
        json_object_set_new(rec, "last_activity_type",
                            json_is_string(type) ? json_copy((json_t *)type) : json_null());
        json_object_set_new(rec, "last_activity_campaign",
                            json_is_string(camp) ? json_copy((json_t *)camp) : json_null());
    }
    if (a->opt_in && !opted_out) {
        json_object_set_new(rec, "ad_opt_out", json_false());
    }
    return rec;
}

/* The record for fan a (tb_act_record), validated: NULL, noted as left out, when it cannot be
 * stored; refused records are left out one by one, never with the whole page. */
static json_t *fan_record(struct page *pg, const struct tb_act_fan *a, const char *cid,
                          const json_t *stored)
{
    const char *why = NULL;
    json_t *rec = tb_act_record(a, cid, stored, &why);
    if (!rec) {
        note_unmatched(pg, a->n, a->fan_id, why);
        return NULL;
    }
    struct sd_issues errors, warnings;
    sd_issues_init(&errors, 1);
    sd_issues_init(&warnings, 1);
    struct sd_customer_rec cr = {0};
    int r = sd_validate_customer(rec, "", &cr, &errors, &warnings);
    if (r < 0 || errors.total > 0) {
        note_unmatched(pg, a->n, a->fan_id, errors.n ? errors.items[0].message : "refused");
        json_decref(rec);
        rec = NULL;
    } else {
        sd_customer_rec_release(&cr);
    }
    sd_issues_release(&errors);
    sd_issues_release(&warnings);
    return rec;
}

/* Store the records gathered in *customers (emptied); 0, 1 (refused: undo the page) or the
 * store's negative errno. */
static int flush(struct sd_connector_job *job, struct page *pg, json_t *customers)
{
    if (json_array_size(customers) == 0) {
        return 0;
    }
    json_t *body = json_pack("{s:O}", "customers", customers);
    struct sd_ingest_outcome out;
    sd_ingest_outcome_init(&out);
    int r = sd_connector_job_ingest(job, body, &out);
    if (r == 0 && out.status != 202) {
        pg->refused = sd_asprintf("%s %s", out.errors.n ? out.errors.items[0].pointer : "",
                                  out.errors.n ? out.errors.items[0].message : "refused");
        r = 1; /* undo: nothing of the page, not even its cursor */
    } else if (r == 0) {
        pg->stored += out.n_customers;
    }
    sd_ingest_outcome_release(&out);
    json_decref(body);
    json_array_clear(customers);
    return r;
}

/* On the writer thread: the page's customers, derived from what is stored, with the cursor.
 * The records go to the store in one body; a customer id met again (two fans a custom mapping
 * gives one id) first stores what was gathered, so that its second read sees the first. */
static int page_job(struct sd_connector_job *job, void *arg)
{
    struct page *pg = arg;
    json_t *customers = json_array(), *seen = json_object();
    int r = 0;
    for (size_t i = 0; i < pg->agg.n_fans && r == 0; i++) {
        const struct tb_act_fan *a = &pg->agg.fans[i];
        const char *cid = json_string_value(json_object_get(a->fan_rec, "customer_id"));
        if (!cid) {
            cid = json_string_value(a->fan_id);
        }
        if (json_object_get(seen, cid)) {
            r = flush(job, pg, customers);
            json_object_clear(seen);
            if (r != 0) {
                break;
            }
        }
        json_object_set_new(seen, cid, json_true());
        json_t *stored = NULL;
        r = sd_connector_job_customer(job, cid, &stored);
        if (r < 0 && r != -ENOENT) {
            break;
        }
        r = 0;
        json_t *rec = fan_record(pg, a, cid, stored);
        json_decref(stored);
        if (rec) {
            json_array_append_new(customers, rec);
        }
    }
    if (r == 0) {
        r = flush(job, pg, customers);
    }
    json_decref(customers);
    json_decref(seen);
    if (r == 0) {
        sd_connector_job_reject(job, pg->unmatched + pg->agg.orphans);
        r = sd_connector_job_cursor(job, pg->cursor);
    }
    return r;
}

static struct tb_act_fan *agg_of(struct tb_act_page *pg, json_t *fid)
{
    for (size_t i = 0; i < pg->n_fans; i++) {
        if (json_equal(pg->fans[i].fan_id, fid)) {
            json_decref(fid);
            return &pg->fans[i];
        }
    }
    struct tb_act_fan *a = &pg->fans[pg->n_fans++];
    *a = (struct tb_act_fan){.fan_id = fid, .last_t = -1};
    return a;
}

int tb_act_aggregate(const json_t *data, int64_t *after, struct tb_act_page *pg, size_t *ret_bad)
{
    size_t n = json_array_size(data);
    *pg = (struct tb_act_page){0};
    if (n == 0) {
        return 0;
    }
    pg->fans = calloc(n, sizeof(*pg->fans));
    if (!pg->fans) {
        return -ENOMEM;
    }
    size_t i;
    const json_t *act;
    json_array_foreach(data, i, act)
    {
        const json_t *id = json_object_get(act, "activity_id");
        if (!json_is_integer(id) || json_integer_value(id) <= *after) {
            *ret_bad = i;
            return -EPROTO;
        }
        *after = json_integer_value(id);
        json_t *fid = tb_id_string(json_object_get(act, "fan_id"));
        if (!fid) {
            pg->orphans++;
            continue;
        }
        struct tb_act_fan *a = agg_of(pg, fid);
        a->n++;
        int64_t t;
        const char *when = json_string_value(json_object_get(act, "creation_timestamp"));
        if (!when) {
            when = json_string_value(json_object_get(act, "creation_date"));
        }
        if (when && tb_parse_time(when, &t) == 0 && t >= 0 && t >= a->last_t) {
            a->last_t = t; /* ids ascend: of equal times the later activity wins */
            a->last = act;
        }
        a->opt_in = a->opt_in || tb_truth(json_object_get(act, "is_subscribed")) == 1;
        const json_t *fan = json_object_get(act, "fan");
        if (!a->fan && json_is_object(fan)) {
            a->fan = fan;
            a->fan_index = i;
        }
    }
    return 0;
}

/* Aggregate one page into pg->agg, then each fan's structure as a customer record through the
 * instance's mapping (unless this instance's push created the fan). */
static int aggregate(struct page *pg, const json_t *data, int64_t *after)
{
    struct tb_run *run = pg->run;
    size_t bad = 0;
    int r = tb_act_aggregate(data, after, &pg->agg, &bad);
    if (r == -EPROTO) {
        return sd_connector_fail(run->ctx, -EPROTO,
                                 "%s: activity %zu has no activity_id above the one before",
                                 pg->what, bad);
    }
    if (r < 0) {
        return r;
    }
    for (size_t k = 0; k < pg->agg.n_fans; k++) {
        struct tb_act_fan *a = &pg->agg.fans[k];
        if (!a->fan) {
            continue;
        }
        if (tb_pushed_here(run, TB_REF_FAN_CREATED, a->fan_id, true)) {
            a->pushed = true;
            continue;
        }
        char ptr[64];
        sd_utf8_snprintf(ptr, sizeof(ptr), "/data/%zu/fan", a->fan_index);
        struct sd_issues errors;
        sd_issues_init(&errors, 1);
        json_t *src = tb_shape_fan(a->fan);
        a->fan_rec = sd_mapping_apply_object(run->mapping, SD_KIND_CUSTOMER, src, ptr, &errors);
        if (!a->fan_rec) {
            a->why = sd_asprintf("%s %s", errors.n ? errors.items[0].pointer : ptr,
                                 errors.n ? errors.items[0].message : "refused by the mapping");
        }
        json_decref(src);
        sd_issues_release(&errors);
    }
    return 0;
}

void tb_act_page_release(struct tb_act_page *pg)
{
    for (size_t i = 0; i < pg->n_fans; i++) {
        json_decref(pg->fans[i].fan_id);
        json_decref(pg->fans[i].fan_rec);
        free(pg->fans[i].why);
    }
    free(pg->fans);
    *pg = (struct tb_act_page){0};
}

static void page_release(struct page *pg)
{
    tb_act_page_release(&pg->agg);
    json_decref(pg->cursor);
    free(pg->first_unmatched);
    free(pg->refused);
}

int tb_pull_activities(struct tb_run *run)
{
    struct sd_connector_ctx *ctx = run->ctx;
    const struct tb_conf *c = ctx->conf;
    char limit[24];
    sd_utf8_snprintf(limit, sizeof(limit), "%lld", (long long)c->activities_page_size);
    for (;;) {
        if (tb_stopping(ctx)) {
            return sd_connector_fail(ctx, -ECANCELED,
                                     "stopped; the next run resumes from the committed cursor");
        }
        const json_t *cur = json_object_get(ctx->cursor, "activities");
        int64_t after = json_is_integer(cur) ? json_integer_value(cur) : -1;
        char min[24];
        sd_utf8_snprintf(min, sizeof(min), "%lld", (long long)after);
        const char *params[] = {"min_activity_id",
                                after >= 0 ? min : NULL,
                                "limit",
                                limit,
                                "include_details",
                                "true",
                                NULL};
        char *url = tb_build_url(c, c->activities_path, params);
        char what[96];
        sd_utf8_snprintf(what, sizeof(what), "activities page after id %s", after >= 0 ? min : "-");
        json_t *doc = NULL;
        int r = tb_fetch_page(run, what, url, &doc);
        free(url);
        if (r < 0) {
            return r;
        }
        const json_t *data = json_object_get(doc, "data");
        size_t n = json_array_size(data);
        if (n > (size_t)c->activities_page_size) {
            json_decref(doc);
            return sd_connector_fail(ctx, -EPROTO, "%s: %zu activities, more than the limit", what,
                                     n);
        }
        struct page pg = {.run = run, .what = what};
        if (n > 0) {
            r = aggregate(&pg, data, &after);
        }
        if (r == 0 && n > 0) {
            pg.cursor = tb_cursor_with(ctx, "activities", json_integer(after));
            r = sd_connector_write_job(ctx, page_job, &pg);
            if (r < 0) {
                r = sd_connector_fail(ctx, r, "storing %s failed", what);
            } else if (r == 1 || pg.refused) {
                r = sd_connector_fail(ctx, -EINVAL, "%s refused, nothing of it stored: %s", what,
                                      pg.refused ? pg.refused : "");
            } else {
                atomic_fetch_add(ctx->progress, n);
                run->activities_unmatched += pg.unmatched + pg.agg.orphans;
                if (!run->first_unmatched && (pg.first_unmatched || pg.agg.orphans > 0)) {
                    run->first_unmatched = sd_asprintf(
                        "%s: %s", what, pg.first_unmatched ? pg.first_unmatched : "no fan_id");
                }
            }
        }
        page_release(&pg);
        json_decref(doc);
        if (r < 0 || n < (size_t)c->activities_page_size) {
            return r < 0 ? r : 0;
        }
    }
}
