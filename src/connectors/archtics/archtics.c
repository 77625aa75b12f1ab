/* archtics.c — the `archtics` connector type and its pull streams: accounts, events, sales and
 * returns, and attendance from one Archtics database through ATS (ats.h).
 *
 * Streams, in this order so that a sale finds its customer and event stored:
 *  - accounts: get_accounts_with_updates (incremental) → customer_query per account;
 *  - events: event_details paged alphabetically with prev_event_name, read again every
 *    event_refresh_hours; 11075 (answer too large) halves the page and asks again;
 *  - sales: get_events_with_sales (incremental) → get_ticket_sales per event (incremental, a
 *    cursor per event); returns (trans_type R) become refund records (refund_of);
 *  - attendance: get_attendance_incremental; for every event with new scans, its scans are
 *    counted per sale seat block and the hub's own sales of it (read back locally, never
 *    fetched again) sent again with attended_quantity where it changed.
 *  - seats: seats_sold per season-ticket holder (plan seat blocks), every
 *    seats_refresh_hours.
 *
 * The four incremental commands are one table (INCREMENTAL below): a since-time in, a list
 * out, keyset paging on (venue-local minute, key). Their cursor is {"hw": the latest minute
 * read, "seen": ["minute|key", …] of the rows read at hw−1 minute or later}. A stream starts
 * again from hw − 1 minute (earlier when the venue's clocks went back in between, see
 * since_of) and leaves out what `seen` holds, so a row committed late at the boundary is read
 * and none is stored twice.
 *
 * The cursor of every stream is one object, committed with each page's records in one
 * transaction (sd_connector_commit): a stop, a crash or a spent quota resumes from there. When
 * the day's quota is spent (no call possible within max_wait_seconds) the run commits what it
 * has and ends with the warning "paused until …"; the next run continues from the checkpoint.
 * An HTTP 401 fails the run and records the refused credential (its hash) in the saved state:
 * later runs fail at once, without a call, until the settings change. */
#include "connectors/archtics/archtics.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/log.h"
#include "core/quota.h"
#include "model/model.h"
#include "model/tz.h"

#define AT(member) offsetof(struct archtics_conf, member)

static const struct sd_setting settings[] = {
    {"base_url", SD_SETTING_URL, NULL, 8, 2048,
     "ATS base URL, before /{product}/ticketing_services.aspx", SD_CHOICES("http", "https"),
     AT(base_url)},
    {"product", SD_SETTING_STRING, "\"sth-customer\"", 1, 64,
     "the URL's product segment (to confirm with Ticketmaster)", NULL, AT(product)},
    {"dsn", SD_SETTING_STRING, NULL, 1, 32, "the Archtics data source (DSN) of the venue", NULL,
     AT(dsn)},
    {"api_key", SD_SETTING_SECRET, NULL, 1, 256, "API key (sent as the apikey header)", NULL,
     AT(api_key)},
    {"src_sys_name", SD_SETTING_STRING, "\"stagedoor\"", 1, 64, "header.src_sys_name", NULL,
     AT(src_sys_name)},
    {"archtics_version", SD_SETTING_STRING, "\"1\"", 1, 32,
     "header.archtics_version (to confirm with Ticketmaster)", NULL, AT(archtics_version)},
    {"uid", SD_SETTING_STRING, "\"stagedoor\"", 1, 12, "command1.uid: the calling user", NULL,
     AT(uid)},
    {"venue_time_zone", SD_SETTING_STRING, NULL, 1, 64,
     "IANA zone of the venue: every ATS date and time is venue-local without an offset", NULL,
     AT(venue_time_zone)},
    {"currency", SD_SETTING_STRING, "\"USD\"", 3, 3, "ISO 4217 code of every price", NULL,
     AT(currency)},
    {"event_city", SD_SETTING_STRING, NULL, 1, 128, "city of the venue (events need one)", NULL,
     AT(event_city)},
    {"timeout_seconds", SD_SETTING_INT, "60", 1, 600, "per request", NULL, AT(timeout_seconds)},
    {"poll_interval_ms", SD_SETTING_INT, "500", 50, 10000,
     "between polls of a queued (202) command", NULL, AT(poll_interval_ms)},
    {"poll_timeout_seconds", SD_SETTING_INT, "150", 1, 600,
     "a queued command still not answered after this long is submitted again", NULL,
     AT(poll_timeout_seconds)},
    {"max_attempts", SD_SETTING_INT, "4", 1, 20,
     "attempts per request on transport errors and 5xx before the run fails", NULL,
     AT(max_attempts)},
    {"retry_initial_ms", SD_SETTING_INT, "1000", 1, 600000, "first back-off, doubling", NULL,
     AT(retry_initial_ms)},
    {"max_wait_seconds", SD_SETTING_INT, "300", 1, 86400,
     "longest wait for the quota or a 429 inside a run; a longer one pauses the run", NULL,
     AT(max_wait_seconds)},
    {"no_data_result", SD_SETTING_INT, "1", 0, 1000000,
     "the result code of an expired poll, \"No data for token\" (to confirm with Ticketmaster)",
     NULL, AT(no_data_result)},
    {"pull_accounts", SD_SETTING_BOOL, "true", 0, 0, "accounts into customers", NULL,
     AT(pull_accounts)},
    {"pull_events", SD_SETTING_BOOL, "true", 0, 0, "events (event_details) into events", NULL,
     AT(pull_events)},
    {"pull_sales", SD_SETTING_BOOL, "true", 0, 0, "sales and returns into sales and refunds", NULL,
     AT(pull_sales)},
    {"pull_attendance", SD_SETTING_BOOL, "true", 0, 0, "scans into attended_quantity", NULL,
     AT(pull_attendance)},
    {"pull_seats", SD_SETTING_BOOL, "true", 0, 0,
     "season-ticket holders' plan seat blocks (seats_sold) into reservations", NULL,
     AT(pull_seats)},
    {"seats_refresh_hours", SD_SETTING_INT, "24", 0, 8760,
     "the plan seat blocks are read again after this (0: every run)", NULL,
     AT(seats_refresh_hours)},
    {"history_from", SD_SETTING_STRING, "\"2000-01-01 00:00\"", 16, 16,
     "YYYY-MM-DD HH:MM venue-local: where a stream without a cursor starts", NULL,
     AT(history_from)},
    {"bootstrap_cutoff", SD_SETTING_STRING, "\"\"", 0, 16,
     "YYYY-MM-DD HH:MM venue-local cut-off of a file extract, or \"\": streams without a "
     "cursor start there instead of history_from",
     NULL, AT(bootstrap_cutoff)},
    {"page_size", SD_SETTING_INT, "500", 1, 1000, "rows per page of the incremental commands", NULL,
     AT(page_size)},
    {"event_page_size", SD_SETTING_INT, "500", 1, 500,
     "events per event_details page (halved when the answer is too large)", NULL,
     AT(event_page_size)},
    {"event_refresh_hours", SD_SETTING_INT, "24", 1, 8760, "the events are read again after this",
     NULL, AT(event_refresh_hours)},
    {"scan_window_hours", SD_SETTING_INT, "24", 1, 720,
     "scans of one event are counted from this long before its first scan seen", NULL,
     AT(scan_window_hours)},
    {"max_calls_per_run", SD_SETTING_INT, "0", 0, 1000000,
     "0: none; else a run ends (checkpointed) after this many calls", NULL, AT(max_calls_per_run)},
    {"reconcile_days", SD_SETTING_INT, "7", 0, 365,
     "days between reconciliation runs (deleted and merged accounts); 0: never", NULL,
     AT(reconcile_days)},
    {"reconcile_calls_per_run", SD_SETTING_INT, "25", 1, 100000,
     "calls one run may spend on the reconciliation sweep (one per account)", NULL,
     AT(reconcile_calls_per_run)},
    {"push_customers", SD_SETTING_BOOL, "false", 0, 0,
     "customers created or changed in stagedoor go to Archtics", NULL, AT(push_customers)},
    {"alt_id_type", SD_SETTING_STRING, "\"\"", 0, 6,
     "alt_id_type that carries the stagedoor customer id in Archtics, or \"\"", NULL,
     AT(alt_id_type)},
    {"quota_10s_calls", SD_SETTING_INT, "0", 0, 100000,
     "calls per 10 s window instead of the type's 11 (0: the default)", NULL, AT(quota_10s_calls)},
    {"quota_day_calls", SD_SETTING_INT, "0", 0, 100000000,
     "calls per UTC day instead of the type's 5,000 (0: the default)", NULL, AT(quota_day_calls)},
    {NULL, 0, NULL, 0, 0, NULL, NULL, 0},
};

/* 80 calls a minute and 5,000 a day per key. The vendor's minute is rolling; the ledger's
 * windows are fixed and a rolling minute overlaps at most seven aligned 10 s windows, so
 * 7 × 11 = 77 ≤ 80 holds whichever it is. The day is the UTC day. Of each window a share is
 * kept for the outbox (customers out). */
static const struct sd_quota quotas[] = {
    {"10s", 10 * 1000000LL, 11, 2},
    {"day", 86400 * 1000000LL, 5000, 500},
    {NULL, 0, 0, 0},
};

static const char *const credential_settings[] = {"base_url", "api_key", "dsn", NULL};

void archtics_ats_params(const struct archtics_conf *cf, struct ats_params *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->base_url = cf->base_url;
    ret->product = cf->product;
    ret->dsn = cf->dsn;
    ret->api_key = cf->api_key;
    ret->src_sys_name = cf->src_sys_name;
    ret->archtics_version = cf->archtics_version;
    ret->uid = cf->uid;
    ret->timeout_ms = cf->timeout_seconds * 1000;
    ret->poll_interval_ms = cf->poll_interval_ms;
    ret->poll_timeout_ms = cf->poll_timeout_seconds * 1000;
    ret->max_attempts = cf->max_attempts;
    ret->backoff_initial_ms = cf->retry_initial_ms;
    ret->max_wait_usec = cf->max_wait_seconds * 1000000;
    ret->no_data_result = cf->no_data_result;
}

/* ---- the incremental commands: one table ---------------------------------------------------
 * Their real parameters and answers are not public; this table is the one place that names
 * them. Input: since_date_time (venue-local, inclusive), count, and for the next page
 * prev_<ts> + prev_<key> of the last row read. */
struct inc_def {
    const char *cmd;   /* the command */
    const char *array; /* the answer's list */
    const char *ts;    /* each row's venue-local "YYYY-MM-DD HH:MM" */
    const char *key;   /* each row's key (unique with ts) */
    const char *extra; /* one more input, or NULL */
};

enum { INC_ACCOUNTS, INC_EVENTS_WITH_SALES, INC_SALES, INC_SCANS };

static const struct inc_def INCREMENTAL[] = {
    [INC_ACCOUNTS] = {"get_accounts_with_updates", "accounts", "update_date_time", "acct_id", NULL},
    [INC_EVENTS_WITH_SALES] = {"get_events_with_sales", "events", "last_sale_date_time",
                               "event_name", NULL},
    [INC_SALES] = {"get_ticket_sales", "sales", "trans_date_time", "trans_id", "event_name"},
    [INC_SCANS] = {"get_attendance_incremental", "scans", "scan_date_time", "scan_id", NULL},
};

/* ---- the run ------------------------------------------------------------------------------ */

/* How a stream ended when it did not finish: the run stops and says why. */
enum stop {
    GO = 0,
    STOP_PAUSED = 1, /* the quota: paused_until */
    STOP_BUDGET = 2, /* max_calls_per_run */
};

struct run {
    struct sd_connector_ctx *ctx;
    const struct archtics_conf *cf;
    const struct sd_tz *tz;
    struct ats_client *ats;
    json_t *cursor; /* the whole cursor document, as it is to be committed */
    json_t *body;   /* records waiting for the next commit */
    size_t pending;
    int64_t paused_until_usec;
    uint64_t records;
    uint64_t refetched; /* customers/events fetched because a sale named them */
    uint64_t bad_email; /* accounts whose e-mail was not a valid address: stored without it */
};

static const struct archtics_conf *cf_of(const struct sd_connector_ctx *ctx)
{
    return ctx->conf;
}

static json_t *obj_member(json_t *parent, const char *name)
{
    json_t *o = json_object_get(parent, name);
    if (!json_is_object(o)) {
        o = json_object();
        json_object_set_new(parent, name, o);
    }
    return o;
}

static void body_add(struct run *run, const char *array, json_t *rec)
{
    json_t *arr = json_object_get(run->body, array);
    if (!arr) {
        arr = json_array();
        json_object_set_new(run->body, array, arr);
    }
    json_array_append_new(arr, rec);
    run->pending++;
}

/* What an answer that is not OK means for the run: a stop code, or a failure (negative). */
static int answer_stop(struct run *run, const char *what, const struct ats_answer *a)
{
    struct sd_connector_ctx *ctx = run->ctx;
    switch (a->status) {
    case ATS_PAUSED: run->paused_until_usec = a->paused_until_usec; return STOP_PAUSED;
    case ATS_CANCELED:
        return sd_connector_fail(ctx, -ECANCELED,
                                 "stopped; the next run resumes from the committed cursor");
    case ATS_AUTH: {
        json_t *saved = sd_connector_saved(ctx);
        char *key = sd_quota_cred_key(ctx->connector, ctx->settings, ctx->id);
        if (saved) {
            json_object_set_new(saved, "auth_refused", json_string(key));
            json_object_set_new(saved, "auth_refused_detail", json_string(a->detail));
            (void)sd_connector_state_save(ctx);
        }
        free(key);
        return sd_connector_fail(ctx, -EACCES,
                                 "paused: ATS refused the API key or DSN (%s during %s); no "
                                 "call is made until the settings change",
                                 a->detail, what);
    }
    case ATS_SETUP:
        return sd_connector_fail(ctx, -ENOENT,
                                 "setup error: %s during %s (check base_url and "
                                 "product)",
                                 a->detail, what);
    case ATS_RETRY:
        return sd_connector_fail(ctx, -EAGAIN,
                                 "%s: %s; the next run resumes from the committed "
                                 "cursor",
                                 what, a->detail);
    default:
        return sd_connector_fail(ctx, -EPROTO, "%s refused by ATS: result %lld: %s", what,
                                 (long long)a->result, a->detail);
    }
}

/* A call within the run's budget. 0 with a filled answer (any status), or a stop/failure. */
static int call(struct run *run, const char *cmd, const json_t *params, struct ats_answer *a)
{
    const struct archtics_conf *cf = run->cf;
    if (cf->max_calls_per_run > 0 && ats_client_calls(run->ats) >= cf->max_calls_per_run) {
        memset(a, 0, sizeof(*a));
        return STOP_BUDGET;
    }
    int r = ats_call(run->ats, cmd, params, a);
    if (r < 0) {
        return sd_connector_fail(run->ctx, r, "%s: the command could not be built", cmd);
    }
    return 0;
}

/* ---- records ------------------------------------------------------------------------------ */

static void set_text(json_t *rec, const char *name, const json_t *src, const char *key)
{
    char *v = ats_get_text(src, key);
    if (v && *v) {
        json_object_set_new(rec, name, json_string(v));
    }
    free(v);
}

/* A customer record from customer_query's answer; NULL if it has no account id. An account
 * without an e-mail (box-office accounts often have none) is a customer all the same, with
 * e-mail null (the type sets customers_email_optional; null also clears an address removed in
 * Archtics); an e-mail that is not a valid address is dropped the same way and counted in
 * *bad_email, never the account. */
static json_t *customer_record(const json_t *c1, uint64_t *bad_email)
{
    const json_t *cu = ats_get(c1, "customer");
    int64_t acct;
    if (ats_get_int(cu, "acct_id", &acct) < 0) {
        return NULL;
    }
    json_t *rec = json_object();
    json_object_set_new(rec, "customer_id", json_sprintf("%lld", (long long)acct));
    char *email = ats_get_text(cu, "email");
    char *key = email ? sd_text_fold(email) : NULL; /* blank: none */
    bool usable = key && sd_email_valid(key);
    if (key && *key && !usable) {
        (*bad_email)++;
    }
    json_object_set_new(rec, "email", usable ? json_string(email) : json_null());
    free(key);
    free(email);
    set_text(rec, "first_name", cu, "name_first");
    set_text(rec, "last_name", cu, "name_last");
    set_text(rec, "street", cu, "street_addr_1");
    set_text(rec, "post_code", cu, "zip");
    set_text(rec, "city", cu, "city");
    char *opt = ats_get_text(cu, "email_optout");
    if (opt && *opt) {
        json_object_set_new(rec, "ad_opt_out",
                            json_boolean(strcmp(opt, "1") == 0 || strcasecmp(opt, "Y") == 0));
    }
    free(opt);
    json_t *ax = json_object();
    static const char *const extra[] = {
        "name_mi",   "company_name", "street_addr_2", "state",  "country",   "phone_cell",
        "phone_day", "phone_eve",    "birth_date",    "gender", "name_type", "cust_name_id",
        NULL};
    for (size_t i = 0; extra[i]; i++) {
        set_text(ax, extra[i], cu, extra[i]);
    }
    json_object_set_new(rec, "archtics", ax);
    return rec;
}

static int local_to_rfc3339(const struct run *run, const char *local, char out[24])
{
    int64_t utc;
    if (ats_local_to_utc(run->tz, local, false, &utc) < 0) {
        return -EINVAL;
    }
    ats_utc_format(utc, out);
    return 0;
}

/* An event record from one event_details row; NULL for plans (not performances) or rows
 * without a name or date. */
static json_t *event_record(const struct run *run, const json_t *ev)
{
    char *cat = ats_get_text(ev, "event_category");
    bool plan = cat && *cat && strcasecmp(cat, "E") != 0;
    free(cat);
    char *name = ats_get_text(ev, "event_name");
    char *date = ats_get_text(ev, "event_date");
    char *time = ats_get_text(ev, "event_time");
    json_t *rec = NULL;
    int64_t local;
    if (!plan && name && *name && date && ats_local_parse(date, &local) == 0) {
        char t[16] = "00:00:00";
        if (time && strlen(time) == 5) {
            snprintf(t, sizeof(t), "%s:00", time);
        }
        char *title = ats_get_text(ev, "event_name_inet");
        if (!title || !*title) {
            free(title);
            title = ats_get_text(ev, "event_description");
        }
        char *venue = ats_get_text(ev, "venue_name");
        rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i}", "event_id", name, "title",
                        title && *title ? title : name, "date", date, "time", t, "venue",
                        venue && *venue ? venue : "unknown", "hall",
                        venue && *venue ? venue : "unknown", "city", run->cf->event_city,
                        "capacity", 0);
        free(title);
        free(venue);
        json_t *ax = json_object();
        static const char *const extra[] = {
            "event_id",      "event_description", "performer", "season_name",
            "manifest_name", "major_cat",         "minor_cat", NULL};
        for (size_t i = 0; extra[i]; i++) {
            set_text(ax, extra[i], ev, extra[i]);
        }
        json_object_set_new(rec, "archtics", ax);
    }
    free(name);
    free(date);
    free(time);
    return rec;
}

/* A sales record from one get_ticket_sales row (a sale, or a return as a refund record);
 * NULL with why when the row cannot be one. attended < 0: not reported. */
static json_t *sale_record(const struct run *run, const json_t *row, int64_t attended,
                           const char **why)
{
    int64_t trans, acct, qty;
    char *type = ats_get_text(row, "trans_type");
    char *ev = ats_get_text(row, "event_name");
    char *when = ats_get_text(row, "trans_date_time");
    char price[40], full[40], at[24];
    json_t *rec = NULL;
    if (ats_get_int(row, "trans_id", &trans) < 0 || ats_get_int(row, "acct_id", &acct) < 0 ||
        ats_get_int(row, "num_seats", &qty) < 0 || qty < 1 || !ev || !*ev) {
        *why = "a sale without trans_id, acct_id, num_seats or event_name";
    } else if (ats_money_text(row, "purchase_price", price) < 0) {
        *why = "a sale whose purchase_price is not a decimal";
    } else if (!when || local_to_rfc3339(run, when, at) < 0) {
        *why = "a sale whose trans_date_time is not venue-local YYYY-MM-DD HH:MM";
    } else {
        char *plan = ats_get_text(row, "plan_name");
        rec = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s}", "event_id", ev, "purchase_datetime", at,
                        "ticket_category", plan && *plan ? "subscription" : "regular", "quantity",
                        (json_int_t)qty, "sales_price", price, "currency", run->cf->currency);
        json_object_set_new(rec, "invoice_number", json_sprintf("%lld", (long long)trans));
        json_object_set_new(rec, "customer_id", json_sprintf("%lld", (long long)acct));
        if (ats_money_text(row, "full_price", full) == 0) {
            json_object_set_new(rec, "base_price", json_string(full));
        }
        int64_t orig;
        if (type && strcasecmp(type, "R") == 0) {
            if (ats_get_int(row, "orig_trans_id", &orig) < 0) {
                json_decref(rec);
                rec = NULL;
                *why = "a return without orig_trans_id";
            } else {
                json_object_set_new(rec, "refund_of", json_sprintf("%lld", (long long)orig));
            }
        } else if (attended >= 0) {
            json_object_set_new(rec, "attended_quantity", json_integer(attended));
        }
        if (rec) {
            json_t *ax = json_object();
            static const char *const extra[] = {"section_name", "row_name",  "seat_num",
                                                "price_code",   "plan_name", NULL};
            for (size_t i = 0; extra[i]; i++) {
                set_text(ax, extra[i], row, extra[i]);
            }
            json_object_set_new(rec, "archtics", ax);
        }
        free(plan);
    }
    free(type);
    free(ev);
    free(when);
    return rec;
}

/* ---- commits ------------------------------------------------------------------------------ */

/* A record the store found missing for a sale: fetch it (customer_query / event_details) into
 * the body. 0 (added), -ENOENT (ATS does not have it either), a stop, or a failure. */
static int fetch_missing(struct run *run, const char *field, const char *id)
{
    struct ats_answer a;
    json_t *p = NULL;
    const char *cmd;
    if (strcmp(field, "customer_id") == 0) {
        cmd = "customer_query";
        p = json_pack("{s:s}", "acct_id", id);
    } else {
        cmd = "event_details";
        p = json_pack("{s:s, s:s}", "event_filter", id, "event_filter_type", "L");
    }
    int r = call(run, cmd, p, &a);
    json_decref(p);
    if (r != 0) {
        return r;
    }
    if (a.status == ATS_OK) {
        json_t *rec = NULL;
        if (strcmp(cmd, "customer_query") == 0) {
            rec = customer_record(a.c1, &run->bad_email);
            if (rec) {
                body_add(run, "customers", rec);
            } else {
                r = -ENOENT; /* no account id: the sale stays anonymous */
            }
        } else {
            size_t i;
            json_t *ev;
            json_array_foreach(ats_get(a.c1, "events"), i, ev)
            {
                if ((rec = event_record(run, ev))) {
                    body_add(run, "events", rec);
                }
            }
        }
        run->refetched++;
    } else if (a.status == ATS_NOT_FOUND) {
        r = -ENOENT; /* deleted or merged in Archtics since the sale */
    } else {
        r = answer_stop(run, cmd, &a);
    }
    ats_answer_release(&a);
    return r;
}

/* Commit the waiting records with the cursor. A sale that names a customer or event the store
 * does not have yet (created after its stream ran) gets it fetched, and the commit is tried
 * again once. 0, a stop, or a failure. */
static int flush(struct run *run)
{
    struct sd_connector_ctx *ctx = run->ctx;
    uint64_t rejected = ctx->records_rejected;
    for (int attempt = 0;; attempt++) {
        /* a refused attempt that is made again with what it lacked rejected nothing */
        ctx->records_rejected = rejected;
        struct sd_ingest_outcome out;
        sd_ingest_outcome_init(&out);
        int r = sd_connector_commit(ctx, run->body, run->cursor, false, &out);
        if (r < 0) {
            sd_ingest_outcome_release(&out);
            return sd_connector_fail(ctx, r, "storing a page failed");
        }
        if (out.status == 202) {
            run->records += run->pending;
            if (ctx->progress) {
                atomic_fetch_add(ctx->progress, run->pending);
            }
            sd_ingest_outcome_release(&out);
            json_object_clear(run->body);
            run->pending = 0;
            return 0;
        }
        int stop = 0;
        bool fixable = attempt == 0;
        for (size_t i = 0; fixable && i < out.errors.n && stop == 0; i++) {
            const char *ptr = out.errors.items[i].pointer;
            size_t idx;
            char field[32];
            if (!ptr || sscanf(ptr, "/sales/%zu/%31s", &idx, field) != 2 ||
                (strcmp(field, "customer_id") != 0 && strcmp(field, "event_id") != 0)) {
                fixable = false;
                break;
            }
            const json_t *sale = json_array_get(json_object_get(run->body, "sales"), idx);
            const char *id = json_string_value(json_object_get(sale, field));
            if (!id) {
                fixable = false;
                break;
            }
            stop = fetch_missing(run, field, id);
            if (stop == -ENOENT && strcmp(field, "customer_id") == 0) {
                /* the account is gone (deleted or merged, which the incremental calls do not
                 * report): the sale stays, anonymous, with the account id kept beside it */
                json_t *ax = json_object_get(sale, "archtics");
                if (json_is_object(ax)) {
                    json_object_set_new(ax, "acct_id", json_string(id));
                }
                json_object_set_new((json_t *)sale, "customer_id", json_string("ANON"));
                stop = 0;
            } else if (stop == -ENOENT) {
                stop = 0;
                fixable = false;
            }
        }
        if (fixable && stop == 0) {
            sd_ingest_outcome_release(&out);
            continue;
        }
        r = stop != 0 ? stop
                      : sd_connector_fail(ctx, -EINVAL,
                                          "a page was refused, nothing of it "
                                          "stored: %s %s",
                                          out.errors.n ? out.errors.items[0].pointer : "",
                                          out.errors.n ? out.errors.items[0].message : "");
        sd_ingest_outcome_release(&out);
        return r;
    }
}

/* ---- incremental cursors ------------------------------------------------------------------ */

static void local_shift(const char *local, int64_t seconds, char out[20])
{
    int64_t t;
    if (ats_local_parse(local, &t) < 0) {
        t = 0;
    }
    ats_local_format(t + seconds, out);
}

/* Where a stream with cursor cur starts: one minute before its high-water mark, and earlier
 * when the venue's clocks went back after it (rows stamped after the change may sort before
 * the mark: the repeated hour's minutes come again). Without a cursor: one minute before the
 * bootstrap cut-off — the cut-off is the extract's high-water mark, and a row committed late
 * in the minute before it is in neither the extract nor a read from the cut-off — else
 * history_from (nothing is older). */
static void since_of(const struct run *run, const json_t *cur, char out[20])
{
    const char *hw = json_string_value(json_object_get(cur, "hw"));
    if (!hw) {
        const char *c = run->cf->bootstrap_cutoff;
        if (c && *c) {
            local_shift(c, -60, out);
        } else {
            snprintf(out, 20, "%s", run->cf->history_from);
        }
        return;
    }
    int64_t local, u;
    /* the earliest instant hw can stand for, so that a change back just after it is seen */
    if (ats_local_parse(hw, &local) < 0 ||
        sd_tz_local_to_utc(run->tz, local, SD_TZ_EARLIER, &u) < 0) {
        local_shift(hw, -60, out);
        return;
    }
    int64_t since = local - 60;
    int64_t now = sd_now_usec() / 1000000;
    /* a clock change back between the mark and now: the lowest local time after it */
    int32_t prev = 0;
    (void)sd_tz_offset_at(run->tz, u, &prev, NULL);
    int64_t step = 3600, end = now + 86400; /* the server's clock may run ahead of ours */
    if (end - u > 800LL * 86400) {
        end = u + 800LL * 86400;
    }
    for (int64_t t = u + step; t <= end; t += step) {
        int32_t off = 0;
        if (sd_tz_offset_at(run->tz, t, &off, NULL) < 0) {
            break;
        }
        if (off < prev) {
            int64_t after = (t - step) + off; /* ≤ the first local minute after the change */
            after -= after % 60;
            if (after - 60 < since) {
                since = after - 60;
            }
        }
        prev = off;
    }
    ats_local_format(since, out);
}

#define SEEN_MAX 2000
#define FIRST_SCANS_MAX 400

/* A row was read: raise the mark and remember it among the rows at mark − 1 minute or later. */
static void cursor_note(json_t *cur, const char *ts, const char *key)
{
    const char *hw = json_string_value(json_object_get(cur, "hw"));
    if (!hw || strcmp(ts, hw) > 0) {
        json_object_set_new(cur, "hw", json_string(ts));
        hw = ts;
    }
    char floor[20];
    local_shift(hw, -60, floor);
    json_t *seen = json_object_get(cur, "seen");
    json_t *keep = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(seen, i, v)
    {
        const char *s = json_string_value(v);
        if (s && strncmp(s, floor, 16) >= 0) {
            json_array_append(keep, v);
        }
    }
    json_array_append_new(keep, json_sprintf("%s|%s", ts, key));
    /* the state document is bounded: beyond SEEN_MAX rows in two minutes (a bulk change) the
     * earliest are forgotten, and read again (stored again unchanged) by the next run */
    while (json_array_size(keep) > SEEN_MAX) {
        json_array_remove(keep, 0);
    }
    json_object_set_new(cur, "seen", keep);
}

static bool cursor_seen(const json_t *cur, const char *ts, const char *key)
{
    size_t n = strlen(ts), i;
    json_t *v;
    json_array_foreach(json_object_get(cur, "seen"), i, v)
    {
        const char *s = json_string_value(v);
        if (s && strncmp(s, ts, n) == 0 && s[n] == '|' && strcmp(s + n + 1, key) == 0) {
            return true;
        }
    }
    return false;
}

/* Read incremental command `def` from cursor cur onwards; row_fn handles each row not seen
 * before (and returns 0, a stop or a failure); cur is advanced past each row handled. */
typedef int (*row_fn)(struct run *run, const json_t *row, void *arg);

static int inc_read(struct run *run, const struct inc_def *def, const char *extra_value,
                    json_t *cur, row_fn fn, void *arg)
{
    char since[20];
    since_of(run, cur, since);
    char prev_ts[20] = "";
    char *prev_key = NULL;
    int r = 0;
    for (;;) {
        json_t *p = json_pack("{s:s, s:I}", "since_date_time", since, "count",
                              (json_int_t)run->cf->page_size);
        if (def->extra && extra_value) {
            json_object_set_new(p, def->extra, json_string(extra_value));
        }
        if (prev_key) {
            char k[64];
            snprintf(k, sizeof(k), "prev_%s", def->ts);
            json_object_set_new(p, k, json_string(prev_ts));
            snprintf(k, sizeof(k), "prev_%s", def->key);
            json_object_set_new(p, k, json_string(prev_key));
        }
        struct ats_answer a;
        r = call(run, def->cmd, p, &a);
        json_decref(p);
        if (r != 0) {
            break;
        }
        if (a.status != ATS_OK && a.status != ATS_NOT_FOUND) {
            r = answer_stop(run, def->cmd, &a);
            ats_answer_release(&a);
            break;
        }
        const json_t *rows = ats_get(a.c1, def->array);
        size_t n = json_array_size(rows), i;
        json_t *row;
        json_array_foreach(rows, i, row)
        {
            char *ts = ats_get_text(row, def->ts);
            char *key = ats_get_text(row, def->key);
            int64_t local;
            if (!ts || !key || ats_local_parse(ts, &local) < 0) {
                free(ts);
                free(key);
                r = sd_connector_fail(run->ctx, -EPROTO, "%s: a row without a readable %s or %s",
                                      def->cmd, def->ts, def->key);
                break;
            }
            char norm[20];
            ats_local_format(local, norm);
            snprintf(prev_ts, sizeof(prev_ts), "%s", ts);
            free(prev_key);
            prev_key = sd_strdup(key);
            if (!cursor_seen(cur, norm, key)) {
                r = fn(run, row, arg);
                if (r == 0) {
                    cursor_note(cur, norm, key);
                }
            }
            free(ts);
            free(key);
            if (r != 0) {
                break;
            }
        }
        ats_answer_release(&a);
        if (r != 0 || n < (size_t)run->cf->page_size) {
            break;
        }
    }
    free(prev_key);
    return r;
}

/* ---- accounts ----------------------------------------------------------------------------- */

#define ACCOUNTS_PER_COMMIT 50

static int account_row(struct run *run, const json_t *row, void *arg)
{
    (void)arg;
    char *acct = ats_get_text(row, "acct_id");
    json_t *p = json_pack("{s:s}", "acct_id", acct ? acct : "");
    free(acct);
    struct ats_answer a;
    int r = call(run, "customer_query", p, &a);
    json_decref(p);
    if (r != 0) {
        return r;
    }
    if (a.status == ATS_OK) {
        json_t *rec = customer_record(a.c1, &run->bad_email);
        if (rec) {
            body_add(run, "customers", rec);
        } else {
            run->ctx->records_rejected++; /* no account id */
        }
    } else if (a.status != ATS_NOT_FOUND) {
        /* deleted or merged since it was listed: reconciliation handles those */
        r = answer_stop(run, "customer_query", &a);
    }
    ats_answer_release(&a);
    return r;
}

/* Every ACCOUNTS_PER_COMMIT customers are committed, before the next row is read, so the
 * cursor committed covers exactly the rows whose customers go with it. */
static int account_row_flushing(struct run *run, const json_t *row, void *arg)
{
    if (run->pending >= ACCOUNTS_PER_COMMIT) {
        int r = flush(run);
        if (r != 0) {
            return r;
        }
    }
    return account_row(run, row, arg);
}

static int pull_accounts(struct run *run)
{
    json_t *cur = obj_member(run->cursor, "accounts");
    int r = inc_read(run, &INCREMENTAL[INC_ACCOUNTS], NULL, cur, account_row_flushing, NULL);
    int f = r >= 0 || run->pending ? flush(run) : 0;
    return r != 0 ? r : f;
}

/* ---- events ------------------------------------------------------------------------------- */

static int pull_events(struct run *run)
{
    json_t *cur = obj_member(run->cursor, "events");
    int64_t now = sd_now_usec();
    const json_t *done = json_object_get(cur, "refreshed_usec");
    const char *prev = json_string_value(json_object_get(cur, "prev"));
    if (!prev && json_is_integer(done) &&
        now - json_integer_value(done) < run->cf->event_refresh_hours * 3600LL * 1000000) {
        return 0;
    }
    int64_t count = run->cf->event_page_size;
    const json_t *c = json_object_get(cur, "count");
    if (json_is_integer(c) && json_integer_value(c) >= 1 && json_integer_value(c) < count) {
        count = json_integer_value(c);
    }
    for (;;) {
        prev = json_string_value(json_object_get(cur, "prev"));
        json_t *p = json_pack("{s:s, s:I}", "prev_event_name", prev ? prev : "", "count",
                              (json_int_t)count);
        struct ats_answer a;
        int r = call(run, "event_details", p, &a);
        json_decref(p);
        if (r != 0) {
            return r;
        }
        if (a.status == ATS_TOO_LARGE && count > 1) {
            count /= 2; /* the answer would be too large: ask for less */
            json_object_set_new(cur, "count", json_integer(count));
            ats_answer_release(&a);
            continue;
        }
        if (a.status == ATS_NOT_FOUND) {
            ats_answer_release(&a);
            break; /* past the last page */
        }
        if (a.status != ATS_OK) {
            r = answer_stop(run, "event_details", &a);
            ats_answer_release(&a);
            return r;
        }
        const json_t *evs = ats_get(a.c1, "events");
        size_t n = json_array_size(evs), i;
        json_t *ev;
        char *last = NULL;
        json_array_foreach(evs, i, ev)
        {
            json_t *rec = event_record(run, ev);
            if (rec) {
                body_add(run, "events", rec);
            }
            free(last);
            last = ats_get_text(ev, "event_name");
        }
        ats_answer_release(&a);
        if (n < (size_t)count || !last) {
            free(last);
            break;
        }
        json_object_set_new(cur, "prev", json_string(last));
        free(last);
        if ((r = flush(run)) != 0) {
            return r;
        }
    }
    json_object_del(cur, "prev");
    json_object_del(cur, "count");
    json_object_set_new(cur, "refreshed_usec", json_integer(now));
    return flush(run);
}

/* ---- sales and returns -------------------------------------------------------------------- */

#define SALES_PER_COMMIT 500

static int sale_row(struct run *run, const json_t *row, void *arg)
{
    (void)arg;
    if (run->pending >= SALES_PER_COMMIT) {
        int r = flush(run);
        if (r != 0) {
            return r;
        }
    }
    const char *why = NULL;
    json_t *rec = sale_record(run, row, -1, &why);
    if (!rec) {
        return sd_connector_fail(run->ctx, -EPROTO, "get_ticket_sales: %s", why);
    }
    body_add(run, "sales", rec);
    return 0;
}

/* One event of get_events_with_sales: its sales since its own cursor. */
static int event_with_sales_row(struct run *run, const json_t *row, void *arg)
{
    (void)arg;
    char *name = ats_get_text(row, "event_name");
    if (!name || !*name) {
        free(name);
        return sd_connector_fail(run->ctx, -EPROTO,
                                 "get_events_with_sales: a row without "
                                 "event_name");
    }
    json_t *per = obj_member(obj_member(run->cursor, "sales"), "events");
    json_t *cur = obj_member(per, name);
    int r = inc_read(run, &INCREMENTAL[INC_SALES], name, cur, sale_row, NULL);
    if (r == 0) {
        r = flush(run);
    }
    free(name);
    return r;
}

static int pull_sales(struct run *run)
{
    json_t *cur = obj_member(obj_member(run->cursor, "sales"), "with_sales");
    int r =
        inc_read(run, &INCREMENTAL[INC_EVENTS_WITH_SALES], NULL, cur, event_with_sales_row, NULL);
    /* the event list's cursor moves with the last event whose sales are all stored */
    int f = run->pending || r == 0 ? flush(run) : 0;
    return r != 0 ? r : f;
}

/* ---- attendance --------------------------------------------------------------------------- */

struct scans_seen {
    json_t *first; /* event_name → earliest new scan's local minute */
};

static int scan_row(struct run *run, const json_t *row, void *arg)
{
    (void)run;
    struct scans_seen *s = arg;
    char *ev = ats_get_text(row, "event_name");
    char *ts = ats_get_text(row, "scan_date_time");
    if (ev && ts) {
        const char *old = json_string_value(json_object_get(s->first, ev));
        if (!old || strcmp(ts, old) < 0) {
            json_object_set_new(s->first, ev, json_string(ts));
        }
    }
    free(ev);
    free(ts);
    return 0;
}

/* Every scan of event `ev` since `since`: seat keys "section|row|seat" in set. */
struct scan_collect {
    const char *event;
    json_t *seats; /* "section|row|seat" → true */
};

static int collect_scan(struct run *run, const json_t *row, void *arg)
{
    (void)run;
    struct scan_collect *c = arg;
    char *ev = ats_get_text(row, "event_name");
    if (ev && strcmp(ev, c->event) == 0) {
        char *sec = ats_get_text(row, "section_name");
        char *rw = ats_get_text(row, "row_name");
        int64_t seat;
        if (sec && rw && ats_get_int(row, "seat_num", &seat) == 0) {
            char k[160];
            snprintf(k, sizeof(k), "%s|%s|%lld", sec, rw, (long long)seat);
            json_object_set_new(c->seats, k, json_true());
        }
        free(sec);
        free(rw);
    }
    free(ev);
    return 0;
}

/* A seat-block field of a sale as the hub holds it: under "archtics" (written by this
 * connector) or at the top level (imported from a file extract, whose columns are kept). */
static const json_t *sale_seat_field(const json_t *sale, const char *name)
{
    const json_t *v = json_object_get(json_object_get(sale, "archtics"), name);
    return v ? v : json_object_get(sale, name);
}

/* The number of seats of a stored sale's block (section_name, row_name, seat_num …
 * seat_num + quantity − 1) that `seats` holds; -1 when the sale has no readable block. */
static int64_t seats_scanned(const json_t *sale, const json_t *seats)
{
    const char *sec = json_string_value(sale_seat_field(sale, "section_name"));
    const char *rw = json_string_value(sale_seat_field(sale, "row_name"));
    const json_t *sv = sale_seat_field(sale, "seat_num");
    const json_t *qv = json_object_get(sale, "quantity");
    int64_t seat;
    if (!sec || !rw || !json_is_integer(qv)) {
        return -1;
    }
    if (json_is_string(sv)) {
        char *end = NULL;
        const char *t = json_string_value(sv);
        long long x = strtoll(t, &end, 10);
        if (!*t || *end) {
            return -1;
        }
        seat = x;
    } else if (json_is_integer(sv)) {
        seat = json_integer_value(sv);
    } else {
        return -1;
    }
    int64_t n = json_integer_value(qv), attended = 0;
    for (int64_t k = 0; k < n && k < 10000; k++) {
        char key[160];
        snprintf(key, sizeof(key), "%s|%s|%lld", sec, rw, (long long)(seat + k));
        if (json_object_get(seats, key)) {
            attended++;
        }
    }
    return attended;
}

/* The seats scanned of `event`: its scans from scan_window_hours before `first` (its first
 * scan seen) into *ret_seats ("section|row|seat" → true). 0, a stop, or a failure. */
static int scanned_seats(struct run *run, const char *event, const char *first, json_t **ret_seats)
{
    char since[20];
    local_shift(first, -run->cf->scan_window_hours * 3600, since);
    /* since_of reads hw − 1 minute: start one minute later so the window is exact */
    char hw[20];
    local_shift(since, 60, hw);
    json_t *tmp = json_pack("{s:s}", "hw", hw);
    struct scan_collect c = {.event = event, .seats = json_object()};
    int r = inc_read(run, &INCREMENTAL[INC_SCANS], NULL, tmp, collect_scan, &c);
    json_decref(tmp);
    if (r != 0) {
        json_decref(c.seats);
        return r;
    }
    *ret_seats = c.seats;
    return 0;
}

/* Every sale the hub holds of an event in `recount` (event_name → its seats scanned), sent
 * again with attended_quantity when that changed. The sales are the hub's own, read back in
 * one local pass (sd_connector_records_page): the sales stream (or the file extract) stored
 * them already, so a recount costs no get_ticket_sales call. Refund records do not change with
 * attendance. 0, a stop, or a failure. */
static int recount_from_hub(struct run *run, const json_t *recount)
{
    int64_t after = 0;
    bool more = true;
    while (more) {
        json_t *recs = NULL;
        int r = sd_connector_records_page(run->ctx, SD_KIND_SALE, after, SD_CONNECTOR_READ_MAX,
                                          &recs, &after, &more);
        if (r < 0) {
            return sd_connector_fail(run->ctx, r, "reading the hub's sales back failed");
        }
        size_t i;
        json_t *sale;
        json_array_foreach(recs, i, sale)
        {
            const char *ev = json_string_value(json_object_get(sale, "event_id"));
            const json_t *seats = ev ? json_object_get(recount, ev) : NULL;
            const char *type = json_string_value(json_object_get(sale, "order_type"));
            if (!seats || json_object_get(sale, "refund_of") || (type && strcmp(type, "sale"))) {
                continue;
            }
            int64_t attended = seats_scanned(sale, seats);
            const json_t *old = json_object_get(sale, "attended_quantity");
            if (attended < 0 || (json_is_integer(old) && json_integer_value(old) == attended)) {
                continue;
            }
            if (run->pending >= SALES_PER_COMMIT && (r = flush(run)) != 0) {
                json_decref(recs);
                return r;
            }
            json_t *rec = json_deep_copy(sale);
            json_object_set_new(rec, "attended_quantity", json_integer(attended));
            body_add(run, "sales", rec);
        }
        json_decref(recs);
    }
    return 0;
}

static int pull_attendance(struct run *run)
{
    json_t *att = obj_member(run->cursor, "attendance");
    json_t *cur = json_deep_copy(obj_member(att, "scans"));
    struct scans_seen s = {.first = json_object()};
    int r = inc_read(run, &INCREMENTAL[INC_SCANS], NULL, cur, scan_row, &s);
    json_t *known = obj_member(att, "first_scan");
    json_t *recount = json_object(); /* event_name → its seats scanned */
    const char *ev;
    json_t *v;
    json_object_foreach(s.first, ev, v)
    {
        if (r != 0) {
            break;
        }
        const char *old = json_string_value(json_object_get(known, ev));
        char first[20];
        snprintf(first, sizeof(first), "%s",
                 old && strcmp(old, json_string_value(v)) < 0 ? old : json_string_value(v));
        json_object_set_new(known, ev, json_string(first));
        while (json_object_size(known) > FIRST_SCANS_MAX) {
            /* forget the event scanned longest ago: its scans are over */
            const char *k, *oldest = NULL, *oldest_at = NULL;
            json_t *x;
            json_object_foreach(known, k, x)
            {
                const char *at = json_string_value(x);
                if (!oldest || (at && oldest_at && strcmp(at, oldest_at) < 0)) {
                    oldest = k;
                    oldest_at = at;
                }
            }
            char *gone = sd_strdup(oldest);
            json_object_del(known, gone);
            free(gone);
        }
        json_t *seats = NULL;
        r = scanned_seats(run, ev, first, &seats);
        if (r == 0) {
            json_object_set_new(recount, ev, seats);
        }
    }
    if (r == 0) {
        r = recount_from_hub(run, recount);
    }
    json_decref(recount);
    if (r == 0) {
        /* every event with new scans is counted: the scans' cursor moves */
        json_object_set(att, "scans", cur);
        r = flush(run);
    } else {
        json_object_clear(run->body);
        run->pending = 0;
    }
    json_decref(cur);
    json_decref(s.first);
    return r;
}

/* ---- seats of season-ticket holders ------------------------------------------------------- */

/* Every seats_refresh_hours, for each season-ticket holder, seats_sold paged with its keyset
 * (prev_event_name, prev_section_name, prev_row_name, prev_seatnum). The holders are the
 * accounts the hub holds a subscription record of (a plan's sale, from the sales stream or a
 * file extract, or a plan seat block stored before): read back locally, no call.
 *
 * A plan seat block — one plan, section, row, first seat and number of seats, held for every
 * game of the plan — is one record: order_type reservation (the seats held for the season; the
 * spend is already counted by the plan's sales of each game, which a second sale would
 * count twice), ticket_category subscription, event_id the first game it holds, quantity the
 * seats, sales_price / base_price the purchase_price / full_price of one seat for one game
 * (through the decimal text), invoice_number "st-<acct>-<plan>-<section>-<row>-<seat>-<added>"
 * (added: the block's add_date_time, so a block given up and taken again is a new record).
 * A block no longer listed (a seat change, a plan given up) is sent again with status freed.
 * Unchanged blocks are not written again. The pass commits after each account with its
 * position ("after"), so a pause resumes with the next account. */

#define SEATS_KIND "plan_seats"

static bool seats_digits(const char *s)
{
    if (!s || !*s || strlen(s) > 18) {
        return false;
    }
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') {
            return false;
        }
    }
    return true;
}

/* Holders (acct → true) and their stored open plan seat blocks (acct → {invoice → record})
 * from one local pass over the hub's sales. 0, or a failure. */
static int seats_holders(struct run *run, json_t *holders, json_t *open)
{
    int64_t after = 0;
    bool more = true;
    while (more) {
        json_t *recs = NULL;
        int r = sd_connector_records_page(run->ctx, SD_KIND_SALE, after, SD_CONNECTOR_READ_MAX,
                                          &recs, &after, &more);
        if (r < 0) {
            return sd_connector_fail(run->ctx, r, "reading the hub's sales back failed");
        }
        size_t i;
        json_t *s;
        json_array_foreach(recs, i, s)
        {
            const char *cat = json_string_value(json_object_get(s, "ticket_category"));
            const char *cid = json_string_value(json_object_get(s, "customer_id"));
            const char *inv = json_string_value(json_object_get(s, "invoice_number"));
            if (!cat || strcmp(cat, "subscription") != 0 || !seats_digits(cid) || !inv ||
                json_object_get(s, "refund_of")) {
                continue;
            }
            json_object_set_new(holders, cid, json_true());
            const json_t *ax = json_object_get(s, "archtics");
            const char *kind = json_string_value(json_object_get(ax, "kind"));
            const char *status = json_string_value(json_object_get(s, "status"));
            if (kind && strcmp(kind, SEATS_KIND) == 0 && (!status || strcmp(status, "open") == 0)) {
                json_object_set(obj_member(open, cid), inv, s);
            }
        }
        json_decref(recs);
    }
    return 0;
}

/* One seats_sold row into the account's blocks (invoice → record); rows of no plan (single
 * games) are not season seats. NULL, or why the row cannot be read. */
static const char *seats_block(const struct run *run, const char *acct, const json_t *row,
                               json_t *blocks)
{
    char *plan = ats_get_text(row, "plan_name");
    char *ev = ats_get_text(row, "event_name");
    char *sec = ats_get_text(row, "section_name");
    char *rw = ats_get_text(row, "row_name");
    char *added = ats_get_text(row, "add_date_time");
    int64_t seat, n, local;
    char price[40], full[40], at[24];
    const char *why = NULL;
    if (!plan || !*plan) {
        goto out; /* a single game's seats */
    }
    if (!ev || !*ev || !sec || !rw || ats_get_int(row, "seat_num", &seat) < 0 ||
        ats_get_int(row, "num_seat", &n) < 0 || n < 1) {
        why = "a block without event_name, section_name, row_name, seat_num or num_seat";
    } else if (ats_money_text(row, "purchase_price", price) < 0) {
        why = "a block whose purchase_price is not a decimal";
    } else if (!added || ats_local_parse(added, &local) < 0 ||
               local_to_rfc3339(run, added, at) < 0) {
        why = "a block whose add_date_time is not venue-local YYYY-MM-DD HH:MM";
    }
    if (why) {
        goto out;
    }
    char stamp[20], compact[16];
    ats_local_format(local, stamp); /* "YYYY-MM-DD HH:MM" */
    snprintf(compact, sizeof(compact), "%.4s%.2s%.2s%.2s%.2s", stamp, stamp + 5, stamp + 8,
             stamp + 11, stamp + 14);
    json_t *inv =
        json_sprintf("st-%s-%s-%s-%s-%lld-%s", acct, plan, sec, rw, (long long)seat, compact);
    const char *key = json_string_value(inv);
    json_t *rec = json_object_get(blocks, key);
    if (rec) {
        /* the same block in another game of the plan */
        json_t *ax = json_object_get(rec, "archtics");
        json_object_set_new(ax, "games",
                            json_integer(json_integer_value(json_object_get(ax, "games")) + 1));
    } else {
        rec = json_pack("{s:O, s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:s}", "invoice_number", inv,
                        "order_type", "reservation", "event_id", ev, "customer_id", acct,
                        "purchase_datetime", at, "quantity", (json_int_t)n, "sales_price", price,
                        "currency", run->cf->currency, "ticket_category", "subscription", "status",
                        "open");
        if (ats_money_text(row, "full_price", full) == 0) {
            json_object_set_new(rec, "base_price", json_string(full));
        }
        json_t *ax = json_pack("{s:s, s:s, s:s, s:s, s:I, s:i}", "kind", SEATS_KIND, "plan_name",
                               plan, "section_name", sec, "row_name", rw, "seat_num",
                               (json_int_t)seat, "games", 1);
        set_text(ax, "price_code", row, "price_code");
        json_object_set_new(rec, "archtics", ax);
        json_object_set_new(blocks, key, rec);
    }
    json_decref(inv);
out:
    free(plan);
    free(ev);
    free(sec);
    free(rw);
    free(added);
    return why;
}

/* The account's blocks now (seats_sold, every page) into blocks. 0, a stop, or a failure. */
static int seats_of_account(struct run *run, const char *acct, json_t *blocks)
{
    char prev_ev[128] = "", prev_sec[64] = "", prev_row[64] = "";
    int64_t prev_seat = -1;
    for (;;) {
        json_t *p =
            json_pack("{s:s, s:I}", "acct_id", acct, "count", (json_int_t)run->cf->page_size);
        if (prev_ev[0]) {
            json_object_set_new(p, "prev_event_name", json_string(prev_ev));
            json_object_set_new(p, "prev_section_name", json_string(prev_sec));
            json_object_set_new(p, "prev_row_name", json_string(prev_row));
            json_object_set_new(p, "prev_seatnum", json_integer(prev_seat));
        }
        struct ats_answer a;
        int r = call(run, "seats_sold", p, &a);
        json_decref(p);
        if (r != 0) {
            return r;
        }
        if (a.status == ATS_NOT_FOUND) {
            ats_answer_release(&a); /* 5069 "No blocks found": past the last page */
            return 0;
        }
        if (a.status != ATS_OK) {
            r = answer_stop(run, "seats_sold", &a);
            ats_answer_release(&a);
            return r;
        }
        const json_t *rows = ats_get(a.c1, "seats_array");
        size_t n = json_array_size(rows), i;
        json_t *row;
        json_array_foreach(rows, i, row)
        {
            const char *why = seats_block(run, acct, row, blocks);
            char *ev = ats_get_text(row, "event_name");
            char *sec = ats_get_text(row, "section_name");
            char *rw = ats_get_text(row, "row_name");
            if (!why && (!ev || !sec || !rw || ats_get_int(row, "seat_num", &prev_seat) < 0)) {
                why = "a block without its keyset (event, section, row, seat)";
            }
            if (!why) {
                snprintf(prev_ev, sizeof(prev_ev), "%s", ev);
                snprintf(prev_sec, sizeof(prev_sec), "%s", sec);
                snprintf(prev_row, sizeof(prev_row), "%s", rw);
            }
            free(ev);
            free(sec);
            free(rw);
            if (why) {
                ats_answer_release(&a);
                return sd_connector_fail(run->ctx, -EPROTO, "seats_sold: %s", why);
            }
        }
        ats_answer_release(&a);
        if (n < (size_t)run->cf->page_size) {
            return 0;
        }
    }
}

/* Decimal texts a and b are the same amount ("42.5" and the hub's "42.50"). */
static bool seats_amount_same(const json_t *a, const json_t *b)
{
    const char *x = json_string_value(a), *y = json_string_value(b);
    if (!x || !y) {
        return !x && !y && json_equal(a, b);
    }
    size_t nx = strlen(x), ny = strlen(y);
    if (strchr(x, '.')) {
        while (nx > 0 && x[nx - 1] == '0') {
            nx--;
        }
        nx -= nx > 0 && x[nx - 1] == '.';
    }
    if (strchr(y, '.')) {
        while (ny > 0 && y[ny - 1] == '0') {
            ny--;
        }
        ny -= ny > 0 && y[ny - 1] == '.';
    }
    return nx == ny && strncmp(x, y, nx) == 0;
}

/* Whether stored record `old` says what `now` says (the hub keeps what it was sent, amounts
 * normalized). */
static bool seats_same(const json_t *old, const json_t *now)
{
    const char *keys[] = {"event_id", "purchase_datetime", "quantity", "currency",
                          "status",   "archtics",          NULL};
    for (size_t i = 0; keys[i]; i++) {
        const json_t *x = json_object_get(old, keys[i]), *y = json_object_get(now, keys[i]);
        if ((x || y) && !json_equal(x, y)) {
            return false;
        }
    }
    return seats_amount_same(json_object_get(old, "sales_price"),
                             json_object_get(now, "sales_price")) &&
           seats_amount_same(json_object_get(old, "base_price"),
                             json_object_get(now, "base_price"));
}

static int64_t acct_number(const char *s)
{
    return strtoll(s, NULL, 10);
}

static int pull_seats(struct run *run)
{
    json_t *cur = obj_member(run->cursor, "seats");
    const json_t *done = json_object_get(cur, "refreshed_usec");
    int64_t now = sd_now_usec();
    const char *after = json_string_value(json_object_get(cur, "after"));
    if (!after && json_is_integer(done) && run->cf->seats_refresh_hours > 0 &&
        now - json_integer_value(done) < run->cf->seats_refresh_hours * 3600 * 1000000LL) {
        return 0; /* refreshed within seats_refresh_hours: no call */
    }
    json_t *holders = json_object(), *open = json_object();
    int r = seats_holders(run, holders, open);
    /* the holders in account order, from where a paused pass stopped */
    size_t nh = json_object_size(holders), k = 0;
    const char **ids = sd_calloc(nh ? nh : 1, sizeof(*ids));
    const char *id;
    json_t *v;
    json_object_foreach(holders, id, v)
    {
        ids[k++] = id;
    }
    for (size_t i = 1; i < nh; i++) { /* insertion sort by number: holders are few */
        const char *x = ids[i];
        size_t j = i;
        while (j > 0 && acct_number(ids[j - 1]) > acct_number(x)) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = x;
    }
    int64_t from = after ? acct_number(after) : -1;
    for (size_t i = 0; r == 0 && i < nh; i++) {
        if (acct_number(ids[i]) <= from) {
            continue;
        }
        json_t *blocks = json_object();
        r = seats_of_account(run, ids[i], blocks);
        if (r == 0) {
            const json_t *had = json_object_get(open, ids[i]);
            const char *inv;
            json_t *rec;
            json_object_foreach(blocks, inv, rec)
            {
                const json_t *old = json_object_get(had, inv);
                if (!old || !seats_same(old, rec)) {
                    body_add(run, "sales", json_incref(rec));
                }
            }
            json_object_foreach((json_t *)had, inv, rec)
            {
                if (!json_object_get(blocks, inv)) {
                    /* no longer held: a seat change or a plan given up */
                    json_t *gone = json_deep_copy(rec);
                    json_object_set_new(gone, "status", json_string("freed"));
                    body_add(run, "sales", gone);
                }
            }
            json_t *before = json_incref(json_object_get(cur, "after"));
            json_object_set_new(cur, "after", json_string(ids[i]));
            r = flush(run);
            if (r != 0) {
                /* not committed: the position stays where the store has it */
                if (before) {
                    json_object_set(cur, "after", before);
                } else {
                    json_object_del(cur, "after");
                }
            }
            json_decref(before);
        }
        json_decref(blocks);
    }
    if (r == 0) {
        json_object_del(cur, "after");
        json_object_set_new(cur, "refreshed_usec", json_integer(now));
        r = flush(run);
    } else {
        json_object_clear(run->body);
        run->pending = 0;
    }
    free(ids);
    json_decref(holders);
    json_decref(open);
    return r;
}

/* ---- status ------------------------------------------------------------------------------- */

static json_t *time_json(int64_t usec)
{
    char out[24];
    ats_utc_format(usec / 1000000, out);
    return json_string(out);
}

/* The run's figures in the cursor's "status" member (shown by `connector show`): calls, the
 * pause, and for a backfill a projected finish from how far the accounts stream got in time. */
static void note_status(struct run *run, int64_t started_usec, int stop)
{
    json_t *st = obj_member(run->cursor, "status");
    int64_t calls = ats_client_calls(run->ats);
    json_object_set_new(st, "calls_last_run", json_integer(calls));
    json_object_set_new(st, "records_last_run", json_integer((json_int_t)run->records));
    if (stop == STOP_PAUSED) {
        json_object_set_new(st, "paused_until", time_json(run->paused_until_usec));
    } else {
        json_object_del(st, "paused_until");
    }
    const char *hw =
        json_string_value(json_object_get(json_object_get(run->cursor, "accounts"), "hw"));
    int64_t from, mark, now_local;
    if (stop != GO && hw && ats_local_parse(run->cf->history_from, &from) == 0 &&
        ats_local_parse(hw, &mark) == 0 &&
        sd_tz_utc_to_local(run->tz, sd_now_usec() / 1000000, &now_local) == 0 && mark > from &&
        now_local > mark && calls > 0) {
        /* calls still needed ≈ calls so far × the time not yet covered / the time covered */
        double done = (double)(mark - from), left = (double)(now_local - mark);
        json_t *c = json_object_get(st, "backfill_calls");
        int64_t total = (json_is_integer(c) ? json_integer_value(c) : 0) + calls;
        json_object_set_new(st, "backfill_calls", json_integer(total));
        int64_t need = (int64_t)((double)total * left / done);
        int64_t per_day = run->cf->quota_day_calls > 0 ? run->cf->quota_day_calls : 4500;
        json_object_set_new(st, "backfill_calls_remaining", json_integer(need));
        int64_t base = stop == STOP_PAUSED ? run->paused_until_usec : sd_now_usec();
        json_object_set_new(st, "backfill_projected_finish",
                            time_json(base + need * 86400LL * 1000000 / per_day));
    } else if (stop == GO) {
        json_object_del(st, "backfill_calls");
        json_object_del(st, "backfill_calls_remaining");
        json_object_del(st, "backfill_projected_finish");
    }
    (void)started_usec;
}

static int archtics_run(struct sd_connector_ctx *ctx, void *state)
{
    (void)state;
    const struct archtics_conf *cf = cf_of(ctx);
    char err[128];
    struct run run = {.ctx = ctx, .cf = cf};
    if (sd_tz_get(cf->venue_time_zone, &run.tz, err, sizeof(err)) < 0) {
        return sd_connector_fail(ctx, -EINVAL, "venue_time_zone: %s", err);
    }
    /* a credential ATS refused stays refused until the settings change */
    json_t *saved = sd_connector_saved(ctx);
    const char *refused = json_string_value(json_object_get(saved, "auth_refused"));
    char *key = sd_quota_cred_key(ctx->connector, ctx->settings, ctx->id);
    bool same = refused && strcmp(refused, key) == 0;
    free(key);
    if (same) {
        const char *d = json_string_value(json_object_get(saved, "auth_refused_detail"));
        return sd_connector_fail(ctx, -EACCES,
                                 "paused: ATS refused the API key or DSN (%s); no call is made "
                                 "until the settings change",
                                 d ? d : "HTTP 401");
    }
    if (saved && refused) {
        json_object_del(saved, "auth_refused");
        json_object_del(saved, "auth_refused_detail");
    }
    struct ats_params p;
    archtics_ats_params(cf, &p);
    run.ats = ats_client_new(ctx, &p);
    run.cursor = json_is_object(ctx->cursor) ? json_deep_copy(ctx->cursor) : json_object();
    run.body = json_object();
    int64_t started = sd_now_usec();
    int r = 0;
    if (r == 0 && cf->pull_accounts) {
        r = pull_accounts(&run);
    }
    if (r == 0 && cf->pull_events) {
        r = pull_events(&run);
    }
    if (r == 0 && cf->pull_sales) {
        r = pull_sales(&run);
    }
    if (r == 0 && cf->pull_attendance) {
        r = pull_attendance(&run);
    }
    if (r == 0 && cf->pull_seats) {
        r = pull_seats(&run);
    }
    if (r == 0) {
        struct archtics_reconcile_report rep;
        int rr = archtics_reconcile_step(ctx, run.ats, &rep);
        r = rr < 0 ? rr : r;
    }
    if (r >= 0) {
        /* GO or a stop: the status travels with the final (record-less) commit */
        json_object_clear(run.body);
        run.pending = 0;
        note_status(&run, started, r);
        int f = flush(&run);
        if (f < 0) {
            r = f;
        }
    }
    if (r == STOP_PAUSED) {
        json_t *until = time_json(run.paused_until_usec);
        sd_connector_fail(ctx, 0,
                          "paused until %s: the call quota is spent; the next run resumes from "
                          "the checkpoint (%lld calls this run)",
                          json_is_string(until) ? json_string_value(until) : "later",
                          (long long)ats_client_calls(run.ats));
        json_decref(until);
        r = 0;
    } else if (r == STOP_BUDGET) {
        sd_connector_fail(ctx, 0,
                          "ended after max_calls_per_run (%lld calls); the next run resumes "
                          "from the checkpoint",
                          (long long)cf->max_calls_per_run);
        r = 0;
    }
    if (r == 0 && run.bad_email > 0) {
        char *before = ctx->error ? sd_strdup(ctx->error) : NULL;
        sd_connector_fail(ctx, 0,
                          "%s%s%llu account(s) with an e-mail that is not a valid address "
                          "stored without it",
                          before ? before : "", before ? "; " : "",
                          (unsigned long long)run.bad_email);
        free(before);
    }
    json_decref(run.cursor);
    json_decref(run.body);
    ats_client_free(run.ats);
    return r < 0 ? r : 0;
}

static void check(const void *conf, struct sd_issues *errors)
{
    const struct archtics_conf *cf = conf;
    char err[128];
    const struct sd_tz *tz;
    if (sd_tz_get(cf->venue_time_zone, &tz, err, sizeof(err)) < 0) {
        sd_issues_add(errors, "/settings/venue_time_zone", "%s", err);
    }
    int64_t t;
    if (ats_local_parse(cf->history_from, &t) < 0) {
        sd_issues_add(errors, "/settings/history_from", "must be YYYY-MM-DD HH:MM (venue-local)");
    }
    if (cf->bootstrap_cutoff[0] &&
        (strlen(cf->bootstrap_cutoff) != 16 || ats_local_parse(cf->bootstrap_cutoff, &t) < 0)) {
        sd_issues_add(errors, "/settings/bootstrap_cutoff",
                      "must be YYYY-MM-DD HH:MM (venue-local) or empty");
    }
    if (sd_currency_minor_units(cf->currency) < 0) {
        sd_issues_add(errors, "/settings/currency", "not an active ISO 4217 code");
    }
}

const struct sd_connector sd_connector_archtics = {
    .name = "archtics",
    .kind = SD_CONNECTOR_SOURCE | SD_CONNECTOR_TARGET,
    .help = "Ticketmaster Archtics (ATS): accounts, events, sales and returns, attendance in",
    .settings = settings,
    .settings_size = sizeof(struct archtics_conf),
    .default_schedule = "every 15m",
    .run = archtics_run,
    .operations = archtics_operations,
    .on_change = archtics_on_change,
    .deliver = archtics_deliver,
    .check = check,
    .quotas = quotas,
    .credential_settings = credential_settings,
    .customers_email_optional = true,
};
